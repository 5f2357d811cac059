//! The exchange the latency benches run on: the paper exchange over a scripted market, with
//! hooks on the order calls (to time them, or to make one never return).

use std::collections::BTreeSet;

use kinetic::core::models::{Candle, Ticker, Timeframe, TimestampMs};
use kinetic::exchange::paper::PaperExchange;
use kinetic::exchange::{
    AccountBalance, EventSinks, ExResult, Exchange, ExchangePosition, ExchangeStats, MarginType, MarketOrderRequest,
    OrderReport, StopOrder, StopRequest, StreamControl, SymbolInfo,
};
use tokio_util::sync::CancellationToken;

use crate::common::ScriptedMarket;

/// What a bench wants to see or change of the order calls.
pub trait Hooks: Send + Sync + 'static {
    /// Before a market order leaves; `true` = it is never answered.
    fn market(&self, _req: &MarketOrderRequest) -> bool {
        false
    }
    /// Before a stop order leaves.
    fn stop_placed(&self, _req: &StopRequest) {}
    /// After a stop was cancelled.
    fn stop_cancelled(&self, _symbol: &str) {}
}

/// Delegates every call to the paper exchange, calling the hooks around the order calls.
pub struct Probe<H> {
    pub inner: PaperExchange<ScriptedMarket>,
    pub hooks: H,
}

impl<H: Hooks> Exchange for Probe<H> {
    fn is_paper(&self) -> bool {
        true
    }
    async fn symbols(&self) -> ExResult<Vec<SymbolInfo>> {
        self.inner.symbols().await
    }
    async fn tickers(&self) -> ExResult<Vec<Ticker>> {
        self.inner.tickers().await
    }
    async fn klines(
        &self,
        s: &str,
        tf: Timeframe,
        a: Option<TimestampMs>,
        b: Option<TimestampMs>,
        l: u16,
    ) -> ExResult<Vec<Candle>> {
        self.inner.klines(s, tf, a, b, l).await
    }
    async fn locked_symbols(&self) -> ExResult<BTreeSet<String>> {
        self.inner.locked_symbols().await
    }
    async fn hedge_mode(&self) -> ExResult<bool> {
        self.inner.hedge_mode().await
    }
    async fn balance(&self) -> ExResult<AccountBalance> {
        self.inner.balance().await
    }
    async fn positions(&self) -> ExResult<Vec<ExchangePosition>> {
        self.inner.positions().await
    }
    async fn open_orders(&self) -> ExResult<Vec<OrderReport>> {
        self.inner.open_orders().await
    }
    async fn open_stops(&self) -> ExResult<Vec<StopOrder>> {
        self.inner.open_stops().await
    }
    async fn prepare_symbol(&self, s: &str, m: MarginType, l: u32) -> ExResult<()> {
        self.inner.prepare_symbol(s, m, l).await
    }
    async fn place_market(&self, r: &MarketOrderRequest) -> ExResult<OrderReport> {
        if self.hooks.market(r) {
            // Never answered: the request stays in flight for the rest of the run.
            std::future::pending::<()>().await;
        }
        self.inner.place_market(r).await
    }
    async fn query_order(&self, s: &str, c: &str) -> ExResult<Option<OrderReport>> {
        self.inner.query_order(s, c).await
    }
    async fn place_stop(&self, r: &StopRequest) -> ExResult<StopOrder> {
        self.hooks.stop_placed(r);
        self.inner.place_stop(r).await
    }
    async fn cancel_stop(&self, s: &str, id: i64) -> ExResult<()> {
        let r = self.inner.cancel_stop(s, id).await;
        self.hooks.stop_cancelled(s);
        r
    }
    async fn cancel_all(&self, s: &str) -> ExResult<()> {
        self.inner.cancel_all(s).await
    }
    async fn start_streams(&self, e: EventSinks, c: CancellationToken) -> ExResult<StreamControl> {
        self.inner.start_streams(e, c).await
    }
    fn stats(&self) -> ExchangeStats {
        self.inner.stats()
    }
    fn now_ms(&self) -> TimestampMs {
        self.inner.now_ms()
    }
}
