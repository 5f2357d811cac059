//! Output of a finished run: the console summary, `trades.csv`, `metrics.json` and a
//! self-contained `report.html`: summary cards, interactive equity-vs-benchmark and drawdown
//! charts on a date axis ([`charts`], uPlot embedded in the file), a price chart per traded
//! symbol with its entries and exits ([`prices`]), the breakdown tables, the
//! assumptions and the configuration used ([`tables`]), per-trade chart and list, and the
//! equity series as embedded JSON; no external resources. Outputs depend only on the run's data: no wall-clock
//! time, no hash-map order, so the same data and config give byte-identical files.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use rust_decimal::prelude::*;

use crate::backtest::account::TradeRecord;
use crate::backtest::engine::{BacktestError, CloseHistory, Engine, EquityPoint};
use crate::backtest::metrics::{Metrics, iso, money};
use crate::config::Settings;

pub mod charts;
pub mod prices;
pub mod tables;

use tables::esc;

fn out_err(path: &Path) -> impl Fn(std::io::Error) -> BacktestError + '_ {
    move |source| BacktestError::Output { path: path.to_path_buf(), source }
}

/// Writes `trades.csv`: one row per trade, exits as `reason@price×qty` joined by `;`.
///
/// # Errors
/// The file cannot be written.
pub fn write_trades_csv(path: &Path, trades: &[TradeRecord]) -> Result<(), BacktestError> {
    let err = out_err(path);
    let mut w = csv::Writer::from_path(path).map_err(|e| err(std::io::Error::other(e)))?;
    let csv_err = |e: csv::Error| err(std::io::Error::other(e));
    w.write_record([
        "symbol",
        "direction",
        "entry_time",
        "exit_time",
        "entry_price",
        "exit_price",
        "qty",
        "leverage",
        "confidence",
        "liquidation_price",
        "gross_pnl",
        "fees",
        "funding",
        "net_pnl",
        "exit_reason",
        "exits",
    ])
    .map_err(csv_err)?;
    for t in trades {
        let exits = t
            .exits
            .iter()
            .map(|e| format!("{}@{}x{}", e.reason, money(e.price), money(e.qty)))
            .collect::<Vec<_>>()
            .join(";");
        w.write_record([
            t.symbol.clone(),
            t.direction.to_string(),
            iso(t.entry_time),
            iso(t.exit_time),
            money(t.entry_price).to_string(),
            money(t.exit_price).to_string(),
            money(t.qty).to_string(),
            t.leverage.to_string(),
            t.confidence.to_string(),
            money(t.liquidation_price).to_string(),
            money(t.gross_pnl).to_string(),
            money(t.fees).to_string(),
            money(t.funding).to_string(),
            money(t.net_pnl).to_string(),
            t.exit_reason.as_str().to_string(),
            exits,
        ])
        .map_err(csv_err)?;
    }
    w.flush().map_err(&err)
}

/// Writes `metrics.json` (pretty, stable key order, trailing newline).
///
/// # Errors
/// The file cannot be written.
pub fn write_metrics_json(path: &Path, metrics: &Metrics) -> Result<(), BacktestError> {
    let err = out_err(path);
    let mut text = serde_json::to_string_pretty(metrics).map_err(|e| err(std::io::Error::other(e)))?;
    text.push('\n');
    std::fs::write(path, text).map_err(err)
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}")).unwrap_or_else(|| "n/a".to_string())
}

/// The console summary.
pub fn summary_text(m: &Metrics) -> String {
    let mut s = String::new();
    let _ =
        writeln!(s, "Backtest {} → {} ({:.1} days), {}", m.period_start, m.period_end, m.days, m.symbols.join(", "));
    let _ = writeln!(
        s,
        "  candles replayed   {} (15m {}, 1h {}, 4h {})",
        m.replay.candles, m.replay.candles_15m, m.replay.candles_1h, m.replay.candles_4h
    );
    let _ = writeln!(s, "  starting balance   {} USDT", m.starting_balance);
    let _ =
        writeln!(s, "  final equity       {} USDT (net {} USDT)", m.final_equity.round_dp(2), m.net_pnl.round_dp(2));
    let _ = writeln!(
        s,
        "  return             {:.2} % total, {} % annualized",
        m.total_return_pct,
        opt(m.annualized_return_pct, 2)
    );
    if let Some(b) = &m.benchmark {
        let _ = writeln!(
            s,
            "  buy and hold       {:.2} % (the symbols in equal weights, held through the window, no costs)",
            b.return_pct
        );
    }
    let _ = writeln!(
        s,
        "  trades             {} ({} wins, {} losses, win rate {:.1} %), profit factor {}",
        m.trades,
        m.wins,
        m.losses,
        m.win_rate_pct,
        opt(m.profit_factor, 2)
    );
    let _ = writeln!(s, "  max drawdown       {:.2} %", m.max_drawdown_pct);
    let _ = writeln!(s, "  Sharpe / Sortino   {} / {} (daily, ×√365)", opt(m.sharpe, 2), opt(m.sortino, 2));
    let _ = writeln!(s, "  fees / funding     {} / {} USDT", m.fees_paid.round_dp(2), m.funding_paid.round_dp(2));
    let _ = writeln!(s, "  exposure           {:.1} % of 15m closes with a position", m.exposure_pct);
    for (label, t) in [("best trade", &m.best_trade), ("worst trade", &m.worst_trade)] {
        if let Some(t) = t {
            let _ = writeln!(
                s,
                "  {label:<18} {} {} {} → {} USDT ({})",
                t.symbol,
                t.direction,
                t.entry_time,
                t.net_pnl.round_dp(2),
                t.exit_reason
            );
        }
    }
    let _ = writeln!(
        s,
        "\n  {:<12} {:>7} {:>9} {:>14} {:>11} {:>11}",
        "symbol", "trades", "win %", "net PnL", "fees", "funding"
    );
    for r in &m.per_symbol {
        let _ = writeln!(
            s,
            "  {:<12} {:>7} {:>9.1} {:>14} {:>11} {:>11}",
            r.symbol,
            r.trades,
            r.win_rate_pct,
            r.net_pnl.round_dp(2),
            r.fees.round_dp(2),
            r.funding.round_dp(2)
        );
    }
    // Trades under the reason of their final close (entry + exit fees, net PnL), then every
    // exit fill with that reason (a partial take-profit is a fill of a trade closed later).
    let _ = writeln!(
        s,
        "\n  {:<14} {:>7} {:>11} {:>12} {:>7} {:>14} {:>10}",
        "exit reason", "trades", "fees", "net PnL", "fills", "fill gross", "fill fees"
    );
    for r in &m.per_exit_reason {
        let _ = writeln!(
            s,
            "  {:<14} {:>7} {:>11} {:>12} {:>7} {:>14} {:>10}",
            r.reason,
            r.trades,
            r.fees.round_dp(2),
            r.net_pnl.round_dp(2),
            r.fills,
            r.gross_pnl.round_dp(2),
            r.fill_fees.round_dp(2)
        );
    }
    s
}

/// What the report shows beyond the metrics: the settings used, the benchmark curve and the
/// closes for the price charts.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReportExtras<'a> {
    /// Shown as TOML with the assumptions; `None` leaves them out.
    pub settings: Option<&'a Settings>,
    /// The buy-and-hold curve, one value per equity point ([`crate::backtest::Engine::benchmark`]).
    pub benchmark: &'a [f64],
    /// Hourly closes per symbol ([`crate::backtest::Engine::close_history`]); without them the
    /// report has no price charts.
    pub close_history: &'a [CloseHistory],
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1240px;padding:0 16px;\
color:#1f2328}table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #d0d7de;padding:4px 10px;\
text-align:right}th{background:#f6f8fa}td:first-child,th:first-child{text-align:left}pre{background:#f6f8fa;\
padding:12px;overflow:auto}.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}.card{border:1px solid \
#d0d7de;border-radius:8px;padding:10px 16px;min-width:150px}.card .label{font-size:12px;color:#59636e;\
text-transform:uppercase}.card .value{font-size:22px;font-weight:600}.pos{color:#1a7f37}.neg{color:#cf222e}\
.loss{background:#ffebe9;border:1px solid #ff8182;border-radius:8px;padding:12px 16px}.note{color:#59636e;\
max-width:900px}.assumptions{background:#fff8c5;border:1px solid #d4a72c;border-radius:8px;padding:4px 16px;\
margin:20px 0}.chart{width:100%;min-height:120px}#report-status{color:#cf222e;font-weight:600}\
#trades-wrap{max-height:600px;overflow:auto}";

/// Builds the HTML report text without settings or benchmark.
///
/// # Errors
/// A chart could not be drawn or the metrics not serialized.
pub fn report_html(m: &Metrics, equity: &[EquityPoint], trades: &[TradeRecord]) -> Result<String, BacktestError> {
    report_html_with(m, equity, trades, &ReportExtras::default())
}

/// Builds the HTML report text.
///
/// # Errors
/// A chart could not be drawn or the metrics not serialized.
pub fn report_html_with(
    m: &Metrics,
    equity: &[EquityPoint],
    trades: &[TradeRecord],
    extras: &ReportExtras<'_>,
) -> Result<String, BacktestError> {
    let start = m.starting_balance.to_f64().unwrap_or(0.0);
    let (equity_svg, dd_svg) = charts::static_charts(equity, start)?;
    let bars_svg = charts::trade_bars(trades)?;
    let metrics_json = serde_json::to_string_pretty(m).map_err(|e| BacktestError::Setup(e.to_string()))?;
    let mut series = String::with_capacity(equity.len() * 28 + 64);
    series.push_str("{\"columns\":[\"time_ms\",\"equity\"],\"data\":[");
    for (i, p) in equity.iter().enumerate() {
        if i > 0 {
            series.push(',');
        }
        let _ = write!(series, "[{},{}]", p.time, (p.equity * 1e4).round() / 1e4);
    }
    series.push_str("]}");
    let mut h = String::with_capacity(series.len() + 300_000);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(h, "<title>Kinetic Empire backtest {} – {}</title>", esc(&m.period_start), esc(&m.period_end));
    let _ = writeln!(h, "<style>{STYLE}{}</style>\n<style>{}</style>", prices::style(), charts::uplot_css());
    h.push_str("</head>\n<body>\n<h1>Kinetic Empire backtest</h1>\n");
    let _ = writeln!(
        h,
        "<p>{} → {} UTC ({:.1} days) · {} · starting balance {} USDT</p>",
        esc(&m.period_start),
        esc(&m.period_end),
        m.days,
        esc(&m.symbols.join(", ")),
        m.starting_balance
    );
    tables::cards(&mut h, m);
    h.push_str("<p id=\"report-status\" data-errors=\"0\" data-charts=\"0\" hidden></p>\n");
    let _ = writeln!(h, "<script>{}</script>", charts::ERROR_HOOK);
    h.push_str(
        "<h2>Equity against buy and hold</h2>\n<p class=\"note\">Drag across a chart to zoom in on a period, \
         double-click to zoom out; hover for the values (UTC). The two charts move together.</p>\n\
         <div id=\"equity-chart\" class=\"chart\"></div>\n<h2>Drawdown</h2>\n\
         <div id=\"drawdown-chart\" class=\"chart\"></div>\n",
    );
    let price_charts = prices::price_charts(trades, extras.close_history, prices::MAX_PRICE_POINTS);
    prices::section(&mut h, &price_charts, trades);
    tables::tables(&mut h, m);
    tables::assumptions(&mut h, m, extras.settings);
    h.push_str("<h2>Trades</h2>\n");
    h.push_str(&bars_svg);
    h.push_str("\n<div id=\"trades-wrap\">\n");
    tables::trade_list(&mut h, trades);
    h.push_str("</div>\n<details>\n<summary>Static equity and drawdown charts (for print)</summary>\n");
    h.push_str(&equity_svg);
    h.push('\n');
    h.push_str(&dd_svg);
    h.push_str("\n</details>\n");
    if let Some(settings) = extras.settings {
        h.push_str(
            "<details id=\"config\">\n<summary>Configuration used (TOML; credentials come from the environment \
             and are never part of it)</summary>\n<pre>",
        );
        h.push_str(&tables::config_toml(settings));
        h.push_str("</pre>\n</details>\n");
    }
    h.push_str("<details>\n<summary>Console summary</summary>\n<pre>");
    h.push_str(&esc(&summary_text(m)));
    h.push_str("</pre>\n</details>\n<details>\n<summary>metrics.json</summary>\n<pre>");
    h.push_str(&esc(&metrics_json));
    h.push_str("</pre>\n</details>\n<script type=\"application/json\" id=\"equity-series\">");
    h.push_str(&series);
    h.push_str("</script>\n<script type=\"application/json\" id=\"chart-data\">");
    h.push_str(&charts::chart_data(equity, extras.benchmark, start, 2000));
    h.push_str("</script>\n<script>");
    h.push_str(charts::uplot_js());
    h.push_str("</script>\n<script>");
    h.push_str(charts::CHART_SCRIPT);
    h.push_str("</script>\n<script type=\"application/json\" id=\"price-data\">");
    h.push_str(&price_charts.json);
    h.push_str("</script>\n<script>");
    h.push_str(&prices::script());
    h.push_str("</script>\n</body>\n</html>\n");
    Ok(h)
}

/// Writes `trades.csv`, `metrics.json` and `report.html` into `dir` (created if needed),
/// without settings or benchmark in the report.
///
/// # Errors
/// A file cannot be written.
pub fn write_all(dir: &Path, m: &Metrics, equity: &[EquityPoint], trades: &[TradeRecord]) -> Result<(), BacktestError> {
    write_all_with(dir, m, equity, trades, &ReportExtras::default())
}

/// Writes `trades.csv`, `metrics.json` and `report.html` into `dir` (created if needed).
///
/// # Errors
/// A file cannot be written.
pub fn write_all_with(
    dir: &Path,
    m: &Metrics,
    equity: &[EquityPoint],
    trades: &[TradeRecord],
    extras: &ReportExtras<'_>,
) -> Result<(), BacktestError> {
    std::fs::create_dir_all(dir).map_err(out_err(dir))?;
    write_trades_csv(&dir.join("trades.csv"), trades)?;
    write_metrics_json(&dir.join("metrics.json"), m)?;
    let html = report_html_with(m, equity, trades, extras)?;
    let path = dir.join("report.html");
    let mut f = std::fs::File::create(&path).map_err(out_err(&path))?;
    f.write_all(html.as_bytes()).map_err(out_err(&path))
}

/// The metrics of a finished engine ([`crate::backtest::metrics::compute_run`]) written with
/// the settings used and the benchmark; returns them.
///
/// # Errors
/// A file cannot be written.
pub fn write_run(dir: &Path, engine: &Engine, settings: &Settings) -> Result<Metrics, BacktestError> {
    let m = crate::backtest::metrics::compute_run(engine);
    let extras =
        ReportExtras { settings: Some(settings), benchmark: &engine.benchmark, close_history: &engine.close_history };
    write_all_with(dir, &m, &engine.equity, &engine.account().trades, &extras)?;
    Ok(m)
}
