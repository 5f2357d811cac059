//! The live runtime of `kinetic run`: one tokio runtime, one task per job, wired here.
//!
//! ```text
//! market WS ─► ingest ─► DataHub (marks, tickers, closed candles, stream health)
//!                 │  marks: latest-wins watch ─────────────────────────────┐
//!                 └─ closed candles ─► analyzer ─► Analysis ─┐             │
//! scanner (interval, Skip): reads hub ─► candidates (watch) ─► analyzer    ▼
//! user WS ─► its own channel ──────────────────────────────► position manager
//! position manager: select!{ cancel, account event, order outcome, account read,
//!                            marks changed, 5 s monitor (Skip), signal } — owns the book + journal
//! orders: one future per request (≤ 1 in flight per symbol), outcome back as an event
//! ```
//!
//! - [`ingest`]: the only writer of the hub.
//! - [`scanner`]: candidates and kline subscriptions.
//! - [`analyzer`]: indicators and complete analyses.
//! - [`position_manager`]: drives the [`TradingCore`](crate::manager::trading_core::TradingCore).
//! - [`orders`]: order requests as their own futures.
//! - [`control`]: operator commands carried out inside the position manager.
//! - [`telegram`]: the bot's commands (long polling), into the control channel.
//! - [`startup`]: reconciliation before the tasks start.
//! - [`status`]: `/status` and `/metrics`.
//!
//! Shutdown: one `CancellationToken`; each task gets a child. The position manager stops
//! entries and lets requests in flight finish within the grace period; positions keep their
//! exchange-side stops.

pub mod analyzer;
pub mod control;
pub mod ingest;
pub mod orders;
pub mod position_manager;
pub mod scanner;
pub mod startup;
pub mod status;
pub mod telegram;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{Metrics, StatusSnapshot};
use crate::config::Settings;
use crate::control::{ControlHandle, ControlRequest};
use crate::core::data_hub::SharedHub;
use crate::core::liveness::Liveness;
use crate::core::systemd;
use crate::exchange::{EventSinks, Exchange, ExchangeEvent};
use crate::store::Journal;

pub use startup::StartupError as EngineError;

/// Market events queue here between the exchange and the ingest task.
pub const MARKET_CHANNEL: usize = 4096;
/// How long shutdown waits for queued notifications.
pub const NOTIFY_FLUSH: std::time::Duration = std::time::Duration::from_secs(1);
/// Account events queue here between the exchange and the position manager.
pub const ACCOUNT_CHANNEL: usize = 1024;

/// Handles shared with the outside world (HTTP server, tests).
#[derive(Clone)]
pub struct EngineHandles {
    pub hub: SharedHub,
    pub status: Arc<RwLock<StatusSnapshot>>,
    pub metrics: Metrics,
    pub liveness: Arc<Liveness>,
    /// Sends operator commands to the position manager.
    pub control: ControlHandle,
    /// The position manager's end of the command channel, taken once by [`Engine::run`].
    control_inbox: Arc<Mutex<Option<mpsc::Receiver<ControlRequest>>>>,
}

impl EngineHandles {
    /// Fresh handles around a status snapshot and metrics.
    pub fn new(status: Arc<RwLock<StatusSnapshot>>, metrics: Metrics) -> Self {
        let (control, inbox) = ControlHandle::channel();
        EngineHandles {
            hub: crate::core::data_hub::DataHub::default().shared(),
            status,
            metrics,
            liveness: Arc::new(Liveness::default()),
            control,
            control_inbox: Arc::new(Mutex::new(Some(inbox))),
        }
    }

    /// The command channel's receiving end (once; later calls get a fresh, unconnected one
    /// whose sender stays in `keep`).
    fn take_control_inbox(&self, keep: &mut Option<ControlHandle>) -> mpsc::Receiver<ControlRequest> {
        if let Some(rx) = self.control_inbox.lock().ok().and_then(|mut g| g.take()) {
            return rx;
        }
        let (handle, rx) = ControlHandle::channel();
        *keep = Some(handle);
        rx
    }
}

/// The daemon. Generic over the exchange: live, dry-run (paper) and tests run the same tasks.
pub struct Engine<E: Exchange> {
    ex: Arc<E>,
    settings: Settings,
    journal: Journal,
    handles: EngineHandles,
    dry_run: bool,
}

impl<E: Exchange> Engine<E> {
    /// Builds an engine; nothing is sent until [`Engine::run`].
    pub fn new(
        ex: Arc<E>,
        settings: Settings,
        journal: Journal,
        handles: EngineHandles,
        dry_run: bool,
    ) -> Option<Self> {
        Some(Engine { ex, settings, journal, handles, dry_run })
    }

    /// Runs until `cancel` fires: start-up, streams, then the tasks.
    ///
    /// # Errors
    /// Start-up failures (exchange unreachable, hedge mode, journal) — after start-up every
    /// error is logged and survived.
    pub async fn run(self, cancel: CancellationToken, clear_emergency: bool) -> Result<(), EngineError> {
        let Engine { ex, settings, mut journal, handles, dry_run } = self;
        let liveness = Arc::clone(&handles.liveness);
        let started =
            match startup::start_with_retries(&ex, &settings, &mut journal, clear_emergency, &liveness, &cancel).await?
            {
                Some(started) => started,
                None => return Ok(()),
            };

        let (market_tx, market_rx) = mpsc::channel::<ExchangeEvent>(MARKET_CHANNEL);
        let (account_tx, account_rx) = mpsc::channel::<ExchangeEvent>(ACCOUNT_CHANNEL);
        let sinks = EventSinks { market: market_tx.clone(), account: account_tx };
        let control = ex.start_streams(sinks, cancel.child_token()).await?;

        let (signals, marks_rx, candles_rx) = ingest::IngestSignals::new();
        let (scan_tx, scan_rx) = watch::channel(scanner::ScanReport::default());
        let (held_tx, held_rx) = watch::channel(BTreeSet::new());
        let (keep_tx, keep_rx) = watch::channel(BTreeSet::new());
        let (signal_tx, signal_rx) = mpsc::channel(64);

        let tasks = TaskTracker::new();
        tasks.spawn(ingest::run(
            Arc::clone(&ex),
            Arc::clone(&handles.hub),
            market_rx,
            signals,
            keep_rx,
            handles.metrics.clone(),
            cancel.child_token(),
        ));
        let scanner = scanner::ScannerTask {
            ex: Arc::clone(&ex),
            hub: Arc::clone(&handles.hub),
            settings: settings.scanner.clone(),
            tradable: started.symbols.iter().map(|s| s.filters.symbol.clone()).collect(),
            control,
            market: market_tx.clone(),
            held: held_rx,
            report: scan_tx,
            keep: keep_tx,
            marks: marks_rx.clone(),
        };
        tasks.spawn(scanner.run(cancel.child_token()));
        let analyzer = analyzer::AnalyzerTask::new(
            Arc::clone(&ex),
            Arc::clone(&handles.hub),
            settings.strategy.clone(),
            market_tx,
            candles_rx,
            scan_rx.clone(),
            signal_tx,
            Arc::clone(&handles.liveness),
        );
        tasks.spawn(analyzer.run(cancel.child_token()));

        if let Some(bot) = telegram_commands(&settings, &journal, &handles) {
            tasks.spawn(bot.run(cancel.child_token()));
        }

        let mut manager = position_manager::ManagerTask::new(
            Arc::clone(&ex),
            started.core,
            journal,
            settings.clone(),
            Arc::clone(&handles.hub),
            Arc::clone(&handles.status),
            handles.metrics.clone(),
            Arc::clone(&handles.liveness),
            held_tx,
            dry_run,
        );
        let (notifier, workers) = crate::notify::deliver::start(&settings.notify, &settings.secrets, &handles.metrics);
        manager.set_notifier(notifier.clone());
        manager.apply(started.actions);
        let mut _unconnected = None;
        let control_rx = handles.take_control_inbox(&mut _unconnected);
        let inputs = position_manager::ManagerInputs {
            account: account_rx,
            signals: signal_rx,
            marks: marks_rx,
            scan: scan_rx,
            control: control_rx,
        };
        systemd::ready();
        systemd::status("trading");
        tracing::info!(mode = if dry_run { "dry-run" } else { "live" }, "engine running");
        notifier
            .notify(crate::notify::Event::Start { mode: if dry_run { "dry-run" } else { "live" }.into() }, ex.now_ms());
        // The manager runs here: when it returns (after cancel, its in-flight requests done),
        // the other tasks are stopped too.
        manager.run(inputs, cancel.child_token()).await;
        notifier.notify(crate::notify::Event::Stop, ex.now_ms());
        drop(notifier);
        // The queued messages get a moment to leave; a hanging channel does not hold shutdown.
        let _ = tokio::time::timeout(NOTIFY_FLUSH, futures_util::future::join_all(workers)).await;
        cancel.cancel();
        tasks.close();
        tasks.wait().await;
        Ok(())
    }
}

/// The Telegram command task when `notify.telegram.commands_enabled` (with the bot token);
/// `None`, logged, when it cannot start (its journal connection, its HTTP client).
fn telegram_commands(
    settings: &Settings,
    journal: &Journal,
    handles: &EngineHandles,
) -> Option<telegram::TelegramCommands> {
    let t = &settings.notify.telegram;
    let token = settings.secrets.telegram_token.as_ref().filter(|_| t.commands_enabled)?;
    let own_journal = match journal.reopen() {
        Ok(j) => j,
        Err(e) => {
            tracing::error!(error = %e, "telegram commands off: cannot open a journal connection for the offset");
            return None;
        }
    };
    let bot = match crate::telegram::bot::BotApi::new(&t.api_url, token.clone()) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "telegram commands off: cannot build the HTTP client");
            return None;
        }
    };
    Some(telegram::TelegramCommands {
        bot,
        dispatcher: crate::telegram::dispatch::Dispatcher::new(t.command_chat_ids.iter().copied()),
        control: handles.control.clone(),
        status: Arc::clone(&handles.status),
        liveness: Arc::clone(&handles.liveness),
        journal: Mutex::new(own_journal),
        metrics: handles.metrics.clone(),
        clock: Arc::new(crate::core::clock::SystemClock),
        poll_timeout: std::time::Duration::from_secs(t.poll_timeout_secs.max(1)),
    })
}
