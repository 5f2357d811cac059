//! Operator control end to end (issue 13): the live engine with the real Binance client
//! against the fake Binance server on loopback, commands over the control API on loopback.
//!
//! - the control API answers 401 without a token, with a wrong one and with another scheme,
//!   and carries out nothing then; its OpenAPI description is served;
//! - `pause` stops entries on a valid signal (evaluated, journaled, not taken) while an open
//!   position keeps being managed (take-profits, trailing stop); the pause survives a restart,
//!   which executes no earlier command again; `resume` lifts it;
//! - `forceexit all` flattens every position with reduce-only market orders — a symbol busy
//!   with a hung request is closed once it is idle — and no position is ever without its stop
//!   before it is flat; each command is journaled and shown in `/status`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;
#[path = "common/daemon.rs"]
mod daemon;
mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use common::{CraftedMarket, now_ms};
use daemon::{credentials, install};
use kinetic::api::control::{ControlApiState, OPENAPI_PATH};
use kinetic::api::{Metrics, StatusSnapshot};
use kinetic::config::{ConfigSources, Settings, load};
use kinetic::core::liveness::Liveness;
use kinetic::core::models::{Direction, Timeframe};
use kinetic::exchange::binance::BinanceClient;
use kinetic::manager::trading_core::PAUSED_REASON;
use kinetic::store::Journal;
use kinetic::tasks::{Engine, EngineHandles};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::{Value, json};
use support::fake_binance::{FakeBinance, FakeConfig, FaultAction, FaultScope, SymbolSpec};
use tokio_util::sync::CancellationToken;

const XRP: &str = "XRPUSDT";
const SOL: &str = "SOLUSDT";
const BTC: &str = "BTCUSDT";
const TOKEN: &str = "operator-token-for-tests-0123456789";

fn settings_for(fake: &FakeBinance) -> Settings {
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("KINETIC__EXCHANGE__REST_URL".into(), fake.rest_url());
    env.insert("KINETIC__EXCHANGE__WS_URL".into(), fake.ws_url());
    env.insert("KINETIC__SCANNER__INTERVAL_SECS".into(), "3600".into());
    env.insert("KINETIC__MONITOR__INTERVAL_SECS".into(), "1".into());
    env.insert("KINETIC__EXCHANGE__REQUEST_TIMEOUT_SECS".into(), "60".into());
    env.insert("KINETIC__CONTROL__API_ENABLED".into(), "true".into());
    env.insert("KINETIC__CONTROL__API_LISTEN".into(), "127.0.0.1:0".into());
    env.insert("KINETIC_CONTROL_TOKEN".into(), TOKEN.into());
    load(&ConfigSources { file: None, env }).unwrap()
}

struct Daemon {
    fake: Arc<FakeBinance>,
    status: Arc<RwLock<StatusSnapshot>>,
    liveness: Arc<Liveness>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    api: String,
    http: reqwest::Client,
}

/// The engine over `fake` with the journal at `journal`, and the control API on loopback.
async fn start(fake: Arc<FakeBinance>, journal: &Path) -> Daemon {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "off".into()))
        .with_test_writer()
        .try_init();
    let settings = settings_for(&fake);
    let client = BinanceClient::new(&settings.exchange, Some(credentials())).unwrap();
    let journal = Journal::open(journal).unwrap();
    let status = Arc::new(RwLock::new(StatusSnapshot::default()));
    let metrics = Metrics::default();
    let handles = EngineHandles::new(Arc::clone(&status), metrics.clone());
    let liveness = Arc::clone(&handles.liveness);
    let cancel = CancellationToken::new();
    let state = ControlApiState {
        control: handles.control.clone(),
        token: settings.secrets.control_token.clone().unwrap(),
        metrics,
    };
    let (addr, _server) =
        kinetic::api::control::serve(settings.control.listen_addr().unwrap(), state, cancel.clone()).await.unwrap();
    assert!(addr.ip().is_loopback());
    let engine = Engine::new(Arc::new(client), settings, journal, handles, false).unwrap();
    let c = cancel.clone();
    let task = tokio::spawn(async move { engine.run(c, false).await.unwrap() });
    Daemon { fake, status, liveness, cancel, task, api: format!("http://{addr}"), http: reqwest::Client::new() }
}

impl Daemon {
    async fn wait(&self, what: &str, secs: u64, mut cond: impl FnMut(&FakeBinance, &StatusSnapshot) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.status.read().unwrap().clone();
            if cond(&self.fake, &s) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; status: {s:#?}; positions {:?}; stops {:?}",
                self.fake.positions(),
                self.fake.open_algo_orders()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `POST /api/v1/<path>` with `auth` as the Authorization header.
    async fn post(&self, path: &str, auth: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self.http.post(format!("{}/api/v1/{path}", self.api)).json(&body);
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let resp = req.send().await.unwrap();
        let code = resp.status().as_u16();
        (code, resp.json().await.unwrap_or(Value::Null))
    }

    async fn command(&self, path: &str, body: Value) -> Value {
        let (code, reply) = self.post(path, Some(&format!("Bearer {TOKEN}")), body).await;
        assert_eq!(code, 200, "{path}: {reply}");
        reply
    }

    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(12), self.task).await.expect("stops within the grace").unwrap();
    }
}

fn amount(fake: &FakeBinance, symbol: &str) -> Decimal {
    fake.position(symbol).map(|p| p.amount).unwrap_or_default()
}

/// Market orders the exchange executed for `symbol` (reduce-only or not), in time order.
fn executed(fake: &FakeBinance, symbol: &str) -> Vec<(bool, Decimal, String)> {
    let mut v: Vec<_> = fake
        .orders()
        .into_iter()
        .filter(|o| o.symbol == symbol && o.algo_id.is_none() && o.executed_qty > Decimal::ZERO)
        .map(|o| (o.time, o.order_id, o.reduce_only, o.executed_qty, o.client_order_id))
        .collect();
    v.sort();
    v.into_iter().map(|(_, _, r, q, id)| (r, q, id)).collect()
}

/// A fake exchange with XRPUSDT added to its symbols and an XRPUSDT long (799.9 at 2.0).
async fn fake_with_xrp(extra: impl FnOnce(&mut FakeConfig)) -> Arc<FakeBinance> {
    let mut cfg = FakeConfig::default();
    cfg.symbols.push(SymbolSpec::new(XRP, dec!(2), dec!(0.0001), dec!(0.1), dec!(5)));
    extra(&mut cfg);
    let fake = Arc::new(FakeBinance::start(cfg).await);
    fake.set_wallet_balance(dec!(10000));
    fake.set_price(XRP, dec!(2));
    fake.set_position(XRP, dec!(799.9), dec!(2));
    fake
}

/// Samples the exchange every 10 ms until stopped: every (moment, position) without a
/// covering resting stop.
fn sample_protection(fake: Arc<FakeBinance>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(u64, Vec<String>)> {
    tokio::spawn(async move {
        let (mut samples, mut uncovered) = (0u64, Vec::new());
        while !stop.load(Ordering::SeqCst) {
            samples += 1;
            for s in fake.unprotected_positions() {
                uncovered.push(format!("{s}: {:?} / {:?}", fake.positions(), fake.open_algo_orders()));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (samples, uncovered)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_api_refuses_requests_without_or_with_a_wrong_token() {
    let fake = fake_with_xrp(|_| {}).await;
    let dir = tempfile::tempdir().unwrap();
    let d = start(fake, &dir.path().join("live.db")).await;
    d.wait("position adopted with its stop", 20, |f, s| s.positions.len() == 1 && f.unprotected_positions().is_empty())
        .await;

    for (what, auth) in [
        ("no token", None),
        ("a wrong token", Some("Bearer operator-token-for-tests-0123456788".to_string())),
        ("the token's prefix", Some(format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]))),
        ("another scheme", Some(format!("Basic {TOKEN}"))),
    ] {
        for path in ["pause", "resume", "forceexit", "clear-emergency", "reconcile"] {
            let (code, body) = d.post(path, auth.as_deref(), json!({"symbol": "all"})).await;
            assert_eq!(code, 401, "{path} with {what}: {body}");
            assert!(!body.to_string().contains(TOKEN), "the token is never echoed");
        }
    }
    // Nothing was carried out or journaled; the position is untouched.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = d.status.read().unwrap().clone();
    assert!(s.control.recent_commands.is_empty(), "{:?}", s.control.recent_commands);
    assert!(!s.control.paused && !s.risk.paused);
    assert_eq!(amount(&d.fake, XRP), dec!(799.9));

    // The OpenAPI description needs no token and lists every command.
    let doc: Value = d.http.get(format!("{}{OPENAPI_PATH}", d.api)).send().await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in ["pause", "resume", "forceexit", "clear-emergency", "reconcile"] {
        assert!(doc["paths"][format!("/api/v1/{path}")]["post"].is_object(), "{path} described");
    }

    // With the token: a bad body is 422, an unknown symbol is refused (409) and journaled.
    let (code, _) = d.post("forceexit", Some(&format!("Bearer {TOKEN}")), json!({"symbol": "x y"})).await;
    assert_eq!(code, 422);
    let (code, reply) = d.post("forceexit", Some(&format!("Bearer {TOKEN}")), json!({"symbol": "ethusdt"})).await;
    assert_eq!(code, 409, "{reply}");
    assert_eq!(reply["ok"], false);
    assert!(reply["message"].as_str().unwrap().contains("ETHUSDT"));
    // The same actions as the commands: reconcile and clear-emergency answer and are journaled.
    let r = d.command("reconcile", json!({})).await;
    assert_eq!(r["action"], "reconcile");
    let r = d.command("clear-emergency", json!({})).await;
    assert_eq!(r["message"], "no emergency latch was set");
    d.wait("commands in /status", 5, |_, s| s.control.recent_commands.len() == 3).await;
    let s = d.status.read().unwrap().clone();
    let actions: Vec<&str> = s.control.recent_commands.iter().map(|c| c.action.as_str()).collect();
    assert_eq!(actions, ["clear_emergency", "reconcile", "forceexit"]);
    assert!(s.control.recent_commands.iter().all(|c| c.channel == "api" && c.who == "127.0.0.1"));
    assert_eq!(amount(&d.fake, XRP), dec!(799.9), "nothing closed");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_stops_entries_on_a_valid_signal_while_positions_keep_trailing_and_survives_a_restart() {
    let fake = fake_with_xrp(|_| {}).await;
    let m = CraftedMarket::new(BTC, Direction::Long, 68000.0, 0.2, now_ms());
    install(&fake, &m);
    let dir = tempfile::tempdir().unwrap();
    let journal: PathBuf = dir.path().join("live.db");
    let d = start(Arc::clone(&fake), &journal).await;
    d.wait("XRPUSDT adopted with its stop", 20, |f, s| {
        s.positions.len() == 1 && f.unprotected_positions().is_empty() && !f.open_algo_orders().is_empty()
    })
    .await;

    let reply = d.command("pause", json!({})).await;
    assert_eq!(reply["ok"], true);
    assert_eq!(reply["paused"], true);
    d.wait("paused in /status", 5, |_, s| s.control.paused && s.risk.paused && !s.risk.entries_enabled).await;

    // A valid signal on BTCUSDT while paused: evaluated and journaled, not taken.
    d.wait("scan lists BTCUSDT", 20, |_, s| s.last_scan.as_ref().is_some_and(|l| l.lists(BTC))).await;
    d.wait("streams live", 20, |_, s| {
        !s.streams.is_empty() && s.streams.iter().all(|x| x.state == kinetic::api::StreamState::Live)
    })
    .await;
    let handled = d.liveness.progress.signals_handled.load(Ordering::SeqCst);
    d.fake.push_kline(BTC, Timeframe::M15.as_str(), m.next_15m, true);
    d.wait("the signal handled", 20, |_, s| {
        d.liveness.progress.signals_handled.load(Ordering::SeqCst) > handled
            && s.recent_signals.iter().any(|x| x.symbol == BTC)
    })
    .await;
    let s = d.status.read().unwrap().clone();
    let sig = s.recent_signals.iter().find(|x| x.symbol == BTC).unwrap();
    assert!(sig.score >= 60, "a valid signal: {sig:?}");
    assert!(!sig.taken);
    assert_eq!(sig.reason.as_deref(), Some(PAUSED_REASON));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(amount(&d.fake, BTC).is_zero(), "no entry while paused");
    assert!(executed(&d.fake, BTC).is_empty(), "no BTCUSDT order at all");

    // The open position keeps being managed: +3.5 % takes TP1 and TP2, the rest trails.
    d.fake.set_price(XRP, dec!(2.07));
    d.wait("TP1, TP2 and a trailing stop above entry", 15, |f, s| {
        let stops = f.open_algo_orders();
        executed(f, XRP).len() == 2
            && s.requests_in_flight == 0
            && stops.len() == 1
            && stops[0].quantity == amount(f, XRP)
            && stops[0].trigger_price > dec!(2)
    })
    .await;
    assert!(executed(&d.fake, XRP).iter().all(|(reduce_only, _, _)| *reduce_only));
    let trail = d.fake.open_algo_orders()[0].trigger_price;
    d.stop().await;

    // Restart: the pause is restored from the journal; no earlier command runs again.
    let orders_before = d_orders(&fake);
    let d = start(Arc::clone(&fake), &journal).await;
    d.wait("restarted and reconciled", 20, |f, s| {
        s.positions.len() == 1 && f.unprotected_positions().is_empty() && s.control.paused
    })
    .await;
    let s = d.status.read().unwrap().clone();
    assert!(s.risk.paused && !s.risk.entries_enabled);
    assert_eq!(s.control.paused_by.as_deref(), Some("api:127.0.0.1"));
    assert_eq!(s.control.recent_commands.len(), 1, "the journaled pause, shown, not re-run");
    assert_eq!(s.control.recent_commands[0].action, "pause");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(d_orders(&fake), orders_before, "no order after the restart");
    assert_eq!(d.fake.open_algo_orders()[0].trigger_price, trail, "the trailing stop is where it was");

    let reply = d.command("resume", json!({})).await;
    assert_eq!(reply["paused"], false);
    d.wait("resumed", 5, |_, s| !s.control.paused && !s.risk.paused && s.risk.entries_enabled).await;
    d.stop().await;
    let j = Journal::open(&journal).unwrap();
    assert_eq!(j.state("operator_pause").unwrap().unwrap()["paused"], false);
    let cmds = j.recent_commands(10).unwrap();
    let actions: Vec<&str> = cmds.iter().map(|c| c.action.as_str()).collect();
    assert_eq!(actions, ["resume", "pause"]);
    assert!(cmds.iter().all(|c| c.ok && c.channel == "api" && c.time > 0));
}

fn d_orders(fake: &FakeBinance) -> usize {
    fake.orders().len() + fake.algo_orders().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forceexit_all_flattens_with_reduce_only_orders_and_never_leaves_a_position_without_its_stop() {
    let fake = fake_with_xrp(|_| {}).await;
    fake.set_price(SOL, dec!(150));
    fake.set_position(SOL, dec!(-20), dec!(150));
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("live.db");
    let d = start(Arc::clone(&fake), &journal).await;
    d.wait("both adopted with their stops", 20, |f, s| {
        s.positions.len() == 2 && f.open_algo_orders().len() == 2 && f.unprotected_positions().is_empty()
    })
    .await;
    d.wait("marks", 10, |_, s| s.positions.iter().all(|p| p.mark_price.is_some())).await;

    let stop_sampler = Arc::new(AtomicBool::new(false));
    let sampler = sample_protection(Arc::clone(&fake), Arc::clone(&stop_sampler));
    // SOLUSDT is busy: its TP1 close executes and the answer hangs.
    fake.fail_next(1, FaultScope::symbol_orders(SOL), FaultAction::Hold { execute_first: true });
    fake.set_price(SOL, dec!(147.6));
    d.wait("SOLUSDT's TP1 close held", 10, |f, _| f.held_requests() >= 1).await;

    let reply = d.command("forceexit", json!({"symbol": "all"})).await;
    let message = reply["message"].as_str().unwrap();
    assert!(message.contains(XRP) && message.contains(&format!("then closing: {SOL}")), "{message}");
    d.wait("XRPUSDT flat; SOLUSDT waits for its request", 5, |f, s| {
        amount(f, XRP).is_zero() && s.control.pending_force_exits.iter().any(|p| p == SOL)
    })
    .await;
    assert_eq!(amount(&fake, SOL), dec!(-12), "only the TP1 close so far");

    // The hung answer arrives: SOLUSDT is idle again and closed at once.
    fake.release_held_requests();
    d.wait("everything flat, stops gone", 10, |f, s| {
        f.positions().is_empty()
            && s.positions.is_empty()
            && s.requests_in_flight == 0
            && f.open_algo_orders().is_empty()
            && s.control.pending_force_exits.is_empty()
    })
    .await;
    stop_sampler.store(true, Ordering::SeqCst);
    let (samples, uncovered) = sampler.await.unwrap();
    assert!(samples > 20, "{samples} samples");
    assert!(uncovered.is_empty(), "a position without its stop before it was flat: {:?}", uncovered.first());

    // Every close was a reduce-only market order; each symbol closed once by the force exit.
    let xrp = executed(&fake, XRP);
    assert_eq!(xrp.len(), 1, "{xrp:?}");
    assert!(xrp[0].0 && xrp[0].1 == dec!(799.9));
    let sol = executed(&fake, SOL);
    assert_eq!(sol.iter().map(|o| o.1).collect::<Vec<_>>(), [dec!(8), dec!(12)], "TP1 then the force exit");
    assert!(sol.iter().all(|o| o.0), "reduce-only: {sol:?}");
    let s = d.status.read().unwrap().clone();
    assert_eq!(s.control.recent_commands[0].action, "forceexit");
    assert_eq!(s.control.recent_commands[0].args, json!({"symbol": "all"}));
    d.stop().await;
    let j = Journal::open(&journal).unwrap();
    let mut reasons: Vec<(String, Option<String>)> =
        j.closed_positions(5).unwrap().into_iter().map(|p| (p.position.symbol, p.close_reason)).collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [(SOL.to_string(), Some("force_exit".to_string())), (XRP.to_string(), Some("force_exit".to_string()))]
    );
}
