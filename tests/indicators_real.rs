//! Indicators on real candles (tests/data, copied from shared/data/klines) against reference
//! values computed independently (a plain Python script using the textbook definitions:
//! SMA-seeded EMA, Wilder RSI/ATR with SMA seeds, MACD = EMA12 − EMA26 with an EMA9 signal),
//! and against a naive textbook EMA written here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use kinetic::analyzer::indicators::{
    Atr, Ema, Macd, Rsi, VolumeRatio, atr_series, ema_series, macd_series, rsi_series, volume_ratio_series,
};
use kinetic::core::models::Candle;
use kinetic::data::read_candle_file;

fn load(name: &str) -> Vec<Candle> {
    read_candle_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)).unwrap()
}

fn btc() -> Vec<Candle> {
    load("BTCUSDT-15m.csv")
}

fn rel_close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1e-12)
}

/// Textbook EMA: SMA seed over the first n, then α·x + (1 − α)·prev.
fn textbook_ema(xs: &[f64], n: usize) -> Vec<Option<f64>> {
    let a = 2.0 / (n as f64 + 1.0);
    let mut out = vec![None; xs.len()];
    if xs.len() < n {
        return out;
    }
    let mut e = xs[..n].iter().sum::<f64>() / n as f64;
    out[n - 1] = Some(e);
    for i in n..xs.len() {
        e = a * xs[i] + (1.0 - a) * e;
        out[i] = Some(e);
    }
    out
}

#[test]
fn reference_values_on_400_real_btc_candles() {
    let c = btc();
    assert_eq!(c.len(), 400);
    let closes: Vec<f64> = c.iter().map(|c| c.close).collect();
    let (mut e9, mut e21, mut rsi, mut macd, mut atr, mut vr) =
        (Ema::new(9), Ema::new(21), Rsi::new(14), Macd::standard(), Atr::new(14), VolumeRatio::new(20));
    let mut last = (None, None, None, None, None, None);
    for k in &c {
        last = (
            e9.update(k.close),
            e21.update(k.close),
            rsi.update(k.close),
            macd.update(k.close),
            atr.update(k.high, k.low, k.close),
            vr.update(k.volume),
        );
    }
    let tol = 1e-6; // 0.0001 %
    assert!(rel_close(last.0.unwrap(), 114112.5148259671, tol));
    assert!(rel_close(last.1.unwrap(), 114144.45513455998, tol));
    assert!(rel_close(last.2.unwrap(), 45.19774431922044, tol));
    let m = last.3.unwrap();
    assert!(rel_close(m.line, -5.47338028489321, 1e-5), "{}", m.line);
    assert!(rel_close(m.signal, 30.588347709903758, 1e-6), "{}", m.signal);
    assert!(rel_close(last.4.unwrap(), 277.29901086462377, tol));
    assert!(rel_close(last.5.unwrap(), 0.6069307477270853, tol));
    // The EMA of every candle matches the textbook formula within 0.0001 %.
    for n in [9, 21] {
        let reference = textbook_ema(&closes, n);
        for (got, want) in ema_series(&closes, n).iter().zip(&reference) {
            match (got, want) {
                (Some(g), Some(w)) => assert!(rel_close(*g, *w, tol)),
                (None, None) => {}
                other => panic!("warm-up differs: {other:?}"),
            }
        }
    }
}

#[test]
fn incremental_equals_batch_on_real_candles() {
    let c = btc();
    let closes: Vec<f64> = c.iter().map(|c| c.close).collect();
    let highs: Vec<f64> = c.iter().map(|c| c.high).collect();
    let lows: Vec<f64> = c.iter().map(|c| c.low).collect();
    let vols: Vec<f64> = c.iter().map(|c| c.volume).collect();
    let (be, br, bm, ba, bv) = (
        ema_series(&closes, 21),
        rsi_series(&closes, 14),
        macd_series(&closes, 12, 26, 9),
        atr_series(&highs, &lows, &closes, 14),
        volume_ratio_series(&vols, 20),
    );
    let be9 = ema_series(&closes, 9);
    let (mut e9, mut e, mut r, mut m, mut a, mut v) =
        (Ema::new(9), Ema::new(21), Rsi::new(14), Macd::standard(), Atr::new(14), VolumeRatio::new(20));
    for (i, k) in c.iter().enumerate() {
        assert_eq!(e9.update(k.close), be9[i]);
        assert_eq!(e.update(k.close), be[i]);
        assert_eq!(r.update(k.close), br[i]);
        assert_eq!(m.update(k.close), bm[i]);
        assert_eq!(a.update(k.high, k.low, k.close), ba[i]);
        assert_eq!(v.update(k.volume), bv[i]);
    }
}

/// The last values on 300 real ETHUSDT 1h candles, from the same independent script.
#[test]
fn reference_values_on_300_real_eth_candles() {
    let c = load("ETHUSDT-1h.csv");
    assert_eq!(c.len(), 300);
    let closes: Vec<f64> = c.iter().map(|c| c.close).collect();
    let highs: Vec<f64> = c.iter().map(|c| c.high).collect();
    let lows: Vec<f64> = c.iter().map(|c| c.low).collect();
    let vols: Vec<f64> = c.iter().map(|c| c.volume).collect();
    let last = |s: Vec<Option<f64>>| s.last().copied().flatten().unwrap();
    let tol = 1e-6;
    assert!(rel_close(last(ema_series(&closes, 9)), 2181.860701723095, tol));
    assert!(rel_close(last(ema_series(&closes, 21)), 2184.854718711451, tol));
    assert!(rel_close(last(rsi_series(&closes, 14)), 46.519293282642536, tol));
    assert!(rel_close(last(atr_series(&highs, &lows, &closes, 14)), 9.31140447499426, tol));
    assert!(rel_close(last(volume_ratio_series(&vols, 20)), 0.6088475285571672, tol));
    let m = macd_series(&closes, 12, 26, 9).last().copied().flatten().unwrap();
    assert!(rel_close(m.line, -6.197056387640714, tol), "{}", m.line);
    assert!(rel_close(m.signal, -9.436008583341733, tol), "{}", m.signal);
    assert!(rel_close(m.histogram, 3.238952195701019, 1e-5), "{}", m.histogram);
    for n in [9, 21] {
        for (got, want) in ema_series(&closes, n).iter().zip(&textbook_ema(&closes, n)) {
            match (got, want) {
                (Some(g), Some(w)) => assert!(rel_close(*g, *w, tol)),
                (None, None) => {}
                other => panic!("warm-up differs: {other:?}"),
            }
        }
    }
}

/// Published reference: the RSI(14) worked example of StockCharts ChartSchool ("Relative
/// Strength Index (RSI)", spreadsheet cs-rsi.xls), closes and RSI values as printed there
/// (two decimals).
#[test]
fn rsi_matches_the_stockcharts_worked_example() {
    let closes = [
        44.3389, 44.0902, 44.1497, 43.6124, 44.3278, 44.8264, 45.0955, 45.4245, 45.8433, 46.0826, 45.8931, 46.0328,
        45.614, 46.282, 46.282, 46.0028, 46.0328, 46.4116, 46.2222, 45.6439, 46.2122, 46.2521, 45.7137, 46.4515,
        45.7835, 45.3548, 44.0288, 44.1783, 44.2181, 44.5672, 43.4205, 42.6628, 43.1314,
    ];
    let published = [
        70.53, 66.32, 66.55, 69.41, 66.36, 57.97, 62.93, 63.26, 56.06, 62.38, 54.71, 50.42, 39.99, 41.46, 41.87, 45.46,
        37.30, 33.08, 37.77,
    ];
    let mut rsi = Rsi::new(14);
    let got: Vec<f64> = closes.iter().filter_map(|&c| rsi.update(c)).collect();
    assert_eq!(got.len(), published.len());
    for (g, p) in got.iter().zip(published) {
        assert!((g - p).abs() <= 0.005 + 1e-9, "RSI {g} vs published {p}");
    }
    let batch: Vec<f64> = rsi_series(&closes, 14).into_iter().flatten().collect();
    assert_eq!(batch, got);
}
