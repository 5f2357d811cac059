//! `kinetic backtest`: replays the data files through the same strategy code as `kinetic run`
//! (see [`crate::backtest`]), prints the summary and writes `trades.csv`, `metrics.json` and
//! `report.html`.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::backtest::{self, BacktestError, BacktestOptions, metrics, report};
use crate::cli::{BacktestArgs, CliError, Context};
use crate::core::models::TimestampMs;

const DAY_MS: i64 = 86_400_000;

/// Parses `YYYY-MM-DD` (start of that UTC day) or RFC 3339; `end_of_day` moves a plain date
/// to the start of the following day (an inclusive `--to` day).
///
/// # Errors
/// [`CliError::Usage`] naming the flag.
pub fn parse_when(flag: &str, text: &str, end_of_day: bool) -> Result<TimestampMs, CliError> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
        let t = d.and_hms_opt(0, 0, 0).map(|dt| dt.and_utc().timestamp_millis()).unwrap_or(0);
        return Ok(if end_of_day { t + DAY_MS } else { t });
    }
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|d| d.timestamp_millis())
        .map_err(|_| CliError::Usage(format!("--{flag}: `{text}` is not a date (YYYY-MM-DD) or RFC 3339 time")))
}

fn to_cli(e: BacktestError) -> CliError {
    match e {
        BacktestError::Setup(msg) => CliError::Usage(msg),
        BacktestError::Data(d) => d.into(),
        other => CliError::Fatal(other.to_string()),
    }
}

/// Runs `kinetic backtest`.
///
/// # Errors
/// Usage errors (exit 2) for bad dates, symbols or folders; fatal errors (exit 1) for
/// unreadable data and unwritable outputs.
pub fn execute(ctx: &Context, args: &BacktestArgs) -> Result<(), CliError> {
    let from = args.from.as_deref().map(|t| parse_when("from", t, false)).transpose()?;
    let to = args.to.as_deref().map(|t| parse_when("to", t, true)).transpose()?;
    if let (Some(f), Some(t)) = (from, to)
        && t <= f
    {
        return Err(CliError::Usage("--to must not be before --from".into()));
    }
    let opts = BacktestOptions {
        data_dir: args.data.clone().unwrap_or_else(|| ctx.settings.backtest.data_dir.clone()),
        symbols: args.symbols.clone(),
        from,
        to,
    };
    let out_dir = args.out.clone().unwrap_or_else(|| ctx.settings.backtest.out_dir.clone());
    let mut prepared = backtest::prepare(&ctx.settings, &opts).map_err(to_cli)?;
    let show = !args.no_progress && std::io::stderr().is_terminal();
    let bar = if show {
        let bar = ProgressBar::with_draw_target(Some(prepared.total_bytes), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} replay [{bar:40}] {percent:>3}% {msg} ({elapsed})")
                .map(|s| s.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let bytes = prepared.bytes_read.clone();
    let mut progress = |n: u64| {
        bar.set_position(bytes.get());
        bar.set_message(format!("{n} candles"));
    };
    backtest::run_feed(&mut prepared.feed, &mut prepared.engine, &mut progress).map_err(to_cli)?;
    bar.finish_and_clear();
    backtest::check_traded(&prepared, &opts).map_err(to_cli)?;
    for note in backtest::data_notes(&prepared) {
        tracing::warn!("data: {note}");
    }
    let engine = &prepared.engine;
    let m = metrics::compute_run(engine);
    crate::cli::print_out(&report::summary_text(&m))?;
    let extras = report::ReportExtras {
        settings: Some(&ctx.settings),
        benchmark: &engine.benchmark,
        close_history: &engine.close_history,
    };
    report::write_all_with(&out_dir, &m, &engine.equity, &engine.account().trades, &extras).map_err(to_cli)?;
    crate::cli::print_out(&format!(
        "\nwrote {}, {} and {}\n",
        out_dir.join("trades.csv").display(),
        out_dir.join("metrics.json").display(),
        out_dir.join("report.html").display()
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_as_utc_days() {
        assert_eq!(parse_when("from", "2026-02-01", false).unwrap(), 1_769_904_000_000);
        assert_eq!(parse_when("to", "2026-02-01", true).unwrap(), 1_769_904_000_000 + DAY_MS);
        assert_eq!(parse_when("from", "2026-02-01T01:00:00Z", false).unwrap(), 1_769_907_600_000);
        assert!(matches!(parse_when("from", "yesterday", false), Err(CliError::Usage(_))));
    }
}
