//! The report's HTML pieces: summary cards, the loss statement, the tables (per symbol, long vs
//! short, per exit reason, per month, durations and streaks, worst drawdown, benchmark), the
//! assumptions box, the configuration used and the trade list.

use std::fmt::Write as _;

use rust_decimal::prelude::*;

use crate::backtest::account::TradeRecord;
use crate::backtest::breakdown::GroupRow;
use crate::backtest::metrics::{Metrics, iso, money};
use crate::config::Settings;

pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}")).unwrap_or_else(|| "n/a".to_string())
}

/// A signed amount with a class for its colour.
fn signed(d: Decimal) -> String {
    let class = if d > Decimal::ZERO {
        "pos"
    } else if d < Decimal::ZERO {
        "neg"
    } else {
        ""
    };
    format!("<td class=\"{class}\">{}</td>", d.round_dp(2))
}

fn table(h: &mut String, id: &str, headers: &[&str]) {
    let _ = write!(h, "<table id=\"{id}\">\n<tr>");
    for x in headers {
        let _ = write!(h, "<th>{}</th>", esc(x));
    }
    h.push_str("</tr>\n");
}

/// `2 d 3 h`, `3 h 15 m`, `45 m`.
pub fn duration_text(minutes: f64) -> String {
    let m = minutes.max(0.0).round() as i64;
    let (d, h, mm) = (m / 1440, m % 1440 / 60, m % 60);
    if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {mm} m")
    } else {
        format!("{mm} m")
    }
}

/// The headline figures as cards, and a plain statement when the run lost money.
pub fn cards(h: &mut String, m: &Metrics) {
    if m.net_pnl < Decimal::ZERO {
        let _ = write!(
            h,
            "<p class=\"loss\" id=\"loss-statement\"><strong>This run lost money:</strong> {} USDT ({:.2} %) over {:.1} \
             days, from {} to {} USDT.",
            m.net_pnl.round_dp(2),
            m.total_return_pct,
            m.days,
            m.starting_balance,
            m.final_equity.round_dp(2)
        );
        if let Some(b) = &m.benchmark {
            let _ = write!(h, " Buying and holding the same symbols returned {:.2} % over the period.", b.return_pct);
        }
        h.push_str(" Do not trade this configuration as it is.</p>\n");
    }
    let mut cards: Vec<(&str, String, &str)> = vec![
        ("Net PnL", format!("{} USDT", m.net_pnl.round_dp(2)), if m.net_pnl < Decimal::ZERO { "neg" } else { "pos" }),
        ("Return", format!("{:.2} %", m.total_return_pct), if m.total_return_pct < 0.0 { "neg" } else { "pos" }),
        ("Final equity", format!("{} USDT", m.final_equity.round_dp(2)), ""),
        ("Max drawdown", format!("{:.2} %", m.max_drawdown_pct), "neg"),
        ("Trades", format!("{} ({:.1} % won)", m.trades, m.win_rate_pct), ""),
        ("Profit factor", opt(m.profit_factor, 2), ""),
        ("Sharpe / Sortino", format!("{} / {}", opt(m.sharpe, 2), opt(m.sortino, 2)), ""),
        ("Fees + funding", format!("{} USDT", (m.fees_paid + m.funding_paid).round_dp(2)), ""),
        ("Exposure", format!("{:.1} %", m.exposure_pct), ""),
    ];
    if let Some(b) = &m.benchmark {
        cards.push(("Buy and hold", format!("{:.2} %", b.return_pct), if b.return_pct < 0.0 { "neg" } else { "pos" }));
    }
    h.push_str("<div class=\"cards\">\n");
    for (label, value, class) in cards {
        let _ = writeln!(
            h,
            "<div class=\"card\"><div class=\"label\">{label}</div><div class=\"value {class}\">{}</div></div>",
            esc(&value)
        );
    }
    h.push_str("</div>\n");
}

fn group_table(h: &mut String, id: &str, first: &str, rows: &[GroupRow]) {
    table(h, id, &[first, "trades", "win %", "gross PnL", "fees", "funding", "net PnL", "avg trade"]);
    for r in rows {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td>",
            esc(&r.key),
            r.trades,
            r.win_rate_pct,
            r.gross_pnl.round_dp(2),
            r.fees.round_dp(2),
            r.funding.round_dp(2)
        );
        let _ = writeln!(h, "{}{}</tr>", signed(r.net_pnl), signed(r.average_trade_pnl));
    }
    h.push_str("</table>\n");
}

/// Every breakdown table.
pub fn tables(h: &mut String, m: &Metrics) {
    h.push_str("<h2>Per symbol</h2>\n");
    table(h, "per-symbol", &["symbol", "trades", "win %", "fees", "funding", "net PnL"]);
    for r in &m.per_symbol {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td>",
            esc(&r.symbol),
            r.trades,
            r.win_rate_pct,
            r.fees.round_dp(2),
            r.funding.round_dp(2)
        );
        let _ = writeln!(h, "{}</tr>", signed(r.net_pnl));
    }
    h.push_str("</table>\n<h2>Long vs short</h2>\n");
    group_table(h, "per-direction", "direction", &m.per_direction);
    h.push_str(
        "<h2>Per exit reason</h2>\n<p class=\"note\">Trades are counted under the reason of their final close, \
         with their entry + exit fees and net PnL; fills counts every exit fill (a partial take-profit is a fill \
         of a trade that closed later for another reason), with its price PnL and exit fee.</p>\n",
    );
    table(h, "per-exit-reason", &["reason", "trades", "fees", "net PnL", "fills", "fill gross PnL", "fill fees"]);
    for r in &m.per_exit_reason {
        let _ = write!(h, "<tr><td>{}</td><td>{}</td><td>{}</td>", esc(&r.reason), r.trades, r.fees.round_dp(2));
        let _ = writeln!(
            h,
            "{}<td>{}</td><td>{}</td><td>{}</td></tr>",
            signed(r.net_pnl),
            r.fills,
            r.gross_pnl.round_dp(2),
            r.fill_fees.round_dp(2)
        );
    }
    h.push_str("</table>\n<h2>Per month (UTC, by exit)</h2>\n");
    group_table(h, "per-month", "month", &m.per_month);
    let d = &m.durations;
    let s = &m.streaks;
    h.push_str("<h2>Durations and streaks</h2>\n");
    table(
        h,
        "durations",
        &["average hold", "median hold", "longest hold", "avg winner", "avg loser", "win streak", "loss streak"],
    );
    let _ = writeln!(
        h,
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n</table>",
        duration_text(d.average_minutes),
        duration_text(d.median_minutes),
        duration_text(d.max_minutes),
        duration_text(d.average_winner_minutes),
        duration_text(d.average_loser_minutes),
        s.longest_win_streak,
        s.longest_loss_streak
    );
    h.push_str("<h2>Worst drawdown</h2>\n");
    match &m.worst_drawdown {
        Some(w) => {
            table(h, "worst-drawdown", &["depth", "peak", "trough", "recovered", "peak to recovery"]);
            let _ = writeln!(
                h,
                "<tr><td class=\"neg\">{:.2} %</td><td>{} ({:.2})</td><td>{} ({:.2})</td><td>{}</td><td>{:.1} days{}</td></tr>\n</table>",
                w.depth_pct,
                esc(&w.peak_time),
                w.peak_equity,
                esc(&w.trough_time),
                w.trough_equity,
                w.recovery_time.as_deref().map_or_else(|| "not recovered by the end".to_string(), esc),
                w.duration_days,
                if w.recovery_time.is_none() { " (so far)" } else { "" }
            );
        }
        None => h.push_str("<p>The equity never fell below a previous peak.</p>\n"),
    }
    if let Some(b) = &m.benchmark {
        let _ = writeln!(
            h,
            "<h2>Buy-and-hold benchmark</h2>\n<p class=\"note\">Equal weights, bought at each symbol's first 15m close of \
             the window and held to the last, no fees, funding or leverage: {:.2} % ({:.2} USDT).</p>",
            b.return_pct, b.final_equity
        );
        table(h, "benchmark", &["symbol", "first close", "last close", "return"]);
        for l in &b.legs {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.2} %</td></tr>",
                esc(&l.symbol),
                l.first_close,
                l.last_close,
                l.return_pct
            );
        }
        h.push_str("</table>\n");
    }
}

/// What the simulation assumed, from the settings used (or the metrics' definitions alone).
pub fn assumptions(h: &mut String, m: &Metrics, settings: Option<&Settings>) {
    h.push_str("<div class=\"assumptions\" id=\"assumptions\">\n<h2>Assumptions</h2>\n<ul>\n");
    if let Some(s) = settings {
        let p = &s.paper;
        let _ = writeln!(
            h,
            "<li><b>Fees:</b> taker {} % of notional on every market entry and exit (maker {} % unused: \
             the strategy only sends market orders); a liquidation pays no exit fee.</li>\n\
             <li><b>Slippage:</b> {} % against the trader on every fill, then rounded to the tick against the trader.</li>\n\
             <li><b>Funding:</b> the symbol's funding-rate file in the data folder where present, otherwise a flat \
             {} % per interval; settled on open positions at 00/08/16 UTC (or the symbol's own interval).</li>\n\
             <li><b>Starting balance:</b> {} USDT, isolated margin.</li>",
            p.taker_fee_pct, p.maker_fee_pct, p.slippage_pct, s.backtest.flat_funding_rate_pct, p.starting_balance
        );
    }
    for (key, label) in [
        ("fills", "Fills"),
        ("funding", "Funding schedule"),
        ("intra_candle_rule", "Intra-candle rule"),
        ("liquidation", "Liquidation"),
    ] {
        if let Some(text) = m.definitions.get(key) {
            let _ = writeln!(h, "<li><b>{label}:</b> {}.</li>", esc(text));
        }
    }
    h.push_str(
        "<li><b>Entries</b> fill at the open of the 15m candle after the signal; prices are last-trade candle \
         prices (no separate mark price); open positions are closed at the last close of the window \
         (<code>end_of_data</code>).</li>\n</ul>\n</div>\n",
    );
}

/// The configuration used, as TOML. Settings hold no credentials (the API key and secret and
/// the operator tokens come from the environment and are never serialized); the webhook URL,
/// which often embeds a token, is redacted. URLs are written with an escaped colon so the page
/// holds no link.
pub fn config_toml(settings: &Settings) -> String {
    let mut shown = settings.clone();
    if !shown.notify.webhook.url.is_empty() {
        shown.notify.webhook.url = "[REDACTED]".to_string();
    }
    let text = toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot serialize the settings: {e}\n"));
    esc(&text).replace("://", "&#58;//")
}

/// The trade list.
pub fn trade_list(h: &mut String, trades: &[TradeRecord]) {
    table(
        h,
        "trades",
        &[
            "#",
            "symbol",
            "dir",
            "entry (UTC)",
            "exit (UTC)",
            "held",
            "entry price",
            "exit price",
            "lev",
            "fees",
            "net PnL",
            "reason",
        ],
    );
    for (i, t) in trades.iter().enumerate() {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}x</td><td>{}</td>",
            i + 1,
            esc(&t.symbol),
            t.direction,
            iso(t.entry_time),
            iso(t.exit_time),
            duration_text((t.exit_time - t.entry_time) as f64 / 60_000.0),
            money(t.entry_price),
            money(t.exit_price),
            t.leverage,
            money(t.fees).round_dp(4),
        );
        let _ = writeln!(h, "{}<td>{}</td></tr>", signed(t.net_pnl), t.exit_reason.as_str());
    }
    h.push_str("</table>\n");
}
