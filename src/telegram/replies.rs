//! The texts of the read-only bot commands, from the `/status` snapshot, the health verdict
//! and the journal's closed trades. Pure: the task gathers the data, these format it.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use crate::api::{Mode, StatusSnapshot};
use crate::core::models::{TimestampMs, plain_decimal};
use crate::store::ClosedTrade;

/// One UTC day in milliseconds.
pub const DAY_MS: TimestampMs = 86_400_000;
/// Days `/daily` lists (and `/profit`'s middle window).
pub const RECENT_DAYS: i64 = 7;

fn money_text(text: &str) -> String {
    match text.parse::<Decimal>() {
        Ok(d) => money(d),
        Err(_) => text.to_string(),
    }
}

/// `+12.34`, `-5.6`, `0`: two decimals, signed when not zero.
pub fn money(d: Decimal) -> String {
    let r = d.round_dp(2);
    if r > Decimal::ZERO { format!("+{}", plain_decimal(r)) } else { plain_decimal(r) }
}

fn time_text(t: TimestampMs) -> String {
    chrono::DateTime::from_timestamp_millis(t)
        .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| t.to_string())
}

/// `/status`.
pub fn status(s: &StatusSnapshot) -> String {
    let mode = match s.mode {
        Mode::Live => "LIVE",
        Mode::DryRun => "dry-run",
    };
    let mut lines = vec![
        format!(
            "Kinetic ({mode}): equity {} USDT, {} open position(s)",
            money_text(&s.equity).trim_start_matches('+'),
            s.positions.len()
        ),
        format!("Entries: {}", if s.risk.entries_enabled { "enabled" } else { "BLOCKED" }),
    ];
    if s.control.paused {
        let by = s.control.paused_by.as_deref().unwrap_or("unknown");
        let since = s.control.paused_since.map(time_text).unwrap_or_default();
        lines.push(format!("PAUSED by {by} since {since}"));
    }
    if s.risk.emergency_latched {
        lines.push(format!(
            "EMERGENCY LATCHED since {}{}",
            s.risk.emergency_since.map(time_text).unwrap_or_default(),
            if s.risk.emergency_flattening { " (closing positions)" } else { "" }
        ));
    }
    if s.risk.daily_latched {
        lines.push("DAILY LOSS LIMIT reached: no entries until the next UTC day".into());
    }
    if let Some(until) = s.risk.loss_pause_until {
        lines.push(format!("Loss-streak pause until {}", time_text(until)));
    }
    if !s.exchange_reachable {
        lines.push("EXCHANGE UNREACHABLE: the last account read failed".into());
    }
    if !s.control.pending_force_exits.is_empty() {
        lines.push(format!("Force exits under way: {}", s.control.pending_force_exits.join(", ")));
    }
    if let Some(c) = s.control.recent_commands.first() {
        lines.push(format!(
            "Last command: {} from {}:{} at {} ({})",
            c.action,
            c.channel,
            c.who,
            time_text(c.time),
            if c.ok { "done" } else { "refused" }
        ));
    }
    lines.join("\n")
}

/// `/positions`.
pub fn positions(s: &StatusSnapshot) -> String {
    if s.positions.is_empty() {
        return "No open positions.".into();
    }
    let mut lines = vec![format!("{} open position(s):", s.positions.len())];
    for p in &s.positions {
        lines.push(format!(
            "{} {} {} @ {} x{} | mark {} | uPnL {} | stop {}{} | {}{}",
            p.symbol,
            p.direction.as_str(),
            p.qty,
            p.entry_price,
            p.leverage,
            p.mark_price.as_deref().unwrap_or("-"),
            p.unrealized_pnl.as_deref().map(money_text).unwrap_or_else(|| "-".into()),
            p.stop,
            if p.stop_on_exchange { "" } else { " (NOT ON EXCHANGE)" },
            serde_json::to_value(p.stage).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
            if p.order_in_flight { ", order in flight" } else { "" }
        ));
    }
    lines.join("\n")
}

/// `/balance`.
pub fn balance(s: &StatusSnapshot) -> String {
    format!(
        "Wallet {} USDT\nUnrealized PnL {} USDT\nEquity {} USDT\nToday {} USDT since a day start of {} USDT (realized {})",
        s.wallet_balance,
        money_text(&s.unrealized_pnl),
        s.equity,
        money_text(&s.risk.today_pnl),
        s.risk.day_start_equity,
        money_text(&s.risk.day_realized_pnl)
    )
}

/// Sum, count and winners of `trades` closed at or after `since`.
fn window(trades: &[ClosedTrade], since: TimestampMs) -> (Decimal, usize, usize) {
    trades.iter().filter(|t| t.closed_at >= since).fold((Decimal::ZERO, 0, 0), |(sum, n, wins), t| {
        (sum + t.net_pnl, n + 1, wins + usize::from(t.net_pnl > Decimal::ZERO))
    })
}

/// `/profit`: realized PnL (fees deducted) today (UTC), the last 7 days and all time, from
/// every closed trade in the journal.
pub fn profit(all_trades: &[ClosedTrade], now: TimestampMs) -> String {
    let today = now.div_euclid(DAY_MS) * DAY_MS;
    let rows = [("Today (UTC)", today), ("Last 7 days", now - RECENT_DAYS * DAY_MS), ("All time", TimestampMs::MIN)];
    let mut lines = vec!["Realized PnL, fees deducted (journal):".to_string()];
    for (name, since) in rows {
        let (sum, n, wins) = window(all_trades, since);
        lines.push(format!("{name}: {} USDT over {n} trade(s), {wins} winning", money(sum)));
    }
    lines.join("\n")
}

/// `/daily`: realized PnL per UTC day over the last [`RECENT_DAYS`] days, newest first.
pub fn daily(trades: &[ClosedTrade], now: TimestampMs) -> String {
    let today = now.div_euclid(DAY_MS);
    let mut days: BTreeMap<i64, (Decimal, usize)> =
        (today - RECENT_DAYS + 1..=today).map(|d| (d, (Decimal::ZERO, 0))).collect();
    for t in trades {
        if let Some(entry) = days.get_mut(&t.closed_at.div_euclid(DAY_MS)) {
            entry.0 += t.net_pnl;
            entry.1 += 1;
        }
    }
    let mut lines = vec![format!("Realized PnL per UTC day (last {RECENT_DAYS}):")];
    for (day, (sum, n)) in days.iter().rev() {
        let date = chrono::DateTime::from_timestamp_millis(day * DAY_MS)
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_else(|| day.to_string());
        lines.push(format!("{date}: {} USDT ({n} trade(s))", money(*sum)));
    }
    lines.join("\n")
}

/// `/health`: the same verdict as `GET /health`.
pub fn health(verdict: &Result<(), Vec<String>>) -> String {
    match verdict {
        Ok(()) => "Healthy: the position manager loop, the streams and the exchange are live.".into(),
        Err(reasons) => format!("UNHEALTHY:\n- {}", reasons.join("\n- ")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;

    const NOW: TimestampMs = 1_700_000_000_000; // 2023-11-14 22:13 UTC

    fn trade(closed_at: TimestampMs, net_pnl: Decimal) -> ClosedTrade {
        ClosedTrade { closed_at, net_pnl }
    }

    #[test]
    fn profit_counts_today_the_last_seven_days_and_all_time() {
        let trades = [
            trade(NOW - 30 * DAY_MS, dec!(100)),
            trade(NOW - 3 * DAY_MS, dec!(-20.5)),
            trade(NOW - 60_000, dec!(12.346)),
        ];
        let text = profit(&trades, NOW);
        assert!(text.contains("Today (UTC): +12.35 USDT over 1 trade(s), 1 winning"), "{text}");
        assert!(text.contains("Last 7 days: -8.15 USDT over 2 trade(s), 1 winning"), "{text}");
        assert!(text.contains("All time: +91.85 USDT over 3 trade(s), 2 winning"), "{text}");
    }

    #[test]
    fn daily_lists_seven_days_newest_first() {
        let trades =
            [trade(NOW - DAY_MS, dec!(5)), trade(NOW - DAY_MS + 1, dec!(-2)), trade(NOW - 9 * DAY_MS, dec!(1))];
        let text = daily(&trades, NOW);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8, "{text}");
        assert_eq!(lines[1], "2023-11-14: 0 USDT (0 trade(s))");
        assert_eq!(lines[2], "2023-11-13: +3 USDT (2 trade(s))");
    }
}
