//! The real `kinetic` binary against the fake Binance server:
//! - `run --dry-run` trades the crafted market on paper with zero signed requests (the fake
//!   server's request log proves it), serves `/health`, `/status`, `/metrics`, and exits 0
//!   within 10 s of SIGTERM;
//! - `run` live, `kill -9` while a position is open after TP1, restart → the position is
//!   restored with its ladder state, exactly one stop rests on the exchange, no order is sent
//!   twice; restarted again with an empty journal → the position is adopted and protected.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{CraftedMarket, now_ms};
use kinetic::core::models::{Direction, Timeframe};
use rust_decimal::Decimal;
use rust_decimal::prelude::*;
use support::fake_binance::{DOC_API_KEY, DOC_API_SECRET, FakeBinance, FakeConfig};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `GET path` on 127.0.0.1:port → (status, body).
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    Some((status, body))
}

fn status_json(port: u16) -> Option<serde_json::Value> {
    let (code, body) = http_get(port, "/status")?;
    if code != 200 {
        return None;
    }
    // Chunked transfer encoding: take the JSON object between the outer braces.
    let start = body.find('{')?;
    let end = body.rfind('}')?;
    serde_json::from_str(&body[start..=end]).ok()
}

fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn install(fake: &FakeBinance, m: &CraftedMarket) {
    for (tf, candles) in &m.history {
        fake.set_klines(&m.symbol, tf.as_str(), candles.clone());
    }
    let change = if m.direction == Direction::Long { Decimal::new(25, 1) } else { Decimal::new(-25, 1) };
    fake.set_ticker_stats(&m.symbol, Decimal::from(100_000_000), change);
    fake.set_price(&m.symbol, Decimal::from_f64(m.end_price).unwrap());
}

struct Daemon {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

fn spawn(fake: &FakeBinance, dir: &Path, journal: &str, dry_run: bool) -> Daemon {
    let port = free_port();
    let log = dir.join(format!("{journal}-{}.log", now_ms()));
    let logfile = std::fs::File::create(&log).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kinetic"));
    cmd.arg("--log-format").arg("json").arg("run");
    if dry_run {
        cmd.arg("--dry-run");
    }
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KINETIC__EXCHANGE__REST_URL", fake.rest_url())
        .env("KINETIC__EXCHANGE__WS_URL", fake.ws_url())
        .env("KINETIC__SCANNER__INTERVAL_SECS", "3600")
        .env("KINETIC__MONITOR__INTERVAL_SECS", "1")
        .env("KINETIC__API__LISTEN", format!("127.0.0.1:{port}"))
        .env("KINETIC__STORAGE__PATH", dir.join(format!("{journal}.db")))
        .env("KINETIC__STORAGE__DRY_RUN_PATH", dir.join(format!("{journal}-dry.db")))
        .stdout(Stdio::from(logfile.try_clone().unwrap()))
        .stderr(Stdio::from(logfile));
    if !dry_run {
        cmd.env("BINANCE_API_KEY", DOC_API_KEY).env("BINANCE_API_SECRET", DOC_API_SECRET);
    }
    let child = cmd.spawn().expect("start kinetic");
    Daemon { child, port, log }
}

impl Daemon {
    fn status(&self) -> Option<serde_json::Value> {
        status_json(self.port)
    }

    fn wait_status(&self, what: &str, mut cond: impl FnMut(&serde_json::Value) -> bool) -> serde_json::Value {
        let mut last = None;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.status() {
                if cond(&s) {
                    return s;
                }
                last = Some(s);
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last status {last:#?}; log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM and wait: must exit 0 within 10 s.
    fn terminate(mut self) -> String {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "exit status {status:?}");
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "did not exit within 10 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

fn candidate_listed(s: &serde_json::Value, symbol: &str) -> bool {
    s["last_scan"]["candidates"].to_string().contains(symbol)
}

fn streams_live(s: &serde_json::Value) -> bool {
    s["streams"].as_array().is_some_and(|a| !a.is_empty() && a.iter().all(|x| x["state"] == "live"))
}

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
    assert_eq!(s["positions"][0]["stop_on_exchange"], true, "paper stop rests");
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
