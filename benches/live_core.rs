//! In-process latency of the live core for one symbol while another symbol's request hangs:
//! from a mark-price message for symbol A entering the daemon to the resulting stop-move call
//! on the exchange, while symbol B's take-profit close (`place_market`) never returns.
//!
//! The engine runs on the paper exchange over a scripted market, behind a `Probe` that records
//! when A's `place_stop` is called. Both symbols are entered on crafted signals; A is walked
//! into the trailing stage; B's mark is pushed to its first take-profit, whose close hangs
//! forever in the probe (B keeps a request in flight for the whole measurement). Every
//! iteration then pushes a new best mark for A, which moves A's trailing stop: the time from
//! the push to the `place_stop` call is one sample. Besides criterion's estimate, the bench
//! prints p50/p99 over every sample it took, warm-up included (target: p99 under 1 ms).
//!
//! On the engine before the live core was split into tasks (commit 1d563ed) one engine task
//! awaited every REST call, so this path was blocked for as long as B's request hung.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "common/probe.rs"]
mod probe;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use common::{CraftedMarket, ScriptedMarket, now_ms};
use criterion::{Criterion, criterion_group, criterion_main};
use kinetic::api::{Metrics, PositionStatus, StatusSnapshot};
use kinetic::config::{ConfigSources, load};
use kinetic::core::models::{Direction, LadderStage, Timeframe};
use kinetic::exchange::paper::PaperExchange;
use kinetic::exchange::{ExchangeEvent, MarketOrderRequest, StopRequest};
use kinetic::store::Journal;
use kinetic::tasks::{Engine, EngineHandles};
use probe::{Hooks, Probe};
use rust_decimal::Decimal;
use rust_decimal::prelude::*;
use tokio_util::sync::CancellationToken;

const A: &str = "BENCHAUSDT";
const B: &str = "BENCHBUSDT";

/// What the probe saw for symbol A.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Seen {
    /// `place_stop` was called (the stop move left).
    StopPlaced(Instant),
    /// `cancel_stop` returned (the replaced stop is gone; A is idle again once its outcome is in).
    CancelDone,
}

/// Reports A's stop calls; once `hang` is set, B's market orders never return.
struct HangB {
    seen: Mutex<Option<std::sync::mpsc::Sender<Seen>>>,
    hang: AtomicBool,
    hung: AtomicU64,
}

impl HangB {
    fn report(&self, symbol: &str, s: Seen) {
        if symbol == A
            && let Some(tx) = self.seen.lock().unwrap().as_ref()
        {
            let _ = tx.send(s);
        }
    }
}

impl Hooks for HangB {
    fn market(&self, req: &MarketOrderRequest) -> bool {
        let hang = req.symbol == B && self.hang.load(Ordering::SeqCst);
        if hang {
            self.hung.fetch_add(1, Ordering::SeqCst);
        }
        hang
    }
    fn stop_placed(&self, req: &StopRequest) {
        self.report(&req.symbol, Seen::StopPlaced(Instant::now()));
    }
    fn stop_cancelled(&self, symbol: &str) {
        self.report(symbol, Seen::CancelDone);
    }
}

fn wait(what: &str, status: &RwLock<StatusSnapshot>, cond: impl Fn(&StatusSnapshot) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond(&status.read().unwrap()) {
        assert!(Instant::now() < deadline, "bench set-up timed out: {what}\n{:#?}", status.read().unwrap());
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn position<'a>(s: &'a StatusSnapshot, symbol: &str) -> Option<&'a PositionStatus> {
    s.positions.iter().find(|p| p.symbol == symbol)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn reaction_while_another_symbol_hangs(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut env = HashMap::new();
    env.insert("KINETIC__SCANNER__INTERVAL_SECS".to_string(), "3600".to_string());
    env.insert("KINETIC__MONITOR__INTERVAL_SECS".to_string(), "60".to_string());
    env.insert("KINETIC__RISK__MAX_TOTAL_EXPOSURE_PCT".to_string(), "300".to_string());
    let settings = load(&ConfigSources { file: None, env }).unwrap();
    let now = now_ms();
    let ma = CraftedMarket::new(A, Direction::Long, 100.0, 0.2, now);
    let mb = CraftedMarket::new(B, Direction::Long, 100.0, 0.2, now);
    let market = Arc::new(ScriptedMarket::new(&[&ma, &mb]));
    let probe = Arc::new(Probe {
        inner: PaperExchange::new(Arc::clone(&market), &settings.paper),
        hooks: HangB { seen: Mutex::new(None), hang: AtomicBool::new(false), hung: AtomicU64::new(0) },
    });
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&dir.path().join("bench.db")).unwrap();
    let status = Arc::new(RwLock::new(StatusSnapshot::default()));
    let handles = EngineHandles::new(Arc::clone(&status), Metrics::default());
    let engine = Engine::new(Arc::clone(&probe), settings, journal, handles, true).unwrap();
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    rt.spawn(async move { engine.run(c2, false).await });

    // Enter both symbols on their crafted signals.
    wait("both candidates", &status, |s| s.last_scan.as_ref().is_some_and(|l| l.lists(A) && l.lists(B)));
    for m in [&ma, &mb] {
        rt.block_on(market.push_mark(&m.symbol, Decimal::from(100)));
    }
    std::thread::sleep(Duration::from_millis(100));
    for m in [&ma, &mb] {
        rt.block_on(market.push(ExchangeEvent::Kline {
            symbol: m.symbol.clone(),
            timeframe: Timeframe::M15,
            candle: m.next_15m,
            closed: true,
        }));
    }
    wait("both entered and protected", &status, |s| {
        s.positions.len() == 2 && s.positions.iter().all(|p| p.stop_on_exchange)
    });
    // A into the trailing stage (TP1, TP2, trail start).
    for px in [101.6, 102.6, 103.1] {
        rt.block_on(market.push_mark(A, Decimal::from_f64(px).unwrap()));
        std::thread::sleep(Duration::from_millis(100));
    }
    wait("A trailing", &status, |s| position(s, A).is_some_and(|p| p.stage == LadderStage::Trailing));
    // B's first take-profit close hangs forever.
    probe.hooks.hang.store(true, Ordering::SeqCst);
    rt.block_on(market.push_mark(B, Decimal::from_f64(101.6).unwrap()));
    // (The status snapshot may lag here: it is published at most every 250 ms unless forced.)
    wait("B's close in flight", &status, |_| probe.hooks.hung.load(Ordering::SeqCst) == 1);

    let (tx, rx) = std::sync::mpsc::channel::<Seen>();
    *probe.hooks.seen.lock().unwrap() = Some(tx);
    let mut price = Decimal::from_f64(103.2).unwrap();
    let tick = Decimal::new(5, 2);
    let samples = Mutex::new(Vec::<Duration>::new());
    c.bench_function("live core: mark -> stop move of A while B's close hangs", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                price += tick;
                let start = Instant::now();
                rt.block_on(market.push_mark(A, price));
                let sent = loop {
                    match rx.recv_timeout(Duration::from_secs(5)).expect("A's stop move leaves") {
                        Seen::StopPlaced(t) => break t,
                        Seen::CancelDone => {}
                    }
                };
                let d = sent.duration_since(start);
                total += d;
                samples.lock().unwrap().push(d);
                // The replaced stop is cancelled before the next price (A idle again).
                loop {
                    if rx.recv_timeout(Duration::from_secs(5)).expect("the old stop is cancelled") == Seen::CancelDone {
                        break;
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            total
        });
    });
    // B's close was in flight the whole time: it never returned.
    assert_eq!(probe.hooks.hung.load(Ordering::SeqCst), 1);
    assert!(position(&status.read().unwrap(), B).is_some_and(|p| p.order_in_flight));
    let mut all = samples.into_inner().unwrap();
    all.sort();
    println!(
        "live core, A's stop move while B's close hangs: {} samples, p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        all.len(),
        percentile(&all, 0.50).as_secs_f64() * 1e6,
        percentile(&all, 0.99).as_secs_f64() * 1e6,
        all.last().unwrap().as_secs_f64() * 1e6,
    );
    cancel.cancel();
    // The hung request never finishes: drop the runtime without waiting for the shutdown grace.
    rt.shutdown_timeout(Duration::from_millis(100));
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    targets = reaction_while_another_symbol_hangs
}
criterion_main!(benches);
