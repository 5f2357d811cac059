//! Data as users have it (issue 14, item 5), through the real binary: Binance's public kline
//! dumps as downloaded (12 columns, with and without a header, one file per month or day, as
//! .zip, .csv.gz and .csv) replay exactly like the same candles in one file; gaps and repeated
//! rows are reported with their times; two files for the same period are refused naming both;
//! a window outside the data, empty data, an `--at` beyond the data and corrupt files are
//! exit 2 naming what the data covers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kinetic::core::models::Timeframe;
use kinetic::data::{HEADER, load_candles};

const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

fn dumps() -> PathBuf {
    Path::new(MANIFEST).join("tests/data/dumps")
}

fn sample() -> PathBuf {
    Path::new(MANIFEST).join("data/sample")
}

fn kinetic(args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kinetic"));
    c.current_dir(MANIFEST).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("KINETIC__") || k == "RUST_LOG" {
            c.env_remove(k);
        }
    }
    c.output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn backtest(data: &Path, out: &Path, from: &str, to: &str) -> Output {
    kinetic(&[
        "backtest",
        "--no-progress",
        "--data",
        data.to_str().unwrap(),
        "--symbols",
        "BTCUSDT",
        "--from",
        from,
        "--to",
        to,
        "--out",
        out.to_str().unwrap(),
    ])
}

/// A folder with copies of the given dump files (by name) from tests/data/dumps.
fn dump_copy(names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for n in names {
        std::fs::copy(dumps().join(n), dir.path().join(n)).unwrap();
    }
    dir
}

fn all_dump_names() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dumps())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("BTCUSDT-"))
        .collect();
    v.sort();
    v
}

#[test]
fn dump_files_read_as_the_same_candles_as_one_file() {
    for tf in Timeframe::STRATEGY {
        let from_dumps = load_candles(&dumps(), "BTCUSDT", tf).unwrap();
        let from_sample = load_candles(&sample(), "BTCUSDT", tf).unwrap();
        assert!(from_dumps.len() > 100, "{tf}");
        let first = from_dumps[0].open_time;
        let start = from_sample.iter().position(|c| c.open_time == first).unwrap();
        for (d, s) in from_dumps.iter().zip(&from_sample[start..]) {
            assert_eq!(
                (d.open_time, d.close_time, d.open, d.high, d.low, d.close, d.volume),
                (s.open_time, s.close_time, s.open, s.high, s.low, s.close, s.volume),
                "{tf}"
            );
        }
    }
}

#[test]
fn backtest_over_dumps_equals_backtest_over_one_file() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let over_dumps = backtest(&dumps(), a.path(), "2026-02-21", "2026-04-02");
    assert_eq!(over_dumps.status.code(), Some(0), "{}", stderr(&over_dumps));
    // The same three series in one file each (and, like the dumps, no funding file).
    let one_file = tempfile::tempdir().unwrap();
    for tf in ["15m", "1h", "4h"] {
        let name = format!("BTCUSDT-{tf}.csv.gz");
        std::fs::copy(sample().join(&name), one_file.path().join(&name)).unwrap();
    }
    let over_sample = backtest(one_file.path(), b.path(), "2026-02-21", "2026-04-02");
    assert_eq!(over_sample.status.code(), Some(0), "{}", stderr(&over_sample));
    let read = |d: &Path, f: &str| std::fs::read_to_string(d.join(f)).unwrap();
    let trades = read(a.path(), "trades.csv");
    assert!(trades.lines().count() > 10, "{trades}");
    assert!(trades == read(b.path(), "trades.csv"), "trades differ");
    assert_eq!(read(a.path(), "metrics.json"), read(b.path(), "metrics.json"));
    assert!(!stderr(&over_dumps).contains("gap"), "the dumps have no gaps: {}", stderr(&over_dumps));
}

#[test]
fn analyze_reads_dumps_and_refuses_an_at_beyond_them() {
    let at = "2026-04-03T12:00:00Z";
    let dumps_dir = dumps();
    let from_dumps = kinetic(&["analyze", "BTCUSDT", "--json", "--data", dumps_dir.to_str().unwrap(), "--at", at]);
    assert_eq!(from_dumps.status.code(), Some(0), "{}", stderr(&from_dumps));
    let from_sample = kinetic(&["analyze", "BTCUSDT", "--json", "--data", "data/sample", "--at", at]);
    let json = |o: &Output| serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap();
    assert_eq!(json(&from_dumps), json(&from_sample));

    let beyond = kinetic(&["analyze", "BTCUSDT", "--data", dumps_dir.to_str().unwrap(), "--at", "2026-04-05"]);
    assert_eq!(beyond.status.code(), Some(2));
    assert!(stderr(&beyond).contains("after the end of the BTCUSDT data"), "{}", stderr(&beyond));
    assert!(
        stderr(&beyond).contains("the 15m data covers 2026-02-01 00:00 UTC → 2026-04-04 00:00 UTC"),
        "{}",
        stderr(&beyond)
    );
}

#[test]
fn gaps_and_duplicates_are_reported_with_their_times() {
    let names = all_dump_names();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let dir = dump_copy(&names);
    // Drop 2026-03-10 08:00..09:00 (four 15m rows) from the March file and repeat one row of 1 April.
    let march = dir.path().join("BTCUSDT-15m-2026-03.csv.gz");
    let text = std::io::read_to_string(flate2::read::GzDecoder::new(std::fs::File::open(&march).unwrap())).unwrap();
    let (gap_from, gap_to) = (1_773_129_600_000i64, 1_773_133_200_000i64);
    let kept: String = text
        .lines()
        .filter(|l| l.split(',').next().and_then(|t| t.parse::<i64>().ok()).is_none_or(|t| t < gap_from || t >= gap_to))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut gz = flate2::write::GzEncoder::new(std::fs::File::create(&march).unwrap(), flate2::Compression::fast());
    gz.write_all(kept.as_bytes()).unwrap();
    gz.finish().unwrap();
    let april = dir.path().join("BTCUSDT-15m-2026-04-01.csv");
    let text = std::fs::read_to_string(&april).unwrap();
    let row = text.lines().nth(5).unwrap().to_string();
    std::fs::write(&april, text.replacen(&format!("{row}\n"), &format!("{row}\n{row}\n"), 1)).unwrap();

    let out = tempfile::tempdir().unwrap();
    let o = backtest(dir.path(), out.path(), "2026-02-21", "2026-04-02");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("BTCUSDT 15m: 1 gap(s), 4 candle(s) missing: 2026-03-10 08:00 UTC → 2026-03-10 09:00 UTC"),
        "{err}"
    );
    assert!(err.contains("1 duplicate row(s) skipped at 2026-04-01 01:00 UTC"), "{err}");
}

#[test]
fn two_files_for_the_same_period_are_refused_naming_both() {
    let dir = dump_copy(&["BTCUSDT-1h-2026-02.csv.gz", "BTCUSDT-4h-2026-02.zip", "BTCUSDT-15m-2026-02.zip"]);
    // The same month as a plain .csv beside the .zip.
    let csv = dir.path().join("BTCUSDT-15m-2026-02.csv");
    std::fs::write(&csv, format!("{HEADER}\n")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = backtest(dir.path(), out.path(), "2026-02-21", "2026-02-25");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("BTCUSDT-15m-2026-02.csv") && err.contains("BTCUSDT-15m-2026-02.zip"), "{err}");
    let o = kinetic(&["analyze", "BTCUSDT", "--data", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("BTCUSDT-15m-2026-02.zip"), "{}", stderr(&o));
}

#[test]
fn a_window_outside_the_data_or_empty_data_is_exit_2_naming_the_range() {
    let out = tempfile::tempdir().unwrap();
    for (from, to) in [("2030-01-01", "2030-02-01"), ("2020-01-01", "2020-02-01"), ("2026-05-03", "2026-05-20")] {
        let o = backtest(&sample(), out.path(), from, to);
        assert_eq!(o.status.code(), Some(2), "{from}..{to}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("the data of BTCUSDT 15m covers 2026-02-01 00:00 UTC → 2026-05-01 00:00 UTC"), "{err}");
        assert!(!String::from_utf8_lossy(&o.stdout).contains("1970"), "no empty report");
    }
    assert!(!out.path().join("report.html").exists());

    let dir = dump_copy(&["BTCUSDT-1h-2026-02.csv.gz", "BTCUSDT-4h-2026-02.zip"]);
    std::fs::write(dir.path().join("BTCUSDT-15m.csv"), format!("{HEADER}\n")).unwrap();
    let o = backtest(dir.path(), out.path(), "2026-02-21", "2026-02-25");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("BTCUSDT 15m has no candles"), "{}", stderr(&o));
}

#[test]
fn corrupt_files_are_bad_input_exit_2() {
    let out = tempfile::tempdir().unwrap();
    // A damaged archive (a byte flipped inside the compressed data): the CRC check catches it.
    let dir = dump_copy(&["BTCUSDT-1h-2026-02.csv.gz", "BTCUSDT-4h-2026-02.zip", "BTCUSDT-15m-2026-02.zip"]);
    let zip = dir.path().join("BTCUSDT-15m-2026-02.zip");
    let mut bytes = std::fs::read(&zip).unwrap();
    bytes[2000] ^= 0x55;
    std::fs::write(&zip, bytes).unwrap();
    let o = backtest(dir.path(), out.path(), "2026-02-21", "2026-02-25");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("BTCUSDT-15m-2026-02.zip"), "{}", stderr(&o));

    // A row that is not a kline.
    let dir = dump_copy(&["BTCUSDT-1h-2026-02.csv.gz", "BTCUSDT-4h-2026-02.zip"]);
    std::fs::write(
        dir.path().join("BTCUSDT-15m.csv"),
        format!("{HEADER}\n1769904000000,abc,1,1,1,1,1769904899999,,,,\n"),
    )
    .unwrap();
    let o = backtest(dir.path(), out.path(), "2026-02-21", "2026-02-25");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("BTCUSDT-15m.csv:2: open: not a finite number"), "{}", stderr(&o));
    let o = kinetic(&["analyze", "BTCUSDT", "--data", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
