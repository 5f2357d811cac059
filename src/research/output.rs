//! The files of a sweep, written and read back (a shard's files are merged by reading them).
//!
//! - `results.csv`: `point`, one column per parameter, then every figure of `metrics.json`
//!   (nested tables flattened to dotted names: `per_symbol.BTCUSDT.net_pnl`,
//!   `replay.skip_reasons.<reason>`, ...); an empty cell is an absent value;
//! - `returns.csv`: `point,date,return`: each point's daily returns (UTC day, fraction);
//! - `sweep.json`: the manifest: space, seed, shard, data, base config, a fingerprint of
//!   every point of the sweep (shards of one sweep share it).
//!
//! Numbers are written with Rust's shortest round-trip formatting, so reading a file back
//! gives the very same `f64`: merged shards compute the same statistics, bit for bit.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::backtest::metrics::Metrics;
use crate::research::ResearchError;

pub const RESULTS: &str = "results.csv";
pub const RETURNS: &str = "returns.csv";
pub const MANIFEST: &str = "sweep.json";
const DAY_MS: i64 = 86_400_000;

/// Figures shown first, in this order; the rest follow alphabetically.
const PRIMARY: [&str; 13] = [
    "total_return_pct",
    "annualized_return_pct",
    "sharpe",
    "sortino",
    "max_drawdown_pct",
    "trades",
    "win_rate_pct",
    "profit_factor",
    "net_pnl",
    "final_equity",
    "fees_paid",
    "funding_paid",
    "exposure_pct",
];

/// What a sweep was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub method: String,
    pub samples: Option<usize>,
    pub seed: u64,
    pub objective: String,
    pub min_trades: u64,
    pub pbo_partitions: usize,
    pub params: Vec<String>,
    pub total_points: usize,
    /// `I/N`; `0/1` for a complete sweep.
    pub shard: String,
    /// FNV-1a 64 of every point's values, hex.
    pub fingerprint: String,
    pub data: Vec<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// The base settings every point starts from (TOML).
    pub base_config: String,
}

/// One row of `results.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: usize,
    pub params: Vec<String>,
    pub metrics: BTreeMap<String, String>,
    /// Daily returns: (UTC day number, return).
    pub daily: Vec<(i64, f64)>,
}

impl Row {
    /// A figure as a number.
    pub fn num(&self, key: &str) -> Option<f64> {
        self.metrics.get(key).and_then(|v| v.parse::<f64>().ok()).filter(|v| v.is_finite())
    }
}

/// A sweep's rows (sorted by point) and its manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub manifest: Manifest,
    pub rows: Vec<Row>,
}

/// FNV-1a, 64 bit: a stable fingerprint (not a defence against tampering).
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>, mut h: u64) -> u64 {
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn flatten(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    let key = |k: &str| if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") };
    match v {
        serde_json::Value::Null => {}
        serde_json::Value::Bool(b) => {
            out.insert(prefix.to_string(), b.to_string());
        }
        serde_json::Value::Number(n) => {
            let text = n.as_f64().filter(|_| n.is_f64()).map(|f| f.to_string()).unwrap_or_else(|| n.to_string());
            out.insert(prefix.to_string(), text);
        }
        serde_json::Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                flatten(&key(k), v, out);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let label = ["symbol", "reason"]
                    .iter()
                    .find_map(|f| item.get(f).and_then(|s| s.as_str()).map(str::to_string))
                    .unwrap_or_else(|| i.to_string());
                flatten(&key(&label), item, out);
            }
        }
    }
}

/// Every figure of `metrics.json` as dotted name → text (definitions, the symbol list and
/// the period, which every point shares, are left out).
pub fn flatten_metrics(m: &Metrics) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(m) {
        for (k, v) in &map {
            if ["definitions", "symbols", "period_start", "period_end"].contains(&k.as_str()) {
                continue;
            }
            flatten(k, v, &mut out);
        }
    }
    out
}

fn columns(rows: &[Row]) -> Vec<String> {
    let all: BTreeSet<&String> = rows.iter().flat_map(|r| r.metrics.keys()).collect();
    let mut cols: Vec<String> =
        PRIMARY.iter().filter(|p| all.iter().any(|c| c.as_str() == **p)).map(|p| p.to_string()).collect();
    cols.extend(all.into_iter().filter(|c| !PRIMARY.contains(&c.as_str())).cloned());
    cols
}

fn day_text(day: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(day * DAY_MS)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| day.to_string())
}

fn parse_day(text: &str) -> Option<i64> {
    let d = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis().div_euclid(DAY_MS))
}

fn csv_err(path: &Path) -> impl Fn(csv::Error) -> ResearchError + '_ {
    move |e| ResearchError::io(path, e)
}

/// Writes `results.csv`, `returns.csv` and `sweep.json` into `dir`.
///
/// # Errors
/// The folder or a file cannot be written.
pub fn write_raw(dir: &Path, table: &Table) -> Result<(), ResearchError> {
    std::fs::create_dir_all(dir).map_err(|e| ResearchError::io(dir, e))?;
    let path = dir.join(RESULTS);
    let mut w = csv::Writer::from_path(&path).map_err(csv_err(&path))?;
    let cols = columns(&table.rows);
    let mut header = vec!["point".to_string()];
    header.extend(table.manifest.params.iter().cloned());
    header.extend(cols.iter().cloned());
    w.write_record(&header).map_err(csv_err(&path))?;
    for r in &table.rows {
        let mut rec = vec![r.id.to_string()];
        rec.extend(r.params.iter().cloned());
        rec.extend(cols.iter().map(|c| r.metrics.get(c).cloned().unwrap_or_default()));
        w.write_record(&rec).map_err(csv_err(&path))?;
    }
    w.flush().map_err(|e| ResearchError::io(&path, e))?;

    let path = dir.join(RETURNS);
    let file = std::fs::File::create(&path).map_err(|e| ResearchError::io(&path, e))?;
    let mut w = std::io::BufWriter::new(file);
    let io = |e| ResearchError::io(&dir.join(RETURNS), e);
    writeln!(w, "point,date,return").map_err(io)?;
    for r in &table.rows {
        for (day, ret) in &r.daily {
            writeln!(w, "{},{},{}", r.id, day_text(*day), ret).map_err(io)?;
        }
    }
    w.flush().map_err(io)?;

    let path = dir.join(MANIFEST);
    let text = serde_json::to_string_pretty(&table.manifest).map_err(|e| ResearchError::io(&path, e))?;
    std::fs::write(&path, text + "\n").map_err(|e| ResearchError::io(&path, e))
}

/// Reads what [`write_raw`] wrote.
///
/// # Errors
/// Missing or malformed files.
pub fn read_raw(dir: &Path) -> Result<Table, ResearchError> {
    let path = dir.join(MANIFEST);
    let text = std::fs::read_to_string(&path).map_err(|e| ResearchError::io(&path, e))?;
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| ResearchError::io(&path, e))?;
    let path = dir.join(RESULTS);
    let mut r = csv::Reader::from_path(&path).map_err(csv_err(&path))?;
    let header: Vec<String> = r.headers().map_err(csv_err(&path))?.iter().map(str::to_string).collect();
    let np = manifest.params.len();
    if header.first().map(String::as_str) != Some("point") || header.get(1..=np) != Some(&manifest.params[..]) {
        return Err(ResearchError::io(&path, "header does not match sweep.json (point, then the parameters)"));
    }
    let mut rows = Vec::new();
    for (line, rec) in r.records().enumerate() {
        let rec = rec.map_err(csv_err(&path))?;
        let bad = || ResearchError::io(&path, format!("row {}: malformed", line + 2));
        let id: usize = rec.get(0).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
        let params: Vec<String> = (1..=np).map(|i| rec.get(i).unwrap_or_default().to_string()).collect();
        let metrics = header
            .iter()
            .enumerate()
            .skip(np + 1)
            .filter_map(|(i, h)| rec.get(i).filter(|v| !v.is_empty()).map(|v| (h.clone(), v.to_string())))
            .collect();
        rows.push(Row { id, params, metrics, daily: Vec::new() });
    }
    let path = dir.join(RETURNS);
    let text = std::fs::read_to_string(&path).map_err(|e| ResearchError::io(&path, e))?;
    let index: BTreeMap<usize, usize> = rows.iter().enumerate().map(|(i, r)| (r.id, i)).collect();
    for (n, line) in text.lines().enumerate().skip(1) {
        let bad = || ResearchError::io(&path, format!("line {}: expected point,YYYY-MM-DD,return", n + 1));
        let mut it = line.split(',');
        let id: usize = it.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
        let day = it.next().and_then(parse_day).ok_or_else(bad)?;
        let ret: f64 = it.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
        let row = index.get(&id).and_then(|i| rows.get_mut(*i)).ok_or_else(bad)?;
        row.daily.push((day, ret));
    }
    Ok(Table { manifest, rows })
}

/// Writes `text` to `dir/name`.
///
/// # Errors
/// The file cannot be written.
pub fn write_text(dir: &Path, name: &str, text: &str) -> Result<(), ResearchError> {
    let path = dir.join(name);
    std::fs::write(&path, text).map_err(|e| ResearchError::io(&path, e))
}

/// The base config (TOML) with `overrides` applied, each value typed like the value it
/// replaces (a float key keeps a float even when the sweep wrote `2`): a config file
/// `kinetic --config` reads as is.
///
/// # Errors
/// The base is not TOML or a key is not in it.
pub fn config_with(base: &str, overrides: &[(&str, &str)]) -> Result<String, ResearchError> {
    let mut doc: toml::Table = toml::from_str(base).map_err(|e| ResearchError::Data(format!("base config: {e}")))?;
    for (key, value) in overrides {
        let mut parts: Vec<&str> = key.split('.').collect();
        let last = parts.pop().unwrap_or_default();
        let mut table = &mut doc;
        for p in parts {
            table = match table.get_mut(p) {
                Some(toml::Value::Table(t)) => t,
                _ => return Err(ResearchError::invalid(key, value, "a key of the base configuration")),
            };
        }
        let typed = match table.get(last) {
            Some(toml::Value::Integer(_)) => value.parse::<i64>().ok().map(toml::Value::Integer),
            Some(toml::Value::Float(_)) => value.parse::<f64>().ok().map(toml::Value::Float),
            Some(toml::Value::Boolean(_)) => value.parse::<bool>().ok().map(toml::Value::Boolean),
            Some(toml::Value::String(_)) => Some(toml::Value::String(value.to_string())),
            _ => None,
        }
        .ok_or_else(|| ResearchError::invalid(key, value, "a scalar key of the base configuration"))?;
        table.insert(last.to_string(), typed);
    }
    toml::to_string_pretty(&doc).map_err(|e| ResearchError::Data(format!("config: {e}")))
}
