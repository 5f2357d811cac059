//! Walk-forward analysis: the data is cut into windows of in-sample (IS) and out-of-sample
//! (OOS) days; in each, every point of the space is backtested in sample, the best one by
//! the objective (with a minimum trade count) is chosen, and every point is run out of
//! sample so the pick's OOS rank can be seen (a walk-forward PBO). The picks' OOS days,
//! stitched, are the honest equity curve of "optimise, then trade"; beside it, the picks'
//! in-sample curves chained (what the optimiser promised) and the base config over the same
//! OOS days.
//!
//! Rolling windows slide the IS start by `step` days; anchored windows keep it at the start
//! and grow. Windows cover the period every symbol has data for; the first IS day starts
//! after the backtest's 20-day warm-up of it.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::backtest::WARMUP_MS;
use crate::backtest::metrics::iso;
use crate::config::Settings;
use crate::core::models::TimestampMs;
use crate::research::dataset::{BaseConfig, Dataset, RunOutcome};
use crate::research::output::{self, Row, Table};
use crate::research::space::{Objective, Shard, Space};
use crate::research::sweep::{self, bar};
use crate::research::{ResearchError, report, stats};

const DAY_MS: i64 = 86_400_000;

/// Daily returns: (UTC day number, return).
pub type Daily = Vec<(i64, f64)>;

/// Window lengths, days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    pub in_sample_days: u32,
    pub out_of_sample_days: u32,
    pub step_days: u32,
    pub anchored: bool,
}

/// One window, times in ms (`[from, to)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    pub index: usize,
    pub is_from: TimestampMs,
    pub is_to: TimestampMs,
    pub oos_from: TimestampMs,
    pub oos_to: TimestampMs,
}

impl Windows {
    /// The windows that fit in data spanning `[start, end)` (whole UTC days after warm-up).
    ///
    /// # Errors
    /// Zero lengths, or not even one window fits.
    pub fn cut(&self, start: TimestampMs, end: TimestampMs) -> Result<Vec<Window>, ResearchError> {
        for (k, v) in [
            ("--is-days", self.in_sample_days),
            ("--oos-days", self.out_of_sample_days),
            ("--step-days", self.step_days),
        ] {
            if v == 0 {
                return Err(ResearchError::invalid(k, 0, "a number of days >= 1"));
            }
        }
        let first = (start + WARMUP_MS).div_euclid(DAY_MS) * DAY_MS + DAY_MS;
        let (is, oos, step) = (
            i64::from(self.in_sample_days) * DAY_MS,
            i64::from(self.out_of_sample_days) * DAY_MS,
            i64::from(self.step_days) * DAY_MS,
        );
        let mut out = Vec::new();
        loop {
            let k = out.len() as i64;
            let is_from = if self.anchored { first } else { first + k * step };
            // Rolling: [first + k·step, + is); anchored: [first, first + is + k·step).
            let is_to = first + is + k * step;
            let oos_to = is_to + oos;
            if oos_to > end + 1 {
                break;
            }
            out.push(Window { index: out.len(), is_from, is_to, oos_from: is_to, oos_to });
        }
        if out.is_empty() {
            return Err(ResearchError::invalid(
                "--is-days/--oos-days",
                format!("{} + {} days", self.in_sample_days, self.out_of_sample_days),
                &format!("windows that fit in the data after its 20-day warm-up ({} to {})", iso(first), iso(end + 1)),
            ));
        }
        Ok(out)
    }
}

/// One window's result.
#[derive(Debug, Clone, Serialize)]
pub struct WindowResult {
    pub window: Window,
    pub best_point: Option<usize>,
    pub best_params: Vec<String>,
    pub is_objective: Option<f64>,
    pub is_return_pct: Option<f64>,
    pub is_trades: Option<f64>,
    pub is_dsr: Option<f64>,
    pub is_pbo: Option<f64>,
    pub oos_objective: Option<f64>,
    pub oos_return_pct: Option<f64>,
    pub oos_max_drawdown_pct: Option<f64>,
    pub oos_trades: Option<f64>,
    /// Share of points the pick beat out of sample (0 = worst, 1 = best).
    pub oos_rank: Option<f64>,
    pub baseline_oos_return_pct: Option<f64>,
    #[serde(skip)]
    pub oos_daily: Vec<(i64, f64)>,
    #[serde(skip)]
    pub is_daily: Vec<(i64, f64)>,
    #[serde(skip)]
    pub baseline_daily: Vec<(i64, f64)>,
}

/// The whole run.
#[derive(Debug, Clone)]
pub struct WalkForward {
    pub params: Vec<String>,
    pub objective: Objective,
    pub min_trades: u64,
    pub windows: Vec<WindowResult>,
}

fn rows(points: &[Vec<String>], outcomes: Vec<RunOutcome>) -> Vec<Row> {
    points
        .iter()
        .zip(outcomes)
        .enumerate()
        .map(|(id, (p, o))| Row { id, params: p.clone(), metrics: output::flatten_metrics(&o.metrics), daily: o.daily })
        .collect()
}

/// Runs the walk-forward of `space` over `data`.
///
/// # Errors
/// Bad windows or config keys (usage), failing runs.
pub fn run(
    space: &Space,
    seed: u64,
    windows: &Windows,
    base: &BaseConfig,
    data: &Dataset,
    progress: bool,
) -> Result<WalkForward, ResearchError> {
    let (start, end) = data.span().ok_or_else(|| ResearchError::Data("the symbols have no period in common".into()))?;
    let cuts = windows.cut(start, end)?;
    let keys: Vec<String> = space.params.iter().map(|p| p.key.clone()).collect();
    let points = space.points(seed);
    let base_settings = base.settings_with(&[])?;
    let settings: Vec<Settings> =
        points.iter().map(|p| base.point_settings(&keys, &p.values)).collect::<Result<_, _>>()?;
    let texts: Vec<Vec<String>> = points.iter().map(|p| p.values.iter().map(ToString::to_string).collect()).collect();
    let progress = bar((cuts.len() * (2 * settings.len() + 1)) as u64, progress, "walk-forward");
    let mut out = Vec::new();
    for w in cuts {
        let is_rows = rows(&texts, sweep::run_all(data, &settings, Some(w.is_from), Some(w.is_to), &progress)?);
        let table = Table { manifest: empty_manifest(&keys), rows: is_rows };
        let analysis = sweep::analyse(&table, space.objective, space.min_trades, space.pbo_partitions);
        let best = sweep::best(&table.rows, space.objective, space.min_trades);
        let oos_rows = rows(&texts, sweep::run_all(data, &settings, Some(w.oos_from), Some(w.oos_to), &progress)?);
        let baseline = data.run(&base_settings, Some(w.oos_from), Some(w.oos_to))?;
        progress.inc(1);
        let pick = best.and_then(|b| oos_rows.get(b.id));
        let oos_rank = pick.and_then(|p| {
            let v = sweep::objective_value(p, space.objective)?;
            let others: Vec<f64> = oos_rows
                .iter()
                .filter(|r| r.id != p.id)
                .filter_map(|r| sweep::objective_value(r, space.objective))
                .collect();
            (!others.is_empty()).then(|| others.iter().filter(|o| **o < v).count() as f64 / others.len() as f64)
        });
        out.push(WindowResult {
            window: w,
            best_point: best.map(|b| b.id),
            best_params: best.map(|b| b.params.clone()).unwrap_or_default(),
            is_objective: best.and_then(|b| sweep::objective_value(b, space.objective)),
            is_return_pct: best.and_then(|b| b.num("total_return_pct")),
            is_trades: best.and_then(|b| b.num("trades")),
            is_dsr: analysis.deflated_sharpe.as_ref().map(|d| d.dsr),
            is_pbo: analysis.pbo.as_ref().map(|p| p.pbo),
            oos_objective: pick.and_then(|p| sweep::objective_value(p, space.objective)),
            oos_return_pct: pick.and_then(|p| p.num("total_return_pct")),
            oos_max_drawdown_pct: pick.and_then(|p| p.num("max_drawdown_pct")),
            oos_trades: pick.and_then(|p| p.num("trades")),
            oos_rank,
            baseline_oos_return_pct: output::flatten_metrics(&baseline.metrics)
                .get("total_return_pct")
                .and_then(|v| v.parse().ok()),
            oos_daily: pick.map(|p| within(&p.daily, w.oos_from, w.oos_to)).unwrap_or_default(),
            is_daily: best.map(|b| within(&b.daily, w.is_from, w.is_to)).unwrap_or_default(),
            baseline_daily: within(&baseline.daily, w.oos_from, w.oos_to),
        });
    }
    progress.finish_and_clear();
    Ok(WalkForward { params: keys, objective: space.objective, min_trades: space.min_trades, windows: out })
}

/// The days of `daily` inside `[from, to)`: the equity curve's first point is the close
/// just before `from` (the starting balance, a zero return), which belongs to no window.
fn within(daily: &[(i64, f64)], from: TimestampMs, to: TimestampMs) -> Daily {
    daily.iter().copied().filter(|(d, _)| *d * DAY_MS >= from && *d * DAY_MS < to).collect()
}

fn empty_manifest(keys: &[String]) -> output::Manifest {
    output::Manifest {
        format: 1,
        method: String::new(),
        samples: None,
        seed: 0,
        objective: String::new(),
        min_trades: 0,
        pbo_partitions: 0,
        params: keys.to_vec(),
        total_points: 0,
        shard: Shard::ALL.to_string(),
        fingerprint: String::new(),
        data: Vec::new(),
        from: None,
        to: None,
        base_config: String::new(),
    }
}

/// Equity from 1.0 through `returns`, one point per day (x = day index from 0).
pub fn chain(returns: impl Iterator<Item = f64>) -> Vec<(f64, f64)> {
    let mut e = 1.0;
    let mut out = vec![(0.0, 1.0)];
    for (i, r) in returns.enumerate() {
        e *= 1.0 + r;
        out.push(((i + 1) as f64, e));
    }
    out
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x}")).unwrap_or_default()
}

impl WalkForward {
    /// Stitched OOS daily returns of the picks, and of the base config.
    pub fn stitched(&self) -> (Daily, Daily) {
        let picks = self.windows.iter().flat_map(|w| w.oos_daily.iter().copied()).collect();
        let base = self.windows.iter().flat_map(|w| w.baseline_daily.iter().copied()).collect();
        (picks, base)
    }

    /// The one-line verdicts.
    pub fn verdicts(&self) -> Vec<String> {
        let (oos, base) = self.stitched();
        let r: Vec<f64> = oos.iter().map(|x| x.1).collect();
        let total = |v: &[(i64, f64)]| (v.iter().fold(1.0, |e, x| e * (1.0 + x.1)) - 1.0) * 100.0;
        let mut out = vec![format!(
            "stitched out-of-sample return {:.2} % over {} days (base config on the same days {:.2} %), Sharpe {}",
            total(&oos),
            oos.len(),
            total(&base),
            stats::sharpe(&r).map_or("n/a".into(), |s| format!("{:.2}/yr", s * 365f64.sqrt()))
        )];
        if let Some(m) = stats::moments(&r)
            && let Some(sr) = stats::sharpe(&r)
            && let Some(p) = stats::probabilistic_sharpe(sr, 0.0, m.n, m.skew, m.kurtosis)
        {
            out.push(format!(
                "probabilistic Sharpe of the stitched OOS returns (no selection inside them) {p:.3}: {}",
                if p >= 0.95 {
                    "the out-of-sample edge is significant at 95 %"
                } else {
                    "no significant out-of-sample edge"
                }
            ));
        }
        let ranks: Vec<f64> = self.windows.iter().filter_map(|w| w.oos_rank).collect();
        if !ranks.is_empty() {
            let below = ranks.iter().filter(|r| **r <= 0.5).count();
            out.push(format!(
                "walk-forward PBO {:.3}: the in-sample pick ranked in the bottom half out of sample in {below} of {} windows (mean OOS rank {:.2})",
                below as f64 / ranks.len() as f64,
                ranks.len(),
                ranks.iter().sum::<f64>() / ranks.len() as f64
            ));
        }
        let (is, oo): (Vec<f64>, Vec<f64>) =
            self.windows.iter().filter_map(|w| Some((w.is_return_pct?, w.oos_return_pct?))).unzip();
        if !is.is_empty() {
            let is_days: f64 =
                self.windows.iter().map(|w| (w.window.is_to - w.window.is_from) as f64 / DAY_MS as f64).sum();
            let oos_days: f64 =
                self.windows.iter().map(|w| (w.window.oos_to - w.window.oos_from) as f64 / DAY_MS as f64).sum();
            let eff = (oo.iter().sum::<f64>() / oos_days) / (is.iter().sum::<f64>() / is_days);
            out.push(format!(
                "walk-forward efficiency {eff:.2} (OOS return per day / IS return per day of the picks; 1 = holds up, <= 0 = lost out of sample)"
            ));
        }
        out
    }

    /// Writes `windows.csv`, `equity.csv`, `in_sample.csv`, `summary.txt`, `report.html`.
    /// Returns the summary.
    ///
    /// # Errors
    /// A file cannot be written.
    pub fn write(&self, dir: &Path) -> Result<String, ResearchError> {
        std::fs::create_dir_all(dir).map_err(|e| ResearchError::io(dir, e))?;
        let mut t = String::from("window,is_from,is_to,oos_from,oos_to,best_point");
        for p in &self.params {
            let _ = write!(t, ",{p}");
        }
        t.push_str(",is_objective,is_return_pct,is_trades,is_dsr,is_pbo,oos_objective,oos_return_pct,oos_max_drawdown_pct,oos_trades,oos_rank,baseline_oos_return_pct\n");
        for w in &self.windows {
            let x = &w.window;
            let _ = write!(
                t,
                "{},{},{},{},{},{}",
                x.index,
                iso(x.is_from),
                iso(x.is_to),
                iso(x.oos_from),
                iso(x.oos_to),
                w.best_point.map(|b| b.to_string()).unwrap_or_default()
            );
            for i in 0..self.params.len() {
                let _ = write!(t, ",{}", w.best_params.get(i).cloned().unwrap_or_default());
            }
            for v in [
                w.is_objective,
                w.is_return_pct,
                w.is_trades,
                w.is_dsr,
                w.is_pbo,
                w.oos_objective,
                w.oos_return_pct,
                w.oos_max_drawdown_pct,
                w.oos_trades,
                w.oos_rank,
                w.baseline_oos_return_pct,
            ] {
                let _ = write!(t, ",{}", opt(v));
            }
            t.push('\n');
        }
        output::write_text(dir, "windows.csv", &t)?;
        let (oos, base) = self.stitched();
        let mut e = String::from("date,oos_equity,baseline_equity\n");
        let (mut a, mut b) = (1.0, 1.0);
        for ((d, r), (_, rb)) in oos.iter().zip(base.iter()) {
            a *= 1.0 + r;
            b *= 1.0 + rb;
            let _ = writeln!(e, "{},{a},{b}", iso(d * DAY_MS).get(..10).unwrap_or_default());
        }
        output::write_text(dir, "equity.csv", &e)?;
        let mut s = String::from("window,date,equity\n");
        for w in &self.windows {
            let mut eq = 1.0;
            for (d, r) in &w.is_daily {
                eq *= 1.0 + r;
                let _ = writeln!(s, "{},{},{eq}", w.window.index, iso(d * DAY_MS).get(..10).unwrap_or_default());
            }
        }
        output::write_text(dir, "in_sample.csv", &s)?;
        let verdicts = self.verdicts();
        let mut summary = format!(
            "walk-forward: {} windows, objective {}, min trades {}\n",
            self.windows.len(),
            self.objective.as_str(),
            self.min_trades
        );
        for v in &verdicts {
            summary.push_str(&format!("- {v}\n"));
        }
        output::write_text(dir, "summary.txt", &summary)?;
        output::write_text(dir, "report.html", &self.html(&verdicts))?;
        Ok(summary)
    }

    fn html(&self, verdicts: &[String]) -> String {
        let (oos, base) = self.stitched();
        let is_chain = chain(self.windows.iter().flat_map(|w| w.is_daily.iter().map(|x| x.1)));
        let mut body = String::from("<ul>");
        for v in verdicts {
            let _ = write!(body, "<li>{}</li>", report::esc(v));
        }
        body.push_str("</ul>");
        body.push_str(&report::line_chart(
            "Equity: stitched out-of-sample picks vs their in-sample runs (chained) and the base config",
            "day",
            "equity (start = 1)",
            &[
                ("out of sample (picks)", "#c33", chain(oos.iter().map(|x| x.1))),
                ("in sample (picks, chained)", "#4a7bd0", is_chain),
                ("base config, out of sample", "#888", chain(base.iter().map(|x| x.1))),
            ],
        ));
        body.push_str("<h2>Windows</h2><table><tr><th>#</th><th>in sample</th><th>out of sample</th><th>pick</th><th>IS obj.</th><th>IS ret %</th><th>IS DSR</th><th>IS PBO</th><th>OOS obj.</th><th>OOS ret %</th><th>OOS DD %</th><th>OOS trades</th><th>OOS rank</th><th>base OOS ret %</th></tr>");
        let f = |v: Option<f64>| v.map_or("–".to_string(), |x| format!("{x:.2}"));
        for w in &self.windows {
            let x = &w.window;
            let pick: Vec<String> = self.params.iter().zip(&w.best_params).map(|(k, v)| format!("{k}={v}")).collect();
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{} – {}</td><td>{} – {}</td><td style='text-align:left'>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                x.index,
                iso(x.is_from).get(..10).unwrap_or_default(),
                iso(x.is_to).get(..10).unwrap_or_default(),
                iso(x.oos_from).get(..10).unwrap_or_default(),
                iso(x.oos_to).get(..10).unwrap_or_default(),
                report::esc(&pick.join(" ")),
                f(w.is_objective),
                f(w.is_return_pct),
                f(w.is_dsr),
                f(w.is_pbo),
                f(w.oos_objective),
                f(w.oos_return_pct),
                f(w.oos_max_drawdown_pct),
                f(w.oos_trades),
                f(w.oos_rank),
                f(w.baseline_oos_return_pct)
            );
        }
        body.push_str("</table>");
        report::page("Kinetic walk-forward", &body)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn rolling_and_anchored_windows() {
        let start = 0;
        let end = 100 * DAY_MS - 1;
        let w = Windows { in_sample_days: 30, out_of_sample_days: 10, step_days: 10, anchored: false };
        let cuts = w.cut(start, end).unwrap();
        // Trading starts on day 21 (20-day warm-up, next whole day): IS 21..51, OOS 51..61, ...
        assert_eq!(cuts[0].is_from, 21 * DAY_MS);
        assert_eq!(cuts[0].oos_from, 51 * DAY_MS);
        assert_eq!(cuts[1].is_from, 31 * DAY_MS);
        assert_eq!(cuts.last().unwrap().oos_to, 91 * DAY_MS);
        assert_eq!(cuts.len(), 4);
        let a = Windows { anchored: true, ..w }.cut(start, end).unwrap();
        assert!(a.iter().all(|x| x.is_from == 21 * DAY_MS));
        assert_eq!(a[1].is_to, 61 * DAY_MS);
        assert!(Windows { in_sample_days: 90, ..w }.cut(start, end).is_err());
    }
}
