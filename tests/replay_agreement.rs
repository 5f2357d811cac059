//! Backtest and dry-run agree (issues 6 and 11): ten days of real candles of three symbols from
//! the shipped sample are replayed (1) through `kinetic backtest`'s engine and (2) through the
//! daemon's tasks on the paper exchange, fed as market streams, with the scanner's filters ON
//! (default liquidity, momentum and volume filters). Per 15m close: each symbol's candle
//! becomes a walk of mark prices open → adverse extreme → favourable extreme → close in 0.05 %
//! steps (the backtest's documented intra-candle order), then every symbol's next open, then
//! the 24 h tickers (computed as the backtest computes them, from the last 96 candles), then
//! the closed klines in their natural arrival order — the 15m candle first, the 1h and 4h
//! closing with it after. Both start from the same candle history. They must take the same
//! trades — same entries (time, side, price, size, leverage), the same exits in the same order
//! and sizes — with exit prices close (the replay walks marks in 0.05 % steps).
//!
//! The daemon's marks are latest-wins by design; the replay waits for the pipeline (the
//! liveness progress counters) after every mark so it never outruns it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use common::ScriptedMarket;
use kinetic::api::{Metrics, StatusSnapshot};
use kinetic::backtest::{self, SymbolCandles};
use kinetic::config::{ConfigSources, Settings, load};
use kinetic::core::liveness::Liveness;
use kinetic::core::models::{Candle, Direction, Ticker, Timeframe};
use kinetic::data::read_candle_file;
use kinetic::exchange::paper::PaperExchange;
use kinetic::exchange::{Exchange, ExchangeEvent, MarkPriceUpdate, SymbolInfo};
use kinetic::store::Journal;
use kinetic::tasks::{Engine, EngineHandles};
use rust_decimal::Decimal;
use rust_decimal::prelude::*;
use tokio_util::sync::CancellationToken;

const SYMBOLS: [&str; 3] = ["SOLUSDT", "XRPUSDT", "DOGEUSDT"];
const HISTORY: usize = 200;
/// 2026-03-15 00:00 UTC.
const START: i64 = 1_773_532_800_000;
const DAYS: i64 = 10;
/// 24 h of 15m candles (the backtest's ticker window).
const TICKER_WINDOW: usize = 96;

fn settings(scan_secs: &str) -> Settings {
    let mut env: HashMap<String, String> = HashMap::new();
    // The scanner's filters stay at their defaults. Both scan at every 15m close.
    env.insert("KINETIC__SCANNER__INTERVAL_SECS".into(), scan_secs.into());
    env.insert("KINETIC__MONITOR__INTERVAL_SECS".into(), "60".into());
    env.insert("KINETIC__BACKTEST__FLAT_FUNDING_RATE_PCT".into(), "0".into());
    load(&ConfigSources { file: None, env }).unwrap()
}

struct Series {
    history: HashMap<Timeframe, Vec<Candle>>,
    replay: HashMap<Timeframe, Vec<Candle>>,
}

fn load_symbol(symbol: &str) -> Series {
    let mut history = HashMap::new();
    let mut replay = HashMap::new();
    for tf in [Timeframe::H4, Timeframe::H1, Timeframe::M15] {
        let path = format!("{}/data/sample/{symbol}-{}.csv.gz", env!("CARGO_MANIFEST_DIR"), tf.as_str());
        let all = read_candle_file(Path::new(&path)).unwrap();
        let end = START + DAYS * 86_400_000;
        // The same history for both: what the daemon's warm-up fetches (the last 200 candles),
        // within what the backtest loads before its start (`backtest::WARMUP_MS`).
        let before: Vec<Candle> = all
            .iter()
            .filter(|c| c.close_time < START && c.open_time >= START - backtest::WARMUP_MS + 86_400_000)
            .copied()
            .collect();
        history.insert(tf, before[before.len().saturating_sub(HISTORY)..].to_vec());
        replay.insert(tf, all.iter().filter(|c| c.open_time >= START && c.close_time < end).copied().collect());
    }
    Series { history, replay }
}

fn d(x: f64) -> Decimal {
    Decimal::from_f64(x).unwrap()
}

/// Marks from `a` to `b` in steps of 0.01 % (exclusive of `a`, inclusive of `b`).
fn walk(a: f64, b: f64, out: &mut Vec<f64>) {
    let step = a * 0.0001;
    let n = ((b - a).abs() / step).ceil().max(1.0) as usize;
    for i in 1..=n {
        out.push(a + (b - a) * i as f64 / n as f64);
    }
}

/// The 24 h ticker the backtest derives from the last 96 closed 15m candles.
fn ticker(symbol: &str, m15: &[Candle]) -> Option<Ticker> {
    let window = m15.get(m15.len().checked_sub(TICKER_WINDOW)?..)?;
    let first = window.first()?;
    let last = window.last()?;
    Some(Ticker {
        symbol: symbol.into(),
        last_price: last.close,
        price_change_pct: (last.close - first.open) / first.open * 100.0,
        volume: window.iter().map(|c| c.volume).sum(),
        quote_volume: window.iter().map(|c| c.quote_volume_or_estimate()).sum(),
        event_time: last.close_time,
    })
}

struct Replay {
    market: Arc<ScriptedMarket>,
    paper: Arc<PaperExchange<ScriptedMarket>>,
    liveness: Arc<Liveness>,
    last_mark: i64,
    last_m15: i64,
}

impl Replay {
    async fn push(&self, ev: ExchangeEvent) {
        self.market.push(ev).await;
    }

    /// One mark-price message for several symbols at `time` (as Binance's `!markPrice@arr`).
    async fn marks(&mut self, prices: &[(&str, f64)], time: i64) {
        self.last_mark = self.last_mark.max(time);
        self.market.clock.store(time, Ordering::SeqCst);
        let updates = prices
            .iter()
            .map(|(symbol, price)| MarkPriceUpdate {
                symbol: (*symbol).into(),
                mark_price: d(*price).round_dp(6),
                index_price: None,
                funding_rate: None,
                next_funding_time: None,
                event_time: time,
            })
            .collect();
        self.push(ExchangeEvent::MarkPrices(updates)).await;
        self.settle().await;
    }

    /// Waits until the position manager has acted on the last mark, the analyzer has
    /// evaluated the last 15m close (after the scanner handled it), every analysis sent was
    /// handled and every request sent has come back.
    async fn settle(&self) {
        let p = &self.liveness.progress;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let done = p.mark_time.load(Ordering::SeqCst) >= self.last_mark
                && p.analyzed_m15_close.load(Ordering::SeqCst) >= self.last_m15
                && p.signals_handled.load(Ordering::SeqCst) == p.signals_sent.load(Ordering::SeqCst)
                && p.requests_in_flight.load(Ordering::SeqCst) == 0;
            if done {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "pipeline stalled: {p:?} (mark {}, m15 {})",
                self.last_mark,
                self.last_m15
            );
            tokio::task::yield_now().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backtest_and_dry_run_replay_take_the_same_trades() {
    let settings = settings("60");
    let data: Vec<(&str, Series)> = SYMBOLS.iter().map(|s| (*s, load_symbol(s))).collect();

    // 1. The backtest over history + replay window.
    let joined =
        |a: &[Candle], b: &[Candle]| -> Arc<[Candle]> { a.iter().chain(b).copied().collect::<Vec<_>>().into() };
    let candles: Vec<SymbolCandles> = data
        .iter()
        .map(|(s, d)| SymbolCandles {
            symbol: (*s).into(),
            m15: joined(&d.history[&Timeframe::M15], &d.replay[&Timeframe::M15]),
            h1: joined(&d.history[&Timeframe::H1], &d.replay[&Timeframe::H1]),
            h4: joined(&d.history[&Timeframe::H4], &d.replay[&Timeframe::H4]),
        })
        .collect();
    let (mut feed, mut bt) = backtest::prepare_in_memory(&settings, &candles, Some(START)).unwrap();
    backtest::run_feed(&mut feed, &mut bt, &mut |_| {}).unwrap();
    let bt_trades: Vec<_> =
        bt.account().trades.iter().filter(|t| t.exit_reason.as_str() != "end_of_data").cloned().collect();

    // 2. The daemon on the paper exchange over the same candles as streams.
    let mut infos = Vec::new();
    let mut klines = HashMap::new();
    let mut tickers = Vec::new();
    for (s, d) in &data {
        let hist15 = &d.history[&Timeframe::M15];
        let rules = backtest::symbols::rules_for(s, hist15[0].open);
        infos.push(SymbolInfo { max_leverage: rules.filters.max_leverage, filters: rules.filters.clone() });
        for tf in [Timeframe::H4, Timeframe::H1, Timeframe::M15] {
            klines.insert(((*s).to_string(), tf), d.history[&tf].clone());
        }
        tickers.extend(ticker(s, hist15));
    }
    let market = Arc::new(ScriptedMarket::with_data(infos, tickers, klines));
    // The daemon starts at the replay's start: every history candle has closed, the last one
    // more than the closed-candle margin ago.
    market.clock.store(START + kinetic::core::models::CANDLE_CLOSE_MARGIN_MS + 1, Ordering::SeqCst);
    let paper = Arc::new(PaperExchange::new(Arc::clone(&market), &settings.paper));
    let dir = tempfile::tempdir().unwrap();
    let journal_path = dir.path().join("replay.db");
    let status = Arc::new(RwLock::new(StatusSnapshot::default()));
    let handles = EngineHandles::new(Arc::clone(&status), Metrics::default());
    let liveness = Arc::clone(&handles.liveness);
    let engine =
        Engine::new(Arc::clone(&paper), self::settings("60"), Journal::open(&journal_path).unwrap(), handles, true)
            .unwrap();
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let task = tokio::spawn(async move { engine.run(c, false).await.unwrap() });
    let deadline = Instant::now() + Duration::from_secs(20);
    while status.read().unwrap().last_scan.is_none() {
        assert!(Instant::now() < deadline, "no scan: {:#?}", status.read().unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut r = Replay { market, paper, liveness, last_mark: 0, last_m15: START - 1 };
    let opens: Vec<(&str, f64)> = data.iter().map(|(s, d)| (*s, d.replay[&Timeframe::M15][0].open)).collect();
    r.marks(&opens, START).await;

    let m15: Vec<&Vec<Candle>> = data.iter().map(|(_, d)| &d.replay[&Timeframe::M15]).collect();
    let n = m15.iter().map(|v| v.len()).min().unwrap();
    let mut cursors: Vec<(usize, usize)> = vec![(0, 0); data.len()];
    let mut seen15: Vec<Vec<Candle>> = data.iter().map(|(_, d)| d.history[&Timeframe::M15].clone()).collect();
    for k in 0..n {
        // Each symbol's candle path, ordered by its open position's side (the backtest's rule).
        let open_sides: HashMap<String, Direction> =
            r.paper.positions().await.unwrap().into_iter().map(|p| (p.symbol, p.direction)).collect();
        let paths: Vec<Vec<f64>> = data
            .iter()
            .enumerate()
            .map(|(i, (s, _))| {
                let c = m15[i][k];
                let long = open_sides.get(*s).is_none_or(|dir| *dir == Direction::Long);
                let (adverse, favourable) = if long { (c.low, c.high) } else { (c.high, c.low) };
                let mut path = vec![c.open];
                walk(c.open, adverse, &mut path);
                walk(adverse, favourable, &mut path);
                walk(favourable, c.close, &mut path);
                path
            })
            .collect();
        // The symbols' walks side by side, one mark message per step, each walk in full.
        let steps = paths.iter().map(Vec::len).max().unwrap();
        let (open_time, close_time) = (m15[0][k].open_time, m15[0][k].close_time);
        let span = (close_time - open_time) / steps as i64;
        for j in 0..steps {
            let prices: Vec<(&str, f64)> =
                data.iter().zip(&paths).map(|((s, _), p)| (*s, p[(j * p.len() / steps).min(p.len() - 1)])).collect();
            r.marks(&prices, open_time + j as i64 * span).await;
        }
        // Entries fill at the next candle's open.
        let next_opens: Vec<(&str, f64)> = data
            .iter()
            .enumerate()
            .map(|(i, (s, _))| (*s, m15[i].get(k + 1).map(|n| n.open).unwrap_or(m15[i][k].close)))
            .collect();
        r.marks(&next_opens, close_time + 1).await;
        // The 24 h tickers, then the klines in their natural order: 15m first, 1h and 4h after.
        let mut tick = Vec::new();
        for (i, (s, _)) in data.iter().enumerate() {
            seen15[i].push(m15[i][k]);
            tick.extend(ticker(s, &seen15[i]));
        }
        r.push(ExchangeEvent::Tickers(tick)).await;
        for (i, (s, d)) in data.iter().enumerate() {
            let c = m15[i][k];
            r.market.klines.lock().unwrap().get_mut(&((*s).to_string(), Timeframe::M15)).unwrap().push(c);
            r.push(ExchangeEvent::Kline { symbol: (*s).into(), timeframe: Timeframe::M15, candle: c, closed: true })
                .await;
            let (i1, i4) = &mut cursors[i];
            for (tf, cursor) in [(Timeframe::H1, i1), (Timeframe::H4, i4)] {
                let series = &d.replay[&tf];
                while *cursor < series.len() && series[*cursor].close_time <= c.close_time {
                    let candle = series[*cursor];
                    r.market.klines.lock().unwrap().get_mut(&((*s).to_string(), tf)).unwrap().push(candle);
                    r.push(ExchangeEvent::Kline { symbol: (*s).into(), timeframe: tf, candle, closed: true }).await;
                    *cursor += 1;
                }
            }
        }
        r.last_m15 = close_time;
        // Time passes beyond the closed-candle margin (the scanner scans then); the marks stay
        // at the next open.
        let after_margin = close_time + 1 + kinetic::core::models::CANDLE_CLOSE_MARGIN_MS + 1;
        r.marks(&next_opens, after_margin).await;
    }
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();

    let journal = Journal::open(&journal_path).unwrap();
    let mut live = journal.closed_positions(1000).unwrap();
    live.sort_by_key(|p| (p.position.entry_time, p.position.symbol.clone()));
    let mut bt_after: Vec<_> = bt_trades.iter().filter(|t| t.entry_time >= START).collect();
    bt_after.sort_by_key(|t| (t.entry_time, t.symbol.clone()));
    // Entries of one close are sorted by symbol in both lists (the daemon's by its candle).
    live.sort_by_key(|p| (p.position.entry_time.div_euclid(900_000), p.position.symbol.clone()));
    let symbols_traded: std::collections::BTreeSet<&str> = bt_after.iter().map(|t| t.symbol.as_str()).collect();
    println!("backtest: {} trades on {symbols_traded:?}; dry-run: {} trades", bt_after.len(), live.len());
    assert!(bt_after.len() >= 10, "enough trades to compare: {}", bt_after.len());
    assert!(symbols_traded.len() >= 2, "trades on several symbols: {symbols_traded:?}");
    let summary = |v: &[String]| v.join("\n");
    let bt_list: Vec<String> =
        bt_after.iter().map(|t| format!("{} {} {:?} {}", t.entry_time, t.symbol, t.direction, t.entry_price)).collect();
    let live_list: Vec<String> = live
        .iter()
        .map(|p| {
            format!(
                "{} {} {:?} {}",
                p.position.entry_time, p.position.symbol, p.position.direction, p.position.entry_price
            )
        })
        .collect();
    assert_eq!(
        live.len(),
        bt_after.len(),
        "number of trades\nbacktest:\n{}\ndry-run:\n{}",
        summary(&bt_list),
        summary(&live_list)
    );
    let (mut close, mut far, mut worst) = (0usize, 0usize, Decimal::ZERO);
    let mut worst_size = Decimal::ZERO;
    for (i, (b, l)) in bt_after.iter().zip(&live).enumerate() {
        let q = &l.position;
        let rules = backtest::symbols::rules_for(&b.symbol, 1.0);
        let step = rules.filters.market_step_size.max(rules.filters.step_size);
        // Same decision: symbol, candle, side, price and leverage exactly (the daemon decides
        // once the close is past the closed-candle margin, the backtest at the next open); size
        // within one lot step (it follows equity, which the fills move by a few cents).
        assert_eq!(
            (&q.symbol, q.direction, q.entry_price, q.leverage),
            (&b.symbol, b.direction, b.entry_price, b.leverage),
            "trade {i} entry"
        );
        let late = q.entry_time - b.entry_time;
        assert!(
            (0..=kinetic::core::models::CANDLE_CLOSE_MARGIN_MS + 1).contains(&late),
            "trade {i} entered {late} ms after the backtest"
        );
        // Sizes follow equity (moved by a few cents between the two fills' prices) and the ATR
        // stop (the daemon warms its indicators from the last 200 candles, the backtest from
        // 20 days: the same to many decimals, not all): within one lot step or 0.05 %.
        let tolerance = step.max(b.qty * Decimal::new(5, 4));
        let rel = ((q.original_qty - b.qty) / b.qty).abs();
        worst_size = worst_size.max(rel);
        assert!((q.original_qty - b.qty).abs() <= tolerance, "trade {i} size {} vs {}", q.original_qty, b.qty);
        let b_reasons: Vec<&str> = b.exits.iter().map(|e| e.reason.as_str()).collect();
        let l_reasons: Vec<&str> = q.partial_exits.iter().map(|e| e.reason.as_str()).collect();
        assert_eq!(l_reasons, b_reasons, "trade {i} exit ladder ({} entered {})", b.symbol, b.entry_time);
        for (be, le) in b.exits.iter().zip(&q.partial_exits) {
            let diff = ((be.price - le.price) / be.price).abs();
            worst = worst.max(diff);
            if diff <= Decimal::new(1, 3) {
                close += 1;
            } else {
                far += 1;
            }
            assert!(diff <= Decimal::new(1, 2), "trade {i} exit {} at {} vs {}", be.reason, be.price, le.price);
        }
    }
    // Most fills agree to the replay's 0.05 % mark steps. The others are take-profits a candle
    // opened beyond: the backtest fills them at their level (its documented rule), the paper
    // exchange at the market price of that open — so they differ by the gap, within 1 %.
    assert!(close >= far, "{far} of {} exits more than 0.1 % apart", close + far);
    println!(
        "replay agreement: {} trades on {} symbols, filters on, klines 15m-first: identical entries and exit ladders; {close} exits within 0.1 %, {far} further (worst {:.3} %); sizes within {:.2} %",
        bt_after.len(),
        symbols_traded.len(),
        worst * Decimal::ONE_HUNDRED,
        worst_size * Decimal::ONE_HUNDRED
    );
}
