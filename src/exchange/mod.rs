//! The only place that talks to an exchange. `binance/` is the live Binance USDⓈ-M client
//! (REST signing, time sync, rate limits, retries, WebSocket streams, symbol filters);
//! `paper.rs` is the simulated exchange used by `--dry-run` and backtests. Strategy and
//! manager code never import this module's I/O; the engine calls it through the [`Exchange`]
//! trait, so live and paper trading run the same engine code.
//!
//! Contract of every implementation:
//! - Quantities and prices handed in are already rounded to the symbol's filters; an
//!   implementation formats them plainly (never `1e-5`) and never re-rounds them upwards.
//! - Order placement is idempotent per `client_order_id`: when the outcome of a send is
//!   unknown, the implementation looks the id up before sending again, so one intent never
//!   becomes two orders. If it still cannot tell, it returns [`ExchangeError::UnknownOutcome`].
//! - Protective stops are conditional (algo) orders resting on the exchange with a mark-price
//!   trigger. They are listed by [`Exchange::open_stops`], not by [`Exchange::open_orders`].
//! - Errors keep the exchange's code and message; nothing panics on bad input.

pub mod binance;
pub mod paper;

use std::collections::BTreeSet;
use std::future::Future;

use rust_decimal::Decimal;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::core::models::{Candle, Direction, OrderStatus, Side, SymbolFilters, Ticker, Timeframe, TimestampMs};

/// Binance error code for insufficient margin: the caller halves the size and retries once.
pub const CODE_INSUFFICIENT_MARGIN: i64 = -2019;
/// Binance error code for a timestamp outside `recvWindow`: resync time and retry.
pub const CODE_TIMESTAMP_OUTSIDE_WINDOW: i64 = -1021;
/// Binance error code for "unknown outcome" (the request timed out inside the matching engine).
pub const CODE_UNKNOWN_OUTCOME: i64 = -1007;

/// Everything that can go wrong talking to an exchange.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExchangeError {
    /// The exchange answered with an error code (kept verbatim).
    #[error("exchange rejected the request: code {code}: {msg} (HTTP {http_status})")]
    Api { http_status: u16, code: i64, msg: String },
    /// HTTP 429: too many requests; wait at least `retry_after_ms`.
    #[error("rate limited by the exchange; retry after {retry_after_ms} ms")]
    RateLimited { retry_after_ms: u64 },
    /// HTTP 418: IP banned; no REST call may be made before `until` (ms since epoch).
    #[error("IP banned by the exchange until {until}")]
    Banned { until: TimestampMs },
    /// Connection, TLS or timeout problems before a response was read.
    #[error("transport error: {0}")]
    Transport(String),
    /// An order was sent but whether it exists could not be determined, even after looking it
    /// up by its client order id. The caller must not resend it blindly.
    #[error("outcome of order {client_order_id} unknown: {detail}")]
    UnknownOutcome { client_order_id: String, detail: String },
    /// The response could not be decoded (truncated body, HTML error page, wrong shape).
    #[error("malformed exchange response: {0}")]
    Decode(String),
    /// The request was refused locally before sending (bad argument, unknown symbol,
    /// an exhausted algo-order budget, a signed call on a public-only client ...).
    #[error("request refused: {0}")]
    Refused(String),
}

impl ExchangeError {
    /// The exchange's error code, if the exchange produced one.
    pub fn code(&self) -> Option<i64> {
        match self {
            ExchangeError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// True for -2019 (margin is insufficient).
    pub fn is_insufficient_margin(&self) -> bool {
        self.code() == Some(CODE_INSUFFICIENT_MARGIN)
    }
}

/// Result alias for exchange calls.
pub type ExResult<T> = Result<T, ExchangeError>;

/// A tradable symbol: its filters and the maximum leverage of its first bracket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SymbolInfo {
    pub filters: SymbolFilters,
    /// Maximum initial leverage for the smallest notional bracket (1 when unknown).
    pub max_leverage: u32,
}

/// Margin mode of a symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MarginType {
    Isolated,
    Crossed,
}

/// Account balances in the settlement asset (USDT).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct AccountBalance {
    /// Wallet balance (realized).
    pub wallet_balance: Decimal,
    /// Wallet balance plus unrealized PnL.
    pub equity: Decimal,
    /// Balance free for new margin.
    pub available_balance: Decimal,
    pub unrealized_pnl: Decimal,
}

/// A position as the exchange reports it (one-way mode: one per symbol).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExchangePosition {
    pub symbol: String,
    pub direction: Direction,
    /// Absolute size, always > 0.
    pub qty: Decimal,
    pub entry_price: Decimal,
    pub mark_price: Decimal,
    pub unrealized_pnl: Decimal,
    pub leverage: u32,
    pub liquidation_price: Option<Decimal>,
    pub update_time: TimestampMs,
}

/// A market order: an entry, or a reduce-only (partial) close.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MarketOrderRequest {
    pub symbol: String,
    pub side: Side,
    pub qty: Decimal,
    pub reduce_only: bool,
    /// Unique per intent (max 36 chars, `[.A-Z:/a-z0-9_-]`).
    pub client_order_id: String,
}

/// What the exchange says about a (market) order after placing or querying it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderReport {
    pub symbol: String,
    pub client_order_id: String,
    pub order_id: i64,
    pub side: Side,
    pub status: OrderStatus,
    pub orig_qty: Decimal,
    pub executed_qty: Decimal,
    /// Average fill price; zero until something filled.
    pub avg_price: Decimal,
    pub reduce_only: bool,
    pub update_time: TimestampMs,
}

/// A protective stop-market order resting on the exchange (mark-price trigger).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StopRequest {
    pub symbol: String,
    /// The closing side (SELL for a long).
    pub side: Side,
    pub qty: Decimal,
    pub trigger_price: Decimal,
    /// Unique per intent (`clientAlgoId` on Binance).
    pub client_id: String,
}

/// A conditional (algo) stop order as the exchange reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StopOrder {
    pub symbol: String,
    pub algo_id: i64,
    pub client_id: String,
    pub side: Side,
    pub qty: Decimal,
    pub trigger_price: Decimal,
    pub reduce_only: bool,
    pub status: StopStatus,
    pub update_time: TimestampMs,
}

/// Life cycle of a conditional order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum StopStatus {
    /// Resting, waiting for its trigger.
    New,
    /// Triggered; the resulting market order is in flight or filled.
    Triggered,
    /// Triggered and the resulting order finished.
    Finished,
    Canceled,
    Expired,
    Rejected,
}

impl StopStatus {
    /// True while the stop still protects the position.
    pub fn is_resting(self) -> bool {
        matches!(self, StopStatus::New)
    }
}

/// A fill of one of our orders (from the user stream or a paper exchange).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fill {
    pub symbol: String,
    pub client_order_id: String,
    pub order_id: i64,
    pub trade_id: i64,
    pub side: Side,
    pub price: Decimal,
    pub qty: Decimal,
    /// Fee paid (in USDT), positive.
    pub fee: Decimal,
    /// Realized PnL of this fill as the exchange computed it.
    pub realized_pnl: Decimal,
    pub reduce_only: bool,
    pub time: TimestampMs,
}

/// One symbol's mark price update. Implementations only emit positive prices (a decoder
/// rejects anything else as malformed).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MarkPriceUpdate {
    pub symbol: String,
    pub mark_price: Decimal,
    pub index_price: Option<Decimal>,
    /// Funding rate as a fraction (0.0001 = 0.01 %).
    pub funding_rate: Option<Decimal>,
    pub next_funding_time: Option<TimestampMs>,
    pub event_time: TimestampMs,
}

/// Health change of one stream (for `/health`, `/metrics` and the hub).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum StreamEvent {
    Connected {
        stream: String,
        reconnect: bool,
    },
    Disconnected {
        stream: String,
        reason: String,
    },
    /// No message for too long; the connection is being recycled.
    Stale {
        stream: String,
        silent_ms: u64,
    },
}

/// Everything an exchange pushes to the engine. Market and user-stream events share one
/// channel so the engine sees them in arrival order.
#[derive(Debug, Clone, PartialEq)]
pub enum ExchangeEvent {
    /// A kline update; `closed` is true for the final update of the candle.
    Kline {
        symbol: String,
        timeframe: Timeframe,
        candle: Candle,
        closed: bool,
    },
    /// Candles fetched over REST to fill a gap after a reconnect (closed candles only).
    Backfill {
        symbol: String,
        timeframe: Timeframe,
        candles: Vec<Candle>,
    },
    MarkPrices(Vec<MarkPriceUpdate>),
    Tickers(Vec<Ticker>),
    /// A (non-conditional) order changed state; `fill` is set when this update was a trade.
    OrderUpdate {
        report: OrderReport,
        fill: Option<Fill>,
    },
    /// A conditional (algo) order changed state. Deduplicated by algo id + status.
    StopUpdate(StopOrder),
    /// Balance and positions changed (ACCOUNT_UPDATE). Positions listed are the changed ones;
    /// a zero-size position is reported with `qty == 0`.
    AccountUpdate {
        balance: Option<AccountBalance>,
        positions: Vec<ExchangePosition>,
        time: TimestampMs,
    },
    /// The exchange warns that margin is running out.
    MarginCall {
        symbols: Vec<String>,
        time: TimestampMs,
    },
    Stream(StreamEvent),
}

/// Live control of running streams: the engine sets which symbols need klines (the scanner's
/// candidates plus open positions); the stream task subscribes and unsubscribes the difference.
#[derive(Debug, Clone)]
pub struct StreamControl {
    pub kline_symbols: watch::Sender<BTreeSet<String>>,
}

impl StreamControl {
    /// Replaces the set of symbols whose 15m/1h/4h klines are streamed.
    pub fn set_kline_symbols(&self, symbols: BTreeSet<String>) {
        self.kline_symbols.send_if_modified(|current| {
            if *current == symbols {
                false
            } else {
                *current = symbols;
                true
            }
        });
    }
}

/// Counters an implementation exposes for `/metrics` (cheap snapshot, no I/O).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ExchangeStats {
    pub rest_weight_used_1m: u32,
    /// Local clock minus server clock, ms.
    pub clock_offset_ms: i64,
    pub orders_sent: u64,
    pub orders_rejected: u64,
    pub ws_reconnects: u64,
    pub dropped_messages: u64,
    /// Conditional orders resting across all symbols (Binance allows 200).
    pub algo_orders_open: u32,
}

/// The exchange as the engine uses it. Implemented by the Binance client and the paper exchange.
pub trait Exchange: Send + Sync + 'static {
    /// True for simulated exchanges (dry-run, backtest).
    fn is_paper(&self) -> bool;

    /// Tradable symbols (PERPETUAL, TRADING, USDT-quoted) with filters and max leverage.
    fn symbols(&self) -> impl Future<Output = ExResult<Vec<SymbolInfo>>> + Send;

    /// 24 h statistics of every symbol.
    fn tickers(&self) -> impl Future<Output = ExResult<Vec<Ticker>>> + Send;

    /// Closed and open klines, oldest first; `end_time` inclusive; at most `limit`.
    fn klines(
        &self,
        symbol: &str,
        timeframe: Timeframe,
        start_time: Option<TimestampMs>,
        end_time: Option<TimestampMs>,
        limit: u16,
    ) -> impl Future<Output = ExResult<Vec<Candle>>> + Send;

    /// Symbols that must not be traded right now (quantitative-rules lock), read at start and
    /// periodically.
    fn locked_symbols(&self) -> impl Future<Output = ExResult<BTreeSet<String>>> + Send;

    /// True when the account is in hedge (dual-side) position mode.
    fn hedge_mode(&self) -> impl Future<Output = ExResult<bool>> + Send;

    /// Account balances (USDT).
    fn balance(&self) -> impl Future<Output = ExResult<AccountBalance>> + Send;

    /// Open positions (non-zero size only).
    fn positions(&self) -> impl Future<Output = ExResult<Vec<ExchangePosition>>> + Send;

    /// Open plain (non-conditional) orders.
    fn open_orders(&self) -> impl Future<Output = ExResult<Vec<OrderReport>>> + Send;

    /// Resting conditional (algo) orders across all symbols.
    fn open_stops(&self) -> impl Future<Output = ExResult<Vec<StopOrder>>> + Send;

    /// Margin type and leverage for `symbol`; "no need to change" is success.
    fn prepare_symbol(
        &self,
        symbol: &str,
        margin: MarginType,
        leverage: u32,
    ) -> impl Future<Output = ExResult<()>> + Send;

    /// Places a market order, idempotent per client order id (see the module contract).
    fn place_market(&self, req: &MarketOrderRequest) -> impl Future<Output = ExResult<OrderReport>> + Send;

    /// Looks an order up by client order id (`None` if the exchange does not know it).
    fn query_order(
        &self,
        symbol: &str,
        client_order_id: &str,
    ) -> impl Future<Output = ExResult<Option<OrderReport>>> + Send;

    /// Places a protective stop-market (reduce-only, mark-price trigger) resting on the exchange.
    fn place_stop(&self, req: &StopRequest) -> impl Future<Output = ExResult<StopOrder>> + Send;

    /// Cancels one conditional order. Already gone counts as success.
    fn cancel_stop(&self, symbol: &str, algo_id: i64) -> impl Future<Output = ExResult<()>> + Send;

    /// Cancels every open order and conditional order of `symbol`.
    fn cancel_all(&self, symbol: &str) -> impl Future<Output = ExResult<()>> + Send;

    /// Starts market streams (all-market tickers and mark prices, klines of the controlled
    /// symbol set) and, for live exchanges, the user-data stream. Events go to `events` until
    /// `cancel` fires. Reconnects, resubscriptions, backfills and staleness are handled inside.
    fn start_streams(
        &self,
        events: mpsc::Sender<ExchangeEvent>,
        cancel: CancellationToken,
    ) -> impl Future<Output = ExResult<StreamControl>> + Send;

    /// Counters for `/metrics`.
    fn stats(&self) -> ExchangeStats;

    /// Current exchange time estimate (local clock corrected by the synced offset).
    fn now_ms(&self) -> TimestampMs;
}
