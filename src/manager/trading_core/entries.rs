//! Entries: a complete analysis in, the five risk checks, the entry order, its fill.

use rust_decimal::prelude::*;

use crate::config::MarginType as ConfigMarginType;
use crate::core::models::{TimestampMs, decimal_from_f64};
use crate::exchange::{ExchangeError, MarginType, MarketOrderRequest, OrderReport};
use crate::manager::commands::{Action, OrderRequest, Record, RequestId};
use crate::manager::exit_ladder::ExitReason;
use crate::manager::position_manager::{Analysis, EntryPlan};
use crate::manager::records;
use crate::manager::risk_checks::PortfolioSnapshot;
use crate::store::OrderIntent;

use super::*;

/// Why a signal that passed every check was not taken while entries are paused.
pub const PAUSED_REASON: &str = "entries paused by an operator";

impl TradingCore {
    // ------------------------------------------------------------------------------ entries

    /// A complete analysis from the analyzer: evaluates it (all five risk checks) and sends
    /// the entry if everything passes. `data_live` is false while a market stream is stale.
    pub fn on_signal(&mut self, analysis: &Analysis, data_live: bool, now: TimestampMs) -> Vec<Action> {
        let mut out = Vec::new();
        let symbol = analysis.symbol.as_str();
        self.last_decision = None;
        if !self.entries_enabled || !self.journal_ok || !data_live {
            tracing::info!(%symbol, entries = self.entries_enabled, journal_ok = self.journal_ok, data_live,
                "signal not evaluated: entries are off");
            return out;
        }
        if self.locked.contains(crate::exchange::binance::ACCOUNT_LOCK_KEY) || self.locked.contains(symbol) {
            tracing::warn!(%symbol, "skipped: locked by Binance's trading rules");
            return out;
        }
        let Some(info) = self.symbols.get(symbol).cloned() else { return out };
        let busy = !self.idle(symbol)
            || self.exchange.contains_key(symbol)
            || self.pending_entries.values().any(|(p, _)| p.signal.symbol == symbol);
        let price = self.mark(symbol).or_else(|| decimal_from_f64(analysis.m15_close));
        let Some(price) = price.filter(|p| *p > Decimal::ZERO) else { return out };
        let price = crate::core::models::round_to_increment(
            price,
            info.filters.tick_size,
            RoundingStrategy::MidpointAwayFromZero,
        );
        let (upnl, notional) = self.exposure();
        let snapshot = PortfolioSnapshot {
            equity: self.account.wallet_balance + upnl,
            available_balance: self.account.available_balance,
            open_positions: self.pm.open_count().max(self.exchange.len()),
            open_notional: notional,
            unrealized_pnl: upnl,
        };
        let mut decision =
            self.pm.evaluate_signal(analysis, now, price, &info.filters, info.max_leverage, &snapshot, busy);
        // Paused by an operator: the signal is evaluated and journaled as usual (so the
        // operator sees what was missed), and not taken.
        if self.paused && decision.outcome.is_ok() {
            decision.outcome = Err(PAUSED_REASON.to_string());
        }
        if !self.journal_records {
            records::log_signal(&decision, self.settings.strategy.min_confidence);
        } else if let Some(r) = records::signal(&decision, self.settings.strategy.min_confidence) {
            out.push(Action::Journal(r));
        }
        self.push_risk_state(&mut out);
        match &decision.outcome {
            Ok(plan) => {
                let qty = plan.qty;
                self.send_entry(&mut out, plan.clone(), qty, 0, now);
            }
            Err(reason) => {
                if decision.score_total.is_some_and(|s| s >= self.settings.strategy.min_confidence) {
                    tracing::info!(%symbol, score = decision.score_total, %reason, "signal not taken");
                }
            }
        }
        self.last_decision = Some(decision);
        out
    }

    /// Sends the entry of a plan already evaluated (a backtest of a hand-made plan, tests):
    /// the same order, fill, stop and ladder as an entry from [`TradingCore::on_signal`],
    /// without the risk checks.
    pub fn enter_plan(&mut self, plan: EntryPlan, now: TimestampMs) -> Vec<Action> {
        let mut out = Vec::new();
        if self.symbols.contains_key(&plan.signal.symbol) && self.idle(&plan.signal.symbol) {
            let qty = plan.qty;
            self.send_entry(&mut out, plan, qty, 0, now);
        }
        out
    }

    pub(super) fn send_entry(
        &mut self,
        out: &mut Vec<Action>,
        plan: EntryPlan,
        qty: Decimal,
        attempt: u32,
        now: TimestampMs,
    ) {
        let symbol = plan.signal.symbol.clone();
        let side = plan.signal.direction.entry_side();
        let cid = self.client_id("e", now);
        self.remember_own(&cid);
        let req = MarketOrderRequest { symbol: symbol.clone(), side, qty, reduce_only: false, client_order_id: cid };
        out.push(Action::Journal(Record::Order(records::order_intent(&req, OrderIntent::Entry, now))));
        tracing::info!(%symbol, side = side.as_str(), %qty, leverage = plan.leverage, score = plan.signal.confidence,
            client_order_id = %req.client_order_id, "entry order sent");
        let margin = match self.settings.exchange.margin_type {
            ConfigMarginType::Isolated => MarginType::Isolated,
            ConfigMarginType::Crossed => MarginType::Crossed,
        };
        let leverage = plan.leverage;
        self.send(out, &symbol, OrderRequest::Entry { req, margin, leverage }, false, now);
        self.pending_entries.insert(self.next_id, (plan, attempt));
    }

    pub(super) fn on_entry_result(
        &mut self,
        out: &mut Vec<Action>,
        id: RequestId,
        symbol: &str,
        r: Result<OrderReport, ExchangeError>,
        now: TimestampMs,
    ) {
        let Some((plan, attempt)) = self.pending_entries.remove(&id) else { return };
        let Some(filters) = self.symbols.get(symbol).map(|i| i.filters.clone()) else { return };
        match r {
            Ok(report) => {
                let fee = self.settle_own(&report.client_order_id);
                out.push(Action::Journal(Record::Order(records::order_report(&report, OrderIntent::Entry))));
                if report.executed_qty <= Decimal::ZERO {
                    tracing::warn!(%symbol, status = ?report.status, "entry did not fill");
                    return;
                }
                let Some(stop) =
                    self.pm.open_position(&plan, report.executed_qty, report.avg_price, fee, &filters, now)
                else {
                    tracing::error!(%symbol, "entry filled but could not be tracked; reading the exchange");
                    self.needs_read.insert(symbol.to_string());
                    out.push(Action::Resync);
                    return;
                };
                tracing::info!(%symbol, direction = plan.signal.direction.as_str(), qty = %report.executed_qty,
                    price = %report.avg_price, %stop, "entry filled");
                if let Some(mp) = self.pm.position(symbol) {
                    out.push(Action::Journal(Record::PositionOpened { position: mp.position.clone(), adopted: false }));
                }
                // A fill worse than the reference price may take the notional over its cap:
                // the excess (whole steps) is closed once the stop protects the full size.
                if let Some(cap) = plan.max_notional.filter(|_| report.avg_price > Decimal::ZERO) {
                    let keep = filters.floor_market_qty(cap / report.avg_price);
                    let trim = report.executed_qty - keep;
                    if trim > Decimal::ZERO && keep >= filters.market_min_qty() {
                        tracing::warn!(%symbol, filled = %report.executed_qty, %keep, %cap, price = %report.avg_price,
                            "fill above the notional cap; the excess will be closed");
                        self.pending_trims.insert(symbol.to_string(), trim);
                    }
                }
                // The protective stop goes out at once.
                self.protect_symbol(out, symbol, now);
            }
            Err(e) if e.is_insufficient_margin() && attempt == 0 => {
                let half = filters.floor_market_qty(plan.qty / Decimal::TWO);
                tracing::warn!(%symbol, qty = %plan.qty, %half, "insufficient margin (-2019): retrying once at half size");
                if half > Decimal::ZERO && half * plan.signal.entry_price >= filters.min_notional {
                    self.send_entry(out, plan, half, 1, now);
                }
            }
            Err(e) => {
                tracing::warn!(%symbol, error = %e, "entry failed; trade skipped; reading the exchange's position");
                // Whatever happened, the exchange's position is read before anything else:
                // an entry of unknown outcome that did execute is adopted with a stop.
                self.needs_read.insert(symbol.to_string());
                self.step_symbol(out, symbol, now);
            }
        }
    }

    /// Closes the part of a fill above the notional cap, once the stop covers the whole
    /// position; true when the close was sent.
    pub(super) fn trim_excess(&mut self, out: &mut Vec<Action>, symbol: &str, now: TimestampMs) -> bool {
        let Some(remaining) = self.pm.position(symbol).map(|m| m.ladder.remaining_qty) else {
            self.pending_trims.remove(symbol);
            return false;
        };
        let covered: Decimal = self.stops.values().filter(|s| s.symbol == symbol).map(|s| s.qty).sum();
        if covered < remaining {
            return false;
        }
        let Some(trim) = self.pending_trims.remove(symbol) else { return false };
        let Some(before) = self.pm.position(symbol).cloned() else { return false };
        let take = self.pm.reduce_remaining(symbol, trim.min(remaining));
        if take <= Decimal::ZERO {
            return false;
        }
        self.journal_position(out, symbol);
        self.before_close.insert(symbol.to_string(), before);
        self.send_close(out, symbol, take, ExitReason::NotionalTrim, OrderIntent::NotionalTrim, false, now);
        true
    }

    /// Fees of our order `cid` seen on the account stream so far; later fills are added to
    /// the position directly.
    pub(super) fn settle_own(&mut self, cid: &str) -> Decimal {
        // Client ids are unique and the newest are at the back: search from there.
        match self.own_orders.iter_mut().rev().find(|(id, _, _)| id == cid) {
            Some((_, fee, settled)) => {
                *settled = true;
                *fee
            }
            None => Decimal::ZERO,
        }
    }
}
