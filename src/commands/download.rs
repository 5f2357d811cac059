//! `kinetic download-data`.

use crate::cli::{CliError, Context, DownloadArgs};

/// Runs `kinetic download-data`.
///
/// # Errors
/// Not implemented yet: exits 1 rather than print anything fake.
pub fn execute(_ctx: &Context, _args: &DownloadArgs) -> Result<(), CliError> {
    Err(CliError::NotImplemented("download-data"))
}
