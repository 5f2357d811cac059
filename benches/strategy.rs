//! Strategy hot paths: one closed candle into a timeframe's incremental indicators, and the
//! full 3-timeframe score of one symbol. Targets (issue 3): ≤ 100 ns and ≤ 1 µs.
//!
//! Run briefly: `cargo bench --bench strategy -- --quick`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use kinetic::analyzer::SymbolAnalyzer;
use kinetic::analyzer::timeframe::TimeframeState;
use kinetic::config::Settings;
use kinetic::core::models::{Candle, Timeframe};
use kinetic::data::load_candles;

fn sol(tf: Timeframe) -> Vec<Candle> {
    load_candles(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data"), "SOLUSDT", tf).unwrap()
}

/// One closed 15m candle into a warmed-up timeframe: EMA9, EMA21, RSI, MACD, ATR, volume
/// ratio and the swing/MACD history. Real candles replayed in order; when they run out the
/// replay starts again with times shifted forward (so every candle is "after" the last).
fn incremental_update(c: &mut Criterion) {
    let candles = sol(Timeframe::M15);
    let (warm, feed) = candles.split_at(200);
    let span = feed.last().unwrap().close_time + 1 - feed.first().unwrap().open_time;
    let mut state = TimeframeState::new();
    for k in warm {
        state.update(k);
    }
    let (mut i, mut shift) = (0usize, 0i64);
    c.bench_function("timeframe_update_one_closed_candle", |b| {
        b.iter(|| {
            let k = &feed[i];
            let candle = Candle { open_time: k.open_time + shift, close_time: k.close_time + shift, ..*k };
            i += 1;
            if i == feed.len() {
                i = 0;
                shift += span;
            }
            black_box(state.update(black_box(&candle)))
        });
    });
    assert!(state.indicators().is_some());
}

/// The full score of one symbol from warmed-up 4h, 1h and 15m state: indicators of the three
/// timeframes, the 15m MACD-cross window and swing fractals, and the six components.
fn full_score(c: &mut Criterion) {
    let settings = Settings::defaults().unwrap().strategy;
    let mut analyzer = SymbolAnalyzer::new();
    for tf in Timeframe::STRATEGY {
        for k in sol(tf) {
            analyzer.on_closed_candle(tf, &k);
        }
    }
    assert!(analyzer.score(&settings).is_some());
    c.bench_function("score_three_timeframes_one_symbol", |b| {
        b.iter(|| black_box(black_box(&analyzer).score(black_box(&settings))));
    });
}

/// Where the score's time goes: the three timeframes' indicator values, and the 15m swing
/// fractals and MACD-cross window.
fn score_parts(c: &mut Criterion) {
    let settings = Settings::defaults().unwrap().strategy;
    let mut analyzer = SymbolAnalyzer::new();
    for tf in Timeframe::STRATEGY {
        for k in sol(tf) {
            analyzer.on_closed_candle(tf, &k);
        }
    }
    c.bench_function("score_part_indicators_three_timeframes", |b| {
        b.iter(|| black_box(black_box(&analyzer).indicators()));
    });
    c.bench_function("score_part_swing_pattern_15m", |b| {
        b.iter(|| black_box(black_box(&analyzer.m15).swing_pattern(settings.swing_fractal_width)));
    });
    c.bench_function("score_part_macd_cross_15m", |b| {
        b.iter(|| black_box(black_box(&analyzer.m15).macd_cross(settings.macd_cross_window)));
    });
}

criterion_group!(benches, incremental_update, full_score, score_parts);
criterion_main!(benches);
