//! The control API (`[control]`, off by default): the operator commands over HTTP on their own
//! listener, loopback by default.
//!
//! - `POST /api/v1/pause`, `/resume`, `/clear-emergency`, `/reconcile` (body `{}` or empty);
//! - `POST /api/v1/forceexit` with `{"symbol": "BTCUSDT"}` or `{"symbol": "all"}`;
//! - `GET /api/v1/openapi.json`: the OpenAPI 3 description (no token needed; it holds none).
//!
//! Every command needs `Authorization: Bearer <KINETIC_CONTROL_TOKEN>`; a missing or wrong
//! token gets 401 (compared in constant time over SHA-256 digests, so neither the content nor
//! the length leaks through timing). The token is never logged or echoed. Commands go to the
//! position manager over the control channel; the answer is its [`CommandReply`].

use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::api::Metrics;
use crate::config::Secret;
use crate::control::{CommandReply, ControlAction, ControlError, ControlHandle, ExitTarget, Origin};

/// The fixed path of the OpenAPI description.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// What the control routes share.
#[derive(Clone)]
pub struct ControlApiState {
    pub control: ControlHandle,
    pub token: Secret,
    pub metrics: Metrics,
}

/// `a == b` in time independent of where they differ and of their lengths.
pub fn token_matches(presented: &str, expected: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

async fn require_token(State(state): State<ControlApiState>, request: Request, next: Next) -> Response {
    let ok = bearer(request.headers()).is_some_and(|t| token_matches(t, state.token.expose()));
    if !ok {
        state.metrics.control_refused.get_or_create(&Metrics::label("channel", "api")).inc();
        tracing::warn!(path = %request.uri().path(), "control API: request without a valid token refused");
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            axum::Json(json!({"error": "missing or invalid bearer token"})),
        )
            .into_response();
    }
    next.run(request).await
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": message.into()}))).into_response()
}

/// The body as a JSON object (an empty body is `{}`); `None` when it is something else.
fn body_object(body: &Bytes) -> Option<serde_json::Map<String, serde_json::Value>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Some(serde_json::Map::new());
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(m)) => Some(m),
        _ => None,
    }
}

fn not_an_object() -> Response {
    error(StatusCode::BAD_REQUEST, "the body must be a JSON object")
}

async fn submit(state: &ControlApiState, peer: SocketAddr, action: ControlAction) -> Response {
    let origin = Origin { channel: "api", who: peer.ip().to_string() };
    let name = action.name();
    match state.control.submit(action, origin).await {
        Ok(reply) => {
            let labels = vec![
                ("channel".to_string(), "api".to_string()),
                ("action".to_string(), name.to_string()),
                ("ok".to_string(), reply.ok.to_string()),
            ];
            state.metrics.control_commands.get_or_create(&labels).inc();
            let status = if reply.ok { StatusCode::OK } else { StatusCode::CONFLICT };
            (status, axum::Json::<CommandReply>(reply)).into_response()
        }
        Err(e @ ControlError::Busy) => error(StatusCode::TOO_MANY_REQUESTS, e.to_string()),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

macro_rules! simple_command {
    ($name:ident, $action:expr) => {
        async fn $name(
            State(state): State<ControlApiState>,
            ConnectInfo(peer): ConnectInfo<SocketAddr>,
            body: Bytes,
        ) -> Response {
            if body_object(&body).is_none() {
                return not_an_object();
            }
            submit(&state, peer, $action).await
        }
    };
}

simple_command!(pause, ControlAction::Pause);
simple_command!(resume, ControlAction::Resume);
simple_command!(clear_emergency, ControlAction::ClearEmergency);
simple_command!(reconcile, ControlAction::Reconcile);

async fn force_exit(
    State(state): State<ControlApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Response {
    let Some(object) = body_object(&body) else { return not_an_object() };
    let target = object.get("symbol").and_then(serde_json::Value::as_str).and_then(ExitTarget::parse);
    let Some(target) = target else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "body must be {\"symbol\": \"<SYMBOL>\"} or {\"symbol\": \"all\"}",
        );
    };
    submit(&state, peer, ControlAction::ForceExit(target)).await
}

async fn openapi() -> Response {
    axum::Json(openapi_document()).into_response()
}

/// The control routes.
pub fn router(state: ControlApiState) -> Router {
    let commands = Router::new()
        .route("/api/v1/pause", post(pause))
        .route("/api/v1/resume", post(resume))
        .route("/api/v1/forceexit", post(force_exit))
        .route("/api/v1/clear-emergency", post(clear_emergency))
        .route("/api/v1/reconcile", post(reconcile))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state);
    Router::new().route(OPENAPI_PATH, get(openapi)).merge(commands)
}

/// Binds `addr` and serves the control API until `cancel` fires.
///
/// # Errors
/// The bind error.
pub async fn serve(
    addr: SocketAddr,
    state: ControlApiState,
    cancel: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let task = tokio::spawn(async move {
        let result = axum::serve(listener, app).with_graceful_shutdown(async move { cancel.cancelled().await }).await;
        if let Err(err) = result {
            tracing::error!(error = %err, "control API stopped with an error");
        }
    });
    tracing::info!(%local, "control API listening (POST /api/v1/..., bearer token)");
    Ok((local, task))
}

/// The OpenAPI 3.0 description of the control API.
pub fn openapi_document() -> serde_json::Value {
    let reply = json!({"$ref": "#/components/schemas/CommandReply"});
    let responses = |extra: serde_json::Value| {
        let mut r = json!({
            "200": {"description": "carried out", "content": {"application/json": {"schema": reply}}},
            "401": {"description": "missing or wrong bearer token",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            "429": {"description": "the command queue is full"},
            "503": {"description": "the position manager did not answer (not running or stopping)"}
        });
        if let (Some(r), Some(e)) = (r.as_object_mut(), extra.as_object()) {
            r.extend(e.clone());
        }
        r
    };
    let empty_body = json!({"required": false, "content": {"application/json": {"schema": {"type": "object"}}}});
    let op = |summary: &str, id: &str| {
        json!({"post": {"summary": summary, "operationId": id, "security": [{"bearer": []}],
                        "requestBody": empty_body, "responses": responses(json!({}))}})
    };
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Kinetic Empire control API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Operator commands for a running kinetic daemon. Every command is journaled and shown under `control` in GET /status."},
        "paths": {
            "/api/v1/pause": op("Pause new entries; open positions keep being managed (persists across restarts)", "pause"),
            "/api/v1/resume": op("Resume new entries", "resume"),
            "/api/v1/clear-emergency": op("Clear the emergency-exit latch", "clearEmergency"),
            "/api/v1/reconcile": op("Read positions and stops from the exchange now and reconcile", "reconcile"),
            "/api/v1/forceexit": {"post": {
                "summary": "Close whole positions at market, reduce-only; each keeps its stop until flat. A symbol busy with a request in flight is closed as soon as it is idle.",
                "operationId": "forceExit",
                "security": [{"bearer": []}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["symbol"],
                    "properties": {"symbol": {"type": "string", "description": "a symbol such as BTCUSDT, or `all`"}}}}}},
                "responses": responses(json!({
                    "409": {"description": "refused (e.g. no open position on that symbol)",
                            "content": {"application/json": {"schema": reply}}},
                    "422": {"description": "no valid symbol in the body"}}))
            }},
            OPENAPI_PATH: {"get": {"summary": "This description", "operationId": "openapi",
                                   "responses": {"200": {"description": "OpenAPI 3 JSON"}}}}
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "the value of KINETIC_CONTROL_TOKEN"}},
            "schemas": {
                "CommandReply": {"type": "object", "required": ["id", "action", "ok", "message", "paused"],
                    "properties": {
                        "id": {"type": "integer", "description": "journal id of the command"},
                        "action": {"type": "string", "enum": ["pause", "resume", "forceexit", "clear_emergency", "reconcile"]},
                        "ok": {"type": "boolean"},
                        "message": {"type": "string"},
                        "paused": {"type": "boolean", "description": "entries paused after the command"}}},
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
            }
        }
    })
}
