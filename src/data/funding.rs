//! Funding intervals per symbol. Binance funds most perpetuals every 8 h, but some every 4 h
//! (or 1 h) with adjusted caps; `GET /fapi/v1/fundingInfo` lists exactly the adjusted symbols
//! (`fundingIntervalHours`, `adjustedFundingRateCap`, `adjustedFundingRateFloor`, ...).
//! `download-data` stores that answer verbatim (every field Binance sends) as
//! `DIR/funding-info.json`; [`FundingIntervals`] reads it and answers "when does this symbol
//! fund" for paper trading and the backtest. Plain data and file I/O, no exchange access.
//!
//! For the backtest: `FundingIntervals::load(dir)?` once, then
//! [`FundingIntervals::funding_times`] (symbol, from, to) gives the funding instants to charge
//! at, instead of assuming 00/08/16 UTC for every symbol.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::core::models::TimestampMs;

/// Binance's default funding interval.
pub const DEFAULT_FUNDING_INTERVAL_HOURS: u32 = 8;
/// File name of the stored `fundingInfo` answer in a data directory.
pub const FUNDING_INFO_FILE: &str = "funding-info.json";

const HOUR_MS: i64 = 3_600_000;

/// One `fundingInfo` row (only the fields we use are typed; the file keeps all of them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FundingInfo {
    pub symbol: String,
    #[serde(rename = "fundingIntervalHours")]
    pub interval_hours: u32,
    #[serde(rename = "adjustedFundingRateCap", default)]
    pub rate_cap: Option<Decimal>,
    #[serde(rename = "adjustedFundingRateFloor", default)]
    pub rate_floor: Option<Decimal>,
}

/// Funding interval per symbol; symbols not listed fund every 8 h.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FundingIntervals {
    by_symbol: BTreeMap<String, FundingInfo>,
}

/// Errors reading `funding-info.json`.
#[derive(Debug, thiserror::Error)]
pub enum FundingInfoError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a fundingInfo list: {source}")]
    Malformed {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

impl FundingIntervals {
    /// From `fundingInfo` rows; rows with a zero interval are ignored (8 h applies).
    pub fn new(rows: impl IntoIterator<Item = FundingInfo>) -> Self {
        FundingIntervals {
            by_symbol: rows.into_iter().filter(|r| r.interval_hours > 0).map(|r| (r.symbol.clone(), r)).collect(),
        }
    }

    /// Parses a `GET /fapi/v1/fundingInfo` answer (an array of objects).
    ///
    /// # Errors
    /// The JSON is not such an array.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let rows: Vec<FundingInfo> = serde_json::from_slice(bytes)?;
        Ok(Self::new(rows))
    }

    /// Reads `DIR/funding-info.json`; a directory without one gives the 8 h default for all.
    ///
    /// # Errors
    /// The file exists but cannot be read or parsed.
    pub fn load(dir: &Path) -> Result<Self, FundingInfoError> {
        let path = dir.join(FUNDING_INFO_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => return Err(FundingInfoError::Io { path, source }),
        };
        Self::from_json(&bytes).map_err(|source| FundingInfoError::Malformed { path, source })
    }

    /// The symbol's row, when it is adjusted.
    pub fn info(&self, symbol: &str) -> Option<&FundingInfo> {
        self.by_symbol.get(symbol)
    }

    pub fn interval_hours(&self, symbol: &str) -> u32 {
        self.by_symbol.get(symbol).map_or(DEFAULT_FUNDING_INTERVAL_HOURS, |r| r.interval_hours)
    }

    pub fn interval_ms(&self, symbol: &str) -> i64 {
        i64::from(self.interval_hours(symbol)) * HOUR_MS
    }

    /// Funding instants of `symbol` in `(from, to]`, aligned to UTC midnight (00/08/16 for 8 h,
    /// every 4 h from 00:00 for 4 h ...).
    pub fn funding_times(&self, symbol: &str, from: TimestampMs, to: TimestampMs) -> Vec<TimestampMs> {
        let step = self.interval_ms(symbol).max(HOUR_MS);
        let mut t = from.div_euclid(step) * step + step;
        let mut out = Vec::new();
        while t <= to {
            out.push(t);
            t += step;
        }
        out
    }

    /// How many fundings fall in `(prev, next]` — at least one when `next > prev` (paper
    /// trading charges each one a gap in the mark stream skipped).
    pub fn fundings_between(&self, symbol: &str, prev: TimestampMs, next: TimestampMs) -> u32 {
        if next <= prev {
            return 0;
        }
        let n = (next - prev) / self.interval_ms(symbol).max(HOUR_MS);
        u32::try_from(n.max(1)).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    const INFO: &str = r#"[{"symbol":"BLZUSDT","adjustedFundingRateCap":"0.02500000","adjustedFundingRateFloor":"-0.02500000","fundingIntervalHours":4,"disclaimer":false},
        {"symbol":"ONEHOUR","adjustedFundingRateCap":"0.005","adjustedFundingRateFloor":"-0.005","fundingIntervalHours":1,"disclaimer":true}]"#;

    #[test]
    fn intervals_default_to_8h_and_follow_funding_info() {
        let f = FundingIntervals::from_json(INFO.as_bytes()).unwrap();
        assert_eq!(f.interval_hours("BLZUSDT"), 4);
        assert_eq!(f.interval_hours("ONEHOUR"), 1);
        assert_eq!(f.interval_hours("BTCUSDT"), 8);
        assert_eq!(f.info("BLZUSDT").unwrap().rate_cap, Some(Decimal::new(25, 3)));
        let day = 86_400_000;
        assert_eq!(f.funding_times("BTCUSDT", 0, day).len(), 3);
        assert_eq!(f.funding_times("BLZUSDT", 0, day).len(), 6);
        assert_eq!(f.funding_times("BLZUSDT", 0, day)[0], 4 * HOUR_MS);
        assert_eq!(f.funding_times("ONEHOUR", day, 2 * day).len(), 24);
        assert_eq!(f.fundings_between("BLZUSDT", 0, 12 * HOUR_MS), 3);
        assert_eq!(f.fundings_between("BTCUSDT", 0, 8 * HOUR_MS), 1);
        assert_eq!(f.fundings_between("BTCUSDT", 5, 5), 0);
        assert!(FundingIntervals::from_json(b"{}").is_err());
    }

    #[test]
    fn a_directory_without_the_file_means_8h() {
        let dir = std::env::temp_dir().join(format!("kinetic-funding-{}", std::process::id()));
        let f = FundingIntervals::load(&dir).unwrap();
        assert_eq!(f.interval_hours("ANY"), 8);
    }
}
