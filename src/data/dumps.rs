//! Binance's public kline archives (data.binance.vision) for USDⓈ-M futures: which archives a
//! date range asks for, where each one is, and how its `.CHECKSUM` file is read. Pure: the
//! download itself is in [`crate::commands::download_dumps`].
//!
//! What this assumes of the archive (Binance's `binance-public-data` README, and the layout of
//! the site as published):
//! - monthly archives at `{base}/data/futures/um/monthly/klines/{SYMBOL}/{INTERVAL}/{SYMBOL}-{INTERVAL}-{YYYY-MM}.zip`,
//!   daily ones at `{base}/data/futures/um/daily/klines/{SYMBOL}/{INTERVAL}/{SYMBOL}-{INTERVAL}-{YYYY-MM-DD}.zip`;
//!   a month's archive appears in the first days of the next month, a day's on the next day;
//! - each zip holds one CSV of the 12 kline columns, with or without a header line;
//! - beside each zip, `<zip name>.CHECKSUM` holds `<sha256 hex>  <zip name>` (`sha256sum`
//!   output); only the first word, 64 hex digits, is used;
//! - a missing archive (a month not published yet, a symbol not listed then) is HTTP 404;
//! - funding rates are in monthly archives only, at
//!   `{base}/data/futures/um/monthly/fundingRate/{SYMBOL}/{SYMBOL}-fundingRate-{YYYY-MM}.zip`
//!   (with a `.CHECKSUM` the same way), one CSV `calc_time,funding_interval_hours,last_funding_rate`
//!   with a header.

use chrono::{Datelike, NaiveDate};

use crate::core::models::Timeframe;
use crate::data::files::Period;

/// One archive: a calendar month or a day (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DumpPeriod {
    Month { year: i32, month: u32 },
    Day(NaiveDate),
}

impl DumpPeriod {
    /// `2025-01` or `2025-01-31`.
    pub fn label(self) -> String {
        match self {
            DumpPeriod::Month { year, month } => format!("{year:04}-{month:02}"),
            DumpPeriod::Day(d) => d.format("%Y-%m-%d").to_string(),
        }
    }

    /// The same period as the data-file reader names it.
    pub fn as_file_period(self) -> Period {
        match self {
            DumpPeriod::Month { year, month } => Period::Month { year, month },
            DumpPeriod::Day(d) => Period::Day { year: d.year(), month: d.month(), day: d.day() },
        }
    }

    fn folder(self) -> &'static str {
        match self {
            DumpPeriod::Month { .. } => "monthly",
            DumpPeriod::Day(_) => "daily",
        }
    }
}

/// `BTCUSDT-15m-2025-01.zip`: the archive's own name, which is also what the backtest reads.
pub fn file_name(symbol: &str, tf: Timeframe, period: DumpPeriod) -> String {
    format!("{symbol}-{tf}-{}.zip", period.label())
}

/// The archive's URL under `base` (no trailing slash).
pub fn archive_url(base: &str, symbol: &str, tf: Timeframe, period: DumpPeriod) -> String {
    format!(
        "{}/data/futures/um/{}/klines/{symbol}/{tf}/{}",
        base.trim_end_matches('/'),
        period.folder(),
        file_name(symbol, tf, period)
    )
}

/// The months a list of archives touches, in order (funding-rate archives are monthly only).
pub fn months_of(periods: &[DumpPeriod]) -> Vec<DumpPeriod> {
    let mut months: Vec<DumpPeriod> = periods
        .iter()
        .map(|p| match *p {
            DumpPeriod::Month { year, month } => DumpPeriod::Month { year, month },
            DumpPeriod::Day(d) => DumpPeriod::Month { year: d.year(), month: d.month() },
        })
        .collect();
    months.sort();
    months.dedup();
    months
}

/// `BTCUSDT-fundingRate-2025-01.zip`.
pub fn funding_file_name(symbol: &str, month: DumpPeriod) -> String {
    format!("{symbol}-fundingRate-{}.zip", month.label())
}

/// The monthly funding-rate archive of `symbol`:
/// `{base}/data/futures/um/monthly/fundingRate/{SYMBOL}/{SYMBOL}-fundingRate-{YYYY-MM}.zip`.
pub fn funding_url(base: &str, symbol: &str, month: DumpPeriod) -> String {
    format!(
        "{}/data/futures/um/monthly/fundingRate/{symbol}/{}",
        base.trim_end_matches('/'),
        funding_file_name(symbol, month)
    )
}

/// The sha256 of a `.CHECKSUM` file's text, lower-case; `None` when its first word is not 64
/// hex digits.
pub fn parse_checksum(text: &str) -> Option<String> {
    let word = text.split_whitespace().next()?;
    (word.len() == 64 && word.chars().all(|c| c.is_ascii_hexdigit())).then(|| word.to_ascii_lowercase())
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A `--from`/`--to` value: a month (`YYYY-MM`) or a day (`YYYY-MM-DD`).
fn parse_one(flag: &str, text: &str) -> Result<DumpPeriod, String> {
    let t = text.trim();
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(DumpPeriod::Day(d));
    }
    if let Ok(d) = NaiveDate::parse_from_str(&format!("{t}-01"), "%Y-%m-%d")
        && t.len() == 7
    {
        return Ok(DumpPeriod::Month { year: d.year(), month: d.month() });
    }
    Err(format!(
        "--{flag}: `{text}` is neither a month (YYYY-MM, for monthly archives) nor a day (YYYY-MM-DD, for daily archives)"
    ))
}

/// The archives from `from` to `to` inclusive: months for `YYYY-MM`, days for `YYYY-MM-DD`.
/// Without `to`, up to the last archive that can exist on `today` (UTC): the previous month,
/// or yesterday. At most `max` archives per series.
///
/// # Errors
/// A message naming the flag, the value and what is allowed.
pub fn periods(from: &str, to: Option<&str>, today: NaiveDate, max: usize) -> Result<Vec<DumpPeriod>, String> {
    let start = parse_one("from", from)?;
    let end = match to {
        Some(t) => parse_one("to", t)?,
        None => match start {
            DumpPeriod::Month { .. } => {
                let first = today.with_day(1).unwrap_or(today);
                let last_month = first.pred_opt().unwrap_or(first);
                DumpPeriod::Month { year: last_month.year(), month: last_month.month() }
            }
            DumpPeriod::Day(_) => DumpPeriod::Day(today.pred_opt().unwrap_or(today)),
        },
    };
    let mut out = Vec::new();
    match (start, end) {
        (DumpPeriod::Month { year, month }, DumpPeriod::Month { year: y2, month: m2 }) => {
            let (mut y, mut m) = (year, month);
            while (y, m) <= (y2, m2) && out.len() <= max {
                out.push(DumpPeriod::Month { year: y, month: m });
                (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            }
        }
        (DumpPeriod::Day(a), DumpPeriod::Day(b)) => {
            let mut d = a;
            while d <= b && out.len() <= max {
                out.push(DumpPeriod::Day(d));
                let Some(next) = d.succ_opt() else { break };
                d = next;
            }
        }
        _ => {
            return Err(format!(
                "--from `{from}` and --to `{}` must both be months (YYYY-MM) or both days (YYYY-MM-DD)",
                to.unwrap_or_default()
            ));
        }
    }
    if out.is_empty() {
        return Err(format!("--to `{}` is before --from `{from}`", end.label()));
    }
    if out.len() > max {
        return Err(format!("--from `{from}` to `{}` asks for more than {max} archives per series", end.label()));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn urls_and_names_follow_the_archive() {
        let m = DumpPeriod::Month { year: 2025, month: 1 };
        assert_eq!(file_name("BTCUSDT", Timeframe::M15, m), "BTCUSDT-15m-2025-01.zip");
        assert_eq!(
            archive_url("https://data.binance.vision/", "BTCUSDT", Timeframe::M15, m),
            "https://data.binance.vision/data/futures/um/monthly/klines/BTCUSDT/15m/BTCUSDT-15m-2025-01.zip"
        );
        assert_eq!(
            archive_url("http://127.0.0.1:1", "ETHUSDT", Timeframe::H4, DumpPeriod::Day(day("2025-03-09"))),
            "http://127.0.0.1:1/data/futures/um/daily/klines/ETHUSDT/4h/ETHUSDT-4h-2025-03-09.zip"
        );
        // What the backtest reads back.
        let parsed = crate::data::files::parse_file_name(&file_name("BTCUSDT", Timeframe::H1, m)).unwrap();
        assert_eq!(parsed.period, m.as_file_period());
    }

    #[test]
    fn funding_archives_are_monthly() {
        let m = DumpPeriod::Month { year: 2025, month: 1 };
        assert_eq!(
            funding_url("https://data.binance.vision", "BTCUSDT", m),
            "https://data.binance.vision/data/futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2025-01.zip"
        );
        let days = [DumpPeriod::Day(day("2025-02-27")), DumpPeriod::Day(day("2025-03-01")), m];
        assert_eq!(
            months_of(&days),
            vec![m, DumpPeriod::Month { year: 2025, month: 2 }, DumpPeriod::Month { year: 2025, month: 3 }]
        );
        // A funding archive is not a candle file: the backtest's folder scan passes it by.
        assert!(crate::data::files::parse_file_name(&funding_file_name("BTCUSDT", m)).is_none());
    }

    #[test]
    fn checksums_are_the_first_word() {
        let h = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
        assert_eq!(parse_checksum(&format!("{h}  BTCUSDT-15m-2025-01.zip\n")), Some(h.to_ascii_lowercase()));
        assert_eq!(sha256_hex(b""), h.to_ascii_lowercase());
        assert_eq!(parse_checksum("<Error><Code>NoSuchKey</Code></Error>"), None);
        assert_eq!(parse_checksum(""), None);
    }

    #[test]
    fn ranges_of_months_and_days() {
        let today = day("2025-07-15");
        let p = periods("2024-11", Some("2025-02"), today, 1000).unwrap();
        assert_eq!(p.iter().map(|p| p.label()).collect::<Vec<_>>(), ["2024-11", "2024-12", "2025-01", "2025-02"]);
        // Without --to: up to the last published month, or yesterday.
        assert_eq!(periods("2025-05", None, today, 1000).unwrap().last().unwrap().label(), "2025-06");
        assert_eq!(periods("2025-07-12", None, today, 1000).unwrap().len(), 3);
        for (from, to, needle) in [
            ("2025-13", Some("2025-14"), "neither a month"),
            ("Jan 2025", None, "`Jan 2025`"),
            ("2025-01", Some("2025-02-01"), "both be months"),
            ("2025-03", Some("2025-01"), "before"),
            ("2000-01-01", Some("2025-01-01"), "more than"),
        ] {
            let err = periods(from, to, today, 1000).unwrap_err();
            assert!(err.contains(needle), "{from}..{to:?}: {err}");
        }
    }
}
