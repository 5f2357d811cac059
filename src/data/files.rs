//! Which files hold which candle series. A series (symbol, interval) is either one file
//! `SYMBOL-INTERVAL.csv[.gz|.zip]` or many, named as Binance's public dumps are downloaded:
//! `SYMBOL-INTERVAL-YYYY-MM.csv[.gz|.zip]` (monthly) and `SYMBOL-INTERVAL-YYYY-MM-DD...`
//! (daily). Two files covering the same period (a `.csv` beside its `.csv.gz`, a monthly file
//! and a daily file of that month, a whole-series file beside dated ones) are an error naming
//! both: silently preferring one would replay whichever the folder listing favoured.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;

use super::DataError;
use crate::core::models::{Timeframe, TimestampMs};

/// The extensions read, longest first.
pub const EXTENSIONS: [&str; 3] = [".csv.gz", ".zip", ".csv"];

/// The period a file covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Period {
    /// The whole series in one file.
    Whole,
    /// A calendar month (UTC).
    Month { year: i32, month: u32 },
    /// A calendar day (UTC).
    Day { year: i32, month: u32, day: u32 },
}

impl Period {
    /// Start of the period, ms (UTC); `Whole` starts at the beginning of time.
    fn start(self) -> TimestampMs {
        let date = match self {
            Period::Whole => return i64::MIN,
            Period::Month { year, month } => NaiveDate::from_ymd_opt(year, month, 1),
            Period::Day { year, month, day } => NaiveDate::from_ymd_opt(year, month, day),
        };
        date.and_then(|d| d.and_hms_opt(0, 0, 0)).map_or(i64::MIN, |t| t.and_utc().timestamp_millis())
    }

    /// Whether two periods share any time.
    pub fn overlaps(self, other: Period) -> bool {
        match (self, other) {
            (Period::Whole, _) | (_, Period::Whole) => true,
            (Period::Month { year, month }, Period::Day { year: y, month: m, .. })
            | (Period::Day { year: y, month: m, .. }, Period::Month { year, month }) => year == y && month == m,
            (a, b) => a == b,
        }
    }
}

/// A file name understood as a piece of a series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFileName {
    pub symbol: String,
    pub timeframe: Timeframe,
    pub period: Period,
}

/// Reads `BTCUSDT-15m.csv`, `BTCUSDT-15m-2024-01.zip`, `BTCUSDT-15m-2024-01-31.csv.gz`;
/// `None` for any other name (READMEs, checksums, funding files).
pub fn parse_file_name(name: &str) -> Option<DataFileName> {
    let stem = EXTENSIONS.iter().find_map(|ext| name.strip_suffix(ext))?;
    let parts: Vec<&str> = stem.split('-').collect();
    let (symbol, interval, date) = match parts.as_slice() {
        [s, i] => (*s, *i, &[][..]),
        [s, i, rest @ ..] if rest.len() == 2 || rest.len() == 3 => (*s, *i, rest),
        _ => return None,
    };
    if symbol.is_empty() || !symbol.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let timeframe: Timeframe = interval.parse().ok()?;
    let num = |s: &str, len: usize| -> Option<u32> {
        (s.len() == len && s.chars().all(|c| c.is_ascii_digit())).then(|| s.parse().ok())?
    };
    let year = |s: &str| num(s, 4).and_then(|y| i32::try_from(y).ok());
    let period = match date {
        [] => Period::Whole,
        [y, m] => Period::Month { year: year(y)?, month: num(m, 2)? },
        [y, m, d] => Period::Day { year: year(y)?, month: num(m, 2)?, day: num(d, 2)? },
        _ => return None,
    };
    if period != Period::Whole && period.start() == i64::MIN {
        return None;
    }
    Some(DataFileName { symbol: symbol.to_string(), timeframe, period })
}

/// The files of one series, in time order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesFiles {
    pub symbol: String,
    pub timeframe: Timeframe,
    pub files: Vec<PathBuf>,
}

impl SeriesFiles {
    /// The file names, for messages: one name, or the first and last with a count.
    pub fn describe(&self) -> String {
        let name = |p: &PathBuf| p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into());
        match self.files.as_slice() {
            [one] => one.display().to_string(),
            [first, .., last] => format!(
                "{} files {} … {} in {}",
                self.files.len(),
                name(first),
                name(last),
                first.parent().map_or_else(String::new, |d| d.display().to_string())
            ),
            [] => String::from("no files"),
        }
    }
}

/// The data files of one folder, indexed by series.
#[derive(Debug, Clone)]
pub struct DataDir {
    dir: PathBuf,
    series: BTreeMap<(String, Timeframe), Vec<(Period, PathBuf)>>,
}

impl DataDir {
    /// Lists `dir` (not recursively).
    ///
    /// # Errors
    /// [`DataError::NoFolder`] when `dir` is not a folder; I/O errors listing it.
    pub fn scan(dir: &Path) -> Result<DataDir, DataError> {
        if !dir.is_dir() {
            return Err(DataError::NoFolder { dir: dir.to_path_buf() });
        }
        let io = |source| DataError::Io { path: dir.to_path_buf(), source };
        let mut series: BTreeMap<(String, Timeframe), Vec<(Period, PathBuf)>> = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let Some(parsed) = parse_file_name(&entry.file_name().to_string_lossy()) else { continue };
            if !entry.path().is_file() {
                continue;
            }
            series.entry((parsed.symbol, parsed.timeframe)).or_default().push((parsed.period, entry.path()));
        }
        for files in series.values_mut() {
            files.sort();
        }
        Ok(DataDir { dir: dir.to_path_buf(), series })
    }

    /// The folder scanned.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Symbols with at least one file for `tf`, sorted.
    pub fn symbols(&self, tf: Timeframe) -> Vec<String> {
        self.series.keys().filter(|(_, t)| *t == tf).map(|(s, _)| s.clone()).collect()
    }

    /// Whether `symbol` has any file for `tf`.
    pub fn has(&self, symbol: &str, tf: Timeframe) -> bool {
        self.series.contains_key(&(symbol.to_string(), tf))
    }

    /// The files of `symbol` at `tf`, in time order.
    ///
    /// # Errors
    /// [`DataError::Missing`] without a file; [`DataError::Conflict`] naming two files that
    /// cover the same period.
    pub fn series(&self, symbol: &str, tf: Timeframe) -> Result<SeriesFiles, DataError> {
        let files = self.series.get(&(symbol.to_string(), tf)).ok_or_else(|| DataError::Missing {
            dir: self.dir.clone(),
            symbol: symbol.to_string(),
            interval: tf.to_string(),
        })?;
        for (i, (period, path)) in files.iter().enumerate() {
            if let Some((_, other)) = files.iter().skip(i + 1).find(|(p, _)| p.overlaps(*period)) {
                return Err(DataError::Conflict {
                    series: format!("{symbol} {tf}"),
                    first: path.clone(),
                    second: other.clone(),
                });
            }
        }
        let mut ordered: Vec<&(Period, PathBuf)> = files.iter().collect();
        ordered.sort_by_key(|(p, path)| (p.start(), path.clone()));
        Ok(SeriesFiles {
            symbol: symbol.to_string(),
            timeframe: tf,
            files: ordered.into_iter().map(|(_, p)| p.clone()).collect(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn names_as_binance_publishes_them() {
        let n = parse_file_name("BTCUSDT-15m-2024-01.zip").unwrap();
        assert_eq!(
            (n.symbol.as_str(), n.timeframe, n.period),
            ("BTCUSDT", Timeframe::M15, Period::Month { year: 2024, month: 1 })
        );
        let n = parse_file_name("ETHUSDT-1h-2024-02-29.csv.gz").unwrap();
        assert_eq!(n.period, Period::Day { year: 2024, month: 2, day: 29 });
        assert_eq!(parse_file_name("SOLUSDT-4h.csv").unwrap().period, Period::Whole);
        for bad in [
            "README.md",
            "BTCUSDT-15m-2024-01.zip.CHECKSUM",
            "BTCUSDT-7m.csv",
            "BTCUSDT-15m-2024-13.csv",
            "BTCUSDT-15m-2023-02-30.csv",
            "BTC-USDT-15m.csv",
            "BTCUSDT-15m-24-01.csv",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn conflicting_files_are_named_and_dated_files_ordered() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "X-15m-2024-02.csv",
            "X-15m-2024-01.zip",
            "X-15m-2024-03-01.csv",
            "Y-1h.csv",
            "Y-1h.csv.gz",
            "Z-4h-2024-01.csv",
            "Z-4h-2024-01-05.csv",
        ] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let d = DataDir::scan(dir.path()).unwrap();
        let x = d.series("X", Timeframe::M15).unwrap();
        let names: Vec<String> = x.files.iter().map(|p| p.file_name().unwrap().to_string_lossy().into()).collect();
        assert_eq!(names, ["X-15m-2024-01.zip", "X-15m-2024-02.csv", "X-15m-2024-03-01.csv"]);
        let err = d.series("Y", Timeframe::H1).unwrap_err().to_string();
        assert!(err.contains("Y-1h.csv") && err.contains("Y-1h.csv.gz"), "{err}");
        let err = d.series("Z", Timeframe::H4).unwrap_err().to_string();
        assert!(err.contains("Z-4h-2024-01.csv") && err.contains("Z-4h-2024-01-05.csv"), "{err}");
        assert!(matches!(d.series("X", Timeframe::H1), Err(DataError::Missing { .. })));
        assert_eq!(d.symbols(Timeframe::M15), ["X"]);
    }
}
