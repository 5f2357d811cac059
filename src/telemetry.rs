//! Logging set-up: `tracing` with human-readable or JSON output, level from `--log-level`
//! or `RUST_LOG` (both checked by [`parse_log_level`] before they get here). Logs go to stderr so stdout stays clean for command output (`--json`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::hints;

/// The level names `--log-level` accepts, alone or after `TARGET=`.
pub const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Checks a `--log-level` value: a level (`debug`), or comma-separated `TARGET=LEVEL`
/// directives with an optional bare level (`info,kinetic=trace`). A bare word that is not a
/// level is refused: tracing would read it as a target name and silently hide every line.
///
/// # Errors
/// The offending word, the allowed levels and the nearest level name.
pub fn parse_log_level(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("empty log level; use one of {}", LEVELS.join(", ")));
    }
    for directive in text.split(',').map(str::trim) {
        let level = match directive.rsplit_once('=') {
            Some((target, level)) if !target.trim().is_empty() => level.trim(),
            Some(_) => {
                return Err(format!("`{directive}` has no target before `=`; use TARGET=LEVEL, e.g. kinetic=debug"));
            }
            None => directive,
        };
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            let hint = hints::nearest(&level.to_ascii_lowercase(), LEVELS)
                .map(|l| format!(" (did you mean `{l}`?)"))
                .unwrap_or_default();
            return Err(format!(
                "`{level}` is not a log level{hint}; use one of {}, or TARGET=LEVEL such as kinetic=debug",
                LEVELS.join(", ")
            ));
        }
    }
    EnvFilter::try_new(text).map_err(|e| format!("`{text}`: {e}"))?;
    Ok(text.to_string())
}

/// Whether log lines may carry colour codes: only on a terminal, and never with `NO_COLOR` set.
pub fn colour_on_stderr() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// Output format of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Installs the global subscriber. `level` (from the flag, checked by [`parse_log_level`])
/// wins over `RUST_LOG`; without either, `info`. Colour only when stderr is a terminal. Safe
/// to call more than once (later calls are ignored).
pub fn init(format: LogFormat, level: Option<&str>) {
    let filter = match level {
        Some(l) => EnvFilter::try_new(l).unwrap_or_else(|_| EnvFilter::new("info")),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour_on_stderr());
    let _ = match format {
        LogFormat::Pretty => builder.with_target(false).try_init(),
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
    };
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn log_levels_are_checked() {
        for ok in ["debug", "INFO", "info,kinetic=trace", "kinetic::tasks=debug", "off"] {
            assert!(parse_log_level(ok).is_ok(), "{ok}");
        }
        let err = parse_log_level("verbose").unwrap_err();
        assert!(err.contains("`verbose` is not a log level") && err.contains("trace, debug, info"), "{err}");
        assert!(parse_log_level("debgu").unwrap_err().contains("did you mean `debug`"));
        assert!(parse_log_level("kinetic=loud").is_err());
        assert!(parse_log_level("=debug").is_err());
        assert!(parse_log_level("").is_err());
    }
}
