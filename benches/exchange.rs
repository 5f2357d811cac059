//! Decode + apply benchmarks of the market stream's hot paths: one kline frame, and one
//! all-market mark-price array of ~300 symbols, each decoded from the combined-stream bytes and
//! merged into a warm `DataHub` (targets: ≤ 2 µs and ≤ 150 µs).
//!
//! `cargo bench --bench exchange -- --quick` for a short run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use kinetic::core::data_hub::DataHub;
use kinetic::core::models::{Candle, Timeframe};
use kinetic::exchange::ExchangeEvent;
use kinetic::exchange::binance::events::{MarketMessage, decode_market};
use kinetic::tasks::ingest::apply_market_event;

const SYMBOLS: usize = 300;

fn to_event(m: MarketMessage) -> Option<ExchangeEvent> {
    match m {
        MarketMessage::Kline { symbol, timeframe, candle, closed } => {
            Some(ExchangeEvent::Kline { symbol, timeframe, candle, closed })
        }
        MarketMessage::MarkPrices(v) => Some(ExchangeEvent::MarkPrices(v)),
        MarketMessage::Tickers(v) => Some(ExchangeEvent::Tickers(v)),
        _ => None,
    }
}

fn kline_frame(open_time: i64) -> Vec<u8> {
    format!(
        r#"{{"stream":"btcusdt@kline_15m","data":{{"e":"kline","E":{e},"s":"BTCUSDT","k":{{"t":{open_time},"T":{close},"s":"BTCUSDT","i":"15m","f":7297376181,"L":7297379999,"o":"68005.10","c":"68011.40","h":"68020.00","l":"67990.30","v":"153.482","n":3821,"x":false,"q":"10438216.20930","V":"80.112","Q":"5448213.01120","B":"0"}}}}}}"#,
        e = open_time + 5_000,
        close = open_time + 899_999
    )
    .into_bytes()
}

fn mark_price_frame() -> Vec<u8> {
    let items: Vec<String> = (0..SYMBOLS)
        .map(|i| {
            format!(
                r#"{{"e":"markPriceUpdate","E":1771263510000,"s":"SYM{i:03}USDT","p":"{}.{:08}","P":"67836.82194783","i":"{}.14043478","r":"-0.00004435","T":1771286400000}}"#,
                100 + i,
                i * 7919 % 100_000_000,
                100 + i
            )
        })
        .collect();
    format!(r#"{{"stream":"!markPrice@arr@1s","data":[{}]}}"#, items.join(",")).into_bytes()
}

fn warm_hub() -> DataHub {
    let mut hub = DataHub::default();
    let step = Timeframe::M15.duration_ms();
    for i in 0..300 {
        let t = 1_771_200_000_000 - (300 - i) * step;
        let c = Candle {
            open_time: t,
            close_time: t + step - 1,
            open: 1.0,
            high: 2.0,
            low: 0.5,
            close: 1.5,
            volume: 1.0,
            quote_volume: 1.0,
            trades: 1,
            taker_buy_volume: 0.5,
            taker_buy_quote_volume: 0.5,
        };
        hub.merge_candle("BTCUSDT", Timeframe::M15, c);
    }
    if let Some(ev) = decode_market(&mark_price_frame()).ok().and_then(to_event) {
        apply_market_event(&mut hub, &ev, 0);
    }
    hub
}

fn bench(c: &mut Criterion) {
    let kline = kline_frame(1_771_200_000_000);
    let marks = mark_price_frame();
    let mut hub = warm_hub();
    c.bench_function("decode+apply kline event", |b| {
        b.iter(|| {
            let ev = to_event(decode_market(black_box(&kline)).unwrap()).unwrap();
            apply_market_event(&mut hub, &ev, 1);
        })
    });
    c.bench_function("decode+apply markPrice array (300 symbols)", |b| {
        b.iter(|| {
            let ev = to_event(decode_market(black_box(&marks)).unwrap()).unwrap();
            apply_market_event(&mut hub, &ev, 1);
        })
    });
    c.bench_function("decode only kline event", |b| b.iter(|| decode_market(black_box(&kline)).unwrap()));
    c.bench_function("decode only markPrice array (300 symbols)", |b| {
        b.iter(|| decode_market(black_box(&marks)).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
