//! `download-data` against the fake server: paged downloads (more than one 1500-candle page),
//! closed candles only, the data-file format, resuming where a file ends, and no signed call;
//! the funding-rate history the backtest charges, paged (more than one 1000-row page), merged
//! and resumed the same way.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

mod exchange_helpers;
mod support;

use exchange_helpers::public_client;
use kinetic::backtest::feed::FundingSource;
use kinetic::commands::download::{download, download_funding};
use kinetic::core::models::{Candle, Timeframe};
use kinetic::data::funding_history;
use kinetic::data::{HEADER, load_candles};
use rust_decimal::Decimal;
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
    // No funding history published for it: no funding file, the backtest's flat rate applies.
    assert!(!dir.path().join("funding").exists());
    assert_eq!(fake.signed_request_count(), 0);
    assert!(fake.requests().iter().all(|r| !r.api_key_present));
    let bad =
        kinetic::cli::Cli::try_parse_from(["kinetic", "download-data", "--symbols", "SOLUSDT", "--intervals", "7m"])
            .unwrap();
    let err = kinetic::cli::run(bad, std::collections::HashMap::new()).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    drop(fake);
}

const H8: i64 = 8 * 3_600_000;

/// Fundings every 8 h (with Binance's few ms of jitter on some), rate and mark derived from the
/// time so each row is recognisable.
fn fundings(from: i64, to: i64) -> Vec<(i64, Decimal, Decimal)> {
    (0..)
        .map(|i| from + i * H8)
        .take_while(|t| *t <= to)
        .map(|t| {
            let k = t / H8;
            let jitter = if k % 3 == 0 { 7 } else { 0 };
            (t + jitter, Decimal::new(k % 21 - 10, 5), Decimal::new(60_000 + k % 97, 0))
        })
        .collect()
}

#[tokio::test]
async fn funding_history_is_paged_merged_and_resumed() {
    let fake = FakeBinance::start(FakeConfig::default().without_market_tick()).await;
    let now = fake.server_time();
    let first = (now - 420 * 86_400_000) / H8 * H8;
    let all = fundings(first, now);
    fake.set_funding_history("BTCUSDT", all.clone());
    let dir = tempfile::tempdir().unwrap();
    let c = public_client(&fake);

    // 30 days first, then 410 days: 1230 fundings, more than one page; the older ones are
    // filled in before the 30 days already there.
    let short = download_funding(&c, dir.path(), &["BTCUSDT".into()], 30).await.unwrap();
    assert_eq!(short[0].total, all.iter().filter(|r| r.0 >= now - 30 * 86_400_000).count());
    let reports = download_funding(&c, dir.path(), &["BTCUSDT".into()], 410).await.unwrap();
    let window: Vec<_> = all.iter().filter(|r| r.0 >= now - 410 * 86_400_000).cloned().collect();
    assert!(window.len() > 1000);
    assert_eq!((reports[0].added, reports[0].total), (window.len() - short[0].total, window.len()));
    assert_eq!(reports[0].path, dir.path().join("funding").join("BTCUSDT.csv"));
    assert!(fake.requests_to("GET", "/fapi/v1/fundingRate").len() >= 2, "paged");
    let rows = funding_history::read(&reports[0].path).unwrap();
    let got: Vec<(i64, Decimal, Decimal)> =
        rows.iter().map(|r| (r.time, r.rate.parse().unwrap(), r.mark_price.parse().unwrap())).collect();
    assert_eq!(got, window, "every funding of the window, as served");
    let text = std::fs::read_to_string(&reports[0].path).unwrap();
    assert_eq!(text.lines().next(), Some(funding_history::FUNDING_HEADER));

    // The backtest charges these rates, on the hour (the jitter settled).
    let mut src = FundingSource::open(&reports[0].path).unwrap();
    for (t, rate, _) in window.iter().step_by(97) {
        let hour = t / H8 * H8;
        assert_eq!(src.rate_at(hour).unwrap(), Some(rate.to_string().parse::<f64>().unwrap()), "at {hour}");
    }

    // Rerun: nothing new, one request from after the newest row.
    let before = fake.requests_to("GET", "/fapi/v1/fundingRate").len();
    let again = download_funding(&c, dir.path(), &["BTCUSDT".into()], 410).await.unwrap();
    assert_eq!((again[0].added, again[0].total), (0, window.len()));
    assert_eq!(fake.requests_to("GET", "/fapi/v1/fundingRate").len(), before + 1);

    // The newest five rows lost: the next run fetches them again, and the file is as before.
    let mut cut: Vec<&str> = text.lines().collect();
    cut.truncate(cut.len() - 5);
    std::fs::write(&reports[0].path, cut.join("\n") + "\n").unwrap();
    let resumed = download_funding(&c, dir.path(), &["BTCUSDT".into()], 410).await.unwrap();
    assert_eq!((resumed[0].added, resumed[0].total), (5, window.len()));
    assert_eq!(std::fs::read_to_string(&reports[0].path).unwrap(), text, "byte for byte as the first download");

    // A damaged funding file already there is bad input, named, and left as it is.
    let eth = dir.path().join("funding").join("ETHUSDT.csv");
    std::fs::write(&eth, "funding_time,funding_rate,mark_price\n1,2,3\n").unwrap();
    let e = download_funding(&c, dir.path(), &["ETHUSDT".into()], 1).await.unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    assert!(e.to_string().contains("ETHUSDT.csv:2"), "{e}");
    assert_eq!(std::fs::read_to_string(&eth).unwrap(), "funding_time,funding_rate,mark_price\n1,2,3\n");

    // A symbol the exchange does not list is bad input.
    let e = download_funding(&c, dir.path(), &["NOPEUSDT".into()], 1).await.unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    assert_eq!(fake.signed_request_count(), 0);
}
