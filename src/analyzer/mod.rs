//! Technical analysis: incremental and batch indicators (EMA, RSI, MACD, ATR, volume ratio),
//! swing points, multi-timeframe scoring and entry/exit levels. Pure, synchronous functions
//! over plain data: no I/O, no clock reads, no locks, no tokio — live, dry-run and backtest
//! all run exactly this code.
