//! The read-only HTTP server: `/health`, `/metrics` (Prometheus text) and `/status` (JSON).
//! It reads shared state and never places or changes orders; it binds to loopback unless the
//! configuration explicitly allows otherwise (checked in config validation).

pub mod control;
pub mod metrics;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::core::liveness::Liveness;
use crate::core::models::{Direction, LadderStage, Side, TimestampMs};
use crate::store::OrderType;

pub use metrics::Metrics;

/// How recent the position manager's last step must be for `/health` to say healthy.
pub const MONITOR_HEALTHY_WITHIN_MS: i64 = 15_000;

pub use crate::core::data_hub::{StreamState, StreamStatus};

/// Whether the daemon trades real money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Live,
    DryRun,
}

/// One tracked position. Money and quantities as plain decimal text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PositionStatus {
    pub symbol: String,
    pub direction: Direction,
    pub entry_price: String,
    /// Quantity still open.
    pub qty: String,
    pub original_qty: String,
    pub leverage: u32,
    /// The stop the ladder wants (the trailing stop once trailing).
    pub stop: String,
    pub stage: LadderStage,
    pub tp1: String,
    pub tp2: String,
    pub trail_start: String,
    pub best_price: String,
    pub mark_price: Option<String>,
    pub unrealized_pnl: Option<String>,
    /// A protective stop of ours rests on the exchange for this symbol.
    pub stop_on_exchange: bool,
    /// An exchange request for this symbol is in flight.
    pub order_in_flight: bool,
    pub entry_time: TimestampMs,
}

/// A protective stop resting on the exchange.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenOrderStatus {
    pub symbol: String,
    #[serde(rename = "type")]
    pub order_type: OrderType,
    pub side: Side,
    pub qty: String,
    pub trigger_price: String,
    pub algo_id: i64,
}

/// A candidate of the last scan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CandidateStatus {
    pub symbol: String,
    pub volume_ratio: f64,
    pub price_change_pct: f64,
    pub rank_score: f64,
}

/// The last scan.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ScanStatus {
    /// When the last scan ran (exchange time).
    pub time: TimestampMs,
    /// Close time of the latest 15m candle the scanner has handled (scanned at, or found no
    /// scan due).
    pub m15_close: TimestampMs,
    /// Symbols with a ticker.
    pub symbols: usize,
    /// Passed the ticker filters and the pre-cut.
    pub prefiltered: usize,
    pub candidates: Vec<CandidateStatus>,
}

impl ScanStatus {
    pub fn candidate_symbols(&self) -> BTreeSet<String> {
        self.candidates.iter().map(|c| c.symbol.clone()).collect()
    }

    pub fn lists(&self, symbol: &str) -> bool {
        self.candidates.iter().any(|c| c.symbol == symbol)
    }
}

/// A recent signal (score at or above `strategy.min_confidence`) and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SignalStatus {
    pub time: TimestampMs,
    pub symbol: String,
    pub direction: Direction,
    pub score: u8,
    /// The score's components with their reasons.
    pub components: serde_json::Value,
    pub taken: bool,
    pub reason: Option<String>,
}

/// The risk book and latches.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RiskStatus {
    pub emergency_latched: bool,
    pub emergency_since: Option<TimestampMs>,
    /// Emergency closes are being sent until every position is flat.
    pub emergency_flattening: bool,
    /// The daily loss limit was reached: no entries until the next UTC day.
    pub daily_latched: bool,
    pub day_start_equity: String,
    /// Current equity − day-start equity − today's net transfers.
    pub today_pnl: String,
    pub day_realized_pnl: String,
    pub consecutive_losses: u32,
    pub loss_pause_until: Option<TimestampMs>,
    pub symbol_cooldowns: BTreeMap<String, TimestampMs>,
    pub locked_symbols: BTreeSet<String>,
    /// New entries allowed (not shutting down, not paused, journal writable).
    pub entries_enabled: bool,
    /// An operator paused new entries (`/pause`); open positions are still managed.
    pub paused: bool,
}

/// What `/status` shows; the position manager replaces it after its steps. All money as
/// decimal text.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StatusSnapshot {
    pub mode: Mode,
    pub equity: String,
    pub wallet_balance: String,
    pub unrealized_pnl: String,
    pub positions: Vec<PositionStatus>,
    pub open_orders: Vec<OpenOrderStatus>,
    pub last_scan: Option<ScanStatus>,
    pub recent_signals: Vec<SignalStatus>,
    pub risk: RiskStatus,
    pub streams: Vec<StreamStatus>,
    pub last_monitor_tick: Option<TimestampMs>,
    pub started_at: TimestampMs,
    /// The last account read succeeded.
    pub exchange_reachable: bool,
    /// Exchange requests in flight right now.
    pub requests_in_flight: usize,
    /// The API-key check at start (live only): permissions, verdict and warnings.
    pub api_key: Option<crate::exchange::api_key::ApiKeyStatus>,
    /// Operator control: the pause, force exits under way, the latest commands.
    pub control: crate::control::ControlStatus,
}

/// Shared between the tasks (writers) and the HTTP server (reader).
#[derive(Clone)]
pub struct ApiState {
    pub status: Arc<RwLock<StatusSnapshot>>,
    pub registry: Arc<Registry>,
    /// The position manager's heartbeat and the exchange's reachability (monotonic clock).
    pub liveness: Arc<Liveness>,
}

/// Verdict of `/health`: healthy, or which part is stale — the position-manager loop (by its
/// own heartbeat, on the monotonic clock), a data stream, or the exchange.
pub fn health(snapshot: &StatusSnapshot, liveness: &Liveness) -> Result<(), Vec<String>> {
    let mut reasons = Vec::new();
    if let Some(problem) = liveness.startup_problem() {
        reasons.push(format!("start-up retrying: {problem}"));
    }
    let limit = std::time::Duration::from_millis(MONITOR_HEALTHY_WITHIN_MS.unsigned_abs());
    match liveness.since_beat() {
        None => reasons.push("position manager loop has not run yet".to_string()),
        Some(d) if d > limit => {
            reasons.push(format!("position manager loop stalled: last step {} s ago", d.as_secs()));
        }
        Some(_) => {}
    }
    if !liveness.exchange_reachable() {
        reasons.push("exchange unreachable: the last account read failed".to_string());
    }
    if snapshot.streams.is_empty() {
        reasons.push("no data streams registered".to_string());
    }
    for s in &snapshot.streams {
        if s.state != StreamState::Live {
            reasons.push(format!("stream {} is {:?}", s.name, s.state).to_lowercase());
        }
    }
    if reasons.is_empty() { Ok(()) } else { Err(reasons) }
}

async fn health_handler(State(state): State<ApiState>) -> Response {
    let verdict = match state.status.read() {
        Ok(snapshot) => health(&snapshot, &state.liveness),
        Err(_) => Err(vec!["status lock poisoned".to_string()]),
    };
    match verdict {
        Ok(()) => (StatusCode::OK, axum::Json(serde_json::json!({"status": "ok"}))).into_response(),
        Err(reasons) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "unhealthy", "reasons": reasons})),
        )
            .into_response(),
    }
}

async fn metrics_handler(State(state): State<ApiState>) -> Response {
    let body = metrics::render(&state.registry);
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response()
}

async fn status_handler(State(state): State<ApiState>) -> Response {
    let snapshot = match state.status.read() {
        Ok(s) => s.clone(),
        Err(_) => return (StatusCode::INTERNAL_SERVER_ERROR, "status lock poisoned").into_response(),
    };
    axum::Json(snapshot).into_response()
}

/// The routes, for serving or for tests.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/health", get(health_handler))
        .route("/metrics", get(metrics_handler))
        .route("/status", get(status_handler))
        .with_state(state)
}

/// Binds `addr` and serves until `cancel` fires. Returns the bound address (port 0 picks one)
/// and the server task.
///
/// # Errors
/// The bind error (address in use, permission).
pub async fn serve(
    addr: SocketAddr,
    state: ApiState,
    cancel: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = router(state);
    let task = tokio::spawn(async move {
        let result = axum::serve(listener, app).with_graceful_shutdown(async move { cancel.cancelled().await }).await;
        if let Err(err) = result {
            tracing::error!(error = %err, "HTTP server stopped with an error");
        }
    });
    tracing::info!(%local, "HTTP status server listening (/health, /metrics, /status)");
    Ok((local, task))
}
