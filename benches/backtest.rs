//! Backtest throughput in candles per second (all timeframes counted):
//! - `sample/end_to_end`: the shipped `data/sample` from disk (gzip + parsing + replay);
//! - `sample/replay_only`: the same candles already in memory;
//! - `large/...`: 20 symbols × 1 year of 15m (+ 1h and 4h aggregated from it), built at bench
//!   start from the shared klines (`KINETIC_BENCH_KLINES`, default `../shared/data/klines`, else
//!   the sample) by renaming, time-shifting and price-rescaling, written as .csv.gz into a
//!   temporary folder (or `KINETIC_BENCH_LARGE_DIR`, kept, e.g. for `/usr/bin/time -v`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use flate2::Compression;
use flate2::write::GzEncoder;
use kinetic::backtest::{self, BacktestOptions, SymbolCandles};
use kinetic::config::Settings;
use kinetic::core::models::{Candle, Timeframe};
use kinetic::data::{HEADER, format_row, load_candles};

const BASES: [&str; 5] = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "DOGEUSDT"];
const START: i64 = 1_735_689_600_000; // 2025-01-01
const YEAR_15M: usize = 365 * 96;

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Aggregates consecutive groups of `n` 15m candles into one candle of `tf`.
fn aggregate(m15: &[Candle], n: usize, tf: Timeframe) -> Vec<Candle> {
    m15.chunks_exact(n)
        .map(|g| {
            let first = g[0];
            let last = g[n - 1];
            Candle {
                open_time: first.open_time,
                close_time: first.open_time + tf.duration_ms() - 1,
                open: first.open,
                high: g.iter().map(|c| c.high).fold(f64::MIN, f64::max),
                low: g.iter().map(|c| c.low).fold(f64::MAX, f64::min),
                close: last.close,
                volume: g.iter().map(|c| c.volume).sum(),
                ..first
            }
        })
        .collect()
}

/// One year of 15m for synthetic symbol `i`: the base series cycled from a symbol-specific
/// offset, each cycle rescaled so prices join continuously, re-timed from 2025-01-01.
fn synth(base: &[Candle], i: usize) -> Vec<Candle> {
    let mut out = Vec::with_capacity(YEAR_15M);
    let mut scale = 1.0;
    let mut k = (i / BASES.len()) * 3_000 % base.len();
    let mut prev_close: Option<f64> = None;
    while out.len() < YEAR_15M {
        if k == 0
            && let Some(pc) = prev_close
        {
            scale = pc / base[0].open;
        }
        let c = base[k];
        let t = START + out.len() as i64 * 900_000;
        out.push(Candle {
            open_time: t,
            close_time: t + 899_999,
            open: c.open * scale,
            high: c.high * scale,
            low: c.low * scale,
            close: c.close * scale,
            ..c
        });
        prev_close = Some(c.close * scale);
        k = (k + 1) % base.len();
    }
    out
}

fn write_gz(path: &Path, candles: &[Candle]) {
    let mut w = GzEncoder::new(std::fs::File::create(path).unwrap(), Compression::fast());
    writeln!(w, "{HEADER}").unwrap();
    for c in candles {
        writeln!(w, "{}", format_row(c)).unwrap();
    }
    w.finish().unwrap();
}

fn build_large(dir: &Path) -> Vec<SymbolCandles> {
    let klines = std::env::var_os("KINETIC_BENCH_KLINES")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest().join("../shared/data/klines"));
    let src = if klines.join("BTCUSDT-15m.csv.gz").is_file() { klines } else { manifest().join("data/sample") };
    let bases: Vec<Vec<Candle>> = BASES.iter().map(|s| load_candles(&src, s, Timeframe::M15).unwrap()).collect();
    std::fs::create_dir_all(dir).unwrap();
    (0..20)
        .map(|i| {
            let symbol = format!("S{i:02}{}", BASES[i % BASES.len()]);
            let m15 = synth(&bases[i % BASES.len()], i);
            let h1 = aggregate(&m15, 4, Timeframe::H1);
            let h4 = aggregate(&m15, 16, Timeframe::H4);
            write_gz(&dir.join(format!("{symbol}-15m.csv.gz")), &m15);
            write_gz(&dir.join(format!("{symbol}-1h.csv.gz")), &h1);
            write_gz(&dir.join(format!("{symbol}-4h.csv.gz")), &h4);
            SymbolCandles { symbol, m15: m15.into(), h1: h1.into(), h4: h4.into() }
        })
        .collect()
}

fn load_memory(dir: &Path) -> Vec<SymbolCandles> {
    backtest::select_symbols(dir, &[])
        .unwrap()
        .into_iter()
        .map(|s| SymbolCandles {
            m15: Arc::from(load_candles(dir, &s, Timeframe::M15).unwrap()),
            h1: Arc::from(load_candles(dir, &s, Timeframe::H1).unwrap()),
            h4: Arc::from(load_candles(dir, &s, Timeframe::H4).unwrap()),
            symbol: s,
        })
        .collect()
}

fn count(data: &[SymbolCandles]) -> u64 {
    data.iter().map(|d| (d.m15.len() + d.h1.len() + d.h4.len()) as u64).sum()
}

fn end_to_end(settings: &Settings, dir: &Path) -> u64 {
    let opts = BacktestOptions { data_dir: dir.to_path_buf(), symbols: Vec::new(), from: None, to: None };
    let mut p = backtest::prepare(settings, &opts).unwrap();
    backtest::run_feed(&mut p.feed, &mut p.engine, &mut |_| {}).unwrap();
    p.engine.stats.candles
}

fn bench_set(c: &mut Criterion, name: &str, dir: &Path, data: &[SymbolCandles]) {
    let settings = Settings::defaults().unwrap();
    let n = count(data);
    let mut g = c.benchmark_group(name);
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Elements(n));
    g.bench_function("end_to_end", |b| b.iter(|| end_to_end(&settings, dir)));
    g.bench_function("replay_only", |b| {
        b.iter_batched(
            || backtest::prepare_in_memory(&settings, data, None).unwrap(),
            |(mut feed, mut engine)| {
                backtest::run_feed(&mut feed, &mut engine, &mut |_| {}).unwrap();
                engine.stats.candles
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let sample = manifest().join("data/sample");
    let sample_data = load_memory(&sample);
    bench_set(c, "sample", &sample, &sample_data);

    let keep = std::env::var_os("KINETIC_BENCH_LARGE_DIR").map(PathBuf::from);
    let tmp = tempfile::tempdir().unwrap();
    let dir = keep.unwrap_or_else(|| tmp.path().to_path_buf());
    let large = build_large(&dir);
    bench_set(c, "large_20x1y", &dir, &large);
}

criterion_group!(backtest_benches, benches);
criterion_main!(backtest_benches);
