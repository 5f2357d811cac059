//! Funding-rate history files, `DIR/funding/<SYMBOL>.csv[.gz]`
//! (`funding_time,funding_rate,mark_price`), which the backtest charges funding from (a time
//! without a row falls back to the configured flat rate). `download-data` fills them from
//! `GET /fapi/v1/fundingRate` or from Binance's monthly `fundingRate` archives, merging with
//! what the file already holds. Plain file I/O; values are kept as the source wrote them.
//!
//! The archives (`{SYMBOL}-fundingRate-YYYY-MM.zip`) hold one CSV
//! `calc_time,funding_interval_hours,last_funding_rate` with a header; they carry no mark price,
//! so rows from them leave `mark_price` empty (the backtest does not read it).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rust_decimal::Decimal;

use super::DataError;
use crate::core::models::TimestampMs;

/// The header of a funding file.
pub const FUNDING_HEADER: &str = "funding_time,funding_rate,mark_price";

const HOUR_MS: i64 = 3_600_000;

/// One settled funding: Binance's `fundingTime` (ms), the rate and the mark price as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FundingRow {
    pub time: TimestampMs,
    pub rate: String,
    /// Empty when the source has none (the archives).
    pub mark_price: String,
}

impl FundingRow {
    /// The funding hour the row settles (Binance's `fundingTime` carries a few ms of jitter);
    /// rows are merged on it.
    pub fn hour(&self) -> TimestampMs {
        (self.time + HOUR_MS / 2).div_euclid(HOUR_MS) * HOUR_MS
    }
}

/// `DIR/funding/<SYMBOL>.csv`, or the `.csv.gz` already there (the one the backtest reads).
pub fn file_for(dir: &Path, symbol: &str) -> PathBuf {
    let base = dir.join("funding");
    let plain = base.join(format!("{symbol}.csv"));
    let gz = base.join(format!("{symbol}.csv.gz"));
    if !plain.is_file() && gz.is_file() { gz } else { plain }
}

fn malformed(path: &Path, line: usize, reason: String) -> DataError {
    DataError::Malformed { path: path.to_path_buf(), line, reason }
}

/// A rate as a source wrote it: a decimal fraction (`8.744e-05` included) inside
/// [`MAX_ABS_RATE`].
fn check_rate(text: &str) -> bool {
    let t = text.trim();
    let value = Decimal::from_str_exact(t).or_else(|_| Decimal::from_scientific(t));
    value.is_ok_and(|v| v.abs() <= MAX_ABS_RATE)
}

/// The largest funding rate magnitude a file may hold: 1 (100 % per funding). Binance caps
/// rates at a few percent; anything beyond is a column mix-up (a mark price, a percentage).
pub const MAX_ABS_RATE: Decimal = Decimal::ONE;

/// Reads a funding file (plain, gzip or zip); a missing file is empty.
///
/// # Errors
/// The file cannot be read, or a row is not `time,rate[,mark_price]`.
pub fn read(path: &Path) -> Result<Vec<FundingRow>, DataError> {
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let reader = super::open_file(path, Rc::default())?;
    let mut rows = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
        let text = line.trim();
        if text.is_empty() || i == 0 && text.starts_with("funding_time") {
            continue;
        }
        let mut it = text.split(',');
        let time = it.next().and_then(|t| t.trim().parse::<i64>().ok());
        let rate = it.next().map(str::trim).filter(|r| check_rate(r));
        let (Some(time), Some(rate)) = (time, rate) else {
            return Err(malformed(path, i + 1, format!("expected `{FUNDING_HEADER}`, got `{text}`")));
        };
        rows.push(FundingRow {
            time,
            rate: rate.to_string(),
            mark_price: it.next().map(str::trim).unwrap_or_default().to_string(),
        });
    }
    Ok(rows)
}

/// Parses the CSV inside a monthly `fundingRate` archive (`calc_time,funding_interval_hours,
/// last_funding_rate`, header optional); `what` names it in errors.
///
/// # Errors
/// A row that is not three fields with an integer time and a decimal rate.
pub fn parse_archive_csv(what: &Path, text: &str) -> Result<Vec<FundingRow>, DataError> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || i == 0 && line.starts_with("calc_time") {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let parsed = match f.as_slice() {
            [t, _hours, r] if check_rate(r) => t.parse::<i64>().ok().map(|t| (t, *r)),
            _ => None,
        };
        let Some((time, rate)) = parsed else {
            return Err(malformed(
                what,
                i + 1,
                format!("expected `calc_time,funding_interval_hours,last_funding_rate`, got `{line}`"),
            ));
        };
        rows.push(FundingRow { time, rate: rate.to_string(), mark_price: String::new() });
    }
    Ok(rows)
}

/// `old` and `new` as one series in time order, one row per funding hour: a new row replaces
/// an old one of the same hour, keeping the old mark price when it has none.
pub fn merge(old: Vec<FundingRow>, new: Vec<FundingRow>) -> Vec<FundingRow> {
    let mut by_hour: BTreeMap<TimestampMs, FundingRow> = old.into_iter().map(|r| (r.hour(), r)).collect();
    for mut r in new {
        if let Some(prev) = by_hour.get(&r.hour())
            && r.mark_price.is_empty()
        {
            r.mark_price.clone_from(&prev.mark_price);
        }
        by_hour.insert(r.hour(), r);
    }
    by_hour.into_values().collect()
}

/// Writes `rows` to `path` (gzip when it ends in `.gz`) through a temporary file renamed into
/// place, so a failure never leaves half a file.
///
/// # Errors
/// The folder or file cannot be written.
pub fn write(path: &Path, rows: &[FundingRow]) -> Result<(), std::io::Error> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut text = String::with_capacity(rows.len() * 40 + 64);
    text.push_str(FUNDING_HEADER);
    text.push('\n');
    for r in rows {
        text.push_str(&format!("{},{},{}\n", r.time, r.rate, r.mark_price));
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let part = path.with_file_name(format!(".{name}.partial"));
    {
        let file = std::fs::File::create(&part)?;
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz")) {
            let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
            gz.write_all(text.as_bytes())?;
            gz.finish()?.sync_all()?;
        } else {
            let mut file = file;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
        }
    }
    std::fs::rename(&part, path)
}

/// Merges `new` into the funding file of `symbol` under `dir`; returns the file and how many
/// funding hours it gained.
///
/// # Errors
/// The file already there is unreadable (it is left as it is), or the new one cannot be
/// written.
pub fn merge_into(dir: &Path, symbol: &str, new: Vec<FundingRow>) -> Result<(PathBuf, usize), String> {
    let path = file_for(dir, symbol);
    let old = read(&path).map_err(|e| e.to_string())?;
    let before = old.len();
    let rows = merge(old, new);
    let added = rows.len().saturating_sub(before);
    if rows.is_empty() {
        return Ok((path, 0));
    }
    write(&path, &rows).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok((path, added))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    fn row(time: i64, rate: &str, mark: &str) -> FundingRow {
        FundingRow { time, rate: rate.into(), mark_price: mark.into() }
    }

    #[test]
    fn archive_rows_become_funding_rows() {
        let text = "calc_time,funding_interval_hours,last_funding_rate\n\
                    1704067200000,8,0.00037409\n1704096000007,8,-0.00001000\n";
        let rows = parse_archive_csv(Path::new("a.zip"), text).unwrap();
        assert_eq!(rows, vec![row(1_704_067_200_000, "0.00037409", ""), row(1_704_096_000_007, "-0.00001000", "")]);
        let e = parse_archive_csv(Path::new("a.zip"), "1704067200000,8,abc\n").unwrap_err().to_string();
        assert!(e.contains("a.zip:1") && e.contains("last_funding_rate"), "{e}");
        assert!(parse_archive_csv(Path::new("a.zip"), "1704067200000,0.0001\n").is_err(), "two columns");
        // A price where the rate belongs is refused, not charged.
        assert!(parse_archive_csv(Path::new("a.zip"), "1704067200000,8,69152.2\n").is_err());
        assert!(parse_archive_csv(Path::new("a.zip"), "1704067200000,8,-1.5\n").is_err());
        assert!(parse_archive_csv(Path::new("a.zip"), "1704067200000,8,-1\n").is_ok());
    }

    #[test]
    fn merge_keeps_one_row_per_hour_in_time_order() {
        let old = vec![row(1_000 * HOUR_MS, "0.0001", "100.5"), row(1_008 * HOUR_MS, "0.0002", "101")];
        // Same hour with jitter: the new rate wins, the old mark stays when the new has none.
        let new = vec![row(1_008 * HOUR_MS + 11, "0.0003", ""), row(992 * HOUR_MS, "-0.0001", "")];
        let m = merge(old, new);
        assert_eq!(
            m,
            vec![
                row(992 * HOUR_MS, "-0.0001", ""),
                row(1_000 * HOUR_MS, "0.0001", "100.5"),
                row(1_008 * HOUR_MS + 11, "0.0003", "101"),
            ]
        );
    }

    #[test]
    fn written_files_read_back_plain_and_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![row(1_768_089_600_000, "8.744e-05", "90469.7"), row(1_768_118_400_000, "0.0001", "")];
        for name in ["X.csv", "X.csv.gz"] {
            let p = dir.path().join("funding").join(name);
            write(&p, &rows).unwrap();
            assert_eq!(read(&p).unwrap(), rows, "{name}");
        }
        // What the backtest's reader sees is the same series.
        let p = dir.path().join("funding").join("X.csv");
        let mut src = crate::backtest::feed::FundingSource::open(&p).unwrap();
        assert_eq!(src.rate_at(1_768_089_600_000).unwrap(), Some(8.744e-05));
        assert_eq!(src.rate_at(1_768_118_400_000).unwrap(), Some(0.0001));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("funding"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("partial"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn merge_into_prefers_the_gzip_file_already_there_and_counts_new_hours() {
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("funding").join("BTCUSDT.csv.gz");
        write(&gz, &[row(8 * HOUR_MS, "0.0001", "1")]).unwrap();
        let (path, added) =
            merge_into(dir.path(), "BTCUSDT", vec![row(8 * HOUR_MS, "0.0001", ""), row(16 * HOUR_MS, "0.0002", "")])
                .unwrap();
        assert_eq!((path.clone(), added), (gz, 1));
        assert_eq!(read(&path).unwrap().len(), 2);
        assert!(!dir.path().join("funding").join("BTCUSDT.csv").exists(), "no second file beside the gzip one");
        // A file that cannot be read is reported and left alone.
        let bad = dir.path().join("funding").join("ETHUSDT.csv");
        std::fs::write(&bad, "funding_time,funding_rate,mark_price\nnot,a,row\n").unwrap();
        let e = merge_into(dir.path(), "ETHUSDT", vec![row(8 * HOUR_MS, "0.0001", "")]).unwrap_err();
        assert!(e.contains("ETHUSDT.csv:2"), "{e}");
        assert_eq!(std::fs::read_to_string(&bad).unwrap(), "funding_time,funding_rate,mark_price\nnot,a,row\n");
    }
}
