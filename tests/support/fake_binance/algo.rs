//! Conditional (algo) orders: placement checks, cancel, triggers on the mark or last price, and
//! the ALGO_UPDATE life cycle NEW → TRIGGERING → TRIGGERED → FINISHED (or REJECTED / CANCELED).

use rust_decimal::Decimal;

use super::engine::{
    ApiError, ApiResult, check_client_id, check_client_id_free, check_order_rate, check_price, check_qty, count_order,
    emit_order_update, execute, is_closing, margin_ok, mul, reducible, resolve_position_side,
};
use super::json;
use super::state::{AlgoOrder, Order, State, fmt_dec};

/// Parameters of a new algo order after decoding.
#[derive(Debug, Clone, Default)]
pub struct NewAlgo {
    pub algo_type: String,
    pub symbol: String,
    pub side: String,
    pub position_side: Option<String>,
    pub order_type: String,
    pub time_in_force: Option<String>,
    pub quantity: Option<Decimal>,
    pub price: Option<Decimal>,
    pub trigger_price: Option<Decimal>,
    pub working_type: Option<String>,
    pub close_position: Option<bool>,
    pub reduce_only: Option<bool>,
    pub price_protect: bool,
    pub client_algo_id: Option<String>,
    pub activate_price: Option<Decimal>,
    pub callback_rate: Option<Decimal>,
}

/// Marks the algo order behind `order_id` FINISHED once that order is done.
pub(super) fn finish_algo_of(st: &mut State, order_id: i64) {
    let Some(o) = st.orders.get(&order_id).cloned() else { return };
    let Some(algo_id) = o.algo_id else { return };
    let now = st.now();
    if let Some(a) = st.algo_orders.get_mut(&algo_id) {
        if a.status != "TRIGGERED" {
            return;
        }
        a.status = "FINISHED".into();
        a.actual_price = o.avg_price;
        a.actual_qty = o.executed_qty;
        a.update_time = now;
    }
    emit_algo_update(st, algo_id);
}

pub(super) fn emit_algo_update(st: &mut State, algo_id: i64) {
    let Some(a) = st.algo_orders.get(&algo_id).cloned() else { return };
    let t = st.event_time();
    let ev = json::algo_update_event(st, &a, t);
    st.emit_user(ev);
}

/// Advances a trailing stop with the latest working price: activation at `activatePrice`, then
/// the best price since (highest for SELL, lowest for BUY).
pub(super) fn track_trailing(a: &mut AlgoOrder, price: Decimal) {
    if a.order_type != "TRAILING_STOP_MARKET" {
        return;
    }
    let sell = a.side == "SELL";
    a.trailing_extreme = match a.trailing_extreme {
        Some(x) => Some(if sell { x.max(price) } else { x.min(price) }),
        None if (sell && price >= a.trigger_price) || (!sell && price <= a.trigger_price) => Some(price),
        None => None,
    };
}

pub(super) fn trigger_reached(a: &AlgoOrder, price: Decimal) -> bool {
    if a.order_type == "TRAILING_STOP_MARKET" {
        let Some(x) = a.trailing_extreme else { return false };
        let rate = a.callback_rate / Decimal::ONE_HUNDRED;
        return if a.side == "SELL" { price <= x * (Decimal::ONE - rate) } else { price >= x * (Decimal::ONE + rate) };
    }
    let stop = a.order_type.starts_with("STOP");
    match (stop, a.side.as_str()) {
        (true, "BUY") => price >= a.trigger_price,
        (true, _) => price <= a.trigger_price,
        (false, "BUY") => price <= a.trigger_price,
        (false, _) => price >= a.trigger_price,
    }
}

pub(super) fn working_price(st: &State, a: &AlgoOrder) -> Decimal {
    match st.markets.get(&a.symbol) {
        Some(m) if a.working_type == "MARK_PRICE" => m.mark_price,
        Some(m) => m.last_price,
        None => Decimal::ZERO,
    }
}

/// `POST /fapi/v1/algoOrder`. Returns the algo id.
pub fn place_algo(st: &mut State, req: NewAlgo) -> ApiResult<i64> {
    if req.algo_type != "CONDITIONAL" {
        return Err(ApiError::new(-1130, "Data sent for parameter 'algoType' is not valid."));
    }
    let Some(market) = st.markets.get(&req.symbol).cloned() else {
        return Err(ApiError::new(-1121, "Invalid symbol."));
    };
    if req.side != "BUY" && req.side != "SELL" {
        return Err(ApiError::new(-1117, "Invalid side."));
    }
    match req.order_type.as_str() {
        "STOP_MARKET" | "TAKE_PROFIT_MARKET" | "STOP" | "TAKE_PROFIT" | "TRAILING_STOP_MARKET" => {}
        _ => return Err(ApiError::new(-1116, "Invalid orderType.")),
    }
    let trailing = req.order_type == "TRAILING_STOP_MARKET";
    check_order_rate(st)?;
    if let Some(id) = &req.client_algo_id {
        check_client_id_free(st, id, true)?;
    }
    let close_position = req.close_position.unwrap_or(false);
    if close_position && req.reduce_only.is_some() {
        return Err(ApiError::new(-1106, "Parameter 'reduceOnly' sent when not required."));
    }
    if close_position && req.quantity.is_some() {
        return Err(ApiError::new(-4137, "Quantity must be zero with closePosition equals true."));
    }
    let position_side = resolve_position_side(st, req.position_side.as_deref(), req.reduce_only.is_some())?;
    let reduce_only = req.reduce_only.unwrap_or(false);
    let working_type = req.working_type.clone().unwrap_or_else(|| "CONTRACT_PRICE".into());
    if working_type != "MARK_PRICE" && working_type != "CONTRACT_PRICE" {
        return Err(ApiError::new(-1130, "Data sent for parameter 'workingType' is not valid."));
    }
    let now_price = if working_type == "MARK_PRICE" { market.mark_price } else { market.last_price };
    let (trigger, callback_rate) = if trailing {
        // Trailing stop: optional activatePrice (BUY below, SELL above the price), callbackRate
        // in % (0.1 … 20 since 2026-10-23).
        let rate = req.callback_rate.ok_or_else(|| ApiError::mandatory("callbackRate"))?;
        if rate < Decimal::new(1, 1) || rate > Decimal::from(20) || rate.normalize().scale() > 1 {
            return Err(ApiError::new(-1130, "Data sent for parameter 'callbackRate' is not valid."));
        }
        let activate = match req.activate_price {
            Some(p) => {
                check_price(st, &req.symbol, p)?;
                if (req.side == "BUY" && p >= now_price) || (req.side == "SELL" && p <= now_price) {
                    return Err(ApiError::new(-2021, "Order would immediately trigger."));
                }
                p
            }
            None => Decimal::ZERO,
        };
        (activate, rate)
    } else {
        let t = req.trigger_price.ok_or_else(|| ApiError::mandatory("triggerPrice"))?;
        check_price(st, &req.symbol, t)?;
        (t, Decimal::ZERO)
    };
    let qty = if close_position {
        Decimal::ZERO
    } else {
        let q = req.quantity.ok_or_else(|| ApiError::mandatory("quantity"))?;
        check_qty(st, &req.symbol, q, req.order_type.ends_with("_MARKET"))?;
        q
    };
    let with_price = req.order_type == "STOP" || req.order_type == "TAKE_PROFIT";
    let price = if with_price {
        let p = req.price.ok_or_else(|| ApiError::mandatory("price"))?;
        check_price(st, &req.symbol, p)?;
        p
    } else {
        Decimal::ZERO
    };
    let notional_price = if trigger.is_zero() { now_price } else { trigger };
    if !reduce_only && !close_position && mul(qty, notional_price) < market.spec.min_notional {
        return Err(ApiError::new(
            -4164,
            format!(
                "Order's notional must be no smaller than {} (unless you choose reduce only).",
                fmt_dec(market.spec.min_notional)
            ),
        ));
    }
    let mut algo = AlgoOrder {
        algo_id: 0,
        client_algo_id: String::new(),
        symbol: req.symbol.clone(),
        side: req.side.clone(),
        position_side,
        order_type: req.order_type.clone(),
        time_in_force: req.time_in_force.clone().unwrap_or_else(|| "GTC".into()),
        quantity: qty,
        trigger_price: trigger,
        price,
        working_type,
        close_position,
        reduce_only,
        price_protect: req.price_protect,
        status: "NEW".into(),
        create_time: 0,
        update_time: 0,
        trigger_time: 0,
        actual_order_id: None,
        actual_price: Decimal::ZERO,
        actual_qty: Decimal::ZERO,
        reject_reason: String::new(),
        callback_rate,
        // Without activatePrice a trailing stop tracks from the current price at once.
        trailing_extreme: if trailing && trigger.is_zero() { Some(now_price) } else { None },
    };
    if !trailing && trigger_reached(&algo, working_price(st, &algo)) {
        return Err(ApiError::new(-2021, "Order would immediately trigger."));
    }
    if st.open_algo_count() >= st.cfg.max_algo_orders {
        return Err(ApiError::new(-4045, "Reach max stop order limit."));
    }
    algo.client_algo_id = check_client_id(st, req.client_algo_id.clone(), true)?;
    count_order(st);
    let now = st.now();
    algo.algo_id = st.next_algo_id;
    st.next_algo_id += 1;
    algo.create_time = now;
    algo.update_time = now;
    let id = algo.algo_id;
    let activated = algo.trailing_extreme.is_some();
    st.algo_orders.insert(id, algo);
    emit_algo_update(st, id);
    if trailing && activated {
        // Since 2026-08 a trailing stop reports NEW twice: `ia:false`, then `ia:true` once it
        // is activated (here at once: no activatePrice).
        emit_algo_update(st, id);
    }
    Ok(id)
}

/// Cancels an open algo order.
pub fn cancel_algo(st: &mut State, algo_id: i64) -> ApiResult<()> {
    let now = st.now();
    match st.algo_orders.get_mut(&algo_id) {
        Some(a) if a.is_open() => {
            a.status = "CANCELED".into();
            a.update_time = now;
        }
        _ => return Err(ApiError::new(-2011, "Unknown order sent.")),
    }
    emit_algo_update(st, algo_id);
    Ok(())
}

pub(super) fn reject_algo(st: &mut State, algo_id: i64, reason: &str) {
    let now = st.now();
    if let Some(a) = st.algo_orders.get_mut(&algo_id) {
        a.status = "REJECTED".into();
        a.reject_reason = reason.to_string();
        a.update_time = now;
    }
    emit_algo_update(st, algo_id);
}

/// Fires one algo order: TRIGGERING → TRIGGERED (order placed) → FINISHED when it fills, or
/// REJECTED (reduce-only with nothing to reduce, margin).
pub(super) fn trigger_algo(st: &mut State, algo_id: i64) {
    let Some(a) = st.algo_orders.get(&algo_id).cloned() else { return };
    let now = st.now();
    if let Some(x) = st.algo_orders.get_mut(&algo_id) {
        x.status = "TRIGGERING".into();
        x.trigger_time = now;
        x.update_time = now;
    }
    emit_algo_update(st, algo_id);
    if st.stuck_triggers.contains(&a.symbol) {
        // The fault: marked triggering, no order ever reaches the matching engine.
        return;
    }
    let closable = reducible(st, &a.symbol, &a.side, &a.position_side);
    let reducing = a.close_position || is_closing(&a.side, &a.position_side, a.reduce_only);
    let qty = if a.close_position {
        closable
    } else if a.reduce_only {
        a.quantity.min(closable)
    } else {
        a.quantity
    };
    if reducing && qty.is_zero() {
        reject_algo(st, algo_id, "Reduce Only reject");
        return;
    }
    let last = st.markets.get(&a.symbol).map(|m| m.last_price).unwrap_or_default();
    if !reducing && !margin_ok(st, &a.symbol, (a.quantity - closable).max(Decimal::ZERO), last) {
        reject_algo(st, algo_id, "Margin is insufficient.");
        return;
    }
    let market_type = a.order_type.ends_with("_MARKET");
    let order_id = st.next_order_id;
    st.next_order_id += 1;
    let order = Order {
        order_id,
        client_order_id: a.client_algo_id.clone(),
        symbol: a.symbol.clone(),
        side: a.side.clone(),
        position_side: a.position_side.clone(),
        order_type: if market_type { "MARKET".into() } else { "LIMIT".into() },
        orig_type: a.order_type.clone(),
        time_in_force: a.time_in_force.clone(),
        price: a.price,
        stop_price: a.trigger_price,
        orig_qty: qty,
        executed_qty: Decimal::ZERO,
        cum_quote: Decimal::ZERO,
        avg_price: Decimal::ZERO,
        status: "NEW".into(),
        reduce_only: a.reduce_only,
        close_position: a.close_position,
        working_type: a.working_type.clone(),
        time: now,
        update_time: now,
        algo_id: Some(algo_id),
    };
    st.orders.insert(order_id, order);
    if let Some(x) = st.algo_orders.get_mut(&algo_id) {
        x.status = "TRIGGERED".into();
        x.actual_order_id = Some(order_id);
        x.update_time = now;
    }
    emit_algo_update(st, algo_id);
    emit_order_update(st, order_id, "NEW", None);
    let marketable = market_type || (a.side == "BUY" && last <= a.price) || (a.side == "SELL" && last >= a.price);
    if marketable {
        execute(st, order_id, last, false);
    }
}
