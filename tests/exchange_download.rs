//! `download-data` against the fake server: paged downloads (more than one 1500-candle page),
//! closed candles only, the data-file format, resuming where a file ends, and no signed call.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod exchange_helpers;
mod support;

use exchange_helpers::public_client;
use kinetic::commands::download::download;
use kinetic::core::models::{Candle, Timeframe};
use kinetic::data::{HEADER, load_candles};
use support::fake_binance::{FakeBinance, FakeConfig};

fn candles(tf: Timeframe, from: i64, to: i64) -> Vec<Candle> {
    let step = tf.duration_ms();
    (0..)
        .map(|i| from + i * step)
        .take_while(|t| *t <= to)
        .map(|t| {
            let p = 100.0 + (t / step % 50) as f64;
            Candle {
                open_time: t,
                close_time: t + step - 1,
                open: p,
                high: p + 1.5,
                low: p - 1.5,
                close: p + 0.5,
                volume: 3.0,
                quote_volume: 3.0 * p,
                trades: 7,
                taker_buy_volume: 1.0,
                taker_buy_quote_volume: p,
            }
        })
        .collect()
}

#[tokio::test]
async fn download_pages_writes_closed_candles_and_resumes() {
    let fake = FakeBinance::start(FakeConfig::default().without_market_tick()).await;
    let now = fake.server_time();
    let tf = Timeframe::M15;
    // 20 days of 15m candles (1920 > one page of 1500), the last one still open.
    let start = tf.align(now - 20 * 86_400_000);
    fake.set_klines("BTCUSDT", "15m", candles(tf, start, tf.align(now)));
    fake.set_klines(
        "ETHUSDT",
        "1h",
        candles(Timeframe::H1, Timeframe::H1.align(now - 25 * 86_400_000), Timeframe::H1.align(now)),
    );
    let dir = tempfile::tempdir().unwrap();
    let c = public_client(&fake);

    // First run: only the older half, as if it had been downloaded days ago.
    let reports =
        download(&c, dir.path(), &["BTCUSDT".into(), "ETHUSDT".into()], &[tf, Timeframe::H1], 20).await.unwrap();
    assert_eq!(reports.len(), 4);
    let btc = load_candles(dir.path(), "BTCUSDT", tf).unwrap();
    let expected = (tf.align(now) - start) / tf.duration_ms();
    assert_eq!(btc.len() as i64, expected, "every closed candle, not the open one");
    assert_eq!(btc.first().map(|k| k.open_time), Some(start));
    assert!(btc.iter().all(|k| k.close_time < now));
    assert!(btc.windows(2).all(|w| w[1].open_time - w[0].open_time == tf.duration_ms()));
    assert!(fake.requests_to("GET", "/fapi/v1/klines").len() >= 2, "paged");
    let eth = load_candles(dir.path(), "ETHUSDT", Timeframe::H1).unwrap();
    assert_eq!(eth.len(), 20 * 24);
    assert!(
        load_candles(dir.path(), "ETHUSDT", tf).is_err() || load_candles(dir.path(), "ETHUSDT", tf).unwrap().is_empty()
    );
    let text = std::fs::read_to_string(dir.path().join("BTCUSDT-15m.csv")).unwrap();
    assert_eq!(text.lines().next(), Some(HEADER));

    // Second run: nothing new, nothing rewritten.
    let again = download(&c, dir.path(), &["BTCUSDT".into()], &[tf], 20).await.unwrap();
    assert_eq!(again[0].added, 0);
    assert_eq!(again[0].total, btc.len());

    // Truncate the file to its first 100 rows: the next run appends the rest once.
    let keep: Vec<&str> = text.lines().take(101).collect();
    std::fs::write(dir.path().join("BTCUSDT-15m.csv"), keep.join("\n") + "\n").unwrap();
    let resumed = download(&c, dir.path(), &["BTCUSDT".into()], &[tf], 20).await.unwrap();
    assert_eq!(resumed[0].added, btc.len() - 100);
    assert_eq!(load_candles(dir.path(), "BTCUSDT", tf).unwrap(), btc);

    assert_eq!(fake.signed_request_count(), 0);
}

/// The CLI path: `kinetic download-data` with the REST URL from the environment, and credentials
/// in the environment that must not be used.
#[test]
fn cli_download_data_uses_the_configured_endpoint_without_signing() {
    use clap::Parser;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let fake = rt.block_on(FakeBinance::start(FakeConfig::default().without_market_tick()));
    let now = fake.server_time();
    let tf = Timeframe::H1;
    fake.set_klines("SOLUSDT", "1h", candles(tf, tf.align(now - 3 * 86_400_000), tf.align(now)));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_string_lossy().to_string();
    let cli = kinetic::cli::Cli::try_parse_from([
        "kinetic",
        "download-data",
        "--symbols",
        "solusdt",
        "--intervals",
        "1h",
        "--days",
        "2",
        "--out",
        &out,
    ])
    .unwrap();
    let env = std::collections::HashMap::from([
        ("KINETIC__EXCHANGE__REST_URL".to_string(), fake.rest_url()),
        ("BINANCE_API_KEY".to_string(), fake.api_key().to_string()),
        ("BINANCE_API_SECRET".to_string(), fake.api_secret().to_string()),
    ]);
    kinetic::cli::run(cli, env).unwrap();
    assert_eq!(load_candles(dir.path(), "SOLUSDT", tf).unwrap().len(), 48);
    assert_eq!(fake.signed_request_count(), 0);
    assert!(fake.requests().iter().all(|r| !r.api_key_present));
    let bad =
        kinetic::cli::Cli::try_parse_from(["kinetic", "download-data", "--symbols", "SOLUSDT", "--intervals", "7m"])
            .unwrap();
    let err = kinetic::cli::run(bad, std::collections::HashMap::new()).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    drop(fake);
}
