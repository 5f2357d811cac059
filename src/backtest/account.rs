//! The trade-execution layer of the backtest: a simulated isolated-margin account that
//! executes the position manager's entry plans and exit actions with the fill model of
//! [`crate::backtest::sim`], resolves stops, take-profits and trailing stops inside a candle,
//! charges funding and liquidates. It can be driven on its own from a test with a hand-made
//! [`EntryPlan`] and candles.
//!
//! **Intra-candle rule (conservative).** A candle is walked as four prices: open, then the
//! extreme AGAINST the position (low for a long, high for a short), then the extreme in its
//! favour, then the close; the ladder sees each price in turn through
//! [`PositionManager::on_price`]. So a candle that touches both the stop and a target always
//! stops out first, a target is only taken after the adverse excursion survived, and a
//! trailing stop ratcheted by the favourable extreme can still be hit on the way to the close.
//! Levels are reached on a continuous path, so stops, trailing stops and take-profits fill at
//! their level (± slippage) — except at the open: a candle that OPENS beyond the stop fills
//! the stop at the open (the gap is the trader's loss). Take-profits that gap open in the
//! trader's favour still fill at their level (conservative). Prices are last-trade candle
//! prices; the simulator has no separate mark price.
//!
//! **Liquidation.** When a price of the walk reaches the liquidation price
//! ([`sim::liquidation_price`], maintenance margin rate from the symbol's first bracket), the
//! position is liquidated (reason `liquidation`) unless its stop lies before the liquidation
//! price on that path segment (then the stop fills first). A candle that opens beyond the
//! liquidation price liquidates at once. The liquidated remainder is booked at the bankruptcy
//! price: the trader loses the whole isolated margin of what was left.
//!
//! **Funding** is charged by the caller at 00/08/16 UTC with [`SimAccount::charge_funding`]
//! from the wallet (not from the isolated margin, so it never moves the liquidation price).
//!
//! Owns money movements of the simulated account. It must not decide entries or exits: all
//! decisions come from the [`PositionManager`].

use std::collections::BTreeMap;

use rust_decimal::prelude::*;
use serde::Serialize;

use crate::backtest::sim::{self, FillModel};
use crate::backtest::symbols::SymbolRules;
use crate::core::models::{Candle, Direction, PartialExit, TimestampMs};
use crate::manager::exit_ladder::{ExitAction, ExitReason};
use crate::manager::position_manager::{ClosedTrade, EntryPlan, PositionManager};

/// Simulator state of one open position, beside what the manager tracks.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OpenSim {
    direction: Direction,
    leverage: u32,
    liquidation_price: Decimal,
    bankruptcy_price: Decimal,
    funding: Decimal,
}

/// A completed trade as written to `trades.csv`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TradeRecord {
    pub symbol: String,
    pub direction: Direction,
    pub entry_time: TimestampMs,
    pub exit_time: TimestampMs,
    pub entry_price: Decimal,
    /// Quantity-weighted average exit price.
    pub exit_price: Decimal,
    pub qty: Decimal,
    pub leverage: u32,
    pub confidence: u8,
    pub liquidation_price: Decimal,
    /// Realized price PnL before costs.
    pub gross_pnl: Decimal,
    /// Entry and exit fees.
    pub fees: Decimal,
    /// Funding paid (negative: received).
    pub funding: Decimal,
    /// `gross − fees − funding`.
    pub net_pnl: Decimal,
    pub exit_reason: ExitReason,
    pub exits: Vec<PartialExit>,
}

/// Per exit reason: how many fills and what they realized.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReasonStats {
    pub fills: u64,
    /// Trades whose final close had this reason.
    pub trades: u64,
    pub gross_pnl: Decimal,
    pub fees: Decimal,
}

/// The executed entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryFill {
    pub price: Decimal,
    pub qty: Decimal,
    pub fee: Decimal,
    /// The protective stop the manager placed.
    pub stop: Decimal,
    pub liquidation_price: Decimal,
}

/// The simulated isolated-margin USDⓈ-M account.
#[derive(Debug, Clone)]
pub struct SimAccount {
    pub model: FillModel,
    pub starting_balance: Decimal,
    /// Starting balance + realized PnL − fees − funding.
    pub wallet: Decimal,
    pub fees_paid: Decimal,
    pub funding_paid: Decimal,
    pub trades: Vec<TradeRecord>,
    pub by_reason: BTreeMap<ExitReason, ReasonStats>,
    open: BTreeMap<String, OpenSim>,
}

impl SimAccount {
    pub fn new(model: FillModel, starting_balance: Decimal) -> Self {
        SimAccount {
            model,
            starting_balance,
            wallet: starting_balance,
            fees_paid: Decimal::ZERO,
            funding_paid: Decimal::ZERO,
            trades: Vec::new(),
            by_reason: BTreeMap::new(),
            open: BTreeMap::new(),
        }
    }

    /// Isolated margin held by open positions (remaining quantity at entry / leverage).
    pub fn margin_in_use(&self, pm: &PositionManager) -> Decimal {
        pm.positions()
            .map(|mp| sim::isolated_margin(mp.position.entry_price, mp.ladder.remaining_qty, mp.position.leverage))
            .sum()
    }

    /// Wallet balance minus the margin held: what a new entry may use.
    pub fn available_balance(&self, pm: &PositionManager) -> Decimal {
        self.wallet - self.margin_in_use(pm)
    }

    /// The liquidation price of `symbol`'s open position.
    pub fn liquidation_price(&self, symbol: &str) -> Option<Decimal> {
        self.open.get(symbol).map(|o| o.liquidation_price)
    }

    /// Executes `plan` as a market entry at `reference_price` (the next candle's open) at
    /// `now`: slippage against the trader, taker fee, then registers the position with the
    /// manager. `None` when the manager refuses the fill.
    pub fn enter(
        &mut self,
        pm: &mut PositionManager,
        plan: &EntryPlan,
        rules: &SymbolRules,
        reference_price: Decimal,
        now: TimestampMs,
    ) -> Option<EntryFill> {
        let direction = plan.signal.direction;
        let tick = rules.filters.tick_size;
        let price = self.model.market_fill_price(direction.entry_side(), reference_price, tick);
        let qty = plan.qty;
        let fee = self.model.taker_fee_for(qty, price);
        let stop = pm.open_position(plan, qty, price, fee, &rules.filters, now)?;
        let liquidation_price = sim::liquidation_price(direction, price, plan.leverage, rules.maint_margin_rate);
        self.open.insert(
            plan.signal.symbol.clone(),
            OpenSim {
                direction,
                leverage: plan.leverage,
                liquidation_price,
                bankruptcy_price: sim::bankruptcy_price(direction, price, plan.leverage),
                funding: Decimal::ZERO,
            },
        );
        self.wallet -= fee;
        self.fees_paid += fee;
        Some(EntryFill { price, qty, fee, stop, liquidation_price })
    }

    /// Walks one closed candle of `symbol` for its open position (see the module's
    /// intra-candle rule); fills are stamped `now` (the candle's close).
    pub fn resolve_candle(
        &mut self,
        pm: &mut PositionManager,
        symbol: &str,
        rules: &SymbolRules,
        candle: &Candle,
        now: TimestampMs,
    ) {
        let Some(state) = self.open.get(symbol) else {
            return;
        };
        let direction = state.direction;
        let liq = state.liquidation_price;
        let scale = rules.price_scale();
        let path = match direction {
            Direction::Long => [candle.open, candle.low, candle.high, candle.close],
            Direction::Short => [candle.open, candle.high, candle.low, candle.close],
        };
        for (i, px) in path.iter().enumerate() {
            let Some(mp) = pm.position(symbol) else {
                return;
            };
            let price = sim::price_from_f64(*px, scale);
            if sim::is_adverse_beyond(direction, price, liq) {
                let stop_first = i > 0 && !sim::is_adverse_beyond(direction, mp.ladder.stop, liq);
                if !stop_first {
                    self.liquidate(pm, symbol, now);
                    return;
                }
            }
            let actions = pm.on_price(symbol, price);
            for action in actions {
                match action {
                    ExitAction::Close { qty, reason, trigger_price } => {
                        let fill =
                            self.model.market_fill_price(direction.exit_side(), trigger_price, rules.filters.tick_size);
                        self.book_exit(pm, symbol, qty, fill, reason, true, now);
                    }
                    ExitAction::CloseAll { qty, reason, trigger_price } => {
                        let base = if i == 0 && sim::is_adverse_beyond(direction, price, trigger_price) {
                            price
                        } else {
                            trigger_price
                        };
                        let fill = self.model.market_fill_price(direction.exit_side(), base, rules.filters.tick_size);
                        self.book_exit(pm, symbol, qty, fill, reason, true, now);
                    }
                    // The simulated exchange's resting stop IS the ladder's stop.
                    ExitAction::MoveStop { .. } => {}
                }
            }
        }
    }

    /// Liquidates what is left of `symbol` at its bankruptcy price (no trading fee).
    pub fn liquidate(&mut self, pm: &mut PositionManager, symbol: &str, now: TimestampMs) {
        let Some(state) = self.open.get(symbol) else {
            return;
        };
        let price = state.bankruptcy_price;
        let Some(left) = pm.position(symbol).map(|mp| mp.ladder.remaining_qty) else {
            return;
        };
        // The exchange closed it on its own: deduct, then book like any fill.
        let qty = pm.reduce_remaining(symbol, left);
        if qty > Decimal::ZERO {
            self.book_exit(pm, symbol, qty, price, ExitReason::Liquidation, false, now);
        }
    }

    /// Closes every open position at market at `prices` (the last closes) for `reason`
    /// (emergency exit, end of data), through the manager's close-all actions; `tick_of`
    /// gives each symbol's tick size.
    pub fn close_all(
        &mut self,
        pm: &mut PositionManager,
        reason: ExitReason,
        prices: &dyn Fn(&str) -> Option<Decimal>,
        tick_of: &dyn Fn(&str) -> Option<Decimal>,
        now: TimestampMs,
    ) {
        let actions = pm.close_all_actions(reason, prices);
        for (symbol, action) in actions {
            if let ExitAction::CloseAll { qty, reason, trigger_price }
            | ExitAction::Close { qty, reason, trigger_price } = action
            {
                let Some(state) = self.open.get(&symbol) else {
                    continue;
                };
                let tick = tick_of(&symbol).unwrap_or(Decimal::ZERO);
                let fill = self.model.market_fill_price(state.direction.exit_side(), trigger_price, tick);
                self.book_exit(pm, &symbol, qty, fill, reason, true, now);
            }
        }
    }

    /// Funding settlement for `symbol` at `mark` and `rate` (a fraction); returns what was paid.
    pub fn charge_funding(&mut self, pm: &PositionManager, symbol: &str, mark: Decimal, rate: Decimal) -> Decimal {
        let (Some(mp), Some(state)) = (pm.position(symbol), self.open.get_mut(symbol)) else {
            return Decimal::ZERO;
        };
        let paid = sim::funding_payment(state.direction, mp.ladder.remaining_qty, mark, rate);
        state.funding += paid;
        self.wallet -= paid;
        self.funding_paid += paid;
        paid
    }

    #[allow(clippy::too_many_arguments)]
    fn book_exit(
        &mut self,
        pm: &mut PositionManager,
        symbol: &str,
        qty: Decimal,
        price: Decimal,
        reason: ExitReason,
        taker: bool,
        now: TimestampMs,
    ) {
        let Some(mp) = pm.position(symbol) else {
            return;
        };
        let gross = (price - mp.position.entry_price) * qty * mp.position.direction.sign();
        let fee = if taker { self.model.taker_fee_for(qty, price) } else { Decimal::ZERO };
        self.wallet += gross - fee;
        self.fees_paid += fee;
        let stats = self.by_reason.entry(reason).or_default();
        stats.fills += 1;
        stats.gross_pnl += gross;
        stats.fees += fee;
        if let Some(closed) = pm.on_exit_filled(symbol, qty, price, fee, reason, now) {
            let state = self.open.remove(symbol);
            self.record(closed, state);
        }
    }

    fn record(&mut self, t: ClosedTrade, state: Option<OpenSim>) {
        let funding = state.as_ref().map(|s| s.funding).unwrap_or(Decimal::ZERO);
        if let Some(stats) = self.by_reason.get_mut(&t.exit_reason) {
            stats.trades += 1;
        }
        self.trades.push(TradeRecord {
            net_pnl: t.gross_pnl - t.fees - funding,
            symbol: t.symbol,
            direction: t.direction,
            entry_time: t.entry_time,
            exit_time: t.exit_time,
            entry_price: t.entry_price,
            exit_price: t.exit_price,
            qty: t.qty,
            leverage: state.as_ref().map(|s| s.leverage).unwrap_or(t.leverage),
            confidence: t.confidence,
            liquidation_price: state.map(|s| s.liquidation_price).unwrap_or(Decimal::ZERO),
            gross_pnl: t.gross_pnl,
            fees: t.fees,
            funding,
            exit_reason: t.exit_reason,
            exits: t.partial_exits,
        });
    }
}
