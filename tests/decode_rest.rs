//! Decoder tests of `src/exchange/binance/wire.rs`: recorded payloads and property tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use kinetic::core::models::{Direction, OrderStatus, Side};
use kinetic::exchange::binance::wire::*;
use kinetic::exchange::{ExchangeError, StopStatus};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use std::str::FromStr;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/binance/rest/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn exchange_info_keeps_tradeable_usdt_perpetuals_with_all_filters() {
    let info = exchange_info(&fixture("exchangeInfo_trimmed.json")).unwrap();
    let names: Vec<&str> = info.symbols.iter().map(|s| s.symbol.as_str()).collect();
    assert_eq!(names, vec!["BTCUSDT", "ETHUSDT", "DOGEUSDT", "SOLUSDT", "1000PEPEUSDT", "币安人生USDT"]);
    assert!(info.skipped.is_empty());
    let btc = &info.symbols[0];
    assert_eq!(btc.tick_size, dec!(0.10));
    assert_eq!(btc.min_price, dec!(261.10));
    assert_eq!(btc.max_price, dec!(809484));
    assert_eq!(btc.step_size, dec!(0.001));
    assert_eq!(btc.market_max_qty, dec!(1000));
    assert_eq!(btc.min_notional, dec!(100));
    assert_eq!(btc.percent_price_up, dec!(1.05));
    assert_eq!(btc.percent_price_down, dec!(0.95));
    assert_eq!(info.weight_limit_per_min, Some(6000));
}

#[test]
fn full_exchange_info_captures_parse() {
    for file in ["exchangeInfo.json", "exchangeInfo_2025-11-26.json"] {
        let path = format!("/work/shared/data/binance/rest/{file}");
        // The full captures are large and live outside the repo; the trimmed copy is the
        // committed fixture. Check them when present.
        if let Ok(bytes) = std::fs::read(&path) {
            let info = exchange_info(&bytes).unwrap();
            assert!(info.symbols.len() > 400, "{file}: {}", info.symbols.len());
            assert!(info.symbols.iter().all(|s| s.tick_size > Decimal::ZERO && s.symbol.ends_with("USDT")));
        }
    }
}

#[test]
fn leverage_brackets_give_max_leverage() {
    let map = leverage_brackets(&fixture("leverageBracket_trimmed.json")).unwrap();
    assert!(map.get("BTCUSDT").is_some_and(|l| *l >= 50));
    let one = br#"{"symbol":"ETHUSDT","brackets":[{"bracket":1,"initialLeverage":100,"notionalCap":10000,"notionalFloor":0,"maintMarginRatio":0.005,"cum":0}]}"#;
    assert_eq!(leverage_brackets(one).unwrap().get("ETHUSDT"), Some(&100));
}

#[test]
fn klines_parse_rows() {
    let k = klines(&fixture("klines_BTCUSDT_1m.json")).unwrap();
    assert_eq!(k.len(), 3);
    assert_eq!(k[0].open_time, 1_712_738_460_000);
    assert_eq!(k[0].close_time, 1_712_738_519_999);
    assert_eq!(k[1].low, 70459.4);
    assert_eq!(k[2].trades, 8);
    assert_eq!(k[2].taker_buy_quote_volume, 929.1213);
    assert_eq!(klines(&fixture("klines_docs.json")).unwrap().len(), 1);
    assert!(klines(br#"[[1,"x","1","1","1","1",2,"1",1,"1","1","0"]]"#).is_err());
}

#[test]
fn tickers_and_premium_index() {
    let (t, dropped) = tickers(&fixture("ticker_24hr_BTCUSDT.json")).unwrap();
    assert_eq!(dropped, 0);
    assert_eq!(t[0].symbol, "BTCUSDT");
    assert_eq!(t[0].price_change_pct, -95.96);
    assert_eq!(t[0].quote_volume, 15.3);
    let one = premium_index(&fixture("premiumIndex_BTCUSDT.json")).unwrap();
    assert_eq!(one[0].mark_price, dec!(11793.63104562));
    assert_eq!(one[0].funding_rate, Some(dec!(0.00038246)));
    let all = premium_index(&fixture("premiumIndex_all.json")).unwrap();
    assert_eq!(all.len(), 521);
}

#[test]
fn orders_parse() {
    let o = order(&fixture("order_limit_new.json")).unwrap();
    assert_eq!((o.order_id, o.status, o.side), (4_087_922_044, OrderStatus::New, Side::Sell));
    assert_eq!(o.orig_qty, dec!(0.2));
    let m = order(&fixture("order_market_filled_um.json")).unwrap();
    assert_eq!((m.status, m.executed_qty, m.avg_price), (OrderStatus::Filled, dec!(0.01), dec!(47279.4)));
    assert_eq!(order(&fixture("order_limit_open_gtx.json")).unwrap().status, OrderStatus::New);
    assert_eq!(orders(&fixture("openOrders_trailing_stop.json")).map(|v| v.len()).unwrap_or(1), 1);
}

#[test]
fn algo_orders_parse() {
    let a = algo_order(&fixture("algoOrder_stop_market.json")).unwrap();
    assert_eq!((a.algo_id, a.status, a.trigger_price), (123_456_789, StopStatus::Finished, dec!(45000)));
    let list = algo_orders(&fixture("algoOrder_open_list.json")).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!((list[0].status, list[0].client_id.as_str()), (StopStatus::New, "test-algo-order-1"));
}

#[test]
fn positions_and_balances_parse() {
    let p = positions(&fixture("positionRisk_v2.json")).unwrap();
    assert_eq!((p[0].direction, p[0].qty, p[0].leverage), (Direction::Long, dec!(0.001), 20));
    assert_eq!(p[0].liquidation_price, Some(dec!(45000)));
    let p3 = positions(&fixture("positionRisk_v3.json")).unwrap();
    assert_eq!((p3[0].qty, p3[0].leverage), (dec!(0.009), 0));
    let hedge = positions(&fixture("positionRisk_v2_hedge.json")).unwrap();
    assert!(!hedge.is_empty());
    let b = account_balance(&fixture("account_v3.json")).unwrap();
    assert!(b.wallet_balance >= Decimal::ZERO);
    let b2 = account_balance(&fixture("account_v2.json")).unwrap();
    assert!(b2.wallet_balance > Decimal::ZERO);
}

#[test]
fn fast_decimal_agrees_with_the_general_parser() {
    for text in ["0", "1", "-1", "68005.80802899", "0.00000001", "-0.00004435", "1000000", "123.0", "007.50"] {
        assert_eq!(plain_decimal_fast(text), Decimal::from_str(text).ok(), "{text}");
        assert_eq!(decimal("x", text).ok(), Decimal::from_str(text).ok(), "{text}");
    }
    for text in ["", "-", ".", "1.", "1e-5", "1.2.3", "+1", " 1", "12345678901234567890123456789"] {
        assert_eq!(plain_decimal_fast(text), None, "{text}");
    }
    assert_eq!(decimal("x", " 1.5 ").ok(), Some(dec!(1.5)));
    assert!(decimal("x", "abc").is_err());
}

proptest! {
    #[test]
    fn fast_decimal_matches_from_str(text in "-?[0-9]{1,20}(\\.[0-9]{1,10})?") {
        // The fast path may decline (then the general parser decides), never disagree.
        if let Some(fast) = plain_decimal_fast(&text) {
            prop_assert_eq!(Some(fast), Decimal::from_str(&text).ok());
        }
        prop_assert_eq!(decimal("x", &text).ok(), Decimal::from_str(&text).ok());
    }
}

#[test]
fn small_objects_and_errors() {
    assert_eq!(listen_key(&fixture("listenKey.json")).unwrap().len(), 64);
    assert_eq!(api_error(&fixture("error_1021.json")).map(|e| e.0), Some(-1021));
    assert_eq!(api_error(&fixture("error_2019.json")).map(|e| e.0), Some(-2019));
    assert_eq!(api_error(b"<html>502 Bad Gateway</html>"), None);
    assert_eq!(server_time(br#"{"serverTime":1499827319559}"#).unwrap(), 1_499_827_319_559);
    assert!(dual_side(br#"{"dualSidePosition":true}"#).unwrap());
    assert!(server_time(br#"{"serverTime":14998"#).is_err());
}

#[test]
fn trading_status_lists_current_locks() {
    let body = br#"{"indicators":{"BTCUSDT":[{"isLocked":true,"plannedRecoverTime":2000,"indicator":"UFR","value":0.05,"triggerValue":0.995}],
        "ETHUSDT":[{"isLocked":false,"plannedRecoverTime":0,"indicator":"IFER","value":0.99,"triggerValue":0.99}],
        "XRPUSDT":[{"isLocked":true,"plannedRecoverTime":500,"indicator":"GCR","value":0.99,"triggerValue":0.99}],
        "ACCOUNT":[{"isLocked":false,"plannedRecoverTime":0,"indicator":"TMV","value":10,"triggerValue":1}]},"updateTime":1545741270000}"#;
    let locked = locked_symbols(body, 1000).unwrap();
    assert_eq!(locked.into_iter().collect::<Vec<_>>(), vec!["BTCUSDT".to_string()]);
    assert!(locked_symbols(br#"{"indicators":{},"updateTime":0}"#, 0).unwrap().is_empty());
}

fn all_decoders(bytes: &[u8]) {
    let _ = api_error(bytes);
    let _ = server_time(bytes);
    let _ = listen_key(bytes);
    let _ = dual_side(bytes);
    let _ = exchange_info(bytes);
    let _ = leverage_brackets(bytes);
    let _ = klines(bytes);
    let _ = tickers(bytes);
    let _ = premium_index(bytes);
    let _ = order(bytes);
    let _ = orders(bytes);
    let _ = algo_order(bytes);
    let _ = algo_orders(bytes);
    let _ = positions(bytes);
    let _ = account_balance(bytes);
    let _ = locked_symbols(bytes, 0);
}

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn rest_decoders_never_panic_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        all_decoders(&bytes);
    }

    #[test]
    fn rest_decoders_never_panic_on_mutated_fixtures(idx in 0usize..10, at in 0usize..4000, byte in any::<u8>(), cut in any::<bool>()) {
        let files = ["klines_BTCUSDT_1m.json", "order_limit_new.json", "algoOrder_stop_market.json",
            "algoOrder_open_list.json", "positionRisk_v2.json", "account_v3.json", "ticker_24hr_BTCUSDT.json",
            "premiumIndex_BTCUSDT.json", "listenKey.json", "error_1021.json"];
        let mut bytes = fixture(files[idx]);
        let at = at % bytes.len().max(1);
        if cut { bytes.truncate(at); } else if let Some(b) = bytes.get_mut(at) { *b = byte; }
        all_decoders(&bytes);
    }

    #[test]
    fn rest_decoders_return_typed_errors_on_wrong_json(v in prop_oneof![
        Just(serde_json::json!(null)), Just(serde_json::json!([])), Just(serde_json::json!({})),
        any::<i64>().prop_map(|n| serde_json::json!(n)), "[a-z]{0,8}".prop_map(|s| serde_json::json!(s)),
        Just(serde_json::json!([[1, "1"]])), Just(serde_json::json!({"symbols": [{"symbol": 1}]})),
    ]) {
        let text = v.to_string();
        prop_assert!(matches!(order(text.as_bytes()), Err(ExchangeError::Decode { .. })), "expected a decode error");
        prop_assert!(matches!(exchange_info(text.as_bytes()), Err(ExchangeError::Decode { .. })), "expected a decode error");
        prop_assert!(matches!(account_balance(text.as_bytes()), Err(ExchangeError::Decode { .. })), "expected a decode error");
        all_decoders(text.as_bytes());
    }
}
