//! Overfitting statistics.
//!
//! - Deflated Sharpe ratio (Bailey & López de Prado, "The Deflated Sharpe Ratio: Correcting
//!   for Selection Bias, Backtest Overfitting and Non-Normality", J. Portfolio Management
//!   40(5), 2014): the probability that the best of N trials has a true Sharpe above the
//!   Sharpe the best of N skill-less trials would show,
//!   `DSR = Φ((SR* − SR0)·√(T−1) / √(1 − γ3·SR* + (γ4 − 1)/4·SR*²))` with
//!   `SR0 = √V[SR]·((1 − γ)·Φ⁻¹(1 − 1/N) + γ·Φ⁻¹(1 − 1/(N·e)))`, γ the Euler–Mascheroni
//!   constant, every Sharpe per period (here per day, not annualized), γ3 the skewness and
//!   γ4 the (non-excess) kurtosis of the chosen trial's returns, V[SR] the variance of the
//!   trials' Sharpe ratios.
//! - Probability of backtest overfitting by combinatorially symmetric cross-validation
//!   (Bailey, Borwein, López de Prado & Zhu, "The Probability of Backtest Overfitting",
//!   J. Computational Finance 20(4), 2017; working paper 2015): see [`pbo_cscv`].

/// Euler–Mascheroni constant.
pub const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// Standard normal CDF, from the complementary error function (Numerical Recipes' `erfcc`
/// Chebyshev fit, fractional error < 1.2e-7 everywhere).
pub fn norm_cdf(x: f64) -> f64 {
    let z = x.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * poly.exp();
    if x >= 0.0 { 1.0 - 0.5 * erfc } else { 0.5 * erfc }
}

/// Inverse standard normal CDF (Acklam's rational approximation, relative error < 1.2e-9),
/// for p in (0, 1); ±∞ at the ends, NaN outside.
pub fn norm_inv(p: f64) -> f64 {
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] =
        [7.784_695_709_041_462e-3, 3.224_671_290_700_398e-1, 2.445_134_137_142_996, 3.754_408_661_907_416];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    let p_low = 0.024_25;
    if p < p_low {
        tail((-2.0 * p.ln()).sqrt())
    } else if p <= 1.0 - p_low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    }
}

/// Mean, sample standard deviation, skewness and (non-excess) kurtosis of a series; the
/// two shape moments are the population ones the DSR paper uses (normal: 0 and 3).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    pub n: usize,
    pub mean: f64,
    pub std: f64,
    pub skew: f64,
    pub kurtosis: f64,
}

pub fn moments(x: &[f64]) -> Option<Moments> {
    let n = x.len();
    if n < 2 {
        return None;
    }
    let nf = n as f64;
    let mean = x.iter().sum::<f64>() / nf;
    let (mut m2, mut m3, mut m4) = (0.0, 0.0, 0.0);
    for v in x {
        let d = v - mean;
        m2 += d * d;
        m3 += d * d * d;
        m4 += d * d * d * d;
    }
    let (m2p, m3p, m4p) = (m2 / nf, m3 / nf, m4 / nf);
    let std = (m2 / (nf - 1.0)).sqrt();
    let (skew, kurtosis) = if m2p > 0.0 { (m3p / m2p.powf(1.5), m4p / (m2p * m2p)) } else { (0.0, 3.0) };
    Some(Moments { n, mean, std, skew, kurtosis })
}

/// Per-period Sharpe ratio (mean / sample std), `None` when undefined.
pub fn sharpe(x: &[f64]) -> Option<f64> {
    let m = moments(x)?;
    (m.std > 0.0 && m.std.is_finite()).then(|| m.mean / m.std)
}

/// The Sharpe the best of `n` skill-less trials is expected to show, given the variance of
/// the trials' Sharpe ratios (same period as the variance). 0 for a single trial.
pub fn expected_max_sharpe(var_sr: f64, n: usize) -> f64 {
    if n < 2 || var_sr <= 0.0 {
        return 0.0;
    }
    let nf = n as f64;
    var_sr.sqrt()
        * ((1.0 - EULER_GAMMA) * norm_inv(1.0 - 1.0 / nf)
            + EULER_GAMMA * norm_inv(1.0 - 1.0 / (nf * std::f64::consts::E)))
}

/// Probabilistic Sharpe ratio: P(true SR > `sr0`) given an estimate `sr` over `t`
/// observations with the given skewness and kurtosis (Bailey & López de Prado 2012).
pub fn probabilistic_sharpe(sr: f64, sr0: f64, t: usize, skew: f64, kurtosis: f64) -> Option<f64> {
    if t < 2 {
        return None;
    }
    let denom = 1.0 - skew * sr + (kurtosis - 1.0) / 4.0 * sr * sr;
    (denom > 0.0).then(|| norm_cdf((sr - sr0) * ((t - 1) as f64).sqrt() / denom.sqrt()))
}

/// The deflated Sharpe ratio and what went into it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Deflated {
    /// Chosen trial's Sharpe, per period.
    pub sharpe: f64,
    /// Observations (days).
    pub t: usize,
    pub skew: f64,
    pub kurtosis: f64,
    pub trials: usize,
    /// Variance of the trials' per-period Sharpe ratios.
    pub var_sharpe: f64,
    /// Expected maximum Sharpe of `trials` skill-less trials, per period.
    pub sr0: f64,
    /// PSR against 0 (no selection correction).
    pub psr0: f64,
    pub dsr: f64,
}

/// DSR of the trial with `returns`, chosen among `trial_sharpes` (per period; `trials` counts
/// every trial run, including those whose Sharpe is undefined).
pub fn deflated_sharpe(returns: &[f64], trial_sharpes: &[f64], trials: usize) -> Option<Deflated> {
    let m = moments(returns)?;
    let sr = sharpe(returns)?;
    let var_sharpe = moments(trial_sharpes).map(|t| t.std * t.std).unwrap_or(0.0);
    let sr0 = expected_max_sharpe(var_sharpe, trials);
    let psr0 = probabilistic_sharpe(sr, 0.0, m.n, m.skew, m.kurtosis)?;
    let dsr = probabilistic_sharpe(sr, sr0, m.n, m.skew, m.kurtosis)?;
    Some(Deflated { sharpe: sr, t: m.n, skew: m.skew, kurtosis: m.kurtosis, trials, var_sharpe, sr0, psr0, dsr })
}

/// Result of CSCV.
#[derive(Debug, Clone, PartialEq)]
pub struct Pbo {
    /// Share of the combinations whose in-sample best ranks at or below the median out of
    /// sample (logit ≤ 0).
    pub pbo: f64,
    pub partitions: usize,
    pub combinations: usize,
    /// Rows used per partition (the oldest `T mod S` rows are left out).
    pub rows_per_partition: usize,
    /// Logit λ = ln(ω / (1 − ω)) of the relative OOS rank ω of each in-sample best.
    pub logits: Vec<f64>,
    /// Share of combinations whose in-sample best had a negative Sharpe out of sample.
    pub prob_oos_loss: f64,
}

/// PBO by combinatorially symmetric cross-validation. `series[n]` is trial n's return
/// series, all of length T (aligned rows). Rows are cut into `partitions` (S, even)
/// contiguous blocks of ⌊T/S⌋ rows; for every choice of S/2 blocks as the in-sample set J
/// (the rest, J̄, out of sample): n* = the trial with the best Sharpe on J (the first on a
/// tie), ω = its rank on J̄ / (N + 1) (rank 1 = worst; ties with other trials count a half),
/// λ = ln(ω / (1 − ω)). PBO = the share of combinations with λ ≤ 0.
pub fn pbo_cscv(series: &[Vec<f64>], partitions: usize) -> Option<Pbo> {
    let n = series.len();
    let t = series.iter().map(Vec::len).min()?;
    let s = partitions;
    if n < 2 || s < 2 || !s.is_multiple_of(2) || s > 24 || t < s * 2 {
        return None;
    }
    let rows = t / s;
    let skip = t - rows * s;
    // Per trial and block: Σr, Σr², count.
    let sums: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|x| {
            (0..s)
                .map(|b| {
                    let block = x.get(skip + b * rows..skip + (b + 1) * rows).unwrap_or(&[]);
                    (block.iter().sum(), block.iter().map(|v| v * v).sum())
                })
                .collect()
        })
        .collect();
    let perf = |trial: &[(f64, f64)], mask: u32, inside: bool| -> f64 {
        let (mut a, mut b, mut k) = (0.0, 0.0, 0usize);
        for (i, (sa, sb)) in trial.iter().enumerate() {
            if ((mask >> i) & 1 == 1) == inside {
                a += sa;
                b += sb;
                k += rows;
            }
        }
        if k < 2 {
            return 0.0;
        }
        let kf = k as f64;
        let mean = a / kf;
        let var = (b - kf * mean * mean) / (kf - 1.0);
        if var > 1e-300 { mean / var.sqrt() } else { 0.0 }
    };
    let mut logits = Vec::new();
    let mut losses = 0usize;
    for mask in 0u32..(1u32 << s) {
        if mask.count_ones() as usize != s / 2 {
            continue;
        }
        let mut best = 0usize;
        let mut best_is = f64::NEG_INFINITY;
        for (i, trial) in sums.iter().enumerate() {
            let p = perf(trial, mask, true);
            if p > best_is {
                best_is = p;
                best = i;
            }
        }
        let oos: Vec<f64> = sums.iter().map(|trial| perf(trial, mask, false)).collect();
        let star = oos.get(best).copied().unwrap_or(0.0);
        let below = oos.iter().filter(|v| **v < star).count() as f64;
        let ties = oos.iter().filter(|v| **v == star).count().saturating_sub(1) as f64;
        let omega = (1.0 + below + 0.5 * ties) / (n as f64 + 1.0);
        logits.push((omega / (1.0 - omega)).ln());
        losses += usize::from(star < 0.0);
    }
    let c = logits.len();
    let overfit = logits.iter().filter(|l| **l <= 0.0).count();
    Some(Pbo {
        pbo: overfit as f64 / c as f64,
        partitions: s,
        combinations: c,
        rows_per_partition: rows,
        prob_oos_loss: losses as f64 / c as f64,
        logits,
    })
}

/// One-line verdicts.
pub fn dsr_verdict(d: &Deflated) -> String {
    let ann = 365f64.sqrt();
    let what = if d.dsr >= 0.95 {
        "the best point's Sharpe is significant at 95 % after correcting for the number of trials"
    } else if d.psr0 >= 0.95 {
        "the best point's Sharpe would look significant alone, but NOT after correcting for the trials: selection bias"
    } else {
        "the best point's Sharpe is not significant: no evidence of an edge"
    };
    format!(
        "deflated Sharpe ratio {:.3} (best Sharpe {:.2}/yr vs {:.2}/yr expected from the best of {} skill-less trials; PSR(0) {:.3}): {what}",
        d.dsr,
        d.sharpe * ann,
        d.sr0 * ann,
        d.trials,
        d.psr0
    )
}

pub fn moments_verdict(d: &Deflated) -> String {
    let shape = if d.skew < -0.5 || d.kurtosis > 6.0 {
        "left-skewed or fat-tailed: the plain Sharpe overstates the risk-adjusted return (the DSR accounts for it)"
    } else if d.skew > 0.5 {
        "right-skewed: the plain Sharpe understates it a little"
    } else {
        "close to normal: the Sharpe is a fair summary"
    };
    format!(
        "best point's daily returns: skewness {:.2}, kurtosis {:.2} (normal: 0, 3) over {} days — {shape}",
        d.skew, d.kurtosis, d.t
    )
}

pub fn variance_verdict(d: &Deflated) -> String {
    let ann = 365f64.sqrt();
    format!(
        "variance of Sharpe across trials {:.3e}/day² (std {:.2}/yr): with {} trials noise alone is expected to reach a Sharpe of {:.2}/yr",
        d.var_sharpe,
        d.var_sharpe.sqrt() * ann,
        d.trials,
        d.sr0 * ann
    )
}

pub fn pbo_verdict(p: &Pbo) -> String {
    let what = if p.pbo > 0.5 {
        "the in-sample best is more likely than not below the median out of sample: the selection is overfit"
    } else if p.pbo > 0.2 {
        "the in-sample best often falls below the median out of sample: weak evidence the selection generalises"
    } else {
        "the in-sample best usually stays above the median out of sample"
    };
    format!(
        "PBO {:.3} over {} combinations of {} partitions ({} days each; P(OOS Sharpe < 0) {:.3}): {what}",
        p.pbo, p.combinations, p.partitions, p.rows_per_partition, p.prob_oos_loss
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn normal_functions_agree_with_table_values() {
        // Standard normal table values (Abramowitz & Stegun 26.2).
        assert!((norm_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((norm_cdf(1.959_963_985) - 0.975).abs() < 1e-7);
        assert!((norm_cdf(-1.0) - 0.158_655_254).abs() < 1e-7);
        assert!((norm_inv(0.99) - 2.326_347_874).abs() < 1e-7);
        assert!((norm_inv(0.025) + 1.959_963_985).abs() < 1e-7);
        assert!((norm_inv(1e-6) + 4.753_424_309).abs() < 1e-6);
    }

    #[test]
    fn moments_of_a_small_series() {
        // x = 1, 2, 3, 10: mean 4, deviations -3, -2, -1, 6; central moments by hand:
        // m2 = 50/4 = 12.5, m3 = 180/4 = 45, m4 = 1394/4 = 348.5.
        let m = moments(&[1.0, 2.0, 3.0, 10.0]).unwrap();
        assert!((m.mean - 4.0).abs() < 1e-12);
        assert!((m.skew - 45.0 / 12.5f64.powf(1.5)).abs() < 1e-12);
        assert!((m.kurtosis - 348.5 / 156.25).abs() < 1e-12);
        assert!((m.std - (50.0f64 / 3.0).sqrt()).abs() < 1e-12);
    }
}
