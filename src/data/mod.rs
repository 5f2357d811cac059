//! Candle data files, as users have them: one file per series (`DIR/<SYMBOL>-<interval>.csv`,
//! `.csv.gz` or `.zip`) or Binance's public kline dumps as downloaded, one file per month or
//! day (`<SYMBOL>-<interval>-YYYY-MM(-DD).csv[.gz|.zip]`), with or without a header, 11 or 12
//! columns (`open_time,open,high,low,close,volume,close_time,quote_volume,count,
//! taker_buy_volume,taker_buy_quote_volume[,ignore]`, ms since epoch, UTC). Used by `analyze`,
//! `backtest` and `download-data`. Plain file I/O only; nothing here knows about strategy or
//! exchange.
//!
//! - [`files`]: which files make up which series, and conflicts between them;
//! - [`reader`]: streaming a series row by row, with its gaps and duplicates recorded;
//! - [`zip`]: the single CSV inside a dump archive.

pub mod dumps;
pub mod files;
pub mod reader;
mod zip;

use std::fs::File;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

pub mod funding;
pub mod funding_history;

use crate::core::models::{Candle, Timeframe, TimestampMs};

pub use files::{DataDir, SeriesFiles, parse_file_name};
pub use reader::{SeriesQuality, SeriesReader, open_file, read_series};

/// The header line every data file written here starts with (Binance's dumps call `trades`
/// `count` and add a trailing `ignore` column; both are read).
pub const HEADER: &str =
    "open_time,open,high,low,close,volume,close_time,quote_volume,trades,taker_buy_volume,taker_buy_quote_volume";

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(
        "no data file for {symbol} {interval} in {dir} (looked for {symbol}-{interval}.csv[.gz|.zip] and \
         {symbol}-{interval}-YYYY-MM[-DD].csv[.gz|.zip])"
    )]
    Missing { dir: PathBuf, symbol: String, interval: String },
    #[error("data folder {dir} does not exist or is not a folder")]
    NoFolder { dir: PathBuf },
    #[error("two files hold {series} for the same period: {first} and {second}; keep one of them")]
    Conflict { series: String, first: PathBuf, second: PathBuf },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Malformed { path: PathBuf, line: usize, reason: String },
}

impl DataError {
    /// Whether the data given is at fault (exit 2) rather than the machine (exit 1): missing,
    /// conflicting, malformed, damaged or undecodable files are bad input; other I/O errors
    /// (permissions, a failing disk) are not.
    pub fn is_bad_input(&self) -> bool {
        match self {
            DataError::Io { source, .. } => {
                use std::io::ErrorKind::{InvalidData, InvalidInput, UnexpectedEof};
                // Decoders report damaged gzip/deflate data and invalid UTF-8 with these kinds.
                matches!(source.kind(), InvalidData | InvalidInput | UnexpectedEof)
            }
            _ => true,
        }
    }
}

/// A time as users read it in messages: `2026-05-06 16:00 UTC`.
pub fn time_text(t: TimestampMs) -> String {
    DateTime::<Utc>::from_timestamp_millis(t)
        .map_or_else(|| t.to_string(), |d| d.format("%Y-%m-%d %H:%M UTC").to_string())
}

/// Reads all candles of `symbol` at `tf` from `dir` (every file of the series, in order).
///
/// # Errors
/// [`DataError::Missing`] when no file exists, [`DataError::Conflict`] for two files of the
/// same period, I/O and format errors with file and line.
pub fn load_candles(dir: &Path, symbol: &str, tf: Timeframe) -> Result<Vec<Candle>, DataError> {
    let series = DataDir::scan(dir)?.series(symbol, tf)?;
    Ok(read_series(&series)?.0)
}

/// Symbols that have a data file for `tf` in `dir`, sorted.
///
/// # Errors
/// The folder does not exist or cannot be listed.
pub fn symbols_in(dir: &Path, tf: Timeframe) -> Result<Vec<String>, DataError> {
    Ok(DataDir::scan(dir)?.symbols(tf))
}

/// Reads one data file (plain, gzip or zip, judged by the extension). Rows must be in
/// ascending `open_time` without repeats.
///
/// # Errors
/// I/O errors and malformed rows, with the line number.
pub fn read_candle_file(path: &Path) -> Result<Vec<Candle>, DataError> {
    parse_candles(open_file(path, std::rc::Rc::new(std::cell::Cell::new(0)))?, path)
}

/// Parses candle CSV text from any reader; `origin` names it in errors. Rows must be in
/// ascending `open_time` without repeats.
///
/// # Errors
/// I/O errors and malformed rows, with the line number.
pub fn parse_candles<R: BufRead>(mut reader: R, origin: &Path) -> Result<Vec<Candle>, DataError> {
    let mut parser = reader::LineParser::new(origin);
    let mut out: Vec<Candle> = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).map_err(|source| DataError::Io { path: origin.to_path_buf(), source })?;
        if n == 0 {
            return Ok(out);
        }
        let Some(candle) = parser.parse(&line)? else { continue };
        if let Some(prev) = out.last()
            && candle.open_time <= prev.open_time
        {
            return Err(parser
                .malformed(format!("open_time {} not after the previous row's {}", candle.open_time, prev.open_time)));
        }
        out.push(candle);
    }
}

const MICROS_THRESHOLD: i64 = 100_000_000_000_000;

/// Parses one row. Empty optional columns read as zero. The hot path of data loading: no
/// allocation unless the row is malformed.
pub fn parse_row(text: &str) -> Result<Candle, String> {
    let mut it = Fields { rest: Some(text) };
    let mut field = |name: &'static str| it.next().ok_or_else(|| format!("missing column {name}"));
    // Fields are parsed as they are (the hot path); padded fields are retried trimmed.
    let int = |name: &str, s: &str| {
        s.parse::<i64>().or_else(|_| s.trim().parse::<i64>()).map_err(|_| format!("{name}: not an integer: `{s}`"))
    };
    let num = |name: &str, s: &str| -> Result<f64, String> {
        let parsed = match plain_decimal(s) {
            Some(v) => Ok(v),
            None => s.parse::<f64>().or_else(|_| s.trim().parse::<f64>()),
        };
        match parsed {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(format!("{name}: not a finite number: `{s}`")),
        }
    };
    let opt = |name: &str, s: &str| if s.is_empty() || s.trim().is_empty() { Ok(0.0) } else { num(name, s) };
    let mut open_time = int("open_time", field("open_time")?)?;
    let open = num("open", field("open")?)?;
    let high = num("high", field("high")?)?;
    let low = num("low", field("low")?)?;
    let close = num("close", field("close")?)?;
    let volume = num("volume", field("volume")?)?;
    let mut close_time = int("close_time", field("close_time")?)?;
    // Binance's spot dumps switched to microseconds in 2025; ms stay below 1e14 until year 5138.
    if open_time >= MICROS_THRESHOLD {
        open_time /= 1000;
        close_time /= 1000;
    }
    let quote_volume = opt("quote_volume", field("quote_volume")?)?;
    let trades_text = field("trades")?;
    let trades = if trades_text.is_empty() || trades_text.trim().is_empty() {
        0
    } else {
        trades_text.trim().parse::<u64>().map_err(|_| format!("trades: not a count: `{trades_text}`"))?
    };
    let taker_buy_volume = opt("taker_buy_volume", field("taker_buy_volume")?)?;
    let taker_buy_quote_volume = opt("taker_buy_quote_volume", field("taker_buy_quote_volume")?)?;
    let c = Candle {
        open_time,
        close_time,
        open,
        high,
        low,
        close,
        volume,
        quote_volume,
        trades,
        taker_buy_volume,
        taker_buy_quote_volume,
    };
    if !c.is_sane() {
        return Err(format!("inconsistent candle (prices must be > 0 and low <= open/close <= high): `{text}`"));
    }
    Ok(c)
}

/// The comma-separated fields of a row, as `str::split(',')` yields them. Hand-rolled because
/// the general splitter's per-field searcher set-up was the largest cost of loading a file.
struct Fields<'a> {
    rest: Option<&'a str>,
}

impl<'a> Iterator for Fields<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let s = self.rest?;
        match s.bytes().position(|b| b == b',') {
            Some(i) => {
                // `i` is the byte offset of an ASCII comma: both slices are on char boundaries.
                self.rest = s.get(i + 1..);
                s.get(..i)
            }
            None => {
                self.rest = None;
                Some(s)
            }
        }
    }
}

/// Powers of ten that are exact in an `f64` (10^0 ..= 10^22).
const EXACT_POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// A plain decimal (`117342.1`: digits with at most one point, nothing else) by the exact fast
/// path: a mantissa of at most 2^53 and an exact power of ten give the value in one IEEE
/// division, which rounds correctly, so the result is bit for bit what `str::parse::<f64>`
/// returns. `None` for anything else (signs, exponents, padding, long mantissas): the caller
/// then parses with std.
fn plain_decimal(s: &str) -> Option<f64> {
    let mut mantissa: u64 = 0;
    let mut digits = 0usize;
    let mut fraction: Option<usize> = None;
    for b in s.bytes() {
        match b {
            b'0'..=b'9' => {
                mantissa = mantissa.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
                digits += 1;
                if let Some(f) = fraction.as_mut() {
                    *f += 1;
                }
            }
            b'.' if fraction.is_none() => fraction = Some(0),
            _ => return None,
        }
    }
    if digits == 0 || mantissa > 1u64 << 53 {
        return None;
    }
    let scale = EXACT_POW10.get(fraction.unwrap_or(0))?;
    // Exact: the mantissa is at most 2^53.
    #[allow(clippy::cast_precision_loss)]
    Some(mantissa as f64 / scale)
}

/// Formats one candle as a data-file row (no newline).
pub fn format_row(c: &Candle) -> String {
    format!(
        "{},{},{},{},{},{},{},{},{},{},{}",
        c.open_time,
        c.open,
        c.high,
        c.low,
        c.close,
        c.volume,
        c.close_time,
        c.quote_volume,
        c.trades,
        c.taker_buy_volume,
        c.taker_buy_quote_volume
    )
}

/// Writes candles to a plain CSV file with the header, replacing it.
///
/// # Errors
/// I/O errors.
pub fn write_candle_file(path: &Path, candles: &[Candle]) -> Result<(), DataError> {
    let io = |source| DataError::Io { path: path.to_path_buf(), source };
    let mut w = BufWriter::new(File::create(path).map_err(io)?);
    writeln!(w, "{HEADER}").map_err(io)?;
    for c in candles {
        writeln!(w, "{}", format_row(c)).map_err(io)?;
    }
    w.flush().map_err(io)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn plain_decimals_parse_bit_for_bit_like_std() {
        let fixed = [
            "0",
            "0.0",
            "1",
            "1.",
            ".5",
            "117342.1",
            "0.00001234",
            "9007199254740992",
            "9007199254740993",
            "123456789.123456789",
            "0.1",
            "0.3",
            "2.675",
            "1234567890123456789012",
            "00012.500",
            "79999.99",
        ];
        for s in fixed {
            if let Some(v) = plain_decimal(s) {
                assert_eq!(v.to_bits(), s.parse::<f64>().unwrap().to_bits(), "{s}");
            }
        }
        // Anything that is not a plain decimal is left to std.
        for s in ["", ".", "-1", "+1", "1e5", " 1", "1.2.3", "inf", "NaN", "1,2"] {
            assert_eq!(plain_decimal(s), None, "{s}");
        }
        // Kline-like values: many magnitudes and fraction lengths.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let int = x % 10u64.pow((x >> 60) as u32 % 9);
            let frac_len = (x >> 40) as usize % 8; // at most 15 digits: all on the fast path
            let frac = (x >> 8) % 10u64.pow(frac_len as u32);
            let s = if frac_len == 0 { format!("{int}") } else { format!("{int}.{frac:0frac_len$}") };
            let v = plain_decimal(&s).unwrap();
            assert_eq!(v.to_bits(), s.parse::<f64>().unwrap().to_bits(), "{s}");
        }
    }

    #[test]
    fn fields_split_like_str_split() {
        for s in ["", ",", "a", "a,", ",a", "a,,b", "1,2,3,4,5,6,7,8,9,10,11,12", "é,ü"] {
            let ours: Vec<&str> = Fields { rest: Some(s) }.collect();
            let std: Vec<&str> = s.split(',').collect();
            assert_eq!(ours, std, "{s:?}");
        }
    }

    #[test]
    fn parses_rows_with_empty_optional_columns() -> Result<(), DataError> {
        let text = format!("{HEADER}\n1755388800000,117342.1,117500,117300,117450.5,123.4,1755389699999,,,,\n");
        let candles = parse_candles(Cursor::new(text), Path::new("x.csv"))?;
        assert_eq!(candles.len(), 1);
        assert_eq!(candles[0].close, 117450.5);
        assert_eq!(candles[0].quote_volume, 0.0);
        Ok(())
    }

    #[test]
    fn rejects_bad_rows_with_line_numbers() {
        let bad = format!("{HEADER}\n1,2,3,1,2,5,900,,,,\n1,2,3,1,2,5,900,,,,\n");
        let err = parse_candles(Cursor::new(bad), Path::new("x.csv")).map(|_| ()).map_err(|e| e.to_string());
        assert_eq!(err, Err("x.csv:3: open_time 1 not after the previous row's 1".to_string()));
        let nan = format!("{HEADER}\n1,NaN,3,1,2,5,900,,,,\n");
        assert!(parse_candles(Cursor::new(nan), Path::new("x.csv")).is_err());
        let hdr = "time,open\n";
        assert!(parse_candles(Cursor::new(hdr), Path::new("x.csv")).is_err());
    }

    #[test]
    fn write_then_read_round_trips() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let c = Candle {
            open_time: 0,
            close_time: 899_999,
            open: 1.5,
            high: 2.0,
            low: 1.0,
            close: 1.75,
            volume: 10.0,
            quote_volume: 17.5,
            trades: 3,
            taker_buy_volume: 4.0,
            taker_buy_quote_volume: 7.0,
        };
        let path = dir.path().join("ABCUSDT-15m.csv");
        write_candle_file(&path, &[c])?;
        assert_eq!(load_candles(dir.path(), "ABCUSDT", Timeframe::M15)?, vec![c]);
        assert_eq!(symbols_in(dir.path(), Timeframe::M15)?, vec!["ABCUSDT".to_string()]);
        Ok(())
    }
}
