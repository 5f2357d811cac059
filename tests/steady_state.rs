//! Resource use at steady state: the real binary (`run --dry-run`) against the fake server
//! streaming ~300 symbols (all-market mark prices and mini-tickers every second, a seeded
//! random walk, live klines of the scanner's candidates). Measures resident memory and CPU of
//! the daemon over a window after warm-up. A measurement, not a CI test — run with
//! `cargo test --release --test steady_state -- --ignored --nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::fake_binance::{FakeBinance, FakeConfig};

fn proc_field(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find(|l| l.starts_with(key))?.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = s.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

#[test]
#[ignore = "measurement: run with --ignored --nocapture"]
fn three_hundred_symbols_steady_state() {
    let fake = FakeBinance::start_on_own_runtime(FakeConfig::default().with_generated_symbols(297));
    for tf in ["15m", "1h", "4h"] {
        fake.fill_history(tf, 200, 7);
    }
    fake.set_price_walk(Some((5, 11)));
    fake.set_auto_klines(true);
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kinetic"))
        .args(["--log-level", "warn", "run", "--dry-run"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KINETIC__EXCHANGE__REST_URL", fake.rest_url())
        .env("KINETIC__EXCHANGE__WS_URL", fake.ws_url())
        .env("KINETIC__API__LISTEN", format!("127.0.0.1:{port}"))
        .env("KINETIC__STORAGE__DRY_RUN_PATH", dir.path().join("dry.db"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(20));
    let window = Duration::from_secs(30);
    let t0 = Instant::now();
    let c0 = cpu_ticks(pid).unwrap();
    let mut peak_rss = 0;
    while t0.elapsed() < window {
        peak_rss = peak_rss.max(proc_field(pid, "VmRSS:").unwrap_or(0));
        std::thread::sleep(Duration::from_millis(500));
    }
    let c1 = cpu_ticks(pid).unwrap();
    let hz = 100.0; // USER_HZ on Linux
    let cpu_pct = (c1 - c0) as f64 / hz / t0.elapsed().as_secs_f64() * 100.0;
    let hwm = proc_field(pid, "VmHWM:").unwrap_or(0);
    child.kill().unwrap();
    child.wait().unwrap();
    println!(
        "steady state, 300 symbols: RSS {:.1} MB (peak sampled {:.1} MB, high-water {:.1} MB), CPU {:.2} % of one core",
        peak_rss as f64 / 1024.0,
        peak_rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        cpu_pct
    );
    assert!(peak_rss < 50 * 1024, "RSS over 50 MB");
}
