//! Issue 15 against the fake Binance server: the exact query strings the client puts on the
//! wire (golden), trailing stops (`activatePrice`/`callbackRate`, two `NEW` events with `ia`),
//! and the fake's refusal of the legacy `activationPrice` and of `triggerPrice` on a trailing
//! stop.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod exchange_helpers;
mod support;

use std::time::Duration;

use exchange_helpers::{client, wait_event};
use kinetic::core::models::Side;
use kinetic::exchange::{
    Exchange, ExchangeError, ExchangeEvent, MarginType, MarketOrderRequest, StopRequest, StopStatus,
    TrailingStopRequest,
};
use reqwest::Method;
use support::fake_binance::{FakeBinance, d};
use support::raw_client::Rest;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The query as sent, without the REST layer's `recvWindow`, `timestamp` and `signature`
/// (checked separately: present, in that order, last).
fn unsigned(query: &str) -> String {
    let at = query.find("&recvWindow=").or_else(|| query.find("recvWindow=")).expect("recvWindow");
    let (params, tail) = query.split_at(at);
    let tail = tail.trim_start_matches('&');
    let names: Vec<&str> = tail.split('&').map(|kv| kv.split('=').next().unwrap_or("")).collect();
    assert_eq!(names, ["recvWindow", "timestamp", "signature"], "signed suffix of {query}");
    params.to_string()
}

fn wire(fake: &FakeBinance) -> Vec<String> {
    fake.requests()
        .into_iter()
        .filter(|r| {
            [
                "/fapi/v1/order",
                "/fapi/v1/algoOrder",
                "/fapi/v1/allOpenOrders",
                "/fapi/v1/algoOpenOrders",
                "/fapi/v1/leverage",
                "/fapi/v1/marginType",
            ]
            .contains(&r.path.as_str())
        })
        .map(|r| format!("{} {}?{}", r.method, r.path, unsigned(&r.query)))
        .collect()
}

/// Golden test on the wire: every order and algo-order request the client sends, exactly as
/// the fake server received it (names, order, number formatting).
#[tokio::test]
async fn order_requests_on_the_wire_match_their_golden_query_strings() {
    let fake = FakeBinance::start_default().await;
    let c = client(&fake);
    c.prepare_symbol("BTCUSDT", MarginType::Isolated, 5).await.unwrap();
    let entry = MarketOrderRequest {
        symbol: "BTCUSDT".into(),
        side: Side::Buy,
        qty: d("0.0200"),
        reduce_only: false,
        client_order_id: "ke-e-1-1".into(),
    };
    c.place_market(&entry).await.unwrap();
    c.query_order("BTCUSDT", "ke-e-1-1").await.unwrap();
    let stop = StopRequest {
        symbol: "BTCUSDT".into(),
        side: Side::Sell,
        qty: d("0.020"),
        trigger_price: d("66000.50"),
        client_id: "ke-s-1-2".into(),
    };
    let resting = c.place_stop(&stop).await.unwrap();
    let trailing = TrailingStopRequest {
        symbol: "BTCUSDT".into(),
        side: Side::Sell,
        qty: d("0.010"),
        callback_rate_pct: d("1.5"),
        activate_price: Some(d("69000.0")),
        client_id: "ke-t-1-3".into(),
    };
    c.place_trailing_stop(&trailing).await.unwrap();
    c.cancel_stop("BTCUSDT", resting.algo_id).await.unwrap();
    let close = MarketOrderRequest {
        side: Side::Sell,
        qty: d("0.02"),
        reduce_only: true,
        client_order_id: "ke-x-1-4".into(),
        ..entry
    };
    c.place_market(&close).await.unwrap();
    c.cancel_all("BTCUSDT").await.unwrap();

    let algo = resting.algo_id;
    let want = vec![
        "POST /fapi/v1/marginType?symbol=BTCUSDT&marginType=ISOLATED".to_string(),
        "POST /fapi/v1/leverage?symbol=BTCUSDT&leverage=5".to_string(),
        "POST /fapi/v1/order?symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.02&newClientOrderId=ke-e-1-1&newOrderRespType=RESULT".to_string(),
        "GET /fapi/v1/order?symbol=BTCUSDT&origClientOrderId=ke-e-1-1".to_string(),
        "POST /fapi/v1/algoOrder?algoType=CONDITIONAL&symbol=BTCUSDT&side=SELL&type=STOP_MARKET&quantity=0.02&triggerPrice=66000.5&workingType=MARK_PRICE&reduceOnly=true&clientAlgoId=ke-s-1-2".to_string(),
        "POST /fapi/v1/algoOrder?algoType=CONDITIONAL&symbol=BTCUSDT&side=SELL&type=TRAILING_STOP_MARKET&quantity=0.01&activatePrice=69000&callbackRate=1.5&workingType=MARK_PRICE&reduceOnly=true&clientAlgoId=ke-t-1-3".to_string(),
        format!("DELETE /fapi/v1/algoOrder?algoId={algo}"),
        "POST /fapi/v1/order?symbol=BTCUSDT&side=SELL&type=MARKET&quantity=0.02&newClientOrderId=ke-x-1-4&newOrderRespType=RESULT&reduceOnly=true".to_string(),
        "DELETE /fapi/v1/allOpenOrders?symbol=BTCUSDT".to_string(),
        "DELETE /fapi/v1/algoOpenOrders?symbol=BTCUSDT".to_string(),
    ];
    assert_eq!(wire(&fake), want);
    // Every request accepted (-4046: the margin type was already ISOLATED, which is success).
    assert!(
        fake.requests().iter().all(|r| r.error_code.is_none() || r.error_code == Some(-4046)),
        "{:?}",
        fake.requests()
    );
}

/// A trailing stop reports `NEW` twice (`ia:false`, then `ia:true` when activated); the client
/// forwards one stop update, so nothing downstream re-arms or duplicates it.
#[tokio::test]
async fn trailing_stop_second_new_event_is_not_forwarded_twice() {
    let fake = FakeBinance::start_default().await;
    let c = client(&fake);
    let (tx, mut rx) = mpsc::channel(10_000);
    let cancel = CancellationToken::new();
    c.start_streams(tx.into(), cancel.clone()).await.unwrap();
    let mut seen = Vec::new();
    wait_event(&mut rx, &mut seen, Duration::from_secs(5), |e| {
        matches!(e, ExchangeEvent::Stream(kinetic::exchange::StreamEvent::Connected { stream, .. }) if stream == "user")
    })
    .await
    .expect("user stream connected");
    let entry = MarketOrderRequest {
        symbol: "BTCUSDT".into(),
        side: Side::Buy,
        qty: d("0.01"),
        reduce_only: false,
        client_order_id: "ke-tr-1".into(),
    };
    c.place_market(&entry).await.unwrap();
    // Activation above the price (68000): NEW ia:false now, NEW ia:true when the mark gets there.
    let req = TrailingStopRequest {
        symbol: "BTCUSDT".into(),
        side: Side::Sell,
        qty: d("0.01"),
        callback_rate_pct: d("2"),
        activate_price: Some(d("69000")),
        client_id: "ke-tr-s".into(),
    };
    let placed = c.place_trailing_stop(&req).await.unwrap();
    assert_eq!(placed.status, StopStatus::New);
    fake.set_mark_price("BTCUSDT", d("69500"));
    fake.set_mark_price("BTCUSDT", d("70000"));
    // A pull-back of 2 % from 70000 fires it.
    fake.set_mark_price("BTCUSDT", d("68500"));
    let finished = wait_event(
        &mut rx,
        &mut seen,
        Duration::from_secs(5),
        |e| matches!(e, ExchangeEvent::StopUpdate(s) if s.status == StopStatus::Finished),
    )
    .await;
    assert!(finished.is_some(), "trailing stop fired and finished");
    let news: Vec<_> = seen
        .iter()
        .filter(
            |e| matches!(e, ExchangeEvent::StopUpdate(s) if s.algo_id == placed.algo_id && s.status == StopStatus::New),
        )
        .collect();
    assert_eq!(news.len(), 1, "one NEW forwarded for two ALGO_UPDATE NEW frames: {seen:?}");
    assert!(fake.position("BTCUSDT").is_none(), "the trailing stop closed the position");
    cancel.cancel();
}

/// The fake enforces the 2026 parameter rules the client must follow.
#[tokio::test]
async fn fake_refuses_legacy_activation_price_and_trigger_price_on_trailing_stops() {
    let fake = FakeBinance::start_default().await;
    let rest = Rest::new(&fake);
    let base = [
        ("algoType", "CONDITIONAL"),
        ("symbol", "BTCUSDT"),
        ("side", "SELL"),
        ("type", "TRAILING_STOP_MARKET"),
        ("quantity", "0.01"),
        ("reduceOnly", "true"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut p: Vec<(&str, &str)> = base.to_vec();
        p.extend_from_slice(extra);
        p
    };
    let legacy = rest
        .signed(Method::POST, "/fapi/v1/algoOrder", &with(&[("activationPrice", "69000"), ("callbackRate", "1")]))
        .await;
    assert_eq!(legacy.code(), -1104, "{:?}", legacy.body);
    let trigger = rest
        .signed(Method::POST, "/fapi/v1/algoOrder", &with(&[("triggerPrice", "69000"), ("callbackRate", "1")]))
        .await;
    assert_eq!(trigger.code(), -1106, "{:?}", trigger.body);
    let too_wide = rest.signed(Method::POST, "/fapi/v1/algoOrder", &with(&[("callbackRate", "20.5")])).await;
    assert_eq!(too_wide.code(), -1130, "{:?}", too_wide.body);
    let widest = rest.signed(Method::POST, "/fapi/v1/algoOrder", &with(&[("callbackRate", "20")])).await;
    assert_eq!(widest.status, 200, "20 % is allowed since 2026-10-23: {:?}", widest.body);
    // The client refuses out-of-range rates before sending anything.
    let c = client(&fake);
    let before = c.requests_sent();
    let bad = TrailingStopRequest {
        symbol: "BTCUSDT".into(),
        side: Side::Sell,
        qty: d("0.01"),
        callback_rate_pct: d("25"),
        activate_price: None,
        client_id: "ke-bad".into(),
    };
    assert!(matches!(c.place_trailing_stop(&bad).await, Err(ExchangeError::Refused(_))));
    assert_eq!(c.requests_sent(), before);
}

/// TradFi perpetuals (`TRADIFI_PERPETUAL`) and contract types or statuses nobody has seen yet
/// are accepted by the decoders and never offered for trading: only USDT `PERPETUAL` contracts
/// that are `TRADING` are.
#[tokio::test]
async fn only_usdt_perpetuals_are_tradable_and_unknown_contract_types_are_tolerated() {
    use support::fake_binance::SymbolSpec;
    let fake = FakeBinance::start(support::fake_binance::FakeConfig::default().with_edge_case_symbols()).await;
    let mut tradfi = SymbolSpec::new("AAPLUSDT", d("230.00"), d("0.01"), d("0.01"), d("5"));
    tradfi.contract_type = "TRADIFI_PERPETUAL".into();
    fake.add_symbol(tradfi);
    let mut future_kind = SymbolSpec::new("XAUUSDT", d("2400.0"), d("0.1"), d("0.001"), d("5"));
    future_kind.contract_type = "SOMETHING_NEW_2027".into();
    future_kind.status = "HALF_OPEN".into();
    fake.add_symbol(future_kind);
    let c = client(&fake);
    let symbols: Vec<String> = c.symbols().await.unwrap().into_iter().map(|s| s.filters.symbol).collect();
    assert!(symbols.contains(&"BTCUSDT".to_string()), "{symbols:?}");
    for never in ["AAPLUSDT", "XAUUSDT", "BTCUSDT_250926", "EOSUSDT"] {
        assert!(!symbols.iter().any(|s| s == never), "{never} offered for trading: {symbols:?}");
    }
}

/// Enum values this build does not know decode as "other" instead of failing the payload; an
/// unknown algo status is not resting, so it never counts as protection.
#[test]
fn unknown_statuses_decode_as_other() {
    use kinetic::core::models::OrderStatus;
    use kinetic::exchange::binance::events::{UserMessage, decode_user};
    use kinetic::exchange::binance::wire;
    assert_eq!(wire::order_status("NEW_SOMETHING").unwrap(), OrderStatus::Other);
    assert_eq!(wire::stop_status("PAUSED_BY_SCHEDULE").unwrap(), StopStatus::Other);
    assert!(!StopStatus::Other.is_resting());
    let frame = r#"{"e":"ALGO_UPDATE","T":1,"E":2,"o":{"caid":"ke-s-1","aid":7,"at":"CONDITIONAL","o":"STOP_MARKET",
        "s":"AAPLUSDT","S":"SELL","q":"1","X":"PAUSED_BY_SCHEDULE","tp":"220","R":true,"ia":false}}"#;
    match decode_user(frame.as_bytes()).unwrap() {
        UserMessage::Algo { stop, .. } => assert_eq!(stop.status, StopStatus::Other),
        other => panic!("{other:?}"),
    }
}

/// Funding intervals per symbol from `GET /fapi/v1/fundingInfo`: `download-data` keeps the
/// answer verbatim for the backtest, and paper trading charges every funding of the symbol's
/// own interval (a 4 h symbol pays three times across a 12 h gap in the mark stream, an 8 h
/// symbol once).
#[tokio::test]
async fn funding_intervals_come_from_funding_info_in_paper_trading_and_downloads() {
    use kinetic::data::funding::{FUNDING_INFO_FILE, FundingIntervals};
    use kinetic::exchange::MarkPriceUpdate;
    use kinetic::exchange::paper::PaperExchange;
    use std::sync::Arc;
    let fake = FakeBinance::start_default().await;
    fake.set_funding_info("SOLUSDT", 4, d("0.025"), d("-0.025"));
    let market = exchange_helpers::public_client(&fake);
    let intervals = market.funding_intervals().await.unwrap();
    assert_eq!((intervals.interval_hours("SOLUSDT"), intervals.interval_hours("BTCUSDT")), (4, 8));

    // download-data stores every field of the answer.
    let dir = tempfile::tempdir().unwrap();
    kinetic::commands::download::download(&market, dir.path(), &["SOLUSDT".to_string()], &[], 1).await.unwrap();
    let raw: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(FUNDING_INFO_FILE)).unwrap()).unwrap();
    assert_eq!(raw[0]["symbol"], "SOLUSDT");
    for field in ["adjustedFundingRateCap", "adjustedFundingRateFloor", "fundingIntervalHours", "disclaimer"] {
        assert!(raw[0].get(field).is_some(), "{field} kept: {raw}");
    }
    assert_eq!(FundingIntervals::load(dir.path()).unwrap().interval_hours("SOLUSDT"), 4);

    // Paper trading: 1 SOL long at 150, rate 0.01 %, the stream jumps 12 h.
    let settings = kinetic::config::load(&kinetic::config::ConfigSources::default()).unwrap();
    let paper = PaperExchange::new(Arc::new(market), &settings.paper);
    paper.set_funding_intervals(intervals);
    let t0 = 1_800_000_000_000_i64; // a 4 h boundary
    let mark = |symbol: &str, next: i64| MarkPriceUpdate {
        symbol: symbol.into(),
        mark_price: d("150"),
        index_price: None,
        funding_rate: Some(d("0.0001")),
        next_funding_time: Some(next),
        event_time: next - 1000,
    };
    for symbol in ["SOLUSDT", "BTCUSDT"] {
        paper.apply_mark_update(mark(symbol, t0)).await;
        let req = MarketOrderRequest {
            symbol: symbol.into(),
            side: Side::Buy,
            qty: d("1"),
            reduce_only: false,
            client_order_id: format!("ke-f-{symbol}"),
        };
        paper.place_market(&req).await.unwrap();
    }
    paper.apply_mark_update(mark("SOLUSDT", t0 + 12 * 3_600_000)).await;
    assert_eq!(paper.costs().1, d("0.045"), "three 4 h fundings of 150 × 0.0001");
    paper.apply_mark_update(mark("BTCUSDT", t0 + 16 * 3_600_000)).await;
    assert_eq!(paper.costs().1, d("0.075"), "plus two 8 h fundings");
}
