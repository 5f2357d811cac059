//! Overfitting statistics against independent values: the deflated Sharpe ratio against the
//! worked example of Bailey & López de Prado (2014) and against a separate, plain
//! implementation (normal CDF by numerical integration, its inverse by bisection); PBO by
//! CSCV against a hand-worked case and a brute-force implementation that builds every
//! in-sample / out-of-sample series explicitly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use kinetic::research::space::SplitMix64;
use kinetic::research::stats::{self, EULER_GAMMA};

/// Φ by Simpson's rule on the density from 0 to |x| (independent of the erfc fit).
fn phi(x: f64) -> f64 {
    let n = 20_000;
    let h = x.abs() / n as f64;
    let f = |t: f64| (-t * t / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
    let mut s = f(0.0) + f(x.abs());
    for i in 1..n {
        s += f(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
    }
    let half = s * h / 3.0;
    if x >= 0.0 { 0.5 + half } else { 0.5 - half }
}

fn phi_inv(p: f64) -> f64 {
    let (mut lo, mut hi) = (-10.0, 10.0);
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if phi(mid) < p { lo = mid } else { hi = mid }
    }
    (lo + hi) / 2.0
}

#[test]
fn deflated_sharpe_matches_the_papers_worked_example() {
    // Bailey & López de Prado (2014), section 5 "A numerical example": N = 100 trials,
    // V[SR] = 1/2 across trials (annualized), best SR = 2.5 annualized, T = 1250 daily
    // observations, skewness −3, kurtosis 10, 250 days a year. The paper reports
    // SR0 ≈ 0.1132 (daily) and DSR ≈ 0.9004.
    let var_daily = 0.5 / 250.0;
    let sr = 2.5 / 250f64.sqrt();
    let sr0 = stats::expected_max_sharpe(var_daily, 100);
    assert!((sr0 - 0.1132).abs() < 5e-4, "SR0 {sr0}");
    let dsr = stats::probabilistic_sharpe(sr, sr0, 1250, -3.0, 10.0).unwrap();
    assert!((dsr - 0.9004).abs() < 1e-3, "DSR {dsr}");

    // The same formulas, written out with the independent Φ and Φ⁻¹.
    let n = 100.0f64;
    let sr0_ind = var_daily.sqrt()
        * ((1.0 - EULER_GAMMA) * phi_inv(1.0 - 1.0 / n) + EULER_GAMMA * phi_inv(1.0 - 1.0 / (n * std::f64::consts::E)));
    let z = (sr - sr0_ind) * 1249f64.sqrt() / (1.0 + 3.0 * sr + 9.0 / 4.0 * sr * sr).sqrt();
    assert!((sr0 - sr0_ind).abs() < 1e-6, "{sr0} vs {sr0_ind}");
    assert!((dsr - phi(z)).abs() < 1e-6, "{dsr} vs {}", phi(z));
}

#[test]
fn deflated_sharpe_from_return_series() {
    // A series with a known shape; the trial Sharpe ratios are plain numbers.
    let mut rng = SplitMix64::new(11);
    let r: Vec<f64> = (0..400).map(|_| 0.001 + 0.01 * (rng.unit() - 0.5)).collect();
    let trials = [0.05, -0.02, 0.01, 0.08, 0.0];
    let d = stats::deflated_sharpe(&r, &trials, 5).unwrap();
    let mean = r.iter().sum::<f64>() / 400.0;
    let sd = (r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 399.0).sqrt();
    assert!((d.sharpe - mean / sd).abs() < 1e-12);
    let tm = trials.iter().sum::<f64>() / 5.0;
    let tv = trials.iter().map(|x| (x - tm).powi(2)).sum::<f64>() / 4.0;
    assert!((d.var_sharpe - tv).abs() < 1e-15);
    assert!(d.dsr < d.psr0, "deflating for 5 trials lowers the probability");
    // One trial: no deflation.
    let one = stats::deflated_sharpe(&r, &[d.sharpe], 1).unwrap();
    assert!((one.dsr - one.psr0).abs() < 1e-15);
}

#[test]
fn pbo_hand_worked_cases() {
    // Two partitions of two days. A: block 1 Sharpe +1.41, block 2 −2.12; B: +0.71, +2.12.
    // J = {1}: A is chosen, ranks last on block 2 → ω = 1/3, λ = ln ½ ≤ 0.
    // J = {2}: B is chosen, ranks last on block 1 → ω = 1/3, λ ≤ 0. PBO = 1.
    let a = vec![0.01, 0.03, -0.02, -0.01];
    let b = vec![0.00, 0.01, 0.01, 0.02];
    let p = stats::pbo_cscv(&[a.clone(), b], 2).unwrap();
    assert_eq!(p.combinations, 2);
    assert!((p.pbo - 1.0).abs() < 1e-12);
    for l in &p.logits {
        assert!((l - 0.5f64.ln()).abs() < 1e-12);
    }
    // C beats A in both blocks: always chosen, always first out of sample → ω = 2/3, PBO = 0.
    let c = vec![0.02, 0.03, 0.02, 0.03];
    let p = stats::pbo_cscv(&[a, c], 2).unwrap();
    assert!(p.pbo.abs() < 1e-12);
    assert!(p.logits.iter().all(|l| (l - 2f64.ln()).abs() < 1e-12));
}

/// Brute force: every half of the partitions, series concatenated, Sharpe computed directly.
fn pbo_naive(series: &[Vec<f64>], s: usize) -> (f64, Vec<f64>) {
    let t = series[0].len();
    let rows = t / s;
    let skip = t - rows * s;
    let sharpe = |x: &[f64]| {
        let n = x.len() as f64;
        let m = x.iter().sum::<f64>() / n;
        let v = x.iter().map(|y| (y - m).powi(2)).sum::<f64>() / (n - 1.0);
        if v > 1e-300 { m / v.sqrt() } else { 0.0 }
    };
    let mut logits = Vec::new();
    for mask in 0u32..(1 << s) {
        if mask.count_ones() as usize != s / 2 {
            continue;
        }
        let part = |x: &Vec<f64>, inside: bool| -> Vec<f64> {
            (0..s)
                .filter(|b| ((mask >> b) & 1 == 1) == inside)
                .flat_map(|b| x[skip + b * rows..skip + (b + 1) * rows].to_vec())
                .collect()
        };
        let is: Vec<f64> = series.iter().map(|x| sharpe(&part(x, true))).collect();
        let oos: Vec<f64> = series.iter().map(|x| sharpe(&part(x, false))).collect();
        let mut best = 0;
        for i in 1..is.len() {
            if is[i] > is[best] {
                best = i;
            }
        }
        let mut rank = 1.0;
        for (i, v) in oos.iter().enumerate() {
            if i != best {
                if *v < oos[best] {
                    rank += 1.0;
                } else if *v == oos[best] {
                    rank += 0.5;
                }
            }
        }
        let w = rank / (series.len() as f64 + 1.0);
        logits.push((w / (1.0 - w)).ln());
    }
    let pbo = logits.iter().filter(|l| **l <= 0.0).count() as f64 / logits.len() as f64;
    (pbo, logits)
}

#[test]
fn pbo_matches_a_brute_force_implementation() {
    let mut rng = SplitMix64::new(5);
    // 12 trials × 103 days (3 oldest days left out with 10 partitions); a few with drift.
    let series: Vec<Vec<f64>> = (0..12)
        .map(|k| (0..103).map(|_| (rng.unit() - 0.5) * 0.02 + if k % 4 == 0 { 0.002 } else { 0.0 }).collect())
        .collect();
    for s in [2, 4, 10] {
        let got = stats::pbo_cscv(&series, s).unwrap();
        let (pbo, logits) = pbo_naive(&series, s);
        assert_eq!(got.logits.len(), logits.len());
        for (a, b) in got.logits.iter().zip(&logits) {
            assert!((a - b).abs() < 1e-9, "S = {s}: {a} vs {b}");
        }
        assert!((got.pbo - pbo).abs() < 1e-12, "S = {s}");
    }
    // Pure noise: PBO near one half; a dominant strategy: near zero.
    let noise: Vec<Vec<f64>> = (0..40).map(|_| (0..160).map(|_| rng.unit() - 0.5).collect()).collect();
    let p = stats::pbo_cscv(&noise, 8).unwrap().pbo;
    assert!((0.2..0.8).contains(&p), "noise PBO {p}");
    let mut skilled = noise.clone();
    skilled[7] = (0..160).map(|_| rng.unit() - 0.2).collect();
    assert!(stats::pbo_cscv(&skilled, 8).unwrap().pbo < 0.05);
}
