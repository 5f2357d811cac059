//! Notifications end to end (issue 13): the live engine with the real Binance client against
//! the fake Binance server, a fake Telegram Bot API and webhook receivers, all on loopback.
//!
//! - an entry, TP1 and a stop-out reach Telegram with the exchange's figures, while the
//!   webhook endpoint hangs: the take-profit close still leaves at once;
//! - an emergency exit reaches a signed JSON webhook (the HMAC-SHA256 signature verifies over
//!   the exact body) while Telegram answers 500: failures are counted, trading unaffected.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;
#[path = "common/daemon.rs"]
mod daemon;
mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::{CraftedMarket, now_ms};
use daemon::{credentials, install};
use kinetic::api::{Metrics, StatusSnapshot};
use kinetic::config::{ConfigSources, load};
use kinetic::core::models::{Direction, Timeframe};
use kinetic::notify::deliver::signature;
use rust_decimal::Decimal;
use rust_decimal::prelude::*;
use rust_decimal_macros::dec;
use serde_json::Value;
use support::fake_binance::{FakeBinance, FakeConfig, SymbolSpec};
use tokio_util::sync::CancellationToken;

const BOT_TOKEN: &str = "123456:test-bot-token";
const HOOK_SECRET: &str = "webhook-signing-secret";

/// What a fake endpoint received: (path, headers, body).
type Inbox = Arc<Mutex<Vec<(String, HeaderMap, Bytes)>>>;

#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    Ok,
    Fail,
    Hang,
}

/// An HTTP endpoint on loopback recording every POST and answering as told.
async fn endpoint(behaviour: Behaviour) -> (String, Inbox) {
    let inbox: Inbox = Arc::default();
    async fn handle(
        State((inbox, behaviour)): State<(Inbox, Behaviour)>,
        Path(path): Path<String>,
        headers: HeaderMap,
        body: Bytes,
    ) -> (StatusCode, &'static str) {
        inbox.lock().unwrap().push((path, headers, body));
        match behaviour {
            Behaviour::Ok => (StatusCode::OK, r#"{"ok":true,"result":{}}"#),
            Behaviour::Fail => (StatusCode::INTERNAL_SERVER_ERROR, r#"{"ok":false}"#),
            Behaviour::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                (StatusCode::OK, "{}")
            }
        }
    }
    let app = Router::new().route("/{*path}", post(handle)).with_state((Arc::clone(&inbox), behaviour));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, inbox)
}

fn telegram_texts(inbox: &Inbox) -> Vec<String> {
    inbox
        .lock()
        .unwrap()
        .iter()
        .map(|(path, _, body)| {
            assert_eq!(path, &format!("bot{BOT_TOKEN}/sendMessage"));
            let v: Value = serde_json::from_slice(body).unwrap();
            assert_eq!(v["chat_id"], 42);
            v["text"].as_str().unwrap().to_string()
        })
        .collect()
}

struct Live {
    fake: Arc<FakeBinance>,
    status: Arc<RwLock<StatusSnapshot>>,
    metrics: Metrics,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn start(fake: Arc<FakeBinance>, extra: &[(&str, &str)]) -> Live {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "off".into()))
        .with_test_writer()
        .try_init();
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("KINETIC__EXCHANGE__REST_URL".into(), fake.rest_url());
    env.insert("KINETIC__EXCHANGE__WS_URL".into(), fake.ws_url());
    env.insert("KINETIC__SCANNER__INTERVAL_SECS".into(), "3600".into());
    env.insert("KINETIC__MONITOR__INTERVAL_SECS".into(), "1".into());
    env.insert("KINETIC_TELEGRAM_BOT_TOKEN".into(), BOT_TOKEN.into());
    env.insert("KINETIC_WEBHOOK_SECRET".into(), HOOK_SECRET.into());
    for (k, v) in extra {
        env.insert((*k).to_string(), (*v).to_string());
    }
    let settings = load(&ConfigSources { file: None, env }).unwrap();
    let e = common::start_live_engine(settings, credentials());
    Live { fake, status: e.status, metrics: e.metrics, cancel: e.cancel, task: e.task, _dir: e.dir }
}

impl Live {
    async fn wait(&self, what: &str, secs: u64, mut cond: impl FnMut(&FakeBinance, &StatusSnapshot) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.status.read().unwrap().clone();
            if cond(&self.fake, &s) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; status: {s:#?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(12), self.task).await.expect("stops within the grace").unwrap();
    }
}

async fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn amount(fake: &FakeBinance, symbol: &str) -> Decimal {
    fake.position(symbol).map(|p| p.amount).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entry_tp1_and_stop_out_reach_telegram_while_a_hanging_webhook_delays_nothing() {
    let (tg_url, telegram) = endpoint(Behaviour::Ok).await;
    let (hook_url, hook) = endpoint(Behaviour::Hang).await;
    let fake = Arc::new(FakeBinance::start(FakeConfig::default()).await);
    let sym = "BTCUSDT";
    let m = CraftedMarket::new(sym, Direction::Long, 68000.0, 0.2, now_ms());
    install(&fake, &m);
    let live = start(
        Arc::clone(&fake),
        &[
            ("KINETIC__NOTIFY__TELEGRAM__ENABLED", "true"),
            ("KINETIC__NOTIFY__TELEGRAM__API_URL", &tg_url),
            ("KINETIC__NOTIFY__TELEGRAM__CHAT_IDS", "42"),
            ("KINETIC__NOTIFY__WEBHOOK__URL", &format!("{hook_url}/hook")),
            ("KINETIC__NOTIFY__TIMEOUT_SECS", "120"),
        ],
    )
    .await;
    wait_for("start message", 15, || telegram_texts(&telegram).iter().any(|t| t == "kinetic started (live)")).await;

    live.wait("scan lists the crafted symbol", 20, |_, s| s.last_scan.as_ref().is_some_and(|l| l.lists(sym))).await;
    live.wait("streams live", 20, |_, s| {
        !s.streams.is_empty() && s.streams.iter().all(|x| x.state == kinetic::api::StreamState::Live)
    })
    .await;
    fake.push_kline(sym, Timeframe::M15.as_str(), m.next_15m, true);
    live.wait("entry filled and protected", 15, |f, _| {
        !amount(f, sym).is_zero() && f.unprotected_positions().is_empty() && !f.open_algo_orders().is_empty()
    })
    .await;
    let pos = fake.position(sym).unwrap();
    let (qty, entry) = (pos.amount, pos.entry_price);
    let lev = fake.leverage(sym).unwrap();
    let score = live.status.read().unwrap().recent_signals[0].score;
    let stop = live.status.read().unwrap().positions[0].stop.clone();
    let expected = format!("ENTRY {sym} LONG {qty} @ {entry} x{lev} score {score} stop {stop}");
    wait_for(&format!("{expected:?} in {:?}", telegram_texts(&telegram)), 10, || {
        telegram_texts(&telegram).contains(&expected)
    })
    .await;
    // The webhook got the first message and hangs on it.
    wait_for("webhook hanging", 10, || !hook.lock().unwrap().is_empty()).await;

    // TP1 at +1.6 % while the webhook hangs: the close leaves at once.
    let tp = (entry * dec!(1.016)).round_dp(1);
    let crossed = Instant::now();
    fake.set_price(sym, tp);
    live.wait("TP1 close", 5, |f, _| amount(f, sym) < qty).await;
    let latency = crossed.elapsed();
    println!("TP1 close sent {} ms after the cross, webhook hanging", latency.as_millis());
    assert!(latency < Duration::from_secs(1), "TP1 delayed {latency:?}");
    let closed = qty - amount(&fake, sym);
    let tp_order =
        fake.orders().into_iter().rfind(|o| o.symbol == sym && o.reduce_only && o.algo_id.is_none()).unwrap();
    let pnl = ((tp_order.avg_price - entry) * closed).round_dp(2);
    let expected = format!("TP1 {sym}: closed {closed} @ {} PnL +{pnl} USDT", tp_order.avg_price.normalize());
    wait_for(&format!("{expected:?} in {:?}", telegram_texts(&telegram)), 10, || {
        telegram_texts(&telegram).contains(&expected)
    })
    .await;

    // Stop-out: the price falls through the resting stop.
    live.wait("stop resized", 10, |f, _| f.open_algo_orders().iter().all(|a| a.quantity == qty - closed)).await;
    let trigger = fake.open_algo_orders()[0].trigger_price;
    fake.set_price(sym, trigger - dec!(50));
    live.wait("stopped out", 15, |f, s| amount(f, sym).is_zero() && s.positions.is_empty()).await;
    wait_for("stop-out message", 10, || {
        telegram_texts(&telegram).iter().any(|t| t.starts_with(&format!("STOP-OUT {sym} (stop_loss): trade PnL ")))
    })
    .await;
    // The hung webhook held one message; nothing waited for it.
    assert_eq!(hook.lock().unwrap().len(), 1);
    live.stop().await;
    wait_for("stop message", 5, || telegram_texts(&telegram).last().is_some_and(|t| t.starts_with("kinetic stopped")))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_exit_reaches_a_signed_webhook_while_telegram_fails() {
    let (tg_url, telegram) = endpoint(Behaviour::Fail).await;
    let (hook_url, hook) = endpoint(Behaviour::Ok).await;
    let mut cfg = FakeConfig::default();
    cfg.symbols.push(SymbolSpec::new("XRPUSDT", dec!(2), dec!(0.0001), dec!(0.1), dec!(5)));
    let fake = Arc::new(FakeBinance::start(cfg).await);
    fake.set_price("XRPUSDT", dec!(2));
    fake.set_position("XRPUSDT", dec!(799.9), dec!(2));
    fake.set_price("SOLUSDT", dec!(150));
    fake.set_position("SOLUSDT", dec!(-20), dec!(150));
    let live = start(
        Arc::clone(&fake),
        &[
            ("KINETIC__RISK__EMERGENCY_LOSS_PCT", "0.5"),
            ("KINETIC__NOTIFY__TELEGRAM__ENABLED", "true"),
            ("KINETIC__NOTIFY__TELEGRAM__API_URL", &tg_url),
            ("KINETIC__NOTIFY__TELEGRAM__CHAT_IDS", "42"),
            ("KINETIC__NOTIFY__RETRIES", "1"),
            ("KINETIC__NOTIFY__WEBHOOK__URL", &format!("{hook_url}/hook")),
            ("KINETIC__NOTIFY__WEBHOOK__EVENTS", "emergency,position_closed"),
        ],
    )
    .await;
    live.wait("both adopted with stops", 20, |f, s| s.positions.len() == 2 && f.unprotected_positions().is_empty())
        .await;
    live.wait("marks", 10, |_, s| s.positions.iter().all(|p| p.mark_price.is_some())).await;
    fake.set_price("XRPUSDT", dec!(1.95));
    fake.set_price("SOLUSDT", dec!(154));
    live.wait("everything closed", 10, |f, s| f.positions().is_empty() && s.risk.emergency_latched).await;
    wait_for("emergency and two closes on the webhook", 10, || hook.lock().unwrap().len() >= 3).await;

    let received = hook.lock().unwrap().clone();
    let mut kinds = Vec::new();
    for (path, headers, body) in &received {
        assert_eq!(path, "hook");
        // The signature verifies over the exact body bytes.
        let sig = headers.get("x-kinetic-signature").unwrap().to_str().unwrap();
        assert_eq!(sig, signature(HOOK_SECRET, body));
        assert_ne!(sig, signature("another secret", body));
        let v: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(headers.get("x-kinetic-event").unwrap().to_str().unwrap(), v["event"].as_str().unwrap());
        kinds.push(v["event"].as_str().unwrap().to_string());
        if v["event"] == "emergency" {
            let upnl = Decimal::from_str(v["data"]["unrealized_pnl"].as_str().unwrap()).unwrap();
            let equity = Decimal::from_str(v["data"]["equity"].as_str().unwrap()).unwrap();
            // XRPUSDT −0.05 × 799.9 and SOLUSDT −4 × 20 at the crash marks.
            assert_eq!(upnl, dec!(-119.995));
            assert!(upnl / equity * dec!(100) <= dec!(-0.5), "{upnl} / {equity}");
            assert!(v["text"].as_str().unwrap().starts_with("EMERGENCY EXIT: unrealized PnL -120"));
        } else {
            assert_eq!(v["data"]["reason"], "emergency");
        }
    }
    assert_eq!(kinds.iter().filter(|k| *k == "emergency").count(), 1, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| *k == "position_closed").count(), 2, "{kinds:?}");
    // Telegram refused everything: retried once, then counted as failed.
    wait_for("telegram failures counted", 10, || {
        live.metrics.notifications_failed.get_or_create(&Metrics::label("channel", "telegram")).get() >= 1
    })
    .await;
    assert!(telegram.lock().unwrap().len() >= 2);
    live.stop().await;
}
