//! Kinetic Empire: an autonomous Binance USDⓈ-M perpetual futures trading daemon.
//!
//! The library holds everything; `main.rs` only parses arguments and calls [`cli::run`].
//! Layout follows DESIGN.md section 1: the ground floor (`core`: models, clock, hub), pure
//! strategy code (`analyzer`, `scanner`, `manager` with the trading core's state machine) over
//! plain data, I/O at the edges (`exchange`, `store`, `api`), and the live runtime's tasks in
//! `tasks`.
#![forbid(unsafe_code)]

pub mod analyzer;
pub mod api;
pub mod backtest;
pub mod cli;
pub mod commands;
pub mod config;
pub mod control;
pub mod core;
pub mod data;
pub mod exchange;
pub mod manager;
pub mod notify;
pub mod replay;
pub mod research;
pub mod scanner;
pub mod shutdown;
pub mod store;
pub mod tasks;
pub mod telegram;
pub mod telemetry;
