//! Shared test support. Each integration test pulls it in with `mod support;` and uses a subset,
//! hence the `dead_code` allowance.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod fake_binance;
