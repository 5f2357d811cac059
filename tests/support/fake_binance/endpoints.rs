//! Endpoint implementations (called with the state locked, after authentication).

use axum::http::Method;
use rand::Rng;
use rand::distr::Alphanumeric;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::algo::{self, NewAlgo};
use super::engine::{self, ApiError, ApiResult, NewOrder};
use super::json;
use super::rest::{Params, bool_param, code_msg, decimal_param, int_param};
use super::state::{ListenKey, Market, Order, Position, State, fmt_dec};

/// Binance kline intervals and their length in ms (1M approximated as 30 days).
pub fn interval_ms(i: &str) -> Option<i64> {
    const M: i64 = 60_000;
    Some(match i {
        "1s" => 1000,
        "1m" => M,
        "3m" => 3 * M,
        "5m" => 5 * M,
        "15m" => 15 * M,
        "30m" => 30 * M,
        "1h" => 60 * M,
        "2h" => 120 * M,
        "4h" => 240 * M,
        "6h" => 360 * M,
        "8h" => 480 * M,
        "12h" => 720 * M,
        "1d" => 1440 * M,
        "3d" => 3 * 1440 * M,
        "1w" => 7 * 1440 * M,
        "1M" => 30 * 1440 * M,
        _ => return None,
    })
}

fn symbol_param<'a>(st: &'a State, p: &Params) -> ApiResult<&'a Market> {
    let s = p.get("symbol").ok_or_else(|| ApiError::mandatory("symbol"))?;
    st.markets.get(s).ok_or_else(|| ApiError::new(-1121, "Invalid symbol."))
}

fn optional_symbol<'a>(st: &'a State, p: &Params) -> ApiResult<Option<&'a Market>> {
    match p.get("symbol") {
        None => Ok(None),
        Some(s) => st.markets.get(s).map(Some).ok_or_else(|| ApiError::new(-1121, "Invalid symbol.")),
    }
}

pub fn execute(st: &mut State, method: &Method, path: &str, p: &Params) -> ApiResult<Value> {
    match (method.as_str(), path) {
        ("GET", "/fapi/v1/ping") => Ok(json!({})),
        ("GET", "/fapi/v1/time") => Ok(json!({ "serverTime": st.now() })),
        ("GET", "/fapi/v1/exchangeInfo") => Ok(exchange_info(st)),
        ("GET", "/fapi/v1/klines") => klines(st, p),
        ("GET", "/fapi/v1/ticker/24hr") => {
            let now = st.now();
            match optional_symbol(st, p)? {
                Some(m) => Ok(json::ticker_24hr_json(m, now)),
                None => Ok(Value::Array(st.markets.values().map(|m| json::ticker_24hr_json(m, now)).collect())),
            }
        }
        ("GET", "/fapi/v1/premiumIndex") => {
            let now = st.now();
            match optional_symbol(st, p)? {
                Some(m) => Ok(json::premium_index_json(m, now)),
                None => Ok(Value::Array(st.markets.values().map(|m| json::premium_index_json(m, now)).collect())),
            }
        }
        ("GET", "/fapi/v1/leverageBracket") => match optional_symbol(st, p)? {
            Some(m) => Ok(brackets_json(m)),
            None => Ok(Value::Array(st.markets.values().map(brackets_json).collect())),
        },
        ("GET", "/fapi/v1/apiTradingStatus") => api_trading_status(st, p),
        ("GET", "/sapi/v1/account/apiRestrictions") => Ok(st.api_restrictions.clone()),
        ("GET", "/fapi/v1/fundingRate") => {
            let sym = symbol_param(st, p)?.spec.symbol.clone();
            let start = int_param(p, "startTime")?;
            let end = int_param(p, "endTime")?;
            let limit = int_param(p, "limit")?.unwrap_or(100);
            if !(1..=1000).contains(&limit) {
                return Err(ApiError::new(-1130, "Data sent for parameter 'limit' is not valid."));
            }
            let rows: Vec<Value> = st
                .funding_history
                .get(&sym)
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter(|(t, _, _)| start.is_none_or(|s| *t >= s) && end.is_none_or(|e| *t <= e))
                .take(limit as usize)
                .map(|(t, rate, mark)| {
                    json!({
                        "symbol": sym,
                        "fundingTime": t,
                        "fundingRate": fmt_dec(*rate),
                        "markPrice": fmt_dec(*mark),
                        "rateType": "Regular",
                    })
                })
                .collect();
            Ok(Value::Array(rows))
        }
        ("GET", "/fapi/v1/fundingInfo") => Ok(Value::Array(
            st.funding_info
                .iter()
                .map(|(sym, (hours, cap, floor))| {
                    json!({
                        "symbol": sym,
                        "adjustedFundingRateCap": fmt_dec(*cap),
                        "adjustedFundingRateFloor": fmt_dec(*floor),
                        "fundingIntervalHours": hours,
                        "disclaimer": false,
                    })
                })
                .collect(),
        )),
        ("GET", "/fapi/v1/positionSide/dual") => Ok(json!({ "dualSidePosition": st.hedge_mode })),
        ("POST", "/fapi/v1/positionSide/dual") => set_dual(st, p),
        ("POST", "/fapi/v1/marginType") => set_margin_type(st, p),
        ("POST", "/fapi/v1/leverage") => set_leverage(st, p),
        ("POST", "/fapi/v1/order") => new_order(st, p),
        ("GET", "/fapi/v1/order") => {
            let o = find_order(st, p, -2013, "Order does not exist.")?;
            Ok(json::order_json(st, &o, true))
        }
        ("GET", "/fapi/v1/openOrder") => {
            let o = find_order(st, p, -2013, "Order does not exist.")?;
            if !o.is_open() {
                return Err(ApiError::new(-2013, "Order does not exist."));
            }
            Ok(json::order_json(st, &o, true))
        }
        ("DELETE", "/fapi/v1/order") => {
            let o = find_order(st, p, -2011, "Unknown order sent.")?;
            engine::cancel_order(st, o.order_id)?;
            let o = st.orders.get(&o.order_id).cloned().unwrap_or(o);
            Ok(json::order_json(st, &o, false))
        }
        ("GET", "/fapi/v1/openOrders") => {
            let sym = optional_symbol(st, p)?.map(|m| m.spec.symbol.clone());
            let list: Vec<Value> = st
                .orders
                .values()
                .filter(|o| o.is_open() && sym.as_ref().is_none_or(|s| *s == o.symbol))
                .map(|o| json::order_json(st, o, true))
                .collect();
            Ok(Value::Array(list))
        }
        ("GET", "/fapi/v1/allOrders") => {
            let sym = symbol_param(st, p)?.spec.symbol.clone();
            let list: Vec<Value> =
                st.orders.values().filter(|o| o.symbol == sym).map(|o| json::order_json(st, o, true)).collect();
            Ok(Value::Array(list))
        }
        ("DELETE", "/fapi/v1/allOpenOrders") => {
            let sym = symbol_param(st, p)?.spec.symbol.clone();
            let ids: Vec<i64> =
                st.orders.values().filter(|o| o.symbol == sym && o.is_open()).map(|o| o.order_id).collect();
            for id in ids {
                let _ = engine::cancel_order(st, id);
            }
            Ok(code_msg("The operation of cancel all open order is done."))
        }
        ("POST", "/fapi/v1/algoOrder") => new_algo(st, p),
        ("GET", "/fapi/v1/algoOrder") => {
            let id = find_algo(st, p, -2013, "Order does not exist.")?;
            let a = st.algo_orders.get(&id).cloned().ok_or_else(|| ApiError::new(-2013, "Order does not exist."))?;
            Ok(json::algo_json(st, &a, true))
        }
        ("DELETE", "/fapi/v1/algoOrder") => {
            let id = find_algo(st, p, -2011, "Unknown order sent.")?;
            algo::cancel_algo(st, id)?;
            let a = st.algo_orders.get(&id).cloned().ok_or_else(|| ApiError::new(-2011, "Unknown order sent."))?;
            Ok(json!({ "algoId": a.algo_id, "clientAlgoId": a.client_algo_id, "code": "200", "msg": "success" }))
        }
        ("GET", "/fapi/v1/openAlgoOrders") => {
            let sym = optional_symbol(st, p)?.map(|m| m.spec.symbol.clone());
            let algo_id = int_param(p, "algoId")?;
            if let Some(t) = p.get("algoType")
                && t != "CONDITIONAL"
            {
                return Ok(json!([]));
            }
            let list: Vec<Value> = st
                .algo_orders
                .values()
                .filter(|a| a.is_open())
                .filter(|a| sym.as_ref().is_none_or(|s| *s == a.symbol))
                .filter(|a| algo_id.is_none_or(|id| id == a.algo_id))
                .map(|a| json::algo_json(st, a, false))
                .collect();
            Ok(Value::Array(list))
        }
        ("GET", "/fapi/v1/allAlgoOrders") => {
            let sym = symbol_param(st, p)?.spec.symbol.clone();
            let list: Vec<Value> =
                st.algo_orders.values().filter(|a| a.symbol == sym).map(|a| json::algo_json(st, a, true)).collect();
            Ok(Value::Array(list))
        }
        ("DELETE", "/fapi/v1/algoOpenOrders") => {
            let sym = symbol_param(st, p)?.spec.symbol.clone();
            let ids: Vec<i64> =
                st.algo_orders.values().filter(|a| a.symbol == sym && a.is_open()).map(|a| a.algo_id).collect();
            for id in ids {
                let _ = algo::cancel_algo(st, id);
            }
            Ok(code_msg("The operation of cancel all open order is done."))
        }
        ("GET", "/fapi/v3/positionRisk") => {
            let sym = optional_symbol(st, p)?.map(|m| m.spec.symbol.clone());
            let mut rows: Vec<Value> = Vec::new();
            for (sym_name, m) in &st.markets {
                if sym.as_ref().is_some_and(|s| s != sym_name) {
                    continue;
                }
                for ps in position_sides(st) {
                    let pos = st.position(sym_name, ps).cloned().unwrap_or_else(|| empty_position(m, ps));
                    if !pos.amount.is_zero() || json::has_open_orders(st, sym_name) {
                        rows.push(json::position_risk_v3(st, &pos));
                    }
                }
            }
            Ok(Value::Array(rows))
        }
        ("GET", "/fapi/v2/positionRisk") => {
            let sym = optional_symbol(st, p)?.map(|m| m.spec.symbol.clone());
            let mut rows: Vec<Value> = Vec::new();
            for (sym_name, m) in &st.markets {
                if sym.as_ref().is_some_and(|s| s != sym_name) {
                    continue;
                }
                for ps in position_sides(st) {
                    let pos = st.position(sym_name, ps).cloned().unwrap_or_else(|| empty_position(m, ps));
                    rows.push(json::position_risk_v2(st, &pos));
                }
            }
            Ok(Value::Array(rows))
        }
        ("GET", "/fapi/v2/account") => Ok(json::account_json(st, true)),
        ("GET", "/fapi/v3/account") => Ok(json::account_json(st, false)),
        ("GET", "/fapi/v2/balance") | ("GET", "/fapi/v3/balance") => Ok(json::balance_json(st)),
        ("GET", "/fapi/v1/symbolConfig") => {
            let sym = optional_symbol(st, p)?.map(|m| m.spec.symbol.clone());
            let rows: Vec<Value> = st
                .markets
                .values()
                .filter(|m| sym.as_ref().is_none_or(|s| *s == m.spec.symbol))
                .map(|m| {
                    json!({
                        "symbol": m.spec.symbol,
                        "marginType": m.margin_type,
                        "isAutoAddMargin": false,
                        "leverage": m.leverage,
                        "maxNotionalValue": fmt_dec(max_notional(m, m.leverage)),
                    })
                })
                .collect();
            Ok(Value::Array(rows))
        }
        ("GET", "/fapi/v1/accountConfig") => Ok(json!({
            "feeTier": 0,
            "canTrade": true,
            "canDeposit": true,
            "canWithdraw": true,
            "dualSidePosition": st.hedge_mode,
            "updateTime": 0,
            "multiAssetsMargin": false,
            "tradeGroupId": -1,
        })),
        ("GET", "/fapi/v1/commissionRate") => {
            let sym = symbol_param(st, p)?.spec.symbol.clone();
            Ok(json!({
                "symbol": sym,
                "makerCommissionRate": fmt_dec(st.cfg.maker_fee_rate),
                "takerCommissionRate": fmt_dec(st.cfg.taker_fee_rate),
                "rpiCommissionRate": "0",
            }))
        }
        ("GET", "/fapi/v1/userTrades") => {
            let sym = symbol_param(st, p)?.spec.symbol.clone();
            let start = int_param(p, "startTime")?;
            let end = int_param(p, "endTime")?;
            let from_id = int_param(p, "fromId")?;
            let limit = int_param(p, "limit")?.unwrap_or(500).clamp(1, 1000) as usize;
            let rows: Vec<Value> = st
                .fills
                .iter()
                .filter(|f| f.symbol == sym)
                .filter(|f| start.is_none_or(|s| f.time >= s) && end.is_none_or(|e| f.time <= e))
                .filter(|f| from_id.is_none_or(|id| f.trade_id >= id))
                .take(limit)
                .map(json::user_trade_json)
                .collect();
            Ok(Value::Array(rows))
        }
        ("POST", "/fapi/v1/listenKey") => {
            let now = st.now();
            let ttl = st.cfg.listen_key_ttl_ms;
            match st.listen_key.as_mut() {
                Some(k) if !k.dead && now < k.expires_at => {
                    k.expires_at = now + ttl;
                    Ok(json!({ "listenKey": k.key }))
                }
                _ => {
                    let key: String = (&mut st.rng).sample_iter(Alphanumeric).take(64).map(char::from).collect();
                    st.listen_key = Some(ListenKey { key: key.clone(), expires_at: now + ttl, dead: false });
                    Ok(json!({ "listenKey": key }))
                }
            }
        }
        ("PUT", "/fapi/v1/listenKey") => {
            let now = st.now();
            let ttl = st.cfg.listen_key_ttl_ms;
            match st.listen_key.as_mut() {
                Some(k) if !k.dead && now < k.expires_at => {
                    k.expires_at = now + ttl;
                    Ok(json!({ "listenKey": k.key }))
                }
                _ => Err(ApiError::new(-1125, "This listenKey does not exist.")),
            }
        }
        ("DELETE", "/fapi/v1/listenKey") => {
            if let Some(k) = st.listen_key.as_mut() {
                k.dead = true;
            }
            Ok(json!({}))
        }
        _ => Err(ApiError::new(-5000, format!("Path {path}, Method {method} is invalid")).with_status(404)),
    }
}

fn position_sides(st: &State) -> &'static [&'static str] {
    if st.hedge_mode { &["LONG", "SHORT"] } else { &["BOTH"] }
}

fn empty_position(m: &Market, ps: &str) -> Position {
    Position { symbol: m.spec.symbol.clone(), position_side: ps.to_string(), ..Position::default() }
}

fn max_notional(m: &Market, leverage: u32) -> Decimal {
    m.spec.brackets.iter().rev().find(|b| b.initial_leverage >= leverage).map(|b| b.notional_cap).unwrap_or_default()
}

fn exchange_info(st: &State) -> Value {
    let limit = st.cfg.weight_limit_1m.unwrap_or(2400);
    let symbols: Vec<Value> = st.markets.values().map(symbol_json).collect();
    json!({
        "timezone": "UTC",
        "serverTime": st.now(),
        "futuresType": "U_MARGINED",
        "rateLimits": [
            { "rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": limit },
            { "rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": st.cfg.order_limits.1 },
            { "rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": st.cfg.order_limits.0 }
        ],
        "exchangeFilters": [],
        "assets": [
            { "asset": "USDT", "marginAvailable": true, "autoAssetExchange": "-100" },
            { "asset": "BTC", "marginAvailable": true, "autoAssetExchange": "-0.00100000" }
        ],
        "symbols": symbols,
    })
}

fn symbol_json(m: &Market) -> Value {
    let s = &m.spec;
    json!({
        "symbol": s.symbol,
        "pair": s.symbol,
        "contractType": s.contract_type,
        "deliveryDate": 4133404800000_i64,
        "onboardDate": 1569398400000_i64,
        "status": s.status,
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": s.base_asset,
        "quoteAsset": s.quote_asset,
        "marginAsset": s.quote_asset,
        "pricePrecision": s.price_precision,
        "quantityPrecision": s.quantity_precision,
        "baseAssetPrecision": 8,
        "quotePrecision": 8,
        "underlyingType": "COIN",
        "underlyingSubType": [],
        "triggerProtect": "0.0500",
        "liquidationFee": "0.020000",
        "marketTakeBound": "0.30",
        "maxMoveOrderLimit": 10000,
        "filters": [
            { "filterType": "PRICE_FILTER", "minPrice": fmt_dec(s.min_price), "maxPrice": fmt_dec(s.max_price), "tickSize": fmt_dec(s.tick_size) },
            { "filterType": "LOT_SIZE", "minQty": fmt_dec(s.min_qty), "maxQty": fmt_dec(s.max_qty), "stepSize": fmt_dec(s.step_size) },
            { "filterType": "MARKET_LOT_SIZE", "minQty": fmt_dec(s.min_qty), "maxQty": fmt_dec(s.market_max_qty), "stepSize": fmt_dec(s.step_size) },
            { "filterType": "MAX_NUM_ORDERS", "limit": s.max_num_orders },
            { "filterType": "MIN_NOTIONAL", "notional": fmt_dec(s.min_notional) },
            { "filterType": "PERCENT_PRICE", "multiplierUp": fmt_dec(s.multiplier_up), "multiplierDown": fmt_dec(s.multiplier_down), "multiplierDecimal": "4" },
            { "filterType": "POSITION_RISK_CONTROL", "positionControlSide": "NONE" }
        ],
        "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX", "GTD"],
        "permissionSets": ["GRID", "COPY"],
    })
}

fn brackets_json(m: &Market) -> Value {
    let brackets: Vec<Value> = m
        .spec
        .brackets
        .iter()
        .enumerate()
        .map(|(i, b)| {
            json!({
                "bracket": i + 1,
                "initialLeverage": b.initial_leverage,
                "notionalCap": json_number(b.notional_cap),
                "notionalFloor": json_number(b.notional_floor),
                "maintMarginRatio": b.maint_margin_ratio.normalize().to_string().parse::<f64>().unwrap_or(0.0),
                "cum": b.cum.normalize().to_string().parse::<f64>().unwrap_or(0.0),
            })
        })
        .collect();
    json!({ "symbol": m.spec.symbol, "brackets": brackets })
}

/// An integer JSON number when `x` is whole (Binance prints caps as `5000`), else a float.
fn json_number(x: Decimal) -> Value {
    let n = x.normalize();
    if n.scale() == 0
        && let Ok(i) = n.to_string().parse::<i64>()
    {
        return json!(i);
    }
    json!(n.to_string().parse::<f64>().unwrap_or(0.0))
}

fn api_trading_status(st: &State, p: &Params) -> ApiResult<Value> {
    let sym = optional_symbol(st, p)?.map(|m| m.spec.symbol.clone());
    let now = st.now();
    let mut indicators = serde_json::Map::new();
    for m in st.markets.values() {
        if !m.locked || sym.as_ref().is_some_and(|s| *s != m.spec.symbol) {
            continue;
        }
        indicators.insert(
            m.spec.symbol.clone(),
            json!([{ "isLocked": true, "plannedRecoverTime": now + 600_000, "indicator": "UFR", "value": 0.99, "triggerValue": 0.99 }]),
        );
    }
    Ok(json!({ "indicators": indicators, "updateTime": now }))
}

fn set_dual(st: &mut State, p: &Params) -> ApiResult<Value> {
    let want = bool_param(p, "dualSidePosition")?.ok_or_else(|| ApiError::mandatory("dualSidePosition"))?;
    if want == st.hedge_mode {
        return Err(ApiError::new(-4059, "No need to change position side."));
    }
    if st.orders.values().any(Order::is_open) || st.algo_orders.values().any(|a| a.is_open()) {
        return Err(ApiError::new(-4067, "Position side cannot be changed if there exists open orders."));
    }
    if st.positions.values().any(|p| !p.amount.is_zero()) {
        return Err(ApiError::new(-4068, "Position side cannot be changed if there exists position."));
    }
    st.hedge_mode = want;
    Ok(code_msg("success"))
}

fn set_margin_type(st: &mut State, p: &Params) -> ApiResult<Value> {
    let sym = symbol_param(st, p)?.spec.symbol.clone();
    let mt = p.get("marginType").ok_or_else(|| ApiError::mandatory("marginType"))?.to_uppercase();
    if mt != "ISOLATED" && mt != "CROSSED" {
        return Err(ApiError::new(-1130, "Data sent for parameter 'marginType' is not valid."));
    }
    if st.markets.get(&sym).is_some_and(|m| m.margin_type == mt) {
        return Err(ApiError::new(-4046, "No need to change margin type."));
    }
    if json::has_open_orders(st, &sym) {
        return Err(ApiError::new(-4047, "Margin type cannot be changed if there exists open orders."));
    }
    if st.positions.values().any(|p| p.symbol == sym && !p.amount.is_zero()) {
        return Err(ApiError::new(-4048, "Margin type cannot be changed if there exists position."));
    }
    if let Some(m) = st.markets.get_mut(&sym) {
        m.margin_type = mt;
    }
    Ok(code_msg("success"))
}

fn set_leverage(st: &mut State, p: &Params) -> ApiResult<Value> {
    let sym = symbol_param(st, p)?.spec.symbol.clone();
    let raw = p.get("leverage").ok_or_else(|| ApiError::mandatory("leverage"))?.to_string();
    let lev: u32 = raw.parse().map_err(|_| ApiError::new(-4028, format!("Leverage {raw} is not valid")))?;
    let max = st.markets.get(&sym).map(|m| m.spec.max_leverage()).unwrap_or(1);
    if lev == 0 || lev > max {
        return Err(ApiError::new(-4028, format!("Leverage {lev} is not valid")));
    }
    let Some(m) = st.markets.get_mut(&sym) else { return Err(ApiError::new(-1121, "Invalid symbol.")) };
    m.leverage = lev;
    let m = m.clone();
    let t = st.event_time();
    st.emit_user(json!({ "e": "ACCOUNT_CONFIG_UPDATE", "E": t, "T": t, "ac": { "s": sym, "l": lev } }));
    Ok(json!({ "leverage": lev, "maxNotionalValue": fmt_dec(max_notional(&m, lev)), "symbol": sym }))
}

fn new_order(st: &mut State, p: &Params) -> ApiResult<Value> {
    let req = NewOrder {
        symbol: p.get("symbol").ok_or_else(|| ApiError::mandatory("symbol"))?.to_string(),
        side: p.get("side").ok_or_else(|| ApiError::mandatory("side"))?.to_string(),
        position_side: p.get("positionSide").map(str::to_string),
        order_type: p.get("type").ok_or_else(|| ApiError::mandatory("type"))?.to_string(),
        time_in_force: p.get("timeInForce").map(str::to_string),
        quantity: decimal_param(p, "quantity")?,
        price: decimal_param(p, "price")?,
        reduce_only: bool_param(p, "reduceOnly")?,
        client_order_id: p.get("newClientOrderId").map(str::to_string),
    };
    if p.get("stopPrice").is_some() && !engine::CONDITIONAL_TYPES.contains(&req.order_type.as_str()) {
        return Err(ApiError::new(-1106, "Parameter 'stopPrice' sent when not required."));
    }
    let resp_type = p.get("newOrderRespType").unwrap_or("ACK").to_string();
    if resp_type != "ACK" && resp_type != "RESULT" {
        return Err(ApiError::new(-1130, "Data sent for parameter 'newOrderRespType' is not valid."));
    }
    let id = engine::place_order(st, req)?;
    let mut o = st.orders.get(&id).cloned().ok_or_else(|| ApiError::new(-1000, "order vanished"))?;
    if resp_type == "ACK" {
        // ACK reports the order as accepted, before any fill.
        o.status = "NEW".into();
        o.executed_qty = Decimal::ZERO;
        o.cum_quote = Decimal::ZERO;
        o.avg_price = Decimal::ZERO;
        o.update_time = o.time;
    }
    Ok(json::order_json(st, &o, false))
}

fn new_algo(st: &mut State, p: &Params) -> ApiResult<Value> {
    let req = NewAlgo {
        algo_type: p.get("algoType").ok_or_else(|| ApiError::mandatory("algoType"))?.to_string(),
        symbol: p.get("symbol").ok_or_else(|| ApiError::mandatory("symbol"))?.to_string(),
        side: p.get("side").ok_or_else(|| ApiError::mandatory("side"))?.to_string(),
        position_side: p.get("positionSide").map(str::to_string),
        order_type: p.get("type").ok_or_else(|| ApiError::mandatory("type"))?.to_string(),
        time_in_force: p.get("timeInForce").map(str::to_string),
        quantity: decimal_param(p, "quantity")?,
        price: decimal_param(p, "price")?,
        trigger_price: decimal_param(p, "triggerPrice")?,
        working_type: p.get("workingType").map(str::to_string),
        close_position: bool_param(p, "closePosition")?,
        reduce_only: bool_param(p, "reduceOnly")?,
        price_protect: bool_param(p, "priceProtect")?.unwrap_or(false),
        client_algo_id: p.get("clientAlgoId").map(str::to_string),
        activate_price: decimal_param(p, "activatePrice")?,
        callback_rate: decimal_param(p, "callbackRate")?,
    };
    if p.get("stopPrice").is_some() {
        return Err(ApiError::new(-1106, "Parameter 'stopPrice' sent when not required."));
    }
    // The legacy trailing parameter name (clients that shipped it broke): Binance does not
    // read it.
    if p.get("activationPrice").is_some() {
        return Err(ApiError::new(
            -1104,
            "Not all sent parameters were read; read 'activatePrice' but was sent 'activationPrice'.",
        ));
    }
    if req.order_type == "TRAILING_STOP_MARKET" && req.trigger_price.is_some() {
        return Err(ApiError::new(-1106, "Parameter 'triggerPrice' sent when not required."));
    }
    let id = algo::place_algo(st, req)?;
    let a = st.algo_orders.get(&id).cloned().ok_or_else(|| ApiError::new(-1000, "order vanished"))?;
    Ok(json::algo_json(st, &a, false))
}

fn find_order(st: &State, p: &Params, code: i64, msg: &str) -> ApiResult<Order> {
    let sym = symbol_param(st, p)?.spec.symbol.clone();
    let order_id = int_param(p, "orderId")?;
    let cid = p.get("origClientOrderId");
    if order_id.is_none() && cid.is_none() {
        return Err(ApiError::new(
            -1102,
            "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
        ));
    }
    st.orders
        .values()
        .rev()
        .find(|o| {
            o.symbol == sym && order_id.is_none_or(|id| id == o.order_id) && cid.is_none_or(|c| c == o.client_order_id)
        })
        .cloned()
        .ok_or_else(|| ApiError::new(code, msg))
}

fn find_algo(st: &State, p: &Params, code: i64, msg: &str) -> ApiResult<i64> {
    let algo_id = int_param(p, "algoId")?;
    let cid = p.get("clientAlgoId");
    if algo_id.is_none() && cid.is_none() {
        return Err(ApiError::new(-1102, "Param 'clientAlgoId' or 'algoId' must be sent, but both were empty/null!"));
    }
    st.algo_orders
        .values()
        .rev()
        .find(|a| algo_id.is_none_or(|id| id == a.algo_id) && cid.is_none_or(|c| c == a.client_algo_id))
        .map(|a| a.algo_id)
        .ok_or_else(|| ApiError::new(code, msg))
}

fn klines(st: &State, p: &Params) -> ApiResult<Value> {
    let sym = symbol_param(st, p)?.spec.symbol.clone();
    let interval = p.get("interval").ok_or_else(|| ApiError::mandatory("interval"))?;
    if interval_ms(interval).is_none() {
        return Err(ApiError::new(-1120, "Invalid interval."));
    }
    let limit = int_param(p, "limit")?.unwrap_or(500);
    if !(1..=1500).contains(&limit) {
        return Err(ApiError::new(-1130, "Data sent for parameter 'limit' is not valid."));
    }
    let start = int_param(p, "startTime")?;
    let end = int_param(p, "endTime")?;
    if let (Some(s), Some(e)) = (start, end)
        && s > e
    {
        return Err(ApiError::new(-1023, "Start time is greater than end time."));
    }
    let Some(series) = st.klines.get(&(sym, interval.to_string())) else { return Ok(json!([])) };
    let in_range = series.range(start.unwrap_or(i64::MIN)..=end.unwrap_or(i64::MAX)).map(|(_, c)| c);
    let limit = limit as usize;
    let rows: Vec<Value> = if start.is_some() {
        in_range.take(limit).map(json::kline_row).collect()
    } else {
        let all: Vec<_> = in_range.collect();
        let skip = all.len().saturating_sub(limit);
        all[skip..].iter().map(|c| json::kline_row(c)).collect()
    };
    Ok(Value::Array(rows))
}
