//! `DataHub`: the daemon's shared picture of the market — 24 h tickers, mark prices, bounded
//! caches of closed candles per symbol and timeframe, and stream health. It lives behind
//! `Arc<RwLock<DataHub>>`; only the ingest task writes, the scanner, analyzer and position
//! manager copy what they need and release. Plain data: no I/O and no awaits inside, so a
//! guard can never be held across an `.await`. Account state (balances, positions, orders)
//! is not here: the position manager owns it, from its own channel.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, RwLock};

use rust_decimal::Decimal;
use serde::Serialize;

use crate::core::models::{Candle, Ticker, Timeframe, TimestampMs};

/// Health of one data stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamState {
    Connecting,
    Live,
    Stale,
}

/// One stream's health as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamStatus {
    pub name: String,
    pub state: StreamState,
    pub last_message_at: Option<TimestampMs>,
    pub reconnects: u64,
}

/// The hub as tasks share it.
pub type SharedHub = Arc<RwLock<DataHub>>;

/// Candles kept per symbol and timeframe: enough for every indicator's warm-up and the swing
/// and cross windows, bounded so memory stays O(symbols).
pub const DEFAULT_CANDLE_CAPACITY: usize = 300;

/// What happened when a candle was offered to a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandleMerge {
    /// A new candle after the last one.
    Appended,
    /// Same open time as the last candle: it replaced it (a live update or a replay).
    Replaced,
    /// Older than the last candle: filled into its place (backfill) or replaced a stored one.
    Backfilled,
    /// Older than everything kept; dropped.
    TooOld,
}

/// A bounded series of candles of one symbol and timeframe, unique and ascending by open time.
#[derive(Debug, Clone)]
pub struct CandleSeries {
    candles: VecDeque<Candle>,
    capacity: usize,
}

impl CandleSeries {
    pub fn new(capacity: usize) -> Self {
        CandleSeries { candles: VecDeque::with_capacity(capacity.min(4096)), capacity: capacity.max(1) }
    }

    /// Inserts `c`, keeping open times unique and ascending, evicting the oldest beyond capacity.
    /// Replays and overlapping backfills are idempotent: no candle is ever stored twice.
    pub fn merge(&mut self, c: Candle) -> CandleMerge {
        let outcome = match self.candles.back() {
            None => {
                self.candles.push_back(c);
                CandleMerge::Appended
            }
            Some(last) if c.open_time > last.open_time => {
                self.candles.push_back(c);
                CandleMerge::Appended
            }
            Some(last) if c.open_time == last.open_time => {
                if let Some(slot) = self.candles.back_mut() {
                    *slot = c;
                }
                CandleMerge::Replaced
            }
            Some(_) => match self.candles.binary_search_by_key(&c.open_time, |x| x.open_time) {
                Ok(i) => {
                    if let Some(slot) = self.candles.get_mut(i) {
                        *slot = c;
                    }
                    CandleMerge::Backfilled
                }
                Err(0) if self.candles.len() >= self.capacity => CandleMerge::TooOld,
                Err(i) => {
                    self.candles.insert(i, c);
                    CandleMerge::Backfilled
                }
            },
        };
        while self.candles.len() > self.capacity {
            self.candles.pop_front();
        }
        outcome
    }

    pub fn len(&self) -> usize {
        self.candles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.candles.is_empty()
    }

    pub fn last(&self) -> Option<&Candle> {
        self.candles.back()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Candle> {
        self.candles.iter()
    }

    /// Open times missing between the first and last candle (what a backfill must fetch).
    pub fn gaps(&self, tf: Timeframe) -> Vec<TimestampMs> {
        let step = tf.duration_ms();
        let mut out = Vec::new();
        let mut prev: Option<TimestampMs> = None;
        for c in &self.candles {
            if let Some(p) = prev {
                let mut t = p + step;
                while t < c.open_time && out.len() < 10_000 {
                    out.push(t);
                    t += step;
                }
            }
            prev = Some(c.open_time);
        }
        out
    }
}

/// Mark price and funding of one symbol.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MarkPrice {
    pub price: Decimal,
    pub funding_rate: Decimal,
    pub next_funding_time: TimestampMs,
    pub time: TimestampMs,
}

/// Health of one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamHealth {
    pub state: StreamState,
    pub last_message_at: Option<TimestampMs>,
    pub reconnects: u64,
}

/// The shared state itself.
#[derive(Debug, Clone)]
pub struct DataHub {
    pub tickers: HashMap<String, Ticker>,
    pub mark_prices: HashMap<String, MarkPrice>,
    candles: HashMap<(String, Timeframe), CandleSeries>,
    candle_capacity: usize,
    pub streams: BTreeMap<String, StreamHealth>,
    /// Exchange time of the newest mark price received.
    pub last_mark_time: TimestampMs,
}

impl Default for DataHub {
    fn default() -> Self {
        DataHub::new(DEFAULT_CANDLE_CAPACITY)
    }
}

impl DataHub {
    pub fn new(candle_capacity: usize) -> Self {
        DataHub {
            tickers: HashMap::new(),
            mark_prices: HashMap::new(),
            candles: HashMap::new(),
            candle_capacity,
            streams: BTreeMap::new(),
            last_mark_time: 0,
        }
    }

    /// Wraps a hub for sharing between tasks.
    pub fn shared(self) -> SharedHub {
        Arc::new(RwLock::new(self))
    }

    pub fn merge_candle(&mut self, symbol: &str, tf: Timeframe, c: Candle) -> CandleMerge {
        let cap = self.candle_capacity;
        self.candles.entry((symbol.to_string(), tf)).or_insert_with(|| CandleSeries::new(cap)).merge(c)
    }

    pub fn candles(&self, symbol: &str, tf: Timeframe) -> Option<&CandleSeries> {
        self.candles.get(&(symbol.to_string(), tf))
    }

    /// Keeps the candles of the symbols `keep` accepts only (memory stays O(symbols in play)).
    pub fn retain_candles(&mut self, keep: impl Fn(&str) -> bool) {
        self.candles.retain(|(s, _), _| keep(s));
    }

    /// The latest mark price of `symbol` with its exchange time.
    pub fn mark(&self, symbol: &str) -> Option<(Decimal, TimestampMs)> {
        self.mark_prices.get(symbol).map(|m| (m.price, m.time))
    }

    /// Records a message on `stream` at `now` (marks it live).
    pub fn stream_message(&mut self, stream: &str, now: TimestampMs) {
        let h = self.streams.entry(stream.to_string()).or_insert(StreamHealth {
            state: StreamState::Connecting,
            last_message_at: None,
            reconnects: 0,
        });
        h.state = StreamState::Live;
        h.last_message_at = Some(now);
    }

    /// Sets a stream's state (connecting after a drop, stale from the watchdog).
    pub fn set_stream_state(&mut self, stream: &str, state: StreamState, reconnected: bool) {
        let h = self.streams.entry(stream.to_string()).or_insert(StreamHealth {
            state,
            last_message_at: None,
            reconnects: 0,
        });
        h.state = state;
        if reconnected {
            h.reconnects += 1;
        }
    }

    /// True when every registered stream is live: no new entries on stale data.
    pub fn streams_live(&self) -> bool {
        !self.streams.is_empty() && self.streams.values().all(|h| h.state == StreamState::Live)
    }

    /// Stream health for `/status`.
    pub fn stream_statuses(&self) -> Vec<StreamStatus> {
        self.streams
            .iter()
            .map(|(name, h)| StreamStatus {
                name: name.clone(),
                state: h.state,
                last_message_at: h.last_message_at,
                reconnects: h.reconnects,
            })
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn candle(open_time: i64, close: f64) -> Candle {
        Candle {
            open_time,
            close_time: open_time + 899_999,
            open: close,
            high: close,
            low: close,
            close,
            volume: 1.0,
            quote_volume: 0.0,
            trades: 0,
            taker_buy_volume: 0.0,
            taker_buy_quote_volume: 0.0,
        }
    }

    #[test]
    fn replay_and_backfill_never_duplicate() {
        let mut s = CandleSeries::new(10);
        let step = 900_000;
        assert_eq!(s.merge(candle(0, 1.0)), CandleMerge::Appended);
        assert_eq!(s.merge(candle(3 * step, 4.0)), CandleMerge::Appended);
        assert_eq!(s.gaps(Timeframe::M15), vec![step, 2 * step]);
        assert_eq!(s.merge(candle(step, 2.0)), CandleMerge::Backfilled);
        assert_eq!(s.merge(candle(2 * step, 3.0)), CandleMerge::Backfilled);
        assert_eq!(s.merge(candle(2 * step, 3.5)), CandleMerge::Backfilled);
        assert_eq!(s.merge(candle(3 * step, 4.5)), CandleMerge::Replaced);
        let closes: Vec<f64> = s.iter().map(|c| c.close).collect();
        assert_eq!(closes, vec![1.0, 2.0, 3.5, 4.5]);
        assert!(s.gaps(Timeframe::M15).is_empty());
    }

    #[test]
    fn marks_and_stream_health() {
        use rust_decimal_macros::dec;
        let mut hub = DataHub::default();
        assert_eq!(hub.mark("BTCUSDT"), None);
        hub.mark_prices.insert(
            "BTCUSDT".into(),
            MarkPrice { price: dec!(95), funding_rate: dec!(0.0001), next_funding_time: 0, time: 1 },
        );
        assert_eq!(hub.mark("BTCUSDT"), Some((dec!(95), 1)));
        assert!(!hub.streams_live());
        hub.stream_message("market", 5);
        assert!(hub.streams_live());
        hub.set_stream_state("market", StreamState::Stale, false);
        assert!(!hub.streams_live());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Any order of arrivals, with replays, leaves a strictly ascending, bounded series that
        /// holds the newest version of each of the latest `capacity` candles.
        #[test]
        fn series_is_unique_sorted_and_bounded(ops in prop::collection::vec((0i64..40, 0u32..1000), 1..200), cap in 1usize..30) {
            let mut s = CandleSeries::new(cap);
            let mut latest: BTreeMap<i64, f64> = BTreeMap::new();
            for (slot, v) in &ops {
                let t = slot * 900_000;
                let before_min = s.iter().next().map(|c| c.open_time);
                let full = s.len() >= cap;
                let outcome = s.merge(candle(t, f64::from(*v)));
                if outcome != CandleMerge::TooOld {
                    latest.insert(t, f64::from(*v));
                } else {
                    prop_assert!(full && before_min.is_some_and(|m| t < m));
                }
            }
            prop_assert!(s.len() <= cap);
            let times: Vec<i64> = s.iter().map(|c| c.open_time).collect();
            prop_assert!(times.windows(2).all(|w| w[0] < w[1]));
            for c in s.iter() {
                prop_assert_eq!(Some(&c.close), latest.get(&c.open_time));
            }
        }
    }
}
