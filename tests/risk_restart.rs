//! The risk book survives `kill -9` (the real binary against the fake Binance server, one
//! journal across restarts):
//!
//! - after a losing day (a stop-out through a gap that costs more than the daily loss limit),
//!   `/status` shows the daily latch; the daemon is killed, restarted on the same journal, and
//!   a fresh valid signal on another symbol is refused by the `daily_loss_limit` check alone —
//!   no entry order reaches the exchange. Killed again and restarted after the loss was made
//!   good by a deposit (today's PnL back to zero), the restored latch alone still refuses a
//!   fresh signal. The journaled book belongs to today's UTC day; the latch ends when the day
//!   rolls over (`RiskBook::roll_day`, unit-tested in `src/manager/risk_checks.rs`,
//!   `daily_latch_clears_next_day`; applied here to the journaled book too);
//! - after three stop-outs in a row, `/status` shows the loss pause; killed and restarted, the
//!   pause and the three symbols' cooldowns are still there: a fresh signal is refused by the
//!   `loss_streak` check alone until the pause ends, then the same symbol is entered, while a
//!   stopped-out symbol is still refused by its cooldown (`symbol_free`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod common;
#[path = "common/daemon.rs"]
mod daemon;
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{CraftedMarket, now_ms};
use daemon::{Daemon, install, spawn_with, streams_live};
use kinetic::core::models::{Direction, Timeframe};
use kinetic::manager::risk_checks::{RiskBook, utc_day};
use kinetic::store::Journal;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use support::fake_binance::{FakeBinance, FakeConfig, SymbolSpec};

const DAY_MS: i64 = 86_400_000;

fn fake_with(markets: &[&CraftedMarket]) -> FakeBinance {
    let mut cfg = FakeConfig::default();
    for m in markets {
        cfg.symbols.push(SymbolSpec::new(&m.symbol, dec!(100), dec!(0.01), dec!(0.001), dec!(5)));
    }
    FakeBinance::start_on_own_runtime(cfg)
}

fn log_of(d: &Daemon) -> String {
    std::fs::read_to_string(&d.log).unwrap_or_default()
}

/// Waits for `cond` on the fake exchange, with the daemon's log on failure.
fn wait_fake(d: &Daemon, what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}; log:\n{}", log_of(d));
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn entered_and_protected(fake: &FakeBinance, symbol: &str) -> bool {
    fake.position(symbol).is_some() && fake.open_algo_orders().iter().any(|a| a.symbol == symbol)
}

/// Orders (entries, closes, triggered stops) the exchange received for `symbol`.
fn orders_for(fake: &FakeBinance, symbol: &str) -> usize {
    fake.orders().iter().filter(|o| o.symbol == symbol).count()
}

/// The newest `/status` signal of `symbol` whose reason contains `needle`.
fn signal_with<'a>(s: &'a serde_json::Value, symbol: &str, needle: &str) -> Option<&'a serde_json::Value> {
    s["recent_signals"]
        .as_array()?
        .iter()
        .find(|x| x["symbol"] == symbol && x["reason"].as_str().is_some_and(|r| r.contains(needle)))
}

fn journaled_book(dir: &Path, journal: &str) -> RiskBook {
    let j = Journal::open(&dir.join(format!("{journal}.db"))).unwrap();
    let v = j.state("risk_state").unwrap().expect("risk state journaled");
    serde_json::from_value(v["book"].clone()).unwrap()
}

/// Every risk verdict journaled for `symbol`, oldest first: (passed, names of failed checks).
fn risk_checks(dir: &Path, journal: &str, symbol: &str) -> Vec<(bool, Vec<String>)> {
    let conn = rusqlite::Connection::open(dir.join(format!("{journal}.db"))).unwrap();
    let mut st = conn.prepare("SELECT passed, results FROM risk_checks WHERE symbol = ?1 ORDER BY id").unwrap();
    st.query_map([symbol], |r| Ok((r.get::<_, bool>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
        .map(|row| {
            let (passed, results) = row.unwrap();
            let checks: serde_json::Value = serde_json::from_str(&results).unwrap();
            assert_eq!(checks.as_array().unwrap().len(), 5, "all five checks are reported: {checks}");
            let failed = checks
                .as_array()
                .unwrap()
                .iter()
                .filter(|c| c["passed"] == false)
                .map(|c| c["name"].as_str().unwrap().to_string())
                .collect();
            (passed, failed)
        })
        .collect()
}

fn dec_of(v: &serde_json::Value) -> Decimal {
    v.as_str().unwrap().parse().unwrap()
}

/// Asserts `m`'s signal (installed before the daemon started: its first scan, at start, picks
/// it up — later scans run at 15m closes) is refused by the daily limit with `reason`, and that
/// no order reaches the exchange.
fn refused_by_daily_limit(fake: &FakeBinance, d: &Daemon, m: &CraftedMarket, reason: &str) {
    let s = d.wait_status("fresh signal refused", |s| signal_with(s, &m.symbol, "daily_loss_limit").is_some());
    let sig = signal_with(&s, &m.symbol, "daily_loss_limit").unwrap();
    assert_eq!(sig["taken"], false, "{sig}");
    assert!(sig["score"].as_u64().unwrap() >= 60, "a valid signal: {sig}");
    assert!(sig["reason"].as_str().unwrap().contains(reason), "{sig}");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(orders_for(fake, &m.symbol), 0, "an entry was sent despite the daily limit");
    assert!(fake.position(&m.symbol).is_none());
}

#[test]
fn daily_loss_latch_survives_kill_nine() {
    let now = now_ms();
    let first = CraftedMarket::new("DLAAUSDT", Direction::Long, 100.0, 0.2, now);
    let second = CraftedMarket::new("DLABUSDT", Direction::Long, 100.0, 0.2, now);
    let third = CraftedMarket::new("DLACUSDT", Direction::Long, 100.0, 0.2, now);
    let fake = fake_with(&[&first, &second, &third]);
    let dir = tempfile::tempdir().unwrap();
    // A 0.1 % daily limit (10 USDT of 10 000): one stop-out through a 2 % gap breaches it.
    let env = [
        ("KINETIC__SCANNER__INTERVAL_SECS", "2"),
        ("KINETIC__RISK__DAILY_LOSS_LIMIT_PCT", "0.1"),
        ("KINETIC__RISK__MAX_OPEN_POSITIONS", "10"),
    ];
    install(&fake, &first);
    let d = spawn_with(&fake, dir.path(), "daily", false, &env);
    let s = d.wait_status("live streams", streams_live);
    assert_eq!(s["risk"]["daily_latched"], false);
    let day_start = dec_of(&s["risk"]["day_start_equity"]);
    assert_eq!(day_start, dec!(10000));
    let limit = day_start * dec!(0.001);

    wait_fake(&d, "entry protected", 20, || entered_and_protected(&fake, &first.symbol));
    let entry = fake.position(&first.symbol).unwrap().entry_price;
    let stop = fake.open_algo_orders().iter().find(|a| a.symbol == first.symbol).unwrap().trigger_price;
    let gap = (entry * dec!(0.98)).round_dp(2);
    assert!(gap < stop, "the gap crosses the stop: {gap} vs {stop}");
    fake.set_price(&first.symbol, gap);
    wait_fake(&d, "stopped out", 20, || fake.position(&first.symbol).is_none());
    let lost = day_start - fake.balance().equity;
    assert!(lost > limit, "the day lost {lost}, more than the limit {limit}");
    let s = d.wait_status("daily latch", |s| s["risk"]["daily_latched"] == true);
    assert!(dec_of(&s["risk"]["today_pnl"]) <= -limit, "{:#?}", s["risk"]);
    d.kill9();

    // The journal has the latch, for today.
    let book = journaled_book(dir.path(), "daily");
    let today = utc_day(now_ms());
    assert!(book.daily_latched, "{book:?}");
    assert!(book.day == today || book.day == utc_day(now), "book day {} vs today {today}", book.day);
    assert_eq!(book.day_start_equity, day_start);
    // The next UTC day clears it (the daemon rolls the day at its next decision).
    let mut next_day = book.clone();
    next_day.roll_day((book.day + 1) * DAY_MS + 1, dec!(9950));
    assert!(!next_day.daily_latched && next_day.day_start_equity == dec!(9950));

    // Restarted on the same journal: the latch and the day-start equity hold from the first
    // status on; a fresh valid signal on another symbol is refused by check 3.
    install(&fake, &second);
    let d = spawn_with(&fake, dir.path(), "daily", false, &env);
    let s = d.wait_status("restored and live", |s| s["last_monitor_tick"].is_number() && streams_live(s));
    assert_eq!(s["risk"]["daily_latched"], true, "{:#?}", s["risk"]);
    assert_eq!(dec_of(&s["risk"]["day_start_equity"]), day_start, "the day-start equity is restored");
    refused_by_daily_limit(&fake, &d, &second, "today's PnL");
    let log = d.terminate();
    assert!(log.contains("risk state restored from the journal"), "{log}");
    assert!(log.contains("signal not taken"), "{log}");

    // The loss made good by a deposit while the daemon is down (the daemon cannot tell it
    // from profit): today's PnL is back to zero, only the latch refuses a new entry.
    fake.set_wallet_balance(day_start);
    install(&fake, &third);
    let d = spawn_with(&fake, dir.path(), "daily", false, &env);
    let s = d.wait_status("restored and live", |s| s["last_monitor_tick"].is_number() && streams_live(s));
    assert_eq!(s["risk"]["daily_latched"], true, "{:#?}", s["risk"]);
    assert!(dec_of(&s["risk"]["today_pnl"]) > -limit, "equity recovered: {:#?}", s["risk"]);
    refused_by_daily_limit(&fake, &d, &third, "breached earlier today");
    d.kill9();

    for m in [&second, &third] {
        let checks = risk_checks(dir.path(), "daily", &m.symbol);
        assert!(!checks.is_empty(), "the refusal of {} is journaled", m.symbol);
        for (passed, failed) in &checks {
            assert!(!passed);
            assert_eq!(failed, &["daily_loss_limit"], "only the daily limit refuses {}", m.symbol);
        }
    }
}

#[test]
fn loss_pause_and_symbol_cooldowns_survive_kill_nine() {
    let now = now_ms();
    let losers: Vec<CraftedMarket> =
        (0..3).map(|i| CraftedMarket::new(&format!("LSL{i}USDT"), Direction::Long, 100.0, 0.2, now)).collect();
    let fresh = CraftedMarket::new("LSFUSDT", Direction::Long, 100.0, 0.2, now);
    let mut all: Vec<&CraftedMarket> = losers.iter().collect();
    all.push(&fresh);
    let fake = fake_with(&all);
    let dir = tempfile::tempdir().unwrap();
    // Three losses in a row pause entries for one minute; a closed symbol cools down for an hour.
    let env = [
        ("KINETIC__SCANNER__INTERVAL_SECS", "2"),
        ("KINETIC__RISK__MAX_CONSECUTIVE_LOSSES", "3"),
        ("KINETIC__RISK__LOSS_COOLDOWN_MINS", "1"),
        ("KINETIC__RISK__SYMBOL_COOLDOWN_MINS", "60"),
        ("KINETIC__RISK__MAX_OPEN_POSITIONS", "10"),
        ("KINETIC__RISK__MAX_TOTAL_EXPOSURE_PCT", "300"),
    ];
    // Offered before the start: the first scan (at start) lists them; later scans run at
    // 15m closes.
    for m in &losers {
        install(&fake, m);
    }
    let d = spawn_with(&fake, dir.path(), "streak", false, &env);
    d.wait_status("live streams", streams_live);
    wait_fake(&d, "three entries protected", 30, || losers.iter().all(|m| entered_and_protected(&fake, &m.symbol)));
    // Each price falls just through its stop: the exchange's stop closes it at a loss.
    for m in &losers {
        let stop = fake.open_algo_orders().iter().find(|a| a.symbol == m.symbol).unwrap().trigger_price;
        fake.set_price(&m.symbol, stop - dec!(0.05));
        wait_fake(&d, "stopped out", 20, || fake.position(&m.symbol).is_none());
    }
    let s = d.wait_status("loss pause", |s| {
        s["risk"]["loss_pause_until"].is_number()
            && s["risk"]["symbol_cooldowns"].as_object().is_some_and(|c| c.len() == 3)
    });
    assert!(dec_of(&s["risk"]["today_pnl"]) < Decimal::ZERO);
    assert_eq!(s["risk"]["daily_latched"], false, "three small losses stay within the daily limit");
    let pause_until = s["risk"]["loss_pause_until"].as_i64().unwrap();
    let cooldowns = s["risk"]["symbol_cooldowns"].clone();
    assert!(pause_until > now_ms() && pause_until <= now_ms() + 61_000, "a one-minute pause: {pause_until}");
    for m in &losers {
        let until = cooldowns[&m.symbol].as_i64().unwrap();
        assert!(until > now_ms() + 55 * 60_000, "{} cools down for an hour: {until}", m.symbol);
    }
    d.kill9();

    let book = journaled_book(dir.path(), "streak");
    assert_eq!(book.loss_pause_until, Some(pause_until), "{book:?}");
    assert_eq!(serde_json::to_value(&book.symbol_cooldowns).unwrap(), cooldowns);

    // Restarted on the same journal: pause and cooldowns come back. A fresh valid signal is
    // offered at once (the start scan lists it).
    install(&fake, &fresh);
    let d = spawn_with(&fake, dir.path(), "streak", false, &env);
    let s = d.wait_status("restored and live", |s| s["last_monitor_tick"].is_number() && streams_live(s));
    assert_eq!(s["risk"]["loss_pause_until"].as_i64(), Some(pause_until), "{:#?}", s["risk"]);
    assert_eq!(s["risk"]["symbol_cooldowns"], cooldowns);

    // A fresh valid signal during the pause is refused by check 5; nothing is sent.
    let s = d.wait_status("fresh signal refused", |s| signal_with(s, &fresh.symbol, "loss_streak").is_some());
    assert!(now_ms() < pause_until, "the refusal came within the pause");
    assert_eq!(signal_with(&s, &fresh.symbol, "loss_streak").unwrap()["taken"], false);
    assert_eq!(orders_for(&fake, &fresh.symbol), 0, "an entry was sent during the pause");
    let loser_orders = orders_for(&fake, &losers[0].symbol);

    // After the pause: the same symbol's next signal is entered; a stopped-out symbol's is
    // still refused by its cooldown, which survived the restart.
    let wait = pause_until - now_ms() + 500;
    std::thread::sleep(Duration::from_millis(u64::try_from(wait.max(0)).unwrap()));
    fake.push_kline(&losers[0].symbol, Timeframe::M15.as_str(), losers[0].next_15m, true);
    fake.push_kline(&fresh.symbol, Timeframe::M15.as_str(), fresh.next_15m, true);
    wait_fake(&d, "entry after the pause", 20, || entered_and_protected(&fake, &fresh.symbol));
    let s = d.wait_status("cooldown refusal", |s| {
        s["recent_signals"].as_array().is_some_and(|a| {
            a.iter().any(|x| {
                x["symbol"] == losers[0].symbol.as_str()
                    && x["time"].as_i64().is_some_and(|t| t >= pause_until)
                    && x["reason"].as_str().is_some_and(|r| r.contains("symbol_free"))
            })
        })
    });
    assert_eq!(s["risk"]["symbol_cooldowns"][&losers[0].symbol], cooldowns[&losers[0].symbol]);
    assert_eq!(orders_for(&fake, &losers[0].symbol), loser_orders, "an entry was sent during the cooldown");
    d.terminate();
    let early: Vec<i64> =
        fake.orders().iter().filter(|o| o.symbol == fresh.symbol && o.time < pause_until).map(|o| o.time).collect();
    assert!(early.is_empty(), "entries sent during the pause at {early:?}");

    // The journal's verdicts: refused by the pause alone, then taken; the cooled-down
    // symbol refused by its cooldown alone once the pause is over.
    let fresh_checks = risk_checks(dir.path(), "streak", &fresh.symbol);
    assert!(fresh_checks.len() >= 2, "{fresh_checks:?}");
    assert_eq!(fresh_checks[0], (false, vec!["loss_streak".to_string()]));
    assert_eq!(fresh_checks.last().unwrap(), &(true, Vec::new()));
    let loser_checks = risk_checks(dir.path(), "streak", &losers[0].symbol);
    assert_eq!(loser_checks.last().unwrap(), &(false, vec!["symbol_free".to_string()]), "{loser_checks:?}");
}
