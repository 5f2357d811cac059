//! `kinetic`: parse arguments, set up logging, load config, run. Everything else lives in the
//! library so tests reach it.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    kinetic::cli::main_entry()
}
