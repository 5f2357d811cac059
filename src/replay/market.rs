//! [`ReplayMarket`]: the public half of an exchange, played from candles on a replay clock.
//! The module documentation of [`crate::replay`] gives the rules.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use rust_decimal::Decimal;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::{M15_MS, ReplayData, ReplaySymbol};
use crate::backtest::sim::price_from_f64;
use crate::core::models::{CANDLE_CLOSE_MARGIN_MS, Candle, Ticker, Timeframe, TimestampMs};
use crate::exchange::binance::streams::MARKET_STREAM;
use crate::exchange::{
    AccountBalance, EventSinks, ExResult, Exchange, ExchangeError, ExchangeEvent, ExchangePosition, ExchangeStats,
    MarginType, MarkPriceUpdate, MarketOrderRequest, OrderReport, StopOrder, StopRequest, StreamControl, StreamEvent,
    SymbolInfo,
};

/// The 24 h window of the tickers, in 15m candles.
const TICKER_WINDOW: usize = 96;
/// At most this many mark messages per real second.
const MAX_MARKS_PER_SECOND: f64 = 40.0;
/// Market time between two marks: at least a second (Binance's fastest mark stream) ...
const MIN_STEP_MS: i64 = 1_000;
/// ... and at most five minutes (three marks per 15m candle at the fastest speeds).
const MAX_STEP_MS: i64 = 300_000;
const DAY_MS: i64 = 86_400_000;

/// Candles played as Binance's public market data. Account methods are refused: the paper
/// exchange around it answers them (a replay has no account to call).
pub struct ReplayMarket(Arc<Shared>);

/// The replay's state, shared with its player task.
struct Shared {
    data: Arc<ReplayData>,
    speed: f64,
    /// The exchange clock (ms since the epoch, in the data's time).
    clock: AtomicI64,
    /// Candles with `close_time < published` have closed and are served by `klines`.
    published: AtomicI64,
    /// Cancelled when the data ends: the daemon's shutdown token.
    done: CancellationToken,
    finished: AtomicBool,
}

/// Binance's answer to an unknown symbol.
fn invalid_symbol() -> ExchangeError {
    ExchangeError::Api { http_status: 400, code: -1121, msg: "Invalid symbol.".into() }
}

/// The mark inside `c` at `t`: open → first extreme → second extreme → close, a third of the
/// candle each (a rising candle visits its low first, a falling one its high).
pub fn walk_price(c: &Candle, t: TimestampMs) -> f64 {
    let span = (c.close_time + 1 - c.open_time).max(1) as f64;
    let x = ((t - c.open_time) as f64 / span).clamp(0.0, 1.0) * 3.0;
    let (first, second) = if c.close >= c.open { (c.low, c.high) } else { (c.high, c.low) };
    let points = [c.open, first, second, c.close];
    let leg = (x.floor() as usize).min(2);
    let f = x - leg as f64;
    let (a, b) = (points.get(leg).copied().unwrap_or(c.close), points.get(leg + 1).copied().unwrap_or(c.close));
    a + (b - a) * f
}

/// The 15m candle of `s` whose interval holds `t`.
fn candle_at(s: &ReplaySymbol, t: TimestampMs) -> Option<&Candle> {
    let i = s.m15.partition_point(|c| c.open_time <= t).checked_sub(1)?;
    s.m15.get(i).filter(|c| t <= c.close_time)
}

impl ReplayMarket {
    /// A replay of `data` at `speed` × real time; `done` is cancelled when the data ends.
    pub fn new(data: ReplayData, speed: f64, done: CancellationToken) -> Self {
        // The daemon starts just past the first close: every history candle has closed, the
        // last one more than the closed-candle margin ago.
        let start = data.start;
        ReplayMarket(Arc::new(Shared {
            data: Arc::new(data),
            speed,
            clock: AtomicI64::new(start + CANDLE_CLOSE_MARGIN_MS + 1),
            published: AtomicI64::new(start),
            done,
            finished: AtomicBool::new(false),
        }))
    }

    /// The data played.
    pub fn data(&self) -> &ReplayData {
        &self.0.data
    }

    /// True once the data has ended (the daemon was told to stop).
    pub fn finished(&self) -> bool {
        self.0.finished.load(Ordering::SeqCst)
    }

    fn refuse<T>(&self) -> ExResult<T> {
        Err(ExchangeError::Refused("a replay has no account: the paper exchange answers account calls".into()))
    }
}

impl Shared {
    fn symbol(&self, name: &str) -> Option<&ReplaySymbol> {
        self.data.symbols.iter().find(|s| s.symbol == name)
    }

    /// Klines as `GET /fapi/v1/klines` gives them, of what has closed by now: with a start
    /// time the first `limit` from it, else the last `limit` up to `end`.
    pub fn closed_klines(
        &self,
        symbol: &str,
        tf: Timeframe,
        start: Option<TimestampMs>,
        end: Option<TimestampMs>,
        limit: u16,
    ) -> ExResult<Vec<Candle>> {
        let s = self.symbol(symbol).ok_or_else(invalid_symbol)?;
        let published = self.published.load(Ordering::SeqCst);
        let series = s.series(tf);
        let visible = series.get(..series.partition_point(|c| c.close_time < published)).unwrap_or(&[]);
        let lo = start.map_or(0, |t| visible.partition_point(|c| c.open_time < t));
        let hi = end.map_or(visible.len(), |t| visible.partition_point(|c| c.open_time <= t));
        let window = visible.get(lo..hi.max(lo)).unwrap_or(&[]);
        let limit = usize::from(limit.clamp(1, 1500));
        let picked = if start.is_some() {
            window.get(..limit.min(window.len())).unwrap_or(&[])
        } else {
            window.get(window.len().saturating_sub(limit)..).unwrap_or(&[])
        };
        Ok(picked.to_vec())
    }

    /// The 24 h tickers at the last published close: from each symbol's last 96 closed 15m
    /// candles (as the backtest computes them).
    pub fn tickers_now(&self) -> Vec<Ticker> {
        let published = self.published.load(Ordering::SeqCst);
        self.data
            .symbols
            .iter()
            .filter_map(|s| {
                let upto = s.m15.partition_point(|c| c.close_time < published);
                let window = s.m15.get(upto.saturating_sub(TICKER_WINDOW)..upto)?;
                let (first, last) = (window.first()?, window.last()?);
                // A symbol whose data ended (delisted, or a shorter file) has no ticker.
                (last.close_time + 1 >= published).then(|| Ticker {
                    symbol: s.symbol.clone(),
                    last_price: last.close,
                    price_change_pct: (last.close - first.open) / first.open * 100.0,
                    volume: window.iter().map(|c| c.volume).sum(),
                    quote_volume: window.iter().map(|c| c.quote_volume_or_estimate()).sum(),
                    event_time: last.close_time,
                })
            })
            .collect()
    }

    /// The mark of every symbol trading at `t`, with its next funding time and rate.
    pub fn marks_at(&self, t: TimestampMs) -> Vec<MarkPriceUpdate> {
        self.data
            .symbols
            .iter()
            .filter_map(|s| {
                let c = candle_at(s, t)?;
                let price = price_from_f64(walk_price(c, t), s.rules.price_scale());
                (price > Decimal::ZERO).then(|| {
                    let step = s.funding_interval_ms.max(3_600_000);
                    let next = t.div_euclid(step) * step + step;
                    MarkPriceUpdate {
                        symbol: s.symbol.clone(),
                        mark_price: price,
                        index_price: None,
                        funding_rate: Some(s.rate_at(next, self.data.flat_funding)),
                        next_funding_time: Some(next),
                        event_time: t,
                    }
                })
            })
            .collect()
    }

    async fn send_marks(&self, sinks: &EventSinks, t: TimestampMs) -> bool {
        self.clock.store(t, Ordering::SeqCst);
        let marks = self.marks_at(t);
        marks.is_empty() || sinks.send(ExchangeEvent::MarkPrices(marks)).await.is_ok()
    }

    /// A 15m close at `t`: the next candles' open marks, the tickers, then the closed klines
    /// of the subscribed symbols (15m first, the 1h and 4h closing with it after).
    async fn close_at(&self, sinks: &EventSinks, t: TimestampMs, subscribed: &BTreeSet<String>) -> bool {
        self.published.store(t, Ordering::SeqCst);
        if !self.send_marks(sinks, t).await {
            return false;
        }
        if sinks.send(ExchangeEvent::Tickers(self.tickers_now())).await.is_err() {
            return false;
        }
        for s in self.data.symbols.iter().filter(|s| subscribed.contains(&s.symbol)) {
            for tf in [Timeframe::M15, Timeframe::H1, Timeframe::H4] {
                let series = s.series(tf);
                let i = series.partition_point(|c| c.close_time < t - 1);
                if let Some(c) = series.get(i).filter(|c| c.close_time == t - 1) {
                    let ev = ExchangeEvent::Kline { symbol: s.symbol.clone(), timeframe: tf, candle: *c, closed: true };
                    if sinks.send(ev).await.is_err() {
                        return false;
                    }
                }
            }
        }
        true
    }

    /// Plays the data until it ends (then cancels the daemon) or `cancel` fires.
    async fn play(
        self: Arc<Self>,
        sinks: EventSinks,
        subscribed: watch::Receiver<BTreeSet<String>>,
        cancel: CancellationToken,
    ) {
        let step_ms = ((self.speed * 1000.0 / MAX_MARKS_PER_SECOND) as i64).clamp(MIN_STEP_MS, MAX_STEP_MS);
        let period = Duration::from_secs_f64(step_ms as f64 / 1000.0 / self.speed);
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let (start, end) = (self.data.start, self.data.end);
        tracing::info!(
            source = %self.data.source,
            from = %crate::data::time_text(start),
            to = %crate::data::time_text(end),
            speed = self.speed,
            "replay: playing candles as market data (no network, paper account)"
        );
        let connected =
            ExchangeEvent::Stream(StreamEvent::Connected { stream: MARKET_STREAM.into(), reconnect: false });
        let mut t = self.clock.load(Ordering::SeqCst);
        if sinks.send(connected).await.is_err() || !self.send_marks(&sinks, t).await {
            return;
        }
        let mut boundary = start;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let close = boundary + M15_MS;
            if t + step_ms < close {
                t += step_ms;
                if !self.send_marks(&sinks, t).await {
                    return;
                }
                continue;
            }
            // The walk ends at the close price, then the candle closes.
            let subscribed_now = subscribed.borrow().clone();
            if !self.send_marks(&sinks, close - 1).await || !self.close_at(&sinks, close, &subscribed_now).await {
                return;
            }
            if close.div_euclid(DAY_MS) != boundary.div_euclid(DAY_MS) {
                let done = (close - start) as f64 / (end - start).max(1) as f64 * 100.0;
                tracing::info!(replay_time = %crate::data::time_text(close), "replay: {done:.0} % played");
            }
            boundary = close;
            t = close;
            if close >= end {
                tracing::info!(at = %crate::data::time_text(close), "replay: the data ends; stopping the daemon");
                self.finished.store(true, Ordering::SeqCst);
                self.done.cancel();
                return;
            }
        }
    }
}

impl Exchange for ReplayMarket {
    fn is_paper(&self) -> bool {
        true
    }
    async fn symbols(&self) -> ExResult<Vec<SymbolInfo>> {
        Ok(self
            .0
            .data
            .symbols
            .iter()
            .map(|s| SymbolInfo { filters: s.rules.filters.clone(), max_leverage: s.rules.filters.max_leverage })
            .collect())
    }
    async fn tickers(&self) -> ExResult<Vec<Ticker>> {
        Ok(self.0.tickers_now())
    }
    async fn klines(
        &self,
        symbol: &str,
        timeframe: Timeframe,
        start: Option<TimestampMs>,
        end: Option<TimestampMs>,
        limit: u16,
    ) -> ExResult<Vec<Candle>> {
        self.0.closed_klines(symbol, timeframe, start, end, limit)
    }
    async fn locked_symbols(&self) -> ExResult<BTreeSet<String>> {
        self.refuse()
    }
    async fn hedge_mode(&self) -> ExResult<bool> {
        self.refuse()
    }
    async fn balance(&self) -> ExResult<AccountBalance> {
        self.refuse()
    }
    async fn positions(&self) -> ExResult<Vec<ExchangePosition>> {
        self.refuse()
    }
    async fn open_orders(&self) -> ExResult<Vec<OrderReport>> {
        self.refuse()
    }
    async fn open_stops(&self) -> ExResult<Vec<StopOrder>> {
        self.refuse()
    }
    async fn prepare_symbol(&self, _symbol: &str, _margin: MarginType, _leverage: u32) -> ExResult<()> {
        self.refuse()
    }
    async fn place_market(&self, _req: &MarketOrderRequest) -> ExResult<OrderReport> {
        self.refuse()
    }
    async fn query_order(&self, _symbol: &str, _client_id: &str) -> ExResult<Option<OrderReport>> {
        self.refuse()
    }
    async fn place_stop(&self, _req: &StopRequest) -> ExResult<StopOrder> {
        self.refuse()
    }
    async fn cancel_stop(&self, _symbol: &str, _algo_id: i64) -> ExResult<()> {
        self.refuse()
    }
    async fn cancel_all(&self, _symbol: &str) -> ExResult<()> {
        self.refuse()
    }
    async fn start_streams(&self, events: EventSinks, cancel: CancellationToken) -> ExResult<StreamControl> {
        let (tx, rx) = watch::channel(BTreeSet::new());
        tokio::spawn(Arc::clone(&self.0).play(events, rx, cancel));
        Ok(StreamControl { kline_symbols: tx })
    }
    fn stats(&self) -> ExchangeStats {
        ExchangeStats::default()
    }
    fn now_ms(&self) -> TimestampMs {
        self.0.clock.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use rust_decimal::prelude::ToPrimitive;

    fn candle(open_time: i64, o: f64, h: f64, l: f64, c: f64) -> Candle {
        Candle {
            open_time,
            close_time: open_time + M15_MS - 1,
            open: o,
            high: h,
            low: l,
            close: c,
            volume: 1.0,
            quote_volume: 1.0,
            trades: 1,
            taker_buy_volume: 0.0,
            taker_buy_quote_volume: 0.0,
        }
    }

    #[test]
    fn a_rising_candle_visits_its_low_first_a_falling_one_its_high() {
        let up = candle(0, 100.0, 110.0, 95.0, 105.0);
        let third = M15_MS / 3;
        assert_eq!(walk_price(&up, 0), 100.0);
        assert!((walk_price(&up, third) - 95.0).abs() < 1e-9);
        assert!((walk_price(&up, 2 * third) - 110.0).abs() < 1e-9);
        assert!((walk_price(&up, up.close_time + 1) - 105.0).abs() < 1e-9);
        let down = candle(0, 100.0, 104.0, 90.0, 92.0);
        assert!((walk_price(&down, third) - 104.0).abs() < 1e-9);
        assert!((walk_price(&down, 2 * third) - 90.0).abs() < 1e-9);
        // Every mark stays inside the candle's range.
        for t in (0..M15_MS).step_by(7_919) {
            let p = walk_price(&down, t);
            assert!((90.0..=104.0).contains(&p), "{t}: {p}");
        }
    }

    #[test]
    fn klines_and_tickers_show_only_what_has_closed() {
        let data = ReplayData::sample(0.01).unwrap();
        let start = data.start;
        let market = ReplayMarket::new(data, 100.0, CancellationToken::new());
        let h4 = market.0.closed_klines("BTCUSDT", Timeframe::H4, None, None, 200).unwrap();
        assert_eq!(h4.len(), 200);
        assert!(h4.iter().all(|c| c.close_time < start));
        assert_eq!(h4.last().unwrap().close_time, start - 1, "the last 4h candle before the start");
        let m15 = market.0.closed_klines("BTCUSDT", Timeframe::M15, Some(start - 4 * M15_MS), None, 1000).unwrap();
        assert_eq!(m15.len(), 4, "from a start time: up to what has closed");
        let one = market.0.closed_klines("BTCUSDT", Timeframe::M15, None, Some(start - 3 * M15_MS), 2).unwrap();
        assert_eq!(one.iter().map(|c| c.open_time).collect::<Vec<_>>(), [start - 4 * M15_MS, start - 3 * M15_MS]);
        assert!(matches!(
            market.0.closed_klines("NOPEUSDT", Timeframe::M15, None, None, 5),
            Err(ExchangeError::Api { code: -1121, .. })
        ));
        let tickers = market.0.tickers_now();
        assert_eq!(tickers.len(), 5);
        let btc = tickers.iter().find(|t| t.symbol == "BTCUSDT").unwrap();
        assert_eq!(btc.event_time, start - 1);
        let last = market.0.closed_klines("BTCUSDT", Timeframe::M15, None, None, 96).unwrap();
        assert_eq!(btc.last_price, last[95].close);
        assert!((btc.price_change_pct - (last[95].close - last[0].open) / last[0].open * 100.0).abs() < 1e-9);
    }

    #[test]
    fn marks_carry_the_next_funding_time_and_its_rate_from_the_file() {
        let data = ReplayData::sample(0.01).unwrap();
        let start = data.start;
        let btc = data.symbols.iter().find(|s| s.symbol == "BTCUSDT").unwrap().clone();
        let market = ReplayMarket::new(data, 100.0, CancellationToken::new());
        let marks = market.0.marks_at(start + 1_000);
        assert_eq!(marks.len(), 5);
        let m = marks.iter().find(|m| m.symbol == "BTCUSDT").unwrap();
        let next = (start / 28_800_000 + 1) * 28_800_000;
        assert_eq!(m.next_funding_time, Some(next));
        let from_file = btc.funding.iter().find(|(t, _)| *t == next).unwrap().1;
        assert_eq!(m.funding_rate, Some(from_file));
        let c = btc.m15.iter().find(|c| c.open_time == start).unwrap();
        assert!(m.mark_price.to_f64().unwrap() >= c.low && m.mark_price.to_f64().unwrap() <= c.high);
        assert_eq!(m.event_time, start + 1_000);
    }
}
