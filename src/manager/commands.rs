//! What the trading core asks the outside world to do, and what comes back: order commands
//! (one exchange request each), their outcomes, and the journal records to write. Plain data,
//! so a test can feed a script of outcomes and assert the exact commands that come out.
//!
//! The live position-manager task sends each [`Command`] as its own future and returns the
//! [`Outcome`] as an event; the journal records are written in order before the commands that
//! follow them are sent (write-ahead).

use rust_decimal::Decimal;
use serde::Serialize;

use crate::core::models::{Position, TimestampMs};
use crate::exchange::{
    AccountBalance, ExResult, ExchangePosition, MarginType, MarketOrderRequest, OrderReport, StopOrder, StopRequest,
};
use crate::manager::exit_ladder::ExitReason;
use crate::store::{EquitySnapshot, JournalFill, JournalOrder, OrderIntent, RiskCheckRecord, SignalRecord};

/// Identifies one command and its outcome.
pub type RequestId = u64;

/// One exchange request.
#[derive(Debug, Clone, PartialEq)]
pub enum OrderRequest {
    /// Set margin type and leverage, then send the market entry.
    Entry { req: MarketOrderRequest, margin: MarginType, leverage: u32 },
    /// Reduce-only market close.
    Close { req: MarketOrderRequest, reason: ExitReason, intent: OrderIntent },
    /// Place a protective stop (reduce-only, mark-price trigger).
    PlaceStop(StopRequest),
    /// Cancel one protective stop.
    CancelStop { algo_id: i64 },
    /// Cancel every order and stop of the symbol (after an emergency close).
    CancelAll,
    /// Read the exchange's position of the symbol (after any failure, before the next action).
    ReadPosition,
    /// Look an order up by client id (a protective stop's execution whose events were missed).
    LookupOrder { client_order_id: String },
}

impl OrderRequest {
    /// A short stable name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            OrderRequest::Entry { .. } => "entry",
            OrderRequest::Close { intent, .. } => intent.as_str(),
            OrderRequest::PlaceStop(_) => "protective_stop",
            OrderRequest::CancelStop { .. } => "cancel_stop",
            OrderRequest::CancelAll => "cancel_all",
            OrderRequest::ReadPosition => "read_position",
            OrderRequest::LookupOrder { .. } => "lookup_order",
        }
    }
}

/// A request for one symbol. At most one is in flight per symbol, except emergency closes
/// (`urgent`), which never wait behind a hung request.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub id: RequestId,
    pub symbol: String,
    pub request: OrderRequest,
    pub urgent: bool,
}

/// What the exchange answered.
#[derive(Debug, Clone, PartialEq)]
pub enum OrderResult {
    Entry(ExResult<OrderReport>),
    Close(ExResult<OrderReport>),
    StopPlaced(ExResult<StopOrder>),
    StopCancelled(ExResult<()>),
    AllCancelled(ExResult<()>),
    Position(ExResult<Option<ExchangePosition>>),
    Lookup(ExResult<Option<OrderReport>>),
}

/// The outcome of one [`Command`].
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub id: RequestId,
    pub symbol: String,
    pub result: OrderResult,
}

/// A full read of the account (the periodic resync): the exchange is the truth.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountSnapshot {
    /// When the read was requested (local stops placed after this are kept).
    pub requested_at: TimestampMs,
    pub balance: Option<AccountBalance>,
    pub positions: Option<Vec<ExchangePosition>>,
    pub stops: Option<Vec<StopOrder>>,
}

/// A journal write, in the order it must happen.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Order(JournalOrder),
    Fill(JournalFill),
    PositionOpened {
        position: Position,
        adopted: bool,
    },
    PositionUpdated(Position),
    PositionClosed {
        position: Position,
        time: TimestampMs,
        reason: String,
        gross_pnl: Decimal,
        fees: Decimal,
    },
    Signal {
        signal: SignalRecord,
        risk: Option<RiskCheckRecord>,
    },
    /// The risk book and the emergency latch (journal key [`RISK_STATE_KEY`]).
    RiskState(serde_json::Value),
    Equity(EquitySnapshot),
}

/// Journal state key of the risk book and latch.
pub const RISK_STATE_KEY: &str = "risk_state";

/// What the core wants done, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Journal(Record),
    Send(Command),
    /// Read balance, positions and stops (answered with [`AccountSnapshot`]).
    Resync,
}

/// Counters the core keeps for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CoreCounters {
    /// Protective stops placed because one was missing (not a move or resize).
    pub stops_repaired: u64,
    pub orphan_stops_cancelled: u64,
    /// Protective stops that triggered but left their position open beyond the grace.
    pub stops_failed: u64,
}
