//! The ingest task: the only writer of the [`DataHub`]. It takes market events (klines,
//! backfills, mark prices, 24 h tickers, stream health) off the market channel, merges them
//! into the hub with the write guard held for one event and never across an `.await`, and
//! tells the readers what changed: mark prices on a latest-wins `watch` (no backlog of stale
//! prices), closed candles on another. Account events never come here: they travel on their
//! own channel to the position manager.

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::api::Metrics;
use crate::core::data_hub::{DataHub, MarkPrice, SharedHub, StreamState};
use crate::core::models::{TimestampMs, is_closed_at};
use crate::exchange::binance::streams::MARKET_STREAM;
use crate::exchange::{Exchange, ExchangeEvent, StreamEvent};

/// What one event changed, so the task knows whom to wake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    pub marks: bool,
    pub closed_candles: bool,
    pub tickers: bool,
    pub streams: bool,
}

/// Applies one market event to the hub at `now` (exchange time). Candles (live, replayed and
/// backfilled) are never stored twice. Account events are not the hub's and are ignored.
pub fn apply_market_event(hub: &mut DataHub, event: &ExchangeEvent, now: TimestampMs) -> Applied {
    let mut applied = Applied::default();
    match event {
        ExchangeEvent::Kline { symbol, timeframe, candle, closed } => {
            // The hub keeps closed candles only: the stream's final update is closed; a
            // forming candle is never stored, so it can never stand in for the real one.
            if candle.is_sane() && *closed {
                hub.merge_candle(symbol, *timeframe, *candle);
                applied.closed_candles = true;
            }
        }
        ExchangeEvent::Backfill { symbol, timeframe, candles } => {
            // Fetched over REST: closed only once the exchange clock is past the close by a
            // margin (a candle fetched just before its close is still forming).
            for c in candles.iter().filter(|c| c.is_sane() && is_closed_at(c, now)) {
                hub.merge_candle(symbol, *timeframe, *c);
                applied.closed_candles = true;
            }
        }
        ExchangeEvent::MarkPrices(updates) => {
            for u in updates {
                let prev = hub.mark_prices.get(u.symbol.as_str()).copied();
                hub.last_mark_time = hub.last_mark_time.max(u.event_time);
                let next = MarkPrice {
                    price: u.mark_price,
                    funding_rate: u.funding_rate.or(prev.map(|p| p.funding_rate)).unwrap_or_default(),
                    next_funding_time: u.next_funding_time.or(prev.map(|p| p.next_funding_time)).unwrap_or(0),
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
            applied.marks = !updates.is_empty();
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
            applied.tickers = true;
        }
        ExchangeEvent::Stream(StreamEvent::Connected { stream, reconnect }) => {
            hub.set_stream_state(stream, StreamState::Live, *reconnect);
            applied.streams = true;
        }
        ExchangeEvent::Stream(StreamEvent::Disconnected { stream, .. }) => {
            hub.set_stream_state(stream, StreamState::Connecting, false);
            applied.streams = true;
        }
        ExchangeEvent::Stream(StreamEvent::Stale { stream, .. }) => {
            hub.set_stream_state(stream, StreamState::Stale, false);
            applied.streams = true;
        }
        _ => return applied,
    }
    let stream = match event {
        ExchangeEvent::Kline { .. } | ExchangeEvent::MarkPrices(_) | ExchangeEvent::Tickers(_) => MARKET_STREAM,
        _ => return applied,
    };
    // In place when the stream is known (no key allocation on the hot path).
    match hub.streams.get_mut(stream) {
        Some(h) => {
            applied.streams |= h.state != StreamState::Live;
            h.state = StreamState::Live;
            h.last_message_at = Some(now);
        }
        None => {
            hub.stream_message(stream, now);
            applied.streams = true;
        }
    }
    applied
}

/// Senders the ingest task wakes readers with.
#[derive(Debug, Clone)]
pub struct IngestSignals {
    /// Bumped after mark prices changed (latest-wins: readers read the hub).
    pub marks: watch::Sender<u64>,
    /// Bumped after a closed candle or a backfill arrived.
    pub candles: watch::Sender<u64>,
}

impl IngestSignals {
    pub fn new() -> (IngestSignals, watch::Receiver<u64>, watch::Receiver<u64>) {
        let (marks, m) = watch::channel(0);
        let (candles, c) = watch::channel(0);
        (IngestSignals { marks, candles }, m, c)
    }
}

fn bump(tx: &watch::Sender<u64>) {
    tx.send_modify(|v| *v = v.wrapping_add(1));
}

/// Runs until `cancel` fires or the market channel closes.
pub async fn run<E: Exchange>(
    ex: Arc<E>,
    hub: SharedHub,
    mut market: mpsc::Receiver<ExchangeEvent>,
    signals: IngestSignals,
    mut keep: watch::Receiver<BTreeSet<String>>,
    metrics: Metrics,
    cancel: CancellationToken,
) {
    let mut keep_open = true;
    loop {
        let ev = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            changed = keep.changed(), if keep_open => {
                keep_open = changed.is_ok();
                if keep_open {
                    // The scanner's survivors and the held symbols: other series are dropped.
                    let set = keep.borrow_and_update().clone();
                    if !set.is_empty() && let Ok(mut h) = hub.write() {
                        h.retain_candles(|s| set.contains(s));
                    }
                }
                continue;
            }
            ev = market.recv() => match ev {
                Some(ev) => ev,
                None => break,
            },
        };
        let now = ex.now_ms();
        if let ExchangeEvent::Kline { candle, symbol, .. } = &ev
            && !candle.is_sane()
        {
            metrics.dropped_messages.get_or_create(&Metrics::label("source", "kline")).inc();
            tracing::warn!(%symbol, ?candle, "malformed candle dropped");
            continue;
        }
        if let ExchangeEvent::Stream(StreamEvent::Connected { stream, reconnect: true }) = &ev {
            metrics.ws_reconnects.get_or_create(&Metrics::label("stream", stream)).inc();
            tracing::info!(%stream, "stream reconnected");
        }
        if let ExchangeEvent::Stream(StreamEvent::Disconnected { stream, reason }) = &ev {
            tracing::warn!(%stream, %reason, "stream disconnected; reconnecting");
        }
        if let ExchangeEvent::Stream(StreamEvent::Stale { stream, silent_ms }) = &ev {
            tracing::warn!(%stream, silent_ms, "stream silent for too long; recycling the connection");
        }
        let applied = match hub.write() {
            Ok(mut h) => apply_market_event(&mut h, &ev, now),
            Err(_) => {
                tracing::error!("hub lock poisoned; ingest stops");
                break;
            }
        };
        if applied.marks {
            bump(&signals.marks);
        }
        if applied.closed_candles {
            bump(&signals.candles);
        }
        if applied.streams {
            // Candles that closed while a stream was down are evaluated on recovery.
            bump(&signals.candles);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
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
        // A forming candle from the stream is never stored.
        let forming = ExchangeEvent::Kline {
            symbol: "BTCUSDT".into(),
            timeframe: Timeframe::M15,
            candle: candle(9 * 900_000),
            closed: false,
        };
        apply_market_event(&mut hub, &forming, 1);
        apply_market_event(&mut hub, &k(0), 1);
        apply_market_event(&mut hub, &k(3 * 900_000), 2);
        let backfill = ExchangeEvent::Backfill {
            symbol: "BTCUSDT".into(),
            timeframe: Timeframe::M15,
            candles: (0..4).map(|i| candle(i * 900_000)).collect(),
        };
        // Fetched just before the last one closed: that one is still forming and stays out.
        let backfill_early = ExchangeEvent::Backfill {
            symbol: "BTCUSDT".into(),
            timeframe: Timeframe::M15,
            candles: vec![candle(4 * 900_000)],
        };
        apply_market_event(&mut hub, &backfill_early, 5 * 900_000 - 10);
        apply_market_event(&mut hub, &backfill, 5 * 900_000);
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
        apply_market_event(&mut hub, &mp(dec!(100)), 1);
        apply_market_event(&mut hub, &mp(dec!(101)), 2);
        assert_eq!(hub.mark_prices.len(), 1);
        assert_eq!(hub.mark_prices.get("ETHUSDT").map(|m| m.price), Some(dec!(101)));
        apply_market_event(
            &mut hub,
            &ExchangeEvent::Stream(StreamEvent::Stale { stream: "market".into(), silent_ms: 9 }),
            3,
        );
        assert!(!hub.streams_live());
    }
}
