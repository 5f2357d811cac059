//! The five pre-trade risk checks (DESIGN.md section 2) and the small book of risk state they
//! read (today's PnL, loss streak, symbol cooldowns). Every check is always evaluated and
//! reported, none short-circuits the others; a trade goes ahead only if all five pass.
//!
//! Owns the portfolio-level "may we open this?" decision. It must not size orders, read
//! clocks (`now` comes in) or talk to the exchange.

use std::collections::BTreeMap;

use rust_decimal::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::RiskSettings;
use crate::core::models::{TimestampMs, decimal_from_f64};

const DAY_MS: i64 = 86_400_000;
const MINUTE_MS: i64 = 60_000;

/// UTC day number of a timestamp.
pub fn utc_day(t: TimestampMs) -> i64 {
    t.div_euclid(DAY_MS)
}

/// The account as the checks see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortfolioSnapshot {
    /// Wallet balance + unrealized PnL.
    pub equity: Decimal,
    /// Balance free for new initial margin.
    pub available_balance: Decimal,
    pub open_positions: usize,
    /// Sum of |notional| of open positions at current prices.
    pub open_notional: Decimal,
    /// Total unrealized PnL of open positions.
    pub unrealized_pnl: Decimal,
}

/// The trade being considered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeIntent<'a> {
    pub symbol: &'a str,
    pub notional: Decimal,
    pub leverage: u32,
    /// The symbol already has an open position or a pending entry order.
    pub symbol_busy: bool,
}

impl TradeIntent<'_> {
    /// Initial margin of the new position: notional / leverage.
    pub fn initial_margin(&self) -> Decimal {
        self.notional / Decimal::from(self.leverage.max(1))
    }
}

/// One check's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RiskCheck {
    pub name: &'static str,
    pub passed: bool,
    pub reason: String,
}

/// All five verdicts, in DESIGN.md order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RiskReport {
    pub checks: [RiskCheck; 5],
}

impl RiskReport {
    /// True only when all five checks passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// The reasons of the failed checks, joined.
    pub fn failures(&self) -> String {
        self.checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("{}: {}", c.name, c.reason))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Risk state kept across trades: today's starting equity and latch, the loss streak, symbol
/// cooldowns. Serializable: the live daemon journals it on every change and restores it at
/// start, so a restart never forgets a breached daily limit, a loss pause or a cooldown.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RiskBook {
    pub day: i64,
    pub day_start_equity: Decimal,
    /// Net deposits minus withdrawals since the day started: they move equity without being
    /// profit or loss, so today's PnL subtracts them.
    #[serde(default)]
    pub day_net_transfers: Decimal,
    /// PnL realized today (net of fees), for reporting; the daily check uses equity.
    pub day_realized_pnl: Decimal,
    /// Check 3 breached today: no new entries until the next UTC day.
    pub daily_latched: bool,
    pub consecutive_losses: u32,
    /// Check 5: entries paused until this time.
    pub loss_pause_until: Option<TimestampMs>,
    /// Check 2: symbol → end of its cooldown after a close.
    pub symbol_cooldowns: BTreeMap<String, TimestampMs>,
}

fn pct(v: f64) -> Decimal {
    decimal_from_f64(v).unwrap_or(Decimal::ZERO) / Decimal::ONE_HUNDRED
}

/// The daily-loss and emergency limits as fractions, converted once (the rules run at every
/// mark price).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LossLimits {
    pub daily_loss: Decimal,
    pub emergency_loss: Decimal,
}

impl LossLimits {
    pub fn of(settings: &RiskSettings) -> Self {
        LossLimits { daily_loss: pct(settings.daily_loss_limit_pct), emergency_loss: pct(settings.emergency_loss_pct) }
    }

    /// The emergency rule: unrealized PnL at or below −`emergency_loss` of equity.
    pub fn emergency(&self, unrealized_pnl: Decimal, equity: Decimal) -> bool {
        unrealized_pnl < Decimal::ZERO && unrealized_pnl <= -(equity.max(Decimal::ZERO) * self.emergency_loss)
    }
}

impl RiskBook {
    pub fn new(now: TimestampMs, equity: Decimal) -> Self {
        RiskBook { day: utc_day(now), day_start_equity: equity, ..RiskBook::default() }
    }

    /// Starts a new UTC day when `now` is past the current one: the day's starting equity is
    /// `equity`, realized PnL resets and the daily latch clears.
    pub fn roll_day(&mut self, now: TimestampMs, equity: Decimal) {
        let day = utc_day(now);
        if day != self.day {
            self.day = day;
            self.day_start_equity = equity;
            self.day_net_transfers = Decimal::ZERO;
            self.day_realized_pnl = Decimal::ZERO;
            self.daily_latched = false;
        }
    }

    /// Today's PnL (DESIGN check 3): current equity (wallet + unrealized) minus the day's
    /// starting equity, corrected for deposits and withdrawals. Everything that moved equity
    /// today counts on the day it happened: realized and unrealized PnL, fees, funding.
    pub fn today_pnl(&self, equity: Decimal) -> Decimal {
        equity - self.day_start_equity - self.day_net_transfers
    }

    /// A deposit (positive) or withdrawal (negative) of `amount` today.
    pub fn record_transfer(&mut self, amount: Decimal) {
        self.day_net_transfers += amount;
    }

    /// Latches check 3 when today's PnL at `equity` has reached the daily loss limit. Returns
    /// true when this call latched it.
    pub fn observe(&mut self, equity: Decimal, settings: &RiskSettings) -> bool {
        self.observe_limit(equity, &LossLimits::of(settings))
    }

    /// [`RiskBook::observe`] with the limits converted already.
    pub fn observe_limit(&mut self, equity: Decimal, limits: &LossLimits) -> bool {
        if self.daily_latched {
            return false;
        }
        let pnl = self.today_pnl(equity);
        if pnl < Decimal::ZERO && pnl <= -(self.day_start_equity * limits.daily_loss) {
            self.daily_latched = true;
            return true;
        }
        false
    }

    /// Books a closed position: realized PnL, the symbol cooldown and the loss streak. After
    /// `max_consecutive_losses` losses in a row entries pause for `loss_cooldown_mins` and the
    /// streak starts again from zero; a win (or break-even) resets the streak.
    pub fn record_close(&mut self, symbol: &str, pnl: Decimal, now: TimestampMs, settings: &RiskSettings) {
        self.day_realized_pnl += pnl;
        let cooldown = i64::try_from(settings.symbol_cooldown_mins).unwrap_or(i64::MAX / MINUTE_MS) * MINUTE_MS;
        self.symbol_cooldowns.insert(symbol.to_string(), now.saturating_add(cooldown));
        if pnl < Decimal::ZERO {
            self.consecutive_losses += 1;
            if self.consecutive_losses >= settings.max_consecutive_losses {
                let pause = i64::try_from(settings.loss_cooldown_mins).unwrap_or(i64::MAX / MINUTE_MS) * MINUTE_MS;
                self.loss_pause_until = Some(now.saturating_add(pause));
                self.consecutive_losses = 0;
            }
        } else {
            self.consecutive_losses = 0;
        }
    }

    /// Runs all five checks for `intent`. Never short-circuits.
    pub fn evaluate(
        &self,
        snap: &PortfolioSnapshot,
        intent: &TradeIntent<'_>,
        settings: &RiskSettings,
        now: TimestampMs,
    ) -> RiskReport {
        let max_pos = settings.max_open_positions;
        let c1 = RiskCheck {
            name: "max_open_positions",
            passed: snap.open_positions < max_pos,
            reason: format!("{} open positions, limit {max_pos}", snap.open_positions),
        };

        let cooldown_until = self.symbol_cooldowns.get(intent.symbol).copied().filter(|&t| now < t);
        let c2 = RiskCheck {
            name: "symbol_free",
            passed: !intent.symbol_busy && cooldown_until.is_none(),
            reason: if intent.symbol_busy {
                format!("{} already has a position or pending entry", intent.symbol)
            } else if let Some(t) = cooldown_until {
                format!("{} in cooldown for {} more min", intent.symbol, (t - now + MINUTE_MS - 1) / MINUTE_MS)
            } else {
                format!("{} has no position, pending entry or cooldown", intent.symbol)
            },
        };

        let today = self.today_pnl(snap.equity);
        let limit = self.day_start_equity * pct(settings.daily_loss_limit_pct);
        let within = today > -limit;
        let c3 = RiskCheck {
            name: "daily_loss_limit",
            passed: within && !self.daily_latched,
            reason: if self.daily_latched && within {
                format!("daily loss limit breached earlier today; today's PnL {today:.2}")
            } else {
                format!("today's PnL {today:.2} vs limit -{limit:.2}")
            },
        };

        let exposure_cap = snap.equity * pct(settings.max_total_exposure_pct);
        let total = snap.open_notional + intent.notional;
        let margin_needed = intent.initial_margin() * (Decimal::ONE + pct(settings.margin_buffer_pct));
        let exposure_ok = total <= exposure_cap;
        let margin_ok = snap.available_balance >= margin_needed;
        let c4 = RiskCheck {
            name: "exposure_and_margin",
            passed: exposure_ok && margin_ok && intent.notional > Decimal::ZERO,
            reason: format!(
                "exposure {total:.2} of cap {exposure_cap:.2}; margin {:.2} with buffer {margin_needed:.2} vs available {:.2}",
                intent.initial_margin(),
                snap.available_balance
            ),
        };

        let paused = self.loss_pause_until.filter(|&t| now < t);
        let c5 = RiskCheck {
            name: "loss_streak",
            passed: paused.is_none(),
            reason: match paused {
                Some(t) => format!(
                    "{} losses in a row: paused for {} more min",
                    settings.max_consecutive_losses,
                    (t - now + MINUTE_MS - 1) / MINUTE_MS
                ),
                None => {
                    format!("{} consecutive losses, limit {}", self.consecutive_losses, settings.max_consecutive_losses)
                }
            },
        };
        RiskReport { checks: [c1, c2, c3, c4, c5] }
    }
}

/// Emergency rule: total unrealized PnL ≤ −`risk.emergency_loss_pct` % of current equity.
pub fn emergency_triggered(unrealized_pnl: Decimal, equity: Decimal, settings: &RiskSettings) -> bool {
    LossLimits::of(settings).emergency(unrealized_pnl, equity)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use rust_decimal_macros::dec;

    fn snap() -> PortfolioSnapshot {
        PortfolioSnapshot {
            equity: dec!(10000),
            available_balance: dec!(10000),
            open_positions: 0,
            open_notional: dec!(0),
            unrealized_pnl: dec!(0),
        }
    }

    #[test]
    fn all_pass_then_each_fails_for_its_reason() {
        let r = Settings::defaults().unwrap().risk;
        let now = 1_700_000_000_000;
        let mut book = RiskBook::new(now, dec!(10000));
        let intent = TradeIntent { symbol: "BTCUSDT", notional: dec!(2000), leverage: 10, symbol_busy: false };
        assert!(book.evaluate(&snap(), &intent, &r, now).passed());

        book.record_close("BTCUSDT", dec!(-10), now, &r);
        let rep = book.evaluate(&snap(), &intent, &r, now + 1000);
        assert!(!rep.checks[1].passed && rep.checks.iter().filter(|c| !c.passed).count() == 1);
        assert!(book.evaluate(&snap(), &intent, &r, now + 61 * 60_000).passed());

        book.record_close("ETHUSDT", dec!(-10), now, &r);
        book.record_close("XRPUSDT", dec!(-10), now, &r);
        let rep = book.evaluate(&snap(), &intent, &r, now + 61 * 60_000);
        assert!(!rep.checks[4].passed, "three losses pause entries");
        assert!(book.evaluate(&snap(), &intent, &r, now + 241 * 60_000).passed());

        let mut s = snap();
        s.unrealized_pnl = dec!(-300);
        s.equity = dec!(9700);
        let rep = book.evaluate(&s, &intent, &r, now + 241 * 60_000);
        assert!(!rep.checks[2].passed, "{:?}", rep.checks[2]);
        s.open_notional = dec!(9000);
        s.available_balance = dec!(100);
        s.open_positions = 5;
        let rep = book.evaluate(&s, &intent, &r, now + 241 * 60_000);
        assert_eq!(rep.checks.iter().filter(|c| !c.passed).count(), 3);
    }

    #[test]
    fn daily_latch_clears_next_day() {
        let r = Settings::defaults().unwrap().risk;
        let now = 1_700_000_000_000;
        let mut book = RiskBook::new(now, dec!(10000));
        assert!(book.observe(dec!(9700), &r));
        assert!(book.daily_latched);
        let intent = TradeIntent { symbol: "BTCUSDT", notional: dec!(2000), leverage: 10, symbol_busy: false };
        assert!(!book.evaluate(&snap(), &intent, &r, now).checks[2].passed);
        book.roll_day(now + DAY_MS, dec!(9700));
        assert!(book.evaluate(&snap(), &intent, &r, now + DAY_MS).passed());
    }

    #[test]
    fn daily_loss_is_equity_against_day_start_corrected_for_transfers() {
        let r = Settings::defaults().unwrap().risk;
        let now = 1_700_000_000_000;
        // The example: day start 10,056.25, equity fell 317.7 against a 301.6875 limit.
        let mut book = RiskBook::new(now, dec!(10056.25));
        assert!(book.observe(dec!(9738.55), &r), "a 3.16 % fall latches");
        // A withdrawal is not a loss; a deposit does not hide one.
        let mut book = RiskBook::new(now, dec!(10000));
        book.record_transfer(dec!(-1000));
        assert!(!book.observe(dec!(8900), &r), "withdrew 1000, lost 100");
        book.record_transfer(dec!(5000));
        assert!(book.observe(dec!(13600), &r), "deposited 5000 on top: lost 400");
        // The book survives a round trip through its journal form.
        let json = serde_json::to_string(&book).unwrap();
        assert_eq!(serde_json::from_str::<RiskBook>(&json).unwrap(), book);
    }

    #[test]
    fn emergency_at_minus_five_percent() {
        let r = Settings::defaults().unwrap().risk;
        assert!(emergency_triggered(dec!(-500), dec!(10000), &r));
        assert!(!emergency_triggered(dec!(-499.99), dec!(10000), &r));
    }
}
