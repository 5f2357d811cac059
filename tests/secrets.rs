//! Secrets never leak (issue 7): the real binary runs live with an API key and secret against
//! the fake server at `trace` level in both log formats, trades, is asked for `/status`,
//! `/metrics` and `/health`, and is stopped; `check-config` and a failing start-up print their
//! output. Every byte of every output is searched for the key and the secret.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;
#[path = "common/daemon.rs"]
mod daemon;
mod support;

use std::process::Command;

use common::{CraftedMarket, now_ms};
use daemon::{free_port, http_get, install, wait_for};
use kinetic::core::models::{Direction, Timeframe};
use support::fake_binance::{DOC_API_KEY, DOC_API_SECRET, FakeBinance, FakeConfig};

fn assert_clean(what: &str, text: &str) {
    assert!(!text.contains(DOC_API_KEY), "{what} contains the API key");
    assert!(!text.contains(DOC_API_SECRET), "{what} contains the API secret");
    // Not even a prefix long enough to identify them.
    assert!(!text.contains(&DOC_API_KEY[..16]), "{what} contains part of the API key");
    assert!(!text.contains(&DOC_API_SECRET[..16]), "{what} contains part of the API secret");
}

fn tail(s: &str) -> String {
    s.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
}

fn run_daemon(fake: &FakeBinance, m: &CraftedMarket, format: &str) -> Vec<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = dir.path().join("daemon.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kinetic"))
        .args(["--log-format", format, "--log-level", "trace", "run"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("BINANCE_API_KEY", DOC_API_KEY)
        .env("BINANCE_API_SECRET", DOC_API_SECRET)
        .env("KINETIC__EXCHANGE__REST_URL", fake.rest_url())
        .env("KINETIC__EXCHANGE__SPOT_REST_URL", fake.rest_url())
        .env("KINETIC__EXCHANGE__WS_URL", fake.ws_url())
        .env("KINETIC__SCANNER__INTERVAL_SECS", "2")
        .env("KINETIC__MONITOR__INTERVAL_SECS", "1")
        .env("KINETIC__API__LISTEN", format!("127.0.0.1:{port}"))
        .env("KINETIC__STORAGE__PATH", dir.path().join("live.db"))
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let mut outputs = Vec::new();
    wait_for("an open position", 30, || fake.position(&m.symbol).is_some() && fake.unprotected_positions().is_empty());
    fake.push_kline(&m.symbol, Timeframe::M15.as_str(), m.next_15m, true);
    wait_for("the daemon's status with the position", 30, || {
        daemon::status_json(port).is_some_and(|s| {
            s["last_monitor_tick"].is_number() && s["positions"].as_array().is_some_and(|p| !p.is_empty())
        })
    });
    for path in ["/status", "/metrics", "/health"] {
        let Some((_, body)) = http_get(port, path) else {
            panic!("no answer on {path}; log tail:\n{}", tail(&std::fs::read_to_string(&log).unwrap_or_default()));
        };
        outputs.push((format!("{format} {path}"), body));
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(child.wait().unwrap().success());
    outputs.push((format!("{format} log"), std::fs::read_to_string(&log).unwrap()));
    outputs
}

#[test]
fn key_and_secret_never_appear_in_any_output() {
    let fake = FakeBinance::start_on_own_runtime(FakeConfig::default());
    let m = CraftedMarket::new("BTCUSDT", Direction::Long, 68000.0, 0.2, now_ms());
    install(&fake, &m);
    let mut outputs = run_daemon(&fake, &m, "json");
    // Second run: the position exists; the pretty format logs the restore and reconciliation.
    outputs.extend(run_daemon(&fake, &m, "pretty"));

    for args in [vec!["check-config"], vec!["--log-level", "trace", "check-config"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_kinetic"))
            .args(&args)
            .env("BINANCE_API_KEY", DOC_API_KEY)
            .env("BINANCE_API_SECRET", DOC_API_SECRET)
            .output()
            .unwrap();
        assert!(out.status.success());
        outputs.push(("check-config".into(), String::from_utf8_lossy(&out.stdout).into_owned()));
        outputs.push(("check-config stderr".into(), String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    // A failing start: the exchange refuses the key (error path, exit 1, not retried).
    let refusing_port = support::canned::serve(|_| {
        ("401 Unauthorized", "{\"code\":-2015,\"msg\":\"Invalid API-key, IP, or permissions for action.\"}".to_string())
    });
    let out = Command::new(env!("CARGO_BIN_EXE_kinetic"))
        .args(["--log-level", "trace", "run"])
        .env("BINANCE_API_KEY", DOC_API_KEY)
        .env("BINANCE_API_SECRET", DOC_API_SECRET)
        .env("KINETIC__EXCHANGE__REST_URL", format!("http://127.0.0.1:{refusing_port}"))
        .env("KINETIC__EXCHANGE__WS_URL", format!("ws://127.0.0.1:{refusing_port}"))
        .env("KINETIC__EXCHANGE__SPOT_REST_URL", format!("http://127.0.0.1:{refusing_port}"))
        .env("KINETIC__EXCHANGE__REQUEST_TIMEOUT_SECS", "1")
        .env("KINETIC__API__LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("KINETIC__STORAGE__PATH", tempfile::tempdir().unwrap().path().join("x.db"))
        .output()
        .unwrap();
    // A key Binance refuses is bad input: exit 2 (a restart cannot fix it).
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    outputs.push((
        "failed start".into(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    ));
    // A config error names the key but never echoes a secret.
    let out = Command::new(env!("CARGO_BIN_EXE_kinetic"))
        .args(["run"])
        .env("BINANCE_API_KEY", DOC_API_KEY)
        .env("BINANCE_API_SECRET", DOC_API_SECRET)
        .env("KINETIC__RISK__MAX_OPEN_POSITIONS", "many")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    outputs.push(("config error".into(), String::from_utf8_lossy(&out.stderr).into_owned()));

    let total: usize = outputs.iter().map(|(_, t)| t.len()).sum();
    for (what, text) in &outputs {
        assert_clean(what, text);
    }
    assert!(total > 10_000, "the trace logs must actually have been captured ({total} bytes)");
    // The fake saw the key on every signed request: the check above is not vacuous.
    assert!(fake.requests().iter().any(|r| r.api_key_present));
}
