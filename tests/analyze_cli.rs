//! `kinetic analyze` through the real binary on tests/data (SOLUSDT on 4h, 1h and 15m), with
//! every JSON value checked against the library: indicators against the batch forms over the
//! candles that closed by the evaluated moment, the score against `SymbolAnalyzer`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kinetic::analyzer::SymbolAnalyzer;
use kinetic::analyzer::indicators::{atr_series, ema_series, macd_series, rsi_series, volume_ratio_series};
use kinetic::config::Settings;
use kinetic::core::models::{Candle, Timeframe};
use kinetic::data::load_candles;
use serde_json::Value;

/// Close time of the last 4h candle in tests/data: the latest moment all three files cover.
const COMMON_END: i64 = 1_778_083_199_999;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn kinetic_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kinetic"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()
        .expect("run kinetic")
}

fn kinetic(args: &[&str]) -> Output {
    kinetic_in(Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn analyze_json(extra: &[&str]) -> Value {
    let dir = data_dir();
    let mut args = vec!["analyze", "SOLUSDT", "--data", dir.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let out = kinetic(&args);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
    k.sort();
    k
}

fn closed_by(tf: Timeframe, moment: i64) -> Vec<Candle> {
    load_candles(&data_dir(), "SOLUSDT", tf).unwrap().into_iter().filter(|c| c.close_time <= moment).collect()
}

fn last(series: Vec<Option<f64>>) -> f64 {
    series.last().copied().flatten().expect("warmed up")
}

/// Checks one timeframe's JSON object against the batch indicators of `candles`.
fn check_timeframe(json: &Value, candles: &[Candle]) {
    let closes: Vec<f64> = candles.iter().map(|c| c.close).collect();
    let highs: Vec<f64> = candles.iter().map(|c| c.high).collect();
    let lows: Vec<f64> = candles.iter().map(|c| c.low).collect();
    let vols: Vec<f64> = candles.iter().map(|c| c.volume).collect();
    let macd = macd_series(&closes, 12, 26, 9).last().copied().flatten().expect("MACD warmed up");
    let want = [
        ("ema_9", last(ema_series(&closes, 9))),
        ("ema_21", last(ema_series(&closes, 21))),
        ("rsi", last(rsi_series(&closes, 14))),
        ("macd_line", macd.line),
        ("macd_signal", macd.signal),
        ("macd_histogram", macd.histogram),
        ("atr", last(atr_series(&highs, &lows, &closes, 14))),
        ("volume_ratio", last(volume_ratio_series(&vols, 20))),
    ];
    for (key, value) in want {
        let got = json[key].as_f64().unwrap_or_else(|| panic!("{key} is not a number: {json}"));
        assert!((got - value).abs() <= 1e-12 * value.abs().max(1.0), "{key}: analyze {got}, library {value}");
    }
    assert_eq!(json["close_time"].as_i64(), Some(candles.last().unwrap().close_time));
}

/// Checks the whole document against the library at `moment`.
fn check_document(doc: &Value, moment: i64) {
    assert_eq!(keys(doc), ["score", "symbol", "timeframes"]);
    assert_eq!(doc["symbol"], "SOLUSDT");
    assert_eq!(keys(&doc["timeframes"]), ["15m", "1h", "4h"]);
    let settings = Settings::defaults().unwrap().strategy;
    let mut analyzer = SymbolAnalyzer::new();
    for tf in Timeframe::STRATEGY {
        let tf_json = &doc["timeframes"][tf.as_str()];
        assert_eq!(
            keys(tf_json),
            [
                "atr",
                "close_time",
                "ema_21",
                "ema_9",
                "macd_histogram",
                "macd_line",
                "macd_signal",
                "rsi",
                "volume_ratio"
            ]
        );
        let candles = closed_by(tf, moment);
        check_timeframe(tf_json, &candles);
        for c in &candles {
            analyzer.on_closed_candle(tf, c);
        }
    }
    let score = analyzer.score(&settings).expect("all timeframes warmed up");
    let s = &doc["score"];
    assert_eq!(keys(s), ["components", "direction", "total"]);
    assert_eq!(s["total"].as_u64(), Some(u64::from(score.total)));
    assert_eq!(s["direction"], score.direction.as_str());
    let comps = s["components"].as_array().unwrap();
    let want = score.report();
    assert_eq!(comps.len(), 6);
    let names: Vec<&str> = comps.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["4h_trend", "1h_alignment", "rsi_zone", "macd_cross", "volume_spike", "price_action"]);
    let mut sum = 0;
    for (c, w) in comps.iter().zip(&want) {
        assert_eq!(keys(c), ["max_points", "name", "points", "reason"]);
        assert_eq!(c["name"], w.name);
        assert_eq!(c["points"].as_u64(), Some(u64::from(w.points)));
        assert_eq!(c["max_points"].as_u64(), Some(u64::from(w.max_points)));
        assert_eq!(c["reason"], w.reason.as_str());
        sum += c["points"].as_u64().unwrap();
    }
    assert_eq!(s["total"].as_u64(), Some(sum));
}

#[test]
fn json_at_the_latest_moment_all_three_timeframes_cover() {
    let doc = analyze_json(&[]);
    // The 1h and 15m files run past the 4h file: all three are judged at the 4h file's end.
    for tf in ["4h", "1h", "15m"] {
        assert_eq!(doc["timeframes"][tf]["close_time"].as_i64(), Some(COMMON_END), "{tf}");
    }
    assert!(load_candles(&data_dir(), "SOLUSDT", Timeframe::M15).unwrap().last().unwrap().close_time > COMMON_END);
    check_document(&doc, COMMON_END);
}

#[test]
fn json_at_an_earlier_time_uses_each_timeframes_last_closed_candle() {
    // 2026-05-05 10:07 UTC: last closed 4h candle 04:00–08:00, 1h 09:00–10:00, 15m 09:45–10:00.
    let at = "2026-05-05T10:07:00Z";
    let moment = 1_777_975_620_000;
    let doc = analyze_json(&["--at", at]);
    assert_eq!(doc["timeframes"]["4h"]["close_time"].as_i64(), Some(1_777_967_999_999));
    assert_eq!(doc["timeframes"]["1h"]["close_time"].as_i64(), Some(1_777_975_199_999));
    assert_eq!(doc["timeframes"]["15m"]["close_time"].as_i64(), Some(1_777_975_199_999));
    check_document(&doc, moment);
    // The same moment in milliseconds, and a lower-case symbol, give the same document.
    let dir = data_dir();
    let out = kinetic(&["analyze", "solusdt", "--data", dir.to_str().unwrap(), "--json", "--at", "1777975620000"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), doc);
    // An --at after the data ends is refused, naming the range the data covers.
    let out = kinetic(&["analyze", "SOLUSDT", "--data", dir.to_str().unwrap(), "--at", "2030-01-01"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--at 2030-01-01 00:00:00.000 UTC is after the end of the SOLUSDT data"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("covers 2026-04-23 08:00 UTC → 2026-05-06 16:00 UTC"), "{}", stderr(&out));
}

#[test]
fn table_output_shows_every_timeframe_and_component() {
    let dir = data_dir();
    let out = kinetic(&["analyze", "SOLUSDT", "--data", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("SOLUSDT at 2026-05-06 15:59:59.999 UTC"), "{text}");
    for needle in ["\n4h ", "\n1h ", "\n15m ", "score ", "4h_trend", "1h_alignment", "rsi_zone", "macd_cross"] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    for needle in ["volume_spike", "price_action", "direction LONG"] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}

#[test]
fn missing_data_too_few_candles_and_bad_arguments_exit_2() {
    let dir = data_dir();
    let dir = dir.to_str().unwrap();
    let out = kinetic(&["analyze", "NOPEUSDT", "--data", dir, "--json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no data file for NOPEUSDT 4h"), "{}", stderr(&out));
    assert!(out.stdout.is_empty());

    // BTCUSDT has only a 15m file here.
    let out = kinetic(&["analyze", "BTCUSDT", "--data", dir]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("BTCUSDT 4h"), "{}", stderr(&out));

    // 16 closed 4h candles by 2026-04-26: too few for MACD's signal line.
    let out = kinetic(&["analyze", "SOLUSDT", "--data", dir, "--at", "2026-04-26"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("only 16 closed candles"), "{}", stderr(&out));
    assert!(stderr(&out).contains("at least 34"), "{}", stderr(&out));

    let out = kinetic(&["analyze", "SOLUSDT", "--data", dir, "--at", "last tuesday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("invalid time `last tuesday`"), "{}", stderr(&out));

    let out = kinetic(&["analyze", "--data", dir]);
    assert_eq!(out.status.code(), Some(2), "the symbol is required");
}

#[test]
fn default_data_folder_is_data_sample() {
    let empty = tempfile::tempdir().unwrap();
    let out = kinetic_in(empty.path(), &["analyze", "SOLUSDT"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("data/sample"), "{}", stderr(&out));
}
