//! The report's breakdowns of a finished run: long vs short, per UTC month, trade durations,
//! win/loss streaks, the worst drawdown with its dates and the buy-and-hold benchmark. All
//! computed from the trade list, the equity curve and the closes the engine saw; written to
//! `metrics.json` (fields added beside the older ones) and to the report's tables.

use std::collections::BTreeMap;

use rust_decimal::prelude::*;
use serde::Serialize;

use crate::backtest::account::TradeRecord;
use crate::backtest::engine::EquityPoint;
use crate::backtest::metrics::{iso, money};
use crate::core::models::TimestampMs;

/// One row of a grouped table (direction or month).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GroupRow {
    /// `long` / `short`, or the UTC month `YYYY-MM` the trade closed in.
    pub key: String,
    pub trades: u64,
    pub wins: u64,
    pub win_rate_pct: f64,
    pub gross_pnl: Decimal,
    /// Entry and exit fees of the trades.
    pub fees: Decimal,
    pub funding: Decimal,
    pub net_pnl: Decimal,
    pub average_trade_pnl: Decimal,
}

/// How long trades were held, in minutes (entry fill to final exit).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Durations {
    pub average_minutes: f64,
    pub median_minutes: f64,
    pub max_minutes: f64,
    pub average_winner_minutes: f64,
    pub average_loser_minutes: f64,
}

/// Longest runs of consecutive winning and losing trades, in exit order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Streaks {
    pub longest_win_streak: u64,
    pub longest_loss_streak: u64,
}

/// The largest peak-to-trough fall of the equity curve, with its dates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DrawdownPeriod {
    pub depth_pct: f64,
    pub peak_equity: f64,
    pub trough_equity: f64,
    /// The last time the equity stood at the peak (the first point when the peak is the
    /// starting balance).
    pub peak_time: String,
    pub trough_time: String,
    /// The first time the equity was back at the peak; absent when it never recovered.
    pub recovery_time: Option<String>,
    /// Peak to recovery (or to the end of the run when it never recovered), days.
    pub duration_days: f64,
}

/// One symbol of the benchmark.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchmarkLeg {
    pub symbol: String,
    pub first_close: f64,
    pub last_close: f64,
    pub return_pct: f64,
}

/// Buy and hold of the traded symbols, equal weights, from the first to the last 15m close of
/// the trading window, no fees, no funding, no leverage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Benchmark {
    pub return_pct: f64,
    pub final_equity: f64,
    pub legs: Vec<BenchmarkLeg>,
}

fn r6(x: f64) -> f64 {
    if x.is_finite() { (x * 1e6).round() / 1e6 } else { 0.0 }
}

fn rows<'a, F>(trades: &'a [TradeRecord], key: F) -> Vec<GroupRow>
where
    F: Fn(&'a TradeRecord) -> String,
{
    let mut map: BTreeMap<String, GroupRow> = BTreeMap::new();
    for t in trades {
        let k = key(t);
        let row = map.entry(k.clone()).or_insert_with(|| GroupRow { key: k, ..GroupRow::default() });
        row.trades += 1;
        row.wins += u64::from(t.net_pnl > Decimal::ZERO);
        row.gross_pnl += t.gross_pnl;
        row.fees += t.fees;
        row.funding += t.funding;
        row.net_pnl += t.net_pnl;
    }
    map.into_values()
        .map(|mut r| {
            r.win_rate_pct = if r.trades == 0 { 0.0 } else { r6(r.wins as f64 / r.trades as f64 * 100.0) };
            r.average_trade_pnl =
                if r.trades == 0 { Decimal::ZERO } else { money(r.net_pnl / Decimal::from(r.trades)) };
            r.gross_pnl = money(r.gross_pnl);
            r.fees = money(r.fees);
            r.funding = money(r.funding);
            r.net_pnl = money(r.net_pnl);
            r
        })
        .collect()
}

/// Long vs short: always both rows, in that order.
pub fn per_direction(trades: &[TradeRecord]) -> Vec<GroupRow> {
    let mut out = rows(trades, |t| t.direction.to_string().to_ascii_lowercase());
    for key in ["long", "short"] {
        if !out.iter().any(|r| r.key == key) {
            out.push(GroupRow { key: key.to_string(), ..GroupRow::default() });
        }
    }
    out.sort_by_key(|r| u8::from(r.key != "long"));
    out
}

/// UTC month `YYYY-MM` of a time.
pub fn month_of(t: TimestampMs) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(t)
        .map(|d| d.format("%Y-%m").to_string())
        .unwrap_or_else(|| t.to_string())
}

/// Per UTC month of the trades' final exits, in time order.
pub fn per_month(trades: &[TradeRecord]) -> Vec<GroupRow> {
    rows(trades, |t| month_of(t.exit_time))
}

fn minutes(t: &TradeRecord) -> f64 {
    (t.exit_time - t.entry_time).max(0) as f64 / 60_000.0
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 }
}

/// Holding times.
pub fn durations(trades: &[TradeRecord]) -> Durations {
    let mut all: Vec<f64> = trades.iter().map(minutes).collect();
    all.sort_by(f64::total_cmp);
    let n = all.len();
    let median = match n {
        0 => 0.0,
        _ if n % 2 == 1 => all.get(n / 2).copied().unwrap_or(0.0),
        _ => (all.get(n / 2 - 1).copied().unwrap_or(0.0) + all.get(n / 2).copied().unwrap_or(0.0)) / 2.0,
    };
    let winners: Vec<f64> = trades.iter().filter(|t| t.net_pnl > Decimal::ZERO).map(minutes).collect();
    let losers: Vec<f64> = trades.iter().filter(|t| t.net_pnl <= Decimal::ZERO).map(minutes).collect();
    Durations {
        average_minutes: r6(mean(&all)),
        median_minutes: r6(median),
        max_minutes: r6(all.last().copied().unwrap_or(0.0)),
        average_winner_minutes: r6(mean(&winners)),
        average_loser_minutes: r6(mean(&losers)),
    }
}

/// Streaks in the order trades closed (ties by entry time).
pub fn streaks(trades: &[TradeRecord]) -> Streaks {
    let mut order: Vec<&TradeRecord> = trades.iter().collect();
    order.sort_by_key(|t| (t.exit_time, t.entry_time));
    let (mut win, mut loss) = (0u64, 0u64);
    let mut s = Streaks::default();
    for t in order {
        if t.net_pnl > Decimal::ZERO {
            win += 1;
            loss = 0;
        } else {
            loss += 1;
            win = 0;
        }
        s.longest_win_streak = s.longest_win_streak.max(win);
        s.longest_loss_streak = s.longest_loss_streak.max(loss);
    }
    s
}

/// The worst drawdown of `equity` with `start` as the first peak; `None` when it never fell.
pub fn worst_drawdown(start: f64, equity: &[EquityPoint]) -> Option<DrawdownPeriod> {
    let first = equity.first()?;
    let (mut peak, mut peak_t) = (start, first.time);
    // (depth, peak, peak time, trough, trough time)
    let mut worst: Option<(f64, f64, TimestampMs, f64, TimestampMs)> = None;
    for p in equity {
        if p.equity >= peak {
            peak = p.equity;
            peak_t = p.time;
        } else if peak > 0.0 {
            let depth = (peak - p.equity) / peak;
            if worst.is_none_or(|w| depth > w.0) {
                worst = Some((depth, peak, peak_t, p.equity, p.time));
            }
        }
    }
    let (depth, peak, peak_time, trough, trough_time) = worst?;
    let recovery = equity.iter().find(|p| p.time > trough_time && p.equity >= peak).map(|p| p.time);
    let end = recovery.or(equity.last().map(|p| p.time)).unwrap_or(trough_time);
    Some(DrawdownPeriod {
        depth_pct: r6(depth * 100.0),
        peak_equity: r6(peak),
        trough_equity: r6(trough),
        peak_time: iso(peak_time),
        trough_time: iso(trough_time),
        recovery_time: recovery.map(iso),
        duration_days: r6((end - peak_time) as f64 / 86_400_000.0),
    })
}

/// The benchmark from the engine's closes ([`crate::backtest::Engine::price_span`]) and its
/// curve ([`crate::backtest::Engine::benchmark`]); `None` without a close in the window.
pub fn benchmark(start: f64, curve: &[f64], spans: &[(String, Option<f64>, Option<f64>)]) -> Option<Benchmark> {
    let final_equity = *curve.last()?;
    let legs = spans
        .iter()
        .filter_map(|(symbol, first, last)| {
            let (first, last) = ((*first)?, (*last)?);
            Some(BenchmarkLeg {
                symbol: symbol.clone(),
                first_close: first,
                last_close: last,
                return_pct: r6((last / first - 1.0) * 100.0),
            })
        })
        .collect();
    let return_pct = if start > 0.0 { r6((final_equity / start - 1.0) * 100.0) } else { 0.0 };
    Some(Benchmark { return_pct, final_equity: r6(final_equity), legs })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    fn pt(time: i64, equity: f64) -> EquityPoint {
        EquityPoint { time, equity, open_positions: 0 }
    }

    #[test]
    fn worst_drawdown_has_its_dates() {
        let h = 3_600_000;
        let eq =
            [pt(h, 100.0), pt(2 * h, 120.0), pt(3 * h, 90.0), pt(4 * h, 100.0), pt(5 * h, 121.0), pt(6 * h, 110.0)];
        let d = worst_drawdown(100.0, &eq).unwrap();
        assert!((d.depth_pct - 25.0).abs() < 1e-9);
        assert_eq!(d.peak_time, iso(2 * h));
        assert_eq!(d.trough_time, iso(3 * h));
        assert_eq!(d.recovery_time, Some(iso(5 * h)));
        assert!(worst_drawdown(100.0, &[pt(h, 100.0), pt(2 * h, 101.0)]).is_none());
        let never = worst_drawdown(100.0, &[pt(h, 90.0), pt(2 * h, 95.0)]).unwrap();
        assert_eq!(never.recovery_time, None);
        assert_eq!(never.peak_time, iso(h));
    }

    #[test]
    fn benchmark_is_equal_weights() {
        let spans = vec![("A".to_string(), Some(10.0), Some(20.0)), ("B".to_string(), Some(4.0), Some(2.0))];
        let b = benchmark(100.0, &[100.0, 125.0], &spans).unwrap();
        assert!((b.return_pct - 25.0).abs() < 1e-9);
        assert_eq!(b.legs.len(), 2);
        assert!((b.legs[1].return_pct + 50.0).abs() < 1e-9);
    }
}
