//! The offline demo (issue 14, item 1): `kinetic run --dry-run --replay [DIR] [--speed N]`
//! plays candle files through the real daemon — paper exchange, scanner, analyzer, position
//! manager, journal, `/status` — with no network, and exits 0 when the data ends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kinetic::data::{read_candle_file, write_candle_file};
use kinetic::store::Journal;

const SYMBOLS: [&str; 5] = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT"];
/// 2026-02-27 00:00 UTC: the sample's 15m files start 2026-02-01, so 20 days of warm-up and
/// six days of replay.
const CUT: i64 = 1_772_150_400_000;

/// The shipped sample, cut at [`CUT`] (the whole sample plays for minutes even at full speed).
fn short_sample(dir: &Path) {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample");
    std::fs::create_dir_all(dir.join("funding")).unwrap();
    for s in SYMBOLS {
        for tf in ["15m", "1h", "4h"] {
            let all = read_candle_file(&sample.join(format!("{s}-{tf}.csv.gz"))).unwrap();
            let cut: Vec<_> = all.into_iter().filter(|c| c.close_time < CUT).collect();
            write_candle_file(&dir.join(format!("{s}-{tf}.csv")), &cut).unwrap();
        }
        let funding = format!("funding/{s}.csv.gz");
        std::fs::copy(sample.join(&funding), dir.join(&funding)).unwrap();
    }
}

/// A TCP listener standing for Binance: counts every connection made to it.
fn trap() -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicU64::new(0));
    let h = Arc::clone(&hits);
    std::thread::spawn(move || {
        for s in listener.incoming() {
            h.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    (addr.to_string(), hits)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn status(port: u16) -> Option<serde_json::Value> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let body = out.split("\r\n\r\n").nth(1)?;
    serde_json::from_str(&body[body.find('{')?..=body.rfind('}')?]).ok()
}

fn kinetic(dir: &Path, port: u16, trap: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kinetic"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // Anything that tried Binance would reach the trap.
        .env("KINETIC__EXCHANGE__REST_URL", format!("http://{trap}"))
        .env("KINETIC__EXCHANGE__SPOT_REST_URL", format!("http://{trap}"))
        .env("KINETIC__EXCHANGE__WS_URL", format!("ws://{trap}"))
        .env("KINETIC__API__LISTEN", format!("127.0.0.1:{port}"))
        .env("KINETIC__STORAGE__PATH", dir.join("live.db"))
        .env("KINETIC__STORAGE__DRY_RUN_PATH", dir.join("demo.db"))
        .current_dir(dir);
    cmd
}

#[test]
fn the_replay_trades_the_sample_through_the_daemon_and_exits_0_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    short_sample(&data);
    // A journal left by an earlier replay is replaced, not resumed.
    std::fs::write(dir.path().join("demo-replay.db"), b"not a database").unwrap();
    let (trap, hits) = trap();
    let port = free_port();
    let log = dir.path().join("replay.log");
    let logfile = std::fs::File::create(&log).unwrap();
    let mut child = kinetic(dir.path(), port, &trap)
        .args(["--log-format", "json", "run", "--dry-run", "--replay"])
        .arg(&data)
        .args(["--speed", "20000"])
        .stdout(Stdio::from(logfile.try_clone().unwrap()))
        .stderr(Stdio::from(logfile))
        .spawn()
        .unwrap();

    // /status shows the daemon's positions while the replay plays, each with its stop.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seen_position = None;
    let exit = loop {
        if let Some(code) = child.try_wait().unwrap() {
            break code;
        }
        if seen_position.is_none()
            && let Some(s) = status(port)
            && let Some(p) = s["positions"].as_array().and_then(|a| a.first())
        {
            seen_position = Some((s["mode"].clone(), p.clone()));
        }
        assert!(
            Instant::now() < deadline,
            "the replay did not end; log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(exit.success(), "exit {exit:?}; log:\n{text}");
    let (mode, position) = seen_position.unwrap_or_else(|| panic!("no position in /status; log:\n{text}"));
    assert_eq!(mode, "dry_run");
    assert!(SYMBOLS.contains(&position["symbol"].as_str().unwrap()), "{position:#}");
    assert!(position.to_string().contains("stop"), "position without its stop: {position:#}");

    // The data's end stops it: the summary line says so.
    let over: serde_json::Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "replay over")
        .unwrap_or_else(|| panic!("no summary; log:\n{text}"));
    assert_eq!(over["fields"]["finished"], true, "{over}");
    assert!(text.contains("2026-02-27 00:00 UTC"), "the last close played is the data's");

    // Trades were closed and journaled, in the data's time.
    let journal = Journal::open(&dir.path().join("demo-replay.db")).unwrap();
    let closed = journal.closed_positions(1000).unwrap();
    assert!(closed.len() >= 3, "{} trades closed; log:\n{text}", closed.len());
    for p in &closed {
        let t = p.position.entry_time;
        assert!((1_771_632_000_000..CUT).contains(&t), "entry at {t}: outside the replayed days");
    }
    // Nothing tried to reach Binance.
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the replay opened a connection to the exchange URL");
}

#[test]
fn the_built_in_sample_plays_without_a_folder_and_sigterm_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let (trap, hits) = trap();
    let port = free_port();
    let log = dir.path().join("replay.log");
    let logfile = std::fs::File::create(&log).unwrap();
    let mut child = kinetic(dir.path(), port, &trap)
        .args(["run", "--dry-run", "--replay"])
        .stdout(Stdio::from(logfile.try_clone().unwrap()))
        .stderr(Stdio::from(logfile))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = status(port);
        if s.as_ref().is_some_and(|s| s["last_scan"].is_object() && s["last_monitor_tick"].is_number()) {
            // The exchange clock is the replay's: 20 days after the sample's first 15m candle.
            let t = s.unwrap()["last_monitor_tick"].as_i64().unwrap();
            assert!((1_771_632_000_000..1_771_718_400_000).contains(&t), "clock {t}");
            break;
        }
        assert!(Instant::now() < deadline, "no scan; log:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(50));
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let start = Instant::now();
    let exit = loop {
        if let Some(code) = child.try_wait().unwrap() {
            break code;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "did not stop within 10 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(exit.success(), "exit {exit:?}; log:\n{text}");
    assert!(text.contains("built-in sample"), "{text}");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[test]
fn bad_replay_arguments_exit_2_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let (trap, hits) = trap();
    let port = free_port();
    let run = |args: &[&str]| {
        let out = kinetic(dir.path(), port, &trap).args(args).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let missing = dir.path().join("no-such-folder");
    let (code, err) = run(&["run", "--dry-run", "--replay", missing.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no-such-folder"), "{err}");
    for speed in ["0", "-3", "fast", "1000000"] {
        let (code, err) = run(&["run", "--dry-run", "--replay", "--speed", speed]);
        assert_eq!(code, Some(2), "--speed {speed}: {err}");
        assert!(err.contains("--speed"), "{err}");
    }
    // A replay is always a dry run; a speed needs a replay.
    let (code, err) = run(&["run", "--replay"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--dry-run"), "{err}");
    let (code, err) = run(&["run", "--dry-run", "--speed", "10"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--replay"), "{err}");
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}
