//! Running a sweep: every point of a space (or of one shard of it) through the backtest on
//! all cores, the analysis of the whole table (best point, deflated Sharpe, PBO), and the
//! merge of shard outputs into exactly what one machine would have written.

use std::collections::BTreeMap;
use std::path::Path;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use serde::Serialize;

use crate::backtest::metrics::iso;
use crate::config::Settings;
use crate::core::models::TimestampMs;
use crate::research::dataset::{BaseConfig, Dataset, RunOutcome};
use crate::research::output::{self, FNV_OFFSET, Manifest, Row, Table};
use crate::research::space::{Method, Objective, Point, Shard, Space};
use crate::research::{ResearchError, report, stats};

/// What to sweep.
pub struct Request<'a> {
    pub space: &'a Space,
    pub seed: u64,
    pub shard: Shard,
    pub base: &'a BaseConfig,
    pub data: &'a Dataset,
    pub from: Option<TimestampMs>,
    pub to: Option<TimestampMs>,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

/// A progress bar with rate and ETA, or a hidden one.
pub fn bar(len: u64, show: bool, what: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {what} [{{bar:40}}] {{pos}}/{{len}} ({{per_sec}}, ETA {{eta}}) {{elapsed}}"
        ))
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Runs each settings over `[from, to)` in parallel (rayon's pool: all cores unless the
/// caller installed a smaller one); results in input order.
///
/// # Errors
/// The first failing run.
pub fn run_all(
    data: &Dataset,
    settings: &[Settings],
    from: Option<TimestampMs>,
    to: Option<TimestampMs>,
    bar: &ProgressBar,
) -> Result<Vec<RunOutcome>, ResearchError> {
    settings
        .par_iter()
        .map(|s| {
            let out = data.run(s, from, to);
            bar.inc(1);
            out
        })
        .collect()
}

/// FNV fingerprint of every point's values.
pub fn fingerprint(points: &[Point]) -> String {
    let mut h = FNV_OFFSET;
    for p in points {
        for v in &p.values {
            h = output::fnv1a(v.to_string().bytes().chain([0x1f]), h);
        }
        h = output::fnv1a([0x1e], h);
    }
    format!("{h:016x}")
}

/// The manifest of a sweep of `space` (shard `shard`).
///
/// # Errors
/// The base settings cannot be rendered.
pub fn manifest(req: &Request<'_>, points: &[Point], base: &Settings) -> Result<Manifest, ResearchError> {
    let s = req.space;
    Ok(Manifest {
        format: 1,
        method: s.method.as_str().to_string(),
        samples: (s.method != Method::Grid).then_some(s.samples),
        seed: if s.method == Method::Grid { 0 } else { req.seed },
        objective: s.objective.as_str().to_string(),
        min_trades: s.min_trades,
        pbo_partitions: s.pbo_partitions,
        params: s.params.iter().map(|p| p.key.clone()).collect(),
        total_points: points.len(),
        shard: req.shard.to_string(),
        fingerprint: fingerprint(points),
        data: req.data.describe(),
        from: req.from.map(iso),
        to: req.to.map(iso),
        base_config: toml::to_string_pretty(base).map_err(|e| ResearchError::Data(format!("base config: {e}")))?,
    })
}

/// Runs the request's points (its shard's) and returns the table.
///
/// # Errors
/// A point's config is invalid (checked for every point before anything runs), or a run
/// fails.
pub fn run(req: &Request<'_>) -> Result<Table, ResearchError> {
    let base = req.base.settings_with(&[])?;
    let points = req.space.points(req.seed);
    let keys: Vec<String> = req.space.params.iter().map(|p| p.key.clone()).collect();
    let mine: Vec<&Point> = points.iter().filter(|p| req.shard.contains(p.id)).collect();
    let settings: Vec<Settings> =
        mine.par_iter().map(|p| req.base.point_settings(&keys, &p.values)).collect::<Result<_, _>>()?;
    let progress = bar(mine.len() as u64, req.progress, "sweep");
    let outcomes = run_all(req.data, &settings, req.from, req.to, &progress)?;
    progress.finish_and_clear();
    let rows = mine
        .iter()
        .zip(outcomes)
        .map(|(p, o)| Row {
            id: p.id,
            params: p.values.iter().map(ToString::to_string).collect(),
            metrics: output::flatten_metrics(&o.metrics),
            daily: o.daily,
        })
        .collect();
    Ok(Table { manifest: manifest(req, &points, &base)?, rows })
}

/// Joins shard tables into the table of the complete sweep.
///
/// # Errors
/// Shards of different sweeps, a shard missing or given twice, points missing.
pub fn merge(shards: Vec<Table>) -> Result<Table, ResearchError> {
    let Some(first) = shards.first() else {
        return Err(ResearchError::invalid(
            "merge",
            "no shard folder",
            "one or more folders written by `sweep --shard`",
        ));
    };
    let mut manifest = first.manifest.clone();
    let count = manifest.shard.split_once('/').and_then(|(_, n)| n.parse::<usize>().ok()).unwrap_or(0);
    let mut seen = vec![false; count];
    for t in &shards {
        let mut a = t.manifest.clone();
        let shard = Shard::parse(&a.shard)?;
        a.shard = manifest.shard.clone();
        if a != manifest || shard.count != count {
            return Err(ResearchError::invalid(
                "merge",
                format!("shard {}", t.manifest.shard),
                "shards of one sweep (same space, seed, data, config and shard count)",
            ));
        }
        match seen.get_mut(shard.index) {
            Some(s) if !*s => *s = true,
            _ => return Err(ResearchError::invalid("merge", format!("shard {}", shard), "each shard once")),
        }
    }
    if let Some(missing) = seen.iter().position(|s| !s) {
        return Err(ResearchError::invalid(
            "merge",
            format!("shard {missing}/{count} missing"),
            "every shard of the sweep",
        ));
    }
    let mut rows: Vec<Row> = shards.into_iter().flat_map(|t| t.rows).collect();
    rows.sort_by_key(|r| r.id);
    if rows.len() != manifest.total_points || rows.iter().enumerate().any(|(i, r)| r.id != i) {
        return Err(ResearchError::Data(format!(
            "the shards hold {} rows, the sweep has {} points numbered from 0",
            rows.len(),
            manifest.total_points
        )));
    }
    manifest.shard = Shard::ALL.to_string();
    Ok(Table { manifest, rows })
}

/// A row's value of `objective` (`None` when undefined).
pub fn objective_value(row: &Row, objective: Objective) -> Option<f64> {
    match objective {
        Objective::Sharpe => row.num("sharpe"),
        Objective::Sortino => row.num("sortino"),
        Objective::Return => row.num("total_return_pct"),
        Objective::Calmar => Some(row.num("total_return_pct")? / row.num("max_drawdown_pct")?.max(0.01)),
    }
}

/// The row with the highest objective among those with at least `min_trades` trades (the
/// lowest point number on a tie).
pub fn best(rows: &[Row], objective: Objective, min_trades: u64) -> Option<&Row> {
    let mut best: Option<(&Row, f64)> = None;
    for r in rows {
        if r.num("trades").unwrap_or(0.0) < min_trades as f64 {
            continue;
        }
        let Some(v) = objective_value(r, objective) else { continue };
        if best.is_none_or(|(_, b)| v > b) {
            best = Some((r, v));
        }
    }
    best.map(|(r, _)| r)
}

/// Daily returns of every row on a common calendar (missing days = 0).
pub fn aligned_returns(rows: &[Row]) -> Vec<Vec<f64>> {
    let days: std::collections::BTreeSet<i64> = rows.iter().flat_map(|r| r.daily.iter().map(|(d, _)| *d)).collect();
    let pos: BTreeMap<i64, usize> = days.iter().enumerate().map(|(i, d)| (*d, i)).collect();
    rows.iter()
        .map(|r| {
            let mut v = vec![0.0; days.len()];
            for (d, x) in &r.daily {
                if let Some(slot) = pos.get(d).and_then(|i| v.get_mut(*i)) {
                    *slot = *x;
                }
            }
            v
        })
        .collect()
}

/// `overfitting.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    pub objective: String,
    pub min_trades: u64,
    pub trials: usize,
    pub eligible: usize,
    pub best_point: Option<usize>,
    pub best_params: BTreeMap<String, String>,
    pub best_sharpe_annualized: Option<f64>,
    pub best_total_return_pct: Option<f64>,
    pub best_max_drawdown_pct: Option<f64>,
    pub best_trades: Option<f64>,
    pub deflated_sharpe: Option<DsrOut>,
    pub pbo: Option<PboOut>,
    pub verdicts: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DsrOut {
    pub dsr: f64,
    pub psr_zero: f64,
    pub sharpe_daily: f64,
    pub expected_max_sharpe_daily: f64,
    pub variance_of_sharpe_daily: f64,
    pub skewness: f64,
    pub kurtosis: f64,
    pub days: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct PboOut {
    pub pbo: f64,
    pub partitions: usize,
    pub combinations: usize,
    pub days_per_partition: usize,
    pub prob_oos_sharpe_negative: f64,
    pub median_logit: f64,
}

/// Best point, DSR and PBO of a complete table.
pub fn analyse(table: &Table, objective: Objective, min_trades: u64, partitions: usize) -> Analysis {
    let rows = &table.rows;
    let series = aligned_returns(rows);
    let trial_sharpes: Vec<f64> = series.iter().filter_map(|s| stats::sharpe(s)).collect();
    let best = best(rows, objective, min_trades);
    let eligible = rows.iter().filter(|r| r.num("trades").unwrap_or(0.0) >= min_trades as f64).count();
    let mut verdicts = Vec::new();
    let dsr = best.and_then(|b| {
        let s = series.get(rows.iter().position(|r| r.id == b.id)?)?;
        stats::deflated_sharpe(s, &trial_sharpes, rows.len())
    });
    match &dsr {
        Some(d) => {
            verdicts.push(stats::dsr_verdict(d));
            verdicts.push(stats::moments_verdict(d));
            verdicts.push(stats::variance_verdict(d));
        }
        None => verdicts.push(format!(
            "no deflated Sharpe: no point with at least {min_trades} trades and a defined {} (or under two days of returns)",
            objective.as_str()
        )),
    }
    let pbo = stats::pbo_cscv(&series, partitions);
    match &pbo {
        Some(p) => verdicts.push(stats::pbo_verdict(p)),
        None => verdicts.push(format!(
            "no PBO: it needs at least 2 points and {} days ({partitions} partitions of 2 days or more)",
            partitions * 2
        )),
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    Analysis {
        objective: objective.as_str().to_string(),
        min_trades,
        trials: rows.len(),
        eligible,
        best_point: best.map(|b| b.id),
        best_params: best
            .map(|b| table.manifest.params.iter().cloned().zip(b.params.iter().cloned()).collect())
            .unwrap_or_default(),
        best_sharpe_annualized: best.and_then(|b| b.num("sharpe")),
        best_total_return_pct: best.and_then(|b| b.num("total_return_pct")),
        best_max_drawdown_pct: best.and_then(|b| b.num("max_drawdown_pct")),
        best_trades: best.and_then(|b| b.num("trades")),
        deflated_sharpe: dsr.map(|d| DsrOut {
            dsr: d.dsr,
            psr_zero: d.psr0,
            sharpe_daily: d.sharpe,
            expected_max_sharpe_daily: d.sr0,
            variance_of_sharpe_daily: d.var_sharpe,
            skewness: d.skew,
            kurtosis: d.kurtosis,
            days: d.t,
        }),
        pbo: pbo.map(|p| PboOut {
            pbo: p.pbo,
            partitions: p.partitions,
            combinations: p.combinations,
            days_per_partition: p.rows_per_partition,
            prob_oos_sharpe_negative: p.prob_oos_loss,
            median_logit: median(p.logits.clone()),
        }),
        verdicts,
    }
}

/// Writes everything a complete sweep has: the raw files, `overfitting.json`, `summary.txt`,
/// `report.html` and (when there is a best point) `best.toml`. Returns the summary text.
/// A shard writes only the raw files (statistics over a slice would mislead).
///
/// # Errors
/// A file cannot be written.
pub fn write(dir: &Path, table: &Table) -> Result<String, ResearchError> {
    output::write_raw(dir, table)?;
    if table.manifest.shard != Shard::ALL.to_string() {
        return Ok(format!(
            "shard {} of the sweep: {} of {} points; merge the shards with `kinetic sweep merge` for the statistics\n",
            table.manifest.shard,
            table.rows.len(),
            table.manifest.total_points
        ));
    }
    let m = &table.manifest;
    let objective = Objective::parse("objective", &m.objective)?;
    let a = analyse(table, objective, m.min_trades, m.pbo_partitions);
    let json = serde_json::to_string_pretty(&a).map_err(|e| ResearchError::io(&dir.join("overfitting.json"), e))?;
    output::write_text(dir, "overfitting.json", &(json + "\n"))?;
    let mut summary = format!(
        "sweep: {} points ({}), objective {}, min trades {}\n",
        m.total_points, m.method, m.objective, m.min_trades
    );
    if let Some(id) = a.best_point {
        let params: Vec<String> = a.best_params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        summary.push_str(&format!(
            "best point {id}: {} — Sharpe {}, return {} %, max drawdown {} %, {} trades\n",
            params.join(" "),
            a.best_sharpe_annualized.map_or("n/a".into(), |v| format!("{v:.2}")),
            a.best_total_return_pct.map_or("n/a".into(), |v| format!("{v:.2}")),
            a.best_max_drawdown_pct.map_or("n/a".into(), |v| format!("{v:.2}")),
            a.best_trades.map_or("n/a".into(), |v| format!("{v}")),
        ));
        let pairs: Vec<(&str, &str)> = a.best_params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let toml = output::config_with(&m.base_config, &pairs)?;
        output::write_text(
            dir,
            "best.toml",
            &format!(
                "# Best point {id} of the sweep by {} (min {} trades): {}\n# Use: kinetic --config best.toml backtest\n\n{toml}",
                m.objective,
                m.min_trades,
                params.join(" ")
            ),
        )?;
    }
    for v in &a.verdicts {
        summary.push_str(&format!("- {v}\n"));
    }
    output::write_text(dir, "summary.txt", &summary)?;
    output::write_text(dir, "report.html", &report::sweep_html(table, &a, objective))?;
    Ok(summary)
}
