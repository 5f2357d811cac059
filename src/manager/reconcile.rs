//! Start-up (and after-reconnect) reconciliation plan. The exchange is the truth for what
//! exists; the journal supplies what the exchange does not know (exit-ladder stage, best
//! price, original size). Given both, [`reconcile`] decides per symbol whether to keep the
//! journal's position (synced to the exchange's size), adopt an unknown position with a
//! conservative default ladder, or drop a journal position the exchange no longer has. The
//! protection audit then attaches stops. Pure: no I/O.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use crate::core::models::{Direction, LadderStage, Position, TimestampMs};
use crate::exchange::ExchangePosition;

/// A position as the exchange reports it (one-way mode: signed quantity).
#[derive(Debug, Clone, PartialEq)]
pub struct ExchangeHolding {
    pub symbol: String,
    /// Positive long, negative short.
    pub signed_qty: Decimal,
    pub entry_price: Decimal,
    pub mark_price: Decimal,
    pub leverage: u32,
}

impl From<&ExchangePosition> for ExchangeHolding {
    fn from(p: &ExchangePosition) -> Self {
        ExchangeHolding {
            symbol: p.symbol.clone(),
            signed_qty: if p.direction == Direction::Long { p.qty } else { -p.qty },
            entry_price: p.entry_price,
            mark_price: p.mark_price,
            leverage: p.leverage,
        }
    }
}

/// What to do about one symbol.
#[derive(Debug, Clone, PartialEq)]
pub enum ReconcileAction {
    /// Journal and exchange agree on the position (size synced to the exchange if it differed).
    Keep { position: Position, size_changed: bool },
    /// The exchange holds a position the journal does not know: adopt it with a conservative
    /// ladder (stage Open, stop at the maximum stop distance from entry) and warn.
    Adopt { position: Position },
    /// Adopted, but the mark price is already beyond the conservative stop: close it at market.
    CloseAdopted { position: Position },
    /// The journal's position no longer exists on the exchange: record how it closed.
    Drop { symbol: String },
}

/// Parameters of adoption.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdoptionPolicy {
    /// Stop distance for adopted positions, percent of entry (the strategy's cap, 3 %).
    pub max_stop_pct: Decimal,
    /// Trail-start level for `take_profit`, percent of entry.
    pub trail_start_pct: Decimal,
}

fn adopted(h: &ExchangeHolding, policy: &AdoptionPolicy, now: TimestampMs) -> Position {
    let direction = if h.signed_qty > Decimal::ZERO { Direction::Long } else { Direction::Short };
    let hundred = Decimal::ONE_HUNDRED;
    let stop_offset = h.entry_price * policy.max_stop_pct / hundred;
    let tp_offset = h.entry_price * policy.trail_start_pct / hundred;
    let (stop_loss, take_profit) = match direction {
        Direction::Long => (h.entry_price - stop_offset, h.entry_price + tp_offset),
        Direction::Short => (h.entry_price + stop_offset, h.entry_price - tp_offset),
    };
    let qty = h.signed_qty.abs();
    Position {
        symbol: h.symbol.clone(),
        direction,
        entry_price: h.entry_price,
        original_qty: qty,
        qty,
        leverage: h.leverage,
        stop_loss,
        take_profit,
        trailing_stop: None,
        partial_exits: Vec::new(),
        best_price: h.entry_price,
        peak_pnl: Decimal::ZERO,
        stage: LadderStage::Open,
        entry_time: now,
    }
}

fn beyond_stop(p: &Position, mark: Decimal) -> bool {
    match p.direction {
        Direction::Long => mark <= p.stop_loss,
        Direction::Short => mark >= p.stop_loss,
    }
}

/// Plans reconciliation, one action per symbol, ordered by symbol. Stop prices of adopted
/// positions are unrounded; the caller rounds them to the symbol's tick.
pub fn reconcile(
    journal: &[Position],
    exchange: &[ExchangeHolding],
    policy: &AdoptionPolicy,
    now: TimestampMs,
) -> Vec<ReconcileAction> {
    let held: BTreeMap<&str, &ExchangeHolding> =
        exchange.iter().filter(|h| !h.signed_qty.is_zero()).map(|h| (h.symbol.as_str(), h)).collect();
    let known: BTreeMap<&str, &Position> = journal.iter().map(|p| (p.symbol.as_str(), p)).collect();
    let mut symbols: Vec<&str> = held.keys().chain(known.keys()).copied().collect();
    symbols.sort_unstable();
    symbols.dedup();

    let mut out = Vec::new();
    for sym in symbols {
        match (known.get(sym), held.get(sym)) {
            (Some(p), None) => out.push(ReconcileAction::Drop { symbol: p.symbol.clone() }),
            (journal_pos, Some(h)) => {
                let direction = if h.signed_qty > Decimal::ZERO { Direction::Long } else { Direction::Short };
                match journal_pos {
                    Some(p) if p.direction == direction => {
                        let qty = h.signed_qty.abs();
                        let mut position = (*p).clone();
                        let size_changed = position.qty != qty;
                        position.qty = qty;
                        if position.original_qty < qty {
                            position.original_qty = qty;
                        }
                        out.push(ReconcileAction::Keep { position, size_changed });
                    }
                    other => {
                        if let Some(p) = other {
                            // Same symbol, opposite side: the journal's position closed and a new one exists.
                            out.push(ReconcileAction::Drop { symbol: p.symbol.clone() });
                        }
                        let position = adopted(h, policy, now);
                        if beyond_stop(&position, h.mark_price) {
                            out.push(ReconcileAction::CloseAdopted { position });
                        } else {
                            out.push(ReconcileAction::Adopt { position });
                        }
                    }
                }
            }
            (None, None) => {}
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    const POLICY: AdoptionPolicy = AdoptionPolicy { max_stop_pct: dec!(3), trail_start_pct: dec!(3) };

    fn holding(symbol: &str, qty: Decimal, entry: Decimal, mark: Decimal) -> ExchangeHolding {
        ExchangeHolding { symbol: symbol.into(), signed_qty: qty, entry_price: entry, mark_price: mark, leverage: 5 }
    }

    fn journal_pos(symbol: &str, direction: Direction, qty: Decimal) -> Position {
        let mut p = adopted(
            &holding(symbol, if direction == Direction::Long { qty } else { -qty }, dec!(100), dec!(100)),
            &POLICY,
            1,
        );
        p.stage = LadderStage::Tp1Done;
        p.original_qty = qty * dec!(2);
        p.best_price = dec!(102);
        p
    }

    #[test]
    fn adopts_keeps_and_drops() {
        let journal = [
            journal_pos("BTCUSDT", Direction::Long, dec!(0.6)),
            journal_pos("ETHUSDT", Direction::Short, dec!(1)),
            journal_pos("XRPUSDT", Direction::Long, dec!(10)),
        ];
        let exchange = [
            holding("BTCUSDT", dec!(0.5), dec!(100), dec!(101)),
            holding("SOLUSDT", dec!(-2), dec!(150), dec!(149)),
            holding("XRPUSDT", dec!(-10), dec!(100), dec!(100)),
            holding("DOGEUSDT", dec!(0), dec!(0), dec!(0.2)),
        ];
        let plan = reconcile(&journal, &exchange, &POLICY, 50);
        assert_eq!(plan.len(), 5, "{plan:#?}");
        match &plan[0] {
            ReconcileAction::Keep { position, size_changed } => {
                assert_eq!(position.symbol, "BTCUSDT");
                assert_eq!(position.qty, dec!(0.5));
                assert_eq!(position.stage, LadderStage::Tp1Done, "ladder state comes from the journal");
                assert_eq!(position.best_price, dec!(102));
                assert!(size_changed);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(plan[1], ReconcileAction::Drop { symbol: "ETHUSDT".into() });
        match &plan[2] {
            ReconcileAction::Adopt { position } => {
                assert_eq!(position.symbol, "SOLUSDT");
                assert_eq!(position.direction, Direction::Short);
                assert_eq!(position.qty, dec!(2));
                assert_eq!(position.stop_loss, dec!(154.5));
                assert_eq!(position.stage, LadderStage::Open);
                assert_eq!(position.entry_time, 50);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(plan[3], ReconcileAction::Drop { symbol: "XRPUSDT".into() });
        assert!(matches!(&plan[4], ReconcileAction::Adopt { position } if position.direction == Direction::Short));
    }

    #[test]
    fn adopted_position_already_through_its_stop_is_closed() {
        let plan = reconcile(&[], &[holding("BTCUSDT", dec!(1), dec!(100), dec!(96.5))], &POLICY, 0);
        assert!(matches!(&plan[0], ReconcileAction::CloseAdopted { position } if position.stop_loss == dec!(97)));
    }
}
