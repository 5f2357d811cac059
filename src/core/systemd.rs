//! systemd integration: readiness, watchdog keep-alives and stopping notices over
//! `$NOTIFY_SOCKET`. Every call is a no-op when not run under systemd (`Type=notify`), and a
//! failure to notify is logged, never fatal.

use std::time::Duration;

use sd_notify::NotifyState;

/// Tells systemd the daemon is up (after reconciliation, before trading).
pub fn ready() {
    send(&[NotifyState::Ready, NotifyState::Status("trading")]);
}

/// Keeps the watchdog fed; call from the monitor loop so a stuck loop gets the service restarted.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// Tells systemd a graceful shutdown has begun.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// Free-form status line shown by `systemctl status`.
pub fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}

/// The watchdog interval systemd expects keep-alives within, when enabled.
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0u64;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec))
}

fn send(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(err) = sd_notify::notify(false, states) {
        tracing::warn!(error = %err, "systemd notification failed");
    }
}
