//! End-to-end replays of the shipped sample data through the real scanner, analyzer, risk
//! checks and exit ladder: trades happen, entries fill at the next 15m open, the money adds
//! up, two runs are byte-identical, and the HTML report is self-contained.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::path::{Path, PathBuf};

use kinetic::backtest::sim::market_fill_price;
use kinetic::backtest::symbols::rules_for;
use kinetic::backtest::{self, BacktestOptions, Engine, metrics, report};
use kinetic::config::Settings;
use kinetic::core::models::Timeframe;
use kinetic::data::load_candles;
use rust_decimal::Decimal;
use rust_decimal::prelude::*;

const FROM: i64 = 1_769_904_000_000; // 2026-02-01
const TO: i64 = FROM + 28 * 86_400_000; // 2026-03-01

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample")
}

fn run(symbols: &[&str]) -> Engine {
    let settings = Settings::defaults().unwrap();
    let opts = BacktestOptions {
        data_dir: sample(),
        symbols: symbols.iter().map(|s| s.to_string()).collect(),
        from: Some(FROM),
        to: Some(TO),
    };
    let mut p = backtest::prepare(&settings, &opts).unwrap();
    backtest::run_feed(&mut p.feed, &mut p.engine, &mut |_| {}).unwrap();
    p.engine
}

#[test]
fn sample_replay_trades_and_the_money_adds_up() {
    let syms = ["BTCUSDT", "SOLUSDT", "XRPUSDT"];
    let engine = run(&syms);
    let acct = engine.account();
    assert!(acct.trades.len() >= 5, "expected trades on a month of sample data, got {}", acct.trades.len());
    assert_eq!(engine.market().open_count(), 0, "leftovers are closed at the end");
    // Equity change = realized PnL − fees − funding, trade by trade and in total.
    let mut sum = Decimal::ZERO;
    for t in &acct.trades {
        assert_eq!(t.net_pnl, t.gross_pnl - t.fees - t.funding);
        let exit_qty: Decimal = t.exits.iter().map(|e| e.qty).sum();
        assert_eq!(exit_qty, t.qty, "{t:?}");
        assert!(t.entry_time >= FROM && t.exit_time <= TO, "{t:?}");
        sum += t.net_pnl;
    }
    assert_eq!(acct.wallet, acct.starting_balance + sum);
    let fees: Decimal = acct.trades.iter().map(|t| t.fees).sum();
    assert_eq!(fees, acct.fees_paid);
    // Every entry filled at the open of a 15m candle, slipped against the trader.
    let settings = Settings::defaults().unwrap();
    let slip = Decimal::from_f64(settings.paper.slippage_pct).unwrap() / Decimal::ONE_HUNDRED;
    for sym in syms {
        let candles = load_candles(&sample(), sym, Timeframe::M15).unwrap();
        let tick = rules_for(sym, 1.0).filters.tick_size;
        for t in acct.trades.iter().filter(|t| t.symbol == sym) {
            assert_eq!(t.entry_time % 900_000, 0);
            let bar = candles.iter().find(|c| c.open_time == t.entry_time).unwrap();
            let open = Decimal::from_f64(bar.open).unwrap();
            assert_eq!(t.entry_price, market_fill_price(t.direction.entry_side(), open, slip, tick), "{t:?}");
        }
    }
    // The risk checks and the ladder really ran.
    assert!(engine.stats.scans > 0 && engine.stats.evaluations > 0);
    assert!(acct.trades.iter().all(|t| t.leverage >= 1 && t.confidence >= settings.strategy.min_confidence));
    let m = metrics::compute(&syms.map(String::from), acct, &engine.equity, &engine.stats);
    assert_eq!(m.trades, acct.trades.len() as u64);
    assert!(m.max_drawdown_pct >= 0.0);
}

#[test]
fn two_runs_are_byte_identical() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let syms = ["ETHUSDT", "DOGEUSDT"];
    for d in &dirs {
        let engine = run(&syms);
        let m = metrics::compute(&syms.map(String::from), engine.account(), &engine.equity, &engine.stats);
        report::write_all(d.path(), &m, &engine.equity, &engine.account().trades).unwrap();
    }
    for f in ["metrics.json", "trades.csv", "report.html"] {
        let a = std::fs::read(dirs[0].path().join(f)).unwrap();
        let b = std::fs::read(dirs[1].path().join(f)).unwrap();
        assert!(!a.is_empty());
        assert!(a == b, "{f} differs between two runs");
    }
}

#[test]
fn report_is_self_contained_and_holds_the_equity_series() {
    let syms = ["BTCUSDT"];
    let engine = run(&syms);
    let m = metrics::compute(&syms.map(String::from), engine.account(), &engine.equity, &engine.stats);
    let html = report::report_html(&m, &engine.equity, &engine.account().trades).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(!html.contains("http://") && !html.contains("https://"), "no network URLs");
    assert!(!html.contains(" src=") && !html.contains("<link"), "nothing loaded from elsewhere");
    assert!(html.matches("<svg").count() >= 3, "equity, drawdown and trade charts");
    let start = html.find("<script type=\"application/json\" id=\"equity-series\">").unwrap();
    let body = &html[start..];
    let json = &body[body.find('>').unwrap() + 1..body.find("</script>").unwrap()];
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), engine.equity.len());
    assert_eq!(data[0][0].as_i64().unwrap(), engine.equity[0].time);
}

/// `kinetic backtest` keeps each symbol's close at every full UTC hour of the window (the 1h
/// closes), and the report charts them for each traded symbol with every entry and exit fill.
#[test]
fn report_has_a_price_chart_per_traded_symbol() {
    let syms = ["BTCUSDT", "ETHUSDT"];
    let engine = run(&syms);
    assert_eq!(engine.close_history.len(), 2);
    let h1 = load_candles(&sample(), "BTCUSDT", Timeframe::H1).unwrap();
    for h in &engine.close_history {
        // 28 days of hourly closes, each the 1h candle's close at that hour.
        assert_eq!(h.closes.len(), 28 * 24, "{}", h.symbol);
        assert!(h.closes.iter().all(|(t, _)| t % 3_600_000 == 0 && *t > FROM && *t <= TO));
        if h.symbol == "BTCUSDT" {
            for (t, close) in &h.closes {
                let c = h1.iter().find(|c| c.close_time + 1 == *t).unwrap();
                assert_eq!(c.close, *close);
            }
        }
    }
    let settings = Settings::defaults().unwrap();
    let d = tempfile::tempdir().unwrap();
    let m = report::write_run(d.path(), &engine, &settings).unwrap();
    let html = std::fs::read_to_string(d.path().join("report.html")).unwrap();
    let traded: Vec<&str> = m.per_symbol.iter().filter(|r| r.trades > 0).map(|r| r.symbol.as_str()).collect();
    assert!(!traded.is_empty());
    assert_eq!(html.matches("class=\"chart price-chart\"").count(), traded.len());
    let start = html.find("<script type=\"application/json\" id=\"price-data\">").unwrap();
    let body = &html[start..];
    let v: serde_json::Value =
        serde_json::from_str(&body[body.find('>').unwrap() + 1..body.find("</script>").unwrap()]).unwrap();
    assert_eq!(v["step"], "1h");
    let charted = v["symbols"].as_array().unwrap();
    assert_eq!(charted.len(), traded.len());
    for c in charted {
        let symbol = c["symbol"].as_str().unwrap();
        let trades: Vec<_> = engine.account().trades.iter().filter(|t| t.symbol == symbol).collect();
        let fills: usize = trades.iter().map(|t| 1 + t.exits.len()).sum();
        assert_eq!(c["marks"].as_array().unwrap().len(), fills, "{symbol}: one marker per entry and exit fill");
        assert_eq!(c["trades"].as_array().unwrap().len(), trades.len());
        assert_eq!(c["t"].as_array().unwrap().len(), 28 * 24);
    }
    assert!(html.contains("1h closes (UTC)"));
    // The console summary puts the buy-and-hold return beside the strategy's.
    let summary = report::summary_text(&m);
    let b = m.benchmark.as_ref().unwrap();
    assert!(summary.contains(&format!("buy and hold       {:.2} %", b.return_pct)), "{summary}");
}

/// A symbol that `funding-info.json` lists with a 4 h interval pays funding twice as often as
/// at the default 8 h: the backtest follows the symbol's own schedule.
#[test]
fn funding_follows_the_symbols_own_interval() {
    let dir = tempfile::tempdir().unwrap();
    for tf in ["15m", "1h", "4h"] {
        let name = format!("SOLUSDT-{tf}.csv.gz");
        std::fs::copy(sample().join(&name), dir.path().join(&name)).unwrap();
    }
    let settings = Settings::defaults().unwrap();
    let run_in = |d: &Path| {
        let opts = BacktestOptions { data_dir: d.to_path_buf(), symbols: vec![], from: Some(FROM), to: Some(TO) };
        let mut p = backtest::prepare(&settings, &opts).unwrap();
        backtest::run_feed(&mut p.feed, &mut p.engine, &mut |_| {}).unwrap();
        p.engine
    };
    let eight = run_in(dir.path());
    std::fs::write(
        dir.path().join("funding-info.json"),
        r#"[{"symbol":"SOLUSDT","adjustedFundingRateCap":"0.02","adjustedFundingRateFloor":"-0.02","fundingIntervalHours":4,"disclaimer":false}]"#,
    )
    .unwrap();
    let four = run_in(dir.path());
    assert!(eight.stats.funding_events > 10, "{}", eight.stats.funding_events);
    // The same trades (funding moves no decision here) hold positions over twice the settlements.
    assert_eq!(eight.account().trades.len(), four.account().trades.len());
    let ratio = four.stats.funding_events as f64 / eight.stats.funding_events as f64;
    assert!((1.7..=2.3).contains(&ratio), "{} vs {}", four.stats.funding_events, eight.stats.funding_events);
}
