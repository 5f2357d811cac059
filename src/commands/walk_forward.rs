//! `kinetic walk-forward --space FILE [--data DIR] --is-days N --oos-days M [--step-days K]
//! [--anchored] [--out DIR]`: see [`crate::research::walkforward`].

use std::path::PathBuf;

use clap::Args;

use crate::cli::{CliError, Context};
use crate::commands::sweep::{ResearchArgs, to_cli};
use crate::research::space::{Objective, Space};
use crate::research::walkforward::{self, Windows};

#[derive(Debug, Clone, Args)]
pub struct WalkForwardArgs {
    /// Parameter space (the same TOML as `kinetic sweep`).
    #[arg(long, value_name = "FILE")]
    pub space: PathBuf,
    #[command(flatten)]
    pub common: ResearchArgs,
    /// In-sample days per window.
    #[arg(long, value_name = "DAYS")]
    pub is_days: u32,
    /// Out-of-sample days per window.
    #[arg(long, value_name = "DAYS")]
    pub oos_days: u32,
    /// Days between window starts [default: --oos-days, so OOS periods tile].
    #[arg(long, value_name = "DAYS")]
    pub step_days: Option<u32>,
    /// Anchored windows: every in-sample period starts at the beginning and grows.
    #[arg(long)]
    pub anchored: bool,
    /// Objective for choosing the in-sample best (overrides the space's).
    #[arg(long, value_name = "NAME")]
    pub objective: Option<String>,
    /// Minimum trades of the in-sample best (overrides the space's).
    #[arg(long, value_name = "N")]
    pub min_trades: Option<u64>,
    /// Seed of random / LHS sampling (overrides the space's).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Output folder [default: walk-forward-out].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Runs `kinetic walk-forward`.
///
/// # Errors
/// Exit 2 for a bad space, window or key; exit 1 for data or output failures.
pub fn execute(ctx: &Context, args: &WalkForwardArgs) -> Result<(), CliError> {
    let text = std::fs::read_to_string(&args.space)
        .map_err(|e| CliError::Usage(format!("--space: cannot read {}: {e}", args.space.display())))?;
    let mut space = Space::parse(&text).map_err(|e| CliError::Usage(format!("{}: {e}", args.space.display())))?;
    if let Some(o) = &args.objective {
        space.objective = Objective::parse("--objective", o).map_err(to_cli)?;
    }
    if let Some(m) = args.min_trades {
        space.min_trades = m;
    }
    let windows = Windows {
        in_sample_days: args.is_days,
        out_of_sample_days: args.oos_days,
        step_days: args.step_days.unwrap_or(args.oos_days),
        anchored: args.anchored,
    };
    let (base, data, _, _) = args.common.load(ctx)?;
    if args.common.from.is_some() || args.common.to.is_some() {
        return Err(CliError::Usage(
            "--from/--to: not used by walk-forward; the windows cover the data (select it with --data)".into(),
        ));
    }
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("walk-forward-out"));
    let seed = args.seed.unwrap_or(space.seed);
    let progress = args.common.progress();
    let started = std::time::Instant::now();
    let wf =
        args.common.in_pool(|| walkforward::run(&space, seed, &windows, &base, &data, progress))?.map_err(to_cli)?;
    let summary = wf.write(&out).map_err(to_cli)?;
    print!("{summary}");
    println!("{} windows in {:.1} s; wrote {}", wf.windows.len(), started.elapsed().as_secs_f64(), out.display());
    Ok(())
}
