//! The HTTP status server over real HTTP on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::sync::{Arc, RwLock};

use kinetic::api::{self, ApiState, Metrics, StatusSnapshot, StreamState, StreamStatus};
use kinetic::core::liveness::Liveness;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

fn snapshot(tick: Option<i64>, state: StreamState) -> StatusSnapshot {
    StatusSnapshot {
        mode: api::Mode::DryRun,
        equity: "10000".into(),
        streams: vec![StreamStatus { name: "market".into(), state, last_message_at: Some(1), reconnects: 2 }],
        last_monitor_tick: tick,
        ..StatusSnapshot::default()
    }
}

#[tokio::test]
async fn health_metrics_and_status_over_http() {
    let liveness = Arc::new(Liveness::default());
    let metrics = Metrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let status = Arc::new(RwLock::new(snapshot(None, StreamState::Connecting)));
    let state = ApiState { status: status.clone(), registry: Arc::new(registry), liveness: Arc::clone(&liveness) };
    let cancel = CancellationToken::new();
    let (addr, task) = api::serve("127.0.0.1:0".parse().unwrap(), state, cancel.clone()).await.unwrap();
    assert!(addr.ip().is_loopback());
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();

    let res = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let body: serde_json::Value = res.json().await.unwrap();
    let reasons = body["reasons"].to_string();
    assert!(reasons.contains("loop has not run yet") && reasons.contains("market"), "{reasons}");

    // The loop's own heartbeat on the monotonic clock decides, whatever the wall or exchange
    // clock say (the snapshot's last tick is an exchange time far in the past here).
    *status.write().unwrap() = snapshot(Some(1), StreamState::Live);
    liveness.beat();
    assert_eq!(http.get(format!("{base}/health")).send().await.unwrap().status(), 200);
    liveness.beat_aged(std::time::Duration::from_secs(20));
    let res = http.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(res.status(), 503, "a loop that has not stepped for 15 s is unhealthy");
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(body["reasons"].to_string().contains("loop stalled"), "{body}");
    liveness.beat();
    liveness.set_exchange_reachable(false);
    let body: serde_json::Value = http.get(format!("{base}/health")).send().await.unwrap().json().await.unwrap();
    assert!(body["reasons"].to_string().contains("exchange unreachable"), "{body}");
    liveness.set_exchange_reachable(true);

    metrics.equity_usdt.set(10_012.5);
    metrics.open_positions.set(2);
    metrics.orders_sent.get_or_create(&Metrics::label("kind", "entry")).inc();
    metrics.stream_staleness_secs.get_or_create(&Metrics::label("stream", "market")).set(0.4);
    let text = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    for needle in [
        "kinetic_equity_usdt 10012.5",
        "kinetic_open_positions 2",
        "kinetic_orders_sent_total{kind=\"entry\"} 1",
        "kinetic_stream_staleness_seconds{stream=\"market\"} 0.4",
        "kinetic_algo_orders_open",
        "kinetic_emergency_distance_pct",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }

    let json: serde_json::Value = http.get(format!("{base}/status")).send().await.unwrap().json().await.unwrap();
    assert_eq!(json["mode"], "dry_run");
    assert_eq!(json["streams"][0]["reconnects"], 2);

    // Read-only: anything but GET is refused.
    let res = http.post(format!("{base}/status")).send().await.unwrap();
    assert_eq!(res.status(), 405);

    cancel.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(5), task).await.unwrap().unwrap();
}
