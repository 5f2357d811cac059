//! The journal's typed order fields: why an order was sent, its state and type, stored as
//! Binance's spelling (`PARTIALLY_FILLED`) or snake_case names, parsed back with an error that
//! names the column.

use serde::{Deserialize, Serialize};

use crate::core::models::{OrderType, Side};
use crate::store::StoreError;

/// Why we sent an order. Stored as its snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderIntent {
    Entry,
    TakeProfit1,
    TakeProfit2,
    TrailingStop,
    StopLoss,
    Emergency,
    ProtectiveStop,
    /// The exchange-side stop did not fill in time; we closed at market.
    StopFallback,
    /// A stop would have triggered at once (-2021); we closed at market instead.
    StopImmediate,
    /// A position adopted beyond its conservative stop, closed at start.
    AdoptedBeyondStop,
    /// A close of the whole position asked for by the operator or at the end of a backtest.
    ForceExit,
    /// The part of an entry's fill above the notional cap.
    NotionalTrim,
    /// Not sent by us (a manual order or a liquidation seen on the account).
    External,
}

impl OrderIntent {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderIntent::Entry => "entry",
            OrderIntent::TakeProfit1 => "take_profit_1",
            OrderIntent::TakeProfit2 => "take_profit_2",
            OrderIntent::TrailingStop => "trailing_stop",
            OrderIntent::StopLoss => "stop_loss",
            OrderIntent::Emergency => "emergency",
            OrderIntent::ProtectiveStop => "protective_stop",
            OrderIntent::StopFallback => "stop_fallback",
            OrderIntent::StopImmediate => "stop_immediate",
            OrderIntent::AdoptedBeyondStop => "adopted_beyond_stop",
            OrderIntent::ForceExit => "force_exit",
            OrderIntent::NotionalTrim => "notional_trim",
            OrderIntent::External => "external",
        }
    }

    /// Parses a stored name; unknown text is an error naming it.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for an unknown name.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        const ALL: [OrderIntent; 13] = [
            OrderIntent::Entry,
            OrderIntent::TakeProfit1,
            OrderIntent::TakeProfit2,
            OrderIntent::TrailingStop,
            OrderIntent::StopLoss,
            OrderIntent::Emergency,
            OrderIntent::ProtectiveStop,
            OrderIntent::StopFallback,
            OrderIntent::StopImmediate,
            OrderIntent::AdoptedBeyondStop,
            OrderIntent::ForceExit,
            OrderIntent::NotionalTrim,
            OrderIntent::External,
        ];
        ALL.into_iter()
            .find(|i| i.as_str() == s)
            .ok_or_else(|| StoreError::Corrupt { what: "orders.intent", detail: format!("unknown intent {s:?}") })
    }
}

/// An order's state as journaled: plain orders' exchange status, conditional orders' life
/// cycle, and `Pending` (journaled, answer not in yet). Stored in Binance's spelling
/// (`PARTIALLY_FILLED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderState {
    Pending,
    New,
    PartiallyFilled,
    Filled,
    Canceled,
    Expired,
    Rejected,
    Triggered,
    Finished,
    /// The request failed without an order on the exchange.
    Failed,
}

impl OrderState {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Pending => "PENDING",
            OrderState::New => "NEW",
            OrderState::PartiallyFilled => "PARTIALLY_FILLED",
            OrderState::Filled => "FILLED",
            OrderState::Canceled => "CANCELED",
            OrderState::Expired => "EXPIRED",
            OrderState::Rejected => "REJECTED",
            OrderState::Triggered => "TRIGGERED",
            OrderState::Finished => "FINISHED",
            OrderState::Failed => "FAILED",
        }
    }

    /// Parses a stored status; `PARTIALLYFILLED` (written by earlier versions) is read as
    /// `PARTIALLY_FILLED`.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for an unknown status.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "PENDING" => OrderState::Pending,
            "NEW" => OrderState::New,
            "PARTIALLY_FILLED" | "PARTIALLYFILLED" => OrderState::PartiallyFilled,
            "FILLED" => OrderState::Filled,
            "CANCELED" | "CANCELLED" => OrderState::Canceled,
            "EXPIRED" => OrderState::Expired,
            "REJECTED" => OrderState::Rejected,
            "TRIGGERED" => OrderState::Triggered,
            "FINISHED" => OrderState::Finished,
            "FAILED" => OrderState::Failed,
            other => {
                return Err(StoreError::Corrupt { what: "orders.status", detail: format!("unknown status {other:?}") });
            }
        })
    }
}

impl From<crate::core::models::OrderStatus> for OrderState {
    fn from(s: crate::core::models::OrderStatus) -> Self {
        use crate::core::models::OrderStatus as S;
        match s {
            S::New => OrderState::New,
            S::PartiallyFilled => OrderState::PartiallyFilled,
            S::Filled => OrderState::Filled,
            S::Canceled => OrderState::Canceled,
            S::Expired => OrderState::Expired,
            S::Rejected => OrderState::Rejected,
            // Unknown to this build and not final: journaled as still open.
            S::Other => OrderState::New,
        }
    }
}

/// The stored name of an order type.
pub(crate) fn parse_order_type(s: &str) -> Result<OrderType, StoreError> {
    match s {
        "MARKET" => Ok(OrderType::Market),
        "LIMIT" => Ok(OrderType::Limit),
        "STOP_MARKET" => Ok(OrderType::StopMarket),
        other => Err(StoreError::Corrupt { what: "orders.order_type", detail: format!("unknown type {other:?}") }),
    }
}

pub(crate) fn parse_side(s: &str) -> Result<Side, StoreError> {
    match s {
        "BUY" => Ok(Side::Buy),
        "SELL" => Ok(Side::Sell),
        other => Err(StoreError::Corrupt { what: "side", detail: format!("unknown side {other:?}") }),
    }
}
