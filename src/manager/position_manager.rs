//! The trading brain shared by the daemon, dry-run and backtest: a synchronous state machine
//! that turns closed candles, prices and fills into decisions. It owns the per-symbol
//! analyzers, the open positions with their exit ladders, the risk book and the emergency
//! latch. It never performs I/O and never reads a clock — time comes in with every call — so
//! `kinetic run` and `kinetic backtest` make the same decisions from the same data.
//!
//! Its caller is the trading core ([`crate::manager::trading_core::TradingCore`]), which the
//! live position-manager task and the backtest's simulated market both drive:
//! 1. closed candles feed the analyzers ([`PositionManager::on_closed_candle`]); the scanner's
//!    [`PositionManager::scan`] ranks the 24 h tickers;
//! 2. a complete analysis is evaluated by [`PositionManager::evaluate_signal`] → an
//!    [`EntryPlan`] or the reason there is none; the fill is reported with
//!    [`PositionManager::open_position`], which returns the protective stop to place;
//! 3. every price goes through [`PositionManager::on_price`] → exit actions, and each executed
//!    close is reported with [`PositionManager::on_exit_filled`].

use rustc_hash::FxHashMap;
use std::collections::BTreeMap;

use rust_decimal::prelude::*;
use serde::Serialize;

use crate::analyzer::SymbolAnalyzer;
use crate::analyzer::entry_exit::{build_signal, pct_fraction, round_stop};
use crate::analyzer::scoring::{ComponentReport, Score};
use crate::config::{EmergencyReset, RiskSettings, ScannerSettings, Settings, StrategySettings};
use crate::core::models::{
    Candle, Direction, LadderStage, PartialExit, Position, Signal, SymbolFilters, Ticker, Timeframe,
    TimeframeIndicators, TimestampMs, decimal_from_f64,
};
use crate::manager::exit_ladder::{ExitAction, ExitLadder, ExitReason, LadderConfig};
use crate::manager::risk_checks::{PortfolioSnapshot, RiskBook, RiskReport, TradeIntent, utc_day};
use crate::manager::sizing::{is_high_volatility, leverage_for, size_position};
use crate::scanner::market_scanner::{Candidate, ScanInput, VolumeWindow, scan};

/// Everything needed to send one entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntryPlan {
    pub signal: Signal,
    pub leverage: u32,
    /// Quantity rounded down to the market step.
    pub qty: Decimal,
    pub notional: Decimal,
    /// Distance from entry to the stop, kept when the fill price differs from the signal's.
    pub stop_distance: Decimal,
    /// The notional the position may reach at its fill (`None`: no cap); a fill worse than
    /// the reference price that takes it over is trimmed back under it.
    pub max_notional: Option<Decimal>,
    pub high_volatility: bool,
}

/// The outcome of evaluating one symbol for an entry, with everything a log line or the
/// journal needs to explain it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntryDecision {
    pub symbol: String,
    pub time: TimestampMs,
    pub score_total: Option<u8>,
    pub direction: Option<Direction>,
    pub components: Vec<ComponentReport>,
    pub risk: Option<RiskReport>,
    /// `Ok` = send this entry; `Err` = the reason not to.
    pub outcome: Result<EntryPlan, String>,
}

impl EntryDecision {
    /// No entry, for `reason`, before anything was scored.
    fn refused(symbol: &str, time: TimestampMs, reason: &str) -> Self {
        EntryDecision {
            symbol: symbol.to_string(),
            time,
            score_total: None,
            direction: None,
            components: Vec::new(),
            risk: None,
            outcome: Err(reason.to_string()),
        }
    }
}

/// A complete analysis of one symbol at its latest closed candles: what the analyzer task
/// sends the position manager, and what the backtest computes in place.
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    pub symbol: String,
    pub score: Score,
    pub indicators: TimeframeIndicators,
    /// Close time of the 15m candle scored.
    pub m15_close_time: TimestampMs,
    pub m15_close: f64,
    /// Last closed 1h close (the high-volatility test divides the 1h ATR by it).
    pub h1_close: f64,
}

impl Analysis {
    /// The analysis of a warmed-up analyzer.
    pub fn of(symbol: &str, a: &SymbolAnalyzer, strategy: &StrategySettings) -> Option<Analysis> {
        Some(Analysis {
            symbol: symbol.to_string(),
            score: a.score(strategy)?,
            indicators: a.indicators()?,
            m15_close_time: a.m15.last_close_time()?,
            m15_close: a.m15.last_close(),
            h1_close: a.h1.last_close(),
        })
    }
}

/// A position the manager tracks, with its ladder and what it has realized so far.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedPosition {
    pub position: Position,
    pub ladder: ExitLadder,
    pub filters: SymbolFilters,
    pub confidence: u8,
    /// PnL realized by partial exits so far (before fees).
    pub realized_pnl: Decimal,
    pub fees: Decimal,
    /// Exit reason of the last close, if any.
    pub last_reason: Option<ExitReason>,
}

impl ManagedPosition {
    /// The open price interval inside which a price changes nothing of this position: its
    /// ladder's [`ExitLadder::quiet_band`], where the peak PnL does not rise either, and only
    /// while the position record already equals what its ladder would copy into it.
    pub fn quiet_band(&self) -> Option<(Decimal, Decimal)> {
        let (low, high) = self.ladder.quiet_band()?;
        if !self.synced_with_ladder() {
            return None;
        }
        // The PnL grows towards the favourable end of the band; strictly inside it stays below.
        let favourable = match self.position.direction {
            Direction::Long => high,
            Direction::Short => low,
        };
        (self.open_pnl_at(favourable) <= self.position.peak_pnl).then_some((low, high))
    }

    /// PnL of what is still open, at `price` (the peak PnL's measure).
    fn open_pnl_at(&self, price: Decimal) -> Decimal {
        (price - self.position.entry_price) * self.ladder.remaining_qty * self.position.direction.sign()
    }

    /// The position after its ladder saw `price`: peak PnL and the ladder's state.
    fn after_price(&mut self, price: Decimal) {
        let pnl_now = self.open_pnl_at(price);
        if pnl_now > self.position.peak_pnl {
            self.position.peak_pnl = pnl_now;
        }
        self.sync_from_ladder();
    }

    /// The position record already holds what [`ManagedPosition::sync_from_ladder`] would copy
    /// into it, equal in value and in scale (so a copy would not even change how it prints).
    fn synced_with_ladder(&self) -> bool {
        let same = |x: Decimal, y: Decimal| x == y && x.scale() == y.scale();
        let (p, l) = (&self.position, &self.ladder);
        let trailing = (l.stage == LadderStage::Trailing).then_some(l.stop);
        same(p.qty, l.remaining_qty)
            && same(p.stop_loss, l.stop)
            && same(p.best_price, l.best_price)
            && p.stage == l.stage
            && match (p.trailing_stop, trailing) {
                (Some(x), Some(y)) => same(x, y),
                (None, None) => true,
                _ => false,
            }
    }

    /// Copies the ladder's state into the position record (for the journal and `/status`).
    fn sync_from_ladder(&mut self) {
        self.position.qty = self.ladder.remaining_qty;
        self.position.stop_loss = self.ladder.stop;
        self.position.stage = self.ladder.stage;
        self.position.best_price = self.ladder.best_price;
        self.position.trailing_stop = (self.ladder.stage == LadderStage::Trailing).then_some(self.ladder.stop);
    }
}

/// A position that has been closed completely.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClosedTrade {
    pub symbol: String,
    pub direction: Direction,
    pub entry_time: TimestampMs,
    pub exit_time: TimestampMs,
    pub entry_price: Decimal,
    /// Quantity-weighted average exit price.
    pub exit_price: Decimal,
    pub qty: Decimal,
    pub leverage: u32,
    pub confidence: u8,
    /// Realized PnL before fees.
    pub gross_pnl: Decimal,
    pub fees: Decimal,
    /// Reason of the final close.
    pub exit_reason: ExitReason,
    pub partial_exits: Vec<PartialExit>,
}

impl ClosedTrade {
    pub fn net_pnl(&self) -> Decimal {
        self.gross_pnl - self.fees
    }
}

/// The emergency exit latch: once fired, no new entries until cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EmergencyLatch {
    pub since: TimestampMs,
}

/// The brain. See the module documentation for the calling protocol.
#[derive(Debug, Clone)]
pub struct PositionManager {
    strategy: StrategySettings,
    risk_settings: RiskSettings,
    scanner: ScannerSettings,
    ladder_cfg: LadderConfig,
    analyzers: FxHashMap<String, SymbolAnalyzer>,
    /// The volume filter's ratio per symbol, kept as its closed 15m candles arrive.
    volume_15m: FxHashMap<String, VolumeWindow>,
    positions: BTreeMap<String, ManagedPosition>,
    pub risk: RiskBook,
    emergency: Option<EmergencyLatch>,
    /// Decisions carry the score's components with their reasons (for the journal and the
    /// logs); a backtest, which keeps neither, turns this off.
    explain: bool,
}

impl PositionManager {
    /// A manager with no positions; `None` if the strategy percentages are unusable (the
    /// config validation prevents that).
    pub fn new(settings: &Settings, now: TimestampMs, equity: Decimal) -> Option<Self> {
        Some(PositionManager {
            strategy: settings.strategy.clone(),
            risk_settings: settings.risk.clone(),
            scanner: settings.scanner.clone(),
            ladder_cfg: LadderConfig::from_settings(&settings.strategy)?,
            analyzers: FxHashMap::default(),
            volume_15m: FxHashMap::default(),
            positions: BTreeMap::new(),
            risk: RiskBook::new(now, equity),
            emergency: None,
            explain: true,
        })
    }

    /// Feeds one closed candle. Candles must arrive in time order per symbol and timeframe;
    /// repeats and older candles are ignored by the analyzer.
    pub fn on_closed_candle(&mut self, symbol: &str, tf: Timeframe, candle: &Candle) -> bool {
        if !candle.is_sane() {
            return false;
        }
        let taken = match self.analyzers.get_mut(symbol) {
            Some(a) => a.on_closed_candle(tf, candle),
            None => {
                let mut a = SymbolAnalyzer::new();
                let taken = a.on_closed_candle(tf, candle);
                self.analyzers.insert(symbol.to_string(), a);
                taken
            }
        };
        if taken && tf == Timeframe::M15 {
            // The key is allocated only at a symbol's first candle.
            match self.volume_15m.get_mut(symbol) {
                Some(w) => w.push(candle.volume),
                None => {
                    let mut w = VolumeWindow::new(self.scanner.volume_lookback);
                    w.push(candle.volume);
                    self.volume_15m.insert(symbol.to_string(), w);
                }
            }
        }
        taken
    }

    pub fn analyzer(&self, symbol: &str) -> Option<&SymbolAnalyzer> {
        self.analyzers.get(symbol)
    }

    /// Runs the scanner over `tickers`, using each symbol's last closed 15m volume over the
    /// mean of the `scanner.volume_lookback` candles before it.
    pub fn scan(&mut self, tickers: &[Ticker]) -> Vec<Candidate> {
        let inputs: Vec<ScanInput> = tickers
            .iter()
            .map(|t| ScanInput {
                ticker: t.clone(),
                volume_ratio: self.volume_15m.get(&t.symbol).and_then(VolumeWindow::ratio).filter(|r| r.is_finite()),
            })
            .collect();
        scan(&inputs, &self.scanner)
    }

    /// Whether decisions carry the score's components with their reasons (on unless a
    /// backtest turns it off: formatting them is a good part of evaluating a signal).
    pub fn set_explain(&mut self, on: bool) {
        self.explain = on;
    }

    /// The current score of a symbol, once all three timeframes are warmed up.
    pub fn score(&self, symbol: &str) -> Option<Score> {
        self.analyzers.get(symbol)?.score(&self.strategy)
    }

    /// What the analyzer knows about `symbol` at its latest closed candles, or `None` while a
    /// timeframe is still warming up.
    pub fn analysis(&self, symbol: &str) -> Option<Analysis> {
        Analysis::of(symbol, self.analyzers.get(symbol)?, &self.strategy)
    }

    /// Evaluates one analysis for an entry at `now`: score → signal → leverage → size → the
    /// five risk checks (always all five). `entry_price` is the price the entry is expected to
    /// fill at (the mark live, the next open in a backtest). `pending_entry` marks a symbol
    /// whose entry order is still in flight. The live analyzer task and the backtest both end
    /// here: one decision function.
    #[allow(clippy::too_many_arguments)]
    pub fn evaluate_signal(
        &mut self,
        analysis: &Analysis,
        now: TimestampMs,
        entry_price: Decimal,
        filters: &SymbolFilters,
        max_leverage: u32,
        portfolio: &PortfolioSnapshot,
        pending_entry: bool,
    ) -> EntryDecision {
        self.risk.roll_day(now, portfolio.equity);
        self.risk.observe(portfolio.equity, &self.risk_settings);
        self.clear_emergency_if_due(now);
        let symbol = analysis.symbol.as_str();
        let score = &analysis.score;
        let indicators = analysis.indicators;
        let mut decision = EntryDecision {
            score_total: Some(score.total),
            direction: Some(score.direction),
            components: if self.explain { score.report() } else { Vec::new() },
            ..EntryDecision::refused(symbol, now, "")
        };
        if let Some(latch) = self.emergency {
            decision.outcome = Err(format!("emergency exit latched since {}", latch.since));
            return decision;
        }
        let Some(signal) = build_signal(
            symbol,
            score,
            indicators,
            entry_price,
            analysis.m15_close_time,
            &self.strategy,
            filters.tick_size,
        ) else {
            decision.outcome = Err(if score.total < self.strategy.min_confidence {
                format!("score {} below min_confidence {}", score.total, self.strategy.min_confidence)
            } else {
                "no valid stop level (ATR unusable)".to_string()
            });
            return decision;
        };
        let high_vol =
            is_high_volatility(indicators.h1.atr, analysis.h1_close, self.risk_settings.high_volatility_atr_pct);
        let Some(leverage) =
            leverage_for(signal.confidence, high_vol, &self.risk_settings.leverage_tiers, max_leverage.max(1))
        else {
            decision.outcome = Err(format!("no leverage tier for confidence {}", signal.confidence));
            return decision;
        };
        let sizing = size_position(
            portfolio.equity,
            signal.confidence,
            signal.entry_price,
            signal.stop_loss,
            &self.risk_settings.sizing_tiers,
            filters,
        );
        let busy = pending_entry || self.positions.contains_key(symbol);
        let notional = sizing.as_ref().map(|s| s.notional).unwrap_or(Decimal::ZERO);
        let report = self.risk.evaluate(
            portfolio,
            &TradeIntent { symbol, notional, leverage, symbol_busy: busy },
            &self.risk_settings,
            now,
        );
        let passed = report.passed();
        let failures = report.failures();
        decision.risk = Some(report);
        let sizing = match sizing {
            Ok(s) => s,
            Err(skip) => {
                decision.outcome = Err(format!("sizing: {skip}"));
                return decision;
            }
        };
        if !passed {
            decision.outcome = Err(format!("risk checks failed: {failures}"));
            return decision;
        }
        let stop_distance = (signal.entry_price - signal.stop_loss).abs();
        decision.outcome = Ok(EntryPlan {
            signal,
            leverage,
            qty: sizing.qty,
            notional: sizing.notional,
            stop_distance,
            max_notional: Some(sizing.max_notional),
            high_volatility: high_vol,
        });
        decision
    }

    /// Registers a filled entry. The stop keeps the plan's distance from the actual fill
    /// price, re-capped at `strategy.max_stop_pct` of the fill (a fill beyond the signal's
    /// entry must not carry a capped stop past the cap), rounded to tick towards the entry.
    /// Returns the stop price to place on the exchange for `filled_qty`, or `None` if the fill
    /// is unusable (zero quantity/price).
    pub fn open_position(
        &mut self,
        plan: &EntryPlan,
        filled_qty: Decimal,
        avg_price: Decimal,
        fee: Decimal,
        filters: &SymbolFilters,
        now: TimestampMs,
    ) -> Option<Decimal> {
        if filled_qty <= Decimal::ZERO || avg_price <= Decimal::ZERO {
            return None;
        }
        let dir = plan.signal.direction;
        let cap = avg_price.checked_mul(pct_fraction(self.strategy.max_stop_pct)?)?;
        let distance = plan.stop_distance.min(cap);
        let raw = match dir {
            Direction::Long => avg_price - distance,
            Direction::Short => avg_price + distance,
        };
        let mut stop = round_stop(dir, raw, filters.tick_size);
        if stop <= Decimal::ZERO {
            stop = filters.tick_size.max(Decimal::new(1, 8));
        }
        let ladder = ExitLadder::new(dir, avg_price, filled_qty, stop, &self.ladder_cfg, filters)?;
        let position = Position {
            symbol: plan.signal.symbol.clone(),
            direction: dir,
            entry_price: avg_price,
            original_qty: filled_qty,
            qty: filled_qty,
            leverage: plan.leverage,
            stop_loss: stop,
            take_profit: ladder.trail_start_price,
            trailing_stop: None,
            partial_exits: Vec::new(),
            best_price: avg_price,
            peak_pnl: Decimal::ZERO,
            stage: LadderStage::Open,
            entry_time: now,
        };
        self.track(position, ladder, filters, plan.signal.confidence, fee);
        Some(stop)
    }

    /// Takes over a position restored from the journal or adopted from the exchange.
    pub fn restore_position(&mut self, position: Position, filters: &SymbolFilters, confidence: u8) -> bool {
        let Some(ladder) = ExitLadder::from_position(&position, &self.ladder_cfg, filters) else {
            return false;
        };
        self.track(position, ladder, filters, confidence, Decimal::ZERO);
        true
    }

    fn track(
        &mut self,
        position: Position,
        ladder: ExitLadder,
        filters: &SymbolFilters,
        confidence: u8,
        fees: Decimal,
    ) {
        let managed = ManagedPosition {
            position,
            ladder,
            filters: filters.clone(),
            confidence,
            realized_pnl: Decimal::ZERO,
            fees,
            last_reason: None,
        };
        self.positions.insert(managed.position.symbol.clone(), managed);
    }

    /// One price for `symbol`: the exit actions to execute, in order.
    pub fn on_price(&mut self, symbol: &str, price: Decimal) -> Vec<ExitAction> {
        let Some(mp) = self.positions.get_mut(symbol) else {
            return Vec::new();
        };
        let actions = mp.ladder.on_price(price);
        mp.after_price(price);
        actions
    }

    /// [`PositionManager::on_price`] for a caller that already ran the ladder at `price` on
    /// a copy (to see whether it acts) and found no action: takes the copy's state (best
    /// price, trailing stop) instead of running the ladder a second time.
    pub fn on_quiet_price(&mut self, symbol: &str, ladder: ExitLadder, price: Decimal) {
        if let Some(mp) = self.positions.get_mut(symbol) {
            mp.ladder = ladder;
            mp.after_price(price);
        }
    }

    /// Books an executed close of `qty` at `price`. Returns the finished trade once nothing
    /// is left. The ladder has already deducted the quantity when it emitted the action; the
    /// caller reports what actually filled, and a shortfall stays open (see
    /// [`PositionManager::sync_quantity`]).
    pub fn on_exit_filled(
        &mut self,
        symbol: &str,
        qty: Decimal,
        price: Decimal,
        fee: Decimal,
        reason: ExitReason,
        now: TimestampMs,
    ) -> Option<ClosedTrade> {
        let mp = self.positions.get_mut(symbol)?;
        let gross = (price - mp.position.entry_price) * qty * mp.position.direction.sign();
        mp.realized_pnl += gross;
        mp.fees += fee;
        mp.last_reason = Some(reason);
        mp.position.partial_exits.push(PartialExit { price, qty, time: now, reason: reason.as_str().to_string() });
        mp.sync_from_ladder();
        if !mp.ladder.is_closed() {
            return None;
        }
        let mp = self.positions.remove(symbol)?;
        let closed_qty: Decimal = mp.position.partial_exits.iter().map(|e| e.qty).sum();
        let exit_price = if closed_qty.is_zero() {
            price
        } else {
            mp.position.partial_exits.iter().map(|e| e.price * e.qty).sum::<Decimal>() / closed_qty
        };
        let net = mp.realized_pnl - mp.fees;
        self.risk.record_close(symbol, net, now, &self.risk_settings);
        Some(ClosedTrade {
            symbol: symbol.to_string(),
            direction: mp.position.direction,
            entry_time: mp.position.entry_time,
            exit_time: now,
            entry_price: mp.position.entry_price,
            exit_price,
            qty: mp.position.original_qty,
            leverage: mp.position.leverage,
            confidence: mp.confidence,
            gross_pnl: mp.realized_pnl,
            fees: mp.fees,
            exit_reason: reason,
            partial_exits: mp.position.partial_exits,
        })
    }

    /// Aligns the remaining quantity with what the exchange reports (a close that did not
    /// fill, a manual intervention). Zero removes the position without booking a trade.
    pub fn sync_quantity(&mut self, symbol: &str, qty: Decimal) {
        if qty <= Decimal::ZERO {
            self.positions.remove(symbol);
            return;
        }
        if let Some(mp) = self.positions.get_mut(symbol) {
            mp.ladder.remaining_qty = qty;
            mp.sync_from_ladder();
        }
    }

    /// Deducts `qty` that the exchange closed on its own (a resting stop triggered, a
    /// liquidation) before the ladder saw the price. Returns how much was deducted; book it
    /// afterwards with [`PositionManager::on_exit_filled`].
    pub fn reduce_remaining(&mut self, symbol: &str, qty: Decimal) -> Decimal {
        let Some(mp) = self.positions.get_mut(symbol) else {
            return Decimal::ZERO;
        };
        let take = qty.min(mp.ladder.remaining_qty).max(Decimal::ZERO);
        mp.ladder.remaining_qty -= take;
        mp.sync_from_ladder();
        take
    }

    /// Undoes the ladder's deduction of `qty` for a close that did not execute (rejected, or
    /// only partly filled). When nothing of a take-profit executed, the ladder steps back to the
    /// stage before that level so the level fires again on the next price. Fail-closed: the
    /// position is tracked at (at least) its real size, so its stop is never shrunk below it.
    pub fn revert_close(&mut self, symbol: &str, qty: Decimal, reason: ExitReason, nothing_filled: bool) {
        let Some(mp) = self.positions.get_mut(symbol) else {
            return;
        };
        mp.ladder.remaining_qty += qty.max(Decimal::ZERO);
        if nothing_filled {
            match reason {
                ExitReason::TakeProfit1 => mp.ladder.stage = LadderStage::Open,
                ExitReason::TakeProfit2 => mp.ladder.stage = LadderStage::Tp1Done,
                _ => {}
            }
        }
        mp.sync_from_ladder();
    }

    /// The ladder's take-profit fractions from now on apply to what is left (after the part
    /// of a fill above the notional cap was closed).
    pub fn rebase_ladder(&mut self, symbol: &str) {
        if let Some(mp) = self.positions.get_mut(symbol) {
            mp.ladder.original_qty = mp.ladder.remaining_qty;
        }
    }

    /// Puts a position back exactly as it was (a close that did not execute).
    pub fn restore_managed(&mut self, mp: ManagedPosition) {
        self.positions.insert(mp.position.symbol.clone(), mp);
    }

    /// Adds a commission that arrived after the order was booked. Returns false when the
    /// position is gone (the fee is then booked against today's PnL).
    pub fn add_fee(&mut self, symbol: &str, fee: Decimal) -> bool {
        match self.positions.get_mut(symbol) {
            Some(mp) => {
                mp.fees += fee;
                true
            }
            None => {
                self.risk.day_realized_pnl -= fee;
                false
            }
        }
    }

    /// Latches the emergency exit (once; the first time is kept).
    pub fn latch_emergency(&mut self, now: TimestampMs) {
        if self.emergency.is_none() {
            self.emergency = Some(EmergencyLatch { since: now });
        }
    }

    /// Clears the latch when the configured reset (next UTC day) is due.
    pub fn clear_emergency_if_due(&mut self, now: TimestampMs) {
        if let (Some(latch), EmergencyReset::NextUtcDay) = (self.emergency, self.risk_settings.emergency_reset)
            && utc_day(now) > utc_day(latch.since)
        {
            self.emergency = None;
        }
    }

    /// The latch as restored from the journal (or cleared by the operator with `None`).
    pub fn set_emergency(&mut self, latch: Option<EmergencyLatch>) {
        self.emergency = latch;
    }

    pub fn emergency(&self) -> Option<EmergencyLatch> {
        self.emergency
    }

    pub fn positions(&self) -> impl Iterator<Item = &ManagedPosition> {
        self.positions.values()
    }

    pub fn position(&self, symbol: &str) -> Option<&ManagedPosition> {
        self.positions.get(symbol)
    }

    pub fn has_position(&self, symbol: &str) -> bool {
        self.positions.contains_key(symbol)
    }

    pub fn open_count(&self) -> usize {
        self.positions.len()
    }

    pub fn risk_settings(&self) -> &RiskSettings {
        &self.risk_settings
    }
}

/// A fee for `notional` at `pct` percent.
pub fn fee_for(notional: Decimal, pct: f64) -> Decimal {
    decimal_from_f64(pct).map(|p| notional.abs() * p / Decimal::ONE_HUNDRED).unwrap_or(Decimal::ZERO)
}
