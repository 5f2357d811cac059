//! Binance USDⓈ-M futures client: a raw layer mirroring endpoints (`rest.rs`: signing, weights,
//! retries), pure decoders (`wire.rs` for REST, `events.rs` for WebSocket frames), the stream
//! tasks (`streams.rs`) and, here, the domain layer implementing [`Exchange`]: symbol rules
//! cache, order idempotency (look up by client id before any resend), the algo-order budget.
//! Base URLs come from config so tests point it at the fake server on 127.0.0.1.
//!
//! Constructed without credentials the client is public-only (`--dry-run`, `download-data`):
//! every signed or API-key method returns [`ExchangeError::Refused`] without sending anything.

pub mod events;
pub mod requests;
pub mod rest;
pub mod signing;
pub mod streams;
pub mod wire;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::rest::{Call, RestClient, RestConfig, Security};
use crate::config::{Credentials, ExchangeSettings};
use crate::core::models::{Candle, Ticker, Timeframe, TimestampMs};
use crate::exchange::api_key::ApiKeyPermissions;
use crate::exchange::{
    AccountBalance, EventSinks, ExResult, Exchange, ExchangeError, ExchangePosition, ExchangeStats, MarginType,
    MarkPriceUpdate, MarketOrderRequest, OrderReport, StopOrder, StopRequest, StreamControl, SymbolInfo,
    TrailingStopRequest,
};

pub use self::wire::ACCOUNT_LOCK_KEY;

/// Binance's cap on resting conditional (algo) orders per account, across all symbols.
pub const MAX_ALGO_ORDERS: usize = 200;
/// Most candles one klines request returns.
pub const KLINES_PAGE_LIMIT: u16 = 1500;
/// Rows per `GET /fapi/v1/fundingRate` page (Binance's maximum).
pub const FUNDING_PAGE_LIMIT: usize = 1000;

/// Knobs that are not user configuration: production defaults, shrunk by tests.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// First retry delay of REST calls (doubles per retry: 1 s / 2 s / 4 s); also the first
    /// wait before looking up an order whose outcome is unknown.
    pub retry_base: Duration,
    /// Retries after the first try of a REST call (DESIGN §3: 3).
    pub max_retries: u32,
    /// First and largest WebSocket reconnect delay (exponential with jitter in between).
    pub ws_backoff_base: Duration,
    pub ws_backoff_max: Duration,
    /// Proactive reconnect before Binance's 24 h connection limit.
    pub max_connection_age: Duration,
    /// listenKey keep-alive period (Binance: every 30–50 min; a key lives 60 min).
    pub listen_key_keepalive: Duration,
    /// Staleness limit override (default: `exchange.stream_stale_secs`).
    pub stale_after: Option<Duration>,
    /// How often an order with unknown outcome is looked up before giving up.
    pub unknown_outcome_lookups: u32,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            retry_base: Duration::from_secs(1),
            max_retries: 3,
            ws_backoff_base: Duration::from_millis(500),
            ws_backoff_max: Duration::from_secs(60),
            max_connection_age: Duration::from_secs(23 * 3600 + 30 * 60),
            listen_key_keepalive: Duration::from_secs(30 * 60),
            stale_after: None,
            unknown_outcome_lookups: 3,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    orders_sent: AtomicU64,
    orders_rejected: AtomicU64,
    ws_reconnects: AtomicU64,
    dropped_messages: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) rest: RestClient,
    pub(crate) ws_url: String,
    pub(crate) stale_after: Duration,
    pub(crate) options: ClientOptions,
    exchange_info_refresh: Duration,
    symbols: Mutex<Option<(Instant, Vec<SymbolInfo>)>>,
    /// Resting algo orders we know of: id → symbol (the 200 budget).
    algo_open: Mutex<HashMap<i64, String>>,
    counters: Counters,
    client_id_seq: AtomicU64,
}

impl Inner {
    pub(crate) fn count_reconnect(&self) {
        self.counters.ws_reconnects.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_dropped(&self) {
        self.counters.dropped_messages.fetch_add(1, Ordering::Relaxed);
    }

    /// Keeps the algo budget in step with a stop's reported state.
    pub(crate) fn track_stop(&self, stop: &StopOrder) {
        if let Ok(mut open) = self.algo_open.lock() {
            if stop.status.is_resting() {
                open.insert(stop.algo_id, stop.symbol.clone());
            } else {
                open.remove(&stop.algo_id);
            }
        }
    }

    fn algo_open_count(&self) -> usize {
        self.algo_open.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub(crate) async fn klines(
        &self,
        symbol: &str,
        timeframe: Timeframe,
        start_time: Option<TimestampMs>,
        end_time: Option<TimestampMs>,
        limit: u16,
    ) -> ExResult<Vec<Candle>> {
        let limit = limit.clamp(1, KLINES_PAGE_LIMIT);
        let weight = match limit {
            0..=99 => 1,
            100..=499 => 2,
            500..=1000 => 5,
            _ => 10,
        };
        let mut call = Call::new(Method::GET, "/fapi/v1/klines", Security::None, weight)
            .param("symbol", symbol)
            .param("interval", timeframe.as_str())
            .param("limit", limit.to_string());
        if let Some(t) = start_time {
            call = call.param("startTime", t.to_string());
        }
        if let Some(t) = end_time {
            call = call.param("endTime", t.to_string());
        }
        let body = self.rest.send(&call).await?;
        wire::klines(&body)
    }

    pub(crate) async fn create_listen_key(&self) -> ExResult<String> {
        let body = self.rest.send(&Call::new(Method::POST, "/fapi/v1/listenKey", Security::ApiKey, 1)).await?;
        wire::listen_key(&body)
    }

    pub(crate) async fn keepalive_listen_key(&self) -> ExResult<()> {
        self.rest.send(&Call::new(Method::PUT, "/fapi/v1/listenKey", Security::ApiKey, 1)).await.map(|_| ())
    }
}

/// The live Binance USDⓈ-M client.
#[derive(Debug, Clone)]
pub struct BinanceClient {
    inner: Arc<Inner>,
}

/// `^[\.A-Z\:/a-z0-9_-]{1,36}$`, and not one of Binance's reserved prefixes.
fn valid_client_id(id: &str) -> bool {
    let reserved = ["autoclose-", "adl_autoclose", "settlement_autoclose-"];
    (1..=36).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'/' | b'_' | b'-'))
        && !reserved.iter().any(|p| id.starts_with(p))
}

fn check_client_id(id: &str) -> ExResult<()> {
    if valid_client_id(id) {
        Ok(())
    } else {
        Err(ExchangeError::Refused(format!(
            "client order id `{id}` is not 1-36 chars of [.A-Z:/a-z0-9_-] or uses a reserved prefix"
        )))
    }
}

/// An `UnknownOutcome` caused by `cause`.
fn unknown_outcome(client_id: &str, detail: impl Into<String>, cause: ExchangeError) -> ExchangeError {
    ExchangeError::UnknownOutcome {
        client_order_id: client_id.to_string(),
        detail: detail.into(),
        cause: Some(Arc::new(cause)),
    }
}

/// The exchange accepted an order (HTTP 200) but its answer cannot be read: the order exists,
/// its state is unknown until it is looked up.
fn unreadable_acceptance(client_id: &str, decode: ExchangeError) -> ExchangeError {
    unknown_outcome(client_id, "accepted (HTTP 200) with an unreadable answer", decode)
}

fn refuse_nonpositive(what: &str, v: rust_decimal::Decimal) -> ExResult<()> {
    if v > rust_decimal::Decimal::ZERO {
        Ok(())
    } else {
        Err(ExchangeError::Refused(format!("{what} must be positive, got {v}")))
    }
}

impl BinanceClient {
    /// A client from settings. Without credentials it is public-only.
    ///
    /// # Errors
    /// [`ExchangeError::Transport`] when the HTTP client cannot be built.
    pub fn new(settings: &ExchangeSettings, credentials: Option<Credentials>) -> ExResult<Self> {
        Self::with_options(settings, credentials, ClientOptions::default())
    }

    /// A public-only client (no API key: signed methods are refused locally).
    ///
    /// # Errors
    /// As [`BinanceClient::new`].
    pub fn public(settings: &ExchangeSettings) -> ExResult<Self> {
        Self::new(settings, None)
    }

    /// A client with non-default internal knobs (tests use millisecond delays).
    ///
    /// # Errors
    /// As [`BinanceClient::new`].
    pub fn with_options(
        settings: &ExchangeSettings,
        credentials: Option<Credentials>,
        options: ClientOptions,
    ) -> ExResult<Self> {
        let cfg = RestConfig {
            base_url: settings.effective_rest_url().trim_end_matches('/').to_string(),
            spot_base_url: settings.effective_spot_rest_url().map(|u| u.trim_end_matches('/').to_string()),
            recv_window_ms: settings.recv_window_ms,
            timeout: Duration::from_secs(settings.request_timeout_secs.max(1)),
            min_spacing: Duration::from_millis(settings.rest_min_spacing_ms),
            weight_limit_per_min: settings.weight_limit_per_min,
            weight_slowdown_pct: settings.weight_slowdown_pct,
            time_sync_interval: Duration::from_secs(settings.time_sync_interval_secs.max(1)),
            retry_base: options.retry_base,
            max_retries: options.max_retries,
            default_rate_limit_pause: Duration::from_secs(60),
        };
        let stale_after = options.stale_after.unwrap_or(Duration::from_secs(settings.stream_stale_secs.max(1)));
        let inner = Inner {
            rest: RestClient::new(cfg, credentials)?,
            ws_url: settings.effective_ws_url().trim_end_matches('/').to_string(),
            stale_after,
            exchange_info_refresh: Duration::from_secs(settings.exchange_info_refresh_secs.max(1)),
            symbols: Mutex::new(None),
            algo_open: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            client_id_seq: AtomicU64::new(0),
            options,
        };
        Ok(BinanceClient { inner: Arc::new(inner) })
    }

    /// True when the client holds no API credentials.
    pub fn is_public_only(&self) -> bool {
        !self.inner.rest.has_credentials()
    }

    /// REST requests that actually left this client.
    pub fn requests_sent(&self) -> i64 {
        self.inner.rest.requests_sent()
    }

    /// A fresh client order id, unique per process and run: `ke-<ms base36>-<seq>-<rand>`.
    pub fn new_client_order_id(&self) -> String {
        let seq = self.inner.client_id_seq.fetch_add(1, Ordering::Relaxed);
        let salt: u32 = rand::random::<u32>() & 0xFFFFF;
        format!("ke-{}-{}-{}", base36(u64::try_from(self.now_ms()).unwrap_or(0)), base36(seq), base36(u64::from(salt)))
    }

    /// Measures the server-time offset now (the client also does it lazily and periodically).
    ///
    /// # Errors
    /// Transport and decode errors of `GET /fapi/v1/time`.
    pub async fn sync_time(&self) -> ExResult<i64> {
        self.inner.rest.sync_time().await
    }

    /// Mark prices and funding of every symbol (or one), `GET /fapi/v1/premiumIndex`.
    ///
    /// # Errors
    /// Transport, HTTP and decode errors.
    pub async fn premium_index(&self, symbol: Option<&str>) -> ExResult<Vec<MarkPriceUpdate>> {
        let mut call =
            Call::new(Method::GET, "/fapi/v1/premiumIndex", Security::None, if symbol.is_some() { 1 } else { 10 });
        if let Some(s) = symbol {
            call = call.param("symbol", s);
        }
        wire::premium_index(&self.send(&call).await?)
    }

    /// `GET /fapi/v1/fundingInfo` as Binance sent it (every field kept; public, weight 0 in
    /// the funding bucket): the symbols whose funding interval or caps are adjusted.
    ///
    /// # Errors
    /// Transport and HTTP errors.
    pub async fn funding_info_raw(&self) -> ExResult<Vec<u8>> {
        self.send(&Call::new(Method::GET, "/fapi/v1/fundingInfo", Security::None, 1)).await
    }

    /// One page of settled fundings of `symbol` from `start` to `end` (inclusive, ms),
    /// oldest first, at most [`FUNDING_PAGE_LIMIT`] rows (`GET /fapi/v1/fundingRate`, the
    /// bucket it shares with `fundingInfo`: 500 per 5 min per IP).
    ///
    /// # Errors
    /// Transport, HTTP and decode errors.
    pub async fn funding_rate_history(
        &self,
        symbol: &str,
        start: TimestampMs,
        end: TimestampMs,
    ) -> ExResult<Vec<crate::data::funding_history::FundingRow>> {
        let call = Call::new(Method::GET, "/fapi/v1/fundingRate", Security::None, 1)
            .param("symbol", symbol)
            .param("startTime", start.to_string())
            .param("endTime", end.to_string())
            .param("limit", FUNDING_PAGE_LIMIT.to_string());
        wire::funding_rates(&self.send(&call).await?)
    }

    /// Funding interval per symbol (8 h for symbols `fundingInfo` does not list).
    ///
    /// # Errors
    /// Transport, HTTP and decode errors.
    pub async fn funding_intervals(&self) -> ExResult<crate::data::funding::FundingIntervals> {
        let body = self.funding_info_raw().await?;
        crate::data::funding::FundingIntervals::from_json(&body)
            .map_err(|e| ExchangeError::decode_with("funding info", e))
    }

    /// The API key's permissions (`GET /sapi/v1/account/apiRestrictions` on the spot host);
    /// `Ok(None)` where there is no Wallet API (the testnet): nothing is sent then.
    ///
    /// # Errors
    /// Transport, HTTP and decode errors; [`ExchangeError::Refused`] without credentials.
    pub async fn api_key_permissions(&self) -> ExResult<Option<ApiKeyPermissions>> {
        if !self.inner.rest.has_spot_host() {
            return Ok(None);
        }
        let call = Call::new(Method::GET, "/sapi/v1/account/apiRestrictions", Security::Signed, 1).on_spot_host();
        wire::api_restrictions(&self.send(&call).await?).map(Some)
    }

    async fn send(&self, call: &Call) -> ExResult<Vec<u8>> {
        self.inner.rest.send(call).await
    }

    /// Fetches exchange info (+ leverage brackets with credentials) and caches it.
    async fn refresh_symbols(&self) -> ExResult<Vec<SymbolInfo>> {
        let body = self.send(&Call::new(Method::GET, "/fapi/v1/exchangeInfo", Security::None, 1)).await?;
        let info = wire::exchange_info(&body)?;
        if !info.skipped.is_empty() {
            tracing::warn!(symbols = ?info.skipped, "exchange info: symbols with unreadable filters skipped");
        }
        if let Some(limit) = info.weight_limit_per_min {
            self.inner.rest.set_weight_limit(limit);
        }
        let brackets = if self.inner.rest.has_credentials() {
            let body = self.send(&Call::new(Method::GET, "/fapi/v1/leverageBracket", Security::Signed, 1)).await?;
            wire::leverage_brackets(&body)?
        } else {
            HashMap::new()
        };
        let symbols: Vec<SymbolInfo> = info
            .symbols
            .into_iter()
            .map(|mut filters| {
                let max_leverage = brackets.get(&filters.symbol).copied().unwrap_or(1).max(1);
                filters.max_leverage = max_leverage;
                SymbolInfo { filters, max_leverage }
            })
            .collect();
        if let Ok(mut cache) = self.inner.symbols.lock() {
            *cache = Some((Instant::now(), symbols.clone()));
        }
        Ok(symbols)
    }

    async fn place_order_once(&self, req: &MarketOrderRequest) -> ExResult<OrderReport> {
        let call = requests::market_order(req);
        self.inner.counters.orders_sent.fetch_add(1, Ordering::Relaxed);
        let body = self.inner.rest.send(&call).await?;
        // A 200 whose body we cannot read: the order exists, its report is unknown.
        wire::order(&body).map_err(|e| unreadable_acceptance(&req.client_order_id, e))
    }

    /// Looks up a just-sent order whose outcome is unknown. `Ok(None)`: the exchange does not
    /// know it (safe to resend). `Err`: still unknown after every lookup.
    async fn resolve_unknown_order(
        &self,
        req: &MarketOrderRequest,
        cause: &ExchangeError,
    ) -> ExResult<Option<OrderReport>> {
        let lookups = self.inner.options.unknown_outcome_lookups.max(1);
        let mut last = cause.clone();
        for i in 0..lookups {
            tokio::time::sleep(rest::retry_delay(self.inner.options.retry_base, i)).await;
            match self.query_order(&req.symbol, &req.client_order_id).await {
                Ok(found) => return Ok(found),
                Err(e) => last = e,
            }
        }
        Err(unknown_outcome(&req.client_order_id, format!("{lookups} lookups failed"), last))
    }

    async fn query_stop_by_client_id(&self, client_id: &str) -> ExResult<Option<StopOrder>> {
        match self.inner.rest.send(&requests::query_algo_order(client_id)).await {
            Ok(body) => wire::algo_order(&body).map(Some),
            Err(e) if matches!(e.code(), Some(-2013 | -2011)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends one algo order (`call`, built by [`requests`]) at most twice: the second time only
    /// after a lookup by its client algo id proved the first absent.
    async fn place_algo(&self, call: &rest::Call, client_id: &str) -> ExResult<StopOrder> {
        if !self.inner.rest.has_credentials() {
            return Err(ExchangeError::Refused("POST /fapi/v1/algoOrder requires API credentials".into()));
        }
        let open = self.inner.algo_open_count();
        if open >= MAX_ALGO_ORDERS {
            return Err(ExchangeError::Refused(format!(
                "algo-order budget exhausted: {open} of {MAX_ALGO_ORDERS} conditional orders rest on the account"
            )));
        }
        for send in 0..2 {
            self.inner.counters.orders_sent.fetch_add(1, Ordering::Relaxed);
            let sent = match self.inner.rest.send(call).await {
                Ok(body) => wire::algo_order(&body).map_err(|e| unreadable_acceptance(client_id, e)),
                Err(e) => Err(e),
            };
            match sent {
                Ok(stop) => {
                    self.inner.track_stop(&stop);
                    return Ok(stop);
                }
                Err(e) if e.is_unknown_outcome() || e.code() == Some(-4116) => {
                    tracing::warn!(client_id = %client_id, error = %e, "stop outcome unknown; looking it up");
                    let mut found = Ok(None);
                    for i in 0..self.inner.options.unknown_outcome_lookups.max(1) {
                        tokio::time::sleep(rest::retry_delay(self.inner.options.retry_base, i)).await;
                        found = self.query_stop_by_client_id(client_id).await;
                        if found.is_ok() {
                            break;
                        }
                    }
                    match found {
                        Ok(Some(stop)) => {
                            self.inner.track_stop(&stop);
                            return Ok(stop);
                        }
                        Ok(None) if send == 0 && e.code() != Some(-4116) => {}
                        Ok(None) => return Err(unknown_outcome(client_id, "not found after sending", e)),
                        Err(lookup) => {
                            return Err(unknown_outcome(client_id, format!("lookups failed ({lookup})"), e));
                        }
                    }
                }
                Err(e) => return Err(self.rejected(e)),
            }
        }
        Err(ExchangeError::UnknownOutcome {
            client_order_id: client_id.to_string(),
            detail: "gave up".into(),
            cause: None,
        })
    }

    /// Places a reduce-only trailing stop (`TRAILING_STOP_MARKET` with `callbackRate` and an
    /// optional `activatePrice`), idempotent per client id like [`Exchange::place_stop`].
    ///
    /// # Errors
    /// [`ExchangeError::Refused`] for a callback rate outside 0.1–20 % or a bad id, before
    /// anything is sent; otherwise as [`Exchange::place_stop`].
    pub async fn place_trailing_stop(&self, req: &TrailingStopRequest) -> ExResult<StopOrder> {
        check_client_id(&req.client_id)?;
        let call = requests::trailing_stop(req)?;
        self.place_algo(&call, &req.client_id).await
    }

    fn rejected(&self, e: ExchangeError) -> ExchangeError {
        if matches!(e, ExchangeError::Api { .. }) {
            self.inner.counters.orders_rejected.fetch_add(1, Ordering::Relaxed);
        }
        e
    }
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS.get(usize::try_from(n % 36).unwrap_or(0)).copied().unwrap_or(b'0'));
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

impl Exchange for BinanceClient {
    fn is_paper(&self) -> bool {
        false
    }

    async fn symbols(&self) -> ExResult<Vec<SymbolInfo>> {
        let cached = self.inner.symbols.lock().ok().and_then(|c| {
            c.as_ref().filter(|(at, _)| at.elapsed() < self.inner.exchange_info_refresh).map(|(_, s)| s.clone())
        });
        match cached {
            Some(s) => Ok(s),
            None => self.refresh_symbols().await,
        }
    }

    async fn tickers(&self) -> ExResult<Vec<Ticker>> {
        let body = self.send(&Call::new(Method::GET, "/fapi/v1/ticker/24hr", Security::None, 40)).await?;
        let (tickers, dropped) = wire::tickers(&body)?;
        if dropped > 0 {
            tracing::warn!(dropped, "24h tickers with unreadable numbers dropped");
        }
        Ok(tickers)
    }

    async fn klines(
        &self,
        symbol: &str,
        timeframe: Timeframe,
        start_time: Option<TimestampMs>,
        end_time: Option<TimestampMs>,
        limit: u16,
    ) -> ExResult<Vec<Candle>> {
        self.inner.klines(symbol, timeframe, start_time, end_time, limit).await
    }

    async fn locked_symbols(&self) -> ExResult<BTreeSet<String>> {
        let body = self.send(&Call::new(Method::GET, "/fapi/v1/apiTradingStatus", Security::Signed, 10)).await?;
        let locked = wire::locked_symbols(&body, self.now_ms())?;
        if !locked.is_empty() {
            tracing::warn!(symbols = ?locked, "quantitative-rules trading lock in force");
        }
        Ok(locked)
    }

    async fn hedge_mode(&self) -> ExResult<bool> {
        let body = self.send(&Call::new(Method::GET, "/fapi/v1/positionSide/dual", Security::Signed, 30)).await?;
        wire::dual_side(&body)
    }

    async fn balance(&self) -> ExResult<AccountBalance> {
        let body = self.send(&Call::new(Method::GET, "/fapi/v3/account", Security::Signed, 5)).await?;
        wire::account_balance(&body)
    }

    async fn positions(&self) -> ExResult<Vec<ExchangePosition>> {
        // v2 carries leverage (v3 does not, it would need symbolConfig as a second call).
        let body = self.send(&Call::new(Method::GET, "/fapi/v2/positionRisk", Security::Signed, 5)).await?;
        wire::positions(&body)
    }

    async fn open_orders(&self) -> ExResult<Vec<OrderReport>> {
        let body = self.send(&Call::new(Method::GET, "/fapi/v1/openOrders", Security::Signed, 40)).await?;
        wire::orders(&body)
    }

    async fn open_stops(&self) -> ExResult<Vec<StopOrder>> {
        let body = self.send(&Call::new(Method::GET, "/fapi/v1/openAlgoOrders", Security::Signed, 40)).await?;
        let stops: Vec<StopOrder> = wire::algo_orders(&body)?.into_iter().filter(|s| s.status.is_resting()).collect();
        // The exchange's list is the truth for the budget.
        if let Ok(mut open) = self.inner.algo_open.lock() {
            *open = stops.iter().map(|s| (s.algo_id, s.symbol.clone())).collect();
        }
        Ok(stops)
    }

    async fn prepare_symbol(&self, symbol: &str, margin: MarginType, leverage: u32) -> ExResult<()> {
        if leverage == 0 || leverage > 125 {
            return Err(ExchangeError::Refused(format!("leverage {leverage} outside 1..=125")));
        }
        let margin_type = match margin {
            MarginType::Isolated => "ISOLATED",
            MarginType::Crossed => "CROSSED",
        };
        match self.send(&requests::margin_type(symbol, margin_type)).await {
            Ok(_) => {}
            // -4046: "No need to change margin type." — already set.
            Err(e) if e.code() == Some(-4046) => {}
            Err(e) => return Err(e),
        }
        self.send(&requests::leverage(symbol, leverage)).await.map(|_| ())
    }

    async fn place_market(&self, req: &MarketOrderRequest) -> ExResult<OrderReport> {
        check_client_id(&req.client_order_id)?;
        refuse_nonpositive("quantity", req.qty)?;
        if !self.inner.rest.has_credentials() {
            return Err(ExchangeError::Refused("POST /fapi/v1/order requires API credentials".into()));
        }
        // At most two sends per intent: the second only after a lookup proved the first absent.
        for send in 0..2 {
            match self.place_order_once(req).await {
                Ok(report) => return Ok(report),
                Err(e) if e.code() == Some(-4116) => {
                    // Duplicate client id: an earlier send of this intent landed.
                    return match self.resolve_unknown_order(req, &e).await? {
                        Some(report) => Ok(report),
                        None => Err(unknown_outcome(
                            &req.client_order_id,
                            "duplicate client order id, yet the order cannot be found",
                            e,
                        )),
                    };
                }
                Err(e) if e.is_unknown_outcome() => {
                    tracing::warn!(client_order_id = %req.client_order_id, error = %e, "order outcome unknown; looking it up");
                    match self.resolve_unknown_order(req, &e).await? {
                        Some(report) => return Ok(report),
                        None if send == 0 => {
                            tracing::warn!(client_order_id = %req.client_order_id, "order not on the exchange; sending it again");
                        }
                        None => return Err(unknown_outcome(&req.client_order_id, "not found after a resend", e)),
                    }
                }
                Err(e) => return Err(self.rejected(e)),
            }
        }
        Err(ExchangeError::UnknownOutcome {
            client_order_id: req.client_order_id.clone(),
            detail: "gave up".into(),
            cause: None,
        })
    }

    async fn query_order(&self, symbol: &str, client_order_id: &str) -> ExResult<Option<OrderReport>> {
        if requests::beyond_lookup_window(client_order_id, self.now_ms()) {
            tracing::info!(%symbol, client_order_id, "order older than the exchange's 3-month look-up window; the journal is the record");
            return Ok(None);
        }
        match self.inner.rest.send(&requests::query_order(symbol, client_order_id)).await {
            Ok(body) => wire::order(&body).map(Some),
            // -2013: "Order does not exist."
            Err(e) if e.code() == Some(-2013) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn place_stop(&self, req: &StopRequest) -> ExResult<StopOrder> {
        check_client_id(&req.client_id)?;
        refuse_nonpositive("quantity", req.qty)?;
        refuse_nonpositive("trigger price", req.trigger_price)?;
        self.place_algo(&requests::stop_market(req), &req.client_id).await
    }

    /// `algoId` alone identifies the order: the endpoint takes no `symbol`.
    async fn cancel_stop(&self, _symbol: &str, algo_id: i64) -> ExResult<()> {
        let result = match self.send(&requests::cancel_algo_order(algo_id)).await {
            Ok(_) => Ok(()),
            // Already triggered, cancelled or unknown: gone either way.
            Err(e) if matches!(e.code(), Some(-2011 | -2013)) => Ok(()),
            Err(e) => Err(e),
        };
        if result.is_ok()
            && let Ok(mut open) = self.inner.algo_open.lock()
        {
            open.remove(&algo_id);
        }
        result
    }

    async fn cancel_all(&self, symbol: &str) -> ExResult<()> {
        let plain = requests::cancel_open_orders(symbol);
        let algo = requests::cancel_open_algo_orders(symbol);
        // Both, even if the first fails: stops must not outlive a cancel-all.
        let first = self.send(&plain).await;
        let second = self.send(&algo).await;
        if second.is_ok()
            && let Ok(mut open) = self.inner.algo_open.lock()
        {
            open.retain(|_, s| s != symbol);
        }
        first.and(second).map(|_| ())
    }

    async fn start_streams(&self, events: EventSinks, cancel: CancellationToken) -> ExResult<StreamControl> {
        let (tx, rx) = watch::channel(BTreeSet::new());
        tokio::spawn(streams::run_market_stream(Arc::clone(&self.inner), events.clone(), rx, cancel.child_token()));
        if self.inner.rest.has_credentials() {
            tokio::spawn(streams::run_user_stream(Arc::clone(&self.inner), events, cancel.child_token()));
        }
        Ok(StreamControl { kline_symbols: tx })
    }

    fn stats(&self) -> ExchangeStats {
        let c = &self.inner.counters;
        ExchangeStats {
            rest_weight_used_1m: self.inner.rest.weight_used(),
            clock_offset_ms: self.inner.rest.clock_offset_ms(),
            orders_sent: c.orders_sent.load(Ordering::Relaxed),
            orders_rejected: c.orders_rejected.load(Ordering::Relaxed),
            ws_reconnects: c.ws_reconnects.load(Ordering::Relaxed),
            dropped_messages: c.dropped_messages.load(Ordering::Relaxed),
            algo_orders_open: u32::try_from(self.inner.algo_open_count()).unwrap_or(u32::MAX),
        }
    }

    fn now_ms(&self) -> TimestampMs {
        self.inner.rest.now_ms()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    fn settings() -> ExchangeSettings {
        ExchangeSettings {
            rest_url: "http://127.0.0.1:9".into(),
            ws_url: "ws://127.0.0.1:9".into(),
            testnet: false,
            recv_window_ms: 5000,
            margin_type: crate::config::MarginType::Isolated,
            allow_hedge_mode: false,
            request_timeout_secs: 1,
            stream_stale_secs: 30,
            time_sync_interval_secs: 300,
            exchange_info_refresh_secs: 3600,
            trading_status_interval_secs: 300,
            rest_min_spacing_ms: 100,
            weight_limit_per_min: 2400,
            weight_slowdown_pct: 80.0,
            spot_rest_url: "http://127.0.0.1:9".into(),
            refuse_unsafe_key: false,
            dumps_url: "http://127.0.0.1:9".into(),
        }
    }

    #[test]
    fn generated_client_ids_are_unique_and_valid() {
        let Ok(client) = BinanceClient::public(&settings()) else { panic!("client") };
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| client.new_client_order_id()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|id| valid_client_id(id)));
        assert!(client.is_public_only());
        assert_eq!(client.requests_sent(), 0);
    }

    #[test]
    fn client_ids_are_checked() {
        assert!(valid_client_id("ke-abc-1-x"));
        assert!(valid_client_id("A.b:c/d_e-f"));
        assert!(!valid_client_id(""));
        assert!(!valid_client_id(&"x".repeat(37)));
        assert!(!valid_client_id("has space"));
        assert!(!valid_client_id("autoclose-123"));
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
    }
}
