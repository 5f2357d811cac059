//! Operator commands as the core sees them: pause and resume entries, clear the emergency
//! latch, ask for a full account read. Force exits are [`TradingCore::force_exit`]. Each takes
//! `now` and returns the actions to carry out, like every other event.

use crate::core::models::TimestampMs;
use crate::manager::commands::Action;

use super::TradingCore;

impl TradingCore {
    /// Pauses (`true`) or resumes new entries. Open positions keep their ladders, trailing
    /// stops and protection either way; the pause is persisted by the caller.
    pub fn set_paused(&mut self, paused: bool) {
        if self.paused != paused {
            tracing::warn!(paused, "operator {} new entries", if paused { "paused" } else { "resumed" });
        }
        self.paused = paused;
    }

    pub fn paused(&self) -> bool {
        self.paused
    }

    /// Clears the emergency latch (new entries allowed again once the other checks pass).
    /// Emergency closes already under way go on until every position is flat. Returns the
    /// journal write of the risk state and whether a latch was set.
    pub fn clear_emergency(&mut self) -> (Vec<Action>, bool) {
        let mut out = Vec::new();
        let was = self.pm.emergency().is_some();
        self.pm.set_emergency(None);
        if was {
            tracing::warn!("emergency latch cleared by the operator");
        }
        self.push_risk_state(&mut out);
        (out, was)
    }

    /// Asks for a full account read (balance, positions, stops) now; `false` when one is
    /// already in flight (its answer reconciles just the same).
    pub fn request_resync(&mut self, now: TimestampMs) -> (Vec<Action>, bool) {
        if self.resync_requested_at.is_some() {
            return (Vec::new(), false);
        }
        self.resync_requested_at = Some(now);
        (vec![Action::Resync], true)
    }

    /// Symbols the core tracks a position for.
    pub fn tracked_symbols(&self) -> Vec<String> {
        self.pm.positions().map(|m| m.position.symbol.clone()).collect()
    }
}
