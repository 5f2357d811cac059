//! Technical analysis: incremental and batch indicators (EMA, RSI, MACD, ATR, volume ratio),
//! swing points, multi-timeframe scoring and entry/exit levels. Pure, synchronous functions
//! over plain data: no I/O, no clock reads, no locks, no tokio — live, dry-run and backtest
//! all run exactly this code.
//!
//! - [`indicators`]: the indicator maths, incremental and batch.
//! - [`timeframe`]: per-symbol-per-timeframe incremental state with bounded history.
//! - [`scoring`]: the DESIGN.md score table with per-component reasons.
//! - [`entry_exit`]: ATR stop (capped), TP levels, `Signal` construction.
//! - [`SymbolAnalyzer`]: the three timeframes of one symbol, fed closed candles.

pub mod entry_exit;
pub mod indicators;
pub mod scoring;
pub mod timeframe;

use crate::analyzer::scoring::{Score, ScoreInputs};
use crate::analyzer::timeframe::TimeframeState;
use crate::config::StrategySettings;
use crate::core::models::{Candle, Timeframe, TimeframeIndicators};

/// Incremental 4h, 1h and 15m state of one symbol.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SymbolAnalyzer {
    pub h4: TimeframeState,
    pub h1: TimeframeState,
    pub m15: TimeframeState,
}

impl SymbolAnalyzer {
    pub fn new() -> Self {
        Self::default()
    }

    /// The state of one strategy timeframe (`None` for the others).
    pub fn state(&self, tf: Timeframe) -> Option<&TimeframeState> {
        match tf {
            Timeframe::H4 => Some(&self.h4),
            Timeframe::H1 => Some(&self.h1),
            Timeframe::M15 => Some(&self.m15),
            _ => None,
        }
    }

    /// Feeds one closed candle of `tf`; other timeframes are ignored. Returns whether taken.
    pub fn on_closed_candle(&mut self, tf: Timeframe, candle: &Candle) -> bool {
        match tf {
            Timeframe::H4 => self.h4.update(candle),
            Timeframe::H1 => self.h1.update(candle),
            Timeframe::M15 => self.m15.update(candle),
            _ => false,
        }
    }

    /// Indicator values of all three timeframes, once all are warmed up.
    pub fn indicators(&self) -> Option<TimeframeIndicators> {
        Some(TimeframeIndicators { h4: self.h4.indicators()?, h1: self.h1.indicators()?, m15: self.m15.indicators()? })
    }

    /// The score inputs at the latest closed candles, once all timeframes are warmed up.
    pub fn score_inputs(&self, settings: &StrategySettings) -> Option<ScoreInputs> {
        let ind = self.indicators()?;
        Some(ScoreInputs {
            h4: ind.h4,
            h1: ind.h1,
            m15: ind.m15,
            macd_cross: self.m15.macd_cross(settings.macd_cross_window),
            swing: self.m15.swing_pattern(settings.swing_fractal_width),
        })
    }

    /// The full three-timeframe score, once all timeframes are warmed up. Allocation-free.
    pub fn score(&self, settings: &StrategySettings) -> Option<Score> {
        self.score_inputs(settings).map(|inputs| scoring::score(&inputs, settings))
    }
}
