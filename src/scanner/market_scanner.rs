//! The market scanner's filters and ranking (DESIGN.md section 2): volume filter, momentum
//! filter, liquidity floor, exclusions, a documented ranking blend and the top-N cut.
//!
//! Owns candidate selection only. It must not fetch data, read clocks or score symbols: the
//! caller hands it each symbol's 24 h ticker and the 15m volume ratio.

use std::cmp::Ordering;

use crate::analyzer::indicators::VolumeRatio;
use crate::config::ScannerSettings;
use crate::core::models::{Candle, Ticker};

/// What the scanner knows about one symbol.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanInput {
    pub ticker: Ticker,
    /// Last closed 15m volume / mean of the `scanner.volume_lookback` before it; `None` while
    /// there is not enough history (such a symbol never passes the volume filter).
    pub volume_ratio: Option<f64>,
}

/// A symbol that passed every filter, with its rank score.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub symbol: String,
    pub volume_ratio: f64,
    pub price_change_pct: f64,
    pub quote_volume: f64,
    /// `w × volume_ratio + (1 − w) × |24 h change %|`, `w = scanner.rank_volume_weight`.
    pub rank_score: f64,
}

/// The volume filter's ratio from closed 15m candles (oldest first): the last volume over the
/// mean of the `scanner.volume_lookback` volumes before it. `None` with too few candles.
pub fn volume_ratio_of(closed_15m: &[Candle], settings: &ScannerSettings) -> Option<f64> {
    let lookback = settings.volume_lookback;
    let start = closed_15m.len().checked_sub(lookback.checked_add(1)?)?;
    let mut ratio = VolumeRatio::new(lookback);
    closed_15m.get(start..)?.iter().fold(None, |_, c| ratio.update(c.volume))
}

/// [`volume_ratio_of`] kept up to date as one symbol's closed 15m candles arrive, instead of
/// recomputed from the last candles at every scan: the same ratio, to the last bit (the ring
/// holds the same volumes and is summed in the same order), and `None` wherever that gives
/// `None` (fewer than `lookback + 1` candles, or a non-finite volume among them). Lookbacks
/// outside `1..=MAX_VOLUME_LOOKBACK` (which the config refuses) give `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeWindow {
    ring: VolumeRatio,
    /// Finite volumes in a row needed for a ratio (`lookback + 1`; 0: never).
    need: usize,
    /// Candles since the last non-finite volume (capped at `need`).
    finite_run: usize,
}

impl VolumeWindow {
    pub fn new(lookback: usize) -> Self {
        let usable = (1..=crate::analyzer::indicators::MAX_VOLUME_LOOKBACK).contains(&lookback);
        VolumeWindow { ring: VolumeRatio::new(lookback), need: if usable { lookback + 1 } else { 0 }, finite_run: 0 }
    }

    /// The next closed 15m candle's volume.
    pub fn push(&mut self, volume: f64) {
        if volume.is_finite() {
            self.ring.push(volume);
            self.finite_run = (self.finite_run + 1).min(self.need);
        } else {
            self.finite_run = 0;
        }
    }

    /// The ratio [`volume_ratio_of`] gives over the candles pushed so far.
    pub fn ratio(&self) -> Option<f64> {
        if self.need == 0 || self.finite_run < self.need {
            return None;
        }
        self.ring.value()
    }
}

/// Volume filter: the ratio exceeds `scanner.volume_ratio_min` (strictly).
pub fn passes_volume_filter(volume_ratio: Option<f64>, settings: &ScannerSettings) -> bool {
    volume_ratio.is_some_and(|r| r.is_finite() && r > settings.volume_ratio_min)
}

/// Momentum filter: |24 h change %| exceeds `scanner.min_abs_change_pct` (strictly).
pub fn passes_momentum_filter(ticker: &Ticker, settings: &ScannerSettings) -> bool {
    ticker.price_change_pct.is_finite() && ticker.price_change_pct.abs() > settings.min_abs_change_pct
}

/// Liquidity floor: 24 h quote volume at least `scanner.min_quote_volume`.
pub fn passes_liquidity_floor(ticker: &Ticker, settings: &ScannerSettings) -> bool {
    ticker.quote_volume.is_finite() && ticker.quote_volume >= settings.min_quote_volume
}

/// Not listed in `scanner.exclude` (exact, case-insensitive match).
pub fn is_allowed(symbol: &str, settings: &ScannerSettings) -> bool {
    !settings.exclude.iter().any(|x| x.eq_ignore_ascii_case(symbol))
}

/// The cheap ticker filters (exclusions, liquidity floor, momentum) and the documented
/// pre-cut: of the symbols that pass, at most `scanner.prefilter_top_n` with the highest 24 h
/// quote volume (symbol ascending on ties) go on to the volume filter, which needs their 15m
/// candles. Live and backtest both call this.
pub fn prefilter<'a>(tickers: impl IntoIterator<Item = &'a Ticker>, settings: &ScannerSettings) -> Vec<&'a Ticker> {
    let mut out: Vec<&Ticker> = tickers
        .into_iter()
        .filter(|t| is_allowed(&t.symbol, settings))
        .filter(|t| passes_liquidity_floor(t, settings))
        .filter(|t| passes_momentum_filter(t, settings))
        .collect();
    if settings.prefilter_top_n > 0 && out.len() > settings.prefilter_top_n {
        out.sort_by(|a, b| {
            b.quote_volume.partial_cmp(&a.quote_volume).unwrap_or(Ordering::Equal).then_with(|| a.symbol.cmp(&b.symbol))
        });
        out.truncate(settings.prefilter_top_n);
    }
    out
}

/// The rank score of a candidate (higher is better).
pub fn rank_score(volume_ratio: f64, price_change_pct: f64, settings: &ScannerSettings) -> f64 {
    let w = settings.rank_volume_weight;
    let s = w * volume_ratio + (1.0 - w) * price_change_pct.abs();
    if s.is_finite() { s } else { 0.0 }
}

/// Every filter in turn, then rank (score descending, symbol ascending on ties, so the result
/// is deterministic) and keep the top `scanner.max_candidates`.
pub fn scan(inputs: &[ScanInput], settings: &ScannerSettings) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = inputs
        .iter()
        .filter(|i| is_allowed(&i.ticker.symbol, settings))
        .filter(|i| passes_liquidity_floor(&i.ticker, settings))
        .filter(|i| passes_momentum_filter(&i.ticker, settings))
        .filter(|i| passes_volume_filter(i.volume_ratio, settings))
        .filter_map(|i| {
            let ratio = i.volume_ratio?;
            Some(Candidate {
                symbol: i.ticker.symbol.clone(),
                volume_ratio: ratio,
                price_change_pct: i.ticker.price_change_pct,
                quote_volume: i.ticker.quote_volume,
                rank_score: rank_score(ratio, i.ticker.price_change_pct, settings),
            })
        })
        .collect();
    out.sort_by(|a, b| {
        b.rank_score.partial_cmp(&a.rank_score).unwrap_or(Ordering::Equal).then_with(|| a.symbol.cmp(&b.symbol))
    });
    out.truncate(settings.max_candidates);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn input(symbol: &str, change: f64, qv: f64, ratio: Option<f64>) -> ScanInput {
        ScanInput {
            ticker: Ticker {
                symbol: symbol.into(),
                last_price: 1.0,
                price_change_pct: change,
                volume: 1.0,
                quote_volume: qv,
                event_time: 0,
            },
            volume_ratio: ratio,
        }
    }

    /// A flat candle with only its volume set.
    fn volume_candle(volume: f64) -> Candle {
        Candle {
            open_time: 0,
            close_time: 0,
            open: 1.0,
            high: 1.0,
            low: 1.0,
            close: 1.0,
            volume,
            quote_volume: 0.0,
            trades: 0,
            taker_buy_volume: 0.0,
            taker_buy_quote_volume: 0.0,
        }
    }

    mod window {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]
            /// The window kept candle by candle gives, after every candle, exactly what the
            /// batch form gives over all candles so far (non-finite volumes included).
            #[test]
            fn the_kept_window_equals_the_batch_ratio_after_every_candle(
                lookback in 1usize..40,
                volumes in prop::collection::vec(
                    prop_oneof![
                        20 => 0.0f64..1e6,
                        1 => Just(0.0),
                        1 => Just(f64::NAN),
                        1 => Just(f64::INFINITY),
                    ],
                    0..120,
                ),
            ) {
                let mut s = Settings::defaults().unwrap().scanner;
                s.volume_lookback = lookback;
                let mut w = VolumeWindow::new(lookback);
                let mut candles = Vec::new();
                for (i, v) in volumes.iter().enumerate() {
                    w.push(*v);
                    candles.push(volume_candle(*v));
                    let batch = volume_ratio_of(&candles, &s);
                    prop_assert_eq!(w.ratio().map(f64::to_bits), batch.map(f64::to_bits), "after candle {}", i);
                }
            }
        }
    }

    #[test]
    fn volume_ratio_over_the_configured_lookback() {
        let mut s = Settings::defaults().unwrap().scanner;
        s.volume_lookback = 3;
        let candle = volume_candle;
        // Only the last 3 before the last count: mean(2, 4, 6) = 4 → 10 / 4.
        let cs: Vec<Candle> = [100.0, 2.0, 4.0, 6.0, 10.0].into_iter().map(candle).collect();
        assert_eq!(volume_ratio_of(&cs, &s), Some(2.5));
        assert_eq!(volume_ratio_of(&cs[2..], &s), None);
        assert_eq!(volume_ratio_of(&cs[1..], &s), Some(2.5));
    }

    #[test]
    fn filters_exclusions_ranking_and_top_n() {
        let mut s = Settings::defaults().unwrap().scanner;
        s.exclude = vec!["USDCUSDT".into()];
        s.max_candidates = 2;
        let inputs = vec![
            input("AAAUSDT", 3.0, 1e8, Some(2.0)),  // rank 2.5
            input("BBBUSDT", -5.0, 1e8, Some(3.0)), // rank 4.0
            input("CCCUSDT", 0.5, 1e8, Some(9.0)),  // momentum too small
            input("DDDUSDT", 4.0, 1e7, Some(9.0)),  // illiquid
            input("USDCUSDT", 9.0, 1e9, Some(9.0)), // excluded
            input("EEEUSDT", 2.0, 1e8, Some(1.5)),  // ratio not above 1.5
            input("FFFUSDT", 2.0, 1e8, None),       // no history
            input("GGGUSDT", 1.5, 1e8, Some(2.0)),  // rank 1.75, cut by top-N
        ];
        let got: Vec<String> = scan(&inputs, &s).into_iter().map(|c| c.symbol).collect();
        assert_eq!(got, ["BBBUSDT", "AAAUSDT"]);
    }
}
