//! The SQLite journal (WAL): signals, orders, fills, positions with exit-ladder state, equity
//! snapshots, risk-check outcomes and the emergency latch. The only module that touches the
//! database; it knows nothing about the exchange.
