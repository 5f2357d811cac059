//! Start-up, before any task runs: exchange rules, account mode, balances, the risk state
//! journaled before the restart, and reconciliation — the exchange's positions and stops are
//! the truth, the journal supplies what the exchange does not know (ladder stage, best price).
//! Nothing else runs yet, so these reads are awaited in turn. Unprotected positions get their
//! stop from the first actions the position manager executes.

use std::sync::Arc;

use crate::config::Settings;
use crate::core::models::Position;
use crate::exchange::{Exchange, ExchangeError, SymbolInfo};
use crate::manager::commands::{Action, RISK_STATE_KEY, Record};
use crate::manager::reconcile::ExchangeHolding;
use crate::manager::trading_core::TradingCore;
use crate::store::{Journal, StoreError};

/// Journal key the emergency latch used before the risk state was journaled as a whole.
pub const LEGACY_EMERGENCY_KEY: &str = "emergency_latch";

/// Fatal start-up errors (after start-up every error is logged and survived).
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("exchange error during start-up: {0}")]
    Exchange(#[from] ExchangeError),
    #[error("journal error: {0}")]
    Journal(#[from] StoreError),
    #[error(
        "the account is in hedge (dual-side) position mode; kinetic trades one-way mode. Switch the \
         account to one-way mode on Binance (with no open positions), or set exchange.allow_hedge_mode = true"
    )]
    HedgeMode,
    #[error("strategy settings unusable")]
    Settings,
    /// The exchange refused us in a way retrying cannot fix (a refused API key ...), explained.
    #[error("cannot start: {0}")]
    Refused(crate::exchange::diagnosis::Diagnosis),
}

/// Longest wait between two start-up attempts.
pub const STARTUP_RETRY_CAP: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs [`start`] until it succeeds, `cancel` fires (`Ok(None)`: a clean stop at any moment)
/// or the exchange refuses us for good. Each failure is explained (host, cause, what to do) in
/// the log and on `/health` through `liveness`, and retried after 1 s, 2 s, 4 s ... up to
/// [`STARTUP_RETRY_CAP`].
///
/// # Errors
/// Hedge mode, journal errors, a refused API key.
pub async fn start_with_retries<E: Exchange>(
    ex: &Arc<E>,
    settings: &Settings,
    journal: &mut Journal,
    clear_emergency: bool,
    liveness: &crate::core::liveness::Liveness,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<Option<Started>, StartupError> {
    let rest_url = settings.exchange.effective_rest_url().to_string();
    let mut delay = std::time::Duration::from_secs(1);
    let mut attempt = 1u32;
    loop {
        let result = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(None),
            r = start(ex, settings, journal, clear_emergency) => r,
        };
        let err = match result {
            Ok(started) => {
                liveness.set_startup_problem(None);
                return Ok(Some(started));
            }
            Err(StartupError::Exchange(e)) => e,
            Err(other) => return Err(other),
        };
        let d = crate::exchange::diagnosis::diagnose(&err, &rest_url);
        if !d.retry {
            tracing::error!(host = %d.host, cause = ?d.cause, "cannot start: {}; {}", d.what, d.advice);
            return Err(StartupError::Refused(d));
        }
        tracing::error!(
            host = %d.host,
            cause = ?d.cause,
            attempt,
            retry_in_secs = delay.as_secs(),
            "cannot reach the exchange: {}; {}. Retrying; Ctrl-C or SIGTERM stops",
            d.what,
            d.advice
        );
        liveness.set_startup_problem(Some(format!("attempt {attempt}: {d}")));
        crate::core::systemd::status(&format!("start-up retrying: {}", d.what));
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(None),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(STARTUP_RETRY_CAP);
        attempt = attempt.saturating_add(1);
    }
}

/// What start-up hands the tasks.
pub struct Started {
    pub core: TradingCore,
    pub symbols: Vec<SymbolInfo>,
    /// The first actions: restored and adopted positions, their stops.
    pub actions: Vec<Action>,
}

/// Runs start-up against `ex` and the journal.
///
/// # Errors
/// Exchange unreachable, hedge mode, journal errors.
pub async fn start<E: Exchange>(
    ex: &Arc<E>,
    settings: &Settings,
    journal: &mut Journal,
    clear_emergency: bool,
) -> Result<Started, StartupError> {
    let symbols = ex.symbols().await?;
    tracing::info!(symbols = symbols.len(), "exchange info loaded");
    if !ex.is_paper() && ex.hedge_mode().await? && !settings.exchange.allow_hedge_mode {
        return Err(StartupError::HedgeMode);
    }
    let locked = match ex.locked_symbols().await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the API trading status; assuming no locks");
            Default::default()
        }
    };
    let balance = ex.balance().await?;
    let now = ex.now_ms();
    let mut core = TradingCore::new(settings, now, balance.equity).ok_or(StartupError::Settings)?;
    core.set_symbols(symbols.clone());
    core.set_locked(locked);
    core.set_balance(&balance, now);
    let mut actions = Vec::new();

    // Risk state survives restarts: daily latch, day-start equity, loss streak and pause,
    // cooldowns, the emergency latch.
    if let Some(v) = journal.state(RISK_STATE_KEY)? {
        if core.restore_risk_state(&v) {
            let r = &core.manager().risk;
            tracing::info!(day_start_equity = %r.day_start_equity, daily_latched = r.daily_latched,
                consecutive_losses = r.consecutive_losses, loss_pause_until = ?r.loss_pause_until,
                "risk state restored from the journal");
        } else {
            tracing::warn!("journaled risk state unreadable; starting a fresh risk book");
        }
    }
    if let Some(v) = journal.state(LEGACY_EMERGENCY_KEY)? {
        let since = v.get("since").and_then(serde_json::Value::as_i64).unwrap_or(now);
        core.manager_mut().latch_emergency(since);
        journal.clear_state(LEGACY_EMERGENCY_KEY)?;
    }
    if clear_emergency {
        core.manager_mut().set_emergency(None);
        tracing::warn!("emergency latch cleared by the operator (--clear-emergency)");
    }
    core.manager_mut().clear_emergency_if_due(now);
    if let Some(l) = core.manager().emergency() {
        tracing::warn!(since = l.since, "emergency exit latched: no new entries until cleared (--clear-emergency)");
    }
    journal.set_state(RISK_STATE_KEY, &core.risk_state(), now)?;
    // An operator's pause survives restarts like the risk book.
    if let Some((since, by)) = crate::tasks::control::journaled_pause(journal)? {
        core.set_paused(true);
        tracing::warn!(since, %by, "new entries paused by an operator (restored); resume to trade again");
    }

    let held = ex.positions().await?;
    let holdings: Vec<ExchangeHolding> = held.iter().map(ExchangeHolding::from).collect();
    core.set_exchange_positions(held);
    let known: Vec<Position> = journal.open_positions()?.into_iter().map(|j| j.position).collect();
    core.apply_reconcile(&mut actions, &known, &holdings, true, now);
    match ex.open_stops().await {
        Ok(stops) => core.set_stops(stops),
        Err(e) => tracing::warn!(error = %e, "could not list open stops at start"),
    }
    // Protection before anything else: the first tick places missing stops.
    actions.extend(core.on_tick(now));
    // Journal the restored state at once (the writes are ordered before any command).
    actions.retain(|a| !matches!(a, Action::Journal(Record::Equity(_))));
    Ok(Started { core, symbols, actions })
}
