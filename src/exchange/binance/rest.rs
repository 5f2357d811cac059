//! The raw REST layer: one queue for every call (minimum spacing, request-weight budget, 429
//! pauses, 418 bans), signing of the exact query sent, server-time offset, typed errors and the
//! retry policy. It knows endpoints only as method + path + parameters; turning responses into
//! models is `wire.rs`'s job, and order idempotency is the client's (`mod.rs`).
//!
//! Secrets: the API key goes into one header, the secret only into [`super::signing::sign`];
//! neither is ever formatted into a log line or an error.

use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::time::Duration;

use reqwest::Method;
use reqwest::header::HeaderMap;
use tokio::time::Instant;

use super::signing::sign;
use super::wire;
use crate::config::Credentials;
use crate::core::models::TimestampMs;
use crate::exchange::{ExResult, ExchangeError};

/// How a call authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Public market data.
    None,
    /// `X-MBX-APIKEY` only (listenKey management).
    ApiKey,
    /// API key + `timestamp` + `recvWindow` + `signature`.
    Signed,
}

/// May the call be sent again after an error that leaves its outcome open?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Reads and idempotent writes: retried with backoff on transport errors and 5xx.
    Safe,
    /// Order placement: only definite rejections (429, -1021) are retried here; everything else
    /// goes back to the caller, which looks the order up before anything is resent.
    Never,
}

/// One REST call.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub path: &'static str,
    pub params: Vec<(&'static str, String)>,
    pub security: Security,
    /// Request weight (IP budget per minute).
    pub weight: u32,
    pub retry: Retry,
}

impl Call {
    pub fn new(method: Method, path: &'static str, security: Security, weight: u32) -> Self {
        Call { method, path, params: Vec::new(), security, weight, retry: Retry::Safe }
    }

    pub fn param(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.params.push((key, value.into()));
        self
    }

    pub fn no_retry(mut self) -> Self {
        self.retry = Retry::Never;
        self
    }
}

/// Tuning of the REST layer (from `ExchangeSettings`; tests shrink the delays).
#[derive(Debug, Clone)]
pub struct RestConfig {
    pub base_url: String,
    pub recv_window_ms: u64,
    pub timeout: Duration,
    pub min_spacing: Duration,
    pub weight_limit_per_min: u32,
    pub weight_slowdown_pct: f64,
    pub time_sync_interval: Duration,
    /// First retry delay; doubles per attempt (1 s, 2 s, 4 s in production).
    pub retry_base: Duration,
    /// Attempts for safe calls, the first one included.
    pub max_attempts: u32,
    /// Pause after a 429 that carried no `Retry-After`.
    pub default_rate_limit_pause: Duration,
}

/// A failed send: the error plus the HTTP status when a response was read.
#[derive(Debug, Clone)]
pub struct Failure {
    pub error: ExchangeError,
    pub http_status: Option<u16>,
}

impl Failure {
    fn new(error: ExchangeError, http_status: Option<u16>) -> Self {
        Failure { error, http_status }
    }

    /// Worth another try for a safe call: transport problems, 5xx, 408, and Binance's
    /// "internal / try again" codes.
    pub fn is_retryable(&self) -> bool {
        match &self.error {
            ExchangeError::Transport(_) => true,
            ExchangeError::Decode(_) => self.http_status.is_some_and(|s| s >= 500),
            ExchangeError::Api { http_status, code, .. } => {
                *http_status >= 500 || *http_status == 408 || matches!(code, -1000 | -1001 | -1006 | -1007 | -1008)
            }
            _ => false,
        }
    }

    /// The request may have been executed although we got no proper answer.
    pub fn is_unknown_outcome(&self) -> bool {
        match &self.error {
            ExchangeError::Transport(_) | ExchangeError::Decode(_) => true,
            ExchangeError::Api { http_status, code, .. } => {
                // -1008 (overload throttle) is a definite rejection. -1001 is looked up first,
                // as Binance's error table advises for mutating calls.
                if *code == -1008 {
                    return false;
                }
                *http_status >= 500 || *http_status == 408 || matches!(code, -1000 | -1001 | -1006 | -1007)
            }
            _ => false,
        }
    }
}

#[derive(Debug)]
struct Gate {
    /// When the next request may leave.
    next_slot: Instant,
    /// 429 pause.
    paused_until: Option<Instant>,
}

/// The REST client. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct RestClient {
    http: reqwest::Client,
    cfg: RestConfig,
    credentials: Option<Credentials>,
    /// The queue: a fair async mutex held while waiting for the request's slot.
    gate: tokio::sync::Mutex<Gate>,
    /// Server time − local time, ms.
    offset_ms: AtomicI64,
    synced: AtomicBool,
    last_sync: StdMutex<Option<Instant>>,
    /// Last `X-MBX-USED-WEIGHT-1M` and the (server) minute it belongs to.
    weight_used: AtomicU32,
    weight_minute: AtomicI64,
    weight_limit: AtomicU32,
    /// 418 ban end, ms since epoch (server time); 0 = none.
    banned_until: AtomicI64,
    requests_sent: AtomicI64,
}

fn local_ms() -> TimestampMs {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name).and_then(|v| v.to_str().ok()).and_then(|s| s.trim().parse().ok())
}

/// Extracts the epoch-ms number from "IP banned until 1700000000000".
fn ban_until_from_msg(msg: &str) -> Option<TimestampMs> {
    let idx = msg.find("until")?;
    let digits: String =
        msg.get(idx + 5..)?.chars().skip_while(|c| !c.is_ascii_digit()).take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

impl RestClient {
    /// # Errors
    /// [`ExchangeError::Transport`] when the HTTP client cannot be built (TLS setup).
    pub fn new(cfg: RestConfig, credentials: Option<Credentials>) -> ExResult<Self> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .user_agent(concat!("kinetic/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ExchangeError::Transport(format!("cannot build HTTP client: {e}")))?;
        let limit = cfg.weight_limit_per_min.max(1);
        Ok(RestClient {
            http,
            credentials,
            gate: tokio::sync::Mutex::new(Gate { next_slot: Instant::now(), paused_until: None }),
            offset_ms: AtomicI64::new(0),
            synced: AtomicBool::new(false),
            last_sync: StdMutex::new(None),
            weight_used: AtomicU32::new(0),
            weight_minute: AtomicI64::new(0),
            weight_limit: AtomicU32::new(limit),
            banned_until: AtomicI64::new(0),
            requests_sent: AtomicI64::new(0),
            cfg,
        })
    }

    pub fn has_credentials(&self) -> bool {
        self.credentials.is_some()
    }

    /// Estimated exchange time: local clock + synced offset.
    pub fn now_ms(&self) -> TimestampMs {
        local_ms() + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Local clock minus server clock, ms.
    pub fn clock_offset_ms(&self) -> i64 {
        -self.offset_ms.load(Ordering::Relaxed)
    }

    /// Weight used in the current minute, as last reported by the exchange.
    pub fn weight_used(&self) -> u32 {
        let minute = self.now_ms().div_euclid(60_000);
        if self.weight_minute.load(Ordering::Relaxed) == minute { self.weight_used.load(Ordering::Relaxed) } else { 0 }
    }

    /// Adopts the REQUEST_WEIGHT limit exchange info announced (never above the configured one).
    pub fn set_weight_limit(&self, limit: u32) {
        let configured = self.cfg.weight_limit_per_min.max(1);
        self.weight_limit.store(limit.clamp(1, configured), Ordering::Relaxed);
    }

    /// Requests that actually left (for tests and metrics).
    pub fn requests_sent(&self) -> i64 {
        self.requests_sent.load(Ordering::Relaxed)
    }

    /// Measures the server-time offset with `GET /fapi/v1/time`.
    ///
    /// # Errors
    /// Transport, HTTP and decode errors of that call.
    pub async fn sync_time(&self) -> ExResult<i64> {
        let call = Call::new(Method::GET, "/fapi/v1/time", Security::None, 1);
        let t0 = local_ms();
        let body = self.send_once(&call).await.map_err(|f| f.error)?;
        let t1 = local_ms();
        let server = wire::server_time(&body)?;
        let offset = server - (t0 + t1) / 2;
        self.offset_ms.store(offset, Ordering::Relaxed);
        self.synced.store(true, Ordering::Relaxed);
        if let Ok(mut last) = self.last_sync.lock() {
            *last = Some(Instant::now());
        }
        tracing::debug!(offset_ms = offset, "server time synced");
        Ok(offset)
    }

    fn needs_sync(&self) -> bool {
        if !self.synced.load(Ordering::Relaxed) {
            return true;
        }
        match self.last_sync.lock() {
            Ok(last) => last.is_none_or(|t| t.elapsed() >= self.cfg.time_sync_interval),
            Err(_) => true,
        }
    }

    /// Sends `call` with the retry policy: -1021 → resync and one more try; 429 → wait as told
    /// (the queue pauses) and try again; safe calls retry transport errors and 5xx with
    /// exponential backoff, `max_attempts` in all.
    ///
    /// # Errors
    /// The last [`Failure`]; a public-only client refuses signed calls without sending.
    pub async fn send(&self, call: &Call) -> Result<Vec<u8>, Failure> {
        if call.security != Security::None && self.credentials.is_none() {
            return Err(Failure::new(
                ExchangeError::Refused(format!("{} {} requires API credentials", call.method, call.path)),
                None,
            ));
        }
        if call.security == Security::Signed && self.needs_sync() {
            if let Err(e) = self.sync_time().await {
                tracing::warn!(error = %e, "server time sync failed; signing with the previous offset");
            }
        }
        let mut attempt = 1u32;
        let mut resynced = false;
        loop {
            match self.send_once(call).await {
                Ok(body) => return Ok(body),
                Err(f) => {
                    if f.error.code() == Some(crate::exchange::CODE_TIMESTAMP_OUTSIDE_WINDOW)
                        && call.security == Security::Signed
                        && !resynced
                    {
                        resynced = true;
                        tracing::warn!(path = call.path, "timestamp outside recvWindow; resyncing server time");
                        self.sync_time().await.map_err(|e| Failure::new(e, None))?;
                        continue;
                    }
                    if attempt >= self.cfg.max_attempts {
                        return Err(f);
                    }
                    match &f.error {
                        // The queue already waits out the pause; the request was not executed.
                        ExchangeError::RateLimited { .. } => {}
                        _ if call.retry == Retry::Safe && f.is_retryable() => {
                            let delay = self.cfg.retry_base.saturating_mul(1u32 << (attempt - 1).min(16));
                            tracing::warn!(path = call.path, attempt, delay_ms = delay.as_millis() as u64, error = %f.error, "retrying");
                            tokio::time::sleep(delay).await;
                        }
                        _ => return Err(f),
                    }
                    attempt += 1;
                }
            }
        }
    }

    /// Waits for this request's slot in the queue.
    async fn acquire(&self, weight: u32) -> Result<(), Failure> {
        let mut gate = self.gate.lock().await;
        loop {
            let banned_until = self.banned_until.load(Ordering::Relaxed);
            if banned_until > 0 {
                if self.now_ms() < banned_until {
                    return Err(Failure::new(ExchangeError::Banned { until: banned_until }, Some(418)));
                }
                self.banned_until.store(0, Ordering::Relaxed);
            }
            let now = Instant::now();
            let mut ready = gate.next_slot;
            if let Some(p) = gate.paused_until {
                ready = ready.max(p);
            }
            let used = self.weight_used();
            let limit = self.weight_limit.load(Ordering::Relaxed);
            if used.saturating_add(weight) > limit {
                // Budget spent: wait for the next (server) minute.
                let into_minute = self.now_ms().rem_euclid(60_000);
                let wait = Duration::from_millis(u64::try_from(60_000 - into_minute).unwrap_or(0) + 50);
                tracing::warn!(
                    used,
                    limit,
                    wait_ms = wait.as_millis() as u64,
                    "request-weight budget spent; pausing REST"
                );
                ready = ready.max(now + wait);
                self.weight_used.store(0, Ordering::Relaxed);
            }
            if ready <= now {
                break;
            }
            tokio::time::sleep_until(ready).await;
        }
        gate.paused_until = None;
        let used = self.weight_used();
        let limit = self.weight_limit.load(Ordering::Relaxed);
        let slow = f64::from(used) >= f64::from(limit) * self.cfg.weight_slowdown_pct / 100.0;
        // Above the slowdown mark, space requests so the rest of the budget lasts the minute.
        let spacing = if slow {
            let remaining = limit.saturating_sub(used).max(1);
            self.cfg.min_spacing.max(Duration::from_millis(60_000 / u64::from(remaining)))
        } else {
            self.cfg.min_spacing
        };
        gate.next_slot = Instant::now() + spacing;
        Ok(())
    }

    async fn pause(&self, d: Duration) {
        let mut gate = self.gate.lock().await;
        let until = Instant::now() + d;
        gate.paused_until = Some(gate.paused_until.map_or(until, |p| p.max(until)));
    }

    fn build_query(&self, call: &Call) -> Result<String, Failure> {
        let mut query = serde_urlencoded::to_string(&call.params)
            .map_err(|e| Failure::new(ExchangeError::Refused(format!("cannot encode parameters: {e}")), None))?;
        if call.security == Security::Signed {
            let secret = match &self.credentials {
                Some(c) => c.api_secret.expose(),
                None => {
                    return Err(Failure::new(
                        ExchangeError::Refused("signed call requires API credentials".into()),
                        None,
                    ));
                }
            };
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str(&format!("recvWindow={}&timestamp={}", self.cfg.recv_window_ms, self.now_ms()));
            let signature = sign(secret, &query);
            query.push_str("&signature=");
            query.push_str(&signature);
        }
        Ok(query)
    }

    /// One attempt: queue, sign, send, classify.
    async fn send_once(&self, call: &Call) -> Result<Vec<u8>, Failure> {
        self.acquire(call.weight).await?;
        // Signed after waiting in the queue, so the timestamp is fresh.
        let query = self.build_query(call)?;
        let url = if query.is_empty() {
            format!("{}{}", self.cfg.base_url, call.path)
        } else {
            format!("{}{}?{}", self.cfg.base_url, call.path, query)
        };
        let mut req = self.http.request(call.method.clone(), &url);
        if call.security != Security::None {
            if let Some(c) = &self.credentials {
                req = req.header("X-MBX-APIKEY", c.api_key.expose());
            }
        }
        self.requests_sent.fetch_add(1, Ordering::Relaxed);
        let resp = req.send().await.map_err(|e| Failure::new(transport(e), None))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        if let Some(w) = header_u64(&headers, "x-mbx-used-weight-1m") {
            self.weight_used.store(u32::try_from(w).unwrap_or(u32::MAX), Ordering::Relaxed);
            self.weight_minute.store(self.now_ms().div_euclid(60_000), Ordering::Relaxed);
        }
        let body = resp.bytes().await.map_err(|e| Failure::new(transport(e), Some(status)))?;
        match status {
            200..=299 => Ok(body.to_vec()),
            429 => {
                let wait = header_u64(&headers, "retry-after")
                    .map(Duration::from_secs)
                    .unwrap_or(self.cfg.default_rate_limit_pause);
                tracing::warn!(path = call.path, wait_ms = wait.as_millis() as u64, "HTTP 429: pausing all REST calls");
                self.pause(wait).await;
                let retry_after_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
                Err(Failure::new(ExchangeError::RateLimited { retry_after_ms }, Some(status)))
            }
            418 => {
                let msg = wire::api_error(&body).map(|e| e.1).unwrap_or_default();
                let until = ban_until_from_msg(&msg)
                    .or_else(|| {
                        header_u64(&headers, "retry-after")
                            .map(|s| self.now_ms() + i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX / 2))
                    })
                    .unwrap_or_else(|| self.now_ms() + 120_000);
                tracing::error!(until, "HTTP 418: IP banned; no REST call until the ban ends");
                self.banned_until.store(until, Ordering::Relaxed);
                Err(Failure::new(ExchangeError::Banned { until }, Some(status)))
            }
            _ => match wire::api_error(&body) {
                Some((code, msg)) => {
                    Err(Failure::new(ExchangeError::Api { http_status: status, code, msg }, Some(status)))
                }
                None => Err(Failure::new(
                    ExchangeError::Decode(format!("HTTP {status} with a non-JSON body ({} bytes)", body.len())),
                    Some(status),
                )),
            },
        }
    }
}

fn transport(e: reqwest::Error) -> ExchangeError {
    // reqwest errors carry the URL, which holds the signature but never the key or secret;
    // strip it anyway so logs stay short.
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "request"
    };
    ExchangeError::Transport(format!("{kind}: {}", e.without_url()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ban_message_parses() {
        assert_eq!(
            ban_until_from_msg("Way too many requests; IP banned until 1700000000000."),
            Some(1_700_000_000_000)
        );
        assert_eq!(ban_until_from_msg("nothing"), None);
    }

    fn test_client(limit: u32) -> RestClient {
        let cfg = RestConfig {
            base_url: "http://127.0.0.1:9".into(),
            recv_window_ms: 5000,
            timeout: Duration::from_secs(1),
            min_spacing: Duration::from_millis(100),
            weight_limit_per_min: limit,
            weight_slowdown_pct: 80.0,
            time_sync_interval: Duration::from_secs(300),
            retry_base: Duration::from_millis(1),
            max_attempts: 3,
            default_rate_limit_pause: Duration::from_secs(60),
        };
        match RestClient::new(cfg, None) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    fn report_weight(c: &RestClient, used: u32) {
        c.weight_used.store(used, Ordering::Relaxed);
        c.weight_minute.store(c.now_ms().div_euclid(60_000), Ordering::Relaxed);
    }

    #[tokio::test]
    async fn queue_spaces_requests_and_slows_down_near_the_budget() {
        let c = test_client(1000);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(c.acquire(1).await.is_ok());
        }
        let spaced = t0.elapsed();
        assert!(spaced >= Duration::from_millis(200) && spaced < Duration::from_millis(400), "{spaced:?}");
        // Above 80 % of the budget: the rest (100) is spread over the minute, 600 ms apart.
        // (Keep clear of a minute boundary, where the reported weight expires.)
        let into_minute = c.now_ms().rem_euclid(60_000);
        if into_minute > 57_000 {
            tokio::time::sleep(Duration::from_millis(u64::try_from(60_100 - into_minute).unwrap_or(0))).await;
        }
        report_weight(&c, 900);
        assert!(c.acquire(1).await.is_ok());
        let t1 = Instant::now();
        assert!(c.acquire(1).await.is_ok());
        assert!(t1.elapsed() >= Duration::from_millis(550), "{:?}", t1.elapsed());
    }

    #[tokio::test]
    async fn rate_limit_pause_and_ban_hold_the_queue() {
        let c = test_client(2400);
        c.pause(Duration::from_millis(300)).await;
        let t0 = Instant::now();
        assert!(c.acquire(1).await.is_ok());
        assert!(t0.elapsed() >= Duration::from_millis(300));
        c.banned_until.store(c.now_ms() + 60_000, Ordering::Relaxed);
        assert!(matches!(c.acquire(1).await, Err(Failure { error: ExchangeError::Banned { .. }, .. })));
    }

    #[test]
    fn failure_classification() {
        let api = |status, code| {
            Failure::new(ExchangeError::Api { http_status: status, code, msg: String::new() }, Some(status))
        };
        assert!(api(503, -1000).is_unknown_outcome());
        assert!(api(408, -1007).is_unknown_outcome());
        assert!(api(503, -1001).is_unknown_outcome());
        assert!(!api(503, -1008).is_unknown_outcome());
        assert!(api(503, -1001).is_retryable());
        assert!(!api(400, -2019).is_retryable());
        assert!(!api(400, -2019).is_unknown_outcome());
        assert!(Failure::new(ExchangeError::Transport("timeout".into()), None).is_unknown_outcome());
        assert!(!Failure::new(ExchangeError::Decode("x".into()), Some(200)).is_retryable());
        assert!(Failure::new(ExchangeError::Decode("x".into()), Some(502)).is_retryable());
    }
}
