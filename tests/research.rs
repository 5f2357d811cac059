//! Research workflow: sweep determinism, shard merge = unsharded run byte for byte, the
//! sweep's default point = `kinetic backtest`, config errors exit 2, walk-forward output.
//! Data: the first 12 trading days of two shipped sample symbols (small, so debug builds
//! stay fast).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use flate2::Compression;
use flate2::write::GzEncoder;
use kinetic::backtest::{self, BacktestOptions, metrics};
use kinetic::config::Settings;
use kinetic::core::models::Timeframe;
use kinetic::data::{HEADER, format_row, load_candles};
use kinetic::research::dataset::{BaseConfig, Dataset};
use kinetic::research::output;
use kinetic::research::space::{Shard, Space};
use kinetic::research::sweep::{self, Request};
use kinetic::research::walkforward::{self, Windows};

const DAY_MS: i64 = 86_400_000;

fn sample() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/sample")
}

/// Writes `days` days of 15m (and the 1h/4h up to the same end) of BTCUSDT and XRPUSDT.
fn small_data(dir: &Path, days: i64) {
    for sym in ["BTCUSDT", "XRPUSDT"] {
        let m15 = load_candles(&sample(), sym, Timeframe::M15).unwrap();
        let end = m15[0].open_time + days * DAY_MS;
        for tf in Timeframe::STRATEGY {
            let c = load_candles(&sample(), sym, tf).unwrap();
            let mut w = GzEncoder::new(
                std::fs::File::create(dir.join(format!("{sym}-{tf}.csv.gz"))).unwrap(),
                Compression::fast(),
            );
            writeln!(w, "{HEADER}").unwrap();
            for x in c.iter().filter(|x| x.close_time < end) {
                writeln!(w, "{}", format_row(x)).unwrap();
            }
            w.finish().unwrap();
        }
    }
}

const SPACE: &str = r#"
method = "grid"
objective = "sharpe"
min_trades = 1
pbo_partitions = 4
[params]
"strategy.min_confidence" = [60, 70]
"strategy.atr_stop_mult" = { from = 1.0, to = 2.0, step = 0.5 }
"#;

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (p.file_name().unwrap().to_string_lossy().to_string(), std::fs::read(&p).unwrap())
        })
        .collect()
}

fn sweep_into(data: &Dataset, space: &Space, shard: Shard, out: &Path) {
    let base = BaseConfig::default();
    let req = Request { space, seed: space.seed, shard, base: &base, data, from: None, to: None, progress: false };
    let table = sweep::run(&req).unwrap();
    sweep::write(out, &table).unwrap();
}

#[test]
fn shards_merged_equal_the_unsharded_sweep_byte_for_byte_and_runs_are_deterministic() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    small_data(&data_dir, 12);
    let data = Dataset::load(&data_dir, &[]).unwrap();
    let space = Space::parse(SPACE).unwrap();

    let whole = tmp.path().join("whole");
    sweep_into(&data, &space, Shard::ALL, &whole);
    // Same sweep on a one-thread pool: scheduling must not change a byte.
    let again = tmp.path().join("again");
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap()
        .install(|| sweep_into(&data, &space, Shard::ALL, &again));
    assert_eq!(files(&whole), files(&again), "same space and seed, different thread count");

    let mut shard_dirs = Vec::new();
    for i in 0..3 {
        let d = tmp.path().join(format!("shard{i}"));
        sweep_into(&data, &space, Shard::parse(&format!("{i}/3")).unwrap(), &d);
        shard_dirs.push(d);
    }
    // Merge in a scrambled order.
    let tables = [2, 0, 1].iter().map(|i| output::read_raw(&shard_dirs[*i]).unwrap()).collect();
    let merged_dir = tmp.path().join("merged");
    sweep::write(&merged_dir, &sweep::merge(tables).unwrap()).unwrap();
    let (a, b) = (files(&whole), files(&merged_dir));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, bytes) in &a {
        assert!(bytes == &b[name], "{name} differs between the unsharded and the merged sweep");
    }
    assert!(a.contains_key("best.toml") && a.contains_key("report.html") && a.contains_key("overfitting.json"));
    let results = String::from_utf8(a["results.csv"].clone()).unwrap();
    assert_eq!(results.lines().count(), 7, "header + 6 points");

    // A shard missing, or one given twice, is refused.
    let two: Vec<_> = shard_dirs[..2].iter().map(|d| output::read_raw(d).unwrap()).collect();
    assert!(sweep::merge(two).is_err());
    let dup: Vec<_> = [0, 0, 1].iter().map(|i| output::read_raw(&shard_dirs[*i]).unwrap()).collect();
    assert!(sweep::merge(dup).is_err());
}

#[test]
fn a_sweep_point_with_the_default_values_is_the_backtest() {
    let tmp = tempfile::tempdir().unwrap();
    small_data(tmp.path(), 12);
    let settings = Settings::defaults().unwrap();
    let opts = BacktestOptions { data_dir: tmp.path().to_path_buf(), symbols: Vec::new(), from: None, to: None };
    let mut p = backtest::prepare(&settings, &opts).unwrap();
    backtest::run_feed(&mut p.feed, &mut p.engine, &mut |_| {}).unwrap();
    let names: Vec<String> = p.engine.symbol_names().map(str::to_string).collect();
    let expected = metrics::compute(&names, p.engine.account(), &p.engine.equity, &p.engine.stats);

    let data = Dataset::load(tmp.path(), &[]).unwrap();
    let point = BaseConfig::default().settings_with(&[("strategy.min_confidence", "60".into())]).unwrap();
    assert_eq!(point, settings);
    let got = data.run(&point, None, None).unwrap();
    assert_eq!(got.metrics, expected);
    assert!(expected.trades > 0, "the slice trades");
}

#[test]
fn a_space_point_is_validated_like_config_and_bad_input_exits_2() {
    let base = BaseConfig::default();
    let e = base.settings_with(&[("strategy.no_such_key", "1".into())]).unwrap_err().to_string();
    assert!(e.contains("strategy.no_such_key"), "{e}");
    let e = base.settings_with(&[("strategy.min_confidence", "55".into())]).unwrap_err().to_string();
    assert!(e.contains("min_confidence") && e.contains("55"), "{e}");

    let tmp = tempfile::tempdir().unwrap();
    small_data(tmp.path(), 3);
    let space = tmp.path().join("space.toml");
    std::fs::write(&space, "[params]\n\"strategy.atr_stop_multiplier\" = [1.0, 2.0]\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kinetic"))
        .args(["sweep", "--no-progress", "--space"])
        .arg(&space)
        .arg("--data")
        .arg(tmp.path())
        .arg("--out")
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("strategy.atr_stop_multiplier"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_kinetic"))
        .args(["sweep", "--space"])
        .arg(&space)
        .args(["--shard", "3/3"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--shard") && err.contains("0 <= I < N"), "{err}");
}

#[test]
fn walk_forward_picks_in_sample_and_stitches_out_of_sample() {
    let tmp = tempfile::tempdir().unwrap();
    small_data(tmp.path(), 34);
    let data = Dataset::load(tmp.path(), &[]).unwrap();
    let space = Space::parse(
        "min_trades = 1\npbo_partitions = 2\n[params]\n\"strategy.min_confidence\" = [60, 70]\n\"strategy.trail_pct\" = [0.5, 1.5]\n",
    )
    .unwrap();
    // The 4h file starts 21 days before the 15m one: warm-up is satisfied from the 15m start.
    let w = Windows { in_sample_days: 5, out_of_sample_days: 3, step_days: 3, anchored: false };
    let wf = walkforward::run(&space, 0, &w, &BaseConfig::default(), &data, false).unwrap();
    assert!(wf.windows.len() >= 2, "{} windows", wf.windows.len());
    for win in &wf.windows {
        assert_eq!(win.window.oos_from, win.window.is_to);
        if win.best_point.is_some() {
            // OOS days are the window's OOS days.
            let days: Vec<i64> = win.oos_daily.iter().map(|(d, _)| *d).collect();
            let ok = days.iter().all(|d| *d * DAY_MS >= win.window.oos_from && *d * DAY_MS < win.window.oos_to);
            assert!(ok, "{days:?} {:?}", win.window);
        }
    }
    let out = tmp.path().join("wf");
    let summary = wf.write(&out).unwrap();
    assert!(summary.contains("stitched out-of-sample return"), "{summary}");
    let windows = std::fs::read_to_string(out.join("windows.csv")).unwrap();
    assert_eq!(windows.lines().count(), wf.windows.len() + 1);
    assert!(std::fs::read_to_string(out.join("report.html")).unwrap().contains("<svg"));
}

fn kinetic(args: &[&str], paths: &[&Path]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kinetic"));
    c.args(args);
    for p in paths {
        c.arg(p);
    }
    c.output().unwrap()
}

#[test]
fn cli_shards_and_merge_equal_the_unsharded_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    small_data(&data, 8);
    let space = tmp.path().join("space.toml");
    std::fs::write(&space, "method = \"random\"\nsamples = 5\nseed = 9\npbo_partitions = 2\n[params]\n\"strategy.trail_pct\" = { from = 0.5, to = 2.0, step = 0.5 }\n\"risk.max_open_positions\" = [1, 3]\n").unwrap();
    let t = tmp.path();
    let run = |extra: &[&str], out: &str| {
        let mut args = vec!["sweep", "--no-progress"];
        args.extend_from_slice(extra);
        let o = Command::new(env!("CARGO_BIN_EXE_kinetic"))
            .args(&args)
            .arg("--space")
            .arg(&space)
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(t.join(out))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run(&["--threads", "2"], "whole");
    run(&["--shard", "0/2", "--threads", "1"], "s0");
    run(&["--shard", "1/2"], "s1");
    let o = kinetic(&["sweep", "merge", "--out"], &[&t.join("merged"), &t.join("s1"), &t.join("s0")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(files(&t.join("whole")), files(&t.join("merged")));
}
