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
    /// The funding hour the row settles; rows are merged on it.
    pub fn hour(&self) -> TimestampMs {
        settle_hour(self.time)
    }
}

/// Binance's `fundingTime` carries a few ms of jitter: the hour it settles.
pub fn settle_hour(time: TimestampMs) -> TimestampMs {
    (time + HOUR_MS / 2).div_euclid(HOUR_MS) * HOUR_MS
}

/// The funding file of `symbol` under `DIR/funding/` that exists, the plain `.csv` before the
/// `.csv.gz` (the one the backtest reads).
pub fn existing_file(dir: &Path, symbol: &str) -> Option<PathBuf> {
    let base = dir.join("funding");
    [format!("{symbol}.csv"), format!("{symbol}.csv.gz")].into_iter().map(|n| base.join(n)).find(|p| p.is_file())
}

/// Where `download-data` writes `symbol`'s funding: the file already there, else
/// `DIR/funding/<SYMBOL>.csv`.
pub fn file_for(dir: &Path, symbol: &str) -> PathBuf {
    existing_file(dir, symbol).unwrap_or_else(|| dir.join("funding").join(format!("{symbol}.csv")))
}

fn malformed(path: &Path, line: usize, reason: String) -> DataError {
    DataError::Malformed { path: path.to_path_buf(), line, reason }
}

/// The largest funding rate magnitude a file may hold: 1 (100 % per funding). Binance caps
/// rates at a few percent; anything beyond is a column mix-up (a mark price, a percentage).
pub const MAX_ABS_RATE: Decimal = Decimal::ONE;

/// A rate as a source wrote it (`8.744e-05` included): `None` unless a decimal number.
fn parse_rate(text: &str) -> Option<Decimal> {
    let t = text.trim();
    Decimal::from_str_exact(t).or_else(|_| Decimal::from_scientific(t)).ok()
}

/// Why `rate` cannot be a funding rate, if it cannot.
fn rate_problem(rate: Decimal) -> Option<String> {
    (rate.abs() > MAX_ABS_RATE).then(|| {
        format!(
            "funding rate {rate} is not a fraction in [-1, 1] (0.0001 is 0.01 %); is the column order \
             `{FUNDING_HEADER}`?"
        )
    })
}

/// True for the lines of a funding file that hold no row: blank, or the header as the first.
pub fn is_header_or_blank(line_no: usize, text: &str) -> bool {
    let t = text.trim();
    t.is_empty() || line_no == 1 && t.starts_with("funding_time")
}

/// One row of a funding file, `time,rate[,mark_price]`: the time, the rate's text and the mark
/// price's (empty when absent).
///
/// # Errors
/// What is wrong with the row, for [`DataError::Malformed`].
pub fn parse_line(text: &str) -> Result<(TimestampMs, &str, &str), String> {
    let mut it = text.trim().split(',').map(str::trim);
    let time = it.next().and_then(|t| t.parse::<i64>().ok());
    let rate = it.next().and_then(|r| parse_rate(r).map(|v| (r, v)));
    let (Some(time), Some((rate, value))) = (time, rate) else {
        return Err(format!("expected `{FUNDING_HEADER}`, got `{}`", text.trim()));
    };
    if let Some(problem) = rate_problem(value) {
        return Err(problem);
    }
    Ok((time, rate, it.next().unwrap_or_default()))
}

/// Reads a funding file (plain, gzip or zip); a missing file is empty.
///
/// # Errors
/// The file cannot be read, or a row is not `time,rate[,mark_price]` with a rate in
/// [-1, 1].
pub fn read(path: &Path) -> Result<Vec<FundingRow>, DataError> {
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let reader = super::open_file(path, Rc::default())?;
    let mut rows = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|source| DataError::Io { path: path.to_path_buf(), source })?;
        if is_header_or_blank(i + 1, &line) {
            continue;
        }
        let (time, rate, mark) = parse_line(&line).map_err(|reason| malformed(path, i + 1, reason))?;
        rows.push(FundingRow { time, rate: rate.to_string(), mark_price: mark.to_string() });
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
            [t, _hours, r] => t.parse::<i64>().ok().zip(parse_rate(r).map(|v| (*r, v))),
            _ => None,
        };
        let Some((time, (rate, value))) = parsed else {
            return Err(malformed(
                what,
                i + 1,
                format!("expected `calc_time,funding_interval_hours,last_funding_rate`, got `{line}`"),
            ));
        };
        if let Some(problem) = rate_problem(value) {
            return Err(malformed(what, i + 1, problem));
        }
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

/// Writes `old` (what `path` holds, as [`read`] gave it) merged with `new` to `path`; returns
/// how many funding hours the file gained and how many rows it holds. Nothing is written when
/// both are empty.
///
/// # Errors
/// The file cannot be written.
pub fn update(path: &Path, old: Vec<FundingRow>, new: Vec<FundingRow>) -> Result<(usize, usize), String> {
    let before = old.len();
    let rows = merge(old, new);
    if rows.is_empty() {
        return Ok((0, 0));
    }
    write(path, &rows).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok((rows.len().saturating_sub(before), rows.len()))
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
    fn updates_go_to_the_gzip_file_already_there_and_count_new_hours() {
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("funding").join("BTCUSDT.csv.gz");
        write(&gz, &[row(8 * HOUR_MS, "0.0001", "1")]).unwrap();
        let path = file_for(dir.path(), "BTCUSDT");
        assert_eq!(path, gz);
        let old = read(&path).unwrap();
        let (added, total) =
            update(&path, old, vec![row(8 * HOUR_MS, "0.0001", ""), row(16 * HOUR_MS, "0.0002", "")]).unwrap();
        assert_eq!((added, total), (1, 2));
        assert_eq!(read(&path).unwrap().len(), 2);
        assert!(!dir.path().join("funding").join("BTCUSDT.csv").exists(), "no second file beside the gzip one");
        // A file that cannot be read is reported (file and line) and left alone.
        let bad = dir.path().join("funding").join("ETHUSDT.csv");
        std::fs::write(&bad, "funding_time,funding_rate,mark_price\nnot,a,row\n").unwrap();
        let e = read(&file_for(dir.path(), "ETHUSDT")).unwrap_err().to_string();
        assert!(e.contains("ETHUSDT.csv:2"), "{e}");
        assert_eq!(std::fs::read_to_string(&bad).unwrap(), "funding_time,funding_rate,mark_price\nnot,a,row\n");
        // Nothing to write: no file.
        assert_eq!(update(&dir.path().join("funding").join("XRPUSDT.csv"), vec![], vec![]).unwrap(), (0, 0));
        assert!(!dir.path().join("funding").join("XRPUSDT.csv").exists());
    }
}
