//! Stops that fired on the exchange but did not close their position. Only a resting (`NEW`)
//! stop counts as protection; a stop reported TRIGGERING/TRIGGERED (or FINISHED) while its
//! position stays open longer than `monitor.stuck_stop_grace_secs` has failed — reported on
//! Binance's demo environment in 2026-10: marked triggered, no order ever produced. Then an
//! alert is raised (error log, `stops_failed` → `kinetic_protective_stops_failed`) and, per
//! `monitor.stuck_stop_action`, what is left is closed at market or a new stop is placed.
//!
//! During the grace the audit places no replacement: the triggered order is expected to close
//! the position, and a second stop would race it.

use rust_decimal::prelude::*;

use crate::config::StuckStopAction;
use crate::core::models::{LadderStage, TimestampMs};
use crate::exchange::StopOrder;
use crate::manager::commands::Action;
use crate::manager::exit_ladder::ExitReason;
use crate::store::OrderIntent;

use super::*;

/// A protective stop seen firing while its position was open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FiredStop {
    pub algo_id: i64,
    pub since: TimestampMs,
}

impl TradingCore {
    fn stuck_grace_ms(&self) -> i64 {
        i64::try_from(self.settings.monitor.stuck_stop_grace_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
    }

    fn holds_open(&self, symbol: &str) -> bool {
        self.pm.position(symbol).is_some_and(|m| m.ladder.remaining_qty > Decimal::ZERO)
    }

    /// A stop of ours left the resting state by firing: start the grace clock (once per
    /// symbol: the first firing counts).
    pub(super) fn note_fired_stop(&mut self, stop: &StopOrder, now: TimestampMs) {
        if self.holds_open(&stop.symbol) {
            self.fired_stops.entry(stop.symbol.clone()).or_insert(FiredStop { algo_id: stop.algo_id, since: now });
        }
    }

    /// True while `symbol`'s fired stop is within its grace (the audit waits).
    pub(super) fn stop_firing(&self, symbol: &str, now: TimestampMs) -> bool {
        self.fired_stops.get(symbol).is_some_and(|f| now - f.since < self.stuck_grace_ms())
    }

    /// Settles `symbol`'s fired stop: forgotten once the position is gone; after the grace,
    /// an alert and the configured action (idle symbols only). True when a request was sent.
    pub(super) fn settle_fired_stop(&mut self, out: &mut Vec<Action>, symbol: &str, now: TimestampMs) -> bool {
        let Some(fired) = self.fired_stops.get(symbol).copied() else { return false };
        if !self.holds_open(symbol) {
            self.fired_stops.remove(symbol);
            return false;
        }
        if now - fired.since < self.stuck_grace_ms() || !self.idle(symbol) {
            return false;
        }
        self.fired_stops.remove(symbol);
        self.counters.stops_failed += 1;
        let action = self.settings.monitor.stuck_stop_action;
        tracing::error!(%symbol, algo_id = fired.algo_id, open_for_ms = now - fired.since, action = ?action,
            "ALERT: protective stop triggered on the exchange but the position is still open: the stop failed");
        match action {
            // The audit, which runs next, sees no resting stop and places one.
            StuckStopAction::Replace => false,
            StuckStopAction::Close => {
                let Some(before) = self.pm.position(symbol).cloned() else { return false };
                let reason = if before.position.stage == LadderStage::Trailing {
                    ExitReason::TrailingStop
                } else {
                    ExitReason::StopLoss
                };
                self.awaiting_stop.remove(symbol);
                let take = self.pm.reduce_remaining(symbol, before.ladder.remaining_qty);
                if take <= Decimal::ZERO {
                    return false;
                }
                self.before_close.insert(symbol.to_string(), before);
                self.send_close(out, symbol, take, reason, OrderIntent::StopFallback, false, now);
                true
            }
        }
    }
}
