//! Account events (orders, stops, balances, positions) and full account reads (resync,
//! reconciliation).

use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::prelude::*;

use crate::analyzer::entry_exit::round_stop;
use crate::core::models::{Direction, LadderStage, Position, TimestampMs, decimal_from_f64, plain_decimal};
use crate::exchange::sim_book::LIQUIDATION_PREFIX;
use crate::exchange::{ExchangeEvent, ExchangePosition, Fill, OrderReport, StopOrder};
use crate::manager::commands::{AccountSnapshot, Action, Record};
use crate::manager::exit_ladder::ExitReason;
use crate::manager::reconcile::{AdoptionPolicy, ExchangeHolding, ReconcileAction, reconcile};
use crate::manager::records;
use crate::store::OrderIntent;

use super::*;

impl TradingCore {
    // ---------------------------------------------------------------------- account events

    /// An event from the account (user-data) stream.
    pub fn on_account_event(&mut self, ev: ExchangeEvent, now: TimestampMs) -> Vec<Action> {
        let mut out = Vec::new();
        match ev {
            ExchangeEvent::OrderUpdate { report, fill } => self.on_order_update(&mut out, report, fill, now),
            ExchangeEvent::StopUpdate(stop) => {
                out.push(Action::Journal(Record::Order(records::stop_order(&stop))));
                if stop.status.is_resting() {
                    self.stops.insert(stop.algo_id, stop);
                } else {
                    if matches!(
                        stop.status,
                        crate::exchange::StopStatus::Triggered | crate::exchange::StopStatus::Finished
                    ) {
                        tracing::info!(symbol = %stop.symbol, trigger = %stop.trigger_price, status = ?stop.status,
                            "protective stop triggered on the exchange");
                        self.note_fired_stop(&stop, now);
                        // Its execution is looked up once the symbol is idle: the journal gets it
                        // even when the fill's own event is lost.
                        self.stop_lookups.entry(stop.symbol.clone()).or_default().insert(stop.client_id.clone(), 0);
                    }
                    self.stops.remove(&stop.algo_id);
                }
            }
            ExchangeEvent::AccountUpdate { balance, positions, time, transfer } => {
                if let Some(amount) = transfer.filter(|a| !a.is_zero()) {
                    tracing::info!(%amount, "deposit/withdrawal: not counted as profit or loss today");
                    self.pm.risk.record_transfer(amount);
                    self.push_risk_state(&mut out);
                }
                if let Some(b) = balance {
                    self.account.wallet_balance = b.wallet_balance;
                    self.account.available_balance = b.available_balance;
                    self.account.updated_at = time;
                }
                for p in positions {
                    let symbol = p.symbol.clone();
                    if p.qty.is_zero() {
                        self.exchange.remove(&symbol);
                        if self.pm.has_position(&symbol) {
                            // Closed on the exchange: read it to book how.
                            self.needs_read.insert(symbol.clone());
                        }
                    } else {
                        let tracked = self.pm.has_position(&symbol);
                        self.exchange.insert(symbol.clone(), p);
                        if !tracked
                            && self.idle(&symbol)
                            && self.pending_entries.values().all(|(pl, _)| pl.signal.symbol != symbol)
                        {
                            self.needs_read.insert(symbol.clone());
                        }
                    }
                    self.step_symbol(&mut out, &symbol, now);
                }
                self.check_emergency(&mut out, now);
            }
            ExchangeEvent::MarginCall { symbols, .. } => tracing::warn!(?symbols, "MARGIN CALL from the exchange"),
            ev if ev.is_user_reconnect() => {
                // Fills, stop triggers and position changes sent while the stream was down are
                // lost: read the account now rather than at the next periodic resync.
                tracing::info!("user stream reconnected: reading the account for events it may have missed");
                if self.resync_requested_at.is_none() {
                    self.resync_requested_at = Some(now);
                    out.push(Action::Resync);
                }
            }
            other => tracing::debug!(?other, "market event on the account channel ignored"),
        }
        out
    }

    pub(super) fn on_order_update(
        &mut self,
        out: &mut Vec<Action>,
        report: OrderReport,
        fill: Option<Fill>,
        now: TimestampMs,
    ) {
        if let Some(f) = &fill {
            out.push(Action::Journal(Record::Fill(records::fill(f))));
        }
        // Client ids are unique and the newest are at the back: search from there.
        let own = self.own_orders.iter().rposition(|(id, _, _)| *id == report.client_order_id);
        if let Some(i) = own {
            // Our market order: its REST answer books it; the fill brings the real commission.
            if let (Some(f), Some((_, fee, settled))) = (&fill, self.own_orders.get_mut(i)) {
                if *settled {
                    self.pm.add_fee(&f.symbol, f.fee);
                } else {
                    *fee += f.fee;
                }
            }
            return;
        }
        if report.client_order_id.starts_with("ke-s-") {
            out.push(Action::Journal(Record::Order(records::order_report(&report, OrderIntent::ProtectiveStop))));
        }
        // Not ours: a triggered protective stop, a liquidation or a manual order.
        let Some(f) = fill else { return };
        let Some(mp) = self.pm.position(&f.symbol).cloned() else { return };
        if f.side != mp.position.direction.exit_side() {
            tracing::warn!(symbol = %f.symbol, "a foreign order added to our position; reading the exchange");
            self.needs_read.insert(f.symbol.clone());
            return;
        }
        let reason = match self.awaiting_stop.get_mut(&f.symbol) {
            Some(a) => {
                let r = a.reason;
                a.qty -= f.qty.min(a.qty);
                if a.qty.is_zero() {
                    self.awaiting_stop.remove(&f.symbol);
                }
                r
            }
            None => {
                self.pm.reduce_remaining(&f.symbol, f.qty);
                if mp.position.stage == LadderStage::Trailing { ExitReason::TrailingStop } else { ExitReason::StopLoss }
            }
        };
        // The exchange's own liquidation order (reserved client id).
        let reason = if report.client_order_id.starts_with(LIQUIDATION_PREFIX) {
            tracing::error!(symbol = %f.symbol, qty = %f.qty, price = %f.price, "position LIQUIDATED by the exchange");
            ExitReason::Liquidation
        } else {
            reason
        };
        tracing::info!(symbol = %f.symbol, qty = %f.qty, price = %f.price, reason = reason.as_str(), "exchange-side stop filled");
        let trade = self.pm.on_exit_filled(&f.symbol, f.qty, f.price, f.fee, reason, now);
        self.journal_position(out, &f.symbol);
        if let Some(t) = trade {
            self.finish_trade(out, &t, reason.as_str());
        }
    }

    // ------------------------------------------------------------------------------ resync

    /// A full account read: balances, positions and stops from the exchange are the truth.
    pub fn on_snapshot(&mut self, snap: AccountSnapshot, now: TimestampMs) -> Vec<Action> {
        let mut out = Vec::new();
        self.resync_requested_at = None;
        if let Some(b) = &snap.balance {
            self.set_balance(b, now);
        }
        if let Some(stops) = snap.stops {
            // Stops placed after the read was requested are not in it yet.
            let recent: Vec<StopOrder> =
                self.stops.values().filter(|s| s.update_time >= snap.requested_at).cloned().collect();
            // Stops that vanished without an event may have executed: look them up.
            let listed: BTreeSet<i64> = stops.iter().filter(|s| s.status.is_resting()).map(|s| s.algo_id).collect();
            for gone in self.stops.values().filter(|s| !listed.contains(&s.algo_id)) {
                self.stop_lookups.entry(gone.symbol.clone()).or_default().insert(gone.client_id.clone(), 0);
            }
            self.set_stops(stops);
            for s in recent {
                self.stops.insert(s.algo_id, s);
            }
        }
        if let Some(positions) = snap.positions {
            // Symbols with a request in flight, or whose own read is due after a failure (it
            // resolves what the failure left open), are left to that.
            let busy: BTreeSet<String> =
                self.in_flight.keys().chain(self.urgent.keys()).chain(self.needs_read.iter()).cloned().collect();
            let reported: BTreeMap<String, ExchangePosition> = positions
                .into_iter()
                .filter(|p| p.qty > Decimal::ZERO && !busy.contains(&p.symbol))
                .map(|p| (p.symbol.clone(), p))
                .collect();
            for (s, p) in &reported {
                self.exchange.insert(s.clone(), p.clone());
            }
            let gone: Vec<String> =
                self.exchange.keys().filter(|s| !busy.contains(*s) && !reported.contains_key(*s)).cloned().collect();
            for s in gone {
                self.exchange.remove(&s);
            }
            let holdings: Vec<ExchangeHolding> = reported.values().map(ExchangeHolding::from).collect();
            let known: Vec<Position> = self
                .pm
                .positions()
                .filter(|m| !busy.contains(&m.position.symbol) && !self.awaiting_stop.contains_key(&m.position.symbol))
                .map(|m| m.position.clone())
                .collect();
            let skip: BTreeSet<String> = busy.iter().chain(self.awaiting_stop.keys()).cloned().collect();
            let holdings: Vec<ExchangeHolding> = holdings.into_iter().filter(|h| !skip.contains(&h.symbol)).collect();
            self.apply_reconcile(&mut out, &known, &holdings, false, now);
        }
        self.check_emergency(&mut out, now);
        // Held symbols, and those whose stops may have executed unseen: looked up at once.
        let mut symbols = self.held_symbols();
        symbols.extend(self.stop_lookups.keys().cloned());
        for s in symbols {
            self.step_symbol(&mut out, &s, now);
        }
        out
    }

    /// Keep, adopt or drop positions so that we track what the exchange holds. At start-up
    /// `known` are the journal's open positions (restored here); later they are ours.
    pub fn apply_reconcile(
        &mut self,
        out: &mut Vec<Action>,
        known: &[Position],
        holdings: &[ExchangeHolding],
        startup: bool,
        now: TimestampMs,
    ) {
        let policy = AdoptionPolicy {
            max_stop_pct: decimal_from_f64(self.settings.strategy.max_stop_pct).unwrap_or(Decimal::from(3)),
            trail_start_pct: decimal_from_f64(self.settings.strategy.trail_start_pct).unwrap_or(Decimal::from(3)),
        };
        for action in reconcile(known, holdings, &policy, now) {
            match action {
                ReconcileAction::Keep { position, size_changed } => {
                    if startup {
                        let symbol = position.symbol.clone();
                        if self.restore_position(position.clone()) {
                            tracing::info!(%symbol, qty = %position.qty, stage = ?position.stage,
                                stop = %position.stop_loss, "position restored from the journal");
                            out.push(Action::Journal(Record::PositionUpdated(position)));
                        }
                    } else if size_changed {
                        tracing::warn!(symbol = %position.symbol, qty = %position.qty,
                            "exchange size differs from ours; following the exchange");
                        self.pm.sync_quantity(&position.symbol, position.qty);
                        self.journal_position(out, &position.symbol);
                    }
                }
                ReconcileAction::Adopt { mut position } | ReconcileAction::CloseAdopted { mut position } => {
                    let beyond = self.mark(&position.symbol).is_some_and(|m| match position.direction {
                        Direction::Long => m <= position.stop_loss,
                        Direction::Short => m >= position.stop_loss,
                    });
                    let Some(tick) = self.symbols.get(&position.symbol).map(|i| i.filters.tick_size) else {
                        tracing::error!(symbol = %position.symbol, "position on an unknown symbol; cannot manage it");
                        continue;
                    };
                    position.stop_loss = round_stop(position.direction, position.stop_loss, tick);
                    let symbol = position.symbol.clone();
                    tracing::warn!(%symbol, direction = %position.direction.as_str(), qty = %position.qty,
                        entry = %position.entry_price, stop = %position.stop_loss,
                        "adopting a position the journal does not know, with a conservative ladder");
                    out.push(Action::Journal(Record::PositionOpened { position: position.clone(), adopted: true }));
                    let qty = position.qty;
                    if !self.restore_position(position) {
                        continue;
                    }
                    if beyond && self.idle(&symbol) {
                        tracing::warn!(%symbol, "adopted position is beyond its stop; closing at market");
                        if let Some(before) = self.pm.position(&symbol).cloned() {
                            self.before_close.insert(symbol.clone(), before);
                        }
                        let take = self.pm.reduce_remaining(&symbol, qty);
                        self.send_close(
                            out,
                            &symbol,
                            take,
                            ExitReason::StopLoss,
                            OrderIntent::AdoptedBeyondStop,
                            false,
                            now,
                        );
                    }
                }
                ReconcileAction::Drop { symbol } => {
                    if startup {
                        out.push(Action::Journal(Record::PositionClosed {
                            position: known
                                .iter()
                                .find(|p| p.symbol == symbol)
                                .cloned()
                                .map(|mut p| {
                                    p.qty = Decimal::ZERO;
                                    p
                                })
                                .unwrap_or_else(|| records::empty_position(&symbol)),
                            time: now,
                            reason: "closed_while_offline".into(),
                            gross_pnl: Decimal::ZERO,
                            fees: Decimal::ZERO,
                        }));
                        continue;
                    }
                    tracing::warn!(%symbol, "position no longer exists on the exchange; recording it closed");
                    self.follow_exchange(out, &symbol, None, now);
                }
            }
        }
    }

    /// `/status` view of one tracked position's protection.
    pub fn stop_on_exchange(&self, symbol: &str) -> bool {
        self.stops.values().any(|s| s.symbol == symbol)
    }

    /// Risk figures for `/status`.
    pub fn risk_view(&self) -> crate::api::RiskStatus {
        let rb = &self.pm.risk;
        let equity = self.equity();
        crate::api::RiskStatus {
            emergency_latched: self.pm.emergency().is_some(),
            emergency_since: self.pm.emergency().map(|l| l.since),
            emergency_flattening: self.emergency_flatten,
            daily_latched: rb.daily_latched,
            day_start_equity: plain_decimal(rb.day_start_equity.round_dp(8)),
            today_pnl: plain_decimal(rb.today_pnl(equity).round_dp(8)),
            day_realized_pnl: plain_decimal(rb.day_realized_pnl.round_dp(8)),
            consecutive_losses: rb.consecutive_losses,
            loss_pause_until: rb.loss_pause_until,
            symbol_cooldowns: rb.symbol_cooldowns.clone(),
            locked_symbols: self.locked.clone(),
            entries_enabled: self.entries_enabled && !self.paused && self.journal_ok,
            paused: self.paused,
        }
    }
}
