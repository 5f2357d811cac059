//! The position-manager loop's heartbeat and the exchange's reachability, on one clock (the
//! process's monotonic clock), shared with `/health` and the systemd watchdog. The heartbeat
//! is written where the work happens — at the end of every manager step — so a loop that
//! hangs stops feeding both, whatever the wall clock or the exchange clock do.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Shared liveness state.
#[derive(Debug)]
pub struct Liveness {
    start: Instant,
    /// Milliseconds since `start` of the last beat, plus one (0 = never).
    last_beat: AtomicU64,
    exchange_reachable: AtomicBool,
    /// Why start-up has not finished yet (the exchange cannot be reached ...), while it retries.
    startup_problem: Mutex<Option<String>>,
    /// How far the pipeline has got: for `/status`, and for replays that must not outrun it.
    pub progress: Progress,
}

/// Counters of the live pipeline's progress (exchange times in ms).
#[derive(Debug, Default)]
pub struct Progress {
    /// Close time of the latest 15m candle the analyzer has fed and evaluated.
    pub analyzed_m15_close: AtomicI64,
    /// Analyses the analyzer sent / the position manager handled.
    pub signals_sent: AtomicU64,
    pub signals_handled: AtomicU64,
    /// Exchange time of the latest mark price the position manager acted on.
    pub mark_time: AtomicI64,
    /// Exchange requests in flight after the manager's last step.
    pub requests_in_flight: AtomicU64,
}

impl Default for Liveness {
    fn default() -> Self {
        // The base lies an hour back (where the platform allows) so that beat times are never
        // clamped at zero.
        let now = Instant::now();
        let start = now.checked_sub(Duration::from_secs(3600)).unwrap_or(now);
        Liveness {
            start,
            last_beat: AtomicU64::new(0),
            exchange_reachable: AtomicBool::new(true),
            startup_problem: Mutex::new(None),
            progress: Progress::default(),
        }
    }
}

impl Liveness {
    /// The loop did a step now.
    pub fn beat(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.last_beat.store(ms.saturating_add(1), Ordering::Relaxed);
    }

    /// Records a beat that happened `age` ago (a test of `/health` without waiting).
    pub fn beat_aged(&self, age: Duration) {
        let ms = u64::try_from(self.start.elapsed().saturating_sub(age).as_millis()).unwrap_or(u64::MAX - 1);
        self.last_beat.store(ms.saturating_add(1), Ordering::Relaxed);
    }

    /// Time since the last beat; `None` before the first.
    pub fn since_beat(&self) -> Option<Duration> {
        match self.last_beat.load(Ordering::Relaxed) {
            0 => None,
            b => Some(self.start.elapsed().saturating_sub(Duration::from_millis(b - 1))),
        }
    }

    pub fn set_exchange_reachable(&self, ok: bool) {
        self.exchange_reachable.store(ok, Ordering::Relaxed);
    }

    pub fn exchange_reachable(&self) -> bool {
        self.exchange_reachable.load(Ordering::Relaxed)
    }

    /// Records why start-up is still retrying (`None` once it succeeded).
    pub fn set_startup_problem(&self, problem: Option<String>) {
        if let Ok(mut slot) = self.startup_problem.lock() {
            *slot = problem;
        }
    }

    /// Why start-up is still retrying, if it is.
    pub fn startup_problem(&self) -> Option<String> {
        self.startup_problem.lock().ok().and_then(|p| p.clone())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn beats_are_measured_on_the_monotonic_clock() {
        let l = Liveness::default();
        assert_eq!(l.since_beat(), None);
        l.beat();
        assert!(l.since_beat().unwrap() < Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(30));
        assert!(l.since_beat().unwrap() >= Duration::from_millis(30));
    }
}
