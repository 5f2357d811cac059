//! The Binance client's REST side against the fake Binance server: idempotent orders under
//! unknown outcomes, 429/418 handling, clock resync, algo stops and their budget, account set-up,
//! and the public-only mode that never signs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod exchange_helpers;
mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use exchange_helpers::{client, client_with, public_client};
use kinetic::core::models::{OrderStatus, Side, Timeframe};
use kinetic::exchange::{Exchange, ExchangeError, MarginType, MarketOrderRequest, StopRequest, StopStatus};
use support::fake_binance::{FakeBinance, FakeConfig, FaultAction, FaultScope, d};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn market(symbol: &str, side: Side, qty: &str, cid: &str) -> MarketOrderRequest {
    MarketOrderRequest { symbol: symbol.into(), side, qty: d(qty), reduce_only: false, client_order_id: cid.into() }
}

fn stop(symbol: &str, trigger: &str, cid: &str) -> StopRequest {
    StopRequest {
        symbol: symbol.into(),
        side: Side::Sell,
        qty: d("0.01"),
        trigger_price: d(trigger),
        client_id: cid.into(),
    }
}

#[tokio::test]
async fn market_order_fills_and_reduce_only_close_works() {
    let fake = FakeBinance::start(FakeConfig::default().without_market_tick()).await;
    let c = client(&fake);
    let r = c.place_market(&market("BTCUSDT", Side::Buy, "0.01", "ke-entry-1")).await.unwrap();
    assert_eq!((r.status, r.executed_qty, r.side), (OrderStatus::Filled, d("0.01"), Side::Buy));
    assert!(r.avg_price > d("0"));
    let positions = c.positions().await.unwrap();
    assert_eq!(positions.len(), 1);
    assert_eq!((positions[0].qty, positions[0].leverage), (d("0.01"), 20));
    let close = MarketOrderRequest { reduce_only: true, ..market("BTCUSDT", Side::Sell, "0.004", "ke-close-1") };
    let r = c.place_market(&close).await.unwrap();
    assert!(r.reduce_only);
    assert_eq!(c.positions().await.unwrap()[0].qty, d("0.006"));
    let q = c.query_order("BTCUSDT", "ke-entry-1").await.unwrap().unwrap();
    assert_eq!(q.order_id, fake.order_by_client_id("ke-entry-1").unwrap().order_id);
    assert_eq!(c.query_order("BTCUSDT", "never-sent").await.unwrap(), None);
    let b = c.balance().await.unwrap();
    assert!(b.wallet_balance < d("10000") && b.wallet_balance > d("9990"), "{b:?}");
    assert_eq!(c.stats().orders_sent, 2);
}

/// 503 "Unknown error" after the order really executed: the client looks it up and returns it;
/// exactly one order exists for the intent.
#[tokio::test]
async fn unknown_outcome_order_exists_exactly_once() {
    let fake = FakeBinance::start(FakeConfig::default().without_market_tick()).await;
    let c = client(&fake);
    let cases: Vec<(&str, FaultAction)> = vec![
        ("ke-503", FaultAction::unknown_after_execute()),
        ("ke-1007", FaultAction::backend_timeout_after_execute()),
        ("ke-trunc", FaultAction::TruncatedBody),
        ("ke-timeout", FaultAction::TimeoutAfterExecute { ms: 3000 }),
        ("ke-drop", FaultAction::DropConnection { execute_first: true }),
    ];
    for (cid, action) in cases {
        fake.fail_next(1, FaultScope::MarketOrder, action);
        let r = c.place_market(&market("ETHUSDT", Side::Buy, "0.01", cid)).await;
        let r = r.unwrap_or_else(|e| panic!("{cid}: {e}"));
        assert_eq!(r.client_order_id, cid);
        assert_eq!(r.status, OrderStatus::Filled, "{cid}");
        assert_eq!(fake.orders_with_client_id(cid), 1, "{cid}: exactly one order");
    }
    assert_eq!(fake.position("ETHUSDT").map(|p| p.amount), Some(d("0.05")));
    // Dropped before execution: looked up, not there, sent once more: still one order.
    fake.fail_next(1, FaultScope::MarketOrder, FaultAction::DropConnection { execute_first: false });
    c.place_market(&market("ETHUSDT", Side::Buy, "0.01", "ke-drop-2")).await.unwrap();
    assert_eq!(fake.orders_with_client_id("ke-drop-2"), 1);
}

/// A timeout where the order never ran: the lookup finds nothing, the order is sent again
/// once, and one order exists.
#[tokio::test]
async fn unknown_outcome_not_executed_is_sent_again_once() {
    let fake = FakeBinance::start(FakeConfig::default().without_market_tick()).await;
    let c = client(&fake);
    fake.fail_next(1, FaultScope::MarketOrder, FaultAction::TimeoutNotExecuted { ms: 3000 });
    let r = c.place_market(&market("ETHUSDT", Side::Buy, "0.01", "ke-once")).await.unwrap();
    assert_eq!(r.status, OrderStatus::Filled);
    assert_eq!(fake.orders_with_client_id("ke-once"), 1);
    assert_eq!(fake.requests_to("POST", "/fapi/v1/order").len(), 2);
    // 503 "Service Unavailable." and -1008 (overload) are definite failures: nothing ran, so
    // the order is sent again after a backoff without a lookup.
    let lookups = fake.requests_to("GET", "/fapi/v1/order").len();
    for (cid, action) in [("ke-503", FaultAction::service_unavailable()), ("ke-1008-once", FaultAction::overloaded())] {
        fake.fail_next(1, FaultScope::MarketOrder, action);
        let r = c.place_market(&market("ETHUSDT", Side::Buy, "0.01", cid)).await.unwrap();
        assert_eq!(r.status, OrderStatus::Filled);
        assert_eq!(fake.orders_with_client_id(cid), 1);
    }
    assert_eq!(fake.requests_to("GET", "/fapi/v1/order").len(), lookups, "no lookup after a definite failure");
    // -1008 on the first try and all three retries: the code goes back to the caller.
    fake.fail_next(4, FaultScope::MarketOrder, FaultAction::overloaded());
    let sends = fake.requests_to("POST", "/fapi/v1/order").len();
    let e = c.place_market(&market("ETHUSDT", Side::Buy, "0.01", "ke-1008")).await.unwrap_err();
    assert_eq!(e.code(), Some(-1008));
    assert!(e.is_retryable() && !e.is_unknown_outcome(), "{e}");
    assert_eq!(fake.orders_with_client_id("ke-1008"), 0);
    assert_eq!(fake.requests_to("POST", "/fapi/v1/order").len(), sends + 4);
    assert_eq!(fake.requests_to("GET", "/fapi/v1/order").len(), lookups);
    // -2019 keeps its code for the caller's halve-and-retry.
    fake.insufficient_margin_once();
    let e = c.place_market(&market("ETHUSDT", Side::Buy, "0.01", "ke-margin")).await.unwrap_err();
    assert!(e.is_insufficient_margin(), "{e}");
    assert_eq!(c.stats().orders_rejected, 2);
}

#[tokio::test]
async fn rate_limited_client_waits_as_told() {
    let fake = FakeBinance::start(FakeConfig::default().without_market_tick()).await;
    let c = client(&fake);
    c.tickers().await.unwrap();
    fake.rate_limit_next(1, 2);
    let started = Instant::now();
    let tickers = c.tickers().await.unwrap();
    assert!(!tickers.is_empty());
    assert!(started.elapsed() >= Duration::from_secs(2), "waited only {:?}", started.elapsed());
    let log = fake.requests_to("GET", "/fapi/v1/ticker/24hr");
    assert_eq!(log.len(), 3);
    assert_eq!(log[1].http_status, 429);
    assert!(log[2].time_ms - log[1].time_ms >= 1950, "{} ms", log[2].time_ms - log[1].time_ms);
}

#[tokio::test]
async fn banned_client_sends_nothing_until_the_ban_ends() {
    let fake = FakeBinance::start(FakeConfig::default().without_market_tick()).await;
    let c = client(&fake);
    fake.ban_for(2);
    let e = c.tickers().await.unwrap_err();
    let ExchangeError::Banned { until } = e else { panic!("{e:?}") };
    assert!(until > fake.server_time());
    let sent = fake.requests().len();
    for _ in 0..3 {
        assert!(matches!(c.klines("BTCUSDT", Timeframe::M15, None, None, 5).await, Err(ExchangeError::Banned { .. })));
    }
    assert_eq!(fake.requests().len(), sent, "no request while banned");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    c.tickers().await.unwrap();
}

#[tokio::test]
async fn invalid_timestamp_resyncs_and_succeeds() {
    let fake = FakeBinance::start(FakeConfig::default().without_market_tick()).await;
    let c = client(&fake);
    c.balance().await.unwrap();
    let syncs = fake.requests_to("GET", "/fapi/v1/time").len();
    assert_eq!(syncs, 1, "synced once at start");
    // The server's clock jumps 20 s ahead: the next signed call is outside recvWindow.
    fake.set_clock_skew_ms(20_000);
    let b = c.balance().await.unwrap();
    assert!(b.wallet_balance > d("0"));
    assert_eq!(fake.requests_to("GET", "/fapi/v1/time").len(), 2, "resynced once");
    assert!((c.stats().clock_offset_ms + 20_000).abs() < 1000, "offset {}", c.stats().clock_offset_ms);
    // An injected -1021 on an order: resync, then the order goes through once.
    fake.invalid_timestamp_next(1);
    let r = c.place_market(&market("SOLUSDT", Side::Buy, "1", "ke-1021")).await.unwrap();
    assert_eq!(r.status, OrderStatus::Filled);
    assert_eq!(fake.orders_with_client_id("ke-1021"), 1);
}

#[tokio::test]
async fn html_and_5xx_are_retried_for_safe_calls_then_typed() {
    let fake = FakeBinance::start(FakeConfig::default().without_market_tick()).await;
    let c = client(&fake);
    fake.fail_next(
        2,
        FaultScope::Endpoint("GET".into(), "/fapi/v1/exchangeInfo".into()),
        FaultAction::Html { http_status: 502 },
    );
    assert_eq!(c.symbols().await.unwrap().len(), 3);
    assert_eq!(fake.requests_to("GET", "/fapi/v1/exchangeInfo").len(), 3);
    // The first try and three retries all get the proxy page: typed by its status.
    fake.fail_next(
        4,
        FaultScope::Endpoint("GET".into(), "/fapi/v1/ticker/24hr".into()),
        FaultAction::Html { http_status: 502 },
    );
    let e = c.tickers().await.unwrap_err();
    assert!(matches!(e, ExchangeError::Http { http_status: 502, .. }), "{e:?}");
    assert!(e.is_unknown_outcome() && e.to_string().contains("127.0.0.1"), "{e}");
    fake.fail_next(1, FaultScope::Endpoint("GET".into(), "/fapi/v1/ticker/24hr".into()), FaultAction::TruncatedBody);
    assert!(matches!(c.tickers().await, Err(ExchangeError::Decode { .. })));
}

#[tokio::test]
async fn symbols_account_setup_and_status() {
    let fake = FakeBinance::start(FakeConfig::default().without_market_tick()).await;
    let c = client(&fake);
    let symbols = c.symbols().await.unwrap();
    let btc = symbols.iter().find(|s| s.filters.symbol == "BTCUSDT").unwrap();
    assert!(btc.max_leverage >= 50 && btc.filters.max_leverage == btc.max_leverage);
    assert!(btc.filters.tick_size > d("0") && btc.filters.min_notional > d("0"));
    // Cached: a second call sends nothing.
    let n = fake.requests().len();
    c.symbols().await.unwrap();
    assert_eq!(fake.requests().len(), n);
    assert!(c.stats().rest_weight_used_1m > 0, "X-MBX-USED-WEIGHT-1M tracked");

    c.prepare_symbol("ETHUSDT", MarginType::Crossed, 7).await.unwrap();
    assert_eq!((fake.margin_type("ETHUSDT").as_deref(), fake.leverage("ETHUSDT")), (Some("CROSSED"), Some(7)));
    // Already set: -4046 is success.
    c.prepare_symbol("ETHUSDT", MarginType::Crossed, 7).await.unwrap();
    assert!(c.prepare_symbol("ETHUSDT", MarginType::Crossed, 0).await.is_err());

    assert!(!c.hedge_mode().await.unwrap());
    fake.set_hedge_mode(true);
    assert!(c.hedge_mode().await.unwrap());
    fake.set_hedge_mode(false);

    assert!(c.locked_symbols().await.unwrap().is_empty());
    fake.set_symbol_locked("SOLUSDT", true);
    assert_eq!(c.locked_symbols().await.unwrap(), BTreeSet::from(["SOLUSDT".to_string()]));
    assert!(c.open_orders().await.unwrap().is_empty());
    let marks = c.premium_index(None).await.unwrap();
    assert_eq!(marks.len(), 3);
    let k = c.klines("BTCUSDT", Timeframe::H1, None, None, 10).await.unwrap();
    assert!(k.len() <= 10);
}

#[tokio::test]
async fn stops_are_algo_orders_with_mark_price_trigger() {
    let fake = FakeBinance::start(FakeConfig::default().without_market_tick()).await;
    let c = client(&fake);
    c.place_market(&market("BTCUSDT", Side::Buy, "0.01", "ke-e")).await.unwrap();
    let s = c.place_stop(&stop("BTCUSDT", "60000", "ke-stop-1")).await.unwrap();
    assert_eq!((s.status, s.trigger_price, s.reduce_only), (StopStatus::New, d("60000"), true));
    let algo = fake.open_algo_orders();
    assert_eq!(algo.len(), 1);
    assert_eq!((algo[0].order_type.as_str(), algo[0].working_type.as_str()), ("STOP_MARKET", "MARK_PRICE"));
    assert!(algo[0].reduce_only);
    assert!(c.open_orders().await.unwrap().is_empty(), "stops are not plain orders");
    let open = c.open_stops().await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(c.stats().algo_orders_open, 1);
    c.cancel_stop("BTCUSDT", s.algo_id).await.unwrap();
    c.cancel_stop("BTCUSDT", s.algo_id).await.unwrap();
    assert!(fake.open_algo_orders().is_empty());
    assert_eq!(c.stats().algo_orders_open, 0);

    // Unknown outcome on the stop: found by clientAlgoId, exactly one.
    fake.fail_next(1, FaultScope::AlgoOrder, FaultAction::unknown_after_execute());
    let s2 = c.place_stop(&stop("BTCUSDT", "59000", "ke-stop-2")).await.unwrap();
    assert_eq!(s2.client_id, "ke-stop-2");
    assert_eq!(fake.algo_orders().iter().filter(|a| a.client_algo_id == "ke-stop-2").count(), 1);

    // cancel_all removes plain and algo orders of the symbol.
    c.place_stop(&stop("BTCUSDT", "58000", "ke-stop-3")).await.unwrap();
    c.cancel_all("BTCUSDT").await.unwrap();
    assert!(fake.open_algo_orders().is_empty());
    assert_eq!(c.stats().algo_orders_open, 0);
}

#[tokio::test]
async fn algo_budget_is_refused_locally_past_200() {
    let fake = FakeBinance::start(FakeConfig::default().without_market_tick()).await;
    let c = client_with(&fake, |s, _| s.rest_min_spacing_ms = 0);
    c.place_market(&market("BTCUSDT", Side::Buy, "0.01", "ke-e")).await.unwrap();
    for i in 0..200 {
        c.place_stop(&stop("BTCUSDT", "50000", &format!("ke-b-{i}"))).await.unwrap();
    }
    let sent = fake.requests_to("POST", "/fapi/v1/algoOrder").len();
    let e = c.place_stop(&stop("BTCUSDT", "50000", "ke-b-200")).await.unwrap_err();
    assert!(matches!(e, ExchangeError::Refused(ref m) if m.contains("budget")), "{e}");
    assert_eq!(fake.requests_to("POST", "/fapi/v1/algoOrder").len(), sent, "refused without sending");
    assert_eq!(c.stats().algo_orders_open, 200);
}

#[tokio::test]
async fn public_client_never_sends_a_signed_request() {
    let fake = FakeBinance::start_default().await;
    let c = public_client(&fake);
    assert!(c.is_public_only());
    assert_eq!(c.symbols().await.unwrap().len(), 3);
    assert!(!c.tickers().await.unwrap().is_empty());
    c.klines("BTCUSDT", Timeframe::M15, None, None, 10).await.unwrap();
    c.premium_index(Some("BTCUSDT")).await.unwrap();

    let refused = |r: Result<(), ExchangeError>| match r {
        Err(ExchangeError::Refused(m)) => assert!(m.contains("requires API credentials"), "{m}"),
        other => panic!("expected a refusal, got {other:?}"),
    };
    refused(c.balance().await.map(|_| ()));
    refused(c.positions().await.map(|_| ()));
    refused(c.open_orders().await.map(|_| ()));
    refused(c.open_stops().await.map(|_| ()));
    refused(c.hedge_mode().await.map(|_| ()));
    refused(c.locked_symbols().await.map(|_| ()));
    refused(c.prepare_symbol("BTCUSDT", MarginType::Isolated, 5).await);
    refused(c.place_market(&market("BTCUSDT", Side::Buy, "0.01", "ke-dry")).await.map(|_| ()));
    refused(c.query_order("BTCUSDT", "ke-dry").await.map(|_| ()));
    refused(c.place_stop(&stop("BTCUSDT", "60000", "ke-dry-stop")).await.map(|_| ()));
    refused(c.cancel_stop("BTCUSDT", 1).await);
    refused(c.cancel_all("BTCUSDT").await);

    // Streams: market data flows, no user stream, no listenKey.
    let (tx, mut rx) = mpsc::channel(1024);
    let cancel = CancellationToken::new();
    let control = c.start_streams(tx.into(), cancel.clone()).await.unwrap();
    control.set_kline_symbols(BTreeSet::from(["BTCUSDT".to_string()]));
    let mut seen = Vec::new();
    let got = exchange_helpers::wait_event(&mut rx, &mut seen, Duration::from_secs(5), |e| {
        matches!(e, kinetic::exchange::ExchangeEvent::MarkPrices(_))
    })
    .await;
    assert!(got.is_some());
    cancel.cancel();

    assert_eq!(fake.signed_request_count(), 0);
    assert!(fake.requests().iter().all(|r| !r.api_key_present && !r.signed), "no API key ever sent");
    assert!(fake.requests_to("POST", "/fapi/v1/listenKey").is_empty());
    assert!(fake.orders().is_empty());
}

#[tokio::test]
async fn exchange_info_is_refreshed_after_its_interval() {
    let fake = FakeBinance::start(FakeConfig::default().without_market_tick()).await;
    let c = client_with(&fake, |s, _| s.exchange_info_refresh_secs = 1);
    assert_eq!(c.symbols().await.unwrap().len(), 3);
    c.symbols().await.unwrap();
    assert_eq!(fake.requests_to("GET", "/fapi/v1/exchangeInfo").len(), 1);
    fake.set_symbol_status("SOLUSDT", "SETTLING");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let symbols = c.symbols().await.unwrap();
    assert_eq!(fake.requests_to("GET", "/fapi/v1/exchangeInfo").len(), 2);
    assert!(symbols.iter().all(|s| s.filters.symbol != "SOLUSDT"), "no longer TRADING");
}

/// Seeded chaos on every REST call (5xx with and without execution, dropped connections,
/// timeouts after execution, -1021): no intent ever becomes two orders, and every order the
/// client reports as placed exists exactly once.
#[tokio::test]
async fn chaos_never_duplicates_an_order() {
    use support::fake_binance::Chaos;
    let fake = FakeBinance::start(FakeConfig::default().without_market_tick()).await;
    let c = client(&fake);
    c.sync_time().await.unwrap();
    let chaos = Chaos {
        p_5xx: 0.1,
        p_5xx_after_execute: 0.15,
        p_timeout: 0.03,
        timeout_ms: 2500,
        p_invalid_timestamp: 0.05,
        p_drop_connection: 0.07,
        ..Chaos::default()
    };
    fake.set_chaos(Some(chaos), 7);
    let mut placed = 0;
    for i in 0..30 {
        let side = if i % 2 == 0 { Side::Buy } else { Side::Sell };
        let cid = format!("ke-chaos-{i}");
        match c.place_market(&market("SOLUSDT", side, "1", &cid)).await {
            Ok(r) => {
                placed += 1;
                assert_eq!(r.client_order_id, cid);
                assert_eq!(fake.orders_with_client_id(&cid), 1, "{cid}: reported placed, exists once");
            }
            Err(e) => {
                assert!(fake.orders_with_client_id(&cid) <= 1, "{cid}: {e}");
                if !matches!(e, ExchangeError::UnknownOutcome { .. }) {
                    assert_eq!(fake.orders_with_client_id(&cid), 0, "{cid}: a definite error left an order: {e}");
                }
            }
        }
    }
    fake.set_chaos(None, 0);
    assert!(placed >= 20, "most intents succeed: {placed}");
    assert!(!fake.injected_faults().is_empty());
}

/// DESIGN §3: a safe call is retried up to 3 times after the first try, waiting 1 s, 2 s and
/// 4 s (production delays). Three 503s: the fourth try succeeds; four: the error comes back.
/// Both run at once on one client, so the test takes about 7 s.
#[tokio::test]
async fn reads_retry_three_times_waiting_1_2_and_4_seconds() {
    let fake = FakeBinance::start(FakeConfig::default().without_market_tick()).await;
    let c = client_with(&fake, |_, o| o.retry_base = Duration::from_secs(1));
    let info = FaultScope::Endpoint("GET".into(), "/fapi/v1/exchangeInfo".into());
    let tickers = FaultScope::Endpoint("GET".into(), "/fapi/v1/ticker/24hr".into());
    fake.fail_next(3, info, FaultAction::service_unavailable());
    fake.fail_next(4, tickers, FaultAction::service_unavailable());
    let started = Instant::now();
    let (symbols, tickers) = tokio::join!(c.symbols(), c.tickers());
    let took = started.elapsed();
    assert_eq!(symbols.unwrap().len(), 3, "succeeds on the fourth try");
    let e = tickers.unwrap_err();
    assert_eq!((e.http_status(), e.code()), (Some(503), Some(-1001)), "{e}");
    assert!(took >= Duration::from_secs(7) && took < Duration::from_secs(9), "took {took:?}");
    for path in ["/fapi/v1/exchangeInfo", "/fapi/v1/ticker/24hr"] {
        let log = fake.requests_to("GET", path);
        assert_eq!(log.len(), 4, "{path}: first try + 3 retries");
        let gaps: Vec<i64> = log.windows(2).map(|w| w[1].time_ms - w[0].time_ms).collect();
        for (gap, want) in gaps.iter().zip([1000, 2000, 4000]) {
            assert!(*gap >= want - 5 && *gap < want + 800, "{path}: gaps {gaps:?}, want 1000/2000/4000 ms");
        }
    }
}

/// Every string an error can produce (`Display`, `Debug`, the whole source chain) names the
/// host but never the API key, the secret or a signed query.
#[tokio::test]
async fn errors_name_the_host_but_never_a_secret() {
    use std::error::Error as _;
    let fake = FakeBinance::start(FakeConfig::default().without_market_tick()).await;
    let host = fake.rest_url().trim_start_matches("http://").to_string();
    let quick = |s: &mut kinetic::config::ExchangeSettings, o: &mut kinetic::exchange::binance::ClientOptions| {
        s.request_timeout_secs = 1;
        o.max_retries = 0;
    };
    let c = client_with(&fake, quick);
    c.sync_time().await.unwrap();
    let mut errors = Vec::new();

    // Timed out after sending (a signed read).
    let account = FaultScope::Endpoint("GET".into(), "/fapi/v3/account".into());
    fake.fail_next(1, account.clone(), FaultAction::TimeoutNotExecuted { ms: 1500 });
    errors.push(("timeout", c.balance().await.unwrap_err()));
    // The connection breaks after sending.
    fake.fail_next(1, account, FaultAction::DropConnection { execute_first: false });
    errors.push(("dropped", c.balance().await.unwrap_err()));
    // An order whose answer and every lookup are lost: UnknownOutcome with the chain below it.
    fake.fail_next(4, FaultScope::symbol_orders("ETHUSDT"), FaultAction::DropConnection { execute_first: true });
    errors
        .push(("unknown outcome", c.place_market(&market("ETHUSDT", Side::Buy, "0.01", "ke-lost")).await.unwrap_err()));
    // Nothing listens on the port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_host = closed.local_addr().unwrap().to_string();
    drop(closed);
    let refused = client_with(&fake, |s, o| {
        quick(s, o);
        s.rest_url = format!("http://{closed_host}");
    });
    errors.push(("refused", refused.balance().await.unwrap_err()));
    // A wrong key: Binance's own message.
    let wrong = kinetic::exchange::binance::BinanceClient::with_options(
        &exchange_helpers::settings(&fake),
        Some(kinetic::config::Credentials {
            api_key: kinetic::config::Secret::new("wrong-key-0123456789"),
            api_secret: kinetic::config::Secret::new(fake.api_secret()),
        }),
        exchange_helpers::fast_options(),
    )
    .unwrap();
    errors.push(("wrong key", wrong.balance().await.unwrap_err()));

    let secrets = [fake.api_key().to_string(), fake.api_secret().to_string(), "wrong-key-0123456789".to_string()];
    for (case, e) in &errors {
        let mut texts = vec![e.to_string(), format!("{e:?}")];
        let mut source = e.source();
        while let Some(s) = source {
            texts.push(s.to_string());
            texts.push(format!("{s:?}"));
            source = s.source();
        }
        for text in &texts {
            for secret in &secrets {
                assert!(!text.contains(secret.as_str()), "{case}: a credential in `{text}`");
            }
            assert!(!text.contains("signature=") && !text.contains("timestamp="), "{case}: a signed query in `{text}`");
        }
        match *case {
            "wrong key" => assert!(e.is_fatal() && e.code() == Some(-2015), "{e}"),
            "refused" => {
                assert!(matches!(e, ExchangeError::Transport { .. }) && e.is_retryable(), "{e:?}");
                assert!(e.to_string().contains(&closed_host), "{case}: host missing in `{e}`");
            }
            _ => {
                assert!(e.is_unknown_outcome(), "{case}: {e:?}");
                assert!(e.to_string().contains(&host), "{case}: host missing in `{e}`");
            }
        }
    }
    assert!(matches!(errors[2].1, ExchangeError::UnknownOutcome { .. }));
    assert_eq!(fake.orders_with_client_id("ke-lost"), 1);
}

/// One symbol's order hanging on the exchange delays nothing else through the same client:
/// ETHUSDT's order executes and its answer hangs 5 s; SOLUSDT's order is answered meanwhile.
/// ETHUSDT's then times out (2 s), is looked up and found: one order.
#[tokio::test]
async fn a_hung_order_on_one_symbol_does_not_delay_another_symbols_order() {
    let fake = FakeBinance::start(FakeConfig::default().without_market_tick()).await;
    let c = client(&fake);
    c.sync_time().await.unwrap();
    fake.fail_next(1, FaultScope::symbol_orders("ETHUSDT"), FaultAction::TimeoutAfterExecute { ms: 5000 });
    let c2 = c.clone();
    let hung = tokio::spawn(async move { c2.place_market(&market("ETHUSDT", Side::Buy, "0.01", "ke-hung")).await });
    assert!(fake.wait_until(Duration::from_secs(2), |f| f.orders_with_client_id("ke-hung") == 1).await);
    let t0 = Instant::now();
    let sol = c.place_market(&market("SOLUSDT", Side::Buy, "1", "ke-sol")).await.unwrap();
    assert_eq!(sol.status, OrderStatus::Filled);
    assert!(t0.elapsed() < Duration::from_millis(500), "SOLUSDT waited {:?}", t0.elapsed());
    assert!(!hung.is_finished());
    let eth = hung.await.unwrap().unwrap();
    assert_eq!((eth.client_order_id.as_str(), eth.status), ("ke-hung", OrderStatus::Filled));
    assert_eq!(fake.orders_with_client_id("ke-hung"), 1);
}
