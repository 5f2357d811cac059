//! Range and consistency checks of loaded [`Settings`]: every numeric key, URLs, the listen
//! address and the leverage and sizing tier tables. Pure: no I/O.

use std::fmt;

use super::{ConfigError, LeverageTier, Settings, SizingTier};

pub(super) fn invalid(key: &str, value: impl fmt::Display, allowed: &str) -> ConfigError {
    ConfigError::Invalid { key: key.to_string(), value: value.to_string(), allowed: allowed.to_string() }
}

fn pct_range(key: &str, v: f64, lo: f64, hi: f64, lo_inclusive: bool) -> Result<(), ConfigError> {
    let ok = v.is_finite() && (if lo_inclusive { v >= lo } else { v > lo }) && v <= hi;
    if ok {
        Ok(())
    } else {
        let open = if lo_inclusive { "[" } else { "(" };
        Err(invalid(key, v, &format!("a number in {open}{lo}, {hi}]")))
    }
}

fn int_range<T: PartialOrd + fmt::Display + Copy>(key: &str, v: T, lo: T, hi: T) -> Result<(), ConfigError> {
    if v >= lo && v <= hi { Ok(()) } else { Err(invalid(key, v, &format!("an integer in [{lo}, {hi}]"))) }
}

/// Range-checks every numeric key and the consistency of the tables.
///
/// # Errors
/// The first violation found, naming the key.
pub fn validate(s: &Settings) -> Result<(), ConfigError> {
    let e = &s.exchange;
    for (key, url, schemes) in [
        ("exchange.rest_url", &e.rest_url, ["http://", "https://"]),
        ("exchange.ws_url", &e.ws_url, ["ws://", "wss://"]),
        ("exchange.spot_rest_url", &e.spot_rest_url, ["http://", "https://"]),
        ("exchange.dumps_url", &e.dumps_url, ["http://", "https://"]),
    ] {
        if !schemes.iter().any(|p| url.starts_with(p)) || url::Url::parse(url).is_err() {
            return Err(invalid(key, url, &format!("a URL starting with {} or {}", schemes[0], schemes[1])));
        }
    }
    int_range("exchange.recv_window_ms", e.recv_window_ms, 1, 60_000)?;
    int_range("exchange.request_timeout_secs", e.request_timeout_secs, 1, 120)?;
    int_range("exchange.stream_stale_secs", e.stream_stale_secs, 2, 3600)?;
    int_range("exchange.time_sync_interval_secs", e.time_sync_interval_secs, 10, 86_400)?;
    int_range("exchange.exchange_info_refresh_secs", e.exchange_info_refresh_secs, 60, 86_400)?;
    int_range("exchange.trading_status_interval_secs", e.trading_status_interval_secs, 10, 86_400)?;
    int_range("exchange.rest_min_spacing_ms", e.rest_min_spacing_ms, 100, 10_000)?;
    int_range("exchange.weight_limit_per_min", e.weight_limit_per_min, 1, 100_000)?;
    pct_range("exchange.weight_slowdown_pct", e.weight_slowdown_pct, 0.0, 100.0, false)?;

    let sc = &s.scanner;
    int_range("scanner.interval_secs", sc.interval_secs, 1, 86_400)?;
    if !(sc.min_quote_volume.is_finite() && sc.min_quote_volume >= 0.0) {
        return Err(invalid("scanner.min_quote_volume", sc.min_quote_volume, "a number >= 0"));
    }
    if !(sc.volume_ratio_min.is_finite() && sc.volume_ratio_min > 0.0 && sc.volume_ratio_min <= 100.0) {
        return Err(invalid("scanner.volume_ratio_min", sc.volume_ratio_min, "a number in (0, 100]"));
    }
    int_range("scanner.volume_lookback", sc.volume_lookback, 1, 500)?;
    pct_range("scanner.min_abs_change_pct", sc.min_abs_change_pct, 0.0, 100.0, true)?;
    int_range("scanner.max_candidates", sc.max_candidates, 1, 200)?;
    int_range("scanner.prefilter_top_n", sc.prefilter_top_n, 0, 10_000)?;
    if !(0.0..=1.0).contains(&sc.rank_volume_weight) {
        return Err(invalid("scanner.rank_volume_weight", sc.rank_volume_weight, "a number in [0, 1]"));
    }
    for sym in &sc.exclude {
        if sym.is_empty() || sym.chars().any(char::is_whitespace) {
            return Err(invalid("scanner.exclude", sym, "symbol names such as \"BTCUSDT\""));
        }
    }

    let st = &s.strategy;
    int_range("strategy.min_confidence", st.min_confidence, 1, 100)?;
    if !(st.atr_stop_mult.is_finite() && st.atr_stop_mult > 0.0 && st.atr_stop_mult <= 20.0) {
        return Err(invalid("strategy.atr_stop_mult", st.atr_stop_mult, "a number in (0, 20]"));
    }
    pct_range("strategy.max_stop_pct", st.max_stop_pct, 0.0, 100.0, false)?;
    pct_range("strategy.tp1_pct", st.tp1_pct, 0.0, 100.0, false)?;
    pct_range("strategy.tp2_pct", st.tp2_pct, 0.0, 100.0, false)?;
    pct_range("strategy.trail_start_pct", st.trail_start_pct, 0.0, 100.0, false)?;
    pct_range("strategy.trail_pct", st.trail_pct, 0.0, 100.0, false)?;
    pct_range("strategy.tp1_close_pct", st.tp1_close_pct, 0.0, 100.0, false)?;
    pct_range("strategy.tp2_close_pct", st.tp2_close_pct, 0.0, 100.0, false)?;
    if st.tp2_pct <= st.tp1_pct {
        return Err(invalid(
            "strategy.tp2_pct",
            st.tp2_pct,
            &format!("greater than strategy.tp1_pct ({})", st.tp1_pct),
        ));
    }
    if st.trail_start_pct < st.tp2_pct {
        return Err(invalid(
            "strategy.trail_start_pct",
            st.trail_start_pct,
            &format!("at least strategy.tp2_pct ({})", st.tp2_pct),
        ));
    }
    if st.tp1_close_pct + st.tp2_close_pct >= 100.0 {
        return Err(invalid(
            "strategy.tp2_close_pct",
            st.tp2_close_pct,
            "tp1_close_pct + tp2_close_pct below 100 (something must be left to trail)",
        ));
    }
    int_range("strategy.macd_cross_window", st.macd_cross_window, 1, 50)?;
    int_range("strategy.swing_fractal_width", st.swing_fractal_width, 1, 10)?;
    for (key, v) in [
        ("strategy.rsi_long_min", st.rsi_long_min),
        ("strategy.rsi_long_max", st.rsi_long_max),
        ("strategy.rsi_short_min", st.rsi_short_min),
        ("strategy.rsi_short_max", st.rsi_short_max),
    ] {
        pct_range(key, v, 0.0, 100.0, true)?;
    }
    if st.rsi_long_min > st.rsi_long_max {
        return Err(invalid(
            "strategy.rsi_long_max",
            st.rsi_long_max,
            &format!(">= strategy.rsi_long_min ({})", st.rsi_long_min),
        ));
    }
    if st.rsi_short_min > st.rsi_short_max {
        return Err(invalid(
            "strategy.rsi_short_max",
            st.rsi_short_max,
            &format!(">= strategy.rsi_short_min ({})", st.rsi_short_min),
        ));
    }
    if !(st.volume_spike_ratio.is_finite() && st.volume_spike_ratio > 0.0 && st.volume_spike_ratio <= 100.0) {
        return Err(invalid("strategy.volume_spike_ratio", st.volume_spike_ratio, "a number in (0, 100]"));
    }

    let r = &s.risk;
    int_range("risk.max_open_positions", r.max_open_positions, 1, 100)?;
    int_range("risk.symbol_cooldown_mins", r.symbol_cooldown_mins, 0, 10_080)?;
    pct_range("risk.daily_loss_limit_pct", r.daily_loss_limit_pct, 0.0, 100.0, false)?;
    pct_range("risk.max_total_exposure_pct", r.max_total_exposure_pct, 0.0, 1000.0, false)?;
    pct_range("risk.margin_buffer_pct", r.margin_buffer_pct, 0.0, 100.0, true)?;
    int_range("risk.max_consecutive_losses", r.max_consecutive_losses, 1, 100)?;
    int_range("risk.loss_cooldown_mins", r.loss_cooldown_mins, 0, 10_080)?;
    pct_range("risk.high_volatility_atr_pct", r.high_volatility_atr_pct, 0.0, 100.0, false)?;
    pct_range("risk.emergency_loss_pct", r.emergency_loss_pct, 0.0, 100.0, false)?;
    validate_leverage_tiers(&r.leverage_tiers, st.min_confidence)?;
    validate_sizing_tiers(&r.sizing_tiers, st.min_confidence)?;

    int_range("monitor.interval_secs", s.monitor.interval_secs, 1, 60)?;
    int_range("monitor.stuck_stop_grace_secs", s.monitor.stuck_stop_grace_secs, 1, 300)?;

    let p = &s.paper;
    if !(p.starting_balance.is_finite() && p.starting_balance > 0.0 && p.starting_balance <= 1e12) {
        return Err(invalid("paper.starting_balance", p.starting_balance, "a number in (0, 1e12]"));
    }
    pct_range("paper.taker_fee_pct", p.taker_fee_pct, 0.0, 5.0, true)?;
    pct_range("paper.maker_fee_pct", p.maker_fee_pct, 0.0, 5.0, true)?;
    pct_range("paper.slippage_pct", p.slippage_pct, 0.0, 10.0, true)?;
    if !(s.backtest.flat_funding_rate_pct.is_finite() && s.backtest.flat_funding_rate_pct.abs() <= 5.0) {
        return Err(invalid("backtest.flat_funding_rate_pct", s.backtest.flat_funding_rate_pct, "a number in [-5, 5]"));
    }
    if s.storage.path.as_os_str().is_empty() {
        return Err(invalid("storage.path", "\"\"", "a file path"));
    }
    if s.storage.dry_run_path == s.storage.path {
        return Err(invalid(
            "storage.dry_run_path",
            s.storage.dry_run_path.display(),
            "a path different from storage.path (paper trades never mix with live ones)",
        ));
    }
    let addr = s.api.listen_addr()?;
    if !addr.ip().is_loopback() && !s.api.allow_public_bind {
        return Err(invalid(
            "api.listen",
            &s.api.listen,
            "a loopback address (127.0.0.1 or ::1), or set api.allow_public_bind = true",
        ));
    }
    super::operator::validate(&s.control, &s.secrets)?;
    super::operator::validate_notify(&s.notify, &s.secrets)?;
    Ok(())
}

/// The rules every confidence-tier table shares: at least one tier, the first at or below
/// `strategy.min_confidence`, confidences in 1..=100 and strictly ascending; `each` checks one
/// tier's own values; `falls` names the value (key suffix, value, rule) that decreases from the
/// previous tier, if any.
fn validate_tiers<T>(
    key: &str,
    tiers: &[T],
    min_confidence: u8,
    confidence: impl Fn(&T) -> u8,
    each: impl Fn(&str, &T) -> Result<(), ConfigError>,
    falls: impl Fn(&T, &T) -> Option<(&'static str, String, &'static str)>,
) -> Result<(), ConfigError> {
    let first = tiers.first().ok_or_else(|| invalid(key, "[]", "at least one tier"))?;
    if confidence(first) > min_confidence {
        return Err(invalid(
            key,
            format!("first tier starts at {}", confidence(first)),
            &format!("a first tier at or below strategy.min_confidence ({min_confidence})"),
        ));
    }
    for (i, t) in tiers.iter().enumerate() {
        let at = format!("{key}[{i}]");
        int_range(&format!("{at}.min_confidence"), confidence(t), 1, 100)?;
        each(&at, t)?;
        if let Some(prev) = i.checked_sub(1).and_then(|j| tiers.get(j)) {
            if confidence(t) <= confidence(prev) {
                return Err(invalid(&format!("{at}.min_confidence"), confidence(t), "strictly ascending tiers"));
            }
            if let Some((field, value, rule)) = falls(prev, t) {
                return Err(invalid(&format!("{at}.{field}"), value, rule));
            }
        }
    }
    Ok(())
}

fn validate_leverage_tiers(tiers: &[LeverageTier], min_confidence: u8) -> Result<(), ConfigError> {
    validate_tiers(
        "risk.leverage_tiers",
        tiers,
        min_confidence,
        |t| t.min_confidence,
        |at, t| {
            int_range(&format!("{at}.leverage"), t.leverage, 1, 125)?;
            int_range(&format!("{at}.high_volatility_leverage"), t.high_volatility_leverage, 1, 125)?;
            if t.high_volatility_leverage > t.leverage {
                return Err(invalid(
                    &format!("{at}.high_volatility_leverage"),
                    t.high_volatility_leverage,
                    &format!("at most the tier's leverage ({})", t.leverage),
                ));
            }
            Ok(())
        },
        |prev, t| {
            (t.leverage < prev.leverage || t.high_volatility_leverage < prev.high_volatility_leverage)
                .then(|| ("leverage", t.leverage.to_string(), "non-decreasing leverage as confidence rises"))
        },
    )
}

fn validate_sizing_tiers(tiers: &[SizingTier], min_confidence: u8) -> Result<(), ConfigError> {
    validate_tiers(
        "risk.sizing_tiers",
        tiers,
        min_confidence,
        |t| t.min_confidence,
        |at, t| {
            pct_range(&format!("{at}.risk_pct"), t.risk_pct, 0.0, 10.0, false)?;
            pct_range(&format!("{at}.max_notional_pct"), t.max_notional_pct, 0.0, 100.0, false)
        },
        |prev, t| {
            (t.risk_pct < prev.risk_pct || t.max_notional_pct < prev.max_notional_pct)
                .then(|| ("risk_pct", t.risk_pct.to_string(), "non-decreasing risk and cap as confidence rises"))
        },
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    fn lev(min_confidence: u8, leverage: u32, high_volatility_leverage: u32) -> LeverageTier {
        LeverageTier { min_confidence, leverage, high_volatility_leverage }
    }

    fn size(min_confidence: u8, risk_pct: f64, max_notional_pct: f64) -> SizingTier {
        SizingTier { min_confidence, risk_pct, max_notional_pct }
    }

    fn err(r: Result<(), ConfigError>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn leverage_tiers_are_checked_tier_by_tier_and_against_the_previous() {
        assert!(validate_leverage_tiers(&[lev(60, 5, 3), lev(75, 10, 5)], 60).is_ok());
        assert!(err(validate_leverage_tiers(&[], 60)).contains("at least one tier"));
        assert!(
            err(validate_leverage_tiers(&[lev(70, 5, 3)], 60)).contains("at or below strategy.min_confidence (60)")
        );
        let e = err(validate_leverage_tiers(&[lev(60, 5, 3), lev(75, 200, 5)], 60));
        assert!(e.contains("risk.leverage_tiers[1].leverage"), "{e}");
        let e = err(validate_leverage_tiers(&[lev(60, 5, 6)], 60));
        assert!(e.contains("[0].high_volatility_leverage") && e.contains("at most the tier's leverage (5)"), "{e}");
        let e = err(validate_leverage_tiers(&[lev(60, 5, 3), lev(60, 10, 5)], 60));
        assert!(e.contains("[1].min_confidence") && e.contains("strictly ascending"), "{e}");
        let e = err(validate_leverage_tiers(&[lev(60, 10, 5), lev(75, 5, 3)], 60));
        assert!(e.contains("[1].leverage") && e.contains("non-decreasing leverage"), "{e}");
        let e = err(validate_leverage_tiers(&[lev(60, 10, 5), lev(75, 10, 4)], 60));
        assert!(e.contains("[1].leverage") && e.contains("non-decreasing leverage"), "{e}");
    }

    #[test]
    fn sizing_tiers_are_checked_tier_by_tier_and_against_the_previous() {
        assert!(validate_sizing_tiers(&[size(60, 1.0, 10.0), size(80, 2.0, 20.0)], 60).is_ok());
        assert!(err(validate_sizing_tiers(&[], 60)).contains("at least one tier"));
        assert!(err(validate_sizing_tiers(&[size(61, 1.0, 10.0)], 60)).contains("first tier starts at 61"));
        let e = err(validate_sizing_tiers(&[size(60, 11.0, 10.0)], 60));
        assert!(e.contains("risk.sizing_tiers[0].risk_pct"), "{e}");
        let e = err(validate_sizing_tiers(&[size(60, 1.0, 10.0), size(101, 2.0, 20.0)], 60));
        assert!(e.contains("[1].min_confidence"), "{e}");
        let e = err(validate_sizing_tiers(&[size(60, 2.0, 10.0), size(80, 1.5, 20.0)], 60));
        assert!(e.contains("[1].risk_pct") && e.contains("non-decreasing risk and cap"), "{e}");
        let e = err(validate_sizing_tiers(&[size(60, 1.0, 20.0), size(80, 2.0, 10.0)], 60));
        assert!(e.contains("[1].risk_pct") && e.contains("non-decreasing risk and cap"), "{e}");
    }
}
