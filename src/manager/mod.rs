//! Position management rules: leverage mapping, position sizing, the five pre-trade risk
//! checks and the exit ladder (TP1, TP2, trailing stop, emergency exit). Pure functions and
//! state machines that return intended actions; they never call the exchange themselves.
//!
//! - [`sizing`]: leverage tiers (with the high-volatility column) and Decimal sizing.
//! - [`risk_checks`]: the five checks, always all evaluated, and the risk book they read.
//! - [`exit_ladder`]: TP1 → TP2 → trailing, stop hits, emergency exit, as actions.
//! - [`protection`]: the per-tick audit that every position has exactly one exchange-side stop.
//! - [`position_manager`]: the trading brain (analyzers, positions, ladders, risk book, latch)
//!   that live, dry-run and backtest all drive.
//! - [`reconcile`]: the start-up plan that makes the exchange's positions the truth.
//! - [`trading_core`]: the position manager's decisions as a synchronous state machine (event
//!   in, actions out): entries, exits, failures, protection, emergency, resync.
//! - [`commands`]: the commands, outcomes and journal records the core exchanges with its task.
//! - [`records`]: journal rows built from the core's events.

pub mod commands;
pub mod exit_ladder;
pub mod position_manager;
pub mod protection;
pub mod reconcile;
pub mod records;
pub mod risk_checks;
pub mod sizing;
pub mod trading_core;
