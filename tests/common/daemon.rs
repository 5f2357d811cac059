//! Running the real `kinetic` binary against the fake server: spawn with the fake's URLs and
//! a private journal, read `/status` over HTTP, SIGTERM or `kill -9` it.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kinetic::core::models::Direction;
use rust_decimal::Decimal;
use rust_decimal::prelude::*;

use crate::common::{CraftedMarket, now_ms};
use crate::support::fake_binance::{DOC_API_KEY, DOC_API_SECRET, FakeBinance};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `GET path` on 127.0.0.1:port → (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    Some((status, body))
}

pub fn status_json(port: u16) -> Option<serde_json::Value> {
    let (code, body) = http_get(port, "/status")?;
    if code != 200 {
        return None;
    }
    // Chunked transfer encoding: take the JSON object between the outer braces.
    let start = body.find('{')?;
    let end = body.rfind('}')?;
    serde_json::from_str(&body[start..=end]).ok()
}

pub fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn install(fake: &FakeBinance, m: &CraftedMarket) {
    for (tf, candles) in &m.history {
        fake.set_klines(&m.symbol, tf.as_str(), candles.clone());
    }
    let change = if m.direction == Direction::Long { Decimal::new(25, 1) } else { Decimal::new(-25, 1) };
    fake.set_ticker_stats(&m.symbol, Decimal::from(100_000_000), change);
    fake.set_price(&m.symbol, Decimal::from_f64(m.end_price).unwrap());
}

/// The fake server's documented key pair as `Credentials`.
pub fn credentials() -> kinetic::config::Credentials {
    let env: std::collections::HashMap<String, String> = [
        ("BINANCE_API_KEY".to_string(), DOC_API_KEY.to_string()),
        ("BINANCE_API_SECRET".to_string(), DOC_API_SECRET.to_string()),
    ]
    .into();
    kinetic::config::Credentials::from_env(&env).unwrap()
}

pub struct Daemon {
    pub child: Child,
    pub port: u16,
    pub log: std::path::PathBuf,
}

pub fn spawn(fake: &FakeBinance, dir: &Path, journal: &str, dry_run: bool) -> Daemon {
    spawn_with(fake, dir, journal, dry_run, &[])
}

/// [`spawn`] with extra environment (config overrides).
pub fn spawn_with(fake: &FakeBinance, dir: &Path, journal: &str, dry_run: bool, extra: &[(&str, &str)]) -> Daemon {
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
        .env("KINETIC__EXCHANGE__SPOT_REST_URL", fake.rest_url())
        .env("KINETIC__EXCHANGE__WS_URL", fake.ws_url())
        .env("KINETIC__SCANNER__INTERVAL_SECS", "3600")
        .env("KINETIC__MONITOR__INTERVAL_SECS", "1")
        .env("KINETIC__API__LISTEN", format!("127.0.0.1:{port}"))
        .env("KINETIC__STORAGE__PATH", dir.join(format!("{journal}.db")))
        .env("KINETIC__STORAGE__DRY_RUN_PATH", dir.join(format!("{journal}-dry.db")))
        .stdout(Stdio::from(logfile.try_clone().unwrap()))
        .stderr(Stdio::from(logfile));
    for (k, v) in extra {
        cmd.env(k, v);
    }
    if !dry_run {
        cmd.env("BINANCE_API_KEY", DOC_API_KEY).env("BINANCE_API_SECRET", DOC_API_SECRET);
    }
    let child = cmd.spawn().expect("start kinetic");
    Daemon { child, port, log }
}

impl Daemon {
    pub fn status(&self) -> Option<serde_json::Value> {
        status_json(self.port)
    }

    pub fn wait_status(&self, what: &str, mut cond: impl FnMut(&serde_json::Value) -> bool) -> serde_json::Value {
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
    pub fn terminate(mut self) -> String {
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

    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// A test that fails (panics) while its daemon runs must not leave the process behind.
impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn candidate_listed(s: &serde_json::Value, symbol: &str) -> bool {
    s["last_scan"]["candidates"].to_string().contains(symbol)
}

pub fn streams_live(s: &serde_json::Value) -> bool {
    s["streams"].as_array().is_some_and(|a| !a.is_empty() && a.iter().all(|x| x["state"] == "live"))
}
