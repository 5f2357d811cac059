//! `kinetic download-data`: public REST klines into the backtest data files
//! (`DIR/<SYMBOL>-<interval>.csv`, DESIGN.md §4). Pages `/fapi/v1/klines` 1500 candles at a time
//! through the Binance client (so its queue, weight budget and retries apply), resumes where an
//! existing file ends and writes closed candles only; then the funding-rate history the
//! backtest charges (`DIR/funding/<SYMBOL>.csv`, from `/fapi/v1/fundingRate`, merged with what
//! the file holds). No credentials are used or needed.
//! `--source dumps` fetches Binance's archives instead ([`crate::commands::download_dumps`]).

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::cli::{CliError, Context, DownloadArgs, DownloadSource};
use crate::core::models::{Candle, Timeframe, TimestampMs};
use crate::data::{self, HEADER};
use crate::exchange::Exchange;
use crate::exchange::binance::{BinanceClient, KLINES_PAGE_LIMIT};

const DAY_MS: i64 = 86_400_000;

/// `--days` when not given.
pub const DEFAULT_DAYS: u32 = 30;

/// What one symbol/interval download did.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesReport {
    pub symbol: String,
    pub timeframe: Timeframe,
    pub path: PathBuf,
    /// Candles appended by this run.
    pub added: usize,
    /// Candles in the file afterwards.
    pub total: usize,
}

/// Runs `kinetic download-data`.
///
/// # Errors
/// [`CliError::Usage`] for bad symbols or intervals, [`CliError::Fatal`] for exchange and file
/// errors.
pub fn execute(ctx: &Context, args: &DownloadArgs) -> Result<(), CliError> {
    let symbols = parse_symbols(&args.symbols)?;
    let intervals = parse_intervals(&args.intervals)?;
    if args.source == DownloadSource::Dumps {
        return crate::commands::download_dumps::execute(ctx, args, &symbols, &intervals);
    }
    if args.from.is_some() || args.to.is_some() {
        return Err(CliError::Usage(
            "--from/--to choose archives with --source dumps; --source rest (the default) takes --days".into(),
        ));
    }
    let days = args.days.unwrap_or(DEFAULT_DAYS);
    if days == 0 {
        return Err(CliError::Usage("--days must be at least 1".into()));
    }
    let out = args.out.clone().unwrap_or_else(|| ctx.settings.backtest.data_dir.clone());
    let client = BinanceClient::public(&ctx.settings.exchange).map_err(|e| CliError::Fatal(e.to_string()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Fatal(format!("cannot start the async runtime: {e}")))?;
    let (reports, funding) = runtime.block_on(async {
        let reports = download(&client, &out, &symbols, &intervals, days).await?;
        let funding = download_funding(&client, &out, &symbols, days).await?;
        Ok::<_, CliError>((reports, funding))
    })?;
    let mut text = String::new();
    for r in &reports {
        text.push_str(&format!(
            "{} {}: +{} candles, {} in {}\n",
            r.symbol,
            r.timeframe,
            r.added,
            r.total,
            r.path.display()
        ));
    }
    for f in &funding {
        text.push_str(&f.line());
    }
    crate::cli::print_out(&text)
}

/// What one symbol's funding-history download did.
#[derive(Debug, Clone, PartialEq)]
pub struct FundingReport {
    pub symbol: String,
    /// `DIR/funding/<SYMBOL>.csv[.gz]`.
    pub path: PathBuf,
    /// Funding hours the file gained.
    pub added: usize,
    /// Rows in the file afterwards.
    pub total: usize,
}

impl FundingReport {
    /// The line `download-data` prints for it.
    pub fn line(&self) -> String {
        if self.total == 0 {
            return format!(
                "{} funding: none published for the period; the backtest uses the flat rate\n",
                self.symbol
            );
        }
        format!("{} funding: +{} rates, {} in {}\n", self.symbol, self.added, self.total, self.path.display())
    }
}

/// Brings `DIR/funding/<SYMBOL>.csv` (the backtest's funding rates) up to date for the last
/// `days` days from `GET /fapi/v1/fundingRate`, paged, resuming after the newest row already
/// there (from the window's start when the file begins later); rows from elsewhere (archives)
/// are kept.
///
/// # Errors
/// [`CliError::Usage`] for a symbol the exchange does not list, [`CliError::Fatal`] for
/// exchange and file errors.
pub async fn download_funding(
    client: &BinanceClient,
    out: &Path,
    symbols: &[String],
    days: u32,
) -> Result<Vec<FundingReport>, CliError> {
    use crate::data::funding_history;
    use crate::exchange::binance::FUNDING_PAGE_LIMIT;
    let now = client.now_ms();
    let mut reports = Vec::new();
    for symbol in symbols {
        let fatal = |e: String| CliError::Fatal(format!("{symbol} funding: {e}"));
        let path = funding_history::file_for(out, symbol);
        let old = read_funding_file(&path)?;
        let window_start = now - i64::from(days) * DAY_MS;
        // After the newest row, unless the window reaches further back than the file (a longer
        // --days than before): then all of it (the merge keeps one row per funding).
        let mut from = match (old.first(), old.last()) {
            (Some(first), Some(last)) if first.time <= window_start + 8 * 3_600_000 => window_start.max(last.time + 1),
            _ => window_start,
        };
        let mut new = Vec::new();
        while from <= now {
            let page = client.funding_rate_history(symbol, from, now).await.map_err(|e| match e {
                crate::exchange::ExchangeError::Api { code: -1121, .. } => {
                    CliError::Usage(format!("--symbols: {symbol} is not a symbol on the exchange ({e})"))
                }
                e => fatal(format!("funding rates from {from}: {e}")),
            })?;
            let full = page.len() >= FUNDING_PAGE_LIMIT;
            let Some(last) = page.last().map(|r| r.time) else { break };
            new.extend(page.into_iter().filter(|r| r.time >= from));
            if !full || last < from {
                break;
            }
            from = last + 1;
        }
        let (added, total) = funding_history::update(&path, old, new).map_err(fatal)?;
        tracing::info!(symbol = %symbol, added, total, "funding history updated");
        reports.push(FundingReport { symbol: symbol.clone(), path, added, total });
    }
    Ok(reports)
}

/// The funding file already at `path` (empty when there is none), read before any of its
/// symbol's funding rates are fetched (the candles come first and are kept): a damaged file
/// or one that is not a funding file is bad input (exit 2), other read errors are faults.
///
/// # Errors
/// As described, naming the file and the line.
pub(crate) fn read_funding_file(path: &Path) -> Result<Vec<crate::data::funding_history::FundingRow>, CliError> {
    crate::data::funding_history::read(path).map_err(|e| {
        let text = format!("{e} (a funding file in the download folder; fix or remove it)");
        if e.is_bad_input() { CliError::Usage(text) } else { CliError::Fatal(text) }
    })
}

/// Upper-cased, de-duplicated symbols.
///
/// # Errors
/// [`CliError::Usage`] for an empty or non-alphanumeric symbol.
pub fn parse_symbols(raw: &[String]) -> Result<Vec<String>, CliError> {
    let mut out: Vec<String> = Vec::new();
    for s in raw {
        let s = s.trim().to_uppercase();
        if s.is_empty() || !s.chars().all(char::is_alphanumeric) {
            return Err(CliError::Usage(format!("--symbols: `{s}` is not a symbol like BTCUSDT")));
        }
        if !out.contains(&s) {
            out.push(s);
        }
    }
    if out.is_empty() {
        return Err(CliError::Usage("--symbols: at least one symbol is needed".into()));
    }
    Ok(out)
}

/// Parsed, de-duplicated intervals.
///
/// # Errors
/// [`CliError::Usage`] naming the unknown interval.
pub fn parse_intervals(raw: &[String]) -> Result<Vec<Timeframe>, CliError> {
    let mut out = Vec::new();
    for s in raw {
        let tf: Timeframe = s.trim().parse().map_err(|e| CliError::Usage(format!("--intervals: {e}")))?;
        if !out.contains(&tf) {
            out.push(tf);
        }
    }
    if out.is_empty() {
        return Err(CliError::Usage("--intervals: at least one interval is needed".into()));
    }
    Ok(out)
}

/// Downloads every symbol × interval for the last `days` days into `out`.
///
/// # Errors
/// [`CliError::Fatal`] for exchange and file errors (files written so far are kept: a rerun
/// resumes).
pub async fn download(
    client: &BinanceClient,
    out: &Path,
    symbols: &[String],
    intervals: &[Timeframe],
    days: u32,
) -> Result<Vec<SeriesReport>, CliError> {
    std::fs::create_dir_all(out).map_err(|e| CliError::Fatal(format!("cannot create {}: {e}", out.display())))?;
    if let Err(e) = client.sync_time().await {
        tracing::warn!(error = %e, "server time sync failed; using the local clock");
    }
    let now = client.now_ms();
    let mut reports = Vec::new();
    for symbol in symbols {
        for &tf in intervals {
            let start = tf.align(now - i64::from(days) * DAY_MS);
            reports.push(download_series(client, out, symbol, tf, start, now).await?);
        }
    }
    // Funding intervals per symbol, kept verbatim (every field Binance sends) for the backtest
    // (after the candles: a symbol the exchange does not list is reported as such first).
    let info = client.funding_info_raw().await.map_err(|e| CliError::Fatal(format!("funding info: {e}")))?;
    if let Err(e) = crate::data::funding::FundingIntervals::from_json(&info) {
        return Err(CliError::Fatal(format!("funding info: unreadable answer: {e}")));
    }
    let path = out.join(crate::data::funding::FUNDING_INFO_FILE);
    std::fs::write(&path, &info).map_err(|e| CliError::Fatal(format!("cannot write {}: {e}", path.display())))?;
    Ok(reports)
}

/// Brings `DIR/<symbol>-<tf>.csv` up to date from `start` (or where the file ends) to the last
/// candle closed before `now`.
///
/// # Errors
/// [`CliError::Fatal`] for exchange and file errors.
pub async fn download_series(
    client: &BinanceClient,
    dir: &Path,
    symbol: &str,
    tf: Timeframe,
    start: TimestampMs,
    now: TimestampMs,
) -> Result<SeriesReport, CliError> {
    let fatal = |e: String| CliError::Fatal(format!("{symbol} {tf}: {e}"));
    let path = dir.join(format!("{symbol}-{tf}.csv"));
    let mut existing = 0usize;
    let mut last_open: Option<TimestampMs> = None;
    if path.is_file() {
        let candles = data::read_candle_file(&path).map_err(|e| fatal(e.to_string()))?;
        existing = candles.len();
        last_open = candles.last().map(|c| c.open_time);
    } else if let Some(existing_series) = existing_series(dir, symbol, tf)? {
        // Only a compressed file: continue in a plain one that starts with its candles, and
        // remove the compressed one (two files of one series are refused by the readers).
        let gz = dir.join(format!("{symbol}-{tf}.csv.gz"));
        if existing_series.files != [gz.clone()] {
            return Err(CliError::Usage(format!(
                "{symbol} {tf}: {} already holds this series as {}; download into another folder",
                dir.display(),
                existing_series.describe()
            )));
        }
        let candles = data::read_candle_file(&gz).map_err(|e| fatal(e.to_string()))?;
        data::write_candle_file(&path, &candles).map_err(|e| fatal(e.to_string()))?;
        std::fs::remove_file(&gz)
            .map_err(|e| fatal(format!("cannot remove {} after copying it: {e}", gz.display())))?;
        tracing::info!(from = %gz.display(), to = %path.display(), "continuing a compressed file as plain text");
        existing = candles.len();
        last_open = candles.last().map(|c| c.open_time);
    }
    let mut from = match last_open {
        Some(t) => start.max(t + tf.duration_ms()),
        None => start,
    };
    let mut added = 0usize;
    while from < now {
        let page = client.klines(symbol, tf, Some(from), None, KLINES_PAGE_LIMIT).await.map_err(|e| match e {
            // The exchange does not list the symbol: bad input (exit 2), not a fault.
            crate::exchange::ExchangeError::Api { code: -1121, .. } => {
                CliError::Usage(format!("--symbols: {symbol} is not a symbol on the exchange ({e})"))
            }
            e => fatal(format!("klines from {from}: {e}")),
        })?;
        let full_page = page.len() >= usize::from(KLINES_PAGE_LIMIT);
        let closed: Vec<Candle> = page
            .into_iter()
            .filter(|c| c.close_time < now && c.open_time >= from && last_open.is_none_or(|t| c.open_time > t))
            .filter(Candle::is_sane)
            .collect();
        let Some(newest) = closed.last().map(|c| c.open_time) else { break };
        append(&path, &closed).map_err(|e| fatal(e.to_string()))?;
        added += closed.len();
        last_open = Some(newest);
        from = newest + tf.duration_ms();
        if !full_page {
            break;
        }
    }
    tracing::info!(symbol, timeframe = %tf, added, "download finished");
    Ok(SeriesReport { symbol: symbol.to_string(), timeframe: tf, path, added, total: existing + added })
}

/// The files already holding `symbol` at `tf` in `dir`, if any.
fn existing_series(dir: &Path, symbol: &str, tf: Timeframe) -> Result<Option<data::SeriesFiles>, CliError> {
    if !dir.is_dir() {
        return Ok(None);
    }
    match data::DataDir::scan(dir).and_then(|d| d.series(symbol, tf)) {
        Ok(series) => Ok(Some(series)),
        Err(data::DataError::Missing { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Appends rows, writing the header first when the file is new.
fn append(path: &Path, candles: &[Candle]) -> std::io::Result<()> {
    let new = !path.exists();
    let mut w = BufWriter::new(OpenOptions::new().create(true).append(true).open(path)?);
    if new {
        writeln!(w, "{HEADER}")?;
    }
    for c in candles {
        writeln!(w, "{}", data::format_row(c))?;
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_checked() {
        assert_eq!(parse_symbols(&["btcusdt".into(), "BTCUSDT".into()]).ok(), Some(vec!["BTCUSDT".to_string()]));
        assert!(parse_symbols(&["BTC/USDT".into()]).is_err());
        assert_eq!(parse_intervals(&["15m".into(), "4h".into()]).ok(), Some(vec![Timeframe::M15, Timeframe::H4]));
        assert!(parse_intervals(&["7m".into()]).is_err());
    }
}
