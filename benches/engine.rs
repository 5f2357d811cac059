//! In-process reaction time of the daemon: from a mark-price message entering the engine's
//! event channel to the resulting order leaving for the exchange. The engine runs on the
//! paper exchange over a scripted market; a position is opened on a crafted signal and walked
//! into the trailing stage, then every iteration pushes a new best price, which makes the exit
//! ladder move the trailing stop — the same path (event → ladder → exchange call) a take-profit
//! close takes. Also the pure ladder step for one price (`PositionManager::on_price`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "common/probe.rs"]
mod probe;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use common::{CraftedMarket, ScriptedMarket, now_ms};
use criterion::{Criterion, criterion_group, criterion_main};
use kinetic::api::{Metrics, StatusSnapshot};
use kinetic::config::{ConfigSources, load};
use kinetic::core::models::{Direction, Timeframe};
use kinetic::exchange::paper::PaperExchange;
use kinetic::exchange::{ExchangeEvent, MarketOrderRequest, StopRequest};
use kinetic::store::Journal;
use kinetic::tasks::{Engine, EngineHandles};
use probe::{Hooks, Probe};
use rust_decimal::Decimal;
use rust_decimal::prelude::*;
use tokio_util::sync::CancellationToken;

/// Reports the instant each order call starts.
struct SentAt {
    sent: Mutex<Option<std::sync::mpsc::Sender<Instant>>>,
}

impl SentAt {
    fn mark_sent(&self) {
        if let Some(tx) = self.sent.lock().unwrap().as_ref() {
            let _ = tx.send(Instant::now());
        }
    }
}

impl Hooks for SentAt {
    fn market(&self, _req: &MarketOrderRequest) -> bool {
        self.mark_sent();
        false
    }
    fn stop_placed(&self, _req: &StopRequest) {
        self.mark_sent();
    }
}

fn wait(status: &RwLock<StatusSnapshot>, cond: impl Fn(&StatusSnapshot) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond(&status.read().unwrap()) {
        assert!(Instant::now() < deadline, "bench set-up timed out");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn reaction(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut env = HashMap::new();
    env.insert("KINETIC__SCANNER__INTERVAL_SECS".to_string(), "3600".to_string());
    env.insert("KINETIC__MONITOR__INTERVAL_SECS".to_string(), "60".to_string());
    let settings = load(&ConfigSources { file: None, env }).unwrap();
    let m = CraftedMarket::new("BENCHUSDT", Direction::Long, 100.0, 0.2, now_ms());
    let market = Arc::new(ScriptedMarket::new(&[&m]));
    let probe = Arc::new(Probe {
        inner: PaperExchange::new(Arc::clone(&market), &settings.paper),
        hooks: SentAt { sent: Mutex::new(None) },
    });
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&dir.path().join("bench.db")).unwrap();
    let status = Arc::new(RwLock::new(StatusSnapshot::default()));
    let handles = EngineHandles::new(Arc::clone(&status), Metrics::default());
    let engine = Engine::new(Arc::clone(&probe), settings, journal, handles, true).unwrap();
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    rt.spawn(async move { engine.run(c2, false).await });

    // Enter on the crafted signal and walk into the trailing stage.
    wait(&status, |s| s.last_scan.as_ref().is_some_and(|l| l.lists("BENCHUSDT")));
    rt.block_on(market.push_mark("BENCHUSDT", Decimal::from(100)));
    std::thread::sleep(Duration::from_millis(100));
    rt.block_on(market.push(ExchangeEvent::Kline {
        symbol: "BENCHUSDT".into(),
        timeframe: Timeframe::M15,
        candle: m.next_15m,
        closed: true,
    }));
    wait(&status, |s| s.positions.len() == 1);
    for px in [101.6, 102.6, 103.1] {
        rt.block_on(market.push_mark("BENCHUSDT", Decimal::from_f64(px).unwrap()));
        std::thread::sleep(Duration::from_millis(100));
    }
    let (tx, rx) = std::sync::mpsc::channel::<Instant>();
    *probe.hooks.sent.lock().unwrap() = Some(tx);
    let mut price = Decimal::from_f64(103.2).unwrap();
    let tick = Decimal::new(5, 2);
    c.bench_function("engine: mark price message -> order call (trailing stop move)", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                price += tick;
                let start = Instant::now();
                rt.block_on(market.push_mark("BENCHUSDT", price));
                let sent = rx.recv_timeout(Duration::from_secs(5)).expect("the stop move leaves");
                total += sent.duration_since(start);
                // Let the cancel of the replaced stop finish before the next price.
                while rx.recv_timeout(Duration::from_millis(2)).is_ok() {}
            }
            total
        });
    });
    cancel.cancel();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    targets = reaction
}
criterion_main!(benches);
