//! The simulated fill model shared by the backtest and (later) the daemon's paper exchange:
//! market fills with slippage, taker/maker fees, funding payments and the isolated-margin
//! liquidation price. Plain functions over `Decimal`, no state, no I/O, no clock.
//!
//! Rules (documented here because reports and tests rely on them):
//! - **Slippage** moves every market fill against the trader by `slippage` (a fraction of the
//!   price): buys fill higher, sells lower, then the price is rounded to the tick, again against
//!   the trader (buys up, sells down).
//! - **Fees** are `|notional| × rate`; market orders (entries, take-profits, stops, emergency
//!   and end-of-data closes) pay the taker rate, resting limit orders the maker rate.
//! - **Funding** is paid every 8 h (00:00, 08:00, 16:00 UTC) on the open quantity at the mark
//!   price: `payment = qty × mark × rate`, paid by longs and received by shorts when the rate
//!   is positive (the other way round when it is negative). A positive return value is a cost.
//! - **Liquidation** (isolated margin, one-way mode): the position's margin is
//!   `entry × qty / leverage`; the exchange liquidates when the loss reaches the margin minus
//!   the maintenance margin `mark × qty × mmr`. Solving for the price gives
//!   long `entry × (1 − 1/L) / (1 − mmr)` and short `entry × (1 + 1/L) / (1 + mmr)` (Binance's
//!   formula for one position without the bracket's `cum` amount). The liquidated trader
//!   loses the whole isolated margin: the close is booked at the bankruptcy price
//!   `entry × (1 ∓ 1/L)`, where the gap between the two prices is the clearance fee the
//!   insurance fund keeps; no separate trading fee is charged on it.

use rust_decimal::prelude::*;

use crate::core::models::{Direction, Side, round_to_increment};

/// Funding settles at these hours (UTC), every 8 h.
pub const FUNDING_INTERVAL_MS: i64 = 8 * 3_600_000;

/// The cost side of the simulated exchange, as fractions (0.05 % → 0.0005).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FillModel {
    pub taker_fee: Decimal,
    pub maker_fee: Decimal,
    pub slippage: Decimal,
}

impl FillModel {
    /// From percentages as written in the config (`paper.taker_fee_pct` ...); `None` if one is
    /// not finite or negative.
    pub fn from_pct(taker_fee_pct: f64, maker_fee_pct: f64, slippage_pct: f64) -> Option<Self> {
        let frac = |p: f64| {
            if !p.is_finite() || p < 0.0 {
                return None;
            }
            Decimal::from_f64(p).map(|d| d / Decimal::ONE_HUNDRED)
        };
        Some(FillModel {
            taker_fee: frac(taker_fee_pct)?,
            maker_fee: frac(maker_fee_pct)?,
            slippage: frac(slippage_pct)?,
        })
    }

    /// The fill price of a market order of `side` at reference `price` (see module rules).
    pub fn market_fill_price(&self, side: Side, price: Decimal, tick: Decimal) -> Decimal {
        market_fill_price(side, price, self.slippage, tick)
    }

    /// Taker fee of a fill.
    pub fn taker_fee_for(&self, qty: Decimal, price: Decimal) -> Decimal {
        fee(qty * price, self.taker_fee)
    }

    /// Maker fee of a fill.
    pub fn maker_fee_for(&self, qty: Decimal, price: Decimal) -> Decimal {
        fee(qty * price, self.maker_fee)
    }
}

/// A candle price (`f64`, parsed from text) as money at `scale` decimal places (the tick's):
/// exact for prices on the tick grid and much cheaper than a general float conversion, which
/// matters because every candle of a symbol with a position goes through it. Falls back to
/// the general conversion for values out of `i64` range.
pub fn price_from_f64(x: f64, scale: u32) -> Decimal {
    let scaled = x * 10f64.powi(scale.min(18) as i32);
    if scaled.is_finite() && scaled.abs() < 9.0e15 {
        Decimal::new(scaled.round() as i64, scale.min(18))
    } else {
        Decimal::from_f64(x).unwrap_or(Decimal::ZERO)
    }
}

/// `price` moved against a market order of `side` by `slippage` and rounded to `tick` against
/// the trader. Never below one tick.
pub fn market_fill_price(side: Side, price: Decimal, slippage: Decimal, tick: Decimal) -> Decimal {
    let (raw, rounding) = match side {
        Side::Buy => (price * (Decimal::ONE + slippage), RoundingStrategy::AwayFromZero),
        Side::Sell => (price * (Decimal::ONE - slippage), RoundingStrategy::ToZero),
    };
    let p = round_to_increment(raw, tick, rounding);
    if p <= Decimal::ZERO { tick.max(Decimal::new(1, 8)) } else { p }
}

/// Fee of `notional` at `rate` (a fraction).
pub fn fee(notional: Decimal, rate: Decimal) -> Decimal {
    notional.abs() * rate
}

/// Funding paid (positive) or received (negative) by a position of `qty` at `mark` for a
/// funding `rate` (a fraction, e.g. 0.0001 for 0.01 %).
pub fn funding_payment(direction: Direction, qty: Decimal, mark: Decimal, rate: Decimal) -> Decimal {
    qty.abs() * mark * rate * direction.sign()
}

/// True when `t` (ms) is a funding settlement time (00/08/16 UTC).
pub fn is_funding_time(t: i64) -> bool {
    t.rem_euclid(FUNDING_INTERVAL_MS) == 0
}

/// The isolated margin of `qty` entered at `entry` with `leverage`.
pub fn isolated_margin(entry: Decimal, qty: Decimal, leverage: u32) -> Decimal {
    entry * qty.abs() / Decimal::from(leverage.max(1))
}

/// The price at which the exchange liquidates (see module rules); `mmr` is the maintenance
/// margin rate as a fraction (0.005 = 0.5 %).
pub fn liquidation_price(direction: Direction, entry: Decimal, leverage: u32, mmr: Decimal) -> Decimal {
    let inv = Decimal::ONE / Decimal::from(leverage.max(1));
    match direction {
        Direction::Long => {
            let denom = Decimal::ONE - mmr;
            if denom <= Decimal::ZERO { entry } else { (entry * (Decimal::ONE - inv) / denom).max(Decimal::ZERO) }
        }
        Direction::Short => entry * (Decimal::ONE + inv) / (Decimal::ONE + mmr),
    }
}

/// The price at which the position's loss equals its whole isolated margin.
pub fn bankruptcy_price(direction: Direction, entry: Decimal, leverage: u32) -> Decimal {
    let inv = Decimal::ONE / Decimal::from(leverage.max(1));
    match direction {
        Direction::Long => (entry * (Decimal::ONE - inv)).max(Decimal::ZERO),
        Direction::Short => entry * (Decimal::ONE + inv),
    }
}

/// True when `price` is at or beyond `level` against the position (long: at or below).
pub fn is_adverse_beyond(direction: Direction, price: Decimal, level: Decimal) -> bool {
    match direction {
        Direction::Long => price <= level,
        Direction::Short => price >= level,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn slippage_and_rounding_go_against_the_trader() {
        assert_eq!(market_fill_price(Side::Buy, dec!(100), dec!(0.0002), dec!(0.01)), dec!(100.02));
        assert_eq!(market_fill_price(Side::Sell, dec!(100), dec!(0.0002), dec!(0.01)), dec!(99.98));
        assert_eq!(market_fill_price(Side::Buy, dec!(100.001), dec!(0), dec!(0.01)), dec!(100.01));
        assert_eq!(market_fill_price(Side::Sell, dec!(100.009), dec!(0), dec!(0.01)), dec!(100));
    }

    #[test]
    fn candle_prices_convert_exactly_at_tick_precision() {
        assert_eq!(price_from_f64(78706.7, 1), dec!(78706.7));
        assert_eq!(price_from_f64(0.10588, 5), dec!(0.10588));
        assert_eq!(price_from_f64(1.5361, 4), dec!(1.5361));
        assert_eq!(price_from_f64(100.0, 2), dec!(100));
        assert_eq!(price_from_f64(1e300, 2), Decimal::from_f64(1e300).unwrap_or(Decimal::ZERO));
    }

    #[test]
    fn fees_and_funding() {
        let m = FillModel::from_pct(0.05, 0.02, 0.02).unwrap();
        assert_eq!(m.taker_fee_for(dec!(2), dec!(100)), dec!(0.1));
        assert_eq!(m.maker_fee_for(dec!(2), dec!(100)), dec!(0.04));
        assert_eq!(funding_payment(Direction::Long, dec!(2), dec!(100), dec!(0.0001)), dec!(0.02));
        assert_eq!(funding_payment(Direction::Short, dec!(2), dec!(100), dec!(0.0001)), dec!(-0.02));
        assert_eq!(funding_payment(Direction::Short, dec!(2), dec!(100), dec!(-0.0001)), dec!(0.02));
        assert!(is_funding_time(1_700_006_400_000));
        assert!(!is_funding_time(1_700_006_400_000 + 900_000));
    }

    #[test]
    fn liquidation_and_bankruptcy_prices() {
        // 10x long from 100 with 0.5 % maintenance: 90 / 0.995.
        let liq = liquidation_price(Direction::Long, dec!(100), 10, dec!(0.005));
        assert!((liq - dec!(90.4522613)).abs() < dec!(0.0001));
        assert_eq!(bankruptcy_price(Direction::Long, dec!(100), 10), dec!(90));
        let liq = liquidation_price(Direction::Short, dec!(100), 10, dec!(0.005));
        assert!((liq - dec!(109.4527363)).abs() < dec!(0.0001));
        assert_eq!(bankruptcy_price(Direction::Short, dec!(100), 10), dec!(110));
        // The loss at the bankruptcy price is exactly the isolated margin.
        let margin = isolated_margin(dec!(100), dec!(3), 10);
        assert_eq!((dec!(100) - bankruptcy_price(Direction::Long, dec!(100), 10)) * dec!(3), margin);
        assert!(is_adverse_beyond(Direction::Long, dec!(90), dec!(90.45)));
        assert!(!is_adverse_beyond(Direction::Short, dec!(90), dec!(109)));
    }
}
