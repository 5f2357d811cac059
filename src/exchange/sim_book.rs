//! The simulated exchange account shared by `--dry-run` (wrapped by
//! [`crate::exchange::paper::PaperExchange`]) and `kinetic backtest` (driven synchronously by
//! [`crate::backtest::engine`]): one-way positions, market orders, reduce-only protective
//! stops that trigger on the mark price, funding and isolated-margin liquidation, answering
//! with the same reports and user-stream events a live account sends. It is plain data with
//! no clock and no I/O: time comes in with every call.
//!
//! Rules:
//! - A market order fills at the current mark moved against the trader by the slippage and
//!   rounded to the tick against the trader ([`sim::market_fill_price`]), and pays the taker
//!   fee on its notional. A reduce-only order is capped at the position and refused (-2022)
//!   when there is nothing to reduce. An opening order needs margin + fee within the available
//!   balance (-2019).
//! - A stop rests until a mark at or beyond its trigger (`workingType=MARK_PRICE`), then fills
//!   as a reduce-only market order at that mark: near the trigger on a continuous market, at
//!   the gap price when the market jumped through it (never better than reality). A stop that
//!   would trigger at once is refused (-2021), as Binance does.
//! - Liquidation is modelled for symbols with a known maintenance margin rate: a mark at or
//!   beyond the position's liquidation price ([`sim::liquidation_price`], isolated margin)
//!   cancels the symbol's stops and closes the whole position at its bankruptcy price with no
//!   fee, under a reserved `autoclose-` client id like Binance's liquidation orders. It is
//!   checked before the stops: a mark that gapped past both liquidates.
//! - Funding is paid from the wallet: announced rates settle when a mark update shows the
//!   funding time has passed (dry-run; every funding a gap skipped, at the symbol's own
//!   interval), or the caller settles a rate itself (backtest).

use rustc_hash::FxHashMap;
use std::collections::BTreeMap;

use rust_decimal::prelude::*;

use crate::backtest::sim;
use crate::core::models::{Direction, OrderStatus, Side, TimestampMs};
use crate::data::funding::FundingIntervals;
use crate::exchange::{
    AccountBalance, CODE_INSUFFICIENT_MARGIN, ExResult, ExchangeError, ExchangeEvent, ExchangePosition, Fill,
    MarkPriceUpdate, MarketOrderRequest, OrderReport, StopOrder, StopRequest, StopStatus,
};

/// Binance's account-wide limit of open conditional orders.
pub const ALGO_ORDER_LIMIT: usize = 200;

/// Client-id prefix of the exchange's own liquidation orders.
pub const LIQUIDATION_PREFIX: &str = "autoclose-";

#[derive(Debug, Clone, PartialEq)]
struct SimPosition {
    direction: Direction,
    qty: Decimal,
    entry: Decimal,
    leverage: u32,
    /// Where it is liquidated (symbols with a known maintenance margin rate).
    liquidation: Option<Decimal>,
}

/// The simulated account. See the module documentation for its rules.
#[derive(Debug, Clone, Default)]
pub struct SimBook {
    taker_fee: Decimal,
    slippage: Decimal,
    /// Tick size per symbol, for fill prices.
    ticks: FxHashMap<String, Decimal>,
    /// Maintenance margin rate per symbol (a fraction); liquidation is modelled where known.
    maint_rates: FxHashMap<String, Decimal>,
    wallet: Decimal,
    marks: FxHashMap<String, Decimal>,
    /// Last `next_funding_time` seen per symbol and the rate announced for it.
    funding: FxHashMap<String, (TimestampMs, Decimal)>,
    /// Funding interval per symbol (`fundingInfo`; 8 h when not listed).
    funding_intervals: FundingIntervals,
    leverage: FxHashMap<String, u32>,
    positions: BTreeMap<String, SimPosition>,
    stops: BTreeMap<i64, StopOrder>,
    orders: FxHashMap<String, OrderReport>,
    next_order_id: i64,
    next_trade_id: i64,
    pub fees_paid: Decimal,
    pub funding_paid: Decimal,
    pub orders_sent: u64,
    pub orders_rejected: u64,
}

fn api_error(code: i64, msg: &str) -> ExchangeError {
    ExchangeError::Api { http_status: 400, code, msg: msg.to_string() }
}

impl SimBook {
    /// An empty account holding `wallet`; `taker_fee` and `slippage` are fractions.
    pub fn new(wallet: Decimal, taker_fee: Decimal, slippage: Decimal) -> Self {
        SimBook { taker_fee, slippage, wallet, next_order_id: 1, next_trade_id: 1, ..SimBook::default() }
    }

    /// The tick of `symbol` and, where known, its maintenance margin rate (enables liquidation).
    pub fn set_symbol(&mut self, symbol: &str, tick: Decimal, maint_margin_rate: Option<Decimal>) {
        self.ticks.insert(symbol.to_string(), tick);
        if let Some(r) = maint_margin_rate {
            self.maint_rates.insert(symbol.to_string(), r);
        }
    }

    /// Funding intervals per symbol (`GET /fapi/v1/fundingInfo`).
    pub fn set_funding_intervals(&mut self, intervals: FundingIntervals) {
        self.funding_intervals = intervals;
    }

    /// A price for `symbol` until its first mark arrives (a ticker's or a candle's last price);
    /// triggers nothing.
    pub fn seed_mark(&mut self, symbol: &str, price: Decimal) {
        if price > Decimal::ZERO && !self.marks.contains_key(symbol) {
            self.marks.insert(symbol.to_string(), price);
        }
    }

    pub fn mark(&self, symbol: &str) -> Option<Decimal> {
        self.marks.get(symbol).copied()
    }

    pub fn wallet(&self) -> Decimal {
        self.wallet
    }

    /// Leverage for the next entries of `symbol` (1–125, else -4028).
    pub fn set_leverage(&mut self, symbol: &str, leverage: u32) -> ExResult<()> {
        if !(1..=125).contains(&leverage) {
            self.orders_rejected += 1;
            return Err(api_error(-4028, "Leverage is not valid"));
        }
        self.leverage.insert(symbol.to_string(), leverage);
        Ok(())
    }

    /// Wallet plus unrealized PnL at the stored marks: [`SimBook::balance`]'s `equity`,
    /// without its margin arithmetic (a backtest records it after every close time).
    pub fn equity(&self) -> Decimal {
        self.wallet + self.unrealized_pnl()
    }

    /// Unrealized PnL of every position at its stored mark (the entry price without one).
    fn unrealized_pnl(&self) -> Decimal {
        let mut upnl = Decimal::ZERO;
        for (sym, p) in &self.positions {
            let mark = self.marks.get(sym).copied().unwrap_or(p.entry);
            upnl += (mark - p.entry) * p.qty * p.direction.sign();
        }
        upnl
    }

    /// Balances at the last mark prices (isolated margin at entry).
    pub fn balance(&self) -> AccountBalance {
        let upnl = self.unrealized_pnl();
        let mut margin = Decimal::ZERO;
        for p in self.positions.values() {
            margin += sim::isolated_margin(p.entry, p.qty, p.leverage);
        }
        AccountBalance {
            wallet_balance: self.wallet,
            equity: self.wallet + upnl,
            available_balance: (self.wallet - margin + upnl.min(Decimal::ZERO)).max(Decimal::ZERO),
            unrealized_pnl: upnl,
        }
    }

    /// The liquidation price of `symbol`'s position, where liquidation is modelled.
    pub fn liquidation_price(&self, symbol: &str) -> Option<Decimal> {
        self.positions.get(symbol)?.liquidation
    }

    /// Stores `p` for `symbol` with its liquidation price.
    fn put(&mut self, symbol: &str, mut p: SimPosition) {
        p.liquidation =
            self.maint_rates.get(symbol).map(|mmr| sim::liquidation_price(p.direction, p.entry, p.leverage, *mmr));
        self.positions.insert(symbol.to_string(), p);
    }

    /// The position of `symbol` as the exchange reports it (quantity 0 when flat).
    pub fn position_report(&self, symbol: &str, time: TimestampMs) -> ExchangePosition {
        let mark = self.marks.get(symbol).copied();
        match self.positions.get(symbol) {
            Some(p) => {
                let mark = mark.unwrap_or(p.entry);
                ExchangePosition {
                    symbol: symbol.to_string(),
                    direction: p.direction,
                    qty: p.qty,
                    entry_price: p.entry,
                    mark_price: mark,
                    unrealized_pnl: (mark - p.entry) * p.qty * p.direction.sign(),
                    leverage: p.leverage,
                    liquidation_price: self.liquidation_price(symbol),
                    update_time: time,
                }
            }
            None => ExchangePosition {
                symbol: symbol.to_string(),
                direction: Direction::Long,
                qty: Decimal::ZERO,
                entry_price: Decimal::ZERO,
                mark_price: mark.unwrap_or(Decimal::ZERO),
                unrealized_pnl: Decimal::ZERO,
                leverage: self.leverage.get(symbol).copied().unwrap_or(1),
                liquidation_price: None,
                update_time: time,
            },
        }
    }

    /// The open position of `symbol`, if any.
    pub fn position(&self, symbol: &str, time: TimestampMs) -> Option<ExchangePosition> {
        self.positions.contains_key(symbol).then(|| self.position_report(symbol, time))
    }

    pub fn positions(&self, time: TimestampMs) -> Vec<ExchangePosition> {
        self.positions.keys().map(|s| self.position_report(s, time)).collect()
    }

    /// The direction of `symbol`'s open position, if any.
    pub fn direction(&self, symbol: &str) -> Option<Direction> {
        self.positions.get(symbol).map(|p| p.direction)
    }

    pub fn open_position_count(&self) -> usize {
        self.positions.len()
    }

    /// The open price interval `(low, high)` in which a mark of `symbol` reaches none of its
    /// resting stops and not its liquidation price (`(0, Decimal::MAX)` with neither).
    pub fn quiet_band(&self, symbol: &str) -> (Decimal, Decimal) {
        let (mut low, mut high) = (Decimal::ZERO, Decimal::MAX);
        for s in self.stops.values().filter(|s| s.symbol == symbol && s.status.is_resting()) {
            match s.side {
                Side::Sell => low = low.max(s.trigger_price),
                Side::Buy => high = high.min(s.trigger_price),
            }
        }
        if let (Some(p), Some(liq)) = (self.positions.get(symbol), self.liquidation_price(symbol)) {
            match p.direction {
                Direction::Long => low = low.max(liq),
                Direction::Short => high = high.min(liq),
            }
        }
        (low, high)
    }

    /// Stores a mark that the caller knows reaches no stop and not the liquidation price (see
    /// [`SimBook::quiet_band`]): what [`SimBook::apply_mark_price`] does at such a price.
    pub fn store_quiet_mark(&mut self, symbol: &str, price: Decimal) {
        if price > Decimal::ZERO {
            self.set_mark(symbol, price);
        }
    }

    /// Trigger prices of the stops resting on `symbol`.
    pub fn stop_triggers<'a>(&'a self, symbol: &'a str) -> impl Iterator<Item = Decimal> + 'a {
        self.stops.values().filter(move |s| s.symbol == symbol && s.status.is_resting()).map(|s| s.trigger_price)
    }

    pub fn open_stops(&self) -> Vec<StopOrder> {
        self.stops.values().filter(|s| s.status.is_resting()).cloned().collect()
    }

    /// A market order by client id.
    pub fn order(&self, client_order_id: &str) -> Option<OrderReport> {
        self.orders.get(client_order_id).cloned()
    }

    fn account_update(&self, symbol: &str, time: TimestampMs) -> ExchangeEvent {
        ExchangeEvent::AccountUpdate {
            balance: Some(self.balance()),
            positions: vec![self.position_report(symbol, time)],
            time,
            transfer: None,
        }
    }

    fn reject(&mut self, code: i64, msg: &str) -> ExchangeError {
        self.orders_rejected += 1;
        api_error(code, msg)
    }

    /// A market order at the current mark. Returns the report and the events a user stream
    /// would carry. Idempotent per client order id (a repeat returns the first report and no
    /// events), like the live client after an unknown outcome.
    pub fn market(
        &mut self,
        req: &MarketOrderRequest,
        time: TimestampMs,
    ) -> ExResult<(OrderReport, Vec<ExchangeEvent>)> {
        if let Some(existing) = self.orders.get(&req.client_order_id) {
            return Ok((existing.clone(), Vec::new()));
        }
        let (symbol, side, qty) = (req.symbol.as_str(), req.side, req.qty);
        if qty <= Decimal::ZERO {
            return Err(self.reject(-4003, "Quantity less than or equal to zero."));
        }
        let Some(mark) = self.marks.get(symbol).copied() else {
            return Err(self.reject(-1121, "Invalid symbol (no mark price yet)."));
        };
        let tick = self.ticks.get(symbol).copied().unwrap_or(Decimal::ZERO);
        let price = if tick > Decimal::ZERO {
            sim::market_fill_price(side, mark, self.slippage, tick)
        } else {
            match side {
                Side::Buy => mark * (Decimal::ONE + self.slippage),
                Side::Sell => mark * (Decimal::ONE - self.slippage),
            }
        };
        let existing = self.positions.get(symbol).cloned();
        let closing = existing.as_ref().is_some_and(|p| p.direction.exit_side() == side);
        let mut fill_qty = qty;
        if req.reduce_only {
            match &existing {
                Some(p) if closing => fill_qty = qty.min(p.qty),
                _ => return Err(self.reject(-2022, "ReduceOnly Order is rejected.")),
            }
        }
        let leverage = self.leverage.get(symbol).copied().unwrap_or(1).max(1);
        let fee = sim::fee(price * fill_qty, self.taker_fee);
        if !closing {
            let margin = sim::isolated_margin(price, fill_qty, leverage);
            if margin + fee > self.balance().available_balance {
                return Err(self.reject(CODE_INSUFFICIENT_MARGIN, "Margin is insufficient."));
            }
        }
        let realized = self.trade(symbol, side, fill_qty, price, leverage);
        self.wallet += realized - fee;
        self.fees_paid += fee;
        self.orders_sent += 1;
        let report = self.record(req, fill_qty, price, time);
        let fill = self.fill(&report, fee, realized, time);
        let events = vec![
            ExchangeEvent::OrderUpdate { report: report.clone(), fill: Some(fill) },
            self.account_update(symbol, time),
        ];
        Ok((report, events))
    }

    /// Books a trade of `qty` at `price` into the position; returns the PnL it realized.
    fn trade(&mut self, symbol: &str, side: Side, qty: Decimal, price: Decimal, leverage: u32) -> Decimal {
        let direction = if side == Side::Buy { Direction::Long } else { Direction::Short };
        let fresh = |qty| SimPosition { direction, qty, entry: price, leverage, liquidation: None };
        let Some(mut p) = self.positions.remove(symbol) else {
            self.put(symbol, fresh(qty));
            return Decimal::ZERO;
        };
        if p.direction == direction {
            let total = p.qty + qty;
            p.entry = (p.entry * p.qty + price * qty) / total;
            p.qty = total;
            self.put(symbol, p);
            return Decimal::ZERO;
        }
        let closed = qty.min(p.qty);
        let realized = (price - p.entry) * closed * p.direction.sign();
        p.qty -= closed;
        let flip = qty - closed;
        if p.qty > Decimal::ZERO {
            self.positions.insert(symbol.to_string(), p);
        } else if flip > Decimal::ZERO {
            self.put(symbol, fresh(flip));
        }
        realized
    }

    fn record(&mut self, req: &MarketOrderRequest, filled: Decimal, price: Decimal, time: TimestampMs) -> OrderReport {
        let order_id = self.next_order_id;
        self.next_order_id += 1;
        let report = OrderReport {
            symbol: req.symbol.clone(),
            client_order_id: req.client_order_id.clone(),
            order_id,
            side: req.side,
            status: OrderStatus::Filled,
            orig_qty: req.qty,
            executed_qty: filled,
            avg_price: price,
            reduce_only: req.reduce_only,
            update_time: time,
        };
        self.orders.insert(req.client_order_id.clone(), report.clone());
        report
    }

    fn fill(&mut self, report: &OrderReport, fee: Decimal, realized: Decimal, time: TimestampMs) -> Fill {
        let trade_id = self.next_trade_id;
        self.next_trade_id += 1;
        Fill {
            symbol: report.symbol.clone(),
            client_order_id: report.client_order_id.clone(),
            order_id: report.order_id,
            trade_id,
            side: report.side,
            price: report.avg_price,
            qty: report.executed_qty,
            fee,
            realized_pnl: realized,
            reduce_only: report.reduce_only,
            time,
        }
    }

    /// Places a reduce-only protective stop; returns it and its `NEW` event.
    pub fn place_stop(&mut self, req: &StopRequest, time: TimestampMs) -> ExResult<(StopOrder, Option<ExchangeEvent>)> {
        if let Some(s) = self.stops.values().find(|s| s.client_id == req.client_id) {
            return Ok((s.clone(), None));
        }
        if self.stops.values().filter(|s| s.status.is_resting()).count() >= ALGO_ORDER_LIMIT {
            self.orders_rejected += 1;
            return Err(ExchangeError::Refused(format!("algo order limit of {ALGO_ORDER_LIMIT} reached")));
        }
        if req.qty <= Decimal::ZERO || req.trigger_price <= Decimal::ZERO {
            return Err(self.reject(-1102, "Invalid stop"));
        }
        if let Some(mark) = self.marks.get(&req.symbol).copied() {
            let immediate = match req.side {
                Side::Sell => mark <= req.trigger_price,
                Side::Buy => mark >= req.trigger_price,
            };
            if immediate {
                return Err(self.reject(-2021, "Order would immediately trigger."));
            }
        }
        let algo_id = self.next_order_id;
        self.next_order_id += 1;
        self.orders_sent += 1;
        let stop = StopOrder {
            symbol: req.symbol.clone(),
            algo_id,
            client_id: req.client_id.clone(),
            side: req.side,
            qty: req.qty,
            trigger_price: req.trigger_price,
            reduce_only: true,
            status: StopStatus::New,
            update_time: time,
        };
        self.stops.insert(algo_id, stop.clone());
        Ok((stop.clone(), Some(ExchangeEvent::StopUpdate(stop))))
    }

    /// Cancels one stop; its `CANCELED` event, if it was resting.
    pub fn cancel_stop(&mut self, algo_id: i64, time: TimestampMs) -> Option<ExchangeEvent> {
        let mut stop = self.stops.remove(&algo_id)?;
        stop.status = StopStatus::Canceled;
        stop.update_time = time;
        Some(ExchangeEvent::StopUpdate(stop))
    }

    /// Cancels every stop of `symbol`.
    pub fn cancel_all(&mut self, symbol: &str, time: TimestampMs) -> Vec<ExchangeEvent> {
        let ids: Vec<i64> = self.stops.values().filter(|s| s.symbol == symbol).map(|s| s.algo_id).collect();
        ids.into_iter().filter_map(|id| self.cancel_stop(id, time)).collect()
    }

    /// Settles funding of `symbol`'s position at its mark and `rate` (a fraction; longs pay
    /// when positive). Returns what the position paid (negative: received) and the balance
    /// event; `None` when flat.
    pub fn settle_funding(
        &mut self,
        symbol: &str,
        rate: Decimal,
        time: TimestampMs,
    ) -> Option<(Decimal, ExchangeEvent)> {
        let p = self.positions.get(symbol)?;
        let mark = self.marks.get(symbol).copied().unwrap_or(p.entry);
        let paid = sim::funding_payment(p.direction, p.qty, mark, rate);
        self.wallet -= paid;
        self.funding_paid += paid;
        Some((
            paid,
            ExchangeEvent::AccountUpdate { balance: Some(self.balance()), positions: vec![], time, transfer: None },
        ))
    }

    /// A mark price: records it, settles announced funding whose time has passed, liquidates,
    /// triggers stops. Returns the events it caused, in order.
    pub fn apply_mark(&mut self, u: &MarkPriceUpdate) -> Vec<ExchangeEvent> {
        let mut out = Vec::new();
        if u.mark_price <= Decimal::ZERO {
            return out;
        }
        let symbol = u.symbol.as_str();
        self.set_mark(symbol, u.mark_price);
        if let (Some(next), Some(rate)) = (u.next_funding_time, u.funding_rate) {
            let previous = self.funding.insert(symbol.to_string(), (next, rate));
            if let Some((prev_time, prev_rate)) = previous
                && next > prev_time
            {
                // Fundings the stream skipped (the symbol's own interval: 8 h, 4 h, 1 h ...)
                // are charged at the last rate seen.
                let times = Decimal::from(self.funding_intervals.fundings_between(symbol, prev_time, next));
                if let Some((_, ev)) = self.settle_funding(symbol, prev_rate * times, u.event_time) {
                    out.push(ev);
                }
            }
        }
        self.trigger_at_mark(symbol, u.mark_price, u.event_time, &mut out);
        out
    }

    /// A mark price without funding information (the backtest's candle walk): the same
    /// liquidation and stop triggers as [`SimBook::apply_mark`], without building an update.
    pub fn apply_mark_price(&mut self, symbol: &str, price: Decimal, time: TimestampMs) -> Vec<ExchangeEvent> {
        let mut out = Vec::new();
        if price <= Decimal::ZERO {
            return out;
        }
        self.set_mark(symbol, price);
        self.trigger_at_mark(symbol, price, time, &mut out);
        out
    }

    /// Stores the latest mark (allocating the key only for a symbol's first mark).
    fn set_mark(&mut self, symbol: &str, price: Decimal) {
        match self.marks.get_mut(symbol) {
            Some(m) => *m = price,
            None => {
                self.marks.insert(symbol.to_string(), price);
            }
        }
    }

    /// Liquidation, else the resting stops of `symbol` that `mark` reaches.
    fn trigger_at_mark(&mut self, symbol: &str, mark: Decimal, time: TimestampMs, out: &mut Vec<ExchangeEvent>) {
        if let (Some(p), Some(liq)) = (self.positions.get(symbol), self.liquidation_price(symbol))
            && sim::is_adverse_beyond(p.direction, mark, liq)
        {
            self.liquidate(symbol, time, out);
            return;
        }
        let triggered: Vec<i64> = self
            .stops
            .values()
            .filter(|s| s.symbol == symbol && s.status.is_resting())
            .filter(|s| match s.side {
                Side::Sell => mark <= s.trigger_price,
                Side::Buy => mark >= s.trigger_price,
            })
            .map(|s| s.algo_id)
            .collect();
        for id in triggered {
            let Some(mut stop) = self.stops.remove(&id) else { continue };
            stop.status = StopStatus::Triggered;
            stop.update_time = time;
            out.push(ExchangeEvent::StopUpdate(stop.clone()));
            let req = MarketOrderRequest {
                symbol: stop.symbol.clone(),
                side: stop.side,
                qty: stop.qty,
                reduce_only: true,
                client_order_id: format!("{}-x", stop.client_id),
            };
            match self.market(&req, time) {
                Ok((_, events)) => {
                    stop.status = StopStatus::Finished;
                    out.extend(events);
                }
                Err(_) => stop.status = StopStatus::Expired,
            }
            out.push(ExchangeEvent::StopUpdate(stop));
        }
    }

    /// Cancels the symbol's stops and closes its whole position at the bankruptcy price (no
    /// fee): the trader loses the isolated margin of what was left.
    fn liquidate(&mut self, symbol: &str, time: TimestampMs, out: &mut Vec<ExchangeEvent>) {
        out.extend(self.cancel_all(symbol, time));
        let Some(p) = self.positions.get(symbol).cloned() else { return };
        let price = sim::bankruptcy_price(p.direction, p.entry, p.leverage);
        let req = MarketOrderRequest {
            symbol: symbol.to_string(),
            side: p.direction.exit_side(),
            qty: p.qty,
            reduce_only: true,
            client_order_id: format!("{LIQUIDATION_PREFIX}{}", self.next_order_id),
        };
        let realized = self.trade(symbol, req.side, p.qty, price, p.leverage);
        self.wallet += realized;
        let report = self.record(&req, p.qty, price, time);
        let fill = self.fill(&report, Decimal::ZERO, realized, time);
        out.push(ExchangeEvent::OrderUpdate { report, fill: Some(fill) });
        out.push(self.account_update(symbol, time));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap_or_default()
    }

    fn mark(symbol: &str, price: &str, t: TimestampMs) -> MarkPriceUpdate {
        MarkPriceUpdate {
            symbol: symbol.into(),
            mark_price: d(price),
            index_price: None,
            funding_rate: None,
            next_funding_time: None,
            event_time: t,
        }
    }

    fn order(side: Side, qty: &str, reduce_only: bool, cid: &str) -> MarketOrderRequest {
        MarketOrderRequest { symbol: "XUSDT".into(), side, qty: d(qty), reduce_only, client_order_id: cid.into() }
    }

    #[test]
    fn a_mark_past_the_liquidation_price_closes_at_bankruptcy_and_cancels_stops() {
        let mut b = SimBook::new(d("1000"), Decimal::ZERO, Decimal::ZERO);
        b.set_symbol("XUSDT", d("0.01"), Some(d("0.005")));
        b.seed_mark("XUSDT", d("100"));
        b.set_leverage("XUSDT", 10).unwrap_or(());
        assert!(b.market(&order(Side::Buy, "10", false, "e1"), 1).is_ok());
        let stop = StopRequest {
            symbol: "XUSDT".into(),
            side: Side::Sell,
            qty: d("10"),
            trigger_price: d("85"),
            client_id: "s1".into(),
        };
        assert!(b.place_stop(&stop, 1).is_ok());
        let liq = b.liquidation_price("XUSDT").unwrap_or_default();
        assert!(liq > d("90") && liq < d("91"), "{liq}");
        let events = b.apply_mark(&mark("XUSDT", "89", 2));
        assert!(b.position("XUSDT", 2).is_none());
        assert!(b.open_stops().is_empty(), "the stop below the liquidation price never fires");
        // Bankruptcy at 90: the whole isolated margin (100) is lost, no fee.
        assert_eq!(b.wallet(), d("900"));
        assert!(events.iter().any(|e| matches!(e, ExchangeEvent::OrderUpdate { report, .. }
            if report.client_order_id.starts_with(LIQUIDATION_PREFIX))));
    }

    #[test]
    fn equity_is_the_balance_equity_and_the_quiet_band_brackets_stops_and_liquidation() {
        let mut b = SimBook::new(d("1000"), d("0.0005"), Decimal::ZERO);
        b.set_symbol("XUSDT", d("0.01"), Some(d("0.005")));
        b.seed_mark("XUSDT", d("100"));
        assert!(b.set_leverage("XUSDT", 20).is_ok());
        assert_eq!(b.quiet_band("XUSDT"), (Decimal::ZERO, Decimal::MAX));
        assert!(b.market(&order(Side::Buy, "3.5", false, "e1"), 1).is_ok());
        for px in ["100", "101.37", "97.5", "100.00"] {
            b.apply_mark(&mark("XUSDT", px, 2));
            let (e, bal) = (b.equity(), b.balance().equity);
            assert_eq!((e, e.scale()), (bal, bal.scale()), "at {px}");
        }
        // 20x long: liquidation ≈ 95.48 lies above a stop at 94, below one at 97.
        let liq = b.liquidation_price("XUSDT").unwrap_or_default();
        let stop = |trigger: &str, cid: &str| StopRequest {
            symbol: "XUSDT".into(),
            side: Side::Sell,
            qty: d("3.5"),
            trigger_price: d(trigger),
            client_id: cid.into(),
        };
        assert!(b.place_stop(&stop("94", "s1"), 3).is_ok());
        assert_eq!(b.quiet_band("XUSDT"), (liq, Decimal::MAX));
        assert!(b.place_stop(&stop("97", "s2"), 3).is_ok());
        assert_eq!(b.quiet_band("XUSDT"), (d("97"), Decimal::MAX));
        // A stored quiet mark is the mark the book then reports.
        b.store_quiet_mark("XUSDT", d("99.99"));
        assert_eq!(b.mark("XUSDT"), Some(d("99.99")));
        assert_eq!(b.position("XUSDT", 4).map(|p| p.mark_price), Some(d("99.99")));
    }

    #[test]
    fn a_stop_fills_at_the_mark_that_crossed_it() {
        let mut b = SimBook::new(d("1000"), d("0.001"), Decimal::ZERO);
        b.set_symbol("XUSDT", d("0.01"), None);
        b.seed_mark("XUSDT", d("100"));
        assert!(b.set_leverage("XUSDT", 5).is_ok());
        assert!(b.market(&order(Side::Buy, "1", false, "e1"), 1).is_ok());
        let stop = StopRequest {
            symbol: "XUSDT".into(),
            side: Side::Sell,
            qty: d("1"),
            trigger_price: d("98"),
            client_id: "s1".into(),
        };
        assert!(b.place_stop(&stop, 1).is_ok());
        assert!(b.apply_mark(&mark("XUSDT", "98.5", 2)).is_empty());
        let events = b.apply_mark(&mark("XUSDT", "97", 3));
        assert_eq!(events.len(), 4, "triggered, fill, account, finished");
        assert!(b.position("XUSDT", 3).is_none());
        // −3 realized, fees 0.1 + 0.097.
        assert_eq!(b.wallet(), d("1000") - d("3") - d("0.1") - d("0.097"));
    }

    #[test]
    fn reduce_only_without_a_position_is_refused() {
        let mut b = SimBook::new(d("1000"), Decimal::ZERO, Decimal::ZERO);
        b.seed_mark("XUSDT", d("100"));
        let r = b.market(&order(Side::Sell, "1", true, "x1"), 1);
        assert!(matches!(r, Err(ExchangeError::Api { code: -2022, .. })));
        assert_eq!(b.orders_rejected, 1);
    }
}
