//! Binance JSON shapes: REST objects and user/market stream events, built from the state.
//! Field sets follow tests/fixtures/binance/{rest,ws}/*.json and docs §4/§6/§7.

use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::state::{AlgoOrder, FillRecord, Market, Order, Position, State, fmt_dec, fmt_dp, fmt_f64};
use kinetic::core::models::Candle;

fn precisions(st: &State, symbol: &str) -> (u32, u32) {
    st.markets.get(symbol).map(|m| (m.spec.price_precision, m.spec.quantity_precision)).unwrap_or((8, 8))
}

/// REST order object (`POST/GET/DELETE /fapi/v1/order`, `openOrders`).
pub fn order_json(st: &State, o: &Order, with_time: bool) -> Value {
    let (pp, qp) = precisions(st, &o.symbol);
    let mut v = json!({
        "orderId": o.order_id,
        "symbol": o.symbol,
        "status": o.status,
        "clientOrderId": o.client_order_id,
        "price": fmt_dp(o.price, pp),
        "avgPrice": fmt_dp(o.avg_price, pp.max(5)),
        "origQty": fmt_dp(o.orig_qty, qp),
        "executedQty": fmt_dp(o.executed_qty, qp),
        "cumQty": fmt_dp(o.executed_qty, qp),
        "cumQuote": fmt_dp(o.cum_quote, pp.max(5)),
        "timeInForce": o.time_in_force,
        "type": o.order_type,
        "reduceOnly": o.reduce_only,
        "closePosition": o.close_position,
        "side": o.side,
        "positionSide": o.position_side,
        "stopPrice": fmt_dp(o.stop_price, pp),
        "workingType": o.working_type,
        "priceProtect": false,
        "origType": o.orig_type,
        "priceMatch": "NONE",
        "selfTradePreventionMode": "EXPIRE_MAKER",
        "goodTillDate": 0,
        "updateTime": o.update_time,
    });
    if with_time && let Some(obj) = v.as_object_mut() {
        obj.insert("time".into(), json!(o.time));
    }
    v
}

/// REST algo order object (`POST/GET /fapi/v1/algoOrder`, `openAlgoOrders`).
pub fn algo_json(st: &State, a: &AlgoOrder, query: bool) -> Value {
    let (pp, qp) = precisions(st, &a.symbol);
    let mut v = json!({
        "algoId": a.algo_id,
        "clientAlgoId": a.client_algo_id,
        "algoType": "CONDITIONAL",
        "orderType": a.order_type,
        "symbol": a.symbol,
        "side": a.side,
        "positionSide": a.position_side,
        "timeInForce": a.time_in_force,
        "quantity": fmt_dp(a.quantity, qp),
        "algoStatus": a.status,
        "triggerPrice": fmt_dp(a.trigger_price, pp),
        "price": fmt_dp(a.price, pp),
        "icebergQuantity": null,
        "selfTradePreventionMode": "EXPIRE_MAKER",
        "workingType": a.working_type,
        "priceMatch": "NONE",
        "closePosition": a.close_position,
        "priceProtect": a.price_protect,
        "reduceOnly": a.reduce_only,
        "activatePrice": if a.callback_rate.is_zero() { String::new() } else { fmt_dp(a.trigger_price, pp) },
        "callbackRate": if a.callback_rate.is_zero() { String::new() } else { fmt_dec(a.callback_rate) },
        "createTime": a.create_time,
        "updateTime": a.update_time,
        "triggerTime": a.trigger_time,
        "goodTillDate": 0,
    });
    if query && let Some(obj) = v.as_object_mut() {
        obj.insert("actualOrderId".into(), json!(a.actual_order_id.map(|i| i.to_string()).unwrap_or_default()));
        obj.insert("actualPrice".into(), json!(fmt_dec(a.actual_price)));
        obj.insert("actualQty".into(), json!(fmt_dec(a.actual_qty)));
        obj.insert("actualType".into(), json!(if a.actual_order_id.is_some() { "MARKET" } else { "" }));
    }
    v
}

fn margin_type_lower(m: &Market) -> &'static str {
    if m.margin_type == "CROSSED" { "cross" } else { "isolated" }
}

fn isolated_wallet(st: &State, p: &Position) -> Decimal {
    match st.markets.get(&p.symbol) {
        Some(m) if m.margin_type == "ISOLATED" => st.position_initial_margin(p),
        _ => Decimal::ZERO,
    }
}

/// Approximate liquidation price (isolated formula on the position's own margin).
pub fn liquidation_price(st: &State, p: &Position) -> Decimal {
    let Some(m) = st.markets.get(&p.symbol) else { return Decimal::ZERO };
    if p.amount.is_zero() {
        return Decimal::ZERO;
    }
    let lev = Decimal::from(m.leverage.max(1));
    let mmr = m.spec.bracket_for(p.amount.abs() * m.mark_price).map(|b| b.maint_margin_ratio).unwrap_or_default();
    let px = if p.amount > Decimal::ZERO {
        p.entry_price * (Decimal::ONE - Decimal::ONE / lev + mmr)
    } else {
        p.entry_price * (Decimal::ONE + Decimal::ONE / lev - mmr)
    };
    px.max(Decimal::ZERO).round_dp(8)
}

fn break_even(st: &State, p: &Position) -> Decimal {
    let fee = st.cfg.taker_fee_rate;
    if p.amount > Decimal::ZERO {
        (p.entry_price * (Decimal::ONE + fee * Decimal::TWO)).round_dp(8)
    } else if p.amount < Decimal::ZERO {
        (p.entry_price * (Decimal::ONE - fee * Decimal::TWO)).round_dp(8)
    } else {
        Decimal::ZERO
    }
}

/// `/fapi/v3/positionRisk` row.
pub fn position_risk_v3(st: &State, p: &Position) -> Value {
    let m = st.markets.get(&p.symbol);
    let mark = m.map(|m| m.mark_price).unwrap_or_default();
    let im = st.position_initial_margin(p);
    json!({
        "symbol": p.symbol,
        "positionSide": p.position_side,
        "positionAmt": fmt_dec(p.amount),
        "entryPrice": fmt_dec(p.entry_price),
        "breakEvenPrice": fmt_dec(break_even(st, p)),
        "markPrice": fmt_dec(mark),
        "unRealizedProfit": fmt_dp(st.unrealized(p), 8),
        "liquidationPrice": fmt_dec(liquidation_price(st, p)),
        "isolatedMargin": fmt_dp(isolated_wallet(st, p) + if isolated_wallet(st, p).is_zero() { Decimal::ZERO } else { st.unrealized(p) }, 8),
        "notional": fmt_dp(p.amount * mark, 8),
        "marginAsset": "USDT",
        "isolatedWallet": fmt_dp(isolated_wallet(st, p), 8),
        "initialMargin": fmt_dp(im, 8),
        "maintMargin": fmt_dp(st.maint_margin(p), 8),
        "positionInitialMargin": fmt_dp(im, 8),
        "openOrderInitialMargin": "0",
        "adl": 0,
        "bidNotional": "0",
        "askNotional": "0",
        "updateTime": p.update_time,
    })
}

/// `/fapi/v2/positionRisk` row (has leverage and lowercase marginType).
pub fn position_risk_v2(st: &State, p: &Position) -> Value {
    let Some(m) = st.markets.get(&p.symbol) else { return Value::Null };
    let max_notional = m.spec.brackets.iter().find(|b| b.initial_leverage <= m.leverage).map(|b| b.notional_cap);
    json!({
        "symbol": p.symbol,
        "positionAmt": fmt_dec(p.amount),
        "entryPrice": fmt_dec(p.entry_price),
        "breakEvenPrice": fmt_dec(break_even(st, p)),
        "markPrice": fmt_dec(m.mark_price),
        "unRealizedProfit": fmt_dp(st.unrealized(p), 8),
        "liquidationPrice": fmt_dec(liquidation_price(st, p)),
        "leverage": m.leverage.to_string(),
        "maxNotionalValue": fmt_dec(max_notional.unwrap_or_default()),
        "marginType": margin_type_lower(m),
        "isolatedMargin": fmt_dp(isolated_wallet(st, p), 8),
        "isAutoAddMargin": "false",
        "positionSide": p.position_side,
        "notional": fmt_dp(p.amount * m.mark_price, 8),
        "isolatedWallet": fmt_dp(isolated_wallet(st, p), 8),
        "updateTime": p.update_time,
    })
}

/// Account totals shared by `/fapi/v2/account`, `/fapi/v3/account` and `/balance`.
pub struct Totals {
    pub wallet: Decimal,
    pub unrealized: Decimal,
    pub initial: Decimal,
    pub maint: Decimal,
    pub available: Decimal,
}

pub fn totals(st: &State) -> Totals {
    Totals {
        wallet: st.wallet_balance,
        unrealized: st.total_unrealized(),
        initial: st.total_initial_margin(),
        maint: st.positions.values().map(|p| st.maint_margin(p)).sum(),
        available: st.available_balance(),
    }
}

pub fn account_json(st: &State, v2: bool) -> Value {
    let t = totals(st);
    let now = st.now();
    let f = |x: Decimal| fmt_dp(x, 8);
    let asset = json!({
        "asset": "USDT",
        "walletBalance": f(t.wallet),
        "unrealizedProfit": f(t.unrealized),
        "marginBalance": f(t.wallet + t.unrealized),
        "maintMargin": f(t.maint),
        "initialMargin": f(t.initial),
        "positionInitialMargin": f(t.initial),
        "openOrderInitialMargin": "0.00000000",
        "crossWalletBalance": f(t.wallet),
        "crossUnPnl": f(t.unrealized),
        "availableBalance": f(t.available),
        "maxWithdrawAmount": f(t.available.max(Decimal::ZERO)),
        "marginAvailable": true,
        "updateTime": now,
    });
    let positions: Vec<Value> = st
        .positions
        .values()
        .filter(|p| !p.amount.is_zero() || has_open_orders(st, &p.symbol))
        .map(|p| {
            let mark = st.markets.get(&p.symbol).map(|m| m.mark_price).unwrap_or_default();
            let mut row = json!({
                "symbol": p.symbol,
                "positionSide": p.position_side,
                "positionAmt": fmt_dec(p.amount),
                "unrealizedProfit": f(st.unrealized(p)),
                "isolatedMargin": f(isolated_wallet(st, p)),
                "notional": f(p.amount * mark),
                "isolatedWallet": f(isolated_wallet(st, p)),
                "initialMargin": f(st.position_initial_margin(p)),
                "maintMargin": f(st.maint_margin(p)),
                "updateTime": p.update_time,
            });
            if v2 && let (Some(obj), Some(m)) = (row.as_object_mut(), st.markets.get(&p.symbol)) {
                obj.insert("leverage".into(), json!(m.leverage.to_string()));
                obj.insert("isolated".into(), json!(m.margin_type == "ISOLATED"));
                obj.insert("entryPrice".into(), json!(fmt_dec(p.entry_price)));
                obj.insert("breakEvenPrice".into(), json!(fmt_dec(break_even(st, p))));
            }
            row
        })
        .collect();
    let mut v = json!({
        "totalInitialMargin": f(t.initial),
        "totalMaintMargin": f(t.maint),
        "totalWalletBalance": f(t.wallet),
        "totalUnrealizedProfit": f(t.unrealized),
        "totalMarginBalance": f(t.wallet + t.unrealized),
        "totalPositionInitialMargin": f(t.initial),
        "totalOpenOrderInitialMargin": "0.00000000",
        "totalCrossWalletBalance": f(t.wallet),
        "totalCrossUnPnl": f(t.unrealized),
        "availableBalance": f(t.available),
        "maxWithdrawAmount": f(t.available.max(Decimal::ZERO)),
        "assets": [asset],
        "positions": positions,
    });
    if v2 && let Some(obj) = v.as_object_mut() {
        obj.insert("feeTier".into(), json!(0));
        obj.insert("canTrade".into(), json!(true));
        obj.insert("canDeposit".into(), json!(true));
        obj.insert("canWithdraw".into(), json!(true));
        obj.insert("updateTime".into(), json!(0));
        obj.insert("multiAssetsMargin".into(), json!(false));
        obj.insert("tradeGroupId".into(), json!(-1));
    }
    v
}

pub fn balance_json(st: &State) -> Value {
    let t = totals(st);
    let f = |x: Decimal| fmt_dp(x, 8);
    json!([{
        "accountAlias": "SgsR",
        "asset": "USDT",
        "balance": f(t.wallet),
        "crossWalletBalance": f(t.wallet),
        "crossUnPnl": f(t.unrealized),
        "availableBalance": f(t.available),
        "maxWithdrawAmount": f(t.available.max(Decimal::ZERO)),
        "marginAvailable": true,
        "updateTime": st.now(),
    }])
}

pub fn has_open_orders(st: &State, symbol: &str) -> bool {
    st.orders.values().any(|o| o.symbol == symbol && o.is_open())
        || st.algo_orders.values().any(|a| a.symbol == symbol && a.is_open())
}

/// REST kline row.
pub fn kline_row(c: &Candle) -> Value {
    json!([
        c.open_time,
        fmt_f64(c.open),
        fmt_f64(c.high),
        fmt_f64(c.low),
        fmt_f64(c.close),
        fmt_f64(c.volume),
        c.close_time,
        fmt_f64(c.quote_volume),
        c.trades,
        fmt_f64(c.taker_buy_volume),
        fmt_f64(c.taker_buy_quote_volume),
        "0"
    ])
}

/// `kline` stream event.
pub fn kline_event(symbol: &str, interval: &str, c: &Candle, closed: bool, event_time: i64) -> Value {
    json!({
        "e": "kline",
        "E": event_time,
        "s": symbol,
        "k": {
            "t": c.open_time,
            "T": c.close_time,
            "s": symbol,
            "i": interval,
            "f": 100,
            "L": 100 + c.trades as i64,
            "o": fmt_f64(c.open),
            "c": fmt_f64(c.close),
            "h": fmt_f64(c.high),
            "l": fmt_f64(c.low),
            "v": fmt_f64(c.volume),
            "n": c.trades,
            "x": closed,
            "q": fmt_f64(c.quote_volume),
            "V": fmt_f64(c.taker_buy_volume),
            "Q": fmt_f64(c.taker_buy_quote_volume),
            "B": "0"
        }
    })
}

/// Next funding time: the next 00/08/16 UTC boundary.
pub fn next_funding_time(now: i64) -> i64 {
    let eight_h = 8 * 3600 * 1000;
    now - now.rem_euclid(eight_h) + eight_h
}

pub fn mark_price_event(m: &Market, event_time: i64) -> Value {
    json!({
        "e": "markPriceUpdate",
        "E": event_time,
        "s": m.spec.symbol,
        "p": fmt_dec(m.mark_price),
        "ap": fmt_dec(m.mark_price),
        "P": fmt_dec(m.index_price),
        "i": fmt_dec(m.index_price),
        "r": fmt_dec(m.funding_rate),
        "T": next_funding_time(event_time),
    })
}

/// 24 h statistics derived from the spec's change % and volume and the current last price.
pub struct Stats {
    pub open: Decimal,
    pub high: Decimal,
    pub low: Decimal,
    pub last: Decimal,
    pub volume: Decimal,
    pub quote_volume: Decimal,
}

pub fn stats(m: &Market) -> Stats {
    let last = m.last_price;
    let open = last
        .checked_div(Decimal::ONE + m.spec.price_change_pct_24h / Decimal::ONE_HUNDRED)
        .unwrap_or(last)
        .round_dp(m.spec.tick_size.normalize().scale());
    let high = last.max(open) * Decimal::new(1010, 3);
    let low = last.min(open) * Decimal::new(990, 3);
    let volume = if last.is_zero() { Decimal::ZERO } else { (m.spec.quote_volume_24h / last).round_dp(3) };
    let tick_dp = m.spec.tick_size.normalize().scale();
    Stats {
        open,
        high: high.round_dp(tick_dp),
        low: low.round_dp(tick_dp),
        last,
        volume,
        quote_volume: m.spec.quote_volume_24h,
    }
}

pub fn mini_ticker_event(m: &Market, event_time: i64) -> Value {
    let s = stats(m);
    json!({
        "e": "24hrMiniTicker",
        "E": event_time,
        "s": m.spec.symbol,
        "c": fmt_dec(s.last),
        "o": fmt_dec(s.open),
        "h": fmt_dec(s.high),
        "l": fmt_dec(s.low),
        "v": fmt_dec(s.volume),
        "q": fmt_dec(s.quote_volume),
    })
}

pub fn ticker_event(m: &Market, event_time: i64) -> Value {
    let s = stats(m);
    json!({
        "e": "24hrTicker",
        "E": event_time,
        "s": m.spec.symbol,
        "p": fmt_dec(s.last - s.open),
        "P": fmt_dp(m.spec.price_change_pct_24h, 3),
        "w": fmt_dec(((s.high + s.low) / Decimal::TWO).round_dp(8)),
        "c": fmt_dec(s.last),
        "Q": "0.001",
        "o": fmt_dec(s.open),
        "h": fmt_dec(s.high),
        "l": fmt_dec(s.low),
        "v": fmt_dec(s.volume),
        "q": fmt_dec(s.quote_volume),
        "O": event_time - 86_400_000,
        "C": event_time,
        "F": 1,
        "L": 1000,
        "n": 1000,
    })
}

pub fn ticker_24hr_json(m: &Market, now: i64) -> Value {
    let s = stats(m);
    json!({
        "symbol": m.spec.symbol,
        "priceChange": fmt_dec(s.last - s.open),
        "priceChangePercent": fmt_dp(m.spec.price_change_pct_24h, 3),
        "weightedAvgPrice": fmt_dec(((s.high + s.low) / Decimal::TWO).round_dp(8)),
        "lastPrice": fmt_dec(s.last),
        "lastQty": "0.001",
        "openPrice": fmt_dec(s.open),
        "highPrice": fmt_dec(s.high),
        "lowPrice": fmt_dec(s.low),
        "volume": fmt_dec(s.volume),
        "quoteVolume": fmt_dec(s.quote_volume),
        "openTime": now - 86_400_000,
        "closeTime": now,
        "firstId": 1,
        "lastId": 1000,
        "count": 1000,
    })
}

pub fn premium_index_json(m: &Market, now: i64) -> Value {
    json!({
        "symbol": m.spec.symbol,
        "markPrice": fmt_dec(m.mark_price),
        "indexPrice": fmt_dec(m.index_price),
        "estimatedSettlePrice": fmt_dec(m.index_price),
        "lastFundingRate": fmt_dp(m.funding_rate, 8),
        "interestRate": "0.00010000",
        "nextFundingTime": next_funding_time(now),
        "time": now,
    })
}

/// ORDER_TRADE_UPDATE for `o`; `fill` is the trade when `x == TRADE`.
pub fn order_update_event(st: &State, o: &Order, exec_type: &str, fill: Option<&FillRecord>, event_time: i64) -> Value {
    let (pp, qp) = precisions(st, &o.symbol);
    let (l, lp, n, t, rp, maker) = match fill {
        Some(f) => (f.qty, f.price, f.commission, f.trade_id, f.realized_pnl, f.maker),
        None => (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO, 0, Decimal::ZERO, false),
    };
    json!({
        "e": "ORDER_TRADE_UPDATE",
        "T": event_time,
        "E": event_time,
        "o": {
            "s": o.symbol,
            "c": o.client_order_id,
            "S": o.side,
            "o": o.order_type,
            "f": o.time_in_force,
            "q": fmt_dp(o.orig_qty, qp),
            "p": fmt_dp(o.price, pp),
            "ap": fmt_dp(o.avg_price, pp.max(5)),
            "sp": fmt_dp(o.stop_price, pp),
            "x": exec_type,
            "X": o.status,
            "i": o.order_id,
            "l": fmt_dp(l, qp),
            "z": fmt_dp(o.executed_qty, qp),
            "L": fmt_dp(lp, pp),
            "N": "USDT",
            "n": fmt_dp(n, 8),
            "T": event_time,
            "t": t,
            "b": "0",
            "a": "0",
            "m": maker,
            "R": o.reduce_only,
            "wt": o.working_type,
            "ot": o.orig_type,
            "ps": o.position_side,
            "cp": o.close_position,
            "AP": "0",
            "cr": "0",
            "rp": fmt_dp(rp, 8),
            "pP": false,
            "si": 0,
            "ss": 0,
            "V": "EXPIRE_MAKER",
            "pm": "NONE",
            "gtd": 0,
            "er": "0",
        }
    })
}

pub fn trade_lite_event(o: &Order, f: &FillRecord, event_time: i64) -> Value {
    json!({
        "e": "TRADE_LITE",
        "E": event_time,
        "T": event_time,
        "s": o.symbol,
        "q": fmt_dec(o.orig_qty),
        "p": fmt_dec(o.price),
        "m": f.maker,
        "c": o.client_order_id,
        "S": o.side,
        "L": fmt_dec(f.price),
        "l": fmt_dec(f.qty),
        "t": f.trade_id,
        "i": o.order_id,
    })
}

/// ACCOUNT_UPDATE with the USDT balance and the given (changed) positions.
pub fn account_update_event(
    st: &State,
    reason: &str,
    positions: &[Position],
    balance_change: Decimal,
    event_time: i64,
) -> Value {
    let p: Vec<Value> = positions
        .iter()
        .map(|p| {
            let mt = st.markets.get(&p.symbol).map(margin_type_lower).unwrap_or("isolated");
            json!({
                "s": p.symbol,
                "pa": fmt_dec(p.amount),
                "ep": fmt_dec(p.entry_price),
                "bep": fmt_dec(break_even(st, p)),
                "cr": fmt_dp(p.accumulated_realized, 8),
                "up": fmt_dp(st.unrealized(p), 8),
                "mt": mt,
                "iw": fmt_dp(isolated_wallet(st, p), 8),
                "ps": p.position_side,
            })
        })
        .collect();
    json!({
        "e": "ACCOUNT_UPDATE",
        "T": event_time,
        "E": event_time,
        "a": {
            "m": reason,
            "B": [{
                "a": "USDT",
                "wb": fmt_dp(st.wallet_balance, 8),
                "cw": fmt_dp(st.wallet_balance, 8),
                "bc": fmt_dp(balance_change, 8),
            }],
            "P": p,
        }
    })
}

pub fn algo_update_event(st: &State, a: &AlgoOrder, event_time: i64) -> Value {
    let (pp, qp) = precisions(st, &a.symbol);
    let mut o = json!({
        "caid": a.client_algo_id,
        "aid": a.algo_id,
        "at": "CONDITIONAL",
        "o": a.order_type,
        "s": a.symbol,
        "S": a.side,
        "ps": a.position_side,
        "f": a.time_in_force,
        "q": fmt_dp(a.quantity, qp),
        "X": a.status,
        "ai": a.actual_order_id.map(|i| i.to_string()).unwrap_or_default(),
        "ap": fmt_dp(a.actual_price, pp.max(5)),
        "aq": fmt_dp(a.actual_qty, qp),
        "act": if a.actual_order_id.is_some() { "MARKET" } else { "0" },
        "tp": fmt_dp(a.trigger_price, pp),
        "p": fmt_dp(a.price, pp),
        "V": "EXPIRE_MAKER",
        "wt": a.working_type,
        "pm": "NONE",
        "cp": a.close_position,
        "pP": a.price_protect,
        "R": a.reduce_only,
        "tt": a.trigger_time,
        "gtd": 0,
    });
    if !a.reject_reason.is_empty()
        && let Some(obj) = o.as_object_mut()
    {
        obj.insert("rm".into(), json!(a.reject_reason));
    }
    if a.order_type == "TRAILING_STOP_MARKET"
        && let Some(obj) = o.as_object_mut()
    {
        // `ia` (2026-08): whether the trailing stop is activated.
        obj.insert("ia".into(), json!(a.trailing_extreme.is_some()));
    }
    json!({ "e": "ALGO_UPDATE", "T": event_time, "E": event_time, "o": o })
}

pub fn user_trade_json(f: &FillRecord) -> Value {
    json!({
        "symbol": f.symbol,
        "id": f.trade_id,
        "orderId": f.order_id,
        "side": f.side,
        "price": fmt_dec(f.price),
        "qty": fmt_dec(f.qty),
        "realizedPnl": fmt_dp(f.realized_pnl, 8),
        "marginAsset": "USDT",
        "quoteQty": fmt_dec(f.quote_qty),
        "commission": fmt_dp(f.commission, 8),
        "commissionAsset": "USDT",
        "time": f.time,
        "positionSide": f.position_side,
        "maker": f.maker,
        "buyer": f.side == "BUY",
    })
}
