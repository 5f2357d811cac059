//! `download-data --source dumps` against a fake archive on 127.0.0.1 (never the internet):
//! real-format zips (one 12-column CSV, with and without a header, built here from the shipped
//! sample candles) and their `.CHECKSUM` files; archives saved as downloaded, a rerun fetching
//! nothing, a damaged local file fetched again, a checksum mismatch refused (nothing saved), a
//! missing month reported (exit 2) while the others are saved, other files of the same period
//! refused, a bad `exchange.dumps_url` refused, and `kinetic backtest --data DIR` replaying what
//! was downloaded exactly as it replays the sample.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{StatusCode, Uri};
use clap::Parser as _;
use kinetic::cli::{Cli, run};
use kinetic::commands::download_dumps::download;
use kinetic::core::models::Timeframe;
use kinetic::data::dumps::{DumpPeriod, sha256_hex};

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");
const PREFIX: &str = "/data/futures/um/monthly/klines";

/// The fake archive: path → body, and every path asked for.
#[derive(Clone, Default)]
struct Archive {
    files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    asked: Arc<Mutex<Vec<String>>>,
}

impl Archive {
    fn put(&self, path: String, body: Vec<u8>) {
        self.files.lock().unwrap().insert(path, body);
    }
    fn asked_zips(&self) -> Vec<String> {
        self.asked.lock().unwrap().iter().filter(|p| p.ends_with(".zip")).cloned().collect()
    }
}

async fn serve(State(a): State<Archive>, uri: Uri) -> (StatusCode, Vec<u8>) {
    let path = uri.path().to_string();
    a.asked.lock().unwrap().push(path.clone());
    match a.files.lock().unwrap().get(&path) {
        Some(body) => (StatusCode::OK, body.clone()),
        None => (StatusCode::NOT_FOUND, b"<Error><Code>NoSuchKey</Code></Error>".to_vec()),
    }
}

/// Starts the fake archive on its own runtime; returns its base URL.
fn start(archive: &Archive, rt: &tokio::runtime::Runtime) -> String {
    let app = axum::Router::new().fallback(serve).with_state(archive.clone());
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// A zip holding one deflated entry, as Binance publishes them (no ZIP64, no data descriptor).
fn zip_one(name: &str, data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    let packed = enc.finish().unwrap();
    let mut crc = flate2::Crc::new();
    crc.update(data);
    let (crc, csize, size, nlen) = (crc.sum(), packed.len() as u32, data.len() as u32, name.len() as u16);
    let mut z = Vec::new();
    let common = |z: &mut Vec<u8>| {
        for v in [20u16, 0, 8, 0, 0] {
            z.extend(v.to_le_bytes()); // version needed, flags, deflate, time, date
        }
        for v in [crc, csize, size] {
            z.extend(v.to_le_bytes());
        }
        z.extend(nlen.to_le_bytes());
        z.extend(0u16.to_le_bytes()); // extra field length
    };
    z.extend(0x0403_4b50u32.to_le_bytes());
    common(&mut z);
    z.extend(name.as_bytes());
    z.extend(&packed);
    let central_at = z.len() as u32;
    z.extend(0x0201_4b50u32.to_le_bytes());
    z.extend(20u16.to_le_bytes()); // version made by
    common(&mut z);
    for v in [0u16, 0, 0] {
        z.extend(v.to_le_bytes()); // comment length, disk, internal attributes
    }
    z.extend(0u32.to_le_bytes()); // external attributes
    z.extend(0u32.to_le_bytes()); // local header offset
    z.extend(name.as_bytes());
    let central_len = z.len() as u32 - central_at;
    z.extend(0x0605_4b50u32.to_le_bytes());
    for v in [0u16, 0, 1, 1] {
        z.extend(v.to_le_bytes());
    }
    z.extend(central_len.to_le_bytes());
    z.extend(central_at.to_le_bytes());
    z.extend(0u16.to_le_bytes());
    z
}

/// The sample's rows of `tf` in one UTC month, as 12-column dump rows (the 12th, `ignore`, 0).
fn month_rows(tf: Timeframe, year: i32, month: u32) -> Vec<String> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(
        std::fs::File::open(Path::new(MANIFEST).join(format!("data/sample/BTCUSDT-{tf}.csv.gz"))).unwrap(),
    )
    .read_to_string(&mut text)
    .unwrap();
    let start = chrono::NaiveDate::from_ymd_opt(year, month, 1).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc();
    let end = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    let end = chrono::NaiveDate::from_ymd_opt(end.0, end.1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc();
    text.lines()
        .skip(1)
        .filter(|l| {
            let t: i64 = l.split(',').next().unwrap().parse().unwrap();
            t >= start.timestamp_millis() && t < end.timestamp_millis()
        })
        .map(|l| format!("{l},0"))
        .collect()
}

const HEADER12: &str =
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore";

/// Publishes BTCUSDT 15m/1h/4h for 2026-02 (with a header) and 2026-03 (without), with checksums.
fn publish(archive: &Archive) {
    for tf in Timeframe::STRATEGY {
        for (month, header) in [(2u32, true), (3, false)] {
            let name = format!("BTCUSDT-{tf}-2026-{month:02}");
            let mut csv = if header { format!("{HEADER12}\n") } else { String::new() };
            for r in month_rows(tf, 2026, month) {
                csv.push_str(&r);
                csv.push('\n');
            }
            let zip = zip_one(&format!("{name}.csv"), csv.as_bytes());
            let sum = format!("{}  {name}.zip\n", sha256_hex(&zip));
            archive.put(format!("{PREFIX}/BTCUSDT/{tf}/{name}.zip.CHECKSUM"), sum.into_bytes());
            archive.put(format!("{PREFIX}/BTCUSDT/{tf}/{name}.zip"), zip);
        }
    }
}

fn months(ms: &[u32]) -> Vec<DumpPeriod> {
    ms.iter().map(|m| DumpPeriod::Month { year: 2026, month: *m }).collect()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

fn cli(args: &[&str], base: &str) -> Result<(), kinetic::cli::CliError> {
    let mut argv = vec!["kinetic", "download-data"];
    argv.extend(args);
    let env = HashMap::from([("KINETIC__EXCHANGE__DUMPS_URL".to_string(), base.to_string())]);
    run(Cli::try_parse_from(argv).unwrap(), env)
}

/// `kinetic backtest` of BTCUSDT from 2026-02-22 to `to` over `data`: its `trades.csv` and
/// `metrics.json`.
fn backtest_btc(data: &Path, out: &Path, to: &str) -> (String, serde_json::Value) {
    let o = Command::new(env!("CARGO_BIN_EXE_kinetic"))
        .current_dir(MANIFEST)
        .env_remove("RUST_LOG")
        .args(["backtest", "--no-progress", "--symbols", "BTCUSDT", "--from", "2026-02-22", "--to", to])
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    (std::fs::read_to_string(out.join("trades.csv")).unwrap(), m)
}

#[test]
fn archives_are_verified_saved_as_downloaded_and_resumed() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let archive = Archive::default();
    publish(&archive);
    let base = start(&archive, &rt);
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let syms = ["BTCUSDT".to_string()];
    let (saved, missing) =
        rt.block_on(download(&http, &base, dir.path(), &syms, &Timeframe::STRATEGY, &months(&[2, 3]))).unwrap();
    assert!(missing.is_empty());
    assert_eq!(saved.len(), 6);
    let feb_15m = saved.iter().find(|r| r.timeframe == Timeframe::M15 && r.period.label() == "2026-02").unwrap();
    assert_eq!(feb_15m.downloaded, Some(28 * 96));
    // Saved byte for byte as published, with the checksum beside; nothing else left behind.
    let served = archive.files.lock().unwrap()[&format!("{PREFIX}/BTCUSDT/15m/BTCUSDT-15m-2026-02.zip")].clone();
    assert_eq!(std::fs::read(dir.path().join("BTCUSDT-15m-2026-02.zip")).unwrap(), served);
    assert_eq!(names(dir.path()).len(), 12, "{:?}", names(dir.path()));
    assert!(names(dir.path()).iter().all(|n| n.ends_with(".zip") || n.ends_with(".zip.CHECKSUM")));

    // A rerun downloads nothing.
    let before = archive.asked_zips().len();
    let (again, _) =
        rt.block_on(download(&http, &base, dir.path(), &syms, &Timeframe::STRATEGY, &months(&[2, 3]))).unwrap();
    assert!(again.iter().all(|r| r.downloaded.is_none()));
    assert_eq!(archive.asked_zips().len(), before);

    // A damaged local file (an interrupted copy) is fetched again, and only it.
    let path = dir.path().join("BTCUSDT-1h-2026-03.zip");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let (fixed, _) =
        rt.block_on(download(&http, &base, dir.path(), &syms, &Timeframe::STRATEGY, &months(&[2, 3]))).unwrap();
    assert_eq!(fixed.iter().filter(|r| r.downloaded.is_some()).count(), 1);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    assert_eq!(archive.asked_zips().len(), before + 1);

    // The backtest reads the folder as it is, and replays it exactly as the sample.
    let backtest = |data: &Path, out: &Path| backtest_btc(data, out, "2026-03-31").0;
    let outs = tempfile::tempdir().unwrap();
    let from_dumps = backtest(dir.path(), &outs.path().join("dumps"));
    // The sample's candle files alone (its funding-rate files would change the costs).
    let sample = tempfile::tempdir().unwrap();
    for tf in Timeframe::STRATEGY {
        let name = format!("BTCUSDT-{tf}.csv.gz");
        std::fs::copy(Path::new(MANIFEST).join("data/sample").join(&name), sample.path().join(&name)).unwrap();
    }
    let from_sample = backtest(sample.path(), &outs.path().join("sample"));
    assert!(from_dumps.lines().count() > 1, "no trades:\n{from_dumps}");
    assert_eq!(from_dumps, from_sample);
}

#[test]
fn a_checksum_mismatch_is_refused_and_nothing_saved() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let archive = Archive::default();
    publish(&archive);
    let key = format!("{PREFIX}/BTCUSDT/4h/BTCUSDT-4h-2026-02.zip");
    let mut zip = archive.files.lock().unwrap()[&key].clone();
    let last = zip.len() - 30;
    zip[last] ^= 0xff; // a flipped byte in transit
    archive.put(key, zip);
    let base = start(&archive, &rt);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let err = cli(
        &[
            "--symbols",
            "BTCUSDT",
            "--intervals",
            "4h",
            "--source",
            "dumps",
            "--from",
            "2026-02",
            "--to",
            "2026-02",
            "--out",
            out,
        ],
        &base,
    )
    .unwrap_err();
    assert_eq!(err.exit_code(), 1, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("checksum mismatch") && msg.contains("BTCUSDT-4h-2026-02.zip"), "{msg}");
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
}

#[test]
fn a_missing_month_is_reported_and_the_others_saved() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let archive = Archive::default();
    publish(&archive);
    let base = start(&archive, &rt);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let err = cli(
        &[
            "--symbols",
            "btcusdt",
            "--intervals",
            "1h",
            "--source",
            "dumps",
            "--from",
            "2026-02",
            "--to",
            "2026-04",
            "--out",
            out,
        ],
        &base,
    )
    .unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("BTCUSDT 1h 2026-04") && msg.contains("HTTP 404") && msg.contains("2 other archives were saved"),
        "{msg}"
    );
    assert!(msg.contains(&format!("{base}{PREFIX}/BTCUSDT/1h/BTCUSDT-1h-2026-04.zip")), "{msg}");
    assert_eq!(
        names(dir.path()),
        [
            "BTCUSDT-1h-2026-02.zip",
            "BTCUSDT-1h-2026-02.zip.CHECKSUM",
            "BTCUSDT-1h-2026-03.zip",
            "BTCUSDT-1h-2026-03.zip.CHECKSUM"
        ]
    );
}

#[test]
fn bad_input_exits_2_naming_what_is_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    // Nothing listens there: every refusal below happens before a request.
    let base = "http://127.0.0.1:9";
    let cases: [(&[&str], &str); 5] = [
        (&["--symbols", "BTCUSDT", "--source", "dumps", "--out", out], "needs --from"),
        (
            &["--symbols", "BTCUSDT", "--source", "dumps", "--from", "2026-2", "--out", out],
            "`2026-2` is neither a month (YYYY-MM",
        ),
        (
            &["--symbols", "BTCUSDT", "--source", "dumps", "--from", "2026-02", "--to", "2026-03-01", "--out", out],
            "both be months",
        ),
        (
            &["--symbols", "BTCUSDT", "--source", "dumps", "--from", "2026-02", "--days", "3", "--out", out],
            "--days is for --source rest",
        ),
        (&["--symbols", "BTCUSDT", "--from", "2026-02", "--out", out], "--source dumps"),
    ];
    for (args, needle) in cases {
        let err = cli(args, base).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        assert!(err.to_string().contains(needle), "{args:?}: {err}");
    }
    // A folder holding the whole series (a REST download) already: refused, naming the file.
    std::fs::write(dir.path().join("BTCUSDT-15m.csv"), "").unwrap();
    let err = cli(
        &["--symbols", "BTCUSDT", "--intervals", "15m", "--source", "dumps", "--from", "2026-02", "--out", out],
        base,
    )
    .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("already holds BTCUSDT-15m.csv"), "{err}");
    // The archive's URL is validated like the exchange's.
    let err =
        cli(&["--symbols", "BTCUSDT", "--source", "dumps", "--from", "2026-02", "--out", out], "ftp://data.example")
            .unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(err.to_string().contains("exchange.dumps_url"), "{err}");
    // An unknown source is refused by the argument parser (exit 2 in `main`), listing both.
    let e =
        Cli::try_parse_from(["kinetic", "download-data", "--symbols", "BTCUSDT", "--source", "vision"]).unwrap_err();
    assert!(e.to_string().contains("rest") && e.to_string().contains("dumps"), "{e}");
}

const FUNDING_PREFIX: &str = "/data/futures/um/monthly/fundingRate";

/// The sample's BTCUSDT fundings in one UTC month: (time, rate as the archive writes it, a plain
/// decimal).
fn sample_fundings(year: i32, month: u32) -> Vec<(i64, String)> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(
        std::fs::File::open(Path::new(MANIFEST).join("data/sample/funding/BTCUSDT.csv.gz")).unwrap(),
    )
    .read_to_string(&mut text)
    .unwrap();
    let start = chrono::NaiveDate::from_ymd_opt(year, month, 1).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc();
    let end = start + chrono::Months::new(1);
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split(',');
            let t: i64 = f.next()?.parse().ok()?;
            let text = f.next()?;
            let rate = if text.contains(['e', 'E']) {
                rust_decimal::Decimal::from_scientific(text).ok()?
            } else {
                text.parse::<rust_decimal::Decimal>().ok()?
            };
            (t >= start.timestamp_millis() && t < end.timestamp_millis()).then(|| (t, rate.normalize().to_string()))
        })
        .collect()
}

/// Publishes BTCUSDT's monthly funding-rate archives of 2026 `months` (header, 3 columns).
fn publish_funding(archive: &Archive, months: &[u32]) {
    for &m in months {
        let name = format!("BTCUSDT-fundingRate-2026-{m:02}");
        let mut csv = String::from("calc_time,funding_interval_hours,last_funding_rate\n");
        for (t, rate) in sample_fundings(2026, m) {
            csv.push_str(&format!("{t},8,{rate}\n"));
        }
        let zip = zip_one(&format!("{name}.csv"), csv.as_bytes());
        let sum = format!("{}  {name}.zip\n", sha256_hex(&zip));
        archive.put(format!("{FUNDING_PREFIX}/BTCUSDT/{name}.zip.CHECKSUM"), sum.into_bytes());
        archive.put(format!("{FUNDING_PREFIX}/BTCUSDT/{name}.zip"), zip);
    }
}

/// The funding-rate archives of the months downloaded fill `DIR/funding/BTCUSDT.csv`, and the
/// backtest charges exactly the sample's funding from it; a month without an archive is
/// reported, not an error; a damaged one is refused and the file left as it was.
#[test]
fn funding_archives_fill_the_backtests_funding_file() {
    use kinetic::commands::download_dumps::download_funding;
    use kinetic::data::funding_history;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let archive = Archive::default();
    publish(&archive);
    publish_funding(&archive, &[2, 3]);
    let base = start(&archive, &rt);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    cli(&["--symbols", "BTCUSDT", "--source", "dumps", "--from", "2026-02", "--to", "2026-03", "--out", out], &base)
        .unwrap();
    let file = dir.path().join("funding").join("BTCUSDT.csv");
    let rows = funding_history::read(&file).unwrap();
    let want: Vec<(i64, String)> = [2, 3].iter().flat_map(|m| sample_fundings(2026, *m)).collect();
    assert!(want.len() > 150, "{}", want.len());
    assert_eq!(rows.iter().map(|r| (r.time, r.rate.clone())).collect::<Vec<_>>(), want);
    assert!(rows.iter().all(|r| r.mark_price.is_empty()), "the archives carry no mark price");
    assert!(!names(&dir.path().join("funding")).iter().any(|n| n.contains("partial")));

    // The backtest over the download charges the same funding as over the sample's files.
    let backtest = |data: &Path, out: &Path| backtest_btc(data, out, "2026-03-30");
    let sample = tempfile::tempdir().unwrap();
    std::fs::create_dir(sample.path().join("funding")).unwrap();
    for name in ["BTCUSDT-15m.csv.gz", "BTCUSDT-1h.csv.gz", "BTCUSDT-4h.csv.gz", "funding/BTCUSDT.csv.gz"] {
        std::fs::copy(Path::new(MANIFEST).join("data/sample").join(name), sample.path().join(name)).unwrap();
    }
    let outs = tempfile::tempdir().unwrap();
    let (dump_trades, dump_metrics) = backtest(dir.path(), &outs.path().join("dumps"));
    let (sample_trades, sample_metrics) = backtest(sample.path(), &outs.path().join("sample"));
    // (Both end before April's first funding, which the months downloaded do not hold.)
    let first_diff = dump_trades.lines().zip(sample_trades.lines()).find(|(a, b)| a != b);
    assert!(dump_trades == sample_trades, "first differing trade: {first_diff:?}");
    let funding = |m: &serde_json::Value| match &m["funding_paid"] {
        serde_json::Value::Number(n) => n.as_f64().unwrap(),
        serde_json::Value::String(s) => s.parse::<f64>().unwrap(),
        other => panic!("funding_paid: {other}"),
    };
    assert!(funding(&dump_metrics) != 0.0, "funding charged: {dump_metrics:#}");
    assert_eq!(funding(&dump_metrics), funding(&sample_metrics));

    // A rerun gives the same file; a month without an archive is reported, not an error.
    let before = std::fs::read(&file).unwrap();
    let http = reqwest::Client::new();
    let months = [2u32, 3, 4].iter().map(|m| DumpPeriod::Month { year: 2026, month: *m }).collect::<Vec<_>>();
    let got = rt.block_on(download_funding(&http, &base, dir.path(), &["BTCUSDT".to_string()], &months)).unwrap();
    assert_eq!((got[0].archives, got[0].added, got[0].total), (2, 0, want.len()));
    assert_eq!(got[0].missing.len(), 1);
    let lines = got[0].lines();
    assert!(lines.contains("funding 2026-04: no archive") && lines.contains("flat rate"), "{lines}");
    assert_eq!(std::fs::read(&file).unwrap(), before);

    // A damaged archive is refused and the file stays as it was.
    let key = format!("{FUNDING_PREFIX}/BTCUSDT/BTCUSDT-fundingRate-2026-03.zip");
    let mut zip = archive.files.lock().unwrap()[&key].clone();
    let at = zip.len() - 40;
    zip[at] ^= 0xff;
    archive.put(key, zip);
    let err = rt.block_on(download_funding(&http, &base, dir.path(), &["BTCUSDT".to_string()], &months)).unwrap_err();
    assert_eq!(err.exit_code(), 1);
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), before);
}
