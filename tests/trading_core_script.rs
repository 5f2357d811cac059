//! The trading core driven by scripts of events, asserting the exact commands that come out
//! (one take-profit level per close with its write-ahead journal record, the exact restore of
//! a refused close, the emergency behind a hung request, transfers vs losses, the risk state
//! across a restart, a close refused because the stop closed the position first).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use kinetic::config::Settings;
use kinetic::core::models::{Direction, LadderStage, OrderStatus, Side};
use kinetic::exchange::{
    AccountBalance, ExchangeError, ExchangeEvent, ExchangePosition, OrderReport, StopOrder, StopStatus, SymbolInfo,
};
use kinetic::manager::commands::{Action, Command, OrderRequest, OrderResult, Outcome, Record};
use kinetic::manager::exit_ladder::ExitReason;
use kinetic::manager::reconcile::ExchangeHolding;
use kinetic::manager::trading_core::TradingCore;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

const T0: i64 = 1_780_000_000_000;

fn position(qty: Decimal) -> ExchangePosition {
    ExchangePosition {
        symbol: "BTCUSDT".into(),
        direction: Direction::Long,
        qty,
        entry_price: dec!(60000),
        mark_price: dec!(60000),
        unrealized_pnl: Decimal::ZERO,
        leverage: 10,
        liquidation_price: None,
        update_time: T0,
    }
}

/// A core holding an adopted BTCUSDT long of 0.100 at 60 000 (TP1 60 900, TP2 61 500, trail
/// from 61 800, stop 58 200) with its stop resting.
fn core_with_position() -> TradingCore {
    let settings = Settings::defaults().unwrap();
    let mut core = TradingCore::new(&settings, T0, dec!(10000)).unwrap();
    core.set_symbols(vec![SymbolInfo { filters: common::filters("BTCUSDT"), max_leverage: 125 }]);
    core.set_balance(
        &AccountBalance {
            wallet_balance: dec!(10000),
            equity: dec!(10000),
            available_balance: dec!(10000),
            unrealized_pnl: Decimal::ZERO,
        },
        T0,
    );
    let p = position(dec!(0.100));
    let holding = ExchangeHolding::from(&p);
    core.set_exchange_positions(vec![p]);
    let mut out = Vec::new();
    core.apply_reconcile(&mut out, &[], &[holding], true, T0);
    let stop = core.manager().position("BTCUSDT").unwrap().ladder.stop;
    core.set_stops(vec![StopOrder {
        symbol: "BTCUSDT".into(),
        algo_id: 1,
        client_id: "ke-s-0-1".into(),
        side: Side::Sell,
        qty: dec!(0.100),
        trigger_price: stop,
        reduce_only: true,
        status: StopStatus::New,
        update_time: T0,
    }]);
    core
}

fn sends(actions: &[Action]) -> Vec<Command> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

fn report(cmd: &Command, executed: Decimal, price: Decimal) -> OrderReport {
    let OrderRequest::Close { req, .. } = &cmd.request else { panic!("not a close: {cmd:?}") };
    OrderReport {
        symbol: req.symbol.clone(),
        client_order_id: req.client_order_id.clone(),
        order_id: 7,
        side: req.side,
        status: OrderStatus::Filled,
        orig_qty: req.qty,
        executed_qty: executed,
        avg_price: price,
        reduce_only: true,
        update_time: T0,
    }
}

fn close_qty(cmd: &Command) -> (Decimal, ExitReason) {
    match &cmd.request {
        OrderRequest::Close { req, reason, .. } => (req.qty, *reason),
        other => panic!("expected a close, got {other:?}"),
    }
}

#[test]
fn a_jump_past_two_levels_closes_one_level_at_a_time() {
    let mut core = core_with_position();
    let actions = core.on_mark("BTCUSDT", dec!(61600), T0 + 1, T0 + 1);
    let cmds = sends(&actions);
    assert_eq!(cmds.len(), 1, "{cmds:?}");
    assert_eq!(close_qty(&cmds[0]), (dec!(0.040), ExitReason::TakeProfit1));
    // The write-ahead journal record of the new stage comes before the command.
    let journal_at = actions.iter().position(|a| matches!(a, Action::Journal(Record::PositionUpdated(_)))).unwrap();
    let send_at = actions.iter().position(|a| matches!(a, Action::Send(_))).unwrap();
    assert!(journal_at < send_at);
    // Another mark while TP1 is in flight sends nothing for the symbol.
    assert!(sends(&core.on_mark("BTCUSDT", dec!(61650), T0 + 2, T0 + 2)).is_empty());
    // TP1 fills: TP2 goes out next, from the state TP1 left.
    let out = core.on_outcome(
        Outcome {
            id: cmds[0].id,
            symbol: "BTCUSDT".into(),
            result: OrderResult::Close(Ok(report(&cmds[0], dec!(0.040), dec!(61600)))),
        },
        T0 + 3,
    );
    let next = sends(&out);
    assert_eq!(next.len(), 1, "{next:?}");
    assert_eq!(close_qty(&next[0]), (dec!(0.030), ExitReason::TakeProfit2));
}

#[test]
fn a_refused_close_restores_the_exact_state_and_reads_the_exchange() {
    let mut core = core_with_position();
    let before = core.manager().position("BTCUSDT").unwrap().clone();
    let cmds = sends(&core.on_mark("BTCUSDT", dec!(62200), T0 + 1, T0 + 1));
    assert_eq!(close_qty(&cmds[0]).1, ExitReason::TakeProfit1);
    let refused = ExchangeError::Api { http_status: 400, code: -4131, msg: "PERCENT_PRICE".into() };
    let out = core.on_outcome(
        Outcome { id: cmds[0].id, symbol: "BTCUSDT".into(), result: OrderResult::Close(Err(refused)) },
        T0 + 2,
    );
    let after = core.manager().position("BTCUSDT").unwrap();
    assert_eq!(after.ladder, before.ladder, "quantities, stage and stop as before the close");
    assert_eq!(after.position.qty, before.position.qty);
    // The next action is a read of the exchange's position, never a stop resize.
    let next = sends(&out);
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].request, OrderRequest::ReadPosition);
    // The stop on the exchange still covers the full size.
    assert!(core.resting_stops().any(|s| s.qty == dec!(0.100)));
}

#[test]
fn the_emergency_closes_positions_even_behind_a_hung_request() {
    let mut core = core_with_position();
    let cmds = sends(&core.on_mark("BTCUSDT", dec!(61000), T0 + 1, T0 + 1));
    assert_eq!(close_qty(&cmds[0]).1, ExitReason::TakeProfit1);
    // The TP1 answer never comes; the market collapses past the emergency line. (The
    // position's stop would fire on the exchange too; the core does not wait for it.)
    core.set_balance(
        &AccountBalance {
            wallet_balance: dec!(1000),
            equity: dec!(1000),
            available_balance: dec!(1000),
            unrealized_pnl: Decimal::ZERO,
        },
        T0 + 1,
    );
    let out = core.on_mark("BTCUSDT", dec!(58300), T0 + 2, T0 + 2);
    let urgent: Vec<Command> = sends(&out).into_iter().filter(|c| c.urgent).collect();
    assert_eq!(urgent.len(), 1, "{out:?}");
    assert_eq!(close_qty(&urgent[0]).1, ExitReason::Emergency);
    assert!(core.manager().emergency().is_some(), "latched");
    assert!(out.iter().any(|a| matches!(a, Action::Journal(Record::RiskState(v)) if v["emergency_since"].is_number())));
}

#[test]
fn a_withdrawal_is_not_a_loss_but_a_real_loss_latches_the_day() {
    let mut core = core_with_position();
    let bal = |w: Decimal| AccountBalance {
        wallet_balance: w,
        equity: w,
        available_balance: w,
        unrealized_pnl: Decimal::ZERO,
    };
    let ev = |w: Decimal, transfer: Option<Decimal>| ExchangeEvent::AccountUpdate {
        balance: Some(bal(w)),
        positions: vec![],
        time: T0 + 1,
        transfer,
    };
    core.on_account_event(ev(dec!(9000), Some(dec!(-1000))), T0 + 1);
    core.on_tick(T0 + 2);
    assert!(!core.manager().risk.daily_latched, "withdrew 1000, lost nothing");
    core.on_account_event(ev(dec!(8690), None), T0 + 3);
    core.on_tick(T0 + 4);
    assert!(core.manager().risk.daily_latched, "lost 310 against a 300 limit");
    // Journaled, and restored after a restart.
    let saved = core.risk_state();
    let mut restarted = TradingCore::new(&Settings::defaults().unwrap(), T0 + 5, dec!(8690)).unwrap();
    assert!(restarted.restore_risk_state(&saved));
    assert!(restarted.manager().risk.daily_latched);
    assert_eq!(restarted.manager().risk.day_start_equity, dec!(10000));
}

#[test]
fn a_level_that_found_nothing_left_is_not_done_after_a_partial_fill() {
    // Found by Property 12: earlier partial closes left 0.040 of 0.100; TP1 (40 % = 0.040)
    // takes it all, so the ladder would mark TP2 done with nothing taken. TP1 then fills only
    // 0.014: the 0.026 back must still meet TP2.
    let mut core = core_with_position();
    core.manager_mut().reduce_remaining("BTCUSDT", dec!(0.060));
    let cmds = sends(&core.on_mark("BTCUSDT", dec!(61600), T0 + 1, T0 + 1));
    assert_eq!(close_qty(&cmds[0]), (dec!(0.040), ExitReason::TakeProfit1));
    core.on_outcome(
        Outcome {
            id: cmds[0].id,
            symbol: "BTCUSDT".into(),
            result: OrderResult::Close(Ok(report(&cmds[0], dec!(0.014), dec!(61600)))),
        },
        T0 + 2,
    );
    let p = core.manager().position("BTCUSDT").unwrap();
    assert_eq!(p.ladder.remaining_qty, dec!(0.026));
    assert_eq!(p.ladder.stage, LadderStage::Tp1Done, "TP2 has not executed");
}

/// Account events sent while the user stream was down are lost: a reconnect makes the core read
/// the account at once (the read then looks up any stop that vanished meanwhile), and the
/// event reaches both the account and the market (stream health) channels.
#[tokio::test]
async fn a_user_stream_reconnect_reads_the_account_at_once() {
    use kinetic::exchange::{EventSinks, StreamEvent};
    let mut core = core_with_position();
    let reconnect = ExchangeEvent::Stream(StreamEvent::Connected { stream: "user".into(), reconnect: true });
    let actions = core.on_account_event(reconnect.clone(), T0 + 1_000);
    assert!(actions.iter().any(|a| matches!(a, Action::Resync)), "{actions:?}");
    // A first connection, or the market stream, is not a reason to read.
    let first = ExchangeEvent::Stream(StreamEvent::Connected { stream: "user".into(), reconnect: false });
    let market = ExchangeEvent::Stream(StreamEvent::Connected { stream: "market".into(), reconnect: true });
    let mut fresh = core_with_position();
    assert!(!fresh.on_account_event(first.clone(), T0).iter().any(|a| matches!(a, Action::Resync)));
    assert!(!fresh.on_account_event(market.clone(), T0).iter().any(|a| matches!(a, Action::Resync)));

    let (mtx, mut mrx) = tokio::sync::mpsc::channel(8);
    let (atx, mut arx) = tokio::sync::mpsc::channel(8);
    let sinks = EventSinks { market: mtx, account: atx };
    sinks.send(reconnect.clone()).await.unwrap();
    sinks.send(market.clone()).await.unwrap();
    assert_eq!(arx.try_recv().ok(), Some(reconnect.clone()));
    assert!(arx.try_recv().is_err(), "only the user stream's reconnect goes to the account channel");
    assert_eq!(mrx.try_recv().ok(), Some(reconnect));
    assert_eq!(mrx.try_recv().ok(), Some(market));
}

/// A stop that triggers while its cancel is in flight (the chaos run found it): the cancel
/// "succeeds" (Binance answers -2011 for a stop already triggered, which the client takes as
/// gone), the fill event is lost with the user stream, and the next account read shows the
/// position gone. The core must look that stop up by client id so the journal gets its
/// execution — not only the stops still resting.
#[test]
fn a_stop_that_fired_while_being_cancelled_is_looked_up_when_the_position_vanishes() {
    use kinetic::manager::commands::AccountSnapshot;
    use kinetic::store::OrderIntent;
    let mut core = core_with_position();
    // TP1 fills; the stop is resized: a new one is placed, then the old one cancelled.
    let cmds = sends(&core.on_mark("BTCUSDT", dec!(61000), T0 + 1, T0 + 1));
    assert_eq!(close_qty(&cmds[0]).1, ExitReason::TakeProfit1);
    let out = core.on_outcome(
        Outcome {
            id: cmds[0].id,
            symbol: "BTCUSDT".into(),
            result: OrderResult::Close(Ok(report(&cmds[0], dec!(0.040), dec!(61000)))),
        },
        T0 + 2,
    );
    let place = sends(&out);
    let Some(OrderRequest::PlaceStop(req)) = place.first().map(|c| c.request.clone()) else {
        panic!("expected the resized stop: {place:?}")
    };
    assert_eq!(req.qty, dec!(0.060));
    let placed = StopOrder {
        symbol: "BTCUSDT".into(),
        algo_id: 2,
        client_id: req.client_id.clone(),
        side: Side::Sell,
        qty: req.qty,
        trigger_price: req.trigger_price,
        reduce_only: true,
        status: StopStatus::New,
        update_time: T0 + 3,
    };
    let out = core.on_outcome(
        Outcome { id: place[0].id, symbol: "BTCUSDT".into(), result: OrderResult::StopPlaced(Ok(placed)) },
        T0 + 3,
    );
    let cancel = sends(&out);
    assert_eq!(cancel.first().map(|c| c.request.clone()), Some(OrderRequest::CancelStop { algo_id: 1 }));
    // Stop 1 had triggered meanwhile: the cancel comes back Ok all the same.
    let out = core.on_outcome(
        Outcome { id: cancel[0].id, symbol: "BTCUSDT".into(), result: OrderResult::StopCancelled(Ok(())) },
        T0 + 4,
    );
    assert!(sends(&out).is_empty(), "{out:?}");
    // The account read: no position, no stops (stop 2 expired with nothing to reduce).
    let out = core.on_snapshot(
        AccountSnapshot { requested_at: T0 + 5, balance: None, positions: Some(vec![]), stops: Some(vec![]) },
        T0 + 6,
    );
    assert!(core.manager().position("BTCUSDT").is_none(), "booked closed");
    // Every stop that may have closed it is looked up, one at a time.
    let mut looked_up = Vec::new();
    let mut next = sends(&out);
    let mut t = T0 + 7;
    while let Some(cmd) = next.first().cloned() {
        let OrderRequest::LookupOrder { client_order_id } = &cmd.request else { panic!("{cmd:?}") };
        looked_up.push(client_order_id.clone());
        let result = if client_order_id == "ke-s-0-1" {
            // The exchange has stop 1's execution: it closed the remaining 0.060.
            Ok(Some(OrderReport {
                symbol: "BTCUSDT".into(),
                client_order_id: client_order_id.clone(),
                order_id: 9,
                side: Side::Sell,
                status: OrderStatus::Filled,
                orig_qty: dec!(0.100),
                executed_qty: dec!(0.060),
                avg_price: dec!(58190),
                reduce_only: true,
                update_time: T0 + 4,
            }))
        } else {
            Ok(None)
        };
        let out =
            core.on_outcome(Outcome { id: cmd.id, symbol: "BTCUSDT".into(), result: OrderResult::Lookup(result) }, t);
        if client_order_id == "ke-s-0-1" {
            let journaled = out.iter().any(|a| {
                matches!(a, Action::Journal(Record::Order(o)) if o.client_order_id == "ke-s-0-1"
                    && o.filled_qty == dec!(0.060) && o.intent == OrderIntent::ProtectiveStop)
            });
            assert!(journaled, "the stop's execution is journaled: {out:?}");
        }
        next = sends(&out);
        t += 1;
        assert!(looked_up.len() < 5, "lookups do not repeat: {looked_up:?}");
    }
    looked_up.sort();
    let mut expected = vec!["ke-s-0-1".to_string(), req.client_id.clone()];
    expected.sort();
    assert_eq!(looked_up, expected);
}

/// A take-profit in flight when the exchange-side stop fills the whole position: the stop's
/// fill books the trade, and the take-profit's refusal (-2022, nothing to reduce) that follows
/// is no failure: the position stays closed (nothing restored), no ERROR is logged, and the
/// exchange is read to confirm.
#[test]
fn a_close_refused_because_the_stop_closed_the_position_first_is_not_an_error() {
    use kinetic::exchange::Fill;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let mut core = core_with_position();
    let stop_price = core.manager().position("BTCUSDT").unwrap().ladder.stop;
    let (records, next) = tracing::subscriber::with_default(subscriber, || {
        let cmds = sends(&core.on_mark("BTCUSDT", dec!(61000), T0 + 1, T0 + 1));
        assert_eq!(close_qty(&cmds[0]), (dec!(0.040), ExitReason::TakeProfit1));
        // Before TP1's answer, the stop fires on a wick and fills the whole 0.100.
        let stop_report = OrderReport {
            symbol: "BTCUSDT".into(),
            client_order_id: "ke-s-0-1".into(),
            order_id: 11,
            side: Side::Sell,
            status: OrderStatus::Filled,
            orig_qty: dec!(0.100),
            executed_qty: dec!(0.100),
            avg_price: stop_price,
            reduce_only: true,
            update_time: T0 + 2,
        };
        let fill = Fill {
            symbol: "BTCUSDT".into(),
            client_order_id: "ke-s-0-1".into(),
            order_id: 11,
            trade_id: 1,
            side: Side::Sell,
            price: stop_price,
            qty: dec!(0.100),
            fee: dec!(2.3),
            realized_pnl: (stop_price - dec!(60000)) * dec!(0.100),
            reduce_only: true,
            time: T0 + 2,
        };
        let mut records =
            core.on_account_event(ExchangeEvent::OrderUpdate { report: stop_report, fill: Some(fill) }, T0 + 2);
        assert!(core.manager().position("BTCUSDT").is_none(), "the stop's fill closed it");
        let refused = ExchangeError::Api { http_status: 400, code: -2022, msg: "ReduceOnly Order is rejected.".into() };
        let out = core.on_outcome(
            Outcome { id: cmds[0].id, symbol: "BTCUSDT".into(), result: OrderResult::Close(Err(refused)) },
            T0 + 3,
        );
        let next = sends(&out);
        records.extend(out);
        (records, next)
    });
    assert!(core.manager().position("BTCUSDT").is_none(), "not restored after its close");
    let closed: Vec<&Action> =
        records.iter().filter(|a| matches!(a, Action::Journal(Record::PositionClosed { .. }))).collect();
    assert_eq!(closed.len(), 1, "{records:?}");
    let Action::Journal(Record::PositionClosed { position, reason, .. }) = closed[0] else { panic!("{closed:?}") };
    assert_eq!((reason.as_str(), position.original_qty), ("stop_loss", dec!(0.100)));
    assert_eq!(next.iter().map(|c| c.request.clone()).collect::<Vec<_>>(), vec![OrderRequest::ReadPosition]);
    let log = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(!log.contains("ERROR"), "{log}");
    assert!(log.contains("close not needed: the position was already closed on the exchange"), "{log}");
}
