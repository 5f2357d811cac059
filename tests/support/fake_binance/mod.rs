//! A fake Binance USDⓈ-M futures exchange for integration tests: real HTTP and WebSocket servers
//! on 127.0.0.1 (random ports) that behave like Binance as described in
//! `shared/docs/binance-usdm-futures.md`, with a small matching engine and fault switches.
//!
//! # Starting
//! ```ignore
//! mod support;
//! use support::fake_binance::{FakeBinance, FakeConfig, FaultAction, FaultScope};
//! let fake = FakeBinance::start(FakeConfig::default()).await;      // inside a tokio runtime
//! fake.rest_url();   // "http://127.0.0.1:PORT"  (REST base; paths /fapi/...)
//! fake.ws_url();     // "ws://127.0.0.1:PORT"    (WS base without route)
//! // dropped → both servers and all connections shut down
//! ```
//! The servers run as tasks on the caller's runtime: do not block it (`std::thread::sleep`, a
//! blocking `Child::wait`) or the server stalls. For sync tests or tests that block, use
//! `FakeBinance::start_on_own_runtime(config)` (own thread + runtime) and the `*_blocking` waits.
//! `FakeConfig::default()`: API key/secret = Binance's documented HMAC example pair
//! ([`DOC_API_KEY`], [`DOC_API_SECRET`]); symbols BTCUSDT (68000), ETHUSDT (3500), SOLUSDT (150)
//! with the real filters and leverage brackets; `.with_generated_symbols(n)` adds `GEN000USDT`..;
//! `.with_edge_case_symbols()` adds a quarterly, a SETTLING, a USDC-quoted and a non-ASCII symbol;
//! 10 000 USDT; taker 0.05 % / maker 0.02 %; one-way mode; 20x ISOLATED; weight limit 2400/min;
//! a market tick every 1000 ms (`.without_market_tick()` for fully test-driven streams);
//! listenKey TTL 60 min; 200 open algo orders max; WS ping every 3 min.
//!
//! # WebSocket routes (the 2026-04-23 split; `ws_url()` + path)
//! - `/market/ws/<s1>/<s2>` (raw payloads) and `/market/stream?streams=<s1>/<s2>` (combined:
//!   `{"stream":..,"data":..}`): kline, markPrice, `!markPrice@arr[@1s]`, miniTicker,
//!   `!miniTicker@arr`, ticker, `!ticker@arr`, and anything pushed with `push_raw`.
//! - `/public/ws|stream...`: book streams (`@bookTicker`, `@depth..`, `@trade`).
//! - `/private/ws?listenKey=K[&events=A/B]`, `/private/ws/<K>`, `/private/stream?listenKey=K`:
//!   user data (ORDER_TRADE_UPDATE, TRADE_LITE, ACCOUNT_UPDATE, ALGO_UPDATE,
//!   ACCOUNT_CONFIG_UPDATE, listenKeyExpired). An unknown/expired key is accepted and silent.
//! - Legacy `/ws...` and `/stream...` (unrouted) deliver only `/public` streams; a market
//!   subscription there (or on `/public`) is ACKed and stays silent, as on Binance.
//! - Control frames: SUBSCRIBE / UNSUBSCRIBE → `{"result":null,"id":N}`, LIST_SUBSCRIPTIONS,
//!   SET_PROPERTY/GET_PROPERTY `combined`; errors `{"code":0..3,"msg":..,"id":..}`. More than 10
//!   incoming messages in one second closes the connection. The server pings every
//!   `ws_ping_interval_ms` and drops a client silent for `ws_pong_timeout_ms`.
//!
//! # REST endpoints
//! Public: `GET /fapi/v1/{ping,time,exchangeInfo,klines,ticker/24hr,premiumIndex}`.
//! Signed (key + HMAC + timestamp): `GET /fapi/v1/{leverageBracket,apiTradingStatus,
//! positionSide/dual,order,openOrder,openOrders,allOrders,algoOrder,openAlgoOrders,allAlgoOrders,
//! symbolConfig,accountConfig,commissionRate,userTrades}`, `GET /fapi/v2|v3/{positionRisk,account,
//! balance}`, `POST /fapi/v1/{positionSide/dual,marginType,leverage,order,algoOrder}`,
//! `DELETE /fapi/v1/{order,allOpenOrders,algoOrder,algoOpenOrders}`.
//! Key only: `POST/PUT/DELETE /fapi/v1/listenKey`. Public: `GET /fapi/v1/fundingRate` (settled fundings, paged
//! by `startTime`/`endTime`/`limit` ≤ 1000), `GET /fapi/v1/fundingInfo` (symbols
//! set with `set_funding_info`). Wallet API (the spot host, served on the same port): signed
//! `GET /sapi/v1/account/apiRestrictions` (`set_api_restrictions`; default: a safe key).
//! Anything else: 404 `{"code":-5000,..}`.
//!
//! # Binance behaviour enforced
//! - Auth: missing key -2014 (401), wrong key -2015 (401), signature = HMAC-SHA256 over the raw
//!   query string concatenated with the raw body, `signature` last, else -1022; missing
//!   signature/timestamp -1102; `timestamp` ≥ server+1000 or older than `recvWindow` (default
//!   5000, max 60000) → -1021. Duplicate parameter -1101; query wins over body.
//! - Numbers must be plain decimals (`1e-5` → -1100). Price/qty: more decimals than tick/step →
//!   -1111, not a multiple → -4014/-4023, below min/above max → -4013/-4016, -4004/-4005
//!   (MARKET uses MARKET_LOT_SIZE), qty ≤ 0 → -4003; LIMIT outside PERCENT_PRICE → -4016/-4024.
//! - `/fapi/v1/order`: only LIMIT/MARKET; conditional types → -4120; `stopPrice` → -1106;
//!   MARKET with `timeInForce` → -1106;
//!   one-way mode needs positionSide BOTH/absent (else -4061), hedge mode needs LONG/SHORT and
//!   no reduceOnly (-1106); notional (mark × qty for MARKET) below MIN_NOTIONAL and not
//!   reduce-only → -4164; reduce-only with nothing to reduce → -2022; initial margin + fee >
//!   available → -2019; duplicate `newClientOrderId` of any known order → -4116 (checked
//!   before everything but the symbol, so a blind resend of an order that landed always gets
//!   -4116); bad id → -4015; symbol not TRADING → -4140; quantitative lock → -4400; GTX that would take → -5022.
//!   `newOrderRespType` ACK (default) answers status NEW before the fill; RESULT answers FILLED.
//!   GET by orderId/origClientOrderId, unknown → -2013; DELETE unknown/closed → -2011.
//! - Algo API: `algoType=CONDITIONAL`, STOP_MARKET/TAKE_PROFIT_MARKET/STOP/TAKE_PROFIT with
//!   `triggerPrice`, TRAILING_STOP_MARKET with `callbackRate` (0.1–20 %) and optional
//!   `activatePrice` (BUY below / SELL above the price, else -2021; the legacy `activationPrice`
//!   → -1104, `triggerPrice` on a trailing stop → -1106; it reports NEW twice: `ia:false`, then
//!   `ia:true` once activated), `workingType` MARK_PRICE or CONTRACT_PRICE (default), `closePosition`
//!   (not with quantity -4137 or reduceOnly -1106), would trigger at once → -2021, more than
//!   `max_algo_orders` open → -4045, duplicate clientAlgoId → -4116. No margin check before the
//!   trigger. Algo orders are not in `openOrders` and `allOpenOrders` does not cancel them.
//! - Matching: MARKET fills at once at the last price (which follows the mark unless set apart);
//!   positions carry average entry price; reduce-only never flips (clamped, remainder EXPIRED);
//!   a plain order larger than the position flips it; taker fee on every fill; realized PnL into
//!   the wallet; LIMIT orders rest and fill as maker when the last price crosses.
//!   A stop fires when its working price crosses the trigger: ALGO_UPDATE TRIGGERING →
//!   TRIGGERED (with `ai`) → order NEW/TRADE → FINISHED (with `ap`/`aq`), or REJECTED with
//!   `rm` ("Reduce Only reject" when there is nothing left to close). The triggered order
//!   carries the clientAlgoId as its `c`/clientOrderId and `ot` = the algo type. Reduce-only
//!   stops stay resting after their position closed (Binance does not clean them up).
//! - Liquidation (opt-in: `FakeConfig::liquidation` / `set_liquidation(true)`): when initial
//!   margin at entry + uPnL ≤ maintenance margin (brackets), an `autoclose-…` IOC order closes
//!   the position at the mark (ORDER_TRADE_UPDATE x=CALCULATED NEW → FILLED, ACCOUNT_UPDATE)
//!   and the whole margin is lost (the rest goes as clearance fee). Stops fire first.
//! - Events per fill: ORDER_TRADE_UPDATE NEW, TRADE_LITE, ORDER_TRADE_UPDATE TRADE,
//!   ACCOUNT_UPDATE (m=ORDER, balance + the changed position); `E` strictly increases.
//! - listenKey: POST returns the live key (extended) or a new one; PUT of an expired/unknown key →
//!   -1125; on expiry `listenKeyExpired` is pushed once, then silence.
//! - ORDERS limits (`order_limits`, default 300/10 s and 1200/min, counted on accepted orders):
//!   over → 429 -1015.
//! - Weight: `X-MBX-USED-WEIGHT-1M` on every answer (Binance weights), `X-MBX-ORDER-COUNT-10S/1M`
//!   on order answers; over `weight_limit_1m` → 429 -1003 with `Retry-After`; continuing past
//!   `requests_429_before_ban` 429s → 418 ban for `ban_secs`.
//!
//! # Test controls (all `&self`, thread-safe)
//! Market: `set_mark_price`, `set_last_price`, `set_price` (both; each runs stop triggers and
//! limit fills and pushes markPrice), `set_funding_rate`, `apply_funding`, `set_ticker_stats`,
//! `set_klines`, `push_kline(symbol, interval, candle, closed)` (stores it for REST and pushes
//! it), `push_market_tick`, `push_raw(stream, payload)`, `add_symbol`, `set_symbol_status`,
//! `set_symbol_locked`, `set_price_walk(Some((max_bps, seed)))` (seeded random walk of every
//! price on each tick), `set_auto_klines(true)` (each tick streams the current candle of every
//! subscribed kline stream from the last price and closes it at the interval boundary).
//! `fill_history(interval, n, seed)` (seeded candle history for every symbol, ending now at
//! the current price). Candle generators: `trend_candles`, `random_walk_candles`, `candle_at`, `align`,
//! `interval_ms`. Account: `set_wallet_balance`, `set_position`, `set_hedge_mode`.
//! User stream: `push_margin_call(symbol)`, `push_user_event(json)`. Bad input on any route:
//! `push_text(route, text)` (raw frame to every connection of the route).
//! Clock: `set_clock_skew_ms` (server time = wall clock + skew).
//! `FakeBinance` is `Send + Sync`: wrap it in an `Arc` to drive it from another task.
//!
//! # Fault switches
//! `fail_next(n, scope, action)` queues a fault for the next `n` requests in `scope`
//! ([`FaultScope`]: Any, Signed, OrderPlacement, MarketOrder, AlgoOrder, Endpoint(method, path),
//! SymbolOrders(symbol) — POST/GET/DELETE `/fapi/v1/order` and `/fapi/v1/algoOrder` of one
//! symbol, e.g. `fail_next(n, FaultScope::symbol_orders("XRPUSDT"),
//! FaultAction::TimeoutAfterExecute { ms: 45_000 })`: XRPUSDT's orders execute and their answers
//! hang 45 s while other symbols' orders are answered at once (each connection is served
//! concurrently and no lock is held while a request sleeps));
//! actions ([`FaultAction`]): `unknown_after_execute()` (503 after really placing the order),
//! `service_unavailable()`, `internal_error()`, `backend_timeout_after_execute()` (408/-1007),
//! `overloaded()` (-1008), `Html{..}` (proxy page), `Body{http_status, body, execute_first}`
//! (any body, e.g. NaN prices), `TruncatedBody`, `DropConnection{execute_first}` (the TCP
//! connection breaks without a usable answer; logged with status 0), `TimeoutNotExecuted{ms}`,
//! `TimeoutAfterExecute{ms}`, `Hold{execute_first}` (the request waits — after executing, if
//! asked — until `release_held_requests()`; `held_requests()` counts them: for kill -9 at an
//! exact point of the order flow), `Latency{ms}`, `RateLimited{retry_after_secs}`, `Ban{secs}`,
//! `set_trigger_never_fills(symbol, on)` (a triggered algo order stays TRIGGERING and never
//! produces an order), `InvalidTimestamp` (-1021, signed only), `InsufficientMargin` (-2019, non-reduce-only
//! orders only). Shorthands: `fail_next_orders_after_execute(n)`, `timeout_next(n, ms,
//! executed)`, `rate_limit_next(n, secs)`, `ban_for(secs)`, `invalid_timestamp_next(n)`,
//! `insufficient_margin_once()`, `latency_spike_next(n, ms)`, `set_latency_ms(ms)`,
//! `set_random_failures(fraction, after_execute_fraction, seed)` and
//! `set_chaos(Some(Chaos { p_5xx, p_5xx_after_execute, p_timeout, p_rate_limit,
//! p_invalid_timestamp, p_latency_spike, p_drop_connection, .. }), seed)` (seeded, one draw per request;
//! `Chaos::issue7(timeout_ms)` is the issue-7 mix), `clear_faults()`, `injected_faults()`
//! (counts by kind, for reports). WebSocket: `drop_ws_connections()` (no close frame),
//! `set_ws_drop_interval(Some(d))` (drop everything every `d`), `close_ws_connections()`,
//! `set_ws_silent(bool)` (ACKs but no data: wrong-route simulation), `set_ws_route_silent(route,
//! bool)` (one route only), `set_ws_refuse(bool)`
//! (handshake 503), `expire_listen_key()`, `ping_ws_clients()`.
//!
//! # Inspection
//! `requests()` ([`RequestRecord`]: method, path, query, body, signed, api_key_present, time,
//! status, error code, fault), `signed_request_count()`, `requests_to(method, path)`,
//! `clear_requests()`, `orders()`, `open_orders()`, `order_by_client_id`,
//! `orders_with_client_id(cid)` (count), `algo_orders()`, `open_algo_orders()`, `fills()`,
//! `positions()` (non-zero), `position(symbol)`, `unprotected_positions()` (positions not
//! covered by resting reduce-only/closePosition stops), `balance()`, `leverage(symbol)`,
//! `margin_type(symbol)`, `hedge_mode()`, `mark_price(symbol)`, `listen_key()`,
//! `ws_connection_count()`, `ws_connections()`, `ws_connects_total()`, `subscriptions()`,
//! `weight_used_1m()`, `server_time()`, `sign(payload)`, `panicked_requests()` (bugs in the
//! fake answered 500; always 0); async waits `wait_for_ws_connections`,
//! `wait_for_subscription`, `wait_until`; sync `wait_until_blocking`.
//! Ids: orderId from 4000000001, algoId from 1000000000001, trade id from 700000001; listen
//! keys and generated client ids come from the seeded RNG (`FakeConfig::seed`).
//!
//! Not simulated: ADL, batch orders, order modify (PUT),
//! countdownCancelAll, income history, depth/bookTicker data (use `push_raw`), multi-assets mode.

#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

mod algo;
mod candles;
mod config;
mod endpoints;
mod engine;
mod faults;
mod inspect;
mod json;
mod rest;
mod state;
mod ws;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kinetic::core::models::Candle;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rust_decimal::Decimal;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use candles::{align, candle_at, random_walk_candles, trend_candles};
pub use config::{
    Bracket, DOC_API_KEY, DOC_API_SECRET, FakeConfig, SymbolSpec, brackets_from, default_symbols, generated_brackets,
    generated_symbols,
};
pub use endpoints::interval_ms;
pub use engine::ApiError;
pub use faults::{Chaos, FaultAction, FaultScope, QueuedFault};
pub use state::{AlgoOrder, FillRecord, Order, Position, RequestRecord, Route};

use state::{State, WsOut, market_from_spec};

/// State shared by the servers and the handle.
pub(crate) struct Shared {
    pub config: FakeConfig,
    pub state: Mutex<State>,
    pub cancel: CancellationToken,
    /// Generation of `release_held_requests`; held requests wait for it to change.
    pub release: tokio::sync::watch::Sender<u64>,
    /// Requests currently held by `FaultAction::Hold`.
    pub held: std::sync::atomic::AtomicUsize,
}

impl Shared {
    /// Locks the state (a poisoned lock is still usable: the state is plain data).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Account balance snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct BalanceSnapshot {
    pub wallet_balance: Decimal,
    pub unrealized_pnl: Decimal,
    pub equity: Decimal,
    pub available_balance: Decimal,
}

/// One live WebSocket connection as seen by the server.
#[derive(Debug, Clone, PartialEq)]
pub struct WsConnectionInfo {
    pub id: u64,
    pub route: Route,
    /// Path and query the client connected to.
    pub path: String,
    pub combined: bool,
    pub subscriptions: BTreeSet<String>,
    pub listen_key: Option<String>,
    pub connected_at: i64,
}

/// The running fake exchange. Dropping it stops both servers.
pub struct FakeBinance {
    shared: Arc<Shared>,
    rest_addr: SocketAddr,
    ws_addr: SocketAddr,
}

impl Drop for FakeBinance {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
}

/// Parses a decimal literal for tests (`d("68000.5")`); panics on a typo.
pub fn d(s: &str) -> Decimal {
    Decimal::from_str(s).expect("decimal literal")
}

impl FakeBinance {
    /// Binds REST and WS on 127.0.0.1 with random ports and starts serving (needs a tokio runtime).
    pub async fn start(config: FakeConfig) -> FakeBinance {
        let rest_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind REST");
        let ws_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind WS");
        let rest_addr = rest_listener.local_addr().expect("REST addr");
        let ws_addr = ws_listener.local_addr().expect("WS addr");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(config.clone())),
            config,
            cancel: CancellationToken::new(),
            release: tokio::sync::watch::Sender::new(0),
            held: std::sync::atomic::AtomicUsize::new(0),
        });
        let app = rest::router(shared.clone());
        let cancel = shared.cancel.clone();
        tokio::spawn(async move {
            let _ = axum::serve(rest_listener, app).with_graceful_shutdown(cancel.cancelled_owned()).await;
        });
        tokio::spawn(ws::serve(ws_listener, shared.clone()));
        tokio::spawn(ws::background(shared.clone()));
        FakeBinance { shared, rest_addr, ws_addr }
    }

    /// Starts the server on its own thread and multi-thread runtime, independent of the
    /// caller's: for plain `#[test]`s and for tests that block (waiting on a child `kinetic`
    /// process, `std::thread::sleep`), which would otherwise stall a server sharing their
    /// runtime. Dropping the handle stops the runtime. Use the `*_blocking` waits from sync code.
    pub fn start_on_own_runtime(config: FakeConfig) -> FakeBinance {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("fake-binance".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("fake server runtime");
                rt.block_on(async move {
                    let fake = FakeBinance::start(config).await;
                    let cancel = fake.shared.cancel.clone();
                    if tx.send(fake).is_ok() {
                        cancel.cancelled().await;
                    }
                    // Let connection tasks see the cancellation and close their sockets.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                });
            })
            .expect("fake server thread");
        rx.recv().expect("fake server started")
    }

    /// `start(FakeConfig::default())`.
    pub async fn start_default() -> FakeBinance {
        Self::start(FakeConfig::default()).await
    }

    fn st(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    // ---- addresses and credentials ----

    /// REST base, e.g. `http://127.0.0.1:41234`.
    pub fn rest_url(&self) -> String {
        format!("http://{}", self.rest_addr)
    }

    /// WebSocket base without route, e.g. `ws://127.0.0.1:41235`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.ws_addr)
    }

    /// `ws_url()/market/stream?streams=a/b` (combined mode).
    pub fn market_stream_url(&self, streams: &[&str]) -> String {
        format!("{}/market/stream?streams={}", self.ws_url(), streams.join("/"))
    }

    /// `ws_url()/private/ws?listenKey=K&events=...` with every user event type.
    pub fn private_ws_url(&self, listen_key: &str) -> String {
        format!(
            "{}/private/ws?listenKey={listen_key}&events=ORDER_TRADE_UPDATE/ACCOUNT_UPDATE/ALGO_UPDATE/TRADE_LITE/MARGIN_CALL/ACCOUNT_CONFIG_UPDATE/listenKeyExpired",
            self.ws_url()
        )
    }

    pub fn config(&self) -> &FakeConfig {
        &self.shared.config
    }

    pub fn api_key(&self) -> &str {
        &self.shared.config.api_key
    }

    pub fn api_secret(&self) -> &str {
        &self.shared.config.api_secret
    }

    /// Hex HMAC-SHA256 of `payload` with the configured secret (what a client must send).
    pub fn sign(&self, payload: &str) -> String {
        rest::hmac_hex(&self.shared.config.api_secret, payload)
    }

    /// Server time in ms (wall clock + skew).
    pub fn server_time(&self) -> i64 {
        self.st().now()
    }

    // ---- market controls ----

    /// Sets the mark price (the last price follows it unless set apart with `set_last_price`),
    /// fills crossing limit orders, fires reached stops and pushes markPrice to subscribers.
    pub fn set_mark_price(&self, symbol: &str, price: Decimal) {
        let mut st = self.st();
        if let Some(m) = st.markets.get_mut(symbol) {
            m.mark_price = price;
            m.index_price = price;
            if m.last_follows_mark {
                m.last_price = price;
            }
        }
        st.push_mark(symbol);
        engine::on_price_change(&mut st, symbol);
    }

    /// Sets the last (contract) price only; market orders fill here from now on.
    pub fn set_last_price(&self, symbol: &str, price: Decimal) {
        let mut st = self.st();
        if let Some(m) = st.markets.get_mut(symbol) {
            m.last_price = price;
            m.last_follows_mark = false;
        }
        engine::on_price_change(&mut st, symbol);
    }

    /// Sets mark and last price together (and lets the last price follow the mark again).
    pub fn set_price(&self, symbol: &str, price: Decimal) {
        if let Some(m) = self.st().markets.get_mut(symbol) {
            m.last_follows_mark = true;
        }
        self.set_mark_price(symbol, price);
    }

    pub fn mark_price(&self, symbol: &str) -> Option<Decimal> {
        self.st().markets.get(symbol).map(|m| m.mark_price)
    }

    pub fn set_funding_rate(&self, symbol: &str, rate: Decimal) {
        if let Some(m) = self.st().markets.get_mut(symbol) {
            m.funding_rate = rate;
        }
    }

    /// Charges/pays funding on `symbol`'s positions now; returns the wallet change.
    pub fn apply_funding(&self, symbol: &str) -> Decimal {
        engine::apply_funding(&mut self.st(), symbol)
    }

    /// 24 h quote volume and change % served by `ticker/24hr` and the ticker streams.
    pub fn set_ticker_stats(&self, symbol: &str, quote_volume: Decimal, change_pct: Decimal) {
        if let Some(m) = self.st().markets.get_mut(symbol) {
            m.spec.quote_volume_24h = quote_volume;
            m.spec.price_change_pct_24h = change_pct;
        }
    }

    /// Replaces the stored candles of `symbol`/`interval` (served by `/fapi/v1/klines`).
    pub fn set_klines(&self, symbol: &str, interval: &str, candles: Vec<Candle>) {
        let series: BTreeMap<i64, Candle> = candles.into_iter().map(|c| (c.open_time, c)).collect();
        self.st().klines.insert((symbol.to_string(), interval.to_string()), series);
    }

    /// Stores `candle` (replacing one with the same open time) and pushes a kline event to
    /// `<symbol>@kline_<interval>` subscribers.
    pub fn push_kline(&self, symbol: &str, interval: &str, candle: Candle, closed: bool) {
        let mut st = self.st();
        let stream = format!("{}@kline_{interval}", symbol.to_lowercase());
        let t = st.event_time();
        let ev = json::kline_event(symbol, interval, &candle, closed, t);
        st.klines.entry((symbol.to_string(), interval.to_string())).or_default().insert(candle.open_time, candle);
        st.emit_market(&stream, &ev);
    }

    /// For every symbol: `n` random-walk candles of `interval` (seeded, different per symbol)
    /// ending with the candle that contains the current server time, scaled so that the last
    /// close equals the symbol's current last price. Replaces stored candles.
    pub fn fill_history(&self, interval: &str, n: usize, seed: u64) {
        let Some(ims) = endpoints::interval_ms(interval) else { return };
        let mut st = self.st();
        let first = candles::align(st.now(), ims) - (n.saturating_sub(1) as i64) * ims;
        let symbols: Vec<(String, f64)> = st
            .markets
            .values()
            .map(|m| (m.spec.symbol.clone(), m.last_price.to_string().parse::<f64>().unwrap_or(1.0)))
            .collect();
        for (i, (symbol, last)) in symbols.into_iter().enumerate() {
            let mut series = candles::random_walk_candles(first, ims, n, 100.0, 0.8, seed.wrapping_add(i as u64));
            let scale = series.last().map(|c| last / c.close).unwrap_or(1.0);
            for c in &mut series {
                c.open *= scale;
                c.high *= scale;
                c.low *= scale;
                c.close *= scale;
                c.quote_volume *= scale;
                c.taker_buy_quote_volume *= scale;
            }
            let map: BTreeMap<i64, Candle> = series.into_iter().map(|c| (c.open_time, c)).collect();
            st.klines.insert((symbol, interval.to_string()), map);
        }
    }

    /// Stored candles, oldest first.
    pub fn klines(&self, symbol: &str, interval: &str) -> Vec<Candle> {
        self.st()
            .klines
            .get(&(symbol.to_string(), interval.to_string()))
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Every market tick moves every mark (and following last) price by a seeded random step of
    /// up to `max_step_bps` basis points (stops fire as usual); `None` stops the walk.
    pub fn set_price_walk(&self, walk: Option<(u32, u64)>) {
        let mut st = self.st();
        st.price_walk = walk.map(|(bps, seed)| (bps, StdRng::seed_from_u64(seed)));
    }

    /// While on, every market tick streams the current candle of each subscribed
    /// `<symbol>@kline_<interval>` from the last price (x=false), closes it (x=true) when its
    /// interval has passed in server time and opens the next one; stored for REST as well.
    pub fn set_auto_klines(&self, on: bool) {
        self.st().auto_klines = on;
    }

    /// One market tick right now (all-market mark prices and tickers, per-symbol streams).
    pub fn push_market_tick(&self) {
        self.st().market_tick(0);
    }

    /// Pushes any payload on any stream name (e.g. `btcusdt@bookTicker` on `/public`).
    pub fn push_raw(&self, stream: &str, payload: Value) {
        self.st().emit_market(&ws::normalize_stream(stream), &payload);
    }

    pub fn add_symbol(&self, spec: SymbolSpec) {
        let mut st = self.st();
        let m = market_from_spec(&spec, &self.shared.config);
        st.markets.insert(spec.symbol.clone(), m);
    }

    /// Sets exchangeInfo `status` (e.g. "SETTLING"); opening orders need TRADING.
    pub fn set_symbol_status(&self, symbol: &str, status: &str) {
        if let Some(m) = self.st().markets.get_mut(symbol) {
            m.spec.status = status.to_string();
        }
    }

    /// Quantitative-rules lock (`apiTradingStatus`); locked symbols accept reduce-only only.
    pub fn set_symbol_locked(&self, symbol: &str, locked: bool) {
        if let Some(m) = self.st().markets.get_mut(symbol) {
            m.locked = locked;
        }
    }

    // ---- account controls ----

    pub fn set_wallet_balance(&self, balance: Decimal) {
        self.st().wallet_balance = balance;
    }

    /// Seeds a one-way position (signed amount) without events, e.g. for adoption tests.
    pub fn set_position(&self, symbol: &str, amount: Decimal, entry_price: Decimal) {
        let mut st = self.st();
        let now = st.now();
        st.positions.insert(
            (symbol.to_string(), "BOTH".to_string()),
            Position {
                symbol: symbol.to_string(),
                position_side: "BOTH".into(),
                amount,
                entry_price,
                accumulated_realized: Decimal::ZERO,
                update_time: now,
            },
        );
    }

    /// Turns liquidation on or off (off by default; see `FakeConfig::liquidation`).
    pub fn set_liquidation(&self, on: bool) {
        self.st().liquidation = on;
    }

    /// Replaces fields of the `apiRestrictions` answer (e.g. `{"enableWithdrawals": true}`);
    /// the default is a safe key (futures, IP-restricted, no withdrawals).
    pub fn set_api_restrictions(&self, fields: Value) {
        let mut st = self.st();
        if let (Some(obj), Some(new)) = (st.api_restrictions.as_object_mut(), fields.as_object()) {
            for (k, v) in new {
                obj.insert(k.clone(), v.clone());
            }
        }
    }

    /// Fault: algo orders of `symbol` that trigger go TRIGGERING and never produce an order
    /// (they stay TRIGGERING, uncancellable), as reported on Binance's demo environment.
    pub fn set_trigger_never_fills(&self, symbol: &str, on: bool) {
        let mut st = self.st();
        if on {
            st.stuck_triggers.insert(symbol.to_string());
        } else {
            st.stuck_triggers.remove(symbol);
        }
    }

    /// Lists `symbol` in `GET /fapi/v1/fundingInfo` (only adjusted symbols are listed there).
    pub fn set_funding_info(&self, symbol: &str, interval_hours: u32, cap: Decimal, floor: Decimal) {
        self.st().funding_info.insert(symbol.to_string(), (interval_hours, cap, floor));
    }

    /// The settled fundings `GET /fapi/v1/fundingRate` serves for `symbol`:
    /// (funding time, rate, mark price), sorted here.
    pub fn set_funding_history(&self, symbol: &str, mut rows: Vec<(i64, Decimal, Decimal)>) {
        rows.sort_by_key(|r| r.0);
        self.st().funding_history.insert(symbol.to_string(), rows);
    }

    pub fn set_hedge_mode(&self, hedge: bool) {
        self.st().hedge_mode = hedge;
    }

    pub fn hedge_mode(&self) -> bool {
        self.st().hedge_mode
    }

    pub fn leverage(&self, symbol: &str) -> Option<u32> {
        self.st().markets.get(symbol).map(|m| m.leverage)
    }

    /// "ISOLATED" or "CROSSED".
    pub fn margin_type(&self, symbol: &str) -> Option<String> {
        self.st().markets.get(symbol).map(|m| m.margin_type.clone())
    }

    /// Server clock = wall clock + `skew_ms` (negative: server behind the client).
    pub fn set_clock_skew_ms(&self, skew_ms: i64) {
        self.st().clock_skew_ms = skew_ms;
    }

    // ---- REST faults ----

    /// Queues `action` for the next `n` requests matching `scope`.
    pub fn fail_next(&self, n: u32, scope: FaultScope, action: FaultAction) {
        if n > 0 {
            self.st().faults.queue.push_back(QueuedFault { scope, action, remaining: n });
        }
    }

    /// Next `n` order placements (`/order`, `/algoOrder`) are executed, then answered 503.
    pub fn fail_next_orders_after_execute(&self, n: u32) {
        self.fail_next(n, FaultScope::OrderPlacement, FaultAction::unknown_after_execute());
    }

    /// Next `n` requests hang for `ms` (executed first when `executed`).
    pub fn timeout_next(&self, n: u32, ms: u64, executed: bool) {
        let action =
            if executed { FaultAction::TimeoutAfterExecute { ms } } else { FaultAction::TimeoutNotExecuted { ms } };
        self.fail_next(n, FaultScope::Any, action);
    }

    /// Next `n` requests get 429 -1003 with `Retry-After: secs`.
    pub fn rate_limit_next(&self, n: u32, retry_after_secs: u64) {
        self.fail_next(n, FaultScope::Any, FaultAction::RateLimited { retry_after_secs });
    }

    /// Bans the IP (418) for `secs` from now.
    pub fn ban_for(&self, secs: u64) {
        let mut st = self.st();
        let until = st.now() + secs as i64 * 1000;
        st.ban_until = Some(until);
    }

    /// Next `n` signed requests get -1021.
    pub fn invalid_timestamp_next(&self, n: u32) {
        self.fail_next(n, FaultScope::Signed, FaultAction::InvalidTimestamp);
    }

    /// The next non-reduce-only `POST /fapi/v1/order` gets -2019.
    pub fn insufficient_margin_once(&self) {
        self.fail_next(1, FaultScope::MarketOrder, FaultAction::InsufficientMargin);
    }

    /// Next `n` requests are delayed by `ms` and then processed normally.
    pub fn latency_spike_next(&self, n: u32, ms: u64) {
        self.fail_next(n, FaultScope::Any, FaultAction::Latency { ms });
    }

    /// Constant added latency on every REST request.
    pub fn set_latency_ms(&self, ms: u64) {
        self.st().faults.base_latency_ms = ms;
    }

    /// A `fraction` of all REST requests fail with 503; `after_execute_fraction` of that share
    /// goes to mutating requests that are executed first (unknown outcome). Deterministic for a
    /// given seed and request order. `fraction = 0` turns it off.
    pub fn set_random_failures(&self, fraction: f64, after_execute_fraction: f64, seed: u64) {
        let chaos = Chaos {
            p_5xx: fraction * (1.0 - after_execute_fraction),
            p_5xx_after_execute: fraction * after_execute_fraction,
            ..Chaos::default()
        };
        self.set_chaos((fraction > 0.0).then_some(chaos), seed);
    }

    /// Seeded random faults of several kinds on every REST request (see [`Chaos`]); `None` off.
    pub fn set_chaos(&self, chaos: Option<Chaos>, seed: u64) {
        let mut st = self.st();
        st.rng = StdRng::seed_from_u64(seed);
        st.faults.random = chaos;
    }

    /// Lets every request held by `FaultAction::Hold` continue.
    pub fn release_held_requests(&self) {
        self.shared.release.send_modify(|g| *g += 1);
    }

    /// Requests currently held by `FaultAction::Hold` (wait for 1 before killing a client).
    pub fn held_requests(&self) -> usize {
        self.shared.held.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Removes queued and random faults, latency and any ban.
    pub fn clear_faults(&self) {
        let mut st = self.st();
        st.faults.queue.clear();
        st.faults.random = None;
        st.faults.base_latency_ms = 0;
        st.ban_until = None;
    }

    /// Faults injected so far, by kind.
    pub fn injected_faults(&self) -> BTreeMap<String, u64> {
        self.st().faults.injected.clone()
    }

    // ---- WebSocket faults ----

    /// Drops every WS connection without a close frame; returns how many.
    pub fn drop_ws_connections(&self) -> usize {
        let st = self.st();
        for c in st.conns.values() {
            let _ = c.tx.send(WsOut::Drop);
        }
        st.conns.len()
    }

    /// Closes every WS connection with a close frame (as at the 24 h limit).
    pub fn close_ws_connections(&self) -> usize {
        let st = self.st();
        for c in st.conns.values() {
            let _ = c.tx.send(WsOut::Close);
        }
        st.conns.len()
    }

    /// Sends a ping frame to every connection now.
    pub fn ping_ws_clients(&self) {
        let st = self.st();
        for c in st.conns.values() {
            let _ = c.tx.send(WsOut::Ping);
        }
    }

    /// While on, connections are accepted and control messages ACKed, but no data is sent.
    pub fn set_ws_silent(&self, silent: bool) {
        self.st().ws_silent = silent;
    }

    /// `set_ws_silent` for one route only (e.g. a silent `/market` while `/private` works).
    pub fn set_ws_route_silent(&self, route: Route, silent: bool) {
        let mut st = self.st();
        if silent {
            st.ws_silent_routes.insert(route);
        } else {
            st.ws_silent_routes.remove(&route);
        }
    }

    /// While on, WS handshakes are refused with HTTP 503.
    pub fn set_ws_refuse(&self, refuse: bool) {
        self.st().ws_refuse = refuse;
    }

    /// Drops every WS connection (no close frame) every `interval` until set to `None` (chaos runs).
    pub fn set_ws_drop_interval(&self, interval: Option<Duration>) {
        self.st().ws_drop_interval_ms = interval.map(|d| d.as_millis() as u64);
    }

    /// Sends a raw text frame (anything: malformed JSON, an oversized frame, a stale event) to
    /// every connection on `route`, ignoring subscriptions. Returns how many got it.
    pub fn push_text(&self, route: Route, text: &str) -> usize {
        let st = self.st();
        let mut n = 0;
        for c in st.conns.values().filter(|c| c.route == route) {
            if c.tx.send(WsOut::Text(text.to_string())).is_ok() {
                n += 1;
            }
        }
        n
    }

    /// Pushes any user-data event to the `/private` connections of the live listenKey.
    pub fn push_user_event(&self, event: Value) {
        self.st().emit_user(event);
    }

    /// Pushes a MARGIN_CALL for the open one-way position of `symbol` (advisory, nothing changes).
    pub fn push_margin_call(&self, symbol: &str) {
        let mut st = self.st();
        let Some(p) = st.position(symbol, "BOTH").cloned() else { return };
        let mark = st.markets.get(symbol).map(|m| m.mark_price).unwrap_or_default();
        let t = st.event_time();
        let ev = serde_json::json!({
            "e": "MARGIN_CALL",
            "E": t,
            "cw": state::fmt_dp(st.wallet_balance, 8),
            "p": [{
                "s": symbol,
                "ps": "BOTH",
                "pa": state::fmt_dec(p.amount),
                "mt": st.markets.get(symbol).map(|m| m.margin_type.clone()).unwrap_or_default(),
                "iw": "0",
                "mp": state::fmt_dec(mark),
                "up": state::fmt_dp(st.unrealized(&p), 8),
                "mm": state::fmt_dp(st.maint_margin(&p), 8),
            }]
        });
        st.emit_user(ev);
    }

    /// Expires the listenKey now: `listenKeyExpired` to its connections, then silence; PUT → -1125.
    pub fn expire_listen_key(&self) {
        self.st().check_listen_key_expiry(true);
    }
}
