//! The REST side: one axum fallback handler that logs the request, applies fault switches and
//! rate limits, authenticates like Binance (API key, HMAC over the exact query+body, timestamp
//! window), and dispatches to the endpoint implementations in `endpoints.rs`.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State as AxState;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use futures_util::FutureExt;
use hmac::{Hmac, Mac};
use rand::Rng;
use serde_json::{Value, json};
use sha2::Sha256;

use super::Shared;
use super::endpoints;
use super::engine::ApiError;
use super::faults::{FaultAction, FaultScope};
use super::state::{RequestRecord, State};

/// `RequestRecord::fault` of a request whose handling panicked.
pub const PANIC_LABEL: &str = "fake server panic";

/// Security type of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    None,
    /// API key header only (listenKey).
    UserStream,
    /// Key + timestamp + signature.
    Signed,
}

/// Decoded request parameters (query string wins over body for the same name).
#[derive(Debug, Clone, Default)]
pub struct Params {
    pub map: HashMap<String, String>,
}

impl Params {
    pub fn get(&self, k: &str) -> Option<&str> {
        self.map.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

/// Security and weight of an endpoint; `None` if unknown.
pub fn endpoint_info(method: &Method, path: &str, params: &Params) -> Option<(Security, u32)> {
    use Security::*;
    let has_symbol = params.get("symbol").is_some();
    let m = method.as_str();
    let info = match (m, path) {
        ("GET", "/fapi/v1/ping") | ("GET", "/fapi/v1/time") | ("GET", "/fapi/v1/exchangeInfo") => (None, 1),
        ("GET", "/fapi/v1/ticker/24hr") => (None, if has_symbol { 1 } else { 40 }),
        ("GET", "/fapi/v1/premiumIndex") => (None, if has_symbol { 1 } else { 10 }),
        ("GET", "/fapi/v1/klines") => {
            let limit: u32 = params.get("limit").and_then(|l| l.parse().ok()).unwrap_or(500);
            let w = match limit {
                0..=99 => 1,
                100..=499 => 2,
                500..=1000 => 5,
                _ => 10,
            };
            (None, w)
        }
        ("GET", "/fapi/v1/leverageBracket") => (Signed, 1),
        ("GET", "/fapi/v1/apiTradingStatus") => (Signed, if has_symbol { 1 } else { 10 }),
        ("GET", "/fapi/v1/positionSide/dual") => (Signed, 30),
        ("POST", "/fapi/v1/positionSide/dual") => (Signed, 1),
        ("POST", "/fapi/v1/marginType") | ("POST", "/fapi/v1/leverage") => (Signed, 1),
        ("POST", "/fapi/v1/order") | ("POST", "/fapi/v1/algoOrder") => (Signed, 0),
        ("GET", "/fapi/v1/order") | ("DELETE", "/fapi/v1/order") | ("GET", "/fapi/v1/openOrder") => (Signed, 1),
        ("GET", "/fapi/v1/openOrders") => (Signed, if has_symbol { 1 } else { 40 }),
        ("GET", "/fapi/v1/allOrders") => (Signed, 5),
        ("DELETE", "/fapi/v1/allOpenOrders") => (Signed, 1),
        ("DELETE", "/fapi/v1/algoOrder") | ("GET", "/fapi/v1/algoOrder") => (Signed, 1),
        ("GET", "/fapi/v1/openAlgoOrders") => (Signed, if has_symbol { 1 } else { 40 }),
        ("DELETE", "/fapi/v1/algoOpenOrders") => (Signed, 1),
        ("GET", "/fapi/v1/allAlgoOrders") => (Signed, 5),
        ("GET", "/fapi/v2/positionRisk") | ("GET", "/fapi/v3/positionRisk") => (Signed, 5),
        ("GET", "/fapi/v2/account") | ("GET", "/fapi/v3/account") => (Signed, 5),
        ("GET", "/fapi/v2/balance") | ("GET", "/fapi/v3/balance") => (Signed, 5),
        ("GET", "/fapi/v1/symbolConfig") | ("GET", "/fapi/v1/accountConfig") => (Signed, 5),
        ("GET", "/fapi/v1/commissionRate") => (Signed, 20),
        ("GET", "/fapi/v1/userTrades") => (Signed, 5),
        ("GET", "/fapi/v1/fundingInfo") => (None, 0),
        ("GET", "/fapi/v1/fundingRate") => (None, 0),
        // Wallet API (spot host; the fake serves both hosts on one port).
        ("GET", "/sapi/v1/account/apiRestrictions") => (Signed, 1),
        ("POST", "/fapi/v1/listenKey") | ("PUT", "/fapi/v1/listenKey") | ("DELETE", "/fapi/v1/listenKey") => {
            (UserStream, 1)
        }
        _ => return Option::None,
    };
    Some(info)
}

fn is_mutating(method: &Method) -> bool {
    method != Method::GET
}

/// The endpoints of one order's life: place, look up, cancel (plain and algo).
fn is_order_traffic(method: &Method, path: &str) -> bool {
    (path == "/fapi/v1/order" || path == "/fapi/v1/algoOrder")
        && (method == Method::POST || method == Method::GET || method == Method::DELETE)
}

fn scope_matches(scope: &FaultScope, method: &Method, path: &str, signed: bool, params: &Params) -> bool {
    let post = method == Method::POST;
    match scope {
        FaultScope::SymbolOrders(symbol) => is_order_traffic(method, path) && params.get("symbol") == Some(symbol),
        FaultScope::Any => true,
        FaultScope::Signed => signed,
        FaultScope::OrderPlacement => post && (path == "/fapi/v1/order" || path == "/fapi/v1/algoOrder"),
        FaultScope::MarketOrder => post && path == "/fapi/v1/order",
        FaultScope::AlgoOrder => post && path == "/fapi/v1/algoOrder",
        FaultScope::Endpoint(m, p) => m.eq_ignore_ascii_case(method.as_str()) && p == path,
    }
}

/// Picks the fault for this request (queued first, then random).
fn take_fault(st: &mut State, method: &Method, path: &str, signed: bool, params: &Params) -> Option<FaultAction> {
    let reduce_only = params.get("reduceOnly").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let pos = st.faults.queue.iter().position(|f| {
        scope_matches(&f.scope, method, path, signed, params)
            && match f.action {
                FaultAction::InvalidTimestamp => signed,
                FaultAction::InsufficientMargin => method == Method::POST && path == "/fapi/v1/order" && !reduce_only,
                _ => true,
            }
    });
    if let Some(i) = pos {
        let action = st.faults.queue[i].action.clone();
        st.faults.queue[i].remaining = st.faults.queue[i].remaining.saturating_sub(1);
        if st.faults.queue[i].remaining == 0 {
            st.faults.queue.remove(i);
        }
        return Some(action);
    }
    let chaos = st.faults.random.clone()?;
    let r: f64 = st.rng.random();
    chaos.pick(r, is_mutating(method), signed)
}

fn parse_pairs(s: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(s.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

fn parse_params(query: &str, body: &str) -> Result<Params, ApiError> {
    let mut map = HashMap::new();
    for source in [query, body] {
        let mut seen = std::collections::HashSet::new();
        for (k, v) in parse_pairs(source) {
            if !seen.insert(k.clone()) {
                return Err(ApiError::new(-1101, format!("Duplicate values for parameter '{k}'.")));
            }
            // The query string wins over the body.
            map.entry(k).or_insert(v);
        }
    }
    Ok(Params { map })
}

/// Splits `...&signature=<hex>` off `s` (it must be the last parameter).
fn strip_signature(s: &str) -> Option<(String, String)> {
    let idx = if s.starts_with("signature=") { Some(0) } else { s.rfind("&signature=").map(|i| i + 1) }?;
    let sig = &s[idx + "signature=".len()..];
    if sig.contains('&') {
        return None;
    }
    let rest = if idx == 0 { String::new() } else { s[..idx - 1].to_string() };
    Some((rest, sig.to_string()))
}

/// HMAC-SHA256 hex of `payload`.
pub fn hmac_hex(secret: &str, payload: &str) -> String {
    match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(payload.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

fn authenticate(
    st: &State,
    security: Security,
    headers: &HeaderMap,
    query: &str,
    body: &str,
    params: &Params,
) -> Result<(), ApiError> {
    if security == Security::None {
        return Ok(());
    }
    let key = headers.get("x-mbx-apikey").and_then(|v| v.to_str().ok());
    match key {
        None => return Err(ApiError::new(-2014, "API-key format invalid.").with_status(401)),
        Some(k) if k != st.cfg.api_key => {
            return Err(ApiError::new(-2015, "Invalid API-key, IP, or permissions for action, request ip: 127.0.0.1")
                .with_status(401));
        }
        Some(_) => {}
    }
    if security == Security::UserStream {
        return Ok(());
    }
    let payload = if let Some((body_rest, sig)) = strip_signature(body) {
        Some((format!("{query}{body_rest}"), sig))
    } else {
        strip_signature(query).map(|(q, sig)| (format!("{q}{body}"), sig))
    };
    let Some((payload, sig)) = payload else {
        if params.get("signature").is_some() {
            return Err(ApiError::new(-1022, "Signature for this request is not valid."));
        }
        return Err(ApiError::mandatory("signature"));
    };
    let Some(ts) = params.get("timestamp") else { return Err(ApiError::mandatory("timestamp")) };
    let Ok(ts) = ts.parse::<i64>() else {
        return Err(ApiError::new(
            -1102,
            "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.",
        ));
    };
    let recv_window: i64 = match params.get("recvWindow") {
        None => 5000,
        Some(r) => match r.parse::<i64>() {
            Ok(r) if r > 0 && r <= 60_000 => r,
            _ => return Err(ApiError::new(-1131, "recvWindow must be less than 60000")),
        },
    };
    if !hmac_hex(&st.cfg.api_secret, &payload).eq_ignore_ascii_case(&sig) {
        return Err(ApiError::new(-1022, "Signature for this request is not valid."));
    }
    let server = st.now();
    if ts >= server.saturating_add(1000) {
        return Err(ApiError::new(-1021, "Timestamp for this request was 1000ms ahead of the server's time."));
    }
    if server.saturating_sub(ts) > recv_window {
        return Err(ApiError::new(-1021, "Timestamp for this request is outside of the recvWindow."));
    }
    Ok(())
}

fn minute(now: i64) -> i64 {
    now / 60_000
}

fn json_response(status: u16, body: String, st: &State, order_counts: bool) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    let used = if st.weight_window.0 == minute(st.now()) { st.weight_window.1 } else { 0 };
    if let Ok(v) = HeaderValue::from_str(&used.to_string()) {
        h.insert("x-mbx-used-weight-1m", v);
    }
    if order_counts {
        if let Ok(v) = HeaderValue::from_str(&st.order_count_10s.1.to_string()) {
            h.insert("x-mbx-order-count-10s", v);
        }
        if let Ok(v) = HeaderValue::from_str(&st.order_count_1m.1.to_string()) {
            h.insert("x-mbx-order-count-1m", v);
        }
    }
    resp
}

fn error_body(e: &ApiError) -> String {
    json!({ "code": e.code, "msg": e.msg }).to_string()
}

fn finish(shared: &Shared, seq: u64, status: u16, code: Option<i64>, fault: Option<String>) {
    let mut st = shared.lock();
    if let Some(r) = st.requests.iter_mut().rev().find(|r| r.seq == seq) {
        r.http_status = status;
        r.error_code = code;
        r.fault = fault;
    }
}

fn with_retry_after(mut resp: Response, secs: u64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        resp.headers_mut().insert("retry-after", v);
    }
    resp
}

async fn handle(
    AxState(shared): AxState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    let body = String::from_utf8_lossy(&body).into_owned();
    let signed_flag = query.contains("signature=") || body.contains("signature=");
    // Log on arrival (so requests whose client gave up are logged too).
    let (arrival, latency) = {
        let mut st = shared.lock();
        let now = st.now();
        let seq = st.next_request_seq;
        st.next_request_seq += 1;
        st.requests.push(RequestRecord {
            seq,
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            body: body.clone(),
            signed: signed_flag,
            api_key_present: headers.contains_key("x-mbx-apikey"),
            time_ms: now,
            http_status: 0,
            error_code: None,
            fault: None,
        });
        (seq, st.faults.base_latency_ms)
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    // A bug in the fake must not look like a network failure: answer 500 and log it.
    let outcome = AssertUnwindSafe(process(&shared, &method, &path, &query, &body, &headers)).catch_unwind().await;
    let (resp, status, code, fault) = outcome.unwrap_or_else(|_| {
        let st = shared.lock();
        let e = ApiError::new(-1000, "fake server panicked while handling this request (a bug in tests/support)");
        (json_response(500, error_body(&e), &st, false), 500, Some(-1000), Some(PANIC_LABEL.to_string()))
    });
    finish(&shared, arrival, status, code, fault);
    resp
}

/// Serves one request. Every connection runs in its own task (axum), so a request held by a
/// fault (`TimeoutAfterExecute`, `Latency`, `Hold` ...) delays only itself. The state lock is
/// taken in short blocks and never across an `.await` (a `std` guard there would also make this
/// future `!Send`, which axum refuses), so a sleeping request holds no lock.
async fn process(
    shared: &Shared,
    method: &Method,
    path: &str,
    query: &str,
    body: &str,
    headers: &HeaderMap,
) -> (Response, u16, Option<i64>, Option<String>) {
    let params = match parse_params(query, body) {
        Ok(p) => p,
        Err(e) => {
            let st = shared.lock();
            return (json_response(400, error_body(&e), &st, false), 400, Some(e.code), None);
        }
    };
    // Ban (418) and rate limit (429) come first, like Binance's gateway.
    {
        let mut st = shared.lock();
        let now = st.now();
        if let Some(until) = st.ban_until {
            if now < until {
                let e = ApiError::new(
                    -1003,
                    format!(
                        "Way too many requests; IP(127.0.0.1) banned until {until}. Please use the websocket for live updates to avoid bans."
                    ),
                );
                let secs = ((until - now) as u64).div_ceil(1000);
                let resp = with_retry_after(json_response(418, error_body(&e), &st, false), secs);
                return (resp, 418, Some(-1003), Some("banned".into()));
            }
            st.ban_until = None;
        }
    }
    let Some((security, weight)) = endpoint_info(method, path, &params) else {
        let st = shared.lock();
        let e = ApiError::new(-5000, format!("Path {path}, Method {method} is invalid"));
        return (json_response(404, error_body(&e), &st, false), 404, Some(e.code), None);
    };
    let signed = security == Security::Signed;
    let order_path = path == "/fapi/v1/order" || path == "/fapi/v1/algoOrder";
    let fault = {
        let mut st = shared.lock();
        let f = take_fault(&mut st, method, path, signed, &params);
        if let Some(f) = &f {
            st.faults.record(&f.label());
        }
        f
    };
    let label = fault.as_ref().map(FaultAction::label);
    // Faults that answer without executing.
    match &fault {
        Some(FaultAction::Error { http_status, code, msg, execute_first: false }) => {
            let st = shared.lock();
            let e = ApiError::new(*code, msg.clone());
            return (json_response(*http_status, error_body(&e), &st, false), *http_status, Some(*code), label);
        }
        Some(FaultAction::Html { http_status }) => {
            let mut resp = Response::new(Body::from(format!(
                "<html><head><title>{http_status} Bad Gateway</title></head><body><center><h1>{http_status} Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
            )));
            *resp.status_mut() = StatusCode::from_u16(*http_status).unwrap_or(StatusCode::BAD_GATEWAY);
            resp.headers_mut().insert("content-type", HeaderValue::from_static("text/html"));
            return (resp, *http_status, None, label);
        }
        Some(FaultAction::Body { http_status, body, execute_first: false }) => {
            let st = shared.lock();
            return (json_response(*http_status, body.clone(), &st, false), *http_status, None, label);
        }
        Some(FaultAction::DropConnection { execute_first: false }) => return (broken_response(), 0, None, label),
        Some(FaultAction::TimeoutNotExecuted { ms }) => {
            tokio::time::sleep(Duration::from_millis(*ms)).await;
            let st = shared.lock();
            let e = ApiError::new(-1001, "Service Unavailable.");
            return (json_response(503, error_body(&e), &st, false), 503, Some(e.code), label);
        }
        Some(FaultAction::Latency { ms }) => tokio::time::sleep(Duration::from_millis(*ms)).await,
        Some(FaultAction::Hold { execute_first: false }) => hold(shared).await,
        Some(FaultAction::RateLimited { retry_after_secs }) => {
            let st = shared.lock();
            let e = ApiError::new(-1003, too_many_msg(&st));
            let resp = with_retry_after(json_response(429, error_body(&e), &st, false), *retry_after_secs);
            return (resp, 429, Some(-1003), label);
        }
        Some(FaultAction::Ban { secs }) => {
            let mut st = shared.lock();
            let until = st.now() + (*secs as i64) * 1000;
            st.ban_until = Some(until);
            let e = ApiError::new(
                -1003,
                format!(
                    "Way too many requests; IP(127.0.0.1) banned until {until}. Please use the websocket for live updates to avoid bans."
                ),
            );
            let resp = with_retry_after(json_response(418, error_body(&e), &st, false), *secs);
            return (resp, 418, Some(-1003), label);
        }
        _ => {}
    }
    // Weight accounting and the real rate limit.
    {
        let mut st = shared.lock();
        let now = st.now();
        let m = minute(now);
        if st.weight_window.0 != m {
            st.weight_window = (m, 0);
            st.requests_while_limited = 0;
        }
        if let Some(limit) = st.cfg.weight_limit_1m
            && st.weight_window.1 + weight > limit
        {
            st.requests_while_limited += 1;
            if st.requests_while_limited > st.cfg.requests_429_before_ban {
                let until = now + st.cfg.ban_secs as i64 * 1000;
                st.ban_until = Some(until);
            }
            let e = ApiError::new(-1003, too_many_msg(&st));
            let secs = ((60_000 - now.rem_euclid(60_000)) as u64).div_ceil(1000);
            let resp = with_retry_after(json_response(429, error_body(&e), &st, false), secs);
            return (resp, 429, Some(-1003), Some("weight limit".into()));
        }
        st.weight_window.1 += weight;
    }
    // Authentication, then fault answers that need an authenticated request, then execution.
    let result = {
        let mut st = shared.lock();
        match authenticate(&st, security, headers, query, body, &params) {
            Err(e) => Err(e),
            Ok(()) => match &fault {
                Some(FaultAction::InvalidTimestamp) => {
                    Err(ApiError::new(-1021, "Timestamp for this request is outside of the recvWindow."))
                }
                Some(FaultAction::InsufficientMargin) => Err(ApiError::new(-2019, "Margin is insufficient.")),
                _ => endpoints::execute(&mut st, method, path, &params),
            },
        }
    };
    let executed_ok = result.is_ok();
    match &fault {
        Some(FaultAction::Error { http_status, code, msg, execute_first: true }) => {
            let st = shared.lock();
            let e = ApiError::new(*code, msg.clone());
            return (json_response(*http_status, error_body(&e), &st, false), *http_status, Some(*code), label);
        }
        Some(FaultAction::Body { http_status, body, execute_first: true }) => {
            let st = shared.lock();
            return (json_response(*http_status, body.clone(), &st, false), *http_status, None, label);
        }
        Some(FaultAction::DropConnection { execute_first: true }) => return (broken_response(), 0, None, label),
        Some(FaultAction::TimeoutAfterExecute { ms }) => tokio::time::sleep(Duration::from_millis(*ms)).await,
        Some(FaultAction::Hold { execute_first: true }) => hold(shared).await,
        _ => {}
    }
    let st = shared.lock();
    match result {
        Ok(v) => {
            let mut text = v.to_string();
            if executed_ok && matches!(fault, Some(FaultAction::TruncatedBody)) {
                let cut = text.len() / 2;
                let mut cut = cut.max(1);
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
            }
            (json_response(200, text, &st, order_path), 200, None, label)
        }
        Err(e) => (json_response(e.http_status, error_body(&e), &st, order_path), e.http_status, Some(e.code), label),
    }
}

/// Waits for `release_held_requests` or shutdown, counted in `Shared::held`.
async fn hold(shared: &Shared) {
    use std::sync::atomic::Ordering;
    let mut rx = shared.release.subscribe();
    rx.mark_unchanged();
    // Decrements on drop too: a client that gives up (timeout, kill -9) drops the connection
    // and with it this future, which must not leave the count behind.
    struct Held<'a>(&'a std::sync::atomic::AtomicUsize);
    impl Drop for Held<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }
    shared.held.fetch_add(1, Ordering::SeqCst);
    let _held = Held(&shared.held);
    tokio::select! {
        _ = rx.changed() => {}
        _ = shared.cancel.cancelled() => {}
    }
}

/// A response whose body fails at once: hyper aborts the connection instead of answering.
fn broken_response() -> Response {
    let failing = futures_util::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "fault: connection dropped",
        ))
    });
    let mut resp = Response::new(Body::from_stream(failing));
    resp.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    resp
}

fn too_many_msg(st: &State) -> String {
    format!(
        "Too many requests; current limit of IP(127.0.0.1) request weight per minute is {}. Please use WebSocket Streams for live updates to avoid polling the API.",
        st.cfg.weight_limit_1m.unwrap_or(2400)
    )
}

/// Parses a Binance decimal parameter (plain digits only: `1e-5` is -1100).
pub fn decimal_param(params: &Params, name: &str) -> Result<Option<rust_decimal::Decimal>, ApiError> {
    let Some(v) = params.get(name) else { return Ok(None) };
    let legal = {
        let (int, frac) = match v.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (v, None),
        };
        !int.is_empty()
            && int.len() <= 20
            && int.bytes().all(|b| b.is_ascii_digit())
            && frac.is_none_or(|f| !f.is_empty() && f.len() <= 20 && f.bytes().all(|b| b.is_ascii_digit()))
    };
    if !legal {
        return Err(ApiError::new(
            -1100,
            format!(
                "Illegal characters found in parameter '{name}'; legal range is '^([0-9]{{1,20}})(\\.[0-9]{{1,20}})?$'."
            ),
        ));
    }
    v.parse::<rust_decimal::Decimal>()
        .map(Some)
        .map_err(|_| ApiError::new(-1100, format!("Illegal characters found in parameter '{name}'.")))
}

/// Parses a boolean parameter (`true`/`false`, any case).
pub fn bool_param(params: &Params, name: &str) -> Result<Option<bool>, ApiError> {
    match params.get(name) {
        None => Ok(None),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(_) => Err(ApiError::new(-1130, format!("Data sent for parameter '{name}' is not valid."))),
    }
}

/// Parses an integer parameter.
pub fn int_param(params: &Params, name: &str) -> Result<Option<i64>, ApiError> {
    match params.get(name) {
        None => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ApiError::new(-1130, format!("Data sent for parameter '{name}' is not valid."))),
    }
}

/// The JSON used for `Value` bodies of success answers that carry only a code.
pub fn code_msg(msg: &str) -> Value {
    json!({ "code": 200, "msg": msg })
}
