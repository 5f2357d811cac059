//! `kinetic download-data --source dumps`: Binance's public kline archives (one zip per month
//! or day, [`crate::data::dumps`]) into `DIR/<SYMBOL>-<interval>-<YYYY-MM[-DD]>.zip`, saved as
//! downloaded — the names and format the backtest reads. Each zip is checked against its
//! `.CHECKSUM` (sha256) and read once before it is kept; the `.CHECKSUM` is kept beside it, so
//! a rerun skips every archive already there and intact (resume) and fetches the rest. The
//! monthly funding-rate archives of the same months go into `DIR/funding/<SYMBOL>.csv`
//! ([`download_funding`]).
//!
//! Exit codes as everywhere: 2 for bad input (arguments, an archive that does not exist — a
//! month not published yet, a symbol not listed then — or a folder already holding other files
//! for those periods), 1 for faults (network, HTTP errors, a checksum mismatch, the disk).
//! Archives that exist are saved even when others are missing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::{CliError, Context, DownloadArgs};
use crate::core::models::Timeframe;
use crate::data::dumps::{self, DumpPeriod};
use crate::data::files::parse_file_name;

/// Archives per series at most in one run (about 27 years of months, or 11 of days).
const MAX_ARCHIVES: usize = 4_000;

/// Attempts per request for transport errors and HTTP 5xx (1 s, then 2 s apart).
const ATTEMPTS: u32 = 3;

/// What happened to one archive.
#[derive(Debug, Clone, PartialEq)]
pub struct ArchiveReport {
    pub symbol: String,
    pub timeframe: Timeframe,
    pub period: DumpPeriod,
    pub path: PathBuf,
    /// Candles in the file when it was downloaded now; `None` when it was already there intact.
    pub downloaded: Option<usize>,
}

/// An archive the server does not have (HTTP 404).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingArchive {
    pub symbol: String,
    pub timeframe: Timeframe,
    pub period: DumpPeriod,
    pub url: String,
}

/// Runs `download-data --source dumps` (symbols and intervals already checked).
///
/// # Errors
/// See the module documentation.
pub fn execute(
    ctx: &Context,
    args: &DownloadArgs,
    symbols: &[String],
    intervals: &[Timeframe],
) -> Result<(), CliError> {
    if args.days.is_some() {
        return Err(CliError::Usage(
            "--days is for --source rest; --source dumps takes --from and --to (YYYY-MM or YYYY-MM-DD)".into(),
        ));
    }
    let from = args.from.as_deref().ok_or_else(|| {
        CliError::Usage("--source dumps needs --from: a month YYYY-MM (monthly archives) or a day YYYY-MM-DD".into())
    })?;
    let today = chrono::Utc::now().date_naive();
    let periods = dumps::periods(from, args.to.as_deref(), today, MAX_ARCHIVES).map_err(CliError::Usage)?;
    let out = args.out.clone().unwrap_or_else(|| ctx.settings.backtest.data_dir.clone());
    let timeout = Duration::from_secs(ctx.settings.exchange.request_timeout_secs.max(1));
    let http = reqwest::Client::builder()
        .connect_timeout(timeout)
        .read_timeout(timeout)
        .user_agent(concat!("kinetic/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| CliError::Fatal(format!("cannot build the HTTP client: {e}")))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Fatal(format!("cannot start the async runtime: {e}")))?;
    let base = ctx.settings.exchange.dumps_url.clone();
    let (reports, missing, funding) = runtime.block_on(async {
        let (reports, missing) = download(&http, &base, &out, symbols, intervals, &periods).await?;
        let funding = download_funding(&http, &base, &out, symbols, &periods).await?;
        Ok::<_, CliError>((reports, missing, funding))
    })?;
    let mut text = String::new();
    for r in &reports {
        let what = match r.downloaded {
            Some(n) => format!("{n} candles, checksum verified"),
            None => "already there, checksum verified".to_string(),
        };
        text.push_str(&format!("{} {} {}: {what}: {}\n", r.symbol, r.timeframe, r.period.label(), r.path.display()));
    }
    for f in &funding {
        text.push_str(&f.lines());
    }
    crate::cli::print_out(&text)?;
    if missing.is_empty() {
        return Ok(());
    }
    let list: Vec<String> =
        missing.iter().map(|m| format!("{} {} {} ({})", m.symbol, m.timeframe, m.period.label(), m.url)).collect();
    Err(CliError::Usage(format!(
        "{} of {} archives are not on {base} (HTTP 404): {}. A month's archive appears in the first days of the \
         next month (use days, --from/--to YYYY-MM-DD, for the current month), a day's on the next day, and a \
         symbol has none before it was listed; the {} other archives were saved",
        missing.len(),
        missing.len() + reports.len(),
        list.join(", "),
        reports.len()
    )))
}

/// Downloads every symbol × interval × period into `out`; returns what was saved and what the
/// server does not have.
///
/// # Errors
/// [`CliError::Usage`] when `out` holds other files of a requested period; [`CliError::Fatal`]
/// for network and HTTP faults, checksum mismatches, unreadable archives and disk errors
/// (archives saved so far are kept: a rerun resumes).
pub async fn download(
    http: &reqwest::Client,
    base: &str,
    out: &Path,
    symbols: &[String],
    intervals: &[Timeframe],
    periods: &[DumpPeriod],
) -> Result<(Vec<ArchiveReport>, Vec<MissingArchive>), CliError> {
    std::fs::create_dir_all(out).map_err(|e| CliError::Fatal(format!("cannot create {}: {e}", out.display())))?;
    let mut reports = Vec::new();
    let mut missing = Vec::new();
    for symbol in symbols {
        for &tf in intervals {
            refuse_overlaps(out, symbol, tf, periods)?;
            for &period in periods {
                match fetch_archive(http, base, out, symbol, tf, period).await? {
                    Ok(report) => reports.push(report),
                    Err(url) => {
                        tracing::warn!(symbol, timeframe = %tf, period = %period.label(), %url, "no such archive (HTTP 404)");
                        missing.push(MissingArchive { symbol: symbol.clone(), timeframe: tf, period, url });
                    }
                }
            }
        }
    }
    Ok((reports, missing))
}

/// What the funding-rate archives of one symbol gave.
#[derive(Debug, Clone, PartialEq)]
pub struct FundingArchives {
    pub symbol: String,
    /// `DIR/funding/<SYMBOL>.csv[.gz]`, merged with what it held.
    pub path: PathBuf,
    /// Monthly archives read.
    pub archives: usize,
    /// Funding hours the file gained.
    pub added: usize,
    /// Rows in the file afterwards.
    pub total: usize,
    /// Months without an archive (not published yet, or before the symbol was listed), with
    /// the URL asked.
    pub missing: Vec<(String, String)>,
}

impl FundingArchives {
    /// What `download-data` prints for it.
    pub fn lines(&self) -> String {
        let mut text = format!(
            "{} funding: {} monthly archives, checksum verified, +{} rates, {} in {}\n",
            self.symbol,
            self.archives,
            self.added,
            self.total,
            self.path.display()
        );
        for (month, url) in &self.missing {
            text.push_str(&format!(
                "{} funding {month}: no archive ({url}); the backtest uses the flat rate (backtest.flat_funding_rate_pct) where \
                 the file has no rate\n",
                self.symbol
            ));
        }
        text
    }
}

/// The monthly funding-rate archives of the months `periods` touch, for each symbol, merged
/// into `DIR/funding/<SYMBOL>.csv` (what the backtest charges funding from). Each archive is
/// checked against its `.CHECKSUM`; a month without an archive is reported, not an error
/// (the current month has none yet). The archives are small and are fetched again on a rerun.
///
/// # Errors
/// [`CliError::Fatal`] for network and HTTP faults, checksum mismatches, unreadable archives
/// and disk errors; the funding file is only written once all of a symbol's archives are read.
pub async fn download_funding(
    http: &reqwest::Client,
    base: &str,
    out: &Path,
    symbols: &[String],
    periods: &[DumpPeriod],
) -> Result<Vec<FundingArchives>, CliError> {
    use crate::data::funding_history;
    let months = dumps::months_of(periods);
    let mut reports = Vec::new();
    for symbol in symbols {
        // A damaged file already there is reported before this symbol's funding archives are
        // fetched (the candle archives before them are kept).
        let path = funding_history::file_for(out, symbol);
        let old = crate::commands::download::read_funding_file(&path)?;
        let mut rows = Vec::new();
        let mut missing = Vec::new();
        let mut archives = 0;
        for &month in &months {
            let url = dumps::funding_url(base, symbol, month);
            let name = dumps::funding_file_name(symbol, month);
            let Some((zip, _)) = verified(http, &url, &name).await? else {
                tracing::warn!(symbol, month = %month.label(), %url, "no funding archive (HTTP 404)");
                missing.push((month.label(), url));
                continue;
            };
            let part = out.join(format!(".{symbol}-fundingRate-{}.partial.zip", month.label()));
            let disk = |e: std::io::Error| CliError::Fatal(format!("cannot write {}: {e}", part.display()));
            std::fs::write(&part, &zip).map_err(disk)?;
            let read = read_zip_text(&part);
            let _ = std::fs::remove_file(&part);
            let parsed = read.and_then(|text| {
                funding_history::parse_archive_csv(Path::new(&name), &text).map_err(|e| e.to_string())
            });
            let parsed = parsed.map_err(|e| {
                CliError::Fatal(format!("{url}: the archive matches its checksum but cannot be read: {e}"))
            })?;
            archives += 1;
            rows.extend(parsed);
        }
        let (added, total) =
            funding_history::update(&path, old, rows).map_err(|e| CliError::Fatal(format!("{symbol} funding: {e}")))?;
        tracing::info!(symbol, archives, added, total, "funding history updated from the archives");
        reports.push(FundingArchives { symbol: symbol.clone(), path, archives, added, total, missing });
    }
    Ok(reports)
}

/// The text of the single CSV inside the zip at `path`.
fn read_zip_text(path: &Path) -> Result<String, String> {
    use std::io::Read as _;
    let mut reader = crate::data::open_file(path, std::rc::Rc::default()).map_err(|e| e.to_string())?;
    let mut text = String::new();
    reader.read_to_string(&mut text).map_err(|e| e.to_string())?;
    Ok(text)
}

/// The archive at `url` (named `name`) and the text of its `.CHECKSUM`, which it matches;
/// `None` when the server has no such archive.
async fn verified(http: &reqwest::Client, url: &str, name: &str) -> Result<Option<(Vec<u8>, String)>, CliError> {
    let checksum_url = format!("{url}.CHECKSUM");
    let Some(sum) = body(http, &checksum_url).await? else {
        return Ok(None);
    };
    let sum = String::from_utf8_lossy(&sum).into_owned();
    let want = dumps::parse_checksum(&sum).ok_or_else(|| {
        CliError::Fatal(format!("{checksum_url}: not a checksum file (expected `<sha256 hex>  {name}`)"))
    })?;
    let Some(zip) = body(http, url).await? else {
        return Ok(None);
    };
    let got = dumps::sha256_hex(&zip);
    if got != want {
        return Err(CliError::Fatal(format!(
            "{url}: checksum mismatch, refused: the archive's sha256 is {got}, {name}.CHECKSUM says {want} (a damaged \
             or changed download; nothing was saved for it, run again)"
        )));
    }
    Ok(Some((zip, sum)))
}

/// Other files of the series covering a requested period (a whole-series `.csv` from a REST
/// download, a daily file inside a requested month, a `.csv` of the same month) would make the
/// backtest refuse the folder: refuse before downloading.
fn refuse_overlaps(out: &Path, symbol: &str, tf: Timeframe, periods: &[DumpPeriod]) -> Result<(), CliError> {
    let entries = std::fs::read_dir(out).map_err(|e| CliError::Fatal(format!("cannot list {}: {e}", out.display())))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(parsed) = parse_file_name(&name) else { continue };
        if parsed.symbol != symbol || parsed.timeframe != tf {
            continue;
        }
        if let Some(p) = periods
            .iter()
            .find(|p| p.as_file_period().overlaps(parsed.period) && dumps::file_name(symbol, tf, **p) != name)
        {
            return Err(CliError::Usage(format!(
                "{symbol} {tf} {}: {} already holds {name} for that period (the backtest refuses two files for one \
                 period); download into another folder with --out",
                p.label(),
                out.display()
            )));
        }
    }
    Ok(())
}

/// A transport failure in an operator's words (which host, DNS / refused / TLS / timeout, what
/// to do), as the daemon explains its own.
fn transport_text(e: reqwest::Error, url: &str) -> String {
    use crate::exchange::{ExchangeError, TransportStage};
    let stage = TransportStage::of(&e);
    let host = url::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_default();
    let err = ExchangeError::Transport { host, stage, source: std::sync::Arc::new(e.without_url()) };
    // The diagnosis names the exchange's URL key; here the archive's is the one to check.
    crate::exchange::diagnosis::diagnose(&err, url).to_string().replace("exchange.rest_url", "exchange.dumps_url")
}

/// A GET with retries on transport errors and 5xx: the final response, or the error text.
async fn get(http: &reqwest::Client, url: &str) -> Result<reqwest::Response, String> {
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(1 << (attempt - 1))).await;
        }
        match http.get(url).send().await {
            Ok(r) if r.status().is_server_error() => last = format!("HTTP {}", r.status()),
            Ok(r) => return Ok(r),
            Err(e) => last = transport_text(e, url),
        }
        tracing::warn!(%url, attempt = attempt + 1, error = %last, "archive request failed");
    }
    Err(format!("{last} (after {ATTEMPTS} attempts)"))
}

/// The body of `url`, `None` for a 404.
async fn body(http: &reqwest::Client, url: &str) -> Result<Option<Vec<u8>>, CliError> {
    let fatal = |e: String| CliError::Fatal(format!("{url}: {e}"));
    let response = get(http, url).await.map_err(fatal)?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(fatal(format!("HTTP {status}")));
    }
    let bytes = response.bytes().await.map_err(|e| fatal(format!("reading the body: {e}")))?;
    Ok(Some(bytes.to_vec()))
}

/// One archive: skipped when it is there with a matching `.CHECKSUM`, else downloaded,
/// verified, read and saved. `Ok(Err(url))` when the server has no such archive.
async fn fetch_archive(
    http: &reqwest::Client,
    base: &str,
    out: &Path,
    symbol: &str,
    tf: Timeframe,
    period: DumpPeriod,
) -> Result<Result<ArchiveReport, String>, CliError> {
    let name = dumps::file_name(symbol, tf, period);
    let path = out.join(&name);
    let checksum_path = out.join(format!("{name}.CHECKSUM"));
    let report = |downloaded| ArchiveReport {
        symbol: symbol.to_string(),
        timeframe: tf,
        period,
        path: path.clone(),
        downloaded,
    };
    if let (Ok(zip), Ok(sum)) = (std::fs::read(&path), std::fs::read_to_string(&checksum_path))
        && dumps::parse_checksum(&sum).is_some_and(|want| want == dumps::sha256_hex(&zip))
    {
        return Ok(Ok(report(None)));
    }
    let url = dumps::archive_url(base, symbol, tf, period);
    let Some((zip, sum)) = verified(http, &url, &name).await? else {
        return Ok(Err(url));
    };
    // Written under a name the data readers ignore, read once, then renamed into place.
    let part = out.join(format!(".{symbol}-{tf}-{}.partial.zip", period.label()));
    let disk = |p: &Path, e: std::io::Error| CliError::Fatal(format!("cannot write {}: {e}", p.display()));
    std::fs::write(&part, &zip).map_err(|e| disk(&part, e))?;
    let candles = match crate::data::read_candle_file(&part) {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(CliError::Fatal(format!("{url}: the archive matches its checksum but cannot be read: {e}")));
        }
    };
    std::fs::rename(&part, &path).map_err(|e| disk(&path, e))?;
    std::fs::write(&checksum_path, sum).map_err(|e| disk(&checksum_path, e))?;
    tracing::info!(symbol, timeframe = %tf, period = %period.label(), candles = candles.len(), "archive saved");
    Ok(Ok(report(Some(candles.len()))))
}
