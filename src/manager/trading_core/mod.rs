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

mod account;
mod emergency;
mod entries;
pub use entries::PAUSED_REASON;
mod exits;
mod operator;
mod outcomes;
mod protection;
mod quiet;
pub use quiet::QuietBand;
mod stuck_stops;

use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rust_decimal::prelude::*;
use serde_json::json;

use crate::config::Settings;
use crate::core::models::{Position, TimestampMs};
use crate::exchange::{AccountBalance, ExchangePosition, StopOrder, SymbolInfo};
use crate::manager::commands::{Action, Command, CoreCounters, OrderRequest, RequestId};
use crate::manager::exit_ladder::ExitReason;
use crate::manager::position_manager::{
    ClosedTrade, EmergencyLatch, EntryDecision, EntryPlan, ManagedPosition, PositionManager,
};
use crate::manager::risk_checks::{LossLimits, RiskBook};
use crate::store::OrderIntent;

/// How long the exchange's resting stop may take to fill after the mark crossed it before the
/// core closes at market itself.
pub const STOP_FILL_GRACE_MS: i64 = 10_000;
/// Monitor ticks between full account reads.
pub const RESYNC_EVERY_TICKS: u64 = 12;
/// A mark older than this is not acted on for exits (the stop on the exchange still is).
pub const MARK_STALE_MS: i64 = 30_000;
/// How long a cancelled stop stays a candidate for a fill we did not see.
pub const CANCELLED_STOP_MEMORY_MS: i64 = 600_000;

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

/// One position in the portfolio's unrealized PnL (see `TradingCore::exposure_terms`).
struct ExposureTerm<'a> {
    symbol: &'a str,
    mark: Decimal,
    entry: Decimal,
    qty: Decimal,
    direction: crate::core::models::Direction,
}

/// The trading core. See the module documentation.
pub struct TradingCore {
    settings: Settings,
    pm: PositionManager,
    symbols: FxHashMap<String, SymbolInfo>,
    locked: BTreeSet<String>,
    account: AccountView,
    marks: BTreeMap<String, (Decimal, TimestampMs)>,
    /// Positions as the exchange last reported them (events, reads).
    exchange: BTreeMap<String, ExchangePosition>,
    stops: BTreeMap<i64, StopOrder>,
    in_flight: BTreeMap<String, InFlight>,
    /// Emergency closes in flight (they bypass `in_flight`).
    urgent: BTreeMap<String, InFlight>,
    /// The position as it was before the close in flight.
    before_close: BTreeMap<String, ManagedPosition>,
    /// Take-profit closes whose outcome is unknown: the state the ladder reached with them,
    /// the quantity and the level. The read that follows decides whether they executed.
    unknown_closes: BTreeMap<String, (ManagedPosition, Decimal, ExitReason)>,
    pending_entries: BTreeMap<RequestId, (EntryPlan, u32)>,
    /// Quantities to close because an entry filled above its notional cap.
    pending_trims: BTreeMap<String, Decimal>,
    awaiting_stop: BTreeMap<String, AwaitingStop>,
    /// Protective stops seen firing while their position was open (see `stuck_stops`).
    fired_stops: BTreeMap<String, stuck_stops::FiredStop>,
    needs_read: BTreeSet<String>,
    /// Protective stops that may have executed without us seeing the fill: looked up by
    /// client id so the journal records their execution.
    stop_lookups: BTreeMap<String, BTreeMap<String, u8>>,
    /// Attempts so far of the lookups in flight.
    lookup_attempts: BTreeMap<String, u8>,
    /// Stops we cancelled lately, per symbol (client id, when). A cancel also succeeds when
    /// the stop had already triggered; if the position then turns out smaller than ours, these
    /// are looked up with the resting ones.
    cancelled_stops: BTreeMap<String, Vec<(String, TimestampMs)>>,
    emergency_flatten: bool,
    /// Our market orders' client ids with their fees seen so far (fills may come before or
    /// after the REST answer).
    own_orders: VecDeque<(String, Decimal, bool)>,
    entries_enabled: bool,
    /// An operator paused new entries (positions keep being managed).
    paused: bool,
    journal_ok: bool,
    next_id: RequestId,
    ticks: u64,
    resync_requested_at: Option<TimestampMs>,
    /// The risk book and latch as last journaled.
    last_risk_state: Option<(RiskBook, Option<TimestampMs>)>,
    last_equity_record: TimestampMs,
    /// Whether the caller keeps the journal; see [`TradingCore::discard_journal`].
    journal_records: bool,
    /// Finished trades kept for the caller (the backtest's trade list); off in the daemon.
    closed_log: Option<Vec<ClosedTrade>>,
    /// The last entry evaluation (why a signal was or was not taken).
    last_decision: Option<EntryDecision>,
    /// The loss limits as fractions (converted once).
    limits: LossLimits,
    pub counters: CoreCounters,
}

fn intent_of(reason: ExitReason) -> OrderIntent {
    match reason {
        ExitReason::TakeProfit1 => OrderIntent::TakeProfit1,
        ExitReason::TakeProfit2 => OrderIntent::TakeProfit2,
        ExitReason::TrailingStop => OrderIntent::TrailingStop,
        ExitReason::StopLoss | ExitReason::Liquidation | ExitReason::EndOfData => OrderIntent::StopLoss,
        ExitReason::NotionalTrim => OrderIntent::NotionalTrim,
        ExitReason::Emergency => OrderIntent::Emergency,
        ExitReason::ForceExit => OrderIntent::ForceExit,
    }
}

impl TradingCore {
    /// A core with no positions; `None` if the strategy percentages are unusable.
    pub fn new(settings: &Settings, now: TimestampMs, equity: Decimal) -> Option<Self> {
        Some(TradingCore {
            pm: PositionManager::new(settings, now, equity)?,
            settings: settings.clone(),
            symbols: FxHashMap::default(),
            locked: BTreeSet::new(),
            account: AccountView::default(),
            marks: BTreeMap::new(),
            exchange: BTreeMap::new(),
            stops: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            urgent: BTreeMap::new(),
            before_close: BTreeMap::new(),
            unknown_closes: BTreeMap::new(),
            pending_entries: BTreeMap::new(),
            pending_trims: BTreeMap::new(),
            awaiting_stop: BTreeMap::new(),
            fired_stops: BTreeMap::new(),
            needs_read: BTreeSet::new(),
            stop_lookups: BTreeMap::new(),
            lookup_attempts: BTreeMap::new(),
            cancelled_stops: BTreeMap::new(),
            emergency_flatten: false,
            own_orders: VecDeque::new(),
            entries_enabled: true,
            paused: false,
            journal_ok: true,
            next_id: 0,
            ticks: 0,
            resync_requested_at: None,
            last_risk_state: None,
            last_equity_record: 0,
            journal_records: true,
            closed_log: None,
            last_decision: None,
            limits: LossLimits::of(&settings.risk),
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

    /// Takes in the latest mark of a symbol we do not hold (the reference price of an entry
    /// being evaluated); nothing else happens.
    pub fn observe_mark(&mut self, symbol: &str, price: Decimal, at: TimestampMs) {
        if price <= Decimal::ZERO {
            return;
        }
        // Every candle of a symbol not held comes through here: no key allocation once known.
        match self.marks.get_mut(symbol) {
            Some(m) => *m = (price, at),
            None => {
                self.marks.insert(symbol.to_string(), (price, at));
            }
        }
    }

    pub fn mark(&self, symbol: &str) -> Option<Decimal> {
        self.marks.get(symbol).map(|m| m.0)
    }

    /// The caller drops every journal record (a backtest): the costly ones that change with
    /// every decision or mark (signal breakdowns and the score components they explain, the
    /// risk state, equity points) are not built.
    /// Decisions, orders and logs are unchanged; the live daemon never calls this.
    pub fn discard_journal(&mut self) {
        self.journal_records = false;
        // The score's explanations go only into journal records.
        self.pm.set_explain(false);
    }

    /// Keeps every finished trade for [`TradingCore::take_closed`] (the backtest's trade list).
    pub fn keep_closed_trades(&mut self) {
        self.closed_log.get_or_insert_with(Vec::new);
    }

    /// The trades finished since the last call (empty unless kept).
    pub fn take_closed(&mut self) -> Vec<ClosedTrade> {
        self.closed_log.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The last entry evaluation of [`TradingCore::on_signal`].
    pub fn last_decision(&self) -> Option<&EntryDecision> {
        self.last_decision.as_ref()
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
        self.exposure_with(true)
    }

    /// The unrealized PnL of [`TradingCore::exposure`] alone (the emergency rule at every mark
    /// needs no notional).
    pub fn unrealized_pnl(&self) -> Decimal {
        self.exposure_with(false).0
    }

    fn exposure_with(&self, with_notional: bool) -> (Decimal, Decimal) {
        let mut upnl = Decimal::ZERO;
        let mut notional = Decimal::ZERO;
        for t in self.exposure_terms() {
            upnl += (t.mark - t.entry) * t.qty * t.direction.sign();
            if with_notional {
                notional += (t.mark * t.qty).abs();
            }
        }
        (upnl, notional)
    }

    /// The positions the emergency rule sums: every one the exchange reports, then those we
    /// track that it does not, each at its latest mark.
    fn exposure_terms(&self) -> impl Iterator<Item = ExposureTerm<'_>> {
        let reported = self.exchange.values().map(|p| ExposureTerm {
            symbol: &p.symbol,
            mark: self.mark(&p.symbol).unwrap_or(p.mark_price),
            entry: p.entry_price,
            qty: p.qty,
            direction: p.direction,
        });
        let tracked =
            self.pm.positions().filter(|m| !self.exchange.contains_key(&m.position.symbol)).map(|m| ExposureTerm {
                symbol: &m.position.symbol,
                mark: self.mark(&m.position.symbol).unwrap_or(m.position.entry_price),
                entry: m.position.entry_price,
                qty: m.ladder.remaining_qty,
                direction: m.position.direction,
            });
        reported.chain(tracked)
    }

    /// Wallet balance + unrealized PnL.
    pub fn equity(&self) -> Decimal {
        self.account.wallet_balance + self.unrealized_pnl()
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
        self.last_risk_state = Some((self.pm.risk.clone(), self.pm.emergency().map(|l| l.since)));
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

    pub(super) fn next_id(&mut self) -> RequestId {
        self.next_id += 1;
        self.next_id
    }

    pub(super) fn client_id(&mut self, kind: &str, now: TimestampMs) -> String {
        let id = self.next_id();
        format!("ke-{kind}-{now}-{id}")
    }

    pub(super) fn remember_own(&mut self, id: &str) {
        self.own_orders.push_back((id.to_string(), Decimal::ZERO, false));
        while self.own_orders.len() > 1024 {
            self.own_orders.pop_front();
        }
    }

    pub(super) fn send(
        &mut self,
        out: &mut Vec<Action>,
        symbol: &str,
        request: OrderRequest,
        urgent: bool,
        now: TimestampMs,
    ) {
        let id = self.next_id();
        let flight = InFlight { id, request: request.clone(), since: now };
        if urgent {
            self.urgent.insert(symbol.to_string(), flight);
        } else {
            self.in_flight.insert(symbol.to_string(), flight);
        }
        out.push(Action::Send(Command { id, symbol: symbol.to_string(), request, urgent }));
    }

    /// A symbol may get a new (non-urgent) request.
    pub(super) fn idle(&self, symbol: &str) -> bool {
        !self.in_flight.contains_key(symbol) && !self.urgent.contains_key(symbol)
    }
}
