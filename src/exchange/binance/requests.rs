//! The order and algo-order requests the client sends, as pure builders: parameter names,
//! their order and the formatting of every value live here and nowhere else, so a golden test
//! of each builder pins the exact query string (a renamed parameter cannot pass unnoticed).
//! The REST layer appends `recvWindow`, `timestamp` and `signature` to signed calls.
//!
//! Facts these builders encode (shared/docs/binance-usdm-futures.md §4.5, §12):
//! - `POST /fapi/v1/order` accepts only LIMIT and MARKET; conditional types go to
//!   `POST /fapi/v1/algoOrder` with `algoType=CONDITIONAL` and `triggerPrice` (never `stopPrice`).
//! - A `TRAILING_STOP_MARKET` carries `callbackRate` (0.1–20 since 2026-10-23, in percent) and an
//!   optional `activatePrice` — never `triggerPrice`, and never the legacy `activationPrice`.
//! - The algo order endpoints identify an order by `algoId` or `clientAlgoId` alone.

use reqwest::Method;
use rust_decimal::Decimal;

use super::rest::{Call, Security};
use crate::core::models::plain_decimal;
use crate::exchange::{ExResult, ExchangeError, MarketOrderRequest, StopRequest, TrailingStopRequest};

/// Smallest `callbackRate` Binance accepts, in percent.
pub const MIN_CALLBACK_RATE_PCT: Decimal = Decimal::from_parts(1, 0, 0, false, 1);
/// Largest `callbackRate` Binance accepts since 2026-10-23 (10 before), in percent.
pub const MAX_CALLBACK_RATE_PCT: Decimal = Decimal::from_parts(20, 0, 0, false, 0);

/// `POST /fapi/v1/order`: a MARKET order (entry, or a reduce-only close), answered with its
/// final state (`newOrderRespType=RESULT`). Never retried blindly (see the client).
pub fn market_order(req: &MarketOrderRequest) -> Call {
    let mut call = Call::new(Method::POST, "/fapi/v1/order", Security::Signed, 0)
        .param("symbol", req.symbol.clone())
        .param("side", req.side.as_str())
        .param("type", "MARKET")
        .param("quantity", plain_decimal(req.qty))
        .param("newClientOrderId", req.client_order_id.clone())
        .param("newOrderRespType", "RESULT")
        .no_retry();
    if req.reduce_only {
        call = call.param("reduceOnly", "true");
    }
    call
}

/// How far back Binance answers order and trade look-ups: `GET /fapi/v1/userTrades` only the
/// last 3 months (since 2026-08-26), `GET /fapi/v1/order` nothing older than 90 days. Older
/// records live only in the journal.
pub const LOOKUP_WINDOW_MS: i64 = 90 * 24 * 3_600_000;

/// True when `client_order_id` is one of the trading core's ids (`ke-<kind>-<ms>-<n>`) created
/// longer than [`LOOKUP_WINDOW_MS`] before `now`: the exchange no longer knows it, so it is not
/// looked up (the journal is the record).
pub fn beyond_lookup_window(client_order_id: &str, now: i64) -> bool {
    let mut parts = client_order_id.split('-');
    let created = match (parts.next(), parts.next(), parts.next()) {
        (Some("ke"), Some(_), Some(ms)) => ms.parse::<i64>().ok(),
        _ => None,
    };
    created.is_some_and(|t| t > 1_000_000_000_000 && now - t > LOOKUP_WINDOW_MS)
}

/// `GET /fapi/v1/order` by client order id.
pub fn query_order(symbol: &str, client_order_id: &str) -> Call {
    Call::new(Method::GET, "/fapi/v1/order", Security::Signed, 1)
        .param("symbol", symbol)
        .param("origClientOrderId", client_order_id)
}

/// `POST /fapi/v1/algoOrder`: the protective stop — STOP_MARKET, reduce-only, mark-price trigger.
pub fn stop_market(req: &StopRequest) -> Call {
    Call::new(Method::POST, "/fapi/v1/algoOrder", Security::Signed, 0)
        .param("algoType", "CONDITIONAL")
        .param("symbol", req.symbol.clone())
        .param("side", req.side.as_str())
        .param("type", "STOP_MARKET")
        .param("quantity", plain_decimal(req.qty))
        .param("triggerPrice", plain_decimal(req.trigger_price))
        .param("workingType", "MARK_PRICE")
        .param("reduceOnly", "true")
        .param("clientAlgoId", req.client_id.clone())
        .no_retry()
        .urgent()
}

/// Checks a trailing stop's callback rate (0.1–20 %, one decimal) and activation price.
///
/// # Errors
/// [`ExchangeError::Refused`] naming the parameter and what is allowed.
pub fn check_trailing(req: &TrailingStopRequest) -> ExResult<()> {
    let rate = req.callback_rate_pct;
    if rate < MIN_CALLBACK_RATE_PCT || rate > MAX_CALLBACK_RATE_PCT || rate.normalize().scale() > 1 {
        return Err(ExchangeError::Refused(format!(
            "callbackRate {rate} outside {MIN_CALLBACK_RATE_PCT}..={MAX_CALLBACK_RATE_PCT} % (one decimal)"
        )));
    }
    if req.activate_price.is_some_and(|p| p <= Decimal::ZERO) {
        return Err(ExchangeError::Refused("activatePrice must be positive".into()));
    }
    if req.qty <= Decimal::ZERO {
        return Err(ExchangeError::Refused(format!("quantity must be positive, got {}", req.qty)));
    }
    Ok(())
}

/// `POST /fapi/v1/algoOrder`: a reduce-only TRAILING_STOP_MARKET on the mark price. Carries
/// `callbackRate` and, when set, `activatePrice`; no `triggerPrice`.
///
/// # Errors
/// As [`check_trailing`].
pub fn trailing_stop(req: &TrailingStopRequest) -> ExResult<Call> {
    check_trailing(req)?;
    let mut call = Call::new(Method::POST, "/fapi/v1/algoOrder", Security::Signed, 0)
        .param("algoType", "CONDITIONAL")
        .param("symbol", req.symbol.clone())
        .param("side", req.side.as_str())
        .param("type", "TRAILING_STOP_MARKET")
        .param("quantity", plain_decimal(req.qty));
    if let Some(p) = req.activate_price {
        call = call.param("activatePrice", plain_decimal(p));
    }
    Ok(call
        .param("callbackRate", plain_decimal(req.callback_rate_pct.normalize()))
        .param("workingType", "MARK_PRICE")
        .param("reduceOnly", "true")
        .param("clientAlgoId", req.client_id.clone())
        .no_retry()
        .urgent())
}

/// `GET /fapi/v1/algoOrder` by client algo id.
pub fn query_algo_order(client_algo_id: &str) -> Call {
    Call::new(Method::GET, "/fapi/v1/algoOrder", Security::Signed, 1).param("clientAlgoId", client_algo_id)
}

/// `DELETE /fapi/v1/algoOrder` by algo id.
pub fn cancel_algo_order(algo_id: i64) -> Call {
    Call::new(Method::DELETE, "/fapi/v1/algoOrder", Security::Signed, 1).param("algoId", algo_id.to_string())
}

/// `DELETE /fapi/v1/allOpenOrders`: every plain open order of `symbol` (not the algo orders).
pub fn cancel_open_orders(symbol: &str) -> Call {
    Call::new(Method::DELETE, "/fapi/v1/allOpenOrders", Security::Signed, 1).param("symbol", symbol)
}

/// `DELETE /fapi/v1/algoOpenOrders`: every open algo order of `symbol`.
pub fn cancel_open_algo_orders(symbol: &str) -> Call {
    Call::new(Method::DELETE, "/fapi/v1/algoOpenOrders", Security::Signed, 1).param("symbol", symbol)
}

/// `POST /fapi/v1/marginType` (`ISOLATED` / `CROSSED`).
pub fn margin_type(symbol: &str, margin_type: &'static str) -> Call {
    Call::new(Method::POST, "/fapi/v1/marginType", Security::Signed, 1)
        .param("symbol", symbol)
        .param("marginType", margin_type)
}

/// `POST /fapi/v1/leverage`.
pub fn leverage(symbol: &str, leverage: u32) -> Call {
    Call::new(Method::POST, "/fapi/v1/leverage", Security::Signed, 1)
        .param("symbol", symbol)
        .param("leverage", leverage.to_string())
}

/// The parameters of `call` exactly as the REST layer encodes them (before `recvWindow`,
/// `timestamp` and `signature`).
///
/// # Errors
/// [`ExchangeError::Refused`] when a parameter cannot be URL-encoded.
pub fn encoded_params(call: &Call) -> ExResult<String> {
    serde_urlencoded::to_string(&call.params)
        .map_err(|e| ExchangeError::Refused(format!("cannot encode parameters: {e}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;
    use crate::core::models::Side;

    fn golden(call: &Call) -> String {
        format!("{} {}?{}", call.method, call.path, encoded_params(call).unwrap())
    }

    fn trailing(rate: Decimal, activate: Option<Decimal>) -> TrailingStopRequest {
        TrailingStopRequest {
            symbol: "BTCUSDT".into(),
            side: Side::Sell,
            qty: dec!(0.010),
            callback_rate_pct: rate,
            activate_price: activate,
            client_id: "ke-t-1".into(),
        }
    }

    /// Golden query strings of every order and algo-order request the client sends.
    #[test]
    fn every_order_request_has_its_exact_query_string() {
        let entry = MarketOrderRequest {
            symbol: "BTCUSDT".into(),
            side: Side::Buy,
            qty: dec!(0.0150),
            reduce_only: false,
            client_order_id: "ke-e-1700000000000-1".into(),
        };
        let close = MarketOrderRequest { side: Side::Sell, reduce_only: true, qty: dec!(0.005), ..entry.clone() };
        let stop = StopRequest {
            symbol: "ETHUSDT".into(),
            side: Side::Sell,
            qty: dec!(1.250),
            trigger_price: dec!(3395.50),
            client_id: "ke-s-1700000000000-2".into(),
        };
        let cases: Vec<(Call, &str)> = vec![
            (
                market_order(&entry),
                "POST /fapi/v1/order?symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.015\
                 &newClientOrderId=ke-e-1700000000000-1&newOrderRespType=RESULT",
            ),
            (
                market_order(&close),
                "POST /fapi/v1/order?symbol=BTCUSDT&side=SELL&type=MARKET&quantity=0.005\
                 &newClientOrderId=ke-e-1700000000000-1&newOrderRespType=RESULT&reduceOnly=true",
            ),
            (
                query_order("BTCUSDT", "ke-e-1700000000000-1"),
                "GET /fapi/v1/order?symbol=BTCUSDT&origClientOrderId=ke-e-1700000000000-1",
            ),
            (
                stop_market(&stop),
                "POST /fapi/v1/algoOrder?algoType=CONDITIONAL&symbol=ETHUSDT&side=SELL&type=STOP_MARKET\
                 &quantity=1.25&triggerPrice=3395.5&workingType=MARK_PRICE&reduceOnly=true\
                 &clientAlgoId=ke-s-1700000000000-2",
            ),
            (
                trailing_stop(&trailing(dec!(1.0), Some(dec!(70000.10)))).unwrap(),
                "POST /fapi/v1/algoOrder?algoType=CONDITIONAL&symbol=BTCUSDT&side=SELL&type=TRAILING_STOP_MARKET\
                 &quantity=0.01&activatePrice=70000.1&callbackRate=1&workingType=MARK_PRICE&reduceOnly=true\
                 &clientAlgoId=ke-t-1",
            ),
            (
                trailing_stop(&trailing(dec!(20), None)).unwrap(),
                "POST /fapi/v1/algoOrder?algoType=CONDITIONAL&symbol=BTCUSDT&side=SELL&type=TRAILING_STOP_MARKET\
                 &quantity=0.01&callbackRate=20&workingType=MARK_PRICE&reduceOnly=true&clientAlgoId=ke-t-1",
            ),
            (query_algo_order("ke-s-1700000000000-2"), "GET /fapi/v1/algoOrder?clientAlgoId=ke-s-1700000000000-2"),
            (cancel_algo_order(1_000_000_000_001), "DELETE /fapi/v1/algoOrder?algoId=1000000000001"),
            (cancel_open_orders("ETHUSDT"), "DELETE /fapi/v1/allOpenOrders?symbol=ETHUSDT"),
            (cancel_open_algo_orders("ETHUSDT"), "DELETE /fapi/v1/algoOpenOrders?symbol=ETHUSDT"),
            (margin_type("SOLUSDT", "ISOLATED"), "POST /fapi/v1/marginType?symbol=SOLUSDT&marginType=ISOLATED"),
            (leverage("SOLUSDT", 15), "POST /fapi/v1/leverage?symbol=SOLUSDT&leverage=15"),
        ];
        for (call, want) in &cases {
            assert_eq!(golden(call), *want);
            assert_eq!(call.security, Security::Signed, "{want}");
            let q = encoded_params(call).unwrap();
            for banned in ["stopPrice", "activationPrice", "timestamp", "signature"] {
                assert!(!q.contains(banned), "{banned} in {q}");
            }
        }
        // Order placement is never retried blindly; look-ups and cancels are.
        for (call, _) in cases.iter().take(2).chain(cases.get(3..6).into_iter().flatten()) {
            assert_eq!(call.retry, super::super::rest::Retry::Never, "{}", call.path);
        }
        // Protective stops (and only they) are retried sooner.
        for (i, (call, want)) in cases.iter().enumerate() {
            assert_eq!(call.urgent, (3..6).contains(&i), "{want}");
        }
    }

    #[test]
    fn look_ups_stay_inside_the_three_month_window() {
        let now = 1_800_000_000_000;
        let day = 86_400_000;
        assert!(!beyond_lookup_window(&format!("ke-s-{}-7", now - 89 * day), now));
        assert!(beyond_lookup_window(&format!("ke-s-{}-7", now - 91 * day), now));
        // Ids whose age we cannot read are looked up (the exchange decides).
        assert!(!beyond_lookup_window("ke-abc-1-x", now));
        assert!(!beyond_lookup_window("manual-order", now));
    }

    #[test]
    fn trailing_stops_never_carry_a_trigger_price_and_check_the_callback_rate() {
        let ok = trailing_stop(&trailing(dec!(0.1), Some(dec!(70000)))).unwrap();
        let names: Vec<&str> = ok.params.iter().map(|(k, _)| *k).collect();
        assert!(names.contains(&"activatePrice") && names.contains(&"callbackRate"));
        assert!(!names.contains(&"triggerPrice") && !names.contains(&"activationPrice"));
        for bad in [dec!(0.05), dec!(0), dec!(20.1), dec!(25), dec!(1.25), dec!(-1)] {
            assert!(
                matches!(trailing_stop(&trailing(bad, None)), Err(ExchangeError::Refused(_))),
                "callbackRate {bad} must be refused"
            );
        }
        assert!(trailing_stop(&trailing(dec!(20.0), None)).is_ok(), "20.0 is the 2026-10-23 maximum");
        assert!(trailing_stop(&trailing(dec!(10.5), None)).is_ok());
        assert!(trailing_stop(&trailing(dec!(1), Some(dec!(0)))).is_err());
    }
}
