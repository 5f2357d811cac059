//! Quiet prices: the marks of one symbol that would change nothing in the core but the stored
//! mark. A replay that knows this (the backtest walks every candle as several marks, and most
//! of them move nothing) may store such a mark with [`TradingCore::observe_mark`] instead of
//! running [`TradingCore::on_mark`]; the live daemon never asks.

use rust_decimal::prelude::*;

use crate::core::models::Direction;

use super::*;

/// Relative slack of the band's floating-point checks of the loss limits: a price whose
/// equity comes within this share of a limit is not called quiet (the caller then runs the
/// exact rule in decimals). f64 sums of a few terms are off by ~1e-15 of their size.
const LIMIT_SLACK: f64 = 1e-9;

/// Powers of ten a decimal's scale (0..=28) divides by.
const POW10: [f64; 29] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22, 1e23, 1e24, 1e25, 1e26, 1e27, 1e28,
];

/// `d` as an f64 within a few units in the last place (the band's checks keep a far wider
/// slack), without the exact conversion's cost.
fn approx(d: Decimal) -> f64 {
    let scale = POW10.get(d.scale() as usize).copied().unwrap_or(1e28);
    let m = d.mantissa();
    // Prices and quantities fit an i64 mantissa, whose conversion is one instruction.
    match i64::try_from(m) {
        Ok(small) => small as f64 / scale,
        Err(_) => m as f64 / scale,
    }
}

/// The prices of one symbol at which a mark changes nothing in the core but the stored mark
/// (see [`TradingCore::quiet_band`] and [`TradingCore::quiet_band_at`]).
#[derive(Debug, Clone, PartialEq)]
pub struct QuietBand {
    /// Open interval of prices, and its ends as f64 (for a quick answer away from them).
    low: Decimal,
    high: Decimal,
    low_f: f64,
    high_f: f64,
    /// Unrealized PnL of the portfolio at price `p` of this symbol: `base + slope * p`.
    base: f64,
    slope: f64,
    wallet: f64,
    emergency_loss: f64,
    /// The daily loss limit, unless it already latched today: (day's starting equity, net
    /// transfers today, limit as a fraction).
    daily: Option<(f64, f64, f64)>,
}

impl QuietBand {
    /// Narrows the interval to `(low, high)` as well (the exchange's own levels: resting
    /// stops, liquidation).
    pub fn narrow(&mut self, low: Decimal, high: Decimal) {
        self.low = self.low.max(low);
        self.high = self.high.min(high);
        self.low_f = approx(self.low);
        self.high_f = approx(self.high);
    }

    /// `low < price < high`, decided in f64 when the price is clearly away from both ends
    /// (the conversions are off by a few units in the last place), else in decimals.
    fn inside(&self, price: Decimal, p: f64) -> bool {
        const REL: f64 = 1e-12;
        let near = |end: f64| (p - end).abs() <= REL * (p.abs() + end.abs());
        if near(self.low_f) || near(self.high_f) {
            return price > self.low && price < self.high;
        }
        p > self.low_f && p < self.high_f
    }

    /// True when a mark at `price` changes nothing but the stored mark: strictly inside the
    /// interval, and clearly away from the emergency rule and the daily loss limit.
    pub fn contains(&self, price: Decimal) -> bool {
        let p = approx(price);
        if !self.inside(price, p) {
            return false;
        }
        let upnl = self.base + self.slope * p;
        let equity = self.wallet + upnl;
        let slack = LIMIT_SLACK * (1.0 + self.wallet.abs() + self.base.abs() + (self.slope * p).abs() + equity.abs());
        // The emergency rule fires when upnl < 0 and upnl <= -(max(equity, 0) * limit).
        let clear_of_emergency = upnl > slack || upnl > -(equity.max(0.0) * self.emergency_loss) + slack;
        if !clear_of_emergency {
            return false;
        }
        match self.daily {
            None => true,
            Some((day_start, transfers, limit)) => {
                // The daily limit latches when today's PnL < 0 and <= -(day start * limit).
                let pnl = equity - day_start - transfers;
                let slack = slack + LIMIT_SLACK * (day_start.abs() + transfers.abs());
                pnl > slack || pnl > -(day_start * limit) + slack
            }
        }
    }
}

impl TradingCore {
    /// The band of quiet prices of `symbol` in the core's present state, for marks at the same
    /// `now` as the mark just handled: `None` unless the symbol holds a position whose ladder
    /// has a quiet band and nothing else is going on for it (no request in flight, no read,
    /// lookup, trim or fired stop pending, its one stop resting as it should, no emergency).
    ///
    /// Inside the band `on_mark` would: find the emergency rule and the daily limit not
    /// reached (checked in the band), run the ladder to no effect (its quiet band), find the
    /// stop in order, and store the mark. Everything else it does depends on `now` only, and
    /// was done by the mark before at the same `now`.
    pub fn quiet_band(&self, symbol: &str) -> Option<QuietBand> {
        if self.emergency_flatten
            || self.pm.emergency().is_some()
            || !self.idle(symbol)
            || self.needs_read.contains(symbol)
            || self.stop_lookups.contains_key(symbol)
            || self.pending_trims.contains_key(symbol)
            || self.awaiting_stop.contains_key(symbol)
            || self.fired_stops.contains_key(symbol)
            || self.before_close.contains_key(symbol)
            || self.unknown_closes.contains_key(symbol)
            || !self.protection_in_order(symbol)
        {
            return None;
        }
        let (low, high) = self.pm.position(symbol)?.quiet_band()?;
        // The portfolio's unrealized PnL as `exposure_with` sums it, with this symbol's price
        // left as the variable.
        let (mut base, mut slope) = (0.0, 0.0);
        for t in self.exposure_terms() {
            let (entry, qty) = (approx(t.entry), approx(t.qty));
            let sign = match t.direction {
                Direction::Long => 1.0,
                Direction::Short => -1.0,
            };
            if t.symbol == symbol {
                slope += qty * sign;
                base -= entry * qty * sign;
            } else {
                base += (approx(t.mark) - entry) * qty * sign;
            }
        }
        let risk = &self.pm.risk;
        let daily = (!risk.daily_latched)
            .then(|| (approx(risk.day_start_equity), approx(risk.day_net_transfers), approx(self.limits.daily_loss)));
        Some(QuietBand {
            low,
            high,
            low_f: approx(low),
            high_f: approx(high),
            base,
            slope,
            wallet: approx(self.account.wallet_balance),
            emergency_loss: approx(self.limits.emergency_loss),
            daily,
        })
    }

    /// The band for the first mark at a new `now`, taken from the state the events before it
    /// left. Of what `on_mark` does with `now`, only the day roll of the risk book can matter
    /// to a quiet symbol (nothing is in flight for it, no stop of it fired, no emergency latch
    /// to clear, and the mark it stores is fresh): so `None` when `now` starts a new UTC day.
    pub fn quiet_band_at(&self, symbol: &str, now: TimestampMs) -> Option<QuietBand> {
        if crate::manager::risk_checks::utc_day(now) != self.pm.risk.day {
            return None;
        }
        self.quiet_band(symbol)
    }
}
