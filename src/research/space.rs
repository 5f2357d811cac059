//! The parameter space of a sweep, read from TOML, and the points drawn from it.
//!
//! ```toml
//! method = "grid"            # "grid", "random" or "lhs" (Latin hypercube)
//! samples = 500              # random / lhs: how many points
//! seed = 7                   # random / lhs; `--seed` overrides
//! objective = "sharpe"       # how the best point is chosen: sharpe, sortino, return, calmar
//! min_trades = 30            # a point with fewer trades is never the best
//! pbo_partitions = 16        # CSCV partitions S (even, 2..=24)
//!
//! [params]                   # any scalar config key, by its dotted name
//! "strategy.min_confidence" = [55, 60, 65, 70]
//! "strategy.atr_stop_mult" = { from = 1.0, to = 2.5, step = 0.25 }
//! ```
//!
//! Every parameter is a finite list of values (a range is expanded from `from` to `to`
//! inclusive by `step`). Parameters are ordered by key name (whatever their order in the
//! file). A grid is the cartesian product, the last parameter varying fastest. Random sampling draws each parameter's value uniformly; Latin-hypercube sampling
//! splits each parameter's unit interval into `samples` strata, visits each stratum once in
//! a shuffled order and maps the draw onto the parameter's values. Both use SplitMix64 (a
//! fixed, documented generator), so a space and a seed give the same points on every
//! machine and every build.

use std::fmt;

use crate::research::ResearchError;

/// A grid larger than this is refused (it would not finish; sample it instead).
pub const MAX_POINTS: usize = 1_000_000;

/// One value of a parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Int(v) => write!(f, "{v}"),
            ParamValue::Float(v) => write!(f, "{v}"),
            ParamValue::Bool(v) => write!(f, "{v}"),
            ParamValue::Str(v) => write!(f, "{v}"),
        }
    }
}

/// A parameter and the values it takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// Dotted config key, e.g. `strategy.min_confidence`.
    pub key: String,
    pub values: Vec<ParamValue>,
}

/// How points are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Grid,
    Random,
    Lhs,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Grid => "grid",
            Method::Random => "random",
            Method::Lhs => "lhs",
        }
    }
}

/// What ranks the points when one has to be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objective {
    /// Annualized Sharpe of daily returns.
    Sharpe,
    Sortino,
    /// Total return, percent.
    Return,
    /// Total return / max drawdown.
    Calmar,
}

impl Objective {
    pub const ALLOWED: &'static str = "sharpe, sortino, return or calmar";

    /// Parses a name.
    ///
    /// # Errors
    /// [`ResearchError::Invalid`] naming `key`.
    pub fn parse(key: &str, text: &str) -> Result<Self, ResearchError> {
        match text {
            "sharpe" => Ok(Objective::Sharpe),
            "sortino" => Ok(Objective::Sortino),
            "return" => Ok(Objective::Return),
            "calmar" => Ok(Objective::Calmar),
            other => Err(ResearchError::invalid(key, other, Self::ALLOWED)),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Objective::Sharpe => "sharpe",
            Objective::Sortino => "sortino",
            Objective::Return => "return",
            Objective::Calmar => "calmar",
        }
    }
}

/// A parsed space file.
#[derive(Debug, Clone, PartialEq)]
pub struct Space {
    pub method: Method,
    pub samples: usize,
    pub seed: u64,
    pub objective: Objective,
    pub min_trades: u64,
    pub pbo_partitions: usize,
    pub params: Vec<Param>,
}

/// One point: its number in the sweep and one value per parameter (in [`Space::params`] order).
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub id: usize,
    pub values: Vec<ParamValue>,
}

/// SplitMix64 (Steele, Lea & Flood 2014): tiny, fast, and fixed forever, unlike a library's
/// default generator.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)` (multiply-shift; `n` ≥ 1).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

fn toml_value(key: &str, v: &toml::Value) -> Result<ParamValue, ResearchError> {
    match v {
        toml::Value::Integer(i) => Ok(ParamValue::Int(*i)),
        toml::Value::Float(x) if x.is_finite() => Ok(ParamValue::Float(*x)),
        toml::Value::Boolean(b) => Ok(ParamValue::Bool(*b)),
        toml::Value::String(s) => Ok(ParamValue::Str(s.clone())),
        other => Err(ResearchError::invalid(key, other, "a list of integers, numbers, booleans or strings")),
    }
}

fn number(key: &str, table: &toml::Table, name: &str) -> Result<(f64, bool), ResearchError> {
    match table.get(name) {
        Some(toml::Value::Integer(i)) => Ok((*i as f64, true)),
        Some(toml::Value::Float(x)) if x.is_finite() => Ok((*x, false)),
        Some(other) => Err(ResearchError::invalid(&format!("{key}.{name}"), other, "a finite number")),
        None => Err(ResearchError::invalid(key, "a table without `from`, `to` and `step`", "{ from, to, step }")),
    }
}

/// Expands `{ from, to, step }`; integers stay integers when all three are.
fn range(key: &str, table: &toml::Table) -> Result<Vec<ParamValue>, ResearchError> {
    if let Some(extra) = table.keys().find(|k| !["from", "to", "step"].contains(&k.as_str())) {
        return Err(ResearchError::invalid(&format!("{key}.{extra}"), "unknown key", "from, to, step"));
    }
    let (from, fi) = number(key, table, "from")?;
    let (to, ti) = number(key, table, "to")?;
    let (step, si) = number(key, table, "step")?;
    if step <= 0.0 || to < from {
        return Err(ResearchError::invalid(key, format!("from {from} to {to} step {step}"), "step > 0 and to >= from"));
    }
    let n = ((to - from) / step + 1e-9).floor() + 1.0;
    if n > MAX_POINTS as f64 {
        return Err(ResearchError::invalid(key, format!("{n} values"), &format!("at most {MAX_POINTS} values")));
    }
    let n = n as usize;
    Ok((0..n)
        .map(|i| {
            let x = from + i as f64 * step;
            if fi && ti && si {
                ParamValue::Int(x.round() as i64)
            } else {
                // Ten decimals: 0.1 + 2 × 0.1 is 0.3, not 0.30000000000000004.
                ParamValue::Float((x * 1e10).round() / 1e10)
            }
        })
        .collect())
}

/// Walks `[params]`: a key whose value is a list or a range table is a parameter; other
/// tables are sections (`[params.strategy]` with `min_confidence = [...]` works too).
fn collect(prefix: &str, table: &toml::Table, out: &mut Vec<Param>) -> Result<(), ResearchError> {
    for (k, v) in table {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        match v {
            toml::Value::Array(items) => {
                if items.is_empty() {
                    return Err(ResearchError::invalid(&key, "[]", "at least one value"));
                }
                let values = items.iter().map(|x| toml_value(&key, x)).collect::<Result<Vec<_>, _>>()?;
                out.push(Param { key, values });
            }
            toml::Value::Table(t) if t.contains_key("from") || t.contains_key("step") => {
                out.push(Param { values: range(&key, t)?, key });
            }
            toml::Value::Table(t) => collect(&key, t, out)?,
            other => {
                return Err(ResearchError::invalid(&key, other, "a list [a, b, ...] or a range { from, to, step }"));
            }
        }
    }
    Ok(())
}

fn get_int(t: &toml::Table, key: &str, default: i64, lo: i64, hi: i64) -> Result<i64, ResearchError> {
    match t.get(key) {
        None => Ok(default),
        Some(toml::Value::Integer(i)) if (lo..=hi).contains(i) => Ok(*i),
        Some(other) => Err(ResearchError::invalid(key, other, &format!("an integer in [{lo}, {hi}]"))),
    }
}

impl Space {
    /// Parses a space file's text.
    ///
    /// # Errors
    /// [`ResearchError::Invalid`] naming the key, its value and what is allowed.
    pub fn parse(text: &str) -> Result<Space, ResearchError> {
        let doc: toml::Table =
            toml::from_str(text).map_err(|e| ResearchError::invalid("space", e.message(), "a TOML document"))?;
        const KNOWN: [&str; 7] = ["method", "samples", "seed", "objective", "min_trades", "pbo_partitions", "params"];
        if let Some(k) = doc.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(ResearchError::invalid(k, "unknown key", &KNOWN.join(", ")));
        }
        let method = match doc.get("method") {
            None => Method::Grid,
            Some(toml::Value::String(s)) if s == "grid" => Method::Grid,
            Some(toml::Value::String(s)) if s == "random" => Method::Random,
            Some(toml::Value::String(s)) if s == "lhs" => Method::Lhs,
            Some(other) => return Err(ResearchError::invalid("method", other, "\"grid\", \"random\" or \"lhs\"")),
        };
        let samples = get_int(&doc, "samples", 100, 1, MAX_POINTS as i64)? as usize;
        let seed = match doc.get("seed") {
            None => 0,
            Some(toml::Value::Integer(i)) if *i >= 0 => *i as u64,
            Some(other) => return Err(ResearchError::invalid("seed", other, "an integer >= 0")),
        };
        let objective = match doc.get("objective") {
            None => Objective::Sharpe,
            Some(toml::Value::String(s)) => Objective::parse("objective", s)?,
            Some(other) => return Err(ResearchError::invalid("objective", other, Objective::ALLOWED)),
        };
        let min_trades = get_int(&doc, "min_trades", 0, 0, i64::MAX)? as u64;
        let pbo_partitions = get_int(&doc, "pbo_partitions", 16, 2, 24)? as usize;
        if !pbo_partitions.is_multiple_of(2) {
            return Err(ResearchError::invalid("pbo_partitions", pbo_partitions, "an even integer in [2, 24]"));
        }
        let mut params = Vec::new();
        match doc.get("params") {
            Some(toml::Value::Table(t)) => collect("", t, &mut params)?,
            Some(other) => return Err(ResearchError::invalid("params", other, "a table of config keys")),
            None => {}
        }
        if params.is_empty() {
            return Err(ResearchError::invalid("params", "no parameter", "at least one config key with its values"));
        }
        if method == Method::Grid {
            let n = params.iter().try_fold(1usize, |acc, p| acc.checked_mul(p.values.len()));
            match n {
                Some(n) if n <= MAX_POINTS => {}
                _ => {
                    return Err(ResearchError::invalid(
                        "params",
                        "a grid of more than a million points",
                        "a smaller grid, or method = \"random\" / \"lhs\" with samples",
                    ));
                }
            }
        }
        Ok(Space { method, samples, seed, objective, min_trades, pbo_partitions, params })
    }

    /// Every point of the sweep, numbered from 0, for `seed` (random and LHS only).
    pub fn points(&self, seed: u64) -> Vec<Point> {
        let values = |choice: &[usize]| -> Vec<ParamValue> {
            self.params.iter().zip(choice).filter_map(|(p, &i)| p.values.get(i).cloned()).collect()
        };
        match self.method {
            Method::Grid => {
                let total: usize = self.params.iter().map(|p| p.values.len()).product();
                let mut choice = vec![0usize; self.params.len()];
                (0..total)
                    .map(|id| {
                        let mut rest = id;
                        for (slot, p) in choice.iter_mut().zip(&self.params).rev() {
                            *slot = rest % p.values.len();
                            rest /= p.values.len();
                        }
                        Point { id, values: values(&choice) }
                    })
                    .collect()
            }
            Method::Random => {
                let mut rng = SplitMix64::new(seed);
                (0..self.samples)
                    .map(|id| {
                        let choice: Vec<usize> = self.params.iter().map(|p| rng.below(p.values.len())).collect();
                        Point { id, values: values(&choice) }
                    })
                    .collect()
            }
            Method::Lhs => {
                let mut rng = SplitMix64::new(seed);
                let n = self.samples;
                // Column per parameter: stratum order, then a draw inside each stratum.
                let columns: Vec<Vec<usize>> = self
                    .params
                    .iter()
                    .map(|p| {
                        let mut strata: Vec<usize> = (0..n).collect();
                        rng.shuffle(&mut strata);
                        strata
                            .into_iter()
                            .map(|s| {
                                let u = (s as f64 + rng.unit()) / n as f64;
                                ((u * p.values.len() as f64) as usize).min(p.values.len() - 1)
                            })
                            .collect()
                    })
                    .collect();
                (0..n)
                    .map(|id| {
                        let choice: Vec<usize> = columns.iter().map(|c| c.get(id).copied().unwrap_or(0)).collect();
                        Point { id, values: values(&choice) }
                    })
                    .collect()
            }
        }
    }
}

/// `--shard I/N`: the I-th (from 0) of N disjoint slices; point `id` belongs to shard
/// `id mod N` (round robin, so slow regions of a grid spread over the shards).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Parses `I/N` with 0 ≤ I < N.
    ///
    /// # Errors
    /// [`ResearchError::Invalid`] naming `--shard`.
    pub fn parse(text: &str) -> Result<Shard, ResearchError> {
        let allowed = "I/N with integers 0 <= I < N (e.g. 0/4; the index counts from 0)";
        let (i, n) = text.split_once('/').ok_or_else(|| ResearchError::invalid("--shard", text, allowed))?;
        let index: usize = i.trim().parse().map_err(|_| ResearchError::invalid("--shard", text, allowed))?;
        let count: usize = n.trim().parse().map_err(|_| ResearchError::invalid("--shard", text, allowed))?;
        if count == 0 || index >= count {
            return Err(ResearchError::invalid("--shard", text, allowed));
        }
        Ok(Shard { index, count })
    }

    pub fn contains(self, id: usize) -> bool {
        id % self.count == self.index
    }

    pub fn is_all(self) -> bool {
        self.count == 1
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn ranges_lists_and_grid_order() {
        let s = Space::parse(
            "[params]\n\"strategy.min_confidence\" = [55, 60]\n\"strategy.trail_pct\" = { from = 0.1, to = 0.3, step = 0.1 }\n",
        )
        .unwrap();
        // Parameters in key order, the last varying fastest.
        assert_eq!(s.params[0].key, "strategy.min_confidence");
        assert_eq!(s.params[1].key, "strategy.trail_pct");
        assert_eq!(s.params[1].values, vec![ParamValue::Float(0.1), ParamValue::Float(0.2), ParamValue::Float(0.3)]);
        let pts = s.points(0);
        assert_eq!(pts.len(), 6);
        assert_eq!(pts[1].values, vec![ParamValue::Int(55), ParamValue::Float(0.2)]);
        assert_eq!(pts[3].values, vec![ParamValue::Int(60), ParamValue::Float(0.1)]);
        let ints = Space::parse("[params.risk]\nmax_open_positions = { from = 1, to = 7, step = 2 }\n").unwrap();
        assert_eq!(ints.params[0].key, "risk.max_open_positions");
        assert_eq!(ints.params[0].values.len(), 4);
        assert_eq!(ints.params[0].values[3], ParamValue::Int(7));
    }

    #[test]
    fn lhs_visits_every_stratum_and_is_seeded() {
        let text =
            "method = \"lhs\"\nsamples = 10\n[params]\n\"a.b\" = { from = 0, to = 9, step = 1 }\n\"a.c\" = [1, 2]\n";
        let s = Space::parse(text).unwrap();
        let p = s.points(3);
        let mut firsts: Vec<i64> =
            p.iter().map(|pt| if let ParamValue::Int(v) = pt.values[0] { v } else { -1 }).collect();
        firsts.sort_unstable();
        assert_eq!(firsts, (0..10).collect::<Vec<_>>(), "10 strata over 10 values: each exactly once");
        assert_eq!(p, s.points(3));
        assert_ne!(p, s.points(4));
    }

    #[test]
    fn bad_spaces_name_the_key() {
        let e = Space::parse("method = \"sobol\"\n[params]\n\"a.b\" = [1]\n").unwrap_err().to_string();
        assert!(e.contains("method") && e.contains("lhs"), "{e}");
        let e = Space::parse("[params]\n\"a.b\" = { from = 2, to = 1, step = 1 }\n").unwrap_err().to_string();
        assert!(e.contains("a.b"), "{e}");
        let e = Space::parse("pbo_partitions = 5\n[params]\n\"a.b\" = [1]\n").unwrap_err().to_string();
        assert!(e.contains("pbo_partitions") && e.contains("even"), "{e}");
        assert!(Shard::parse("4/4").is_err() && Shard::parse("x").is_err());
        let sh = Shard::parse("1/3").unwrap();
        assert!(sh.contains(4) && !sh.contains(3));
    }
}
