//! Leverage mapping and position sizing (DESIGN.md section 2), in `Decimal` and by the
//! symbol's filters.
//!
//! Owns the arithmetic of "how big and how levered". It must not check portfolio limits (that
//! is `risk_checks`), place orders or read clocks.

use std::fmt;

use rust_decimal::prelude::*;

use crate::config::{LeverageTier, SizingTier};
use crate::core::models::{SymbolFilters, decimal_from_f64};

/// High volatility: 1h ATR / close ≥ `risk.high_volatility_atr_pct` percent. Unusable inputs
/// (non-positive close, NaN) count as high volatility, the cautious reading.
pub fn is_high_volatility(atr_1h: f64, close_1h: f64, threshold_pct: f64) -> bool {
    if !(atr_1h.is_finite() && close_1h.is_finite() && close_1h > 0.0) {
        return true;
    }
    atr_1h / close_1h * 100.0 >= threshold_pct
}

/// Leverage for a confidence: the last tier whose `min_confidence` ≤ `confidence`, its normal
/// or high-volatility column, clamped to `max_leverage` (0 = no symbol limit) and at least 1.
/// `None` below the first tier.
pub fn leverage_for(confidence: u8, high_volatility: bool, tiers: &[LeverageTier], max_leverage: u32) -> Option<u32> {
    let tier = tiers.iter().rev().find(|t| confidence >= t.min_confidence)?;
    let lev = if high_volatility { tier.high_volatility_leverage } else { tier.leverage };
    let lev = if max_leverage > 0 { lev.min(max_leverage) } else { lev };
    Some(lev.max(1))
}

/// The sizing tier for a confidence (last tier at or below it).
pub fn sizing_tier(confidence: u8, tiers: &[SizingTier]) -> Option<&SizingTier> {
    tiers.iter().rev().find(|t| confidence >= t.min_confidence)
}

/// A sized order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sizing {
    /// Quantity, a multiple of the market step.
    pub qty: Decimal,
    /// `qty × entry`.
    pub notional: Decimal,
    /// Equity lost if the stop is hit (before fees): `qty × |entry − stop|`.
    pub risk_amount: Decimal,
    /// The notional cap (or the market max quantity) was binding.
    pub capped: bool,
    /// The notional cap: `equity × max_notional_pct`.
    pub max_notional: Decimal,
}

/// Why no order is sized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizingSkip {
    NoTier { confidence: u8 },
    InvalidInput(&'static str),
    BelowMinQty { qty: Decimal, min_qty: Decimal },
    BelowMinNotional { notional: Decimal, min_notional: Decimal },
}

impl fmt::Display for SizingSkip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizingSkip::NoTier { confidence } => write!(f, "no sizing tier for confidence {confidence}"),
            SizingSkip::InvalidInput(why) => write!(f, "cannot size: {why}"),
            SizingSkip::BelowMinQty { qty, min_qty } => write!(f, "quantity {qty} below the minimum {min_qty}"),
            SizingSkip::BelowMinNotional { notional, min_notional } => {
                write!(f, "notional {notional} below the minimum {min_notional}")
            }
        }
    }
}

/// qty = equity × risk% / |entry − stop|, notional capped at max_notional% of equity, capped
/// at the market max quantity, rounded DOWN to the market step; skipped below the minimum
/// quantity or minimum notional.
///
/// # Errors
/// [`SizingSkip`] with the reason no order should be sent.
pub fn size_position(
    equity: Decimal,
    confidence: u8,
    entry: Decimal,
    stop: Decimal,
    tiers: &[SizingTier],
    filters: &SymbolFilters,
) -> Result<Sizing, SizingSkip> {
    let tier = sizing_tier(confidence, tiers).ok_or(SizingSkip::NoTier { confidence })?;
    if equity <= Decimal::ZERO {
        return Err(SizingSkip::InvalidInput("equity is not positive"));
    }
    if entry <= Decimal::ZERO {
        return Err(SizingSkip::InvalidInput("entry price is not positive"));
    }
    let risk_per_unit = (entry - stop).abs();
    if risk_per_unit.is_zero() {
        return Err(SizingSkip::InvalidInput("stop equals entry"));
    }
    let hundred = Decimal::ONE_HUNDRED;
    let risk_frac = decimal_from_f64(tier.risk_pct).ok_or(SizingSkip::InvalidInput("risk_pct"))? / hundred;
    let cap_frac =
        decimal_from_f64(tier.max_notional_pct).ok_or(SizingSkip::InvalidInput("max_notional_pct"))? / hundred;
    let overflow = SizingSkip::InvalidInput("numbers out of range");
    let risk_qty = equity.checked_mul(risk_frac).and_then(|r| r.checked_div(risk_per_unit)).ok_or(overflow.clone())?;
    let max_notional = equity.checked_mul(cap_frac).ok_or(overflow.clone())?;
    let cap_qty = max_notional.checked_div(entry).ok_or(overflow.clone())?;
    let mut qty = risk_qty.min(cap_qty);
    let mut capped = cap_qty < risk_qty;
    let max_qty = filters.market_max_qty();
    if max_qty > Decimal::ZERO && qty > max_qty {
        qty = max_qty;
        capped = true;
    }
    let qty = filters.floor_market_qty(qty);
    let min_qty = filters.market_min_qty();
    if qty <= Decimal::ZERO || qty < min_qty {
        return Err(SizingSkip::BelowMinQty { qty, min_qty });
    }
    let notional = qty.checked_mul(entry).ok_or(overflow.clone())?;
    if notional < filters.min_notional {
        return Err(SizingSkip::BelowMinNotional { notional, min_notional: filters.min_notional });
    }
    let risk_amount = qty.checked_mul(risk_per_unit).ok_or(overflow)?;
    Ok(Sizing { qty, notional, risk_amount, capped, max_notional })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use rust_decimal_macros::dec;

    fn filters() -> SymbolFilters {
        crate::core::models::btcusdt_test_filters()
    }

    #[test]
    fn risk_based_size_and_cap() {
        let r = Settings::defaults().unwrap().risk;
        // 10000 × 1 % / 30 = 3.333… → cap 20 % × 10000 / 1000 = 2 → capped at 2.
        let s = size_position(dec!(10000), 65, dec!(1000), dec!(970), &r.sizing_tiers, &filters()).unwrap();
        assert_eq!(s.qty, dec!(2));
        assert!(s.capped);
        // Wide stop: 10000 × 1 % / 100 = 1 (not capped).
        let s = size_position(dec!(10000), 65, dec!(1000), dec!(1100), &r.sizing_tiers, &filters()).unwrap();
        assert_eq!((s.qty, s.notional, s.risk_amount, s.capped), (dec!(1), dec!(1000), dec!(100), false));
        // Too small for min notional.
        let e = size_position(dec!(300), 65, dec!(1000), dec!(990), &r.sizing_tiers, &filters()).unwrap_err();
        assert!(matches!(e, SizingSkip::BelowMinNotional { .. }), "{e}");
        assert!(matches!(
            size_position(dec!(10000), 59, dec!(1000), dec!(990), &r.sizing_tiers, &filters()),
            Err(SizingSkip::NoTier { .. })
        ));
    }

    #[test]
    fn leverage_clamps_to_symbol_max() {
        let r = Settings::defaults().unwrap().risk;
        assert_eq!(leverage_for(95, false, &r.leverage_tiers, 8), Some(8));
        assert_eq!(leverage_for(95, false, &r.leverage_tiers, 0), Some(20));
        assert!(is_high_volatility(2.0, 100.0, 2.0));
        assert!(!is_high_volatility(1.99, 100.0, 2.0));
    }
}
