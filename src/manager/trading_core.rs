//! The trading core: the position manager's decisions as a synchronous state machine. Events
//! go in (a signal, a mark price, a monitor tick, an order's outcome, an account event, a full
//! account read) with `now`; [`Action`]s come out (journal writes, exchange commands, a resync
//! request). It never awaits, never reads a clock and never talks to the exchange, so the live
//! task drives it from a `select!` loop and a test drives it from a script.
//!
//! What it owns: the [`PositionManager`] (positions, exit ladders, risk book, emergency
//! latch), its view of the exchange (positions the exchange reports, resting stops, balances)
//! and the order state (what is in flight per symbol, the state before a close, symbols whose
//! exchange position must be read again).
//!
//! Rules it keeps:
//! - At most one request in flight per symbol; emergency closes are the exception (they never
//!   wait behind a hung request; they are reduce-only, so they cannot over-close).
//! - One take-profit level per close: a jump past several levels closes them one after the
//!   other, each from the state the previous one left.
//! - A close that did not execute restores the exact state from before it (quantities, stage,
//!   stop); after any failure the exchange's position is read before the next action.
//! - The stop on the exchange is never shrunk while a close is in flight: the audit only runs
//!   for idle symbols, placing the replacement before cancelling the old one.
//! - The emergency rule runs on every mark and every tick over every position the exchange
//!   reports, tracked or not.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use rust_decimal::prelude::*;
use serde_json::json;

use crate::analyzer::entry_exit::round_stop;
use crate::config::{MarginType as ConfigMarginType, Settings};
use crate::core::models::{Direction, LadderStage, Position, TimestampMs, decimal_from_f64, plain_decimal};
use crate::exchange::{
    AccountBalance, ExchangeError, ExchangeEvent, ExchangePosition, Fill, MarginType, MarketOrderRequest, OrderReport,
    StopOrder, StopRequest, SymbolInfo,
};
use crate::manager::commands::{
    AccountSnapshot, Action, Command, CoreCounters, OrderRequest, OrderResult, Outcome, Record, RequestId,
};
use crate::manager::exit_ladder::{ExitAction, ExitReason};
use crate::manager::position_manager::{
    Analysis, ClosedTrade, EmergencyLatch, EntryPlan, ManagedPosition, PositionManager,
};
use crate::manager::protection::{HeldPosition, ProtectionAction, RestingStop, audit};
use crate::manager::reconcile::{AdoptionPolicy, ExchangeHolding, ReconcileAction, reconcile};
use crate::manager::records;
use crate::manager::risk_checks::{PortfolioSnapshot, RiskBook, emergency_triggered};
use crate::store::OrderIntent;

/// How long the exchange's resting stop may take to fill after the mark crossed it before the
/// core closes at market itself.
pub const STOP_FILL_GRACE_MS: i64 = 10_000;
/// Monitor ticks between full account reads.
pub const RESYNC_EVERY_TICKS: u64 = 12;
/// A mark older than this is not acted on for exits (the stop on the exchange still is).
pub const MARK_STALE_MS: i64 = 30_000;

/// A request in flight for one symbol.
#[derive(Debug, Clone, PartialEq)]
struct InFlight {
    id: RequestId,
    request: OrderRequest,
    since: TimestampMs,
}

/// A stop hit the ladder saw: the exchange's stop should fill it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct AwaitingStop {
    qty: Decimal,
    reason: ExitReason,
    since: TimestampMs,
}

/// The account as the core sees it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AccountView {
    pub wallet_balance: Decimal,
    pub available_balance: Decimal,
    pub updated_at: TimestampMs,
}

/// The trading core. See the module documentation.
pub struct TradingCore {
    settings: Settings,
    pm: PositionManager,
    symbols: HashMap<String, SymbolInfo>,
    locked: BTreeSet<String>,
    account: AccountView,
    marks: HashMap<String, (Decimal, TimestampMs)>,
    /// Positions as the exchange last reported them (events, reads).
    exchange: BTreeMap<String, ExchangePosition>,
    stops: BTreeMap<i64, StopOrder>,
    in_flight: BTreeMap<String, InFlight>,
    /// Emergency closes in flight (they bypass `in_flight`).
    urgent: BTreeMap<String, InFlight>,
    /// The position as it was before the close in flight.
    before_close: BTreeMap<String, ManagedPosition>,
    pending_entries: BTreeMap<RequestId, (EntryPlan, u32)>,
    awaiting_stop: BTreeMap<String, AwaitingStop>,
    needs_read: BTreeSet<String>,
    /// Protective stops that may have executed without us seeing the fill: looked up by
    /// client id so the journal records their execution.
    stop_lookups: BTreeMap<String, BTreeMap<String, u8>>,
    /// Attempts so far of the lookups in flight.
    lookup_attempts: BTreeMap<String, u8>,
    /// Client ids of stops the exchange reported triggered, per symbol.
    triggered_stops: BTreeMap<String, BTreeSet<String>>,
    emergency_flatten: bool,
    /// Our market orders' client ids with their fees seen so far (fills may come before or
    /// after the REST answer).
    own_orders: VecDeque<(String, Decimal, bool)>,
    entries_enabled: bool,
    journal_ok: bool,
    next_id: RequestId,
    ticks: u64,
    resync_requested_at: Option<TimestampMs>,
    last_risk_state: Option<serde_json::Value>,
    last_equity_record: TimestampMs,
    pub counters: CoreCounters,
}

fn holding(p: &ExchangePosition) -> ExchangeHolding {
    ExchangeHolding {
        symbol: p.symbol.clone(),
        signed_qty: if p.direction == Direction::Long { p.qty } else { -p.qty },
        entry_price: p.entry_price,
        mark_price: p.mark_price,
        leverage: p.leverage,
    }
}

fn intent_of(reason: ExitReason) -> OrderIntent {
    match reason {
        ExitReason::TakeProfit1 => OrderIntent::TakeProfit1,
        ExitReason::TakeProfit2 => OrderIntent::TakeProfit2,
        ExitReason::TrailingStop => OrderIntent::TrailingStop,
        ExitReason::StopLoss | ExitReason::Liquidation | ExitReason::EndOfData => OrderIntent::StopLoss,
        ExitReason::Emergency => OrderIntent::Emergency,
    }
}

impl TradingCore {
    /// A core with no positions; `None` if the strategy percentages are unusable.
    pub fn new(settings: &Settings, now: TimestampMs, equity: Decimal) -> Option<Self> {
        Some(TradingCore {
            pm: PositionManager::new(settings, now, equity)?,
            settings: settings.clone(),
            symbols: HashMap::new(),
            locked: BTreeSet::new(),
            account: AccountView::default(),
            marks: HashMap::new(),
            exchange: BTreeMap::new(),
            stops: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            urgent: BTreeMap::new(),
            before_close: BTreeMap::new(),
            pending_entries: BTreeMap::new(),
            awaiting_stop: BTreeMap::new(),
            needs_read: BTreeSet::new(),
            stop_lookups: BTreeMap::new(),
            lookup_attempts: BTreeMap::new(),
            triggered_stops: BTreeMap::new(),
            emergency_flatten: false,
            own_orders: VecDeque::new(),
            entries_enabled: true,
            journal_ok: true,
            next_id: 0,
            ticks: 0,
            resync_requested_at: None,
            last_risk_state: None,
            last_equity_record: 0,
            counters: CoreCounters::default(),
        })
    }

    // ------------------------------------------------------------------------- read access

    pub fn manager(&self) -> &PositionManager {
        &self.pm
    }

    pub fn manager_mut(&mut self) -> &mut PositionManager {
        &mut self.pm
    }

    pub fn account(&self) -> AccountView {
        self.account
    }

    pub fn resting_stops(&self) -> impl Iterator<Item = &StopOrder> {
        self.stops.values()
    }

    pub fn exchange_positions(&self) -> impl Iterator<Item = &ExchangePosition> {
        self.exchange.values()
    }

    pub fn mark(&self, symbol: &str) -> Option<Decimal> {
        self.marks.get(symbol).map(|m| m.0)
    }

    pub fn locked(&self) -> &BTreeSet<String> {
        &self.locked
    }

    pub fn in_flight(&self, symbol: &str) -> bool {
        self.in_flight.contains_key(symbol) || self.urgent.contains_key(symbol)
    }

    pub fn requests_in_flight(&self) -> usize {
        self.in_flight.len() + self.urgent.len()
    }

    pub fn symbol_info(&self, symbol: &str) -> Option<&SymbolInfo> {
        self.symbols.get(symbol)
    }

    /// Symbols the core needs market data for: tracked and exchange-reported positions.
    pub fn held_symbols(&self) -> BTreeSet<String> {
        self.pm.positions().map(|m| m.position.symbol.clone()).chain(self.exchange.keys().cloned()).collect()
    }

    /// Unrealized PnL and open notional over every position the exchange reports, tracked or
    /// not (tracked positions the exchange has not reported yet count at our size).
    pub fn exposure(&self) -> (Decimal, Decimal) {
        let mut upnl = Decimal::ZERO;
        let mut notional = Decimal::ZERO;
        let mut seen = BTreeSet::new();
        for p in self.exchange.values() {
            let px = self.mark(&p.symbol).unwrap_or(p.mark_price);
            upnl += (px - p.entry_price) * p.qty * p.direction.sign();
            notional += (px * p.qty).abs();
            seen.insert(p.symbol.as_str());
        }
        for m in self.pm.positions().filter(|m| !seen.contains(m.position.symbol.as_str())) {
            let px = self.mark(&m.position.symbol).unwrap_or(m.position.entry_price);
            upnl += (px - m.position.entry_price) * m.ladder.remaining_qty * m.position.direction.sign();
            notional += (px * m.ladder.remaining_qty).abs();
        }
        (upnl, notional)
    }

    /// Wallet balance + unrealized PnL.
    pub fn equity(&self) -> Decimal {
        self.account.wallet_balance + self.exposure().0
    }

    // --------------------------------------------------------------------------- set-up

    pub fn set_symbols(&mut self, infos: Vec<SymbolInfo>) {
        self.symbols = infos.into_iter().map(|i| (i.filters.symbol.clone(), i)).collect();
    }

    pub fn set_locked(&mut self, locked: BTreeSet<String>) {
        self.locked = locked;
    }

    pub fn set_balance(&mut self, b: &AccountBalance, now: TimestampMs) {
        self.account =
            AccountView { wallet_balance: b.wallet_balance, available_balance: b.available_balance, updated_at: now };
    }

    /// Restores the risk book and latch journaled before a restart. A book from an earlier
    /// UTC day rolls over at the next decision (with the equity then).
    pub fn restore_risk_state(&mut self, value: &serde_json::Value) -> bool {
        let Some(book) = value.get("book").and_then(|b| serde_json::from_value::<RiskBook>(b.clone()).ok()) else {
            return false;
        };
        self.pm.risk = book;
        let latch =
            value.get("emergency_since").and_then(serde_json::Value::as_i64).map(|since| EmergencyLatch { since });
        self.pm.set_emergency(latch);
        self.last_risk_state = Some(value.clone());
        true
    }

    /// The risk book and latch in their journal form.
    pub fn risk_state(&self) -> serde_json::Value {
        json!({ "book": self.pm.risk, "emergency_since": self.pm.emergency().map(|l| l.since) })
    }

    /// Stops new entries (shutdown).
    pub fn disable_entries(&mut self) {
        self.entries_enabled = false;
    }

    /// The journal could not be written: fail closed (no entries) until a write succeeds.
    pub fn set_journal_ok(&mut self, ok: bool) {
        if self.journal_ok != ok {
            tracing::warn!(ok, "journal health changed; entries {}", if ok { "allowed" } else { "blocked" });
        }
        self.journal_ok = ok;
    }

    pub fn journal_ok(&self) -> bool {
        self.journal_ok
    }

    /// Takes over a position (journal restore or adoption) at start.
    pub fn restore_position(&mut self, position: Position) -> bool {
        let Some(info) = self.symbols.get(&position.symbol) else { return false };
        let filters = info.filters.clone();
        self.pm.restore_position(position, &filters, 0)
    }

    /// Replaces the resting-stop view (start-up read).
    pub fn set_stops(&mut self, stops: Vec<StopOrder>) {
        self.stops = stops.into_iter().filter(|s| s.status.is_resting()).map(|s| (s.algo_id, s)).collect();
    }

    pub fn set_exchange_positions(&mut self, positions: Vec<ExchangePosition>) {
        self.exchange =
            positions.into_iter().filter(|p| p.qty > Decimal::ZERO).map(|p| (p.symbol.clone(), p)).collect();
    }

    fn next_id(&mut self) -> RequestId {
        self.next_id += 1;
        self.next_id
    }

    fn client_id(&mut self, kind: &str, now: TimestampMs) -> String {
        let id = self.next_id();
        format!("ke-{kind}-{now}-{id}")
    }

    fn remember_own(&mut self, id: &str) {
        self.own_orders.push_back((id.to_string(), Decimal::ZERO, false));
        while self.own_orders.len() > 1024 {
            self.own_orders.pop_front();
        }
    }

    fn send(&mut self, out: &mut Vec<Action>, symbol: &str, request: OrderRequest, urgent: bool, now: TimestampMs) {
        let id = self.next_id();
        let flight = InFlight { id, request: request.clone(), since: now };
        if urgent {
            self.urgent.insert(symbol.to_string(), flight);
        } else {
            self.in_flight.insert(symbol.to_string(), flight);
        }
        self.counters.orders_sent += 1;
        out.push(Action::Send(Command { id, symbol: symbol.to_string(), request, urgent }));
    }

    /// A symbol may get a new (non-urgent) request.
    fn idle(&self, symbol: &str) -> bool {
        !self.in_flight.contains_key(symbol) && !self.urgent.contains_key(symbol)
    }

    // ------------------------------------------------------------------------------ entries

    /// A complete analysis from the analyzer: evaluates it (all five risk checks) and sends
    /// the entry if everything passes. `data_live` is false while a market stream is stale.
    pub fn on_signal(&mut self, analysis: &Analysis, data_live: bool, now: TimestampMs) -> Vec<Action> {
        let mut out = Vec::new();
        let symbol = analysis.symbol.as_str();
        if !self.entries_enabled || !self.journal_ok || !data_live {
            tracing::info!(%symbol, entries = self.entries_enabled, journal_ok = self.journal_ok, data_live,
                "signal not evaluated: entries are off");
            return out;
        }
        if self.locked.contains(crate::exchange::binance::ACCOUNT_LOCK_KEY) || self.locked.contains(symbol) {
            tracing::warn!(%symbol, "skipped: locked by Binance's trading rules");
            return out;
        }
        let Some(info) = self.symbols.get(symbol).cloned() else { return out };
        let busy = !self.idle(symbol)
            || self.exchange.contains_key(symbol)
            || self.pending_entries.values().any(|(p, _)| p.signal.symbol == symbol);
        let price = self.mark(symbol).or_else(|| decimal_from_f64(analysis.m15_close));
        let Some(price) = price.filter(|p| *p > Decimal::ZERO) else { return out };
        let price = crate::core::models::round_to_increment(
            price,
            info.filters.tick_size,
            RoundingStrategy::MidpointAwayFromZero,
        );
        let (upnl, notional) = self.exposure();
        let snapshot = PortfolioSnapshot {
            equity: self.account.wallet_balance + upnl,
            available_balance: self.account.available_balance,
            open_positions: self.pm.open_count().max(self.exchange.len()),
            open_notional: notional,
            unrealized_pnl: upnl,
        };
        let decision = self.pm.evaluate_signal(analysis, now, price, &info.filters, info.max_leverage, &snapshot, busy);
        if let Some(r) = records::signal(&decision, self.settings.strategy.min_confidence) {
            out.push(Action::Journal(r));
        }
        self.push_risk_state(&mut out);
        match decision.outcome {
            Ok(plan) => {
                let qty = plan.qty;
                self.send_entry(&mut out, plan, qty, 0, now);
            }
            Err(reason) => {
                if decision.score_total.is_some_and(|s| s >= self.settings.strategy.min_confidence) {
                    tracing::info!(%symbol, score = decision.score_total, %reason, "signal not taken");
                }
            }
        }
        out
    }

    fn send_entry(&mut self, out: &mut Vec<Action>, plan: EntryPlan, qty: Decimal, attempt: u32, now: TimestampMs) {
        let symbol = plan.signal.symbol.clone();
        let side = plan.signal.direction.entry_side();
        let cid = self.client_id("e", now);
        self.remember_own(&cid);
        let req = MarketOrderRequest { symbol: symbol.clone(), side, qty, reduce_only: false, client_order_id: cid };
        out.push(Action::Journal(Record::Order(records::order_intent(&req, OrderIntent::Entry, now))));
        tracing::info!(%symbol, side = side.as_str(), %qty, leverage = plan.leverage, score = plan.signal.confidence,
            client_order_id = %req.client_order_id, "entry order sent");
        let margin = match self.settings.exchange.margin_type {
            ConfigMarginType::Isolated => MarginType::Isolated,
            ConfigMarginType::Crossed => MarginType::Crossed,
        };
        let leverage = plan.leverage;
        let id_before = self.next_id;
        self.send(out, &symbol, OrderRequest::Entry { req, margin, leverage }, false, now);
        let _ = id_before;
        self.pending_entries.insert(self.next_id, (plan, attempt));
    }

    fn on_entry_result(
        &mut self,
        out: &mut Vec<Action>,
        id: RequestId,
        symbol: &str,
        r: Result<OrderReport, ExchangeError>,
        now: TimestampMs,
    ) {
        let Some((plan, attempt)) = self.pending_entries.remove(&id) else { return };
        let Some(filters) = self.symbols.get(symbol).map(|i| i.filters.clone()) else { return };
        match r {
            Ok(report) => {
                let fee = self.settle_own(&report.client_order_id);
                out.push(Action::Journal(Record::Order(records::order_report(&report, OrderIntent::Entry))));
                if report.executed_qty <= Decimal::ZERO {
                    tracing::warn!(%symbol, status = ?report.status, "entry did not fill");
                    return;
                }
                let Some(stop) =
                    self.pm.open_position(&plan, report.executed_qty, report.avg_price, fee, &filters, now)
                else {
                    tracing::error!(%symbol, "entry filled but could not be tracked; reading the exchange");
                    self.needs_read.insert(symbol.to_string());
                    out.push(Action::Resync);
                    return;
                };
                tracing::info!(%symbol, direction = plan.signal.direction.as_str(), qty = %report.executed_qty,
                    price = %report.avg_price, %stop, "entry filled");
                if let Some(mp) = self.pm.position(symbol) {
                    out.push(Action::Journal(Record::PositionOpened { position: mp.position.clone(), adopted: false }));
                }
                // The protective stop goes out at once.
                self.protect_symbol(out, symbol, now);
            }
            Err(e) if e.is_insufficient_margin() && attempt == 0 => {
                self.counters.orders_failed += 1;
                let half = filters.floor_market_qty(plan.qty / Decimal::TWO);
                tracing::warn!(%symbol, qty = %plan.qty, %half, "insufficient margin (-2019): retrying once at half size");
                if half > Decimal::ZERO && half * plan.signal.entry_price >= filters.min_notional {
                    self.send_entry(out, plan, half, 1, now);
                }
            }
            Err(e) => {
                self.counters.orders_failed += 1;
                tracing::warn!(%symbol, error = %e, "entry failed; trade skipped; reading the exchange's position");
                // Whatever happened, the exchange's position is read before anything else:
                // an entry of unknown outcome that did execute is adopted with a stop.
                self.needs_read.insert(symbol.to_string());
                self.step_symbol(out, symbol, now);
            }
        }
    }

    /// Fees of our order `cid` seen on the account stream so far; later fills are added to
    /// the position directly.
    fn settle_own(&mut self, cid: &str) -> Decimal {
        match self.own_orders.iter_mut().find(|(id, _, _)| id == cid) {
            Some((_, fee, settled)) => {
                *settled = true;
                *fee
            }
            None => Decimal::ZERO,
        }
    }

    // ------------------------------------------------------------------------------- exits

    /// A new mark price for `symbol` (time `at` from the exchange): emergency rule, then the
    /// exit ladder of the symbol if it is idle.
    pub fn on_mark(&mut self, symbol: &str, price: Decimal, at: TimestampMs, now: TimestampMs) -> Vec<Action> {
        let mut out = Vec::new();
        if price <= Decimal::ZERO {
            return out;
        }
        self.marks.insert(symbol.to_string(), (price, at));
        self.check_emergency(&mut out, now);
        if self.pm.has_position(symbol) {
            self.step_symbol(&mut out, symbol, now);
        }
        out
    }

    /// The next thing to do for one symbol, if nothing is in flight for it: read its
    /// position after a failure, run the ladder at the latest mark, or repair its stop.
    fn step_symbol(&mut self, out: &mut Vec<Action>, symbol: &str, now: TimestampMs) {
        if !self.idle(symbol) || self.emergency_flatten {
            return;
        }
        if self.needs_read.contains(symbol) {
            self.send(out, symbol, OrderRequest::ReadPosition, false, now);
            return;
        }
        if let Some(ids) = self.stop_lookups.get_mut(symbol)
            && let Some((client_order_id, attempt)) = ids.pop_first()
        {
            self.lookup_attempts.insert(client_order_id.clone(), attempt);
            if ids.is_empty() {
                self.stop_lookups.remove(symbol);
            }
            self.send(out, symbol, OrderRequest::LookupOrder { client_order_id }, false, now);
            return;
        }
        if let Some(&(price, at)) = self.marks.get(symbol)
            && now - at <= MARK_STALE_MS
            && !self.awaiting_stop.contains_key(symbol)
            && self.ladder_step(out, symbol, price, now)
        {
            return;
        }
        self.protect_symbol(out, symbol, now);
    }

    /// Runs the ladder at `price`; returns true when a close was sent.
    fn ladder_step(&mut self, out: &mut Vec<Action>, symbol: &str, price: Decimal, now: TimestampMs) -> bool {
        let Some(before) = self.pm.position(symbol).cloned() else { return false };
        let mut actions = self.pm.on_price(symbol, price);
        let closes: Vec<Decimal> = actions
            .iter()
            .filter_map(|a| match a {
                ExitAction::Close { trigger_price, .. } => Some(*trigger_price),
                _ => None,
            })
            .collect();
        if closes.len() > 1
            && let Some(&first) = closes.first()
        {
            // One level per close: run the ladder again from where it was, only as far as the
            // first level; the next level fires when this close has executed.
            self.pm.restore_managed(before.clone());
            actions = self.pm.on_price(symbol, first);
        }
        let mut sent = false;
        for a in actions {
            match a {
                ExitAction::Close { qty, reason, trigger_price } => {
                    tracing::info!(%symbol, %qty, level = %trigger_price, reason = reason.as_str(), "take-profit hit");
                    // Write-ahead: the ladder's new stage is journaled before the close is sent,
                    // so a crash in between can never make the same level fire twice.
                    self.journal_position(out, symbol);
                    self.before_close.insert(symbol.to_string(), before.clone());
                    self.send_close(out, symbol, qty, reason, intent_of(reason), false, now);
                    sent = true;
                    break;
                }
                ExitAction::CloseAll { qty, reason, trigger_price } => {
                    tracing::info!(%symbol, %qty, stop = %trigger_price, reason = reason.as_str(),
                        "stop level reached; expecting the exchange-side stop to fill");
                    self.awaiting_stop.insert(symbol.to_string(), AwaitingStop { qty, reason, since: now });
                    self.journal_position(out, symbol);
                    sent = true;
                }
                ExitAction::MoveStop { .. } => self.journal_position(out, symbol),
            }
        }
        sent
    }

    #[allow(clippy::too_many_arguments)]
    fn send_close(
        &mut self,
        out: &mut Vec<Action>,
        symbol: &str,
        qty: Decimal,
        reason: ExitReason,
        intent: OrderIntent,
        urgent: bool,
        now: TimestampMs,
    ) {
        let Some(side) = self
            .pm
            .position(symbol)
            .map(|m| m.position.direction.exit_side())
            .or_else(|| self.exchange.get(symbol).map(|p| p.direction.exit_side()))
        else {
            return;
        };
        let cid = self.client_id("x", now);
        self.remember_own(&cid);
        let req = MarketOrderRequest { symbol: symbol.to_string(), side, qty, reduce_only: true, client_order_id: cid };
        out.push(Action::Journal(Record::Order(records::order_intent(&req, intent, now))));
        self.send(out, symbol, OrderRequest::Close { req, reason, intent }, urgent, now);
    }

    #[allow(clippy::too_many_arguments)]
    fn on_close_result(
        &mut self,
        out: &mut Vec<Action>,
        symbol: &str,
        requested: Decimal,
        reason: ExitReason,
        intent: OrderIntent,
        r: Result<OrderReport, ExchangeError>,
        now: TimestampMs,
    ) {
        let before = self.before_close.remove(symbol);
        match r {
            Ok(report) => {
                let fee = self.settle_own(&report.client_order_id);
                out.push(Action::Journal(Record::Order(records::order_report(&report, intent))));
                let filled = report.executed_qty;
                if filled.is_zero() {
                    self.restore_before(out, symbol, before, requested, reason);
                    self.needs_read.insert(symbol.to_string());
                    return;
                }
                // What the ladder took for this close (an emergency close may ask the exchange
                // for more than we track; reduce-only caps it at the position).
                let deducted = match (&before, self.pm.position(symbol)) {
                    (Some(b), Some(now_mp)) => {
                        (b.ladder.remaining_qty - now_mp.ladder.remaining_qty).max(Decimal::ZERO)
                    }
                    _ => requested,
                };
                let shortfall = deducted - filled.min(deducted);
                if shortfall > Decimal::ZERO || filled < requested {
                    tracing::warn!(%symbol, %shortfall, status = ?report.status, "close filled partly; reading the exchange");
                    self.needs_read.insert(symbol.to_string());
                }
                if shortfall > Decimal::ZERO {
                    self.pm.revert_close(symbol, shortfall, reason, false);
                }
                let filled = filled.min(deducted);
                tracing::info!(%symbol, qty = %filled, price = %report.avg_price, reason = reason.as_str(), "close filled");
                if !self.pm.has_position(symbol) || filled.is_zero() {
                    return;
                }
                // An emergency close took the whole remainder from the ladder already.
                let trade = self.pm.on_exit_filled(symbol, filled, report.avg_price, fee, reason, now);
                self.journal_position(out, symbol);
                if let Some(t) = trade {
                    self.finish_trade(out, &t, reason.as_str());
                }
            }
            Err(e) => {
                self.counters.orders_failed += 1;
                tracing::error!(%symbol, qty = %requested, error = %e,
                    "close failed; state restored to before it, stop kept; reading the exchange");
                if e.code() == Some(-2022) {
                    // Reduce-only refused: nothing left to close on the exchange.
                    tracing::warn!(%symbol, "the exchange holds no position to reduce");
                }
                self.restore_before(out, symbol, before, requested, reason);
                self.needs_read.insert(symbol.to_string());
            }
        }
    }

    /// Puts a position back exactly as it was before a close that did not execute.
    fn restore_before(
        &mut self,
        out: &mut Vec<Action>,
        symbol: &str,
        before: Option<ManagedPosition>,
        requested: Decimal,
        reason: ExitReason,
    ) {
        self.counters.closes_restored += 1;
        match before {
            Some(mp) => self.pm.restore_managed(mp),
            None => self.pm.revert_close(symbol, requested, reason, true),
        }
        self.journal_position(out, symbol);
    }

    fn finish_trade(&mut self, out: &mut Vec<Action>, t: &ClosedTrade, reason: &str) {
        tracing::info!(symbol = %t.symbol, direction = t.direction.as_str(), entry = %t.entry_price,
            exit = %t.exit_price.round_dp(8), pnl = %t.net_pnl().round_dp(4), fees = %t.fees.round_dp(4),
            reason = t.exit_reason.as_str(), "position closed");
        out.push(Action::Journal(Record::PositionClosed {
            position: records::final_position(t),
            time: t.exit_time,
            reason: reason.to_string(),
            gross_pnl: t.gross_pnl,
            fees: t.fees,
        }));
        self.awaiting_stop.remove(&t.symbol);
        self.before_close.remove(&t.symbol);
        self.push_risk_state(out);
    }

    fn journal_position(&self, out: &mut Vec<Action>, symbol: &str) {
        if let Some(mp) = self.pm.position(symbol) {
            out.push(Action::Journal(Record::PositionUpdated(mp.position.clone())));
        }
    }

    // -------------------------------------------------------------------------- protection

    /// The stop the exchange should hold for `symbol`, and the repairs to get there (idle
    /// symbols only: a stop is never resized while a close is in flight).
    fn protect_symbol(&mut self, out: &mut Vec<Action>, symbol: &str, now: TimestampMs) {
        if !self.idle(symbol) || self.awaiting_stop.contains_key(symbol) || self.needs_read.contains(symbol) {
            return;
        }
        let held: Vec<HeldPosition> = self
            .pm
            .position(symbol)
            .filter(|m| m.ladder.remaining_qty > Decimal::ZERO)
            .map(|m| HeldPosition {
                symbol: symbol.to_string(),
                direction: m.position.direction,
                qty: m.ladder.remaining_qty,
                stop_price: m.ladder.stop,
            })
            .into_iter()
            .collect();
        if held.is_empty() && self.exchange.contains_key(symbol) {
            // The exchange holds a position we do not track: adopt it (resync) before
            // deciding anything about its stops.
            if self.resync_requested_at.is_none() {
                self.resync_requested_at = Some(now);
                out.push(Action::Resync);
            }
            return;
        }
        let resting: Vec<RestingStop> = self
            .stops
            .values()
            .filter(|s| s.symbol == symbol)
            .map(|s| RestingStop {
                id: s.algo_id.to_string(),
                symbol: s.symbol.clone(),
                side: s.side,
                qty: s.qty,
                trigger_price: s.trigger_price,
            })
            .collect();
        // Placements come first: one request now, the next after its outcome.
        let Some(action) = audit(&held, &resting).into_iter().next() else { return };
        match action {
            ProtectionAction::PlaceStop { symbol, side, qty, trigger_price, reason } => {
                tracing::info!(%symbol, %qty, trigger = %trigger_price, reason = reason.as_str(), "placing protective stop");
                if reason != crate::manager::protection::StopReason::Outdated {
                    self.counters.stops_repaired += 1;
                }
                let client_id = self.client_id("s", now);
                let req = StopRequest { symbol: symbol.clone(), side, qty, trigger_price, client_id };
                self.send(out, &symbol, OrderRequest::PlaceStop(req), false, now);
            }
            ProtectionAction::CancelStop { symbol, id, reason } => {
                let Ok(algo_id) = id.parse::<i64>() else { return };
                tracing::info!(%symbol, algo_id, reason = reason.as_str(), "cancelling stop");
                if reason == crate::manager::protection::StopReason::Orphan {
                    self.counters.orphan_stops_cancelled += 1;
                }
                self.send(out, &symbol, OrderRequest::CancelStop { algo_id }, false, now);
            }
        }
    }

    fn on_stop_placed(
        &mut self,
        out: &mut Vec<Action>,
        symbol: &str,
        r: Result<StopOrder, ExchangeError>,
        now: TimestampMs,
    ) {
        match r {
            Ok(stop) => {
                tracing::info!(%symbol, qty = %stop.qty, trigger = %stop.trigger_price, algo_id = stop.algo_id,
                    "protective stop resting on the exchange");
                out.push(Action::Journal(Record::Order(records::stop_order(&stop))));
                self.stops.insert(stop.algo_id, stop);
            }
            Err(e) if e.code() == Some(-2021) => {
                self.counters.orders_failed += 1;
                tracing::warn!(%symbol, "stop would trigger immediately; closing at market");
                let reason = if self.pm.position(symbol).is_some_and(|m| m.position.stage == LadderStage::Trailing) {
                    ExitReason::TrailingStop
                } else {
                    ExitReason::StopLoss
                };
                let Some(before) = self.pm.position(symbol).cloned() else { return };
                let take = self.pm.reduce_remaining(symbol, before.ladder.remaining_qty);
                if take > Decimal::ZERO {
                    self.before_close.insert(symbol.to_string(), before);
                    self.send_close(out, symbol, take, reason, OrderIntent::StopImmediate, false, now);
                }
            }
            Err(e) => {
                self.counters.orders_failed += 1;
                tracing::error!(%symbol, error = %e, "could not place protective stop; reading the exchange, then again");
                self.needs_read.insert(symbol.to_string());
            }
        }
    }

    // ----------------------------------------------------------------------------- outcomes

    /// The outcome of a command.
    pub fn on_outcome(&mut self, outcome: Outcome, now: TimestampMs) -> Vec<Action> {
        let mut out = Vec::new();
        let symbol = outcome.symbol.as_str();
        let flight = match self.urgent.get(symbol) {
            Some(f) if f.id == outcome.id => self.urgent.remove(symbol),
            _ => match self.in_flight.get(symbol) {
                Some(f) if f.id == outcome.id => self.in_flight.remove(symbol),
                _ => None,
            },
        };
        let Some(flight) = flight else {
            tracing::warn!(%symbol, id = outcome.id, "outcome of an unknown request ignored");
            return out;
        };
        match (flight.request, outcome.result) {
            (OrderRequest::Entry { .. }, OrderResult::Entry(r)) => {
                self.on_entry_result(&mut out, outcome.id, symbol, r, now)
            }
            (OrderRequest::Close { req, reason, intent }, OrderResult::Close(r)) => {
                let emergency = intent == OrderIntent::Emergency;
                let ok = r.as_ref().is_ok_and(|rep| rep.executed_qty > Decimal::ZERO);
                self.on_close_result(&mut out, symbol, req.qty, reason, intent, r, now);
                if emergency && ok {
                    self.send(&mut out, symbol, OrderRequest::CancelAll, true, now);
                }
            }
            (OrderRequest::PlaceStop(_), OrderResult::StopPlaced(r)) => self.on_stop_placed(&mut out, symbol, r, now),
            (OrderRequest::CancelStop { algo_id }, OrderResult::StopCancelled(r)) => match r {
                Ok(()) => {
                    self.stops.remove(&algo_id);
                }
                Err(e) => tracing::warn!(%symbol, algo_id, error = %e, "cancel failed; retrying next tick"),
            },
            (OrderRequest::CancelAll, OrderResult::AllCancelled(r)) => match r {
                Ok(()) => self.stops.retain(|_, s| s.symbol != symbol),
                Err(e) => tracing::warn!(%symbol, error = %e, "cancel-all failed; the audit retries"),
            },
            (OrderRequest::LookupOrder { client_order_id }, OrderResult::Lookup(r)) => match r {
                Ok(Some(report)) if report.executed_qty > Decimal::ZERO => {
                    self.lookup_attempts.remove(&client_order_id);
                    tracing::info!(%symbol, %client_order_id, qty = %report.executed_qty, price = %report.avg_price,
                        "protective stop execution found");
                    out.push(Action::Journal(Record::Order(records::order_report(
                        &report,
                        OrderIntent::ProtectiveStop,
                    ))));
                }
                Ok(_) => {
                    self.lookup_attempts.remove(&client_order_id);
                }
                Err(e) => {
                    let attempt = self.lookup_attempts.remove(&client_order_id).unwrap_or(0) + 1;
                    tracing::warn!(%symbol, %client_order_id, attempt, error = %e, "stop execution lookup failed");
                    if attempt < 5 {
                        self.stop_lookups.entry(symbol.to_string()).or_default().insert(client_order_id, attempt);
                    }
                }
            },
            (OrderRequest::ReadPosition, OrderResult::Position(r)) => match r {
                Ok(p) => {
                    self.needs_read.remove(symbol);
                    self.follow_exchange(&mut out, symbol, p, now);
                }
                Err(e) => tracing::warn!(%symbol, error = %e, "position read failed; retrying next tick"),
            },
            (req, res) => tracing::error!(%symbol, ?req, ?res, "outcome does not match its request"),
        }
        self.check_emergency(&mut out, now);
        self.step_symbol(&mut out, symbol, now);
        out
    }

    /// Makes the exchange's position of `symbol` the truth for what we track.
    fn follow_exchange(&mut self, out: &mut Vec<Action>, symbol: &str, p: Option<ExchangePosition>, now: TimestampMs) {
        let exchange_qty = p.as_ref().map(|p| p.qty).unwrap_or_default();
        match p {
            Some(p) if p.qty > Decimal::ZERO => {
                self.exchange.insert(symbol.to_string(), p);
            }
            _ => {
                self.exchange.remove(symbol);
            }
        }
        let Some(mp) = self.pm.position(symbol).cloned() else {
            if exchange_qty > Decimal::ZERO && self.resync_requested_at.is_none() {
                tracing::warn!(%symbol, qty = %exchange_qty, "the exchange holds a position we do not track; adopting");
                self.resync_requested_at = Some(now);
                out.push(Action::Resync);
            }
            return;
        };
        let ours = mp.ladder.remaining_qty;
        let awaiting = self.awaiting_stop.get(symbol).copied();
        if exchange_qty < ours || (awaiting.is_some() && exchange_qty.is_zero()) {
            // Closed on the exchange (its stop, a close whose answer we lost, a liquidation).
            let gone = ours - exchange_qty;
            let reason = awaiting.map(|a| a.reason).unwrap_or(if mp.position.stage == LadderStage::Trailing {
                ExitReason::TrailingStop
            } else {
                ExitReason::StopLoss
            });
            let price = self.mark(symbol).unwrap_or(mp.ladder.stop);
            // Our stops on the symbol may have executed: look their execution up.
            let mut ids: BTreeSet<String> =
                self.stops.values().filter(|s| s.symbol == symbol).map(|s| s.client_id.clone()).collect();
            ids.extend(self.triggered_stops.remove(symbol).unwrap_or_default());
            if !ids.is_empty() {
                self.stop_lookups.entry(symbol.to_string()).or_default().extend(ids.into_iter().map(|id| (id, 0)));
            }
            let deducted = self.pm.reduce_remaining(symbol, gone);
            let booked =
                if awaiting.is_some() { awaiting.map(|a| a.qty).unwrap_or(gone).max(deducted) } else { deducted };
            if exchange_qty.is_zero() {
                self.awaiting_stop.remove(symbol);
            }
            tracing::warn!(%symbol, qty = %booked, %price, reason = reason.as_str(), "closed on the exchange; booked at the mark");
            if booked > Decimal::ZERO
                && let Some(t) = self.pm.on_exit_filled(symbol, booked, price, Decimal::ZERO, reason, now)
            {
                self.finish_trade(out, &t, "closed_on_exchange");
                return;
            }
            self.journal_position(out, symbol);
        } else if exchange_qty > ours && awaiting.is_none() {
            tracing::warn!(%symbol, ours = %ours, exchange = %exchange_qty, "the exchange holds more than we track; following it");
            self.pm.sync_quantity(symbol, exchange_qty);
            self.journal_position(out, symbol);
        } else if let Some(a) = awaiting
            && now - a.since > STOP_FILL_GRACE_MS
            && exchange_qty > Decimal::ZERO
        {
            tracing::warn!(%symbol, qty = %exchange_qty, "exchange-side stop did not fill in time; closing at market");
            self.awaiting_stop.remove(symbol);
            self.before_close.insert(symbol.to_string(), mp.clone());
            self.send_close(
                out,
                symbol,
                exchange_qty.min(a.qty.max(exchange_qty)),
                a.reason,
                OrderIntent::StopFallback,
                false,
                now,
            );
        }
    }

    // --------------------------------------------------------------------------- emergency

    fn check_emergency(&mut self, out: &mut Vec<Action>, now: TimestampMs) {
        let (upnl, _) = self.exposure();
        let equity = self.account.wallet_balance + upnl;
        let has_positions = !self.exchange.is_empty() || self.pm.open_count() > 0;
        let was_latched = self.pm.emergency().is_some();
        self.pm.risk.roll_day(now, equity);
        if self.pm.risk.observe(equity, &self.settings.risk) {
            tracing::warn!(equity = %equity.round_dp(2), start = %self.pm.risk.day_start_equity.round_dp(2),
                "daily loss limit reached: no new entries until the next UTC day");
        }
        if has_positions && emergency_triggered(upnl, equity, &self.settings.risk) && !self.emergency_flatten {
            tracing::error!(unrealized = %upnl.round_dp(2), equity = %equity.round_dp(2),
                "EMERGENCY EXIT: portfolio unrealized loss reached the limit; closing everything");
            self.counters.emergencies += 1;
            self.pm.latch_emergency(now);
            self.emergency_flatten = true;
        }
        self.pm.clear_emergency_if_due(now);
        if was_latched && self.pm.emergency().is_none() {
            tracing::info!("emergency latch cleared (next UTC day)");
        }
        self.push_risk_state(out);
        if self.emergency_flatten {
            self.flatten(out, now);
        }
    }

    /// Emergency: close every position the exchange reports or we track, at market,
    /// reduce-only, without waiting behind requests in flight. Stops stay until flat.
    fn flatten(&mut self, out: &mut Vec<Action>, now: TimestampMs) {
        let mut targets: BTreeMap<String, Decimal> =
            self.exchange.values().map(|p| (p.symbol.clone(), p.qty)).collect();
        for m in self.pm.positions() {
            let q = targets.entry(m.position.symbol.clone()).or_default();
            *q = (*q).max(m.ladder.remaining_qty);
        }
        if targets.is_empty() {
            self.emergency_flatten = false;
            return;
        }
        for (symbol, qty) in targets {
            if self.urgent.contains_key(&symbol) || qty <= Decimal::ZERO {
                continue;
            }
            if self.needs_read.contains(&symbol) {
                // After a failed close: read the position before closing again.
                self.send(out, &symbol, OrderRequest::ReadPosition, true, now);
                continue;
            }
            self.awaiting_stop.remove(&symbol);
            if let Some(m) = self.pm.position(&symbol).cloned() {
                self.before_close.insert(symbol.clone(), m.clone());
                self.pm.reduce_remaining(&symbol, m.ladder.remaining_qty);
            }
            self.send_close(out, &symbol, qty, ExitReason::Emergency, OrderIntent::Emergency, true, now);
        }
    }

    fn push_risk_state(&mut self, out: &mut Vec<Action>) {
        let state = self.risk_state();
        if self.last_risk_state.as_ref() != Some(&state) {
            self.last_risk_state = Some(state.clone());
            out.push(Action::Journal(Record::RiskState(state)));
        }
    }

    // ---------------------------------------------------------------------------- monitor

    /// The 5 s monitor tick: emergency rule, every idle symbol's next step (ladder at the
    /// latest mark, stop audit, reads after failures), overdue stops, the periodic resync,
    /// an equity point every minute.
    pub fn on_tick(&mut self, now: TimestampMs) -> Vec<Action> {
        let mut out = Vec::new();
        self.ticks += 1;
        self.check_emergency(&mut out, now);
        // Overdue exchange-side stops: read the position; the read closes what is left.
        let overdue: Vec<String> = self
            .awaiting_stop
            .iter()
            .filter(|(_, a)| now - a.since > STOP_FILL_GRACE_MS)
            .map(|(s, _)| s.clone())
            .collect();
        for s in overdue {
            self.needs_read.insert(s);
        }
        let mut symbols: BTreeSet<String> = self.held_symbols();
        symbols.extend(self.needs_read.iter().cloned());
        symbols.extend(self.stops.values().map(|s| s.symbol.clone()));
        symbols.extend(self.stop_lookups.keys().cloned());
        for s in symbols {
            self.step_symbol(&mut out, &s, now);
        }
        if self.ticks % RESYNC_EVERY_TICKS == 0 && self.resync_requested_at.is_none() {
            self.resync_requested_at = Some(now);
            out.push(Action::Resync);
        }
        if now - self.last_equity_record >= 60_000 {
            self.last_equity_record = now;
            out.push(Action::Journal(Record::Equity(self.equity_snapshot(now))));
        }
        out
    }

    pub fn equity_snapshot(&self, now: TimestampMs) -> crate::store::EquitySnapshot {
        let (upnl, _) = self.exposure();
        crate::store::EquitySnapshot {
            time: now,
            wallet_balance: self.account.wallet_balance,
            unrealized_pnl: upnl,
            equity: self.account.wallet_balance + upnl,
        }
    }

    // ---------------------------------------------------------------------- account events

    /// An event from the account (user-data) stream.
    pub fn on_account_event(&mut self, ev: ExchangeEvent, now: TimestampMs) -> Vec<Action> {
        let mut out = Vec::new();
        match ev {
            ExchangeEvent::OrderUpdate { report, fill } => self.on_order_update(&mut out, report, fill, now),
            ExchangeEvent::StopUpdate(stop) => {
                out.push(Action::Journal(Record::Order(records::stop_order(&stop))));
                if stop.status.is_resting() {
                    self.stops.insert(stop.algo_id, stop);
                } else {
                    if matches!(
                        stop.status,
                        crate::exchange::StopStatus::Triggered | crate::exchange::StopStatus::Finished
                    ) {
                        tracing::info!(symbol = %stop.symbol, trigger = %stop.trigger_price, status = ?stop.status,
                            "protective stop triggered on the exchange");
                        let ids = self.triggered_stops.entry(stop.symbol.clone()).or_default();
                        ids.insert(stop.client_id.clone());
                        while ids.len() > 8 {
                            ids.pop_first();
                        }
                    }
                    self.stops.remove(&stop.algo_id);
                }
            }
            ExchangeEvent::AccountUpdate { balance, positions, time } => {
                if let Some(b) = balance {
                    self.account.wallet_balance = b.wallet_balance;
                    self.account.available_balance = b.available_balance;
                    self.account.updated_at = time;
                }
                for p in positions {
                    let symbol = p.symbol.clone();
                    if p.qty.is_zero() {
                        self.exchange.remove(&symbol);
                        if self.pm.has_position(&symbol) {
                            // Closed on the exchange: read it to book how.
                            self.needs_read.insert(symbol.clone());
                        }
                    } else {
                        let tracked = self.pm.has_position(&symbol);
                        self.exchange.insert(symbol.clone(), p);
                        if !tracked
                            && self.idle(&symbol)
                            && self.pending_entries.values().all(|(pl, _)| pl.signal.symbol != symbol)
                        {
                            self.needs_read.insert(symbol.clone());
                        }
                    }
                    self.step_symbol(&mut out, &symbol, now);
                }
                self.check_emergency(&mut out, now);
            }
            ExchangeEvent::MarginCall { symbols, .. } => tracing::warn!(?symbols, "MARGIN CALL from the exchange"),
            other => tracing::debug!(?other, "market event on the account channel ignored"),
        }
        out
    }

    fn on_order_update(&mut self, out: &mut Vec<Action>, report: OrderReport, fill: Option<Fill>, now: TimestampMs) {
        if let Some(f) = &fill {
            out.push(Action::Journal(Record::Fill(records::fill(f))));
        }
        let own = self.own_orders.iter().position(|(id, _, _)| *id == report.client_order_id);
        if let Some(i) = own {
            // Our market order: its REST answer books it; the fill brings the real commission.
            if let (Some(f), Some((_, fee, settled))) = (&fill, self.own_orders.get_mut(i)) {
                if *settled {
                    self.pm.add_fee(&f.symbol, f.fee);
                } else {
                    *fee += f.fee;
                }
            }
            return;
        }
        if report.client_order_id.starts_with("ke-s-") {
            out.push(Action::Journal(Record::Order(records::order_report(&report, OrderIntent::ProtectiveStop))));
        }
        // Not ours: a triggered protective stop, a liquidation or a manual order.
        let Some(f) = fill else { return };
        let Some(mp) = self.pm.position(&f.symbol).cloned() else { return };
        if f.side != mp.position.direction.exit_side() {
            tracing::warn!(symbol = %f.symbol, "a foreign order added to our position; reading the exchange");
            self.needs_read.insert(f.symbol.clone());
            return;
        }
        let reason = match self.awaiting_stop.get_mut(&f.symbol) {
            Some(a) => {
                let r = a.reason;
                a.qty -= f.qty.min(a.qty);
                if a.qty.is_zero() {
                    self.awaiting_stop.remove(&f.symbol);
                }
                r
            }
            None => {
                self.pm.reduce_remaining(&f.symbol, f.qty);
                if mp.position.stage == LadderStage::Trailing { ExitReason::TrailingStop } else { ExitReason::StopLoss }
            }
        };
        tracing::info!(symbol = %f.symbol, qty = %f.qty, price = %f.price, reason = reason.as_str(), "exchange-side stop filled");
        let trade = self.pm.on_exit_filled(&f.symbol, f.qty, f.price, f.fee, reason, now);
        self.journal_position(out, &f.symbol);
        if let Some(t) = trade {
            self.finish_trade(out, &t, reason.as_str());
        }
    }

    // ------------------------------------------------------------------------------ resync

    /// A full account read: balances, positions and stops from the exchange are the truth.
    pub fn on_snapshot(&mut self, snap: AccountSnapshot, now: TimestampMs) -> Vec<Action> {
        let mut out = Vec::new();
        self.resync_requested_at = None;
        if let Some(b) = &snap.balance {
            self.set_balance(b, now);
        }
        if let Some(stops) = snap.stops {
            // Stops placed after the read was requested are not in it yet.
            let recent: Vec<StopOrder> =
                self.stops.values().filter(|s| s.update_time >= snap.requested_at).cloned().collect();
            // Stops that vanished without an event may have executed: remember them for a
            // lookup when their position turns out closed.
            let listed: BTreeSet<i64> = stops.iter().filter(|s| s.status.is_resting()).map(|s| s.algo_id).collect();
            for gone in self.stops.values().filter(|s| !listed.contains(&s.algo_id)) {
                self.triggered_stops.entry(gone.symbol.clone()).or_default().insert(gone.client_id.clone());
            }
            self.set_stops(stops);
            for s in recent {
                self.stops.insert(s.algo_id, s);
            }
        }
        if let Some(positions) = snap.positions {
            let busy: BTreeSet<String> = self.in_flight.keys().chain(self.urgent.keys()).cloned().collect();
            let reported: BTreeMap<String, ExchangePosition> = positions
                .into_iter()
                .filter(|p| p.qty > Decimal::ZERO && !busy.contains(&p.symbol))
                .map(|p| (p.symbol.clone(), p))
                .collect();
            for (s, p) in &reported {
                self.exchange.insert(s.clone(), p.clone());
            }
            let gone: Vec<String> =
                self.exchange.keys().filter(|s| !busy.contains(*s) && !reported.contains_key(*s)).cloned().collect();
            for s in gone {
                self.exchange.remove(&s);
            }
            let holdings: Vec<ExchangeHolding> = reported.values().map(holding).collect();
            let known: Vec<Position> = self
                .pm
                .positions()
                .filter(|m| !busy.contains(&m.position.symbol) && !self.awaiting_stop.contains_key(&m.position.symbol))
                .map(|m| m.position.clone())
                .collect();
            let skip: BTreeSet<String> = busy.iter().chain(self.awaiting_stop.keys()).cloned().collect();
            let holdings: Vec<ExchangeHolding> = holdings.into_iter().filter(|h| !skip.contains(&h.symbol)).collect();
            self.apply_reconcile(&mut out, &known, &holdings, false, now);
        }
        self.check_emergency(&mut out, now);
        let symbols = self.held_symbols();
        for s in symbols {
            self.step_symbol(&mut out, &s, now);
        }
        out
    }

    /// Keep, adopt or drop positions so that we track what the exchange holds. At start-up
    /// `known` are the journal's open positions (restored here); later they are ours.
    pub fn apply_reconcile(
        &mut self,
        out: &mut Vec<Action>,
        known: &[Position],
        holdings: &[ExchangeHolding],
        startup: bool,
        now: TimestampMs,
    ) {
        let policy = AdoptionPolicy {
            max_stop_pct: decimal_from_f64(self.settings.strategy.max_stop_pct).unwrap_or(Decimal::from(3)),
            trail_start_pct: decimal_from_f64(self.settings.strategy.trail_start_pct).unwrap_or(Decimal::from(3)),
        };
        for action in reconcile(known, holdings, &policy, now) {
            match action {
                ReconcileAction::Keep { position, size_changed } => {
                    if startup {
                        let symbol = position.symbol.clone();
                        if self.restore_position(position.clone()) {
                            tracing::info!(%symbol, qty = %position.qty, stage = ?position.stage,
                                stop = %position.stop_loss, "position restored from the journal");
                            out.push(Action::Journal(Record::PositionUpdated(position)));
                        }
                    } else if size_changed {
                        tracing::warn!(symbol = %position.symbol, qty = %position.qty,
                            "exchange size differs from ours; following the exchange");
                        self.pm.sync_quantity(&position.symbol, position.qty);
                        self.journal_position(out, &position.symbol);
                    }
                }
                ReconcileAction::Adopt { mut position } | ReconcileAction::CloseAdopted { mut position } => {
                    let beyond = self.mark(&position.symbol).is_some_and(|m| match position.direction {
                        Direction::Long => m <= position.stop_loss,
                        Direction::Short => m >= position.stop_loss,
                    });
                    let Some(tick) = self.symbols.get(&position.symbol).map(|i| i.filters.tick_size) else {
                        tracing::error!(symbol = %position.symbol, "position on an unknown symbol; cannot manage it");
                        continue;
                    };
                    position.stop_loss = round_stop(position.direction, position.stop_loss, tick);
                    let symbol = position.symbol.clone();
                    tracing::warn!(%symbol, direction = %position.direction.as_str(), qty = %position.qty,
                        entry = %position.entry_price, stop = %position.stop_loss,
                        "adopting a position the journal does not know, with a conservative ladder");
                    out.push(Action::Journal(Record::PositionOpened { position: position.clone(), adopted: true }));
                    let qty = position.qty;
                    if !self.restore_position(position) {
                        continue;
                    }
                    if beyond && self.idle(&symbol) {
                        tracing::warn!(%symbol, "adopted position is beyond its stop; closing at market");
                        if let Some(before) = self.pm.position(&symbol).cloned() {
                            self.before_close.insert(symbol.clone(), before);
                        }
                        let take = self.pm.reduce_remaining(&symbol, qty);
                        self.send_close(
                            out,
                            &symbol,
                            take,
                            ExitReason::StopLoss,
                            OrderIntent::AdoptedBeyondStop,
                            false,
                            now,
                        );
                    }
                }
                ReconcileAction::Drop { symbol } => {
                    if startup {
                        out.push(Action::Journal(Record::PositionClosed {
                            position: known
                                .iter()
                                .find(|p| p.symbol == symbol)
                                .cloned()
                                .map(|mut p| {
                                    p.qty = Decimal::ZERO;
                                    p
                                })
                                .unwrap_or_else(|| records::empty_position(&symbol)),
                            time: now,
                            reason: "closed_while_offline".into(),
                            gross_pnl: Decimal::ZERO,
                            fees: Decimal::ZERO,
                        }));
                        continue;
                    }
                    tracing::warn!(%symbol, "position no longer exists on the exchange; recording it closed");
                    self.follow_exchange(out, &symbol, None, now);
                }
            }
        }
    }

    /// `/status` view of one tracked position's protection.
    pub fn stop_on_exchange(&self, symbol: &str) -> bool {
        self.stops.values().any(|s| s.symbol == symbol)
    }

    /// Risk figures for `/status`.
    pub fn risk_view(&self) -> serde_json::Value {
        let rb = &self.pm.risk;
        let equity = self.equity();
        json!({
            "emergency_latched": self.pm.emergency().is_some(),
            "emergency_since": self.pm.emergency().map(|l| l.since),
            "emergency_flattening": self.emergency_flatten,
            "daily_latched": rb.daily_latched,
            "day_start_equity": plain_decimal(rb.day_start_equity.round_dp(8)),
            "today_pnl": plain_decimal(rb.today_pnl(equity).round_dp(8)),
            "day_realized_pnl": plain_decimal(rb.day_realized_pnl.round_dp(8)),
            "consecutive_losses": rb.consecutive_losses,
            "loss_pause_until": rb.loss_pause_until,
            "symbol_cooldowns": rb.symbol_cooldowns,
            "locked_symbols": self.locked,
            "entries_enabled": self.entries_enabled && self.journal_ok,
        })
    }
}
