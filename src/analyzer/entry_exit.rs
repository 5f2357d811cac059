//! Entry and exit levels of a trade idea: the ATR stop capped at `strategy.max_stop_pct`, the
//! TP1/TP2 levels and the trailing-start level, and [`Signal`] construction.
//!
//! Owns price arithmetic in `Decimal`. It must not size, pick leverage or talk to anything.

use rust_decimal::prelude::*;

use crate::analyzer::scoring::Score;
use crate::config::StrategySettings;
use crate::core::models::{Direction, Signal, TimeframeIndicators, TimestampMs, decimal_from_f64, round_to_increment};

/// Stop and targets of one position, all absolute prices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitLevels {
    pub stop_loss: Decimal,
    pub tp1: Decimal,
    pub tp2: Decimal,
    /// From here the remainder trails (`Signal.take_profit`).
    pub trail_start: Decimal,
}

/// A percentage from config as a Decimal fraction (1.5 → 0.015); `None` if not finite.
pub fn pct_fraction(pct: f64) -> Option<Decimal> {
    decimal_from_f64(pct).map(|d| d / Decimal::ONE_HUNDRED)
}

/// The price `pct` percent from `entry` in the position's favour (negative `pct`: against).
pub fn level(direction: Direction, entry: Decimal, pct: f64) -> Option<Decimal> {
    let f = pct_fraction(pct)?;
    entry.checked_mul(Decimal::ONE + f * direction.sign())
}

/// Stop distance `min(atr_stop_mult × ATR, max_stop_pct % of entry)`. An ATR distance too
/// large for a `Decimal` is simply capped (the cap holds "regardless of ATR value").
pub fn stop_distance(entry: Decimal, atr: f64, settings: &StrategySettings) -> Option<Decimal> {
    if !(atr.is_finite() && atr > 0.0) || entry <= Decimal::ZERO {
        return None;
    }
    let cap = entry.checked_mul(pct_fraction(settings.max_stop_pct)?)?;
    Some(match decimal_from_f64(settings.atr_stop_mult * atr) {
        Some(atr_dist) => atr_dist.min(cap),
        None => cap,
    })
}

/// A stop price rounded to `tick` towards the entry (up for a long's stop, down for a
/// short's), so rounding never widens the stop distance.
pub fn round_stop(direction: Direction, stop: Decimal, tick: Decimal) -> Decimal {
    let toward_entry = match direction {
        Direction::Long => RoundingStrategy::AwayFromZero,
        Direction::Short => RoundingStrategy::ToZero,
    };
    round_to_increment(stop, tick, toward_entry)
}

/// Stop and target levels for an entry at `entry`. The stop is rounded to `tick` towards the
/// entry (so rounding never widens it past the cap); targets to the nearest tick. `None` when
/// ATR is unusable or the rounded stop would sit at or beyond the entry.
pub fn exit_levels(
    direction: Direction,
    entry: Decimal,
    atr: f64,
    settings: &StrategySettings,
    tick: Decimal,
) -> Option<ExitLevels> {
    let dist = stop_distance(entry, atr, settings)?;
    let raw_stop = match direction {
        Direction::Long => entry - dist,
        Direction::Short => entry + dist,
    };
    let stop_loss = round_stop(direction, raw_stop, tick);
    let stop_ok = match direction {
        Direction::Long => stop_loss > Decimal::ZERO && stop_loss < entry,
        Direction::Short => stop_loss > entry,
    };
    if !stop_ok {
        return None;
    }
    let nearest = |p: Decimal| round_to_increment(p, tick, RoundingStrategy::MidpointAwayFromZero);
    Some(ExitLevels {
        stop_loss,
        tp1: nearest(level(direction, entry, settings.tp1_pct)?),
        tp2: nearest(level(direction, entry, settings.tp2_pct)?),
        trail_start: nearest(level(direction, entry, settings.trail_start_pct)?),
    })
}

/// Builds the [`Signal`] for a score, or `None` when the score is below
/// `strategy.min_confidence` or no valid stop exists. `entry` is the last 15m close.
pub fn build_signal(
    symbol: &str,
    score: &Score,
    indicators: TimeframeIndicators,
    entry: Decimal,
    timestamp: TimestampMs,
    settings: &StrategySettings,
    tick: Decimal,
) -> Option<Signal> {
    if score.total < settings.min_confidence {
        return None;
    }
    let levels = exit_levels(score.direction, entry, indicators.m15.atr, settings, tick)?;
    Some(Signal {
        symbol: symbol.to_string(),
        direction: score.direction,
        confidence: score.total,
        entry_price: entry,
        stop_loss: levels.stop_loss,
        take_profit: levels.trail_start,
        atr: indicators.m15.atr,
        timeframe_alignment: score.timeframe_alignment(),
        indicators,
        timestamp,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use rust_decimal_macros::dec;

    #[test]
    fn atr_stop_and_cap() {
        let s = Settings::defaults().unwrap().strategy;
        // 1.5 × 2 = 3 < 3 % of 1000 = 30 → stop 997.
        let l = exit_levels(Direction::Long, dec!(1000), 2.0, &s, dec!(0.1)).unwrap();
        assert_eq!(l.stop_loss, dec!(997));
        assert_eq!(l.tp1, dec!(1015));
        assert_eq!(l.tp2, dec!(1025));
        assert_eq!(l.trail_start, dec!(1030));
        // Huge ATR: capped at 3 % → 1030 for a short.
        let l = exit_levels(Direction::Short, dec!(1000), 500.0, &s, dec!(0.1)).unwrap();
        assert_eq!(l.stop_loss, dec!(1030));
        assert_eq!(l.tp1, dec!(985));
        // An ATR beyond Decimal's range is capped too, not refused.
        let l = exit_levels(Direction::Long, dec!(1000), 1e300, &s, dec!(0.1)).unwrap();
        assert_eq!(l.stop_loss, dec!(970));
        assert!(exit_levels(Direction::Long, dec!(1000), 0.0, &s, dec!(0.1)).is_none());
        assert!(exit_levels(Direction::Long, dec!(1000), f64::NAN, &s, dec!(0.1)).is_none());
        // A stop that rounds onto the entry is refused.
        assert!(exit_levels(Direction::Long, dec!(1000), 0.001, &s, dec!(1)).is_none());
    }
}
