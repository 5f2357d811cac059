//! Sweep throughput in points per second (criterion's "elements/s"), with the candles
//! loaded once and shared by every point, on rayon's pool (one thread per core):
//! - `sample/grid16`: a 16-point grid over the shipped `data/sample` (5 symbols, 89 days);
//! - `klines/grid8`: an 8-point grid over the shared klines (`KINETIC_BENCH_KLINES`, default
//!   `../shared/data/klines`; skipped when absent), trading 2025-08-17 → 2026-05-06 (the
//!   263-day window of five perps the research issue measures).
//!
//! Run: `cargo bench --bench sweep`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kinetic::research::dataset::{BaseConfig, Dataset};
use kinetic::research::space::{Shard, Space};
use kinetic::research::sweep::{self, Request};

const GRID16: &str =
    "[params]\n\"strategy.min_confidence\" = [60, 65, 70, 75]\n\"strategy.atr_stop_mult\" = [1.0, 1.5, 2.0, 2.5]\n";
const GRID8: &str = "[params]\n\"strategy.min_confidence\" = [60, 65, 70, 75]\n\"strategy.trail_pct\" = [1.0, 1.5]\n";

fn bench_sweep(
    c: &mut Criterion,
    group: &str,
    name: &str,
    data: &Dataset,
    space: &str,
    window: (Option<i64>, Option<i64>),
) {
    let space = Space::parse(space).unwrap();
    let n = space.points(0).len() as u64;
    let base = BaseConfig::default();
    let mut g = c.benchmark_group(group);
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(n));
    g.bench_function(name, |b| {
        b.iter(|| {
            let req = Request {
                space: &space,
                seed: 0,
                shard: Shard::ALL,
                base: &base,
                data,
                from: window.0,
                to: window.1,
                progress: false,
            };
            sweep::run(&req).unwrap().rows.len()
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let sample = Dataset::load(&root.join("data/sample"), &[]).unwrap();
    bench_sweep(c, "sample", "grid16", &sample, GRID16, (None, None));
    let klines = std::env::var_os("KINETIC_BENCH_KLINES")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/data/klines"));
    if klines.join("BTCUSDT-15m.csv.gz").is_file() || klines.join("BTCUSDT-15m.csv").is_file() {
        let full = Dataset::load(&klines, &[]).unwrap();
        // 2025-08-17T00:00Z to 2026-05-07T00:00Z (exclusive).
        bench_sweep(c, "klines", "grid8", &full, GRID8, (Some(1_755_388_800_000), Some(1_778_112_000_000)));
    }
}

criterion_group!(sweep_benches, benches);
criterion_main!(sweep_benches);
