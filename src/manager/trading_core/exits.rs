//! Exits: the ladder at each mark (one level per close), closes and their outcomes, the exact
//! restore of a close that did not execute, finished trades.

use rust_decimal::prelude::*;

use crate::core::models::{Side, TimestampMs};
use crate::exchange::{ExchangeError, MarketOrderRequest, OrderReport};
use crate::manager::commands::{Action, OrderRequest, Record};
use crate::manager::exit_ladder::{ExitAction, ExitReason};
use crate::manager::position_manager::{ClosedTrade, ManagedPosition};
use crate::manager::records;
use crate::store::OrderIntent;

use super::*;

impl TradingCore {
    // ------------------------------------------------------------------------------- exits

    /// A new mark price for `symbol` (time `at` from the exchange): emergency rule, then the
    /// exit ladder of the symbol if it is idle.
    pub fn on_mark(&mut self, symbol: &str, price: Decimal, at: TimestampMs, now: TimestampMs) -> Vec<Action> {
        let mut out = Vec::new();
        if price <= Decimal::ZERO {
            return out;
        }
        match self.marks.get_mut(symbol) {
            Some(m) => *m = (price, at),
            None => {
                self.marks.insert(symbol.to_string(), (price, at));
            }
        }
        self.check_emergency(&mut out, now);
        if self.pm.has_position(symbol) {
            self.step_symbol(&mut out, symbol, now);
        }
        out
    }

    /// The next thing to do for one symbol, if nothing is in flight for it: read its
    /// position after a failure, run the ladder at the latest mark, or repair its stop.
    pub(super) fn step_symbol(&mut self, out: &mut Vec<Action>, symbol: &str, now: TimestampMs) {
        if !self.idle(symbol) || self.emergency_flatten {
            return;
        }
        if self.needs_read.contains(symbol) {
            self.send(out, symbol, OrderRequest::ReadPosition, false, now);
            return;
        }
        // A stop that fired without closing its position (after the read above, if one was due).
        if self.settle_fired_stop(out, symbol, now) {
            return;
        }
        if let Some(ids) = self.stop_lookups.get_mut(symbol)
            && let Some((client_order_id, attempt)) = ids.pop_first()
        {
            self.lookup_attempts.insert(client_order_id.clone(), attempt);
            if ids.is_empty() {
                self.stop_lookups.remove(symbol);
            }
            self.send(out, symbol, OrderRequest::LookupOrder { client_order_id }, false, now);
            return;
        }
        if self.pending_trims.contains_key(symbol) && self.trim_excess(out, symbol, now) {
            return;
        }
        if let Some(&(price, at)) = self.marks.get(symbol)
            && now - at <= MARK_STALE_MS
            && !self.awaiting_stop.contains_key(symbol)
            && self.ladder_step(out, symbol, price, now)
        {
            return;
        }
        self.protect_symbol(out, symbol, now);
    }

    /// Runs the ladder at `price`; returns true when a close was sent.
    pub(super) fn ladder_step(
        &mut self,
        out: &mut Vec<Action>,
        symbol: &str,
        price: Decimal,
        now: TimestampMs,
    ) -> bool {
        let Some(mp) = self.pm.position(symbol) else { return false };
        // Most prices move nothing but the best price: find out on a copy of the ladder
        // before copying the whole position for a possible restore.
        let mut ladder = mp.ladder.clone();
        if ladder.on_price(price).is_empty() {
            self.pm.on_quiet_price(symbol, ladder, price);
            return false;
        }
        let before = mp.clone();
        let mut actions = self.pm.on_price(symbol, price);
        let closes: Vec<Decimal> = actions
            .iter()
            .filter_map(|a| match a {
                ExitAction::Close { trigger_price, .. } => Some(*trigger_price),
                _ => None,
            })
            .collect();
        if let Some(&first) = closes.first() {
            // One level per close: run the ladder again from where it was, only as far as the
            // first level; the next level fires when this close has executed. (Also with one
            // close: a level that found nothing left to take must not be marked done when the
            // close then fills only in part.)
            self.pm.restore_managed(before.clone());
            actions = self.pm.on_price(symbol, first);
        }
        let mut sent = false;
        for a in actions {
            match a {
                ExitAction::Close { qty, reason, trigger_price } => {
                    tracing::info!(%symbol, %qty, level = %trigger_price, reason = reason.as_str(), "take-profit hit");
                    // Write-ahead: the ladder's new stage is journaled before the close is sent,
                    // so a crash in between can never make the same level fire twice.
                    self.journal_position(out, symbol);
                    self.before_close.insert(symbol.to_string(), before.clone());
                    self.send_close(out, symbol, qty, reason, intent_of(reason), false, now);
                    sent = true;
                    break;
                }
                ExitAction::CloseAll { qty, reason, trigger_price } => {
                    let side = before.position.direction.exit_side();
                    let stop_fires = self.stops.values().any(|s| {
                        s.symbol == symbol
                            && s.side == side
                            && match side {
                                Side::Sell => price <= s.trigger_price,
                                Side::Buy => price >= s.trigger_price,
                            }
                    });
                    self.journal_position(out, symbol);
                    sent = true;
                    if stop_fires {
                        tracing::info!(%symbol, %qty, stop = %trigger_price, reason = reason.as_str(),
                            "stop level reached; expecting the exchange-side stop to fill");
                        self.awaiting_stop.insert(symbol.to_string(), AwaitingStop { qty, reason, since: now });
                    } else {
                        // No stop of ours rests at this level (its placement failed or is in
                        // flight): nothing on the exchange will fill, close at market now.
                        tracing::warn!(%symbol, %qty, stop = %trigger_price, reason = reason.as_str(),
                            "stop level reached with no stop resting there; closing at market");
                        self.before_close.insert(symbol.to_string(), before.clone());
                        self.send_close(out, symbol, qty, reason, OrderIntent::StopFallback, false, now);
                        break;
                    }
                }
                ExitAction::MoveStop { .. } => self.journal_position(out, symbol),
            }
        }
        sent
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_close(
        &mut self,
        out: &mut Vec<Action>,
        symbol: &str,
        qty: Decimal,
        reason: ExitReason,
        intent: OrderIntent,
        urgent: bool,
        now: TimestampMs,
    ) {
        let Some(side) = self
            .pm
            .position(symbol)
            .map(|m| m.position.direction.exit_side())
            .or_else(|| self.exchange.get(symbol).map(|p| p.direction.exit_side()))
        else {
            return;
        };
        let cid = self.client_id("x", now);
        self.remember_own(&cid);
        let req = MarketOrderRequest { symbol: symbol.to_string(), side, qty, reduce_only: true, client_order_id: cid };
        out.push(Action::Journal(Record::Order(records::order_intent(&req, intent, now))));
        self.send(out, symbol, OrderRequest::Close { req, reason, intent }, urgent, now);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_close_result(
        &mut self,
        out: &mut Vec<Action>,
        symbol: &str,
        requested: Decimal,
        reason: ExitReason,
        intent: OrderIntent,
        r: Result<OrderReport, ExchangeError>,
        now: TimestampMs,
    ) {
        let before = self.before_close.remove(symbol);
        match r {
            Ok(report) => {
                let fee = self.settle_own(&report.client_order_id);
                out.push(Action::Journal(Record::Order(records::order_report(&report, intent))));
                let filled = report.executed_qty;
                if filled.is_zero() {
                    self.restore_before(out, symbol, before, requested, reason);
                    self.needs_read.insert(symbol.to_string());
                    return;
                }
                // What the ladder took for this close (an emergency close may ask the exchange
                // for more than we track; reduce-only caps it at the position).
                let deducted = match (&before, self.pm.position(symbol)) {
                    (Some(b), Some(now_mp)) => {
                        (b.ladder.remaining_qty - now_mp.ladder.remaining_qty).max(Decimal::ZERO)
                    }
                    _ => requested,
                };
                let shortfall = deducted - filled.min(deducted);
                if shortfall > Decimal::ZERO || filled < requested {
                    tracing::warn!(%symbol, %shortfall, status = ?report.status, "close filled partly; reading the exchange");
                    self.needs_read.insert(symbol.to_string());
                }
                if shortfall > Decimal::ZERO {
                    self.pm.revert_close(symbol, shortfall, reason, false);
                }
                let filled = filled.min(deducted);
                tracing::info!(%symbol, qty = %filled, price = %report.avg_price, reason = reason.as_str(), "close filled");
                if !self.pm.has_position(symbol) || filled.is_zero() {
                    return;
                }
                // An emergency close took the whole remainder from the ladder already.
                let trade = self.pm.on_exit_filled(symbol, filled, report.avg_price, fee, reason, now);
                if reason == ExitReason::NotionalTrim {
                    self.pm.rebase_ladder(symbol);
                }
                self.journal_position(out, symbol);
                if let Some(t) = trade {
                    self.finish_trade(out, &t, reason.as_str());
                }
            }
            Err(e) if e.code() == Some(-2022) && !self.pm.has_position(symbol) => {
                // Reduce-only refused because the position is gone, and we booked it closed
                // meanwhile (its stop filled first): nothing to restore, nothing failed. The
                // read still confirms the exchange holds nothing.
                tracing::info!(%symbol, qty = %requested, reason = reason.as_str(),
                    "close not needed: the position was already closed on the exchange (reduce-only refused)");
                self.needs_read.insert(symbol.to_string());
            }
            Err(e) => {
                tracing::error!(%symbol, qty = %requested, error = %e,
                    "close failed; state restored to before it, stop kept; reading the exchange");
                if e.code() == Some(-2022) {
                    // Reduce-only refused: nothing left to close on the exchange.
                    tracing::warn!(%symbol, "the exchange holds no position to reduce");
                }
                if e.is_unknown_outcome()
                    && matches!(reason, ExitReason::TakeProfit1 | ExitReason::TakeProfit2)
                    && let Some(after) = self.pm.position(symbol).cloned()
                {
                    // It may have executed: the read that follows decides (see follow_exchange).
                    self.unknown_closes.insert(symbol.to_string(), (after, requested, reason));
                }
                self.restore_before(out, symbol, before, requested, reason);
                self.needs_read.insert(symbol.to_string());
            }
        }
    }

    /// Puts a position back exactly as it was before a close that did not execute.
    pub(super) fn restore_before(
        &mut self,
        out: &mut Vec<Action>,
        symbol: &str,
        before: Option<ManagedPosition>,
        requested: Decimal,
        reason: ExitReason,
    ) {
        match before {
            Some(mp) => self.pm.restore_managed(mp),
            None => self.pm.revert_close(symbol, requested, reason, true),
        }
        self.journal_position(out, symbol);
    }

    pub(super) fn finish_trade(&mut self, out: &mut Vec<Action>, t: &ClosedTrade, reason: &str) {
        tracing::info!(symbol = %t.symbol, direction = t.direction.as_str(), entry = %t.entry_price,
            exit = %t.exit_price.round_dp(8), pnl = %t.net_pnl().round_dp(4), fees = %t.fees.round_dp(4),
            reason = t.exit_reason.as_str(), "position closed");
        out.push(Action::Journal(Record::PositionClosed {
            position: records::final_position(t),
            time: t.exit_time,
            reason: reason.to_string(),
            gross_pnl: t.gross_pnl,
            fees: t.fees,
        }));
        self.awaiting_stop.remove(&t.symbol);
        self.before_close.remove(&t.symbol);
        self.pending_trims.remove(&t.symbol);
        if let Some(log) = self.closed_log.as_mut() {
            log.push(t.clone());
        }
        self.unknown_closes.remove(&t.symbol);
        self.push_risk_state(out);
    }

    pub(super) fn journal_position(&self, out: &mut Vec<Action>, symbol: &str) {
        if let Some(mp) = self.pm.position(symbol) {
            out.push(Action::Journal(Record::PositionUpdated(mp.position.clone())));
        }
    }
}
