//! The read-only HTTP server: `/health`, `/metrics` (Prometheus text) and `/status` (JSON).
//! It reads shared state and never places or changes orders; it binds to loopback unless the
//! configuration explicitly allows otherwise (checked in config validation).

pub mod metrics;

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
use crate::core::models::TimestampMs;

pub use metrics::Metrics;

/// How recent the position manager's last step must be for `/health` to say healthy.
pub const MONITOR_HEALTHY_WITHIN_MS: i64 = 15_000;

pub use crate::core::data_hub::{StreamState, StreamStatus};

/// What `/status` shows; the engine replaces it as things change. All money as decimal text.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StatusSnapshot {
    /// `live` or `dry_run`.
    pub mode: String,
    pub equity: String,
    pub wallet_balance: String,
    pub unrealized_pnl: String,
    pub positions: Vec<serde_json::Value>,
    pub open_orders: Vec<serde_json::Value>,
    pub last_scan: Option<serde_json::Value>,
    pub recent_signals: Vec<serde_json::Value>,
    pub risk: serde_json::Value,
    pub streams: Vec<StreamStatus>,
    pub last_monitor_tick: Option<TimestampMs>,
    pub started_at: TimestampMs,
    /// The last account read succeeded.
    pub exchange_reachable: bool,
    /// Exchange requests in flight right now.
    pub requests_in_flight: usize,
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
