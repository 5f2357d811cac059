//! The raw REST layer: one queue for every call (minimum spacing, request-weight budget, 429
//! pauses, 418 bans), signing of the exact query sent, server-time offset, typed errors and the
//! retry policy. It knows endpoints only as method + path + parameters; turning responses into
//! models is `wire.rs`'s job, and order idempotency is the client's (`mod.rs`).
//!
//! Secrets: the API key goes into one header, the secret only into [`super::signing::sign`];
//! neither is ever formatted into a log line or an error.

use std::sync::Arc;
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
use crate::exchange::{ExResult, ExchangeError, TransportStage};

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
    /// Reads and idempotent writes: retried with backoff after retryable errors
    /// ([`ExchangeError::is_retryable`]) and after unknown outcomes (timeouts, 5xx ...).
    Safe,
    /// Order placement: retried only when the request certainly did not run
    /// ([`ExchangeError::is_retryable`]: connect failures, 429, -1008, -1021 after a resync ...);
    /// an unknown outcome goes back to the caller, which looks the order up before anything is
    /// resent.
    Never,
}

/// Which Binance REST host a call goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Host {
    /// The USDⓈ-M futures host (`exchange.rest_url`): everything we trade with.
    Futures,
    /// The spot host (`exchange.spot_rest_url`): the Wallet API (API-key permissions) only.
    Spot,
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
    pub host: Host,
    /// A protective stop: retried four times sooner than other calls (a position without its
    /// stop is the state to leave first).
    pub urgent: bool,
}

impl Call {
    pub fn new(method: Method, path: &'static str, security: Security, weight: u32) -> Self {
        Call {
            method,
            path,
            params: Vec::new(),
            security,
            weight,
            retry: Retry::Safe,
            host: Host::Futures,
            urgent: false,
        }
    }

    /// Retries this call after a quarter of the usual delay (250 ms, 500 ms, 1 s in production).
    pub fn urgent(mut self) -> Self {
        self.urgent = true;
        self
    }

    /// The wait before retry number `retry + 1` with the client's `base` delay.
    pub fn retry_delay(&self, base: Duration, retry: u32) -> Duration {
        retry_delay(if self.urgent { base / 4 } else { base }, retry)
    }

    /// Sends the call to the spot host instead.
    pub fn on_spot_host(mut self) -> Self {
        self.host = Host::Spot;
        self
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
    /// The spot host's base URL (Wallet API); `None` where there is none (the testnet).
    pub spot_base_url: Option<String>,
    pub recv_window_ms: u64,
    pub timeout: Duration,
    pub min_spacing: Duration,
    pub weight_limit_per_min: u32,
    pub weight_slowdown_pct: f64,
    pub time_sync_interval: Duration,
    /// First retry delay; doubles per retry (1 s, 2 s, 4 s in production).
    pub retry_base: Duration,
    /// Retries after the first try (3 in production).
    pub max_retries: u32,
    /// Pause after a 429 that carried no `Retry-After`.
    pub default_rate_limit_pause: Duration,
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
    /// `host:port` of the base URL, the only part of a URL errors may show.
    host: String,
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

/// `host[:port]` of `base_url` (the whole string if it does not parse).
fn host_of(base_url: &str) -> String {
    match url::Url::parse(base_url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => String::new(),
        },
        Err(_) => base_url.to_string(),
    }
}

impl RestClient {
    /// # Errors
    /// [`ExchangeError::Transport`] (stage `Setup`) when the HTTP client cannot be built (TLS).
    pub fn new(cfg: RestConfig, credentials: Option<Credentials>) -> ExResult<Self> {
        let host = host_of(&cfg.base_url);
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .user_agent(concat!("kinetic/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ExchangeError::Transport {
                host: host.clone(),
                stage: TransportStage::Setup,
                source: Arc::new(e.without_url()),
            })?;
        let limit = cfg.weight_limit_per_min.max(1);
        Ok(RestClient {
            http,
            host,
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

    /// True when a spot (Wallet API) host is configured.
    pub fn has_spot_host(&self) -> bool {
        self.cfg.spot_base_url.is_some()
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
        let body = self.send_once(&call).await?;
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

    /// Syncs the server-time offset if it was never measured or is older than the sync
    /// interval; a failure is logged and the previous offset kept.
    pub async fn ensure_time_synced(&self) {
        if self.needs_sync()
            && let Err(e) = self.sync_time().await
        {
            tracing::warn!(error = %e, "server time sync failed; keeping the previous offset");
        }
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

    /// Sends `call` with the retry policy: -1021 → resync and try again (once, not counted as
    /// a retry); then up to `max_retries` retries, waiting `retry_base` × 1, 2, 4 ..., for what
    /// the error allows — any call after [`ExchangeError::is_retryable`], safe calls also after
    /// [`ExchangeError::is_unknown_outcome`]. A 429 waits in the queue instead (the pause it
    /// set). Fatal errors are never retried.
    ///
    /// # Errors
    /// The last error; a public-only client refuses signed calls without sending.
    pub async fn send(&self, call: &Call) -> ExResult<Vec<u8>> {
        if call.security != Security::None && self.credentials.is_none() {
            return Err(ExchangeError::Refused(format!("{} {} requires API credentials", call.method, call.path)));
        }
        if call.security == Security::Signed {
            self.ensure_time_synced().await;
        }
        let mut retries = 0u32;
        let mut resynced = false;
        loop {
            let e = match self.send_once(call).await {
                Ok(body) => return Ok(body),
                Err(e) => e,
            };
            if e.is_timestamp_rejected() && call.security == Security::Signed && !resynced {
                resynced = true;
                tracing::warn!(path = call.path, "timestamp outside recvWindow; resyncing server time");
                self.sync_time().await?;
                continue;
            }
            let may_retry = match call.retry {
                Retry::Safe => e.is_retryable() || e.is_unknown_outcome(),
                Retry::Never => e.is_retryable(),
            };
            if !may_retry || e.is_fatal() || retries >= self.cfg.max_retries {
                return Err(e);
            }
            // After a 429 the queue already holds every request until the pause ends.
            if !matches!(e, ExchangeError::RateLimited { .. }) {
                let delay = call.retry_delay(self.cfg.retry_base, retries);
                tracing::warn!(
                    path = call.path,
                    retry = retries + 1,
                    delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    error = %e,
                    "retrying"
                );
                tokio::time::sleep(delay).await;
            }
            retries += 1;
        }
    }

    /// Waits for this request's slot in the queue.
    async fn acquire(&self, weight: u32) -> ExResult<()> {
        let mut gate = self.gate.lock().await;
        loop {
            let banned_until = self.banned_until.load(Ordering::Relaxed);
            if banned_until > 0 {
                if self.now_ms() < banned_until {
                    return Err(ExchangeError::Banned { until: banned_until });
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

    fn build_query(&self, call: &Call) -> ExResult<String> {
        let mut query = serde_urlencoded::to_string(&call.params)
            .map_err(|e| ExchangeError::Refused(format!("cannot encode parameters: {e}")))?;
        if call.security == Security::Signed {
            let secret = match &self.credentials {
                Some(c) => c.api_secret.expose(),
                None => return Err(ExchangeError::Refused("signed call requires API credentials".into())),
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
    async fn send_once(&self, call: &Call) -> ExResult<Vec<u8>> {
        let base = match call.host {
            Host::Futures => self.cfg.base_url.as_str(),
            Host::Spot => match &self.cfg.spot_base_url {
                Some(url) => url.as_str(),
                None => {
                    return Err(ExchangeError::Refused(format!(
                        "{} needs the spot REST host, which this environment does not have",
                        call.path
                    )));
                }
            },
        };
        self.acquire(call.weight).await?;
        // Signed after waiting in the queue, so the timestamp is fresh.
        let query = self.build_query(call)?;
        let url =
            if query.is_empty() { format!("{base}{}", call.path) } else { format!("{base}{}?{query}", call.path) };
        let mut req = self.http.request(call.method.clone(), &url);
        if call.security != Security::None
            && let Some(c) = &self.credentials
        {
            req = req.header("X-MBX-APIKEY", c.api_key.expose());
        }
        self.requests_sent.fetch_add(1, Ordering::Relaxed);
        let resp = req.send().await.map_err(|e| self.transport(e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        if let Some(w) = header_u64(&headers, "x-mbx-used-weight-1m") {
            self.weight_used.store(u32::try_from(w).unwrap_or(u32::MAX), Ordering::Relaxed);
            self.weight_minute.store(self.now_ms().div_euclid(60_000), Ordering::Relaxed);
        }
        let body = resp.bytes().await.map_err(|e| self.transport(e))?;
        match status {
            200..=299 => Ok(body.to_vec()),
            429 => {
                let wait = header_u64(&headers, "retry-after")
                    .map(Duration::from_secs)
                    .unwrap_or(self.cfg.default_rate_limit_pause);
                tracing::warn!(path = call.path, wait_ms = wait.as_millis() as u64, "HTTP 429: pausing all REST calls");
                self.pause(wait).await;
                let retry_after_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
                Err(ExchangeError::RateLimited { retry_after_ms })
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
                Err(ExchangeError::Banned { until })
            }
            _ => match wire::api_error(&body) {
                Some((code, msg)) => Err(ExchangeError::Api { http_status: status, code, msg }),
                None => Err(ExchangeError::Http { http_status: status, host: self.host.clone(), body_len: body.len() }),
            },
        }
    }

    /// Classifies a reqwest error by how far the request got. The URL (which holds the query
    /// and its signature) is stripped; only the host is kept.
    fn transport(&self, e: reqwest::Error) -> ExchangeError {
        let stage = TransportStage::of(&e);
        ExchangeError::Transport { host: self.host.clone(), stage, source: Arc::new(e.without_url()) }
    }
}

/// Wait before retry number `retry + 1`: `base`, `2 × base`, `4 × base` ...
pub fn retry_delay(base: Duration, retry: u32) -> Duration {
    base.saturating_mul(1u32 << retry.min(16))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
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
            spot_base_url: None,
            recv_window_ms: 5000,
            timeout: Duration::from_secs(1),
            min_spacing: Duration::from_millis(100),
            weight_limit_per_min: limit,
            weight_slowdown_pct: 80.0,
            time_sync_interval: Duration::from_secs(300),
            retry_base: Duration::from_millis(1),
            max_retries: 3,
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
        assert!(matches!(c.acquire(1).await, Err(ExchangeError::Banned { .. })));
    }

    #[test]
    fn protective_stops_retry_four_times_sooner() {
        let base = Duration::from_secs(1);
        let stop = Call::new(Method::POST, "/fapi/v1/algoOrder", Security::Signed, 0).no_retry().urgent();
        let read = Call::new(Method::GET, "/fapi/v3/account", Security::Signed, 5);
        let ms = |c: &Call| (0..3).map(|r| c.retry_delay(base, r).as_millis()).collect::<Vec<_>>();
        assert_eq!(ms(&stop), [250, 500, 1000]);
        assert_eq!(ms(&read), [1000, 2000, 4000]);
    }

    #[test]
    fn retry_delays_double_from_the_base() {
        let base = Duration::from_secs(1);
        let delays: Vec<u64> = (0..3).map(|r| retry_delay(base, r).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4]);
    }

    #[test]
    fn hosts_keep_the_port_and_nothing_else() {
        assert_eq!(host_of("http://127.0.0.1:4321"), "127.0.0.1:4321");
        assert_eq!(host_of("https://fapi.binance.com"), "fapi.binance.com");
        assert_eq!(host_of("https://fapi.binance.com/x?signature=abc"), "fapi.binance.com");
    }
}
