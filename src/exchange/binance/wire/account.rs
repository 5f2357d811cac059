//! Account-side REST payloads: orders, conditional (algo) orders, positions, balances and the
//! API trading status, decoded to our models.

use std::collections::BTreeSet;

use rust_decimal::Decimal;
use serde::Deserialize;

use super::*;

// ---------------------------------------------------------------------------------------------
// Orders

#[derive(Deserialize)]
struct OrderWire {
    #[serde(rename = "orderId")]
    order_id: i64,
    symbol: String,
    status: String,
    #[serde(rename = "clientOrderId")]
    client_order_id: String,
    #[serde(default, rename = "avgPrice")]
    avg_price: Option<String>,
    #[serde(default, rename = "origQty")]
    orig_qty: Option<String>,
    #[serde(default, rename = "executedQty")]
    executed_qty: Option<String>,
    #[serde(default, rename = "reduceOnly")]
    reduce_only: Option<bool>,
    side: String,
    #[serde(default, rename = "updateTime")]
    update_time: Option<i64>,
    #[serde(default)]
    time: Option<i64>,
}

fn order_report(w: OrderWire) -> ExResult<OrderReport> {
    let num = |field: &str, v: &Option<String>| match v {
        Some(s) => decimal_or_zero(field, s),
        None => Ok(Decimal::ZERO),
    };
    Ok(OrderReport {
        side: side(&w.side)?,
        status: order_status(&w.status)?,
        orig_qty: num("origQty", &w.orig_qty)?,
        executed_qty: num("executedQty", &w.executed_qty)?,
        avg_price: num("avgPrice", &w.avg_price)?,
        reduce_only: w.reduce_only.unwrap_or(false),
        update_time: w.update_time.or(w.time).unwrap_or(0),
        symbol: w.symbol,
        client_order_id: w.client_order_id,
        order_id: w.order_id,
    })
}

/// One order object (`POST`/`GET`/`DELETE /fapi/v1/order`).
///
/// # Errors
/// [`ExchangeError::Decode`] for any other shape.
pub fn order(bytes: &[u8]) -> ExResult<OrderReport> {
    order_report(json("order", bytes)?)
}

/// A list of order objects (`GET /fapi/v1/openOrders`).
///
/// # Errors
/// [`ExchangeError::Decode`] for any other shape.
pub fn orders(bytes: &[u8]) -> ExResult<Vec<OrderReport>> {
    json::<Vec<OrderWire>>("orders", bytes)?.into_iter().map(order_report).collect()
}

#[derive(Deserialize)]
struct AlgoOrderWire {
    #[serde(rename = "algoId")]
    algo_id: i64,
    #[serde(default, rename = "clientAlgoId")]
    client_algo_id: String,
    symbol: String,
    side: String,
    #[serde(default)]
    quantity: Option<String>,
    #[serde(default, rename = "triggerPrice")]
    trigger_price: Option<String>,
    #[serde(rename = "algoStatus")]
    algo_status: String,
    #[serde(default, rename = "reduceOnly")]
    reduce_only: Option<bool>,
    #[serde(default, rename = "closePosition")]
    close_position: Option<bool>,
    #[serde(default, rename = "updateTime")]
    update_time: Option<i64>,
    #[serde(default, rename = "createTime")]
    create_time: Option<i64>,
}

fn stop_order(w: AlgoOrderWire) -> ExResult<StopOrder> {
    let num = |field: &str, v: &Option<String>| match v {
        Some(s) => decimal_or_zero(field, s),
        None => Ok(Decimal::ZERO),
    };
    Ok(StopOrder {
        algo_id: w.algo_id,
        side: side(&w.side)?,
        qty: num("quantity", &w.quantity)?,
        trigger_price: num("triggerPrice", &w.trigger_price)?,
        // closePosition stops are reduce-only by construction.
        reduce_only: w.reduce_only.unwrap_or(false) || w.close_position.unwrap_or(false),
        status: stop_status(&w.algo_status)?,
        update_time: w.update_time.or(w.create_time).unwrap_or(0),
        symbol: w.symbol,
        client_id: w.client_algo_id,
    })
}

/// One algo order (`POST`/`GET /fapi/v1/algoOrder`).
///
/// # Errors
/// [`ExchangeError::Decode`] for any other shape.
pub fn algo_order(bytes: &[u8]) -> ExResult<StopOrder> {
    stop_order(json("algo order", bytes)?)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum AlgoListWire {
    Plain(Vec<AlgoOrderWire>),
    Wrapped { orders: Vec<AlgoOrderWire> },
}

/// `GET /fapi/v1/openAlgoOrders` (a bare array; a `{"orders":[..]}` wrapper is accepted too).
///
/// # Errors
/// [`ExchangeError::Decode`] for any other shape.
pub fn algo_orders(bytes: &[u8]) -> ExResult<Vec<StopOrder>> {
    let list = match json::<AlgoListWire>("algo orders", bytes)? {
        AlgoListWire::Plain(v) | AlgoListWire::Wrapped { orders: v } => v,
    };
    list.into_iter().map(stop_order).collect()
}

// ---------------------------------------------------------------------------------------------
// Account

#[derive(Deserialize)]
struct PositionRiskWire {
    symbol: String,
    #[serde(rename = "positionAmt")]
    position_amt: String,
    #[serde(default, rename = "entryPrice")]
    entry_price: Option<String>,
    #[serde(default, rename = "markPrice")]
    mark_price: Option<String>,
    #[serde(default, rename = "unRealizedProfit")]
    unrealized_profit: Option<String>,
    #[serde(default, rename = "liquidationPrice")]
    liquidation_price: Option<String>,
    /// A string in v2 (`"20"`), absent in v3.
    #[serde(default)]
    leverage: Option<serde_json::Value>,
    #[serde(default, rename = "positionSide")]
    position_side: Option<String>,
    #[serde(default, rename = "updateTime")]
    update_time: Option<i64>,
}

fn leverage_value(v: &Option<serde_json::Value>) -> u32 {
    match v {
        Some(serde_json::Value::Number(n)) => n.as_u64().and_then(|x| u32::try_from(x).ok()).unwrap_or(0),
        Some(serde_json::Value::String(s)) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

/// `GET /fapi/v2/positionRisk` (or v3): open positions, zero rows dropped. Leverage is 0 when
/// the payload does not carry it (v3).
///
/// # Errors
/// [`ExchangeError::Decode`] for any other shape or unreadable numbers.
pub fn positions(bytes: &[u8]) -> ExResult<Vec<ExchangePosition>> {
    let rows: Vec<PositionRiskWire> = json("position risk", bytes)?;
    let mut out = Vec::new();
    for r in rows {
        let amt = decimal("positionAmt", &r.position_amt)?;
        if amt.is_zero() {
            continue;
        }
        let opt = |field: &str, v: &Option<String>| match v {
            Some(s) => decimal_or_zero(field, s),
            None => Ok(Decimal::ZERO),
        };
        let liq = opt("liquidationPrice", &r.liquidation_price)?;
        let direction = match r.position_side.as_deref() {
            Some("LONG") => Direction::Long,
            Some("SHORT") => Direction::Short,
            _ if amt.is_sign_negative() => Direction::Short,
            _ => Direction::Long,
        };
        out.push(ExchangePosition {
            direction,
            qty: amt.abs(),
            entry_price: opt("entryPrice", &r.entry_price)?,
            mark_price: opt("markPrice", &r.mark_price)?,
            unrealized_pnl: opt("unRealizedProfit", &r.unrealized_profit)?,
            leverage: leverage_value(&r.leverage),
            liquidation_price: (liq > Decimal::ZERO).then_some(liq),
            update_time: r.update_time.unwrap_or(0),
            symbol: r.symbol,
        });
    }
    Ok(out)
}

#[derive(Deserialize)]
struct AccountWire {
    #[serde(default)]
    assets: Vec<AccountAssetWire>,
    #[serde(default, rename = "totalWalletBalance")]
    total_wallet_balance: Option<String>,
    #[serde(default, rename = "totalUnrealizedProfit")]
    total_unrealized_profit: Option<String>,
    #[serde(default, rename = "totalMarginBalance")]
    total_margin_balance: Option<String>,
    #[serde(default, rename = "availableBalance")]
    available_balance: Option<String>,
}

#[derive(Deserialize)]
struct AccountAssetWire {
    asset: String,
    #[serde(rename = "walletBalance")]
    wallet_balance: String,
    #[serde(default, rename = "unrealizedProfit")]
    unrealized_profit: Option<String>,
    #[serde(default, rename = "marginBalance")]
    margin_balance: Option<String>,
    #[serde(default, rename = "availableBalance")]
    available_balance: Option<String>,
}

/// `GET /fapi/v3/account` (or v2): the USDT asset's balances; the account totals when the
/// asset list has no USDT entry.
///
/// # Errors
/// [`ExchangeError::Decode`] for any other shape or unreadable numbers.
pub fn account_balance(bytes: &[u8]) -> ExResult<AccountBalance> {
    let w: AccountWire = json("account", bytes)?;
    let opt = |field: &str, v: &Option<String>| match v {
        Some(s) => decimal_or_zero(field, s),
        None => Ok(Decimal::ZERO),
    };
    if let Some(a) = w.assets.iter().find(|a| a.asset == QUOTE_ASSET) {
        let wallet = decimal("walletBalance", &a.wallet_balance)?;
        let upnl = opt("unrealizedProfit", &a.unrealized_profit)?;
        let equity = match &a.margin_balance {
            Some(s) => decimal_or_zero("marginBalance", s)?,
            None => wallet + upnl,
        };
        return Ok(AccountBalance {
            wallet_balance: wallet,
            equity,
            available_balance: opt("availableBalance", &a.available_balance)?,
            unrealized_pnl: upnl,
        });
    }
    match (&w.total_wallet_balance, &w.available_balance) {
        (Some(wallet), Some(avail)) => {
            let wallet = decimal("totalWalletBalance", wallet)?;
            let upnl = opt("totalUnrealizedProfit", &w.total_unrealized_profit)?;
            let equity = match &w.total_margin_balance {
                Some(s) => decimal("totalMarginBalance", s)?,
                None => wallet + upnl,
            };
            Ok(AccountBalance {
                wallet_balance: wallet,
                equity,
                available_balance: decimal("availableBalance", avail)?,
                unrealized_pnl: upnl,
            })
        }
        _ => Err(ExchangeError::decode("account: no USDT asset and no totals")),
    }
}

#[derive(Deserialize)]
struct TradingStatusWire {
    #[serde(default)]
    indicators: HashMap<String, Vec<IndicatorWire>>,
}

#[derive(Deserialize)]
struct IndicatorWire {
    #[serde(default, rename = "isLocked")]
    is_locked: bool,
    #[serde(default, rename = "plannedRecoverTime")]
    planned_recover_time: i64,
}

/// `GET /fapi/v1/apiTradingStatus`: keys (symbols, or [`ACCOUNT_LOCK_KEY`]) with a lock that
/// has not yet reached its planned recovery time at `now`.
///
/// # Errors
/// [`ExchangeError::Decode`] for any other shape.
pub fn locked_symbols(bytes: &[u8], now: TimestampMs) -> ExResult<BTreeSet<String>> {
    let w: TradingStatusWire = json("trading status", bytes)?;
    Ok(w.indicators
        .into_iter()
        .filter(|(_, list)| {
            list.iter().any(|i| i.is_locked && (i.planned_recover_time <= 0 || i.planned_recover_time > now))
        })
        .map(|(k, _)| k)
        .collect())
}
