//! `kinetic check-lookahead`: does the analysis at a moment use anything after it?
//!
//! 1. **Cut-data check** (freqtrade's lookahead-analysis idea): the analysis runs once over
//!    the whole data, recording indicators, score and signal of a symbol at every 15m close;
//!    at sampled moments (signals first) it is run again on the data cut at that candle
//!    (only candles closed by then, on every timeframe). Anything different means the
//!    full-data run knew something from after the moment. The production analysis is the
//!    backtest engine itself ([`ReplayAnalysis`]: its feed, batching and the trading core's
//!    analyzers), so the check covers the replay path, not a copy of it.
//! 2. **Warm-up check**: at the same moments, a fresh analyzer fed only the last 150, 300 and
//!    1000 candles of each timeframe must agree with the full-history values within
//!    [`Tolerance`] (the EMAs, RSI, MACD and ATR are recursive, so a short history gives
//!    slightly different values; the score's points, side and signal must then be identical).

use serde::Serialize;

use crate::analyzer::SymbolAnalyzer;
use crate::analyzer::scoring::Score;
use crate::backtest::{self, SymbolCandles, SymbolExtras};
use crate::config::Settings;
use crate::core::models::{Candle, Direction, Indicators, Timeframe, TimeframeIndicators, TimestampMs};
use crate::research::ResearchError;
use crate::research::space::SplitMix64;

/// What the analysis said about a symbol at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub time: TimestampMs,
    pub indicators: TimeframeIndicators,
    pub score: Score,
    /// Score ≥ `strategy.min_confidence`: the analyzer would hand a signal to the core.
    pub signal: bool,
    pub direction: Direction,
}

fn snapshot(a: &SymbolAnalyzer, time: TimestampMs, settings: &Settings) -> Option<Snapshot> {
    let indicators = a.indicators()?;
    let score = a.score(&settings.strategy)?;
    Some(Snapshot {
        time,
        indicators,
        signal: score.total >= settings.strategy.min_confidence,
        direction: score.direction,
        score,
    })
}

/// An analysis under test: snapshots of `data` at each of `times` (15m close times).
pub trait Analysis: Sync {
    /// # Errors
    /// The analysis could not run.
    fn snapshots(
        &self,
        data: &SymbolCandles,
        times: &[TimestampMs],
        settings: &Settings,
    ) -> Result<Vec<Option<Snapshot>>, ResearchError>;
}

/// The backtest engine's own analysis: a replay of the symbol through the engine, read from
/// the trading core's analyzer after each close time is processed.
pub struct ReplayAnalysis;

impl Analysis for ReplayAnalysis {
    fn snapshots(
        &self,
        data: &SymbolCandles,
        times: &[TimestampMs],
        settings: &Settings,
    ) -> Result<Vec<Option<Snapshot>>, ResearchError> {
        let extras = [SymbolExtras {
            funding: None,
            funding_interval_ms: backtest::sim::FUNDING_INTERVAL_MS,
            first_price: None,
        }];
        let (mut feed, mut engine) =
            backtest::prepare_shared(settings, std::slice::from_ref(data), &extras, None, None)?;
        let mut out = vec![None; times.len()];
        let symbol = data.symbol.clone();
        backtest::run_feed_observed(&mut feed, &mut engine, &mut |_| {}, &mut |e, t| {
            if let Ok(i) = times.binary_search(&t)
                && let Some(slot) = out.get_mut(i)
                && let Some(a) = e.market().core().manager().analyzer(&symbol)
            {
                *slot = snapshot(a, t, settings);
            }
        })?;
        Ok(out)
    }
}

/// The candles of `data` closed at or before `t`.
pub fn cut(data: &SymbolCandles, t: TimestampMs) -> SymbolCandles {
    let upto = |c: &[Candle]| -> std::sync::Arc<[Candle]> {
        let n = c.partition_point(|x| x.close_time <= t);
        c.get(..n).unwrap_or(&[]).into()
    };
    SymbolCandles { symbol: data.symbol.clone(), m15: upto(&data.m15), h1: upto(&data.h1), h4: upto(&data.h4) }
}

/// Allowed difference between a short-history and a full-history indicator.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tolerance {
    /// EMA, MACD line/signal/histogram, ATR: |Δ| ≤ this × the candle's close.
    pub price_relative: f64,
    /// RSI: |Δ| ≤ this many points.
    pub rsi_points: f64,
    /// Volume ratio (a plain 20-candle mean, no recursion): relative.
    pub volume_ratio_relative: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance { price_relative: 1e-4, rsi_points: 0.05, volume_ratio_relative: 1e-9 }
    }
}

/// Worst deviation seen with one history length.
#[derive(Debug, Clone, Serialize)]
pub struct WarmupResult {
    pub candles: usize,
    pub max_price_relative: f64,
    pub max_rsi_points: f64,
    pub max_volume_ratio_relative: f64,
    pub score_mismatches: usize,
    pub checked: usize,
    pub within_tolerance: bool,
}

/// A moment where the cut-data run differs.
#[derive(Debug, Clone, Serialize)]
pub struct Mismatch {
    pub symbol: String,
    pub time: String,
    pub what: String,
}

/// The check's findings.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub symbols: Vec<String>,
    pub moments_checked: usize,
    pub signal_moments: usize,
    pub lookahead_mismatches: Vec<Mismatch>,
    pub tolerance: Tolerance,
    pub warmup: Vec<WarmupResult>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.lookahead_mismatches.is_empty() && self.warmup.iter().all(|w| w.within_tolerance)
    }
}

fn diff(a: &Indicators, b: &Indicators, close: f64) -> (f64, f64, f64) {
    let scale = close.abs().max(f64::MIN_POSITIVE);
    let price = [
        (a.ema_9, b.ema_9),
        (a.ema_21, b.ema_21),
        (a.macd_line, b.macd_line),
        (a.macd_signal, b.macd_signal),
        (a.macd_histogram, b.macd_histogram),
        (a.atr, b.atr),
    ]
    .iter()
    .map(|(x, y)| (x - y).abs() / scale)
    .fold(0.0, f64::max);
    let vr = (a.volume_ratio - b.volume_ratio).abs() / a.volume_ratio.abs().max(1e-12);
    (price, (a.rsi - b.rsi).abs(), vr)
}

fn describe(a: &Snapshot, b: &Snapshot) -> String {
    if a.signal != b.signal || a.direction != b.direction {
        return format!(
            "signal {}/{:?} with all data vs {}/{:?} on data cut there",
            a.signal, a.direction, b.signal, b.direction
        );
    }
    if a.score != b.score {
        return format!("score {} with all data vs {} on data cut there", a.score.total, b.score.total);
    }
    format!("indicators differ: {:?} vs {:?}", a.indicators, b.indicators)
}

/// What the score decides: total, side and each component's points (the reasons carry the
/// indicator values, compared separately within tolerance).
fn points(s: &Score) -> (u8, Direction, [u8; 6]) {
    (s.total, s.direction, s.components.map(|c| c.points))
}

/// The last `k` candles of each timeframe closed by `t`, fed into a fresh analyzer.
fn warm(data: &SymbolCandles, t: TimestampMs, k: usize) -> SymbolAnalyzer {
    let mut a = SymbolAnalyzer::new();
    for (tf, c) in [(Timeframe::H4, &data.h4), (Timeframe::H1, &data.h1), (Timeframe::M15, &data.m15)] {
        let n = c.partition_point(|x| x.close_time <= t);
        for candle in c.get(n.saturating_sub(k)..n).unwrap_or(&[]) {
            a.on_closed_candle(tf, candle);
        }
    }
    a
}

/// Runs both checks on every symbol of `data`: up to `samples` moments per symbol (signal
/// moments first, drawn with `seed`). A history length is compared only at moments where
/// every timeframe has more candles than it (elsewhere both runs see the same candles).
///
/// # Errors
/// The analysis failed to run.
pub fn check(
    analysis: &dyn Analysis,
    data: &[SymbolCandles],
    settings: &Settings,
    samples: usize,
    seed: u64,
    histories: &[usize],
    tol: Tolerance,
) -> Result<Report, ResearchError> {
    let mut rng = SplitMix64::new(seed);
    let mut mismatches = Vec::new();
    let mut moments = 0;
    let mut signals = 0;
    let mut warm_acc: Vec<WarmupResult> = histories
        .iter()
        .map(|&k| WarmupResult {
            candles: k,
            max_price_relative: 0.0,
            max_rsi_points: 0.0,
            max_volume_ratio_relative: 0.0,
            score_mismatches: 0,
            checked: 0,
            within_tolerance: true,
        })
        .collect();
    for d in data {
        let times: Vec<TimestampMs> = d.m15.iter().map(|c| c.close_time).collect();
        let full = analysis.snapshots(d, &times, settings)?;
        let mut sig: Vec<usize> =
            (0..times.len()).filter(|i| full.get(*i).is_some_and(|s| s.as_ref().is_some_and(|s| s.signal))).collect();
        let mut rest: Vec<usize> =
            (0..times.len()).filter(|i| full.get(*i).is_some_and(|s| s.as_ref().is_some_and(|s| !s.signal))).collect();
        rng.shuffle(&mut sig);
        rng.shuffle(&mut rest);
        let take_sig = sig.len().min(samples);
        let mut chosen: Vec<usize> = sig.into_iter().take(take_sig).collect();
        chosen.extend(rest.into_iter().take(samples - take_sig));
        chosen.sort_unstable();
        signals += take_sig;
        for i in chosen {
            let (Some(&t), Some(Some(f))) = (times.get(i), full.get(i)) else { continue };
            moments += 1;
            let c = analysis.snapshots(&cut(d, t), &[t], settings)?.into_iter().next().flatten();
            match c {
                Some(c) if c == *f => {}
                Some(c) => mismatches.push(Mismatch {
                    symbol: d.symbol.clone(),
                    time: backtest::metrics::iso(t),
                    what: describe(f, &c),
                }),
                None => mismatches.push(Mismatch {
                    symbol: d.symbol.clone(),
                    time: backtest::metrics::iso(t),
                    what: "no analysis on the data cut there (the full-data run had one)".into(),
                }),
            }
            let close = d
                .m15
                .get(d.m15.partition_point(|x| x.close_time <= t).saturating_sub(1))
                .map(|x| x.close)
                .unwrap_or(1.0);
            for w in &mut warm_acc {
                // Only meaningful where every timeframe has a longer history than `candles`.
                let longer =
                    [&d.h4, &d.h1, &d.m15].iter().all(|c| c.partition_point(|x| x.close_time <= t) > w.candles);
                if !longer {
                    continue;
                }
                let a = warm(d, t, w.candles);
                w.checked += 1;
                let (Some(ind), Some(score)) = (a.indicators(), a.score(&settings.strategy)) else {
                    w.score_mismatches += 1;
                    continue;
                };
                for (x, y) in [(&ind.h4, &f.indicators.h4), (&ind.h1, &f.indicators.h1), (&ind.m15, &f.indicators.m15)]
                {
                    let (p, r, v) = diff(x, y, close);
                    w.max_price_relative = w.max_price_relative.max(p);
                    w.max_rsi_points = w.max_rsi_points.max(r);
                    w.max_volume_ratio_relative = w.max_volume_ratio_relative.max(v);
                }
                w.score_mismatches += usize::from(points(&score) != points(&f.score));
            }
        }
    }
    for w in &mut warm_acc {
        w.within_tolerance = w.max_price_relative <= tol.price_relative
            && w.max_rsi_points <= tol.rsi_points
            && w.max_volume_ratio_relative <= tol.volume_ratio_relative
            && w.score_mismatches == 0;
    }
    Ok(Report {
        symbols: data.iter().map(|d| d.symbol.clone()).collect(),
        moments_checked: moments,
        signal_moments: signals,
        lookahead_mismatches: mismatches,
        tolerance: tol,
        warmup: warm_acc,
    })
}

/// The report as text, one verdict per line.
pub fn text(r: &Report) -> String {
    let mut out = format!(
        "look-ahead check: {} moments over {} ({} of them signals)\n",
        r.moments_checked,
        r.symbols.join(", "),
        r.signal_moments
    );
    if r.lookahead_mismatches.is_empty() {
        out.push_str("- cut data: indicators, score and signal identical at every moment: no look-ahead found\n");
    } else {
        out.push_str(&format!("- cut data: LOOK-AHEAD at {} moments, e.g.:\n", r.lookahead_mismatches.len()));
        for m in r.lookahead_mismatches.iter().take(10) {
            out.push_str(&format!("    {} {}: {}\n", m.symbol, m.time, m.what));
        }
    }
    for w in &r.warmup {
        out.push_str(&format!(
            "- warm-up {} candles: max |Δ| {:.2e} × close (EMA/MACD/ATR, tolerance {:.0e}), {:.4} RSI points (tolerance {}), volume ratio {:.1e}; {} of {} scores differ: {}\n",
            w.candles,
            w.max_price_relative,
            r.tolerance.price_relative,
            w.max_rsi_points,
            r.tolerance.rsi_points,
            w.max_volume_ratio_relative,
            w.score_mismatches,
            w.checked,
            if w.checked == 0 {
                "not applicable (no moment with a longer history on every timeframe)"
            } else if w.within_tolerance {
                "within tolerance"
            } else {
                "OUTSIDE tolerance"
            }
        ));
    }
    out
}
