//! The exit ladder of one position as a state machine: TP1 (close 40 % of the original size)
//! → TP2 (close 30 %) → from the trail start the rest trails behind the best price, plus
//! stop-hit detection. Each price update returns a list of
//! intended actions (close X reduce-only, move/resize the protective stop, close all).
//!
//! Owns exit decisions only. It must not place orders, read clocks or know about fills: the
//! caller executes the actions (live: exchange; backtest and dry-run: the simulator) and
//! feeds the next price.
//!
//! Rules: TP quantities are fractions of the ORIGINAL size rounded down to the market step and
//! never more than what is left; levels execute strictly in order within one update, so a
//! jump from +0 % to +3.5 % yields TP1, then TP2, then the trailing stop. A stop hit closes
//! everything left. The trailing stop only moves in the position's favour. The stop is
//! checked before targets: an update at or beyond the stop never takes profit.

use rust_decimal::prelude::*;
use serde::Serialize;

use crate::analyzer::entry_exit::{level, pct_fraction};
use crate::config::StrategySettings;
use crate::core::models::{Direction, LadderStage, Position, SymbolFilters, round_to_increment};

/// Why (part of) a position was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    TakeProfit1,
    TakeProfit2,
    TrailingStop,
    StopLoss,
    Emergency,
    Liquidation,
    EndOfData,
    /// The part of a fill above the notional cap, closed at once.
    NotionalTrim,
    /// An operator's force-exit command.
    ForceExit,
}

impl ExitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ExitReason::TakeProfit1 => "take_profit_1",
            ExitReason::TakeProfit2 => "take_profit_2",
            ExitReason::TrailingStop => "trailing_stop",
            ExitReason::StopLoss => "stop_loss",
            ExitReason::Emergency => "emergency",
            ExitReason::Liquidation => "liquidation",
            ExitReason::EndOfData => "end_of_data",
            ExitReason::NotionalTrim => "notional_trim",
            ExitReason::ForceExit => "force_exit",
        }
    }

    /// The reason named by [`ExitReason::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [
            ExitReason::TakeProfit1,
            ExitReason::TakeProfit2,
            ExitReason::TrailingStop,
            ExitReason::StopLoss,
            ExitReason::Emergency,
            ExitReason::Liquidation,
            ExitReason::EndOfData,
            ExitReason::NotionalTrim,
            ExitReason::ForceExit,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// An intended action on the exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitAction {
    /// Close `qty` at market, reduce-only. `trigger_price` is the level that fired.
    Close { qty: Decimal, reason: ExitReason, trigger_price: Decimal },
    /// Place/move/resize the resting protective stop to `stop_price` for `qty`.
    MoveStop { stop_price: Decimal, qty: Decimal },
    /// Close everything left, reduce-only (stop hit). `qty` is what was left.
    CloseAll { qty: Decimal, reason: ExitReason, trigger_price: Decimal },
}

/// Ladder parameters as Decimal fractions (1.5 % → 0.015).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LadderConfig {
    pub tp1_pct: f64,
    pub tp2_pct: f64,
    pub trail_start_pct: f64,
    pub tp1_close: Decimal,
    pub tp2_close: Decimal,
    pub trail: Decimal,
}

impl LadderConfig {
    /// From the strategy settings; `None` if a percentage is not finite.
    pub fn from_settings(s: &StrategySettings) -> Option<Self> {
        Some(LadderConfig {
            tp1_pct: s.tp1_pct,
            tp2_pct: s.tp2_pct,
            trail_start_pct: s.trail_start_pct,
            tp1_close: pct_fraction(s.tp1_close_pct)?,
            tp2_close: pct_fraction(s.tp2_close_pct)?,
            trail: pct_fraction(s.trail_pct)?,
        })
    }
}

/// Exit-ladder state of one position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitLadder {
    pub direction: Direction,
    pub entry: Decimal,
    pub original_qty: Decimal,
    pub remaining_qty: Decimal,
    pub stage: LadderStage,
    /// Current protective stop (the trailing stop once trailing).
    pub stop: Decimal,
    /// Best price since entry (highest for a long, lowest for a short).
    pub best_price: Decimal,
    pub tp1_price: Decimal,
    pub tp2_price: Decimal,
    pub trail_start_price: Decimal,
    tp1_close: Decimal,
    tp2_close: Decimal,
    trail: Decimal,
    tick: Decimal,
    step: Decimal,
}

impl ExitLadder {
    /// A fresh ladder for a position filled at `entry` for `qty` with protective `stop`.
    pub fn new(
        direction: Direction,
        entry: Decimal,
        qty: Decimal,
        stop: Decimal,
        cfg: &LadderConfig,
        filters: &SymbolFilters,
    ) -> Option<Self> {
        let step = filters.market_step();
        Some(ExitLadder {
            direction,
            entry,
            original_qty: qty,
            remaining_qty: qty,
            stage: LadderStage::Open,
            stop,
            best_price: entry,
            tp1_price: level(direction, entry, cfg.tp1_pct)?,
            tp2_price: level(direction, entry, cfg.tp2_pct)?,
            trail_start_price: level(direction, entry, cfg.trail_start_pct)?,
            tp1_close: cfg.tp1_close,
            tp2_close: cfg.tp2_close,
            trail: cfg.trail,
            tick: filters.tick_size,
            step,
        })
    }

    /// Rebuilds the ladder of a known position (after a restart), keeping its stage, stop and
    /// best price.
    pub fn from_position(p: &Position, cfg: &LadderConfig, filters: &SymbolFilters) -> Option<Self> {
        let mut l = ExitLadder::new(p.direction, p.entry_price, p.original_qty, p.stop_loss, cfg, filters)?;
        l.remaining_qty = p.qty;
        l.stage = p.stage;
        l.best_price = p.best_price;
        Some(l)
    }

    /// Nothing left open.
    pub fn is_closed(&self) -> bool {
        self.remaining_qty <= Decimal::ZERO
    }

    /// `a` is at least as far in the position's favour as `b`.
    fn reached(&self, price: Decimal, lvl: Decimal) -> bool {
        match self.direction {
            Direction::Long => price >= lvl,
            Direction::Short => price <= lvl,
        }
    }

    /// True when `price` is at or beyond the protective stop.
    pub fn stop_hit(&self, price: Decimal) -> bool {
        match self.direction {
            Direction::Long => price <= self.stop,
            Direction::Short => price >= self.stop,
        }
    }

    fn take(&mut self, frac: Decimal, reason: ExitReason, trigger: Decimal, out: &mut Vec<ExitAction>) {
        let want = round_to_increment(self.original_qty * frac, self.step, RoundingStrategy::ToZero);
        let qty = want.min(self.remaining_qty);
        if qty > Decimal::ZERO {
            self.remaining_qty -= qty;
            out.push(ExitAction::Close { qty, reason, trigger_price: trigger });
        }
    }

    /// The open price interval `(low, high)` inside which [`ExitLadder::on_price`] changes
    /// nothing and returns nothing: the stop is not hit, the best price does not move, the
    /// next level of the ladder is not reached and the trailing stop (from the unchanged best
    /// price) would not move. `None` when there is no such interval (closed, or the trailing
    /// stop would move at any price).
    pub fn quiet_band(&self) -> Option<(Decimal, Decimal)> {
        if self.is_closed() {
            return None;
        }
        if self.stage == LadderStage::Trailing && self.trailing_candidate().is_some() {
            return None;
        }
        let next = match self.stage {
            LadderStage::Open => Some(self.tp1_price),
            LadderStage::Tp1Done => Some(self.tp2_price),
            LadderStage::Tp2Done => Some(self.trail_start_price),
            LadderStage::Trailing => None,
        };
        // Long: the stop is hit at or below `stop`; the best price and the next level move at
        // or above theirs. A short mirrors it.
        let (low, high) = match self.direction {
            Direction::Long => (self.stop, next.map_or(self.best_price, |n| n.min(self.best_price))),
            Direction::Short => (next.map_or(self.best_price, |n| n.max(self.best_price)), self.stop),
        };
        (low.max(Decimal::ZERO) < high).then_some((low.max(Decimal::ZERO), high))
    }

    /// The trailing stop the best price gives, if it is better than the current stop.
    fn trailing_candidate(&self) -> Option<Decimal> {
        let (raw, rounding) = match self.direction {
            Direction::Long => (self.best_price * (Decimal::ONE - self.trail), RoundingStrategy::ToZero),
            Direction::Short => (self.best_price * (Decimal::ONE + self.trail), RoundingStrategy::AwayFromZero),
        };
        let candidate = round_to_increment(raw, self.tick, rounding);
        let better = match self.direction {
            Direction::Long => candidate > self.stop,
            Direction::Short => candidate < self.stop,
        };
        better.then_some(candidate)
    }

    /// One price update. Returns the actions in the order they must be executed.
    pub fn on_price(&mut self, price: Decimal) -> Vec<ExitAction> {
        let mut out = Vec::new();
        if self.is_closed() || price <= Decimal::ZERO {
            return out;
        }
        if self.stop_hit(price) {
            let reason =
                if self.stage == LadderStage::Trailing { ExitReason::TrailingStop } else { ExitReason::StopLoss };
            out.push(ExitAction::CloseAll { qty: self.remaining_qty, reason, trigger_price: self.stop });
            self.remaining_qty = Decimal::ZERO;
            return out;
        }
        if self.reached(price, self.best_price) {
            self.best_price = price;
        }
        let mut resize = false;
        if self.stage == LadderStage::Open && self.reached(price, self.tp1_price) {
            self.take(self.tp1_close, ExitReason::TakeProfit1, self.tp1_price, &mut out);
            self.stage = LadderStage::Tp1Done;
            resize = true;
        }
        if self.stage == LadderStage::Tp1Done && self.reached(price, self.tp2_price) {
            self.take(self.tp2_close, ExitReason::TakeProfit2, self.tp2_price, &mut out);
            self.stage = LadderStage::Tp2Done;
            resize = true;
        }
        if self.stage == LadderStage::Tp2Done && self.reached(price, self.trail_start_price) {
            self.stage = LadderStage::Trailing;
        }
        let mut moved = false;
        if self.stage == LadderStage::Trailing
            && let Some(candidate) = self.trailing_candidate()
        {
            self.stop = candidate;
            moved = true;
        }
        if (moved || resize) && !self.is_closed() {
            out.push(ExitAction::MoveStop { stop_price: self.stop, qty: self.remaining_qty });
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use rust_decimal_macros::dec;

    fn filters() -> SymbolFilters {
        SymbolFilters {
            symbol: "X".into(),
            tick_size: dec!(0.01),
            min_price: dec!(0),
            max_price: dec!(0),
            step_size: dec!(0.001),
            min_qty: dec!(0.001),
            max_qty: dec!(0),
            market_step_size: dec!(0.001),
            market_min_qty: dec!(0.001),
            market_max_qty: dec!(0),
            min_notional: dec!(5),
            percent_price_up: dec!(1.05),
            percent_price_down: dec!(0.95),
            max_leverage: 20,
        }
    }

    fn ladder(direction: Direction, stop: Decimal) -> ExitLadder {
        let cfg = LadderConfig::from_settings(&Settings::defaults().unwrap().strategy).unwrap();
        ExitLadder::new(direction, dec!(100), dec!(10), stop, &cfg, &filters()).unwrap()
    }

    mod quiet {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(500))]
            /// Whatever state a ladder reached, a price strictly inside its quiet band returns
            /// no action and leaves the ladder exactly as it was (`on_price` itself is the
            /// oracle); a price on either end of the band does not.
            #[test]
            fn a_price_inside_the_quiet_band_changes_nothing(
                long in any::<bool>(),
                stop_cents in 50i64..600,
                trail_tenths in 1i64..30,
                path in prop::collection::vec(-800i64..800, 0..25),
                probe in 0.0f64..1.0,
            ) {
                let direction = if long { Direction::Long } else { Direction::Short };
                let mut settings = Settings::defaults().unwrap().strategy;
                settings.trail_pct = trail_tenths as f64 / 10.0;
                let cfg = LadderConfig::from_settings(&settings).unwrap();
                let stop = match direction {
                    Direction::Long => dec!(100) - Decimal::new(stop_cents, 2),
                    Direction::Short => dec!(100) + Decimal::new(stop_cents, 2),
                };
                let mut l = ExitLadder::new(direction, dec!(100), dec!(10), stop, &cfg, &filters()).unwrap();
                for cents in path {
                    l.on_price(dec!(100) + Decimal::new(cents, 2));
                }
                let Some((low, high)) = l.quiet_band() else {
                    // Only a closed ladder, or a trailing stop that would move, has none.
                    let mut copy = l.clone();
                    prop_assert!(l.is_closed() || !copy.on_price(l.best_price).is_empty() || copy != l);
                    return Ok(());
                };
                prop_assert!(low < high);
                // A tick-aligned price strictly inside.
                let ticks = ((high - low) / dec!(0.01)).floor();
                if ticks >= dec!(2) {
                    let k = (Decimal::from_f64(probe).unwrap() * (ticks - dec!(1))).floor() + dec!(1);
                    let p = low + k * dec!(0.01);
                    prop_assert!(p > low && p < high);
                    let mut copy = l.clone();
                    prop_assert!(copy.on_price(p).is_empty());
                    prop_assert_eq!(&copy, &l);
                }
                // The ends are where something happens (the stop, a level or a new best).
                let edge = match direction {
                    Direction::Long => high,
                    Direction::Short => low,
                };
                let mut copy = l.clone();
                let acted = !copy.on_price(edge).is_empty();
                prop_assert!(acted || copy.best_price == edge);
                let mut copy = l.clone();
                let stop_end = match direction {
                    Direction::Long => low,
                    Direction::Short => high,
                };
                if stop_end == l.stop {
                    prop_assert!(!copy.on_price(stop_end).is_empty());
                }
            }
        }
    }

    #[test]
    fn jump_executes_tp1_tp2_then_trails() {
        let mut l = ladder(Direction::Long, dec!(97));
        let acts = l.on_price(dec!(103.5));
        assert_eq!(
            acts,
            vec![
                ExitAction::Close { qty: dec!(4), reason: ExitReason::TakeProfit1, trigger_price: dec!(101.5) },
                ExitAction::Close { qty: dec!(3), reason: ExitReason::TakeProfit2, trigger_price: dec!(102.5) },
                ExitAction::MoveStop { stop_price: dec!(102.46), qty: dec!(3) },
            ]
        );
        assert_eq!(l.stage, LadderStage::Trailing);
        // Falling back does not loosen the stop.
        assert!(l.on_price(dec!(102.9)).is_empty());
        assert_eq!(l.stop, dec!(102.46));
        assert_eq!(
            l.on_price(dec!(102.4)),
            vec![ExitAction::CloseAll { qty: dec!(3), reason: ExitReason::TrailingStop, trigger_price: dec!(102.46) }]
        );
        assert!(l.is_closed());
        assert!(l.on_price(dec!(90)).is_empty());
    }

    #[test]
    fn short_stop_loss_and_tp1() {
        let mut l = ladder(Direction::Short, dec!(103));
        let acts = l.on_price(dec!(98.4));
        assert_eq!(acts.len(), 2);
        assert_eq!(
            acts[0],
            ExitAction::Close { qty: dec!(4), reason: ExitReason::TakeProfit1, trigger_price: dec!(98.5) }
        );
        assert_eq!(acts[1], ExitAction::MoveStop { stop_price: dec!(103), qty: dec!(6) });
        assert_eq!(
            l.on_price(dec!(103.2)),
            vec![ExitAction::CloseAll { qty: dec!(6), reason: ExitReason::StopLoss, trigger_price: dec!(103) }]
        );
    }
}
