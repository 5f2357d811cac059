//! Historical replay: drives the same scanner, analyzer, risk checks, sizing, leverage and
//! exit-ladder code as the daemon from candle files instead of streams, with simulated fills,
//! fees, funding and liquidation, and writes the trade list, metrics and HTML report.
