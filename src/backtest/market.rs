//! The simulated market of a backtest: the daemon's trading core ([`TradingCore`], the state
//! machine the position-manager task drives) against the simulated account ([`SimBook`], the
//! one `--dry-run` trades on), with the exchange's answers given synchronously. Live, dry-run
//! and backtest thus make the same decisions (risk checks, entry, ladder, one take-profit
//! level per close, stops, failures, risk book, emergency) and differ only in the exchange
//! and the clock.
//!
//! **The executor.** Every [`Action::Send`] is answered at once: the book executes it, the
//! account events it caused go to the core first (as the paper exchange delivers them), then
//! the outcome; whatever the core asks next is executed in turn until it asks nothing.
//! Journal records are dropped; [`Action::Resync`] is answered with a full read of the book.
//!
//! **Intra-candle rule (conservative).** A held symbol's candle is walked as four prices:
//! open, then the extreme AGAINST the position (low for a long, high for a short), then the
//! extreme in its favour, then the close. Between two of them the market moves continuously,
//! so the walk also stops at every level it passes on the way — the ladder's stop,
//! take-profit and trail-start levels, the resting stops and the liquidation price — nearest
//! first, each as a mark price. So a candle that touches both the stop and a target always
//! stops out first, a target is only taken after the adverse excursion survived, a trailing
//! stop ratcheted by the favourable extreme can still be hit on the way to the close, and
//! stops, trailing stops and take-profits fill at their level (± slippage). A candle that
//! OPENS beyond a level fills at the open: a stop gapped through is the trader's loss, a
//! target gapped through fills at the better open like a market close would. Prices are
//! last-trade candle prices; the simulator has no separate mark price.
//!
//! **Quiet marks.** Most of those prices change nothing: the position's ladder neither
//! stops, takes profit, trails nor sets a new best price there, no resting stop and not the
//! liquidation price is reached, and the portfolio stays clear of the emergency rule and the
//! daily loss limit. Before a candle's first mark, and after each mark that did nothing, the
//! walk asks the core and the book for that band of prices ([`TradingCore::quiet_band_at`],
//! [`TradingCore::quiet_band`], [`SimBook::quiet_band`]); a price inside it is only stored
//! as the latest mark, and no level is searched between two such prices. The results are
//! those of running every mark through the core (a property test compares the two, in value
//! and in scale); it only saves the work.
//!
//! **Liquidation** (the book's rule, maintenance margin rate of the symbol's first bracket):
//! the walk stops at the liquidation price; a stop that lies before it on the path fills
//! first, otherwise the position is liquidated at its bankruptcy price (the whole isolated
//! margin of what was left is lost) and the core books it as `liquidation`.
//!
//! **Funding** is settled by the caller at 00/08/16 UTC ([`SimMarket::settle_funding`]) from
//! the wallet, so it never moves the liquidation price; the core sees it as a balance change
//! (it counts in today's PnL like a live account's).

use rustc_hash::FxHashMap;
use std::collections::VecDeque;

use rust_decimal::prelude::*;

use crate::backtest::account::SimAccount;
use crate::backtest::sim::{self, FillModel};
use crate::backtest::symbols::SymbolRules;
use crate::config::Settings;
use crate::core::models::{Candle, Direction, TimestampMs};
use crate::exchange::sim_book::SimBook;
use crate::exchange::{ExchangeEvent, SymbolInfo};
use crate::manager::commands::{AccountSnapshot, Action, OrderRequest, OrderResult, Outcome};
use crate::manager::exit_ladder::ExitReason;
use crate::manager::position_manager::{Analysis, EntryDecision, EntryPlan};
use crate::manager::trading_core::{QuietBand, TradingCore};

/// Actions one event may cause before the executor gives up (a loop would be a bug; the
/// stop on the book stays whatever happens).
const MAX_STEPS: usize = 10_000;
/// Levels the walk may stop at between two prices of a candle.
const MAX_LEVELS: usize = 32;

/// The core, the book and the trade list of a backtest. See the module documentation.
pub struct SimMarket {
    core: TradingCore,
    book: SimBook,
    scales: FxHashMap<String, u32>,
    /// Funding paid by the open trade of each symbol so far.
    funding: FxHashMap<String, Decimal>,
    /// Liquidation price of each open trade at its entry.
    liquidation: FxHashMap<String, Decimal>,
    /// Emergency latches seen (each time the latch was set anew).
    pub emergencies: u64,
    latched_since: Option<TimestampMs>,
    /// Fills, fees, funding and finished trades for the report.
    pub ledger: SimAccount,
    /// Marks of a candle's walk found quiet and only stored (see [`SimMarket::walk_candle`]).
    pub quiet_marks: u64,
    /// Whether quiet marks are only stored (the default) or run through the core like every
    /// other (the reference the tests compare with).
    skip_quiet_marks: bool,
}

impl SimMarket {
    /// A market over `symbols` holding `balance`, trading from `now`.
    ///
    /// # Errors
    /// A description when the settings are unusable.
    pub fn new(
        settings: &Settings,
        symbols: &[(String, SymbolRules)],
        model: FillModel,
        balance: Decimal,
        now: TimestampMs,
    ) -> Result<Self, String> {
        let mut core = TradingCore::new(settings, now, balance).ok_or("strategy percentages are unusable")?;
        let mut book = SimBook::new(balance, model.taker_fee, model.slippage);
        let mut infos = Vec::with_capacity(symbols.len());
        let mut scales = FxHashMap::default();
        for (name, rules) in symbols {
            book.set_symbol(name, rules.filters.tick_size, Some(rules.maint_margin_rate));
            scales.insert(name.clone(), rules.price_scale());
            infos.push(SymbolInfo { filters: rules.filters.clone(), max_leverage: rules.filters.max_leverage });
        }
        core.set_symbols(infos);
        core.set_balance(&book.balance(), now);
        core.keep_closed_trades();
        // The executor below drops journal records; the core need not build them.
        core.discard_journal();
        Ok(SimMarket {
            core,
            book,
            scales,
            funding: FxHashMap::default(),
            liquidation: FxHashMap::default(),
            emergencies: 0,
            latched_since: None,
            ledger: SimAccount::new(model, balance),
            quiet_marks: 0,
            skip_quiet_marks: true,
        })
    }

    pub fn core(&self) -> &TradingCore {
        &self.core
    }

    /// The core, for feeding candles to its analyzers and scanning.
    pub fn core_mut(&mut self) -> &mut TradingCore {
        &mut self.core
    }

    pub fn book(&self) -> &SimBook {
        &self.book
    }

    /// Positions open on the book.
    pub fn open_count(&self) -> usize {
        self.book.open_position_count()
    }

    /// True when `symbol` is held on the book or tracked by the core.
    pub fn holds(&self, symbol: &str) -> bool {
        self.book.direction(symbol).is_some() || self.core.manager().has_position(symbol)
    }

    /// Wallet + unrealized PnL at the last prices.
    pub fn equity(&self) -> Decimal {
        self.book.equity()
    }

    /// Executes `actions` and everything they lead to.
    pub fn run(&mut self, actions: Vec<Action>, now: TimestampMs) {
        let mut queue: VecDeque<Action> = actions.into();
        let mut steps = 0usize;
        while let Some(action) = queue.pop_front() {
            steps += 1;
            if steps > MAX_STEPS {
                tracing::error!(pending = queue.len(), "backtest executor: too many steps for one event; dropped");
                break;
            }
            match action {
                Action::Journal(_) => {}
                Action::Resync => {
                    let snap = AccountSnapshot {
                        requested_at: now,
                        balance: Some(self.book.balance()),
                        positions: Some(self.book.positions(now)),
                        stops: Some(self.book.open_stops()),
                    };
                    queue.extend(self.core.on_snapshot(snap, now));
                }
                Action::Send(cmd) => {
                    let (result, events) = self.execute(&cmd.symbol, cmd.request, now);
                    for ev in events {
                        queue.extend(self.core.on_account_event(ev, now));
                    }
                    queue.extend(self.core.on_outcome(Outcome { id: cmd.id, symbol: cmd.symbol, result }, now));
                }
            }
        }
        self.collect();
    }

    /// One request against the book: its answer and the account events it caused.
    fn execute(&mut self, symbol: &str, request: OrderRequest, now: TimestampMs) -> (OrderResult, Vec<ExchangeEvent>) {
        match request {
            OrderRequest::Entry { req, leverage, .. } => {
                if let Err(e) = self.book.set_leverage(symbol, leverage) {
                    return (OrderResult::Entry(Err(e)), Vec::new());
                }
                match self.book.market(&req, now) {
                    Ok((report, events)) => {
                        if let Some(liq) = self.book.liquidation_price(symbol) {
                            self.liquidation.entry(symbol.to_string()).or_insert(liq);
                        }
                        (OrderResult::Entry(Ok(report)), events)
                    }
                    Err(e) => (OrderResult::Entry(Err(e)), Vec::new()),
                }
            }
            OrderRequest::Close { req, .. } => match self.book.market(&req, now) {
                Ok((report, events)) => (OrderResult::Close(Ok(report)), events),
                Err(e) => (OrderResult::Close(Err(e)), Vec::new()),
            },
            OrderRequest::PlaceStop(req) => match self.book.place_stop(&req, now) {
                Ok((stop, event)) => (OrderResult::StopPlaced(Ok(stop)), event.into_iter().collect()),
                Err(e) => (OrderResult::StopPlaced(Err(e)), Vec::new()),
            },
            OrderRequest::CancelStop { algo_id } => {
                (OrderResult::StopCancelled(Ok(())), self.book.cancel_stop(algo_id, now).into_iter().collect())
            }
            OrderRequest::CancelAll => (OrderResult::AllCancelled(Ok(())), self.book.cancel_all(symbol, now)),
            OrderRequest::ReadPosition => (OrderResult::Position(Ok(self.book.position(symbol, now))), Vec::new()),
            OrderRequest::LookupOrder { client_order_id } => {
                (OrderResult::Lookup(Ok(self.book.order(&client_order_id))), Vec::new())
            }
        }
    }

    /// Moves finished trades into the ledger with their funding and liquidation price.
    fn collect(&mut self) {
        let since = self.core.manager().emergency().map(|l| l.since);
        if since.is_some() && since != self.latched_since {
            self.emergencies += 1;
        }
        self.latched_since = since;
        for t in self.core.take_closed() {
            let funding = self.funding.remove(&t.symbol).unwrap_or_default();
            let liquidation = self.liquidation.remove(&t.symbol).unwrap_or_default();
            self.ledger.record(t, funding, liquidation);
        }
        self.ledger.wallet = self.book.wallet();
        self.ledger.fees_paid = self.book.fees_paid;
        self.ledger.funding_paid = self.book.funding_paid;
    }

    /// Runs every mark of a candle's walk through the core, quiet or not (the reference the
    /// quiet-mark shortcut is tested against).
    pub fn run_every_mark(&mut self) {
        self.skip_quiet_marks = false;
    }

    /// A mark price: the book first (stops, liquidation), the events it caused to the core,
    /// then the price itself to the core (emergency rule, ladder).
    pub fn mark(&mut self, symbol: &str, price: Decimal, now: TimestampMs) {
        self.mark_busy(symbol, price, now);
    }

    /// [`SimMarket::mark`]; true when the book or the core did anything (an account event,
    /// an action) beyond storing the price.
    fn mark_busy(&mut self, symbol: &str, price: Decimal, now: TimestampMs) -> bool {
        let mut busy = self.book_mark(symbol, price, now);
        let actions = self.core.on_mark(symbol, price, now, now);
        busy |= !actions.is_empty();
        self.run(actions, now);
        busy
    }

    /// A price on the book, and the account events it caused (stops, liquidation) to the core;
    /// true when there were any.
    fn book_mark(&mut self, symbol: &str, price: Decimal, now: TimestampMs) -> bool {
        let events = self.book.apply_mark_price(symbol, price, now);
        let any = !events.is_empty();
        for ev in events {
            let actions = self.core.on_account_event(ev, now);
            self.run(actions, now);
        }
        any
    }

    /// The core's quiet band of `symbol` narrowed by the book's stops and liquidation price;
    /// `None` when the shortcut is off ([`SimMarket::run_every_mark`]).
    fn with_book(&self, symbol: &str, core_band: impl FnOnce(&TradingCore) -> Option<QuietBand>) -> Option<QuietBand> {
        if !self.skip_quiet_marks {
            return None;
        }
        let mut band = core_band(&self.core)?;
        let (low, high) = self.book.quiet_band(symbol);
        band.narrow(low, high);
        Some(band)
    }

    /// Walks one closed candle of a held symbol (see the module's intra-candle rule). A symbol
    /// not held only has its book price set to the close.
    pub fn walk_candle(&mut self, symbol: &str, candle: &Candle, now: TimestampMs) {
        let scale = self.scales.get(symbol).copied().unwrap_or(8);
        let direction =
            self.book.direction(symbol).or_else(|| self.core.manager().position(symbol).map(|m| m.position.direction));
        let Some(direction) = direction else {
            let close = sim::price_from_f64(candle.close, scale);
            self.core.observe_mark(symbol, close, now);
            self.book.seed_mark(symbol, close);
            return;
        };
        let path = match direction {
            Direction::Long => [candle.open, candle.low, candle.high, candle.close],
            Direction::Short => [candle.open, candle.high, candle.low, candle.close],
        };
        let mut from: Option<Decimal> = None;
        // A mark that lands where nothing can happen (the core's and the book's quiet band,
        // taken before the candle's first mark or after a mark that did nothing) is only
        // stored: the walk's results are the same, without running the whole core at each
        // price.
        let mut quiet = self.with_book(symbol, |core| core.quiet_band_at(symbol, now));
        let last = path.len() - 1;
        for (i, px) in path.into_iter().enumerate() {
            let to = sim::price_from_f64(px, scale);
            // Between two quiet prices every price is quiet (the band is an interval and its
            // loss checks are monotone in the price): a level there would only be stored.
            let quiet_leg = |at: Decimal| quiet.as_ref().is_some_and(|b| b.contains(at) && b.contains(to));
            if let Some(mut at) = from.filter(|at| !quiet_leg(*at)) {
                for _ in 0..MAX_LEVELS {
                    let Some(level) = self.next_level(symbol, at, to) else { break };
                    self.walk_mark(symbol, level, now, &mut quiet, true);
                    at = level;
                }
            }
            self.walk_mark(symbol, to, now, &mut quiet, i < last);
            from = Some(to);
        }
    }

    /// One mark of a candle's walk (see [`SimMarket::walk_candle`]); `more`: marks of the same
    /// candle follow (else no band is worth taking after it).
    fn walk_mark(&mut self, symbol: &str, price: Decimal, now: TimestampMs, quiet: &mut Option<QuietBand>, more: bool) {
        if quiet.as_ref().is_some_and(|b| b.contains(price)) {
            self.book.store_quiet_mark(symbol, price);
            self.core.observe_mark(symbol, price, now);
            self.quiet_marks += 1;
            return;
        }
        let busy = self.mark_busy(symbol, price, now);
        *quiet = if busy || !more { None } else { self.with_book(symbol, |core| core.quiet_band(symbol)) };
    }

    /// The nearest level strictly between `from` and `to` that the market passes on its way.
    fn next_level(&self, symbol: &str, from: Decimal, to: Decimal) -> Option<Decimal> {
        if from == to {
            return None;
        }
        let up = to > from;
        let between = |l: &Decimal| if up { *l > from && *l < to } else { *l < from && *l > to };
        let ladder = self.core.manager().position(symbol).map(|m| &m.ladder);
        let levels = ladder
            .into_iter()
            .flat_map(|l| [l.stop, l.tp1_price, l.tp2_price, l.trail_start_price])
            .chain(self.book.stop_triggers(symbol))
            .chain(self.book.liquidation_price(symbol));
        let candidates = levels.filter(between);
        if up { candidates.min() } else { candidates.max() }
    }

    /// Evaluates a complete analysis as the daemon's position manager does, with the entry
    /// filling at `entry_price` (the open of the next candle). The decision, if it got that
    /// far.
    pub fn signal(&mut self, analysis: &Analysis, entry_price: Decimal, now: TimestampMs) -> Option<EntryDecision> {
        self.set_entry_price(&analysis.symbol, entry_price, now);
        let actions = self.core.on_signal(analysis, true, now);
        self.run(actions, now);
        self.core.last_decision().cloned()
    }

    /// Sends the entry of a plan evaluated elsewhere at `entry_price` (tests of the execution
    /// rules with a hand-made plan).
    pub fn enter_plan(&mut self, plan: EntryPlan, entry_price: Decimal, now: TimestampMs) {
        self.set_entry_price(&plan.signal.symbol, entry_price, now);
        let actions = self.core.enter_plan(plan, now);
        self.run(actions, now);
    }

    fn set_entry_price(&mut self, symbol: &str, price: Decimal, now: TimestampMs) {
        if self.book.direction(symbol).is_none() {
            // Flat: a price moves nothing but the book's mark (a stale orphan stop at most).
            self.book_mark(symbol, price, now);
        }
        self.core.observe_mark(symbol, price, now);
    }

    /// Settles funding on `symbol`'s position at `rate` (a fraction) at its last price.
    pub fn settle_funding(&mut self, symbol: &str, rate: Decimal, now: TimestampMs) -> bool {
        let Some((paid, ev)) = self.book.settle_funding(symbol, rate, now) else { return false };
        *self.funding.entry(symbol.to_string()).or_default() += paid;
        let actions = self.core.on_account_event(ev, now);
        self.run(actions, now);
        true
    }

    /// The core's monitor tick (emergency rule, stop audit, periodic full read).
    pub fn tick(&mut self, now: TimestampMs) {
        let actions = self.core.on_tick(now);
        self.run(actions, now);
    }

    /// Closes what is still open at market (reason `end_of_data`).
    pub fn close_all(&mut self, reason: ExitReason, now: TimestampMs) {
        let (actions, busy) = self.core.force_exit(None, reason, now);
        if !busy.is_empty() {
            tracing::warn!(?busy, "positions with a request in flight not closed");
        }
        self.run(actions, now);
    }
}
