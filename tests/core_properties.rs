//! Property 12 (issue 11): the trading core keeps every position protected and its books right
//! while the exchange misbehaves. A proptest drives [`TradingCore`] synchronously through
//! random event sequences against a simulated exchange written here, independently of the
//! crate's paper exchange: it holds signed positions per symbol with their entry, resting
//! reduce-only stop orders (algo id, side, quantity, mark-price trigger) and the orders it
//! executed; it executes the core's commands (market closes reduce-only, clamped to the
//! position; stop placements, refused with -2021 when they would trigger at once; cancels;
//! position reads; order look-ups), triggers stops when the mark crosses them and fills them at
//! the mark, and emits the account stream (ORDER_TRADE_UPDATE, ALGO_UPDATE, ACCOUNT_UPDATE with
//! absolute sizes).
//!
//! Failures are injected per command: a definite refusal (-4131, not executed), an unknown
//! outcome (executed or not), a partial fill of a market close, and delays (every outcome is
//! held until the sequence delivers it, in any order across symbols, so several requests are
//! in flight at once; a command executes either when it is sent or when its outcome is
//! delivered). Account-stream messages are delivered late and some are lost; full account reads
//! come now and then.
//!
//! Quiescence: every outcome and account message still pending is delivered (a full account
//! read first when stream messages were lost, since nothing else could tell the core), then one
//! monitor tick (past the stop-fill grace), then the outcomes it causes. Commands sent during
//! quiescence get no injected failure.
//!
//! Invariants: (a) after quiescence every exchange position is covered by resting stops for
//! its full size, and at no moment does a cancel leave a position with less coverage than
//! before (checked whether or not a close is in flight); (b) after quiescence the core tracks
//! exactly the exchange's positions (symbol, size, direction), sees exactly the exchange's
//! resting stops, has nothing in flight, and no stop rests on a flat symbol; (c) no client
//! order id is used twice, at most one request is in flight per symbol plus one emergency
//! close, closes are reduce-only and never larger than what the core tracked or the exchange
//! reported (an emergency close: than the position at its largest); (d) TP1 and TP2 each
//! execute at most once per position, and every level the ladder marks done executed.
//!
//! Below the property: the shrunk cases it found in the core, as plain regression tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use rust_decimal::Decimal;
use rust_decimal::prelude::*;
use rust_decimal_macros::dec;

use kinetic::analyzer::entry_exit::round_stop;
use kinetic::config::Settings;
use kinetic::core::models::{Direction, LadderStage, OrderStatus, Position, Side, round_to_increment};
use kinetic::exchange::{
    AccountBalance, ExchangeError, ExchangeEvent, ExchangePosition, Fill, MarketOrderRequest, OrderReport, StopOrder,
    StopRequest, StopStatus, SymbolInfo,
};
use kinetic::manager::commands::{AccountSnapshot, Action, Command, OrderRequest, OrderResult, Outcome};
use kinetic::manager::exit_ladder::ExitReason;
use kinetic::manager::reconcile::ExchangeHolding;
use kinetic::manager::trading_core::TradingCore;

const SYMBOLS: [&str; 3] = ["AAAUSDT", "BBBUSDT", "CCCUSDT"];
const T0: i64 = 1_700_000_000_000;
const TICK: Decimal = dec!(0.01);
const STEP: Decimal = dec!(0.001);
/// Event sequences per run (about 4 s in a debug build).
const CASES: u32 = 1024;

// ------------------------------------------------------------------------------ simulated exchange

fn refusal() -> ExchangeError {
    ExchangeError::Api {
        http_status: 400,
        code: -4131,
        msg: "The counterparty's best price does not meet the PERCENT_PRICE filter limit.".into(),
    }
}

fn unknown(id: &str) -> ExchangeError {
    ExchangeError::UnknownOutcome {
        client_order_id: id.to_string(),
        detail: "request sent, no answer before the timeout".into(),
        cause: None,
    }
}

fn api(code: i64, msg: &str) -> ExchangeError {
    ExchangeError::Api { http_status: 400, code, msg: msg.to_string() }
}

fn exit_side_of(signed: Decimal) -> Side {
    if signed > Decimal::ZERO { Side::Sell } else { Side::Buy }
}

#[derive(Debug, Clone)]
struct SimPos {
    /// Positive long, negative short.
    qty: Decimal,
    entry: Decimal,
}

#[derive(Debug, Clone)]
struct SimStop {
    symbol: String,
    algo_id: i64,
    client_id: String,
    side: Side,
    qty: Decimal,
    trigger: Decimal,
    placed_at: i64,
}

impl SimStop {
    fn order(&self, status: StopStatus, at: i64) -> StopOrder {
        StopOrder {
            symbol: self.symbol.clone(),
            algo_id: self.algo_id,
            client_id: self.client_id.clone(),
            side: self.side,
            qty: self.qty,
            trigger_price: self.trigger,
            reduce_only: true,
            status,
            update_time: at,
        }
    }

    fn crossed(&self, mark: Decimal) -> bool {
        match self.side {
            Side::Sell => mark <= self.trigger,
            Side::Buy => mark >= self.trigger,
        }
    }
}

/// The exchange: one-way positions, reduce-only stops, executed orders, the account stream.
#[derive(Debug, Default)]
struct Sim {
    now: i64,
    wallet: Decimal,
    marks: BTreeMap<String, Decimal>,
    positions: BTreeMap<String, SimPos>,
    stops: BTreeMap<i64, SimStop>,
    /// Executed orders by client id (market orders and triggered stops), for look-ups.
    orders: BTreeMap<String, OrderReport>,
    next_id: i64,
    stream: VecDeque<ExchangeEvent>,
}

impl Sim {
    fn id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    fn signed(&self, symbol: &str) -> Decimal {
        self.positions.get(symbol).map(|p| p.qty).unwrap_or_default()
    }

    fn position(&self, symbol: &str) -> Option<ExchangePosition> {
        let p = self.positions.get(symbol).filter(|p| !p.qty.is_zero())?;
        let mark = self.marks[symbol];
        Some(ExchangePosition {
            symbol: symbol.to_string(),
            direction: if p.qty > Decimal::ZERO { Direction::Long } else { Direction::Short },
            qty: p.qty.abs(),
            entry_price: p.entry,
            mark_price: mark,
            unrealized_pnl: (mark - p.entry) * p.qty,
            leverage: 5,
            liquidation_price: None,
            update_time: self.now,
        })
    }

    /// The absolute size as ACCOUNT_UPDATE reports it (zero when flat).
    fn reported(&self, symbol: &str) -> ExchangePosition {
        self.position(symbol).unwrap_or(ExchangePosition {
            symbol: symbol.to_string(),
            direction: Direction::Long,
            qty: Decimal::ZERO,
            entry_price: Decimal::ZERO,
            mark_price: self.marks.get(symbol).copied().unwrap_or(Decimal::ONE),
            unrealized_pnl: Decimal::ZERO,
            leverage: 5,
            liquidation_price: None,
            update_time: self.now,
        })
    }

    fn balance(&self) -> AccountBalance {
        let upnl: Decimal = self.positions.iter().map(|(s, p)| (self.marks[s] - p.entry) * p.qty).sum();
        AccountBalance {
            wallet_balance: self.wallet,
            equity: self.wallet + upnl,
            available_balance: self.wallet + upnl.min(Decimal::ZERO),
            unrealized_pnl: upnl,
        }
    }

    /// Stop coverage of the symbol's position: resting exit-side stop quantity, capped at the
    /// position's size.
    fn coverage(&self, symbol: &str) -> Decimal {
        let signed = self.signed(symbol);
        if signed.is_zero() {
            return Decimal::ZERO;
        }
        let side = exit_side_of(signed);
        let total: Decimal = self.stops.values().filter(|s| s.symbol == symbol && s.side == side).map(|s| s.qty).sum();
        total.min(signed.abs())
    }

    fn account_update(&mut self, symbol: &str) {
        let ev = ExchangeEvent::AccountUpdate {
            balance: Some(self.balance()),
            positions: vec![self.reported(symbol)],
            time: self.now,
            transfer: None,
        };
        self.stream.push_back(ev);
    }

    /// Reduces the symbol's position by `qty` (on its exit side) at the mark; returns the fill.
    fn reduce(&mut self, symbol: &str, qty: Decimal, client_order_id: &str, order_id: i64) -> Fill {
        let mark = self.marks[symbol];
        let p = self.positions.get_mut(symbol).unwrap();
        let side = exit_side_of(p.qty);
        let sign = if p.qty > Decimal::ZERO { Decimal::ONE } else { Decimal::NEGATIVE_ONE };
        let realized = (mark - p.entry) * qty * sign;
        p.qty -= qty * sign;
        if p.qty.is_zero() {
            self.positions.remove(symbol);
        }
        self.wallet += realized;
        let trade_id = self.id();
        Fill {
            symbol: symbol.to_string(),
            client_order_id: client_order_id.to_string(),
            order_id,
            trade_id,
            side,
            price: mark,
            qty,
            fee: Decimal::ZERO,
            realized_pnl: realized,
            reduce_only: true,
            time: self.now,
        }
    }

    /// A reduce-only market order: clamped to the position, refused (-2022) when there is
    /// nothing to reduce on its side; `partial` executes only that percentage of it.
    fn market_close(&mut self, req: &MarketOrderRequest, partial: Option<u8>) -> Result<OrderReport, ExchangeError> {
        let signed = self.signed(&req.symbol);
        if signed.is_zero() || exit_side_of(signed) != req.side {
            return Err(api(-2022, "ReduceOnly Order is rejected."));
        }
        let mut qty = req.qty.min(signed.abs());
        let mut status = OrderStatus::Filled;
        if let Some(pct) = partial {
            let part =
                round_to_increment(qty * Decimal::from(pct) / Decimal::ONE_HUNDRED, STEP, RoundingStrategy::ToZero);
            if part > Decimal::ZERO && part < qty {
                qty = part;
                status = OrderStatus::Expired;
            }
        }
        let order_id = self.id();
        let fill = self.reduce(&req.symbol, qty, &req.client_order_id, order_id);
        let report = OrderReport {
            symbol: req.symbol.clone(),
            client_order_id: req.client_order_id.clone(),
            order_id,
            side: req.side,
            status,
            orig_qty: req.qty,
            executed_qty: qty,
            avg_price: fill.price,
            reduce_only: true,
            update_time: self.now,
        };
        self.orders.insert(req.client_order_id.clone(), report.clone());
        self.stream.push_back(ExchangeEvent::OrderUpdate { report: report.clone(), fill: Some(fill) });
        self.account_update(&req.symbol);
        Ok(report)
    }

    fn place_stop(&mut self, req: &StopRequest) -> Result<StopOrder, ExchangeError> {
        let mark = self.marks[&req.symbol];
        let immediate = match req.side {
            Side::Sell => mark <= req.trigger_price,
            Side::Buy => mark >= req.trigger_price,
        };
        if immediate {
            return Err(api(-2021, "Order would immediately trigger."));
        }
        let algo_id = self.id();
        let stop = SimStop {
            symbol: req.symbol.clone(),
            algo_id,
            client_id: req.client_id.clone(),
            side: req.side,
            qty: req.qty,
            trigger: req.trigger_price,
            placed_at: self.now,
        };
        let order = stop.order(StopStatus::New, self.now);
        self.stops.insert(algo_id, stop);
        self.stream.push_back(ExchangeEvent::StopUpdate(order.clone()));
        Ok(order)
    }

    /// Already gone counts as success (the `Exchange` contract; the Binance client maps -2011
    /// and -2013 to it).
    fn cancel_stop(&mut self, symbol: &str, algo_id: i64) -> Result<(), ExchangeError> {
        if self.stops.get(&algo_id).is_some_and(|s| s.symbol == symbol) {
            let s = self.stops.remove(&algo_id).unwrap();
            self.stream.push_back(ExchangeEvent::StopUpdate(s.order(StopStatus::Canceled, self.now)));
        }
        Ok(())
    }

    fn cancel_all(&mut self, symbol: &str) {
        let ids: Vec<i64> = self.stops.values().filter(|s| s.symbol == symbol).map(|s| s.algo_id).collect();
        for id in ids {
            let _ = self.cancel_stop(symbol, id);
        }
    }

    /// A new mark: every stop it crosses triggers and fills at the mark (reduce-only: what is
    /// left of the position on its side, else it expires).
    fn set_mark(&mut self, symbol: &str, mark: Decimal) -> Vec<String> {
        self.marks.insert(symbol.to_string(), mark);
        let hit: Vec<i64> =
            self.stops.values().filter(|s| s.symbol == symbol && s.crossed(mark)).map(|s| s.algo_id).collect();
        let mut log = Vec::new();
        for id in hit {
            let stop = self.stops.remove(&id).unwrap();
            let signed = self.signed(symbol);
            if signed.is_zero() || exit_side_of(signed) != stop.side {
                self.stream.push_back(ExchangeEvent::StopUpdate(stop.order(StopStatus::Expired, self.now)));
                log.push(format!("  stop {} ({} @ {}) expired", stop.algo_id, stop.qty, stop.trigger));
                continue;
            }
            let qty = stop.qty.min(signed.abs());
            self.stream.push_back(ExchangeEvent::StopUpdate(stop.order(StopStatus::Triggered, self.now)));
            let order_id = self.id();
            let fill = self.reduce(symbol, qty, &stop.client_id, order_id);
            let report = OrderReport {
                symbol: symbol.to_string(),
                client_order_id: stop.client_id.clone(),
                order_id,
                side: stop.side,
                status: OrderStatus::Filled,
                orig_qty: stop.qty,
                executed_qty: qty,
                avg_price: mark,
                reduce_only: true,
                update_time: self.now,
            };
            self.orders.insert(stop.client_id.clone(), report.clone());
            self.stream.push_back(ExchangeEvent::OrderUpdate { report, fill: Some(fill) });
            self.account_update(symbol);
            self.stream.push_back(ExchangeEvent::StopUpdate(stop.order(StopStatus::Finished, self.now)));
            log.push(format!("  stop {} ({} @ {}) filled {qty} at {mark}", stop.algo_id, stop.qty, stop.trigger));
        }
        log
    }

    fn snapshot(&self, requested_at: i64) -> AccountSnapshot {
        AccountSnapshot {
            requested_at,
            balance: Some(self.balance()),
            positions: Some(SYMBOLS.iter().filter_map(|s| self.position(s)).collect()),
            stops: Some(self.stops.values().map(|s| s.order(StopStatus::New, s.placed_at)).collect()),
        }
    }
}

// ------------------------------------------------------------------------------ the harness

/// What happens to one command.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// A definite refusal (-4131): not executed.
    Refuse,
    /// No answer: executed or not.
    Unknown {
        executed: bool,
    },
    /// A market close executes only this percentage (other commands: no fault).
    Partial(u8),
}

#[derive(Debug, Clone, Copy)]
struct Plan {
    fault: Fault,
    /// Executed when sent (the answer is what is delayed) or when its outcome is delivered.
    exec_at_send: bool,
}

#[derive(Debug, Clone)]
enum Ev {
    /// Mark move of a symbol in basis points.
    Price {
        sym: usize,
        bp: i64,
    },
    /// The 5 s monitor tick.
    Tick,
    /// Deliver one pending outcome (index modulo the number pending).
    Deliver {
        pick: usize,
    },
    /// Deliver the next account-stream messages (some are lost).
    Account {
        n: usize,
    },
    /// A full account read (the pending resync, or an unsolicited one).
    Snapshot,
    Wait {
        ms: i64,
    },
    /// Quiescence and the invariants, then go on.
    Settle,
}

#[derive(Debug, Clone)]
struct StartPos {
    long: bool,
    entry_cents: i64,
    qty_milli: i64,
    /// 0 = adopted (no journal), 1..=4 = journal position at Open, Tp1Done, Tp2Done, Trailing.
    stage: u8,
    /// 0 = no stop resting, 1 = a matching stop, 2 = an outdated one (the original size).
    stop: u8,
}

struct Pending {
    cmd: Command,
    plan: Plan,
    result: Option<OrderResult>,
}

struct Harness {
    core: TradingCore,
    sim: Sim,
    pending: Vec<Pending>,
    resync: Option<i64>,
    plans: Vec<Plan>,
    next_plan: usize,
    faults_on: bool,
    drops: Vec<bool>,
    next_drop: usize,
    dropped: bool,
    used_ids: BTreeSet<String>,
    /// Take-profit closes the exchange executed, per symbol and level.
    tp_executed: BTreeMap<(String, ExitReason), u32>,
    /// Each position's size at its largest (at start: nothing opens during a run).
    largest: BTreeMap<String, Decimal>,
    /// Each position's ladder stage at start.
    start_stage: BTreeMap<String, LadderStage>,
    trace: Vec<String>,
}

fn stage_of(n: u8) -> LadderStage {
    match n {
        1 => LadderStage::Open,
        2 => LadderStage::Tp1Done,
        3 => LadderStage::Tp2Done,
        _ => LadderStage::Trailing,
    }
}

/// A journal position at `stage`, as the ladder would have left it (TP1 40 %, TP2 30 % of the
/// original size, rounded down to the step; stop 3 % away, trailing 1 % behind the best).
fn journal_position(symbol: &str, dir: Direction, entry: Decimal, original: Decimal, stage: LadderStage) -> Position {
    let floor = |q: Decimal| round_to_increment(q, STEP, RoundingStrategy::ToZero);
    let tp1 = floor(original * dec!(0.4));
    let tp2 = floor(original * dec!(0.3));
    let (qty, best_move) = match stage {
        LadderStage::Open => (original, dec!(0.005)),
        LadderStage::Tp1Done => (original - tp1, dec!(0.018)),
        LadderStage::Tp2Done => (original - tp1 - tp2, dec!(0.027)),
        LadderStage::Trailing => (original - tp1 - tp2, dec!(0.034)),
    };
    let best = round_to_increment(entry * (Decimal::ONE + best_move * dir.sign()), TICK, RoundingStrategy::ToZero);
    let stop = if stage == LadderStage::Trailing {
        round_stop(dir, best * (Decimal::ONE - dec!(0.01) * dir.sign()), TICK)
    } else {
        round_stop(dir, entry * (Decimal::ONE - dec!(0.03) * dir.sign()), TICK)
    };
    Position {
        symbol: symbol.to_string(),
        direction: dir,
        entry_price: entry,
        original_qty: original,
        qty,
        leverage: 5,
        stop_loss: stop,
        take_profit: entry * (Decimal::ONE + dec!(0.03) * dir.sign()),
        trailing_stop: (stage == LadderStage::Trailing).then_some(stop),
        partial_exits: Vec::new(),
        best_price: best,
        peak_pnl: Decimal::ZERO,
        stage,
        entry_time: T0 - 3_600_000,
    }
}

impl Harness {
    fn new(start: &[StartPos], wallet: i64, plans: Vec<Plan>, drops: Vec<bool>) -> Result<Harness, TestCaseError> {
        let settings = Settings::defaults().unwrap();
        let wallet = Decimal::from(wallet);
        let mut core = TradingCore::new(&settings, T0, wallet).unwrap();
        core.set_symbols(
            SYMBOLS.iter().map(|s| SymbolInfo { filters: common::filters(s), max_leverage: 20 }).collect(),
        );
        let mut sim = Sim { now: T0, wallet, next_id: 1000, ..Sim::default() };
        let mut known = Vec::new();
        let mut holdings = Vec::new();
        for (i, sp) in start.iter().enumerate() {
            let symbol = SYMBOLS[i];
            let dir = if sp.long { Direction::Long } else { Direction::Short };
            let entry = Decimal::new(sp.entry_cents, 2);
            let original = Decimal::new(sp.qty_milli, 3);
            // The mark starts at the entry (adopted) or at the journal's best price.
            let (qty, mark) = if sp.stage == 0 {
                (original, entry)
            } else {
                let p = journal_position(symbol, dir, entry, original, stage_of(sp.stage));
                let q = (p.qty, p.best_price);
                known.push(p);
                q
            };
            sim.marks.insert(symbol.to_string(), mark);
            sim.positions.insert(symbol.to_string(), SimPos { qty: qty * dir.sign(), entry });
            holdings.push(ExchangeHolding {
                symbol: symbol.to_string(),
                signed_qty: qty * dir.sign(),
                entry_price: entry,
                mark_price: mark,
                leverage: 5,
            });
        }
        for s in SYMBOLS {
            sim.marks.entry(s.to_string()).or_insert(dec!(100));
        }
        core.set_balance(&sim.balance(), T0);
        core.set_exchange_positions(SYMBOLS.iter().filter_map(|s| sim.position(s)).collect());
        let mut actions = Vec::new();
        core.apply_reconcile(&mut actions, &known, &holdings, true, T0);
        // Stops resting at start: matching the core's ladder, or outdated (the original size).
        for (i, sp) in start.iter().enumerate() {
            let symbol = SYMBOLS[i];
            let Some(m) = core.manager().position(symbol) else { continue };
            let qty = match sp.stop {
                1 => m.ladder.remaining_qty,
                2 => m.ladder.original_qty.max(m.ladder.remaining_qty + STEP),
                _ => continue,
            };
            let req = StopRequest {
                symbol: symbol.to_string(),
                side: m.position.direction.exit_side(),
                qty,
                trigger_price: m.ladder.stop,
                client_id: format!("ke-s-start-{i}"),
            };
            // (Not when it would trigger at once.)
            let _ = sim.place_stop(&req);
        }
        sim.stream.clear();
        core.set_stops(sim.stops.values().map(|s| s.order(StopStatus::New, T0 - 1)).collect());
        let largest = sim.positions.iter().map(|(s, p)| (s.clone(), p.qty.abs())).collect();
        let start_stage = core.manager().positions().map(|m| (m.position.symbol.clone(), m.ladder.stage)).collect();
        let mut h = Harness {
            core,
            sim,
            pending: Vec::new(),
            resync: None,
            plans,
            next_plan: 0,
            faults_on: true,
            drops,
            next_drop: 0,
            dropped: false,
            used_ids: BTreeSet::new(),
            tp_executed: BTreeMap::new(),
            largest,
            start_stage,
            trace: Vec::new(),
        };
        h.log(format!(
            "start: wallet {wallet}; {:?}",
            h.core
                .manager()
                .positions()
                .map(|m| format!(
                    "{} {:?} {} of {} {:?} stop {}",
                    m.position.symbol,
                    m.position.direction,
                    m.ladder.remaining_qty,
                    m.ladder.original_qty,
                    m.ladder.stage,
                    m.ladder.stop
                ))
                .collect::<Vec<_>>()
        ));
        h.log(format!(
            "start stops: {:?}",
            h.sim.stops.values().map(|s| (s.algo_id, s.qty, s.trigger)).collect::<Vec<_>>()
        ));
        h.absorb(actions, &BTreeMap::new())?;
        for s in SYMBOLS.iter().take(start.len()) {
            let mark = h.sim.marks[*s];
            h.call(|c, now| c.on_mark(s, mark, now, now))?;
        }
        h.call(|c, now| c.on_tick(now))?;
        Ok(h)
    }

    fn log(&mut self, line: String) {
        self.trace.push(line);
    }

    fn fail(&self, msg: String) -> TestCaseError {
        let lines = if self.trace.len() > 400 {
            let mut v = self.trace[..300].to_vec();
            v.push("...".into());
            v.extend_from_slice(&self.trace[self.trace.len() - 60..]);
            v
        } else {
            self.trace.clone()
        };
        TestCaseError::fail(format!("{msg}\n--- trace ---\n{}", lines.join("\n")))
    }

    fn plan(&mut self) -> Plan {
        if !self.faults_on || self.plans.is_empty() {
            return Plan { fault: Fault::None, exec_at_send: false };
        }
        let p = self.plans[self.next_plan % self.plans.len()];
        self.next_plan += 1;
        p
    }

    /// The most the core may close per symbol: what it tracks, or what the exchange reported.
    fn close_bounds(&self) -> BTreeMap<String, Decimal> {
        let mut b: BTreeMap<String, Decimal> = BTreeMap::new();
        for m in self.core.manager().positions() {
            b.insert(m.position.symbol.clone(), m.ladder.remaining_qty);
        }
        for p in self.core.exchange_positions() {
            let e = b.entry(p.symbol.clone()).or_default();
            *e = (*e).max(p.qty);
        }
        b
    }

    /// Runs one core call and takes its actions.
    fn call(&mut self, f: impl FnOnce(&mut TradingCore, i64) -> Vec<Action>) -> Result<(), TestCaseError> {
        let mut bounds = self.close_bounds();
        let actions = f(&mut self.core, self.sim.now);
        for (s, q) in self.close_bounds() {
            let e = bounds.entry(s).or_default();
            *e = (*e).max(q);
        }
        self.absorb(actions, &bounds)
    }

    fn absorb(&mut self, actions: Vec<Action>, bounds: &BTreeMap<String, Decimal>) -> Result<(), TestCaseError> {
        for a in actions {
            match a {
                Action::Journal(_) => {}
                Action::Resync => {
                    self.log("  -> resync requested".into());
                    if self.resync.is_none() {
                        self.resync = Some(self.sim.now);
                    }
                }
                Action::Send(cmd) => self.send(cmd, bounds)?,
            }
        }
        Ok(())
    }

    fn send(&mut self, cmd: Command, bounds: &BTreeMap<String, Decimal>) -> Result<(), TestCaseError> {
        // (c) No client order id is ever used twice.
        let id = match &cmd.request {
            OrderRequest::Entry { req, .. } | OrderRequest::Close { req, .. } => Some(req.client_order_id.clone()),
            OrderRequest::PlaceStop(req) => Some(req.client_id.clone()),
            _ => None,
        };
        if let Some(id) = id
            && !self.used_ids.insert(id.clone())
        {
            return Err(self.fail(format!("client order id {id} used twice")));
        }
        // At most one request in flight per symbol, plus at most one emergency close.
        if self.pending.iter().any(|p| p.cmd.symbol == cmd.symbol && p.cmd.urgent == cmd.urgent) {
            return Err(self.fail(format!("second request in flight on {}: {cmd:?}", cmd.symbol)));
        }
        if let OrderRequest::Close { req, reason, .. } = &cmd.request {
            // (c) Reduce-only, and never more than the core tracked or the exchange reported;
            // an emergency close (which also takes what the ladder handed to a resting stop)
            // never more than the position at its largest.
            let mut bound = bounds.get(&cmd.symbol).copied().unwrap_or_default();
            if *reason == ExitReason::Emergency {
                bound = bound.max(self.largest.get(&cmd.symbol).copied().unwrap_or_default());
            }
            if !req.reduce_only || req.qty > bound || req.qty <= Decimal::ZERO {
                return Err(self.fail(format!("close {req:?} beyond what was tracked ({bound})")));
            }
        }
        let plan = self.plan();
        self.log(format!("  -> #{} {} {:?} {plan:?}", cmd.id, cmd.symbol, cmd.request));
        let mut p = Pending { cmd, plan, result: None };
        if plan.exec_at_send {
            p.result = Some(self.execute(&p.cmd, plan.fault)?);
        }
        self.pending.push(p);
        Ok(())
    }

    /// A close (not yet answered) is in flight on the symbol.
    fn close_in_flight(&self, symbol: &str) -> bool {
        self.pending.iter().any(|p| p.cmd.symbol == symbol && matches!(p.cmd.request, OrderRequest::Close { .. }))
    }

    /// The exchange carries out a command (or not) and answers.
    fn execute(&mut self, cmd: &Command, fault: Fault) -> Result<OrderResult, TestCaseError> {
        let symbol = cmd.symbol.as_str();
        let executes = match fault {
            Fault::Refuse | Fault::Unknown { executed: false } => false,
            Fault::None | Fault::Unknown { executed: true } | Fault::Partial(_) => true,
        };
        let answer = |r: Result<(), ExchangeError>, id: &str| match fault {
            Fault::Refuse => Err(refusal()),
            Fault::Unknown { .. } => Err(unknown(id)),
            _ => r,
        };
        let covered_before = self.sim.coverage(symbol);
        let result = match &cmd.request {
            OrderRequest::Close { req, reason, .. } => {
                let partial = if let Fault::Partial(p) = fault { Some(p) } else { None };
                let r = if executes { self.sim.market_close(req, partial) } else { Err(refusal()) };
                if let Ok(rep) = &r {
                    self.log(format!(
                        "  exec #{} close {} of {} at {}",
                        cmd.id, rep.executed_qty, req.qty, rep.avg_price
                    ));
                    if matches!(reason, ExitReason::TakeProfit1 | ExitReason::TakeProfit2) {
                        // (d) Each take-profit level executes at most once per position.
                        let n = self.tp_executed.entry((symbol.to_string(), *reason)).or_default();
                        *n += 1;
                        if *n > 1 {
                            return Err(self.fail(format!("{symbol}: {} executed twice", reason.as_str())));
                        }
                    }
                } else {
                    self.log(format!("  exec #{} close not executed: {:?}", cmd.id, r.as_ref().err()));
                }
                OrderResult::Close(match fault {
                    Fault::Refuse => Err(refusal()),
                    Fault::Unknown { .. } => Err(unknown(&req.client_order_id)),
                    _ => r,
                })
            }
            OrderRequest::PlaceStop(req) => {
                let r = if executes { self.sim.place_stop(req) } else { Err(refusal()) };
                self.log(format!("  exec #{} place stop: {:?}", cmd.id, r.as_ref().map(|s| s.algo_id)));
                OrderResult::StopPlaced(match fault {
                    Fault::Refuse => Err(refusal()),
                    Fault::Unknown { .. } => Err(unknown(&req.client_id)),
                    _ => r,
                })
            }
            OrderRequest::CancelStop { algo_id } => {
                let r = if executes { self.sim.cancel_stop(symbol, *algo_id) } else { Ok(()) };
                self.log(format!("  exec #{} cancel {algo_id}: {r:?}", cmd.id));
                OrderResult::StopCancelled(answer(r, ""))
            }
            OrderRequest::CancelAll => {
                if executes {
                    self.sim.cancel_all(symbol);
                }
                self.log(format!("  exec #{} cancel all (executed {executes})", cmd.id));
                OrderResult::AllCancelled(answer(Ok(()), ""))
            }
            OrderRequest::ReadPosition => OrderResult::Position(match fault {
                Fault::Refuse | Fault::Unknown { .. } => Err(refusal()),
                _ => Ok(self.sim.position(symbol)),
            }),
            OrderRequest::LookupOrder { client_order_id } => OrderResult::Lookup(match fault {
                Fault::Refuse | Fault::Unknown { .. } => Err(refusal()),
                _ => Ok(self.sim.orders.get(client_order_id).cloned()),
            }),
            OrderRequest::Entry { .. } => OrderResult::Entry(Err(refusal())),
        };
        // (a) A stop is never cancelled leaving the position with less coverage than before:
        // not while a close is in flight (the case), and not otherwise either (the
        // replacement is placed first).
        if matches!(cmd.request, OrderRequest::CancelStop { .. } | OrderRequest::CancelAll)
            && self.sim.coverage(symbol) < covered_before
        {
            return Err(self.fail(format!(
                "{symbol}: stop cancelled (close in flight: {}): coverage {covered_before} -> {} (position {})",
                self.close_in_flight(symbol),
                self.sim.coverage(symbol),
                self.sim.signed(symbol)
            )));
        }
        Ok(result)
    }

    fn deliver(&mut self, idx: usize) -> Result<(), TestCaseError> {
        let p = self.pending.remove(idx);
        let result = match p.result {
            Some(r) => r,
            None => self.execute(&p.cmd, p.plan.fault)?,
        };
        self.log(format!("deliver #{} {}: {}", p.cmd.id, p.cmd.symbol, brief(&result)));
        let outcome = Outcome { id: p.cmd.id, symbol: p.cmd.symbol.clone(), result };
        self.call(|c, now| c.on_outcome(outcome, now))
    }

    fn deliver_account(&mut self) -> Result<bool, TestCaseError> {
        let Some(ev) = self.sim.stream.pop_front() else { return Ok(false) };
        let drop = self.faults_on && !self.drops.is_empty() && self.drops[self.next_drop % self.drops.len()];
        self.next_drop += 1;
        if drop {
            self.dropped = true;
            self.log(format!("account message lost: {}", brief_event(&ev)));
            return Ok(true);
        }
        self.log(format!("account: {}", brief_event(&ev)));
        self.call(|c, now| c.on_account_event(ev, now))?;
        Ok(true)
    }

    fn snapshot(&mut self) -> Result<(), TestCaseError> {
        let requested_at = self.resync.take().unwrap_or(self.sim.now);
        let snap = self.sim.snapshot(requested_at);
        self.log(format!(
            "snapshot: positions {:?} stops {:?}",
            SYMBOLS.iter().map(|s| self.sim.signed(s)).collect::<Vec<_>>(),
            self.sim.stops.values().map(|s| (s.algo_id, s.symbol.clone(), s.qty, s.trigger)).collect::<Vec<_>>()
        ));
        // A read covers every symbol only when none is busy (the core leaves busy ones to
        // their own requests).
        if self.core.requests_in_flight() == 0 {
            self.dropped = false;
        }
        self.call(|c, now| c.on_snapshot(snap, now))
    }

    fn tick(&mut self) -> Result<(), TestCaseError> {
        self.log(format!("tick at +{} ms", self.sim.now - T0));
        self.call(|c, now| c.on_tick(now))
    }

    fn price(&mut self, sym: usize, bp: i64) -> Result<(), TestCaseError> {
        let symbol = SYMBOLS[sym];
        let old = self.sim.marks[symbol];
        let new = round_to_increment(
            old * (Decimal::ONE + Decimal::new(bp, 4)),
            TICK,
            RoundingStrategy::MidpointAwayFromZero,
        )
        .max(TICK);
        self.log(format!("mark {symbol} {old} -> {new}"));
        for l in self.sim.set_mark(symbol, new) {
            self.log(l);
        }
        let now = self.sim.now;
        self.call(|c, _| c.on_mark(symbol, new, now, now))
    }

    /// Delivers everything pending (account messages in order, outcomes, the requested
    /// resync) until nothing is left.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        for _ in 0..2_000 {
            self.sim.now += 50;
            if self.deliver_account()? {
                continue;
            }
            if !self.pending.is_empty() {
                self.deliver(0)?;
                continue;
            }
            if self.resync.is_some() {
                self.snapshot()?;
                continue;
            }
            return Ok(());
        }
        Err(self.fail("no quiescence after 2000 deliveries".into()))
    }

    /// Quiescence, then the invariants (a) and (b).
    fn settle(&mut self) -> Result<(), TestCaseError> {
        self.log("--- quiescence".into());
        self.faults_on = false;
        self.drain()?;
        if self.dropped {
            // Lost stream messages: only a full read can tell the core.
            self.snapshot()?;
            self.drain()?;
        }
        self.sim.now += 11_000;
        self.tick()?;
        self.drain()?;
        self.check()?;
        self.faults_on = true;
        Ok(())
    }

    fn check(&self) -> Result<(), TestCaseError> {
        // (a) Every open exchange position is covered by resting stops for its full size.
        for s in SYMBOLS {
            let signed = self.sim.signed(s);
            if !signed.is_zero() && self.sim.coverage(s) < signed.abs() {
                return Err(self.fail(format!(
                    "{s}: position {signed} covered only by {} after quiescence; stops {:?}",
                    self.sim.coverage(s),
                    self.sim.stops.values().filter(|x| x.symbol == s).collect::<Vec<_>>()
                )));
            }
        }
        // No stop is left resting on a flat symbol.
        let orphans: Vec<&SimStop> = self.sim.stops.values().filter(|x| self.sim.signed(&x.symbol).is_zero()).collect();
        if !orphans.is_empty() {
            return Err(self.fail(format!("stops left without a position after quiescence: {orphans:?}")));
        }
        // The core's view of the resting stops is the exchange's.
        let seen: BTreeSet<i64> = self.core.resting_stops().map(|x| x.algo_id).collect();
        let resting: BTreeSet<i64> = self.sim.stops.keys().copied().collect();
        if seen != resting {
            return Err(self.fail(format!("the core sees stops {seen:?}, the exchange holds {resting:?}")));
        }
        // (b) The core tracks exactly what the exchange holds.
        let ours: BTreeMap<String, (Decimal, Direction)> = self
            .core
            .manager()
            .positions()
            .map(|m| (m.position.symbol.clone(), (m.ladder.remaining_qty, m.position.direction)))
            .collect();
        let theirs: BTreeMap<String, (Decimal, Direction)> = SYMBOLS
            .iter()
            .filter_map(|s| self.sim.position(s))
            .map(|p| (p.symbol.clone(), (p.qty, p.direction)))
            .collect();
        if ours != theirs {
            return Err(self.fail(format!("tracked {ours:?} but the exchange holds {theirs:?}")));
        }
        // (d) Every take-profit level the ladder marks done since the start executed (once: see
        // `execute`).
        let rank = |s: LadderStage| match s {
            LadderStage::Open => 0,
            LadderStage::Tp1Done => 1,
            LadderStage::Tp2Done => 2,
            LadderStage::Trailing => 3,
        };
        for m in self.core.manager().positions() {
            let symbol = &m.position.symbol;
            let Some(&start) = self.start_stage.get(symbol) else { continue };
            for (level, reason) in [(1, ExitReason::TakeProfit1), (2, ExitReason::TakeProfit2)] {
                let executed = self.tp_executed.get(&(symbol.clone(), reason)).copied().unwrap_or(0);
                if rank(start) < level && rank(m.ladder.stage) >= level && executed != 1 {
                    return Err(self.fail(format!(
                        "{symbol}: ladder at {:?} but {} executed {executed} times",
                        m.ladder.stage,
                        reason.as_str()
                    )));
                }
            }
        }
        if self.core.requests_in_flight() != 0 {
            return Err(self.fail(format!("{} requests still in flight", self.core.requests_in_flight())));
        }
        Ok(())
    }

    fn step(&mut self, ev: &Ev) -> Result<(), TestCaseError> {
        self.sim.now += 200;
        match *ev {
            Ev::Price { sym, bp } => self.price(sym, bp),
            Ev::Tick => {
                self.sim.now += 4_800;
                self.tick()
            }
            Ev::Deliver { pick } => {
                if self.pending.is_empty() {
                    return Ok(());
                }
                let idx = pick % self.pending.len();
                self.deliver(idx)
            }
            Ev::Account { n } => {
                for _ in 0..n {
                    self.deliver_account()?;
                }
                Ok(())
            }
            Ev::Snapshot => self.snapshot(),
            Ev::Wait { ms } => {
                self.sim.now += ms;
                Ok(())
            }
            Ev::Settle => self.settle(),
        }
    }
}

fn brief(r: &OrderResult) -> String {
    match r {
        OrderResult::Close(Ok(rep)) | OrderResult::Entry(Ok(rep)) => {
            format!("filled {} of {} at {}", rep.executed_qty, rep.orig_qty, rep.avg_price)
        }
        OrderResult::StopPlaced(Ok(s)) => format!("stop {} resting ({} @ {})", s.algo_id, s.qty, s.trigger_price),
        OrderResult::Position(Ok(p)) => format!("position {:?}", p.as_ref().map(|p| (p.direction, p.qty))),
        OrderResult::Lookup(Ok(o)) => format!("lookup {:?}", o.as_ref().map(|o| o.executed_qty)),
        OrderResult::StopCancelled(Ok(())) | OrderResult::AllCancelled(Ok(())) => "cancelled".into(),
        other => format!("{other:?}"),
    }
}

fn brief_event(ev: &ExchangeEvent) -> String {
    match ev {
        ExchangeEvent::AccountUpdate { positions, .. } => {
            format!("ACCOUNT_UPDATE {:?}", positions.iter().map(|p| (p.symbol.as_str(), p.qty)).collect::<Vec<_>>())
        }
        ExchangeEvent::StopUpdate(s) => format!("ALGO_UPDATE {} {} {:?}", s.symbol, s.algo_id, s.status),
        ExchangeEvent::OrderUpdate { report, .. } => {
            format!("ORDER_TRADE_UPDATE {} {} {}", report.symbol, report.client_order_id, report.executed_qty)
        }
        other => format!("{other:?}"),
    }
}

// ------------------------------------------------------------------------------ strategies

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        8 => Just(Fault::None),
        2 => Just(Fault::Refuse),
        1 => Just(Fault::Unknown { executed: false }),
        2 => Just(Fault::Unknown { executed: true }),
        2 => (10u8..90).prop_map(Fault::Partial),
    ]
}

fn plan() -> impl Strategy<Value = Plan> {
    (fault(), any::<bool>()).prop_map(|(fault, exec_at_send)| Plan { fault, exec_at_send })
}

fn event() -> impl Strategy<Value = Ev> {
    prop_oneof![
        6 => (0usize..3, -80i64..=80).prop_map(|(sym, bp)| Ev::Price { sym, bp }),
        3 => (0usize..3, prop_oneof![-550i64..=-120, 120i64..=550]).prop_map(|(sym, bp)| Ev::Price { sym, bp }),
        3 => Just(Ev::Tick),
        8 => (0usize..16).prop_map(|pick| Ev::Deliver { pick }),
        3 => (1usize..5).prop_map(|n| Ev::Account { n }),
        1 => Just(Ev::Snapshot),
        1 => (1_000i64..15_000).prop_map(|ms| Ev::Wait { ms }),
        1 => Just(Ev::Settle),
    ]
}

fn start_pos() -> impl Strategy<Value = StartPos> {
    (any::<bool>(), 1_000i64..20_000, 100i64..40_000, 0u8..=4, 0u8..=2)
        .prop_map(|(long, entry_cents, qty_milli, stage, stop)| StartPos { long, entry_cents, qty_milli, stage, stop })
}

fn run(
    start: &[StartPos],
    wallet: i64,
    plans: Vec<Plan>,
    drops: Vec<bool>,
    events: &[Ev],
) -> Result<(), TestCaseError> {
    let mut h = Harness::new(start, wallet, plans, drops)?;
    for ev in events {
        h.step(ev)?;
    }
    h.settle()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, max_shrink_iters: 4096, ..ProptestConfig::default() })]

    // Feature: kinetic-empire-v3, Property 12: Protection Under Failures (issue 11) — for any sequence of mark moves (random walks and jumps past several ladder levels), monitor ticks, order outcomes delivered late and in any order across symbols, account-stream messages delivered late or lost, and full account reads, with order failures injected per command (definite refusal, unknown outcome executed or not, partial fill of a close), starting from 1–3 adopted or journal-restored positions, against an independent simulated exchange: within one monitor tick of quiescence every exchange position is covered by resting stops for its full size and the core tracks exactly the exchange's positions and stops; no cancel ever leaves a position with less stop coverage than before (in particular while a close is in flight); at most one request is in flight per symbol besides one emergency close; no client order id is used twice; closes are reduce-only and never larger than what the core tracked or the exchange reported; TP1 and TP2 each execute at most once per position, and every level the ladder marks done did execute.
    #[test]
    fn property_12_protection_under_failures(
        start in prop::collection::vec(start_pos(), 1..=3),
        wallet in prop_oneof![300i64..3_000, 3_000i64..30_000, 30_000i64..500_000],
        faulty in prop::bool::weighted(0.85),
        plans in prop::collection::vec(plan(), 1..40),
        lossy in prop::bool::weighted(0.5),
        drops in prop::collection::vec(prop::bool::weighted(0.15), 1..24),
        events in prop::collection::vec(event(), 10..140),
    ) {
        let plans = if faulty { plans } else { Vec::new() };
        let drops = if lossy { drops } else { Vec::new() };
        run(&start, wallet, plans, drops, &events)?;
    }
}

// ------------------------------------------------------------------------------ regressions
//
// The shrunk cases Property 12 found in the core, each as a plain test.

/// The exchange's stop did not fill within the grace (an operator cancelled it on the exchange
/// and the stream message was lost, so the core still sees it resting): the fallback market
/// close is booked and the position finished (it used to stay tracked at zero for good).
#[test]
fn regression_stop_fallback_close_finishes_the_position() {
    let start = [StartPos { long: true, entry_cents: 1000, qty_milli: 100, stage: 0, stop: 1 }];
    let mut h = Harness::new(&start, 100_000, Vec::new(), Vec::new()).unwrap();
    h.settle().unwrap();
    h.sim.stops.clear();
    for ev in [Ev::Price { sym: 0, bp: -400 }, Ev::Wait { ms: 11_000 }, Ev::Tick] {
        h.step(&ev).unwrap();
    }
    h.settle().unwrap();
    assert_eq!(h.core.manager().open_count(), 0);
}

/// A TP close whose answer was lost but which executed: the read that follows keeps the ladder's
/// stage, so the level does not fire (and execute) a second time.
#[test]
fn regression_take_profit_of_unknown_outcome_executes_once() {
    let start = vec![
        StartPos { long: false, entry_cents: 1000, qty_milli: 100, stage: 0, stop: 0 },
        StartPos { long: true, entry_cents: 1000, qty_milli: 100, stage: 0, stop: 0 },
        StartPos { long: false, entry_cents: 1000, qty_milli: 100, stage: 0, stop: 0 },
    ];
    let plans = vec![
        Plan { fault: Fault::Refuse, exec_at_send: false },
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::Unknown { executed: true }, exec_at_send: false },
    ];
    let drops = vec![];
    let events = vec![
        Ev::Tick,
        Ev::Tick,
        Ev::Tick,
        Ev::Price { sym: 0, bp: 0 },
        Ev::Price { sym: 0, bp: 0 },
        Ev::Deliver { pick: 4 },
        Ev::Price { sym: 0, bp: 0 },
        Ev::Tick,
        Ev::Price { sym: 0, bp: 0 },
        Ev::Tick,
        Ev::Deliver { pick: 0 },
        Ev::Price { sym: 1, bp: 145 },
        Ev::Deliver { pick: 8 },
        Ev::Price { sym: 0, bp: -146 },
        Ev::Deliver { pick: 0 },
        Ev::Deliver { pick: 5 },
        Ev::Deliver { pick: 2 },
    ];
    run(&start, 300, plans, drops, &events).unwrap();
}

/// A full account read that comes before the position read due after a failed close leaves the
/// symbol to that read (it used to sync the size and reset the TP stage).
#[test]
fn regression_account_read_before_the_position_read_keeps_the_stage() {
    let start = vec![
        StartPos { long: false, entry_cents: 1000, qty_milli: 100, stage: 0, stop: 2 },
        StartPos { long: false, entry_cents: 1000, qty_milli: 100, stage: 0, stop: 2 },
        StartPos { long: false, entry_cents: 1000, qty_milli: 100, stage: 0, stop: 2 },
    ];
    let plans = vec![
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::Unknown { executed: true }, exec_at_send: false },
        Plan { fault: Fault::Refuse, exec_at_send: false },
    ];
    let drops = vec![];
    let events = vec![
        Ev::Deliver { pick: 0 },
        Ev::Settle,
        Ev::Price { sym: 0, bp: -316 },
        Ev::Deliver { pick: 0 },
        Ev::Deliver { pick: 0 },
        Ev::Deliver { pick: 0 },
        Ev::Snapshot,
        Ev::Price { sym: 0, bp: 0 },
        Ev::Tick,
        Ev::Price { sym: 0, bp: 0 },
    ];
    run(&start, 300, plans, drops, &events).unwrap();
}

/// A stop placement answered after the stream reported the stop filled (the late answer puts
/// a stop back into the core's view that no longer rests): the audit cancels it once, no
/// request loop, and the books match.
#[test]
fn regression_late_placement_answer_after_the_fill_settles() {
    let start = vec![
        StartPos { long: true, entry_cents: 1000, qty_milli: 100, stage: 3, stop: 0 },
        StartPos { long: true, entry_cents: 1000, qty_milli: 100, stage: 0, stop: 0 },
        StartPos { long: true, entry_cents: 1000, qty_milli: 100, stage: 0, stop: 0 },
    ];
    let plans = vec![
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::None, exec_at_send: true },
    ];
    let drops = vec![];
    let events = vec![
        Ev::Price { sym: 2, bp: -296 },
        Ev::Account { n: 2 },
        Ev::Account { n: 3 },
        Ev::Price { sym: 0, bp: 0 },
        Ev::Price { sym: 0, bp: 0 },
        Ev::Price { sym: 0, bp: 0 },
        Ev::Price { sym: 0, bp: 0 },
        Ev::Price { sym: 0, bp: 0 },
        Ev::Price { sym: 0, bp: 0 },
        Ev::Price { sym: 0, bp: 0 },
    ];
    run(&start, 2000, plans, drops, &events).unwrap();
}

/// The ladder's stop is reached while no stop of ours rests at that level (its placement was
/// refused): close at market now instead of waiting for a stop that is not there.
#[test]
fn regression_stop_level_reached_without_a_resting_stop_closes_at_market() {
    let start = vec![
        StartPos { long: true, entry_cents: 1000, qty_milli: 100, stage: 2, stop: 2 },
        StartPos { long: true, entry_cents: 1000, qty_milli: 100, stage: 0, stop: 2 },
        StartPos { long: false, entry_cents: 1000, qty_milli: 100, stage: 0, stop: 2 },
    ];
    let plans = vec![
        Plan { fault: Fault::Partial(10), exec_at_send: false },
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::Unknown { executed: true }, exec_at_send: false },
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::Refuse, exec_at_send: false },
        Plan { fault: Fault::Refuse, exec_at_send: false },
    ];
    let drops = vec![];
    let events = vec![
        Ev::Price { sym: 1, bp: 120 },
        Ev::Deliver { pick: 0 },
        Ev::Deliver { pick: 0 },
        Ev::Deliver { pick: 3 },
        Ev::Settle,
        Ev::Price { sym: 0, bp: 120 },
        Ev::Price { sym: 0, bp: -121 },
        Ev::Price { sym: 1, bp: 0 },
        Ev::Deliver { pick: 0 },
        Ev::Price { sym: 1, bp: 173 },
        Ev::Deliver { pick: 0 },
        Ev::Deliver { pick: 0 },
        Ev::Deliver { pick: 0 },
        Ev::Deliver { pick: 0 },
        Ev::Price { sym: 1, bp: -121 },
    ];
    run(&start, 300, plans, drops, &events).unwrap();
}

/// An emergency close that fills only in part does not cancel the stops of what is left.
#[test]
fn regression_partly_filled_emergency_close_keeps_the_stops() {
    let start = vec![
        StartPos { long: false, entry_cents: 1000, qty_milli: 100, stage: 3, stop: 0 },
        StartPos { long: false, entry_cents: 17280, qty_milli: 32736, stage: 0, stop: 2 },
    ];
    let plans = vec![
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::Refuse, exec_at_send: false },
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::Partial(10), exec_at_send: false },
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::Unknown { executed: true }, exec_at_send: false },
    ];
    let drops = vec![];
    let events = vec![
        Ev::Deliver { pick: 0 },
        Ev::Deliver { pick: 0 },
        Ev::Deliver { pick: 0 },
        Ev::Deliver { pick: 0 },
        Ev::Price { sym: 0, bp: -26 },
        Ev::Price { sym: 1, bp: 120 },
        Ev::Price { sym: 0, bp: 0 },
        Ev::Price { sym: 0, bp: 0 },
        Ev::Price { sym: 0, bp: 0 },
        Ev::Price { sym: 0, bp: 0 },
    ];
    run(&start, 300, plans, drops, &events).unwrap();
}

/// An emergency close refused for a position whose ladder had handed it to the exchange's stop
/// restores that quantity, so the read books the stop's fill (it used to leave it tracked at
/// zero with the emergency flattening stuck).
#[test]
fn regression_emergency_close_of_a_position_awaiting_its_stop_restores_it() {
    let start = vec![
        StartPos { long: false, entry_cents: 1000, qty_milli: 100, stage: 0, stop: 0 },
        StartPos { long: true, entry_cents: 2465, qty_milli: 18346, stage: 0, stop: 0 },
        StartPos { long: true, entry_cents: 5298, qty_milli: 23494, stage: 2, stop: 2 },
    ];
    let plans = vec![];
    let drops = vec![false, false, false, false, false, true];
    let events = vec![
        Ev::Price { sym: 0, bp: 0 },
        Ev::Price { sym: 2, bp: -254 },
        Ev::Deliver { pick: 0 },
        Ev::Deliver { pick: 0 },
        Ev::Deliver { pick: 0 },
        Ev::Deliver { pick: 0 },
        Ev::Price { sym: 2, bp: -321 },
        Ev::Price { sym: 1, bp: -522 },
        Ev::Account { n: 4 },
        Ev::Account { n: 2 },
    ];
    run(&start, 1120, plans, drops, &events).unwrap();
}

/// The emergency flattening reads and books a position whose remainder awaits the exchange's
/// stop even when the stream already reported the symbol flat.
#[test]
fn regression_emergency_targets_what_awaits_the_stop() {
    let start = vec![
        StartPos { long: true, entry_cents: 1000, qty_milli: 100, stage: 2, stop: 1 },
        StartPos { long: true, entry_cents: 9254, qty_milli: 18554, stage: 0, stop: 2 },
    ];
    let plans = vec![
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::Refuse, exec_at_send: false },
    ];
    let drops = vec![false, false, false, true, false, false];
    let events = vec![
        Ev::Deliver { pick: 0 },
        Ev::Price { sym: 0, bp: 120 },
        Ev::Settle,
        Ev::Price { sym: 0, bp: 120 },
        Ev::Settle,
        Ev::Price { sym: 0, bp: -121 },
        Ev::Account { n: 3 },
        Ev::Price { sym: 1, bp: -121 },
        Ev::Price { sym: 0, bp: 0 },
        Ev::Price { sym: 0, bp: 0 },
    ];
    run(&start, 300, plans, drops, &events).unwrap();
}

/// A cancel-all answered after a stop placed later came to rest: the core keeps seeing that stop
/// (and cancels it as an orphan) instead of forgetting it on the exchange.
#[test]
fn regression_cancel_all_answer_keeps_stops_placed_after_it() {
    let start = vec![
        StartPos { long: true, entry_cents: 5474, qty_milli: 39167, stage: 0, stop: 2 },
        StartPos { long: false, entry_cents: 1000, qty_milli: 100, stage: 0, stop: 2 },
        StartPos { long: false, entry_cents: 1000, qty_milli: 100, stage: 0, stop: 0 },
    ];
    let plans = vec![
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::Unknown { executed: true }, exec_at_send: false },
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::None, exec_at_send: false },
        Plan { fault: Fault::Partial(10), exec_at_send: true },
    ];
    let drops = vec![];
    let events = vec![
        Ev::Deliver { pick: 0 },
        Ev::Price { sym: 0, bp: -121 },
        Ev::Deliver { pick: 0 },
        Ev::Deliver { pick: 14 },
        Ev::Price { sym: 0, bp: 0 },
        Ev::Price { sym: 0, bp: 0 },
        Ev::Price { sym: 0, bp: 0 },
        Ev::Price { sym: 0, bp: 0 },
        Ev::Price { sym: 0, bp: 0 },
        Ev::Price { sym: 0, bp: 0 },
    ];
    run(&start, 300, plans, drops, &events).unwrap();
}

/// A refusal that persists (here: every request) is retried at the next monitor tick, not at
/// once: between two ticks a symbol gets a bounded number of requests (a failed read used to be
/// sent again at once, in a loop as fast as the exchange answers).
#[test]
fn regression_persistent_refusals_wait_for_the_next_tick() {
    let start = [StartPos { long: true, entry_cents: 1000, qty_milli: 100, stage: 0, stop: 2 }];
    let refuse = Plan { fault: Fault::Refuse, exec_at_send: false };
    let mut h = Harness::new(&start, 100_000, vec![refuse], Vec::new()).unwrap();
    for _ in 0..3 {
        let mut delivered = 0;
        while !h.pending.is_empty() {
            h.deliver(0).unwrap();
            delivered += 1;
            assert!(delivered <= 3, "requests keep coming without a tick:\n{}", h.trace.join("\n"));
        }
        h.sim.now += 5_000;
        h.tick().unwrap();
    }
    // The exchange answers again: one tick repairs everything.
    h.settle().unwrap();
}

/// A trailing stop's move answered "would trigger immediately" (-2021) after the old stop
/// filled on the exchange, its fill event lost and the exchange already reporting flat: the
/// core must not close at market what the exchange no longer holds; it reads the position.
#[test]
fn regression_immediate_trigger_after_the_stop_filled_unseen_reads_first() {
    let start = [
        StartPos { long: true, entry_cents: 2153, qty_milli: 100, stage: 2, stop: 1 },
        StartPos { long: true, entry_cents: 1000, qty_milli: 100, stage: 2, stop: 0 },
    ];
    let n = Plan { fault: Fault::None, exec_at_send: false };
    let plans = vec![
        n,
        Plan { fault: Fault::Unknown { executed: true }, exec_at_send: false },
        Plan { fault: Fault::Partial(10), exec_at_send: false },
        n,
        n,
        n,
        n,
        n,
        Plan { fault: Fault::Refuse, exec_at_send: false },
        Plan { fault: Fault::Partial(10), exec_at_send: false },
        n,
        n,
        Plan { fault: Fault::Refuse, exec_at_send: false },
    ];
    let events = [
        Ev::Price { sym: 1, bp: 45 },
        Ev::Price { sym: 1, bp: 64 },
        Ev::Price { sym: 0, bp: 0 },
        Ev::Price { sym: 0, bp: 0 },
        Ev::Settle,
        Ev::Price { sym: 0, bp: 120 },
        Ev::Price { sym: 0, bp: 0 },
        Ev::Deliver { pick: 0 },
        Ev::Price { sym: 1, bp: 5 },
        Ev::Account { n: 1 },
        Ev::Price { sym: 1, bp: -121 },
        Ev::Account { n: 2 },
        Ev::Account { n: 1 },
        Ev::Tick,
    ];
    run(&start, 300, plans, vec![true, false, false, false], &events).unwrap();
}
