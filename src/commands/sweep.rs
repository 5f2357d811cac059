//! `kinetic sweep --space FILE [--data DIR] [--out DIR] [--seed N] [--shard I/N]` and
//! `kinetic sweep merge --out DIR SHARD_DIR...`: see [`crate::research::sweep`].

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::cli::{CliError, Context};
use crate::commands::backtest::parse_when;
use crate::research::dataset::{BaseConfig, Dataset};
use crate::research::space::{Shard, Space};
use crate::research::{ResearchError, output, sweep};

#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SweepArgs {
    #[command(subcommand)]
    pub action: Option<SweepAction>,
    /// Parameter space (TOML: method, samples, seed, objective, min_trades, pbo_partitions,
    /// [params] with a list or { from, to, step } per dotted config key).
    #[arg(long, value_name = "FILE")]
    pub space: Option<PathBuf>,
    #[command(flatten)]
    pub common: ResearchArgs,
    /// Output folder [default: sweep-out].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Seed of random / Latin-hypercube sampling (overrides the space's `seed`).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run only the I-th (from 0) of N disjoint slices of the points.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum SweepAction {
    /// Join the output folders of `sweep --shard I/N` (all N of them) into exactly what the
    /// unsharded sweep writes.
    Merge {
        /// Output folder of the merged sweep.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The shard output folders.
        #[arg(required = true, value_name = "SHARD_DIR")]
        shards: Vec<PathBuf>,
    },
}

/// Data, period and machine options shared by the research commands.
#[derive(Debug, Clone, Args)]
pub struct ResearchArgs {
    /// Folder with <SYMBOL>-<interval>.csv[.gz] files [default: backtest.data_dir].
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Comma-separated symbols [default: every symbol with 15m, 1h and 4h data].
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    pub symbols: Vec<String>,
    /// First day to trade, UTC (YYYY-MM-DD or RFC 3339).
    #[arg(long, value_name = "DATE")]
    pub from: Option<String>,
    /// Last day to trade, UTC (inclusive).
    #[arg(long, value_name = "DATE")]
    pub to: Option<String>,
    /// Worker threads [default: one per core].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Do not draw a progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

/// Maps research errors to exit codes: the user's input → 2, the rest → 1.
pub fn to_cli(e: ResearchError) -> CliError {
    if e.is_usage() { CliError::Usage(e.to_string()) } else { CliError::Fatal(e.to_string()) }
}

impl ResearchArgs {
    /// The process's config layers, the loaded data and the trading period.
    ///
    /// # Errors
    /// Bad dates, folders or symbols (usage).
    pub fn load(&self, ctx: &Context) -> Result<(BaseConfig, Dataset, Option<i64>, Option<i64>), CliError> {
        let from = self.from.as_deref().map(|t| parse_when("from", t, false)).transpose()?;
        let to = self.to.as_deref().map(|t| parse_when("to", t, true)).transpose()?;
        if let (Some(f), Some(t)) = (from, to)
            && t <= f
        {
            return Err(CliError::Usage("--to must not be before --from".into()));
        }
        if self.threads == Some(0) {
            return Err(CliError::Usage("--threads: `0` is not allowed; expected an integer >= 1".into()));
        }
        let base = BaseConfig { file: ctx.config_path.clone(), env: std::env::vars().collect() };
        let dir = self.data.clone().unwrap_or_else(|| ctx.settings.backtest.data_dir.clone());
        let data = Dataset::load(&dir, &self.symbols).map_err(to_cli)?;
        Ok((base, data, from, to))
    }

    pub fn progress(&self) -> bool {
        !self.no_progress && std::io::stderr().is_terminal()
    }

    /// Runs `f` on a pool of `--threads` threads (or rayon's global pool: one per core).
    ///
    /// # Errors
    /// The pool cannot be built.
    pub fn in_pool<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, CliError> {
        match self.threads {
            None => Ok(f()),
            Some(n) => rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .map(|pool| pool.install(f))
                .map_err(|e| CliError::Fatal(format!("thread pool: {e}"))),
        }
    }
}

/// Runs `kinetic sweep` (or `sweep merge`).
///
/// # Errors
/// Exit 2 for a bad space, shard, folder or config key; exit 1 for data or output failures.
pub fn execute(ctx: &Context, args: &SweepArgs) -> Result<(), CliError> {
    if let Some(SweepAction::Merge { out, shards }) = &args.action {
        let tables = shards.iter().map(|d| output::read_raw(d)).collect::<Result<Vec<_>, _>>().map_err(to_cli)?;
        let table = sweep::merge(tables).map_err(to_cli)?;
        let summary = sweep::write(out, &table).map_err(to_cli)?;
        print!("{summary}");
        println!("wrote {}", out.display());
        return Ok(());
    }
    let Some(space_path) = &args.space else {
        return Err(CliError::Usage("--space: missing; expected a parameter-space TOML file".into()));
    };
    let text = std::fs::read_to_string(space_path)
        .map_err(|e| CliError::Usage(format!("--space: cannot read {}: {e}", space_path.display())))?;
    let space = Space::parse(&text).map_err(|e| CliError::Usage(format!("{}: {e}", space_path.display())))?;
    let shard = args.shard.as_deref().map(Shard::parse).transpose().map_err(to_cli)?.unwrap_or(Shard::ALL);
    let (base, data, from, to) = args.common.load(ctx)?;
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("sweep-out"));
    let req = sweep::Request {
        space: &space,
        seed: args.seed.unwrap_or(space.seed),
        shard,
        base: &base,
        data: &data,
        from,
        to,
        progress: args.common.progress(),
    };
    let started = std::time::Instant::now();
    let table = args.common.in_pool(|| sweep::run(&req))?.map_err(to_cli)?;
    let secs = started.elapsed().as_secs_f64();
    let summary = sweep::write(&out, &table).map_err(to_cli)?;
    print!("{summary}");
    println!(
        "ran {} points in {secs:.1} s ({:.1} points/s); wrote {}",
        table.rows.len(),
        table.rows.len() as f64 / secs.max(1e-9),
        out.display()
    );
    Ok(())
}
