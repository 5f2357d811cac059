//! Bad input (issue 7): while the live engine holds a protected position, the fake server's
//! market stream delivers NaN, negative and zero prices, unknown symbols, truncated JSON, an
//! oversized frame, wrong shapes and an out-of-order candle; REST answers with an HTML proxy
//! page and a truncated body. Nothing panics, nothing is ordered because of it (the position
//! and its stop are untouched), the drops are counted, and the engine keeps trading normally
//! afterwards (the next real price still takes profit).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;
mod support;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use common::{CraftedMarket, now_ms};
use kinetic::api::{Metrics, StatusSnapshot, metrics};
use kinetic::config::{ConfigSources, Credentials, load};
use kinetic::core::models::Direction;
use kinetic::exchange::binance::BinanceClient;
use kinetic::store::Journal;
use kinetic::tasks::{Engine, EngineHandles};
use prometheus_client::registry::Registry;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::json;
use support::fake_binance::{DOC_API_KEY, DOC_API_SECRET, FakeBinance, FakeConfig, FaultAction, FaultScope, Route};
use tokio_util::sync::CancellationToken;

async fn wait(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_market_data_and_rest_bodies_change_nothing() {
    let fake = FakeBinance::start(FakeConfig::default()).await;
    let sym = "BTCUSDT";
    let m = CraftedMarket::new(sym, Direction::Long, 68000.0, 0.2, now_ms());
    for (tf, candles) in &m.history {
        fake.set_klines(sym, tf.as_str(), candles.clone());
    }
    fake.set_ticker_stats(sym, Decimal::from(100_000_000), dec!(2.5));
    fake.set_price(sym, dec!(68000));

    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("KINETIC__EXCHANGE__REST_URL".into(), fake.rest_url());
    env.insert("KINETIC__EXCHANGE__WS_URL".into(), fake.ws_url());
    env.insert("KINETIC__SCANNER__INTERVAL_SECS".into(), "2".into());
    env.insert("KINETIC__MONITOR__INTERVAL_SECS".into(), "1".into());
    let settings = load(&ConfigSources { file: None, env }).unwrap();
    let creds: HashMap<String, String> = [
        ("BINANCE_API_KEY".to_string(), DOC_API_KEY.to_string()),
        ("BINANCE_API_SECRET".to_string(), DOC_API_SECRET.to_string()),
    ]
    .into();
    let client = BinanceClient::new(&settings.exchange, Credentials::from_env(&creds)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let status = Arc::new(RwLock::new(StatusSnapshot::default()));
    let metrics_handle = Metrics::default();
    let mut registry = Registry::default();
    metrics_handle.register(&mut registry);
    let handles = EngineHandles::new(Arc::clone(&status), metrics_handle);
    let engine =
        Engine::new(Arc::new(client), settings, Journal::open(&dir.path().join("j.db")).unwrap(), handles, false)
            .unwrap();
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let task = tokio::spawn(async move { engine.run(c, false).await });

    wait("an open, protected position", || fake.position(sym).is_some() && fake.unprotected_positions().is_empty())
        .await;
    let orders_before = fake.orders().len();
    let algo_before = fake.algo_orders().len();
    let qty = fake.position(sym).unwrap().amount;

    // Market stream garbage.
    let mark = |p: &str, s: &str| json!([{"e":"markPriceUpdate","E":now_ms(),"s":s,"p":p,"i":p,"P":p,"r":"0.0001","T":now_ms() + 3_600_000}]);
    for p in ["NaN", "-68000", "0", "inf", "1e400", "", "68000.0.0"] {
        fake.push_raw("!markPrice@arr@1s", mark(p, sym));
    }
    fake.push_raw("!markPrice@arr@1s", mark("1", "NOSUCHUSDT"));
    fake.push_raw("!markPrice@arr@1s", json!({"unexpected": "shape"}));
    fake.push_raw("!markPrice@arr@1s", json!([1, 2, 3]));
    let old = m.history[&kinetic::core::models::Timeframe::M15][0];
    fake.push_raw(
        "btcusdt@kline_15m",
        json!({"e":"kline","E":now_ms(),"s":sym,"k":{"t":old.open_time,"T":old.close_time,"s":sym,"i":"15m",
            "o":"-1","c":"NaN","h":"0","l":"5","v":"-3","n":1,"x":true,"q":"0","V":"0","Q":"0","B":"0"}}),
    );
    fake.push_text(Route::Market, "{\"stream\":\"!markPrice@arr@1s\",\"data\":[{\"e\":\"markPri");
    fake.push_text(Route::Market, &format!("{{\"stream\":\"x\",\"data\":\"{}\"}}", "A".repeat(1 << 20)));
    fake.push_text(Route::Market, "\u{0}\u{1}not json at all");
    // REST garbage on the next reads (an HTML page from a proxy, then a truncated body).
    fake.fail_next(
        1,
        FaultScope::Endpoint("GET".into(), "/fapi/v1/ticker/24hr".into()),
        FaultAction::Html { http_status: 502 },
    );
    fake.fail_next(1, FaultScope::Endpoint("GET".into(), "/fapi/v1/ticker/24hr".into()), FaultAction::TruncatedBody);
    tokio::time::sleep(Duration::from_secs(5)).await;

    assert_eq!(fake.orders().len(), orders_before, "bad input must never cause an order");
    assert_eq!(fake.algo_orders().len(), algo_before, "bad input must never move the stop");
    assert_eq!(fake.position(sym).unwrap().amount, qty);
    assert!(fake.unprotected_positions().is_empty());
    let s = status.read().unwrap().clone();
    assert!(!s.risk.emergency_latched, "a fake price must not fire the emergency exit");
    let text = metrics::render(&registry);
    let dropped: f64 = text
        .lines()
        .filter(|l| l.starts_with("kinetic_dropped_messages_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(dropped >= 5.0, "malformed messages are counted: {dropped}\n{text}");

    // Still trading: a real price at TP1 takes profit.
    fake.set_price(sym, dec!(69100));
    wait("TP1 after the garbage", || fake.position(sym).is_some_and(|p| p.amount < qty)).await;
    assert_eq!(fake.panicked_requests(), 0);
    cancel.cancel();
    let r = tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
    assert!(r.is_ok());
}
