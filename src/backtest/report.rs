//! Output of a finished run: the console summary, `trades.csv`, `metrics.json` and a
//! self-contained `report.html` (inline SVG charts drawn with plotters, the equity series as
//! embedded JSON, no external resources). Outputs depend only on the run's data: no wall-clock
//! time, no hash-map order, so the same data and config give byte-identical files.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use plotters::prelude::*;
use rust_decimal::prelude::*;

use crate::backtest::account::TradeRecord;
use crate::backtest::engine::{BacktestError, EquityPoint};
use crate::backtest::metrics::{Metrics, iso, money};

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
    let _ = writeln!(s, "\n  {:<14} {:>7} {:>7} {:>14} {:>11}", "exit reason", "fills", "trades", "gross PnL", "fees");
    for r in &m.per_exit_reason {
        let _ = writeln!(
            s,
            "  {:<14} {:>7} {:>7} {:>14} {:>11}",
            r.reason,
            r.fills,
            r.trades,
            r.gross_pnl.round_dp(2),
            r.fees.round_dp(2)
        );
    }
    s
}

/// At most `max` points: the last point of each bucket for the line, the lowest drawdown of
/// each bucket for the drawdown chart (so the worst trough survives the thinning).
/// Chart points: (days since the first point, value).
type Series = Vec<(f64, f64)>;

fn thin(equity: &[EquityPoint], start: f64, max: usize) -> (Series, Series) {
    let t0 = equity.first().map(|p| p.time).unwrap_or(0);
    let day = |t: i64| (t - t0) as f64 / 86_400_000.0;
    let bucket = equity.len().div_ceil(max.max(1)).max(1);
    let mut line = Vec::new();
    let mut dd = Vec::new();
    let mut peak = start;
    for chunk in equity.chunks(bucket) {
        let mut worst = 0.0f64;
        for p in chunk {
            peak = peak.max(p.equity);
            if peak > 0.0 {
                worst = worst.min((p.equity - peak) / peak * 100.0);
            }
        }
        if let Some(last) = chunk.last() {
            line.push((day(last.time), last.equity));
            dd.push((day(last.time), worst));
        }
    }
    (line, dd)
}

fn chart_err<E: std::fmt::Debug>(e: E) -> BacktestError {
    BacktestError::Setup(format!("cannot draw chart: {e:?}"))
}

/// Removes the XML namespace attribute: inline SVG in HTML5 does not need it, and the page
/// must not carry any URL.
fn inline_svg(svg: String) -> String {
    svg.replace(" xmlns=\"http://www.w3.org/2000/svg\"", "")
        .replace(" xmlns:xlink=\"http://www.w3.org/1999/xlink\"", "")
}

fn line_chart(title: &str, points: &[(f64, f64)], color: RGBColor, area: bool) -> Result<String, BacktestError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 320)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_err)?;
        let x_max = points.last().map(|p| p.0).unwrap_or(1.0).max(1e-9);
        let (mut lo, mut hi) = points.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
        if !(lo.is_finite() && hi.is_finite()) || lo > hi {
            (lo, hi) = (0.0, 1.0);
        }
        if area {
            hi = hi.max(0.0);
        }
        let pad = ((hi - lo) * 0.05).max(1e-6);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..x_max, (lo - pad)..(hi + pad))
            .map_err(chart_err)?;
        chart
            .configure_mesh()
            .x_desc("days")
            .x_labels(10)
            .y_labels(8)
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(chart_err)?;
        if area {
            chart
                .draw_series(AreaSeries::new(points.iter().copied(), 0.0, color.mix(0.35)).border_style(color))
                .map_err(chart_err)?;
        } else {
            chart.draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2))).map_err(chart_err)?;
        }
        root.present().map_err(chart_err)?;
    }
    Ok(inline_svg(svg))
}

fn trade_bars(trades: &[TradeRecord]) -> Result<String, BacktestError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 280)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_err)?;
        let pnl: Vec<f64> = trades.iter().map(|t| t.net_pnl.to_f64().unwrap_or(0.0)).collect();
        let (lo, hi) = pnl.iter().fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        let pad = ((hi - lo) * 0.05).max(1e-6);
        let n = pnl.len().max(1) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption("Net PnL per trade (USDT)", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..n, (lo - pad)..(hi + pad))
            .map_err(chart_err)?;
        chart.configure_mesh().x_desc("trade #").light_line_style(RGBColor(235, 235, 235)).draw().map_err(chart_err)?;
        chart
            .draw_series(pnl.iter().enumerate().map(|(i, v)| {
                let color = if *v >= 0.0 { RGBColor(46, 160, 67) } else { RGBColor(207, 34, 46) };
                let x = i as f64;
                Rectangle::new([(x + 0.1, 0.0), (x + 0.9, *v)], color.filled())
            }))
            .map_err(chart_err)?;
        root.present().map_err(chart_err)?;
    }
    Ok(inline_svg(svg))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Builds the HTML report text.
///
/// # Errors
/// A chart could not be drawn or the metrics not serialized.
pub fn report_html(m: &Metrics, equity: &[EquityPoint], trades: &[TradeRecord]) -> Result<String, BacktestError> {
    let start = m.starting_balance.to_f64().unwrap_or(0.0);
    let (line, dd) = thin(equity, start, 1500);
    let equity_svg = line_chart("Equity (USDT)", &line, RGBColor(31, 111, 235), false)?;
    let dd_svg = line_chart("Drawdown (%)", &dd, RGBColor(207, 34, 46), true)?;
    let bars_svg = trade_bars(trades)?;
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
    let mut h = String::with_capacity(series.len() + 200_000);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    let _ = writeln!(h, "<title>Kinetic Empire backtest {} – {}</title>", esc(&m.period_start), esc(&m.period_end));
    h.push_str(
        "<style>body{font-family:system-ui,sans-serif;margin:24px;color:#1f2328}table{border-collapse:collapse;\
         margin:8px 0 20px}td,th{border:1px solid #d0d7de;padding:4px 10px;text-align:right}th{background:#f6f8fa}\
         td:first-child,th:first-child{text-align:left}pre{background:#f6f8fa;padding:12px;overflow:auto}</style>\n",
    );
    h.push_str("</head>\n<body>\n<h1>Kinetic Empire backtest</h1>\n<pre>");
    h.push_str(&esc(&summary_text(m)));
    h.push_str("</pre>\n<h2>Equity</h2>\n");
    h.push_str(&equity_svg);
    h.push_str("\n<h2>Drawdown</h2>\n");
    h.push_str(&dd_svg);
    h.push_str("\n<h2>Trades</h2>\n");
    h.push_str(&bars_svg);
    h.push_str("\n<table>\n<tr><th>#</th><th>symbol</th><th>dir</th><th>entry</th><th>exit</th><th>entry price</th><th>exit price</th><th>lev</th><th>net PnL</th><th>reason</th></tr>\n");
    for (i, t) in trades.iter().enumerate() {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}x</td><td>{}</td><td>{}</td></tr>",
            i + 1,
            esc(&t.symbol),
            t.direction,
            iso(t.entry_time),
            iso(t.exit_time),
            money(t.entry_price),
            money(t.exit_price),
            t.leverage,
            money(t.net_pnl).round_dp(4),
            t.exit_reason.as_str()
        );
    }
    h.push_str("</table>\n<h2>Metrics</h2>\n<pre>");
    h.push_str(&esc(&metrics_json));
    h.push_str("</pre>\n<script type=\"application/json\" id=\"equity-series\">");
    h.push_str(&series);
    h.push_str("</script>\n</body>\n</html>\n");
    Ok(h)
}

/// Writes `trades.csv`, `metrics.json` and `report.html` into `dir` (created if needed).
///
/// # Errors
/// A file cannot be written.
pub fn write_all(dir: &Path, m: &Metrics, equity: &[EquityPoint], trades: &[TradeRecord]) -> Result<(), BacktestError> {
    std::fs::create_dir_all(dir).map_err(out_err(dir))?;
    write_trades_csv(&dir.join("trades.csv"), trades)?;
    write_metrics_json(&dir.join("metrics.json"), m)?;
    let html = report_html(m, equity, trades)?;
    let path = dir.join("report.html");
    let mut f = std::fs::File::create(&path).map_err(out_err(&path))?;
    f.write_all(html.as_bytes()).map_err(out_err(&path))
}
