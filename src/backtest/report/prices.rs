//! The report's per-symbol price charts: each traded symbol's closes on a UTC date axis with
//! its entries and exits marked at their fill prices, drawn in the page by uPlot (embedded,
//! like the equity charts). The closes are the engine's hourly ones
//! ([`crate::backtest::CloseHistory`]), thinned to 4h, 1d or 1w closes when the window is long,
//! so that a chart holds at most [`MAX_PRICE_POINTS`] closes and the file stays small.
//!
//! Marker kinds: long entry, short entry, stop loss, take profit (1 or 2), trailing stop, any
//! other exit (emergency, liquidation, end of data, notional trim, force exit; the reason is
//! shown on hover). Every exit fill is marked, so a trade with partial take-profits has several.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use rust_decimal::prelude::*;

use crate::backtest::account::TradeRecord;
use crate::backtest::engine::CloseHistory;
use crate::backtest::report::tables::esc;
use crate::core::models::{Direction, TimestampMs};
use crate::manager::exit_ladder::ExitReason;

/// Closes per chart at most (a year of 4h closes fits; a year of 1h closes does not).
pub const MAX_PRICE_POINTS: usize = 2_200;

const HOUR_MS: i64 = 3_600_000;

/// The close intervals a chart may use, finest first.
const STEPS: [(i64, &str); 4] = [(HOUR_MS, "1h"), (4 * HOUR_MS, "4h"), (24 * HOUR_MS, "1d"), (7 * 24 * HOUR_MS, "1w")];

/// A marker's kind, as the page's script numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MarkKind {
    LongEntry = 0,
    ShortEntry = 1,
    StopLoss = 2,
    TakeProfit = 3,
    TrailingStop = 4,
    OtherExit = 5,
}

impl MarkKind {
    /// The kind of an exit fill with this reason (`PartialExit::reason`).
    pub fn of_exit(reason: &str) -> Self {
        match ExitReason::parse(reason) {
            Some(ExitReason::StopLoss) => MarkKind::StopLoss,
            Some(ExitReason::TakeProfit1 | ExitReason::TakeProfit2) => MarkKind::TakeProfit,
            Some(ExitReason::TrailingStop) => MarkKind::TrailingStop,
            _ => MarkKind::OtherExit,
        }
    }
}

/// The price charts' data and what the page says about them.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceCharts {
    /// The interval of the closes shown (`1h`, `4h`, `1d`, `1w`).
    pub step: &'static str,
    /// Symbols charted, in the order of the JSON's `symbols`, with their trade counts.
    pub symbols: Vec<(String, usize)>,
    /// `{"step":…,"symbols":[{"symbol","t","close","marks","trades"}…]}`: times in Unix
    /// seconds; a mark is `[t, price, kind, reason]`, a trade `[entry t, entry price, last
    /// exit t, last exit price, 1 if it won else 0]`.
    pub json: String,
}

/// The finest interval of [`STEPS`] giving at most `max` closes over `span_ms`.
fn step_for(span_ms: i64, max: usize) -> (i64, &'static str) {
    let max = i64::try_from(max.max(2)).unwrap_or(i64::MAX);
    STEPS.into_iter().find(|(step, _)| span_ms / step < max).unwrap_or((7 * 24 * HOUR_MS, "1w"))
}

/// The last close of each `step` (UTC-aligned: the 4h closes are those at 00, 04, 08 … UTC).
fn thin(closes: &[(TimestampMs, f64)], step: i64) -> Vec<(TimestampMs, f64)> {
    let mut out: Vec<(TimestampMs, f64)> = Vec::new();
    let mut bucket: Option<i64> = None;
    for &(t, c) in closes {
        // A close at 04:00 (the 00:00–04:00 candle's) belongs to the bucket it ends.
        let b = (t - 1).div_euclid(step);
        match out.last_mut() {
            Some(last) if bucket == Some(b) => *last = (t, c),
            _ => out.push((t, c)),
        }
        bucket = Some(b);
    }
    out
}

fn price(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(0.0)
}

fn num(x: f64) -> String {
    if x.is_finite() { format!("{x}") } else { "null".to_string() }
}

/// One chart per symbol that traded and has closes, in symbol order.
pub fn price_charts(trades: &[TradeRecord], history: &[CloseHistory], max_points: usize) -> PriceCharts {
    let mut by_symbol: BTreeMap<&str, Vec<&TradeRecord>> = BTreeMap::new();
    for t in trades {
        by_symbol.entry(t.symbol.as_str()).or_default().push(t);
    }
    let charted: Vec<(&CloseHistory, Vec<&TradeRecord>)> = by_symbol
        .into_iter()
        .filter_map(|(name, ts)| history.iter().find(|h| h.symbol == name && !h.closes.is_empty()).map(|h| (h, ts)))
        .collect();
    let span = charted.iter().filter_map(|(h, _)| Some(h.closes.last()?.0 - h.closes.first()?.0)).max().unwrap_or(0);
    let (step_ms, step) = step_for(span, max_points);
    let mut json = String::new();
    let _ = write!(json, "{{\"step\":\"{step}\",\"symbols\":[");
    let mut symbols = Vec::new();
    for (k, (h, ts)) in charted.iter().enumerate() {
        if k > 0 {
            json.push(',');
        }
        let closes = thin(&h.closes, step_ms);
        let times: Vec<String> = closes.iter().map(|(t, _)| (t / 1000).to_string()).collect();
        let values: Vec<String> = closes.iter().map(|(_, c)| num(*c)).collect();
        let mut marks = Vec::new();
        let mut lines = Vec::new();
        for t in ts {
            let entry = if t.direction == Direction::Long { MarkKind::LongEntry } else { MarkKind::ShortEntry };
            marks.push((t.entry_time, price(t.entry_price), entry, ""));
            for e in &t.exits {
                marks.push((e.time, price(e.price), MarkKind::of_exit(&e.reason), e.reason.as_str()));
            }
            let (exit_t, exit_p) = t.exits.last().map_or((t.exit_time, t.exit_price), |e| (e.time, e.price));
            lines.push(format!(
                "[{},{},{},{},{}]",
                t.entry_time / 1000,
                num(price(t.entry_price)),
                exit_t / 1000,
                num(price(exit_p)),
                u8::from(t.net_pnl > Decimal::ZERO)
            ));
        }
        marks.sort_by(|a, b| a.0.cmp(&b.0).then(a.2.cmp(&b.2)));
        let marks: Vec<String> = marks
            .iter()
            .map(|(t, p, kind, reason)| {
                let reason = if *kind == MarkKind::OtherExit { esc(reason).replace('"', "") } else { String::new() };
                format!("[{},{},{},\"{reason}\"]", t / 1000, num(*p), *kind as u8)
            })
            .collect();
        let _ = write!(
            json,
            "{{\"symbol\":\"{}\",\"t\":[{}],\"close\":[{}],\"marks\":[{}],\"trades\":[{}]}}",
            esc(&h.symbol).replace('"', ""),
            times.join(","),
            values.join(","),
            marks.join(","),
            lines.join(",")
        );
        symbols.push((h.symbol.clone(), ts.len()));
    }
    json.push_str("]}");
    PriceCharts { step, symbols, json }
}

/// The section of the page: a caption and one box per symbol (empty boxes the script fills).
pub fn section(h: &mut String, charts: &PriceCharts, trades: &[TradeRecord]) {
    h.push_str("<h2>Prices with entries and exits</h2>\n");
    if charts.symbols.is_empty() {
        let why =
            if trades.is_empty() { "No trades: nothing to mark." } else { "No price history was kept for this run." };
        let _ = writeln!(h, "<p class=\"note\">{why}</p>");
        return;
    }
    let thinned = if charts.step == "1h" {
        String::new()
    } else {
        " (thinned from hourly closes: the window is long)".to_string()
    };
    let _ = writeln!(
        h,
        "<p class=\"note\">Each traded symbol's {step} closes (UTC){thinned}, with every entry and exit at its fill \
         price: <span class=\"mk-long\">▲</span> long entry, <span class=\"mk-short\">▼</span> short entry, \
         <span class=\"mk-stop\">✕</span> stop loss, <span class=\"mk-tp\">●</span> take profit (1 or 2), \
         <span class=\"mk-trail\">◆</span> trailing stop, <span class=\"mk-other\">■</span> any other exit (emergency, \
         liquidation, end of data, notional trim, force exit: hover for which). A dashed line joins each trade's \
         entry to its last exit, green for a winner, red for a loser. Fills sit off the line of closes where the \
         price moved within the {step}. Drag to zoom, double-click to zoom out, click a legend entry to hide it.</p>",
        step = charts.step
    );
    h.push_str("<div id=\"price-charts\">\n");
    for (i, (symbol, n)) in charts.symbols.iter().enumerate() {
        let (long, pnl) = trades.iter().filter(|t| t.symbol == *symbol).fold((0usize, Decimal::ZERO), |(l, p), t| {
            (l + usize::from(t.direction == Direction::Long), p + t.net_pnl)
        });
        let _ = writeln!(
            h,
            "<h3>{} <span class=\"note\">· {n} trade{} ({long} long, {} short) · net {} USDT</span></h3>\n\
             <div id=\"price-chart-{i}\" class=\"chart price-chart\" data-marks=\"0\"></div>",
            esc(symbol),
            if *n == 1 { "" } else { "s" },
            n - long,
            pnl.round_dp(2)
        );
    }
    h.push_str("</div>\n");
}

/// Marker colours (also used by the caption's legend and looked for in the browser test's
/// screenshot: they appear nowhere else in the page).
pub const LONG_COLOUR: &str = "#0fa968";
pub const SHORT_COLOUR: &str = "#e5534b";
pub const TP_COLOUR: &str = "#0969da";

/// The caption's marker colours.
pub fn style() -> String {
    format!(
        ".mk-long{{color:{LONG_COLOUR}}}.mk-short{{color:{SHORT_COLOUR}}}.mk-stop{{color:#a40e26}}\
         .mk-tp{{color:{TP_COLOUR}}}.mk-trail{{color:#bf8700}}.mk-other{{color:#6e7781}}\
         .price-chart{{margin-bottom:8px}}h3 .note{{font-weight:400;font-size:14px}}"
    )
}

/// Draws the price charts from `#price-data` into `#price-chart-N`, adds their number to
/// `data-charts` and sets `data-price-charts` on `#report-status`; each chart's
/// `data-marks` is the number of markers drawn in view. Runs after [`super::charts::CHART_SCRIPT`].
pub const PRICE_SCRIPT: &str = r#"(function () {
  var st = document.getElementById('report-status');
  var note = window.kineticNote;
  try {
    var src = document.getElementById('price-data');
    if (!src) { return; }
    var d = JSON.parse(src.textContent);
    var kinds = [
      { label: '▲ long entry', color: '@LONG@', shape: 'up' },
      { label: '▼ short entry', color: '@SHORT@', shape: 'down' },
      { label: '✕ stop loss', color: '#a40e26', shape: 'cross' },
      { label: '● take profit', color: '@TP@', shape: 'circle' },
      { label: '◆ trailing stop', color: '#bf8700', shape: 'diamond' },
      { label: '■ other exit', color: '#6e7781', shape: 'square' }
    ];
    var utc = function (ts) { return uPlot.tzDate(new Date(ts * 1e3), 'Etc/UTC'); };
    var fmt = function (v) {
      if (v == null) { return '—'; }
      var a = Math.abs(v);
      return a >= 1000 ? v.toFixed(2) : a >= 1 ? v.toFixed(4) : String(Number(v.toPrecision(5)));
    };
    var shape = function (ctx, kind, x, y, r) {
      ctx.beginPath();
      if (kind === 'up') { ctx.moveTo(x, y - r); ctx.lineTo(x + r, y + r * 0.8); ctx.lineTo(x - r, y + r * 0.8); ctx.closePath(); }
      else if (kind === 'down') { ctx.moveTo(x, y + r); ctx.lineTo(x + r, y - r * 0.8); ctx.lineTo(x - r, y - r * 0.8); ctx.closePath(); }
      else if (kind === 'circle') { ctx.arc(x, y, r * 0.8, 0, 2 * Math.PI); }
      else if (kind === 'diamond') { ctx.moveTo(x, y - r); ctx.lineTo(x + r, y); ctx.lineTo(x, y + r); ctx.lineTo(x - r, y); ctx.closePath(); }
      else if (kind === 'square') { ctx.rect(x - r * 0.7, y - r * 0.7, r * 1.4, r * 1.4); }
      if (kind === 'cross') {
        ctx.moveTo(x - r, y - r); ctx.lineTo(x + r, y + r); ctx.moveTo(x + r, y - r); ctx.lineTo(x - r, y + r);
        ctx.stroke();
      } else {
        ctx.fill(); ctx.stroke();
      }
    };
    var drawn = 0;
    d.symbols.forEach(function (s, n) {
      var el = document.getElementById('price-chart-' + n);
      if (!el) { throw new Error('no element for the price chart of ' + s.symbol); }
      // One x value per close and per marker; two markers of one kind at one time (both
      // take-profits in one candle) are a second apart.
      var used = {};
      var markT = s.marks.map(function (m) {
        var t = m[0];
        while (used[t + ':' + m[2]]) { t += 1; }
        used[t + ':' + m[2]] = true;
        return t;
      });
      var xs = s.t.concat(markT).sort(function (a, b) { return a - b; })
        .filter(function (t, i, all) { return i === 0 || all[i - 1] !== t; });
      var at = {};
      xs.forEach(function (t, i) { at[t] = i; });
      var empty = function () { return xs.map(function () { return null; }); };
      var present = [];
      s.marks.forEach(function (m) { if (present.indexOf(m[2]) < 0) { present.push(m[2]); } });
      present.sort();
      var close = empty();
      s.t.forEach(function (t, i) { close[at[t]] = s.close[i]; });
      var cols = {};
      var reasons = {};
      present.forEach(function (k) { cols[k] = empty(); reasons[k] = {}; });
      s.marks.forEach(function (m, i) { var j = at[markT[i]]; cols[m[2]][j] = m[1]; reasons[m[2]][j] = m[3]; });
      var series = [{ label: 'UTC' }, {
        label: s.symbol + ' close (' + d.step + ')', stroke: '#57606a', width: 1.25, spanGaps: true,
        value: function (u, v) { return fmt(v); }
      }];
      var data = [xs, close];
      present.forEach(function (k) {
        series.push({
          label: kinds[k].label, stroke: kinds[k].color, fill: kinds[k].color, width: 0,
          paths: function () { return null; }, points: { show: false },
          value: function (u, v, si, i) { return v == null ? '—' : fmt(v) + (reasons[k][i] ? ' ' + reasons[k][i] : ''); }
        });
        data.push(cols[k]);
      });
      var draw = function (u) {
        var ctx = u.ctx;
        var px = window.devicePixelRatio || 1;
        var r = 5.5 * px;
        var b = u.bbox;
        var xMin = u.scales.x.min, xMax = u.scales.x.max;
        var inView = function (t) { return t >= xMin && t <= xMax; };
        var count = 0;
        ctx.save();
        ctx.beginPath();
        ctx.rect(b.left, b.top, b.width, b.height);
        ctx.clip();
        ctx.setLineDash([4 * px, 3 * px]);
        ctx.lineWidth = 1 * px;
        s.trades.forEach(function (tr) {
          if (tr[2] < xMin || tr[0] > xMax) { return; }
          ctx.strokeStyle = tr[4] ? 'rgba(26,127,55,0.55)' : 'rgba(207,34,46,0.55)';
          ctx.beginPath();
          ctx.moveTo(u.valToPos(tr[0], 'x', true), u.valToPos(tr[1], 'y', true));
          ctx.lineTo(u.valToPos(tr[2], 'x', true), u.valToPos(tr[3], 'y', true));
          ctx.stroke();
        });
        ctx.setLineDash([]);
        present.forEach(function (k, si) {
          if (!u.series[si + 2].show) { return; }
          var kind = kinds[k];
          ctx.fillStyle = kind.color;
          ctx.strokeStyle = kind.shape === 'cross' ? kind.color : '#ffffff';
          ctx.lineWidth = (kind.shape === 'cross' ? 2.5 : 1) * px;
          s.marks.forEach(function (m, i) {
            if (m[2] !== k || !inView(markT[i])) { return; }
            shape(ctx, kind.shape, u.valToPos(markT[i], 'x', true), u.valToPos(m[1], 'y', true), r);
            count++;
          });
        });
        ctx.restore();
        el.setAttribute('data-marks', String(count));
      };
      new uPlot({
        width: Math.max(320, Math.min(1200, el.clientWidth || 960)), height: 280, tzDate: utc,
        cursor: { drag: { x: true, y: false } },
        scales: { x: { time: true } },
        series: series,
        axes: [{}, { size: 80 }],
        hooks: { draw: [draw] }
      }, data, el);
      drawn++;
    });
    st.setAttribute('data-price-charts', String(drawn));
    st.setAttribute('data-charts', String(Number(st.getAttribute('data-charts') || 0) + drawn));
  } catch (e) {
    note(e && e.stack ? e.stack : e);
  }
})();
"#;

/// [`PRICE_SCRIPT`] with the marker colours filled in.
pub fn script() -> String {
    PRICE_SCRIPT.replace("@LONG@", LONG_COLOUR).replace("@SHORT@", SHORT_COLOUR).replace("@TP@", TP_COLOUR)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use crate::core::models::PartialExit;
    use rust_decimal_macros::dec;

    const T0: i64 = 1_769_904_000_000; // 2026-02-01 00:00 UTC

    fn trade(
        symbol: &str,
        direction: Direction,
        entry: i64,
        exits: &[(i64, Decimal, &str)],
        net: Decimal,
    ) -> TradeRecord {
        TradeRecord {
            symbol: symbol.into(),
            direction,
            entry_time: entry,
            exit_time: exits.last().unwrap().0,
            entry_price: dec!(100),
            exit_price: exits.last().unwrap().1,
            qty: dec!(1),
            leverage: 5,
            confidence: 70,
            liquidation_price: dec!(80),
            gross_pnl: net,
            fees: Decimal::ZERO,
            funding: Decimal::ZERO,
            net_pnl: net,
            exit_reason: ExitReason::parse(exits.last().unwrap().2).unwrap(),
            exits: exits
                .iter()
                .map(|(t, p, r)| PartialExit { price: *p, qty: dec!(0.5), time: *t, reason: (*r).into() })
                .collect(),
        }
    }

    fn hourly(symbol: &str, hours: i64) -> CloseHistory {
        CloseHistory {
            symbol: symbol.into(),
            closes: (1..=hours).map(|h| (T0 + h * HOUR_MS, 100.0 + h as f64)).collect(),
        }
    }

    #[test]
    fn the_interval_keeps_a_chart_under_the_limit() {
        assert_eq!(step_for(28 * 24 * HOUR_MS, MAX_PRICE_POINTS).1, "1h");
        assert_eq!(step_for(365 * 24 * HOUR_MS, MAX_PRICE_POINTS).1, "4h");
        assert_eq!(step_for(3 * 365 * 24 * HOUR_MS, MAX_PRICE_POINTS).1, "1d");
        assert_eq!(step_for(20 * 365 * 24 * HOUR_MS, MAX_PRICE_POINTS).1, "1w");
    }

    #[test]
    fn thinning_keeps_the_close_of_each_interval() {
        let h = hourly("X", 10);
        let four = thin(&h.closes, 4 * HOUR_MS);
        // 01..04 → 04:00, 05..08 → 08:00, 09..10 → 10:00 (the last, partial interval).
        assert_eq!(four.iter().map(|(t, _)| (t - T0) / HOUR_MS).collect::<Vec<_>>(), vec![4, 8, 10]);
        assert_eq!(four[0].1, 104.0);
        assert_eq!(thin(&h.closes, HOUR_MS), h.closes);
    }

    #[test]
    fn only_traded_symbols_are_charted_with_every_fill_marked() {
        let trades = vec![
            trade(
                "ETHUSDT",
                Direction::Long,
                T0 + HOUR_MS,
                &[(T0 + 2 * HOUR_MS, dec!(103), "take_profit_1"), (T0 + 3 * HOUR_MS, dec!(99), "stop_loss")],
                dec!(1),
            ),
            trade("BTCUSDT", Direction::Short, T0 + HOUR_MS, &[(T0 + 5 * HOUR_MS, dec!(101), "end_of_data")], dec!(-1)),
        ];
        let history = vec![hourly("BTCUSDT", 8), hourly("ETHUSDT", 8), hourly("SOLUSDT", 8)];
        let charts = price_charts(&trades, &history, MAX_PRICE_POINTS);
        assert_eq!(charts.step, "1h");
        assert_eq!(charts.symbols, vec![("BTCUSDT".to_string(), 1), ("ETHUSDT".to_string(), 1)]);
        let v: serde_json::Value = serde_json::from_str(&charts.json).unwrap();
        let syms = v["symbols"].as_array().unwrap();
        assert_eq!(syms.len(), 2);
        assert_eq!(syms[0]["t"].as_array().unwrap().len(), 8);
        let marks = |i: usize| -> Vec<(i64, i64, String)> {
            syms[i]["marks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| (m[0].as_i64().unwrap(), m[2].as_i64().unwrap(), m[3].as_str().unwrap().to_string()))
                .collect()
        };
        let s = T0 / 1000;
        assert_eq!(
            marks(0),
            vec![(s + 3600, MarkKind::ShortEntry as i64, String::new()), (s + 5 * 3600, 5, "end_of_data".into())]
        );
        assert_eq!(
            marks(1),
            vec![
                (s + 3600, MarkKind::LongEntry as i64, String::new()),
                (s + 2 * 3600, MarkKind::TakeProfit as i64, String::new()),
                (s + 3 * 3600, MarkKind::StopLoss as i64, String::new())
            ]
        );
        // The trade line runs to the last exit fill; the loser is flagged 0.
        assert_eq!(syms[0]["trades"][0][4].as_i64(), Some(0));
        assert_eq!(syms[1]["trades"][0][2].as_i64(), Some(s + 3 * 3600));
        assert_eq!(syms[1]["trades"][0][4].as_i64(), Some(1));
    }

    #[test]
    fn a_run_without_history_or_trades_says_so() {
        let none = price_charts(&[], &[hourly("BTCUSDT", 3)], MAX_PRICE_POINTS);
        assert!(none.symbols.is_empty());
        let mut h = String::new();
        section(&mut h, &none, &[]);
        assert!(h.contains("No trades"));
        assert!(serde_json::from_str::<serde_json::Value>(&none.json).is_ok());
    }

    #[test]
    fn the_script_carries_the_colours_and_no_url() {
        let s = script();
        assert!(s.contains(LONG_COLOUR) && s.contains(SHORT_COLOUR) && !s.contains('@'));
        assert!(!s.contains("http"));
    }
}
