//! `kinetic run [--dry-run]`: the daemon. Opens the journal, starts the HTTP status server,
//! builds the exchange (live Binance, or the paper exchange over Binance's public data for
//! `--dry-run`) and runs the engine until SIGINT/SIGTERM; then stops new entries, leaves
//! positions open with their exchange-side stops and exits 0 within 10 s.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiState, Metrics, StatusSnapshot};
use crate::cli::{CliError, Context, RunArgs};
use crate::config::Settings;
use crate::exchange::Exchange;
use crate::exchange::api_key::{ApiKeyStatus, KeyWarning};
use crate::store::Journal;
use crate::tasks::{Engine, EngineError, EngineHandles};

/// How long shutdown may take before the process exits anyway.
pub const SHUTDOWN_BUDGET: Duration = Duration::from_secs(9);

/// Runs `kinetic run`.
///
/// # Errors
/// Start-up failures: journal, HTTP bind, exchange unreachable, hedge mode (exit 1).
pub fn execute(ctx: &Context, args: &RunArgs) -> Result<(), CliError> {
    if let Some(dir) = &args.replay {
        return replay(ctx, args, dir.as_ref());
    }
    let rt = runtime()?;
    rt.block_on(async {
        let cancel = CancellationToken::new();
        crate::shutdown::cancel_on_signal(cancel.clone());
        if args.dry_run {
            let market = crate::exchange::binance::BinanceClient::new(&ctx.settings.exchange, None)
                .map_err(|e| CliError::Fatal(format!("cannot build the market-data client: {e}")))?;
            // Funding every symbol's own interval (8 h, 4 h, 1 h ...), from fundingInfo.
            let intervals = match market.funding_intervals().await {
                Ok(i) => i,
                Err(e) => {
                    tracing::warn!(error = %e, "could not read funding intervals; assuming 8 h for every symbol");
                    Default::default()
                }
            };
            let paper = crate::exchange::paper::PaperExchange::new(Arc::new(market), &ctx.settings.paper);
            paper.set_funding_intervals(intervals);
            run_with(&ctx.settings, Arc::new(paper), true, args.clear_emergency, cancel).await
        } else {
            let live = crate::exchange::binance::BinanceClient::new(&ctx.settings.exchange, ctx.credentials.clone())
                .map_err(|e| CliError::Fatal(format!("cannot build the exchange client: {e}")))?;
            // API-key hygiene before anything else is read or sent.
            let key = crate::commands::check_key::read(&live).await?;
            crate::commands::check_key::enforce(&key, &ctx.settings.exchange)?;
            run_checked(&ctx.settings, Arc::new(live), false, args.clear_emergency, Some(key.status()), cancel).await
        }
    })
}

/// `kinetic run --dry-run --replay [DIR] [--speed N]`: the daemon on the paper exchange over
/// a [`ReplayMarket`](crate::replay::ReplayMarket) instead of Binance's public data.
fn replay(ctx: &Context, args: &RunArgs, dir: Option<&std::path::PathBuf>) -> Result<(), CliError> {
    let usage = |e: crate::replay::ReplayError| CliError::Usage(e.to_string());
    let speed = crate::replay::check_speed(args.speed.unwrap_or(crate::replay::DEFAULT_SPEED)).map_err(usage)?;
    let data = crate::replay::ReplayData::load(dir, ctx.settings.backtest.flat_funding_rate_pct).map_err(usage)?;
    let mut settings = ctx.settings.clone();
    settings.storage.dry_run_path = crate::replay::journal_path(&ctx.settings.storage.dry_run_path);
    crate::replay::reset_journal(&settings.storage.dry_run_path).map_err(|e| {
        CliError::Fatal(format!(
            "cannot remove the previous replay journal {}: {e}",
            settings.storage.dry_run_path.display()
        ))
    })?;
    let rt = runtime()?;
    rt.block_on(async {
        let cancel = CancellationToken::new();
        crate::shutdown::cancel_on_signal(cancel.clone());
        let intervals = data.intervals.clone();
        let market = Arc::new(crate::replay::ReplayMarket::new(data, speed, cancel.clone()));
        let paper = Arc::new(crate::exchange::paper::PaperExchange::new(Arc::clone(&market), &settings.paper));
        paper.set_funding_intervals(intervals);
        run_with(&settings, Arc::clone(&paper), true, args.clear_emergency, cancel).await?;
        if let (Ok(b), Ok(open)) = (paper.balance().await, paper.positions().await) {
            let (fees, funding) = paper.costs();
            tracing::info!(
                finished = market.finished(),
                equity = %b.equity.round_dp(2),
                wallet = %b.wallet_balance.round_dp(2),
                fees = %fees.round_dp(2),
                funding = %funding.round_dp(2),
                open_positions = open.len(),
                journal = %settings.storage.dry_run_path.display(),
                "replay over"
            );
        }
        Ok(())
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Fatal(format!("cannot start the async runtime: {e}")))
}

fn open_journal(path: &Path) -> Result<Journal, CliError> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| CliError::Fatal(format!("cannot create the journal directory {}: {e}", dir.display())))?;
    }
    Journal::open(path).map_err(|e| CliError::Fatal(format!("cannot open the journal {}: {e}", path.display())))
}

/// Runs the daemon on `ex` until `cancel` fires (tests call this with their own exchange).
///
/// # Errors
/// Start-up failures (exit 1).
pub async fn run_with<E: Exchange>(
    settings: &Settings,
    ex: Arc<E>,
    dry_run: bool,
    clear_emergency: bool,
    cancel: CancellationToken,
) -> Result<(), CliError> {
    run_checked(settings, ex, dry_run, clear_emergency, None, cancel).await
}

/// [`run_with`], showing the API-key check's outcome in `/status` and `/metrics`.
///
/// # Errors
/// As [`run_with`].
pub async fn run_checked<E: Exchange>(
    settings: &Settings,
    ex: Arc<E>,
    dry_run: bool,
    clear_emergency: bool,
    api_key: Option<ApiKeyStatus>,
    cancel: CancellationToken,
) -> Result<(), CliError> {
    let journal_path = if dry_run { &settings.storage.dry_run_path } else { &settings.storage.path };
    let journal = open_journal(journal_path)?;
    journal
        .set_full_sync(settings.storage.sync == crate::config::JournalSync::Full)
        .map_err(|e| CliError::Fatal(format!("cannot configure the journal: {e}")))?;
    tracing::info!(journal = %journal_path.display(), mode = if dry_run { "dry-run" } else { "live" }, "starting");

    let metrics = Metrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    if let Some(k) = &api_key {
        for w in [KeyWarning::WithdrawalsEnabled, KeyWarning::NoIpRestriction] {
            metrics
                .api_key_unsafe
                .get_or_create(&Metrics::label("reason", w.as_str()))
                .set(i64::from(k.warnings.contains(&w)));
        }
    }
    let status = Arc::new(RwLock::new(StatusSnapshot {
        mode: if dry_run { crate::api::Mode::DryRun } else { crate::api::Mode::Live },
        api_key,
        ..StatusSnapshot::default()
    }));
    let handles = EngineHandles::new(Arc::clone(&status), metrics);
    let api_state =
        ApiState { status: Arc::clone(&status), registry: Arc::new(registry), liveness: Arc::clone(&handles.liveness) };
    let listen = settings.api.listen_addr()?;
    let (_addr, server) = api::serve(listen, api_state, cancel.clone())
        .await
        .map_err(|e| CliError::Fatal(format!("cannot bind the HTTP server to {}: {e}", settings.api.listen)))?;

    let control_server = match (&settings.control.api_enabled, &settings.secrets.control_token) {
        (true, Some(token)) => {
            let state = crate::api::control::ControlApiState {
                control: handles.control.clone(),
                token: token.clone(),
                metrics: handles.metrics.clone(),
            };
            let listen = settings.control.listen_addr()?;
            let (_addr, task) = crate::api::control::serve(listen, state, cancel.clone()).await.map_err(|e| {
                CliError::Fatal(format!("cannot bind the control API to {}: {e}", settings.control.api_listen))
            })?;
            Some(task)
        }
        _ => None,
    };

    let engine = Engine::new(ex, settings.clone(), journal, handles, dry_run)
        .ok_or_else(|| CliError::Fatal("strategy settings unusable".into()))?;
    let engine_cancel = cancel.clone();
    let mut task = tokio::spawn(async move { engine.run(engine_cancel, clear_emergency).await });

    let outcome = tokio::select! {
        r = &mut task => Some(r),
        _ = cancel.cancelled() => None,
    };
    let result = match outcome {
        Some(r) => r,
        None => match tokio::time::timeout(SHUTDOWN_BUDGET, &mut task).await {
            Ok(r) => r,
            Err(_) => {
                tracing::warn!("engine did not stop within the shutdown budget; exiting anyway");
                task.abort();
                Ok(Ok(()))
            }
        },
    };
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(1), server).await;
    if let Some(task) = control_server {
        let _ = tokio::time::timeout(Duration::from_secs(1), task).await;
    }
    match result {
        Ok(Ok(())) => {
            tracing::info!("stopped cleanly");
            Ok(())
        }
        Ok(Err(EngineError::HedgeMode)) => Err(CliError::Fatal(EngineError::HedgeMode.to_string())),
        // The exchange refused the credentials for good: like a key without futures permission
        // (issue 15's check), a fix of the key is needed, not a restart (exit 2).
        Ok(Err(e @ EngineError::Refused(_))) => Err(CliError::Usage(e.to_string())),
        Ok(Err(e)) => Err(CliError::Fatal(e.to_string())),
        Err(join) => Err(CliError::Fatal(format!("engine task failed: {join}"))),
    }
}
