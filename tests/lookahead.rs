//! `check-lookahead`: the backtest's own analysis passes; a variant that peeks at the next
//! 15m candle is caught.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::sync::Arc;

use kinetic::backtest::SymbolCandles;
use kinetic::config::Settings;
use kinetic::core::models::{Candle, Timeframe, TimestampMs};
use kinetic::data::load_candles;
use kinetic::research::ResearchError;
use kinetic::research::lookahead::{self, Analysis, ReplayAnalysis, Snapshot, Tolerance};

const DAY_MS: i64 = 86_400_000;

fn data(days: i64) -> SymbolCandles {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/sample");
    let m15 = load_candles(&dir, "BTCUSDT", Timeframe::M15).unwrap();
    let end = m15[0].open_time + days * DAY_MS;
    let cut = |tf| -> Arc<[Candle]> {
        load_candles(&dir, "BTCUSDT", tf).unwrap().into_iter().filter(|c| c.close_time < end).collect()
    };
    SymbolCandles { symbol: "BTCUSDT".into(), m15: cut(Timeframe::M15), h1: cut(Timeframe::H1), h4: cut(Timeframe::H4) }
}

/// A deliberately biased analysis: each 15m candle is seen with the NEXT candle's close
/// (a `shift(-1)` bug), then analysed by the real engine.
struct PeekNextClose;

impl Analysis for PeekNextClose {
    fn snapshots(
        &self,
        d: &SymbolCandles,
        times: &[TimestampMs],
        s: &Settings,
    ) -> Result<Vec<Option<Snapshot>>, ResearchError> {
        let m15: Vec<Candle> = d
            .m15
            .iter()
            .enumerate()
            .map(|(i, c)| match d.m15.get(i + 1) {
                Some(n) => Candle { close: n.close, high: c.high.max(n.close), low: c.low.min(n.close), ..*c },
                None => *c,
            })
            .collect();
        ReplayAnalysis.snapshots(&SymbolCandles { m15: m15.into(), ..d.clone() }, times, s)
    }
}

#[test]
fn the_engine_analysis_has_no_lookahead_and_a_peeking_variant_is_caught() {
    let d = data(10);
    let settings = Settings::defaults().unwrap();
    let honest =
        lookahead::check(&ReplayAnalysis, std::slice::from_ref(&d), &settings, 6, 1, &[150], Tolerance::default())
            .unwrap();
    let text = lookahead::text(&honest);
    assert!(honest.moments_checked >= 6, "{text}");
    assert!(honest.lookahead_mismatches.is_empty(), "{text}");
    assert!(honest.passed(), "{text}");
    assert!(honest.warmup.iter().all(|w| w.checked > 0), "{text}");

    let biased =
        lookahead::check(&PeekNextClose, std::slice::from_ref(&d), &settings, 6, 1, &[150], Tolerance::default())
            .unwrap();
    assert!(!biased.passed());
    assert_eq!(biased.lookahead_mismatches.len(), biased.moments_checked, "{}", lookahead::text(&biased));
}

#[test]
fn too_short_a_history_is_outside_tolerance() {
    // 40 candles cannot reproduce a 26/9 MACD and Wilder averages warmed on hundreds.
    let d = data(10);
    let settings = Settings::defaults().unwrap();
    let r = lookahead::check(&ReplayAnalysis, &[d], &settings, 4, 2, &[40], Tolerance::default()).unwrap();
    assert!(r.lookahead_mismatches.is_empty());
    assert!(!r.warmup[0].within_tolerance, "{}", lookahead::text(&r));
}
