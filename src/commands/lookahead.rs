//! `kinetic check-lookahead [--data DIR] [--symbols A,B] [--samples N] [--seed N]`: see
//! [`crate::research::lookahead`]. Exit 1 when look-ahead is found or a warm-up length
//! falls outside its tolerance.

use std::path::PathBuf;

use clap::Args;

use crate::cli::{CliError, Context};
use crate::commands::sweep::to_cli;
use crate::research::dataset::Dataset;
use crate::research::lookahead::{self, ReplayAnalysis, Tolerance};

#[derive(Debug, Clone, Args)]
pub struct LookaheadArgs {
    /// Folder with <SYMBOL>-<interval>.csv[.gz] files [default: backtest.data_dir].
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Comma-separated symbols [default: every symbol with 15m, 1h and 4h data].
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    pub symbols: Vec<String>,
    /// Moments checked per symbol (signal moments first).
    #[arg(long, default_value_t = 20)]
    pub samples: usize,
    /// Seed for drawing the moments.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `kinetic check-lookahead`.
///
/// # Errors
/// Exit 2 for bad folders or symbols; exit 1 for look-ahead found or unreadable data.
pub fn execute(ctx: &Context, args: &LookaheadArgs) -> Result<(), CliError> {
    if args.samples == 0 {
        return Err(CliError::Usage("--samples: `0` is not allowed; expected an integer >= 1".into()));
    }
    let dir = args.data.clone().unwrap_or_else(|| ctx.settings.backtest.data_dir.clone());
    let data = Dataset::load(&dir, &args.symbols).map_err(to_cli)?;
    let report = lookahead::check(
        &ReplayAnalysis,
        &data.candles,
        &ctx.settings,
        args.samples,
        args.seed,
        &[150, 300, 1000],
        Tolerance::default(),
    )
    .map_err(to_cli)?;
    if args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|e| CliError::Fatal(e.to_string()))?;
        println!("{text}");
    } else {
        print!("{}", lookahead::text(&report));
    }
    if report.passed() { Ok(()) } else { Err(CliError::Fatal("look-ahead check failed (see above)".into())) }
}
