//! The protection audit: every open position must have exactly one protective stop resting on
//! the exchange, on the exit side, for the position's current size and stop price; every stop
//! must belong to a position. Given what we hold and what rests on the exchange, [`audit`]
//! returns the repairs to make. Pure: the engine executes the actions and logs/counts them.
//!
//! Repairs place before they cancel: a replacement stop is placed first and the old one
//! cancelled after, so a position is never left without a stop between the two calls (both
//! are reduce-only, so two resting stops cannot over-close).

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use crate::core::models::{Direction, Side};

/// A position as the audit needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldPosition {
    pub symbol: String,
    pub direction: Direction,
    /// Open quantity (positive).
    pub qty: Decimal,
    /// The stop price the exit ladder wants right now.
    pub stop_price: Decimal,
}

/// A protective stop resting on the exchange (an algo STOP_MARKET order on Binance).
#[derive(Debug, Clone, PartialEq)]
pub struct RestingStop {
    /// Our client id (`clientAlgoId`), or the exchange's id as text when we did not place it.
    pub id: String,
    pub symbol: String,
    pub side: Side,
    pub qty: Decimal,
    pub trigger_price: Decimal,
}

/// What the audit found wrong and wants done.
#[derive(Debug, Clone, PartialEq)]
pub enum ProtectionAction {
    /// Place a reduce-only, mark-price stop-market order.
    PlaceStop { symbol: String, side: Side, qty: Decimal, trigger_price: Decimal, reason: StopReason },
    /// Cancel a stop (orphaned, superseded or duplicate).
    CancelStop { symbol: String, id: String, reason: StopReason },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The position had no stop at all.
    Missing,
    /// The stop's size or price no longer matched (partial exit, trailing move).
    Outdated,
    /// More than one stop rested for one position.
    Duplicate,
    /// A stop rested on a symbol with no position.
    Orphan,
    /// A stop was on the wrong side (it would add to the position when triggered).
    WrongSide,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Missing => "missing",
            StopReason::Outdated => "outdated",
            StopReason::Duplicate => "duplicate",
            StopReason::Orphan => "orphan",
            StopReason::WrongSide => "wrong_side",
        }
    }
}

fn matches(stop: &RestingStop, p: &HeldPosition) -> bool {
    stop.side == p.direction.exit_side() && stop.qty == p.qty && stop.trigger_price == p.stop_price
}

/// Compares positions with resting stops and returns the repairs, placements first.
pub fn audit(positions: &[HeldPosition], stops: &[RestingStop]) -> Vec<ProtectionAction> {
    let mut by_symbol: BTreeMap<&str, Vec<&RestingStop>> = BTreeMap::new();
    for s in stops {
        by_symbol.entry(s.symbol.as_str()).or_default().push(s);
    }
    let mut places = Vec::new();
    let mut cancels = Vec::new();
    for p in positions.iter().filter(|p| p.qty > Decimal::ZERO) {
        let mine = by_symbol.remove(p.symbol.as_str()).unwrap_or_default();
        let exit = p.direction.exit_side();
        let keep = mine.iter().position(|s| matches(s, p));
        if keep.is_none() {
            let reason = if mine.iter().any(|s| s.side == exit) { StopReason::Outdated } else { StopReason::Missing };
            places.push(ProtectionAction::PlaceStop {
                symbol: p.symbol.clone(),
                side: exit,
                qty: p.qty,
                trigger_price: p.stop_price,
                reason,
            });
        }
        for (i, s) in mine.iter().enumerate() {
            if Some(i) == keep {
                continue;
            }
            let reason = if s.side != exit {
                StopReason::WrongSide
            } else if keep.is_some() && matches(s, p) {
                StopReason::Duplicate
            } else {
                StopReason::Outdated
            };
            cancels.push(ProtectionAction::CancelStop { symbol: s.symbol.clone(), id: s.id.clone(), reason });
        }
    }
    for (_, orphans) in by_symbol {
        for s in orphans {
            cancels.push(ProtectionAction::CancelStop {
                symbol: s.symbol.clone(),
                id: s.id.clone(),
                reason: StopReason::Orphan,
            });
        }
    }
    places.extend(cancels);
    places
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    fn pos(symbol: &str, direction: Direction, qty: Decimal, stop: Decimal) -> HeldPosition {
        HeldPosition { symbol: symbol.into(), direction, qty, stop_price: stop }
    }

    fn stop(id: &str, symbol: &str, side: Side, qty: Decimal, trigger: Decimal) -> RestingStop {
        RestingStop { id: id.into(), symbol: symbol.into(), side, qty, trigger_price: trigger }
    }

    #[test]
    fn a_protected_position_needs_nothing() {
        let p = [pos("BTCUSDT", Direction::Long, dec!(0.01), dec!(63000))];
        let s = [stop("a", "BTCUSDT", Side::Sell, dec!(0.01), dec!(63000))];
        assert!(audit(&p, &s).is_empty());
    }

    #[test]
    fn missing_outdated_duplicate_and_orphan_stops_are_repaired() {
        let p = [
            pos("BTCUSDT", Direction::Long, dec!(0.01), dec!(63000)),
            pos("ETHUSDT", Direction::Short, dec!(0.6), dec!(3100)),
            pos("SOLUSDT", Direction::Long, dec!(3), dec!(140)),
        ];
        let s = [
            // ETH: resized after TP1 → outdated.
            stop("eth-old", "ETHUSDT", Side::Buy, dec!(1.0), dec!(3100)),
            // SOL: two identical stops → one duplicate.
            stop("sol-1", "SOLUSDT", Side::Sell, dec!(3), dec!(140)),
            stop("sol-2", "SOLUSDT", Side::Sell, dec!(3), dec!(140)),
            // XRP: no position → orphan.
            stop("xrp", "XRPUSDT", Side::Sell, dec!(100), dec!(0.5)),
        ];
        let actions = audit(&p, &s);
        assert_eq!(
            actions,
            vec![
                ProtectionAction::PlaceStop {
                    symbol: "BTCUSDT".into(),
                    side: Side::Sell,
                    qty: dec!(0.01),
                    trigger_price: dec!(63000),
                    reason: StopReason::Missing
                },
                ProtectionAction::PlaceStop {
                    symbol: "ETHUSDT".into(),
                    side: Side::Buy,
                    qty: dec!(0.6),
                    trigger_price: dec!(3100),
                    reason: StopReason::Outdated
                },
                ProtectionAction::CancelStop {
                    symbol: "ETHUSDT".into(),
                    id: "eth-old".into(),
                    reason: StopReason::Outdated
                },
                ProtectionAction::CancelStop {
                    symbol: "SOLUSDT".into(),
                    id: "sol-2".into(),
                    reason: StopReason::Duplicate
                },
                ProtectionAction::CancelStop { symbol: "XRPUSDT".into(), id: "xrp".into(), reason: StopReason::Orphan },
            ]
        );
    }

    #[test]
    fn a_stop_on_the_wrong_side_is_replaced() {
        let p = [pos("BTCUSDT", Direction::Short, dec!(0.01), dec!(66000))];
        let s = [stop("bad", "BTCUSDT", Side::Sell, dec!(0.01), dec!(66000))];
        let actions = audit(&p, &s);
        assert!(matches!(
            &actions[0],
            ProtectionAction::PlaceStop { side: Side::Buy, reason: StopReason::Missing, .. }
        ));
        assert!(matches!(&actions[1], ProtectionAction::CancelStop { reason: StopReason::WrongSide, .. }));
    }

    fn arb_side() -> impl Strategy<Value = Side> {
        prop_oneof![Just(Side::Buy), Just(Side::Sell)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Applying the audit's actions always leaves exactly one matching stop per position and
        /// no stop without a position, and every placement comes before every cancellation.
        #[test]
        fn audit_restores_exactly_one_stop_per_position(
            held in prop::collection::btree_map(0usize..6, (any::<bool>(), 1u32..5, 90u32..110), 0..5),
            resting in prop::collection::vec((0usize..8, arb_side(), 1u32..5, 90u32..110), 0..10),
        ) {
            let symbols = ["A", "B", "C", "D", "E", "F", "G", "H"];
            let positions: Vec<HeldPosition> = held.iter().map(|(i, (long, q, p))| pos(
                symbols[*i],
                if *long { Direction::Long } else { Direction::Short },
                Decimal::from(*q),
                Decimal::from(*p),
            )).collect();
            let mut book: Vec<RestingStop> = resting.iter().enumerate().map(|(n, (i, side, q, p))| stop(
                &format!("s{n}"), symbols[*i], *side, Decimal::from(*q), Decimal::from(*p),
            )).collect();
            let actions = audit(&positions, &book);
            let first_cancel = actions.iter().position(|a| matches!(a, ProtectionAction::CancelStop { .. }));
            if let Some(fc) = first_cancel {
                let all_cancels = actions[fc..].iter().all(|a| matches!(a, ProtectionAction::CancelStop { .. }));
                prop_assert!(all_cancels);
            }
            for (n, a) in actions.iter().enumerate() {
                match a {
                    ProtectionAction::PlaceStop { symbol, side, qty, trigger_price, .. } => book.push(stop(
                        &format!("new{n}"), symbol, *side, *qty, *trigger_price,
                    )),
                    ProtectionAction::CancelStop { id, .. } => book.retain(|s| &s.id != id),
                }
            }
            for p in &positions {
                let on_symbol: Vec<_> = book.iter().filter(|s| s.symbol == p.symbol).collect();
                prop_assert_eq!(on_symbol.len(), 1);
                prop_assert!(matches(on_symbol[0], p));
            }
            prop_assert!(book.iter().all(|s| positions.iter().any(|p| p.symbol == s.symbol)));
            prop_assert!(audit(&positions, &book).is_empty(), "the audit is idempotent once repaired");
        }
    }
}
