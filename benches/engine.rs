//! In-process reaction time of the daemon: from a mark-price message entering the engine's
//! event channel to the resulting order leaving for the exchange. The engine runs on the
//! paper exchange over a scripted market; a position is opened on a crafted signal and walked
//! into the trailing stage, then every iteration pushes a new best price, which makes the exit
//! ladder move the trailing stop — the same path (event → ladder → exchange call) a take-profit
//! close takes. Also the pure ladder step for one price (`PositionManager::on_price`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use common::{CraftedMarket, ScriptedMarket, now_ms};
use criterion::{Criterion, criterion_group, criterion_main};
use kinetic::api::{Metrics, StatusSnapshot};
use kinetic::config::{ConfigSources, load};
use kinetic::core::models::{Candle, Direction, Ticker, Timeframe, TimestampMs};
use kinetic::exchange::paper::PaperExchange;
use kinetic::exchange::{
    AccountBalance, EventSinks, ExResult, Exchange, ExchangeEvent, ExchangePosition, ExchangeStats, MarginType,
    MarketOrderRequest, OrderReport, StopOrder, StopRequest, StreamControl, SymbolInfo,
};
use kinetic::store::Journal;
use kinetic::tasks::{Engine, EngineHandles};
use rust_decimal::Decimal;
use rust_decimal::prelude::*;
use tokio_util::sync::CancellationToken;

/// Delegates to the paper exchange and reports the instant each order call starts.
struct Probe {
    inner: PaperExchange<ScriptedMarket>,
    sent: Mutex<Option<std::sync::mpsc::Sender<Instant>>>,
}

impl Probe {
    fn mark_sent(&self) {
        if let Some(tx) = self.sent.lock().unwrap().as_ref() {
            let _ = tx.send(Instant::now());
        }
    }
}

impl Exchange for Probe {
    fn is_paper(&self) -> bool {
        true
    }
    async fn symbols(&self) -> ExResult<Vec<SymbolInfo>> {
        self.inner.symbols().await
    }
    async fn tickers(&self) -> ExResult<Vec<Ticker>> {
        self.inner.tickers().await
    }
    async fn klines(
        &self,
        s: &str,
        tf: Timeframe,
        a: Option<TimestampMs>,
        b: Option<TimestampMs>,
        l: u16,
    ) -> ExResult<Vec<Candle>> {
        self.inner.klines(s, tf, a, b, l).await
    }
    async fn locked_symbols(&self) -> ExResult<BTreeSet<String>> {
        self.inner.locked_symbols().await
    }
    async fn hedge_mode(&self) -> ExResult<bool> {
        self.inner.hedge_mode().await
    }
    async fn balance(&self) -> ExResult<AccountBalance> {
        self.inner.balance().await
    }
    async fn positions(&self) -> ExResult<Vec<ExchangePosition>> {
        self.inner.positions().await
    }
    async fn open_orders(&self) -> ExResult<Vec<OrderReport>> {
        self.inner.open_orders().await
    }
    async fn open_stops(&self) -> ExResult<Vec<StopOrder>> {
        self.inner.open_stops().await
    }
    async fn prepare_symbol(&self, s: &str, m: MarginType, l: u32) -> ExResult<()> {
        self.inner.prepare_symbol(s, m, l).await
    }
    async fn place_market(&self, r: &MarketOrderRequest) -> ExResult<OrderReport> {
        self.mark_sent();
        self.inner.place_market(r).await
    }
    async fn query_order(&self, s: &str, c: &str) -> ExResult<Option<OrderReport>> {
        self.inner.query_order(s, c).await
    }
    async fn place_stop(&self, r: &StopRequest) -> ExResult<StopOrder> {
        self.mark_sent();
        self.inner.place_stop(r).await
    }
    async fn cancel_stop(&self, s: &str, id: i64) -> ExResult<()> {
        self.inner.cancel_stop(s, id).await
    }
    async fn cancel_all(&self, s: &str) -> ExResult<()> {
        self.inner.cancel_all(s).await
    }
    async fn start_streams(&self, e: EventSinks, c: CancellationToken) -> ExResult<StreamControl> {
        self.inner.start_streams(e, c).await
    }
    fn stats(&self) -> ExchangeStats {
        self.inner.stats()
    }
    fn now_ms(&self) -> TimestampMs {
        self.inner.now_ms()
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
    let probe =
        Arc::new(Probe { inner: PaperExchange::new(Arc::clone(&market), &settings.paper), sent: Mutex::new(None) });
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
    *probe.sent.lock().unwrap() = Some(tx);
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
