//! Journal records built from the trading core's events: one place that turns requests,
//! reports, stops, fills, decisions and closed trades into the journal's typed rows.

use rust_decimal::Decimal;
use serde_json::json;

use crate::core::models::{Direction, LadderStage, Position, TimestampMs, plain_decimal};
use crate::exchange::{Fill, MarketOrderRequest, OrderReport, StopOrder, StopStatus};
use crate::manager::commands::Record;
use crate::manager::position_manager::{ClosedTrade, EntryDecision};
use crate::store::{JournalFill, JournalOrder, OrderIntent, OrderState, OrderType, RiskCheckRecord, SignalRecord};

/// A market order journaled before it is sent.
pub fn order_intent(req: &MarketOrderRequest, intent: OrderIntent, now: TimestampMs) -> JournalOrder {
    JournalOrder {
        client_order_id: req.client_order_id.clone(),
        exchange_order_id: None,
        symbol: req.symbol.clone(),
        side: req.side,
        order_type: OrderType::Market,
        intent,
        qty: req.qty,
        price: None,
        trigger_price: None,
        reduce_only: req.reduce_only,
        status: OrderState::Pending,
        filled_qty: Decimal::ZERO,
        avg_fill_price: None,
        created_at: now,
        updated_at: now,
    }
}

/// What the exchange reported about a market order.
pub fn order_report(r: &OrderReport, intent: OrderIntent) -> JournalOrder {
    JournalOrder {
        client_order_id: r.client_order_id.clone(),
        exchange_order_id: Some(r.order_id),
        symbol: r.symbol.clone(),
        side: r.side,
        order_type: OrderType::Market,
        intent,
        qty: r.orig_qty,
        price: None,
        trigger_price: None,
        reduce_only: r.reduce_only,
        status: r.status.into(),
        filled_qty: r.executed_qty,
        avg_fill_price: (r.executed_qty > Decimal::ZERO).then_some(r.avg_price),
        created_at: r.update_time,
        updated_at: r.update_time,
    }
}

/// A protective stop as the exchange reported it.
pub fn stop_order(s: &StopOrder) -> JournalOrder {
    let status = match s.status {
        StopStatus::New => OrderState::New,
        StopStatus::Triggered => OrderState::Triggered,
        StopStatus::Finished => OrderState::Finished,
        StopStatus::Canceled => OrderState::Canceled,
        StopStatus::Expired => OrderState::Expired,
        StopStatus::Rejected => OrderState::Rejected,
        // Unknown to this build: journaled as triggered (no longer resting).
        StopStatus::Other => OrderState::Triggered,
    };
    JournalOrder {
        client_order_id: s.client_id.clone(),
        exchange_order_id: Some(s.algo_id),
        symbol: s.symbol.clone(),
        side: s.side,
        order_type: OrderType::StopMarket,
        intent: OrderIntent::ProtectiveStop,
        qty: s.qty,
        price: None,
        trigger_price: Some(s.trigger_price),
        reduce_only: true,
        status,
        filled_qty: Decimal::ZERO,
        avg_fill_price: None,
        created_at: s.update_time,
        updated_at: s.update_time,
    }
}

pub fn fill(f: &Fill) -> JournalFill {
    JournalFill {
        client_order_id: f.client_order_id.clone(),
        trade_id: f.trade_id,
        symbol: f.symbol.clone(),
        side: f.side.as_str().to_string(),
        price: f.price,
        qty: f.qty,
        fee: f.fee,
        realized_pnl: f.realized_pnl,
        time: f.time,
    }
}

/// The log line of [`signal`] (its risk verdicts), for a caller that keeps no journal.
pub fn log_signal(d: &EntryDecision, min_confidence: u8) {
    let (Some(total), Some(direction)) = (d.score_total, d.direction) else { return };
    if total < min_confidence {
        return;
    }
    if let Some(r) = &d.risk {
        tracing::info!(symbol = %d.symbol, score = total, direction = direction.as_str(), passed = r.passed(),
            checks = %r.checks.iter().map(|c| format!("{}={}", c.name, if c.passed {"pass"} else {"FAIL"})).collect::<Vec<_>>().join(" "),
            "signal with risk verdicts");
    }
}

/// The signal and its five risk verdicts, for decisions at or above `min_confidence`.
pub fn signal(d: &EntryDecision, min_confidence: u8) -> Option<Record> {
    let (Some(total), Some(direction)) = (d.score_total, d.direction) else { return None };
    if total < min_confidence {
        return None;
    }
    let breakdown = json!({ "components": d.components, "outcome": match &d.outcome {
        Ok(p) => json!({"enter": true, "leverage": p.leverage, "qty": plain_decimal(p.qty), "notional": plain_decimal(p.notional)}),
        Err(r) => json!({"enter": false, "reason": r}),
    }});
    let (entry, stop, tp) = match &d.outcome {
        Ok(p) => (p.signal.entry_price, p.signal.stop_loss, p.signal.take_profit),
        Err(_) => (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO),
    };
    log_signal(d, min_confidence);
    Some(Record::Signal {
        signal: SignalRecord {
            time: d.time,
            symbol: d.symbol.clone(),
            direction,
            confidence: total,
            entry_price: entry,
            stop_loss: stop,
            take_profit: tp,
            breakdown,
        },
        risk: d.risk.as_ref().map(|r| RiskCheckRecord {
            time: d.time,
            symbol: d.symbol.clone(),
            signal_id: None,
            passed: r.passed(),
            results: serde_json::to_value(&r.checks).unwrap_or_default(),
        }),
    })
}

/// The position row of a finished trade (all exits, nothing left).
pub fn final_position(t: &ClosedTrade) -> Position {
    Position {
        symbol: t.symbol.clone(),
        direction: t.direction,
        entry_price: t.entry_price,
        original_qty: t.qty,
        qty: Decimal::ZERO,
        leverage: t.leverage,
        stop_loss: Decimal::ZERO,
        take_profit: Decimal::ZERO,
        trailing_stop: None,
        partial_exits: t.partial_exits.clone(),
        best_price: t.exit_price,
        peak_pnl: Decimal::ZERO,
        stage: LadderStage::Trailing,
        entry_time: t.entry_time,
    }
}

/// A placeholder row for a symbol the journal lists but nothing else describes.
pub fn empty_position(symbol: &str) -> Position {
    Position {
        symbol: symbol.to_string(),
        direction: Direction::Long,
        entry_price: Decimal::ZERO,
        original_qty: Decimal::ZERO,
        qty: Decimal::ZERO,
        leverage: 1,
        stop_loss: Decimal::ZERO,
        take_profit: Decimal::ZERO,
        trailing_stop: None,
        partial_exits: Vec::new(),
        best_price: Decimal::ZERO,
        peak_pnl: Decimal::ZERO,
        stage: LadderStage::Trailing,
        entry_time: 0,
    }
}
