//! An honest start-up (issue 14, item 2), through the real binary: when the exchange cannot be
//! reached the daemon says which host, why and what to do, keeps retrying with capped backoff
//! and reports it on `/health` instead of exiting; Ctrl-C at any moment exits 0 promptly; a
//! refusal that retrying cannot fix (a refused API key) ends with exit 1 and the explanation.
//! Only 127.0.0.1 is used: a closed port and small fake servers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

#[path = "support/canned.rs"]
mod canned;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A server on 127.0.0.1 that answers every request with `status` and `body`.
fn fake_exchange(status: &'static str, body: &'static str) -> u16 {
    canned::serve(move |_| (status, body.to_string()))
}

struct Daemon {
    child: Child,
    stderr: Arc<Mutex<String>>,
    api_port: u16,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(rest_port: u16, live: bool) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let api_port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kinetic"));
        cmd.args(if live { vec!["run"] } else { vec!["run", "--dry-run"] })
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KINETIC__EXCHANGE__REST_URL", format!("http://127.0.0.1:{rest_port}"))
            .env("KINETIC__EXCHANGE__WS_URL", format!("ws://127.0.0.1:{rest_port}"))
            .env("KINETIC__EXCHANGE__SPOT_REST_URL", format!("http://127.0.0.1:{rest_port}"))
            .env("KINETIC__EXCHANGE__REQUEST_TIMEOUT_SECS", "2")
            .env("KINETIC__API__LISTEN", format!("127.0.0.1:{api_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if live {
            cmd.env("BINANCE_API_KEY", "test-key-not-real").env("BINANCE_API_SECRET", "test-secret-not-real");
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                sink.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        Daemon { child, stderr, api_port, _dir: dir }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn wait_for_log(&self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.stderr().contains(needle) {
            assert!(Instant::now() < deadline, "no `{needle}` in the log:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET /health`: status code and body.
    fn health(&self) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.api_port)).unwrap();
        s.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let code = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (code, text.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
    }

    /// Sends SIGINT (Ctrl-C) and returns the exit code and how long the exit took.
    fn interrupt(mut self) -> (Option<i32>, Duration) {
        let t = Instant::now();
        let ok = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status().unwrap();
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), t.elapsed());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the daemon did not stop within 10 s of Ctrl-C:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn unreachable_exchange_is_explained_retried_and_reported_on_health() {
    let closed = free_port();
    let daemon = Daemon::start(closed, false);
    daemon.wait_for_log("cannot reach the exchange", Duration::from_secs(30));
    let log = daemon.stderr();
    assert!(log.contains(&format!("127.0.0.1:{closed} refused the TCP connection")), "{log}");
    assert!(log.contains("a firewall or proxy blocks it"), "what to do: {log}");
    assert!(log.contains("Retrying"), "{log}");
    let (code, body) = daemon.health();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("start-up retrying") && body.contains("refused the TCP connection"), "{body}");
    // Still running well after the old 3 s give-up, then a second round is logged.
    daemon.wait_for_log("attempt=2", Duration::from_secs(30));
    let (code, took) = daemon.interrupt();
    assert_eq!(code, Some(0), "Ctrl-C during start-up is a clean stop");
    assert!(took < Duration::from_secs(3), "Ctrl-C took {took:?}");
}

#[test]
fn restricted_location_is_named_and_ctrl_c_is_prompt_mid_request() {
    let port = fake_exchange(
        "451 Unavailable For Legal Reasons",
        "{\"code\":0,\"msg\":\"Service unavailable from a restricted location\"}",
    );
    let daemon = Daemon::start(port, false);
    daemon.wait_for_log("cannot reach the exchange", Duration::from_secs(30));
    let log = daemon.stderr();
    assert!(log.contains("refuses service from this location (HTTP 451, restricted location)"), "{log}");
    assert!(log.contains("allowed location"), "{log}");
    let (code, took) = daemon.interrupt();
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(3), "Ctrl-C took {took:?}");
}

#[test]
fn a_refused_api_key_is_not_retried() {
    let port = fake_exchange(
        "401 Unauthorized",
        "{\"code\":-2015,\"msg\":\"Invalid API-key, IP, or permissions for action.\"}",
    );
    let mut daemon = Daemon::start(port, true);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = daemon.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "still running:\n{}", daemon.stderr());
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(200));
    let log = daemon.stderr();
    // Bad credentials are bad input: exit 2 (systemd does not restart on it).
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("refused the API key") || log.contains("rejected the API key"), "{log}");
    assert!(log.contains("check BINANCE_API_KEY"), "{log}");
    assert!(!log.contains("test-secret-not-real") && !log.contains("test-key-not-real"), "{log}");
}
