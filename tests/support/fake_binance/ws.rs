//! The WebSocket side: routes `/market`, `/public`, `/private` (and the retired unrouted `/ws`,
//! `/stream`), `ws` and `stream` access modes, SUBSCRIBE/UNSUBSCRIBE/LIST_SUBSCRIPTIONS/
//! SET_PROPERTY/GET_PROPERTY, server pings, message-rate limit, lifetime limit, fan-out of market
//! and user events, and the periodic market tick.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{StatusCode, Uri};

use kinetic::core::models::Candle;
use rand::Rng;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use super::Shared;
use super::candles::{align, candle_at};
use super::endpoints::interval_ms;
use super::engine;
use super::json;
use super::state::{Conn, Market, Route, State, WsOut, system_ms};

/// What a connection asked for in its URL.
#[derive(Debug, Clone)]
pub struct ConnSpec {
    pub route: Route,
    pub combined: bool,
    pub streams: Vec<String>,
    pub listen_key: Option<String>,
    pub events: Option<BTreeSet<String>>,
}

/// Lowercases the symbol part of a stream name (`BTCUSDT@kline_1m` → `btcusdt@kline_1m`);
/// `!`-streams are kept as they are.
pub fn normalize_stream(s: &str) -> String {
    if s.starts_with('!') {
        return s.to_string();
    }
    match s.split_once('@') {
        Some((sym, rest)) => format!("{}@{rest}", sym.to_lowercase()),
        None => s.to_lowercase(),
    }
}

/// The route a stream is served on since the 2026-04-23 split.
pub fn stream_route(stream: &str) -> Route {
    let public = ["@bookTicker", "!bookTicker", "@depth", "@rpiDepth", "@trade"];
    if public.iter().any(|p| stream.contains(p)) { Route::Public } else { Route::Market }
}

fn route_delivers(conn: Route, stream: Route) -> bool {
    match conn {
        Route::Market => stream == Route::Market,
        Route::Public | Route::Unrouted => stream == Route::Public,
        Route::Private => false,
    }
}

fn query_params(uri: &Uri) -> Vec<(String, String)> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Parses a connection URL; `None` = 404.
pub fn parse_path(uri: &Uri) -> Option<ConnSpec> {
    let path = uri.path().trim_end_matches('/');
    // Path segments may be percent-encoded (`%21markPrice@arr`, a non-ASCII symbol).
    let decoded: Vec<String> = path
        .split('/')
        .filter(|p| !p.is_empty())
        .map(|p| percent_encoding::percent_decode_str(p).decode_utf8_lossy().into_owned())
        .collect();
    let parts: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let (route, rest) = match parts.first().copied() {
        Some("market") => (Route::Market, &parts[1..]),
        Some("public") => (Route::Public, &parts[1..]),
        Some("private") => (Route::Private, &parts[1..]),
        Some("ws") | Some("stream") => (Route::Unrouted, &parts[..]),
        _ => return None,
    };
    let mode = rest.first().copied()?;
    let params = query_params(uri);
    let mut spec = ConnSpec { route, combined: mode == "stream", streams: Vec::new(), listen_key: None, events: None };
    match mode {
        "ws" => {
            if route == Route::Private {
                spec.listen_key = rest.get(1).map(|s| s.to_string());
            } else {
                spec.streams = rest[1..].iter().map(|s| normalize_stream(s)).collect();
            }
        }
        "stream" => {
            if rest.len() > 1 {
                return None;
            }
            if let Some((_, v)) = params.iter().find(|(k, _)| k == "streams") {
                spec.streams = v.split('/').filter(|s| !s.is_empty()).map(normalize_stream).collect();
            }
        }
        _ => return None,
    }
    if route == Route::Private {
        if let Some((_, k)) = params.iter().find(|(k, _)| k == "listenKey") {
            spec.listen_key = Some(k.clone());
        }
        if let Some((_, e)) = params.iter().find(|(k, _)| k == "events") {
            spec.events = Some(e.split('/').filter(|s| !s.is_empty()).map(str::to_string).collect());
        }
    }
    Some(spec)
}

impl State {
    /// Whether any connection would receive `stream`.
    pub fn wanted(&self, stream: &str) -> bool {
        let route = stream_route(stream);
        self.conns.values().any(|c| route_delivers(c.route, route) && c.subscriptions.contains(stream))
    }

    /// Sends a market payload to every connection subscribed to `stream` on the right route.
    pub fn emit_market(&mut self, stream: &str, payload: &Value) {
        if self.ws_silent {
            return;
        }
        let route = stream_route(stream);
        let mut raw: Option<String> = None;
        let mut wrapped: Option<String> = None;
        for c in self.conns.values() {
            if !route_delivers(c.route, route)
                || !c.subscriptions.contains(stream)
                || self.ws_silent_routes.contains(&c.route)
            {
                continue;
            }
            let text = if c.combined {
                wrapped.get_or_insert_with(|| json!({ "stream": stream, "data": payload }).to_string()).clone()
            } else {
                raw.get_or_insert_with(|| payload.to_string()).clone()
            };
            let _ = c.tx.send(WsOut::Text(text));
        }
    }

    /// Sends a user-data event to every `/private` connection using the live listenKey.
    pub fn emit_user(&mut self, event: Value) {
        if self.ws_silent || self.ws_silent_routes.contains(&Route::Private) {
            return;
        }
        let Some(lk) = self.listen_key.as_ref().filter(|k| !k.dead) else { return };
        let kind = event.get("e").and_then(Value::as_str).unwrap_or("").to_string();
        for c in self.conns.values() {
            if c.route != Route::Private || c.listen_key.as_deref() != Some(lk.key.as_str()) {
                continue;
            }
            if let Some(filter) = &c.events
                && !filter.contains(&kind)
            {
                continue;
            }
            let text =
                if c.combined { json!({ "stream": lk.key, "data": event }).to_string() } else { event.to_string() };
            let _ = c.tx.send(WsOut::Text(text));
        }
    }

    /// Expires the listenKey if its time is up: pushes `listenKeyExpired` to its connections and
    /// then stays silent for them.
    pub fn check_listen_key_expiry(&mut self, force: bool) {
        let now = self.now();
        let Some(lk) = self.listen_key.clone() else { return };
        if lk.dead || (!force && now < lk.expires_at) {
            return;
        }
        let t = self.event_time();
        let ev = json!({ "e": "listenKeyExpired", "E": t, "listenKey": lk.key });
        self.emit_user(ev);
        if let Some(k) = self.listen_key.as_mut() {
            k.dead = true;
        }
    }

    /// One market tick: mark-price and ticker arrays plus per-symbol streams that have subscribers.
    pub fn market_tick(&mut self, tick_no: u64) {
        self.walk_prices();
        self.auto_kline_tick();
        let t = self.event_time();
        let every_3 = tick_no.is_multiple_of(3);
        for (stream, due) in [("!markPrice@arr@1s", true), ("!markPrice@arr", every_3)] {
            if due && self.wanted(stream) {
                let arr: Vec<Value> = self.markets.values().map(|m| json::mark_price_event(m, t)).collect();
                self.emit_market(stream, &Value::Array(arr));
            }
        }
        if self.wanted("!miniTicker@arr") {
            let arr: Vec<Value> = self.markets.values().map(|m| json::mini_ticker_event(m, t)).collect();
            self.emit_market("!miniTicker@arr", &Value::Array(arr));
        }
        if self.wanted("!ticker@arr") {
            let arr: Vec<Value> = self.markets.values().map(|m| json::ticker_event(m, t)).collect();
            self.emit_market("!ticker@arr", &Value::Array(arr));
        }
        let subs: BTreeSet<String> = self.conns.values().flat_map(|c| c.subscriptions.iter().cloned()).collect();
        for s in subs {
            let Some((sym, kind)) = s.split_once('@') else { continue };
            let build: fn(&Market, i64) -> Value = match kind {
                "markPrice@1s" => json::mark_price_event,
                "markPrice" if every_3 => json::mark_price_event,
                "miniTicker" => json::mini_ticker_event,
                "ticker" => json::ticker_event,
                _ => continue,
            };
            let Some(payload) = self.markets.get(&sym.to_uppercase()).map(|m| build(m, t)) else { continue };
            self.emit_market(&s, &payload);
        }
    }

    /// Moves every price by a seeded random step (see `FakeBinance::set_price_walk`).
    fn walk_prices(&mut self) {
        let Some((bps, mut rng)) = self.price_walk.take() else { return };
        let symbols: Vec<String> = self.markets.keys().cloned().collect();
        let max = i64::from(bps);
        for s in &symbols {
            let step: i64 = rng.random_range(-max..=max);
            if let Some(m) = self.markets.get_mut(s) {
                let tick = m.spec.tick_size;
                let moved = m.mark_price * (Decimal::ONE + Decimal::new(step, 4));
                let rounded = ((moved / tick).round() * tick).max(tick);
                m.mark_price = rounded;
                m.index_price = rounded;
                if m.last_follows_mark {
                    m.last_price = rounded;
                }
            }
            engine::on_price_change(self, s);
        }
        self.price_walk = Some((bps, rng));
    }

    /// Streams the current candle of every subscribed kline stream (see `set_auto_klines`).
    fn auto_kline_tick(&mut self) {
        if !self.auto_klines {
            return;
        }
        let now = self.now();
        let subs: BTreeSet<String> = self
            .conns
            .values()
            .filter(|c| c.route == Route::Market)
            .flat_map(|c| c.subscriptions.iter().filter(|s| s.contains("@kline_")).cloned())
            .collect();
        for stream in subs {
            let Some((sym, kind)) = stream.split_once('@') else { continue };
            let Some(interval) = kind.strip_prefix("kline_") else { continue };
            let Some(ims) = interval_ms(interval) else { continue };
            let symbol = sym.to_uppercase();
            let Some(last) = self.markets.get(&symbol).and_then(|m| m.last_price.to_f64()) else { continue };
            let aligned = align(now, ims);
            let series = self.klines.entry((symbol.clone(), interval.to_string())).or_default();
            let latest = series.values().next_back().cloned();
            let mut out: Vec<(Candle, bool)> = Vec::new();
            match latest {
                Some(mut c) if c.open_time == aligned => {
                    c.close = last;
                    c.high = c.high.max(last);
                    c.low = c.low.min(last);
                    c.volume += 1.0;
                    c.quote_volume += last;
                    c.trades += 1;
                    series.insert(c.open_time, c);
                    out.push((c, false));
                }
                Some(c) if c.open_time > aligned => continue,
                previous => {
                    if let Some(prev) = previous
                        && prev.open_time + ims == aligned
                    {
                        out.push((prev, true));
                    }
                    let c = candle_at(aligned, ims, last, last, 0.0);
                    series.insert(aligned, c);
                    out.push((c, false));
                }
            }
            for (c, closed) in out {
                let t = self.event_time();
                let ev = json::kline_event(&symbol, interval, &c, closed, t);
                self.emit_market(&stream, &ev);
            }
        }
    }

    /// Pushes mark-price updates of one symbol right away (after a test changed it).
    pub fn push_mark(&mut self, symbol: &str) {
        let Some(m) = self.markets.get(symbol).cloned() else { return };
        let t = self.event_time();
        let ev = json::mark_price_event(&m, t);
        for stream in ["!markPrice@arr@1s", "!markPrice@arr"] {
            if self.wanted(stream) {
                self.emit_market(stream, &Value::Array(vec![ev.clone()]));
            }
        }
        let lower = symbol.to_lowercase();
        for kind in ["markPrice@1s", "markPrice"] {
            let stream = format!("{lower}@{kind}");
            if self.wanted(&stream) {
                self.emit_market(&stream, &ev);
            }
        }
    }
}

/// Accept loop.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => break,
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    tokio::spawn(handle_conn(stream, shared.clone()));
                }
            }
        }
    }
}

/// Housekeeping: listenKey expiry and the periodic market tick.
pub async fn background(shared: Arc<Shared>) {
    let tick_ms = shared.config.market_tick_ms;
    let mut tick = tokio::time::interval(Duration::from_millis(tick_ms.unwrap_or(1000).max(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut expiry = tokio::time::interval(Duration::from_millis(100));
    let mut tick_no: u64 = 0;
    let mut last_drop = system_ms();
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => break,
            _ = tick.tick() => {
                if tick_ms.is_some() {
                    tick_no += 1;
                    shared.lock().market_tick(tick_no);
                }
            }
            _ = expiry.tick() => {
                let mut st = shared.lock();
                st.check_listen_key_expiry(false);
                if let Some(every) = st.ws_drop_interval_ms {
                    let now = system_ms();
                    if now - last_drop >= every as i64 {
                        last_drop = now;
                        for c in st.conns.values() {
                            let _ = c.tx.send(WsOut::Drop);
                        }
                    }
                }
            }
        }
    }
}

fn error_response(status: StatusCode, msg: &str) -> ErrorResponse {
    let mut r = ErrorResponse::new(Some(msg.to_string()));
    *r.status_mut() = status;
    r
}

// The handshake callback's error type is tungstenite's, not ours.
#[allow(clippy::result_large_err)]
async fn handle_conn(stream: TcpStream, shared: Arc<Shared>) {
    let refuse = shared.lock().ws_refuse;
    let mut spec: Option<ConnSpec> = None;
    let mut path = String::new();
    let callback = |req: &Request, resp: Response| {
        path = req.uri().to_string();
        if refuse {
            return Err(error_response(StatusCode::SERVICE_UNAVAILABLE, "refused by fault switch"));
        }
        match parse_path(req.uri()) {
            Some(s) => {
                spec = Some(s);
                Ok(resp)
            }
            None => Err(error_response(StatusCode::NOT_FOUND, "unknown WebSocket path")),
        }
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else { return };
    let Some(spec) = spec else { return };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let id = {
        let mut st = shared.lock();
        let id = st.next_conn_id;
        st.next_conn_id += 1;
        st.ws_connects_total += 1;
        let now = st.now();
        st.conns.insert(
            id,
            Conn {
                id,
                route: spec.route,
                combined: spec.combined,
                path,
                subscriptions: spec.streams.iter().cloned().collect(),
                listen_key: spec.listen_key.clone(),
                events: spec.events.clone(),
                connected_at: now,
                tx,
            },
        );
        id
    };
    let cfg = &shared.config;
    let mut ping = tokio::time::interval(Duration::from_millis(cfg.ws_ping_interval_ms.max(10)));
    ping.tick().await;
    let lifetime = async {
        match cfg.ws_max_lifetime_ms {
            Some(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            None => std::future::pending::<()>().await,
        }
    };
    tokio::pin!(lifetime);
    let mut last_pong = system_ms();
    let mut recent: VecDeque<i64> = VecDeque::new();
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => {
                let _ = ws.close(None).await;
                break;
            }
            _ = &mut lifetime => {
                let _ = ws.close(None).await;
                break;
            }
            _ = ping.tick() => {
                if system_ms() - last_pong > cfg.ws_pong_timeout_ms as i64 {
                    break;
                }
                if ws.send(Message::Ping(Vec::from(&b"fake-binance"[..]).into())).await.is_err() {
                    break;
                }
            }
            out = rx.recv() => match out {
                Some(WsOut::Text(t)) => {
                    if ws.send(Message::text(t)).await.is_err() {
                        break;
                    }
                }
                Some(WsOut::Ping) => {
                    if ws.send(Message::Ping(Vec::from(&b"fake-binance"[..]).into())).await.is_err() {
                        break;
                    }
                }
                Some(WsOut::Close) => {
                    let _ = ws.close(None).await;
                    break;
                }
                Some(WsOut::Drop) | None => break,
            },
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Text(t))) => {
                    let now = system_ms();
                    recent.push_back(now);
                    while recent.front().is_some_and(|&x| now - x > 1000) {
                        recent.pop_front();
                    }
                    if cfg.ws_enforce_msg_rate && recent.len() > 10 {
                        let _ = ws.close(None).await;
                        break;
                    }
                    let reply = control_message(&shared, id, t.as_str());
                    if let Some(r) = reply
                        && ws.send(Message::text(r.to_string())).await.is_err()
                    {
                        break;
                    }
                }
                Some(Ok(Message::Pong(_))) => last_pong = system_ms(),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    shared.lock().conns.remove(&id);
}

/// Handles one control message; returns the reply.
fn control_message(shared: &Shared, conn_id: u64, text: &str) -> Option<Value> {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return Some(json!({ "code": 3, "msg": "Invalid JSON: expected value", "id": null }));
    };
    let id = v.get("id").cloned().unwrap_or(Value::Null);
    if !id.is_u64() {
        return Some(json!({ "code": 2, "msg": "Invalid request: request ID must be an unsigned integer", "id": id }));
    }
    let Some(method) = v.get("method").and_then(Value::as_str) else {
        return Some(json!({ "code": 2, "msg": "Invalid request: missing field `method`", "id": id }));
    };
    let params: Vec<Value> = v.get("params").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut st = shared.lock();
    let conn = st.conns.get_mut(&conn_id)?;
    match method {
        "SUBSCRIBE" | "UNSUBSCRIBE" => {
            let mut names = Vec::new();
            for p in &params {
                match p.as_str() {
                    Some(s) => names.push(normalize_stream(s)),
                    None => return Some(json!({ "code": 1, "msg": "Invalid value type: expected string", "id": id })),
                }
            }
            if method == "SUBSCRIBE" {
                if conn.subscriptions.len() + names.len() > 1024 {
                    return Some(json!({ "code": 2, "msg": "Invalid request: too many streams", "id": id }));
                }
                conn.subscriptions.extend(names);
            } else {
                for n in names {
                    conn.subscriptions.remove(&n);
                }
            }
            Some(json!({ "result": null, "id": id }))
        }
        "LIST_SUBSCRIPTIONS" => {
            let list: Vec<&String> = conn.subscriptions.iter().collect();
            Some(json!({ "result": list, "id": id }))
        }
        "SET_PROPERTY" => match (params.first().and_then(Value::as_str), params.get(1)) {
            (Some("combined"), Some(Value::Bool(b))) => {
                conn.combined = *b;
                Some(json!({ "result": null, "id": id }))
            }
            (Some("combined"), _) => {
                Some(json!({ "code": 1, "msg": "Invalid value type: expected Boolean", "id": id }))
            }
            _ => Some(json!({ "code": 0, "msg": "Unknown property", "id": id })),
        },
        "GET_PROPERTY" => match params.first().and_then(Value::as_str) {
            Some("combined") => Some(json!({ "result": conn.combined, "id": id })),
            _ => Some(json!({ "code": 0, "msg": "Unknown property", "id": id })),
        },
        _ => Some(json!({ "code": 2, "msg": "Invalid request: unknown variant", "id": id })),
    }
}
