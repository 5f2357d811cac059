//! `kinetic run`.

use crate::cli::{CliError, Context, RunArgs};

/// Runs `kinetic run`.
///
/// # Errors
/// Not implemented yet: exits 1 rather than print anything fake.
pub fn execute(_ctx: &Context, _args: &RunArgs) -> Result<(), CliError> {
    Err(CliError::NotImplemented("run"))
}
