//! Candles and funding files loaded once, shared read-only by every run of a sweep
//! (`Arc` slices: a run's feed reads them in place, so memory grows with the number of
//! threads, not with the number of points), and the settings of a point.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flate2::read::MultiGzDecoder;
use rayon::prelude::*;

use crate::backtest::metrics::{self, Metrics};
use crate::backtest::{self, SymbolCandles, SymbolExtras};
use crate::config::{self, ConfigSources, ENV_PREFIX, Settings};
use crate::core::models::{Candle, Timeframe, TimestampMs};
use crate::data::{self, funding::FundingIntervals};
use crate::research::ResearchError;
use crate::research::space::ParamValue;

/// Everything a replay reads, in memory.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub candles: Vec<SymbolCandles>,
    pub extras: Vec<SymbolExtras>,
}

/// What a run produced: the `metrics.json` figures and the daily returns (UTC day number
/// since 1970-01-01, return as a fraction).
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub metrics: Metrics,
    pub daily: Vec<(i64, f64)>,
}

fn read_text(path: &Path) -> Result<Arc<[u8]>, ResearchError> {
    let raw = std::fs::read(path).map_err(|e| ResearchError::io(path, e))?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        MultiGzDecoder::new(raw.as_slice()).read_to_end(&mut out).map_err(|e| ResearchError::io(path, e))?;
        Ok(out.into())
    } else {
        Ok(raw.into())
    }
}

impl Dataset {
    /// Reads the 15m, 1h and 4h files of `symbols` (empty = every complete symbol), their
    /// funding files and `funding-info.json` from `dir`, as `kinetic backtest` does.
    ///
    /// # Errors
    /// A missing folder or symbol (usage), unreadable or malformed files.
    pub fn load(dir: &Path, symbols: &[String]) -> Result<Dataset, ResearchError> {
        if !dir.is_dir() {
            return Err(ResearchError::invalid("--data", dir.display(), "an existing folder with candle files"));
        }
        let names = backtest::select_symbols(dir, symbols)?;
        let intervals =
            FundingIntervals::load(dir).map_err(|e| ResearchError::Data(format!("funding intervals: {e}")))?;
        // The files are decompressed and parsed on every core; errors are reported in the
        // order a one-by-one read would meet them (symbol, then 15m, 1h, 4h).
        let jobs: Vec<(&String, Timeframe)> =
            names.iter().flat_map(|n| [Timeframe::M15, Timeframe::H1, Timeframe::H4].map(|tf| (n, tf))).collect();
        let loaded: Vec<Result<Arc<[Candle]>, ResearchError>> = jobs
            .par_iter()
            .map(|(name, tf)| {
                data::load_candles(dir, name, *tf).map(Arc::from).map_err(|e| ResearchError::Data(e.to_string()))
            })
            .collect();
        let mut loaded = loaded.into_iter();
        let mut next = || loaded.next().unwrap_or_else(|| Err(ResearchError::Data("candle files not loaded".into())));
        let mut candles = Vec::with_capacity(names.len());
        let mut extras = Vec::with_capacity(names.len());
        for name in &names {
            candles.push(SymbolCandles { m15: next()?, h1: next()?, h4: next()?, symbol: name.clone() });
            let funding = match crate::data::funding_history::existing_file(dir, name) {
                Some(p) => {
                    let text = read_text(&p)?;
                    Some((p, text))
                }
                None => None,
            };
            extras.push(SymbolExtras { funding, funding_interval_ms: intervals.interval_ms(name), first_price: None });
        }
        Ok(Dataset { candles, extras })
    }

    /// Candles in memory with flat funding (tests, benches).
    pub fn from_candles(candles: Vec<SymbolCandles>) -> Dataset {
        let extras = candles
            .iter()
            .map(|_| SymbolExtras {
                funding: None,
                funding_interval_ms: backtest::sim::FUNDING_INTERVAL_MS,
                first_price: None,
            })
            .collect();
        Dataset { candles, extras }
    }

    /// The window every symbol covers: the latest first 15m open and the earliest last 15m
    /// close (a symbol listed earlier than the others does not stretch a walk-forward into
    /// months where it trades alone). `None` when they do not overlap.
    pub fn span(&self) -> Option<(TimestampMs, TimestampMs)> {
        let first = self.candles.iter().map(|c| c.m15.first().map(|x| x.open_time)).max()??;
        let last = self.candles.iter().map(|c| c.m15.last().map(|x| x.close_time)).min()??;
        (last > first).then_some((first, last))
    }

    /// A short description for manifests: symbols and candle counts.
    pub fn describe(&self) -> Vec<String> {
        self.candles
            .iter()
            .map(|c| format!("{} 15m:{} 1h:{} 4h:{}", c.symbol, c.m15.len(), c.h1.len(), c.h4.len()))
            .collect()
    }

    /// One backtest over `[from, to)` (None = the whole data, as `kinetic backtest`).
    ///
    /// # Errors
    /// Bad settings for the replay or a malformed funding file.
    pub fn run(
        &self,
        settings: &Settings,
        from: Option<TimestampMs>,
        to: Option<TimestampMs>,
    ) -> Result<RunOutcome, ResearchError> {
        let (mut feed, mut engine) = backtest::prepare_shared(settings, &self.candles, &self.extras, from, to)?;
        backtest::run_feed(&mut feed, &mut engine, &mut |_| {})?;
        let names: Vec<String> = engine.symbol_names().map(str::to_string).collect();
        let m = metrics::compute(&names, engine.account(), &engine.equity, &engine.stats);
        let start = settings.paper.starting_balance;
        Ok(RunOutcome { metrics: m, daily: metrics::daily_returns_dated(start, &engine.equity) })
    }
}

/// The config a sweep starts from: the `--config` file and the process environment, the
/// same layers `kinetic run` reads.
#[derive(Debug, Clone, Default)]
pub struct BaseConfig {
    pub file: Option<PathBuf>,
    pub env: HashMap<String, String>,
}

/// `strategy.min_confidence` → `KINETIC__STRATEGY__MIN_CONFIDENCE`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}__{}", key.split('.').map(str::to_ascii_uppercase).collect::<Vec<_>>().join("__"))
}

impl BaseConfig {
    /// The settings with `overrides` (dotted key, value) applied as the highest config layer:
    /// the loader's own environment-override mechanism, so unknown keys, wrong types and
    /// out-of-range values are refused exactly as in a config file.
    ///
    /// # Errors
    /// [`ResearchError::Config`] naming the key and what is allowed.
    pub fn settings_with(&self, overrides: &[(&str, String)]) -> Result<Settings, ResearchError> {
        let mut env = self.env.clone();
        for (key, value) in overrides {
            env.insert(env_name(key), value.clone());
        }
        let sources = ConfigSources { file: self.file.as_deref(), env };
        config::load(&sources).map_err(|source| ResearchError::Config {
            context: if overrides.is_empty() {
                "base configuration".to_string()
            } else {
                format!("point {}", overrides.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "))
            },
            source,
        })
    }

    /// The settings of a point.
    ///
    /// # Errors
    /// See [`BaseConfig::settings_with`].
    pub fn point_settings(&self, keys: &[String], values: &[ParamValue]) -> Result<Settings, ResearchError> {
        let pairs: Vec<(&str, String)> =
            keys.iter().map(String::as_str).zip(values.iter().map(|v| v.to_string())).collect();
        self.settings_with(&pairs)
    }
}
