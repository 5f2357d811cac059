//! The backtest's ledger: the trade list, fees, funding and per-reason figures that
//! `trades.csv`, `metrics.json` and the report are written from. The money itself moves in
//! the simulated account ([`crate::exchange::sim_book::SimBook`]) and every decision is the
//! trading core's ([`crate::backtest::market`]); this only records what they did.

use std::collections::BTreeMap;

use rust_decimal::prelude::*;
use serde::Serialize;

use crate::backtest::sim::FillModel;
use crate::core::models::{Direction, PartialExit, TimestampMs};
use crate::manager::exit_ladder::ExitReason;
use crate::manager::position_manager::ClosedTrade;

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

/// What a backtest did, for its report.
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
        }
    }

    /// Books a finished trade with the funding it paid and its liquidation price at entry.
    /// Each of its fills counts under its reason: gross PnL and the exit's taker fee (none
    /// for a liquidation, which the exchange books at the bankruptcy price).
    pub fn record(&mut self, t: ClosedTrade, funding: Decimal, liquidation_price: Decimal) {
        for e in &t.partial_exits {
            let Some(reason) = ExitReason::parse(&e.reason) else { continue };
            let stats = self.by_reason.entry(reason).or_default();
            stats.fills += 1;
            stats.gross_pnl += (e.price - t.entry_price) * e.qty * t.direction.sign();
            if reason != ExitReason::Liquidation {
                stats.fees += self.model.taker_fee_for(e.qty, e.price);
            }
        }
        self.by_reason.entry(t.exit_reason).or_default().trades += 1;
        self.trades.push(TradeRecord {
            net_pnl: t.gross_pnl - t.fees - funding,
            symbol: t.symbol,
            direction: t.direction,
            entry_time: t.entry_time,
            exit_time: t.exit_time,
            entry_price: t.entry_price,
            exit_price: t.exit_price,
            qty: t.qty,
            leverage: t.leverage,
            confidence: t.confidence,
            liquidation_price,
            gross_pnl: t.gross_pnl,
            fees: t.fees,
            funding,
            exit_reason: t.exit_reason,
            exits: t.partial_exits,
        });
    }
}
