//! The backtest's execution — the daemon's trading core against the simulated account, with
//! the intra-candle walk — with hand-made entry plans and candles: exact fills, fees, PnL and
//! exit reasons; the ladder order inside one candle; stop before target; gaps; liquidation;
//! funding; a resting stop on the simulated exchange at every moment.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::path::Path;

use kinetic::backtest::account::TradeRecord;
use kinetic::backtest::market::SimMarket;
use kinetic::backtest::sim::FillModel;
use kinetic::backtest::symbols::SymbolRules;
use kinetic::config::Settings;
use kinetic::core::models::{Candle, Direction, Signal, SymbolFilters, TimeframeIndicators};
use kinetic::data::read_candle_file;
use kinetic::manager::exit_ladder::ExitReason;
use kinetic::manager::position_manager::EntryPlan;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

const T0: i64 = 1_769_904_000_000; // 2026-02-01 00:00 UTC
const Q: i64 = 900_000;
const SYM: &str = "TESTUSDT";

fn rules() -> SymbolRules {
    SymbolRules {
        filters: SymbolFilters {
            symbol: SYM.into(),
            tick_size: dec!(0.01),
            min_price: dec!(0.01),
            max_price: dec!(0),
            step_size: dec!(0.001),
            min_qty: dec!(0.001),
            max_qty: dec!(0),
            market_step_size: dec!(0.001),
            market_min_qty: dec!(0.001),
            market_max_qty: dec!(0),
            min_notional: dec!(5),
            percent_price_up: dec!(1.05),
            percent_price_down: dec!(0.95),
            max_leverage: 125,
        },
        maint_margin_rate: dec!(0.005),
    }
}

fn plan(direction: Direction, stop_distance: Decimal, leverage: u32) -> EntryPlan {
    let stop = match direction {
        Direction::Long => dec!(100) - stop_distance,
        Direction::Short => dec!(100) + stop_distance,
    };
    EntryPlan {
        signal: Signal {
            symbol: SYM.into(),
            direction,
            confidence: 70,
            entry_price: dec!(100),
            stop_loss: stop,
            take_profit: dec!(103),
            atr: 1.0,
            timeframe_alignment: true,
            indicators: TimeframeIndicators::default(),
            timestamp: T0 - 1,
        },
        leverage,
        qty: dec!(10),
        notional: dec!(1000),
        stop_distance,
        max_notional: None,
        high_volatility: false,
    }
}

/// Default settings, taker fee 0.05 %, and the given slippage.
fn setup(slippage_pct: f64) -> SimMarket {
    setup_with(&Settings::defaults().unwrap(), slippage_pct)
}

fn setup_with(settings: &Settings, slippage_pct: f64) -> SimMarket {
    let model = FillModel::from_pct(0.05, 0.02, slippage_pct).unwrap();
    SimMarket::new(settings, &[(SYM.to_string(), rules())], model, dec!(10000), T0).unwrap()
}

/// The executed entry: price, quantity, fee and the protective stop resting on the exchange.
struct EntryFill {
    price: Decimal,
    qty: Decimal,
    fee: Decimal,
    stop: Decimal,
    liquidation_price: Decimal,
}

fn enter(m: &mut SimMarket, plan: EntryPlan) -> EntryFill {
    m.enter_plan(plan, dec!(100), T0);
    let p = m.book().position(SYM, T0).expect("entry filled on the exchange");
    let stops = m.book().open_stops();
    assert_eq!(stops.len(), 1, "one protective stop rests at once");
    assert_eq!(stops[0].qty, p.qty, "the stop covers the position");
    assert_eq!(m.core().manager().position(SYM).unwrap().ladder.stop, stops[0].trigger_price);
    EntryFill {
        price: p.entry_price,
        qty: p.qty,
        fee: m.ledger.fees_paid,
        stop: stops[0].trigger_price,
        liquidation_price: p.liquidation_price.unwrap_or_default(),
    }
}

fn candle(i: i64, open: f64, high: f64, low: f64, close: f64) -> Candle {
    Candle {
        open_time: T0 + i * Q,
        close_time: T0 + (i + 1) * Q - 1,
        open,
        high,
        low,
        close,
        volume: 1000.0,
        quote_volume: 0.0,
        trades: 0,
        taker_buy_volume: 0.0,
        taker_buy_quote_volume: 0.0,
    }
}

/// One step of a random walk: (gap from the last close, upper wick, lower wick, body).
type Step = (f64, f64, f64, f64);

/// Random walks of 1..`max_len` steps, gaps and bodies within ±`body`, wicks up to `wick`.
fn walk_of(body: f64, wick: f64, max_len: usize) -> impl proptest::strategy::Strategy<Value = Vec<Step>> {
    proptest::collection::vec((-body..body, 0.0..wick, 0.0..wick, -body..body), 1..max_len)
}

/// The candle `k` a step makes from the last close `px` (prices kept positive); `px` moves to
/// its close.
fn step_candle(k: i64, px: &mut f64, (gap, up, down, body): Step) -> Candle {
    let open = (*px + gap).max(1.0);
    let close = (open + body).max(1.0);
    *px = close;
    candle(k, open, open.max(close) + up, (open.min(close) - down).max(0.5), close)
}

/// Walks the candles; after each, an open position has a resting stop for its size.
fn replay(m: &mut SimMarket, candles: &[Candle]) {
    for c in candles {
        m.walk_candle(SYM, c, c.close_time + 1);
        if let Some(p) = m.book().position(SYM, c.close_time) {
            let covered: Decimal = m.book().open_stops().iter().map(|s| s.qty).sum();
            assert!(covered >= p.qty, "{} open with only {covered} under stops", p.qty);
        }
    }
}

fn exits(t: &TradeRecord) -> Vec<(String, Decimal, Decimal)> {
    t.exits.iter().map(|e| (e.reason.clone(), e.price, e.qty)).collect()
}

#[test]
fn known_long_trade_has_exact_fills_fees_and_pnl() {
    let mut m = setup(0.0);
    let fill = enter(&mut m, plan(Direction::Long, dec!(2), 5));
    assert_eq!((fill.price, fill.qty, fill.fee, fill.stop), (dec!(100), dec!(10), dec!(0.5), dec!(98)));
    let candles = read_candle_file(Path::new("tests/data/backtest/known_trade_long.csv")).unwrap();
    replay(&mut m, &candles);

    assert!(!m.core().manager().has_position(SYM) && m.book().position(SYM, 0).is_none());
    assert_eq!(m.ledger.trades.len(), 1);
    let t = &m.ledger.trades[0];
    assert_eq!(
        exits(t),
        vec![
            ("take_profit_1".into(), dec!(101.5), dec!(4)),
            ("take_profit_2".into(), dec!(102.5), dec!(3)),
            ("trailing_stop".into(), dec!(102.56), dec!(3)),
        ]
    );
    assert_eq!(t.exit_reason, ExitReason::TrailingStop);
    // 4 × 1.5 + 3 × 2.5 + 3 × 2.56
    assert_eq!(t.gross_pnl, dec!(21.18));
    // entry 0.5 + 101.5×4×0.0005 + 102.5×3×0.0005 + 102.56×3×0.0005
    assert_eq!(t.fees, dec!(1.01059));
    assert_eq!(t.net_pnl, dec!(20.16941));
    assert_eq!(t.exit_price, dec!(102.118));
    assert_eq!(t.exit_time, candles[2].close_time + 1);
    assert_eq!(m.ledger.wallet, dec!(10020.16941));
    assert_eq!(m.ledger.fees_paid, dec!(1.01059));
}

#[test]
fn slippage_moves_every_market_fill_against_the_trader() {
    let mut m = setup(0.02);
    let fill = enter(&mut m, plan(Direction::Long, dec!(2), 5));
    // 100 × 1.0002 = 100.02; the stop keeps the plan's distance from the fill.
    assert_eq!((fill.price, fill.stop), (dec!(100.02), dec!(98.02)));
    assert_eq!(fill.fee, dec!(0.50010));
    replay(&mut m, &[candle(0, 100.02, 100.5, 97.0, 97.5)]);
    let t = &m.ledger.trades[0];
    // Stop 98.02 sold 0.02 % lower, rounded down to the tick: 98.000396 → 98.
    assert_eq!(exits(t), vec![("stop_loss".into(), dec!(98), dec!(10))]);
    assert_eq!(t.gross_pnl, dec!(-20.2));
}

#[test]
fn ladder_order_inside_one_candle_is_tp1_tp2_then_trailing() {
    let mut m = setup(0.0);
    enter(&mut m, plan(Direction::Long, dec!(2), 5));
    // One candle: dips to 99.9, spikes to 104 (TP1, TP2, trailing from 103 → stop 102.96),
    // closes at 102.5 (through the trailing stop).
    replay(&mut m, &[candle(0, 100.0, 104.0, 99.9, 102.5)]);
    let t = &m.ledger.trades[0];
    assert_eq!(
        exits(t),
        vec![
            ("take_profit_1".into(), dec!(101.5), dec!(4)),
            ("take_profit_2".into(), dec!(102.5), dec!(3)),
            ("trailing_stop".into(), dec!(102.96), dec!(3)),
        ]
    );
    let times: Vec<i64> = t.exits.iter().map(|e| e.time).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn stop_and_target_in_one_candle_assume_the_stop() {
    let mut m = setup(0.0);
    enter(&mut m, plan(Direction::Long, dec!(2), 5));
    replay(&mut m, &[candle(0, 100.0, 102.0, 97.5, 101.0)]);
    let t = &m.ledger.trades[0];
    assert_eq!(exits(t), vec![("stop_loss".into(), dec!(98), dec!(10))]);
    assert_eq!(t.exit_reason, ExitReason::StopLoss);
    assert_eq!(t.net_pnl, dec!(-20) - dec!(0.5) - dec!(0.49));

    // Same for a short: the high (adverse) comes before the low.
    let mut m = setup(0.0);
    enter(&mut m, plan(Direction::Short, dec!(2), 5));
    replay(&mut m, &[candle(0, 100.0, 102.5, 97.0, 99.0)]);
    assert_eq!(exits(&m.ledger.trades[0]), vec![("stop_loss".into(), dec!(102), dec!(10))]);
}

#[test]
fn a_gap_through_the_stop_fills_at_the_open() {
    let mut m = setup(0.0);
    enter(&mut m, plan(Direction::Long, dec!(2), 5));
    replay(&mut m, &[candle(0, 100.0, 100.5, 99.0, 99.5), candle(1, 97.0, 97.5, 96.0, 96.5)]);
    assert_eq!(exits(&m.ledger.trades[0]), vec![("stop_loss".into(), dec!(97), dec!(10))]);
}

#[test]
fn liquidation_when_the_stop_lies_beyond_the_liquidation_price() {
    // 20x long from 100, maintenance 0.5 %: liquidation at 95 / 0.995 ≈ 95.477, stop at 94.
    // A stop 6 % away needs `strategy.max_stop_pct` above the default 3 %: the manager re-caps
    // the plan's stop distance at that percentage of the fill.
    let mut settings = Settings::defaults().unwrap();
    settings.strategy.max_stop_pct = 10.0;
    let mut m = setup_with(&settings, 0.0);
    let fill = enter(&mut m, plan(Direction::Long, dec!(6), 20));
    assert!(fill.liquidation_price > dec!(95.47) && fill.liquidation_price < dec!(95.48));
    // 95.6 does not reach it ...
    replay(&mut m, &[candle(0, 100.0, 100.2, 95.6, 99.0)]);
    assert!(m.core().manager().has_position(SYM));
    // ... 95.4 does: the whole isolated margin (100 × 10 / 20 = 50) is lost.
    replay(&mut m, &[candle(1, 99.0, 99.2, 95.4, 96.0)]);
    assert!(!m.core().manager().has_position(SYM) && m.book().position(SYM, 0).is_none());
    let t = &m.ledger.trades[0];
    assert_eq!(t.exit_reason, ExitReason::Liquidation);
    assert_eq!(exits(t), vec![("liquidation".into(), dec!(95), dec!(10))]);
    assert_eq!(t.gross_pnl, dec!(-50));
    assert_eq!(t.net_pnl, dec!(-50.5));
    assert_eq!(m.ledger.wallet, dec!(9949.5));
}

#[test]
fn the_stop_wins_when_it_comes_before_the_liquidation_price() {
    // 20x, stop at 98 (before 95.48): a candle down to 90 stops out at 98, no liquidation.
    let mut m = setup(0.0);
    enter(&mut m, plan(Direction::Long, dec!(2), 20));
    replay(&mut m, &[candle(0, 100.0, 100.5, 90.0, 91.0)]);
    assert_eq!(m.ledger.trades[0].exit_reason, ExitReason::StopLoss);
    // But a candle that OPENS beyond the liquidation price liquidates (short, 20x from 100:
    // liquidation ≈ 104.48, bankruptcy 105).
    let mut m = setup(0.0);
    enter(&mut m, plan(Direction::Short, dec!(2), 20));
    replay(&mut m, &[candle(0, 100.0, 100.5, 99.5, 100.2), candle(1, 104.7, 105.0, 104.0, 104.5)]);
    let t = &m.ledger.trades[0];
    assert_eq!(t.exit_reason, ExitReason::Liquidation);
    assert_eq!(exits(t), vec![("liquidation".into(), dec!(105), dec!(10))]);
}

#[test]
fn funding_is_paid_by_longs_and_lands_in_the_trade() {
    let mut m = setup(0.0);
    enter(&mut m, plan(Direction::Long, dec!(2), 5));
    assert!(m.settle_funding(SYM, dec!(0.0001), T0 + 1));
    assert_eq!(m.ledger.funding_paid, dec!(0.1));
    assert!(m.settle_funding(SYM, dec!(-0.0002), T0 + 2));
    assert_eq!(m.ledger.funding_paid, dec!(-0.1));
    replay(&mut m, &[candle(0, 100.0, 100.5, 97.0, 97.5)]);
    let t = &m.ledger.trades[0];
    assert_eq!(t.funding, dec!(-0.1));
    assert_eq!(t.net_pnl, t.gross_pnl - t.fees - t.funding);
    assert_eq!(m.ledger.wallet, dec!(10000) + t.net_pnl);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Whatever the path: the exits add up to the entry quantity, each trade's net PnL is
        /// gross − fees − funding, and the wallet moves by exactly the sum of net PnL.
        #[test]
        fn money_is_conserved(
            steps in walk_of(3.0, 2.5, 40),
            long in any::<bool>(),
            stop_tenths in 5i64..60,
            leverage in 1u32..=50,
            funding_every in 1usize..8,
        ) {
            let mut m = setup(0.02);
            let dir = if long { Direction::Long } else { Direction::Short };
            enter(&mut m, plan(dir, Decimal::new(stop_tenths, 1), leverage));
            let mut px = 100.0f64;
            for (i, step) in steps.iter().enumerate() {
                let c = step_candle(i as i64, &mut px, *step);
                replay(&mut m, &[c]);
                if i % funding_every == 0 {
                    m.settle_funding(SYM, dec!(0.0001), T0 + (i as i64 + 1) * Q);
                }
            }
            m.close_all(ExitReason::EndOfData, T0 + 99 * Q);
            prop_assert!(!m.core().manager().has_position(SYM) && m.book().position(SYM, 0).is_none());
            prop_assert_eq!(m.ledger.trades.len(), 1);
            let t = &m.ledger.trades[0];
            let exit_qty: Decimal = t.exits.iter().map(|e| e.qty).sum();
            prop_assert_eq!(exit_qty, t.qty);
            prop_assert_eq!(t.net_pnl, t.gross_pnl - t.fees - t.funding);
            prop_assert_eq!(m.ledger.wallet, m.ledger.starting_balance + t.net_pnl);
            prop_assert_eq!(m.ledger.fees_paid, t.fees);
            prop_assert_eq!(m.ledger.funding_paid, t.funding);
            // A liquidated trade loses exactly its isolated margin (plus the entry fee).
            if t.exit_reason == ExitReason::Liquidation && t.exits.len() == 1 {
                let margin = t.entry_price * t.qty / Decimal::from(leverage);
                // (equal up to Decimal's 28-digit rounding of 1/leverage)
                prop_assert!((t.gross_pnl + margin).abs() < dec!(0.000000001), "{} vs {}", t.gross_pnl, margin);
            }
        }
    }
}

#[test]
fn a_fill_above_the_notional_cap_is_trimmed_back_under_it_once_the_stop_rests() {
    // 0.5 % slippage: 10 at 100 fill at 100.5, a notional of 1 005 against a 1 000 cap.
    let mut m = setup(0.5);
    let mut p = plan(Direction::Long, dec!(2), 5);
    p.max_notional = Some(dec!(1000));
    m.enter_plan(p, dec!(100), T0);
    let pos = m.book().position(SYM, T0).unwrap();
    assert_eq!(pos.entry_price, dec!(100.5));
    // floor(1000 / 100.5) to the 0.001 step = 9.950: 0.050 closed, reduce-only.
    assert_eq!(pos.qty, dec!(9.950));
    assert!(pos.qty * pos.entry_price <= dec!(1000));
    let stops = m.book().open_stops();
    assert_eq!(stops.len(), 1, "the stop was resized, not doubled");
    assert_eq!(stops[0].qty, dec!(9.950));
    let tracked = m.core().manager().position(SYM).unwrap();
    assert_eq!(tracked.ladder.remaining_qty, dec!(9.950));
    assert_eq!(tracked.position.partial_exits.len(), 1);
    assert_eq!(tracked.position.partial_exits[0].reason, "notional_trim");
    assert_eq!(tracked.position.partial_exits[0].qty, dec!(0.050));
    // Without a cap (or under it) nothing is trimmed.
    let mut m = setup(0.5);
    let mut p = plan(Direction::Long, dec!(2), 5);
    p.max_notional = Some(dec!(1005));
    m.enter_plan(p, dec!(100), T0);
    assert_eq!(m.book().position(SYM, T0).unwrap().qty, dec!(10));
    assert!(m.core().manager().position(SYM).unwrap().position.partial_exits.is_empty());
}

/// The backtest stores a mark that lands where nothing can happen (the core's and the book's
/// quiet band) instead of running the whole core: on any path, with two positions sharing the
/// account and loss limits tight enough to fire, the results equal those of running every
/// mark through the core, in value and in scale.
mod quiet_marks {
    use super::*;
    use proptest::prelude::*;

    const TWO: &str = "TWOUSDT";

    fn two_symbol_market(settings: &Settings, every_mark: bool) -> SimMarket {
        let model = FillModel::from_pct(0.05, 0.02, 0.02).unwrap();
        let mut two = rules();
        two.filters.symbol = TWO.into();
        let symbols = [(SYM.to_string(), rules()), (TWO.to_string(), two)];
        let mut m = SimMarket::new(settings, &symbols, model, dec!(10000), T0).unwrap();
        if every_mark {
            m.run_every_mark();
        }
        m
    }

    /// Everything a run leaves behind, printed with each decimal's scale.
    fn state(m: &SimMarket) -> String {
        let pm = m.core().manager();
        format!(
            "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?} {:?} {:?} {:?}\n{:?}",
            pm.position(SYM),
            pm.position(TWO),
            pm.risk,
            pm.emergency(),
            m.book().open_stops(),
            (m.book().position(SYM, 0), m.book().position(TWO, 0)),
            m.ledger.wallet,
            m.ledger.fees_paid,
            m.ledger.funding_paid,
            m.equity(),
            m.ledger.trades,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn storing_quiet_marks_gives_the_same_run_as_running_every_mark(
            one in walk_of(2.0, 2.0, 30),
            two in walk_of(2.0, 2.0, 30),
            long_one in any::<bool>(),
            long_two in any::<bool>(),
            stop_tenths in 5i64..60,
            leverage in 1u32..=50,
            emergency_tenths in 1u32..60,
            daily_tenths in 1u32..60,
            trail_tenths in 1u32..30,
            hours_apart in any::<bool>(),
            funding_every in 1usize..6,
        ) {
            let mut settings = Settings::defaults().unwrap();
            settings.risk.emergency_loss_pct = f64::from(emergency_tenths) / 10.0;
            settings.risk.daily_loss_limit_pct = f64::from(daily_tenths) / 10.0;
            settings.strategy.trail_pct = f64::from(trail_tenths) / 10.0;
            // Stops up to 6 % away: at high leverage the liquidation price comes first.
            settings.strategy.max_stop_pct = 10.0;
            let mut runs = Vec::new();
            for every_mark in [false, true] {
                let mut m = two_symbol_market(&settings, every_mark);
                let dir = |long: bool| if long { Direction::Long } else { Direction::Short };
                m.enter_plan(plan(dir(long_one), Decimal::new(stop_tenths, 1), leverage), dec!(100), T0);
                let mut second = plan(dir(long_two), Decimal::new(stop_tenths, 1), leverage);
                second.signal.symbol = TWO.into();
                m.enter_plan(second, dec!(100), T0);
                let (mut a, mut b) = (100.0f64, 100.0f64);
                let mut trace = Vec::new();
                // Candles 15 minutes apart, or 15-minute candles 5 hours apart (UTC days roll).
                let spacing = if hours_apart { 20 } else { 1 };
                for i in 0..one.len().max(two.len()) {
                    let k = i as i64 * spacing;
                    for (sym, steps, px) in [(SYM, &one, &mut a), (TWO, &two, &mut b)] {
                        let Some(step) = steps.get(i) else { continue };
                        let c = step_candle(k, px, *step);
                        m.walk_candle(sym, &c, c.close_time + 1);
                    }
                    let now = T0 + (k + 1) * Q;
                    if i % funding_every == 0 {
                        m.settle_funding(SYM, dec!(0.0001), now);
                        m.settle_funding(TWO, dec!(-0.0002), now);
                    }
                    m.tick(now);
                    trace.push(state(&m));
                }
                m.close_all(ExitReason::EndOfData, T0 + 999 * Q);
                trace.push(state(&m));
                runs.push((trace, m.quiet_marks));
            }
            let (skipping, every) = (&runs[0], &runs[1]);
            prop_assert_eq!(every.1, 0);
            for (step, (x, y)) in skipping.0.iter().zip(&every.0).enumerate() {
                prop_assert_eq!(x, y, "after step {}", step);
            }
        }
    }

    /// The shortcut is taken at all (else the property above would prove nothing).
    #[test]
    fn quiet_marks_are_found_on_a_calm_path() {
        let settings = Settings::defaults().unwrap();
        let mut m = two_symbol_market(&settings, false);
        m.enter_plan(plan(Direction::Long, dec!(3), 5), dec!(100), T0);
        for i in 0..20 {
            let c = candle(i, 100.0, 100.6, 99.5, 100.1);
            m.walk_candle(SYM, &c, c.close_time + 1);
        }
        assert!(m.quiet_marks >= 20, "{} quiet marks", m.quiet_marks);
    }
}
