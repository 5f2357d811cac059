//! A signal that reaches the position manager while a stream is down is held for the
//! streams to come back (at most a minute of exchange time), not lost for the whole candle.
//! The analyzer only sends while the streams are live, but a stream can drop (or register as
//! connecting at start) between its check and the manager's: the chaos run lost every
//! start-up signal that way under load. The manager task runs here for real, on the paper
//! exchange, with a hub whose stream health the test sets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use common::{CraftedMarket, ScriptedMarket, now_ms};
use kinetic::analyzer::SymbolAnalyzer;
use kinetic::api::{Metrics, StatusSnapshot};
use kinetic::config::{ConfigSources, load};
use kinetic::core::data_hub::{DataHub, MarkPrice, StreamState};
use kinetic::core::liveness::Liveness;
use kinetic::core::models::{Direction, Timeframe};
use kinetic::exchange::paper::PaperExchange;
use kinetic::exchange::{AccountBalance, Exchange, SymbolInfo};
use kinetic::manager::position_manager::Analysis;
use kinetic::manager::trading_core::TradingCore;
use kinetic::store::Journal;
use kinetic::tasks::position_manager::{ManagerInputs, ManagerTask, SIGNAL_HOLD_MS};
use rust_decimal::Decimal;
use rust_decimal::prelude::*;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// Runs the manager; sends one signal while the user stream is down; `outage_ms` of exchange
/// time later the stream is back. Returns the paper exchange's positions after that.
async fn signal_during_an_outage(outage_ms: i64) -> usize {
    let symbol = "HOLDUSDT";
    let t0 = now_ms();
    let m = CraftedMarket::new(symbol, Direction::Long, 100.0, 0.2, t0);
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("KINETIC__MONITOR__INTERVAL_SECS".into(), "1".into());
    let settings = load(&ConfigSources { file: None, env }).unwrap();

    let market = Arc::new(ScriptedMarket::new(&[&m]));
    market.clock.store(t0, Ordering::SeqCst);
    let paper = Arc::new(PaperExchange::new(Arc::clone(&market), &settings.paper));
    let infos = paper.symbols().await.unwrap();
    let price = Decimal::from_f64(m.end_price).unwrap().round_dp(2);
    paper.set_mark_price(symbol, price, t0).await;

    let mut core = TradingCore::new(&settings, t0, Decimal::from(10_000)).unwrap();
    core.set_symbols(infos.into_iter().map(|i: SymbolInfo| SymbolInfo { max_leverage: 125, ..i }).collect());
    let b = paper.balance().await.unwrap();
    core.set_balance(&AccountBalance { ..b }, t0);

    // The hub: a live market stream with the symbol's mark, the user stream down.
    let hub = DataHub::default().shared();
    {
        let mut h = hub.write().unwrap();
        h.stream_message("market", t0);
        h.mark_prices.insert(
            symbol.into(),
            MarkPrice { price, funding_rate: Decimal::ZERO, next_funding_time: t0 + 3_600_000, time: t0 },
        );
        h.set_stream_state("user", StreamState::Connecting, false);
    }
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(&dir.path().join("j.db")).unwrap();
    let (held_tx, _held_rx) = watch::channel(BTreeSet::new());
    let manager = ManagerTask::new(
        Arc::clone(&paper),
        core,
        journal,
        settings.clone(),
        Arc::clone(&hub),
        Arc::new(RwLock::new(StatusSnapshot::default())),
        Metrics::default(),
        Arc::new(Liveness::default()),
        held_tx,
        true,
    );
    let (_account_tx, account) = mpsc::channel(8);
    let (signal_tx, signals) = mpsc::channel(8);
    let (marks_tx, marks) = watch::channel(0u64);
    let (_scan_tx, scan) = watch::channel(Default::default());
    let (_control_tx, control) = mpsc::channel(8);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(manager.run(ManagerInputs { account, signals, marks, scan, control }, cancel.clone()));

    // The analysis of the crafted market's closed 15m candle: a long signal.
    let mut a = SymbolAnalyzer::new();
    for tf in [Timeframe::H4, Timeframe::H1, Timeframe::M15] {
        for c in &m.history[&tf] {
            a.on_closed_candle(tf, c);
        }
    }
    a.on_closed_candle(Timeframe::M15, &m.next_15m);
    let analysis = Analysis::of(symbol, &a, &settings.strategy).unwrap();
    assert!(analysis.score.total >= 60, "the crafted market signals: {:?}", analysis.score);
    signal_tx.send(analysis).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(paper.positions().await.unwrap().is_empty(), "no entry while a stream is down");

    // The stream comes back `outage_ms` later; the next mark wakes the manager.
    let back = t0 + outage_ms;
    market.clock.store(back, Ordering::SeqCst);
    paper.set_mark_price(symbol, price, back).await;
    {
        let mut h = hub.write().unwrap();
        h.stream_message("user", back);
        h.stream_message("market", back);
        if let Some(mp) = h.mark_prices.get_mut(symbol) {
            mp.time = back;
        }
    }
    marks_tx.send(1).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut held = 0;
    while tokio::time::Instant::now() < deadline {
        held = paper.positions().await.unwrap().len();
        if held > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_during_a_short_outage_is_taken_when_the_streams_are_back() {
    assert_eq!(signal_during_an_outage(5_000).await, 1, "the held signal entered once the streams were live");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_held_longer_than_a_minute_is_dropped() {
    assert_eq!(signal_during_an_outage(SIGNAL_HOLD_MS + 1_000).await, 0, "a stale signal is not traded");
}
