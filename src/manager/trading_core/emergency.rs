//! The emergency rule and the monitor tick.

use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::prelude::*;

use crate::core::models::TimestampMs;
use crate::manager::commands::{Action, OrderRequest, Record};
use crate::manager::exit_ladder::ExitReason;
use crate::store::OrderIntent;

use super::*;

impl TradingCore {
    // --------------------------------------------------------------------------- emergency

    pub(super) fn check_emergency(&mut self, out: &mut Vec<Action>, now: TimestampMs) {
        let upnl = self.unrealized_pnl();
        let equity = self.account.wallet_balance + upnl;
        let has_positions = !self.exchange.is_empty() || self.pm.open_count() > 0;
        let was_latched = self.pm.emergency().is_some();
        self.pm.risk.roll_day(now, equity);
        if self.pm.risk.observe_limit(equity, &self.limits) {
            tracing::warn!(equity = %equity.round_dp(2), start = %self.pm.risk.day_start_equity.round_dp(2),
                "daily loss limit reached: no new entries until the next UTC day");
        }
        if has_positions && self.limits.emergency(upnl, equity) && !self.emergency_flatten {
            tracing::error!(unrealized = %upnl.round_dp(2), equity = %equity.round_dp(2),
                "EMERGENCY EXIT: portfolio unrealized loss reached the limit; closing everything");
            self.pm.latch_emergency(now);
            self.emergency_flatten = true;
        }
        self.pm.clear_emergency_if_due(now);
        if was_latched && self.pm.emergency().is_none() {
            tracing::info!("emergency latch cleared (next UTC day)");
        }
        self.push_risk_state(out);
        if self.emergency_flatten {
            self.flatten(out, now);
        }
    }

    /// Emergency: close every position the exchange reports or we track, at market,
    /// reduce-only, without waiting behind requests in flight. Stops stay until flat.
    pub(super) fn flatten(&mut self, out: &mut Vec<Action>, now: TimestampMs) {
        let mut targets: BTreeMap<String, Decimal> =
            self.exchange.values().map(|p| (p.symbol.clone(), p.qty)).collect();
        for m in self.pm.positions() {
            // What the ladder handed to the exchange's stop is ours until a fill or a read says
            // otherwise.
            let handed = self.awaiting_stop.get(&m.position.symbol).map(|a| a.qty).unwrap_or_default();
            let q = targets.entry(m.position.symbol.clone()).or_default();
            *q = (*q).max(m.ladder.remaining_qty + handed);
        }
        if targets.is_empty() {
            self.emergency_flatten = false;
            return;
        }
        for (symbol, qty) in targets {
            if self.urgent.contains_key(&symbol) || qty <= Decimal::ZERO {
                continue;
            }
            if self.needs_read.contains(&symbol) {
                // After a failed close: read the position before closing again.
                self.send(out, &symbol, OrderRequest::ReadPosition, true, now);
                continue;
            }
            let awaiting = self.awaiting_stop.remove(&symbol);
            if let Some(m) = self.pm.position(&symbol).cloned() {
                // What the ladder already handed to the exchange's stop is part of the state
                // before this close: a close that does not execute restores it (and the read
                // that follows books it), one that does books it.
                let mut before = m.clone();
                before.ladder.remaining_qty += awaiting.map(|a| a.qty).unwrap_or_default();
                before.position.qty = before.ladder.remaining_qty;
                self.before_close.insert(symbol.clone(), before);
                self.pm.reduce_remaining(&symbol, m.ladder.remaining_qty);
            }
            self.send_close(out, &symbol, qty, ExitReason::Emergency, OrderIntent::Emergency, true, now);
        }
    }

    /// Closes the whole of every tracked position (or of `only`) at market, reduce-only, for
    /// `reason`; its stop stays until the position is flat. A symbol with a request in flight
    /// is left for now (returned): ask again once it is idle.
    pub fn force_exit(
        &mut self,
        only: Option<&str>,
        reason: ExitReason,
        now: TimestampMs,
    ) -> (Vec<Action>, Vec<String>) {
        let mut out = Vec::new();
        let mut busy = Vec::new();
        let symbols: Vec<String> =
            self.pm.positions().map(|m| m.position.symbol.clone()).filter(|s| only.is_none_or(|o| o == s)).collect();
        for symbol in symbols {
            if !self.idle(&symbol) || self.awaiting_stop.contains_key(&symbol) {
                busy.push(symbol);
                continue;
            }
            let Some(before) = self.pm.position(&symbol).cloned() else { continue };
            let take = self.pm.reduce_remaining(&symbol, before.ladder.remaining_qty);
            if take <= Decimal::ZERO {
                continue;
            }
            tracing::info!(%symbol, qty = %take, reason = reason.as_str(), "closing the whole position at market");
            self.journal_position(&mut out, &symbol);
            self.before_close.insert(symbol.clone(), before);
            self.send_close(&mut out, &symbol, take, reason, OrderIntent::ForceExit, false, now);
        }
        (out, busy)
    }

    pub(super) fn push_risk_state(&mut self, out: &mut Vec<Action>) {
        if !self.journal_records {
            return;
        }
        let since = self.pm.emergency().map(|l| l.since);
        if self.last_risk_state.as_ref().is_some_and(|(book, latch)| *book == self.pm.risk && *latch == since) {
            return;
        }
        self.last_risk_state = Some((self.pm.risk.clone(), since));
        out.push(Action::Journal(Record::RiskState(self.risk_state())));
    }

    // ---------------------------------------------------------------------------- monitor

    /// The 5 s monitor tick: emergency rule, every idle symbol's next step (ladder at the
    /// latest mark, stop audit, reads after failures), overdue stops, the periodic resync,
    /// an equity point every minute.
    pub fn on_tick(&mut self, now: TimestampMs) -> Vec<Action> {
        let mut out = Vec::new();
        self.ticks += 1;
        self.check_emergency(&mut out, now);
        // Overdue exchange-side stops: read the position; the read closes what is left.
        let overdue: Vec<String> = self
            .awaiting_stop
            .iter()
            .filter(|(_, a)| now - a.since > STOP_FILL_GRACE_MS)
            .map(|(s, _)| s.clone())
            .collect();
        for s in overdue {
            self.needs_read.insert(s);
        }
        let mut symbols: BTreeSet<String> = self.held_symbols();
        symbols.extend(self.needs_read.iter().cloned());
        symbols.extend(self.stops.values().map(|s| s.symbol.clone()));
        symbols.extend(self.stop_lookups.keys().cloned());
        for s in symbols {
            self.step_symbol(&mut out, &s, now);
        }
        if self.ticks.is_multiple_of(RESYNC_EVERY_TICKS) && self.resync_requested_at.is_none() {
            self.resync_requested_at = Some(now);
            out.push(Action::Resync);
        }
        if now - self.last_equity_record >= 60_000 {
            self.last_equity_record = now;
            if self.journal_records {
                out.push(Action::Journal(Record::Equity(self.equity_snapshot(now))));
            }
        }
        out
    }

    pub fn equity_snapshot(&self, now: TimestampMs) -> crate::store::EquitySnapshot {
        let upnl = self.unrealized_pnl();
        crate::store::EquitySnapshot {
            time: now,
            wallet_balance: self.account.wallet_balance,
            unrealized_pnl: upnl,
            equity: self.account.wallet_balance + upnl,
        }
    }
}
