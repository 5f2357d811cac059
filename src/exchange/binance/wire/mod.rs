//! REST wire types and their conversion to our models: pure functions from response bytes to
//! typed values. Nothing here does I/O or reads a clock (`now` comes in as an argument), so
//! every decoder is tested on recorded payloads and fuzzed with arbitrary bytes.
//!
//! Binance adds fields often: unknown fields are ignored, newer fields are `Option`.
//!
//! Here: primitives, errors, exchange rules and market data; [`account`]: orders, conditional
//! orders, positions, balances and the trading status.

mod account;
mod wallet;

pub use account::{account_balance, algo_order, algo_orders, locked_symbols, order, orders, positions};
pub use wallet::api_restrictions;

use std::collections::HashMap;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::core::models::Direction;
use crate::core::models::{Candle, OrderStatus, Side, SymbolFilters, Ticker, TimestampMs};
use crate::exchange::{
    AccountBalance, ExResult, ExchangeError, ExchangePosition, MarkPriceUpdate, OrderReport, StopOrder, StopStatus,
};

/// Settlement asset of every symbol we trade.
pub const QUOTE_ASSET: &str = "USDT";

/// Contract types Binance documents (`TRADIFI_PERPETUAL`: TradFi perpetuals, 2025-12); others
/// are logged once as unknown. Only `PERPETUAL` is traded.
const KNOWN_CONTRACT_TYPES: [&str; 8] = [
    "PERPETUAL",
    "CURRENT_MONTH",
    "NEXT_MONTH",
    "CURRENT_QUARTER",
    "NEXT_QUARTER",
    "PERPETUAL_DELIVERING",
    "TRADIFI_PERPETUAL",
    "",
];
/// Symbol statuses Binance documents; only `TRADING` is traded.
const KNOWN_SYMBOL_STATUSES: [&str; 8] =
    ["PENDING_TRADING", "TRADING", "PRE_DELIVERING", "DELIVERING", "DELIVERED", "PRE_SETTLE", "SETTLING", "CLOSE"];

/// Key of the account-wide entry in `apiTradingStatus`; when it is locked, nothing may trade.
pub const ACCOUNT_LOCK_KEY: &str = "ACCOUNT";

pub(crate) fn decode_err(what: &str, e: impl std::fmt::Display) -> ExchangeError {
    ExchangeError::decode(format!("{what}: {e}"))
}

fn json<'a, T: Deserialize<'a>>(what: &str, bytes: &'a [u8]) -> ExResult<T> {
    serde_json::from_slice(bytes).map_err(|e| decode_err(what, e))
}

/// Parses a Binance decimal string.
///
/// # Errors
/// [`ExchangeError::Decode`] naming `field` for anything that is not a plain decimal.
pub fn decimal(field: &str, s: &str) -> ExResult<Decimal> {
    if let Some(d) = plain_decimal_fast(s) {
        return Ok(d);
    }
    Decimal::from_str(s.trim()).map_err(|_| ExchangeError::decode(format!("{field}: not a decimal: `{}`", clip(s))))
}

/// Parses Binance's usual `-?\d+(\.\d+)?` with at most 28 digits without the general parser
/// (several times faster on the mark-price hot path); `None` for anything else, which then
/// goes through `Decimal::from_str`.
pub fn plain_decimal_fast(s: &str) -> Option<Decimal> {
    let bytes = s.as_bytes();
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some(_) => (false, bytes),
        None => return None,
    };
    if digits.is_empty() || digits.len() > 29 {
        return None;
    }
    let mut mantissa: i128 = 0;
    let mut scale: u32 = 0;
    let mut seen_dot = false;
    let mut count = 0u32;
    for &b in digits {
        match b {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + i128::from(b - b'0');
                count += 1;
                if seen_dot {
                    scale += 1;
                }
            }
            b'.' if !seen_dot => seen_dot = true,
            _ => return None,
        }
    }
    if count == 0 || count > 28 || (seen_dot && scale == 0) {
        return None;
    }
    if negative {
        mantissa = -mantissa;
    }
    Decimal::try_from_i128_with_scale(mantissa, scale).ok()
}

/// Like [`decimal`], but an empty string reads as zero (Binance sends `""` for "none" in places).
pub fn decimal_or_zero(field: &str, s: &str) -> ExResult<Decimal> {
    if s.trim().is_empty() { Ok(Decimal::ZERO) } else { decimal(field, s) }
}

/// Parses a finite float (market data that only feeds indicator maths).
///
/// # Errors
/// [`ExchangeError::Decode`] for non-numbers, NaN and infinities.
pub fn float(field: &str, s: &str) -> ExResult<f64> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(ExchangeError::decode(format!("{field}: not a finite number: `{}`", clip(s)))),
    }
}

/// At most 40 characters of `s`, for error messages.
pub(crate) fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Order side from Binance's `BUY`/`SELL`.
///
/// # Errors
/// [`ExchangeError::Decode`] for anything else.
pub fn side(s: &str) -> ExResult<Side> {
    match s {
        "BUY" => Ok(Side::Buy),
        "SELL" => Ok(Side::Sell),
        other => Err(ExchangeError::decode(format!("unknown side `{}`", clip(other)))),
    }
}

/// Notes an enum value this build does not know (Binance adds them: TradFi contract types,
/// new statuses): logged once per kind and value for the life of the process, then silent.
/// The value is kept as "other" by the caller and never traded on.
pub fn unknown_value(kind: &str, value: &str) {
    static SEEN: std::sync::OnceLock<std::sync::Mutex<std::collections::HashSet<String>>> = std::sync::OnceLock::new();
    let key = format!("{kind}={}", clip(value));
    let first = SEEN
        .get_or_init(Default::default)
        .lock()
        .map(|mut seen| if seen.len() < 1024 { seen.insert(key) } else { false })
        .unwrap_or(false);
    if first {
        tracing::warn!(kind, value = %clip(value), "unknown enum value from Binance kept as \"other\" (never traded); logged once");
    }
}

/// Order status; `EXPIRED_IN_MATCH` (self-trade prevention) counts as expired; a status this
/// build does not know is [`OrderStatus::Other`] (logged once).
///
/// # Errors
/// None today; kept fallible for the callers' uniformity.
pub fn order_status(s: &str) -> ExResult<OrderStatus> {
    Ok(match s {
        // NEW_ADL / NEW_INSURANCE: liquidation orders (ADL, insurance fund) as they open.
        "NEW" | "NEW_ADL" | "NEW_INSURANCE" => OrderStatus::New,
        "PARTIALLY_FILLED" => OrderStatus::PartiallyFilled,
        "FILLED" => OrderStatus::Filled,
        "CANCELED" => OrderStatus::Canceled,
        "EXPIRED" | "EXPIRED_IN_MATCH" => OrderStatus::Expired,
        "REJECTED" => OrderStatus::Rejected,
        other => {
            unknown_value("order status", other);
            OrderStatus::Other
        }
    })
}

/// Algo (conditional) order status. `TRIGGERING` is reported as triggered: the stop no longer
/// rests, its market order is on the way. A status this build does not know is
/// [`StopStatus::Other`] (logged once): not resting, so never counted as protection.
///
/// # Errors
/// None today; kept fallible for the callers' uniformity.
pub fn stop_status(s: &str) -> ExResult<StopStatus> {
    Ok(match s {
        "NEW" => StopStatus::New,
        "TRIGGERING" | "TRIGGERED" => StopStatus::Triggered,
        "FINISHED" => StopStatus::Finished,
        "CANCELED" | "CANCELLED" => StopStatus::Canceled,
        "EXPIRED" => StopStatus::Expired,
        "REJECTED" => StopStatus::Rejected,
        other => {
            unknown_value("algo status", other);
            StopStatus::Other
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Errors and small objects

#[derive(Deserialize)]
struct ApiErrorWire {
    code: i64,
    #[serde(default)]
    msg: String,
}

/// Decodes a `{"code":..,"msg":..}` error body; `None` when the body is not one.
pub fn api_error(bytes: &[u8]) -> Option<(i64, String)> {
    serde_json::from_slice::<ApiErrorWire>(bytes).ok().map(|e| (e.code, e.msg))
}

#[derive(Deserialize)]
struct ServerTimeWire {
    #[serde(rename = "serverTime")]
    server_time: i64,
}

/// `GET /fapi/v1/time`.
///
/// # Errors
/// [`ExchangeError::Decode`] for any other shape.
pub fn server_time(bytes: &[u8]) -> ExResult<TimestampMs> {
    json::<ServerTimeWire>("server time", bytes).map(|w| w.server_time)
}

#[derive(Deserialize)]
struct ListenKeyWire {
    #[serde(rename = "listenKey")]
    listen_key: String,
}

/// `POST /fapi/v1/listenKey`.
///
/// # Errors
/// [`ExchangeError::Decode`] for any other shape or an empty key.
pub fn listen_key(bytes: &[u8]) -> ExResult<String> {
    let key = json::<ListenKeyWire>("listen key", bytes)?.listen_key;
    if key.is_empty() { Err(ExchangeError::decode("listen key: empty")) } else { Ok(key) }
}

#[derive(Deserialize)]
struct DualSideWire {
    #[serde(rename = "dualSidePosition")]
    dual_side_position: bool,
}

/// `GET /fapi/v1/positionSide/dual`: true = hedge mode.
///
/// # Errors
/// [`ExchangeError::Decode`] for any other shape.
pub fn dual_side(bytes: &[u8]) -> ExResult<bool> {
    json::<DualSideWire>("position mode", bytes).map(|w| w.dual_side_position)
}

// ---------------------------------------------------------------------------------------------
// Exchange info and leverage brackets

#[derive(Deserialize)]
struct ExchangeInfoWire {
    #[serde(default, rename = "rateLimits")]
    rate_limits: Vec<RateLimitWire>,
    symbols: Vec<SymbolWire>,
}

#[derive(Deserialize)]
struct RateLimitWire {
    #[serde(rename = "rateLimitType")]
    kind: String,
    interval: String,
    #[serde(rename = "intervalNum")]
    interval_num: u32,
    limit: u32,
}

#[derive(Deserialize)]
struct SymbolWire {
    symbol: String,
    #[serde(default, rename = "contractType")]
    contract_type: String,
    #[serde(default)]
    status: String,
    #[serde(default, rename = "quoteAsset")]
    quote_asset: String,
    #[serde(default)]
    filters: Vec<FilterWire>,
}

#[derive(Deserialize)]
struct FilterWire {
    #[serde(rename = "filterType")]
    filter_type: String,
    #[serde(default, rename = "tickSize")]
    tick_size: Option<String>,
    #[serde(default, rename = "minPrice")]
    min_price: Option<String>,
    #[serde(default, rename = "maxPrice")]
    max_price: Option<String>,
    #[serde(default, rename = "stepSize")]
    step_size: Option<String>,
    #[serde(default, rename = "minQty")]
    min_qty: Option<String>,
    #[serde(default, rename = "maxQty")]
    max_qty: Option<String>,
    #[serde(default)]
    notional: Option<String>,
    #[serde(default, rename = "multiplierUp")]
    multiplier_up: Option<String>,
    #[serde(default, rename = "multiplierDown")]
    multiplier_down: Option<String>,
}

/// Tradable symbols and the request-weight limit the exchange announced.
#[derive(Debug, Clone, PartialEq)]
pub struct ExchangeInfo {
    /// PERPETUAL, TRADING, USDT-quoted symbols with complete filters (max leverage 1 until the
    /// brackets are merged in).
    pub symbols: Vec<SymbolFilters>,
    /// Symbols that matched the selection but whose filters could not be read (logged, skipped).
    pub skipped: Vec<String>,
    /// REQUEST_WEIGHT per minute, when listed.
    pub weight_limit_per_min: Option<u32>,
}

fn opt_dec(field: &str, v: &Option<String>) -> ExResult<Decimal> {
    match v {
        Some(s) => decimal_or_zero(field, s),
        None => Ok(Decimal::ZERO),
    }
}

fn symbol_filters(w: &SymbolWire) -> ExResult<SymbolFilters> {
    let mut f = SymbolFilters {
        symbol: w.symbol.clone(),
        tick_size: Decimal::ZERO,
        min_price: Decimal::ZERO,
        max_price: Decimal::ZERO,
        step_size: Decimal::ZERO,
        min_qty: Decimal::ZERO,
        max_qty: Decimal::ZERO,
        market_step_size: Decimal::ZERO,
        market_min_qty: Decimal::ZERO,
        market_max_qty: Decimal::ZERO,
        min_notional: Decimal::ZERO,
        percent_price_up: Decimal::ZERO,
        percent_price_down: Decimal::ZERO,
        max_leverage: 1,
    };
    let (mut have_price, mut have_lot) = (false, false);
    for filter in &w.filters {
        match filter.filter_type.as_str() {
            "PRICE_FILTER" => {
                f.tick_size = opt_dec("tickSize", &filter.tick_size)?;
                f.min_price = opt_dec("minPrice", &filter.min_price)?;
                f.max_price = opt_dec("maxPrice", &filter.max_price)?;
                have_price = true;
            }
            "LOT_SIZE" => {
                f.step_size = opt_dec("stepSize", &filter.step_size)?;
                f.min_qty = opt_dec("minQty", &filter.min_qty)?;
                f.max_qty = opt_dec("maxQty", &filter.max_qty)?;
                have_lot = true;
            }
            "MARKET_LOT_SIZE" => {
                f.market_step_size = opt_dec("stepSize", &filter.step_size)?;
                f.market_min_qty = opt_dec("minQty", &filter.min_qty)?;
                f.market_max_qty = opt_dec("maxQty", &filter.max_qty)?;
            }
            "MIN_NOTIONAL" => f.min_notional = opt_dec("notional", &filter.notional)?,
            "PERCENT_PRICE" => {
                f.percent_price_up = opt_dec("multiplierUp", &filter.multiplier_up)?;
                f.percent_price_down = opt_dec("multiplierDown", &filter.multiplier_down)?;
            }
            // MAX_NUM_ORDERS, MAX_NUM_ALGO_ORDERS (removed 2025-12-29), POSITION_RISK_CONTROL
            // and whatever comes next: nothing we size or round by.
            _ => {}
        }
    }
    if !have_price || !have_lot || f.tick_size <= Decimal::ZERO || f.step_size <= Decimal::ZERO {
        return Err(ExchangeError::decode(format!("{}: PRICE_FILTER or LOT_SIZE missing or zero", w.symbol)));
    }
    Ok(f)
}

/// `GET /fapi/v1/exchangeInfo`: keeps PERPETUAL, TRADING, USDT-quoted symbols.
///
/// # Errors
/// [`ExchangeError::Decode`] when the document itself is malformed; a single symbol with
/// unreadable filters is skipped and named in [`ExchangeInfo::skipped`].
pub fn exchange_info(bytes: &[u8]) -> ExResult<ExchangeInfo> {
    let w: ExchangeInfoWire = json("exchange info", bytes)?;
    let mut symbols = Vec::new();
    let mut skipped = Vec::new();
    for s in &w.symbols {
        if !KNOWN_CONTRACT_TYPES.contains(&s.contract_type.as_str()) {
            unknown_value("contractType", &s.contract_type);
        }
        if !KNOWN_SYMBOL_STATUSES.contains(&s.status.as_str()) {
            unknown_value("symbol status", &s.status);
        }
        // Only USDT-quoted PERPETUAL contracts that are TRADING: TradFi perpetuals
        // (TRADIFI_PERPETUAL, with trading schedules), delivery contracts and anything newer
        // are never traded.
        if s.contract_type != "PERPETUAL" || s.status != "TRADING" || s.quote_asset != QUOTE_ASSET {
            continue;
        }
        match symbol_filters(s) {
            Ok(f) => symbols.push(f),
            Err(_) => skipped.push(s.symbol.clone()),
        }
    }
    let weight_limit_per_min = w
        .rate_limits
        .iter()
        .find(|r| r.kind == "REQUEST_WEIGHT" && r.interval == "MINUTE" && r.interval_num == 1)
        .map(|r| r.limit);
    Ok(ExchangeInfo { symbols, skipped, weight_limit_per_min })
}

#[derive(Deserialize)]
struct BracketSymbolWire {
    symbol: String,
    brackets: Vec<BracketWire>,
}

#[derive(Deserialize)]
struct BracketWire {
    #[serde(rename = "initialLeverage")]
    initial_leverage: u32,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum BracketsWire {
    Many(Vec<BracketSymbolWire>),
    One(BracketSymbolWire),
}

/// `GET /fapi/v1/leverageBracket`: maximum initial leverage per symbol (its first bracket's).
///
/// # Errors
/// [`ExchangeError::Decode`] for any other shape.
pub fn leverage_brackets(bytes: &[u8]) -> ExResult<HashMap<String, u32>> {
    let list = match json::<BracketsWire>("leverage brackets", bytes)? {
        BracketsWire::Many(v) => v,
        BracketsWire::One(one) => vec![one],
    };
    Ok(list
        .into_iter()
        .filter_map(|s| s.brackets.iter().map(|b| b.initial_leverage).max().map(|lev| (s.symbol, lev.max(1))))
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Market data

type KlineRowWire<'a> =
    (i64, &'a str, &'a str, &'a str, &'a str, &'a str, i64, &'a str, u64, &'a str, &'a str, IgnoredAny);

fn kline_row(r: &KlineRowWire<'_>) -> ExResult<Candle> {
    let c = Candle {
        open_time: r.0,
        open: float("open", r.1)?,
        high: float("high", r.2)?,
        low: float("low", r.3)?,
        close: float("close", r.4)?,
        volume: float("volume", r.5)?,
        close_time: r.6,
        quote_volume: float("quote volume", r.7)?,
        trades: r.8,
        taker_buy_volume: float("taker buy volume", r.9)?,
        taker_buy_quote_volume: float("taker buy quote volume", r.10)?,
    };
    Ok(c)
}

/// `GET /fapi/v1/klines`: rows oldest first.
///
/// # Errors
/// [`ExchangeError::Decode`] for a malformed row (the whole page is refused: a gap in candles
/// is worse than a retry).
pub fn klines(bytes: &[u8]) -> ExResult<Vec<Candle>> {
    let rows: Vec<KlineRowWire<'_>> = json("klines", bytes)?;
    rows.iter().map(kline_row).collect()
}

#[derive(Deserialize)]
struct Ticker24hWire<'a> {
    symbol: &'a str,
    #[serde(rename = "lastPrice")]
    last_price: &'a str,
    #[serde(rename = "priceChangePercent")]
    price_change_percent: &'a str,
    volume: &'a str,
    #[serde(rename = "quoteVolume")]
    quote_volume: &'a str,
    #[serde(default, rename = "closeTime")]
    close_time: i64,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TickersWire<'a> {
    #[serde(borrow)]
    Many(Vec<Ticker24hWire<'a>>),
    #[serde(borrow)]
    One(Ticker24hWire<'a>),
}

fn ticker_24h(w: &Ticker24hWire<'_>) -> ExResult<Ticker> {
    Ok(Ticker {
        symbol: w.symbol.to_string(),
        last_price: float("lastPrice", w.last_price)?,
        price_change_pct: float("priceChangePercent", w.price_change_percent)?,
        volume: float("volume", w.volume)?,
        quote_volume: float("quoteVolume", w.quote_volume)?,
        event_time: w.close_time,
    })
}

/// `GET /fapi/v1/ticker/24hr` (one object or an array). Entries with unreadable numbers are
/// dropped; the count of dropped entries is returned alongside.
///
/// # Errors
/// [`ExchangeError::Decode`] when the document is not a ticker or a list of them.
pub fn tickers(bytes: &[u8]) -> ExResult<(Vec<Ticker>, usize)> {
    let list = match json::<TickersWire<'_>>("tickers", bytes)? {
        TickersWire::Many(v) => v,
        TickersWire::One(one) => vec![one],
    };
    let mut out = Vec::with_capacity(list.len());
    let mut dropped = 0;
    for w in &list {
        match ticker_24h(w) {
            Ok(t) => out.push(t),
            Err(_) => dropped += 1,
        }
    }
    Ok((out, dropped))
}

#[derive(Deserialize)]
struct PremiumIndexWire<'a> {
    symbol: &'a str,
    #[serde(rename = "markPrice")]
    mark_price: &'a str,
    #[serde(default, rename = "indexPrice")]
    index_price: Option<&'a str>,
    #[serde(default, rename = "lastFundingRate")]
    last_funding_rate: Option<&'a str>,
    #[serde(default, rename = "nextFundingTime")]
    next_funding_time: Option<i64>,
    #[serde(default)]
    time: i64,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PremiumIndexList<'a> {
    #[serde(borrow)]
    Many(Vec<PremiumIndexWire<'a>>),
    #[serde(borrow)]
    One(PremiumIndexWire<'a>),
}

fn opt_nonempty_dec(field: &str, v: Option<&str>) -> ExResult<Option<Decimal>> {
    match v {
        Some(s) if !s.trim().is_empty() => decimal(field, s).map(Some),
        _ => Ok(None),
    }
}

/// `GET /fapi/v1/premiumIndex` (one object or an array): mark prices and funding.
///
/// # Errors
/// [`ExchangeError::Decode`] for any other shape or an unreadable price.
pub fn premium_index(bytes: &[u8]) -> ExResult<Vec<MarkPriceUpdate>> {
    let list = match json::<PremiumIndexList<'_>>("premium index", bytes)? {
        PremiumIndexList::Many(v) => v,
        PremiumIndexList::One(one) => vec![one],
    };
    list.iter()
        .map(|w| {
            Ok(MarkPriceUpdate {
                symbol: w.symbol.to_string(),
                mark_price: decimal("markPrice", w.mark_price)?,
                index_price: opt_nonempty_dec("indexPrice", w.index_price)?,
                funding_rate: opt_nonempty_dec("lastFundingRate", w.last_funding_rate)?,
                next_funding_time: w.next_funding_time.filter(|t| *t > 0),
                event_time: w.time,
            })
        })
        .collect()
}

#[derive(Deserialize)]
struct FundingRateWire<'a> {
    #[serde(rename = "fundingTime")]
    funding_time: i64,
    #[serde(rename = "fundingRate")]
    funding_rate: &'a str,
    /// Absent in older answers, sometimes empty.
    #[serde(default, rename = "markPrice")]
    mark_price: Option<&'a str>,
}

/// `GET /fapi/v1/fundingRate`: settled fundings in time order, values kept as sent.
///
/// # Errors
/// [`ExchangeError::Decode`] for anything but an array of such rows with decimal values.
pub fn funding_rates(bytes: &[u8]) -> ExResult<Vec<crate::data::funding_history::FundingRow>> {
    let rows: Vec<FundingRateWire<'_>> = json("funding rates", bytes)?;
    rows.iter()
        .map(|r| {
            decimal("fundingRate", r.funding_rate)?;
            let mark = r.mark_price.unwrap_or_default();
            if !mark.is_empty() {
                decimal("markPrice", mark)?;
            }
            Ok(crate::data::funding_history::FundingRow {
                time: r.funding_time,
                rate: r.funding_rate.to_string(),
                mark_price: mark.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn funding_rate_history_reads_the_documented_answer_and_the_2026_one() {
        let doc = include_bytes!("../../../../tests/fixtures/binance/rest/fundingRate_history.json");
        let rows = funding_rates(doc).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].time, rows[0].rate.as_str(), rows[0].mark_price.as_str()),
            (1_570_608_000_000, "-0.03750000", "")
        );
        // 2026 rows carry markPrice and rateType.
        let now = br#"[{"symbol":"BTCUSDT","fundingRate":"0.00010000","fundingTime":1768089600000,
            "markPrice":"90469.70000000","rateType":"Regular"}]"#;
        let rows = funding_rates(now).unwrap();
        assert_eq!(rows[0].mark_price, "90469.70000000");
        assert!(funding_rates(br#"[{"fundingRate":"x","fundingTime":1}]"#).is_err());
        assert!(funding_rates(br#"{"code":-1121,"msg":"Invalid symbol."}"#).is_err());
    }
}
