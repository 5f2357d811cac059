//! Fault injection switches for the REST side. WebSocket faults live on `FakeBinance` directly
//! (drop, silence, refuse, listenKey expiry).

use std::collections::VecDeque;

/// Which requests a queued fault applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultScope {
    /// Any REST request.
    Any,
    /// Requests carrying a `signature`.
    Signed,
    /// `POST /fapi/v1/order` and `POST /fapi/v1/algoOrder`.
    OrderPlacement,
    /// `POST /fapi/v1/order` only.
    MarketOrder,
    /// `POST /fapi/v1/algoOrder` only.
    AlgoOrder,
    /// One method and path, e.g. `("GET", "/fapi/v1/klines")`.
    Endpoint(String, String),
    /// One symbol's order traffic: `POST`/`GET`/`DELETE` of `/fapi/v1/order` and
    /// `/fapi/v1/algoOrder` (placements, lookups, cancels) whose `symbol` parameter is this one.
    /// With `FaultAction::TimeoutAfterExecute { ms }` that symbol's orders execute and their
    /// answers hang while every other symbol trades normally.
    SymbolOrders(String),
}

impl FaultScope {
    /// `SymbolOrders(symbol)`.
    pub fn symbol_orders(symbol: &str) -> Self {
        FaultScope::SymbolOrders(symbol.to_string())
    }
}

/// What a fault does to the request it hits.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultAction {
    /// Answer `http_status` with `{"code":code,"msg":msg}`. With `execute_first` the request is
    /// really carried out first (an order is placed) and its answer thrown away: the unknown
    /// outcome case.
    Error { http_status: u16, code: i64, msg: String, execute_first: bool },
    /// A proxy's HTML error page (not JSON), never executed.
    Html { http_status: u16 },
    /// Answer exactly `body` (any bytes: malformed JSON, NaN prices, huge numbers...) with
    /// `http_status` and `content-type: application/json`; executed first if `execute_first`.
    Body { http_status: u16, body: String, execute_first: bool },
    /// Execute, then answer 200 with the real body cut in half (truncated JSON).
    TruncatedBody,
    /// The connection breaks before a complete answer arrives (the body stream fails, hyper
    /// aborts the connection); executed first if `execute_first`.
    DropConnection { execute_first: bool },
    /// Sleep `ms` and then answer 503 without executing (a client with a shorter timeout sees a
    /// timeout; the request never ran).
    TimeoutNotExecuted { ms: u64 },
    /// Execute, then sleep `ms` before answering normally (a client with a shorter timeout sees a
    /// timeout although the order exists).
    TimeoutAfterExecute { ms: u64 },
    /// Wait until `FakeBinance::release_held_requests` (or shutdown); with `execute_first` the
    /// request is executed before waiting, else after. Then answer normally.
    Hold { execute_first: bool },
    /// Sleep `ms`, then process normally (a latency spike).
    Latency { ms: u64 },
    /// 429 / -1003 with `Retry-After: retry_after_secs`; not executed.
    RateLimited { retry_after_secs: u64 },
    /// 418 / -1003: the IP is banned for `secs`; every request until then gets 418.
    Ban { secs: u64 },
    /// -1021 on a signed request (as if the clock were off); not executed.
    InvalidTimestamp,
    /// -2019 Margin is insufficient (skips reduce-only orders); not executed.
    InsufficientMargin,
}

impl FaultAction {
    /// 503 "Unknown error" after the request was really executed (Binance's unknown-outcome 503).
    pub fn unknown_after_execute() -> Self {
        FaultAction::Error {
            http_status: 503,
            code: -1000,
            msg: "Unknown error, please check your request or try again later.".into(),
            execute_first: true,
        }
    }

    /// 503 "Service Unavailable." — a definite failure, nothing executed.
    pub fn service_unavailable() -> Self {
        FaultAction::Error { http_status: 503, code: -1001, msg: "Service Unavailable.".into(), execute_first: false }
    }

    /// 500 internal error, nothing executed.
    pub fn internal_error() -> Self {
        FaultAction::Error {
            http_status: 500,
            code: -1000,
            msg: "An unknown error occured while processing the request.".into(),
            execute_first: false,
        }
    }

    /// -1007 timeout from the backend (HTTP 408) after really executing.
    pub fn backend_timeout_after_execute() -> Self {
        FaultAction::Error {
            http_status: 408,
            code: -1007,
            msg: "Timeout waiting for response from backend server. Send status unknown; execution status unknown."
                .into(),
            execute_first: true,
        }
    }

    /// -1008 system overload (503), nothing executed.
    pub fn overloaded() -> Self {
        FaultAction::Error {
            http_status: 503,
            code: -1008,
            msg: "Request throttled by system-level protection. Reduce-only/close-position orders are exempt. Please try again."
                .into(),
            execute_first: false,
        }
    }

    pub fn label(&self) -> String {
        match self {
            FaultAction::Error { http_status, code, execute_first, .. } => {
                format!("error {http_status}/{code}{}", if *execute_first { " after execute" } else { "" })
            }
            FaultAction::Html { http_status } => format!("html {http_status}"),
            FaultAction::Body { http_status, execute_first, .. } => {
                format!("custom body {http_status}{}", if *execute_first { " after execute" } else { "" })
            }
            FaultAction::TruncatedBody => "truncated body".into(),
            FaultAction::DropConnection { execute_first } => {
                format!("connection dropped{}", if *execute_first { " after execute" } else { "" })
            }
            FaultAction::TimeoutNotExecuted { ms } => format!("timeout {ms} ms, not executed"),
            FaultAction::TimeoutAfterExecute { ms } => format!("timeout {ms} ms after execute"),
            FaultAction::Latency { ms } => format!("latency {ms} ms"),
            FaultAction::Hold { execute_first } => {
                format!("hold{}", if *execute_first { " after execute" } else { "" })
            }
            FaultAction::RateLimited { retry_after_secs } => format!("429 retry after {retry_after_secs} s"),
            FaultAction::Ban { secs } => format!("418 ban {secs} s"),
            FaultAction::InvalidTimestamp => "-1021".into(),
            FaultAction::InsufficientMargin => "-2019".into(),
        }
    }
}

/// A queued fault: hits the next `remaining` requests matching `scope`.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedFault {
    pub scope: FaultScope,
    pub action: FaultAction,
    pub remaining: u32,
}

/// Random faults with a seed (the seed lives in the server's RNG): each REST request draws one
/// number and gets at most one fault; the probabilities are per request and must sum to ≤ 1.
/// Deterministic for a given seed and request order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Chaos {
    /// 503 "Service Unavailable." without executing.
    pub p_5xx: f64,
    /// Mutating requests: executed, then 503 "Unknown error" (unknown outcome); reads: plain 503.
    pub p_5xx_after_execute: f64,
    /// Hang `timeout_ms`: mutating requests are executed first, others are not.
    pub p_timeout: f64,
    pub timeout_ms: u64,
    /// 429 -1003 with `Retry-After: retry_after_secs`.
    pub p_rate_limit: f64,
    pub retry_after_secs: u64,
    /// -1021 (signed requests only).
    pub p_invalid_timestamp: f64,
    /// Delay by `latency_spike_ms`, then process normally.
    pub p_latency_spike: f64,
    pub latency_spike_ms: u64,
    /// The connection breaks without an answer (mutating requests executed first).
    pub p_drop_connection: f64,
}

impl Chaos {
    /// The mix of issue 7's chaos run: 10 % 5xx (a third of them on mutating calls after
    /// executing), 1 % timeouts of `timeout_ms`, 1 % 429, 1 % -1021, 2 % 2 s latency spikes.
    pub fn issue7(timeout_ms: u64) -> Self {
        Chaos {
            p_5xx: 0.0667,
            p_5xx_after_execute: 0.0333,
            p_timeout: 0.01,
            timeout_ms,
            p_rate_limit: 0.01,
            retry_after_secs: 1,
            p_invalid_timestamp: 0.01,
            p_latency_spike: 0.02,
            latency_spike_ms: 2000,
            p_drop_connection: 0.0,
        }
    }

    /// The fault for one draw `r` in [0, 1).
    pub fn pick(&self, r: f64, mutating: bool, signed: bool) -> Option<FaultAction> {
        let mut acc = 0.0;
        let mut hit = |p: f64| {
            acc += p.max(0.0);
            r < acc
        };
        if hit(self.p_5xx) {
            return Some(FaultAction::service_unavailable());
        }
        if hit(self.p_5xx_after_execute) {
            // A read has nothing to execute: it is a plain 503 then.
            return Some(if mutating {
                FaultAction::unknown_after_execute()
            } else {
                FaultAction::service_unavailable()
            });
        }
        if hit(self.p_timeout) {
            let ms = self.timeout_ms;
            return Some(if mutating {
                FaultAction::TimeoutAfterExecute { ms }
            } else {
                FaultAction::TimeoutNotExecuted { ms }
            });
        }
        if hit(self.p_rate_limit) {
            return Some(FaultAction::RateLimited { retry_after_secs: self.retry_after_secs });
        }
        if hit(self.p_invalid_timestamp) {
            return signed.then_some(FaultAction::InvalidTimestamp);
        }
        if hit(self.p_latency_spike) {
            return Some(FaultAction::Latency { ms: self.latency_spike_ms });
        }
        if hit(self.p_drop_connection) {
            return Some(FaultAction::DropConnection { execute_first: mutating });
        }
        None
    }
}

/// All REST fault switches.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    pub queue: VecDeque<QueuedFault>,
    pub random: Option<Chaos>,
    /// Added to every REST request.
    pub base_latency_ms: u64,
    /// Counts of injected faults by label (for chaos-run reports).
    pub injected: std::collections::BTreeMap<String, u64>,
}

impl Faults {
    pub fn record(&mut self, label: &str) {
        *self.injected.entry(label.to_string()).or_insert(0) += 1;
    }
}
