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
//! - [`metrics`], [`breakdown`] and [`report`]: the summary, `trades.csv`, `metrics.json`, `report.html`.
//!
//! Owns replay and reporting. It must not contain strategy logic: every decision comes from
//! the trading core.

pub mod account;
pub mod breakdown;
pub mod engine;
pub mod feed;
pub mod market;
pub mod metrics;
pub mod report;
pub mod sim;
pub mod symbols;

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use crate::config::Settings;
use crate::core::models::{Candle, Timeframe, TimestampMs};
use crate::data::{self, DataDir, SeriesFiles, SeriesQuality};

pub use engine::{BacktestError, CloseHistory, Engine, EquityPoint, RunStats, SymbolSpec};
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

/// The symbols to replay: the requested ones (each must have all three series) or all
/// symbols that have them, sorted.
///
/// # Errors
/// A requested symbol lacks a series, no symbol is usable, or the folder cannot be read.
pub fn select_symbols(dir: &Path, requested: &[String]) -> Result<Vec<String>, BacktestError> {
    select_in(&DataDir::scan(dir)?, requested)
}

fn select_in(index: &DataDir, requested: &[String]) -> Result<Vec<String>, BacktestError> {
    let dir = index.dir();
    let has_all = |s: &str| Timeframe::STRATEGY.iter().all(|tf| index.has(s, *tf));
    if !requested.is_empty() {
        let mut out: Vec<String> = Vec::new();
        for s in requested {
            let s = s.trim().to_ascii_uppercase();
            if s.is_empty() || out.contains(&s) {
                continue;
            }
            if !has_all(&s) {
                let missing: Vec<String> = Timeframe::STRATEGY
                    .iter()
                    .filter(|tf| !index.has(&s, **tf))
                    .map(|tf| format!("{s}-{tf}"))
                    .collect();
                return Err(BacktestError::Setup(format!(
                    "{s}: no {} data in {} (need 15m, 1h and 4h as SYMBOL-INTERVAL.csv[.gz|.zip] or \
                     SYMBOL-INTERVAL-YYYY-MM[-DD].csv[.gz|.zip])",
                    missing.join(", "),
                    dir.display()
                )));
            }
            out.push(s);
        }
        return Ok(out);
    }
    let out: Vec<String> = index.symbols(Timeframe::M15).into_iter().filter(|s| has_all(s)).collect();
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
    /// What each series' files held (range, gaps, duplicates), complete after the run.
    pub data_quality: Vec<Rc<RefCell<SeriesQuality>>>,
    /// The series replayed, for messages about the range they cover.
    pub series: Vec<SeriesFiles>,
}

/// Opens every file of `opts` and builds the engine.
///
/// # Errors
/// Missing, conflicting or unreadable files; no 15m candle of a symbol in the window (the
/// message names the range the data covers); bad settings.
pub fn prepare(settings: &Settings, opts: &BacktestOptions) -> Result<Prepared, BacktestError> {
    let index = DataDir::scan(&opts.data_dir)?;
    let names = select_in(&index, &opts.symbols)?;
    let load_from = opts.from.map(|f| f - WARMUP_MS).unwrap_or(i64::MIN);
    let mut feed = Feed::new(load_from, opts.to.unwrap_or(i64::MAX));
    let counter = Rc::new(Cell::new(0u64));
    let mut total_bytes = 0u64;
    let mut data_quality = Vec::new();
    let mut all_series = Vec::new();
    for (i, name) in names.iter().enumerate() {
        for tf in Timeframe::STRATEGY {
            let series = index.series(name, tf)?;
            total_bytes += series.files.iter().map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)).sum::<u64>();
            let source = FileCandleSource::series(&series, counter.clone());
            data_quality.push(source.quality());
            feed.add(i, tf, Box::new(source))?;
            all_series.push(series);
        }
    }
    for (i, name) in names.iter().enumerate() {
        if feed.next_m15(i).is_none() {
            let m15 = all_series.iter().find(|s| s.symbol == *name && s.timeframe == Timeframe::M15);
            return Err(BacktestError::Setup(format!(
                "no {name} 15m candles in {}; {}",
                window_text(opts.from, opts.to),
                m15.map_or_else(String::new, coverage_text)
            )));
        }
    }
    let intervals = crate::data::funding::FundingIntervals::load(&opts.data_dir)
        .map_err(|e| BacktestError::Setup(format!("funding intervals: {e}")))?;
    let mut specs = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let first_price = feed.next_m15(i).map(|c| c.open).unwrap_or(1.0);
        let funding = match crate::data::funding_history::existing_file(index.dir(), name) {
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
    let mut engine = Engine::new(settings, specs, trade_from)?;
    // `kinetic backtest` writes a report with a price chart per traded symbol.
    engine.keep_close_history();
    Ok(Prepared { feed, engine, bytes_read: counter, total_bytes, data_quality, series: all_series })
}

/// `2026-01-01 00:00 UTC → 2026-02-01 00:00 UTC`, open ends shown as such.
fn window_text(from: Option<TimestampMs>, to: Option<TimestampMs>) -> String {
    let end = |t: Option<TimestampMs>, open: &str| t.map_or_else(|| open.to_string(), data::time_text);
    format!("the window {} → {}", end(from, "the start of the data"), end(to, "the end of the data"))
}

/// `BTCUSDT 15m covers 2025-08-17 00:00 UTC → 2026-05-17 09:00 UTC (FILES)`, read in full (an
/// error path: the cost does not matter).
fn coverage_text(series: &SeriesFiles) -> String {
    let what = format!("{} {}", series.symbol, series.timeframe);
    match data::read_series(series) {
        Ok((candles, _)) => match (candles.first(), candles.last()) {
            (Some(first), Some(last)) => format!(
                "the data of {what} covers {} → {} ({})",
                data::time_text(first.open_time),
                data::time_text(last.close_time + 1),
                series.describe()
            ),
            _ => format!("the data of {what} has no candles ({})", series.describe()),
        },
        Err(e) => format!("the data of {what} cannot be read: {e}"),
    }
}

/// After a run: at least one 15m candle closed inside the trading window. A window that ends
/// before the warm-up is over, or starts after the last candle, is a usage error naming the
/// range the data covers, not an empty report.
///
/// # Errors
/// [`BacktestError::Setup`] when nothing was traded over.
pub fn check_traded(prepared: &Prepared, opts: &BacktestOptions) -> Result<(), BacktestError> {
    let last = prepared.feed.last_m15_close();
    let from = opts.from.unwrap_or(i64::MIN);
    if last.is_some_and(|t| t >= from) {
        return Ok(());
    }
    let covers: Vec<String> =
        prepared.series.iter().filter(|s| s.timeframe == Timeframe::M15).map(coverage_text).collect();
    Err(BacktestError::Setup(format!(
        "no 15m candle closes in {}; {}",
        window_text(opts.from, opts.to),
        covers.join("; ")
    )))
}

/// One line per series with gaps or repeated rows, with their times (the first few of each).
pub fn data_notes(prepared: &Prepared) -> Vec<String> {
    const SHOWN: usize = 5;
    let mut out = Vec::new();
    for q in &prepared.data_quality {
        let q = q.borrow();
        let step = q.timeframe.duration_ms();
        let mut parts = Vec::new();
        if !q.gaps.is_empty() {
            let missing: i64 = q.gaps.iter().map(|(a, b)| (b - a) / step).sum();
            let shown: Vec<String> = q
                .gaps
                .iter()
                .take(SHOWN)
                .map(|(a, b)| format!("{} → {} ({} missing)", data::time_text(*a), data::time_text(*b), (b - a) / step))
                .collect();
            let more = q.gaps.len().saturating_sub(SHOWN);
            parts.push(format!(
                "{} gap(s), {missing} candle(s) missing: {}{}",
                q.gaps.len(),
                shown.join(", "),
                if more > 0 { format!(" and {more} more") } else { String::new() }
            ));
        }
        if !q.duplicates.is_empty() {
            let shown: Vec<String> = q.duplicates.iter().take(SHOWN).map(|t| data::time_text(*t)).collect();
            let more = q.duplicates.len().saturating_sub(SHOWN);
            parts.push(format!(
                "{} duplicate row(s) skipped at {}{}",
                q.duplicates.len(),
                shown.join(", "),
                if more > 0 { format!(" and {more} more") } else { String::new() }
            ));
        }
        if !parts.is_empty() {
            out.push(format!("{} {}: {}", q.symbol, q.timeframe, parts.join("; ")));
        }
    }
    out
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
