//! The SQLite journal: WAL mode, migrations, round trips, and state that survives a restart.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use kinetic::core::models::{Direction, LadderStage, PartialExit, Position, Side};
use kinetic::store::{
    EquitySnapshot, Journal, JournalFill, JournalOrder, OrderIntent, OrderState, OrderType, RiskCheckRecord,
    SignalRecord,
};
use rust_decimal_macros::dec;
use serde_json::json;

fn position(symbol: &str) -> Position {
    Position {
        symbol: symbol.into(),
        direction: Direction::Long,
        entry_price: dec!(65000.1),
        original_qty: dec!(0.010),
        qty: dec!(0.010),
        leverage: 10,
        stop_loss: dec!(63700),
        take_profit: dec!(66950.1),
        trailing_stop: None,
        partial_exits: vec![],
        best_price: dec!(65000.1),
        peak_pnl: dec!(0),
        stage: LadderStage::Open,
        entry_time: 1_763_000_000_000,
    }
}

fn order(cid: &str, status: OrderState) -> JournalOrder {
    JournalOrder {
        client_order_id: cid.into(),
        exchange_order_id: None,
        symbol: "BTCUSDT".into(),
        side: Side::Buy,
        order_type: OrderType::Market,
        intent: OrderIntent::Entry,
        qty: dec!(0.010),
        price: None,
        trigger_price: None,
        reduce_only: false,
        status,
        filled_qty: dec!(0),
        avg_fill_price: None,
        created_at: 1,
        updated_at: 1,
    }
}

#[test]
fn file_journal_is_wal_and_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/kinetic.db");
    let j = Journal::open(&path).unwrap();
    assert_eq!(j.journal_mode().unwrap(), "wal");
    // storage.sync: NORMAL by default (survives kill -9), FULL on request (survives power loss).
    assert_eq!(j.sync_level().unwrap(), 1);
    j.set_full_sync(true).unwrap();
    assert_eq!(j.sync_level().unwrap(), 2);
    assert_eq!(j.schema_version().unwrap(), 2);
    drop(j);
    // Reopening does not re-run migrations.
    assert_eq!(Journal::open(&path).unwrap().schema_version().unwrap(), 2);
}

#[test]
fn position_ladder_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kinetic.db");
    {
        let j = Journal::open(&path).unwrap();
        let mut p = position("BTCUSDT");
        j.open_position(&p, false).unwrap();
        p.qty = dec!(0.006);
        p.stage = LadderStage::Tp1Done;
        p.best_price = dec!(66100);
        p.partial_exits.push(PartialExit { price: dec!(65975.1), qty: dec!(0.004), time: 5, reason: "tp1".into() });
        assert!(j.update_position(&p).unwrap());
        j.set_state("emergency_latch", &json!({"fired_at": 42, "reason": "unrealized -5.2%"}), 42).unwrap();
        // Dropped without any explicit close, as after a kill.
    }
    let j = Journal::open(&path).unwrap();
    let open = j.open_positions().unwrap();
    assert_eq!(open.len(), 1);
    let p = &open[0].position;
    assert_eq!(p.qty, dec!(0.006));
    assert_eq!(p.stage, LadderStage::Tp1Done);
    assert_eq!(p.best_price, dec!(66100));
    assert_eq!(p.partial_exits.len(), 1);
    assert_eq!(j.state("emergency_latch").unwrap().unwrap()["fired_at"], 42);
    j.clear_state("emergency_latch").unwrap();
    assert!(j.state("emergency_latch").unwrap().is_none());
}

#[test]
fn one_open_position_per_symbol_and_close_moves_it_to_history() {
    let j = Journal::open_in_memory().unwrap();
    j.open_position(&position("BTCUSDT"), false).unwrap();
    assert!(j.open_position(&position("BTCUSDT"), false).is_err(), "second open BTCUSDT position must be refused");
    j.open_position(&position("ETHUSDT"), true).unwrap();
    assert!(j.close_position("BTCUSDT", 99, "stop_loss", dec!(-13.0), dec!(0.65)).unwrap());
    assert!(!j.close_position("BTCUSDT", 100, "stop_loss", dec!(0), dec!(0)).unwrap());
    let open = j.open_positions().unwrap();
    assert_eq!(open.iter().map(|p| p.position.symbol.as_str()).collect::<Vec<_>>(), vec!["ETHUSDT"]);
    assert!(open[0].adopted);
    let closed = j.closed_positions(10).unwrap();
    assert_eq!(closed[0].close_reason.as_deref(), Some("stop_loss"));
    assert_eq!(closed[0].realized_pnl, dec!(-13.0));
    // The symbol can be traded again after its position closed.
    j.open_position(&position("BTCUSDT"), false).unwrap();
}

#[test]
fn orders_upsert_by_client_id_and_fills_deduplicate() {
    let j = Journal::open_in_memory().unwrap();
    j.upsert_order(&order("ke-entry-1", OrderState::Pending)).unwrap();
    assert_eq!(j.live_orders("BTCUSDT").unwrap().len(), 1);
    let mut filled = order("ke-entry-1", OrderState::Filled);
    filled.exchange_order_id = Some(8_886_774);
    filled.filled_qty = dec!(0.010);
    filled.avg_fill_price = Some(dec!(65000.1));
    filled.updated_at = 2;
    j.upsert_order(&filled).unwrap();
    let got = j.order("ke-entry-1").unwrap().unwrap();
    assert_eq!(got.status, OrderState::Filled);
    assert_eq!(got.exchange_order_id, Some(8_886_774));
    assert_eq!(got.created_at, 1);
    assert!(j.live_orders("BTCUSDT").unwrap().is_empty());

    let fill = JournalFill {
        client_order_id: "ke-entry-1".into(),
        trade_id: 7,
        symbol: "BTCUSDT".into(),
        side: "BUY".into(),
        price: dec!(65000.1),
        qty: dec!(0.010),
        fee: dec!(0.325),
        realized_pnl: dec!(0),
        time: 2,
    };
    assert!(j.record_fill(&fill).unwrap());
    assert!(!j.record_fill(&fill).unwrap(), "a replayed fill is not counted twice");
    assert_eq!(j.fills_of("ke-entry-1").unwrap(), vec![fill]);
}

#[test]
fn signals_risk_checks_and_equity_round_trip() {
    let j = Journal::open_in_memory().unwrap();
    let s = SignalRecord {
        time: 10,
        symbol: "SOLUSDT".into(),
        direction: Direction::Short,
        confidence: 75,
        entry_price: dec!(150.12),
        stop_loss: dec!(152.5),
        take_profit: dec!(145.6164),
        breakdown: json!([{"name": "4h_trend", "points": 25}]),
    };
    let id = j.record_signal(&s).unwrap();
    assert_eq!(j.recent_signals(5).unwrap(), vec![s]);
    j.record_risk_check(&RiskCheckRecord {
        time: 10,
        symbol: "SOLUSDT".into(),
        signal_id: Some(id),
        passed: false,
        results: json!([{"check": "max_open_positions", "passed": false}]),
    })
    .unwrap();
    assert_eq!(j.risk_check_count().unwrap(), 1);
    assert!(j.last_equity().unwrap().is_none());
    for (t, e) in [(1, dec!(10000)), (2, dec!(10012.5))] {
        j.record_equity(&EquitySnapshot { time: t, wallet_balance: e, unrealized_pnl: dec!(0), equity: e }).unwrap();
    }
    assert_eq!(j.last_equity().unwrap().unwrap().equity, dec!(10012.5));
}
