//! Decoder tests of `src/exchange/binance/events.rs`: recorded payloads and property tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use kinetic::core::models::{Direction, OrderStatus, Side, Timeframe};
use kinetic::exchange::binance::events::*;
use kinetic::exchange::{ExchangeError, StopStatus};
use proptest::prelude::*;
use rust_decimal_macros::dec;

fn ws(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/binance/ws/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn wrap(stream: &str, payload: &[u8]) -> Vec<u8> {
    format!(r#"{{"stream":"{stream}","data":{}}}"#, String::from_utf8_lossy(payload)).into_bytes()
}

#[test]
fn kline_frames_decode_raw_and_combined() {
    for (file, closed) in [("kline_closed.json", true), ("kline_open.json", false)] {
        let raw = decode_market(&ws(file)).unwrap();
        let combined = decode_market(&wrap("btcusdt@kline_1m", &ws(file))).unwrap();
        assert_eq!(raw, combined);
        match raw {
            MarketMessage::Kline { symbol, timeframe, candle, closed: c } => {
                assert_eq!((symbol.as_str(), timeframe, c), ("BTCUSDT", Timeframe::M1, closed));
                assert_eq!(candle.open_time, 1_638_747_660_000);
                assert_eq!(candle.high, 0.0025);
                assert_eq!(candle.trades, 100);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn mark_price_frames_decode() {
    let m = decode_market(&ws("combined_markPrice_1s_live.json")).unwrap();
    let MarketMessage::MarkPrices(v) = m else { panic!("{m:?}") };
    assert_eq!(v[0].mark_price, dec!(68005.80802899));
    assert_eq!(v[0].funding_rate, Some(dec!(-0.00004435)));
    assert_eq!(v[0].next_funding_time, Some(1_771_286_400_000));
    let single = String::from_utf8(ws("markPriceUpdate.json")).unwrap();
    let arr = format!("[{single},{}]", single.replace("\"st\": 1", "\"st\": 2"));
    let m = decode_market(&wrap("!markPrice@arr@1s", arr.as_bytes())).unwrap();
    let MarketMessage::MarkPrices(v) = m else { panic!("{m:?}") };
    assert_eq!(v.len(), 1, "COIN-M entries (st=2) are filtered");
    assert_eq!(decode_market(arr.as_bytes()).unwrap(), MarketMessage::MarkPrices(v));
}

#[test]
fn non_positive_mark_prices_are_malformed() {
    for p in ["0", "-68000", "0.00000000"] {
        let frame =
            format!(r#"[{{"e":"markPriceUpdate","E":1,"s":"BTCUSDT","p":"{p}","i":"1","P":"1","r":"0.0001","T":2}}]"#);
        let decoded = decode_market(&wrap("!markPrice@arr@1s", frame.as_bytes()));
        assert!(matches!(decoded, Err(ExchangeError::Decode { .. })), "{p}: {decoded:?}");
    }
}

#[test]
fn ticker_frames_decode() {
    let m = decode_market(&ws("24hrTicker.json")).unwrap();
    let MarketMessage::Tickers(v) = m else { panic!("{m:?}") };
    assert_eq!(v[0].symbol, "BTCUSDT");
    assert_eq!(v[0].last_price, 16584.6);
    let mini =
        br#"[{"e":"24hrMiniTicker","E":1,"s":"ETHUSDT","c":"110","o":"100","h":"111","l":"99","v":"5","q":"500"}]"#;
    let m = decode_market(&wrap("!miniTicker@arr", mini)).unwrap();
    let MarketMessage::Tickers(v) = m else { panic!("{m:?}") };
    assert!((v[0].price_change_pct - 10.0).abs() < 1e-9);
    assert!(matches!(decode_market(&ws("24hrTicker_placeholder.json")), Ok(MarketMessage::Tickers(_))));
}

#[test]
fn control_and_unused_frames() {
    assert_eq!(decode_market(br#"{"result":null,"id":7}"#).unwrap(), MarketMessage::Ack { id: 7 });
    assert!(matches!(
        decode_market(br#"{"code":2,"msg":"Invalid request"}"#),
        Ok(MarketMessage::ControlError { code: 2, .. })
    ));
    for f in ["combined_aggTrade_live.json", "combined_bookTicker_live.json", "aggTrade.json", "forceOrder.json"] {
        assert_eq!(decode_market(&ws(f)).unwrap(), MarketMessage::Ignored, "{f}");
    }
    assert!(decode_market(b"{\"stream\":\"btcusdt@kline_1m\",\"data\":{\"e\":\"kline\"").is_err());
    assert!(decode_market(b"<html>").is_err());
    assert!(decode_market(br#"{"stream":"btcusdt@kline_7m","data":{"s":"X","k":{"t":1,"T":2,"i":"7m","o":"1","c":"1","h":"1","l":"1","v":"1","x":true}}}"#).is_err());
}

#[test]
fn order_updates_decode_with_fills() {
    let m = decode_user(&ws("ORDER_TRADE_UPDATE_trade_filled.json")).unwrap();
    let UserMessage::Order { report, fill } = m else { panic!("{m:?}") };
    assert_eq!((report.status, report.side, report.order_id), (OrderStatus::PartiallyFilled, Side::Buy, 8_886_774));
    let fill = fill.unwrap();
    assert_eq!(
        (fill.qty, fill.price, fill.fee, fill.realized_pnl),
        (dec!(0.001), dec!(7100.5), dec!(0.01), dec!(12.34))
    );
    assert_eq!(fill.trade_id, 12_345_678);
    let m = decode_user(&ws("ORDER_TRADE_UPDATE_new.json")).unwrap();
    assert!(matches!(m, UserMessage::Order { fill: None, .. }));
    for f in [
        "ORDER_TRADE_UPDATE_adl.json",
        "ORDER_TRADE_UPDATE_calculated_liquidation.json",
        "ORDER_TRADE_UPDATE_calculated_pending.json",
        "ORDER_TRADE_UPDATE_insurance.json",
        "ORDER_TRADE_UPDATE_liquidation_nulls.json",
        "ORDER_TRADE_UPDATE_new_reduce_only.json",
        "ORDER_TRADE_UPDATE_new_stop_limit_price_match.json",
        "ORDER_TRADE_UPDATE_settlement.json",
        "ORDER_TRADE_UPDATE_trade_partial.json",
    ] {
        assert!(matches!(decode_user(&ws(f)), Ok(UserMessage::Order { .. })), "{f}: {:?}", decode_user(&ws(f)));
    }
    let liq = decode_user(&ws("ORDER_TRADE_UPDATE_liquidation_nulls.json")).unwrap();
    assert!(matches!(liq, UserMessage::Order { fill: Some(_), .. }));
}

#[test]
fn account_updates_decode() {
    let m = decode_user(&ws("ACCOUNT_UPDATE.json")).unwrap();
    let UserMessage::Account { balance, positions, time, transfer } = m else { panic!("{m:?}") };
    assert_eq!(transfer, None, "an ORDER update is not a transfer");
    assert_eq!(time, 1_564_745_798_939);
    assert_eq!(balance.unwrap().wallet_balance, dec!(122624.12345678));
    assert_eq!(positions.len(), 3);
    assert_eq!((positions[2].direction, positions[2].qty), (Direction::Short, dec!(10)));
    assert_eq!(positions[1].mark_price, dec!(6563.6) + dec!(2850.21200) / dec!(20));
    // A deposit: the same payload with reason DEPOSIT carries its amount in `bc`.
    let deposit = String::from_utf8(ws("ACCOUNT_UPDATE.json"))
        .unwrap()
        .replace("\"m\": \"ORDER\"", "\"m\": \"DEPOSIT\"")
        .replace("\"m\":\"ORDER\"", "\"m\":\"DEPOSIT\"");
    assert!(deposit.contains("DEPOSIT"), "fixture shape changed");
    let m = decode_user(deposit.as_bytes()).unwrap();
    assert!(matches!(m, UserMessage::Account { transfer: Some(t), .. } if t == dec!(50.12345678)), "{m:?}");
    let bnfcr = decode_user(&ws("ACCOUNT_UPDATE_bnfcr.json")).unwrap();
    assert!(matches!(bnfcr, UserMessage::Account { balance: None, .. }));
}

#[test]
fn algo_updates_decode_with_keys() {
    let new = decode_user(&ws("ALGO_UPDATE_new.json")).unwrap();
    let UserMessage::Algo { stop, key } = new else { panic!("{new:?}") };
    assert_eq!((stop.algo_id, stop.status, stop.trigger_price), (2_148_719, StopStatus::New, dec!(750)));
    assert_eq!(key.actual_order_id, "");
    let trig = decode_user(&ws("ALGO_UPDATE_triggered.json")).unwrap();
    let fin = decode_user(&ws("ALGO_UPDATE_finished.json")).unwrap();
    let (UserMessage::Algo { stop: t, key: kt }, UserMessage::Algo { stop: f, key: kf }) = (trig, fin) else {
        panic!()
    };
    assert_eq!((t.status, f.status), (StopStatus::Triggered, StopStatus::Finished));
    assert_ne!(kt, kf);
    assert_eq!(kt.actual_order_id, "88937381063");
    assert!(matches!(decode_user(&ws("ALGO_UPDATE_canceled.json")), Ok(UserMessage::Algo { .. })));
}

#[test]
fn other_user_events() {
    let m = decode_user(&ws("MARGIN_CALL.json")).unwrap();
    assert_eq!(m, UserMessage::MarginCall { symbols: vec!["ETHUSDT".into()], time: 1_587_727_187_525 });
    assert_eq!(decode_user(&ws("listenKeyExpired.json")).unwrap(), UserMessage::ListenKeyExpired);
    assert_eq!(decode_user(&ws("listenKeyExpired_with_key.json")).unwrap(), UserMessage::ListenKeyExpired);
    assert_eq!(decode_user(&ws("TRADE_LITE.json")).unwrap(), UserMessage::Ignored("TRADE_LITE".into()));
    assert!(decode_user(b"{}").is_err());
    assert!(decode_user(br#"{"e":"ORDER_TRADE_UPDATE","E":1,"o":{"s":"X"}}"#).is_err());
}

/// Arbitrary JSON values (nested objects with the field names the decoders look for).
fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        "[0-9.eE+-]{0,12}".prop_map(serde_json::Value::String),
        prop::sample::select(vec![
            "kline",
            "markPriceUpdate",
            "24hrMiniTicker",
            "ORDER_TRADE_UPDATE",
            "ACCOUNT_UPDATE",
            "ALGO_UPDATE",
            "MARGIN_CALL",
            "listenKeyExpired",
            "BUY",
            "SELL",
            "NEW",
            "TRADE",
            "FILLED",
            "15m",
            "1h",
            "USDT",
            "!markPrice@arr@1s",
            "btcusdt@kline_15m",
            "!miniTicker@arr",
        ])
        .prop_map(|s| serde_json::Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        let keys = prop::sample::select(vec![
            "e", "E", "T", "s", "k", "t", "i", "o", "c", "h", "l", "v", "n", "x", "q", "V", "Q", "p", "r", "st",
            "stream", "data", "id", "result", "code", "msg", "a", "B", "P", "wb", "cw", "pa", "ep", "up", "ps", "S",
            "X", "z", "L", "R", "rp", "aid", "caid", "tp", "ai",
        ]);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(keys.prop_map(String::from), inner, 0..10)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decoders_never_panic_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_market(&bytes);
        let _ = decode_user(&bytes);
    }

    #[test]
    fn decoders_never_panic_on_json(v in arb_json(), stream in prop::sample::select(vec![
        "!markPrice@arr@1s", "!miniTicker@arr", "btcusdt@kline_15m", "btcusdt@markPrice", "x@miniTicker", "other",
    ])) {
        let text = v.to_string();
        let _ = decode_market(text.as_bytes());
        let _ = decode_user(text.as_bytes());
        let wrapped = format!(r#"{{"stream":"{stream}","data":{text}}}"#);
        let _ = decode_market(wrapped.as_bytes());
        let _ = decode_user(wrapped.as_bytes());
    }

    #[test]
    fn mutated_fixtures_never_panic(idx in 0usize..8, cut in 0usize..1000, byte in any::<u8>()) {
        let files = ["kline_closed.json", "combined_markPrice_1s_live.json", "24hrTicker.json",
            "ORDER_TRADE_UPDATE_trade_filled.json", "ACCOUNT_UPDATE.json", "ALGO_UPDATE_new.json",
            "MARGIN_CALL.json", "listenKeyExpired_with_key.json"];
        let mut bytes = ws(files[idx]);
        let at = cut % bytes.len().max(1);
        if let Some(b) = bytes.get_mut(at) { *b = byte; }
        let _ = decode_market(&bytes);
        let _ = decode_user(&bytes);
        let mut bytes = ws(files[idx]).trim_ascii_end().to_vec();
        bytes.truncate(at % bytes.len().max(1));
        // A truncated frame is never valid JSON: always a typed error.
        prop_assert!(matches!(decode_market(&bytes), Err(ExchangeError::Decode { .. })), "expected a decode error");
        prop_assert!(matches!(decode_user(&bytes), Err(ExchangeError::Decode { .. })), "expected a decode error");
    }
}
