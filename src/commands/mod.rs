//! Subcommand implementations. Each reads its inputs, calls the library and prints; the
//! parsing and exit-code mapping live in `cli.rs`.

pub mod analyze;
pub mod backtest;
pub mod check_key;
pub mod download;
pub mod download_dumps;
pub mod lookahead;
pub mod run;
pub mod sweep;
pub mod walk_forward;
