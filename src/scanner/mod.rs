//! Market scanner: the volume, momentum and liquidity filters, exclusions and ranking that
//! turn all tickers into a short list of candidates. Pure functions over ticker and candle
//! data; no I/O and no clock reads.

pub mod market_scanner;
