//! Multi-timeframe scoring (DESIGN.md section 2): six components over 4h, 1h and 15m, each
//! with its points and a reason, so `analyze` and the logs can explain every score.
//!
//! Owns the score table only. It must not read candles, clocks or files: it takes finished
//! indicator values plus the 15m MACD-cross and swing-pattern readings as plain data.

use std::cmp::Ordering;
use std::fmt;

use serde::Serialize;

use crate::config::StrategySettings;
use crate::core::models::{Direction, Indicators};

/// Points of each component, in table order. They sum to 100.
pub const TREND_4H_POINTS: u8 = 25;
pub const ALIGNMENT_1H_POINTS: u8 = 20;
pub const RSI_ZONE_POINTS: u8 = 15;
pub const MACD_CROSS_POINTS: u8 = 15;
pub const VOLUME_SPIKE_POINTS: u8 = 10;
pub const PRICE_ACTION_POINTS: u8 = 15;

/// Everything the score is computed from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreInputs {
    pub h4: Indicators,
    pub h1: Indicators,
    pub m15: Indicators,
    /// Most recent 15m MACD cross within `strategy.macd_cross_window` closed candles.
    pub macd_cross: Option<Direction>,
    /// 15m swing pattern: `Long` = HH + HL, `Short` = LH + LL.
    pub swing: Option<Direction>,
}

/// Why a component scored (or did not): the values it looked at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reason {
    Trend4h { ema_9: f64, ema_21: f64 },
    Alignment1h { ema_9: f64, ema_21: f64, direction: Direction },
    RsiZone { rsi: f64, min: f64, max: f64, direction: Direction },
    MacdCross { cross: Option<Direction>, window: usize, direction: Direction },
    VolumeSpike { ratio: f64, threshold: f64 },
    PriceAction { pattern: Option<Direction>, width: usize, direction: Direction },
}

fn cmp_word(a: f64, b: f64) -> &'static str {
    if a > b {
        ">"
    } else if a < b {
        "<"
    } else {
        "="
    }
}

fn pattern_name(d: Option<Direction>) -> &'static str {
    match d {
        Some(Direction::Long) => "HH + HL",
        Some(Direction::Short) => "LH + LL",
        None => "no clear pattern",
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Reason::Trend4h { ema_9, ema_21 } => {
                let side = if ema_9 > ema_21 {
                    "uptrend, LONG"
                } else if ema_9 < ema_21 {
                    "downtrend, SHORT"
                } else {
                    "flat, no trend"
                };
                write!(f, "4h EMA9 {ema_9:.6} {} EMA21 {ema_21:.6}: {side}", cmp_word(ema_9, ema_21))
            }
            Reason::Alignment1h { ema_9, ema_21, direction } => {
                let agrees = match direction {
                    Direction::Long => ema_9 > ema_21,
                    Direction::Short => ema_9 < ema_21,
                };
                let verdict = if agrees { "agrees with" } else { "does not agree with" };
                write!(f, "1h EMA9 {ema_9:.6} {} EMA21 {ema_21:.6}: {verdict} {direction}", cmp_word(ema_9, ema_21))
            }
            Reason::RsiZone { rsi, min, max, direction } => {
                let verdict = if (min..=max).contains(&rsi) { "inside" } else { "outside" };
                write!(f, "15m RSI {rsi:.2} {verdict} the {direction} zone [{min}, {max}]")
            }
            Reason::MacdCross { cross, window, direction } => match cross {
                Some(Direction::Long) => {
                    write!(f, "15m MACD crossed above signal within the last {window} candles (wanted {direction})")
                }
                Some(Direction::Short) => {
                    write!(f, "15m MACD crossed below signal within the last {window} candles (wanted {direction})")
                }
                None => write!(f, "no 15m MACD cross within the last {window} candles"),
            },
            Reason::VolumeSpike { ratio, threshold } => {
                let verdict = if ratio > threshold { "above" } else { "not above" };
                write!(f, "15m volume ratio {ratio:.2} {verdict} {threshold}")
            }
            Reason::PriceAction { pattern, width, direction } => {
                write!(f, "15m swings (fractal width {width}): {} (wanted {direction})", pattern_name(pattern))
            }
        }
    }
}

/// One row of the score table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Component {
    pub points: u8,
    pub max_points: u8,
    pub reason: Reason,
}

impl Component {
    /// Stable component name (the `analyze --json` key).
    pub fn name(&self) -> &'static str {
        match self.reason {
            Reason::Trend4h { .. } => "4h_trend",
            Reason::Alignment1h { .. } => "1h_alignment",
            Reason::RsiZone { .. } => "rsi_zone",
            Reason::MacdCross { .. } => "macd_cross",
            Reason::VolumeSpike { .. } => "volume_spike",
            Reason::PriceAction { .. } => "price_action",
        }
    }
}

/// Serializable view of a component, with the reason as text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComponentReport {
    pub name: &'static str,
    pub points: u8,
    pub max_points: u8,
    pub reason: String,
}

/// The total, the direction and each component.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    pub total: u8,
    /// The 4h trend's side (`Long` when the 4h EMAs are exactly equal, with 0 trend points).
    pub direction: Direction,
    pub components: [Component; 6],
}

impl Score {
    /// 4h and 1h trends agree (the 1h alignment component scored).
    pub fn timeframe_alignment(&self) -> bool {
        self.components.iter().any(|c| matches!(c.reason, Reason::Alignment1h { .. }) && c.points > 0)
            && self.components.iter().any(|c| matches!(c.reason, Reason::Trend4h { .. }) && c.points > 0)
    }

    /// The components with their reasons as text.
    pub fn report(&self) -> Vec<ComponentReport> {
        self.components
            .iter()
            .map(|c| ComponentReport {
                name: c.name(),
                points: c.points,
                max_points: c.max_points,
                reason: c.reason.to_string(),
            })
            .collect()
    }
}

fn pts(met: bool, max: u8) -> u8 {
    if met { max } else { 0 }
}

/// Scores one symbol from its three timeframes. Allocation-free.
pub fn score(inputs: &ScoreInputs, settings: &StrategySettings) -> Score {
    let (h4, h1, m15) = (&inputs.h4, &inputs.h1, &inputs.m15);
    let direction = if h4.ema_9 < h4.ema_21 { Direction::Short } else { Direction::Long };
    // Strictly ordered EMAs only: equal (flat) or NaN values are no trend and score nothing.
    let trend_met = matches!(h4.ema_9.partial_cmp(&h4.ema_21), Some(Ordering::Less | Ordering::Greater));
    let aligned = match direction {
        Direction::Long => h1.ema_9 > h1.ema_21,
        Direction::Short => h1.ema_9 < h1.ema_21,
    };
    let (rsi_min, rsi_max) = match direction {
        Direction::Long => (settings.rsi_long_min, settings.rsi_long_max),
        Direction::Short => (settings.rsi_short_min, settings.rsi_short_max),
    };
    let rsi_met = (rsi_min..=rsi_max).contains(&m15.rsi);
    let macd_met = inputs.macd_cross == Some(direction);
    let volume_met = m15.volume_ratio > settings.volume_spike_ratio;
    let swing_met = inputs.swing == Some(direction);

    let components = [
        Component {
            points: pts(trend_met, TREND_4H_POINTS),
            max_points: TREND_4H_POINTS,
            reason: Reason::Trend4h { ema_9: h4.ema_9, ema_21: h4.ema_21 },
        },
        Component {
            points: pts(aligned && trend_met, ALIGNMENT_1H_POINTS),
            max_points: ALIGNMENT_1H_POINTS,
            reason: Reason::Alignment1h { ema_9: h1.ema_9, ema_21: h1.ema_21, direction },
        },
        Component {
            points: pts(rsi_met, RSI_ZONE_POINTS),
            max_points: RSI_ZONE_POINTS,
            reason: Reason::RsiZone { rsi: m15.rsi, min: rsi_min, max: rsi_max, direction },
        },
        Component {
            points: pts(macd_met, MACD_CROSS_POINTS),
            max_points: MACD_CROSS_POINTS,
            reason: Reason::MacdCross { cross: inputs.macd_cross, window: settings.macd_cross_window, direction },
        },
        Component {
            points: pts(volume_met, VOLUME_SPIKE_POINTS),
            max_points: VOLUME_SPIKE_POINTS,
            reason: Reason::VolumeSpike { ratio: m15.volume_ratio, threshold: settings.volume_spike_ratio },
        },
        Component {
            points: pts(swing_met, PRICE_ACTION_POINTS),
            max_points: PRICE_ACTION_POINTS,
            reason: Reason::PriceAction { pattern: inputs.swing, width: settings.swing_fractal_width, direction },
        },
    ];
    let total = components.iter().map(|c| c.points).sum();
    Score { total, direction, components }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn ind(ema_9: f64, ema_21: f64, rsi: f64, volume_ratio: f64) -> Indicators {
        Indicators { ema_9, ema_21, rsi, volume_ratio, ..Indicators::default() }
    }

    #[test]
    fn perfect_long_scores_100_and_explains_itself() {
        let s = Settings::defaults().unwrap().strategy;
        let inputs = ScoreInputs {
            h4: ind(2.0, 1.0, 50.0, 1.0),
            h1: ind(2.0, 1.0, 50.0, 1.0),
            m15: ind(1.0, 1.0, 40.0, 2.0),
            macd_cross: Some(Direction::Long),
            swing: Some(Direction::Long),
        };
        let sc = score(&inputs, &s);
        assert_eq!(sc.total, 100);
        assert_eq!(sc.direction, Direction::Long);
        assert!(sc.timeframe_alignment());
        let names: Vec<&str> = sc.components.iter().map(Component::name).collect();
        assert_eq!(names, ["4h_trend", "1h_alignment", "rsi_zone", "macd_cross", "volume_spike", "price_action"]);
        assert!(sc.report()[2].reason.contains("inside the LONG zone [30, 45]"));
    }

    #[test]
    fn nan_or_equal_4h_emas_are_no_trend() {
        let s = Settings::defaults().unwrap().strategy;
        for (e9, e21) in [(f64::NAN, 1.0), (1.0, f64::NAN), (1.0, 1.0)] {
            let inputs = ScoreInputs {
                h4: ind(e9, e21, 50.0, 1.0),
                h1: ind(2.0, 1.0, 50.0, 1.0),
                m15: ind(1.0, 1.0, 50.0, 1.0),
                macd_cross: None,
                swing: None,
            };
            let sc = score(&inputs, &s);
            assert_eq!((sc.total, sc.components[0].points, sc.components[1].points), (0, 0, 0), "{e9} {e21}");
        }
    }

    #[test]
    fn short_with_only_trend_and_rsi() {
        let s = Settings::defaults().unwrap().strategy;
        let inputs = ScoreInputs {
            h4: ind(1.0, 2.0, 50.0, 1.0),
            h1: ind(2.0, 1.0, 50.0, 1.0),
            m15: ind(1.0, 1.0, 55.0, 1.5),
            macd_cross: Some(Direction::Long),
            swing: None,
        };
        let sc = score(&inputs, &s);
        assert_eq!(sc.direction, Direction::Short);
        assert_eq!(sc.total, 25 + 15);
        assert!(!sc.timeframe_alignment());
        assert_eq!(sc.components[4].points, 0, "ratio 1.5 is not above 1.5");
    }
}
