//! Indicators in two forms that agree: incremental (one O(1) update per closed candle, no
//! allocation, for live and backtest) and batch over a slice (for `analyze`, tests and
//! cross-checks). EMA, RSI (Wilder), MACD, ATR (Wilder) and the volume ratio.
//!
//! Owns only the maths. It must not read clocks, do I/O or know about symbols or timeframes.
//!
//! Conventions (the batch and incremental forms follow the same ones):
//! - EMA(n): `None` until `n` values; seeded with the simple mean of the first `n` values, then
//!   `ema = α·x + (1 − α)·ema` with `α = 2 / (n + 1)` (the textbook definition).
//! - RSI(n), Wilder: needs `n + 1` closes. The first average gain/loss is the mean of the first
//!   `n` changes, then `avg = avg·(n − 1)/n + current/n`. RSI = 100·gain / (gain + loss); a
//!   perfectly flat series (no gains, no losses) reads 50.
//! - MACD(12, 26, 9): line = EMA12 − EMA26 (from the 26th close), signal = EMA9 of the line
//!   (from the 34th close), histogram = line − signal. Values are reported once all three exist.
//! - ATR(n), Wilder: true range of the first candle is `high − low` (no previous close); the
//!   first ATR is the mean of the first `n` true ranges, then Wilder smoothing.
//! - Volume ratio(L): last volume / mean of the `L` volumes before it; needs `L + 1` candles.
//!   A zero mean gives 0 when the last volume is 0 too, else [`VOLUME_RATIO_CAP`].
//!
//! Robustness: non-finite inputs are skipped (the state does not change), every output is
//! finite, and the arithmetic is arranged (running means, corrections `prev + α·(x − prev)`) so
//! positive values up to `f64::MAX` cannot overflow and a constant input is reproduced
//! exactly; if an update would still produce a non-finite value, the previous value is kept.

/// Upper bound of the volume ratio (a spike from zero volume would otherwise be infinite).
pub const VOLUME_RATIO_CAP: f64 = 1.0e6;

/// Replaces a non-finite `v` with `fallback`.
#[inline]
fn finite_or(v: f64, fallback: f64) -> f64 {
    if v.is_finite() { v } else { fallback }
}

/// `prev + (x − prev)·inv_k` with `inv_k = 1/k`, i.e. `prev·(k−1)/k + x/k`: a running mean /
/// Wilder step. Written as a correction of `prev` so a constant input is reproduced exactly (a
/// flat market gives EMA12 = EMA26 and a MACD of exactly 0, not rounding noise that could read
/// as a cross). Same-signed values cannot overflow; should `x − prev` overflow, the previous
/// value is kept. Takes the reciprocal so the steady state multiplies instead of dividing.
#[inline]
fn blend(prev: f64, x: f64, inv_k: f64) -> f64 {
    finite_or(prev + (x - prev) * inv_k, prev)
}

/// `1/k`, the weight of the newest value in a running mean of `k` values.
#[inline]
fn inv(k: usize) -> f64 {
    1.0 / k as f64
}

/// One EMA step `α·x + (1 − α)·prev`, in the same exact-for-constants correction form.
#[inline]
fn ema_step(prev: f64, x: f64, alpha: f64) -> f64 {
    finite_or(prev + alpha * (x - prev), prev)
}

/// RSI from average gain and loss (halved first so their sum cannot overflow).
#[inline]
fn rsi_from(avg_gain: f64, avg_loss: f64) -> f64 {
    let (g, l) = (avg_gain * 0.5, avg_loss * 0.5);
    let sum = g + l;
    if sum <= 0.0 || !sum.is_finite() {
        return 50.0;
    }
    finite_or(100.0 * (g / sum), 50.0).clamp(0.0, 100.0)
}

/// True range with an optional previous close.
#[inline]
fn true_range(high: f64, low: f64, prev_close: Option<f64>) -> f64 {
    let hl = high - low;
    let tr = match prev_close {
        None => hl,
        Some(pc) => hl.max((high - pc).abs()).max((low - pc).abs()),
    };
    finite_or(tr, 0.0).max(0.0)
}

/// Incremental exponential moving average.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ema {
    period: usize,
    alpha: f64,
    count: usize,
    value: f64,
}

impl Ema {
    /// EMA over `period` values (a period of 0 is treated as 1).
    pub fn new(period: usize) -> Self {
        let period = period.max(1);
        Ema { period, alpha: 2.0 / (period as f64 + 1.0), count: 0, value: 0.0 }
    }

    /// Adds one value; returns the EMA once `period` values were seen.
    #[inline]
    pub fn update(&mut self, x: f64) -> Option<f64> {
        if x.is_finite() {
            if self.count < self.period {
                self.count += 1;
                self.value = blend(self.value, x, inv(self.count));
            } else {
                self.value = ema_step(self.value, x, self.alpha);
            }
        }
        self.value()
    }

    pub fn value(&self) -> Option<f64> {
        (self.count >= self.period).then_some(self.value)
    }
}

/// Incremental RSI with Wilder smoothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rsi {
    period: usize,
    inv_period: f64,
    prev_close: Option<f64>,
    changes: usize,
    avg_gain: f64,
    avg_loss: f64,
}

impl Rsi {
    pub fn new(period: usize) -> Self {
        let period = period.max(1);
        Rsi { period, inv_period: inv(period), prev_close: None, changes: 0, avg_gain: 0.0, avg_loss: 0.0 }
    }

    /// Adds one close; returns the RSI once `period + 1` closes were seen.
    #[inline]
    pub fn update(&mut self, close: f64) -> Option<f64> {
        if !close.is_finite() {
            return self.value();
        }
        let prev = self.prev_close.replace(close)?;
        let change = finite_or(close - prev, 0.0);
        let (gain, loss) = (change.max(0.0), (-change).max(0.0));
        let inv_k = if self.changes < self.period {
            self.changes += 1;
            inv(self.changes)
        } else {
            self.inv_period
        };
        self.avg_gain = blend(self.avg_gain, gain, inv_k);
        self.avg_loss = blend(self.avg_loss, loss, inv_k);
        self.value()
    }

    pub fn value(&self) -> Option<f64> {
        (self.changes >= self.period).then(|| rsi_from(self.avg_gain, self.avg_loss))
    }
}

/// One MACD reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MacdValue {
    pub line: f64,
    pub signal: f64,
    pub histogram: f64,
}

/// Incremental MACD.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Macd {
    fast: Ema,
    slow: Ema,
    signal: Ema,
    last: Option<MacdValue>,
}

impl Macd {
    pub fn new(fast: usize, slow: usize, signal: usize) -> Self {
        Macd { fast: Ema::new(fast), slow: Ema::new(slow), signal: Ema::new(signal), last: None }
    }

    /// The standard MACD(12, 26, 9).
    pub fn standard() -> Self {
        Macd::new(12, 26, 9)
    }

    /// Adds one close; returns line, signal and histogram once all three exist.
    #[inline]
    pub fn update(&mut self, close: f64) -> Option<MacdValue> {
        if !close.is_finite() {
            return self.last;
        }
        let fast = self.fast.update(close);
        let slow = self.slow.update(close);
        if let (Some(f), Some(s)) = (fast, slow) {
            let line = finite_or(f - s, 0.0);
            if let Some(signal) = self.signal.update(line) {
                let histogram = finite_or(line - signal, 0.0);
                self.last = Some(MacdValue { line, signal, histogram });
            }
        }
        self.last
    }

    pub fn value(&self) -> Option<MacdValue> {
        self.last
    }
}

/// Incremental ATR with Wilder smoothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Atr {
    period: usize,
    inv_period: f64,
    prev_close: Option<f64>,
    count: usize,
    value: f64,
}

impl Atr {
    pub fn new(period: usize) -> Self {
        let period = period.max(1);
        Atr { period, inv_period: inv(period), prev_close: None, count: 0, value: 0.0 }
    }

    /// Adds one candle; returns the ATR once `period` candles were seen.
    #[inline]
    pub fn update(&mut self, high: f64, low: f64, close: f64) -> Option<f64> {
        if !(high.is_finite() && low.is_finite() && close.is_finite()) {
            return self.value();
        }
        let tr = true_range(high, low, self.prev_close);
        self.prev_close = Some(close);
        let inv_k = if self.count < self.period {
            self.count += 1;
            inv(self.count)
        } else {
            self.inv_period
        };
        self.value = blend(self.value, tr, inv_k);
        self.value()
    }

    pub fn value(&self) -> Option<f64> {
        (self.count >= self.period).then_some(self.value)
    }
}

/// Largest lookback the volume ratio supports (matches `scanner.volume_lookback`'s range).
pub const MAX_VOLUME_LOOKBACK: usize = 500;

/// Incremental volume ratio: last volume / mean of the `lookback` volumes before it.
///
/// Keeps a ring of `lookback + 1` volumes, allocated once in [`VolumeRatio::new`]. Reading the
/// ratio re-sums the ring (a constant `lookback` additions, oldest first) so it agrees exactly
/// with the batch form; [`VolumeRatio::push`] only stores.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeRatio {
    lookback: usize,
    ring: Vec<f64>,
    head: usize,
    len: usize,
}

impl VolumeRatio {
    /// `lookback` is clamped to `1..=MAX_VOLUME_LOOKBACK`.
    pub fn new(lookback: usize) -> Self {
        let lookback = lookback.clamp(1, MAX_VOLUME_LOOKBACK);
        VolumeRatio { lookback, ring: vec![0.0; lookback + 1], head: 0, len: 0 }
    }

    /// Adds one volume; returns the ratio once `lookback + 1` volumes were seen.
    #[inline]
    pub fn update(&mut self, volume: f64) -> Option<f64> {
        self.push(volume);
        self.value()
    }

    /// Adds one volume without computing the ratio (the per-candle hot path: the ratio is
    /// only read when scoring). Non-finite volumes are skipped.
    #[inline]
    pub fn push(&mut self, volume: f64) {
        if volume.is_finite() {
            let cap = self.ring.len();
            if let Some(slot) = self.ring.get_mut(self.head) {
                *slot = volume;
            }
            self.head += 1;
            if self.head == cap {
                self.head = 0;
            }
            self.len = (self.len + 1).min(cap);
        }
    }

    pub fn value(&self) -> Option<f64> {
        if self.len < self.ring.len() {
            return None;
        }
        // Full ring: `head` is the oldest slot and the slot before it the newest. Oldest first,
        // like the batch form: ring[head..], then ring[..head] (whose last is the newest).
        let (older, from_head) = self.ring.split_at_checked(self.head)?;
        // Drop the newest from whichever part ends with it (`older`, unless `head` is 0).
        let (&last, from_head, older) = match older.split_last() {
            Some((last, rest)) => (last, from_head, rest),
            None => {
                let (last, rest) = from_head.split_last()?;
                (last, rest, older)
            }
        };
        let inv_n = inv(self.lookback);
        let mean = older.iter().fold(from_head.iter().fold(0.0, |m, v| m + v * inv_n), |m, v| m + v * inv_n);
        Some(ratio(last, mean))
    }
}

/// `last / mean`, finite and capped.
#[inline]
fn ratio(last: f64, mean: f64) -> f64 {
    if mean <= 0.0 || !mean.is_finite() {
        return if last > 0.0 { VOLUME_RATIO_CAP } else { 0.0 };
    }
    finite_or(last / mean, VOLUME_RATIO_CAP).clamp(0.0, VOLUME_RATIO_CAP)
}

// ---------------------------------------------------------------------------------------
// Batch forms: one output per input, `None` during warm-up. Non-finite inputs repeat the
// previous output, exactly as the incremental forms skip them.
// ---------------------------------------------------------------------------------------

/// EMA over a slice.
pub fn ema_series(values: &[f64], period: usize) -> Vec<Option<f64>> {
    let period = period.max(1);
    let alpha = 2.0 / (period as f64 + 1.0);
    let mut out = Vec::with_capacity(values.len());
    let mut seed = Vec::with_capacity(period);
    let mut current: Option<f64> = None;
    for &x in values {
        if x.is_finite() {
            current = match current {
                Some(prev) => Some(ema_step(prev, x, alpha)),
                None => {
                    seed.push(x);
                    (seed.len() == period).then(|| mean_of(&seed))
                }
            };
        }
        out.push(current);
    }
    out
}

/// Mean computed as a sequence of running means (same rounding as the incremental seed).
fn mean_of(values: &[f64]) -> f64 {
    values.iter().enumerate().fold(0.0, |m, (i, &x)| blend(m, x, inv(i + 1)))
}

/// RSI (Wilder) over a slice of closes.
pub fn rsi_series(closes: &[f64], period: usize) -> Vec<Option<f64>> {
    let period = period.max(1);
    let inv_n = inv(period);
    let mut out = Vec::with_capacity(closes.len());
    let mut prev: Option<f64> = None;
    let mut gains = Vec::with_capacity(period);
    let mut losses = Vec::with_capacity(period);
    let mut avg: Option<(f64, f64)> = None;
    for &c in closes {
        if c.is_finite() {
            if let Some(p) = prev {
                let change = finite_or(c - p, 0.0);
                let (g, l) = (change.max(0.0), (-change).max(0.0));
                avg = match avg {
                    Some((ag, al)) => Some((blend(ag, g, inv_n), blend(al, l, inv_n))),
                    None => {
                        gains.push(g);
                        losses.push(l);
                        (gains.len() == period).then(|| (mean_of(&gains), mean_of(&losses)))
                    }
                };
            }
            prev = Some(c);
        }
        out.push(avg.map(|(g, l)| rsi_from(g, l)));
    }
    out
}

/// MACD over a slice of closes.
pub fn macd_series(closes: &[f64], fast: usize, slow: usize, signal: usize) -> Vec<Option<MacdValue>> {
    let fast_s = ema_series(closes, fast);
    let slow_s = ema_series(closes, slow);
    // The line exists where both EMAs exist; the signal is an EMA over the line's own values.
    let lines: Vec<Option<f64>> = fast_s
        .iter()
        .zip(&slow_s)
        .zip(closes)
        .map(|((f, s), c)| match (f, s) {
            (Some(f), Some(s)) if c.is_finite() => Some(finite_or(f - s, 0.0)),
            _ => None,
        })
        .collect();
    let defined: Vec<f64> = lines.iter().flatten().copied().collect();
    let signals = ema_series(&defined, signal);
    let mut out = Vec::with_capacity(closes.len());
    let mut k = 0usize;
    let mut last = None;
    for line in &lines {
        if let Some(line) = *line {
            if let Some(Some(sig)) = signals.get(k) {
                last = Some(MacdValue { line, signal: *sig, histogram: finite_or(line - sig, 0.0) });
            }
            k += 1;
        }
        out.push(last);
    }
    out
}

/// ATR (Wilder) over parallel high, low, close slices (the shortest length wins).
pub fn atr_series(high: &[f64], low: &[f64], close: &[f64], period: usize) -> Vec<Option<f64>> {
    let period = period.max(1);
    let inv_n = inv(period);
    let n = high.len().min(low.len()).min(close.len());
    let mut out = Vec::with_capacity(n);
    let mut prev_close = None;
    let mut seed = Vec::with_capacity(period);
    let mut atr: Option<f64> = None;
    for ((&h, &l), &c) in high.iter().zip(low).zip(close) {
        if h.is_finite() && l.is_finite() && c.is_finite() {
            let tr = true_range(h, l, prev_close);
            prev_close = Some(c);
            atr = match atr {
                Some(a) => Some(blend(a, tr, inv_n)),
                None => {
                    seed.push(tr);
                    (seed.len() == period).then(|| mean_of(&seed))
                }
            };
        }
        out.push(atr);
    }
    out
}

/// Volume ratio over a slice of volumes.
pub fn volume_ratio_series(volumes: &[f64], lookback: usize) -> Vec<Option<f64>> {
    let lookback = lookback.clamp(1, MAX_VOLUME_LOOKBACK);
    let inv_n = inv(lookback);
    let mut seen: Vec<f64> = Vec::with_capacity(volumes.len());
    let mut current = None;
    let mut out = Vec::with_capacity(volumes.len());
    for &v in volumes {
        if v.is_finite() {
            seen.push(v);
            if let Some((last, before)) = seen.split_last() {
                // The `lookback` volumes before the last, summed oldest first (as incremental).
                if let Some(window) = before.len().checked_sub(lookback).and_then(|start| before.get(start..)) {
                    let mean = window.iter().fold(0.0, |m, x| m + x * inv_n);
                    current = Some(ratio(*last, mean));
                }
            }
        }
        out.push(current);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
    }

    #[test]
    fn ema_worked_example() {
        // EMA(3), α = 0.5: seed = mean(1, 2, 3) = 2; then 0.5·4 + 0.5·2 = 3; 0.5·5 + 0.5·3 = 4.
        let mut e = Ema::new(3);
        assert_eq!(e.update(1.0), None);
        assert_eq!(e.update(2.0), None);
        assert_eq!(e.update(3.0), Some(2.0));
        assert_eq!(e.update(4.0), Some(3.0));
        assert_eq!(e.update(5.0), Some(4.0));
        assert_eq!(e.update(f64::NAN), Some(4.0));
        let s = ema_series(&[1.0, 2.0, 3.0, 4.0, 5.0], 3);
        assert_eq!(s, vec![None, None, Some(2.0), Some(3.0), Some(4.0)]);
    }

    #[test]
    fn rsi_worked_example_by_hand() {
        // RSI(2) on 1, 2, 1, 3: changes +1, −1, +2.
        // seed: gain = (1 + 0)/2 = 0.5, loss = (0 + 1)/2 = 0.5 → RSI 50.
        // next: gain = 0.5·1/2 + 2/2 = 1.25, loss = 0.5/2 = 0.25 → 100·1.25/1.5 = 83.333…
        let mut r = Rsi::new(2);
        assert_eq!(r.update(1.0), None);
        assert_eq!(r.update(2.0), None);
        assert_eq!(r.update(1.0), Some(50.0));
        let v = r.update(3.0).unwrap();
        assert!(close(v, 250.0 / 3.0), "{v}");
    }

    #[test]
    fn rsi_flat_is_fifty_and_monotonic_rise_is_hundred() {
        let mut r = Rsi::new(14);
        let mut last = None;
        for _ in 0..30 {
            last = r.update(100.0);
        }
        assert_eq!(last, Some(50.0));
        let up: Vec<f64> = (1..=30).map(f64::from).collect();
        assert_eq!(rsi_series(&up, 14).last().copied().flatten(), Some(100.0));
        let down: Vec<f64> = (1..=30).rev().map(f64::from).collect();
        assert_eq!(rsi_series(&down, 14).last().copied().flatten(), Some(0.0));
    }

    #[test]
    fn atr_worked_example() {
        // ATR(2): TR1 = 2 (h−l), TR2 = max(1, |12−11|, |11−11|) = 1 → seed 1.5;
        // TR3 = max(2, |14−12|, |12−12|) = 2 → 1.5/2 + 2/2 = 1.75.
        let mut a = Atr::new(2);
        assert_eq!(a.update(11.0, 9.0, 11.0), None);
        assert_eq!(a.update(12.0, 11.0, 12.0), Some(1.5));
        assert_eq!(a.update(14.0, 12.0, 13.0), Some(1.75));
        let s = atr_series(&[11.0, 12.0, 14.0], &[9.0, 11.0, 12.0], &[11.0, 12.0, 13.0], 2);
        assert_eq!(s, vec![None, Some(1.5), Some(1.75)]);
    }

    #[test]
    fn volume_ratio_example_and_zero_volume() {
        let mut v = VolumeRatio::new(2);
        assert_eq!(v.update(1.0), None);
        assert_eq!(v.update(3.0), None);
        assert_eq!(v.update(4.0), Some(2.0));
        assert_eq!(v.update(0.0), Some(0.0));
        let mut z = VolumeRatio::new(2);
        z.update(0.0);
        z.update(0.0);
        assert_eq!(z.update(0.0), Some(0.0));
        assert_eq!(z.update(5.0), Some(VOLUME_RATIO_CAP));
        assert_eq!(volume_ratio_series(&[1.0, 3.0, 4.0, 0.0], 2), vec![None, None, Some(2.0), Some(0.0)]);
    }

    #[test]
    fn macd_needs_34_closes() {
        let closes: Vec<f64> = (0..40).map(|i| 100.0 + f64::from(i).sin()).collect();
        let mut m = Macd::standard();
        let first = closes.iter().position(|&c| m.update(c).is_some());
        assert_eq!(first, Some(33));
        let batch = macd_series(&closes, 12, 26, 9);
        assert_eq!(batch.iter().position(Option::is_some), Some(33));
    }

    #[test]
    fn huge_and_nan_inputs_stay_finite() {
        let xs = [f64::MAX, f64::MAX, 1.0, f64::NAN, f64::INFINITY, f64::MAX, 1e-300, f64::MAX];
        let mut e = Ema::new(2);
        let mut r = Rsi::new(2);
        let mut m = Macd::new(2, 3, 2);
        let mut a = Atr::new(2);
        let mut v = VolumeRatio::new(2);
        for &x in xs.iter().cycle().take(64) {
            for out in [e.update(x), r.update(x), a.update(x, x * 0.5, x), v.update(x)].into_iter().flatten() {
                assert!(out.is_finite());
            }
            if let Some(mv) = m.update(x) {
                assert!(mv.line.is_finite() && mv.signal.is_finite() && mv.histogram.is_finite());
            }
        }
    }
}
