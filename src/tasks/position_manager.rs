//! The position-manager task: the only owner of positions, exit ladders, the risk book, the
//! emergency latch, order state and the journal. It pumps events into the [`TradingCore`]
//! and its actions out — journal writes in order, then each exchange command as its own
//! future — and never awaits the exchange inside its loop:
//!
//! `select!{ cancel, account event, order outcome, account read, marks changed, 5 s monitor
//! (Skip), signal }`, biased in that order.
//!
//! Every step ends with the heartbeat that `/health` and the systemd watchdog read. On
//! shutdown new entries stop; requests in flight finish (or time out) within the grace
//! period and their outcomes are journaled; positions keep their exchange-side stops.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{Metrics, SignalStatus, StatusSnapshot};
use crate::config::Settings;
use crate::control::ControlRequest;
use crate::core::data_hub::SharedHub;
use crate::core::liveness::Liveness;
use crate::core::systemd;
use crate::exchange::{Exchange, ExchangeEvent};
use crate::manager::commands::{AccountSnapshot, Action, OrderResult, Outcome, RISK_STATE_KEY, Record};
use crate::manager::position_manager::Analysis;
use crate::manager::trading_core::TradingCore;
use crate::notify::Notifier;
use crate::notify::watch::NotifyWatch;
use crate::store::{Journal, StoreError};
use crate::tasks::control::ControlState;
use crate::tasks::orders;
use crate::tasks::scanner::ScanReport;
use crate::tasks::status;

/// How long shutdown waits for requests in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);
/// A signal that arrives while the market streams are not live (start-up, a reconnect) is
/// held this long (exchange time) for them to come back, then dropped.
pub const SIGNAL_HOLD_MS: i64 = 60_000;

/// Channels the task listens on.
pub struct ManagerInputs {
    pub account: mpsc::Receiver<ExchangeEvent>,
    pub signals: mpsc::Receiver<Analysis>,
    pub marks: watch::Receiver<u64>,
    pub scan: watch::Receiver<ScanReport>,
    /// Operator commands (pause, resume, force exit, clear the latch, reconcile).
    pub control: mpsc::Receiver<ControlRequest>,
}

/// The task's state.
pub struct ManagerTask<E> {
    pub ex: Arc<E>,
    pub core: TradingCore,
    pub journal: Journal,
    pub settings: Settings,
    pub hub: SharedHub,
    pub status: Arc<RwLock<StatusSnapshot>>,
    pub metrics: Metrics,
    pub liveness: Arc<Liveness>,
    pub held: watch::Sender<BTreeSet<String>>,
    pub dry_run: bool,
    pub started_at: i64,
    /// Operator commands: the pause, force exits still to do, the latest commands.
    pub control: ControlState,
    /// Notifications derived from the book's records and state (never waits).
    pub notify: NotifyWatch,
    tracker: TaskTracker,
    outcome_tx: mpsc::Sender<Outcome>,
    outcome_rx: mpsc::Receiver<Outcome>,
    /// The scanner's last report (for `/status`; read only when publishing).
    scan: watch::Receiver<ScanReport>,
    snapshot_tx: mpsc::Sender<AccountSnapshot>,
    snapshot_rx: mpsc::Receiver<AccountSnapshot>,
    recent_signals: VecDeque<SignalStatus>,
    last_publish: Option<Instant>,
    last_watchdog: Option<Instant>,
    /// The systemd watchdog's interval (read once; `None` without a watchdog).
    watchdog: Option<Duration>,
    ticks: u64,
    signals_handled: u64,
    mark_time: i64,
    /// Signals waiting for live market data: the latest per symbol, with when it came.
    held_signals: BTreeMap<String, (Analysis, i64)>,
}

impl<E: Exchange> ManagerTask<E> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ex: Arc<E>,
        core: TradingCore,
        journal: Journal,
        settings: Settings,
        hub: SharedHub,
        status: Arc<RwLock<StatusSnapshot>>,
        metrics: Metrics,
        liveness: Arc<Liveness>,
        held: watch::Sender<BTreeSet<String>>,
        dry_run: bool,
    ) -> Self {
        let (outcome_tx, outcome_rx) = mpsc::channel(1024);
        let (snapshot_tx, snapshot_rx) = mpsc::channel(16);
        let started_at = ex.now_ms();
        let control = ControlState::load(&journal);
        let notify = NotifyWatch::new(Notifier::disabled(), settings.notify.clone(), &core, started_at);
        ManagerTask {
            control,
            notify,
            ex,
            core,
            journal,
            settings,
            hub,
            status,
            metrics,
            liveness,
            held,
            dry_run,
            started_at,
            tracker: TaskTracker::new(),
            outcome_tx,
            outcome_rx,
            scan: watch::channel(ScanReport::default()).1,
            snapshot_tx,
            snapshot_rx,
            recent_signals: VecDeque::new(),
            last_publish: None,
            last_watchdog: None,
            watchdog: systemd::watchdog_interval(),
            ticks: 0,
            signals_handled: 0,
            mark_time: 0,
            held_signals: BTreeMap::new(),
        }
    }

    /// Sends notifications to `notifier` from now on (the baseline is the book now).
    pub fn set_notifier(&mut self, notifier: Notifier) {
        self.notify = NotifyWatch::new(notifier, self.settings.notify.clone(), &self.core, self.ex.now_ms());
    }

    /// Applies actions produced outside the loop (start-up reconciliation).
    pub fn apply(&mut self, actions: Vec<Action>) {
        self.execute(actions);
        self.after_step(true);
    }

    pub async fn run(mut self, mut inputs: ManagerInputs, cancel: CancellationToken) {
        let period = Duration::from_secs(self.settings.monitor.interval_secs.max(1));
        let mut monitor = tokio::time::interval(period);
        monitor.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        self.scan = inputs.scan.clone();
        loop {
            let mut force_publish = false;
            let actions = tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                Some(ev) = inputs.account.recv() => {
                    force_publish = true;
                    self.core.on_account_event(ev, self.ex.now_ms())
                }
                Some(o) = self.outcome_rx.recv() => {
                    force_publish = true;
                    self.count_rejection(&o);
                    self.core.on_outcome(o, self.ex.now_ms())
                }
                Some(s) = self.snapshot_rx.recv() => self.core.on_snapshot(s, self.ex.now_ms()),
                Some(req) = inputs.control.recv() => {
                    force_publish = true;
                    let actions = self.control.handle(req, &mut self.core, &self.journal, self.ex.now_ms());
                    if let Some(c) = self.control.last() {
                        self.notify.on_command(c);
                    }
                    actions
                }
                Ok(()) = inputs.marks.changed() => self.on_marks(),
                at = monitor.tick() => {
                    self.metrics.monitor_loop_lag_secs.set(at.elapsed().as_secs_f64());
                    self.metrics.monitor_ticks.inc();
                    self.ticks += 1;
                    force_publish = true;
                    let actions = self.core.on_tick(self.ex.now_ms());
                    let streams = self.hub.read().map(|h| h.stream_statuses()).unwrap_or_default();
                    self.notify.on_tick(&self.core, self.liveness.exchange_reachable(), &streams, self.ex.now_ms());
                    actions
                }
                Some(a) = inputs.signals.recv() => {
                    force_publish = true;
                    self.signals_handled += 1;
                    self.on_signal(a)
                }
            };
            let mut actions = actions;
            if !self.held_signals.is_empty() {
                actions.extend(self.release_held_signals());
            }
            // Force exits that waited for a symbol to become idle go out as soon as it is.
            actions.extend(self.control.retry_exits(&mut self.core, self.ex.now_ms()));
            // A step that sent requests is published at once (/status shows them in flight).
            force_publish |= actions.iter().any(|a| matches!(a, Action::Send(_)));
            self.execute(actions);
            self.notify.on_step(&self.core, self.ex.now_ms());
            self.after_step(force_publish);
        }
        self.shutdown().await;
    }

    /// A complete analysis: evaluated at once when the market streams are live, else held
    /// (the latest per symbol) until they are, for at most [`SIGNAL_HOLD_MS`]. A signal of a
    /// 15m close that arrives during a reconnect, or before the streams are up at start, is
    /// not lost for the whole candle; one that waited longer is dropped (fail closed).
    fn on_signal(&mut self, a: Analysis) -> Vec<Action> {
        let live = self.hub.read().map(|h| h.streams_live()).unwrap_or(false);
        if !live {
            tracing::info!(symbol = %a.symbol, hold_secs = SIGNAL_HOLD_MS / 1000,
                "signal held: the market streams are not live");
            self.held_signals.insert(a.symbol.clone(), (a, self.ex.now_ms()));
            return Vec::new();
        }
        self.evaluate_signal(&a)
    }

    /// Evaluates a signal on live data; the entry's reference price is the symbol's latest
    /// mark, held or not.
    fn evaluate_signal(&mut self, a: &Analysis) -> Vec<Action> {
        let (live, mark) = match self.hub.read() {
            Ok(h) => (h.streams_live(), h.mark(&a.symbol)),
            Err(_) => (false, None),
        };
        if let Some((price, at)) = mark {
            self.core.observe_mark(&a.symbol, price, at);
        }
        self.core.on_signal(a, live, self.ex.now_ms())
    }

    /// Held signals once the streams are live again (those that waited too long are dropped).
    fn release_held_signals(&mut self) -> Vec<Action> {
        let now = self.ex.now_ms();
        let live = self.hub.read().map(|h| h.streams_live()).unwrap_or(false);
        let mut out = Vec::new();
        let held = std::mem::take(&mut self.held_signals);
        for (symbol, (a, since)) in held {
            if now - since > SIGNAL_HOLD_MS {
                tracing::warn!(%symbol, waited_secs = (now - since) / 1000,
                    "signal dropped: the market streams did not come back in time");
            } else if live {
                tracing::info!(%symbol, waited_ms = now - since, "held signal evaluated: the market streams are live");
                out.extend(self.evaluate_signal(&a));
            } else {
                self.held_signals.insert(symbol, (a, since));
            }
        }
        out
    }

    /// `kinetic_orders_rejected_total{code}`: every request the exchange (or the client)
    /// refused, by Binance code (`none` without one).
    fn count_rejection(&self, o: &Outcome) {
        let error = match &o.result {
            OrderResult::Entry(Err(e)) | OrderResult::Close(Err(e)) => Some(e),
            OrderResult::StopPlaced(Err(e))
            | OrderResult::StopCancelled(Err(e))
            | OrderResult::AllCancelled(Err(e)) => Some(e),
            _ => None,
        };
        if let Some(e) = error {
            let code = e.code().map(|c| c.to_string()).unwrap_or_else(|| "none".to_string());
            self.metrics.orders_rejected.get_or_create(&Metrics::label("code", &code)).inc();
        }
    }

    /// Mark prices changed: the latest mark of every symbol we hold (older updates were
    /// overwritten in the hub; nothing queues).
    fn on_marks(&mut self) -> Vec<Action> {
        let held = self.core.held_symbols();
        let (marks, latest): (Vec<(String, rust_decimal::Decimal, i64)>, i64) = match self.hub.read() {
            Ok(h) => {
                (held.iter().filter_map(|s| h.mark(s).map(|(p, t)| (s.clone(), p, t))).collect(), h.last_mark_time)
            }
            Err(_) => (Vec::new(), 0),
        };
        let now = self.ex.now_ms();
        let mut out = Vec::new();
        for (s, p, t) in marks {
            if self.core.mark(&s) == Some(p) {
                continue;
            }
            out.extend(self.core.on_mark(&s, p, t, now));
        }
        self.mark_time = self.mark_time.max(latest);
        out
    }

    fn execute(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Journal(r) => {
                    self.notify.on_record(&r, self.ex.now_ms());
                    let latch = matches!(r, Record::RiskState(_));
                    match self.write(r) {
                        Ok(()) => {
                            if !self.core.journal_ok() {
                                self.core.set_journal_ok(true);
                            }
                        }
                        Err(e) => {
                            // Fail closed: no entries while the journal cannot record them.
                            tracing::error!(error = %e, risk_state = latch, "journal write failed; entries blocked");
                            self.core.set_journal_ok(false);
                        }
                    }
                }
                Action::Send(cmd) => {
                    self.metrics.orders_sent.get_or_create(&Metrics::label("kind", cmd.request.kind())).inc();
                    orders::spawn(&self.tracker, &self.ex, cmd, &self.outcome_tx);
                }
                Action::Resync => {
                    orders::spawn_resync(&self.tracker, &self.ex, self.ex.now_ms(), &self.liveness, &self.snapshot_tx);
                }
            }
        }
    }

    fn write(&mut self, r: Record) -> Result<(), StoreError> {
        let now = self.ex.now_ms();
        match r {
            Record::Order(o) => self.journal.upsert_order(&o),
            Record::Fill(f) => self.journal.record_fill(&f).map(|_| ()),
            Record::PositionOpened { position, adopted } => self.journal.open_position(&position, adopted).map(|_| ()),
            Record::PositionUpdated(p) => self.journal.update_position(&p).map(|_| ()),
            Record::PositionClosed { position, time, reason, gross_pnl, fees } => {
                // The final exits go into the open row before it is closed.
                if let Some(mut j) =
                    self.journal.open_positions()?.into_iter().find(|j| j.position.symbol == position.symbol)
                {
                    if !position.partial_exits.is_empty() {
                        j.position.partial_exits.clone_from(&position.partial_exits);
                    }
                    j.position.qty = rust_decimal::Decimal::ZERO;
                    self.journal.update_position(&j.position)?;
                }
                self.journal.close_position(&position.symbol, time, &reason, gross_pnl, fees).map(|_| ())
            }
            Record::Signal { signal, risk } => {
                self.recent_signals.push_front(SignalStatus {
                    time: signal.time,
                    symbol: signal.symbol.clone(),
                    direction: signal.direction,
                    score: signal.confidence,
                    components: signal.breakdown.get("components").cloned().unwrap_or_default(),
                    taken: signal.breakdown.pointer("/outcome/enter") == Some(&serde_json::Value::Bool(true)),
                    reason: signal.breakdown.pointer("/outcome/reason").and_then(|r| r.as_str()).map(str::to_string),
                });
                self.recent_signals.truncate(20);
                let id = self.journal.record_signal(&signal)?;
                if let Some(mut r) = risk {
                    r.signal_id = Some(id);
                    self.journal.record_risk_check(&r)?;
                }
                Ok(())
            }
            Record::RiskState(v) => self.journal.set_state(RISK_STATE_KEY, &v, now),
            Record::Equity(e) => self.journal.record_equity(&e),
        }
    }

    /// Heartbeat, watchdog, held symbols, `/status` (at most every 250 ms unless forced).
    fn after_step(&mut self, force: bool) {
        self.liveness.beat();
        // In flight first, then what was handled: an observer that sees the step done sees
        // the requests it sent.
        let in_flight = u64::try_from(self.core.requests_in_flight()).unwrap_or(u64::MAX);
        let progress = &self.liveness.progress;
        progress.requests_in_flight.store(in_flight, Ordering::SeqCst);
        progress.signals_handled.store(self.signals_handled, Ordering::SeqCst);
        progress.mark_time.fetch_max(self.mark_time, Ordering::SeqCst);
        if self.watchdog.is_some() && self.last_watchdog.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            systemd::watchdog();
            self.last_watchdog = Some(Instant::now());
        }
        let held = self.core.held_symbols();
        self.held.send_if_modified(|h| {
            if *h == held {
                false
            } else {
                *h = held;
                true
            }
        });
        if force || self.last_publish.is_none_or(|t| t.elapsed() >= Duration::from_millis(250)) {
            self.last_publish = Some(Instant::now());
            let now = self.ex.now_ms();
            let scan = self.scan.borrow();
            let snapshot = status::snapshot(&status::StatusInputs {
                core: &self.core,
                hub: &self.hub,
                scan: &scan,
                recent_signals: &self.recent_signals,
                dry_run: self.dry_run,
                started_at: self.started_at,
                last_tick: (self.ticks > 0).then_some(now),
                liveness: &self.liveness,
                requests_in_flight: self.core.requests_in_flight(),
            });
            status::export_metrics(&self.metrics, &self.core, &self.hub, &*self.ex, &self.settings, now);
            if let Ok(mut s) = self.status.write() {
                // The API-key check's outcome was set once at start; it stays.
                let api_key = s.api_key.take();
                *s = snapshot;
                s.api_key = api_key;
                s.control = self.control.status(self.core.paused());
            }
        }
    }

    async fn shutdown(&mut self) {
        self.core.disable_entries();
        systemd::stopping();
        self.tracker.close();
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        if !self.tracker.is_empty() {
            tracing::info!(in_flight = self.core.requests_in_flight(), "shutting down: waiting for requests in flight");
        }
        // Outcomes keep being booked until every request finished or the grace ran out.
        while !self.tracker.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(in_flight = self.core.requests_in_flight(),
                        "requests still in flight at the end of the grace period; the exchange's stops remain");
                    break;
                }
                Some(o) = self.outcome_rx.recv() => {
                    let actions = self.core.on_outcome(o, self.ex.now_ms());
                    // Only journal writes now: nothing new is sent during shutdown.
                    let writes = actions.into_iter().filter(|a| matches!(a, Action::Journal(_))).collect();
                    self.execute(writes);
                }
                _ = self.tracker.wait() => {}
            }
        }
        while let Ok(o) = self.outcome_rx.try_recv() {
            let writes = self
                .core
                .on_outcome(o, self.ex.now_ms())
                .into_iter()
                .filter(|a| matches!(a, Action::Journal(_)))
                .collect();
            self.execute(writes);
        }
        let eq = self.core.equity_snapshot(self.ex.now_ms());
        if let Err(e) = self.journal.record_equity(&eq) {
            tracing::error!(error = %e, "journal: could not record the final equity");
        }
        self.after_step(true);
        tracing::info!(
            open_positions = self.core.manager().open_count(),
            "shut down: no new entries; open positions keep their exchange-side stops"
        );
    }
}
