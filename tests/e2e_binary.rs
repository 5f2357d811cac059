//! The real `kinetic` binary against the fake Binance server:
//! - `run --dry-run` trades the crafted market on paper with zero signed requests (the fake
//!   server's request log proves it), serves `/health`, `/status`, `/metrics`, and exits 0
//!   within 10 s of SIGTERM;
//! - `run` live, `kill -9` while a position is open after TP1, restart → the position is
//!   restored with its ladder state, exactly one stop rests on the exchange, no order is sent
//!   twice; restarted again with an empty journal → the position is adopted and protected.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;
#[path = "common/daemon.rs"]
mod daemon;
mod support;

use std::time::Duration;

use common::{CraftedMarket, now_ms};
use daemon::{candidate_listed, http_get, install, spawn, streams_live, wait_for};
use kinetic::core::models::{Direction, Timeframe};
use rust_decimal::Decimal;
use support::fake_binance::{DOC_API_KEY, DOC_API_SECRET, FakeBinance, FakeConfig};

#[test]
fn dry_run_trades_on_paper_with_zero_signed_requests() {
    let fake = FakeBinance::start_on_own_runtime(FakeConfig::default());
    let m = CraftedMarket::new("BTCUSDT", Direction::Long, 68000.0, 0.2, now_ms());
    install(&fake, &m);
    let dir = tempfile::tempdir().unwrap();
    let d = spawn(&fake, dir.path(), "paper", true);
    d.wait_status("scan and live streams", |s| candidate_listed(s, "BTCUSDT") && streams_live(s));
    wait_for("healthy", 10, || http_get(d.port, "/health").is_some_and(|(c, _)| c == 200));
    fake.push_kline("BTCUSDT", Timeframe::M15.as_str(), m.next_15m, true);
    let s = d.wait_status("paper entry", |s| s["positions"].as_array().is_some_and(|p| p.len() == 1));
    assert_eq!(s["mode"], "dry_run");
    // The stop goes out as its own call right after the fill: a snapshot taken in between
    // shows it in flight, never a position that nobody is protecting.
    let p = &s["positions"][0];
    assert!(p["stop_on_exchange"] == true || p["order_in_flight"] == true, "unprotected and nothing in flight: {s:#?}");
    let s = d.wait_status("paper stop rests", |s| s["positions"][0]["stop_on_exchange"] == true);
    assert_eq!(s["open_orders"].as_array().map(Vec::len), Some(1), "one paper stop: {s:#?}");
    let (code, metrics) = http_get(d.port, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(metrics.contains("kinetic_open_positions 1"), "{metrics}");
    // Paper trading never touches the account on the exchange.
    assert!(fake.positions().is_empty());
    let log = d.terminate();
    assert_eq!(fake.signed_request_count(), 0, "a dry run sent signed requests");
    assert!(fake.requests().iter().all(|r| !r.api_key_present), "a dry run sent the API key header");
    assert!(log.contains("entry filled"), "{log}");
}

#[test]
fn kill_nine_with_an_open_position_then_restart_reconciles() {
    let fake = FakeBinance::start_on_own_runtime(FakeConfig::default());
    let sym = "BTCUSDT";
    let m = CraftedMarket::new(sym, Direction::Long, 68000.0, 0.2, now_ms());
    install(&fake, &m);
    let dir = tempfile::tempdir().unwrap();

    let d = spawn(&fake, dir.path(), "live", false);
    d.wait_status("scan and live streams", |s| candidate_listed(s, sym) && streams_live(s));
    fake.push_kline(sym, Timeframe::M15.as_str(), m.next_15m, true);
    wait_for("entry protected", 20, || {
        fake.position(sym).is_some() && fake.unprotected_positions().is_empty() && !fake.open_algo_orders().is_empty()
    });
    let entry = fake.position(sym).unwrap().entry_price;
    let qty = fake.position(sym).unwrap().amount;
    fake.set_price(sym, (entry * Decimal::new(1016, 3)).round_dp(1));
    wait_for("TP1", 20, || fake.position(sym).is_some_and(|p| p.amount < qty));
    let after_tp1 = fake.position(sym).unwrap().amount;
    wait_for("stop resized", 20, || fake.open_algo_orders().iter().all(|a| a.quantity == after_tp1));
    let orders_before = fake.orders().len();
    d.kill9();

    // Restart on the same journal: the ladder state (TP1 done) comes back, the stop is kept.
    let d = spawn(&fake, dir.path(), "live", false);
    let s = d.wait_status("position restored", |s| {
        s["positions"].as_array().is_some_and(|p| p.len() == 1) && s["last_monitor_tick"].is_number()
    });
    assert_eq!(s["positions"][0]["stage"], "tp1_done", "{s:#?}");
    assert_eq!(s["positions"][0]["qty"].as_str().unwrap(), after_tp1.to_string());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(fake.open_algo_orders().len(), 1, "exactly one stop: {:?}", fake.open_algo_orders());
    assert!(fake.unprotected_positions().is_empty());
    assert_eq!(fake.orders().len(), orders_before, "no order sent on restart");
    d.kill9();

    // Restart with an empty journal: the position is adopted with a conservative ladder and
    // one protective stop (the old one replaced, never zero, never two for long).
    let d = spawn(&fake, dir.path(), "fresh", false);
    let s = d.wait_status("position adopted", |s| {
        s["positions"].as_array().is_some_and(|p| p.len() == 1) && s["last_monitor_tick"].is_number()
    });
    assert_eq!(s["positions"][0]["stage"], "open");
    wait_for("one stop for the adopted position", 20, || {
        let a = fake.open_algo_orders();
        a.len() == 1 && a[0].quantity == after_tp1
    });
    assert!(fake.unprotected_positions().is_empty());
    let log = d.terminate();
    assert!(log.contains("adopting a position"), "{log}");
    assert!(!log.contains(DOC_API_SECRET) && !log.contains(DOC_API_KEY), "secrets in the log");
    // Every client order id was used once.
    let mut ids: Vec<String> =
        fake.orders().iter().filter(|o| o.orig_type == o.order_type).map(|o| o.client_order_id.clone()).collect();
    ids.extend(fake.algo_orders().iter().map(|a| a.client_algo_id.clone()));
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "duplicate client ids");
}
