//! Protection: the stop audit for an idle symbol (placements before cancels) and the outcome of
//! a stop placement.

use rust_decimal::prelude::*;

use crate::core::models::{LadderStage, TimestampMs};
use crate::exchange::{ExchangeError, StopOrder, StopRequest};
use crate::manager::commands::{Action, OrderRequest, Record};
use crate::manager::exit_ladder::ExitReason;
use crate::manager::protection::{HeldPosition, ProtectionAction, RestingStop, audit};
use crate::manager::records;
use crate::store::OrderIntent;

use super::*;

impl TradingCore {
    // -------------------------------------------------------------------------- protection

    /// The stop the exchange should hold for `symbol`, and the repairs to get there (idle
    /// symbols only: a stop is never resized while a close is in flight).
    pub(super) fn protect_symbol(&mut self, out: &mut Vec<Action>, symbol: &str, now: TimestampMs) {
        if !self.idle(symbol)
            || self.awaiting_stop.contains_key(symbol)
            || self.needs_read.contains(symbol)
            || self.stop_firing(symbol, now)
        {
            return;
        }
        if self.protection_in_order(symbol) {
            return;
        }
        let held: Vec<HeldPosition> = self
            .pm
            .position(symbol)
            .filter(|m| m.ladder.remaining_qty > Decimal::ZERO)
            .map(|m| HeldPosition {
                symbol: symbol.to_string(),
                direction: m.position.direction,
                qty: m.ladder.remaining_qty,
                stop_price: m.ladder.stop,
            })
            .into_iter()
            .collect();
        if held.is_empty() && self.exchange.contains_key(symbol) {
            // The exchange holds a position we do not track: adopt it (resync) before
            // deciding anything about its stops.
            if self.resync_requested_at.is_none() {
                self.resync_requested_at = Some(now);
                out.push(Action::Resync);
            }
            return;
        }
        let resting: Vec<RestingStop> = self
            .stops
            .values()
            .filter(|s| s.symbol == symbol)
            .map(|s| RestingStop {
                id: s.algo_id.to_string(),
                symbol: s.symbol.clone(),
                side: s.side,
                qty: s.qty,
                trigger_price: s.trigger_price,
            })
            .collect();
        // Placements come first: one request now, the next after its outcome.
        let Some(action) = audit(&held, &resting).into_iter().next() else { return };
        match action {
            ProtectionAction::PlaceStop { symbol, side, qty, trigger_price, reason } => {
                tracing::info!(%symbol, %qty, trigger = %trigger_price, reason = reason.as_str(), "placing protective stop");
                if reason != crate::manager::protection::StopReason::Outdated {
                    self.counters.stops_repaired += 1;
                }
                let client_id = self.client_id("s", now);
                let req = StopRequest { symbol: symbol.clone(), side, qty, trigger_price, client_id };
                self.send(out, &symbol, OrderRequest::PlaceStop(req), false, now);
            }
            ProtectionAction::CancelStop { symbol, id, reason } => {
                let Ok(algo_id) = id.parse::<i64>() else { return };
                tracing::info!(%symbol, algo_id, reason = reason.as_str(), "cancelling stop");
                if reason == crate::manager::protection::StopReason::Orphan {
                    self.counters.orphan_stops_cancelled += 1;
                }
                self.send(out, &symbol, OrderRequest::CancelStop { algo_id }, false, now);
            }
        }
    }

    /// True when the audit below has nothing to repair for `symbol` and nothing to ask: the
    /// position's one stop rests at its size and price, or neither a position (ours or the
    /// exchange's) nor a stop exists. Checked without building the audit's inputs, because
    /// this is the answer at almost every mark and the audit runs at every one of them;
    /// anything else goes to the full audit.
    pub(super) fn protection_in_order(&self, symbol: &str) -> bool {
        let mut mine = self.stops.values().filter(|s| s.symbol == symbol);
        let first = mine.next();
        if mine.next().is_some() {
            return false;
        }
        let held = self.pm.position(symbol).filter(|m| m.ladder.remaining_qty > Decimal::ZERO);
        match (held, first) {
            (Some(m), Some(stop)) => {
                stop.side == m.position.direction.exit_side()
                    && stop.qty == m.ladder.remaining_qty
                    && stop.trigger_price == m.ladder.stop
            }
            (None, None) => !self.exchange.contains_key(symbol),
            _ => false,
        }
    }

    pub(super) fn on_stop_placed(
        &mut self,
        out: &mut Vec<Action>,
        symbol: &str,
        r: Result<StopOrder, ExchangeError>,
        now: TimestampMs,
    ) {
        match r {
            Ok(stop) => {
                tracing::info!(%symbol, qty = %stop.qty, trigger = %stop.trigger_price, algo_id = stop.algo_id,
                    "protective stop resting on the exchange");
                out.push(Action::Journal(Record::Order(records::stop_order(&stop))));
                self.stops.insert(stop.algo_id, stop);
            }
            Err(e) if e.code() == Some(-2021) => {
                if self.needs_read.contains(symbol) {
                    // The exchange's position is uncertain (it reported a change, or a request
                    // failed): read it first; the audit that follows decides.
                    tracing::warn!(%symbol, "stop would trigger immediately; reading the exchange's position first");
                    return;
                }
                tracing::warn!(%symbol, "stop would trigger immediately; closing at market");
                let reason = if self.pm.position(symbol).is_some_and(|m| m.position.stage == LadderStage::Trailing) {
                    ExitReason::TrailingStop
                } else {
                    ExitReason::StopLoss
                };
                let Some(before) = self.pm.position(symbol).cloned() else { return };
                let take = self.pm.reduce_remaining(symbol, before.ladder.remaining_qty);
                if take > Decimal::ZERO {
                    self.before_close.insert(symbol.to_string(), before);
                    self.send_close(out, symbol, take, reason, OrderIntent::StopImmediate, false, now);
                }
            }
            Err(e) => {
                tracing::error!(%symbol, error = %e, "could not place protective stop; reading the exchange, then again");
                self.needs_read.insert(symbol.to_string());
            }
        }
    }
}
