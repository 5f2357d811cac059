//! Deploy files that work as written (issue 14, item 4).
//!
//! systemd: the README's install step (`deploy/install-systemd.sh`) is run into a scratch root;
//! the service user can then read its config (the old steps left /etc/kinetic unreadable to it
//! and the service exited 2), and `systemd-analyze verify` accepts the unit and the template
//! instance. Docker: the README example is a dry run with a bounded restart policy and a stop
//! timeout longer than the daemon's shutdown budget; the image's HEALTHCHECK command, run as
//! written against a local server, passes on 200 and fails on 503 or nothing listening.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

fn repo_file(p: &str) -> String {
    std::fs::read_to_string(Path::new(MANIFEST).join(p)).unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// uid and gid of `kinetic` in `root/etc/passwd`.
fn service_ids(root: &Path) -> (u32, u32) {
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let line = passwd.lines().find(|l| l.starts_with("kinetic:")).expect("kinetic user created");
    let f: Vec<&str> = line.split(':').collect();
    (f[2].parse().unwrap(), f[3].parse().unwrap())
}

/// A scratch root with the files useradd needs and the system's own unit files (so
/// `systemd-analyze verify --root` finds sysinit.target and friends).
fn scratch_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let etc = root.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("passwd"), "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    std::fs::write(etc.join("group"), "root:x:0:\n").unwrap();
    std::fs::write(etc.join("shadow"), "root:*:19000:0:99999:7:::\n").unwrap();
    std::fs::write(etc.join("gshadow"), "root:*::\n").unwrap();
    let units = ["/usr/lib/systemd/system", "/lib/systemd/system"].into_iter().map(PathBuf::from).find(|p| p.is_dir());
    if let Some(units) = units {
        let dest = root.path().join("usr/lib/systemd");
        std::fs::create_dir_all(&dest).unwrap();
        let o = Command::new("cp").arg("-a").arg(&units).arg(&dest).output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
    }
    root
}

fn install(root: &Path, extra: &[&str]) -> Output {
    Command::new("bash")
        .arg(Path::new(MANIFEST).join("deploy/install-systemd.sh"))
        .arg("--root")
        .arg(root)
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_kinetic"))
        .args(extra)
        .output()
        .unwrap()
}

/// Runs the installed binary as the service user would (uid/gid of `kinetic`, no other groups).
fn as_service_user(root: &Path, args: &[&str]) -> Output {
    let (uid, gid) = service_ids(root);
    Command::new("setpriv")
        .args(["--reuid", &uid.to_string(), "--regid", &gid.to_string(), "--clear-groups"])
        .arg(root.join("usr/local/bin/kinetic"))
        .args(args)
        .current_dir(root)
        .env_clear()
        .env("KINETIC__STORAGE__PATH", "/nonexistent/kinetic.db")
        .output()
        .unwrap()
}

#[test]
fn systemd_steps_give_a_service_that_can_read_its_config() {
    if which("systemd-analyze").is_none() {
        eprintln!("SKIPPED: systemd-analyze is not installed; the systemd unit files were not verified");
        return;
    }
    if !is_root() {
        eprintln!("SKIPPED: needs root (the install sets file owners and runs as the service user); CI runs as root");
        return;
    }
    let root = scratch_root();
    let r = root.path();
    let o = install(r, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let o = install(r, &["--instance", "alice", "--port", "9185"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = install(r, &["--instance", "bob"]);
    assert_eq!(o.status.code(), Some(2), "an instance needs its own port: {}", text(&o));

    let (_, gid) = service_ids(r);
    let meta = |p: &str| std::fs::metadata(r.join(p)).unwrap();
    let dir = meta("etc/kinetic");
    assert_eq!((dir.mode() & 0o777, dir.uid(), dir.gid()), (0o750, 0, gid), "/etc/kinetic root:kinetic 0750");
    for cfg in ["etc/kinetic/kinetic.toml", "etc/kinetic/alice.toml"] {
        let m = meta(cfg);
        assert_eq!((m.mode() & 0o777, m.uid(), m.gid()), (0o640, 0, gid), "{cfg} root:kinetic 0640");
    }
    let env = meta("etc/kinetic/kinetic.env");
    assert_eq!((env.mode() & 0o777, env.uid()), (0o600, 0), "secrets readable by root (systemd) only");
    assert!(repo_file_at(r, "etc/kinetic/alice.env").contains("KINETIC__API__LISTEN=127.0.0.1:9185"));

    // The service user reads its config: the daemon would start.
    for cfg in ["/etc/kinetic/kinetic.toml", "/etc/kinetic/alice.toml"] {
        let path = r.join(cfg.trim_start_matches('/'));
        let o = as_service_user(r, &["check-config", "--config", path.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "the service user cannot read {cfg}: {}", text(&o));
    }
    // The old steps (directory owned by root:root 0750) left it unreadable: exit 2, no restart.
    std::os::unix::fs::chown(r.join("etc/kinetic"), Some(0), Some(0)).unwrap();
    let path = r.join("etc/kinetic/kinetic.toml");
    let o = as_service_user(r, &["check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("cannot read config file"), "{}", text(&o));

    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", r.display()))
        .args(["kinetic.service", "kinetic@alice.service"])
        .output()
        .unwrap();
    assert!(o.status.success(), "systemd-analyze verify: {}", text(&o));
    assert_eq!(text(&o).trim(), "", "systemd-analyze verify warns");
}

fn repo_file_at(root: &Path, p: &str) -> String {
    std::fs::read_to_string(root.join(p)).unwrap()
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(bin)).find(|p| p.is_file())
}

#[test]
fn template_unit_separates_env_file_journal_port_and_logs_per_instance() {
    let unit = repo_file("deploy/kinetic@.service");
    for needle in [
        "EnvironmentFile=/etc/kinetic/%i.env",
        "--config /etc/kinetic/%i.toml",
        "KINETIC__STORAGE__PATH=/var/lib/kinetic/%i/kinetic.db",
        "StateDirectory=kinetic/%i",
        "SyslogIdentifier=kinetic-%i",
        "RestartPreventExitStatus=2",
    ] {
        assert!(unit.contains(needle), "kinetic@.service lacks {needle}");
    }
    assert!(unit.contains("KINETIC__API__LISTEN"), "the template says where each instance's port is set");
}

/// The stop timeouts in the deploy files, in seconds.
fn seconds_after(text: &str, key: &str) -> Vec<u64> {
    text.match_indices(key)
        .filter_map(|(i, _)| {
            let rest = &text[i + key.len()..];
            let digits: String =
                rest.chars().skip_while(|c| !c.is_ascii_digit()).take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

#[test]
fn docker_files_run_a_dry_run_that_stops_cleanly_and_gives_up_on_config_errors() {
    let readme = repo_file("README.md");
    let docker_section = &readme[readme.find("### Docker").unwrap()..];
    let docker_section = &docker_section[..docker_section.find("\n## ").unwrap_or(docker_section.len())];
    assert!(docker_section.contains("kinetic run --dry-run"), "README example runs live:\n{docker_section}");
    assert!(docker_section.contains("--restart on-failure:3"), "{docker_section}");
    let grace = kinetic::commands::run::SHUTDOWN_BUDGET.as_secs();
    for (file, text, key) in [
        ("README.md", docker_section.to_string(), "--stop-timeout"),
        ("deploy/Dockerfile", repo_file("deploy/Dockerfile"), "--stop-timeout"),
        ("deploy/compose.yaml", repo_file("deploy/compose.yaml"), "stop_grace_period:"),
        ("deploy/kinetic.service", repo_file("deploy/kinetic.service"), "TimeoutStopSec="),
        ("deploy/kinetic@.service", repo_file("deploy/kinetic@.service"), "TimeoutStopSec="),
    ] {
        let found = seconds_after(&text, key);
        assert!(!found.is_empty(), "{file} sets no {key}");
        assert!(found.iter().all(|s| *s > grace), "{file}: {key} {found:?} not above the {grace} s shutdown budget");
    }
    let compose = repo_file("deploy/compose.yaml");
    for needle in [
        "restart: on-failure:3",
        "command: [\"run\", \"--dry-run\"]",
        "127.0.0.1:9184:9184",
        "dockerfile: deploy/Dockerfile",
    ] {
        assert!(compose.contains(needle), "compose.yaml lacks {needle}");
    }
    let ignore = repo_file(".dockerignore");
    for needle in ["target/", ".git/", "data/*.db"] {
        assert!(ignore.lines().any(|l| l.trim() == needle), ".dockerignore lacks {needle}");
    }
}

/// The HEALTHCHECK command of the Dockerfile, as an argv.
fn healthcheck_argv() -> Vec<String> {
    let dockerfile = repo_file("deploy/Dockerfile");
    let start = dockerfile.find("HEALTHCHECK").expect("a HEALTHCHECK");
    let cmd = &dockerfile[start..];
    let json = &cmd[cmd.find("CMD [").unwrap() + 4..];
    let json = &json[..json.find('\n').unwrap_or(json.len())];
    serde_json::from_str(json).unwrap()
}

/// Serves one request with `status_line`, then closes.
fn one_shot_server(status_line: &'static str) -> (u16, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        // Read the whole request first: closing with unread bytes would reset the connection.
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        let _ = s.write_all(format!("{status_line}\r\nContent-Length: 2\r\n\r\nok").as_bytes());
        let _ = s.shutdown(std::net::Shutdown::Write);
        String::from_utf8_lossy(&request).into_owned()
    });
    (port, handle)
}

#[test]
fn docker_healthcheck_asks_health_and_wants_200() {
    let argv = healthcheck_argv();
    assert_eq!(argv[0], "bash");
    let run = |port: u16| {
        let args: Vec<String> = argv[1..].iter().map(|a| a.replace("9184", &port.to_string())).collect();
        Command::new(&argv[0]).args(&args).status().unwrap().success()
    };
    let (port, server) = one_shot_server("HTTP/1.1 200 OK");
    assert!(run(port), "healthy daemon reported unhealthy");
    assert!(server.join().unwrap().starts_with("GET /health HTTP/1.0\r\n"));
    let (port, server) = one_shot_server("HTTP/1.1 503 Service Unavailable");
    assert!(!run(port), "503 reported healthy");
    server.join().unwrap();
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    assert!(!run(closed), "nothing listening reported healthy");
}
