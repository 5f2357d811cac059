//! Config layering, validation and secret redaction, through the library and the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};

use kinetic::config::{self, ConfigError, ConfigSources, Credentials, Settings};

const FAKE_KEY: &str = "fakeKEY-aaaa1111bbbb2222cccc3333dddd";
const FAKE_SECRET: &str = "fakeSECRET-zzzz9999yyyy8888xxxx7777";

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn load(file: Option<&Path>, pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    config::load(&ConfigSources { file, env: env(pairs) })
}

fn write_config(dir: &tempfile::TempDir, body: &str) -> std::path::PathBuf {
    let path = dir.path().join("kinetic.toml");
    std::fs::write(&path, body).unwrap();
    path
}

fn kinetic(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kinetic"));
    cmd.args(args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run kinetic")
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn compiled_defaults_equal_the_shipped_default_file() {
    let from_file = load(Some(Path::new("config/default.toml")), &[]).unwrap();
    assert_eq!(Settings::defaults().unwrap(), from_file);
}

#[test]
fn file_beats_default_and_env_beats_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, "[risk]\nmax_open_positions = 3\n[scanner]\ninterval_secs = 30\n");
    let from_file = load(Some(&path), &[]).unwrap();
    assert_eq!(from_file.risk.max_open_positions, 3);
    assert_eq!(from_file.scanner.interval_secs, 30);
    // Keys the file does not mention keep their defaults.
    assert_eq!(from_file.strategy.min_confidence, 60);

    let with_env = load(Some(&path), &[("KINETIC__RISK__MAX_OPEN_POSITIONS", "2")]).unwrap();
    assert_eq!(with_env.risk.max_open_positions, 2);
    assert_eq!(with_env.scanner.interval_secs, 30);
}

#[test]
fn env_values_are_typed_and_lists_split() {
    let s = load(
        None,
        &[
            ("KINETIC__SCANNER__EXCLUDE", "USDCUSDT,BTCDOMUSDT"),
            ("KINETIC__EXCHANGE__TESTNET", "true"),
            ("KINETIC__PAPER__STARTING_BALANCE", "2500.5"),
            ("KINETIC__RISK__EMERGENCY_RESET", "next_utc_day"),
            ("UNRELATED_VAR", "ignored"),
        ],
    )
    .unwrap();
    assert_eq!(s.scanner.exclude, vec!["USDCUSDT".to_string(), "BTCDOMUSDT".to_string()]);
    assert!(s.exchange.testnet);
    assert_eq!(s.exchange.effective_rest_url(), config::TESTNET_REST_URL);
    assert_eq!(s.paper.starting_balance, 2500.5);
    assert_eq!(s.risk.emergency_reset, config::EmergencyReset::NextUtcDay);
}

#[test]
fn unknown_keys_are_named_with_their_origin() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, "[risk]\nmax_open_positon = 3\n");
    let err = load(Some(&path), &[]).unwrap_err().to_string();
    assert!(err.contains("`risk.max_open_positon`"), "{err}");
    assert!(err.contains("kinetic.toml"), "{err}");

    let err = load(None, &[("KINETIC__RISKY__LEVEL", "9")]).unwrap_err().to_string();
    assert!(err.contains("`risky.level`") && err.contains("KINETIC__RISKY__LEVEL"), "{err}");
}

/// A table of broken configs: each is rejected and the message names the key.
#[test]
fn broken_configs_are_rejected_naming_the_key() {
    let cases: &[(&str, &str)] = &[
        ("[risk]\nmax_open_positions = 0\n", "risk.max_open_positions"),
        ("[risk]\ndaily_loss_limit_pct = 150.0\n", "risk.daily_loss_limit_pct"),
        ("[risk]\nemergency_loss_pct = -1.0\n", "risk.emergency_loss_pct"),
        ("[risk]\nemergency_reset = \"sometimes\"\n", "emergency_reset"),
        ("[strategy]\nmin_confidence = 101\n", "strategy.min_confidence"),
        ("[strategy]\nmax_stop_pct = 0.0\n", "strategy.max_stop_pct"),
        ("[strategy]\ntp2_pct = 1.0\n", "strategy.tp2_pct"),
        ("[strategy]\ntp1_close_pct = 80.0\n", "strategy.tp2_close_pct"),
        ("[strategy]\nrsi_long_min = 50.0\n", "strategy.rsi_long_max"),
        ("[scanner]\nrank_volume_weight = 1.5\n", "scanner.rank_volume_weight"),
        ("[scanner]\nmax_candidates = \"ten\"\n", "scanner.max_candidates"),
        ("[exchange]\nrest_url = \"ftp://example\"\n", "exchange.rest_url"),
        ("[exchange]\nmargin_type = \"PORTFOLIO\"\n", "margin_type"),
        ("[exchange]\nrest_min_spacing_ms = 10\n", "exchange.rest_min_spacing_ms"),
        ("[paper]\nstarting_balance = 0.0\n", "paper.starting_balance"),
        ("[api]\nlisten = \"0.0.0.0:9184\"\n", "api.listen"),
        ("[api]\nlisten = \"not-an-address\"\n", "api.listen"),
        ("[storage]\ndry_run_path = \"data/kinetic.db\"\n", "storage.dry_run_path"),
        (
            "[risk]\nleverage_tiers = [{ min_confidence = 60, leverage = 130, high_volatility_leverage = 2 }]\n",
            "risk.leverage_tiers[0].leverage",
        ),
        (
            "[risk]\nleverage_tiers = [{ min_confidence = 60, leverage = 10, high_volatility_leverage = 2 }, { min_confidence = 70, leverage = 5, high_volatility_leverage = 2 }]\n",
            "risk.leverage_tiers[1].leverage",
        ),
        (
            "[risk]\nsizing_tiers = [{ min_confidence = 70, risk_pct = 1.0, max_notional_pct = 20.0 }]\n",
            "risk.sizing_tiers",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (body, key) in cases {
        let path = write_config(&dir, body);
        let err = load(Some(&path), &[]).expect_err(body).to_string();
        assert!(err.contains(key), "config {body:?} gave {err:?}, expected it to name {key}");
        let out = kinetic(&["check-config", "--config", path.to_str().unwrap()], &[]);
        assert_eq!(out.status.code(), Some(2), "config {body:?}: {}", text(&out));
        assert!(text(&out).contains(key), "config {body:?}: {}", text(&out));
    }
}

#[test]
fn public_bind_needs_the_explicit_flag() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, "[api]\nlisten = \"0.0.0.0:9184\"\nallow_public_bind = true\n");
    assert_eq!(load(Some(&path), &[]).unwrap().api.listen, "0.0.0.0:9184");
}

#[test]
fn check_config_works_on_a_fresh_clone_and_redacts_secrets() {
    let out = kinetic(&["check-config"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("max_open_positions = 5"));
    assert!(stdout.contains("#   BINANCE_API_KEY not set"), "{stdout}");

    let creds = [("BINANCE_API_KEY", FAKE_KEY), ("BINANCE_API_SECRET", FAKE_SECRET)];
    for format in ["pretty", "json"] {
        let out = kinetic(&["--log-format", format, "--log-level", "trace", "check-config"], &creds);
        assert_eq!(out.status.code(), Some(0));
        let all = text(&out);
        assert!(all.contains("#   BINANCE_API_KEY set ([REDACTED])"), "{all}");
        assert!(!all.contains(FAKE_KEY) && !all.contains(FAKE_SECRET), "secret leaked: {all}");
    }
}

#[test]
fn secrets_never_appear_in_formatted_errors_or_debug() {
    let env_map = env(&[("BINANCE_API_KEY", FAKE_KEY), ("BINANCE_API_SECRET", FAKE_SECRET)]);
    let creds = Credentials::from_env(&env_map).unwrap();
    assert_eq!(creds.api_secret.expose(), FAKE_SECRET);
    let shown = format!("{creds:?} {} {}", creds.api_key, creds.api_secret);
    assert!(!shown.contains(FAKE_KEY) && !shown.contains(FAKE_SECRET), "{shown}");

    // A secret pasted into the config file is refused without echoing its value.
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(&dir, &format!("[exchange]\napi_secret = \"{FAKE_SECRET}\"\n"));
    let err = load(Some(&path), &[]).unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("exchange.api_secret"), "{shown}");
    assert!(!shown.contains(FAKE_SECRET), "{shown}");
    let out = kinetic(&["check-config", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!text(&out).contains(FAKE_SECRET));

    // Same through the environment.
    let out = kinetic(&["check-config"], &[("KINETIC__EXCHANGE__API_SECRET", FAKE_SECRET)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!text(&out).contains(FAKE_SECRET), "{}", text(&out));
}

#[test]
fn live_run_without_credentials_is_a_config_error() {
    let out = kinetic(&["run"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("BINANCE_API_KEY"));
}

#[test]
fn bad_arguments_exit_2() {
    assert_eq!(kinetic(&["frobnicate"], &[]).status.code(), Some(2));
    assert_eq!(kinetic(&["--log-format", "xml", "check-config"], &[]).status.code(), Some(2));
    assert_eq!(kinetic(&["download-data"], &[]).status.code(), Some(2), "--symbols is required");
}

#[test]
fn help_is_complete_for_every_subcommand() {
    let out = kinetic(&["--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
    let top = String::from_utf8_lossy(&out.stdout);
    for word in
        ["run", "backtest", "download-data", "analyze", "check-config", "--config", "--log-format", "--log-level"]
    {
        assert!(top.contains(word), "--help lacks {word}: {top}");
    }
    let expect: &[(&str, &[&str])] = &[
        ("run", &["--dry-run", "--clear-emergency"]),
        ("backtest", &["--data", "--from", "--to", "--symbols", "--out"]),
        ("download-data", &["--symbols", "--intervals", "--days", "--out"]),
        ("analyze", &["SYMBOL", "--data", "--json", "--at"]),
        ("check-config", &["--config"]),
    ];
    for (cmd, flags) in expect {
        let out = kinetic(&[cmd, "--help"], &[]);
        assert_eq!(out.status.code(), Some(0));
        let help = String::from_utf8_lossy(&out.stdout);
        for flag in *flags {
            assert!(help.contains(flag), "`{cmd} --help` lacks {flag}: {help}");
        }
    }
}
