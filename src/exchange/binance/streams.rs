//! The WebSocket tasks: the combined market stream on the `/market` route and the user data
//! stream on `/private` (Binance's 2026 route split; a stream on the wrong route is accepted and
//! then silent, hence the staleness watchdogs).
//!
//! Each task owns its socket and loops connect → read → reconnect with exponential backoff and
//! jitter until its cancellation token fires. Frames are decoded by the pure functions in
//! `events.rs`; malformed ones are logged, counted and dropped. Pings are answered by
//! tungstenite on the next read. After a market reconnect the candles missed while down are
//! fetched over REST and sent as [`ExchangeEvent::Backfill`]; after a user-stream reconnect the
//! engine reconciles on the `Connected { reconnect: true }` event.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::Inner;
use super::events::{AlgoUpdateKey, MarketMessage, UserMessage, decode_market, decode_user};
use crate::core::models::{CANDLE_CLOSE_MARGIN_MS, Timeframe, TimestampMs, is_closed_at};
use crate::exchange::{EventSinks, ExchangeEvent, StreamEvent};

/// Stream names in [`StreamEvent`]s.
pub const MARKET_STREAM: &str = "market";
pub const USER_STREAM: &str = "user";

/// Streams every market connection carries.
const BASE_STREAMS: [&str; 2] = ["!miniTicker@arr", "!markPrice@arr@1s"];
/// Streams put into the connect URL; more are added with SUBSCRIBE messages.
const URL_STREAM_CAP: usize = 200;
/// Streams per SUBSCRIBE/UNSUBSCRIBE message.
const SUBSCRIBE_BATCH: usize = 200;
/// User-data events we ask for (the `events=` filter of the `/private` route).
const USER_EVENTS: &str = "ORDER_TRADE_UPDATE/ACCOUNT_UPDATE/ALGO_UPDATE/MARGIN_CALL/listenKeyExpired";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// ALGO_UPDATE keys remembered for de-duplication.
const ALGO_DEDUPE_CAPACITY: usize = 4096;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Why a session ended.
#[derive(Debug, Clone, PartialEq)]
enum End {
    Cancelled,
    Dropped(String),
    Stale(u64),
    Rotate,
    /// The listenKey expired or is unknown: create a new one.
    KeyExpired,
}

impl End {
    fn reason(&self) -> String {
        match self {
            End::Cancelled => "cancelled".into(),
            End::Dropped(r) => r.clone(),
            End::Stale(ms) => format!("no data for {ms} ms"),
            End::Rotate => "proactive reconnect before the 24 h limit".into(),
            End::KeyExpired => "listenKey expired".into(),
        }
    }
}

fn kline_streams(symbols: &BTreeSet<String>) -> Vec<String> {
    symbols
        .iter()
        .flat_map(|s| {
            let lower = s.to_lowercase();
            Timeframe::STRATEGY.iter().map(move |tf| format!("{lower}@kline_{}", tf.as_str()))
        })
        .collect()
}

/// The combined-stream URL on the `/market` route, and the streams left for SUBSCRIBE.
pub fn market_url(ws_url: &str, symbols: &BTreeSet<String>) -> (String, Vec<String>) {
    let mut streams: Vec<String> = BASE_STREAMS.iter().map(|s| (*s).to_string()).collect();
    streams.extend(kline_streams(symbols));
    let rest = streams.split_off(streams.len().min(URL_STREAM_CAP));
    (format!("{ws_url}/market/stream?streams={}", streams.join("/")), rest)
}

/// The `/private` route URL with the listenKey as a query parameter.
pub fn user_url(ws_url: &str, listen_key: &str) -> String {
    format!("{ws_url}/private/ws?listenKey={listen_key}&events={USER_EVENTS}")
}

fn backoff(inner: &Inner) -> impl Iterator<Item = Duration> + use<> {
    ExponentialBuilder::default()
        .with_min_delay(inner.options.ws_backoff_base)
        .with_max_delay(inner.options.ws_backoff_max)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

async fn connect(url: &str) -> Result<Ws, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(url)).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(e)) => Err(format!("connect failed: {e}")),
        Err(_) => Err("connect timed out".into()),
    }
}

/// Sends an event unless cancelled; false when the engine is gone or shutting down.
async fn emit(events: &EventSinks, cancel: &CancellationToken, ev: ExchangeEvent) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        r = events.send(ev) => r.is_ok(),
    }
}

async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

fn control_message(method: &str, params: &[String], id: u64) -> Message {
    Message::text(serde_json::json!({ "method": method, "params": params, "id": id }).to_string())
}

struct MarketTask {
    inner: Arc<Inner>,
    events: EventSinks,
    control: watch::Receiver<BTreeSet<String>>,
    control_open: bool,
    cancel: CancellationToken,
    /// Open time of the newest kline seen per symbol and timeframe (where backfill starts).
    last_kline: HashMap<(String, Timeframe), TimestampMs>,
    next_id: u64,
}

/// Runs the market stream until `cancel` fires.
pub(crate) async fn run_market_stream(
    inner: Arc<Inner>,
    events: EventSinks,
    control: watch::Receiver<BTreeSet<String>>,
    cancel: CancellationToken,
) {
    let mut task =
        MarketTask { inner, events, control, control_open: true, cancel, last_kline: HashMap::new(), next_id: 1 };
    task.run().await;
}

impl MarketTask {
    async fn run(&mut self) {
        let mut delays = backoff(&self.inner);
        let mut reconnect = false;
        loop {
            if self.cancel.is_cancelled() {
                return;
            }
            let symbols = self.control.borrow_and_update().clone();
            let (url, extra) = market_url(&self.inner.ws_url, &symbols);
            let end = match connect(&url).await {
                Ok(ws) => {
                    if reconnect {
                        self.inner.count_reconnect();
                    }
                    tracing::info!(stream = MARKET_STREAM, reconnect, symbols = symbols.len(), "stream connected");
                    let ev = StreamEvent::Connected { stream: MARKET_STREAM.into(), reconnect };
                    if !emit(&self.events, &self.cancel, ExchangeEvent::Stream(ev)).await {
                        return;
                    }
                    if reconnect && !self.backfill(&symbols).await {
                        return;
                    }
                    let (end, got_data) = self.session(ws, symbols, extra).await;
                    if got_data {
                        delays = backoff(&self.inner);
                    }
                    end
                }
                Err(reason) => End::Dropped(reason),
            };
            if end == End::Cancelled {
                return;
            }
            tracing::warn!(stream = MARKET_STREAM, reason = %end.reason(), "stream disconnected");
            let ev = StreamEvent::Disconnected { stream: MARKET_STREAM.into(), reason: end.reason() };
            if !emit(&self.events, &self.cancel, ExchangeEvent::Stream(ev)).await {
                return;
            }
            reconnect = true;
            let delay =
                if end == End::Rotate { Duration::ZERO } else { delays.next().unwrap_or(Duration::from_secs(1)) };
            if !sleep_or_cancel(delay, &self.cancel).await {
                return;
            }
        }
    }

    /// Fetches the candles missed while disconnected; false when the engine is gone.
    ///
    /// Only candles final by [`is_closed_at`] are sent. A candle closing around the fetch is held
    /// back (its REST values may still be forming) and fetched again once it is final: the
    /// stream may have sent its close before this connection existed.
    async fn backfill(&mut self, symbols: &BTreeSet<String>) -> bool {
        self.inner.rest.ensure_time_synced().await;
        let mut pending = Vec::new();
        let mut recheck_at = TimestampMs::MIN;
        for symbol in symbols {
            for tf in Timeframe::STRATEGY {
                match self.backfill_series(symbol, tf).await {
                    None => return false,
                    Some(Some(at)) => {
                        pending.push((symbol.clone(), tf));
                        recheck_at = recheck_at.max(at);
                    }
                    Some(None) => {}
                }
            }
        }
        if pending.is_empty() {
            return true;
        }
        let wait_ms = u64::try_from(recheck_at - self.inner.rest.now_ms()).unwrap_or(0);
        if !sleep_or_cancel(Duration::from_millis(wait_ms), &self.cancel).await {
            return false;
        }
        for (symbol, tf) in pending {
            if self.backfill_series(&symbol, tf).await.is_none() {
                return false;
            }
        }
        true
    }

    /// Backfills one series from the newest kline seen. `None`: the engine is gone.
    /// `Some(Some(t))`: a candle closing within [`CANDLE_CLOSE_MARGIN_MS`] of the fetch was held
    /// back; fetch again once the exchange clock passes `t`.
    async fn backfill_series(&mut self, symbol: &str, tf: Timeframe) -> Option<Option<TimestampMs>> {
        let key = (symbol.to_string(), tf);
        let Some(&since) = self.last_kline.get(&key) else { return Some(None) };
        // Read before the request: the answer is at least this recent, so what is closed at
        // this time by the margin is final in it (retries only make the answer newer).
        let now = self.inner.rest.now_ms();
        let missing = (now - since).max(0) / tf.duration_ms() + 2;
        let limit = u16::try_from(missing).unwrap_or(u16::MAX).clamp(1, super::KLINES_PAGE_LIMIT);
        let candles = match self.inner.klines(symbol, tf, Some(since), None, limit).await {
            Ok(candles) => candles,
            Err(e) => {
                tracing::warn!(symbol = %symbol, timeframe = %tf, error = %e, "backfill failed");
                return Some(None);
            }
        };
        if let Some(newest) = candles.iter().map(|c| c.open_time).max() {
            self.last_kline.insert(key, newest.max(since));
        }
        let recheck = candles
            .iter()
            .filter(|c| !is_closed_at(c, now) && c.close_time < now.saturating_add(CANDLE_CLOSE_MARGIN_MS))
            .map(|c| c.close_time.saturating_add(CANDLE_CLOSE_MARGIN_MS + 1))
            .max();
        let closed: Vec<_> = candles.into_iter().filter(|c| is_closed_at(c, now)).collect();
        if !closed.is_empty() {
            tracing::info!(symbol = %symbol, timeframe = %tf, candles = closed.len(), "backfilled candles after reconnect");
            let ev = ExchangeEvent::Backfill { symbol: symbol.to_string(), timeframe: tf, candles: closed };
            if !emit(&self.events, &self.cancel, ev).await {
                return None;
            }
        }
        if recheck.is_some() {
            tracing::debug!(symbol = %symbol, timeframe = %tf, "candle closing at the fetch held back; fetching it again");
        }
        Some(recheck)
    }

    async fn subscribe(
        &mut self,
        write: &mut futures_util::stream::SplitSink<Ws, Message>,
        method: &str,
        streams: &[String],
    ) -> Result<(), String> {
        for chunk in streams.chunks(SUBSCRIBE_BATCH) {
            let id = self.next_id;
            self.next_id += 1;
            write.send(control_message(method, chunk, id)).await.map_err(|e| format!("{method} failed: {e}"))?;
            // Binance allows 10 incoming messages per second per connection.
            tokio::time::sleep(Duration::from_millis(110)).await;
        }
        Ok(())
    }

    async fn session(&mut self, ws: Ws, mut symbols: BTreeSet<String>, extra: Vec<String>) -> (End, bool) {
        let (mut write, mut read) = ws.split();
        let stale = self.inner.stale_after;
        let started = Instant::now();
        let mut last_data = Instant::now();
        let mut got_data = false;
        let mut tick = tokio::time::interval((stale / 4).clamp(Duration::from_millis(20), Duration::from_secs(1)));
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        if !extra.is_empty()
            && let Err(e) = self.subscribe(&mut write, "SUBSCRIBE", &extra).await
        {
            return (End::Dropped(e), false);
        }
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => {
                    let _ = write.send(Message::Close(None)).await;
                    return (End::Cancelled, got_data);
                }
                changed = self.control.changed(), if self.control_open => {
                    if changed.is_err() {
                        self.control_open = false;
                        continue;
                    }
                    let want = self.control.borrow_and_update().clone();
                    let removed: BTreeSet<String> = symbols.difference(&want).cloned().collect();
                    let added: BTreeSet<String> = want.difference(&symbols).cloned().collect();
                    if !removed.is_empty()
                        && let Err(e) = self.subscribe(&mut write, "UNSUBSCRIBE", &kline_streams(&removed)).await {
                            return (End::Dropped(e), got_data);
                        }
                    if !added.is_empty()
                        && let Err(e) = self.subscribe(&mut write, "SUBSCRIBE", &kline_streams(&added)).await {
                            return (End::Dropped(e), got_data);
                        }
                    tracing::info!(added = added.len(), removed = removed.len(), "kline subscriptions changed");
                    symbols = want;
                }
                msg = read.next() => match msg {
                    None => return (End::Dropped("connection closed".into()), got_data),
                    Some(Err(e)) => return (End::Dropped(format!("read failed: {e}")), got_data),
                    Some(Ok(Message::Text(text))) => {
                        last_data = Instant::now();
                        got_data = true;
                        if !self.handle(text.as_bytes()).await {
                            return (End::Cancelled, got_data);
                        }
                    }
                    Some(Ok(Message::Binary(bytes))) => {
                        last_data = Instant::now();
                        if !self.handle(&bytes).await {
                            return (End::Cancelled, got_data);
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        return (End::Dropped(format!("closed by server: {frame:?}")), got_data);
                    }
                    // Pings are answered by tungstenite; pongs prove nothing about data flow.
                    Some(Ok(_)) => {}
                },
                _ = tick.tick() => {
                    let silent = last_data.elapsed();
                    if silent > stale {
                        let silent_ms = u64::try_from(silent.as_millis()).unwrap_or(u64::MAX);
                        tracing::warn!(stream = MARKET_STREAM, silent_ms, "stream stale; reconnecting");
                        let ev = StreamEvent::Stale { stream: MARKET_STREAM.into(), silent_ms };
                        if !emit(&self.events, &self.cancel, ExchangeEvent::Stream(ev)).await {
                            return (End::Cancelled, got_data);
                        }
                        return (End::Stale(silent_ms), got_data);
                    }
                    if started.elapsed() >= self.inner.options.max_connection_age {
                        return (End::Rotate, got_data);
                    }
                }
            }
        }
    }

    /// Decodes and forwards one frame; false when the engine is gone.
    async fn handle(&mut self, bytes: &[u8]) -> bool {
        let ev = match decode_market(bytes) {
            Ok(MarketMessage::Kline { symbol, timeframe, candle, closed }) => {
                let slot = self.last_kline.entry((symbol.clone(), timeframe)).or_insert(candle.open_time);
                *slot = (*slot).max(candle.open_time);
                ExchangeEvent::Kline { symbol, timeframe, candle, closed }
            }
            Ok(MarketMessage::MarkPrices(v)) => ExchangeEvent::MarkPrices(v),
            Ok(MarketMessage::Tickers(v)) => ExchangeEvent::Tickers(v),
            Ok(MarketMessage::Ack { id }) => {
                tracing::debug!(id, "subscription acknowledged");
                return true;
            }
            Ok(MarketMessage::ControlError { code, msg }) => {
                tracing::warn!(code, msg = %msg, "market stream refused a control message");
                return true;
            }
            Ok(MarketMessage::Ignored) => return true,
            Err(e) => {
                self.inner.count_dropped();
                tracing::warn!(stream = MARKET_STREAM, error = %e, "malformed message dropped");
                return true;
            }
        };
        emit(&self.events, &self.cancel, ev).await
    }
}

/// What to do with an ALGO_UPDATE frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlgoVerdict {
    /// A state not seen before: forward it.
    Fresh,
    /// The same (algo id, status, `ai`, `ia`) again (a replay after a reconnect): drop it.
    Replay,
    /// A second `NEW` of the same algo order with the other `ia` flag (a trailing stop reporting
    /// its activation, since 2026-08): nothing changed for us — forwarding it would re-arm the
    /// same stop twice — so it is logged and dropped.
    SecondNew,
}

/// Remembers recent ALGO_UPDATE keys so replays are dropped and handling is idempotent on
/// (algo id, status, `ia`).
#[derive(Debug, Default)]
pub struct AlgoDedupe {
    order: VecDeque<AlgoUpdateKey>,
    seen: HashSet<AlgoUpdateKey>,
}

impl AlgoDedupe {
    fn remember(&mut self, key: AlgoUpdateKey) -> bool {
        if self.seen.contains(&key) {
            return false;
        }
        if self.order.len() >= ALGO_DEDUPE_CAPACITY
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        self.order.push_back(key.clone());
        self.seen.insert(key);
        true
    }

    /// Classifies `key`; every key is remembered (up to the capacity).
    pub fn verdict(&mut self, key: AlgoUpdateKey) -> AlgoVerdict {
        let any_new = (key.status == "NEW").then(|| AlgoUpdateKey {
            algo_id: key.algo_id,
            status: key.status.clone(),
            actual_order_id: String::new(),
            ia: "*".into(),
        });
        if !self.remember(key) {
            return AlgoVerdict::Replay;
        }
        match any_new {
            Some(marker) if !self.remember(marker.clone()) => AlgoVerdict::SecondNew,
            _ => AlgoVerdict::Fresh,
        }
    }
}

/// Runs the user data stream until `cancel` fires.
pub(crate) async fn run_user_stream(inner: Arc<Inner>, events: EventSinks, cancel: CancellationToken) {
    let mut delays = backoff(&inner);
    let mut reconnect = false;
    let mut dedupe = AlgoDedupe::default();
    loop {
        let key = tokio::select! {
            _ = cancel.cancelled() => return,
            r = inner.create_listen_key() => r,
        };
        let end = match key {
            Ok(key) => match connect(&user_url(&inner.ws_url, &key)).await {
                Ok(ws) => {
                    if reconnect {
                        inner.count_reconnect();
                    }
                    tracing::info!(stream = USER_STREAM, reconnect, "stream connected");
                    let ev = StreamEvent::Connected { stream: USER_STREAM.into(), reconnect };
                    if !emit(&events, &cancel, ExchangeEvent::Stream(ev)).await {
                        return;
                    }
                    let (end, healthy) = user_session(&inner, &events, &cancel, ws, &mut dedupe).await;
                    if healthy {
                        delays = backoff(&inner);
                    }
                    end
                }
                Err(reason) => End::Dropped(reason),
            },
            Err(crate::exchange::ExchangeError::Refused(reason)) => {
                tracing::info!(reason = %reason, "no user data stream");
                return;
            }
            Err(e) => End::Dropped(format!("listenKey: {e}")),
        };
        if end == End::Cancelled {
            return;
        }
        tracing::warn!(stream = USER_STREAM, reason = %end.reason(), "stream disconnected");
        let ev = StreamEvent::Disconnected { stream: USER_STREAM.into(), reason: end.reason() };
        if !emit(&events, &cancel, ExchangeEvent::Stream(ev)).await {
            return;
        }
        reconnect = true;
        let delay = match end {
            End::Rotate | End::KeyExpired => Duration::ZERO,
            _ => delays.next().unwrap_or(Duration::from_secs(1)),
        };
        if !sleep_or_cancel(delay, &cancel).await {
            return;
        }
    }
}

async fn user_session(
    inner: &Inner,
    events: &EventSinks,
    cancel: &CancellationToken,
    ws: Ws,
    dedupe: &mut AlgoDedupe,
) -> (End, bool) {
    let (mut write, mut read) = ws.split();
    let stale = inner.stale_after;
    let started = Instant::now();
    let mut last_frame = Instant::now();
    let mut healthy = false;
    let keepalive_every = inner.options.listen_key_keepalive;
    let mut keepalive = tokio::time::interval_at(Instant::now() + keepalive_every, keepalive_every);
    keepalive.set_missed_tick_behavior(MissedTickBehavior::Skip);
    // The user stream may be quiet for hours: our own pings prove the socket is alive.
    let mut ping = tokio::time::interval((stale / 3).clamp(Duration::from_millis(20), Duration::from_secs(60)));
    ping.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                let _ = write.send(Message::Close(None)).await;
                return (End::Cancelled, healthy);
            }
            _ = keepalive.tick() => match inner.keepalive_listen_key().await {
                Ok(()) => tracing::debug!("listenKey kept alive"),
                Err(e) if e.code() == Some(-1125) => return (End::KeyExpired, healthy),
                Err(e) => tracing::warn!(error = %e, "listenKey keep-alive failed"),
            },
            _ = ping.tick() => {
                let silent = last_frame.elapsed();
                if silent > stale {
                    let silent_ms = u64::try_from(silent.as_millis()).unwrap_or(u64::MAX);
                    let ev = StreamEvent::Stale { stream: USER_STREAM.into(), silent_ms };
                    if !emit(events, cancel, ExchangeEvent::Stream(ev)).await {
                        return (End::Cancelled, healthy);
                    }
                    return (End::Stale(silent_ms), healthy);
                }
                if started.elapsed() >= inner.options.max_connection_age {
                    return (End::Rotate, healthy);
                }
                if let Err(e) = write.send(Message::Ping(Vec::new().into())).await {
                    return (End::Dropped(format!("ping failed: {e}")), healthy);
                }
            }
            msg = read.next() => {
                let bytes = match msg {
                    None => return (End::Dropped("connection closed".into()), healthy),
                    Some(Err(e)) => return (End::Dropped(format!("read failed: {e}")), healthy),
                    Some(Ok(Message::Close(frame))) => return (End::Dropped(format!("closed by server: {frame:?}")), healthy),
                    Some(Ok(Message::Text(t))) => t.as_bytes().to_vec(),
                    Some(Ok(Message::Binary(b))) => b.to_vec(),
                    Some(Ok(_)) => {
                        last_frame = Instant::now();
                        healthy = true;
                        continue;
                    }
                };
                last_frame = Instant::now();
                healthy = true;
                let ev = match decode_user(&bytes) {
                    Ok(UserMessage::Order { report, fill }) => ExchangeEvent::OrderUpdate { report, fill },
                    Ok(UserMessage::Account { balance, positions, time, transfer }) => {
                        ExchangeEvent::AccountUpdate { balance, positions, time, transfer }
                    }
                    Ok(UserMessage::Algo { stop, key }) => {
                        let ia = key.ia.clone();
                        match dedupe.verdict(key) {
                            AlgoVerdict::Fresh => {}
                            AlgoVerdict::Replay => continue,
                            AlgoVerdict::SecondNew => {
                                tracing::info!(symbol = %stop.symbol, algo_id = stop.algo_id, ia = %ia,
                                    "algo order reported NEW again (trailing activation); already resting");
                                continue;
                            }
                        }
                        inner.track_stop(&stop);
                        ExchangeEvent::StopUpdate(stop)
                    }
                    Ok(UserMessage::MarginCall { symbols, time }) => ExchangeEvent::MarginCall { symbols, time },
                    Ok(UserMessage::ListenKeyExpired) => return (End::KeyExpired, healthy),
                    Ok(UserMessage::Ignored(_)) => continue,
                    Err(e) => {
                        inner.count_dropped();
                        tracing::warn!(stream = USER_STREAM, error = %e, "malformed message dropped");
                        continue;
                    }
                };
                if !emit(events, cancel, ev).await {
                    return (End::Cancelled, healthy);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_use_the_routes() {
        let symbols: BTreeSet<String> = ["BTCUSDT".to_string()].into();
        let (url, extra) = market_url("wss://fstream.binance.com", &symbols);
        assert_eq!(
            url,
            "wss://fstream.binance.com/market/stream?streams=!miniTicker@arr/!markPrice@arr@1s/btcusdt@kline_4h/btcusdt@kline_1h/btcusdt@kline_15m"
        );
        assert!(extra.is_empty());
        assert!(user_url("ws://127.0.0.1:1", "abc").starts_with("ws://127.0.0.1:1/private/ws?listenKey=abc&events="));
        let many: BTreeSet<String> = (0..100).map(|i| format!("S{i}USDT")).collect();
        let (_, extra) = market_url("ws://x", &many);
        assert_eq!(extra.len(), 302 - URL_STREAM_CAP);
    }

    #[test]
    fn algo_updates_are_idempotent_on_id_status_and_ia() {
        let key = |id: i64, s: &str, ia: &str| AlgoUpdateKey {
            algo_id: id,
            status: s.into(),
            actual_order_id: String::new(),
            ia: ia.into(),
        };
        let mut d = AlgoDedupe::default();
        assert_eq!(d.verdict(key(1, "NEW", "")), AlgoVerdict::Fresh);
        assert_eq!(d.verdict(key(1, "NEW", "")), AlgoVerdict::Replay);
        assert_eq!(d.verdict(key(1, "TRIGGERED", "")), AlgoVerdict::Fresh);
        // A trailing stop: NEW ia:false, then NEW ia:true — one stop, not two.
        assert_eq!(d.verdict(key(2, "NEW", "false")), AlgoVerdict::Fresh);
        assert_eq!(d.verdict(key(2, "NEW", "true")), AlgoVerdict::SecondNew);
        assert_eq!(d.verdict(key(2, "NEW", "true")), AlgoVerdict::Replay);
        assert_eq!(d.verdict(key(2, "NEW", "false")), AlgoVerdict::Replay);
        assert_eq!(d.verdict(key(2, "TRIGGERING", "true")), AlgoVerdict::Fresh);
        // Only the second NEW arrived (the first was lost in a reconnect): it is the stop.
        assert_eq!(d.verdict(key(3, "NEW", "true")), AlgoVerdict::Fresh);
    }
}
