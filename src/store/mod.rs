//! The SQLite journal (WAL): signals, orders, fills, positions with exit-ladder state, equity
//! snapshots, risk-check outcomes and the emergency latch. The only module that touches the
//! database; it knows nothing about the exchange.
//!
//! Durability policy: WAL mode with `synchronous = FULL`, so every committed write is fsynced
//! before the call returns. The daemon journals each state change before the next action
//! depends on it; after a crash, the journal holds everything that was acknowledged.

mod journal;

pub use journal::{
    EquitySnapshot, Journal, JournalFill, JournalOrder, JournalPosition, RiskCheckRecord, SignalRecord, StoreError,
};
