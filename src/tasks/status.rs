//! `/status` and `/metrics` from the position manager's state: built after a step, written
//! into the shared snapshot with one short write lock.

use std::collections::VecDeque;

use rust_decimal::prelude::*;

use crate::api::{Metrics, Mode, OpenOrderStatus, PositionStatus, SignalStatus, StatusSnapshot};
use crate::config::Settings;
use crate::core::data_hub::SharedHub;
use crate::core::liveness::Liveness;
use crate::core::models::{TimestampMs, plain_decimal};
use crate::exchange::Exchange;
use crate::manager::trading_core::TradingCore;
use crate::store::OrderType;
use crate::tasks::scanner::ScanReport;

/// What a snapshot is built from.
pub struct StatusInputs<'a> {
    pub core: &'a TradingCore,
    pub hub: &'a SharedHub,
    pub scan: &'a ScanReport,
    pub recent_signals: &'a VecDeque<SignalStatus>,
    pub dry_run: bool,
    pub started_at: TimestampMs,
    pub last_tick: Option<TimestampMs>,
    pub liveness: &'a Liveness,
    pub requests_in_flight: usize,
}

fn dec_f64(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(0.0)
}

/// The `/status` document.
pub fn snapshot(i: &StatusInputs<'_>) -> StatusSnapshot {
    let core = i.core;
    let (upnl, _) = core.exposure();
    let wallet = core.account().wallet_balance;
    let equity = wallet + upnl;
    let streams = i.hub.read().map(|h| h.stream_statuses()).unwrap_or_default();
    let positions: Vec<PositionStatus> = core
        .manager()
        .positions()
        .map(|m| {
            let p = &m.position;
            let mark = core.mark(&p.symbol);
            PositionStatus {
                symbol: p.symbol.clone(),
                direction: p.direction,
                entry_price: plain_decimal(p.entry_price),
                qty: plain_decimal(m.ladder.remaining_qty),
                original_qty: plain_decimal(p.original_qty),
                leverage: p.leverage,
                stop: plain_decimal(m.ladder.stop),
                stage: p.stage,
                tp1: plain_decimal(m.ladder.tp1_price),
                tp2: plain_decimal(m.ladder.tp2_price),
                trail_start: plain_decimal(m.ladder.trail_start_price),
                best_price: plain_decimal(m.ladder.best_price),
                mark_price: mark.map(plain_decimal),
                unrealized_pnl: mark.map(|px| {
                    plain_decimal(((px - p.entry_price) * m.ladder.remaining_qty * p.direction.sign()).round_dp(8))
                }),
                stop_on_exchange: core.stop_on_exchange(&p.symbol),
                order_in_flight: core.in_flight(&p.symbol),
                entry_time: p.entry_time,
            }
        })
        .collect();
    let open_orders: Vec<OpenOrderStatus> = core
        .resting_stops()
        .map(|s| OpenOrderStatus {
            symbol: s.symbol.clone(),
            order_type: OrderType::StopMarket,
            side: s.side,
            qty: plain_decimal(s.qty),
            trigger_price: plain_decimal(s.trigger_price),
            algo_id: s.algo_id,
        })
        .collect();
    StatusSnapshot {
        mode: if i.dry_run { Mode::DryRun } else { Mode::Live },
        equity: plain_decimal(equity.round_dp(8)),
        wallet_balance: plain_decimal(wallet.round_dp(8)),
        unrealized_pnl: plain_decimal(upnl.round_dp(8)),
        positions,
        open_orders,
        last_scan: (i.scan.time > 0).then(|| i.scan.clone()),
        recent_signals: i.recent_signals.iter().cloned().collect(),
        risk: core.risk_view(),
        streams,
        last_monitor_tick: i.last_tick,
        started_at: i.started_at,
        exchange_reachable: i.liveness.exchange_reachable(),
        requests_in_flight: i.requests_in_flight,
        api_key: None,
        control: Default::default(),
    }
}

/// Gauges and counters for `/metrics`.
pub fn export_metrics<E: Exchange>(
    m: &Metrics,
    core: &TradingCore,
    hub: &SharedHub,
    ex: &E,
    settings: &Settings,
    now: TimestampMs,
) {
    let (upnl, _) = core.exposure();
    let wallet = core.account().wallet_balance;
    let equity = wallet + upnl;
    m.equity_usdt.set(dec_f64(equity));
    m.wallet_balance_usdt.set(dec_f64(wallet));
    m.unrealized_pnl_usdt.set(dec_f64(upnl));
    m.open_positions.set(i64::try_from(core.manager().open_count()).unwrap_or(i64::MAX));
    let pct = if equity > Decimal::ZERO { dec_f64(upnl / equity * Decimal::ONE_HUNDRED) } else { 0.0 };
    m.emergency_distance_pct.set(pct + settings.risk.emergency_loss_pct);
    m.emergency_latched.set(i64::from(core.manager().emergency().is_some()));
    m.entries_paused.set(i64::from(core.paused()));
    let risk = &core.manager().risk;
    m.daily_loss_blocked.set(i64::from(risk.daily_latched));
    m.today_pnl_usdt.set(dec_f64(risk.today_pnl(equity)));
    let unprotected = core.manager().positions().filter(|p| !core.stop_on_exchange(&p.position.symbol)).count();
    m.positions_unprotected.set(i64::try_from(unprotected).unwrap_or(i64::MAX));
    let stats = ex.stats();
    m.rest_weight_used.set(i64::from(stats.rest_weight_used_1m));
    m.clock_offset_ms.set(stats.clock_offset_ms);
    let resting = i64::try_from(core.resting_stops().count()).unwrap_or(0);
    m.algo_orders_open.set(i64::from(stats.algo_orders_open).max(resting));
    m.algo_orders_limit.set(200);
    // Counters follow the core's own (monotonic) counts.
    let c = &core.counters;
    let follow = |counter: &prometheus_client::metrics::counter::Counter, target: u64| {
        let seen = counter.get();
        if target > seen {
            counter.inc_by(target - seen);
        }
    };
    follow(&m.protective_stops_repaired, c.stops_repaired);
    follow(&m.orphan_stops_cancelled, c.orphan_stops_cancelled);
    follow(&m.protective_stops_failed, c.stops_failed);
    follow(&m.dropped_messages.get_or_create(&Metrics::label("source", "exchange")), stats.dropped_messages);
    if let Ok(h) = hub.read() {
        for s in h.stream_statuses() {
            let age = s.last_message_at.map(|t| (now - t).max(0) as f64 / 1000.0).unwrap_or(f64::INFINITY);
            m.stream_staleness_secs.get_or_create(&Metrics::label("stream", &s.name)).set(age);
        }
    }
}
