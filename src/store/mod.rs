//! The SQLite journal (WAL): signals, orders, fills, positions with exit-ladder state, equity
//! snapshots, risk-check outcomes and the emergency latch. The only module that touches the
//! database; it knows nothing about the exchange.
//!
//! Durability policy (`storage.sync`): WAL mode with `synchronous = NORMAL` by default — every
//! committed write survives a process crash (kill -9, panic, OOM kill) because it is in the WAL
//! before the call returns; an OS crash or power loss can lose the last commits, and start-up
//! reconciliation with the exchange (the truth for positions and stops) repairs what they
//! described. `storage.sync = "full"` fsyncs every commit (survives power loss) at the cost of
//! the disk's fsync time before every order. The daemon journals each state change — including
//! the exit-ladder stage before a take-profit close is sent — before the next action depends on
//! it.

mod commands;
mod journal;
mod orders;
mod types;

pub use crate::core::models::OrderType;
pub use commands::{ClosedTrade, CommandRecord};
pub use journal::{
    EquitySnapshot, Journal, JournalFill, JournalOrder, JournalPosition, RiskCheckRecord, SignalRecord, StoreError,
};
pub use types::{OrderIntent, OrderState};
