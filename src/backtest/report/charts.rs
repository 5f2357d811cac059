//! The report's charts: interactive equity-vs-benchmark and drawdown charts drawn in the page
//! by uPlot (vendored under `assets/uplot`, MIT, embedded in the file: no network), and static
//! SVG charts drawn with plotters (per-trade PnL, and the equity and drawdown for print or a
//! browser without JavaScript).

use std::fmt::Write as _;

use plotters::prelude::*;
use rust_decimal::prelude::*;

use crate::backtest::account::TradeRecord;
use crate::backtest::engine::{BacktestError, EquityPoint};

/// uPlot 1.6.32 (<https://github.com/leeoniya/uPlot>, MIT, `assets/uplot/LICENSE`).
const UPLOT_JS: &str = include_str!("../../../assets/uplot/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../../assets/uplot/uPlot.min.css");

const DAY_MS: f64 = 86_400_000.0;

/// uPlot's script without its banner comment (which holds a URL: the page carries none).
pub fn uplot_js() -> &'static str {
    match UPLOT_JS.strip_prefix("/*!") {
        Some(rest) => rest.find("*/").and_then(|i| rest.get(i + 2..)).unwrap_or(UPLOT_JS),
        None => UPLOT_JS,
    }
}

pub fn uplot_css() -> &'static str {
    UPLOT_CSS
}

/// Chart points: (days since the first point, value).
type Series = Vec<(f64, f64)>;

/// Indices kept when thinning `n` points to at most `max`: the last of each bucket.
fn kept(n: usize, max: usize) -> Vec<usize> {
    let bucket = n.div_ceil(max.max(1)).max(1);
    (0..n).filter(|i| (i + 1) % bucket == 0 || i + 1 == n).collect()
}

/// At most `max` points: the last point of each bucket for the line, the lowest drawdown of
/// each bucket for the drawdown chart (so the worst trough survives the thinning).
fn thin(equity: &[EquityPoint], start: f64, max: usize) -> (Series, Series) {
    let t0 = equity.first().map(|p| p.time).unwrap_or(0);
    let day = |t: i64| (t - t0) as f64 / DAY_MS;
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

fn num(x: f64, scale: f64) -> String {
    if x.is_finite() { format!("{}", (x * scale).round() / scale) } else { "null".to_string() }
}

/// The interactive charts' data as JSON: `t` (Unix seconds), `equity`, `benchmark` (or
/// nulls), `drawdown` (percent, the lowest of each bucket), at most `max` points each.
pub fn chart_data(equity: &[EquityPoint], benchmark: &[f64], start: f64, max: usize) -> String {
    let idx = kept(equity.len(), max);
    let mut dd_all = Vec::with_capacity(equity.len());
    let mut peak = start;
    for p in equity {
        peak = peak.max(p.equity);
        dd_all.push(if peak > 0.0 { (p.equity - peak) / peak * 100.0 } else { 0.0 });
    }
    let (mut t, mut e, mut b, mut d) = (String::new(), String::new(), String::new(), String::new());
    let mut from = 0;
    for (k, &i) in idx.iter().enumerate() {
        let sep = if k > 0 { "," } else { "" };
        let (Some(p), Some(worst)) =
            (equity.get(i), dd_all.get(from..=i).and_then(|s| s.iter().copied().reduce(f64::min)))
        else {
            continue;
        };
        from = i + 1;
        let _ = write!(t, "{sep}{}", p.time / 1000);
        let _ = write!(e, "{sep}{}", num(p.equity, 1e4));
        let _ = write!(b, "{sep}{}", benchmark.get(i).map_or_else(|| "null".to_string(), |v| num(*v, 1e4)));
        let _ = write!(d, "{sep}{}", num(worst, 1e4));
    }
    format!("{{\"t\":[{t}],\"equity\":[{e}],\"benchmark\":[{b}],\"drawdown\":[{d}]}}")
}

/// Counts script errors (and `console.error`) on `#report-status` (`data-errors`) and shows
/// them there, which the headless browser test reads; runs before any other script. The
/// chart script sets `data-charts` to the number of charts drawn into `#equity-chart` and
/// `#drawdown-chart` from `#chart-data`.
pub const ERROR_HOOK: &str = r#"(function () {
  var errors = [];
  window.kineticNote = function (msg) {
    errors.push(String(msg));
    var st = document.getElementById('report-status');
    if (!st) { return; }
    st.setAttribute('data-errors', String(errors.length));
    st.textContent = 'Chart errors: ' + errors.join('; ');
    st.hidden = false;
  };
  window.addEventListener('error', function (e) { window.kineticNote(e.message); });
  var consoleError = console.error;
  console.error = function () {
    window.kineticNote(Array.prototype.join.call(arguments, ' '));
    consoleError.apply(console, arguments);
  };
})();
"#;

/// Draws the charts (see [`ERROR_HOOK`], which runs before uPlot's script).
pub const CHART_SCRIPT: &str = r#"(function () {
  var st = document.getElementById('report-status');
  var note = window.kineticNote;
  try {
    var d = JSON.parse(document.getElementById('chart-data').textContent);
    var width = function (el) { return Math.max(320, Math.min(1200, el.clientWidth || 960)); };
    var utc = function (ts) { return uPlot.tzDate(new Date(ts * 1e3), 'Etc/UTC'); };
    var money = function (u, v) { return v == null ? '' : v.toFixed(2); };
    var pct = function (u, v) { return v == null ? '' : v.toFixed(2) + ' %'; };
    var sync = uPlot.sync('kinetic');
    var cursor = { sync: { key: sync.key }, drag: { x: true, y: false } };
    var eqEl = document.getElementById('equity-chart');
    var ddEl = document.getElementById('drawdown-chart');
    var charts = 0;
    new uPlot({
      width: width(eqEl), height: 340, tzDate: utc, cursor: cursor,
      scales: { x: { time: true } },
      series: [
        { label: 'UTC' },
        { label: 'Strategy (USDT)', stroke: '#1f6feb', width: 2, value: money },
        { label: 'Buy and hold (USDT)', stroke: '#8250df', width: 1.5, dash: [6, 4], value: money, spanGaps: true }
      ],
      axes: [{}, { size: 80 }]
    }, [d.t, d.equity, d.benchmark], eqEl);
    charts++;
    new uPlot({
      width: width(ddEl), height: 220, tzDate: utc, cursor: cursor,
      scales: { x: { time: true } },
      series: [
        { label: 'UTC' },
        { label: 'Drawdown', stroke: '#cf222e', fill: 'rgba(207,34,46,0.2)', width: 1.5, value: pct }
      ],
      axes: [{}, { size: 80, values: function (u, vs) { return vs.map(function (v) { return v + ' %'; }); } }]
    }, [d.t, d.drawdown], ddEl);
    charts++;
    st.setAttribute('data-charts', String(charts));
  } catch (e) {
    note(e && e.stack ? e.stack : e);
  }
})();
"#;

fn chart_err<E: std::fmt::Debug>(e: E) -> BacktestError {
    BacktestError::Setup(format!("cannot draw chart: {e:?}"))
}

/// Removes the XML namespace attribute: inline SVG in HTML5 does not need it, and the page
/// must not carry any URL.
fn inline_svg(svg: String) -> String {
    svg.replace(" xmlns=\"http://www.w3.org/2000/svg\"", "")
        .replace(" xmlns:xlink=\"http://www.w3.org/1999/xlink\"", "")
}

fn date_label(t0: i64, days: f64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(t0 + (days * DAY_MS) as i64)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

fn line_chart(
    title: &str,
    t0: i64,
    points: &[(f64, f64)],
    color: RGBColor,
    area: bool,
) -> Result<String, BacktestError> {
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
        let label = |d: &f64| date_label(t0, *d);
        chart
            .configure_mesh()
            .x_desc("UTC date")
            .x_labels(8)
            .x_label_formatter(&label)
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

/// Static equity and drawdown charts (SVG) on a date axis.
///
/// # Errors
/// A chart could not be drawn.
pub fn static_charts(equity: &[EquityPoint], start: f64) -> Result<(String, String), BacktestError> {
    let t0 = equity.first().map(|p| p.time).unwrap_or(0);
    let (line, dd) = thin(equity, start, 1500);
    Ok((
        line_chart("Equity (USDT)", t0, &line, RGBColor(31, 111, 235), false)?,
        line_chart("Drawdown (%)", t0, &dd, RGBColor(207, 34, 46), true)?,
    ))
}

/// Net PnL per trade as bars (SVG).
///
/// # Errors
/// The chart could not be drawn.
pub fn trade_bars(trades: &[TradeRecord]) -> Result<String, BacktestError> {
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn chart_data_keeps_the_worst_trough_and_the_last_point() {
        let eq: Vec<EquityPoint> = (0..10)
            .map(|i| EquityPoint { time: i * 900_000, equity: if i == 3 { 50.0 } else { 100.0 }, open_positions: 0 })
            .collect();
        let json = chart_data(&eq, &[100.0; 10], 100.0, 4);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let t = v["t"].as_array().unwrap();
        assert!(t.len() <= 5);
        assert_eq!(t.last().unwrap().as_i64().unwrap(), 9 * 900);
        let dd: Vec<f64> = v["drawdown"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert!(dd.iter().any(|d| (*d + 50.0).abs() < 1e-9), "{dd:?}");
        assert!(!uplot_js().contains("http"));
    }
}
