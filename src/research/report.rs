//! Self-contained HTML pages (inline SVG, no script, no network) for sweeps and
//! walk-forward runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::research::output::{Row, Table};
use crate::research::space::Objective;
use crate::research::sweep::{Analysis, objective_value};

const W: f64 = 640.0;
const H: f64 = 300.0;
const PAD: f64 = 48.0;

pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn bounds(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) =
        v.filter(|x| x.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 { (lo - 1.0, hi + 1.0) } else { (lo, hi) }
}

struct Frame {
    x: (f64, f64),
    y: (f64, f64),
}

impl Frame {
    fn px(&self, x: f64) -> f64 {
        PAD + (x - self.x.0) / (self.x.1 - self.x.0) * (W - 2.0 * PAD)
    }
    fn py(&self, y: f64) -> f64 {
        H - PAD + (y - self.y.0) / (self.y.1 - self.y.0) * -(H - 2.0 * PAD)
    }
    fn axes(&self, out: &mut String, xl: &str, yl: &str) {
        let _ = write!(
            out,
            "<line x1='{PAD}' y1='{b}' x2='{r}' y2='{b}' stroke='#333'/><line x1='{PAD}' y1='{PAD}' x2='{PAD}' y2='{b}' stroke='#333'/>",
            b = H - PAD,
            r = W - PAD
        );
        for i in 0..=4 {
            let f = i as f64 / 4.0;
            let xv = self.x.0 + f * (self.x.1 - self.x.0);
            let yv = self.y.0 + f * (self.y.1 - self.y.0);
            let _ = write!(
                out,
                "<text x='{:.1}' y='{:.1}' font-size='10' text-anchor='middle'>{}</text><text x='{:.1}' y='{:.1}' font-size='10' text-anchor='end'>{}</text>",
                self.px(xv),
                H - PAD + 14.0,
                short(xv),
                PAD - 4.0,
                self.py(yv) + 3.0,
                short(yv)
            );
        }
        let _ = write!(
            out,
            "<text x='{:.1}' y='{:.1}' font-size='11' text-anchor='middle'>{}</text><text x='12' y='{:.1}' font-size='11' transform='rotate(-90 12 {:.1})' text-anchor='middle'>{}</text>",
            W / 2.0,
            H - 8.0,
            esc(xl),
            H / 2.0,
            H / 2.0,
            esc(yl)
        );
    }
}

fn short(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn svg_open(title: &str) -> String {
    format!(
        "<h2>{}</h2><svg xmlns='http://www.w3.org/2000/svg' width='{W}' height='{H}' viewBox='0 0 {W} {H}'>",
        esc(title)
    )
}

/// A named, coloured line.
pub type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

/// Lines on one chart.
pub fn line_chart(title: &str, xl: &str, yl: &str, series: &[Series<'_>]) -> String {
    let all = || series.iter().flat_map(|s| s.2.iter().copied());
    let f = Frame { x: bounds(all().map(|p| p.0)), y: bounds(all().map(|p| p.1)) };
    let mut out = svg_open(title);
    f.axes(&mut out, xl, yl);
    for (i, (label, colour, pts)) in series.iter().enumerate() {
        let path: Vec<String> = pts.iter().map(|(x, y)| format!("{:.1},{:.1}", f.px(*x), f.py(*y))).collect();
        let _ = write!(
            out,
            "<polyline fill='none' stroke='{colour}' stroke-width='1.5' points='{}'/><text x='{:.1}' y='{:.1}' font-size='11' fill='{colour}'>{}</text>",
            path.join(" "),
            PAD + 8.0,
            PAD + 12.0 * (i as f64 + 1.0),
            esc(label)
        );
    }
    out + "</svg>"
}

fn histogram(title: &str, xl: &str, values: &[f64]) -> String {
    let (lo, hi) = bounds(values.iter().copied());
    let bins = 24usize;
    let mut counts = vec![0u32; bins];
    for v in values.iter().filter(|v| v.is_finite()) {
        let i = (((v - lo) / (hi - lo)) * bins as f64) as usize;
        if let Some(c) = counts.get_mut(i.min(bins - 1)) {
            *c += 1;
        }
    }
    let top = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let f = Frame { x: (lo, hi), y: (0.0, top) };
    let mut out = svg_open(title);
    f.axes(&mut out, xl, "points");
    let bw = (hi - lo) / bins as f64;
    for (i, c) in counts.iter().enumerate() {
        let x0 = f.px(lo + i as f64 * bw);
        let x1 = f.px(lo + (i + 1) as f64 * bw);
        let y = f.py(f64::from(*c));
        let _ = write!(
            out,
            "<rect x='{x0:.1}' y='{y:.1}' width='{:.1}' height='{:.1}' fill='#4a7bd0'/>",
            (x1 - x0 - 1.0).max(0.5),
            H - PAD - y
        );
    }
    out + "</svg>"
}

/// Return vs drawdown with the Pareto front (no other point has both a higher return and
/// a lower drawdown).
fn pareto(rows: &[Row]) -> String {
    let pts: Vec<(usize, f64, f64)> =
        rows.iter().filter_map(|r| Some((r.id, r.num("max_drawdown_pct")?, r.num("total_return_pct")?))).collect();
    let front: Vec<&(usize, f64, f64)> =
        pts.iter().filter(|a| !pts.iter().any(|b| b.1 <= a.1 && b.2 >= a.2 && (b.1 < a.1 || b.2 > a.2))).collect();
    let f = Frame { x: bounds(pts.iter().map(|p| p.1)), y: bounds(pts.iter().map(|p| p.2)) };
    let mut out = svg_open("Return vs max drawdown (Pareto front in red)");
    f.axes(&mut out, "max drawdown %", "total return %");
    for (_, x, y) in &pts {
        let _ = write!(out, "<circle cx='{:.1}' cy='{:.1}' r='2' fill='#8aa'/>", f.px(*x), f.py(*y));
    }
    let mut front_sorted = front.clone();
    front_sorted.sort_by(|a, b| a.1.total_cmp(&b.1));
    let path: Vec<String> = front_sorted.iter().map(|p| format!("{:.1},{:.1}", f.px(p.1), f.py(p.2))).collect();
    let _ = write!(out, "<polyline fill='none' stroke='#c33' points='{}'/>", path.join(" "));
    for (id, x, y) in front_sorted {
        let _ = write!(
            out,
            "<circle cx='{:.1}' cy='{:.1}' r='3.5' fill='#c33'><title>point {id}</title></circle>",
            f.px(*x),
            f.py(*y)
        );
    }
    out + "</svg>"
}

fn sort_values(mut v: Vec<String>) -> Vec<String> {
    v.sort_by(|a, b| match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.total_cmp(&y),
        _ => a.cmp(b),
    });
    v.dedup();
    v
}

/// Heatmap of the objective over the first two parameters with several values; each cell
/// shows the best objective over the other parameters.
fn heatmap(table: &Table, objective: Objective) -> String {
    let params = &table.manifest.params;
    let varied: Vec<usize> = (0..params.len())
        .filter(|i| sort_values(table.rows.iter().filter_map(|r| r.params.get(*i).cloned()).collect()).len() > 1)
        .collect();
    let (Some(&a), Some(&b)) = (varied.first(), varied.get(1)) else {
        return "<p>No heatmap: fewer than two parameters take several values.</p>".into();
    };
    let xs = sort_values(table.rows.iter().filter_map(|r| r.params.get(a).cloned()).collect());
    let ys = sort_values(table.rows.iter().filter_map(|r| r.params.get(b).cloned()).collect());
    if xs.len() > 60 || ys.len() > 60 {
        return "<p>No heatmap: more than 60 distinct values on an axis.</p>".into();
    }
    let mut cells: BTreeMap<(usize, usize), f64> = BTreeMap::new();
    for r in &table.rows {
        let (Some(x), Some(y), Some(v)) = (r.params.get(a), r.params.get(b), objective_value(r, objective)) else {
            continue;
        };
        let (Some(i), Some(j)) = (xs.iter().position(|s| s == x), ys.iter().position(|s| s == y)) else { continue };
        let c = cells.entry((i, j)).or_insert(f64::NEG_INFINITY);
        *c = c.max(v);
    }
    let name = |i: usize| params.get(i).map(String::as_str).unwrap_or_default();
    let at = |v: &[String], i: usize| v.get(i).cloned().unwrap_or_default();
    let (lo, hi) = bounds(cells.values().copied());
    let cw = (W - 2.0 * PAD) / xs.len() as f64;
    let ch = (H - 2.0 * PAD) / ys.len() as f64;
    let mut out = svg_open(&format!("Best {} by {} × {}", objective.as_str(), name(a), name(b)));
    for ((i, j), v) in &cells {
        let t = (v - lo) / (hi - lo);
        let (red, green) = ((255.0 * (1.0 - t)) as u8, (200.0 * t) as u8);
        let x = PAD + *i as f64 * cw;
        let y = H - PAD - (*j as f64 + 1.0) * ch;
        let _ = write!(
            out,
            "<rect x='{x:.1}' y='{y:.1}' width='{cw:.1}' height='{ch:.1}' fill='rgb({red},{green},60)'><title>{}={} {}={}: {v:.3}</title></rect>",
            esc(name(a)),
            esc(&at(&xs, *i)),
            esc(name(b)),
            esc(&at(&ys, *j))
        );
        if xs.len() <= 12 && ys.len() <= 12 {
            let _ = write!(
                out,
                "<text x='{:.1}' y='{:.1}' font-size='9' text-anchor='middle' fill='#fff'>{}</text>",
                x + cw / 2.0,
                y + ch / 2.0 + 3.0,
                short(*v)
            );
        }
    }
    for (i, x) in xs.iter().enumerate().step_by(xs.len().div_ceil(12)) {
        let _ = write!(
            out,
            "<text x='{:.1}' y='{:.1}' font-size='10' text-anchor='middle'>{}</text>",
            PAD + (i as f64 + 0.5) * cw,
            H - PAD + 14.0,
            esc(x)
        );
    }
    for (j, y) in ys.iter().enumerate().step_by(ys.len().div_ceil(12)) {
        let _ = write!(
            out,
            "<text x='{:.1}' y='{:.1}' font-size='10' text-anchor='end'>{}</text>",
            PAD - 4.0,
            H - PAD - (j as f64 + 0.5) * ch + 3.0,
            esc(y)
        );
    }
    let _ = write!(
        out,
        "<text x='{:.1}' y='{:.1}' font-size='11' text-anchor='middle'>{}</text>",
        W / 2.0,
        H - 8.0,
        esc(name(a))
    );
    let _ = write!(
        out,
        "<text x='12' y='{:.1}' font-size='11' transform='rotate(-90 12 {:.1})' text-anchor='middle'>{}</text>",
        H / 2.0,
        H / 2.0,
        esc(name(b))
    );
    out + "</svg>"
}

pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>{t}</title><style>body{{font-family:sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}li{{margin:.3em 0}}</style></head><body><h1>{t}</h1>{body}</body></html>\n",
        t = esc(title)
    )
}

/// The sweep page.
pub fn sweep_html(table: &Table, a: &Analysis, objective: Objective) -> String {
    let m = &table.manifest;
    let mut body = format!(
        "<p>{} points ({}), parameters: {}; data: {}.</p><h2>Overfitting</h2><ul>",
        m.total_points,
        esc(&m.method),
        esc(&m.params.join(", ")),
        esc(&m.data.join("; "))
    );
    for v in &a.verdicts {
        let _ = write!(body, "<li>{}</li>", esc(v));
    }
    body.push_str("</ul>");
    if let Some(id) = a.best_point {
        let params: Vec<String> = a.best_params.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        let _ = write!(
            body,
            "<p>Best point {id} by {}: {} (written to best.toml).</p>",
            esc(&m.objective),
            esc(&params.join(", "))
        );
    }
    body.push_str(&heatmap(table, objective));
    body.push_str(&pareto(&table.rows));
    let sharpes: Vec<f64> = table.rows.iter().filter_map(|r| r.num("sharpe")).collect();
    body.push_str(&histogram("Distribution of Sharpe across trials", "Sharpe (annualized)", &sharpes));
    page("Kinetic sweep", &body)
}
