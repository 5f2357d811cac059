//! The paper exchange behind `kinetic run --dry-run`: real public market data from a wrapped
//! exchange, a simulated account. Market orders fill at the current mark price moved against
//! us by `paper.slippage_pct` (rounded to the tick against us, the backtest's fill model in
//! `backtest::sim`) and pay `paper.taker_fee_pct`; protective stops rest here, trigger on the
//! mark price like Binance's `workingType=MARK_PRICE` stops and then fill at market (the mark
//! that crossed the trigger, so a gap fills at the gap price); funding is
//! charged when a mark-price update shows the funding time has passed. The simulated account
//! emits the same events a live user-data stream would (order fills, stop updates, account
//! updates), so the engine cannot tell the difference.
//!
//! Safety: only the wrapped exchange's PUBLIC methods are ever called (symbols, tickers,
//! klines, streams). Every account method is answered locally, so a dry run never sends a
//! signed request — even if the wrapped client had credentials.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use rust_decimal::prelude::*;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::PaperSettings;
use crate::core::models::{Candle, Direction, OrderStatus, Side, Ticker, Timeframe, TimestampMs, decimal_from_f64};
use crate::data::funding::FundingIntervals;
use crate::exchange::{
    AccountBalance, EventSinks, ExResult, Exchange, ExchangeError, ExchangeEvent, ExchangePosition, ExchangeStats,
    Fill, MarginType, MarkPriceUpdate, MarketOrderRequest, OrderReport, StopOrder, StopRequest, StopStatus,
    StreamControl, SymbolInfo,
};

/// Binance's account-wide limit of open conditional orders.
pub const ALGO_ORDER_LIMIT: usize = 200;

#[derive(Debug, Clone, PartialEq)]
struct PaperPosition {
    direction: Direction,
    qty: Decimal,
    entry: Decimal,
    leverage: u32,
}

#[derive(Debug, Default)]
struct PaperState {
    /// Tick size per symbol (from `symbols()`), for fill prices.
    ticks: HashMap<String, Decimal>,
    wallet: Decimal,
    marks: HashMap<String, Decimal>,
    /// Last `next_funding_time` seen per symbol and the rate announced for it.
    funding: HashMap<String, (TimestampMs, Decimal)>,
    /// Funding interval per symbol (`fundingInfo`; 8 h when not listed).
    funding_intervals: FundingIntervals,
    leverage: HashMap<String, u32>,
    positions: BTreeMap<String, PaperPosition>,
    stops: BTreeMap<i64, StopOrder>,
    orders: HashMap<String, OrderReport>,
    next_order_id: i64,
    next_trade_id: i64,
    fees_paid: Decimal,
    funding_paid: Decimal,
    orders_sent: u64,
    orders_rejected: u64,
    events: Option<EventSinks>,
}

/// Simulated account over a real (public) market-data source `M`.
pub struct PaperExchange<M> {
    market: Arc<M>,
    state: Arc<Mutex<PaperState>>,
    taker_fee: Decimal,
    slippage: Decimal,
}

fn frac(pct: f64) -> Decimal {
    decimal_from_f64(pct).unwrap_or(Decimal::ZERO) / Decimal::ONE_HUNDRED
}

fn lock(state: &Mutex<PaperState>) -> MutexGuard<'_, PaperState> {
    // A poisoned lock only means another thread panicked mid-update; the state is plain data
    // and still the best record we have.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl<M: Exchange> PaperExchange<M> {
    pub fn new(market: Arc<M>, settings: &PaperSettings) -> Self {
        let state = PaperState {
            wallet: decimal_from_f64(settings.starting_balance).unwrap_or(Decimal::ZERO),
            next_order_id: 1,
            next_trade_id: 1,
            ..PaperState::default()
        };
        PaperExchange {
            market,
            state: Arc::new(Mutex::new(state)),
            taker_fee: frac(settings.taker_fee_pct),
            slippage: frac(settings.slippage_pct),
        }
    }

    /// Funding intervals per symbol (from `GET /fapi/v1/fundingInfo`): when the mark stream
    /// skips funding times (a gap, a reconnect), each skipped funding is charged.
    pub fn set_funding_intervals(&self, intervals: FundingIntervals) {
        lock(&self.state).funding_intervals = intervals;
    }

    /// Sets a mark price directly (tests and replays); triggers stops like a stream update.
    pub async fn set_mark_price(&self, symbol: &str, price: Decimal, time: TimestampMs) {
        let update = MarkPriceUpdate {
            symbol: symbol.to_string(),
            mark_price: price,
            index_price: None,
            funding_rate: None,
            next_funding_time: None,
            event_time: time,
        };
        self.apply_mark_update(update).await;
    }

    /// Applies one mark-price update as the stream would (funding, stops); tests and replays.
    pub async fn apply_mark_update(&self, update: MarkPriceUpdate) {
        let (events, sender) = {
            let mut st = lock(&self.state);
            let ev = apply_marks(&mut st, std::slice::from_ref(&update), self.taker_fee, self.slippage);
            (ev, st.events.clone())
        };
        if let Some(tx) = sender {
            for e in events {
                let _ = tx.send(e).await;
            }
        }
    }

    /// Total fees and funding paid so far (fees, funding).
    pub fn costs(&self) -> (Decimal, Decimal) {
        let st = lock(&self.state);
        (st.fees_paid, st.funding_paid)
    }
}

/// Balances of the simulated account at the last mark prices (isolated margin at entry).
fn balance_of(st: &PaperState) -> AccountBalance {
    let mut upnl = Decimal::ZERO;
    let mut margin = Decimal::ZERO;
    for (sym, p) in &st.positions {
        let mark = st.marks.get(sym).copied().unwrap_or(p.entry);
        upnl += (mark - p.entry) * p.qty * p.direction.sign();
        margin += p.entry * p.qty / Decimal::from(p.leverage.max(1));
    }
    AccountBalance {
        wallet_balance: st.wallet,
        equity: st.wallet + upnl,
        available_balance: (st.wallet - margin + upnl.min(Decimal::ZERO)).max(Decimal::ZERO),
        unrealized_pnl: upnl,
    }
}

fn position_report(st: &PaperState, symbol: &str, time: TimestampMs) -> ExchangePosition {
    match st.positions.get(symbol) {
        Some(p) => {
            let mark = st.marks.get(symbol).copied().unwrap_or(p.entry);
            ExchangePosition {
                symbol: symbol.to_string(),
                direction: p.direction,
                qty: p.qty,
                entry_price: p.entry,
                mark_price: mark,
                unrealized_pnl: (mark - p.entry) * p.qty * p.direction.sign(),
                leverage: p.leverage,
                liquidation_price: None,
                update_time: time,
            }
        }
        None => ExchangePosition {
            symbol: symbol.to_string(),
            direction: Direction::Long,
            qty: Decimal::ZERO,
            entry_price: Decimal::ZERO,
            mark_price: st.marks.get(symbol).copied().unwrap_or(Decimal::ZERO),
            unrealized_pnl: Decimal::ZERO,
            leverage: st.leverage.get(symbol).copied().unwrap_or(1),
            liquidation_price: None,
            update_time: time,
        },
    }
}

/// Executes a market order against the simulated book at the current mark price.
/// Returns the report and the events a user stream would carry.
fn execute_market(
    st: &mut PaperState,
    req: &MarketOrderRequest,
    time: TimestampMs,
    taker_fee: Decimal,
    slippage: Decimal,
) -> ExResult<(OrderReport, Vec<ExchangeEvent>)> {
    let (symbol, side, qty, reduce_only) = (req.symbol.as_str(), req.side, req.qty, req.reduce_only);
    let client_order_id = req.client_order_id.as_str();
    let reject = |st: &mut PaperState, http_status: u16, code: i64, msg: &str| {
        st.orders_rejected += 1;
        Err(ExchangeError::Api { http_status, code, msg: msg.to_string() })
    };
    if qty <= Decimal::ZERO {
        return reject(st, 400, -4003, "Quantity less than or equal to zero.");
    }
    let Some(mark) = st.marks.get(symbol).copied() else {
        return reject(st, 400, -1121, "Invalid symbol (no mark price yet).");
    };
    // The same fill model as the backtest: the price moved against us by the slippage and
    // rounded to the tick against us. A triggered stop is a market order at the mark that
    // crossed its trigger — near the trigger on a continuous market, at the gap price when the
    // market jumped through it (never better than reality).
    let tick = st.ticks.get(symbol).copied().unwrap_or(Decimal::ZERO);
    let base = mark;
    let price = if tick > Decimal::ZERO {
        crate::backtest::sim::market_fill_price(side, base, slippage, tick)
    } else {
        match side {
            Side::Buy => base * (Decimal::ONE + slippage),
            Side::Sell => base * (Decimal::ONE - slippage),
        }
    };
    let existing = st.positions.get(symbol).cloned();
    let closing = existing.as_ref().is_some_and(|p| p.direction.exit_side() == side);
    let mut fill_qty = qty;
    if reduce_only {
        match &existing {
            Some(p) if closing => fill_qty = qty.min(p.qty),
            _ => return reject(st, 400, -2022, "ReduceOnly Order is rejected."),
        }
    }
    let leverage = st.leverage.get(symbol).copied().unwrap_or(1).max(1);
    if !closing {
        let bal = balance_of(st);
        let margin = price * fill_qty / Decimal::from(leverage);
        let fee = price * fill_qty * taker_fee;
        if margin + fee > bal.available_balance {
            return reject(st, 400, crate::exchange::CODE_INSUFFICIENT_MARGIN, "Margin is insufficient.");
        }
    }
    let fee = price * fill_qty * taker_fee;
    let mut realized = Decimal::ZERO;
    match existing {
        None => {
            let direction = if side == Side::Buy { Direction::Long } else { Direction::Short };
            st.positions.insert(symbol.to_string(), PaperPosition { direction, qty: fill_qty, entry: price, leverage });
        }
        Some(mut p) if !closing => {
            let total = p.qty + fill_qty;
            p.entry = (p.entry * p.qty + price * fill_qty) / total;
            p.qty = total;
            st.positions.insert(symbol.to_string(), p);
        }
        Some(mut p) => {
            let closed = fill_qty.min(p.qty);
            realized = (price - p.entry) * closed * p.direction.sign();
            p.qty -= closed;
            let flip = fill_qty - closed;
            if p.qty.is_zero() {
                st.positions.remove(symbol);
                if flip > Decimal::ZERO {
                    let direction = if side == Side::Buy { Direction::Long } else { Direction::Short };
                    st.positions
                        .insert(symbol.to_string(), PaperPosition { direction, qty: flip, entry: price, leverage });
                }
            } else {
                st.positions.insert(symbol.to_string(), p);
            }
        }
    }
    st.wallet += realized - fee;
    st.fees_paid += fee;
    st.orders_sent += 1;
    let order_id = st.next_order_id;
    st.next_order_id += 1;
    let trade_id = st.next_trade_id;
    st.next_trade_id += 1;
    let report = OrderReport {
        symbol: symbol.to_string(),
        client_order_id: client_order_id.to_string(),
        order_id,
        side,
        status: OrderStatus::Filled,
        orig_qty: qty,
        executed_qty: fill_qty,
        avg_price: price,
        reduce_only,
        update_time: time,
    };
    st.orders.insert(client_order_id.to_string(), report.clone());
    let fill = Fill {
        symbol: symbol.to_string(),
        client_order_id: client_order_id.to_string(),
        order_id,
        trade_id,
        side,
        price,
        qty: fill_qty,
        fee,
        realized_pnl: realized,
        reduce_only,
        time,
    };
    let balance = balance_of(st);
    let events = vec![
        ExchangeEvent::OrderUpdate { report: report.clone(), fill: Some(fill) },
        ExchangeEvent::AccountUpdate {
            balance: Some(balance),
            positions: vec![position_report(st, symbol, time)],
            time,
            transfer: None,
        },
    ];
    Ok((report, events))
}

/// Applies mark prices: records them, charges funding whose time has passed, triggers stops.
fn apply_marks(
    st: &mut PaperState,
    updates: &[MarkPriceUpdate],
    taker_fee: Decimal,
    slippage: Decimal,
) -> Vec<ExchangeEvent> {
    let mut out = Vec::new();
    for u in updates {
        if u.mark_price <= Decimal::ZERO {
            continue;
        }
        st.marks.insert(u.symbol.clone(), u.mark_price);
        if let (Some(next), Some(rate)) = (u.next_funding_time, u.funding_rate) {
            let previous = st.funding.insert(u.symbol.clone(), (next, rate));
            if let Some((prev_time, prev_rate)) = previous
                && next > prev_time
                && let Some(p) = st.positions.get(&u.symbol)
            {
                // Longs pay shorts when the rate is positive. Fundings the stream skipped (the
                // symbol's own interval: 8 h, 4 h, 1 h ...) are charged at the last rate seen.
                let times = Decimal::from(st.funding_intervals.fundings_between(&u.symbol, prev_time, next));
                let payment = p.qty * u.mark_price * prev_rate * p.direction.sign() * times;
                st.wallet -= payment;
                st.funding_paid += payment;
                let balance = balance_of(st);
                out.push(ExchangeEvent::AccountUpdate {
                    balance: Some(balance),
                    positions: vec![],
                    time: u.event_time,
                    transfer: None,
                });
            }
        }
        let triggered: Vec<i64> = st
            .stops
            .values()
            .filter(|s| s.symbol == u.symbol && s.status.is_resting())
            .filter(|s| match s.side {
                Side::Sell => u.mark_price <= s.trigger_price,
                Side::Buy => u.mark_price >= s.trigger_price,
            })
            .map(|s| s.algo_id)
            .collect();
        for id in triggered {
            let Some(mut stop) = st.stops.remove(&id) else { continue };
            stop.status = StopStatus::Triggered;
            stop.update_time = u.event_time;
            out.push(ExchangeEvent::StopUpdate(stop.clone()));
            let req = MarketOrderRequest {
                symbol: stop.symbol.clone(),
                side: stop.side,
                qty: stop.qty,
                reduce_only: true,
                client_order_id: format!("{}-x", stop.client_id),
            };
            match execute_market(st, &req, u.event_time, taker_fee, slippage) {
                Ok((_, events)) => {
                    stop.status = StopStatus::Finished;
                    out.extend(events);
                }
                Err(_) => stop.status = StopStatus::Expired,
            }
            out.push(ExchangeEvent::StopUpdate(stop));
        }
    }
    out
}

impl<M: Exchange> Exchange for PaperExchange<M> {
    fn is_paper(&self) -> bool {
        true
    }

    async fn symbols(&self) -> ExResult<Vec<SymbolInfo>> {
        // Leverage brackets are a signed endpoint, so public data reports no maximum; paper
        // trading assumes the leverage table's values (≤ 125, Binance's ceiling) are allowed.
        let mut infos = self.market.symbols().await?;
        {
            let mut st = lock(&self.state);
            for i in &infos {
                st.ticks.insert(i.filters.symbol.clone(), i.filters.tick_size);
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
        Ok(balance_of(&lock(&self.state)))
    }

    async fn positions(&self) -> ExResult<Vec<ExchangePosition>> {
        let st = lock(&self.state);
        let now = self.market.now_ms();
        Ok(st.positions.keys().map(|s| position_report(&st, s, now)).collect())
    }

    async fn open_orders(&self) -> ExResult<Vec<OrderReport>> {
        // Market orders fill at once; nothing rests except stops.
        Ok(Vec::new())
    }

    async fn open_stops(&self) -> ExResult<Vec<StopOrder>> {
        Ok(lock(&self.state).stops.values().filter(|s| s.status.is_resting()).cloned().collect())
    }

    async fn prepare_symbol(&self, symbol: &str, _margin: MarginType, leverage: u32) -> ExResult<()> {
        if !(1..=125).contains(&leverage) {
            return Err(ExchangeError::Api { http_status: 400, code: -4028, msg: "Leverage is not valid".into() });
        }
        lock(&self.state).leverage.insert(symbol.to_string(), leverage);
        Ok(())
    }

    async fn place_market(&self, req: &MarketOrderRequest) -> ExResult<OrderReport> {
        let now = self.market.now_ms();
        let (report, events, sender) = {
            let mut st = lock(&self.state);
            if let Some(existing) = st.orders.get(&req.client_order_id) {
                // Idempotent per client order id, like the live client after an unknown outcome.
                return Ok(existing.clone());
            }
            let (report, events) = execute_market(&mut st, req, now, self.taker_fee, self.slippage)?;
            (report, events, st.events.clone())
        };
        if let Some(tx) = sender {
            for e in events {
                let _ = tx.send(e).await;
            }
        }
        Ok(report)
    }

    async fn query_order(&self, _symbol: &str, client_order_id: &str) -> ExResult<Option<OrderReport>> {
        Ok(lock(&self.state).orders.get(client_order_id).cloned())
    }

    async fn place_stop(&self, req: &StopRequest) -> ExResult<StopOrder> {
        let now = self.market.now_ms();
        let (stop, sender, fire) = {
            let mut st = lock(&self.state);
            if let Some(s) = st.stops.values().find(|s| s.client_id == req.client_id) {
                return Ok(s.clone());
            }
            if st.stops.values().filter(|s| s.status.is_resting()).count() >= ALGO_ORDER_LIMIT {
                st.orders_rejected += 1;
                return Err(ExchangeError::Refused(format!("algo order limit of {ALGO_ORDER_LIMIT} reached")));
            }
            if req.qty <= Decimal::ZERO || req.trigger_price <= Decimal::ZERO {
                st.orders_rejected += 1;
                return Err(ExchangeError::Api { http_status: 400, code: -1102, msg: "Invalid stop".into() });
            }
            // Binance rejects a stop that would trigger immediately (-2021).
            if let Some(mark) = st.marks.get(&req.symbol).copied() {
                let immediate = match req.side {
                    Side::Sell => mark <= req.trigger_price,
                    Side::Buy => mark >= req.trigger_price,
                };
                if immediate {
                    st.orders_rejected += 1;
                    return Err(ExchangeError::Api {
                        http_status: 400,
                        code: -2021,
                        msg: "Order would immediately trigger.".into(),
                    });
                }
            }
            let algo_id = st.next_order_id;
            st.next_order_id += 1;
            st.orders_sent += 1;
            let stop = StopOrder {
                symbol: req.symbol.clone(),
                algo_id,
                client_id: req.client_id.clone(),
                side: req.side,
                qty: req.qty,
                trigger_price: req.trigger_price,
                reduce_only: true,
                status: StopStatus::New,
                update_time: now,
            };
            st.stops.insert(algo_id, stop.clone());
            (stop.clone(), st.events.clone(), stop)
        };
        if let Some(tx) = sender {
            let _ = tx.send(ExchangeEvent::StopUpdate(fire)).await;
        }
        Ok(stop)
    }

    async fn cancel_stop(&self, _symbol: &str, algo_id: i64) -> ExResult<()> {
        let now = self.market.now_ms();
        let (stop, sender) = {
            let mut st = lock(&self.state);
            (st.stops.remove(&algo_id), st.events.clone())
        };
        if let (Some(mut stop), Some(tx)) = (stop, sender) {
            stop.status = StopStatus::Canceled;
            stop.update_time = now;
            let _ = tx.send(ExchangeEvent::StopUpdate(stop)).await;
        }
        Ok(())
    }

    async fn cancel_all(&self, symbol: &str) -> ExResult<()> {
        let ids: Vec<i64> =
            lock(&self.state).stops.values().filter(|s| s.symbol == symbol).map(|s| s.algo_id).collect();
        for id in ids {
            self.cancel_stop(symbol, id).await?;
        }
        Ok(())
    }

    async fn start_streams(&self, events: EventSinks, cancel: CancellationToken) -> ExResult<StreamControl> {
        let (inner_tx, mut inner_rx) = mpsc::channel::<ExchangeEvent>(1024);
        let control = self.market.start_streams(inner_tx.into(), cancel.clone()).await?;
        lock(&self.state).events = Some(events.clone());
        let state = Arc::clone(&self.state);
        let (fee, slip) = (self.taker_fee, self.slippage);
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    _ = cancel.cancelled() => break,
                    ev = inner_rx.recv() => match ev { Some(ev) => ev, None => break },
                };
                let generated = match &ev {
                    ExchangeEvent::MarkPrices(updates) => apply_marks(&mut lock(&state), updates, fee, slip),
                    // Until the first mark price of a symbol arrives, its last traded price
                    // stands in, so a paper order never fails for want of a price.
                    ExchangeEvent::Tickers(tickers) => {
                        let mut st = lock(&state);
                        for t in tickers {
                            if let Some(p) = decimal_from_f64(t.last_price).filter(|p| *p > Decimal::ZERO) {
                                st.marks.entry(t.symbol.clone()).or_insert(p);
                            }
                        }
                        Vec::new()
                    }
                    ExchangeEvent::Kline { symbol, candle, .. } => {
                        if let Some(p) = decimal_from_f64(candle.close).filter(|p| *p > Decimal::ZERO) {
                            lock(&state).marks.entry(symbol.clone()).or_insert(p);
                        }
                        Vec::new()
                    }
                    _ => Vec::new(),
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
        let st = lock(&self.state);
        s.orders_sent = st.orders_sent;
        s.orders_rejected = st.orders_rejected;
        s.algo_orders_open = u32::try_from(st.stops.values().filter(|s| s.status.is_resting()).count()).unwrap_or(0);
        s
    }

    fn now_ms(&self) -> TimestampMs {
        self.market.now_ms()
    }
}
