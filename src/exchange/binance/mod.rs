//! Binance USDⓈ-M futures client: a raw layer mirroring endpoints (signing, weights, retries)
//! and a domain layer converting wire types to our models. Base URLs come from config so tests
//! point it at the fake server on 127.0.0.1.

pub mod signing;
