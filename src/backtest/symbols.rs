//! Trading rules of the simulated symbols: tick, step, minimum notional, bracket leverage and
//! maintenance margin rate.
//!
//! The five shipped symbols carry the real values from Binance's `GET /fapi/v1/exchangeInfo`
//! (capture of 2025-12-24, `shared/data/binance/rest/exchangeInfo.json`) and the first
//! notional bracket of `GET /fapi/v1/leverageBracket`. Any other symbol gets rules derived
//! from its first price (documented in [`derived_rules`]) so synthetic or downloaded data can
//! be replayed without an exchange-info file.

use rust_decimal::prelude::*;

use crate::core::models::SymbolFilters;

/// The rules the simulator needs for one symbol.
#[derive(Debug, Clone, PartialEq)]
pub struct SymbolRules {
    pub filters: SymbolFilters,
    /// Maintenance margin rate of the first bracket, a fraction.
    pub maint_margin_rate: Decimal,
}

impl SymbolRules {
    /// Decimal places of the tick (0.10 → 1): candle prices are converted to money at this
    /// precision ([`crate::backtest::sim::price_from_f64`]).
    pub fn price_scale(&self) -> u32 {
        self.filters.tick_size.normalize().scale()
    }
}

/// One row of the built-in table: decimals as (mantissa, scale).
struct Known {
    symbol: &'static str,
    tick: (i64, u32),
    step: (i64, u32),
    min_notional: i64,
    max_leverage: u32,
    /// Maintenance margin rate in per mille.
    mmr_permille: i64,
}

const KNOWN: [Known; 5] = [
    Known { symbol: "BTCUSDT", tick: (10, 2), step: (1, 3), min_notional: 100, max_leverage: 125, mmr_permille: 4 },
    Known { symbol: "ETHUSDT", tick: (1, 2), step: (1, 3), min_notional: 20, max_leverage: 125, mmr_permille: 4 },
    Known { symbol: "SOLUSDT", tick: (1, 2), step: (1, 0), min_notional: 5, max_leverage: 100, mmr_permille: 5 },
    Known { symbol: "XRPUSDT", tick: (1, 4), step: (1, 1), min_notional: 5, max_leverage: 75, mmr_permille: 5 },
    Known { symbol: "DOGEUSDT", tick: (1, 5), step: (1, 0), min_notional: 5, max_leverage: 75, mmr_permille: 5 },
];

fn filters(symbol: &str, tick: Decimal, step: Decimal, min_notional: Decimal, max_leverage: u32) -> SymbolFilters {
    SymbolFilters {
        symbol: symbol.to_string(),
        tick_size: tick,
        min_price: tick,
        max_price: Decimal::ZERO,
        step_size: step,
        min_qty: step,
        max_qty: Decimal::ZERO,
        market_step_size: step,
        market_min_qty: step,
        market_max_qty: Decimal::ZERO,
        min_notional,
        percent_price_up: Decimal::new(105, 2),
        percent_price_down: Decimal::new(95, 2),
        max_leverage,
    }
}

/// The real rules of a shipped symbol, if known.
pub fn known_rules(symbol: &str) -> Option<SymbolRules> {
    KNOWN.iter().find(|k| k.symbol == symbol).map(|k| SymbolRules {
        filters: filters(
            k.symbol,
            Decimal::new(k.tick.0, k.tick.1),
            Decimal::new(k.step.0, k.step.1),
            Decimal::from(k.min_notional),
            k.max_leverage,
        ),
        maint_margin_rate: Decimal::new(k.mmr_permille, 3),
    })
}

/// Rules for a symbol Binance's capture does not cover, from its first traded `price`:
/// tick = the power of ten nearest to `price × 1e-5` (≈ 5 significant digits, like most
/// USDⓈ-M contracts), step = the power of ten nearest to `1 / price` (one step ≈ 1 USDT or
/// less), minimum notional 5 USDT, maximum leverage 50x, maintenance margin 0.5 %.
pub fn derived_rules(symbol: &str, price: f64) -> SymbolRules {
    let pow10 = |x: f64| -> Decimal {
        if !(x.is_finite() && x > 0.0) {
            return Decimal::new(1, 8);
        }
        let e = x.log10().round().clamp(-8.0, 6.0) as i32;
        if e >= 0 { Decimal::from(10i64.pow(e.unsigned_abs())) } else { Decimal::new(1, e.unsigned_abs()) }
    };
    SymbolRules {
        filters: filters(symbol, pow10(price * 1e-5), pow10(1.0 / price), Decimal::from(5), 50),
        maint_margin_rate: Decimal::new(5, 3),
    }
}

/// The known rules, else the derived ones.
pub fn rules_for(symbol: &str, first_price: f64) -> SymbolRules {
    known_rules(symbol).unwrap_or_else(|| derived_rules(symbol, first_price))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn shipped_symbols_have_exchange_values() {
        let btc = known_rules("BTCUSDT").unwrap();
        assert_eq!(btc.filters.tick_size, dec!(0.10));
        assert_eq!(btc.filters.step_size, dec!(0.001));
        assert_eq!(btc.filters.min_notional, dec!(100));
        assert_eq!(btc.filters.max_leverage, 125);
        assert_eq!(btc.maint_margin_rate, dec!(0.004));
        let doge = known_rules("DOGEUSDT").unwrap();
        assert_eq!(doge.filters.tick_size, dec!(0.00001));
        assert_eq!(doge.filters.step_size, dec!(1));
        assert_eq!(doge.maint_margin_rate, dec!(0.005));
        let xrp = known_rules("XRPUSDT").unwrap();
        assert_eq!(xrp.filters.tick_size, dec!(0.0001));
        assert_eq!(xrp.filters.step_size, dec!(0.1));
    }

    #[test]
    fn derived_rules_scale_with_price() {
        let r = derived_rules("FOOUSDT", 65_000.0);
        assert_eq!(r.filters.tick_size, dec!(1));
        assert_eq!(r.filters.step_size, dec!(0.00001));
        let r = derived_rules("BARUSDT", 0.2);
        assert_eq!(r.filters.tick_size, dec!(0.000001));
        assert_eq!(r.filters.step_size, dec!(10));
    }
}
