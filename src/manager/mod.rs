//! Position management rules: leverage mapping, position sizing, the five pre-trade risk
//! checks and the exit ladder (TP1, TP2, trailing stop, emergency exit). Pure functions and
//! state machines that return intended actions; they never call the exchange themselves.

pub mod protection;
pub mod reconcile;
