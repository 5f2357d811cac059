//! The live engine end to end: the real Binance client (signed REST, WebSocket market and user
//! streams) against the fake Binance server on loopback. A crafted market that scores ≥ 60 →
//! leverage set as the table says, entry filled, protective stop resting on the exchange
//! within one monitor tick (≤ 3 % away), notional ≤ the cap; the price walks → TP1 closes 40 %,
//! TP2 30 %, the trailing stop follows and the exchange-side stop closes the rest; the same
//! for a short. A −5 % portfolio closes everything and cancels every order. No client order id
//! is ever used twice.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;
#[path = "common/daemon.rs"]
mod daemon;
mod support;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use common::{CraftedMarket, now_ms};
use daemon::{credentials, install};
use kinetic::api::StatusSnapshot;
use kinetic::config::{ConfigSources, Settings, load};
use kinetic::core::models::{Direction, Timeframe};
use kinetic::store::Journal;
use rust_decimal::Decimal;
use rust_decimal::prelude::*;
use support::fake_binance::{FakeBinance, FakeConfig};
use tokio_util::sync::CancellationToken;

pub fn settings_for(fake: &FakeBinance, extra: &[(&str, &str)]) -> Settings {
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("KINETIC__EXCHANGE__REST_URL".into(), fake.rest_url());
    env.insert("KINETIC__EXCHANGE__WS_URL".into(), fake.ws_url());
    env.insert("KINETIC__SCANNER__INTERVAL_SECS".into(), "3600".into());
    env.insert("KINETIC__MONITOR__INTERVAL_SECS".into(), "1".into());
    for (k, v) in extra {
        env.insert((*k).to_string(), (*v).to_string());
    }
    load(&ConfigSources { file: None, env }).expect("valid test config")
}

struct Live {
    fake: FakeBinance,
    status: Arc<RwLock<StatusSnapshot>>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    journal_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Live {
    async fn start(fake: FakeBinance, settings: Settings) -> Live {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "off".into()))
            .try_init();
        let e = common::start_live_engine(settings, credentials());
        Live { fake, status: e.status, cancel: e.cancel, task: e.task, journal_path: e.journal_path, _dir: e.dir }
    }

    async fn wait(&self, what: &str, mut cond: impl FnMut(&FakeBinance, &StatusSnapshot) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let s = self.status.read().unwrap().clone();
            if cond(&self.fake, &s) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; status: {s:#?}; fake positions: {:?}; algo: {:?}",
                self.fake.positions(),
                self.fake.open_algo_orders()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn stop(self) -> (FakeBinance, Journal) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task).await.expect("stops within 10 s").unwrap();
        (self.fake, Journal::open(&self.journal_path).unwrap())
    }
}

fn amount(fake: &FakeBinance, symbol: &str) -> Decimal {
    fake.position(symbol).map(|p| p.amount).unwrap_or_default()
}

/// One intent, one order: no client order id (plain or algo) appears twice on the exchange.
pub fn no_duplicate_client_ids(fake: &FakeBinance) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for o in fake.orders().iter().filter(|o| o.orig_type == o.order_type) {
        *seen.entry(o.client_order_id.clone()).or_default() += 1;
    }
    for a in fake.algo_orders() {
        *seen.entry(a.client_algo_id.clone()).or_default() += 1;
    }
    let dups: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "client ids used twice: {dups:?}");
}

async fn enter(live: &Live, m: &CraftedMarket) {
    live.wait("scan lists the crafted symbol", |_, s| s.last_scan.as_ref().is_some_and(|l| l.lists(&m.symbol))).await;
    live.wait("streams live", |_, s| {
        !s.streams.is_empty() && s.streams.iter().all(|x| x.state == kinetic::api::StreamState::Live)
    })
    .await;
    live.fake.push_kline(&m.symbol, Timeframe::M15.as_str(), m.next_15m, true);
    live.wait("entry filled and protected", |f, _| {
        !amount(f, &m.symbol).is_zero() && f.unprotected_positions().is_empty() && !f.open_algo_orders().is_empty()
    })
    .await;
}

async fn walk(direction: Direction) {
    let fake = FakeBinance::start(FakeConfig::default()).await;
    let sym = "BTCUSDT";
    let m = CraftedMarket::new(sym, direction, 68000.0, 0.2, now_ms());
    install(&fake, &m);
    let settings = settings_for(&fake, &[]);
    let live = Live::start(fake, settings).await;
    enter(&live, &m).await;
    let f = &live.fake;
    let sign = if direction == Direction::Long { Decimal::ONE } else { -Decimal::ONE };
    let pos = f.position(sym).unwrap();
    assert_eq!(pos.amount.signum(), sign, "position side");
    let qty = pos.amount.abs();
    let entry = pos.entry_price;
    // Leverage per the table for the signal's score, isolated margin.
    let score = live.status.read().unwrap().recent_signals[0].score;
    assert!(score >= 60);
    let expected = match score {
        60..=69 => 5,
        70..=79 => 10,
        80..=89 => 15,
        _ => 20,
    };
    assert_eq!(f.leverage(sym), Some(expected));
    assert_eq!(f.margin_type(sym).as_deref(), Some("ISOLATED"));
    // Notional within the 20 % cap of the 10 000 USDT account.
    assert!(qty * entry <= Decimal::from(2000) * Decimal::new(1001, 3), "notional {}", qty * entry);
    let stops = f.open_algo_orders();
    assert_eq!(stops.len(), 1);
    let stop = &stops[0];
    assert_eq!(stop.order_type, "STOP_MARKET");
    assert_eq!(stop.working_type, "MARK_PRICE");
    assert!(stop.reduce_only || stop.close_position);
    let dist = (entry - stop.trigger_price).abs() / entry * Decimal::ONE_HUNDRED;
    assert!(dist <= Decimal::from(3), "stop {dist} % away");
    assert_eq!((entry - stop.trigger_price).signum(), sign);

    let at = |pct: f64| {
        let p = entry.to_f64().unwrap() * (1.0 + sign.to_f64().unwrap() * pct / 100.0);
        Decimal::from_f64(p).unwrap().round_dp(1)
    };
    f.set_price(sym, at(1.6));
    live.wait("TP1", |f, _| amount(f, sym).abs() < qty).await;
    let after_tp1 = amount(f, sym).abs();
    assert_eq!(after_tp1, qty - (qty * Decimal::new(4, 1)).round_dp_with_strategy(3, RoundingStrategy::ToZero));
    live.wait("stop resized", |f, _| f.open_algo_orders().iter().all(|a| a.quantity == after_tp1)).await;
    f.set_price(sym, at(2.6));
    live.wait("TP2", |f, _| amount(f, sym).abs() < after_tp1).await;
    let after_tp2 = amount(f, sym).abs();
    f.set_price(sym, at(3.1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    f.set_price(sym, at(5.0));
    let best = at(5.0);
    live.wait("trailing stop 1 % behind the best price", |f, _| {
        let a = f.open_algo_orders();
        a.len() == 1
            && a[0].quantity == after_tp2
            && ((best - a[0].trigger_price).abs() / best - Decimal::new(1, 2)).abs() < Decimal::new(1, 3)
    })
    .await;
    assert!(f.unprotected_positions().is_empty());
    let trail = f.open_algo_orders()[0].trigger_price;
    f.set_price(sym, trail - sign * Decimal::from(10));
    live.wait("closed by the exchange-side trailing stop", |f, s| amount(f, sym).is_zero() && s.positions.is_empty())
        .await;
    no_duplicate_client_ids(&live.fake);
    let (fake, journal) = live.stop().await;
    let closed = journal.closed_positions(5).unwrap();
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].close_reason.as_deref(), Some("trailing_stop"));
    let reasons: Vec<&str> = closed[0].position.partial_exits.iter().map(|e| e.reason.as_str()).collect();
    assert_eq!(reasons, ["take_profit_1", "take_profit_2", "trailing_stop"]);
    assert!(closed[0].realized_pnl > Decimal::ZERO);
    // Orphan cleanup: nothing rests after the position is gone.
    assert!(fake.open_algo_orders().is_empty(), "orphan stops: {:?}", fake.open_algo_orders());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_long_enters_protects_and_walks_the_ladder() {
    walk(Direction::Long).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_short_enters_protects_and_walks_the_ladder() {
    walk(Direction::Short).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portfolio_minus_five_percent_closes_everything_and_cancels_orders() {
    let fake = FakeBinance::start(FakeConfig::default()).await;
    let sym = "BTCUSDT";
    // Wide 15m candles put the stop at the 3 % cap; a lower emergency line (0.5 % of equity)
    // is then crossed before the stop, as −5 % would be with a larger book.
    let m = CraftedMarket::new(sym, Direction::Long, 68000.0, 3.0, now_ms());
    install(&fake, &m);
    let settings = settings_for(&fake, &[("KINETIC__RISK__EMERGENCY_LOSS_PCT", "0.5")]);
    let live = Live::start(fake, settings).await;
    enter(&live, &m).await;
    let f = &live.fake;
    let entry = f.position(sym).unwrap().entry_price;
    let stop = f.open_algo_orders()[0].trigger_price;
    let crash = (entry * Decimal::new(9725, 4)).round_dp(1);
    assert!(crash > stop);
    f.set_price(sym, crash);
    live.wait("emergency close", |f, s| amount(f, sym).is_zero() && s.positions.is_empty()).await;
    live.wait("orders cancelled", |f, _| f.open_algo_orders().is_empty() && f.open_orders().is_empty()).await;
    assert!(live.status.read().unwrap().risk.emergency_latched);
    no_duplicate_client_ids(&live.fake);
    let (_fake, journal) = live.stop().await;
    assert_eq!(journal.closed_positions(5).unwrap()[0].close_reason.as_deref(), Some("emergency"));
    let risk = journal.state("risk_state").unwrap().expect("risk state journaled");
    assert!(risk["emergency_since"].is_number(), "the latch is journaled: {risk}");
}
