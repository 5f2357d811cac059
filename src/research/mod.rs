//! Strategy research on top of the backtest: parameter sweeps on every core (and across
//! machines by sharding), walk-forward analysis, overfitting statistics and the look-ahead
//! check. Every run is the ordinary backtest ([`crate::backtest::prepare_shared`] +
//! [`crate::backtest::run_feed`]) over candles loaded once and shared read-only; a point's
//! settings are the normal config with the point's keys applied as the loader's own
//! overrides (the `KINETIC__SECTION__KEY` layer), so a point is validated exactly like a
//! config file.
//!
//! - [`space`]: the parameter space (TOML), grid / random / Latin-hypercube points, shards;
//! - [`dataset`]: candles and funding in memory, one replay per settings;
//! - [`sweep`]: points in parallel (rayon), the result table, shard merge;
//! - [`output`]: the CSV/JSON/TOML files a sweep writes and reads back;
//! - [`stats`]: deflated Sharpe ratio, moments, PBO by CSCV;
//! - [`walkforward`]: rolling / anchored windows, selection in sample, runs out of sample;
//! - [`lookahead`]: cut-data and warm-up checks of the analysis;
//! - [`report`]: the self-contained HTML pages.

pub mod dataset;
pub mod lookahead;
pub mod output;
pub mod report;
pub mod space;
pub mod stats;
pub mod sweep;
pub mod walkforward;

use std::fmt;
use std::path::PathBuf;

use crate::backtest::BacktestError;
use crate::config::ConfigError;

/// Why a research command failed. `Invalid` and `Config` are the user's input (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ResearchError {
    #[error("{key}: `{value}` is not allowed; expected {allowed}")]
    Invalid { key: String, value: String, allowed: String },
    #[error("{context}: {source}")]
    Config {
        context: String,
        #[source]
        source: ConfigError,
    },
    #[error(transparent)]
    Backtest(#[from] BacktestError),
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("{0}")]
    Data(String),
}

impl ResearchError {
    pub fn invalid(key: &str, value: impl fmt::Display, allowed: &str) -> Self {
        ResearchError::Invalid { key: key.to_string(), value: value.to_string(), allowed: allowed.to_string() }
    }

    pub fn io(path: &std::path::Path, e: impl fmt::Display) -> Self {
        ResearchError::Io { path: path.to_path_buf(), reason: e.to_string() }
    }

    /// True when the user's input is at fault (exit code 2).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            ResearchError::Invalid { .. }
                | ResearchError::Config { .. }
                | ResearchError::Backtest(BacktestError::Setup(_))
        )
    }
}
