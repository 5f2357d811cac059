//! The only place that talks to an exchange. `binance/` is the live Binance USDⓈ-M client
//! (REST signing, time sync, rate limits, retries, WebSocket streams, symbol filters);
//! `paper.rs` is the simulated exchange used by `--dry-run` and backtests. Strategy and
//! manager code never import this module's I/O; the engine calls it.

pub mod binance;
