//! The offline demo, `kinetic run --dry-run --replay [DIR] [--speed N]`: candle files played
//! through the real daemon as if they were Binance's market streams.
//!
//! Only the market source differs from a live dry run. [`ReplayMarket`] stands where the
//! Binance client's public half stands in `run --dry-run`: it answers `symbols`, `tickers` and
//! `klines` from the files (only what has "closed" on the replay clock), and its streams play
//! the candles as mark prices, 24 h tickers and closed klines. The paper exchange, scanner,
//! analyzer, position manager, journal, `/status`, `/metrics` and logs are the daemon's own.
//!
//! - The data: the shipped sample (five perps, built into the binary, so the demo works from
//!   any folder, in the Docker image, offline) or a folder in the backtest's data format
//!   (`SYMBOL-15m/1h/4h` files, Binance dumps included, optional `funding/`).
//! - Where it starts: [`crate::backtest::WARMUP_MS`] (20 days) after the first 15m candle, the
//!   same first trading day as `kinetic backtest` on those files; the daemon's warm-up reads
//!   the history before it over the `klines` REST call, as it does live.
//! - The clock: the exchange clock ([`crate::exchange::Exchange::now_ms`]) is the replay's. It
//!   advances `speed` times faster than real time, in steps of at least a second of market
//!   time and at most 40 mark messages per real second.
//! - Inside a 15m candle the mark walks open → first extreme → second extreme → close,
//!   straight lines in time; a rising candle (close ≥ open) visits its low first, a falling one
//!   its high. (The backtest instead takes the extreme adverse to an open position first: the
//!   pessimistic rule for a report; this is a demo of the daemon at work.)
//! - At each 15m close, in the order Binance delivers them: a mark at the next candle's open,
//!   the 24 h tickers (from the last 96 15m candles), then the closed klines of the symbols the
//!   daemon subscribed — the 15m candle first, the 1h and 4h that close with it after.
//! - Funding: marks announce the next funding time and its rate from the data's `funding/`
//!   files (the sample has them), else `backtest.flat_funding_rate_pct`; the paper exchange
//!   charges it when the time passes, as in a live dry run.
//! - When the data ends, the daemon shuts down as on SIGTERM (positions keep their stops in
//!   the paper account) and `kinetic run` exits 0.

mod market;

pub use market::ReplayMarket;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flate2::read::MultiGzDecoder;
use rust_decimal::Decimal;

use crate::backtest::feed::FundingSource;
use crate::backtest::symbols::{SymbolRules, rules_for};
use crate::core::models::{Candle, Timeframe, TimestampMs, decimal_from_f64};
use crate::data::funding::FundingIntervals;

/// Replay speed when `--speed` is not given: a 15m candle every 7.5 s, a day in 12 minutes.
pub const DEFAULT_SPEED: f64 = 120.0;
/// The fastest replay accepted (a 15m candle every 9 ms).
pub const MAX_SPEED: f64 = 100_000.0;

const M15_MS: i64 = 900_000;

/// Why a replay cannot start: always bad input (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("--replay {dir}: {reason}")]
    Data { dir: String, reason: String },
    #[error("--speed {value}: expected a number of times real time, above 0 and at most {max}")]
    Speed { value: f64, max: f64 },
}

/// One symbol's candles and funding, in memory.
#[derive(Debug, Clone)]
pub struct ReplaySymbol {
    pub symbol: String,
    pub rules: SymbolRules,
    pub m15: Arc<[Candle]>,
    pub h1: Arc<[Candle]>,
    pub h4: Arc<[Candle]>,
    /// Funding times and rates (fractions), ascending.
    pub funding: Vec<(TimestampMs, Decimal)>,
    pub funding_interval_ms: i64,
}

impl ReplaySymbol {
    /// The candles of `tf` (none for a timeframe the strategy does not use).
    pub fn series(&self, tf: Timeframe) -> &[Candle] {
        match tf {
            Timeframe::M15 => &self.m15,
            Timeframe::H1 => &self.h1,
            Timeframe::H4 => &self.h4,
            _ => &[],
        }
    }

    /// The rate announced for the funding at `t`: the data's, else `flat`.
    fn rate_at(&self, t: TimestampMs, flat: Decimal) -> Decimal {
        match self.funding.binary_search_by_key(&t, |(ft, _)| *ft) {
            Ok(i) => self.funding.get(i).map_or(flat, |(_, r)| *r),
            Err(_) if self.funding.is_empty() => flat,
            // A file that skips a time: no funding announced is no funding paid.
            Err(_) => Decimal::ZERO,
        }
    }
}

/// What a replay plays: symbols and the 15m boundaries it runs between.
#[derive(Debug, Clone)]
pub struct ReplayData {
    pub symbols: Vec<ReplaySymbol>,
    /// The first 15m open played (every candle closed before it is history).
    pub start: TimestampMs,
    /// The last 15m close played, + 1 ms.
    pub end: TimestampMs,
    /// `backtest.flat_funding_rate_pct` as a fraction (symbols without a funding file).
    pub flat_funding: Decimal,
    /// Where the candles came from (logs).
    pub source: String,
    pub intervals: FundingIntervals,
}

/// The shipped sample, compiled into the binary: (symbol, 15m, 1h, 4h, funding), gzip.
macro_rules! sample {
    ($($s:literal),*) => {
        [$((
            $s,
            include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/data/sample/", $s, "-15m.csv.gz")).as_slice(),
            include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/data/sample/", $s, "-1h.csv.gz")).as_slice(),
            include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/data/sample/", $s, "-4h.csv.gz")).as_slice(),
            include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/data/sample/funding/", $s, ".csv.gz")).as_slice(),
        )),*]
    };
}

type EmbeddedSymbol = (&'static str, &'static [u8], &'static [u8], &'static [u8], &'static [u8]);

const SAMPLE: [EmbeddedSymbol; 5] = sample!("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT");

fn gunzip(name: &str, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    MultiGzDecoder::new(bytes).read_to_end(&mut out).map_err(|e| format!("{name}: {e}"))?;
    Ok(out)
}

fn sample_error(reason: String) -> ReplayError {
    ReplayError::Data { dir: "(built-in sample)".into(), reason }
}

fn funding_rates(
    path: &Path,
    text: Arc<[u8]>,
    m15: &[Candle],
    interval_ms: i64,
) -> Result<Vec<(TimestampMs, Decimal)>, String> {
    let (Some(first), Some(last)) = (m15.first(), m15.last()) else { return Ok(Vec::new()) };
    let mut source = FundingSource::from_text(path, text).map_err(|e| e.to_string())?;
    let step = interval_ms.max(3_600_000);
    let mut out = Vec::new();
    let mut t = first.open_time.div_euclid(step) * step;
    while t <= last.close_time + step {
        if let Some(rate) = source.rate_at(t).map_err(|e| e.to_string())?
            && let Some(r) = decimal_from_f64(rate)
        {
            out.push((t, r));
        }
        t += step;
    }
    Ok(out)
}

impl ReplayData {
    /// The shipped sample, from the binary itself.
    ///
    /// # Errors
    /// Never in a correct build (the files are checked by the tests); a clear error otherwise.
    pub fn sample(flat_funding_pct: f64) -> Result<ReplayData, ReplayError> {
        let mut symbols = Vec::with_capacity(SAMPLE.len());
        for (symbol, m15, h1, h4, funding) in SAMPLE {
            let parse = |tf: &str, bytes: &[u8]| -> Result<Arc<[Candle]>, ReplayError> {
                let name = format!("{symbol}-{tf}.csv.gz");
                let text = gunzip(&name, bytes).map_err(sample_error)?;
                crate::data::parse_candles(text.as_slice(), Path::new(&name))
                    .map(Arc::from)
                    .map_err(|e| sample_error(e.to_string()))
            };
            let m15 = parse("15m", m15)?;
            let funding_name = format!("funding/{symbol}.csv.gz");
            let text = gunzip(&funding_name, funding).map_err(sample_error)?;
            let rates =
                funding_rates(Path::new(&funding_name), text.into(), &m15, 8 * 3_600_000).map_err(sample_error)?;
            symbols.push(ReplaySymbol {
                symbol: symbol.to_string(),
                rules: rules_for(symbol, m15.first().map_or(1.0, |c| c.open)),
                h1: parse("1h", h1)?,
                h4: parse("4h", h4)?,
                m15,
                funding: rates,
                funding_interval_ms: 8 * 3_600_000,
            });
        }
        ReplayData::new(
            symbols,
            flat_funding_pct,
            "the built-in sample (data/sample)".into(),
            FundingIntervals::default(),
        )
        .map_err(sample_error)
    }

    /// The candle files in `dir` (the backtest's data format: every symbol with 15m, 1h and 4h
    /// files; funding files and `funding-info.json` when present).
    ///
    /// # Errors
    /// No such folder, no complete symbol, malformed files, too little data (exit 2).
    pub fn from_dir(dir: &Path, flat_funding_pct: f64) -> Result<ReplayData, ReplayError> {
        let err = |reason: String| ReplayError::Data { dir: dir.display().to_string(), reason };
        let data = crate::research::dataset::Dataset::load(dir, &[]).map_err(|e| err(e.to_string()))?;
        let intervals = FundingIntervals::load(dir).map_err(|e| err(format!("funding intervals: {e}")))?;
        let mut symbols = Vec::with_capacity(data.candles.len());
        for (c, extras) in data.candles.into_iter().zip(data.extras) {
            let funding = match extras.funding {
                Some((path, text)) => funding_rates(&path, text, &c.m15, extras.funding_interval_ms).map_err(err)?,
                None => Vec::new(),
            };
            symbols.push(ReplaySymbol {
                rules: rules_for(&c.symbol, c.m15.first().map_or(1.0, |k| k.open)),
                symbol: c.symbol,
                m15: c.m15,
                h1: c.h1,
                h4: c.h4,
                funding,
                funding_interval_ms: extras.funding_interval_ms,
            });
        }
        ReplayData::new(symbols, flat_funding_pct, dir.display().to_string(), intervals).map_err(err)
    }

    fn new(
        symbols: Vec<ReplaySymbol>,
        flat_funding_pct: f64,
        source: String,
        intervals: FundingIntervals,
    ) -> Result<ReplayData, String> {
        if symbols.is_empty() {
            return Err("no symbol with 15m, 1h and 4h candles".into());
        }
        let first = symbols.iter().filter_map(|s| s.m15.first()).map(|c| c.open_time).min();
        let last = symbols.iter().filter_map(|s| s.m15.last()).map(|c| c.close_time).max();
        let (Some(first), Some(last)) = (first, last) else { return Err("the 15m files are empty".into()) };
        // The first 15m boundary at or after the warm-up.
        let start = (first + crate::backtest::WARMUP_MS + M15_MS - 1).div_euclid(M15_MS) * M15_MS;
        let end = (last + 1).div_euclid(M15_MS) * M15_MS;
        if start >= end {
            return Err(format!(
                "the 15m candles cover {} → {}: a replay needs more than {} days (the indicators warm up on the first {})",
                crate::data::time_text(first),
                crate::data::time_text(last + 1),
                crate::backtest::WARMUP_MS / 86_400_000,
                crate::backtest::WARMUP_MS / 86_400_000,
            ));
        }
        let flat_funding = decimal_from_f64(flat_funding_pct)
            .ok_or_else(|| "backtest.flat_funding_rate_pct must be finite".to_string())?
            / Decimal::ONE_HUNDRED;
        Ok(ReplayData { symbols, start, end, flat_funding, source, intervals })
    }

    /// The data `--replay` names: `dir`, or the built-in sample.
    ///
    /// # Errors
    /// As [`ReplayData::from_dir`].
    pub fn load(dir: Option<&PathBuf>, flat_funding_pct: f64) -> Result<ReplayData, ReplayError> {
        match dir {
            Some(d) => ReplayData::from_dir(d, flat_funding_pct),
            None => ReplayData::sample(flat_funding_pct),
        }
    }
}

/// Checks a `--speed` value.
///
/// # Errors
/// Not a positive number up to [`MAX_SPEED`].
pub fn check_speed(speed: f64) -> Result<f64, ReplayError> {
    if speed.is_finite() && speed > 0.0 && speed <= MAX_SPEED {
        Ok(speed)
    } else {
        Err(ReplayError::Speed { value: speed, max: MAX_SPEED })
    }
}

/// The journal of a replay: beside the dry-run journal, `<name>-replay.db`. A replay starts
/// from a fresh one (it is a demo on old data; its positions mean nothing to the next run).
pub fn journal_path(dry_run_path: &Path) -> PathBuf {
    let stem = dry_run_path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "kinetic".into());
    dry_run_path.with_file_name(format!("{stem}-replay.db"))
}

/// Removes a previous replay journal (and SQLite's `-wal`/`-shm` files beside it).
///
/// # Errors
/// A file exists and cannot be removed.
pub fn reset_journal(path: &Path) -> std::io::Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(PathBuf::from(p)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_sample_is_the_shipped_files() {
        let sample = ReplayData::sample(0.01).unwrap();
        let names: Vec<&str> = sample.symbols.iter().map(|s| s.symbol.as_str()).collect();
        assert_eq!(names, ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT"]);
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample");
        let from_files = ReplayData::from_dir(&dir, 0.01).unwrap();
        assert_eq!((sample.start, sample.end), (from_files.start, from_files.end));
        for s in &sample.symbols {
            let f = from_files.symbols.iter().find(|x| x.symbol == s.symbol).unwrap();
            assert_eq!(s.m15, f.m15);
            assert_eq!(s.h4, f.h4);
            assert_eq!(s.funding, f.funding);
            assert!(s.funding.len() > 200, "{}: {} funding rows", s.symbol, s.funding.len());
        }
        // The first trading day is the backtest's: 20 days after the first 15m candle.
        let first = sample.symbols.iter().map(|s| s.m15[0].open_time).min().unwrap();
        assert_eq!(sample.start, first + crate::backtest::WARMUP_MS);
        assert_eq!(sample.start % M15_MS, 0);
    }

    #[test]
    fn too_little_data_names_the_range() {
        let dir = tempfile::tempdir().unwrap();
        let day = 86_400_000;
        for (tf, ms) in [("15m", M15_MS), ("1h", 3_600_000), ("4h", 4 * 3_600_000)] {
            let n = 5 * day / ms;
            let candles: Vec<Candle> = (0..n)
                .map(|i| Candle {
                    open_time: i * ms,
                    close_time: (i + 1) * ms - 1,
                    open: 1.0,
                    high: 1.0,
                    low: 1.0,
                    close: 1.0,
                    volume: 1.0,
                    quote_volume: 1.0,
                    trades: 1,
                    taker_buy_volume: 0.0,
                    taker_buy_quote_volume: 0.0,
                })
                .collect();
            crate::data::write_candle_file(&dir.path().join(format!("AAAUSDT-{tf}.csv")), &candles).unwrap();
        }
        let e = ReplayData::from_dir(dir.path(), 0.0).unwrap_err().to_string();
        assert!(e.contains("1970-01-01") && e.contains("more than 20 days"), "{e}");
        let e = ReplayData::from_dir(&dir.path().join("nope"), 0.0).unwrap_err().to_string();
        assert!(e.contains("nope"), "{e}");
    }

    #[test]
    fn speeds_outside_the_range_are_refused() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, MAX_SPEED * 2.0] {
            assert!(check_speed(bad).is_err(), "{bad}");
        }
        assert_eq!(check_speed(1.0).unwrap(), 1.0);
        assert_eq!(check_speed(MAX_SPEED).unwrap(), MAX_SPEED);
    }

    #[test]
    fn the_replay_journal_sits_beside_the_dry_run_journal() {
        assert_eq!(journal_path(Path::new("data/kinetic-dry.db")), Path::new("data/kinetic-dry-replay.db"));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k-replay.db");
        std::fs::write(&p, b"x").unwrap();
        std::fs::write(dir.path().join("k-replay.db-wal"), b"x").unwrap();
        reset_journal(&p).unwrap();
        assert!(!p.exists() && !dir.path().join("k-replay.db-wal").exists());
        reset_journal(&p).unwrap();
    }
}
