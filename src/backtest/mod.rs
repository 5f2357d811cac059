//! Historical replay: drives the daemon's own scanner, analyzers and trading core (risk
//! checks, sizing, leverage, entries, exit ladder, stops, failures, risk book, emergency) from
//! candle files instead of streams, against the simulated account `--dry-run` trades on, and
//! writes the trade list, metrics and HTML report. Live, dry-run and backtest differ only in
//! the exchange and the clock.
//!
//! - [`feed`]: streaming file readers and the k-way merge (one clock, memory O(symbols));
//! - [`engine`]: the replay driver (candles, funding, monitor tick, scans, signals);
//! - [`market`]: the trading core against the simulated account, answered synchronously, and
//!   the intra-candle rule;
//! - [`account`]: the ledger the reports are written from;
//! - [`sim`]: the pure fill model (slippage, fees, funding, liquidation price);
//! - [`symbols`]: symbol filters of the simulated market;
//! - [`metrics`] and [`report`]: the summary, `trades.csv`, `metrics.json`, `report.html`.
//!
//! Owns replay and reporting. It must not contain strategy logic: every decision comes from
//! the trading core.

pub mod account;
pub mod engine;
pub mod feed;
pub mod market;
pub mod metrics;
pub mod report;
pub mod sim;
pub mod symbols;

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use crate::config::Settings;
use crate::core::models::{Candle, Timeframe, TimestampMs};
use crate::data::{self, DataError};

pub use engine::{BacktestError, Engine, EquityPoint, RunStats, SymbolSpec};
pub use feed::{CandleSource, Feed, FileCandleSource, MemorySource};
pub use metrics::Metrics;

/// Candles read before the first trading day so every indicator (4h MACD needs 35 candles,
/// about 6 days) is warm when trading starts.
pub const WARMUP_MS: i64 = 20 * 86_400_000;

/// What to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BacktestOptions {
    pub data_dir: PathBuf,
    /// Symbols to replay; empty = every symbol with 15m, 1h and 4h files.
    pub symbols: Vec<String>,
    /// First trading moment (inclusive), ms; `None` = from the start of the data.
    pub from: Option<TimestampMs>,
    /// End of trading (exclusive), ms; `None` = to the end of the data.
    pub to: Option<TimestampMs>,
}

/// The symbols to replay: the requested ones (each must have all three files) or all
/// symbols that have them, sorted.
///
/// # Errors
/// A requested symbol lacks a file, no symbol is usable, or the folder cannot be read.
pub fn select_symbols(dir: &Path, requested: &[String]) -> Result<Vec<String>, BacktestError> {
    let has_all = |s: &str| Timeframe::STRATEGY.iter().all(|tf| data::candle_path(dir, s, *tf).is_some());
    if !requested.is_empty() {
        let mut out: Vec<String> = Vec::new();
        for s in requested {
            let s = s.trim().to_ascii_uppercase();
            if s.is_empty() || out.contains(&s) {
                continue;
            }
            if !has_all(&s) {
                return Err(BacktestError::Setup(format!(
                    "{s}: need {s}-15m, {s}-1h and {s}-4h (.csv or .csv.gz) in {}",
                    dir.display()
                )));
            }
            out.push(s);
        }
        return Ok(out);
    }
    let out: Vec<String> = data::symbols_in(dir, Timeframe::M15)?.into_iter().filter(|s| has_all(s)).collect();
    if out.is_empty() {
        return Err(BacktestError::Setup(format!("no symbol with 15m, 1h and 4h data files in {}", dir.display())));
    }
    Ok(out)
}

/// A feed over the data files and an engine over the same symbols, ready to run. The counter
/// receives the compressed bytes read (for a progress bar); `total_bytes` is their sum.
pub struct Prepared {
    pub feed: Feed,
    pub engine: Engine,
    pub bytes_read: Rc<Cell<u64>>,
    pub total_bytes: u64,
}

/// Opens every file of `opts` and builds the engine.
///
/// # Errors
/// Missing or unreadable files, bad settings.
pub fn prepare(settings: &Settings, opts: &BacktestOptions) -> Result<Prepared, BacktestError> {
    let dir = &opts.data_dir;
    if !dir.is_dir() {
        return Err(BacktestError::Setup(format!("data folder {} does not exist", dir.display())));
    }
    let names = select_symbols(dir, &opts.symbols)?;
    let load_from = opts.from.map(|f| f - WARMUP_MS).unwrap_or(i64::MIN);
    let mut feed = Feed::new(load_from, opts.to.unwrap_or(i64::MAX));
    let counter = Rc::new(Cell::new(0u64));
    let mut total_bytes = 0u64;
    for (i, name) in names.iter().enumerate() {
        for tf in Timeframe::STRATEGY {
            let path = data::candle_path(dir, name, tf).ok_or_else(|| DataError::Missing {
                dir: dir.clone(),
                symbol: name.clone(),
                interval: tf.to_string(),
            })?;
            total_bytes += std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            feed.add(i, tf, Box::new(FileCandleSource::open(&path, counter.clone())?))?;
        }
    }
    let intervals = crate::data::funding::FundingIntervals::load(dir)
        .map_err(|e| BacktestError::Setup(format!("funding intervals: {e}")))?;
    let mut specs = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let first_price = feed.next_m15(i).map(|c| c.open).unwrap_or(1.0);
        let funding = match feed::funding_path(dir, name) {
            Some(p) => Some(feed::FundingSource::open(&p)?),
            None => None,
        };
        specs.push(SymbolSpec {
            name: name.clone(),
            rules: symbols::rules_for(name, first_price),
            funding,
            funding_interval_ms: intervals.interval_ms(name),
        });
    }
    let trade_from = opts.from.or_else(|| feed.peek_close_time().map(|t| t + 1)).unwrap_or(0);
    let engine = Engine::new(settings, specs, trade_from)?;
    Ok(Prepared { feed, engine, bytes_read: counter, total_bytes })
}

/// Candles of one symbol already in memory: 15m, 1h and 4h, each in ascending time.
#[derive(Debug, Clone)]
pub struct SymbolCandles {
    pub symbol: String,
    pub m15: Arc<[Candle]>,
    pub h1: Arc<[Candle]>,
    pub h4: Arc<[Candle]>,
}

/// A feed and an engine over candles in memory (benchmarks, tests, a dry-run replay of
/// recorded candles), with the same rules as [`prepare`]: trading from `from` (or the first
/// close), flat funding, symbol rules from [`symbols::rules_for`].
///
/// # Errors
/// Bad settings or a symbol listed twice.
pub fn prepare_in_memory(
    settings: &Settings,
    data: &[SymbolCandles],
    from: Option<TimestampMs>,
) -> Result<(Feed, Engine), BacktestError> {
    let first_prices: Vec<f64> = data.iter().map(|d| d.m15.first().map(|c| c.open).unwrap_or(1.0)).collect();
    let extras: Vec<SymbolExtras> = first_prices
        .iter()
        .map(|p| SymbolExtras { funding: None, funding_interval_ms: sim::FUNDING_INTERVAL_MS, first_price: Some(*p) })
        .collect();
    prepare_shared(settings, data, &extras, from, None)
}

/// What a replay needs of a symbol besides its candles: the funding file's text (already
/// decompressed, shared read-only), its funding interval, and the price its symbol rules are
/// derived from (`None` = the first 15m open the feed hands out, as [`prepare`] does).
#[derive(Debug, Clone)]
pub struct SymbolExtras {
    pub funding: Option<(PathBuf, Arc<[u8]>)>,
    pub funding_interval_ms: i64,
    pub first_price: Option<f64>,
}

/// A feed and an engine over candles and funding files in memory, trading in `[from, to)`
/// (the indicators warm up on the [`WARMUP_MS`] before `from`): the same replay [`prepare`]
/// builds from files, without reading them again. Research runs many of these over one
/// loaded data set; `extras` pairs with `data` by position (missing = flat funding, 8 h).
///
/// # Errors
/// Bad settings, a symbol listed twice, a malformed funding file.
pub fn prepare_shared(
    settings: &Settings,
    data: &[SymbolCandles],
    extras: &[SymbolExtras],
    from: Option<TimestampMs>,
    to: Option<TimestampMs>,
) -> Result<(Feed, Engine), BacktestError> {
    let mut feed = Feed::new(from.map(|f| f - WARMUP_MS).unwrap_or(i64::MIN), to.unwrap_or(i64::MAX));
    for (i, d) in data.iter().enumerate() {
        feed.add(i, Timeframe::H4, Box::new(MemorySource::new(d.h4.clone())))?;
        feed.add(i, Timeframe::H1, Box::new(MemorySource::new(d.h1.clone())))?;
        feed.add(i, Timeframe::M15, Box::new(MemorySource::new(d.m15.clone())))?;
    }
    let mut specs = Vec::with_capacity(data.len());
    for (i, d) in data.iter().enumerate() {
        let extra = extras.get(i);
        let first_price = extra.and_then(|e| e.first_price).or_else(|| feed.next_m15(i).map(|c| c.open)).unwrap_or(1.0);
        let funding = match extra.and_then(|e| e.funding.as_ref()) {
            Some((path, text)) => Some(feed::FundingSource::from_text(path, text.clone())?),
            None => None,
        };
        specs.push(SymbolSpec {
            name: d.symbol.clone(),
            rules: symbols::rules_for(&d.symbol, first_price),
            funding,
            funding_interval_ms: extra.map(|e| e.funding_interval_ms).unwrap_or(sim::FUNDING_INTERVAL_MS),
        });
    }
    let trade_from = from.or_else(|| feed.peek_close_time().map(|t| t + 1)).unwrap_or(0);
    let engine = Engine::new(settings, specs, trade_from)?;
    Ok((feed, engine))
}

/// Replays `feed` through `engine` to the end and closes what is left. `progress` is called
/// every few thousand candles with the number of candles replayed.
///
/// # Errors
/// Reading a data or funding file failed.
pub fn run_feed(feed: &mut Feed, engine: &mut Engine, progress: &mut dyn FnMut(u64)) -> Result<(), BacktestError> {
    run_feed_observed(feed, engine, progress, &mut |_, _| {})
}

/// [`run_feed`] that also hands the engine to `after_batch` once each close time is fully
/// processed (every candle closing then fed, the batch closed): what the daemon knew at
/// that moment. Used by the look-ahead check.
///
/// # Errors
/// Reading a data or funding file failed.
pub fn run_feed_observed(
    feed: &mut Feed,
    engine: &mut Engine,
    progress: &mut dyn FnMut(u64),
    after_batch: &mut dyn FnMut(&Engine, TimestampMs),
) -> Result<(), BacktestError> {
    let mut current: Option<TimestampMs> = None;
    let mut n = 0u64;
    loop {
        // Close the batch BEFORE taking the next candle, so every stream's head is still the
        // candle after this close time (where entries fill).
        let next = feed.peek_close_time();
        if let Some(t) = current
            && next != Some(t)
        {
            engine.close_batch(t, &|i| feed.next_m15(i).copied())?;
            after_batch(engine, t);
        }
        let Some((symbol, tf, candle)) = feed.next_candle()? else {
            break;
        };
        current = Some(candle.close_time);
        engine.on_candle(symbol, tf, &candle);
        n += 1;
        if n.is_multiple_of(8192) {
            progress(n);
        }
    }
    engine.finish();
    progress(n);
    Ok(())
}
