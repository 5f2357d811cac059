//! A minimal Binance client for tests that must not depend on the project's client: signed
//! REST calls (HMAC over the exact bytes sent), raw WebSocket helpers, and shape comparison of
//! JSON against the recorded fixtures in `tests/fixtures/binance/`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::fake_binance::{DOC_API_KEY, FakeBinance};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A minimal signed REST client: parameters in the query for GET/DELETE and in a form body for
/// POST/PUT, `timestamp` and `signature` appended last.
pub struct Rest<'a> {
    pub fake: &'a FakeBinance,
    pub http: reqwest::Client,
}

pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Answer {
    pub fn code(&self) -> i64 {
        self.body["code"].as_i64().unwrap_or(0)
    }
}

impl<'a> Rest<'a> {
    pub fn new(fake: &'a FakeBinance) -> Self {
        Rest { fake, http: reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap() }
    }

    pub async fn raw(&self, method: Method, path: &str, query: &str, body: &str, key: Option<&str>) -> Answer {
        let url = if query.is_empty() {
            format!("{}{path}", self.fake.rest_url())
        } else {
            format!("{}{path}?{query}", self.fake.rest_url())
        };
        let mut req = self.http.request(method, url);
        if let Some(k) = key {
            req = req.header("X-MBX-APIKEY", k);
        }
        if !body.is_empty() {
            req = req.header("content-type", "application/x-www-form-urlencoded").body(body.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer { status, body, headers }
    }

    pub async fn public(&self, path: &str, params: &[(&str, &str)]) -> Answer {
        let q = serde_urlencoded::to_string(params).unwrap();
        self.raw(Method::GET, path, &q, "", None).await
    }

    pub async fn signed(&self, method: Method, path: &str, params: &[(&str, &str)]) -> Answer {
        let mut q = serde_urlencoded::to_string(params).unwrap();
        if !q.is_empty() {
            q.push('&');
        }
        q.push_str(&format!("recvWindow=5000&timestamp={}", now_ms()));
        let sig = self.fake.sign(&q);
        let signed = format!("{q}&signature={sig}");
        if method == Method::POST || method == Method::PUT {
            self.raw(method, path, "", &signed, Some(DOC_API_KEY)).await
        } else {
            self.raw(method, path, &signed, "", Some(DOC_API_KEY)).await
        }
    }

    pub async fn key_only(&self, method: Method, path: &str) -> Answer {
        self.raw(method, path, "", "", Some(DOC_API_KEY)).await
    }

    pub async fn market(&self, symbol: &str, side: &str, qty: &str, cid: &str) -> Answer {
        let p = [("symbol", symbol), ("side", side), ("type", "MARKET"), ("quantity", qty), ("newClientOrderId", cid)];
        self.signed(Method::POST, "/fapi/v1/order", &p).await
    }
}

pub async fn connect(url: &str) -> Ws {
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// Next text frame as JSON (pings are skipped), or `None` after `timeout` / on close.
pub async fn next_json(ws: &mut Ws, timeout: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.checked_duration_since(tokio::time::Instant::now())?;
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(t.as_str()).ok(),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

/// Reads frames until one satisfies `pred`; returns it (and everything seen before in `seen`).
pub async fn wait_for(ws: &mut Ws, seen: &mut Vec<Value>, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let v = next_json(ws, left).await.unwrap_or_else(|| panic!("timed out; seen so far: {seen:#?}"));
        seen.push(v.clone());
        if pred(&v) {
            return v;
        }
    }
}

pub async fn private_socket(fake: &FakeBinance, rest: &Rest<'_>) -> Ws {
    let lk = rest.key_only(Method::POST, "/fapi/v1/listenKey").await;
    assert_eq!(lk.status, 200, "{:?}", lk.body);
    let key = lk.body["listenKey"].as_str().unwrap().to_string();
    let ws = connect(&fake.private_ws_url(&key)).await;
    assert!(fake.wait_for_ws_connections(1, Duration::from_secs(2)).await);
    ws
}

pub fn fixture(path: &str) -> Value {
    let full = format!("{}/tests/fixtures/binance/{path}", env!("CARGO_MANIFEST_DIR"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&full).unwrap()).unwrap();
    // Some captures are wrapped as {"stream":..,"data":..}.
    if v.get("data").is_some() && v.get("stream").is_some() { v["data"].clone() } else { v }
}

/// Every key of `template` exists in `actual` with the same JSON type (recursively; arrays are
/// compared on their first elements; `null` in the template matches anything).
pub fn assert_shape(actual: &Value, template: &Value, at: &str) {
    match (actual, template) {
        (_, Value::Null) => {}
        (Value::Object(a), Value::Object(t)) => {
            for (k, tv) in t {
                let av = a.get(k).unwrap_or_else(|| panic!("{at}.{k} missing; actual keys: {:?}", a.keys()));
                assert_shape(av, tv, &format!("{at}.{k}"));
            }
        }
        (Value::Array(a), Value::Array(t)) => {
            if let (Some(a0), Some(t0)) = (a.first(), t.first()) {
                assert_shape(a0, t0, &format!("{at}[0]"));
            }
        }
        (Value::String(_), Value::String(_))
        | (Value::Bool(_), Value::Bool(_))
        | (Value::Number(_), Value::Number(_)) => {}
        _ => panic!("{at}: type differs: actual {actual} vs recorded {template}"),
    }
}
