//! Order outcomes: matching an answer to its request, and following the exchange's position.

use std::collections::BTreeSet;

use rust_decimal::prelude::*;

use crate::core::models::{LadderStage, TimestampMs};
use crate::exchange::ExchangePosition;
use crate::manager::commands::{Action, OrderRequest, OrderResult, Outcome, Record};
use crate::manager::exit_ladder::ExitReason;
use crate::manager::records;
use crate::store::OrderIntent;

use super::*;

impl TradingCore {
    // ----------------------------------------------------------------------------- outcomes

    /// The outcome of a command.
    pub fn on_outcome(&mut self, outcome: Outcome, now: TimestampMs) -> Vec<Action> {
        let mut out = Vec::new();
        let symbol = outcome.symbol.as_str();
        let flight = match self.urgent.get(symbol) {
            Some(f) if f.id == outcome.id => self.urgent.remove(symbol),
            _ => match self.in_flight.get(symbol) {
                Some(f) if f.id == outcome.id => self.in_flight.remove(symbol),
                _ => None,
            },
        };
        let Some(flight) = flight else {
            tracing::warn!(%symbol, id = outcome.id, "outcome of an unknown request ignored");
            return out;
        };
        // A failed cancel or read is retried at the next tick, not at once (a refusal that
        // persists must not turn into a request loop).
        let mut retry_next_tick = false;
        match (flight.request, outcome.result) {
            (OrderRequest::Entry { .. }, OrderResult::Entry(r)) => {
                self.on_entry_result(&mut out, outcome.id, symbol, r, now)
            }
            (OrderRequest::Close { req, reason, intent }, OrderResult::Close(r)) => {
                let emergency = intent == OrderIntent::Emergency;
                // Stops stay until flat: a partly filled emergency close leaves them (the next
                // round closes the rest; the audit then cancels what is orphaned).
                let flat = r.as_ref().is_ok_and(|rep| rep.executed_qty >= req.qty);
                self.on_close_result(&mut out, symbol, req.qty, reason, intent, r, now);
                if emergency && flat {
                    self.send(&mut out, symbol, OrderRequest::CancelAll, true, now);
                }
            }
            (OrderRequest::PlaceStop(_), OrderResult::StopPlaced(r)) => self.on_stop_placed(&mut out, symbol, r, now),
            (OrderRequest::CancelStop { algo_id }, OrderResult::StopCancelled(r)) => match r {
                Ok(()) => {
                    if let Some(s) = self.stops.remove(&algo_id) {
                        self.remember_cancelled(&s, now);
                    }
                }
                Err(e) => {
                    retry_next_tick = true;
                    tracing::warn!(%symbol, algo_id, error = %e, "cancel failed; retrying next tick");
                }
            },
            (OrderRequest::CancelAll, OrderResult::AllCancelled(r)) => match r {
                // Stops that came to rest after it was sent (a placement in flight) stay.
                Ok(()) => {
                    let gone: Vec<StopOrder> = self
                        .stops
                        .values()
                        .filter(|s| s.symbol == symbol && s.update_time <= flight.since)
                        .cloned()
                        .collect();
                    for s in gone {
                        self.stops.remove(&s.algo_id);
                        self.remember_cancelled(&s, now);
                    }
                }
                Err(e) => {
                    retry_next_tick = true;
                    tracing::warn!(%symbol, error = %e, "cancel-all failed; the audit retries");
                }
            },
            (OrderRequest::LookupOrder { client_order_id }, OrderResult::Lookup(r)) => match r {
                Ok(Some(report)) if report.executed_qty > Decimal::ZERO => {
                    self.lookup_attempts.remove(&client_order_id);
                    tracing::info!(%symbol, %client_order_id, qty = %report.executed_qty, price = %report.avg_price,
                        "protective stop execution found");
                    out.push(Action::Journal(Record::Order(records::order_report(
                        &report,
                        OrderIntent::ProtectiveStop,
                    ))));
                }
                Ok(Some(report)) if !report.status.is_final() => {
                    // Triggered but not filled yet: look again at the next tick.
                    let attempt = self.lookup_attempts.remove(&client_order_id).unwrap_or(0) + 1;
                    if attempt < 5 {
                        self.stop_lookups.entry(symbol.to_string()).or_default().insert(client_order_id, attempt);
                    }
                }
                Ok(r) => {
                    // Not found, or final without an execution (cancelled, expired): nothing
                    // to record.
                    tracing::debug!(%symbol, %client_order_id, status = ?r.map(|o| o.status), "stop lookup: no execution");
                    self.lookup_attempts.remove(&client_order_id);
                }
                Err(e) => {
                    let attempt = self.lookup_attempts.remove(&client_order_id).unwrap_or(0) + 1;
                    tracing::warn!(%symbol, %client_order_id, attempt, error = %e, "stop execution lookup failed");
                    if attempt < 5 {
                        self.stop_lookups.entry(symbol.to_string()).or_default().insert(client_order_id, attempt);
                    }
                }
            },
            (OrderRequest::ReadPosition, OrderResult::Position(r)) => match r {
                Ok(p) => {
                    self.needs_read.remove(symbol);
                    self.follow_exchange(&mut out, symbol, p, now);
                }
                Err(e) => {
                    retry_next_tick = true;
                    tracing::warn!(%symbol, error = %e, "position read failed; retrying next tick");
                }
            },
            (req, res) => tracing::error!(%symbol, ?req, ?res, "outcome does not match its request"),
        }
        self.check_emergency(&mut out, now);
        if !retry_next_tick {
            self.step_symbol(&mut out, symbol, now);
        }
        out
    }

    /// Keeps a cancelled stop's client id for a while (see `cancelled_stops`).
    fn remember_cancelled(&mut self, stop: &StopOrder, now: TimestampMs) {
        let list = self.cancelled_stops.entry(stop.symbol.clone()).or_default();
        list.retain(|(_, at)| now - *at <= CANCELLED_STOP_MEMORY_MS);
        list.push((stop.client_id.clone(), now));
    }

    /// Makes the exchange's position of `symbol` the truth for what we track.
    pub(super) fn follow_exchange(
        &mut self,
        out: &mut Vec<Action>,
        symbol: &str,
        p: Option<ExchangePosition>,
        now: TimestampMs,
    ) {
        let exchange_qty = p.as_ref().map(|p| p.qty).unwrap_or_default();
        match p {
            Some(p) if p.qty > Decimal::ZERO => {
                self.exchange.insert(symbol.to_string(), p);
            }
            _ => {
                self.exchange.remove(symbol);
            }
        }
        let unknown_close = self.unknown_closes.remove(symbol);
        let Some(mut mp) = self.pm.position(symbol).cloned() else {
            if exchange_qty > Decimal::ZERO && self.resync_requested_at.is_none() {
                tracing::warn!(%symbol, qty = %exchange_qty, "the exchange holds a position we do not track; adopting");
                self.resync_requested_at = Some(now);
                out.push(Action::Resync);
            }
            return;
        };
        let mut ours = mp.ladder.remaining_qty;
        if let Some((mut after, requested, reason)) = unknown_close
            && exchange_qty < ours
        {
            // A take-profit close of unknown outcome did execute (in whole or in part): the
            // ladder keeps the stage that close reached, so the level never fires twice.
            let took = (ours - exchange_qty).min(requested);
            after.ladder.remaining_qty = ours - took;
            after.position.qty = ours - took;
            self.pm.restore_managed(after);
            let price = self.mark(symbol).unwrap_or(mp.position.entry_price);
            tracing::warn!(%symbol, qty = %took, reason = reason.as_str(), "the close of unknown outcome executed");
            if let Some(t) = self.pm.on_exit_filled(symbol, took, price, Decimal::ZERO, reason, now) {
                self.finish_trade(out, &t, reason.as_str());
                return;
            }
            self.journal_position(out, symbol);
            ours -= took;
            mp = self.pm.position(symbol).cloned().unwrap_or(mp);
        }
        let awaiting = self.awaiting_stop.get(symbol).copied();
        if exchange_qty < ours || (awaiting.is_some() && exchange_qty.is_zero()) {
            // Closed on the exchange (its stop, a close whose answer we lost, a liquidation).
            let gone = ours - exchange_qty;
            let reason = awaiting.map(|a| a.reason).unwrap_or(if mp.position.stage == LadderStage::Trailing {
                ExitReason::TrailingStop
            } else {
                ExitReason::StopLoss
            });
            let price = self.mark(symbol).unwrap_or(mp.ladder.stop);
            // Our stops on the symbol may have executed: look their execution up — the resting
            // ones and those cancelled lately (a cancel also "succeeds" on a stop that had
            // already triggered, and its fill event may have been lost with the user stream).
            let mut ids: BTreeSet<String> =
                self.stops.values().filter(|s| s.symbol == symbol).map(|s| s.client_id.clone()).collect();
            ids.extend(self.cancelled_stops.remove(symbol).unwrap_or_default().into_iter().map(|(id, _)| id));
            if !ids.is_empty() {
                self.stop_lookups.entry(symbol.to_string()).or_default().extend(ids.into_iter().map(|id| (id, 0)));
            }
            let deducted = self.pm.reduce_remaining(symbol, gone);
            let booked =
                if awaiting.is_some() { awaiting.map(|a| a.qty).unwrap_or(gone).max(deducted) } else { deducted };
            if exchange_qty.is_zero() {
                self.awaiting_stop.remove(symbol);
            }
            tracing::warn!(%symbol, qty = %booked, %price, reason = reason.as_str(), "closed on the exchange; booked at the mark");
            if booked > Decimal::ZERO
                && let Some(t) = self.pm.on_exit_filled(symbol, booked, price, Decimal::ZERO, reason, now)
            {
                self.finish_trade(out, &t, "closed_on_exchange");
                return;
            }
            self.journal_position(out, symbol);
        } else if exchange_qty > ours && awaiting.is_none() {
            tracing::warn!(%symbol, ours = %ours, exchange = %exchange_qty, "the exchange holds more than we track; following it");
            self.pm.sync_quantity(symbol, exchange_qty);
            self.journal_position(out, symbol);
        } else if let Some(a) = awaiting
            && now - a.since > STOP_FILL_GRACE_MS
            && exchange_qty > Decimal::ZERO
        {
            tracing::warn!(%symbol, qty = %exchange_qty, "exchange-side stop did not fill in time; closing at market");
            self.awaiting_stop.remove(symbol);
            // The ladder took everything when the stop level was reached: the state before
            // this close holds what the exchange still has, so the fill is booked (and the
            // position finished) and a failure restores it.
            let mut before = mp.clone();
            before.ladder.remaining_qty = exchange_qty;
            before.position.qty = exchange_qty;
            self.pm.reduce_remaining(symbol, ours);
            self.before_close.insert(symbol.to_string(), before);
            self.send_close(out, symbol, exchange_qty, a.reason, OrderIntent::StopFallback, false, now);
        }
    }
}
