//! `kinetic backtest`.

use crate::cli::{BacktestArgs, CliError, Context};

/// Runs `kinetic backtest`.
///
/// # Errors
/// Not implemented yet: exits 1 rather than print anything fake.
pub fn execute(_ctx: &Context, _args: &BacktestArgs) -> Result<(), CliError> {
    Err(CliError::NotImplemented("backtest"))
}
