//! `kinetic analyze SYMBOL [--data DIR] [--at TIME] [--json]`: indicators of each strategy
//! timeframe at the latest closed candle and the score breakdown, from data files.
//!
//! "Latest closed candle" is judged at one moment for all three timeframes: the latest close
//! time that all three files cover (or `--at`, if earlier; never later than now, so a candle
//! still open at the end of a freshly downloaded file is not taken). Each timeframe then shows
//! its last candle closed at or before that moment. The indicators and the score come from the same
//! [`SymbolAnalyzer`] the daemon and the backtest feed, candle by candle.
//!
//! Exit codes: 2 for bad input (an `--at` that is not a time or lies beyond the data, missing,
//! conflicting or malformed files, too few candles before the moment), 1 for I/O failures.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};

use crate::analyzer::SymbolAnalyzer;
use crate::analyzer::scoring::Score;
use crate::analyzer::timeframe::WARM_UP_CANDLES;
use crate::cli::{AnalyzeArgs, CliError, Context};
use crate::config::StrategySettings;
use crate::core::models::{Indicators, Timeframe, TimestampMs};
use crate::data;

/// Runs `kinetic analyze`.
///
/// # Errors
/// [`CliError::Usage`] for a bad `--at` and bad data; [`CliError::Fatal`] for I/O failures.
pub fn execute(ctx: &Context, args: &AnalyzeArgs) -> Result<(), CliError> {
    let at = args.at.as_deref().map(parse_time).transpose()?;
    let dir: PathBuf = args.data.clone().unwrap_or_else(|| ctx.settings.backtest.data_dir.clone());
    let symbol = args.symbol.trim().to_uppercase();
    // The one clock read, here at the edge: candles closing after now are still open.
    let now = Utc::now().timestamp_millis();
    let report = analyze_files(&dir, &symbol, at, now, &ctx.settings.strategy)?;
    if args.json {
        let text = serde_json::to_string_pretty(&report.to_json())
            .map_err(|e| CliError::Fatal(format!("cannot render JSON: {e}")))?;
        crate::cli::print_out(&format!("{text}\n"))
    } else {
        crate::cli::print_out(&report.to_text())
    }
}

/// Parses `--at`: milliseconds since the epoch, `YYYY-MM-DD` (midnight UTC) or RFC 3339.
///
/// # Errors
/// [`CliError::Usage`] naming the value.
pub fn parse_time(text: &str) -> Result<TimestampMs, CliError> {
    let t = text.trim();
    if let Ok(ms) = t.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok(dt.timestamp_millis());
    }
    if let Some(dt) = NaiveDate::parse_from_str(t, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)) {
        return Ok(dt.and_utc().timestamp_millis());
    }
    Err(CliError::Usage(format!("invalid time `{text}`: use milliseconds since the epoch, YYYY-MM-DD or RFC 3339")))
}

/// One timeframe's reading at the evaluated moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeframeReading {
    pub timeframe: Timeframe,
    /// Close time of the last candle used.
    pub close_time: TimestampMs,
    pub indicators: Indicators,
}

/// What `analyze` found.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyzeReport {
    pub symbol: String,
    /// The moment evaluated: the latest close time all three timeframes cover, or `--at`.
    pub at: TimestampMs,
    /// 4h, 1h, 15m, in that order.
    pub timeframes: [TimeframeReading; 3],
    pub score: Score,
}

/// Loads the three series of `symbol` and evaluates them at the common latest close, or at
/// `at` (or `now`, when earlier).
///
/// # Errors
/// [`CliError::Usage`] (exit 2) for missing, conflicting or malformed files, an empty series,
/// an `--at` beyond the data or too early for the indicators (the message names the range the
/// data covers); [`CliError::Fatal`] for I/O failures.
pub fn analyze_files(
    dir: &Path,
    symbol: &str,
    at: Option<TimestampMs>,
    now: TimestampMs,
    settings: &StrategySettings,
) -> Result<AnalyzeReport, CliError> {
    let index = data::DataDir::scan(dir)?;
    let mut series = Vec::with_capacity(Timeframe::STRATEGY.len());
    for tf in Timeframe::STRATEGY {
        let files = index.series(symbol, tf)?;
        let (candles, quality) = data::read_series(&files)?;
        if !quality.gaps.is_empty() || !quality.duplicates.is_empty() {
            let gaps: Vec<String> = quality
                .gaps
                .iter()
                .take(5)
                .map(|(a, b)| format!("{} → {}", data::time_text(*a), data::time_text(*b)))
                .collect();
            let dups: Vec<String> = quality.duplicates.iter().take(5).map(|t| data::time_text(*t)).collect();
            tracing::warn!(
                gaps = quality.gaps.len(),
                duplicates = quality.duplicates.len(),
                "data: {symbol} {tf}: gaps at [{}]; duplicate rows skipped at [{}]",
                gaps.join(", "),
                dups.join(", ")
            );
        }
        let (Some(first), Some(last)) = (candles.first(), candles.last()) else {
            return Err(CliError::Usage(format!("{symbol} {tf}: no candles in {}", files.describe())));
        };
        let covers = format!(
            "the {tf} data covers {} → {}",
            data::time_text(first.open_time),
            data::time_text(last.close_time + 1)
        );
        series.push((tf, candles, covers));
    }
    let mut common_end = i64::MAX;
    for (tf, candles, covers) in &series {
        let last = candles.last().map_or(i64::MIN, |c| c.close_time);
        common_end = common_end.min(last);
        // The candle that would be the latest closed one at `at` must be in the data.
        if let Some(a) = at
            && a >= last + tf.duration_ms()
        {
            return Err(CliError::Usage(format!(
                "--at {} is after the end of the {symbol} data ({covers})",
                time_text(a)
            )));
        }
    }
    let moment = at.unwrap_or(common_end).min(now);

    let mut analyzer = SymbolAnalyzer::new();
    for (tf, candles, covers) in &series {
        let taken = candles.iter().take_while(|c| c.close_time <= moment).filter(|c| analyzer.on_closed_candle(*tf, c));
        let count = taken.count();
        if count < WARM_UP_CANDLES {
            return Err(CliError::Usage(format!(
                "{symbol} {tf}: only {count} closed candles up to {} in {}; the indicators need at least \
                 {WARM_UP_CANDLES} ({covers})",
                time_text(moment),
                dir.display()
            )));
        }
    }
    let reading = |tf: Timeframe| -> Result<TimeframeReading, CliError> {
        let state = analyzer.state(tf);
        match (state.and_then(|s| s.last_close_time()), state.and_then(|s| s.indicators())) {
            (Some(close_time), Some(indicators)) => Ok(TimeframeReading { timeframe: tf, close_time, indicators }),
            _ => Err(CliError::Fatal(format!("{symbol} {tf}: indicators are not ready at {}", time_text(moment)))),
        }
    };
    let timeframes = [reading(Timeframe::H4)?, reading(Timeframe::H1)?, reading(Timeframe::M15)?];
    let score = analyzer
        .score(settings)
        .ok_or_else(|| CliError::Fatal(format!("{symbol}: no score at {}", time_text(moment))))?;
    Ok(AnalyzeReport { symbol: symbol.to_string(), at: moment, timeframes, score })
}

fn time_text(t: TimestampMs) -> String {
    DateTime::<Utc>::from_timestamp_millis(t)
        .map_or_else(|| t.to_string(), |d| d.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string())
}

impl AnalyzeReport {
    /// The JSON document of `analyze --json`: `symbol`, `timeframes` (keyed `4h`, `1h`, `15m`)
    /// and `score`.
    pub fn to_json(&self) -> Value {
        let mut tfs = serde_json::Map::new();
        for r in &self.timeframes {
            let i = &r.indicators;
            tfs.insert(
                r.timeframe.as_str().to_string(),
                json!({
                    "ema_9": i.ema_9,
                    "ema_21": i.ema_21,
                    "rsi": i.rsi,
                    "macd_line": i.macd_line,
                    "macd_signal": i.macd_signal,
                    "macd_histogram": i.macd_histogram,
                    "atr": i.atr,
                    "volume_ratio": i.volume_ratio,
                    "close_time": r.close_time,
                }),
            );
        }
        json!({
            "symbol": self.symbol,
            "timeframes": tfs,
            "score": {
                "total": self.score.total,
                "direction": self.score.direction.as_str(),
                "components": self.score.report(),
            },
        })
    }

    /// The human-readable table.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(out, "{} at {}\n", self.symbol, time_text(self.at));
        let _ = writeln!(
            out,
            "{:<4} {:>27} {:>14} {:>14} {:>7} {:>12} {:>12} {:>12} {:>12} {:>7}",
            "tf", "close time", "EMA9", "EMA21", "RSI", "MACD", "signal", "hist", "ATR", "vol×"
        );
        for r in &self.timeframes {
            let i = &r.indicators;
            let _ = writeln!(
                out,
                "{:<4} {:>27} {:>14.6} {:>14.6} {:>7.2} {:>12.6} {:>12.6} {:>12.6} {:>12.6} {:>7.2}",
                r.timeframe.as_str(),
                time_text(r.close_time),
                i.ema_9,
                i.ema_21,
                i.rsi,
                i.macd_line,
                i.macd_signal,
                i.macd_histogram,
                i.atr,
                i.volume_ratio
            );
        }
        let _ = writeln!(out, "\nscore {}/100, direction {}", self.score.total, self.score.direction);
        for c in self.score.report() {
            let _ = writeln!(out, "  {:<13} {:>2}/{:<2} {}", c.name, c.points, c.max_points, c.reason);
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn candles_closing_after_now_are_not_taken() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
        let settings = crate::config::Settings::defaults().unwrap().strategy;
        // The 4h file's last candle closes 2026-05-06 15:59:59.999; "now" is 15:10 that day,
        // so that 4h candle is still open and the previous one (closed 11:59:59.999) counts;
        // 1h and 15m both end with the candle closed 14:59:59.999.
        let now = 1_778_080_200_000;
        let r = analyze_files(&dir, "SOLUSDT", None, now, &settings).unwrap();
        assert_eq!(r.at, now);
        let closes: Vec<TimestampMs> = r.timeframes.iter().map(|t| t.close_time).collect();
        assert_eq!(closes, [1_778_068_799_999, 1_778_079_599_999, 1_778_079_599_999]);
        let later = analyze_files(&dir, "SOLUSDT", None, i64::MAX, &settings).unwrap();
        assert_eq!(later.at, 1_778_083_199_999);
    }

    #[test]
    fn parses_the_three_time_forms_and_rejects_others() {
        assert_eq!(parse_time("1778083199999").unwrap(), 1_778_083_199_999);
        assert_eq!(parse_time("2026-05-06").unwrap(), 1_778_025_600_000);
        assert_eq!(parse_time("2026-05-06T01:00:00Z").unwrap(), 1_778_029_200_000);
        assert_eq!(parse_time("2026-05-06T03:00:00+02:00").unwrap(), 1_778_029_200_000);
        assert!(matches!(parse_time("yesterday"), Err(CliError::Usage(_))));
        assert!(matches!(parse_time("2026-13-01"), Err(CliError::Usage(_))));
    }
}
