//! Per-symbol, per-timeframe incremental state: the six indicators plus the short, bounded
//! history the scoring needs (MACD histogram for the cross window, highs and lows for swing
//! fractals). One update per closed candle, O(1), no allocation after construction.
//!
//! Owns the candle-by-candle bookkeeping only. It must not score, size or decide anything,
//! and never reads a clock or does I/O: callers feed closed candles in time order.

use crate::analyzer::indicators::{Atr, Ema, Macd, MacdValue, Rsi, VolumeRatio};
use crate::core::models::{Candle, Direction, Indicators, TimestampMs};

/// Candles of history kept for swing fractals and MACD crosses. With the largest allowed
/// fractal width (10), two swing points on each side still fit comfortably.
pub const HISTORY: usize = 64;

/// Indicator periods of DESIGN.md section 2.
pub const EMA_FAST: usize = 9;
pub const EMA_SLOW: usize = 21;
pub const RSI_PERIOD: usize = 14;
pub const ATR_PERIOD: usize = 14;
pub const VOLUME_LOOKBACK: usize = 20;

/// Closed candles a timeframe needs before all its indicators exist: the MACD signal line is
/// the last to warm up (26 closes for the slow EMA, then 9 MACD values for the signal).
pub const WARM_UP_CANDLES: usize = 26 + 9 - 1;

/// Fixed-capacity ring of the last `HISTORY` values, oldest first when read.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ring {
    buf: [f64; HISTORY],
    head: usize,
    len: usize,
}

impl Ring {
    const fn new() -> Self {
        Ring { buf: [0.0; HISTORY], head: 0, len: 0 }
    }

    fn push(&mut self, v: f64) {
        if let Some(slot) = self.buf.get_mut(self.head) {
            *slot = v;
        }
        self.head = (self.head + 1) % HISTORY;
        self.len = (self.len + 1).min(HISTORY);
    }

    /// The `i`-th value, 0 = oldest kept.
    fn get(&self, i: usize) -> f64 {
        let start = (self.head + HISTORY - self.len) % HISTORY;
        self.buf.get((start + i) % HISTORY).copied().unwrap_or(0.0)
    }
}

/// Incremental indicators and history of one symbol on one timeframe.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeframeState {
    ema_fast: Ema,
    ema_slow: Ema,
    rsi: Rsi,
    macd: Macd,
    atr: Atr,
    volume_ratio: VolumeRatio,
    highs: Ring,
    lows: Ring,
    /// MACD histogram (line − signal) of each candle since MACD became ready.
    histogram: Ring,
    last_close: f64,
    last_close_time: Option<TimestampMs>,
    candles: u64,
}

impl Default for TimeframeState {
    fn default() -> Self {
        Self::new()
    }
}

impl TimeframeState {
    pub fn new() -> Self {
        TimeframeState {
            ema_fast: Ema::new(EMA_FAST),
            ema_slow: Ema::new(EMA_SLOW),
            rsi: Rsi::new(RSI_PERIOD),
            macd: Macd::standard(),
            atr: Atr::new(ATR_PERIOD),
            volume_ratio: VolumeRatio::new(VOLUME_LOOKBACK),
            highs: Ring::new(),
            lows: Ring::new(),
            histogram: Ring::new(),
            last_close: 0.0,
            last_close_time: None,
            candles: 0,
        }
    }

    /// Feeds one closed candle. Candles that are not sane (see [`Candle::is_sane`]) or not
    /// after the previous one are ignored; returns whether the candle was taken.
    pub fn update(&mut self, c: &Candle) -> bool {
        if !c.is_sane() || self.last_close_time.is_some_and(|t| c.close_time <= t) {
            return false;
        }
        self.ema_fast.update(c.close);
        self.ema_slow.update(c.close);
        self.rsi.update(c.close);
        if let Some(m) = self.macd.update(c.close) {
            self.histogram.push(m.histogram);
        }
        self.atr.update(c.high, c.low, c.close);
        self.volume_ratio.push(c.volume);
        self.highs.push(c.high);
        self.lows.push(c.low);
        self.last_close = c.close;
        self.last_close_time = Some(c.close_time);
        self.candles += 1;
        true
    }

    /// All indicator values, once every one of them is past its warm-up.
    pub fn indicators(&self) -> Option<Indicators> {
        let MacdValue { line, signal, histogram } = self.macd.value()?;
        Some(Indicators {
            ema_9: self.ema_fast.value()?,
            ema_21: self.ema_slow.value()?,
            rsi: self.rsi.value()?,
            macd_line: line,
            macd_signal: signal,
            macd_histogram: histogram,
            atr: self.atr.value()?,
            volume_ratio: self.volume_ratio.value()?,
        })
    }

    /// Close of the last candle taken (0 before any).
    pub fn last_close(&self) -> f64 {
        self.last_close
    }

    /// Close time of the last candle taken.
    pub fn last_close_time(&self) -> Option<TimestampMs> {
        self.last_close_time
    }

    /// Number of candles taken.
    pub fn candles(&self) -> u64 {
        self.candles
    }

    /// The most recent MACD/signal cross within the last `window` closed candles: `Long` when
    /// the line crossed above the signal (histogram from ≤ 0 to > 0), `Short` when it crossed
    /// below (from ≥ 0 to < 0). `None` when there was no cross in the window.
    pub fn macd_cross(&self, window: usize) -> Option<Direction> {
        let len = self.histogram.len;
        let window = window.min(len.saturating_sub(1));
        for k in 0..window {
            let cur = self.histogram.get(len - 1 - k);
            let prev = self.histogram.get(len - 2 - k);
            if prev <= 0.0 && cur > 0.0 {
                return Some(Direction::Long);
            }
            if prev >= 0.0 && cur < 0.0 {
                return Some(Direction::Short);
            }
        }
        None
    }

    /// Price-action pattern from the last two confirmed swing highs and swing lows within the
    /// kept history. A swing high is a candle whose high is strictly above the highs of the
    /// `width` candles on each side (a swing low likewise, below); only candles with `width`
    /// later candles are confirmed. `Long` for HH + HL, `Short` for LH + LL, else `None`.
    pub fn swing_pattern(&self, width: usize) -> Option<Direction> {
        let highs = last_two_swings(&self.highs, width, |a, b| a > b)?;
        let lows = last_two_swings(&self.lows, width, |a, b| a < b)?;
        let (h_new, h_old) = highs;
        let (l_new, l_old) = lows;
        if h_new > h_old && l_new > l_old {
            Some(Direction::Long)
        } else if h_new < h_old && l_new < l_old {
            Some(Direction::Short)
        } else {
            None
        }
    }
}

/// The newest two fractal points of `ring` (newest first) where `beats(center, neighbour)`
/// holds against every neighbour within `width`.
fn last_two_swings(ring: &Ring, width: usize, beats: impl Fn(f64, f64) -> bool) -> Option<(f64, f64)> {
    let width = width.max(1);
    let len = ring.len;
    if len < 2 * width + 1 {
        return None;
    }
    let mut newest: Option<f64> = None;
    let mut i = len - 1 - width;
    loop {
        let center = ring.get(i);
        let is_swing = (i - width..=i + width).all(|j| j == i || beats(center, ring.get(j)));
        if is_swing {
            match newest {
                None => newest = Some(center),
                Some(n) => return Some((n, center)),
            }
        }
        if i == width {
            return None;
        }
        i -= 1;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    pub(crate) fn candle(i: i64, high: f64, low: f64, close: f64, volume: f64) -> Candle {
        let open = close.max(low).min(high);
        Candle {
            open_time: i * 900_000,
            close_time: i * 900_000 + 899_999,
            open,
            high,
            low,
            close,
            volume,
            quote_volume: 0.0,
            trades: 0,
            taker_buy_volume: 0.0,
            taker_buy_quote_volume: 0.0,
        }
    }

    #[test]
    fn warm_up_until_macd_signal_exists() {
        let mut s = TimeframeState::new();
        assert_eq!(WARM_UP_CANDLES, 34);
        for i in 0..33 {
            let p = 100.0 + (i as f64 * 0.3).sin();
            assert!(s.update(&candle(i, p + 1.0, p - 1.0, p, 10.0)));
            assert!(s.indicators().is_none(), "ready too early at {i}");
        }
        assert!(s.update(&candle(33, 101.0, 99.0, 100.0, 10.0)));
        assert!(s.indicators().is_some());
        // Out-of-order and insane candles are ignored.
        assert!(!s.update(&candle(33, 101.0, 99.0, 100.0, 10.0)));
        assert!(!s.update(&candle(40, 99.0, 101.0, 100.0, 10.0)));
    }

    #[test]
    fn swing_pattern_detects_higher_highs_and_lows() {
        // Zig-zag rising: peaks at 2, 6, 10 …; troughs at 4, 8, …
        let mut s = TimeframeState::new();
        let shape = [0.0, 1.0, 2.0, 1.0, 0.0];
        for i in 0..20 {
            let base = i as f64 * 0.5;
            let bump = shape[(i % 4) as usize + 1] - 1.0;
            let mid = 100.0 + base + bump * 3.0;
            s.update(&candle(i, mid + 1.0, mid - 1.0, mid, 1.0));
        }
        assert_eq!(s.swing_pattern(1), Some(Direction::Long));
        let mut d = TimeframeState::new();
        for i in 0..20 {
            let base = -(i as f64) * 0.5;
            let bump = shape[(i % 4) as usize + 1] - 1.0;
            let mid = 100.0 + base + bump * 3.0;
            d.update(&candle(i, mid + 1.0, mid - 1.0, mid, 1.0));
        }
        assert_eq!(d.swing_pattern(1), Some(Direction::Short));
        let mut flat = TimeframeState::new();
        for i in 0..20 {
            flat.update(&candle(i, 101.0, 99.0, 100.0, 1.0));
        }
        assert_eq!(flat.swing_pattern(2), None);
    }

    #[test]
    fn macd_cross_seen_only_inside_window() {
        let mut s = TimeframeState::new();
        // Long decline then a sharp rally: the histogram turns positive at some candle.
        let mut closes: Vec<f64> = (0..60).map(|i| 200.0 - i as f64).collect();
        closes.extend((0..10).map(|i| 141.0 + 8.0 * i as f64));
        let mut cross_at = None;
        for (i, &c) in closes.iter().enumerate() {
            s.update(&candle(i as i64, c + 0.5, c - 0.5, c, 1.0));
            if cross_at.is_none() && s.macd_cross(1) == Some(Direction::Long) {
                cross_at = Some(i);
            }
        }
        let at = cross_at.unwrap();
        let mut t = TimeframeState::new();
        for (i, &c) in closes.iter().enumerate().take(at + 3) {
            t.update(&candle(i as i64, c + 0.5, c - 0.5, c, 1.0));
        }
        assert_eq!(t.macd_cross(3), Some(Direction::Long));
        assert_eq!(t.macd_cross(2), None);
    }
}
