//! The monitoring files in `deploy/` (issue 13): the Grafana dashboard parses as JSON, and
//! every PromQL expression in it and in the Prometheus alert rules names only metrics the
//! daemon exports — taken from the exposition of the daemon's own registry, so a renamed
//! metric breaks this test rather than a dashboard nobody looks at. (`promtool check rules`
//! in CI checks the rules' syntax.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::collections::BTreeSet;

use kinetic::api::Metrics;
use prometheus_client::registry::Registry;

const DASHBOARD: &str = "deploy/grafana/kinetic-dashboard.json";
const RULES: &str = "deploy/prometheus/kinetic-alerts.yml";

/// Series names the daemon exports: gauges by name, counters with `_total`.
fn exported() -> BTreeSet<String> {
    let metrics = Metrics::default();
    // Families are only rendered once they hold a series.
    let l = Metrics::label("x", "y");
    for f in [
        &metrics.orders_sent,
        &metrics.orders_rejected,
        &metrics.ws_reconnects,
        &metrics.dropped_messages,
        &metrics.control_commands,
        &metrics.control_refused,
        &metrics.notifications_sent,
        &metrics.notifications_failed,
        &metrics.notifications_dropped,
    ] {
        f.get_or_create(&l).inc();
    }
    metrics.stream_staleness_secs.get_or_create(&l).set(1.0);
    metrics.api_key_unsafe.get_or_create(&l).set(0);
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let text = kinetic::api::metrics::render(&registry);
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            if kind == "counter" {
                names.insert(format!("{name}_total"));
            } else {
                names.insert(name.to_string());
            }
        }
    }
    names
}

/// Every `kinetic_[a-z_]+` in `expr` (the regex, by hand: no regex crate for one test).
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("kinetic_") {
        let before_ok = rest[..at].chars().last().is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        let tail = &rest[at..];
        let len = tail.find(|c: char| !(c.is_ascii_lowercase() || c == '_')).unwrap_or(tail.len());
        if before_ok {
            out.push(tail[..len].to_string());
        }
        rest = &tail[len..];
    }
    out
}

fn dashboard_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

fn rule_exprs(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix("expr:"))
        .map(|e| e.trim().trim_matches('"').to_string())
        .collect()
}

#[test]
fn the_name_scanner_finds_kinetic_metrics_only() {
    assert_eq!(
        metric_names("sum by (kind) (rate(kinetic_orders_sent_total[5m])) / kinetic_equity_usdt and xkinetic_no"),
        ["kinetic_orders_sent_total", "kinetic_equity_usdt"]
    );
}

#[test]
fn the_dashboard_parses_and_queries_only_exported_metrics() {
    let exported = exported();
    assert!(exported.contains("kinetic_equity_usdt") && exported.contains("kinetic_orders_sent_total"), "{exported:?}");
    let text = std::fs::read_to_string(DASHBOARD).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert!(dashboard["panels"].as_array().is_some_and(|p| p.len() >= 10));
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 15, "{exprs:?}");
    let mut shown = BTreeSet::new();
    for e in &exprs {
        let names = metric_names(e);
        assert!(!names.is_empty(), "a query without a kinetic metric: {e}");
        for n in names {
            assert!(exported.contains(&n), "dashboard query `{e}` names {n}, which the daemon does not export");
            shown.insert(n);
        }
    }
    // The issue's list: equity, PnL, positions, emergency distance, staleness, weight, orders,
    // rejections, loop lag.
    for must in [
        "kinetic_equity_usdt",
        "kinetic_unrealized_pnl_usdt",
        "kinetic_open_positions",
        "kinetic_emergency_distance_pct",
        "kinetic_stream_staleness_seconds",
        "kinetic_rest_weight_used",
        "kinetic_orders_sent_total",
        "kinetic_orders_rejected_total",
        "kinetic_monitor_loop_lag_seconds",
    ] {
        assert!(shown.contains(must), "the dashboard shows {must}");
    }
}

#[test]
fn the_alert_rules_name_only_exported_metrics_and_cover_the_issue() {
    let exported = exported();
    let text = std::fs::read_to_string(RULES).unwrap();
    let exprs = rule_exprs(&text);
    assert!(exprs.len() >= 7, "{exprs:?}");
    for e in &exprs {
        for n in metric_names(e) {
            assert!(exported.contains(&n), "rule `{e}` names {n}, which the daemon does not export");
        }
    }
    for alert in [
        "KineticDown",
        "KineticLoopStalled",
        "KineticStreamStale",
        "KineticPositionWithoutStop",
        "KineticEmergencyLatched",
        "KineticDailyLossBlock",
        "KineticRestWeightNearLimit",
    ] {
        assert!(text.contains(&format!("alert: {alert}\n")), "rule {alert}");
    }
}
