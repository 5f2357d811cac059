//! The engine end to end on the paper exchange over a scripted public market: a crafted
//! market that scores ≥ 60 → leverage from the table, entry filled, protective stop resting
//! within the same flow, stop distance ≤ 3 %, notional ≤ the cap; the price walks → TP1 closes
//! 40 %, TP2 30 %, the trailing stop follows and closes the rest — for a long and a short. The
//! portfolio emergency exit closes everything and latches. The market source refuses (and
//! counts) every account call, proving the paper exchange never forwards one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use common::{CraftedMarket, ScriptedMarket, now_ms};
use kinetic::api::{Metrics, StatusSnapshot};
use kinetic::config::{ConfigSources, Settings, load};
use kinetic::core::models::{Direction, LadderStage, Side, Timeframe};
use kinetic::exchange::paper::PaperExchange;
use kinetic::exchange::{Exchange, ExchangeEvent};
use kinetic::store::Journal;
use kinetic::tasks::{Engine, EngineHandles};
use rust_decimal::Decimal;
use rust_decimal::prelude::*;
use tokio_util::sync::CancellationToken;

fn settings(extra: &[(&str, &str)]) -> Settings {
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("KINETIC__SCANNER__INTERVAL_SECS".into(), "3600".into());
    env.insert("KINETIC__MONITOR__INTERVAL_SECS".into(), "1".into());
    for (k, v) in extra {
        env.insert((*k).to_string(), (*v).to_string());
    }
    load(&ConfigSources { file: None, env }).expect("valid test config")
}

struct Harness {
    market: Arc<ScriptedMarket>,
    paper: Arc<PaperExchange<ScriptedMarket>>,
    status: Arc<RwLock<StatusSnapshot>>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    journal_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start(markets: &[&CraftedMarket], settings: Settings) -> Harness {
        let market = Arc::new(ScriptedMarket::new(markets));
        let paper = Arc::new(PaperExchange::new(Arc::clone(&market), &settings.paper));
        let dir = tempfile::tempdir().unwrap();
        let journal_path = dir.path().join("journal.db");
        let journal = Journal::open(&journal_path).unwrap();
        let status = Arc::new(RwLock::new(StatusSnapshot::default()));
        let handles = EngineHandles::new(Arc::clone(&status), Metrics::default());
        let engine = Engine::new(Arc::clone(&paper), settings, journal, handles, true).unwrap();
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        let task = tokio::spawn(async move {
            engine.run(c, false).await.unwrap();
        });
        Harness { market, paper, status, cancel, task, journal_path, _dir: dir }
    }

    fn status(&self) -> StatusSnapshot {
        self.status.read().unwrap().clone()
    }

    async fn wait_for(&self, what: &str, mut cond: impl FnMut(&StatusSnapshot) -> bool) -> StatusSnapshot {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.status();
            if cond(&s) {
                return s;
            }
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}; status: {s:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Pushes a mark price and waits until the engine has processed it (a monitor tick later).
    async fn mark(&self, symbol: &str, price: Decimal) {
        self.market.push_mark(symbol, price).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    async fn stop(self) -> Journal {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task).await.expect("engine stops within 10 s").unwrap();
        Journal::open(&self.journal_path).unwrap()
    }
}

fn d(v: f64) -> Decimal {
    Decimal::from_f64(v).unwrap().round_dp(2)
}

fn qty_of(s: &StatusSnapshot) -> Decimal {
    s.positions[0].qty.parse().unwrap()
}

async fn enter(h: &Harness, m: &CraftedMarket) -> StatusSnapshot {
    h.wait_for("scan lists the crafted symbol", |s| s.last_scan.as_ref().is_some_and(|l| l.lists(&m.symbol))).await;
    h.mark(&m.symbol, d(m.end_price)).await;
    h.market
        .push(ExchangeEvent::Kline {
            symbol: m.symbol.clone(),
            timeframe: Timeframe::M15,
            candle: m.next_15m,
            closed: true,
        })
        .await;
    h.wait_for("entry", |s| s.positions.len() == 1 && s.positions[0].stop_on_exchange).await;
    // Settled: no request in flight (a fill over the notional cap is trimmed and the stop
    // resized first).
    h.wait_for("entry settled", |s| {
        s.positions.len() == 1 && s.positions[0].stop_on_exchange && !s.positions[0].order_in_flight
    })
    .await
}

async fn ladder_walk(direction: Direction) {
    let sym = if direction == Direction::Long { "LONGUSDT" } else { "SHORTUSDT" };
    let m = CraftedMarket::new(sym, direction, 100.0, 0.2, now_ms());
    let h = Harness::start(&[&m], settings(&[])).await;
    let s = enter(&h, &m).await;
    let sign = if direction == Direction::Long { 1.0 } else { -1.0 };

    // The signal: score ≥ 60, taken, leverage per the table (70 → 10x; not high-volatility).
    let sig = &s.recent_signals[0];
    let score = sig.score;
    assert!(score >= 60, "crafted market must score ≥ 60: {sig:?}");
    assert!(sig.taken);
    let pos = &s.positions[0];
    assert_eq!(pos.direction, direction);
    let expected_leverage = match score {
        60..=69 => 5,
        70..=79 => 10,
        80..=89 => 15,
        _ => 20,
    };
    assert_eq!(pos.leverage, expected_leverage);
    let entry: Decimal = pos.entry_price.parse().unwrap();
    let qty = qty_of(&s);
    // Notional at the signal price within the sizing cap (20 % of 10 000 equity at confidence
    // < 80); the fill itself may slip by the simulated slippage.
    let signal_price = d(m.end_price);
    assert!(qty * signal_price <= Decimal::from(2000), "notional {} over cap", qty * signal_price);
    // A fill that slipped over the cap is trimmed back under it (whole steps, reduce-only).
    assert!(entry * qty <= Decimal::from(2000), "notional {} at the fill over the cap", entry * qty);

    // The protective stop rests on the (paper) exchange: exit side, full size, ≤ 3 % away.
    let stops = h.paper.open_stops().await.unwrap();
    assert_eq!(stops.len(), 1, "exactly one stop: {stops:?}");
    let stop = &stops[0];
    assert_eq!(stop.side, direction.exit_side());
    assert_eq!(stop.qty, qty);
    let dist = (entry - stop.trigger_price).abs() / entry * Decimal::ONE_HUNDRED;
    assert!(dist > Decimal::ZERO && dist <= Decimal::from(3), "stop distance {dist} %");
    assert_eq!(
        (entry - stop.trigger_price).signum(),
        Decimal::from_f64(sign).unwrap(),
        "stop on the losing side of the entry"
    );

    // TP1 at +1.5 %: 40 % closed, stop resized to the rest.
    let e = entry.to_f64().unwrap();
    h.mark(sym, d(e * (1.0 + sign * 0.016))).await;
    let s = h.wait_for("TP1", |s| s.positions.first().is_some_and(|p| p.stage == LadderStage::Tp1Done)).await;
    let after_tp1 = qty_of(&s);
    assert_eq!(after_tp1, qty - (qty * Decimal::new(4, 1)).round_dp_with_strategy(3, RoundingStrategy::ToZero));
    // TP2 at +2.5 %: another 30 %.
    h.mark(sym, d(e * (1.0 + sign * 0.026))).await;
    let s = h.wait_for("TP2", |s| s.positions.first().is_some_and(|p| p.stage == LadderStage::Tp2Done)).await;
    let after_tp2 = qty_of(&s);
    assert!(after_tp2 < after_tp1);
    // +3.1 % starts trailing; +5 % moves the stop to 1 % behind the best price.
    h.mark(sym, d(e * (1.0 + sign * 0.031))).await;
    h.wait_for("trailing", |s| s.positions.first().is_some_and(|p| p.stage == LadderStage::Trailing)).await;
    h.mark(sym, d(e * (1.0 + sign * 0.05))).await;
    let best = d(e * (1.0 + sign * 0.05));
    let s = h
        .wait_for("trailing stop moved", |s| {
            s.positions.first().is_some_and(|p| {
                let stop: Decimal = p.stop.parse().unwrap();
                (best - stop).abs() / best > Decimal::new(9, 3) && (best - stop).abs() / best <= Decimal::new(11, 3)
            })
        })
        .await;
    let trail_stop: Decimal = s.positions[0].stop.parse().unwrap();
    let stops = h.paper.open_stops().await.unwrap();
    assert_eq!(stops.len(), 1, "the moved stop replaced the old one: {stops:?}");
    assert_eq!(stops[0].trigger_price, trail_stop);
    assert_eq!(stops[0].qty, after_tp2);
    // A pullback through the trailing stop: the exchange-side stop fills the rest.
    h.mark(sym, trail_stop - Decimal::from_f64(sign * 0.05).unwrap()).await;
    h.wait_for("closed", |s| s.positions.is_empty()).await;
    assert!(h.paper.open_stops().await.unwrap().is_empty(), "no orphan stop left");
    assert_eq!(h.market.account_calls.load(Ordering::SeqCst), 0, "paper never calls account methods");

    let journal = h.stop().await;
    let closed = journal.closed_positions(10).unwrap();
    assert_eq!(closed.len(), 1);
    let c = &closed[0];
    assert_eq!(c.close_reason.as_deref(), Some("trailing_stop"));
    assert!(c.realized_pnl > Decimal::ZERO, "profitable ladder: {c:?}");
    assert!(c.fees > Decimal::ZERO);
    let exits = &c.position.partial_exits;
    let reasons: Vec<&str> = exits.iter().map(|e| e.reason.as_str()).filter(|r| *r != "notional_trim").collect();
    assert_eq!(reasons, ["take_profit_1", "take_profit_2", "trailing_stop"]);
    let trimmed: Decimal = exits.iter().filter(|e| e.reason == "notional_trim").map(|e| e.qty).sum();
    let total: Decimal = exits.iter().map(|e| e.qty).sum();
    assert_eq!(total, qty + trimmed, "everything closed exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_signal_enters_protects_and_walks_the_ladder() {
    ladder_walk(Direction::Long).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_signal_enters_protects_and_walks_the_ladder() {
    ladder_walk(Direction::Short).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emergency_exit_closes_everything_and_latches() {
    // A wide 15m range puts the stop at the 3 % cap; an emergency line of 0.5 % of equity is
    // then reached (−2.5 % on a 20 %-of-equity position) before the stop.
    let m = CraftedMarket::new("EMRGUSDT", Direction::Long, 100.0, 3.0, now_ms());
    let h = Harness::start(&[&m], settings(&[("KINETIC__RISK__EMERGENCY_LOSS_PCT", "0.5")])).await;
    let s = enter(&h, &m).await;
    let entry: Decimal = s.positions[0].entry_price.parse().unwrap();
    let stop: Decimal = s.positions[0].stop.parse().unwrap();
    let e = entry.to_f64().unwrap();
    let crash = d(e * 0.9725);
    assert!(crash > stop, "the crash price must stay above the stop ({crash} vs {stop})");
    h.mark("EMRGUSDT", crash).await;
    let s = h.wait_for("emergency close", |s| s.positions.is_empty()).await;
    assert!(s.risk.emergency_latched);
    assert!(h.paper.open_stops().await.unwrap().is_empty(), "orders cancelled");
    let balance = h.paper.balance().await.unwrap();
    assert!(balance.unrealized_pnl.is_zero());
    let journal = h.stop().await;
    let closed = journal.closed_positions(10).unwrap();
    assert_eq!(closed[0].close_reason.as_deref(), Some("emergency"));
    let risk = journal.state("risk_state").unwrap().expect("risk state journaled");
    assert!(risk["emergency_since"].is_number(), "latch survives a restart: {risk}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paper_orders_are_exchange_side_and_sized_in_steps() {
    let m = CraftedMarket::new("STEPUSDT", Direction::Long, 123.45, 0.2, now_ms());
    let h = Harness::start(&[&m], settings(&[])).await;
    enter(&h, &m).await;
    let stops = h.paper.open_stops().await.unwrap();
    let q = stops[0].qty;
    assert_eq!(q, q.round_dp(3), "quantity on the 0.001 step");
    assert_eq!(stops[0].trigger_price, stops[0].trigger_price.round_dp(2), "trigger on the 0.01 tick");
    assert_eq!(stops[0].side, Side::Sell);
    h.stop().await;
}
