//! API-key hygiene against the fake server's `GET /sapi/v1/account/apiRestrictions` (the spot
//! host, configured like the others): the client's read, `kinetic check-key`, and the check
//! before a live `kinetic run` (no futures → exit 2; withdrawals or no IP allow-list → warning
//! in the log, `/status` and `/metrics`, or exit 2 with `exchange.refuse_unsafe_key`). The key
//! and its secret never appear in any output.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;
#[path = "common/daemon.rs"]
mod daemon;
mod exchange_helpers;
mod support;

use std::process::{Command, Output};

use daemon::{http_get, spawn_with};
use exchange_helpers::client_with;
use kinetic::exchange::api_key::{KeyWarning, assess};
use serde_json::json;
use support::fake_binance::{DOC_API_KEY, DOC_API_SECRET, FakeBinance, FakeConfig};

fn kinetic(fake: &FakeBinance, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kinetic"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("BINANCE_API_KEY", DOC_API_KEY)
        .env("BINANCE_API_SECRET", DOC_API_SECRET)
        .env("KINETIC__EXCHANGE__REST_URL", fake.rest_url())
        .env("KINETIC__EXCHANGE__SPOT_REST_URL", fake.rest_url())
        .env("KINETIC__EXCHANGE__WS_URL", fake.ws_url())
        .env("KINETIC__API__LISTEN", format!("127.0.0.1:{}", daemon::free_port()))
        .env("KINETIC__STORAGE__PATH", dir.path().join("live.db"));
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn no_secrets(s: &str) {
    assert!(!s.contains(DOC_API_KEY), "the API key was printed");
    assert!(!s.contains(DOC_API_SECRET), "the API secret was printed");
}

#[tokio::test]
async fn client_reads_the_permissions_from_the_spot_host_and_skips_on_the_testnet() {
    let fake = FakeBinance::start_default().await;
    let c = client_with(&fake, |_, _| {});
    let p = c.api_key_permissions().await.unwrap().expect("checked");
    assert!(p.enable_futures && p.ip_restrict && !p.enable_withdrawals);
    assert!(assess(&p).warnings.is_empty());
    let r = fake.requests_to("GET", "/sapi/v1/account/apiRestrictions");
    assert_eq!(r.len(), 1);
    assert!(r[0].signed && r[0].api_key_present);

    fake.set_api_restrictions(json!({"enableWithdrawals": true, "ipRestrict": false}));
    let p = c.api_key_permissions().await.unwrap().unwrap();
    assert_eq!(assess(&p).warnings, [KeyWarning::WithdrawalsEnabled, KeyWarning::NoIpRestriction]);

    // The testnet has no Wallet API: nothing is sent.
    let t = client_with(&fake, |s, _| s.testnet = true);
    let before = t.requests_sent();
    assert_eq!(t.api_key_permissions().await.unwrap(), None);
    assert_eq!(t.requests_sent(), before);
}

#[test]
fn check_key_prints_permissions_and_the_verdict_and_trades_nothing() {
    let fake = FakeBinance::start_on_own_runtime(FakeConfig::default());
    let ok = kinetic(&fake, &["check-key"], &[]);
    let out = text(&ok);
    assert_eq!(ok.status.code(), Some(0), "{out}");
    assert!(out.contains("futures trading (enableFutures)") && out.contains("verdict: ok"), "{out}");
    no_secrets(&out);

    fake.set_api_restrictions(json!({"enableWithdrawals": true}));
    let unsafe_key = kinetic(&fake, &["check-key"], &[]);
    let out = text(&unsafe_key);
    assert_eq!(unsafe_key.status.code(), Some(0), "{out}");
    assert!(out.contains("UNSAFE: withdrawals_enabled") && out.contains("WITHDRAW"), "{out}");
    let refused = kinetic(&fake, &["check-key"], &[("KINETIC__EXCHANGE__REFUSE_UNSAFE_KEY", "true")]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(text(&refused).contains("would refuse"));

    fake.set_api_restrictions(json!({"enableWithdrawals": false, "enableFutures": false}));
    let no_futures = kinetic(&fake, &["check-key"], &[]);
    let out = text(&no_futures);
    assert_eq!(no_futures.status.code(), Some(2), "{out}");
    assert!(out.contains("no futures permission") && out.contains("Enable Futures"), "{out}");
    no_secrets(&out);
    // Nothing but the permission read (and the clock sync) was sent.
    assert!(
        fake.requests().iter().all(|r| r.path == "/sapi/v1/account/apiRestrictions" || r.path == "/fapi/v1/time"),
        "{:?}",
        fake.requests().iter().map(|r| r.path.clone()).collect::<Vec<_>>()
    );
}

#[test]
fn live_run_refuses_a_key_without_futures_permission_with_exit_2() {
    let fake = FakeBinance::start_on_own_runtime(FakeConfig::default());
    fake.set_api_restrictions(json!({"enableFutures": false}));
    let out = kinetic(&fake, &["run"], &[]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("no futures permission") && all.contains("Create a new API key"), "{all}");
    no_secrets(&all);
    assert!(fake.requests_to("POST", "/fapi/v1/order").is_empty());
    assert!(fake.requests_to("GET", "/fapi/v1/exchangeInfo").is_empty(), "nothing read before the key check");

    // An unsafe key with refuse_unsafe_key: exit 2 naming the key.
    fake.set_api_restrictions(json!({"enableFutures": true, "ipRestrict": false}));
    let out = kinetic(&fake, &["run"], &[("KINETIC__EXCHANGE__REFUSE_UNSAFE_KEY", "true")]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("exchange.refuse_unsafe_key") && all.contains("no_ip_restriction"), "{all}");
}

#[test]
fn live_run_with_an_unsafe_key_warns_in_log_status_and_metrics() {
    let fake = FakeBinance::start_on_own_runtime(FakeConfig::default());
    fake.set_api_restrictions(json!({"enableWithdrawals": true}));
    let dir = tempfile::tempdir().unwrap();
    let d = spawn_with(&fake, dir.path(), "unsafe-key", false, &[]);
    let s = d.wait_status("key status", |s| s["last_monitor_tick"].is_number());
    assert_eq!(s["api_key"]["check"], "checked", "{s:#}");
    assert_eq!(s["api_key"]["warnings"], json!(["withdrawals_enabled"]), "{s:#}");
    assert_eq!(s["api_key"]["permissions"]["enable_withdrawals"], true);
    let (_, metrics) = http_get(d.port, "/metrics").unwrap();
    assert!(metrics.contains("kinetic_api_key_unsafe{reason=\"withdrawals_enabled\"} 1"), "{metrics}");
    assert!(metrics.contains("kinetic_api_key_unsafe{reason=\"no_ip_restriction\"} 0"), "{metrics}");
    let log = d.terminate();
    assert!(log.contains("UNSAFE API KEY"), "{log}");
    no_secrets(&log);
    no_secrets(&s.to_string());
}
