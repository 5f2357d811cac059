//! The command line as a user meets it (issue 14, item 7), through the real binary: config
//! errors that list the allowed values and suggest the nearest key, a validated
//! `--log-level` and `RUST_LOG`, a `check-config` whose output is itself a valid config file with the URLs in
//! effect, no panic when the reader of stdout goes away, and no colour codes off a terminal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

#[path = "support/canned.rs"]
mod canned;

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn kinetic(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kinetic"));
    cmd.args(args).current_dir(dir).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path.to_str().unwrap().to_string()
}

/// Each broken config: exit 2, and the message names the key, the value given, what is allowed
/// and (for a misspelt key) the nearest valid key.
#[test]
fn config_errors_name_the_allowed_values_and_the_nearest_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &[&str])] = &[
        (
            "[risk]\nemergency_reset = \"sometimes\"\n",
            &["risk.emergency_reset", "\"sometimes\"", "\"manual\" or \"next_utc_day\""],
        ),
        ("[exchange]\nmargin_type = \"cross\"\n", &["exchange.margin_type", "\"ISOLATED\" or \"CROSSED\""]),
        ("[storage]\nsync = 3\n", &["storage.sync", "\"normal\" or \"full\""]),
        ("[risk]\nmax_open_positions = -1\n", &["risk.max_open_positions", "-1", "a whole number >= 0"]),
        ("[scanner]\nmax_candidates = \"ten\"\n", &["scanner.max_candidates", "\"ten\"", "a whole number"]),
        (
            "[risk]\nleverage_tiers = [{ min_confidence = 60, leverage = -2, high_volatility_leverage = 2 }]\n",
            &["risk.leverage_tiers[0].leverage", "a whole number >= 0"],
        ),
        ("[risk]\nmax_open_positon = 3\n", &["`risk.max_open_positon`", "did you mean `risk.max_open_positions`?"]),
        ("[rsik]\nmax_open_positions = 3\n", &["did you mean `risk.max_open_positions`?"]),
        ("[exchange\n", &["TOML parse error"]),
    ];
    for (body, needles) in cases {
        let path = write(dir.path(), "k.toml", body);
        let out = kinetic(dir.path(), &["check-config", "--config", &path], &[]);
        assert_eq!(out.status.code(), Some(2), "{body}: {}", stderr(&out));
        let err = stderr(&out);
        for n in *needles {
            assert!(err.contains(n), "config {body:?}: `{n}` missing from {err}");
        }
        assert!(!err.contains("variant constructor") && !err.contains("64 bit"), "serde wording: {err}");
    }
    // The same from the environment.
    let out = kinetic(dir.path(), &["check-config"], &[("KINETIC__RISK__MAX_OPEN_POSITONS", "3")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("did you mean `risk.max_open_positions`?"), "{}", stderr(&out));
    let out = kinetic(dir.path(), &["check-config"], &[("KINETIC__STORAGE__SYNC", "always")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("\"normal\" or \"full\""), "{}", stderr(&out));
}

#[test]
fn log_level_is_validated() {
    let dir = tempfile::tempdir().unwrap();
    let out = kinetic(dir.path(), &["--log-level", "verbose", "check-config"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("`verbose` is not a log level") && err.contains("trace, debug, info, warn, error"), "{err}");
    assert!(out.stdout.is_empty(), "nothing runs after a bad flag");
    let out = kinetic(dir.path(), &["--log-level", "degub", "check-config"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("did you mean `debug`?"), "{}", stderr(&out));
    for ok in ["debug", "info,kinetic=trace", "WARN"] {
        let out = kinetic(dir.path(), &["--log-level", ok, "check-config"], &[]);
        assert_eq!(out.status.code(), Some(0), "{ok}: {}", stderr(&out));
    }
}

/// RUST_LOG is checked as `--log-level` is when the flag does not override it.
#[test]
fn rust_log_is_validated_like_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = kinetic(dir.path(), &["check-config"], &[("RUST_LOG", "verbose")]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("RUST_LOG=`verbose`") && err.contains("trace, debug, info, warn, error"), "{err}");
    assert!(err.contains("TARGET=LEVEL"), "{err}");
    assert!(out.stdout.is_empty(), "nothing runs after a bad RUST_LOG");
    let out = kinetic(dir.path(), &["check-config"], &[("RUST_LOG", "kinetic=loud")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    for ok in ["debug", "info,kinetic::tasks=trace", "", " "] {
        let out = kinetic(dir.path(), &["check-config"], &[("RUST_LOG", ok)]);
        assert_eq!(out.status.code(), Some(0), "RUST_LOG={ok:?}: {}", stderr(&out));
    }
    // The flag overrides the variable, which is then not read.
    let out = kinetic(dir.path(), &["--log-level", "warn", "check-config"], &[("RUST_LOG", "verbose")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn check_config_output_is_a_valid_config_with_the_urls_in_effect() {
    let dir = tempfile::tempdir().unwrap();
    let creds = [("BINANCE_API_KEY", "k-not-shown-1234"), ("BINANCE_API_SECRET", "s-not-shown-5678")];
    let first =
        kinetic(dir.path(), &["check-config"], &[&creds[..], &[("KINETIC__RISK__MAX_OPEN_POSITIONS", "3")]].concat());
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let text = String::from_utf8(first.stdout).unwrap();
    assert!(!text.contains("k-not-shown-1234") && !text.contains("s-not-shown-5678"));
    assert!(text.contains("#   BINANCE_API_KEY set ([REDACTED])"), "{text}");
    assert!(!text.contains("[credentials]"), "no section the loader refuses: {text}");
    let path = write(dir.path(), "effective.toml", &text);
    let again = kinetic(dir.path(), &["check-config", "--config", &path], &creds);
    assert_eq!(again.status.code(), Some(0), "its own output is refused: {}", stderr(&again));
    let body = |t: &str| t.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&String::from_utf8(again.stdout).unwrap()), body(&text), "the round trip changes nothing");
    assert!(text.contains("max_open_positions = 3"));

    let testnet = kinetic(dir.path(), &["check-config"], &[("KINETIC__EXCHANGE__TESTNET", "true")]);
    assert_eq!(testnet.status.code(), Some(0));
    let text = String::from_utf8(testnet.stdout).unwrap();
    assert!(text.contains("rest_url = \"https://demo-fapi.binance.com\""), "{text}");
    assert!(text.contains("ws_url = \"wss://fstream.binancefuture.com\""), "{text}");
    assert!(!text.contains("https://fapi.binance.com") && !text.contains("wss://fstream.binance.com\""), "{text}");
    let path = write(dir.path(), "testnet.toml", &text);
    assert_eq!(kinetic(dir.path(), &["check-config", "--config", &path], &[]).status.code(), Some(0));
}

/// `kinetic backtest | head`: the reader closes the pipe before the summary is written. The
/// command neither panics nor fails, and still writes its files.
#[test]
fn closed_stdout_is_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let manifest = env!("CARGO_MANIFEST_DIR");
    for args in [
        vec!["check-config"],
        vec![
            "backtest",
            "--no-progress",
            "--data",
            "data/sample",
            "--symbols",
            "BTCUSDT",
            "--from",
            "2026-02-01",
            "--to",
            "2026-02-05",
            "--out",
            out_dir.to_str().unwrap(),
        ],
        vec!["analyze", "SOLUSDT", "--data", "tests/data"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kinetic"))
            .args(&args)
            .current_dir(manifest)
            .env_remove("RUST_BACKTRACE")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
    assert!(out_dir.join("report.html").is_file(), "the backtest still wrote its files");
}

/// Off a terminal (a pipe, a file, the journal) log lines carry no colour codes.
#[test]
fn no_colour_codes_off_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kinetic"))
        .args(["--log-level", "debug", "run", "--dry-run"])
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KINETIC__EXCHANGE__REST_URL", format!("http://127.0.0.1:{closed}"))
        .env("KINETIC__EXCHANGE__WS_URL", format!("ws://127.0.0.1:{closed}"))
        .env("KINETIC__API__LISTEN", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The daemon retries an unreachable exchange until stopped: stop it once it has said so.
    let mut err = String::new();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap()));
    for line in lines.by_ref() {
        let line = line.unwrap();
        err.push_str(&line);
        err.push('\n');
        if line.contains("cannot reach the exchange") {
            break;
        }
    }
    Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    for line in lines.map_while(Result::ok) {
        err.push_str(&line);
        err.push('\n');
    }
    assert_eq!(child.wait().unwrap().code(), Some(0), "{err}");
    assert!(err.contains("starting"), "the daemon logged: {err}");
    assert!(!err.contains('\u{1b}'), "colour codes in redirected output: {err:?}");
}

/// `download-data` for a symbol the exchange does not list is bad input (exit 2), not a fault.
#[test]
fn download_of_an_unknown_symbol_is_exit_2() {
    let port = canned::serve(|request| {
        if request.starts_with("GET /fapi/v1/time") {
            ("200 OK", "{\"serverTime\":1770000000000}".to_string())
        } else {
            ("400 Bad Request", "{\"code\":-1121,\"msg\":\"Invalid symbol.\"}".to_string())
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let out = kinetic(
        dir.path(),
        &["download-data", "--symbols", "NOPEUSDT", "--intervals", "1h", "--days", "1", "--out", "d"],
        &[("KINETIC__EXCHANGE__REST_URL", &format!("http://127.0.0.1:{port}"))],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("NOPEUSDT is not a symbol on the exchange"), "{}", stderr(&out));
}
