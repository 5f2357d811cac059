//! Command-line interface (clap, derive): argument definitions, config loading and dispatch
//! to the subcommands in `commands/`. Maps every failure to the exit codes of DESIGN.md:
//! 0 clean, 2 bad config or arguments, 1 other fatal errors.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::commands;
use crate::config::{self, ConfigError, ConfigSources, Credentials, Settings};
use crate::telemetry::{self, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "kinetic",
    version,
    about = "Kinetic Empire: autonomous Binance USDⓈ-M perpetual futures trading daemon",
    long_about = "Kinetic Empire scans Binance USDⓈ-M perpetuals, scores them on 4h/1h/15m \
                  technicals, and trades the best signals with exchange-side protective stops, \
                  partial take-profits and a trailing stop.\n\nIT TRADES REAL MONEY unless run \
                  with --dry-run. Credentials come only from BINANCE_API_KEY and \
                  BINANCE_API_SECRET in the environment.\n\nExit codes: 0 clean shutdown, 2 bad \
                  config or arguments, 1 other fatal error."
)]
pub struct Cli {
    /// TOML file overriding the built-in defaults (see config/default.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log output format.
    #[arg(long, global = true, value_enum, default_value = "pretty")]
    pub log_format: LogFormat,
    /// Log level (trace, debug, info, warn, error, off) or filter (e.g. `info,kinetic=trace`);
    /// overrides RUST_LOG.
    #[arg(long, global = true, value_name = "LEVEL", value_parser = telemetry::parse_log_level)]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the trading daemon (live, or paper trading with --dry-run).
    Run(RunArgs),
    /// Replay historical candles through the same strategy code and report the results.
    Backtest(BacktestArgs),
    /// Download historical klines and funding rates from Binance's public REST API, or its
    /// public archive (--source dumps), into data files.
    DownloadData(DownloadArgs),
    /// Show indicators per timeframe and the score breakdown for one symbol.
    Analyze(AnalyzeArgs),
    /// Validate and print the effective configuration (secrets redacted).
    CheckConfig,
    /// Read the API key's permissions from Binance and say whether Kinetic will trade with it
    /// (futures permission, no withdrawals, an IP allow-list). Trades nothing; never prints the
    /// key or its secret.
    CheckKey,
    // Research (issue 12): sweeps, walk-forward, look-ahead check.
    /// Backtest every point of a parameter space on all cores; overfitting statistics.
    Sweep(commands::sweep::SweepArgs),
    /// Walk-forward: choose the best point in sample, run it out of sample, window by window.
    WalkForward(commands::walk_forward::WalkForwardArgs),
    /// Check the analysis for look-ahead (cut data) and warm-up sensitivity.
    CheckLookahead(commands::lookahead::LookaheadArgs),
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Paper trading: real public market data, simulated fills; no API key needed and no
    /// signed endpoint is ever called.
    #[arg(long)]
    pub dry_run: bool,
    /// Clear a latched emergency exit at start (the operator has reviewed what happened).
    #[arg(long)]
    pub clear_emergency: bool,
    /// Offline demo: play candle files through the daemon instead of Binance's market data
    /// (with --dry-run; no network). Without DIR, the sample built into the binary. Exits 0
    /// when the data ends; the journal is `<storage.dry_run_path>-replay.db`, fresh each time.
    #[arg(long, value_name = "DIR", num_args = 0..=1, requires = "dry_run")]
    pub replay: Option<Option<PathBuf>>,
    /// Replay speed in times real time (120: a 15m candle every 7.5 s) [default: 120].
    #[arg(long, value_name = "N", requires = "replay", allow_negative_numbers = true)]
    pub speed: Option<f64>,
}

#[derive(Debug, Clone, Args)]
pub struct BacktestArgs {
    /// Folder with <SYMBOL>-<interval>.csv[.gz] files [default: backtest.data_dir].
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// First day to trade, UTC (YYYY-MM-DD or RFC 3339).
    #[arg(long, value_name = "DATE")]
    pub from: Option<String>,
    /// Last day to trade, UTC (inclusive; YYYY-MM-DD or RFC 3339).
    #[arg(long, value_name = "DATE")]
    pub to: Option<String>,
    /// Comma-separated symbols [default: every symbol with 15m, 1h and 4h data].
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    pub symbols: Vec<String>,
    /// Output folder for trades.csv, metrics.json and report.html [default: backtest.out_dir].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Do not draw a progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

/// Where `download-data` gets candles from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum DownloadSource {
    /// The REST API (`/fapi/v1/klines`, `/fapi/v1/fundingRate`), the last `--days` days into one
    /// file per series and `funding/<SYMBOL>.csv`.
    #[default]
    Rest,
    /// Binance's public archive (`exchange.dumps_url`): one zip per month or day, checksummed,
    /// and the months' funding-rate archives into `funding/<SYMBOL>.csv`.
    Dumps,
}

#[derive(Debug, Clone, Args)]
pub struct DownloadArgs {
    /// Comma-separated symbols, e.g. BTCUSDT,ETHUSDT.
    #[arg(long, value_delimiter = ',', required = true, value_name = "A,B")]
    pub symbols: Vec<String>,
    /// Comma-separated intervals.
    #[arg(long, value_delimiter = ',', default_value = "15m,1h,4h", value_name = "I,J")]
    pub intervals: Vec<String>,
    /// `rest`: the last --days days from the REST API; `dumps`: Binance's monthly or daily
    /// archives from --from to --to, saved as downloaded (for long histories).
    #[arg(long, value_enum, default_value = "rest")]
    pub source: DownloadSource,
    /// How many days back from now (--source rest) [default: 30].
    #[arg(long)]
    pub days: Option<u32>,
    /// First archive (--source dumps): a month YYYY-MM (monthly archives) or a day YYYY-MM-DD
    /// (daily archives).
    #[arg(long, value_name = "YYYY-MM[-DD]")]
    pub from: Option<String>,
    /// Last archive, inclusive, of the same form as --from (--source dumps) [default: the last
    /// month published, or yesterday].
    #[arg(long, value_name = "YYYY-MM[-DD]")]
    pub to: Option<String>,
    /// Output folder [default: backtest.data_dir].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct AnalyzeArgs {
    /// Symbol, e.g. BTCUSDT.
    pub symbol: String,
    /// Read candles from this folder [default: backtest.data_dir].
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Evaluate at this time instead of the latest closed candle (ms epoch, YYYY-MM-DD or
    /// RFC 3339, UTC).
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Why a command failed, and so which exit code it ends with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Fatal(String),
    #[error("`{0}` is not implemented yet")]
    NotImplemented(&'static str),
}

impl From<crate::data::DataError> for CliError {
    /// Bad data files are bad input (exit 2); a failing machine is not (exit 1).
    fn from(e: crate::data::DataError) -> Self {
        if e.is_bad_input() { CliError::Usage(e.to_string()) } else { CliError::Fatal(e.to_string()) }
    }
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_) | CliError::Usage(_) => 2,
            CliError::Fatal(_) | CliError::NotImplemented(_) => 1,
        }
    }
}

/// Everything a subcommand needs: validated settings, optional credentials, the raw args.
pub struct Context {
    pub settings: Settings,
    pub credentials: Option<Credentials>,
    pub config_path: Option<PathBuf>,
}

/// Parses the process arguments, runs the command and returns its exit code.
pub fn main_entry() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() { 2 } else { 0 });
        }
    };
    // RUST_LOG, when the flag does not override it, is checked as the flag is: a bare word
    // that is not a level would otherwise hide every line without a word.
    let rust_log = match cli.log_level {
        Some(_) => None,
        None => match rust_log_filter(std::env::var_os("RUST_LOG")) {
            Ok(filter) => filter,
            Err(e) => {
                let _ = writeln!(std::io::stderr().lock(), "error: {e}");
                return ExitCode::from(2);
            }
        },
    };
    // A backtest drives the daemon's trading core thousands of times: its per-order lines
    // would drown the summary, so they show only when asked for (`--log-level` / RUST_LOG).
    // Research commands run it thousands of times more: only its errors.
    let quiet_core = match cli.command {
        Command::Backtest(_) => Some("info,kinetic::manager=warn"),
        Command::Sweep(_) | Command::WalkForward(_) | Command::CheckLookahead(_) => Some("info,kinetic::manager=error"),
        _ => None,
    };
    let level = cli.log_level.clone().or(rust_log).or_else(|| quiet_core.map(str::to_string));
    telemetry::init(cli.log_format, level.as_deref());
    let env: HashMap<String, String> = std::env::vars().collect();
    match run(cli, env) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // A closed stderr must not turn an error into a panic.
            let _ = writeln!(std::io::stderr().lock(), "error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

/// The `RUST_LOG` filter, checked like `--log-level` ([`telemetry::parse_log_level`]); `None`
/// when it is unset or blank.
///
/// # Errors
/// The message names the variable, its value and the allowed form.
pub fn rust_log_filter(value: Option<std::ffi::OsString>) -> Result<Option<String>, String> {
    let Some(value) = value else { return Ok(None) };
    let text =
        value.into_string().map_err(|_| "RUST_LOG is not valid UTF-8; unset it or use --log-level".to_string())?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    telemetry::parse_log_level(&text)
        .map(Some)
        .map_err(|e| format!("RUST_LOG=`{text}` is not a log filter: {e} (or unset it and use --log-level)"))
}

/// Writes command output to stdout. A reader that went away (`kinetic backtest | head`) is not
/// an error: the rest of the output is dropped and the command carries on (files are still
/// written, the exit code is unchanged).
///
/// # Errors
/// [`CliError::Fatal`] for any other write failure (a full disk behind a redirect).
pub fn print_out(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CliError::Fatal(format!("cannot write to standard output: {e}")))
        }
        _ => Ok(()),
    }
}

/// Loads config from `env` and runs the parsed command.
///
/// # Errors
/// [`CliError`], whose [`CliError::exit_code`] is the process exit code.
pub fn run(cli: Cli, env: HashMap<String, String>) -> Result<(), CliError> {
    let sources = ConfigSources { file: cli.config.as_deref(), env };
    let settings = config::load(&sources)?;
    let credentials = Credentials::from_env(&sources.env);
    let ctx = Context { settings, credentials, config_path: cli.config.clone() };
    match cli.command {
        Command::CheckConfig => {
            let text = config::render_effective(&ctx.settings, ctx.credentials.as_ref())
                .map_err(|e| CliError::Fatal(format!("cannot render config: {e}")))?;
            let origin = match &ctx.config_path {
                Some(p) => p.display().to_string(),
                None => "no --config file".to_string(),
            };
            print_out(&format!(
                "# effective configuration (defaults < {origin} < environment); valid as a --config file\n\
                 {text}\n# configuration is valid\n"
            ))
        }
        Command::Run(args) => {
            Settings::require_credentials(args.dry_run, ctx.credentials.as_ref())?;
            commands::run::execute(&ctx, &args)
        }
        Command::CheckKey => commands::check_key::execute(&ctx),
        Command::Backtest(args) => commands::backtest::execute(&ctx, &args),
        Command::DownloadData(args) => commands::download::execute(&ctx, &args),
        Command::Analyze(args) => commands::analyze::execute(&ctx, &args),
        Command::Sweep(args) => commands::sweep::execute(&ctx, &args),
        Command::WalkForward(args) => commands::walk_forward::execute(&ctx, &args),
        Command::CheckLookahead(args) => commands::lookahead::execute(&ctx, &args),
    }
}
