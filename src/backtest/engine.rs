//! The replay driver: one clock over all symbols, feeding closed candles to the analyzers
//! and the scanner and driving the daemon's trading core in a [`SimMarket`] (the simulated
//! account dry-run uses, answered synchronously).
//!
//! The caller (the file feed in [`crate::backtest::run_feed`], a test, or a dry-run replay of
//! recorded candles) hands over candles in global close-time order with
//! [`Engine::on_candle`] and, after the last candle of each close time, calls
//! [`Engine::close_batch`]. Per close time T (the clock reads `T + 1 ms`, the next open):
//! 1. each 15m candle of a held symbol is walked as mark prices (the market's intra-candle
//!    rule: stops, take-profits, trailing stops, liquidation, the emergency rule at every
//!    price); then the symbol's rolling 24 h window and its analyzer take the candle (all
//!    timeframes);
//! 2. at each of a symbol's funding times (every 8 h from 00:00 UTC, or the interval
//!    `funding-info.json` gives it: 4 h, 1 h ...) funding is settled on its open position (the
//!    symbol's funding file if it has a rate for that settlement, else
//!    `backtest.flat_funding_rate_pct`), marked at the last 15m close;
//! 3. the core's monitor tick runs (emergency rule, stop audit, periodic full read);
//! 4. the scanner runs when `scanner.interval_secs` have passed since the last scan. Tickers
//!    only change when 15m candles close, so scans are aligned to 15m closes: with the default
//!    60 s interval the scanner runs at every 15m close, with 3600 s at every fourth — as the
//!    live scanner task does (it scans at each 15m close once its interval has passed);
//! 5. every current candidate whose 15m candle closed at T is analysed and handed to the core
//!    as the analyzer task hands a signal to the position manager (`on_signal`: all five risk
//!    checks, sizing, the entry order) with the price = the open of its next 15m candle,
//!    where the entry fills (slippage, taker fee) and its stop is placed. A symbol whose next
//!    candle does not start at T + 1 ms (a gap, the end of data) is not entered;
//! 6. an equity point (wallet + unrealized PnL at the last closes) is recorded, and, when
//!    [`Engine::keep_close_history`] asked for it, each symbol's close at every full UTC hour
//!    (the report's price charts).
//!
//! Fast path: a candidate whose score is below `strategy.min_confidence` is not handed to
//! the core (which would refuse it for exactly that reason); it is counted under the same
//! skip reason.
//!
//! 24 h ticker figures come from the last 96 closed 15m candles: last price = last close,
//! change % = last close vs the open 96 candles ago, volume = sum, quote volume = sum of the
//! quote-volume column, or volume × typical price where it is empty. A symbol has no ticker
//! (and is not scanned) until 96 candles are in its window.

use std::collections::BTreeMap;

use rust_decimal::prelude::*;

use crate::backtest::account::SimAccount;
use crate::backtest::feed::FundingSource;
use crate::backtest::market::SimMarket;
use crate::backtest::sim::{self, FillModel};
use crate::backtest::symbols::SymbolRules;
use crate::config::{ScannerSettings, Settings};
use crate::core::models::{Candle, Ticker, Timeframe, TimestampMs, decimal_from_f64};
use crate::data::DataError;
use crate::manager::exit_ladder::ExitReason;
use crate::scanner::market_scanner::prefilter;

/// 24 h of 15m candles.
pub const TICKER_WINDOW: usize = 96;

const HOUR_MS: i64 = 3_600_000;

/// A symbol to replay.
pub struct SymbolSpec {
    pub name: String,
    pub rules: SymbolRules,
    /// Real funding rates, if a funding file exists.
    pub funding: Option<FundingSource>,
    /// Funding interval in ms (`fundingInfo`; 8 h for symbols it does not list).
    pub funding_interval_ms: i64,
}

/// Rolling window of the last 96 15m candles for the 24 h ticker.
#[derive(Debug, Clone)]
struct TickerWindow {
    open: [f64; TICKER_WINDOW],
    volume: [f64; TICKER_WINDOW],
    quote_volume: [f64; TICKER_WINDOW],
    head: usize,
    len: usize,
    volume_sum: f64,
    quote_volume_sum: f64,
    last_close: f64,
    last_close_time: TimestampMs,
}

impl TickerWindow {
    fn new() -> Self {
        TickerWindow {
            open: [0.0; TICKER_WINDOW],
            volume: [0.0; TICKER_WINDOW],
            quote_volume: [0.0; TICKER_WINDOW],
            head: 0,
            len: 0,
            volume_sum: 0.0,
            quote_volume_sum: 0.0,
            last_close: 0.0,
            last_close_time: 0,
        }
    }

    /// Adds a candle, keeping running sums; every full turn of the ring the sums are
    /// recomputed from scratch so floating-point drift cannot accumulate.
    fn push(&mut self, c: &Candle) {
        let i = self.head;
        let qv = c.quote_volume_or_estimate();
        if let (Some(o), Some(v), Some(q)) =
            (self.open.get_mut(i), self.volume.get_mut(i), self.quote_volume.get_mut(i))
        {
            if self.len == TICKER_WINDOW {
                self.volume_sum -= *v;
                self.quote_volume_sum -= *q;
            }
            *o = c.open;
            *v = c.volume;
            *q = qv;
        }
        self.volume_sum += c.volume;
        self.quote_volume_sum += qv;
        self.head = (self.head + 1) % TICKER_WINDOW;
        self.len = (self.len + 1).min(TICKER_WINDOW);
        if self.head == 0 {
            self.volume_sum = self.volume.iter().take(self.len).sum();
            self.quote_volume_sum = self.quote_volume.iter().take(self.len).sum();
        }
        self.last_close = c.close;
        self.last_close_time = c.close_time;
    }

    /// Writes the 24 h figures into `t`; false until the window is full.
    fn fill(&self, t: &mut Ticker) -> bool {
        if self.len < TICKER_WINDOW {
            return false;
        }
        // When full, `head` points at the oldest candle.
        let first_open = self.open.get(self.head).copied().unwrap_or(0.0);
        if first_open <= 0.0 {
            return false;
        }
        t.last_price = self.last_close;
        t.price_change_pct = (self.last_close - first_open) / first_open * 100.0;
        t.volume = self.volume_sum;
        t.quote_volume = self.quote_volume_sum;
        t.event_time = self.last_close_time;
        true
    }
}

struct SymbolState {
    name: String,
    window: TickerWindow,
    /// Decimal places prices are converted at (the tick's).
    price_scale: u32,
    closed_in_batch: bool,
    /// Close of the latest 15m candle.
    last_close: Option<f64>,
    /// The 15m close the buy-and-hold benchmark bought at.
    first_traded_close: Option<f64>,
    funding: Option<FundingSource>,
    funding_interval_ms: i64,
    ticker: Ticker,
}

/// A symbol's hourly closes over the trading window: the 15m close at each full UTC hour
/// (= the 1h close), kept only when [`Engine::keep_close_history`] asked for them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CloseHistory {
    pub symbol: String,
    /// (the close time + 1 ms, i.e. the full hour, close price), in time order.
    pub closes: Vec<(TimestampMs, f64)>,
}

/// One point of the equity curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EquityPoint {
    pub time: TimestampMs,
    pub equity: f64,
    pub open_positions: u32,
}

/// Counters of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunStats {
    pub candles: u64,
    pub candles_15m: u64,
    pub candles_1h: u64,
    pub candles_4h: u64,
    pub scans: u64,
    pub evaluations: u64,
    pub entries: u64,
    pub funding_events: u64,
    pub emergencies: u64,
    /// Why candidates were not entered, by category.
    pub skip_reasons: BTreeMap<String, u64>,
}

/// The replay state. See the module documentation for the order of events.
pub struct Engine {
    market: SimMarket,
    symbols: Vec<SymbolState>,
    index: BTreeMap<String, usize>,
    scan_interval_ms: i64,
    scanner: ScannerSettings,
    flat_funding: Decimal,
    min_confidence: u8,
    trade_from: TimestampMs,
    candidates: Vec<usize>,
    last_scan: Option<TimestampMs>,
    batch_has_m15: bool,
    pub equity: Vec<EquityPoint>,
    /// Buy-and-hold benchmark at every point of `equity`: the starting balance spread in equal
    /// weights over the symbols at their first 15m close of the trading window, held to the end.
    pub benchmark: Vec<f64>,
    /// Per symbol (in the engine's order), its hourly closes; empty unless
    /// [`Engine::keep_close_history`] was called (a sweep runs thousands of engines and needs
    /// none).
    pub close_history: Vec<CloseHistory>,
    pub stats: RunStats,
    last_now: Option<TimestampMs>,
    tickers: Vec<Ticker>,
}

/// Why a backtest could not run.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("invalid backtest setup: {0}")]
    Setup(String),
    #[error("cannot write {path}: {source}")]
    Output {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Groups a refusal into a short, stable category for the skip table.
fn skip_category(reason: &str, failed_checks: &[&str]) -> String {
    if !failed_checks.is_empty() {
        return format!("risk: {}", failed_checks.join("+"));
    }
    let words: Vec<&str> =
        reason.split_whitespace().filter(|w| !w.chars().any(|c| c.is_ascii_digit() || c == '-')).take(6).collect();
    words.join(" ")
}

impl Engine {
    /// A fresh engine at the starting balance of `paper.starting_balance`. Entries are only
    /// taken from `trade_from` on (earlier candles only warm the indicators up).
    ///
    /// # Errors
    /// [`BacktestError::Setup`] for unusable fee, slippage or balance settings.
    pub fn new(settings: &Settings, symbols: Vec<SymbolSpec>, trade_from: TimestampMs) -> Result<Self, BacktestError> {
        let p = &settings.paper;
        let model = FillModel::from_pct(p.taker_fee_pct, p.maker_fee_pct, p.slippage_pct)
            .ok_or_else(|| BacktestError::Setup("paper fee/slippage percentages must be finite and >= 0".into()))?;
        let balance = decimal_from_f64(p.starting_balance)
            .filter(|b| *b > Decimal::ZERO)
            .ok_or_else(|| BacktestError::Setup("paper.starting_balance must be > 0".into()))?;
        let flat_funding = decimal_from_f64(settings.backtest.flat_funding_rate_pct)
            .ok_or_else(|| BacktestError::Setup("backtest.flat_funding_rate_pct must be finite".into()))?
            / Decimal::ONE_HUNDRED;
        let rules: Vec<(String, SymbolRules)> = symbols.iter().map(|s| (s.name.clone(), s.rules.clone())).collect();
        let market = SimMarket::new(settings, &rules, model, balance, trade_from).map_err(BacktestError::Setup)?;
        let mut index = BTreeMap::new();
        let mut states = Vec::with_capacity(symbols.len());
        for (i, s) in symbols.into_iter().enumerate() {
            if index.insert(s.name.clone(), i).is_some() {
                return Err(BacktestError::Setup(format!("symbol {} listed twice", s.name)));
            }
            states.push(SymbolState {
                ticker: Ticker {
                    symbol: s.name.clone(),
                    last_price: 0.0,
                    price_change_pct: 0.0,
                    volume: 0.0,
                    quote_volume: 0.0,
                    event_time: 0,
                },
                name: s.name,
                price_scale: s.rules.price_scale(),
                window: TickerWindow::new(),
                closed_in_batch: false,
                last_close: None,
                first_traded_close: None,
                funding: s.funding,
                funding_interval_ms: s.funding_interval_ms.max(3_600_000),
            });
        }
        Ok(Engine {
            market,
            symbols: states,
            index,
            scanner: settings.scanner.clone(),
            scan_interval_ms: i64::try_from(settings.scanner.interval_secs).unwrap_or(i64::MAX / 1000).max(1) * 1000,
            flat_funding,
            min_confidence: settings.strategy.min_confidence,
            trade_from,
            candidates: Vec::new(),
            last_scan: None,
            batch_has_m15: false,
            equity: Vec::new(),
            benchmark: Vec::new(),
            close_history: Vec::new(),
            stats: RunStats::default(),
            last_now: None,
            tickers: Vec::new(),
        })
    }

    /// Records each symbol's close at every full UTC hour of the trading window from now on
    /// ([`Engine::close_history`]), for the report's price charts: 24 points a day per symbol.
    pub fn keep_close_history(&mut self) {
        if self.close_history.is_empty() {
            self.close_history =
                self.symbols.iter().map(|s| CloseHistory { symbol: s.name.clone(), closes: Vec::new() }).collect();
        }
    }

    /// The core and the simulated account.
    pub fn market(&self) -> &SimMarket {
        &self.market
    }

    /// Trades, fees and funding so far.
    pub fn account(&self) -> &SimAccount {
        &self.market.ledger
    }

    pub fn symbol_names(&self) -> impl Iterator<Item = &str> {
        self.symbols.iter().map(|s| s.name.as_str())
    }

    /// Index of a symbol by name.
    pub fn symbol_index(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// Step 1 for one closed candle of symbol `symbol` (an index) at `tf`.
    pub fn on_candle(&mut self, symbol: usize, tf: Timeframe, candle: &Candle) {
        let Some(s) = self.symbols.get_mut(symbol) else {
            return;
        };
        self.stats.candles += 1;
        match tf {
            Timeframe::M15 => {
                self.stats.candles_15m += 1;
                self.batch_has_m15 = true;
                s.closed_in_batch = true;
                s.last_close = Some(candle.close).filter(|c| c.is_finite() && *c > 0.0);
                self.market.walk_candle(&s.name, candle, candle.close_time + 1);
                s.window.push(candle);
            }
            Timeframe::H1 => self.stats.candles_1h += 1,
            Timeframe::H4 => self.stats.candles_4h += 1,
            _ => {}
        }
        self.market.core_mut().manager_mut().on_closed_candle(&s.name, tf, candle);
    }

    /// Steps 2–6 after the last candle closing at `close_time`. `next_m15(i)` returns symbol
    /// `i`'s next 15m candle (not handed out yet), where an entry would fill.
    ///
    /// # Errors
    /// Reading a funding file failed.
    pub fn close_batch(
        &mut self,
        close_time: TimestampMs,
        next_m15: &dyn Fn(usize) -> Option<Candle>,
    ) -> Result<(), BacktestError> {
        let had_m15 = std::mem::take(&mut self.batch_has_m15);
        if !had_m15 {
            return Ok(());
        }
        let now = close_time + 1;
        if now < self.trade_from {
            for s in &mut self.symbols {
                s.closed_in_batch = false;
            }
            return Ok(());
        }
        self.last_now = Some(now);
        if self.market.open_count() > 0 {
            self.settle_funding(now)?;
        }
        self.market.tick(now);
        if self.last_scan.is_none_or(|t| now - t >= self.scan_interval_ms) {
            self.run_scan();
            self.last_scan = Some(now);
        }
        self.evaluate_candidates(now, next_m15);
        self.stats.emergencies = self.market.emergencies;
        self.equity.push(EquityPoint {
            time: now,
            equity: self.market.equity().to_f64().unwrap_or(0.0),
            open_positions: u32::try_from(self.market.open_count()).unwrap_or(u32::MAX),
        });
        let point = self.benchmark_point();
        self.benchmark.push(point);
        let full_hour = now.rem_euclid(HOUR_MS) == 0;
        for (i, s) in self.symbols.iter_mut().enumerate() {
            if full_hour
                && s.closed_in_batch
                && let (Some(close), Some(h)) = (s.last_close, self.close_history.get_mut(i))
            {
                h.closes.push((now, close));
            }
            s.closed_in_batch = false;
        }
        Ok(())
    }

    /// The benchmark's value now; a symbol's first close in the trading window is its entry
    /// (before it, its share is held as cash).
    fn benchmark_point(&mut self) -> f64 {
        let start = self.market.ledger.starting_balance.to_f64().unwrap_or(0.0);
        if self.symbols.is_empty() {
            return start;
        }
        let mut sum = 0.0;
        for s in &mut self.symbols {
            if s.first_traded_close.is_none() {
                s.first_traded_close = s.last_close;
            }
            sum += match (s.first_traded_close, s.last_close) {
                (Some(first), Some(last)) => last / first,
                _ => 1.0,
            };
        }
        start * sum / self.symbols.len() as f64
    }

    /// Per symbol: (name, first 15m close of the trading window, last 15m close seen).
    pub fn price_span(&self) -> Vec<(String, Option<f64>, Option<f64>)> {
        self.symbols.iter().map(|s| (s.name.clone(), s.first_traded_close, s.last_close)).collect()
    }

    fn settle_funding(&mut self, now: TimestampMs) -> Result<(), BacktestError> {
        for s in &mut self.symbols {
            if now.rem_euclid(s.funding_interval_ms) != 0 || !self.market.holds(&s.name) {
                continue;
            }
            let file_rate = match s.funding.as_mut() {
                Some(f) => f.rate_at(now)?,
                None => None,
            };
            let rate = file_rate.and_then(decimal_from_f64).unwrap_or(self.flat_funding);
            if self.market.settle_funding(&s.name, rate, now) {
                self.stats.funding_events += 1;
            }
        }
        Ok(())
    }

    fn run_scan(&mut self) {
        self.stats.scans += 1;
        self.tickers.clear();
        let mut filled = Vec::new();
        for s in &mut self.symbols {
            if s.window.fill(&mut s.ticker) {
                filled.push(&s.ticker);
            }
        }
        // The same cheap filters and documented pre-cut as the live scanner.
        self.tickers = prefilter(filled, &self.scanner).into_iter().cloned().collect();
        if self.tickers.is_empty() {
            self.candidates.clear();
            return;
        }
        let found = self.market.core_mut().manager_mut().scan(&self.tickers);
        self.candidates.clear();
        for c in found {
            if let Some(&i) = self.index.get(&c.symbol) {
                self.candidates.push(i);
            }
        }
    }

    fn skip(&mut self, category: String) {
        *self.stats.skip_reasons.entry(category).or_default() += 1;
    }

    fn evaluate_candidates(&mut self, now: TimestampMs, next_m15: &dyn Fn(usize) -> Option<Candle>) {
        let candidates = std::mem::take(&mut self.candidates);
        for &i in &candidates {
            let Some(s) = self.symbols.get(i) else {
                continue;
            };
            if !s.closed_in_batch || self.market.holds(&s.name) {
                continue;
            }
            self.stats.evaluations += 1;
            let Some(analysis) = self.market.core().manager().analysis(&s.name) else {
                self.skip("indicators still warming up".into());
                continue;
            };
            if analysis.score.total < self.min_confidence {
                self.skip("score below min_confidence".into());
                continue;
            }
            let Some(next) = next_m15(i).filter(|c| c.open_time == now) else {
                self.skip("no next candle to enter on".into());
                continue;
            };
            let entry_price = sim::price_from_f64(next.open, s.price_scale);
            let name = s.name.clone();
            let Some(decision) = self.market.signal(&analysis, entry_price, now) else {
                self.skip("entries are off".into());
                continue;
            };
            match decision.outcome {
                Ok(_) if self.market.holds(&name) => self.stats.entries += 1,
                Ok(_) => self.skip("fill refused".into()),
                Err(reason) => {
                    let failed: Vec<&str> = decision
                        .risk
                        .as_ref()
                        .map(|r| r.checks.iter().filter(|c| !c.passed).map(|c| c.name).collect())
                        .unwrap_or_default();
                    let cat = skip_category(&reason, &failed);
                    self.skip(cat);
                }
            }
        }
        self.candidates = candidates;
    }

    /// Closes what is still open at the last closes (reason `end_of_data`) and returns the
    /// time of the last replayed close.
    pub fn finish(&mut self) -> Option<TimestampMs> {
        let now = self.last_now?;
        if self.market.open_count() > 0 || self.market.core().manager().open_count() > 0 {
            self.market.close_all(ExitReason::EndOfData, now);
            if let Some(last) = self.equity.last_mut() {
                last.equity = self.market.equity().to_f64().unwrap_or(last.equity);
                last.open_positions = u32::try_from(self.market.open_count()).unwrap_or(u32::MAX);
            }
        }
        Some(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_categories_are_stable() {
        assert_eq!(skip_category("score 55 below min_confidence 60", &[]), "score below min_confidence");
        assert_eq!(skip_category("x", &["symbol_free", "loss_streak"]), "risk: symbol_free+loss_streak");
        assert_eq!(
            skip_category("sizing: quantity 0.0001 below the minimum 0.001", &[]),
            "sizing: quantity below the minimum"
        );
    }
}
