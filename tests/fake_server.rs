//! Self-tests of the fake Binance server, driven with plain reqwest and tokio-tungstenite (not
//! the project's client): signatures, Binance's rejections, the matching engine, user and market
//! streams, and the fault switches.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use kinetic::core::models::Candle;
use reqwest::Method;
use serde_json::{Value, json};
use support::fake_binance::{DOC_API_KEY, DOC_API_SECRET, FakeBinance, FakeConfig, FaultAction, FaultScope, d};
use support::raw_client::{Rest, assert_shape, connect, fixture, next_json, now_ms, private_socket, wait_for};
use tokio_tungstenite::tungstenite::Message;

fn candle(open_time: i64, close: f64) -> Candle {
    Candle {
        open_time,
        close_time: open_time + 15 * 60_000 - 1,
        open: close - 1.0,
        high: close + 2.0,
        low: close - 2.0,
        close,
        volume: 10.0,
        quote_volume: 10.0 * close,
        trades: 5,
        taker_buy_volume: 4.0,
        taker_buy_quote_volume: 4.0 * close,
    }
}

fn quiet() -> FakeConfig {
    FakeConfig::default().without_market_tick()
}

#[tokio::test]
async fn documented_signature_example_is_accepted_and_tampering_is_refused() {
    let fake = FakeBinance::start(quiet()).await;
    let rest = Rest::new(&fake);
    let params = "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC&recvWindow=5000&timestamp=1591702613943";
    assert_eq!(fake.sign(params), "3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9");
    assert_eq!(fake.api_secret(), DOC_API_SECRET);
    // Put the server clock at the documented timestamp so the request is inside recvWindow.
    fake.set_clock_skew_ms(1591702613943 + 200 - now_ms());

    // All parameters in the body.
    let body = format!("{params}&signature=3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9");
    let a = rest.raw(Method::POST, "/fapi/v1/order", "", &body, Some(DOC_API_KEY)).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["status"], "NEW");
    assert_eq!(a.body["type"], "LIMIT");

    // Mixed: query + body, signature over their direct concatenation (doc §2, corrected value).
    let q = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC";
    let b = "quantity=1&price=9000&recvWindow=5000&timestamp=1591702613943&signature=30baaf0fab549bbeda7f5ef201898b34122da25fd23c646cac2c529aebe670a4";
    let a = rest.raw(Method::POST, "/fapi/v1/order", q, b, Some(DOC_API_KEY)).await;
    assert_eq!(a.status, 200, "{:?}", a.body);

    // Same parameters re-ordered after signing → -1022.
    let reordered = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=9000&recvWindow=5000&timestamp=1591702613943&signature=3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9";
    let a = rest.raw(Method::POST, "/fapi/v1/order", "", reordered, Some(DOC_API_KEY)).await;
    assert_eq!((a.status, a.code()), (400, -1022));

    // Key problems.
    let a = rest.raw(Method::POST, "/fapi/v1/order", "", &body, None).await;
    assert_eq!((a.status, a.code()), (401, -2014));
    let a = rest.raw(Method::POST, "/fapi/v1/order", "", &body, Some("wrong-key")).await;
    assert_eq!((a.status, a.code()), (401, -2015));

    // Two LIMIT orders rest; the rejected ones left nothing behind.
    assert_eq!(fake.open_orders().len(), 2);
    let log = fake.requests_to("POST", "/fapi/v1/order");
    assert_eq!(log.len(), 5);
    assert!(log.iter().all(|r| r.signed));
    assert_eq!(log[2].error_code, Some(-1022));
}

#[tokio::test]
async fn timestamps_outside_recv_window_get_1021() {
    let fake = FakeBinance::start(quiet()).await;
    let rest = Rest::new(&fake);
    assert_eq!(rest.signed(Method::GET, "/fapi/v3/account", &[]).await.status, 200);
    // Server 10 s ahead: our timestamp is too old.
    fake.set_clock_skew_ms(10_000);
    let a = rest.signed(Method::GET, "/fapi/v3/account", &[]).await;
    assert_eq!((a.status, a.code()), (400, -1021));
    // Server 2 s behind: our timestamp is more than 1000 ms ahead.
    fake.set_clock_skew_ms(-2_000);
    let a = rest.signed(Method::GET, "/fapi/v3/account", &[]).await;
    assert_eq!(a.code(), -1021);
    assert!(a.body["msg"].as_str().unwrap().contains("ahead"));
    // A client that syncs to /fapi/v1/time passes.
    let t = rest.public("/fapi/v1/time", &[]).await.body["serverTime"].as_i64().unwrap();
    assert!((t - now_ms() + 2_000).abs() < 500);
    fake.set_clock_skew_ms(0);
    // The fault switch: exactly the next signed call fails, public calls are untouched.
    fake.invalid_timestamp_next(1);
    assert_eq!(rest.public("/fapi/v1/time", &[]).await.status, 200);
    assert_eq!(rest.signed(Method::GET, "/fapi/v3/account", &[]).await.code(), -1021);
    assert_eq!(rest.signed(Method::GET, "/fapi/v3/account", &[]).await.status, 200);
}

#[tokio::test]
async fn conditional_types_on_order_endpoint_get_4120() {
    let fake = FakeBinance::start(quiet()).await;
    let rest = Rest::new(&fake);
    for t in ["STOP_MARKET", "TAKE_PROFIT_MARKET", "STOP", "TAKE_PROFIT", "TRAILING_STOP_MARKET"] {
        let p = [("symbol", "BTCUSDT"), ("side", "SELL"), ("type", t), ("quantity", "0.01"), ("stopPrice", "60000")];
        let a = rest.signed(Method::POST, "/fapi/v1/order", &p).await;
        assert_eq!((a.status, a.code()), (400, -4120), "{t}: {:?}", a.body);
    }
    assert!(fake.orders().is_empty());
}

#[tokio::test]
async fn precision_notional_and_format_rejections() {
    let fake = FakeBinance::start(quiet()).await;
    let rest = Rest::new(&fake);
    // BTCUSDT: step 0.001, tick 0.10, min notional 100, mark 68000.
    let a = rest.market("BTCUSDT", "BUY", "0.0015", "p1").await;
    assert_eq!(a.code(), -1111, "{:?}", a.body);
    let p = [
        ("symbol", "BTCUSDT"),
        ("side", "BUY"),
        ("type", "LIMIT"),
        ("timeInForce", "GTC"),
        ("quantity", "0.010"),
        ("price", "67000.05"),
    ];
    assert_eq!(rest.signed(Method::POST, "/fapi/v1/order", &p).await.code(), -1111);
    let p = [("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "MARKET"), ("timeInForce", "GTC"), ("quantity", "0.010")];
    assert_eq!(rest.signed(Method::POST, "/fapi/v1/order", &p).await.code(), -1106);
    let a = rest.market("BTCUSDT", "BUY", "1e-3", "p2").await;
    assert_eq!(a.code(), -1100);
    // 0.001 × 68000 = 68 < 100.
    let a = rest.market("BTCUSDT", "BUY", "0.001", "p3").await;
    assert_eq!((a.status, a.code()), (400, -4164), "{:?}", a.body);
    assert!(a.body["msg"].as_str().unwrap().contains("100"));
    // Reduce-only is exempt from MIN_NOTIONAL (but needs a position to reduce).
    let p =
        [("symbol", "BTCUSDT"), ("side", "SELL"), ("type", "MARKET"), ("quantity", "0.001"), ("reduceOnly", "true")];
    assert_eq!(rest.signed(Method::POST, "/fapi/v1/order", &p).await.code(), -2022);
    assert_eq!(rest.market("BTCUSDT", "BUY", "0.002", "p4").await.status, 200);
    let a = rest.signed(Method::POST, "/fapi/v1/order", &p).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(fake.position("BTCUSDT").unwrap().amount, d("0.001"));
    // Unknown symbol, one-way positionSide, leverage cap.
    assert_eq!(rest.market("NOPEUSDT", "BUY", "1", "p5").await.code(), -1121);
    let p =
        [("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "MARKET"), ("quantity", "0.01"), ("positionSide", "LONG")];
    assert_eq!(rest.signed(Method::POST, "/fapi/v1/order", &p).await.code(), -4061);
    let a = rest.signed(Method::POST, "/fapi/v1/leverage", &[("symbol", "SOLUSDT"), ("leverage", "101")]).await;
    assert_eq!(a.code(), -4028);
}

#[tokio::test]
async fn market_fill_updates_position_balance_and_pushes_user_events() {
    let fake = FakeBinance::start(quiet()).await;
    let rest = Rest::new(&fake);
    let mut ws = private_socket(&fake, &rest).await;

    let a = rest.market("BTCUSDT", "BUY", "0.010", "entry-1").await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    // Default ACK answer: accepted, not yet reported as filled.
    assert_eq!(a.body["status"], "NEW");
    assert_eq!(a.body["clientOrderId"], "entry-1");
    assert!(a.headers.contains_key("x-mbx-used-weight-1m"));
    assert_eq!(a.headers["x-mbx-order-count-1m"], "1");

    let mut seen = Vec::new();
    let fill = wait_for(&mut ws, &mut seen, Duration::from_secs(3), |v| {
        v["e"] == "ORDER_TRADE_UPDATE" && v["o"]["x"] == "TRADE"
    })
    .await;
    assert_eq!(fill["o"]["X"], "FILLED");
    assert_eq!(fill["o"]["c"], "entry-1");
    assert_eq!(fill["o"]["L"], "68000.00");
    assert_eq!(fill["o"]["z"], "0.010");
    assert_eq!(fill["o"]["n"], "0.34000000"); // 680 × 0.05 %
    assert_eq!(seen[0]["e"], "ORDER_TRADE_UPDATE");
    assert_eq!(seen[0]["o"]["x"], "NEW");
    let acct = wait_for(&mut ws, &mut seen, Duration::from_secs(3), |v| v["e"] == "ACCOUNT_UPDATE").await;
    assert_eq!(acct["a"]["m"], "ORDER");
    assert_eq!(acct["a"]["P"][0]["pa"], "0.01");
    assert_eq!(acct["a"]["P"][0]["ep"], "68000");
    assert_eq!(acct["a"]["P"][0]["mt"], "isolated");
    assert_eq!(acct["a"]["B"][0]["wb"], "9999.66000000");
    let times: Vec<i64> = seen.iter().map(|v| v["E"].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "E strictly increasing: {times:?}");

    // REST agrees.
    let pr = rest.signed(Method::GET, "/fapi/v3/positionRisk", &[]).await;
    assert_eq!(pr.body.as_array().unwrap().len(), 1);
    assert_eq!(pr.body[0]["positionAmt"], "0.01");
    let q =
        rest.signed(Method::GET, "/fapi/v1/order", &[("symbol", "BTCUSDT"), ("origClientOrderId", "entry-1")]).await;
    assert_eq!(q.body["status"], "FILLED");
    assert_eq!(q.body["executedQty"], "0.010");

    // Price up 1000, close with reduce-only more than the position: never flips.
    fake.set_price("BTCUSDT", d("69000"));
    let p = [
        ("symbol", "BTCUSDT"),
        ("side", "SELL"),
        ("type", "MARKET"),
        ("quantity", "0.020"),
        ("reduceOnly", "true"),
        ("newOrderRespType", "RESULT"),
    ];
    let a = rest.signed(Method::POST, "/fapi/v1/order", &p).await;
    assert_eq!(a.body["executedQty"], "0.010", "{:?}", a.body);
    assert!(fake.position("BTCUSDT").is_none());
    let fills = fake.fills();
    assert_eq!(fills.len(), 2);
    assert_eq!(fills[1].realized_pnl, d("10"));
    // 10000 − 0.34 − 0.345 + 10
    assert_eq!(fake.balance().wallet_balance, d("10009.315"));
}

#[tokio::test]
async fn protective_stop_triggers_on_mark_price() {
    let fake = FakeBinance::start(quiet()).await;
    let rest = Rest::new(&fake);
    let mut ws = private_socket(&fake, &rest).await;
    assert_eq!(rest.market("ETHUSDT", "BUY", "1.000", "long-1").await.status, 200);
    assert_eq!(fake.unprotected_positions(), ["ETHUSDT"]);
    let stop = [
        ("algoType", "CONDITIONAL"),
        ("symbol", "ETHUSDT"),
        ("side", "SELL"),
        ("type", "STOP_MARKET"),
        ("quantity", "1.000"),
        ("triggerPrice", "3400.00"),
        ("workingType", "MARK_PRICE"),
        ("reduceOnly", "true"),
        ("clientAlgoId", "stop-1"),
    ];
    let a = rest.signed(Method::POST, "/fapi/v1/algoOrder", &stop).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["algoStatus"], "NEW");
    let algo_id = a.body["algoId"].as_i64().unwrap();
    assert!(fake.unprotected_positions().is_empty());
    // Stops are listed by openAlgoOrders, not openOrders.
    let open = rest.signed(Method::GET, "/fapi/v1/openAlgoOrders", &[("symbol", "ETHUSDT")]).await;
    assert_eq!(open.body.as_array().unwrap().len(), 1);
    let open = rest.signed(Method::GET, "/fapi/v1/openOrders", &[("symbol", "ETHUSDT")]).await;
    assert!(open.body.as_array().unwrap().is_empty());
    // A stop that would fire at once is refused.
    let mut bad = stop;
    bad[5] = ("triggerPrice", "3600.00");
    bad[8] = ("clientAlgoId", "stop-2");
    assert_eq!(rest.signed(Method::POST, "/fapi/v1/algoOrder", &bad).await.code(), -2021);

    fake.set_mark_price("ETHUSDT", d("3450"));
    assert!(fake.position("ETHUSDT").is_some());
    fake.set_mark_price("ETHUSDT", d("3399.5"));
    assert!(fake.position("ETHUSDT").is_none());

    let mut seen = Vec::new();
    let finished =
        wait_for(&mut ws, &mut seen, Duration::from_secs(3), |v| v["e"] == "ALGO_UPDATE" && v["o"]["X"] == "FINISHED")
            .await;
    assert_eq!(finished["o"]["aid"], algo_id);
    assert_eq!(finished["o"]["aq"], "1.000");
    let statuses: Vec<String> =
        seen.iter().filter(|v| v["e"] == "ALGO_UPDATE").map(|v| v["o"]["X"].as_str().unwrap().to_string()).collect();
    assert_eq!(statuses, ["NEW", "TRIGGERING", "TRIGGERED", "FINISHED"]);
    let trade =
        seen.iter().find(|v| v["e"] == "ORDER_TRADE_UPDATE" && v["o"]["ot"] == "STOP_MARKET" && v["o"]["x"] == "TRADE");
    assert_eq!(trade.unwrap()["o"]["L"], "3399.50");
    let q = rest.signed(Method::GET, "/fapi/v1/algoOrder", &[("algoId", &algo_id.to_string())]).await;
    assert_eq!(q.body["algoStatus"], "FINISHED");
    assert_eq!(fake.open_algo_orders().len(), 0);
}

#[tokio::test]
async fn unknown_outcome_5xx_still_executes_exactly_one_order() {
    let fake = FakeBinance::start(quiet()).await;
    let rest = Rest::new(&fake);
    fake.fail_next_orders_after_execute(1);
    let a = rest.market("SOLUSDT", "BUY", "2", "intent-42").await;
    assert_eq!(a.status, 503);
    assert_eq!(a.code(), -1000);
    // The order exists: query by client id, and a blind resend is refused as a duplicate.
    let q =
        rest.signed(Method::GET, "/fapi/v1/order", &[("symbol", "SOLUSDT"), ("origClientOrderId", "intent-42")]).await;
    assert_eq!(q.status, 200);
    assert_eq!(q.body["status"], "FILLED");
    let again = rest.market("SOLUSDT", "BUY", "2", "intent-42").await;
    assert_eq!(again.code(), -4116);
    assert_eq!(fake.orders_with_client_id("intent-42"), 1);
    assert_eq!(fake.position("SOLUSDT").unwrap().amount, d("2"));
    // Unknown ids.
    let q = rest.signed(Method::GET, "/fapi/v1/order", &[("symbol", "SOLUSDT"), ("origClientOrderId", "nope")]).await;
    assert_eq!(q.code(), -2013);
    assert_eq!(fake.injected_faults().values().sum::<u64>(), 1);
}

#[tokio::test]
async fn rate_limits_bans_and_other_faults() {
    let fake = FakeBinance::start(quiet()).await;
    let rest = Rest::new(&fake);
    fake.rate_limit_next(1, 7);
    let a = rest.public("/fapi/v1/time", &[]).await;
    assert_eq!((a.status, a.code()), (429, -1003));
    assert_eq!(a.headers["retry-after"], "7");
    assert_eq!(rest.public("/fapi/v1/time", &[]).await.status, 200);

    fake.ban_for(60);
    let a = rest.public("/fapi/v1/time", &[]).await;
    assert_eq!((a.status, a.code()), (418, -1003));
    fake.clear_faults();

    fake.insufficient_margin_once();
    assert_eq!(rest.market("SOLUSDT", "BUY", "2", "m1").await.code(), -2019);
    assert_eq!(rest.market("SOLUSDT", "BUY", "2", "m2").await.status, 200);
    // A real -2019: 10 000 USDT at 20x cannot open 2 000 SOL (300 000 notional).
    assert_eq!(rest.market("SOLUSDT", "BUY", "2000", "m3").await.code(), -2019);

    fake.fail_next(1, FaultScope::Any, FaultAction::Html { http_status: 502 });
    let a = rest.public("/fapi/v1/time", &[]).await;
    assert_eq!(a.status, 502);
    assert!(a.body.as_str().unwrap().contains("<html>"));

    fake.timeout_next(1, 800, false);
    let short = reqwest::Client::builder().timeout(Duration::from_millis(200)).build().unwrap();
    let r = short.get(format!("{}/fapi/v1/time", fake.rest_url())).send().await;
    assert!(r.unwrap_err().is_timeout());

    // The real weight limit: exchangeInfo with 40-weight calls.
    let fake2 = FakeBinance::start(FakeConfig { weight_limit_1m: Some(100), ..quiet() }).await;
    let rest2 = Rest::new(&fake2);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(rest2.public("/fapi/v1/ticker/24hr", &[]).await.status);
    }
    assert_eq!(statuses, [200, 200, 429]);
    assert!(fake2.weight_used_1m() <= 100);
}

#[tokio::test]
async fn random_failures_are_deterministic_for_a_seed() {
    async fn run(seed: u64) -> Vec<u16> {
        let fake = FakeBinance::start(quiet()).await;
        let rest = Rest::new(&fake);
        fake.set_random_failures(0.3, 0.5, seed);
        let mut out = Vec::new();
        for _ in 0..40 {
            out.push(rest.public("/fapi/v1/time", &[]).await.status);
        }
        out
    }
    let a = run(7).await;
    assert_eq!(a, run(7).await);
    let failures = a.iter().filter(|s| **s == 503).count();
    assert!((4..=20).contains(&failures), "{failures} of 40");
}

#[tokio::test]
async fn exchange_info_klines_and_market_data() {
    let fake = FakeBinance::start(quiet().with_generated_symbols(297)).await;
    let rest = Rest::new(&fake);
    let info = rest.public("/fapi/v1/exchangeInfo", &[]).await;
    let symbols = info.body["symbols"].as_array().unwrap();
    assert_eq!(symbols.len(), 300);
    let btc = symbols.iter().find(|s| s["symbol"] == "BTCUSDT").unwrap();
    assert_eq!(btc["contractType"], "PERPETUAL");
    assert_eq!(btc["filters"][0]["tickSize"], "0.1");
    assert_eq!(btc["filters"][4]["notional"], "100");

    let t0: i64 = 1_700_000_100_000; // a 15m boundary
    fake.set_klines("BTCUSDT", "15m", (0..10).map(|i| candle(t0 + i * 900_000, 100.0 + i as f64)).collect());
    let k = rest.public("/fapi/v1/klines", &[("symbol", "BTCUSDT"), ("interval", "15m"), ("limit", "3")]).await;
    let rows = k.body.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[2][0], t0 + 9 * 900_000);
    assert_eq!(rows[2][4], "109");
    assert_eq!(rows[2][6], t0 + 10 * 900_000 - 1);
    let start = (t0 + 2 * 900_000).to_string();
    let end = (t0 + 4 * 900_000).to_string();
    let k = rest
        .public(
            "/fapi/v1/klines",
            &[("symbol", "BTCUSDT"), ("interval", "15m"), ("startTime", &start), ("endTime", &end)],
        )
        .await;
    assert_eq!(k.body.as_array().unwrap().len(), 3);
    let k = rest
        .public("/fapi/v1/klines", &[("symbol", "BTCUSDT"), ("interval", "15m"), ("startTime", &start), ("limit", "2")])
        .await;
    assert_eq!(k.body[0][0], t0 + 2 * 900_000);
    assert_eq!(k.body.as_array().unwrap().len(), 2);
    assert_eq!(rest.public("/fapi/v1/klines", &[("symbol", "BTCUSDT"), ("interval", "7m")]).await.code(), -1120);

    let t = rest.public("/fapi/v1/ticker/24hr", &[]).await;
    assert_eq!(t.body.as_array().unwrap().len(), 300);
    let p = rest.public("/fapi/v1/premiumIndex", &[("symbol", "ETHUSDT")]).await;
    assert_eq!(p.body["markPrice"], "3500");
    let b = rest.signed(Method::GET, "/fapi/v1/leverageBracket", &[("symbol", "BTCUSDT")]).await;
    assert_eq!(b.body["brackets"][0]["initialLeverage"], 125);
    assert_eq!(b.body["brackets"][1]["cum"], 50.0);
    assert!(b.body["brackets"][1]["notionalCap"].is_i64());
    assert_eq!(b.body["brackets"][1]["notionalCap"], 600000);
    assert!(b.body["brackets"][0]["maintMarginRatio"].is_f64());
    let mt =
        rest.signed(Method::POST, "/fapi/v1/marginType", &[("symbol", "BTCUSDT"), ("marginType", "ISOLATED")]).await;
    assert_eq!(mt.code(), -4046);
    let dual = rest.signed(Method::POST, "/fapi/v1/positionSide/dual", &[("dualSidePosition", "false")]).await;
    assert_eq!(dual.code(), -4059);
    fake.set_symbol_locked("SOLUSDT", true);
    let s = rest.signed(Method::GET, "/fapi/v1/apiTradingStatus", &[]).await;
    assert_eq!(s.body["indicators"]["SOLUSDT"][0]["isLocked"], true);
}

#[tokio::test]
async fn market_stream_subscribe_unsubscribe_and_routes() {
    let fake = FakeBinance::start(quiet()).await;
    let mut ws = connect(&format!("{}/market/ws", fake.ws_url())).await;
    ws.send(Message::text(
        json!({"method":"SUBSCRIBE","params":["BTCUSDT@kline_15m","!markPrice@arr@1s"],"id":1}).to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(next_json(&mut ws, Duration::from_secs(2)).await.unwrap(), json!({"result":null,"id":1}));
    fake.push_kline("BTCUSDT", "15m", candle(1_700_000_000_000 - 1_700_000_000_000 % 900_000, 101.5), false);
    let k = next_json(&mut ws, Duration::from_secs(2)).await.unwrap();
    assert_eq!(k["e"], "kline");
    assert_eq!(k["k"]["c"], "101.5");
    assert_eq!(k["k"]["x"], false);
    fake.set_mark_price("ETHUSDT", d("3600"));
    let m = next_json(&mut ws, Duration::from_secs(2)).await.unwrap();
    assert_eq!(m[0]["e"], "markPriceUpdate");
    assert_eq!(m[0]["p"], "3600");

    ws.send(Message::text(r#"{"method":"LIST_SUBSCRIPTIONS","id":2}"#)).await.unwrap();
    let l = next_json(&mut ws, Duration::from_secs(2)).await.unwrap();
    assert_eq!(l, json!({"result":["!markPrice@arr@1s","btcusdt@kline_15m"],"id":2}));
    ws.send(Message::text(r#"{"method":"UNSUBSCRIBE","params":["btcusdt@kline_15m"],"id":3}"#)).await.unwrap();
    assert_eq!(next_json(&mut ws, Duration::from_secs(2)).await.unwrap(), json!({"result":null,"id":3}));
    fake.push_kline("BTCUSDT", "15m", candle(1_700_000_000_000 - 1_700_000_000_000 % 900_000, 102.0), true);
    assert!(next_json(&mut ws, Duration::from_millis(300)).await.is_none());
    ws.send(Message::text("not json")).await.unwrap();
    assert_eq!(next_json(&mut ws, Duration::from_secs(2)).await.unwrap()["code"], 3);

    // Percent-encoded path segments are decoded.
    let mut enc = connect(&format!("{}/market/ws/%21markPrice%40arr%401s", fake.ws_url())).await;
    assert!(fake.wait_for_subscription("!markPrice@arr@1s", Duration::from_secs(2)).await);
    fake.set_mark_price("BTCUSDT", d("68100"));
    assert_eq!(next_json(&mut enc, Duration::from_secs(2)).await.unwrap()[0]["s"], "BTCUSDT");
    let _ = next_json(&mut ws, Duration::from_millis(200)).await;
    drop(enc);
    assert!(fake.wait_until(Duration::from_secs(2), |f| f.ws_connection_count() == 1).await);

    // Combined mode wraps; a kline subscription on /public (wrong route) is ACKed and silent.
    let mut comb = connect(&fake.market_stream_url(&["ethusdt@kline_1h"])).await;
    let mut public = connect(&format!("{}/public/ws", fake.ws_url())).await;
    public.send(Message::text(r#"{"method":"SUBSCRIBE","params":["ethusdt@kline_1h"],"id":9}"#)).await.unwrap();
    assert_eq!(next_json(&mut public, Duration::from_secs(2)).await.unwrap(), json!({"result":null,"id":9}));
    fake.push_kline("ETHUSDT", "1h", candle(1_699_999_200_000, 3500.0), true);
    let c = next_json(&mut comb, Duration::from_secs(2)).await.unwrap();
    assert_eq!(c["stream"], "ethusdt@kline_1h");
    assert_eq!(c["data"]["k"]["x"], true);
    assert!(next_json(&mut public, Duration::from_millis(300)).await.is_none());
    assert_eq!(fake.ws_connection_count(), 3);
    // Stored for REST too.
    assert_eq!(fake.klines("ETHUSDT", "1h").len(), 1);
}

#[tokio::test]
async fn periodic_tick_pushes_all_market_arrays() {
    let fake = FakeBinance::start(FakeConfig { market_tick_ms: Some(50), ..FakeConfig::default() }).await;
    let mut ws = connect(&fake.market_stream_url(&["!markPrice@arr@1s", "!miniTicker@arr"])).await;
    let mut seen = Vec::new();
    let m = wait_for(&mut ws, &mut seen, Duration::from_secs(2), |v| v["stream"] == "!markPrice@arr@1s").await;
    assert_eq!(m["data"].as_array().unwrap().len(), 3);
    let t = wait_for(&mut ws, &mut seen, Duration::from_secs(2), |v| v["stream"] == "!miniTicker@arr").await;
    assert_eq!(t["data"][0]["e"], "24hrMiniTicker");
}

#[tokio::test]
async fn dropped_connections_reconnect_and_resubscribe() {
    let fake = FakeBinance::start(quiet()).await;
    let url = fake.market_stream_url(&["solusdt@kline_15m"]);
    let mut ws = connect(&url).await;
    assert!(fake.wait_for_ws_connections(1, Duration::from_secs(2)).await);
    assert_eq!(fake.drop_ws_connections(), 1);
    // The client sees the stream end without a close handshake.
    let end = tokio::time::timeout(Duration::from_secs(2), ws.next()).await.unwrap();
    assert!(matches!(end, None | Some(Err(_))), "{end:?}");
    assert!(fake.wait_until(Duration::from_secs(2), |f| f.ws_connection_count() == 0).await);

    let mut ws = connect(&url).await;
    assert!(fake.wait_for_subscription("solusdt@kline_15m", Duration::from_secs(2)).await);
    assert_eq!(fake.ws_connects_total(), 2);
    fake.push_kline("SOLUSDT", "15m", candle(1_699_999_200_000, 150.0), true);
    let k = next_json(&mut ws, Duration::from_secs(2)).await.unwrap();
    assert_eq!(k["data"]["s"], "SOLUSDT");

    // Silent mode: connected, ACKed, no data.
    fake.set_ws_silent(true);
    fake.push_kline("SOLUSDT", "15m", candle(1_699_999_200_000, 151.0), true);
    assert!(next_json(&mut ws, Duration::from_millis(300)).await.is_none());
    fake.set_ws_silent(false);

    // Only /market silent: /private still delivers.
    fake.set_ws_route_silent(support::fake_binance::Route::Market, true);
    let rest = Rest::new(&fake);
    let mut private = private_socket(&fake, &rest).await;
    fake.push_kline("SOLUSDT", "15m", candle(1_699_999_200_000, 152.0), true);
    assert_eq!(rest.market("SOLUSDT", "BUY", "1", "route-silent").await.status, 200);
    assert_eq!(next_json(&mut private, Duration::from_secs(2)).await.unwrap()["e"], "ORDER_TRADE_UPDATE");
    assert!(next_json(&mut ws, Duration::from_millis(300)).await.is_none());
    fake.set_ws_route_silent(support::fake_binance::Route::Market, false);

    // Refused handshakes.
    fake.set_ws_refuse(true);
    assert!(tokio_tungstenite::connect_async(url.as_str()).await.is_err());
}

#[tokio::test]
async fn listen_key_expiry_is_pushed_once_then_silence() {
    let fake = FakeBinance::start(quiet()).await;
    let rest = Rest::new(&fake);
    let mut ws = private_socket(&fake, &rest).await;
    let key = fake.listen_key().unwrap();
    // POST again returns the same key; PUT keeps it alive.
    let again = rest.key_only(Method::POST, "/fapi/v1/listenKey").await;
    assert_eq!(again.body["listenKey"], key.as_str());
    assert_eq!(rest.key_only(Method::PUT, "/fapi/v1/listenKey").await.status, 200);

    fake.expire_listen_key();
    let ev = next_json(&mut ws, Duration::from_secs(2)).await.unwrap();
    assert_eq!(ev["e"], "listenKeyExpired");
    assert_eq!(ev["listenKey"], key.as_str());
    assert_eq!(rest.market("SOLUSDT", "BUY", "1", "after-expiry").await.status, 200);
    assert!(next_json(&mut ws, Duration::from_millis(300)).await.is_none());
    assert_eq!(rest.key_only(Method::PUT, "/fapi/v1/listenKey").await.code(), -1125);
    let new_key = rest.key_only(Method::POST, "/fapi/v1/listenKey").await;
    assert_ne!(new_key.body["listenKey"], key.as_str());
}

#[tokio::test]
async fn limit_orders_flips_cancels_and_close_position_stops() {
    let fake = FakeBinance::start(quiet()).await;
    let rest = Rest::new(&fake);
    // A resting LIMIT buy fills as maker when the price comes down to it.
    let p = [
        ("symbol", "ETHUSDT"),
        ("side", "BUY"),
        ("type", "LIMIT"),
        ("timeInForce", "GTC"),
        ("quantity", "0.100"),
        ("price", "3450.00"),
        ("newClientOrderId", "lim-1"),
    ];
    let a = rest.signed(Method::POST, "/fapi/v1/order", &p).await;
    assert_eq!(a.body["status"], "NEW", "{:?}", a.body);
    assert_eq!(fake.open_orders().len(), 1);
    // PERCENT_PRICE: a BUY above mark × 1.05 is refused.
    let hi = [
        ("symbol", "ETHUSDT"),
        ("side", "BUY"),
        ("type", "LIMIT"),
        ("timeInForce", "GTC"),
        ("quantity", "0.100"),
        ("price", "3700.00"),
    ];
    assert_eq!(rest.signed(Method::POST, "/fapi/v1/order", &hi).await.code(), -4016);
    fake.set_price("ETHUSDT", d("3440"));
    let f = fake.fills();
    assert_eq!((f.len(), f[0].price, f[0].maker), (1, d("3450.00"), true));
    assert_eq!(f[0].commission, d("0.069")); // 345 × 0.02 %
    // Cancel: a filled order is "Unknown order sent."
    let c =
        rest.signed(Method::DELETE, "/fapi/v1/order", &[("symbol", "ETHUSDT"), ("origClientOrderId", "lim-1")]).await;
    assert_eq!(c.code(), -2011);
    let p2 = [
        ("symbol", "ETHUSDT"),
        ("side", "SELL"),
        ("type", "LIMIT"),
        ("timeInForce", "GTC"),
        ("quantity", "0.100"),
        ("price", "3500.00"),
        ("newClientOrderId", "lim-2"),
    ];
    assert_eq!(rest.signed(Method::POST, "/fapi/v1/order", &p2).await.status, 200);
    let all = rest.signed(Method::DELETE, "/fapi/v1/allOpenOrders", &[("symbol", "ETHUSDT")]).await;
    assert_eq!(all.body["code"], 200);
    assert_eq!(fake.order_by_client_id("lim-2").unwrap().status, "CANCELED");

    // A plain SELL larger than the long flips it to a short at the fill price.
    assert_eq!(rest.market("ETHUSDT", "SELL", "0.300", "flip").await.status, 200);
    let pos = fake.position("ETHUSDT").unwrap();
    assert_eq!((pos.amount, pos.entry_price), (d("-0.2"), d("3440")));
    assert_eq!(fake.fills()[1].realized_pnl, d("-1")); // 0.1 × (3440 − 3450)

    // closePosition stop (BUY side for a short) closes whatever is open when it fires.
    let stop = [
        ("algoType", "CONDITIONAL"),
        ("symbol", "ETHUSDT"),
        ("side", "BUY"),
        ("type", "STOP_MARKET"),
        ("triggerPrice", "3500.00"),
        ("closePosition", "true"),
        ("workingType", "MARK_PRICE"),
    ];
    let a = rest.signed(Method::POST, "/fapi/v1/algoOrder", &stop).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let mut with_qty = stop.to_vec();
    with_qty.push(("quantity", "0.2"));
    assert_eq!(rest.signed(Method::POST, "/fapi/v1/algoOrder", &with_qty).await.code(), -4137);
    // A second stop, then cancel it by clientAlgoId; cancelling again is -2011.
    let s2 = [
        ("algoType", "CONDITIONAL"),
        ("symbol", "ETHUSDT"),
        ("side", "BUY"),
        ("type", "STOP_MARKET"),
        ("triggerPrice", "3600.00"),
        ("quantity", "0.200"),
        ("reduceOnly", "true"),
        ("clientAlgoId", "s2"),
    ];
    assert_eq!(rest.signed(Method::POST, "/fapi/v1/algoOrder", &s2).await.status, 200);
    assert_eq!(rest.signed(Method::POST, "/fapi/v1/algoOrder", &s2).await.code(), -4116);
    let c = rest.signed(Method::DELETE, "/fapi/v1/algoOrder", &[("clientAlgoId", "s2")]).await;
    assert_eq!((c.body["code"].as_str(), c.body["msg"].as_str()), (Some("200"), Some("success")));
    assert_eq!(rest.signed(Method::DELETE, "/fapi/v1/algoOrder", &[("clientAlgoId", "s2")]).await.code(), -2011);
    fake.set_mark_price("ETHUSDT", d("3501"));
    assert!(fake.position("ETHUSDT").is_none());
    // A reduce-only stop left behind after the position closed is rejected when it fires.
    let s3 = [
        ("algoType", "CONDITIONAL"),
        ("symbol", "ETHUSDT"),
        ("side", "SELL"),
        ("type", "STOP_MARKET"),
        ("triggerPrice", "3400.00"),
        ("quantity", "0.100"),
        ("reduceOnly", "true"),
        ("clientAlgoId", "orphan"),
    ];
    assert_eq!(rest.signed(Method::POST, "/fapi/v1/algoOrder", &s3).await.status, 200);
    fake.set_mark_price("ETHUSDT", d("3390"));
    let orphan = fake.algo_orders().into_iter().find(|a| a.client_algo_id == "orphan").unwrap();
    assert_eq!((orphan.status.as_str(), orphan.reject_reason.as_str()), ("REJECTED", "Reduce Only reject"));
    assert!(fake.position("ETHUSDT").is_none());
}

#[tokio::test]
async fn algo_order_budget_is_200_per_account() {
    let fake = FakeBinance::start(quiet()).await;
    let rest = Rest::new(&fake);
    for i in 0..200 {
        let id = format!("tp-{i}");
        let sym = ["BTCUSDT", "ETHUSDT"][i % 2];
        let (trig, qty) = if sym == "BTCUSDT" { ("90000.0", "0.002") } else { ("4000.00", "0.030") };
        let p = [
            ("algoType", "CONDITIONAL"),
            ("symbol", sym),
            ("side", "SELL"),
            ("type", "TAKE_PROFIT_MARKET"),
            ("triggerPrice", trig),
            ("quantity", qty),
            ("reduceOnly", "true"),
            ("clientAlgoId", id.as_str()),
        ];
        let a = rest.signed(Method::POST, "/fapi/v1/algoOrder", &p).await;
        assert_eq!(a.status, 200, "{i}: {:?}", a.body);
    }
    let p = [
        ("algoType", "CONDITIONAL"),
        ("symbol", "SOLUSDT"),
        ("side", "SELL"),
        ("type", "STOP_MARKET"),
        ("triggerPrice", "100.0000"),
        ("quantity", "1"),
        ("reduceOnly", "true"),
    ];
    assert_eq!(rest.signed(Method::POST, "/fapi/v1/algoOrder", &p).await.code(), -4045);
    let all = rest.signed(Method::GET, "/fapi/v1/openAlgoOrders", &[]).await;
    assert_eq!(all.body.as_array().unwrap().len(), 200);
    let c = rest.signed(Method::DELETE, "/fapi/v1/algoOpenOrders", &[("symbol", "BTCUSDT")]).await;
    assert_eq!(c.body["code"], 200);
    assert_eq!(fake.open_algo_orders().len(), 100);
    assert_eq!(rest.signed(Method::POST, "/fapi/v1/algoOrder", &p).await.status, 200);
}

#[tokio::test]
async fn private_url_forms_and_event_filter() {
    let fake = FakeBinance::start(quiet()).await;
    let rest = Rest::new(&fake);
    let key = rest.key_only(Method::POST, "/fapi/v1/listenKey").await.body["listenKey"].as_str().unwrap().to_string();
    let mut path_form = connect(&format!("{}/private/ws/{key}", fake.ws_url())).await;
    let mut only_account =
        connect(&format!("{}/private/ws?listenKey={key}&events=ACCOUNT_UPDATE", fake.ws_url())).await;
    let mut combined = connect(&format!("{}/private/stream?listenKey={key}", fake.ws_url())).await;
    let mut wrong_key = connect(&format!("{}/private/ws?listenKey=nope", fake.ws_url())).await;
    let mut unrouted = connect(&format!("{}/ws/{key}", fake.ws_url())).await;
    assert!(fake.wait_for_ws_connections(5, Duration::from_secs(2)).await);
    assert_eq!(rest.market("SOLUSDT", "BUY", "1", "ev").await.status, 200);
    assert_eq!(next_json(&mut path_form, Duration::from_secs(2)).await.unwrap()["e"], "ORDER_TRADE_UPDATE");
    assert_eq!(next_json(&mut only_account, Duration::from_secs(2)).await.unwrap()["e"], "ACCOUNT_UPDATE");
    let c = next_json(&mut combined, Duration::from_secs(2)).await.unwrap();
    assert_eq!((c["stream"].as_str(), c["data"]["e"].as_str()), (Some(key.as_str()), Some("ORDER_TRADE_UPDATE")));
    assert!(next_json(&mut wrong_key, Duration::from_millis(200)).await.is_none());
    assert!(next_json(&mut unrouted, Duration::from_millis(100)).await.is_none());
    // Unknown WS path: handshake refused.
    assert!(tokio_tungstenite::connect_async(format!("{}/nowhere", fake.ws_url())).await.is_err());
    // Leverage change → ACCOUNT_CONFIG_UPDATE.
    let lv = rest.signed(Method::POST, "/fapi/v1/leverage", &[("symbol", "SOLUSDT"), ("leverage", "5")]).await;
    assert_eq!(lv.body["leverage"], 5);
    let mut seen = Vec::new();
    let cfg = wait_for(&mut path_form, &mut seen, Duration::from_secs(2), |v| v["e"] == "ACCOUNT_CONFIG_UPDATE").await;
    assert_eq!(cfg["ac"]["l"], 5);
    assert_eq!(fake.leverage("SOLUSDT"), Some(5));
}

#[tokio::test]
async fn ws_pings_lifetime_and_message_rate() {
    let cfg = FakeConfig { ws_ping_interval_ms: 50, ws_max_lifetime_ms: Some(1500), ..quiet() };
    let fake = FakeBinance::start(cfg).await;
    let mut ws = connect(&format!("{}/market/ws", fake.ws_url())).await;
    // Pings arrive (tungstenite answers them with pongs while we read).
    let got_ping = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            if let Some(Ok(Message::Ping(_))) = ws.next().await {
                return true;
            }
        }
    })
    .await;
    assert_eq!(got_ping, Ok(true));
    // More than 10 messages in a second → disconnected.
    let mut ws2 = connect(&format!("{}/market/ws", fake.ws_url())).await;
    for i in 0..12 {
        let _ = ws2.send(Message::text(json!({"method":"LIST_SUBSCRIPTIONS","id":i}).to_string())).await;
    }
    let mut replies = 0;
    while let Some(v) = next_json(&mut ws2, Duration::from_secs(1)).await {
        assert!(v.get("result").is_some());
        replies += 1;
    }
    assert_eq!(replies, 10);
    // The lifetime limit closes the first connection.
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return true,
                _ => {}
            }
        }
    })
    .await;
    assert_eq!(closed, Ok(true));
}

#[tokio::test]
async fn funding_hedge_mode_and_body_faults() {
    let fake = FakeBinance::start(quiet()).await;
    let rest = Rest::new(&fake);
    let mut ws = private_socket(&fake, &rest).await;
    assert_eq!(rest.market("BTCUSDT", "BUY", "0.100", "f1").await.status, 200);
    fake.set_funding_rate("BTCUSDT", d("0.0001"));
    let before = fake.balance().wallet_balance;
    assert_eq!(fake.apply_funding("BTCUSDT"), d("-0.68")); // 6800 × 0.01 %
    assert_eq!(fake.balance().wallet_balance, before - d("0.68"));
    let mut seen = Vec::new();
    let ev = wait_for(&mut ws, &mut seen, Duration::from_secs(2), |v| v["a"]["m"] == "FUNDING_FEE").await;
    assert_eq!(ev["a"]["B"][0]["bc"], "-0.68000000");

    // Hedge mode cannot be switched on with a position; without one it can, and then orders
    // need LONG/SHORT and no reduceOnly.
    let a = rest.signed(Method::POST, "/fapi/v1/positionSide/dual", &[("dualSidePosition", "true")]).await;
    assert_eq!(a.code(), -4068);
    let fake2 = FakeBinance::start(quiet()).await;
    let rest2 = Rest::new(&fake2);
    assert_eq!(
        rest2.signed(Method::POST, "/fapi/v1/positionSide/dual", &[("dualSidePosition", "true")]).await.body["code"],
        200
    );
    assert_eq!(rest2.signed(Method::GET, "/fapi/v1/positionSide/dual", &[]).await.body["dualSidePosition"], true);
    assert_eq!(rest2.market("SOLUSDT", "BUY", "1", "h1").await.code(), -4061);
    let long =
        [("symbol", "SOLUSDT"), ("side", "BUY"), ("type", "MARKET"), ("quantity", "2"), ("positionSide", "LONG")];
    assert_eq!(rest2.signed(Method::POST, "/fapi/v1/order", &long).await.status, 200);
    let ro = [
        ("symbol", "SOLUSDT"),
        ("side", "SELL"),
        ("type", "MARKET"),
        ("quantity", "1"),
        ("positionSide", "LONG"),
        ("reduceOnly", "true"),
    ];
    assert_eq!(rest2.signed(Method::POST, "/fapi/v1/order", &ro).await.code(), -1106);
    let close =
        [("symbol", "SOLUSDT"), ("side", "SELL"), ("type", "MARKET"), ("quantity", "5"), ("positionSide", "LONG")];
    assert_eq!(rest2.signed(Method::POST, "/fapi/v1/order", &close).await.status, 200);
    let rows = rest2.signed(Method::GET, "/fapi/v2/positionRisk", &[("symbol", "SOLUSDT")]).await;
    assert_eq!(rows.body.as_array().unwrap().len(), 2);
    assert!(rows.body.as_array().unwrap().iter().all(|r| r["positionAmt"] == "0"));

    // Truncated JSON after executing; a timeout after executing.
    fake.fail_next(1, FaultScope::MarketOrder, FaultAction::TruncatedBody);
    let a = rest.market("BTCUSDT", "SELL", "0.050", "t1").await;
    assert_eq!(a.status, 200);
    assert!(a.body.is_string(), "not JSON: {:?}", a.body);
    assert_eq!(fake.orders_with_client_id("t1"), 1);
    fake.timeout_next(1, 600, true);
    let short = reqwest::Client::builder().timeout(Duration::from_millis(150)).build().unwrap();
    let q = format!("symbol=BTCUSDT&side=SELL&type=MARKET&quantity=0.050&newClientOrderId=t2&timestamp={}", now_ms());
    let body = format!("{q}&signature={}", fake.sign(&q));
    let r = short
        .post(format!("{}/fapi/v1/order", fake.rest_url()))
        .header("X-MBX-APIKEY", DOC_API_KEY)
        .body(body)
        .send()
        .await;
    assert!(r.unwrap_err().is_timeout());
    assert_eq!(fake.orders_with_client_id("t2"), 1);
    assert!(fake.position("BTCUSDT").is_none());
    // The account endpoints agree with the matching engine.
    let acct = rest.signed(Method::GET, "/fapi/v3/account", &[]).await;
    assert_eq!(
        acct.body["totalWalletBalance"].as_str().unwrap().parse::<f64>().unwrap(),
        fake.balance().wallet_balance.to_string().parse::<f64>().unwrap()
    );
    let bal = rest.signed(Method::GET, "/fapi/v2/balance", &[]).await;
    assert_eq!(bal.body[0]["asset"], "USDT");
    let trades = rest.signed(Method::GET, "/fapi/v1/userTrades", &[("symbol", "BTCUSDT")]).await;
    assert_eq!(trades.body.as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn price_walk_and_auto_klines_stream_by_themselves() {
    let fake = FakeBinance::start(FakeConfig { market_tick_ms: Some(30), ..FakeConfig::default() }).await;
    fake.set_price_walk(Some((20, 1)));
    fake.set_auto_klines(true);
    let mut ws = connect(&fake.market_stream_url(&["btcusdt@kline_1m", "!markPrice@arr@1s"])).await;
    let mut seen = Vec::new();
    let k = wait_for(&mut ws, &mut seen, Duration::from_secs(2), |v| v["stream"] == "btcusdt@kline_1m").await;
    assert_eq!(k["data"]["k"]["x"], false);
    assert_eq!(k["data"]["k"]["t"].as_i64().unwrap() % 60_000, 0);
    let before = fake.mark_price("BTCUSDT").unwrap();
    assert!(fake.wait_until(Duration::from_secs(2), |f| f.mark_price("BTCUSDT") != Some(before)).await);
    // Still on the tick grid.
    let p = fake.mark_price("BTCUSDT").unwrap();
    assert_eq!(p % d("0.1"), d("0"));
    assert!(!fake.klines("BTCUSDT", "1m").is_empty());
    let series = support::fake_binance::trend_candles(0, 900_000, 5, 100.0, 1.0);
    assert!((series[4].close - 105.101).abs() < 0.01);
}

/// Seeded garbage against every endpoint, correctly signed: always a Binance error JSON or a
/// success, never a 5xx, a panic or a dropped connection.
#[tokio::test]
async fn garbage_parameters_get_binance_errors_never_panics() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    let fake = FakeBinance::start(FakeConfig { weight_limit_1m: None, ..quiet() }).await;
    let rest = Rest::new(&fake);
    let mut ws = private_socket(&fake, &rest).await;
    let endpoints = [
        (Method::GET, "/fapi/v1/klines"),
        (Method::GET, "/fapi/v1/ticker/24hr"),
        (Method::GET, "/fapi/v1/premiumIndex"),
        (Method::GET, "/fapi/v1/leverageBracket"),
        (Method::POST, "/fapi/v1/order"),
        (Method::GET, "/fapi/v1/order"),
        (Method::DELETE, "/fapi/v1/order"),
        (Method::POST, "/fapi/v1/algoOrder"),
        (Method::DELETE, "/fapi/v1/algoOrder"),
        (Method::GET, "/fapi/v1/openAlgoOrders"),
        (Method::DELETE, "/fapi/v1/allOpenOrders"),
        (Method::POST, "/fapi/v1/leverage"),
        (Method::POST, "/fapi/v1/marginType"),
        (Method::POST, "/fapi/v1/positionSide/dual"),
        (Method::GET, "/fapi/v3/positionRisk"),
        (Method::GET, "/fapi/v1/userTrades"),
    ];
    let names = [
        "symbol",
        "side",
        "type",
        "quantity",
        "price",
        "triggerPrice",
        "reduceOnly",
        "closePosition",
        "positionSide",
        "timeInForce",
        "newClientOrderId",
        "clientAlgoId",
        "algoType",
        "algoId",
        "orderId",
        "origClientOrderId",
        "leverage",
        "marginType",
        "dualSidePosition",
        "interval",
        "limit",
        "startTime",
        "endTime",
        "workingType",
        "newOrderRespType",
    ];
    let values = [
        "",
        "-1",
        "0",
        "1e-5",
        "0.001",
        "1",
        "2",
        "68000.1",
        "3400.00",
        "99999999999999999999.99999999999999999999",
        "9223372036854775807",
        "-9223372036854775808",
        "NaN",
        "BTCUSDT",
        "ETHUSDT",
        "SOLUSDT",
        "币安人生USDT",
        "true",
        "TRUE",
        "false",
        "MARKET",
        "LIMIT",
        "STOP_MARKET",
        "TAKE_PROFIT_MARKET",
        "CONDITIONAL",
        "BUY",
        "SELL",
        "BOTH",
        "LONG",
        "GTC",
        "GTX",
        "MARK_PRICE",
        "15m",
        "1M",
        "RESULT",
        "ISOLATED",
        "CROSSED",
        "x".repeat(40).leak(),
    ];
    let mut rng = StdRng::seed_from_u64(99);
    for i in 0..400 {
        let (method, path) = endpoints[rng.random_range(0..endpoints.len())].clone();
        let n = rng.random_range(0..9);
        let mut params: Vec<(&str, &str)> = Vec::new();
        for _ in 0..n {
            let name = names[rng.random_range(0..names.len())];
            if params.iter().any(|(k, _)| *k == name) {
                continue;
            }
            params.push((name, values[rng.random_range(0..values.len())]));
        }
        if rng.random_bool(0.7) && !params.iter().any(|(k, _)| *k == "symbol") {
            params.push(("symbol", ["BTCUSDT", "ETHUSDT", "SOLUSDT"][rng.random_range(0..3)]));
        }
        let a = if path.starts_with("/fapi/v1/klines") || path.contains("ticker") || path.contains("premium") {
            rest.public(path, &params).await
        } else {
            rest.signed(method.clone(), path, &params).await
        };
        assert!(
            a.status == 200 || (400..500).contains(&a.status),
            "#{i} {method} {path} {params:?} → {} {:?}",
            a.status,
            a.body
        );
        if a.status != 200 {
            assert!(a.body["code"].as_i64().unwrap() < 0 && a.body["msg"].is_string(), "#{i} {:?}", a.body);
        }
        if i % 50 == 0 {
            fake.set_price("ETHUSDT", d(["3300", "3500", "3700"][rng.random_range(0..3)]));
        }
    }
    assert_eq!(fake.panicked_requests(), 0);
    // Raw garbage in query strings and bodies.
    for raw in ["%", "&&&", "a=%ZZ", "symbol=BTCUSDT&symbol=ETHUSDT", "signature=", "=&=", "timestamp=abc&signature=00"]
    {
        let a = rest.raw(Method::POST, "/fapi/v1/order", raw, raw, Some(DOC_API_KEY)).await;
        assert!((400..500).contains(&a.status), "{raw}: {} {:?}", a.status, a.body);
    }
    let a = rest.raw(Method::GET, "/fapi/v9/nothing", "", "", None).await;
    assert_eq!(a.status, 404);
    // The user stream kept working throughout.
    assert!(next_json(&mut ws, Duration::from_secs(1)).await.is_some() || fake.orders().is_empty());
}

#[tokio::test]
async fn margin_call_and_periodic_ws_drops() {
    let fake = FakeBinance::start(quiet()).await;
    let rest = Rest::new(&fake);
    let mut ws = private_socket(&fake, &rest).await;
    assert_eq!(rest.market("SOLUSDT", "BUY", "3", "mc").await.status, 200);
    fake.push_margin_call("SOLUSDT");
    let mut seen = Vec::new();
    let mc = wait_for(&mut ws, &mut seen, Duration::from_secs(2), |v| v["e"] == "MARGIN_CALL").await;
    assert_eq!(mc["p"][0]["pa"], "3");
    assert_eq!(mc["p"][0]["mt"], "ISOLATED");

    fake.set_ws_drop_interval(Some(Duration::from_millis(150)));
    let url = fake.market_stream_url(&["btcusdt@kline_1m"]);
    let mut drops = 0;
    for _ in 0..3 {
        let mut c = connect(&url).await;
        let end = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                match c.next().await {
                    None | Some(Err(_)) => return,
                    _ => {}
                }
            }
        })
        .await;
        assert!(end.is_ok());
        drops += 1;
    }
    fake.set_ws_drop_interval(None);
    assert_eq!(drops, 3);
    assert!(fake.ws_connects_total() >= 4);
}

#[tokio::test]
async fn seeded_chaos_mixes_fault_kinds_and_never_duplicates() {
    use support::fake_binance::Chaos;
    let fake = std::sync::Arc::new(FakeBinance::start(FakeConfig { weight_limit_1m: None, ..quiet() }).await);
    let chaos = Chaos {
        p_5xx: 0.08,
        p_5xx_after_execute: 0.08,
        p_timeout: 0.04,
        timeout_ms: 400,
        p_rate_limit: 0.04,
        retry_after_secs: 1,
        p_invalid_timestamp: 0.04,
        p_latency_spike: 0.04,
        latency_spike_ms: 20,
        p_drop_connection: 0.04,
    };
    fake.set_chaos(Some(chaos), 2026);
    let rest =
        Rest { fake: &fake, http: reqwest::Client::builder().timeout(Duration::from_millis(200)).build().unwrap() };
    let mut sent = 0;
    for i in 0..150 {
        let cid = format!("chaos-{i}");
        let p = [
            ("symbol", "SOLUSDT"),
            ("side", if i % 2 == 0 { "BUY" } else { "SELL" }),
            ("type", "MARKET"),
            ("quantity", "1"),
            ("newClientOrderId", cid.as_str()),
        ];
        let mut q = serde_urlencoded::to_string(p).unwrap();
        q.push_str(&format!("&timestamp={}", now_ms()));
        let body = format!("{q}&signature={}", fake.sign(&q));
        let _ = rest
            .http
            .post(format!("{}/fapi/v1/order", fake.rest_url()))
            .header("X-MBX-APIKEY", DOC_API_KEY)
            .body(body)
            .send()
            .await;
        sent += 1;
        assert!(fake.orders_with_client_id(&cid) <= 1);
    }
    fake.set_chaos(None, 0);
    let kinds = fake.injected_faults();
    assert!(kinds.len() >= 6, "{kinds:?}");
    assert!(fake.orders().len() < sent);
    assert_eq!(fake.panicked_requests(), 0);
    // Positions are the signed sum of fills.
    let net: rust_decimal::Decimal = fake.fills().iter().map(|f| if f.side == "BUY" { f.qty } else { -f.qty }).sum();
    assert_eq!(fake.position("SOLUSDT").map(|p| p.amount).unwrap_or_default(), net);
    fn send_sync<T: Send + Sync>(_: &T) {}
    send_sync(&*fake);
}

/// The fake's answers and events have the shapes of the recorded Binance payloads.
#[tokio::test]
async fn responses_and_events_have_the_recorded_shapes() {
    let fake = FakeBinance::start(quiet()).await;
    let rest = Rest::new(&fake);
    let mut ws = private_socket(&fake, &rest).await;
    let mut market = connect(&format!("{}/market/ws/btcusdt@kline_1m/btcusdt@markPrice@1s", fake.ws_url())).await;

    let info = rest.public("/fapi/v1/exchangeInfo", &[]).await.body;
    let recorded = fixture("rest/exchangeInfo_trimmed.json");
    let mut rec_btc =
        recorded["symbols"].as_array().unwrap().iter().find(|s| s["symbol"] == "BTCUSDT").unwrap().clone();
    rec_btc.as_object_mut().unwrap().remove("underlyingSubType");
    let btc = info["symbols"].as_array().unwrap().iter().find(|s| s["symbol"] == "BTCUSDT").unwrap();
    assert_shape(btc, &rec_btc, "exchangeInfo.BTCUSDT");
    for (i, f) in rec_btc["filters"].as_array().unwrap().iter().enumerate() {
        assert_shape(&btc["filters"][i], f, "filter");
    }
    assert_shape(&info["rateLimits"], &recorded["rateLimits"], "rateLimits");

    let k = candle(1_700_000_100_000, 100.0);
    fake.set_klines("BTCUSDT", "1m", vec![k]);
    let rows = rest.public("/fapi/v1/klines", &[("symbol", "BTCUSDT"), ("interval", "1m")]).await.body;
    assert_shape(&rows, &fixture("rest/klines_BTCUSDT_1m.json"), "klines");
    assert_eq!(rows[0].as_array().unwrap().len(), 12);
    let t = rest.public("/fapi/v1/ticker/24hr", &[("symbol", "BTCUSDT")]).await.body;
    assert_shape(&t, &fixture("rest/ticker_24hr_BTCUSDT.json"), "ticker");
    let p = rest.public("/fapi/v1/premiumIndex", &[("symbol", "BTCUSDT")]).await.body;
    assert_shape(&p, &fixture("rest/premiumIndex_BTCUSDT.json"), "premiumIndex");
    let all = rest.public("/fapi/v1/premiumIndex", &[]).await.body;
    assert_shape(&all, &fixture("rest/premiumIndex_all.json"), "premiumIndex[]");
    let b = rest.signed(Method::GET, "/fapi/v1/leverageBracket", &[]).await.body;
    assert_shape(&b, &fixture("rest/leverageBracket_trimmed.json"), "leverageBracket");
    let lk = rest.key_only(Method::POST, "/fapi/v1/listenKey").await.body;
    assert_shape(&lk, &fixture("rest/listenKey.json"), "listenKey");

    let o = rest.market("BTCUSDT", "BUY", "0.010", "shape-1").await.body;
    assert_shape(&o, &fixture("rest/order_limit_new.json"), "order");
    let q = rest
        .signed(Method::GET, "/fapi/v1/order", &[("symbol", "BTCUSDT"), ("origClientOrderId", "shape-1")])
        .await
        .body;
    assert_shape(&q, &fixture("rest/order_docs_limit_new.json"), "order query");
    let pr = rest.signed(Method::GET, "/fapi/v3/positionRisk", &[]).await.body;
    assert_shape(&pr, &fixture("rest/positionRisk_v3.json"), "positionRisk v3");
    let pr2 = rest.signed(Method::GET, "/fapi/v2/positionRisk", &[("symbol", "BTCUSDT")]).await.body;
    assert_shape(&pr2, &fixture("rest/positionRisk_v2.json"), "positionRisk v2");
    let acct = rest.signed(Method::GET, "/fapi/v3/account", &[]).await.body;
    let mut rec_acct = fixture("rest/account_v3.json");
    rec_acct["assets"] = json!([rec_acct["assets"][0].clone()]);
    assert_shape(&acct, &rec_acct, "account v3");
    let acct2 = rest.signed(Method::GET, "/fapi/v2/account", &[]).await.body;
    assert_shape(&acct2, &fixture("rest/account_v2.json"), "account v2");
    let bal = rest.signed(Method::GET, "/fapi/v2/balance", &[]).await.body;
    assert_shape(&bal, &fixture("rest/balance_v2.json"), "balance");
    let sc = rest.signed(Method::GET, "/fapi/v1/symbolConfig", &[("symbol", "BTCUSDT")]).await.body;
    assert_shape(&sc, &fixture("rest/symbolConfig.json"), "symbolConfig");
    let ut = rest.signed(Method::GET, "/fapi/v1/userTrades", &[("symbol", "BTCUSDT")]).await.body;
    assert_shape(&ut, &fixture("rest/userTrades.json"), "userTrades");
    let stop = [
        ("algoType", "CONDITIONAL"),
        ("symbol", "BTCUSDT"),
        ("side", "SELL"),
        ("type", "STOP_MARKET"),
        ("quantity", "0.010"),
        ("triggerPrice", "67000.0"),
        ("reduceOnly", "true"),
        ("workingType", "MARK_PRICE"),
    ];
    let a = rest.signed(Method::POST, "/fapi/v1/algoOrder", &stop).await.body;
    let aq = rest.signed(Method::GET, "/fapi/v1/algoOrder", &[("algoId", &a["algoId"].to_string())]).await.body;
    assert_shape(&aq, &fixture("rest/algoOrder_stop_market.json"), "algoOrder");
    let open = rest.signed(Method::GET, "/fapi/v1/openAlgoOrders", &[]).await.body;
    let mut rec_open = fixture("rest/algoOrder_open_list.json");
    rec_open[0].as_object_mut().unwrap().remove("type"); // docs example; the live field is orderType
    assert_shape(&open, &rec_open, "openAlgoOrders");
    for code in ["1021", "1111", "2019"] {
        let e = fixture(&format!("rest/error_{code}.json"));
        assert_eq!(e["code"].as_i64().unwrap(), -code.parse::<i64>().unwrap());
    }

    fake.set_mark_price("BTCUSDT", d("66900"));
    let mut seen = Vec::new();
    wait_for(&mut ws, &mut seen, Duration::from_secs(2), |v| v["e"] == "ALGO_UPDATE" && v["o"]["X"] == "FINISHED")
        .await;
    let by = |e: &str, x: &str| {
        seen.iter().find(|v| v["e"] == e && (x.is_empty() || v["o"]["x"] == x || v["o"]["X"] == x)).cloned().unwrap()
    };
    assert_shape(&by("ORDER_TRADE_UPDATE", "TRADE"), &fixture("ws/ORDER_TRADE_UPDATE_trade_filled.json"), "OTU trade");
    assert_shape(&by("ORDER_TRADE_UPDATE", "NEW"), &fixture("ws/ORDER_TRADE_UPDATE_new.json"), "OTU new");
    assert_shape(&by("TRADE_LITE", ""), &fixture("ws/TRADE_LITE.json"), "TRADE_LITE");
    assert_shape(&by("ACCOUNT_UPDATE", ""), &fixture("ws/ACCOUNT_UPDATE.json"), "ACCOUNT_UPDATE");
    assert_shape(&by("ALGO_UPDATE", "TRIGGERED"), &fixture("ws/ALGO_UPDATE_triggered.json"), "ALGO_UPDATE triggered");
    assert_shape(&by("ALGO_UPDATE", "FINISHED"), &fixture("ws/ALGO_UPDATE_finished.json"), "ALGO_UPDATE finished");
    let mut rec_new = fixture("ws/ALGO_UPDATE_new.json");
    rec_new["o"].as_object_mut().unwrap().remove("rm"); // only on rejects
    assert_shape(&by("ALGO_UPDATE", "NEW"), &rec_new, "ALGO_UPDATE new");
    fake.push_margin_call("BTCUSDT");
    fake.expire_listen_key();
    let mc = wait_for(&mut ws, &mut seen, Duration::from_secs(2), |v| v["e"] == "listenKeyExpired").await;
    let mut rec_exp = fixture("ws/listenKeyExpired_with_key.json");
    rec_exp["E"] = json!(0); // numeric since 2026-05 (doc §7.5)
    assert_shape(&mc, &rec_exp, "listenKeyExpired");

    let mark = wait_for(&mut market, &mut seen, Duration::from_secs(2), |v| v["e"] == "markPriceUpdate").await;
    assert_shape(
        &mark,
        &fixture("ws/markPriceUpdate.json")
            .as_object()
            .map(|o| {
                let mut o = o.clone();
                o.remove("st");
                Value::Object(o)
            })
            .unwrap(),
        "markPrice",
    );
    fake.push_kline("BTCUSDT", "1m", k, true);
    let kl = wait_for(&mut market, &mut seen, Duration::from_secs(2), |v| v["e"] == "kline").await;
    assert_shape(&kl, &fixture("ws/kline_closed.json"), "kline");
    fake.set_ticker_stats("BTCUSDT", d("1000000"), d("2.5"));
    let mut tick = connect(&fake.market_stream_url(&["btcusdt@ticker"])).await;
    assert!(fake.wait_for_subscription("btcusdt@ticker", Duration::from_secs(2)).await);
    fake.push_market_tick();
    let tv = next_json(&mut tick, Duration::from_secs(2)).await.unwrap();
    let mut rec_t = fixture("ws/24hrTicker.json");
    rec_t.as_object_mut().unwrap().remove("st");
    assert_shape(&tv["data"], &rec_t, "24hrTicker");
}

#[tokio::test]
async fn order_rate_limit_and_generated_history() {
    let fake = FakeBinance::start(FakeConfig { order_limits: (3, 1200), ..quiet().with_generated_symbols(5) }).await;
    let rest = Rest::new(&fake);
    for i in 0..3 {
        assert_eq!(rest.market("SOLUSDT", "BUY", "1", &format!("r{i}")).await.status, 200);
    }
    let a = rest.market("SOLUSDT", "BUY", "1", "r3").await;
    assert_eq!((a.status, a.code()), (429, -1015));
    let info = rest.public("/fapi/v1/exchangeInfo", &[]).await.body;
    assert_eq!(info["rateLimits"][2]["limit"], 3);

    fake.fill_history("15m", 200, 5);
    let now = fake.server_time();
    for sym in ["BTCUSDT", "GEN004USDT"] {
        let k = fake.klines(sym, "15m");
        assert_eq!(k.len(), 200);
        assert_eq!(k[199].open_time, now - now % 900_000);
        assert!(k.windows(2).all(|w| w[1].open_time - w[0].open_time == 900_000));
        let last = fake.mark_price(sym).unwrap().to_string().parse::<f64>().unwrap();
        assert!((k[199].close - last).abs() < 1e-6 * last);
    }
    assert_ne!(fake.klines("ETHUSDT", "15m")[10].close / 3500.0, fake.klines("BTCUSDT", "15m")[10].close / 68000.0);
}

#[tokio::test]
async fn liquidation_closes_the_position_and_loses_its_margin() {
    let fake = FakeBinance::start(FakeConfig { liquidation: true, ..quiet() }).await;
    let rest = Rest::new(&fake);
    let mut ws = private_socket(&fake, &rest).await;
    // 1 ETH long at 3500, 20x isolated: margin 175, maintenance 3500 × 0.4 % = 14.
    assert_eq!(rest.market("ETHUSDT", "BUY", "1.000", "liq").await.status, 200);
    let wallet = fake.balance().wallet_balance;
    fake.set_mark_price("ETHUSDT", d("3400"));
    assert!(fake.position("ETHUSDT").is_some());
    fake.set_mark_price("ETHUSDT", d("3330"));
    assert!(fake.position("ETHUSDT").is_none());
    assert_eq!(fake.balance().wallet_balance, wallet - d("175"));
    let mut seen = Vec::new();
    let liq = wait_for(&mut ws, &mut seen, Duration::from_secs(2), |v| {
        v["e"] == "ORDER_TRADE_UPDATE" && v["o"]["x"] == "CALCULATED" && v["o"]["X"] == "FILLED"
    })
    .await;
    assert!(liq["o"]["c"].as_str().unwrap().starts_with("autoclose-"));
    assert_eq!(liq["o"]["rp"], "-170.00000000");
    let acct = wait_for(&mut ws, &mut seen, Duration::from_secs(2), |v| {
        v["e"] == "ACCOUNT_UPDATE" && v["a"]["P"][0]["pa"] == "0"
    })
    .await;
    assert_eq!(acct["a"]["P"][0]["s"], "ETHUSDT");
}

/// A plain (sync) test: the server on its own runtime keeps serving while the test blocks.
#[test]
fn own_runtime_serves_blocking_tests() {
    use std::io::{Read, Write};
    let fake = FakeBinance::start_on_own_runtime(quiet());
    let addr = fake.rest_url().trim_start_matches("http://").to_string();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    write!(s, "GET /fapi/v1/time HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("serverTime"));
    assert!(out.to_lowercase().contains("x-mbx-used-weight-1m: 1"));
    assert!(fake.wait_until_blocking(Duration::from_secs(1), |f| f.requests().len() == 1));
    drop(fake);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(&addr).is_ok() {
        assert!(std::time::Instant::now() < deadline, "server still listening after drop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn edge_case_symbols_and_percent_encoded_signing() {
    let fake = FakeBinance::start(quiet().with_edge_case_symbols()).await;
    let rest = Rest::new(&fake);
    let info = rest.public("/fapi/v1/exchangeInfo", &[]).await.body;
    let tradeable: Vec<&str> = info["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["contractType"] == "PERPETUAL" && s["status"] == "TRADING" && s["quoteAsset"] == "USDT")
        .map(|s| s["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(tradeable.len(), 4, "{tradeable:?}");
    assert!(tradeable.contains(&"币安人生USDT"));
    // serde_urlencoded percent-encodes the symbol; the signature covers the encoded bytes.
    let a = rest.market("币安人生USDT", "BUY", "100", "uni-1").await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["symbol"], "币安人生USDT");
    assert!(fake.requests_to("POST", "/fapi/v1/order")[0].body.contains("%E5%B8%81"));
    assert_eq!(fake.position("币安人生USDT").unwrap().amount, d("100"));
    let k = rest.public("/fapi/v1/ticker/24hr", &[("symbol", "币安人生USDT")]).await;
    assert_eq!(k.body["symbol"], "币安人生USDT");
    // Opening on a SETTLING symbol is refused.
    assert_eq!(rest.market("EOSUSDT", "BUY", "20.0", "eos").await.code(), -4140);
}

#[tokio::test]
async fn custom_bodies_and_raw_frames_for_bad_input_tests() {
    use support::fake_binance::Route;
    let fake = FakeBinance::start(quiet()).await;
    let rest = Rest::new(&fake);
    let bad = r#"[{"symbol":"BTCUSDT","lastPrice":"NaN","quoteVolume":"-5"}]"#;
    fake.fail_next(
        1,
        FaultScope::Endpoint("GET".into(), "/fapi/v1/ticker/24hr".into()),
        FaultAction::Body { http_status: 200, body: bad.into(), execute_first: false },
    );
    assert_eq!(rest.public("/fapi/v1/time", &[]).await.status, 200);
    let a = rest.public("/fapi/v1/ticker/24hr", &[]).await;
    assert_eq!(a.body[0]["lastPrice"], "NaN");
    assert_eq!(rest.public("/fapi/v1/ticker/24hr", &[]).await.body.as_array().unwrap().len(), 3);
    // Executed first, then a body the client cannot trust.
    fake.fail_next(
        1,
        FaultScope::MarketOrder,
        FaultAction::Body { http_status: 200, body: "{".into(), execute_first: true },
    );
    assert_eq!(rest.market("SOLUSDT", "BUY", "1", "cb").await.status, 200);
    assert_eq!(fake.orders_with_client_id("cb"), 1);

    let mut m = connect(&format!("{}/market/ws", fake.ws_url())).await;
    assert!(fake.wait_for_ws_connections(1, Duration::from_secs(2)).await);
    assert_eq!(fake.push_text(Route::Market, "{not json"), 1);
    let big = format!("{{\"e\":\"kline\",\"pad\":\"{}\"}}", "x".repeat(2_000_000));
    fake.push_text(Route::Market, &big);
    let frame1 = tokio::time::timeout(Duration::from_secs(2), m.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(frame1.to_text().unwrap(), "{not json");
    let frame2 = tokio::time::timeout(Duration::from_secs(5), m.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(frame2.len(), big.len());
}

#[tokio::test]
async fn trailing_stop_follows_the_high_and_fires_on_the_callback() {
    let fake = FakeBinance::start(quiet()).await;
    let rest = Rest::new(&fake);
    assert_eq!(rest.market("SOLUSDT", "BUY", "10", "trail-entry").await.status, 200);
    let base = [
        ("algoType", "CONDITIONAL"),
        ("symbol", "SOLUSDT"),
        ("side", "SELL"),
        ("type", "TRAILING_STOP_MARKET"),
        ("quantity", "10"),
        ("reduceOnly", "true"),
    ];
    let mut p = base.to_vec();
    p.push(("callbackRate", "25"));
    assert_eq!(rest.signed(Method::POST, "/fapi/v1/algoOrder", &p).await.code(), -1130);
    let mut p = base.to_vec();
    p.extend([("callbackRate", "1"), ("activatePrice", "149.0000")]);
    assert_eq!(rest.signed(Method::POST, "/fapi/v1/algoOrder", &p).await.code(), -2021);
    let mut p = base.to_vec();
    p.extend([("callbackRate", "1"), ("clientAlgoId", "trail")]);
    let a = rest.signed(Method::POST, "/fapi/v1/algoOrder", &p).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["callbackRate"], "1");
    assert!(fake.unprotected_positions().is_empty());
    for px in ["152", "155", "153.5"] {
        fake.set_price("SOLUSDT", d(px));
        assert!(fake.position("SOLUSDT").is_some(), "fired early at {px}");
    }
    fake.set_price("SOLUSDT", d("153.4")); // 155 × 0.99 = 153.45
    assert!(fake.position("SOLUSDT").is_none());
    let t = fake.algo_orders().into_iter().find(|a| a.client_algo_id == "trail").unwrap();
    assert_eq!((t.status.as_str(), t.actual_qty), ("FINISHED", d("10")));
    assert_eq!(fake.fills().last().unwrap().price, d("153.4"));
}

#[tokio::test]
async fn dropped_rest_connection_with_and_without_execution() {
    let fake = FakeBinance::start(quiet()).await;
    let rest = Rest::new(&fake);
    for (cid, executed) in [("drop-1", false), ("drop-2", true)] {
        fake.fail_next(1, FaultScope::MarketOrder, FaultAction::DropConnection { execute_first: executed });
        let mut q = format!("symbol=SOLUSDT&side=BUY&type=MARKET&quantity=1&newClientOrderId={cid}");
        q.push_str(&format!("&timestamp={}", now_ms()));
        let body = format!("{q}&signature={}", fake.sign(&q));
        let r = rest
            .http
            .post(format!("{}/fapi/v1/order", fake.rest_url()))
            .header("X-MBX-APIKEY", DOC_API_KEY)
            .body(body)
            .send()
            .await;
        // Either the request fails outright or the body cannot be read: no usable answer.
        let usable = match r {
            Ok(resp) => resp.text().await.is_ok(),
            Err(_) => false,
        };
        assert!(!usable, "{cid}: got a complete answer");
        assert_eq!(fake.orders_with_client_id(cid), usize::from(executed));
    }
    assert_eq!(rest.public("/fapi/v1/time", &[]).await.status, 200);
}

#[tokio::test]
async fn held_requests_wait_for_release() {
    let fake = std::sync::Arc::new(FakeBinance::start(quiet()).await);
    fake.fail_next(1, FaultScope::MarketOrder, FaultAction::Hold { execute_first: true });
    let f2 = fake.clone();
    let sender = tokio::spawn(async move { Rest::new(&f2).market("SOLUSDT", "BUY", "1", "held").await.status });
    assert!(fake.wait_until(Duration::from_secs(2), |f| f.held_requests() == 1).await);
    // Executed, answer not sent yet: the moment to kill a client "after send, before reply".
    assert_eq!(fake.orders_with_client_id("held"), 1);
    assert!(!sender.is_finished());
    fake.release_held_requests();
    assert_eq!(sender.await.unwrap(), 200);
    assert_eq!(fake.held_requests(), 0);
    // Held before executing: nothing exists until released.
    fake.fail_next(1, FaultScope::MarketOrder, FaultAction::Hold { execute_first: false });
    let f3 = fake.clone();
    let sender = tokio::spawn(async move { Rest::new(&f3).market("SOLUSDT", "BUY", "1", "held-2").await.status });
    assert!(fake.wait_until(Duration::from_secs(2), |f| f.held_requests() == 1).await);
    assert_eq!(fake.orders_with_client_id("held-2"), 0);
    fake.release_held_requests();
    assert_eq!(sender.await.unwrap(), 200);
    assert_eq!(fake.orders_with_client_id("held-2"), 1);
}

/// `FaultScope::SymbolOrders` hits placements, lookups and cancels (plain and algo) of one
/// symbol only; market data, account reads and other symbols' orders pass.
#[tokio::test]
async fn symbol_orders_scope_hits_only_that_symbols_order_traffic() {
    let fake = FakeBinance::start(quiet()).await;
    let rest = Rest::new(&fake);
    fake.fail_next(5, FaultScope::symbol_orders("ETHUSDT"), FaultAction::service_unavailable());
    assert_eq!(rest.market("SOLUSDT", "BUY", "1", "sol-1").await.status, 200);
    assert_eq!(rest.public("/fapi/v1/klines", &[("symbol", "ETHUSDT"), ("interval", "15m")]).await.status, 200);
    assert_eq!(rest.signed(Method::GET, "/fapi/v1/openOrders", &[("symbol", "ETHUSDT")]).await.status, 200);
    let by_id = [("symbol", "ETHUSDT"), ("origClientOrderId", "eth-x")];
    let algo = [
        ("algoType", "CONDITIONAL"),
        ("symbol", "ETHUSDT"),
        ("side", "SELL"),
        ("type", "STOP_MARKET"),
        ("quantity", "0.01"),
        ("triggerPrice", "3000"),
        ("reduceOnly", "true"),
    ];
    let hit = [
        rest.market("ETHUSDT", "BUY", "0.01", "eth-1").await,
        rest.signed(Method::GET, "/fapi/v1/order", &by_id).await,
        rest.signed(Method::DELETE, "/fapi/v1/order", &by_id).await,
        rest.signed(Method::POST, "/fapi/v1/algoOrder", &algo).await,
        rest.signed(Method::GET, "/fapi/v1/algoOrder", &[("symbol", "ETHUSDT"), ("clientAlgoId", "x")]).await,
    ];
    for (i, a) in hit.iter().enumerate() {
        assert_eq!((a.status, a.code()), (503, -1001), "request {i}: {:?}", a.body);
    }
    assert_eq!(fake.orders_with_client_id("eth-1"), 0, "a definite 503 executes nothing");
    // The five faults are used up: ETHUSDT trades again.
    assert_eq!(rest.market("ETHUSDT", "BUY", "0.01", "eth-2").await.status, 200);
    assert_eq!(fake.injected_faults().values().sum::<u64>(), 5);
}

/// A request hung by a fault delays only itself: each connection is served on its own and no
/// lock is held while it sleeps. ETHUSDT's order executes and its answer hangs 5 s; SOLUSDT's
/// order and a market-data read meanwhile are answered at once.
#[tokio::test]
async fn one_symbols_hung_order_does_not_block_other_requests() {
    let fake = std::sync::Arc::new(FakeBinance::start(quiet()).await);
    fake.fail_next(1, FaultScope::symbol_orders("ETHUSDT"), FaultAction::TimeoutAfterExecute { ms: 5000 });
    let f2 = fake.clone();
    let started = std::time::Instant::now();
    let hung = tokio::spawn(async move {
        let patient =
            Rest { fake: &f2, http: reqwest::Client::builder().timeout(Duration::from_secs(15)).build().unwrap() };
        let a = patient.market("ETHUSDT", "BUY", "0.01", "eth-hung").await;
        (a.status, started.elapsed())
    });
    // Executed at once; only the answer waits.
    assert!(fake.wait_until(Duration::from_secs(2), |f| f.orders_with_client_id("eth-hung") == 1).await);
    let rest = Rest::new(&fake);
    let t0 = std::time::Instant::now();
    let sol = rest.market("SOLUSDT", "BUY", "1", "sol-fast").await;
    let sol_took = t0.elapsed();
    assert_eq!(sol.status, 200, "{:?}", sol.body);
    assert!(sol_took < Duration::from_millis(500), "SOLUSDT's order waited {sol_took:?} behind ETHUSDT's");
    let t1 = std::time::Instant::now();
    assert_eq!(rest.public("/fapi/v1/premiumIndex", &[("symbol", "ETHUSDT")]).await.status, 200);
    assert!(t1.elapsed() < Duration::from_millis(500), "market data waited {:?}", t1.elapsed());
    assert!(!hung.is_finished(), "ETHUSDT's answer is still hanging");
    let (status, took) = hung.await.unwrap();
    assert_eq!(status, 200);
    assert!(took >= Duration::from_millis(5000), "answered after {took:?}");
    assert_eq!(fake.orders_with_client_id("eth-hung"), 1);
}
