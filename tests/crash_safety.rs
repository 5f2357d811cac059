//! Crash safety (issue 7): the real binary is `kill -9`ed at chosen points of the order flow —
//! before the entry is sent, with the entry request on the wire (not yet executed), after the
//! entry executed but before the reply (so before the journal saw the fill), with the position
//! filled but its protective stop request on the wire, and with a take-profit close executed
//! but unanswered — over several runs on one fake exchange and one journal. After every
//! restart the daemon must reconcile to the exchange's truth: every position protected by a
//! resting stop, no orphan stop, the daemon's positions equal to the exchange's, and no client
//! order id ever used twice.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;
#[path = "common/daemon.rs"]
mod daemon;
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{CraftedMarket, now_ms};
use daemon::{Daemon, install, spawn_with, streams_live};
use kinetic::core::models::Direction;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use support::fake_binance::{FakeBinance, FakeConfig, FaultAction, FaultScope, SymbolSpec};

#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// A random moment right after the signal's candle arrives (often before the send).
    BeforeSend,
    /// The entry request reached the exchange but is not executed yet (executes after death).
    EntryInFlight,
    /// The entry executed; the reply never reached the daemon (the journal has no fill).
    EntryFilledUnanswered,
    /// The entry filled and was journaled; the protective stop request is on the wire.
    StopInFlight,
    /// A take-profit close executed; the reply never arrived.
    TakeProfitUnanswered,
}

fn settle(fake: &FakeBinance, d: &Daemon, what: &str) {
    // The daemon's view equals the exchange's, every position has a stop, no stop is orphaned.
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let s = d.status();
        let fake_pos: BTreeMap<String, Decimal> =
            fake.positions().into_iter().map(|p| (p.symbol.clone(), p.amount.abs())).collect();
        let ours: Option<BTreeMap<String, Decimal>> = s.as_ref().and_then(|s| {
            s["positions"].as_array().map(|a| {
                a.iter()
                    .map(|p| (p["symbol"].as_str().unwrap().to_string(), p["qty"].as_str().unwrap().parse().unwrap()))
                    .collect()
            })
        });
        let orphans: Vec<String> = fake
            .open_algo_orders()
            .into_iter()
            .filter(|a| !fake_pos.contains_key(&a.symbol))
            .map(|a| a.symbol)
            .collect();
        let per_symbol_stops = fake.open_algo_orders().len();
        let ticked = s.as_ref().is_some_and(|s| s["last_monitor_tick"].is_number());
        if ticked
            && ours.as_ref() == Some(&fake_pos)
            && fake.unprotected_positions().is_empty()
            && orphans.is_empty()
            && per_symbol_stops == fake_pos.len()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not reconciled: ours {ours:?} exchange {fake_pos:?} unprotected {:?} orphans {orphans:?} stops {:?}\nlog:\n{}",
            fake.unprotected_positions(),
            fake.open_algo_orders(),
            std::fs::read_to_string(&d.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_logged(d: &Daemon, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{}",
            std::fs::read_to_string(&d.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn no_duplicate_ids(fake: &FakeBinance) -> usize {
    let mut ids: Vec<String> =
        fake.orders().iter().filter(|o| o.orig_type == o.order_type).map(|o| o.client_order_id.clone()).collect();
    ids.extend(fake.algo_orders().iter().map(|a| a.client_algo_id.clone()));
    let n = ids.len();
    ids.sort();
    ids.dedup();
    n - ids.len()
}

/// Installs `m` on the fake, then kills and restarts the daemon: the scanner scans at start
/// and at 15m closes, so the restart's first scan is what lists the new market (installing it
/// into a running daemon would wait for the next 15m close, or race its start scan).
fn install_and_restart(fake: &FakeBinance, m: &CraftedMarket, d: Daemon, dir: &Path, env: &[(&str, &str)]) -> Daemon {
    install(fake, m);
    d.kill9();
    let d = spawn_with(fake, dir, "crash", false, env);
    d.wait_status("live streams", streams_live);
    d
}

#[test]
fn kill_nine_anywhere_in_the_order_flow_then_restart_reconciles() {
    let points = [
        KillPoint::EntryInFlight,
        KillPoint::EntryFilledUnanswered,
        KillPoint::StopInFlight,
        KillPoint::TakeProfitUnanswered,
        KillPoint::BeforeSend,
        KillPoint::StopInFlight,
    ];
    let now = now_ms();
    let mut cfg = FakeConfig::default();
    let markets: Vec<CraftedMarket> = (0..points.len())
        .map(|i| {
            let dir = if i % 2 == 0 { Direction::Long } else { Direction::Short };
            CraftedMarket::new(&format!("CRS{i}USDT"), dir, 100.0, 0.2, now)
        })
        .collect();
    for m in &markets {
        cfg.symbols.push(SymbolSpec::new(&m.symbol, dec!(100), dec!(0.01), dec!(0.001), dec!(5)));
    }
    let fake = FakeBinance::start_on_own_runtime(cfg);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut restarts = 0;
    // A market installed on the fake becomes a candidate at the restart's first scan and,
    // scoring 70, is entered at once.
    let env = [
        ("KINETIC__SCANNER__INTERVAL_SECS", "2"),
        ("KINETIC__RISK__MAX_OPEN_POSITIONS", "10"),
        ("KINETIC__RISK__MAX_TOTAL_EXPOSURE_PCT", "300"),
    ];
    let mut d = spawn_with(&fake, dir.path(), "crash", false, &env);
    for (i, (m, point)) in markets.iter().zip(points).enumerate() {
        d.wait_status("live streams", streams_live);
        match point {
            KillPoint::BeforeSend => {
                install(&fake, m);
                std::thread::sleep(Duration::from_millis(rng.random_range(0..2500)));
            }
            KillPoint::EntryInFlight | KillPoint::EntryFilledUnanswered => {
                let execute_first = matches!(point, KillPoint::EntryFilledUnanswered);
                fake.fail_next(1, FaultScope::MarketOrder, FaultAction::Hold { execute_first });
                d = install_and_restart(&fake, m, d, dir.path(), &env);
                wait_logged(&d, "entry request held", || fake.held_requests() == 1);
            }
            KillPoint::StopInFlight => {
                fake.fail_next(1, FaultScope::AlgoOrder, FaultAction::Hold { execute_first: false });
                d = install_and_restart(&fake, m, d, dir.path(), &env);
                // Filled, and its stop request is held on the wire.
                wait_logged(&d, "stop request held", || {
                    fake.held_requests() == 1
                        && fake.position(&m.symbol).is_some()
                        && !fake.unprotected_positions().is_empty()
                });
                std::thread::sleep(Duration::from_millis(100));
            }
            KillPoint::TakeProfitUnanswered => {
                d = install_and_restart(&fake, m, d, dir.path(), &env);
                wait_logged(&d, "entry protected", || {
                    fake.position(&m.symbol).is_some() && fake.unprotected_positions().is_empty()
                });
                let p = fake.position(&m.symbol).unwrap();
                fake.fail_next(1, FaultScope::MarketOrder, FaultAction::Hold { execute_first: true });
                let sign = if p.amount > Decimal::ZERO { dec!(1.016) } else { dec!(0.984) };
                fake.set_price(&m.symbol, (p.entry_price * sign).round_dp(2));
                // The close executed on the exchange; its reply is held.
                wait_logged(&d, "TP close executed, reply held", || {
                    fake.held_requests() == 1
                        && fake.position(&m.symbol).is_some_and(|q| q.amount.abs() < p.amount.abs())
                });
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        d.kill9();
        fake.release_held_requests();
        std::thread::sleep(Duration::from_millis(200));
        restarts += 1;
        d = spawn_with(&fake, dir.path(), "crash", false, &env);
        settle(&fake, &d, &format!("run {i} ({point:?})"));
        assert_eq!(no_duplicate_ids(&fake), 0, "run {i} ({point:?}): a client id was used twice");
    }
    let log = d.terminate();
    let positions = fake.positions().len();
    println!(
        "crash safety: {restarts} kill -9 restarts survived; {positions} positions open, all protected; orders {} + stops {}; duplicates 0",
        fake.orders().len(),
        fake.algo_orders().len()
    );
    assert!(positions >= 4, "most runs must end with a position: {positions}\n{log}");
}
