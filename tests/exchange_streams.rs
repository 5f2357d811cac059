//! The Binance client's WebSocket side against the fake server: reconnects with resubscription
//! and REST backfill (no duplicate candle), the staleness watchdog, live subscription changes,
//! the user data stream (orders, account, algo updates, listenKey expiry) and malformed frames.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod exchange_helpers;
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use exchange_helpers::{client, public_client, wait_event};
use kinetic::core::data_hub::DataHub;
use kinetic::core::models::{Candle, Side, Timeframe};
use kinetic::exchange::{Exchange, ExchangeEvent, MarketOrderRequest, StopRequest, StopStatus, StreamEvent};
use kinetic::tasks::ingest::apply_market_event;
use support::fake_binance::{FakeBinance, FakeConfig, d};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const M15: i64 = 900_000;

fn candle(open_time: i64, close: f64) -> Candle {
    Candle {
        open_time,
        close_time: open_time + M15 - 1,
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

fn is_stream(ev: &ExchangeEvent, want: &str, reconnect: bool) -> bool {
    matches!(ev, ExchangeEvent::Stream(StreamEvent::Connected { stream, reconnect: r }) if stream == want && *r == reconnect)
}

fn symbols(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_string()).collect()
}

/// Three drops: three reconnects, the kline subscriptions restored each time, the candles
/// closed while down backfilled over REST, and the hub ends with every candle exactly once.
#[tokio::test]
async fn ws_dropped_three_times_reconnects_resubscribes_and_backfills() {
    let fake = FakeBinance::start_default().await;
    let c = public_client(&fake);
    let now = fake.server_time();
    let base = Timeframe::M15.align(now) - 12 * M15;
    fake.set_klines("BTCUSDT", "15m", vec![candle(base, 100.0)]);

    let (tx, mut rx) = mpsc::channel(100_000);
    let cancel = CancellationToken::new();
    let control = c.start_streams(tx.into(), cancel.clone()).await.unwrap();
    control.set_kline_symbols(symbols(&["BTCUSDT"]));
    assert!(fake.wait_for_subscription("btcusdt@kline_15m", Duration::from_secs(5)).await);
    fake.push_kline("BTCUSDT", "15m", candle(base, 100.0), true);

    let mut seen = Vec::new();
    let live =
        wait_event(&mut rx, &mut seen, Duration::from_secs(5), |e| matches!(e, ExchangeEvent::Kline { .. })).await;
    assert!(live.is_some(), "live kline received");

    let mut next = 1;
    for round in 1..=3 {
        fake.set_ws_refuse(true);
        assert!(fake.drop_ws_connections() >= 1);
        let down = wait_event(&mut rx, &mut seen, Duration::from_secs(5), |e| {
            matches!(e, ExchangeEvent::Stream(StreamEvent::Disconnected { .. }))
        })
        .await;
        assert!(down.is_some(), "round {round}: disconnect seen");
        // Two candles close while the stream is down (stored for REST, pushed to nobody).
        for _ in 0..2 {
            fake.push_kline("BTCUSDT", "15m", candle(base + next * M15, 100.0 + next as f64), true);
            next += 1;
        }
        fake.set_ws_refuse(false);
        let up = wait_event(&mut rx, &mut seen, Duration::from_secs(10), |e| is_stream(e, "market", true)).await;
        assert!(up.is_some(), "round {round}: reconnected");
        let backfill =
            wait_event(&mut rx, &mut seen, Duration::from_secs(5), |e| matches!(e, ExchangeEvent::Backfill { .. }))
                .await;
        let Some(ExchangeEvent::Backfill { symbol, timeframe, candles }) = backfill else {
            panic!("round {round}: no backfill")
        };
        assert_eq!((symbol.as_str(), timeframe), ("BTCUSDT", Timeframe::M15));
        assert!(candles.iter().any(|k| k.open_time == base + (next - 1) * M15), "round {round}: newest missed candle");
        assert!(candles.iter().all(|k| k.close_time < fake.server_time()), "closed candles only");
        assert!(
            fake.wait_for_subscription("btcusdt@kline_15m", Duration::from_secs(5)).await,
            "round {round}: resubscribed"
        );
        assert!(fake.wait_for_subscription("!markPrice@arr@1s", Duration::from_secs(5)).await);
    }
    // One more live candle after the last reconnect.
    fake.push_kline("BTCUSDT", "15m", candle(base + next * M15, 200.0), true);
    let last = base + next * M15;
    wait_event(
        &mut rx,
        &mut seen,
        Duration::from_secs(5),
        |e| matches!(e, ExchangeEvent::Kline { candle, .. } if candle.open_time == last),
    )
    .await
    .expect("live kline after reconnects");
    cancel.cancel();

    let reconnects = seen.iter().filter(|e| is_stream(e, "market", true)).count();
    assert_eq!(reconnects, 3);
    assert_eq!(c.stats().ws_reconnects, 3);

    let mut hub = DataHub::default();
    for ev in &seen {
        apply_market_event(&mut hub, ev, fake.server_time());
    }
    let series = hub.candles("BTCUSDT", Timeframe::M15).unwrap();
    let times: Vec<i64> = series.iter().map(|k| k.open_time).collect();
    let expected: Vec<i64> = (0..=next).map(|i| base + i * M15).collect();
    assert_eq!(times, expected, "every candle once, in order, no gap");
    assert!(series.gaps(Timeframe::M15).is_empty());
}

/// A backfill fetched moments after a candle's close time, before the exchange clock is past it
/// by `CANDLE_CLOSE_MARGIN_MS`, may hold the candle's forming values: it is held back, not
/// sent as closed (consumers ignore a second candle with the same open time, so it would shadow
/// the real close). It is fetched again once final, and the real close from the stream comes
/// through: every closed delivery of that candle carries the final values.
#[tokio::test]
async fn backfill_holds_back_a_candle_that_is_not_final_yet() {
    use kinetic::core::models::CANDLE_CLOSE_MARGIN_MS;
    use support::fake_binance::{FaultAction, FaultScope};
    let fake = FakeBinance::start_default().await;
    let c = public_client(&fake);
    // Server clock 1.2 s before a 15m boundary `b`; the candle [b - 15m, b - 1] is forming.
    let b = Timeframe::M15.align(fake.server_time()) + M15;
    fake.set_clock_skew_ms(b - 1200 - fake.server_time());
    let open = b - M15;
    let (forming, fin) = (candle(open, 100.0), candle(open, 123.0));
    fake.set_klines("BTCUSDT", "15m", vec![forming]);

    let (tx, mut rx) = mpsc::channel(100_000);
    let cancel = CancellationToken::new();
    let control = c.start_streams(tx.into(), cancel.clone()).await.unwrap();
    control.set_kline_symbols(symbols(&["BTCUSDT"]));
    assert!(fake.wait_for_subscription("btcusdt@kline_15m", Duration::from_secs(5)).await);
    fake.push_kline("BTCUSDT", "15m", forming, false);
    let mut seen = Vec::new();
    wait_event(&mut rx, &mut seen, Duration::from_secs(5), |e| matches!(e, ExchangeEvent::Kline { .. }))
        .await
        .expect("forming kline streamed");

    // Just past the close time the stream drops; the reconnect's backfill is answered with the
    // forming values (the request executes, then waits until released).
    while fake.server_time() < b + 50 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let klines = FaultScope::Endpoint("GET".into(), "/fapi/v1/klines".into());
    fake.fail_next(1, klines, FaultAction::Hold { execute_first: true });
    assert!(fake.drop_ws_connections() >= 1);
    assert!(fake.wait_until(Duration::from_secs(3), |f| f.held_requests() == 1).await, "backfill fetch");
    let fetched_at = fake.requests_to("GET", "/fapi/v1/klines")[0].time_ms;
    assert!(
        fetched_at > forming.close_time && fetched_at < forming.close_time + CANDLE_CLOSE_MARGIN_MS,
        "the backfill must fall inside the margin to test it: {} ms after the close time",
        fetched_at - forming.close_time
    );
    // The real close: final values stored for REST and pushed on the new connection.
    fake.push_kline("BTCUSDT", "15m", fin, true);
    fake.release_held_requests();

    let (mut backfilled, mut streamed) = (false, false);
    wait_event(&mut rx, &mut seen, Duration::from_secs(5), |e| {
        match e {
            ExchangeEvent::Backfill { candles, .. } => backfilled |= candles.iter().any(|k| k.open_time == open),
            ExchangeEvent::Kline { candle, closed: true, .. } => streamed |= candle.open_time == open,
            _ => {}
        }
        backfilled && streamed
    })
    .await
    .expect("the candle comes through closed, from the stream and from the second fetch");
    cancel.cancel();

    let closed: Vec<f64> = seen
        .iter()
        .flat_map(|e| match e {
            ExchangeEvent::Backfill { candles, .. } => candles.clone(),
            ExchangeEvent::Kline { candle, closed: true, .. } => vec![*candle],
            _ => Vec::new(),
        })
        .filter(|k| k.open_time == open)
        .map(|k| k.close)
        .collect();
    assert!(closed.len() >= 2 && closed.iter().all(|&v| v == 123.0), "forming values sent as closed: {closed:?}");
    let fetches = fake.requests_to("GET", "/fapi/v1/klines");
    assert_eq!(fetches.len(), 2, "fetched again once final");
    assert!(fetches[1].time_ms > forming.close_time + CANDLE_CLOSE_MARGIN_MS, "second fetch too early");
}

/// A connection that is accepted but silent (wrong route) is detected and recycled.
#[tokio::test]
async fn silent_stream_is_detected_as_stale_and_reconnected() {
    let fake = FakeBinance::start_default().await;
    let c = public_client(&fake);
    let (tx, mut rx) = mpsc::channel(100_000);
    let cancel = CancellationToken::new();
    let _control = c.start_streams(tx.into(), cancel.clone()).await.unwrap();
    let mut seen = Vec::new();
    assert!(
        wait_event(&mut rx, &mut seen, Duration::from_secs(5), |e| matches!(e, ExchangeEvent::MarkPrices(_)))
            .await
            .is_some()
    );
    fake.set_ws_silent(true);
    let stale = wait_event(
        &mut rx,
        &mut seen,
        Duration::from_secs(8),
        |e| matches!(e, ExchangeEvent::Stream(StreamEvent::Stale { stream, .. }) if stream == "market"),
    )
    .await;
    let Some(ExchangeEvent::Stream(StreamEvent::Stale { silent_ms, .. })) = stale else { panic!("no stale event") };
    assert!(silent_ms >= 2500);
    fake.set_ws_silent(false);
    assert!(wait_event(&mut rx, &mut seen, Duration::from_secs(8), |e| is_stream(e, "market", true)).await.is_some());
    assert!(
        wait_event(&mut rx, &mut seen, Duration::from_secs(5), |e| matches!(e, ExchangeEvent::MarkPrices(_)))
            .await
            .is_some()
    );
    cancel.cancel();
}

#[tokio::test]
async fn kline_subscriptions_follow_the_control_set() {
    let fake = FakeBinance::start_default().await;
    let c = public_client(&fake);
    let (tx, mut rx) = mpsc::channel(100_000);
    let cancel = CancellationToken::new();
    let control = c.start_streams(tx.into(), cancel.clone()).await.unwrap();
    control.set_kline_symbols(symbols(&["BTCUSDT", "ETHUSDT"]));
    for s in ["btcusdt@kline_15m", "btcusdt@kline_1h", "btcusdt@kline_4h", "ethusdt@kline_4h"] {
        assert!(fake.wait_for_subscription(s, Duration::from_secs(5)).await, "{s}");
    }
    control.set_kline_symbols(symbols(&["SOLUSDT", "ETHUSDT"]));
    assert!(fake.wait_for_subscription("solusdt@kline_1h", Duration::from_secs(5)).await);
    assert!(fake.wait_until(Duration::from_secs(5), |f| !f.subscriptions().contains("btcusdt@kline_15m")).await);
    assert!(fake.subscriptions().contains("ethusdt@kline_15m"));
    assert_eq!(fake.ws_connects_total(), 1, "changes are live, no reconnect");
    // Malformed frames are counted and dropped, the stream goes on.
    fake.push_raw("!markPrice@arr@1s", serde_json::json!({"e": "markPriceUpdate", "p": "not a number"}));
    let mut seen = Vec::new();
    assert!(fake.wait_until(Duration::from_secs(5), |_| c.stats().dropped_messages >= 1).await);
    assert!(
        wait_event(&mut rx, &mut seen, Duration::from_secs(5), |e| matches!(e, ExchangeEvent::MarkPrices(_)))
            .await
            .is_some()
    );
    cancel.cancel();
}

#[tokio::test]
async fn user_stream_delivers_orders_account_and_stops_and_survives_key_expiry() {
    let fake = FakeBinance::start(FakeConfig::default().without_market_tick()).await;
    let c = client(&fake);
    let (tx, mut rx) = mpsc::channel(100_000);
    let cancel = CancellationToken::new();
    let _control = c.start_streams(tx.into(), cancel.clone()).await.unwrap();
    let mut seen = Vec::new();
    assert!(wait_event(&mut rx, &mut seen, Duration::from_secs(5), |e| is_stream(e, "user", false)).await.is_some());
    assert!(fake.ws_connections().iter().any(|w| w.path.starts_with("/private/ws?listenKey=")));

    let order = MarketOrderRequest {
        symbol: "BTCUSDT".into(),
        side: Side::Buy,
        qty: d("0.01"),
        reduce_only: false,
        client_order_id: "ke-ws-1".into(),
    };
    c.place_market(&order).await.unwrap();
    let fill = wait_event(&mut rx, &mut seen, Duration::from_secs(5), |e| {
        matches!(e, ExchangeEvent::OrderUpdate { fill: Some(_), .. })
    })
    .await;
    let Some(ExchangeEvent::OrderUpdate { report, fill: Some(fill) }) = fill else { panic!("no fill") };
    assert_eq!((report.client_order_id.as_str(), fill.qty), ("ke-ws-1", d("0.01")));
    assert!(fill.fee > d("0"));
    let acct =
        wait_event(&mut rx, &mut seen, Duration::from_secs(5), |e| matches!(e, ExchangeEvent::AccountUpdate { .. }))
            .await;
    let Some(ExchangeEvent::AccountUpdate { positions, .. }) = acct else { panic!("no account update") };
    assert_eq!(positions[0].qty, d("0.01"));

    let stop = StopRequest {
        symbol: "BTCUSDT".into(),
        side: Side::Sell,
        qty: d("0.01"),
        trigger_price: d("60000"),
        client_id: "ke-ws-stop".into(),
    };
    c.place_stop(&stop).await.unwrap();
    let s = wait_event(&mut rx, &mut seen, Duration::from_secs(5), |e| matches!(e, ExchangeEvent::StopUpdate(_))).await;
    assert!(
        matches!(s, Some(ExchangeEvent::StopUpdate(ref s)) if s.status == StopStatus::New && s.client_id == "ke-ws-stop")
    );
    // The stop fires at the mark: triggered, then finished; the budget follows.
    fake.set_mark_price("BTCUSDT", d("59000"));
    let fin = wait_event(
        &mut rx,
        &mut seen,
        Duration::from_secs(5),
        |e| matches!(e, ExchangeEvent::StopUpdate(s) if s.status == StopStatus::Finished),
    )
    .await;
    assert!(fin.is_some());
    assert_eq!(c.stats().algo_orders_open, 0);
    let stop_updates: Vec<_> = seen.iter().filter(|e| matches!(e, ExchangeEvent::StopUpdate(_))).collect();
    let mut keys: Vec<String> = stop_updates
        .iter()
        .filter_map(|e| match e {
            ExchangeEvent::StopUpdate(s) => Some(format!("{}:{:?}", s.algo_id, s.status)),
            _ => None,
        })
        .collect();
    let n = keys.len();
    keys.dedup();
    assert!(keys.len() >= n - 1, "no replayed duplicates: {keys:?}");

    // listenKey expiry: a new key, a new connection, events flow again.
    fake.expire_listen_key();
    assert!(wait_event(&mut rx, &mut seen, Duration::from_secs(10), |e| is_stream(e, "user", true)).await.is_some());
    let order2 = MarketOrderRequest { client_order_id: "ke-ws-2".into(), ..order };
    c.place_market(&order2).await.unwrap();
    let again = wait_event(
        &mut rx,
        &mut seen,
        Duration::from_secs(5),
        |e| matches!(e, ExchangeEvent::OrderUpdate { report, .. } if report.client_order_id == "ke-ws-2"),
    )
    .await;
    assert!(again.is_some(), "events after the new listenKey");
    assert!(fake.requests_to("POST", "/fapi/v1/listenKey").len() >= 2);
    cancel.cancel();
}

/// Connections are recycled before Binance's 24 h limit (shrunk to 1.5 s here).
#[tokio::test]
async fn connections_rotate_before_their_maximum_age() {
    let fake = FakeBinance::start_default().await;
    let c = exchange_helpers::public_client_with(&fake, |o| o.max_connection_age = Duration::from_millis(1500));
    let (tx, mut rx) = mpsc::channel(100_000);
    let cancel = CancellationToken::new();
    let _control = c.start_streams(tx.into(), cancel.clone()).await.unwrap();
    let mut seen = Vec::new();
    let rotated = wait_event(
        &mut rx,
        &mut seen,
        Duration::from_secs(5),
        |e| matches!(e, ExchangeEvent::Stream(StreamEvent::Disconnected { reason, .. }) if reason.contains("24 h")),
    )
    .await;
    assert!(rotated.is_some());
    assert!(wait_event(&mut rx, &mut seen, Duration::from_secs(5), |e| is_stream(e, "market", true)).await.is_some());
    assert!(!seen.iter().any(|e| matches!(e, ExchangeEvent::Stream(StreamEvent::Stale { .. }))));
    cancel.cancel();
}

/// The server pings often and drops clients that do not answer: the client's automatic pongs
/// keep both connections; the listenKey is kept alive on schedule.
#[tokio::test]
async fn pings_are_answered_and_the_listen_key_is_kept_alive() {
    let cfg = FakeConfig { ws_ping_interval_ms: 150, ws_pong_timeout_ms: 600, ..FakeConfig::default() };
    let fake = FakeBinance::start(cfg).await;
    let c = exchange_helpers::client_with(&fake, |_, o| o.listen_key_keepalive = Duration::from_millis(400));
    let (tx, mut rx) = mpsc::channel(100_000);
    let cancel = CancellationToken::new();
    let _control = c.start_streams(tx.into(), cancel.clone()).await.unwrap();
    let mut seen = Vec::new();
    assert!(wait_event(&mut rx, &mut seen, Duration::from_secs(5), |e| is_stream(e, "user", false)).await.is_some());
    // Drain for 2 s: no disconnect of either stream.
    let _ = wait_event(&mut rx, &mut seen, Duration::from_secs(2), |_| false).await;
    cancel.cancel();
    assert!(
        !seen.iter().any(|e| matches!(e, ExchangeEvent::Stream(StreamEvent::Disconnected { .. }))),
        "{:?}",
        seen.iter().filter(|e| matches!(e, ExchangeEvent::Stream(_))).collect::<Vec<_>>()
    );
    assert_eq!(fake.ws_connects_total(), 2, "one market and one user connection");
    assert!(fake.requests_to("PUT", "/fapi/v1/listenKey").len() >= 3);
}
