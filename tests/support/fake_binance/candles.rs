//! Candle generators for tests: deterministic series to load with `set_klines` or stream with
//! `push_kline`.

use kinetic::core::models::Candle;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One candle with `open` → `close`, a small wick, and volume scaled to the price.
pub fn candle_at(open_time: i64, interval_ms: i64, open: f64, close: f64, volume: f64) -> Candle {
    let high = open.max(close) * 1.001;
    let low = open.min(close) * 0.999;
    Candle {
        open_time,
        close_time: open_time + interval_ms - 1,
        open,
        high,
        low,
        close,
        volume,
        quote_volume: volume * (open + close) / 2.0,
        trades: 100,
        taker_buy_volume: volume / 2.0,
        taker_buy_quote_volume: volume * (open + close) / 4.0,
    }
}

/// `n` candles from `first_open_time`, each closing `pct_per_candle` % above its open (negative
/// for a down trend).
pub fn trend_candles(
    first_open_time: i64,
    interval_ms: i64,
    n: usize,
    start_price: f64,
    pct_per_candle: f64,
) -> Vec<Candle> {
    let mut price = start_price;
    (0..n)
        .map(|i| {
            let open = price;
            price = open * (1.0 + pct_per_candle / 100.0);
            candle_at(first_open_time + i as i64 * interval_ms, interval_ms, open, price, 1000.0)
        })
        .collect()
}

/// `n` candles of a seeded random walk (steps up to `max_step_pct` %), rounded to 8 decimals.
pub fn random_walk_candles(
    first_open_time: i64,
    interval_ms: i64,
    n: usize,
    start_price: f64,
    max_step_pct: f64,
    seed: u64,
) -> Vec<Candle> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut price = start_price;
    (0..n)
        .map(|i| {
            let open = price;
            let step: f64 = rng.random_range(-max_step_pct..=max_step_pct);
            price = ((open * (1.0 + step / 100.0)) * 1e8).round() / 1e8;
            let volume = rng.random_range(500.0..1500.0_f64).round();
            candle_at(first_open_time + i as i64 * interval_ms, interval_ms, open, price, volume)
        })
        .collect()
}

/// Open time of the candle containing `t`.
pub fn align(t: i64, interval_ms: i64) -> i64 {
    t - t.rem_euclid(interval_ms)
}
