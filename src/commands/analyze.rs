//! `kinetic analyze`.

use crate::cli::{AnalyzeArgs, CliError, Context};

/// Runs `kinetic analyze`.
///
/// # Errors
/// Not implemented yet: exits 1 rather than print anything fake.
pub fn execute(_ctx: &Context, _args: &AnalyzeArgs) -> Result<(), CliError> {
    Err(CliError::NotImplemented("analyze"))
}
