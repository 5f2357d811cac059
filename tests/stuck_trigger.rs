//! A protective stop marked triggered that never produces an order (the fake's
//! `set_trigger_never_fills` fault, after the 2026-10 demo-environment report): the daemon
//! counts only a resting (`NEW`) stop as protection, and once the position has stayed open
//! for `monitor.stuck_stop_grace_secs` it closes it at market (`stuck_stop_action = "close"`)
//! or places a new stop (`"replace"`), raising an alert (log + metric). The position is never
//! without protection for longer than the grace (plus one monitor tick for the action to
//! leave, and the request's round trip).
//!
//! The market route is silenced before the stop fires, so the daemon's own marks never see the
//! cross: only the exchange's ALGO_UPDATE tells it the stop fired.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;
#[path = "common/daemon.rs"]
mod daemon;
mod support;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use daemon::credentials;
use kinetic::api::{Metrics, StatusSnapshot};
use kinetic::config::{ConfigSources, load};
use rust_decimal_macros::dec;
use support::fake_binance::{FakeBinance, FakeConfig, Route};
use tokio_util::sync::CancellationToken;

const SYM: &str = "BTCUSDT";
const GRACE_SECS: u64 = 2;
const TICK_SECS: u64 = 1;

struct Run {
    fake: Arc<FakeBinance>,
    status: Arc<RwLock<StatusSnapshot>>,
    metrics: Metrics,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

/// A BTCUSDT long (0.05 at 68000) adopted with its stop 3 % below (65960) resting on the fake.
async fn start(action: &str) -> Run {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "off".into()))
        .with_test_writer()
        .try_init();
    let fake = Arc::new(FakeBinance::start(FakeConfig::default()).await);
    fake.set_price(SYM, dec!(68000));
    fake.set_position(SYM, dec!(0.05), dec!(68000));
    let mut env: HashMap<String, String> = HashMap::new();
    for (k, v) in [
        ("KINETIC__EXCHANGE__REST_URL", fake.rest_url()),
        ("KINETIC__EXCHANGE__SPOT_REST_URL", fake.rest_url()),
        ("KINETIC__EXCHANGE__WS_URL", fake.ws_url()),
        ("KINETIC__SCANNER__INTERVAL_SECS", "3600".into()),
        ("KINETIC__MONITOR__INTERVAL_SECS", TICK_SECS.to_string()),
        ("KINETIC__MONITOR__STUCK_STOP_GRACE_SECS", GRACE_SECS.to_string()),
        ("KINETIC__MONITOR__STUCK_STOP_ACTION", action.into()),
    ] {
        env.insert(k.into(), v);
    }
    let settings = load(&ConfigSources { file: None, env }).unwrap();
    let e = common::start_live_engine(settings, credentials());
    let run = Run { fake, status: e.status, metrics: e.metrics, cancel: e.cancel, task: e.task, _dir: e.dir };
    run.wait("position adopted and protected", 20, |f| {
        f.open_algo_orders().len() == 1 && f.unprotected_positions().is_empty()
    })
    .await;
    // The daemon's view caught up (its status lists the stop) and the user stream is live (the
    // stop's ALGO_UPDATE must reach it).
    run.wait_status("stop listed, streams live", |s| {
        !s.open_orders.is_empty()
            && s.streams.len() == 2
            && s.streams.iter().all(|x| x.state == kinetic::core::data_hub::StreamState::Live)
    })
    .await;
    run
}

impl Run {
    async fn wait(&self, what: &str, secs: u64, mut cond: impl FnMut(&FakeBinance) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !cond(&self.fake) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; positions {:?}; algo orders {:?}",
                self.fake.positions(),
                self.fake.algo_orders()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn wait_status(&self, what: &str, mut cond: impl FnMut(&StatusSnapshot) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.status.read().unwrap().clone();
            if cond(&s) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {s:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Fires the stop with the fault on, then measures how long the position stays open with
    /// no resting stop. Returns that time.
    async fn fire_stuck_stop(&self, back_to: rust_decimal::Decimal) -> Duration {
        self.fake.set_ws_route_silent(Route::Market, true);
        self.fake.set_trigger_never_fills(SYM, true);
        let stop = self.fake.open_algo_orders()[0].clone();
        self.fake.set_mark_price(SYM, dec!(65000));
        self.fake.set_mark_price(SYM, back_to);
        let fired = self.fake.algo_orders().into_iter().find(|a| a.algo_id == stop.algo_id).unwrap();
        assert_eq!(fired.status, "TRIGGERING", "the fault keeps the stop triggering");
        assert!(self.fake.open_orders().is_empty() && self.fake.position(SYM).is_some(), "no order was produced");
        let t0 = Instant::now();
        let protected = |f: &FakeBinance| f.position(SYM).is_none() || f.unprotected_positions().is_empty();
        self.wait("protection restored", GRACE_SECS + 10, protected).await;
        t0.elapsed()
    }

    async fn stop(self) -> Arc<FakeBinance> {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(12), self.task).await.expect("stops in time").unwrap();
        self.fake
    }
}

/// The bound: the grace, one monitor tick for the action to leave, a second of round trips.
fn bound() -> Duration {
    Duration::from_secs(GRACE_SECS + TICK_SECS + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_trigger_is_closed_at_market_within_the_grace() {
    let run = start("close").await;
    let unprotected = run.fire_stuck_stop(dec!(68000)).await;
    assert!(unprotected <= bound(), "position unprotected for {unprotected:?} (grace {GRACE_SECS} s)");
    assert!(
        unprotected >= Duration::from_millis(GRACE_SECS * 1000 - 300),
        "acted before the grace ended ({unprotected:?}): the triggered order must get its chance"
    );
    assert!(run.fake.position(SYM).is_none(), "closed at market");
    let closes: Vec<_> =
        run.fake.orders().into_iter().filter(|o| o.symbol == SYM && o.reduce_only && o.algo_id.is_none()).collect();
    assert_eq!(closes.len(), 1, "one reduce-only market close: {closes:?}");
    assert_eq!(closes[0].executed_qty, dec!(0.05));
    run.wait("the alert counted", 5, |_| run.metrics.protective_stops_failed.get() == 1).await;
    run.wait_status("the trade booked", |s| s.positions.is_empty()).await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_trigger_is_replaced_by_a_new_stop_within_the_grace() {
    let run = start("replace").await;
    let first = run.fake.open_algo_orders()[0].algo_id;
    let unprotected = run.fire_stuck_stop(dec!(68000)).await;
    assert!(unprotected <= bound(), "position unprotected for {unprotected:?} (grace {GRACE_SECS} s)");
    let resting = run.fake.open_algo_orders();
    assert_eq!(resting.len(), 1, "exactly one new resting stop: {resting:?}");
    assert_ne!(resting[0].algo_id, first);
    assert_eq!((resting[0].side.as_str(), resting[0].quantity), ("SELL", dec!(0.05)));
    assert_eq!(run.fake.position(SYM).map(|p| p.amount), Some(dec!(0.05)), "position kept");
    run.wait("the alert counted", 5, |_| run.metrics.protective_stops_failed.get() == 1).await;
    // Stays protected: the audit does not stack more stops on later ticks.
    tokio::time::sleep(Duration::from_secs(TICK_SECS * 2)).await;
    assert_eq!(run.fake.open_algo_orders().len(), 1);
    run.stop().await;
}
