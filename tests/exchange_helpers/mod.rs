//! Helpers shared by the `exchange_*` integration tests: a Binance client pointed at the fake
//! server with millisecond delays, and event collection.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use kinetic::config::{Credentials, ExchangeSettings, MarginType, Secret};
use kinetic::exchange::ExchangeEvent;
use kinetic::exchange::binance::{BinanceClient, ClientOptions};
use tokio::sync::mpsc;

use crate::support::fake_binance::FakeBinance;

pub fn settings(fake: &FakeBinance) -> ExchangeSettings {
    ExchangeSettings {
        rest_url: fake.rest_url(),
        ws_url: fake.ws_url(),
        testnet: false,
        recv_window_ms: 5000,
        margin_type: MarginType::Isolated,
        allow_hedge_mode: false,
        request_timeout_secs: 2,
        stream_stale_secs: 3,
        time_sync_interval_secs: 300,
        exchange_info_refresh_secs: 3600,
        trading_status_interval_secs: 300,
        rest_min_spacing_ms: 10,
        weight_limit_per_min: 2400,
        weight_slowdown_pct: 80.0,
        spot_rest_url: fake.rest_url(),
        refuse_unsafe_key: false,
        dumps_url: "http://127.0.0.1:9".into(),
    }
}

pub fn fast_options() -> ClientOptions {
    ClientOptions {
        retry_base: Duration::from_millis(20),
        ws_backoff_base: Duration::from_millis(20),
        ws_backoff_max: Duration::from_millis(200),
        stale_after: Some(Duration::from_millis(2500)),
        ..ClientOptions::default()
    }
}

pub fn credentials(fake: &FakeBinance) -> Credentials {
    Credentials { api_key: Secret::new(fake.api_key()), api_secret: Secret::new(fake.api_secret()) }
}

pub fn client(fake: &FakeBinance) -> BinanceClient {
    BinanceClient::with_options(&settings(fake), Some(credentials(fake)), fast_options()).unwrap()
}

pub fn client_with(fake: &FakeBinance, edit: impl FnOnce(&mut ExchangeSettings, &mut ClientOptions)) -> BinanceClient {
    let mut s = settings(fake);
    let mut o = fast_options();
    edit(&mut s, &mut o);
    BinanceClient::with_options(&s, Some(credentials(fake)), o).unwrap()
}

pub fn public_client(fake: &FakeBinance) -> BinanceClient {
    BinanceClient::with_options(&settings(fake), None, fast_options()).unwrap()
}

/// Receives events until `pred` matches one (returned) or `timeout` passes (None). Every event
/// received is also pushed to `seen`.
pub async fn wait_event(
    rx: &mut mpsc::Receiver<ExchangeEvent>,
    seen: &mut Vec<ExchangeEvent>,
    timeout: Duration,
    mut pred: impl FnMut(&ExchangeEvent) -> bool,
) -> Option<ExchangeEvent> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let ev = tokio::time::timeout_at(deadline, rx.recv()).await.ok()??;
        seen.push(ev.clone());
        if pred(&ev) {
            return Some(ev);
        }
    }
}

pub fn public_client_with(fake: &FakeBinance, edit: impl FnOnce(&mut ClientOptions)) -> BinanceClient {
    let mut o = fast_options();
    edit(&mut o);
    BinanceClient::with_options(&settings(fake), None, o).unwrap()
}
