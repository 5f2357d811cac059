//! Shared test support. Each integration test pulls it in with `mod support;` and uses a subset,
//! hence the `dead_code` allowance.
//!
//! - [`canned`]: a server that gives one canned answer per request line.
//! - [`fake_binance`]: the fake Binance USDⓈ-M server (REST + WebSocket on 127.0.0.1); its API
//!   is documented at the top of `fake_binance/mod.rs`.
//! - [`raw_client`]: a minimal signed REST client and WebSocket helpers independent of the
//!   project's client (for assertions that must not go through the code under test), and
//!   `assert_shape` to compare JSON with the recorded fixtures.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod canned;
pub mod fake_binance;
pub mod raw_client;
