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

pub mod api_key;
pub mod binance;
pub mod diagnosis;
pub mod paper;
pub mod sim_book;

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use rust_decimal::Decimal;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::core::models::{Candle, Direction, OrderStatus, Side, SymbolFilters, Ticker, Timeframe, TimestampMs};

/// Binance error code for insufficient margin: the caller halves the size and retries once.
pub const CODE_INSUFFICIENT_MARGIN: i64 = -2019;
/// Binance error code for a timestamp outside `recvWindow`: resync time and retry.
pub const CODE_TIMESTAMP_OUTSIDE_WINDOW: i64 = -1021;
/// The matching engine's own recvWindow check (same remedy as -1021).
pub const CODE_ME_RECV_WINDOW: i64 = -5028;
/// Binance error code for "unknown outcome" (the request timed out inside the matching engine).
pub const CODE_UNKNOWN_OUTCOME: i64 = -1007;

/// Codes after which the request certainly did not run and may be sent again after a pause:
/// -1003 too many requests, -1008 system overload, -1015 too many orders, -1021/-5028 clock
/// outside `recvWindow` (retried after a resync).
const DEFINITE_TRANSIENT_CODES: [i64; 5] = [-1003, -1008, -1015, CODE_TIMESTAMP_OUTSIDE_WINDOW, CODE_ME_RECV_WINDOW];
/// Codes whose execution status Binance leaves open: -1000 unknown error, -1001 disconnected,
/// -1006 unexpected bus response, -1007 timeout.
const UNKNOWN_OUTCOME_CODES: [i64; 4] = [-1000, -1001, -1006, CODE_UNKNOWN_OUTCOME];
/// Codes no retry can fix, only the operator: -1002 unauthorized, -1022 bad signature (wrong
/// secret), -2008/-2014/-2015 bad API key, IP or permissions, -4061 position side does not
/// match the account's position mode (hedge mode).
const FATAL_CODES: [i64; 6] = [-1002, -1022, -2008, -2014, -2015, -4061];

/// The underlying cause of an [`ExchangeError`], behind an `Arc` so the error stays `Clone`
/// (order results travel between tasks, and one failure is often both logged and returned).
pub type ErrorSource = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// How far a request got before the transport failed: it decides whether it may have run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TransportStage {
    /// The HTTP client or the request could not be built (TLS set-up, a bad base URL): nothing
    /// was sent and nothing will be until the configuration changes.
    Setup,
    /// Connecting failed (refused, DNS, TLS handshake, connect timeout): nothing was sent.
    Connect,
    /// Sent, but no complete answer arrived before the client's timeout.
    Timeout,
    /// Sent, and the connection failed before a complete answer was read.
    Response,
}

impl TransportStage {
    /// How far the request behind a reqwest error got (a connect timeout is a connect error:
    /// nothing was sent).
    pub fn of(e: &reqwest::Error) -> TransportStage {
        if e.is_connect() {
            TransportStage::Connect
        } else if e.is_timeout() {
            TransportStage::Timeout
        } else if e.is_builder() {
            TransportStage::Setup
        } else {
            TransportStage::Response
        }
    }
}

impl fmt::Display for TransportStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportStage::Setup => "client set-up failed",
            TransportStage::Connect => "connect failed, nothing sent",
            TransportStage::Timeout => "timed out after sending",
            TransportStage::Response => "connection failed after sending",
        })
    }
}

/// `: <cause>` (the cause's message and those of its own causes), or nothing.
fn cause_suffix(source: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut out = String::new();
    let mut next = source;
    while let Some(e) = next {
        let msg = e.to_string();
        // Some errors repeat their cause in their own message: print each text once.
        if !msg.is_empty() && !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        next = e.source();
    }
    out
}

fn source_dyn(source: &ErrorSource) -> &(dyn std::error::Error + 'static) {
    &**source
}

fn source_ref(source: &Option<ErrorSource>) -> Option<&(dyn std::error::Error + 'static)> {
    source.as_ref().map(|s| &**s as &(dyn std::error::Error + 'static))
}

fn exchange_cause_ref(cause: &Option<Arc<ExchangeError>>) -> Option<&(dyn std::error::Error + 'static)> {
    cause.as_ref().map(|c| &**c as &(dyn std::error::Error + 'static))
}

/// Everything that can go wrong talking to an exchange.
///
/// Causes are kept as [`std::error::Error::source`]; `Display` also appends their messages so a
/// one-line log says what happened. Messages name the host but never carry a URL, so neither
/// the API key, the secret nor a request signature can end up in a log line.
///
/// What the caller should do is read from [`ExchangeError::is_retryable`],
/// [`ExchangeError::is_unknown_outcome`] and [`ExchangeError::is_fatal`], keyed on Binance's
/// codes and the HTTP status.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExchangeError {
    /// The exchange answered with an error code (kept verbatim).
    #[error("exchange rejected the request: code {code}: {msg} (HTTP {http_status})")]
    Api { http_status: u16, code: i64, msg: String },
    /// A non-success HTTP status without a Binance error body (a proxy's HTML page, an empty
    /// 502 ...).
    #[error("HTTP {http_status} from {host} without an exchange error code ({body_len}-byte body)")]
    Http { http_status: u16, host: String, body_len: usize },
    /// HTTP 429: too many requests; wait at least `retry_after_ms`.
    #[error("rate limited by the exchange; retry after {retry_after_ms} ms")]
    RateLimited { retry_after_ms: u64 },
    /// HTTP 418: IP banned; no REST call may be made before `until` (ms since epoch).
    #[error("IP banned by the exchange until {until}")]
    Banned { until: TimestampMs },
    /// No complete response was read; `stage` says whether the request may have been sent.
    #[error("transport error talking to {host} ({stage}){}", cause_suffix(Some(source_dyn(.source))))]
    Transport {
        host: String,
        stage: TransportStage,
        #[source]
        source: ErrorSource,
    },
    /// An order was sent but whether it exists could not be determined (yet): its answer was
    /// lost or unreadable, or looking it up by its client order id failed too. The caller must
    /// not resend it blindly. `cause` is the failure that left the outcome open.
    #[error("outcome of order {client_order_id} unknown: {detail}{}", cause_suffix(exchange_cause_ref(.cause)))]
    UnknownOutcome {
        client_order_id: String,
        detail: String,
        #[source]
        cause: Option<Arc<ExchangeError>>,
    },
    /// The response could not be decoded (truncated body, wrong shape, a bad number); `what`
    /// names the payload or field, `source` is the parser's error when there is one.
    #[error("malformed exchange response: {what}{}", cause_suffix(source_ref(.source)))]
    Decode {
        what: String,
        #[source]
        source: Option<ErrorSource>,
    },
    /// The request was refused locally before sending (bad argument, unknown symbol,
    /// an exhausted algo-order budget, a signed call on a public-only client ...).
    #[error("request refused: {0}")]
    Refused(String),
}

/// Equal when the variant and its fields are equal; causes (which have no equality of their
/// own) are compared by their messages.
impl PartialEq for ExchangeError {
    fn eq(&self, other: &Self) -> bool {
        use ExchangeError as E;
        let same_source = |a: Option<&(dyn std::error::Error + 'static)>,
                           b: Option<&(dyn std::error::Error + 'static)>| {
            a.map(ToString::to_string) == b.map(ToString::to_string)
        };
        match (self, other) {
            (E::Api { http_status: s1, code: c1, msg: m1 }, E::Api { http_status: s2, code: c2, msg: m2 }) => {
                s1 == s2 && c1 == c2 && m1 == m2
            }
            (
                E::Http { http_status: s1, host: h1, body_len: l1 },
                E::Http { http_status: s2, host: h2, body_len: l2 },
            ) => s1 == s2 && h1 == h2 && l1 == l2,
            (E::RateLimited { retry_after_ms: a }, E::RateLimited { retry_after_ms: b }) => a == b,
            (E::Banned { until: a }, E::Banned { until: b }) => a == b,
            (E::Transport { host: h1, stage: s1, source: e1 }, E::Transport { host: h2, stage: s2, source: e2 }) => {
                h1 == h2 && s1 == s2 && same_source(Some(source_dyn(e1)), Some(source_dyn(e2)))
            }
            (
                E::UnknownOutcome { client_order_id: i1, detail: d1, cause: c1 },
                E::UnknownOutcome { client_order_id: i2, detail: d2, cause: c2 },
            ) => i1 == i2 && d1 == d2 && c1 == c2,
            (E::Decode { what: w1, source: e1 }, E::Decode { what: w2, source: e2 }) => {
                w1 == w2 && same_source(source_ref(e1), source_ref(e2))
            }
            (E::Refused(a), E::Refused(b)) => a == b,
            _ => false,
        }
    }
}

impl ExchangeError {
    /// A decode error with no underlying parser error (a value out of range, a missing field).
    pub fn decode(what: impl Into<String>) -> Self {
        ExchangeError::Decode { what: what.into(), source: None }
    }

    /// A decode error caused by `source` (a `serde_json` error, a bad UTF-8 frame ...).
    pub fn decode_with(what: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        ExchangeError::Decode { what: what.into(), source: Some(Arc::new(source)) }
    }

    /// The exchange's error code, if the exchange produced one.
    pub fn code(&self) -> Option<i64> {
        match self {
            ExchangeError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The HTTP status of the answer, when one was read.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            ExchangeError::Api { http_status, .. } | ExchangeError::Http { http_status, .. } => Some(*http_status),
            ExchangeError::RateLimited { .. } => Some(429),
            ExchangeError::Banned { .. } => Some(418),
            _ => None,
        }
    }

    /// True for -2019 (margin is insufficient).
    pub fn is_insufficient_margin(&self) -> bool {
        self.code() == Some(CODE_INSUFFICIENT_MARGIN)
    }

    /// True for -1021/-5028: the request's timestamp was outside `recvWindow`; resync the
    /// server-time offset before trying again.
    pub fn is_timestamp_rejected(&self) -> bool {
        matches!(self.code(), Some(CODE_TIMESTAMP_OUTSIDE_WINDOW | CODE_ME_RECV_WINDOW))
    }

    /// The same request may be sent again (after a pause) whatever it does: it certainly did
    /// not run, and a later try can succeed. Connect failures, 429, -1003, -1008 (overload),
    /// -1015, -1021/-5028 (after a resync) and 503 "Service Unavailable." (Binance's definite
    /// 503). Never true for a fatal error.
    pub fn is_retryable(&self) -> bool {
        if self.is_fatal() {
            return false;
        }
        match self {
            ExchangeError::Transport { stage, .. } => *stage == TransportStage::Connect,
            ExchangeError::RateLimited { .. } => true,
            ExchangeError::Api { http_status, code, msg } => {
                *http_status == 429
                    || DEFINITE_TRANSIENT_CODES.contains(code)
                    || (*http_status == 503 && msg.trim_start().starts_with("Service Unavailable"))
            }
            _ => false,
        }
    }

    /// The request may have run although no usable answer came back: timeouts and connections
    /// lost after sending, 408, 5xx other than Binance's definite ones, -1000/-1001/-1006/-1007,
    /// and [`ExchangeError::UnknownOutcome`]. A mutating call must be looked up before it is
    /// sent again; a read may simply be repeated.
    pub fn is_unknown_outcome(&self) -> bool {
        match self {
            ExchangeError::UnknownOutcome { .. } => true,
            ExchangeError::Transport { stage, .. } => {
                matches!(stage, TransportStage::Timeout | TransportStage::Response)
            }
            ExchangeError::Api { http_status, code, .. } => {
                !self.is_retryable()
                    && !self.is_fatal()
                    && (UNKNOWN_OUTCOME_CODES.contains(code) || *http_status == 408 || *http_status >= 500)
            }
            ExchangeError::Http { http_status, .. } => *http_status == 408 || *http_status >= 500,
            _ => false,
        }
    }

    /// Retrying cannot help; the operator must act: authentication and permission errors
    /// (-1002, -1022, -2008, -2014, -2015, HTTP 401), an IP ban (418), the account's position
    /// mode not matching one-way orders (-4061), an HTTP client that cannot be built.
    pub fn is_fatal(&self) -> bool {
        match self {
            ExchangeError::Banned { .. } => true,
            ExchangeError::Transport { stage, .. } => *stage == TransportStage::Setup,
            ExchangeError::Api { http_status, code, .. } => {
                *http_status == 401 || *http_status == 418 || FATAL_CODES.contains(code)
            }
            ExchangeError::Http { http_status, .. } => *http_status == 401 || *http_status == 418,
            _ => false,
        }
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

/// A reduce-only trailing stop (`TRAILING_STOP_MARKET`, mark-price working type): it follows
/// the best price since activation and fires after a pull-back of `callback_rate_pct`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrailingStopRequest {
    pub symbol: String,
    /// The closing side (SELL for a long).
    pub side: Side,
    pub qty: Decimal,
    /// Pull-back that fires it, in percent (1 = 1 %); Binance accepts 0.1–20.
    pub callback_rate_pct: Decimal,
    /// Price from which it starts tracking (SELL: above the price, BUY: below); `None` = now.
    pub activate_price: Option<Decimal>,
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
    /// A status this build does not know: not resting, so never counted as protection.
    Other,
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

impl MarkPriceUpdate {
    /// A bare mark price of `symbol` at `time` (no index price or funding announcement):
    /// simulators and replays.
    pub fn at(symbol: &str, mark_price: Decimal, time: TimestampMs) -> Self {
        MarkPriceUpdate {
            symbol: symbol.to_string(),
            mark_price,
            index_price: None,
            funding_rate: None,
            next_funding_time: None,
            event_time: time,
        }
    }
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

/// Everything an exchange pushes to the daemon; [`EventSinks`] routes market and account
/// events to separate channels.
#[derive(Debug, Clone, PartialEq)]
pub enum ExchangeEvent {
    /// A kline update; `closed` is true for the final update of the candle.
    Kline {
        symbol: String,
        timeframe: Timeframe,
        candle: Candle,
        closed: bool,
    },
    /// Candles fetched over REST to fill a gap after a reconnect: closed candles only, as
    /// [`crate::core::models::is_closed_at`] decides (a candle still within the close margin is
    /// held back and fetched again).
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
        /// A deposit (+) or withdrawal (−) of the settlement asset: moves equity without being
        /// profit or loss (the daily-loss check subtracts it).
        transfer: Option<Decimal>,
    },
    /// The exchange warns that margin is running out.
    MarginCall {
        symbols: Vec<String>,
        time: TimestampMs,
    },
    Stream(StreamEvent),
}

impl ExchangeEvent {
    /// Events of the account (user-data) stream: they travel on their own channel so an
    /// order's fill never queues behind market data.
    /// The user-data stream came back after a disconnect: account events may have been lost.
    pub fn is_user_reconnect(&self) -> bool {
        matches!(self, ExchangeEvent::Stream(StreamEvent::Connected { stream, reconnect: true })
            if stream == crate::exchange::binance::streams::USER_STREAM)
    }

    pub fn is_account(&self) -> bool {
        matches!(
            self,
            ExchangeEvent::OrderUpdate { .. }
                | ExchangeEvent::StopUpdate(_)
                | ExchangeEvent::AccountUpdate { .. }
                | ExchangeEvent::MarginCall { .. }
        )
    }
}

/// Where an exchange delivers its stream events: market data (klines, marks, tickers, stream
/// health) on one channel, account events on another.
#[derive(Debug, Clone)]
pub struct EventSinks {
    pub market: mpsc::Sender<ExchangeEvent>,
    pub account: mpsc::Sender<ExchangeEvent>,
}

impl EventSinks {
    /// Routes `ev` to its channel; fails only when that channel is closed.
    ///
    /// # Errors
    /// The receiver was dropped.
    pub async fn send(&self, ev: ExchangeEvent) -> Result<(), mpsc::error::SendError<ExchangeEvent>> {
        if ev.is_user_reconnect() {
            // The account side re-reads what it may have missed while disconnected; the market
            // side (stream health) gets the event too.
            if self.account.send(ev.clone()).await.is_err() {
                tracing::debug!("account channel closed");
            }
        }
        if ev.is_account() { self.account.send(ev).await } else { self.market.send(ev).await }
    }
}

impl From<mpsc::Sender<ExchangeEvent>> for EventSinks {
    /// Both kinds of event into one channel (tests that watch everything in arrival order).
    fn from(tx: mpsc::Sender<ExchangeEvent>) -> Self {
        EventSinks { market: tx.clone(), account: tx }
    }
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

    /// Closed and open klines, oldest first; `end_time` inclusive; at most `limit`. Which of
    /// them are final is for the caller to decide with
    /// [`crate::core::models::is_closed_at`] against [`Exchange::now_ms`] read before the call.
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
        events: EventSinks,
        cancel: CancellationToken,
    ) -> impl Future<Output = ExResult<StreamControl>> + Send;

    /// Counters for `/metrics`.
    fn stats(&self) -> ExchangeStats;

    /// Current exchange time estimate (local clock corrected by the synced offset).
    fn now_ms(&self) -> TimestampMs;
}

#[cfg(test)]
mod tests;
