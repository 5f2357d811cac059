//! Performance figures of a finished run, computed from the trade list and the equity curve.
//!
//! Definitions (also printed in `metrics.json` under `definitions`):
//! - equity curve: wallet + unrealized PnL at every 15m close of the trading window;
//! - win = a trade with net PnL (after fees and funding) > 0; profit factor = gross wins /
//!   |gross losses| of net trade PnL (absent when there is no losing trade);
//! - total return = final equity / starting balance − 1; annualized = (1 + total)^(365 / days)
//!   − 1 over the replayed period (absent for periods under a day);
//! - max drawdown = largest peak-to-trough fall of the equity curve, in percent of the peak;
//! - Sharpe and Sortino from DAILY returns (equity at the last 15m close of each UTC day vs the
//!   day before; the first day vs the starting balance), risk-free rate 0, annualized × √365
//!   (crypto trades every day). Sharpe = mean / sample std; Sortino = mean / downside
//!   deviation √(Σ min(r, 0)² / n). Absent with fewer than two days or zero deviation;
//! - exposure = share of 15m closes with at least one open position.

use std::collections::BTreeMap;

use rust_decimal::prelude::*;
use serde::Serialize;

use crate::backtest::account::{SimAccount, TradeRecord};
use crate::backtest::breakdown::{self, Benchmark, DrawdownPeriod, Durations, GroupRow, Streaks};
use crate::backtest::engine::{Engine, EquityPoint, RunStats};
use crate::core::models::{Direction, TimestampMs};

const DAY_MS: i64 = 86_400_000;

/// A trade in one line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TradeBrief {
    pub symbol: String,
    pub direction: Direction,
    pub entry_time: String,
    pub net_pnl: Decimal,
    pub exit_reason: String,
}

/// One row of the per-symbol table.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SymbolRow {
    pub symbol: String,
    pub trades: u64,
    pub wins: u64,
    pub win_rate_pct: f64,
    pub net_pnl: Decimal,
    pub fees: Decimal,
    pub funding: Decimal,
}

/// One row of the per-exit-reason table.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReasonRow {
    pub reason: String,
    /// Exit fills with this reason (partial take-profits count one each).
    pub fills: u64,
    /// Trades whose final close had this reason.
    pub trades: u64,
    /// Price PnL of those fills, before fees.
    pub gross_pnl: Decimal,
    /// Entry + exit fees of the trades whose final close had this reason (the column sums to
    /// `fees_paid`).
    pub fees: Decimal,
    /// Exit fees of the fills with this reason.
    pub fill_fees: Decimal,
    /// Net PnL of the trades whose final close had this reason.
    pub net_pnl: Decimal,
}

/// Counts of the replay.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReplayCounts {
    pub candles: u64,
    pub candles_15m: u64,
    pub candles_1h: u64,
    pub candles_4h: u64,
    pub scans: u64,
    pub evaluations: u64,
    pub entries: u64,
    pub funding_events: u64,
    pub emergency_exits: u64,
    pub skip_reasons: BTreeMap<String, u64>,
}

/// Everything `metrics.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    pub period_start: String,
    pub period_end: String,
    pub days: f64,
    pub symbols: Vec<String>,
    pub starting_balance: Decimal,
    pub final_equity: Decimal,
    pub net_pnl: Decimal,
    pub total_return_pct: f64,
    pub annualized_return_pct: Option<f64>,
    pub trades: u64,
    pub wins: u64,
    pub losses: u64,
    pub win_rate_pct: f64,
    pub profit_factor: Option<f64>,
    pub average_trade_pnl: Decimal,
    pub max_drawdown_pct: f64,
    pub sharpe: Option<f64>,
    pub sortino: Option<f64>,
    pub fees_paid: Decimal,
    pub funding_paid: Decimal,
    pub exposure_pct: f64,
    pub best_trade: Option<TradeBrief>,
    pub worst_trade: Option<TradeBrief>,
    pub per_symbol: Vec<SymbolRow>,
    pub per_exit_reason: Vec<ReasonRow>,
    /// Long vs short.
    pub per_direction: Vec<GroupRow>,
    /// Per UTC month of the trades' final exits.
    pub per_month: Vec<GroupRow>,
    pub durations: Durations,
    pub streaks: Streaks,
    pub worst_drawdown: Option<DrawdownPeriod>,
    /// Buy and hold of the traded symbols (set by [`compute_run`]; absent from [`compute`]).
    pub benchmark: Option<Benchmark>,
    pub replay: ReplayCounts,
    pub definitions: BTreeMap<&'static str, &'static str>,
}

/// RFC 3339 UTC with milliseconds.
pub fn iso(t: TimestampMs) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(t)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| t.to_string())
}

/// Money as printed: at most 8 decimals, no trailing zeros.
pub fn money(d: Decimal) -> Decimal {
    d.round_dp(8).normalize()
}

/// A ratio rounded to 6 decimals so the JSON stays readable (and stable).
fn r6(x: f64) -> f64 {
    if x.is_finite() { (x * 1e6).round() / 1e6 } else { 0.0 }
}

fn brief(t: &TradeRecord) -> TradeBrief {
    TradeBrief {
        symbol: t.symbol.clone(),
        direction: t.direction,
        entry_time: iso(t.entry_time),
        net_pnl: money(t.net_pnl),
        exit_reason: t.exit_reason.as_str().to_string(),
    }
}

/// Maximum drawdown of `equity` (starting from `start` as the first peak), percent.
pub fn max_drawdown_pct(start: f64, equity: &[EquityPoint]) -> f64 {
    let mut peak = start;
    let mut worst = 0.0f64;
    for p in equity {
        peak = peak.max(p.equity);
        if peak > 0.0 {
            worst = worst.max((peak - p.equity) / peak);
        }
    }
    worst * 100.0
}

/// Daily returns: equity at the last point of each UTC day vs the previous day's.
pub fn daily_returns(start: f64, equity: &[EquityPoint]) -> Vec<f64> {
    daily_returns_dated(start, equity).into_iter().map(|(_, r)| r).collect()
}

/// [`daily_returns`] with each return's UTC day (days since 1970-01-01).
pub fn daily_returns_dated(start: f64, equity: &[EquityPoint]) -> Vec<(i64, f64)> {
    let mut out = Vec::new();
    let mut prev = start;
    let mut i = 0;
    while i < equity.len() {
        let Some(first) = equity.get(i) else { break };
        // A close exactly at midnight (t = 00:00) belongs to the day that just ended.
        let day = (first.time - 1).div_euclid(DAY_MS);
        let mut last = first.equity;
        while let Some(p) = equity.get(i) {
            if (p.time - 1).div_euclid(DAY_MS) != day {
                break;
            }
            last = p.equity;
            i += 1;
        }
        if prev > 0.0 {
            out.push((day, last / prev - 1.0));
        }
        prev = last;
    }
    out
}

/// (Sharpe, Sortino), annualized with √365.
pub fn sharpe_sortino(returns: &[f64]) -> (Option<f64>, Option<f64>) {
    let n = returns.len();
    if n < 2 {
        return (None, None);
    }
    let nf = n as f64;
    let mean = returns.iter().sum::<f64>() / nf;
    let var = returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (nf - 1.0);
    let down = (returns.iter().map(|r| r.min(0.0).powi(2)).sum::<f64>() / nf).sqrt();
    let ann = 365f64.sqrt();
    let sharpe = (var > 0.0).then(|| r6(mean / var.sqrt() * ann));
    let sortino = (down > 0.0).then(|| r6(mean / down * ann));
    (sharpe, sortino)
}

/// Computes the metrics of a finished run.
pub fn compute(symbols: &[String], account: &SimAccount, equity: &[EquityPoint], stats: &RunStats) -> Metrics {
    let start_balance = account.starting_balance;
    let start_f = start_balance.to_f64().unwrap_or(0.0);
    let final_equity = account.wallet;
    let (t0, t1) = match (equity.first(), equity.last()) {
        (Some(a), Some(b)) => (a.time, b.time),
        _ => (0, 0),
    };
    let days = (t1 - t0) as f64 / DAY_MS as f64;
    let total = if start_balance.is_zero() {
        0.0
    } else {
        (final_equity / start_balance - Decimal::ONE).to_f64().unwrap_or(0.0)
    };
    let annualized = (days >= 1.0 && total > -1.0).then(|| r6(((1.0 + total).powf(365.0 / days) - 1.0) * 100.0));
    let trades = &account.trades;
    let wins = trades.iter().filter(|t| t.net_pnl > Decimal::ZERO).count() as u64;
    let gross_win: Decimal = trades.iter().filter(|t| t.net_pnl > Decimal::ZERO).map(|t| t.net_pnl).sum();
    let gross_loss: Decimal = trades.iter().filter(|t| t.net_pnl < Decimal::ZERO).map(|t| -t.net_pnl).sum();
    let profit_factor = (gross_loss > Decimal::ZERO).then(|| r6((gross_win / gross_loss).to_f64().unwrap_or(0.0)));
    let n = trades.len() as u64;
    let net: Decimal = trades.iter().map(|t| t.net_pnl).sum();
    let best = trades.iter().max_by(|a, b| a.net_pnl.cmp(&b.net_pnl).then(b.entry_time.cmp(&a.entry_time)));
    let worst = trades.iter().min_by(|a, b| a.net_pnl.cmp(&b.net_pnl).then(a.entry_time.cmp(&b.entry_time)));
    let mut per_symbol: BTreeMap<&str, SymbolRow> =
        symbols.iter().map(|s| (s.as_str(), SymbolRow { symbol: s.clone(), ..SymbolRow::default() })).collect();
    for t in trades {
        let row = per_symbol
            .entry(t.symbol.as_str())
            .or_insert_with(|| SymbolRow { symbol: t.symbol.clone(), ..SymbolRow::default() });
        row.trades += 1;
        row.wins += u64::from(t.net_pnl > Decimal::ZERO);
        row.net_pnl += t.net_pnl;
        row.fees += t.fees;
        row.funding += t.funding;
    }
    let per_symbol = per_symbol
        .into_values()
        .map(|mut r| {
            r.win_rate_pct = if r.trades == 0 { 0.0 } else { r6(r.wins as f64 / r.trades as f64 * 100.0) };
            r.net_pnl = money(r.net_pnl);
            r.fees = money(r.fees);
            r.funding = money(r.funding);
            r
        })
        .collect();
    let per_exit_reason = account
        .by_reason
        .iter()
        .map(|(reason, s)| {
            let of_reason = trades.iter().filter(|t| t.exit_reason == *reason);
            ReasonRow {
                reason: reason.as_str().to_string(),
                fills: s.fills,
                trades: s.trades,
                gross_pnl: money(s.gross_pnl),
                fees: money(of_reason.clone().map(|t| t.fees).sum()),
                fill_fees: money(s.fees),
                net_pnl: money(of_reason.map(|t| t.net_pnl).sum()),
            }
        })
        .collect();
    let in_market = equity.iter().filter(|p| p.open_positions > 0).count();
    let (sharpe, sortino) = sharpe_sortino(&daily_returns(start_f, equity));
    let definitions = BTreeMap::from([
        ("equity_curve", "wallet + unrealized PnL at every 15m close of the trading window"),
        ("win", "a trade whose net PnL (after fees and funding) is > 0"),
        ("profit_factor", "sum of winning net PnL / |sum of losing net PnL|"),
        ("annualized_return_pct", "(1 + total return)^(365 / days) - 1"),
        ("max_drawdown_pct", "largest peak-to-trough fall of the equity curve, percent of the peak"),
        ("sharpe", "mean / sample std of daily returns (UTC days), risk-free 0, x sqrt(365)"),
        ("sortino", "mean / downside deviation sqrt(sum(min(r,0)^2)/n) of daily returns, x sqrt(365)"),
        ("exposure_pct", "share of 15m closes with at least one open position"),
        (
            "per_exit_reason",
            "fills and fill_fees per exit fill; trades, fees (entry + exit) and net_pnl per final reason",
        ),
        ("per_month", "trades grouped by the UTC month of their final exit"),
        ("durations", "entry fill to final exit, minutes"),
        ("worst_drawdown", "the max drawdown's peak, trough and first return to the peak (UTC)"),
        (
            "benchmark",
            "buy and hold, equal weights over the traded symbols, first to last 15m close of the window, no costs",
        ),
        (
            "intra_candle_rule",
            "open, then the extreme against the position, then the extreme in its favour, then the close; stop before target",
        ),
        ("fills", "market orders at the reference price +/- slippage, rounded to tick against the trader, taker fee"),
        ("funding", "every 8 h (00/08/16 UTC) on open positions at the last 15m close; file rate, else the flat rate"),
        ("liquidation", "isolated margin minus maintenance margin; booked at the bankruptcy price (whole margin lost)"),
    ]);
    Metrics {
        period_start: iso(t0),
        period_end: iso(t1),
        days: r6(days),
        symbols: symbols.to_vec(),
        starting_balance: money(start_balance),
        final_equity: money(final_equity),
        net_pnl: money(net),
        total_return_pct: r6(total * 100.0),
        annualized_return_pct: annualized,
        trades: n,
        wins,
        losses: n - wins,
        win_rate_pct: if n == 0 { 0.0 } else { r6(wins as f64 / n as f64 * 100.0) },
        profit_factor,
        average_trade_pnl: if n == 0 { Decimal::ZERO } else { money(net / Decimal::from(n)) },
        max_drawdown_pct: r6(max_drawdown_pct(start_f, equity)),
        sharpe,
        sortino,
        fees_paid: money(account.fees_paid),
        funding_paid: money(account.funding_paid),
        exposure_pct: if equity.is_empty() { 0.0 } else { r6(in_market as f64 / equity.len() as f64 * 100.0) },
        best_trade: best.map(brief),
        worst_trade: worst.map(brief),
        per_symbol,
        per_exit_reason,
        per_direction: breakdown::per_direction(trades),
        per_month: breakdown::per_month(trades),
        durations: breakdown::durations(trades),
        streaks: breakdown::streaks(trades),
        worst_drawdown: breakdown::worst_drawdown(start_f, equity),
        benchmark: None,
        replay: ReplayCounts {
            candles: stats.candles,
            candles_15m: stats.candles_15m,
            candles_1h: stats.candles_1h,
            candles_4h: stats.candles_4h,
            scans: stats.scans,
            evaluations: stats.evaluations,
            entries: stats.entries,
            funding_events: stats.funding_events,
            emergency_exits: stats.emergencies,
            skip_reasons: stats.skip_reasons.clone(),
        },
        definitions,
    }
}

/// [`compute`] over a finished engine, with the buy-and-hold benchmark of the closes it saw.
pub fn compute_run(engine: &Engine) -> Metrics {
    let symbols: Vec<String> = engine.symbol_names().map(str::to_string).collect();
    let mut m = compute(&symbols, engine.account(), &engine.equity, &engine.stats);
    let start = engine.account().starting_balance.to_f64().unwrap_or(0.0);
    m.benchmark = breakdown::benchmark(start, &engine.benchmark, &engine.price_span());
    m
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    fn pt(time: i64, equity: f64) -> EquityPoint {
        EquityPoint { time, equity, open_positions: 0 }
    }

    #[test]
    fn drawdown_and_daily_returns() {
        let eq = [pt(DAY_MS / 2, 110.0), pt(DAY_MS, 99.0), pt(DAY_MS + 1000, 120.0), pt(2 * DAY_MS, 108.0)];
        assert!((max_drawdown_pct(100.0, &eq) - 10.0).abs() < 1e-9);
        let r = daily_returns(100.0, &eq);
        assert_eq!(r.len(), 2);
        assert!((r[0] - -0.01).abs() < 1e-12);
        assert!((r[1] - (108.0 / 99.0 - 1.0)).abs() < 1e-12);
        let (sh, so) = sharpe_sortino(&[0.01, -0.01, 0.02]);
        assert!(sh.unwrap() > 0.0 && so.unwrap() > 0.0);
        assert_eq!(sharpe_sortino(&[0.01]), (None, None));
    }
}
