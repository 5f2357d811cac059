//! Chaos run (issue 7): the live engine trades a crafted market of six symbols against the
//! fake Binance server while the server injects, at random with a fixed seed, WebSocket drops
//! every few seconds, 10 % 5xx on REST (a third of them after executing), timeouts, 429s,
//! -1021s, 2 s latency spikes, one -2019 and a listenKey expiry. A sampler checks the exchange
//! every 200 ms. Afterwards: no duplicate orders (by client id and by intent), no position was
//! without a resting stop longer than a monitor tick plus the slowest injected request, the journal agrees with the
//! exchange's positions and executed orders, nothing panicked, and `/health` recovered.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;
#[path = "common/daemon.rs"]
mod daemon;
mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use common::{CraftedMarket, now_ms};
use daemon::credentials;
use kinetic::api::{Metrics, StatusSnapshot, health};
use kinetic::config::{ConfigSources, load};
use kinetic::core::models::{Direction, Timeframe};
use kinetic::exchange::binance::BinanceClient;
use kinetic::store::Journal;
use kinetic::tasks::{Engine, EngineHandles};
use rust_decimal::Decimal;
use rust_decimal::prelude::*;
use rust_decimal_macros::dec;
use support::fake_binance::{Chaos, FakeBinance, FakeConfig, SymbolSpec};
use tokio_util::sync::CancellationToken;

const SYMBOLS: [&str; 6] = ["CHAAUSDT", "CHABUSDT", "CHACUSDT", "CHADUSDT", "CHAEUSDT", "CHAFUSDT"];

/// The price path of one symbol, as percent moves from its entry, one step per second.
fn path(i: usize) -> Vec<f64> {
    match i % 3 {
        // Full ladder: TP1, TP2, trailing, then back through the trailing stop.
        0 => vec![0.5, 1.6, 2.0, 2.6, 3.1, 4.0, 5.0, 4.5, 3.5, 2.0, 1.0],
        // Straight to the stop.
        1 => vec![-0.1, -0.2, -0.3, -0.6, -1.0, -2.0, -3.5, -4.0],
        // TP1, then back down through the stop.
        _ => vec![0.8, 1.7, 1.0, 0.0, -1.0, -2.5, -3.5, -4.0],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_run_loses_nothing() {
    // RUST_LOG=kinetic=info shows the engine's decisions while debugging.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "off".into()))
        .with_test_writer()
        .try_init();
    let now = now_ms();
    let mut cfg = FakeConfig::default();
    let markets: Vec<CraftedMarket> = SYMBOLS
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let dir = if i % 2 == 0 { Direction::Long } else { Direction::Short };
            CraftedMarket::new(s, dir, 100.0, 0.2, now)
        })
        .collect();
    for m in &markets {
        cfg.symbols.push(SymbolSpec::new(&m.symbol, dec!(100), dec!(0.01), dec!(0.001), dec!(5)));
    }
    let fake = Arc::new(FakeBinance::start(cfg).await);
    for m in &markets {
        for (tf, candles) in &m.history {
            fake.set_klines(&m.symbol, tf.as_str(), candles.clone());
        }
        let change = if m.direction == Direction::Long { dec!(2.5) } else { dec!(-2.5) };
        fake.set_ticker_stats(&m.symbol, Decimal::from(100_000_000), change);
        fake.set_price(&m.symbol, dec!(100));
    }

    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("KINETIC__EXCHANGE__REST_URL".into(), fake.rest_url());
    env.insert("KINETIC__EXCHANGE__WS_URL".into(), fake.ws_url());
    env.insert("KINETIC__EXCHANGE__STREAM_STALE_SECS".into(), "5".into());
    env.insert("KINETIC__SCANNER__INTERVAL_SECS".into(), "3600".into());
    env.insert("KINETIC__MONITOR__INTERVAL_SECS".into(), "1".into());
    env.insert("KINETIC__RISK__MAX_OPEN_POSITIONS".into(), "6".into());
    env.insert("KINETIC__RISK__MAX_TOTAL_EXPOSURE_PCT".into(), "200".into());
    let settings = load(&ConfigSources { file: None, env }).unwrap();
    let client = BinanceClient::new(&settings.exchange, Some(credentials())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let journal_path = dir.path().join("chaos.db");
    let status = Arc::new(RwLock::new(StatusSnapshot::default()));
    let handles = EngineHandles::new(Arc::clone(&status), Metrics::default());
    let liveness = Arc::clone(&handles.liveness);
    let engine =
        Engine::new(Arc::new(client), settings, Journal::open(&journal_path).unwrap(), handles, false).unwrap();
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let task = tokio::spawn(async move { engine.run(c, false).await });

    // Wait for the first scan, then turn the chaos on.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !status.read().unwrap().last_scan.as_ref().is_some_and(|l| l.lists("CHAAUSDT")) {
        assert!(Instant::now() < deadline, "no scan: {:#?}", status.read().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fake.set_chaos(Some(Chaos::issue7(1500)), 7);
    fake.set_ws_drop_interval(Some(Duration::from_secs(4)));
    fake.insufficient_margin_once();

    // Sampler (every 200 ms, on the exchange's state): a position must have a resting stop
    // from one monitor tick after its entry on. The stop request leaves right after the fill;
    // under chaos that request itself may meet a 2 s latency spike and 5xx answers, retried
    // after 250 ms / 500 ms / 1 s (protective stops retry four times sooner than other calls;
    // with the common 1 s / 2 s / 4 s, three 5xx in a row once left a position bare for 7.8 s).
    // The bound: a tick (1 s) + the slowest injected request (2 s) + three retries (1.75 s),
    // rounded up for a loaded machine. The longest time to protection observed is reported.
    const PROTECT_WITHIN: Duration = Duration::from_secs(6);
    let stop_sampler = Arc::new(AtomicBool::new(false));
    let unprotected = Arc::new(AtomicU64::new(0));
    let samples = Arc::new(AtomicU64::new(0));
    let slowest_ms = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (fake, stop, unprotected, samples, slowest_ms) = (
            Arc::clone(&fake),
            Arc::clone(&stop_sampler),
            Arc::clone(&unprotected),
            Arc::clone(&samples),
            Arc::clone(&slowest_ms),
        );
        tokio::spawn(async move {
            let mut first_seen: BTreeMap<String, Instant> = BTreeMap::new();
            let mut protected: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
            while !stop.load(Ordering::SeqCst) {
                let held: Vec<String> = fake.positions().iter().map(|p| p.symbol.clone()).collect();
                first_seen.retain(|s, _| held.contains(s));
                protected.retain(|s| held.contains(s));
                for s in &held {
                    first_seen.entry(s.clone()).or_insert_with(Instant::now);
                }
                let bare = fake.unprotected_positions();
                for s in &held {
                    if !bare.contains(s) && protected.insert(s.clone()) {
                        let ms = first_seen.get(s).map(|t| t.elapsed().as_millis() as u64).unwrap_or(0);
                        slowest_ms.fetch_max(ms, Ordering::SeqCst);
                    }
                }
                for s in bare {
                    if first_seen.get(&s).is_some_and(|t| t.elapsed() > PROTECT_WITHIN) {
                        unprotected.fetch_add(1, Ordering::SeqCst);
                        eprintln!("UNPROTECTED {s}");
                    }
                }
                samples.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };

    // Drive the market: one symbol's signal every 3 s, then its price path.
    let mut entries: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut steps: BTreeMap<String, usize> = BTreeMap::new();
    let started = Instant::now();
    let mut expired = false;
    while started.elapsed() < Duration::from_secs(45) {
        let t = started.elapsed().as_secs() as usize;
        if let Some(m) = markets.get(t / 3)
            && !steps.contains_key(&m.symbol)
        {
            fake.push_kline(&m.symbol, Timeframe::M15.as_str(), m.next_15m, true);
            steps.insert(m.symbol.clone(), 0);
        }
        if !expired && t >= 20 {
            fake.expire_listen_key();
            expired = true;
        }
        for (i, m) in markets.iter().enumerate() {
            if let Some(p) = fake.position(&m.symbol) {
                entries.entry(m.symbol.clone()).or_insert(p.entry_price);
            }
            let (Some(entry), Some(step)) = (entries.get(&m.symbol).copied(), steps.get_mut(&m.symbol)) else {
                continue;
            };
            let moves = path(i);
            if let Some(pct) = moves.get(*step) {
                let sign = if m.direction == Direction::Long { 1.0 } else { -1.0 };
                let px = entry.to_f64().unwrap() * (1.0 + sign * pct / 100.0);
                fake.set_price(&m.symbol, Decimal::from_f64(px).unwrap().round_dp(2));
                *step += 1;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // Calm down and let the engine reconcile.
    fake.clear_faults();
    fake.set_ws_drop_interval(None);
    let faults = fake.injected_faults();
    tokio::time::sleep(Duration::from_secs(15)).await;
    stop_sampler.store(true, Ordering::SeqCst);
    sampler.await.unwrap();

    let snapshot = status.read().unwrap().clone();
    let healthy = health(&snapshot, &liveness);
    cancel.cancel();
    let result = tokio::time::timeout(Duration::from_secs(10), task).await.expect("stops within 10 s").unwrap();
    assert!(result.is_ok(), "engine error: {result:?}");
    let journal = Journal::open(&journal_path).unwrap();

    // Duplicates: no client id twice; at most one filled entry per symbol (one intent).
    let orders = fake.orders();
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    for o in orders.iter().filter(|o| o.orig_type == o.order_type) {
        *ids.entry(o.client_order_id.clone()).or_default() += 1;
    }
    for a in fake.algo_orders() {
        *ids.entry(a.client_algo_id.clone()).or_default() += 1;
    }
    let dup_ids: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
    let mut entries_per_symbol: BTreeMap<String, usize> = BTreeMap::new();
    for o in orders.iter().filter(|o| o.client_order_id.starts_with("ke-e-") && o.executed_qty > Decimal::ZERO) {
        *entries_per_symbol.entry(o.symbol.clone()).or_default() += 1;
    }
    let dup_entries: Vec<_> = entries_per_symbol.iter().filter(|(_, n)| **n > 1).collect();

    // Journal vs exchange: open positions and executed quantities of our orders.
    let mut mismatches = Vec::new();
    let journal_open: BTreeMap<String, Decimal> =
        journal.open_positions().unwrap().into_iter().map(|j| (j.position.symbol.clone(), j.position.qty)).collect();
    let fake_open: BTreeMap<String, Decimal> =
        fake.positions().into_iter().map(|p| (p.symbol.clone(), p.amount.abs())).collect();
    if journal_open != fake_open {
        mismatches.push(format!("positions: journal {journal_open:?} vs exchange {fake_open:?}"));
    }
    for o in orders.iter().filter(|o| o.client_order_id.starts_with("ke-")) {
        match journal.order(&o.client_order_id).unwrap() {
            Some(j) if j.filled_qty == o.executed_qty => {}
            Some(j) => mismatches.push(format!(
                "{}: journal {} vs exchange {} ({} {:?} {:?}, exchange {} {})",
                o.client_order_id,
                j.filled_qty,
                o.executed_qty,
                j.symbol,
                j.status,
                j.order_type,
                o.status,
                o.order_type
            )),
            None if o.executed_qty.is_zero() => {}
            None => mismatches.push(format!("{} missing from the journal", o.client_order_id)),
        }
    }

    let algo_sent = fake.algo_orders().len();
    println!("chaos: faults injected {faults:?}");
    println!(
        "chaos: orders sent {} (market {}, stops {algo_sent}), samples {}, slowest protection {} ms, unprotected {}, duplicate ids {}, duplicate entries {}, journal mismatches {}, entries {:?}",
        orders.len() + algo_sent,
        orders.len(),
        samples.load(Ordering::SeqCst),
        slowest_ms.load(Ordering::SeqCst),
        unprotected.load(Ordering::SeqCst),
        dup_ids.len(),
        dup_entries.len(),
        mismatches.len(),
        entries_per_symbol,
    );
    for m in &mismatches {
        println!("chaos: mismatch {m}");
    }
    assert!(faults.values().sum::<u64>() > 10, "chaos must actually inject faults: {faults:?}");
    assert!(entries_per_symbol.len() >= 5, "the engine must keep trading under chaos: {entries_per_symbol:?}");
    assert!(dup_ids.is_empty(), "duplicate client ids: {dup_ids:?}");
    assert!(dup_entries.is_empty(), "duplicate entries: {dup_entries:?}");
    assert_eq!(unprotected.load(Ordering::SeqCst), 0, "a position went unprotected");
    assert!(mismatches.is_empty(), "journal mismatches: {mismatches:#?}");
    assert_eq!(fake.panicked_requests(), 0);
    assert!(healthy.is_ok(), "/health did not recover: {healthy:?}");
}
