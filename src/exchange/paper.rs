//! The paper exchange behind `kinetic run --dry-run`: real public market data from a wrapped
//! exchange, a simulated account. The account is the
//! [`SimBook`] the backtest also uses (its fill, stop and funding rules are documented there)
//! with `paper.taker_fee_pct` and `paper.slippage_pct`; funding is charged when a mark-price
//! update shows the funding time has passed. The simulated account emits the same events a
//! live user-data stream would (order fills, stop updates, account updates), so the engine
//! cannot tell the difference.
//!
//! Safety: only the wrapped exchange's PUBLIC methods are ever called (symbols, tickers,
//! klines, streams). Every account method is answered locally, so a dry run never sends a
//! signed request — even if the wrapped client had credentials.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use rust_decimal::prelude::*;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::PaperSettings;
use crate::core::models::{Candle, Ticker, Timeframe, TimestampMs, decimal_from_f64};
use crate::data::funding::FundingIntervals;
use crate::exchange::sim_book::SimBook;
use crate::exchange::{
    AccountBalance, EventSinks, ExResult, Exchange, ExchangeEvent, ExchangePosition, ExchangeStats, MarginType,
    MarkPriceUpdate, MarketOrderRequest, OrderReport, StopOrder, StopRequest, StreamControl, SymbolInfo,
};

pub use crate::exchange::sim_book::ALGO_ORDER_LIMIT;

/// Simulated account over a real (public) market-data source `M`.
pub struct PaperExchange<M> {
    market: Arc<M>,
    book: Arc<Mutex<SimBook>>,
    events: Arc<Mutex<Option<EventSinks>>>,
}

fn frac(pct: f64) -> Decimal {
    decimal_from_f64(pct).unwrap_or(Decimal::ZERO) / Decimal::ONE_HUNDRED
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked mid-update; the state is plain data
    // and still the best record we have.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<M: Exchange> PaperExchange<M> {
    pub fn new(market: Arc<M>, settings: &PaperSettings) -> Self {
        let wallet = decimal_from_f64(settings.starting_balance).unwrap_or(Decimal::ZERO);
        PaperExchange {
            market,
            book: Arc::new(Mutex::new(SimBook::new(wallet, frac(settings.taker_fee_pct), frac(settings.slippage_pct)))),
            events: Arc::new(Mutex::new(None)),
        }
    }

    async fn deliver(&self, events: Vec<ExchangeEvent>) {
        let sender = lock(&self.events).clone();
        if let Some(tx) = sender {
            for e in events {
                let _ = tx.send(e).await;
            }
        }
    }

    /// Funding intervals per symbol (from `GET /fapi/v1/fundingInfo`): when the mark stream
    /// skips funding times (a gap, a reconnect), each skipped funding is charged.
    pub fn set_funding_intervals(&self, intervals: FundingIntervals) {
        lock(&self.book).set_funding_intervals(intervals);
    }

    /// Sets a mark price directly (tests and replays); triggers stops like a stream update.
    pub async fn set_mark_price(&self, symbol: &str, price: Decimal, time: TimestampMs) {
        let update = MarkPriceUpdate::at(symbol, price, time);
        self.apply_mark_update(update).await;
    }

    /// Applies one mark-price update as the stream would (funding, stops); tests and replays.
    pub async fn apply_mark_update(&self, update: MarkPriceUpdate) {
        let events = lock(&self.book).apply_mark(&update);
        self.deliver(events).await;
    }

    /// Total fees and funding paid so far (fees, funding).
    pub fn costs(&self) -> (Decimal, Decimal) {
        let b = lock(&self.book);
        (b.fees_paid, b.funding_paid)
    }
}

impl<M: Exchange> Exchange for PaperExchange<M> {
    fn is_paper(&self) -> bool {
        true
    }

    async fn symbols(&self) -> ExResult<Vec<SymbolInfo>> {
        // Leverage brackets are a signed endpoint, so public data reports no maximum; paper
        // trading assumes the leverage table's values (≤ 125, Binance's ceiling) are allowed.
        // Maintenance margin rates come from the same signed endpoint: no liquidation is
        // modelled in paper trading (every position has its stop well before it).
        let mut infos = self.market.symbols().await?;
        {
            let mut b = lock(&self.book);
            for i in &infos {
                b.set_symbol(&i.filters.symbol, i.filters.tick_size, None);
            }
        }
        for i in &mut infos {
            if i.max_leverage <= 1 {
                i.max_leverage = 125;
            }
        }
        Ok(infos)
    }

    async fn tickers(&self) -> ExResult<Vec<Ticker>> {
        self.market.tickers().await
    }

    async fn klines(
        &self,
        symbol: &str,
        timeframe: Timeframe,
        start_time: Option<TimestampMs>,
        end_time: Option<TimestampMs>,
        limit: u16,
    ) -> ExResult<Vec<Candle>> {
        self.market.klines(symbol, timeframe, start_time, end_time, limit).await
    }

    async fn locked_symbols(&self) -> ExResult<BTreeSet<String>> {
        Ok(BTreeSet::new())
    }

    async fn hedge_mode(&self) -> ExResult<bool> {
        Ok(false)
    }

    async fn balance(&self) -> ExResult<AccountBalance> {
        Ok(lock(&self.book).balance())
    }

    async fn positions(&self) -> ExResult<Vec<ExchangePosition>> {
        let now = self.market.now_ms();
        Ok(lock(&self.book).positions(now))
    }

    async fn open_orders(&self) -> ExResult<Vec<OrderReport>> {
        // Market orders fill at once; nothing rests except stops.
        Ok(Vec::new())
    }

    async fn open_stops(&self) -> ExResult<Vec<StopOrder>> {
        Ok(lock(&self.book).open_stops())
    }

    async fn prepare_symbol(&self, symbol: &str, _margin: MarginType, leverage: u32) -> ExResult<()> {
        lock(&self.book).set_leverage(symbol, leverage)
    }

    async fn place_market(&self, req: &MarketOrderRequest) -> ExResult<OrderReport> {
        let now = self.market.now_ms();
        let (report, events) = lock(&self.book).market(req, now)?;
        self.deliver(events).await;
        Ok(report)
    }

    async fn query_order(&self, _symbol: &str, client_order_id: &str) -> ExResult<Option<OrderReport>> {
        Ok(lock(&self.book).order(client_order_id))
    }

    async fn place_stop(&self, req: &StopRequest) -> ExResult<StopOrder> {
        let now = self.market.now_ms();
        let (stop, event) = lock(&self.book).place_stop(req, now)?;
        self.deliver(event.into_iter().collect()).await;
        Ok(stop)
    }

    async fn cancel_stop(&self, _symbol: &str, algo_id: i64) -> ExResult<()> {
        let now = self.market.now_ms();
        let event = lock(&self.book).cancel_stop(algo_id, now);
        self.deliver(event.into_iter().collect()).await;
        Ok(())
    }

    async fn cancel_all(&self, symbol: &str) -> ExResult<()> {
        let now = self.market.now_ms();
        let events = lock(&self.book).cancel_all(symbol, now);
        self.deliver(events).await;
        Ok(())
    }

    async fn start_streams(&self, events: EventSinks, cancel: CancellationToken) -> ExResult<StreamControl> {
        let (inner_tx, mut inner_rx) = mpsc::channel::<ExchangeEvent>(1024);
        let control = self.market.start_streams(inner_tx.into(), cancel.clone()).await?;
        *lock(&self.events) = Some(events.clone());
        let book = Arc::clone(&self.book);
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    _ = cancel.cancelled() => break,
                    ev = inner_rx.recv() => match ev { Some(ev) => ev, None => break },
                };
                let generated = {
                    let mut b = lock(&book);
                    match &ev {
                        ExchangeEvent::MarkPrices(updates) => updates.iter().flat_map(|u| b.apply_mark(u)).collect(),
                        // Until the first mark price of a symbol arrives, its last traded price
                        // stands in, so a paper order never fails for want of a price.
                        ExchangeEvent::Tickers(tickers) => {
                            for t in tickers {
                                if let Some(p) = decimal_from_f64(t.last_price) {
                                    b.seed_mark(&t.symbol, p);
                                }
                            }
                            Vec::new()
                        }
                        ExchangeEvent::Kline { symbol, candle, .. } => {
                            if let Some(p) = decimal_from_f64(candle.close) {
                                b.seed_mark(symbol, p);
                            }
                            Vec::new()
                        }
                        _ => Vec::new(),
                    }
                };
                // What the price caused (a stop's fill, funding) is delivered before the price
                // itself: whoever reacts to the price already knows the account it left.
                for g in generated {
                    if events.send(g).await.is_err() {
                        return;
                    }
                }
                if events.send(ev).await.is_err() {
                    break;
                }
            }
        });
        Ok(control)
    }

    fn stats(&self) -> ExchangeStats {
        let mut s = self.market.stats();
        let b = lock(&self.book);
        s.orders_sent = b.orders_sent;
        s.orders_rejected = b.orders_rejected;
        s.algo_orders_open = u32::try_from(b.open_stops().len()).unwrap_or(0);
        s
    }

    fn now_ms(&self) -> TimestampMs {
        self.market.now_ms()
    }
}
