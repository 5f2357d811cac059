//! `kinetic backtest` as a user runs it: the real binary on a slice of the sample data, writing
//! into a temporary folder.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::path::Path;
use std::process::Command;

fn kinetic() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kinetic"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    // Keep the developer's environment out of the test.
    for (k, _) in std::env::vars() {
        if k.starts_with("KINETIC__") {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn backtest_writes_summary_and_files() {
    let out = tempfile::tempdir().unwrap();
    let output = kinetic()
        .args(["backtest", "--data", "data/sample", "--symbols", "BTCUSDT,ETHUSDT"])
        .args(["--from", "2026-02-01", "--to", "2026-02-14", "--no-progress", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&output.stderr));
    for needle in [
        "Backtest 2026-02-01",
        "BTCUSDT, ETHUSDT",
        "win rate",
        "profit factor",
        "max drawdown",
        "Sharpe",
        "exit reason",
        "buy and hold",
    ] {
        assert!(stdout.contains(needle), "summary lacks `{needle}`:\n{stdout}");
    }
    for f in ["trades.csv", "metrics.json", "report.html"] {
        assert!(out.path().join(f).is_file(), "{f} missing");
    }
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["symbols"], serde_json::json!(["BTCUSDT", "ETHUSDT"]));
    assert!(metrics["period_end"].as_str().unwrap() <= "2026-02-15T00:00:00.000Z");
    let csv = std::fs::read_to_string(out.path().join("trades.csv")).unwrap();
    assert!(csv.starts_with("symbol,direction,entry_time,exit_time,entry_price,exit_price,qty"));
    assert_eq!(csv.lines().count() as u64, metrics["trades"].as_u64().unwrap() + 1);
}

#[test]
fn bad_arguments_exit_2() {
    let out = tempfile::tempdir().unwrap();
    let missing = out.path().join("nope");
    let o = kinetic().args(["backtest", "--no-progress", "--data"]).arg(&missing).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    let o = kinetic().args(["backtest", "--no-progress", "--symbols", "NOSUCHUSDT"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("NOSUCHUSDT"));
    let o = kinetic().args(["backtest", "--no-progress", "--from", "last tuesday"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(!Path::new(&out.path().join("report.html")).exists());
}
