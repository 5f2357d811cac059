//! Merging market events into the [`DataHub`]: candles (live, replayed and backfilled, never
//! stored twice), mark prices, tickers, balances and stream health. Plain data in, no I/O; the
//! ingest task calls it with the hub's write guard held for one event. Nothing here is specific
//! to Binance: any exchange's events merge the same way.

use crate::api::StreamState;
use crate::core::data_hub::{DataHub, MarkPrice};
use crate::core::models::TimestampMs;
use crate::exchange::{ExchangeEvent, StreamEvent};

/// Applies one event to the hub at `now`. Order, stop and fill events belong to the position
/// manager and are left alone here.
pub fn apply_event(hub: &mut DataHub, event: &ExchangeEvent, now: TimestampMs) {
    match event {
        ExchangeEvent::Kline { symbol, timeframe, candle, .. } => {
            hub.merge_candle(symbol, *timeframe, *candle);
        }
        ExchangeEvent::Backfill { symbol, timeframe, candles } => {
            for c in candles {
                hub.merge_candle(symbol, *timeframe, *c);
            }
        }
        ExchangeEvent::MarkPrices(updates) => {
            for u in updates {
                let next = MarkPrice {
                    price: u.mark_price,
                    funding_rate: u.funding_rate.unwrap_or_default(),
                    next_funding_time: u.next_funding_time.unwrap_or(0),
                    time: u.event_time,
                };
                // Look up by &str first: no allocation for the ~300 symbols already known.
                match hub.mark_prices.get_mut(u.symbol.as_str()) {
                    Some(slot) => *slot = next,
                    None => {
                        hub.mark_prices.insert(u.symbol.clone(), next);
                    }
                }
            }
        }
        ExchangeEvent::Tickers(tickers) => {
            for t in tickers {
                match hub.tickers.get_mut(t.symbol.as_str()) {
                    Some(slot) => slot.clone_from(t),
                    None => {
                        hub.tickers.insert(t.symbol.clone(), t.clone());
                    }
                }
            }
        }
        ExchangeEvent::AccountUpdate { balance: Some(b), time, .. } => {
            hub.account.wallet_balance = b.wallet_balance;
            hub.account.available_balance = b.available_balance;
            hub.account.updated_at = *time;
        }
        ExchangeEvent::Stream(StreamEvent::Connected { stream, reconnect }) => {
            hub.set_stream_state(stream, StreamState::Connecting, *reconnect);
        }
        ExchangeEvent::Stream(StreamEvent::Disconnected { stream, .. }) => {
            hub.set_stream_state(stream, StreamState::Connecting, false);
        }
        ExchangeEvent::Stream(StreamEvent::Stale { stream, .. }) => {
            hub.set_stream_state(stream, StreamState::Stale, false);
        }
        _ => {}
    }
    let stream = match event {
        ExchangeEvent::Kline { .. } | ExchangeEvent::MarkPrices(_) | ExchangeEvent::Tickers(_) => {
            super::streams::MARKET_STREAM
        }
        ExchangeEvent::OrderUpdate { .. }
        | ExchangeEvent::StopUpdate(_)
        | ExchangeEvent::AccountUpdate { .. }
        | ExchangeEvent::MarginCall { .. } => super::streams::USER_STREAM,
        _ => return,
    };
    // In place when the stream is known (no key allocation on the hot path).
    match hub.streams.get_mut(stream) {
        Some(h) => {
            h.state = StreamState::Live;
            h.last_message_at = Some(now);
        }
        None => hub.stream_message(stream, now),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::core::models::{Candle, Timeframe};
    use crate::exchange::MarkPriceUpdate;
    use rust_decimal_macros::dec;

    fn candle(t: i64) -> Candle {
        Candle {
            open_time: t,
            close_time: t + 899_999,
            open: 1.0,
            high: 2.0,
            low: 0.5,
            close: 1.5,
            volume: 1.0,
            quote_volume: 1.0,
            trades: 1,
            taker_buy_volume: 0.5,
            taker_buy_quote_volume: 0.5,
        }
    }

    #[test]
    fn live_and_backfilled_candles_merge_without_duplicates() {
        let mut hub = DataHub::default();
        let k = |t| ExchangeEvent::Kline {
            symbol: "BTCUSDT".into(),
            timeframe: Timeframe::M15,
            candle: candle(t),
            closed: true,
        };
        apply_event(&mut hub, &k(0), 1);
        apply_event(&mut hub, &k(3 * 900_000), 2);
        let backfill = ExchangeEvent::Backfill {
            symbol: "BTCUSDT".into(),
            timeframe: Timeframe::M15,
            candles: (0..4).map(|i| candle(i * 900_000)).collect(),
        };
        apply_event(&mut hub, &backfill, 3);
        let series = hub.candles("BTCUSDT", Timeframe::M15).unwrap();
        assert_eq!(series.len(), 4);
        assert!(series.gaps(Timeframe::M15).is_empty());
        assert!(hub.streams_live());
    }

    #[test]
    fn mark_prices_update_in_place() {
        let mut hub = DataHub::default();
        let mp = |p| {
            ExchangeEvent::MarkPrices(vec![MarkPriceUpdate {
                symbol: "ETHUSDT".into(),
                mark_price: p,
                index_price: None,
                funding_rate: Some(dec!(0.0001)),
                next_funding_time: Some(5),
                event_time: 1,
            }])
        };
        apply_event(&mut hub, &mp(dec!(100)), 1);
        apply_event(&mut hub, &mp(dec!(101)), 2);
        assert_eq!(hub.mark_prices.len(), 1);
        assert_eq!(hub.mark_prices.get("ETHUSDT").map(|m| m.price), Some(dec!(101)));
        apply_event(&mut hub, &ExchangeEvent::Stream(StreamEvent::Stale { stream: "market".into(), silent_ms: 9 }), 3);
        assert!(!hub.streams_live());
    }
}
