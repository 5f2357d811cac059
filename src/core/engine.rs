//! The orchestrator of `kinetic run`: wires the exchange, the DataHub, the trading brain
//! ([`PositionManager`]), the journal and the HTTP status state, and runs until cancelled.
//!
//! Tasks and data flow:
//! - the exchange's stream tasks (market data + user data) push [`ExchangeEvent`]s into one
//!   channel, so market and account events are seen in arrival order;
//! - the engine task owns the brain and the journal and reacts to three sources with
//!   `select!`: events (candles → analyzer, mark prices → exit ladder, fills → bookkeeping),
//!   the scanner interval, and the monitor interval (ladder on every open position,
//!   emergency exit, protection audit, periodic reconciliation with the exchange, status);
//! - the DataHub (`Arc<RwLock<_>>`) is the shared picture read by `/status` and `/health`;
//!   every write is a short critical section with no `.await` inside.
//!
//! Order of safety: on start the exchange is the truth (reconcile), unprotected positions get
//! a stop before anything else, and every state change is journaled before the next action
//! depends on it. On shutdown, new entries stop and positions stay open with their
//! exchange-side stops.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rust_decimal::prelude::*;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::analyzer::entry_exit::round_stop;
use crate::api::{Metrics, StatusSnapshot, StreamState};
use crate::config::{MarginType as ConfigMarginType, Settings};
use crate::core::data_hub::{MarkPrice, SharedHub};
use crate::core::models::{
    Candle, Direction, LadderStage, Position, Side, SymbolFilters, Timeframe, TimestampMs, decimal_from_f64,
    plain_decimal, round_to_increment,
};
use crate::core::systemd;
use crate::exchange::{
    Exchange, ExchangeError, ExchangeEvent, MarginType, MarketOrderRequest, OrderReport, StopOrder, StopRequest,
    StopStatus, StreamControl, StreamEvent, SymbolInfo,
};
use crate::manager::exit_ladder::{ExitAction, ExitReason};
use crate::manager::position_manager::{ClosedTrade, EmergencyLatch, EntryDecision, EntryPlan, PositionManager};
use crate::manager::protection::{HeldPosition, ProtectionAction, RestingStop, audit};
use crate::manager::reconcile::{AdoptionPolicy, ExchangeHolding, ReconcileAction, reconcile};
use crate::manager::risk_checks::PortfolioSnapshot;
use crate::scanner::market_scanner::{is_allowed, passes_liquidity_floor, passes_momentum_filter};
use crate::store::{EquitySnapshot, Journal, JournalFill, JournalOrder, RiskCheckRecord, SignalRecord, StoreError};

/// Journal state key of the emergency latch.
pub const EMERGENCY_STATE_KEY: &str = "emergency_latch";
/// Candles fetched per timeframe to warm a symbol's indicators up.
const WARMUP_CANDLES: u16 = 200;
/// How long the engine waits for the exchange's stop to fill after the ladder saw the stop
/// price before it closes at market itself.
const STOP_FILL_GRACE_MS: i64 = 10_000;
/// Monitor ticks between full reconciliations with the exchange (positions, stops, balance).
const RESYNC_EVERY_TICKS: u64 = 12;

/// Fatal engine errors (anything else is logged, counted and survived).
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("exchange error during start-up: {0}")]
    Startup(#[from] ExchangeError),
    #[error("journal error: {0}")]
    Journal(#[from] StoreError),
    #[error(
        "the account is in hedge (dual-side) position mode; kinetic trades one-way mode. Switch the \
         account to one-way mode on Binance (with no open positions), or set exchange.allow_hedge_mode = true"
    )]
    HedgeMode,
}

/// Handles shared with the outside world (HTTP server, tests).
#[derive(Clone)]
pub struct EngineHandles {
    pub hub: SharedHub,
    pub status: Arc<RwLock<StatusSnapshot>>,
    pub metrics: Metrics,
}

/// An entry in flight, so a second signal for the symbol is refused.
#[derive(Debug, Clone)]
struct PendingExit {
    qty: Decimal,
    reason: ExitReason,
    since: TimestampMs,
}

/// The engine. Generic over the exchange so live and paper trading run the same code.
pub struct Engine<E: Exchange> {
    ex: Arc<E>,
    settings: Settings,
    dry_run: bool,
    pm: PositionManager,
    journal: Journal,
    handles: EngineHandles,
    symbols: HashMap<String, SymbolInfo>,
    locked: BTreeSet<String>,
    candidates: Vec<String>,
    /// Symbols whose candles we keep (passed the ticker filters, or held).
    tracked: BTreeSet<String>,
    /// Resting protective stops by algo id (our view, from events and periodic refreshes).
    stops: BTreeMap<i64, StopOrder>,
    /// Client ids of the market orders we sent (their fills are booked from the response).
    own_orders: VecDeque<String>,
    /// Stop-hit closes the exchange's resting stop is expected to fill.
    awaiting_stop: HashMap<String, PendingExit>,
    control: Option<StreamControl>,
    /// Candidates whose closed candle arrived while a stream was down: evaluated on recovery.
    deferred: BTreeSet<String>,
    recent_signals: VecDeque<serde_json::Value>,
    last_scan: Option<serde_json::Value>,
    seq: u64,
    ticks: u64,
    started_at: TimestampMs,
    last_equity_journal: TimestampMs,
}

fn margin_type(m: ConfigMarginType) -> MarginType {
    match m {
        ConfigMarginType::Isolated => MarginType::Isolated,
        ConfigMarginType::Crossed => MarginType::Crossed,
    }
}

fn dec_f64(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(0.0)
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
        let now = ex.now_ms();
        let pm = PositionManager::new(&settings, now, Decimal::ZERO)?;
        Some(Engine {
            ex,
            settings,
            dry_run,
            pm,
            journal,
            handles,
            symbols: HashMap::new(),
            locked: BTreeSet::new(),
            candidates: Vec::new(),
            tracked: BTreeSet::new(),
            stops: BTreeMap::new(),
            own_orders: VecDeque::new(),
            awaiting_stop: HashMap::new(),
            control: None,
            deferred: BTreeSet::new(),
            recent_signals: VecDeque::new(),
            last_scan: None,
            seq: 0,
            ticks: 0,
            started_at: now,
            last_equity_journal: 0,
        })
    }

    fn client_id(&mut self, kind: &str) -> String {
        self.seq += 1;
        format!("ke-{kind}-{}-{}", self.ex.now_ms(), self.seq)
    }

    fn remember_own(&mut self, id: &str) {
        self.own_orders.push_back(id.to_string());
        while self.own_orders.len() > 512 {
            self.own_orders.pop_front();
        }
    }

    fn is_own(&self, id: &str) -> bool {
        self.own_orders.iter().any(|o| o == id)
    }

    fn filters(&self, symbol: &str) -> Option<SymbolFilters> {
        self.symbols.get(symbol).map(|s| s.filters.clone())
    }

    fn mark(&self, symbol: &str) -> Option<Decimal> {
        self.handles.hub.read().ok()?.mark_prices.get(symbol).map(|m| m.price)
    }

    /// Mark prices of the symbols we hold (a handful, not the whole market).
    fn marks(&self) -> HashMap<String, Decimal> {
        let Ok(hub) = self.handles.hub.read() else { return HashMap::new() };
        self.pm
            .positions()
            .filter_map(|m| {
                let symbol = &m.position.symbol;
                hub.mark_prices.get(symbol).map(|p| (symbol.clone(), p.price))
            })
            .collect()
    }

    /// Runs until `cancel` fires: start-up reconciliation, streams, then the event loop.
    ///
    /// # Errors
    /// Start-up failures (exchange unreachable, hedge mode, journal) — after start-up every
    /// error is logged and survived.
    pub async fn run(mut self, cancel: CancellationToken, clear_emergency: bool) -> Result<(), EngineError> {
        self.startup(clear_emergency).await?;
        let (tx, mut rx) = mpsc::channel::<ExchangeEvent>(4096);
        let control = self.ex.start_streams(tx, cancel.clone()).await?;
        self.control = Some(control);
        self.update_kline_subscriptions();
        self.scan().await;
        systemd::ready();
        systemd::status("trading");
        tracing::info!(mode = if self.dry_run { "dry-run" } else { "live" }, "engine running");

        let mut scan_every = tokio::time::interval(Duration::from_secs(self.settings.scanner.interval_secs.max(1)));
        scan_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        scan_every.tick().await;
        let monitor_period = Duration::from_secs(self.settings.monitor.interval_secs.max(1));
        let mut monitor_every = tokio::time::interval(monitor_period);
        monitor_every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let watchdog = systemd::watchdog_interval();
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                ev = rx.recv() => match ev {
                    Some(ev) => self.on_event(ev).await,
                    None => break,
                },
                at = monitor_every.tick() => {
                    let lag = at.elapsed().as_secs_f64();
                    self.handles.metrics.monitor_loop_lag_secs.set(lag);
                    self.monitor_tick().await;
                    if watchdog.is_some() {
                        systemd::watchdog();
                    }
                }
                _ = scan_every.tick() => self.scan().await,
            }
        }
        systemd::stopping();
        tracing::info!(
            open_positions = self.pm.open_count(),
            "shutting down: no new entries; open positions keep their exchange-side stops"
        );
        self.journal_equity(true);
        Ok(())
    }

    // ----------------------------------------------------------------------------- start-up

    async fn startup(&mut self, clear_emergency: bool) -> Result<(), EngineError> {
        let infos = self.ex.symbols().await?;
        self.symbols = infos.into_iter().map(|i| (i.filters.symbol.clone(), i)).collect();
        tracing::info!(symbols = self.symbols.len(), "exchange info loaded");
        if !self.ex.is_paper() && self.ex.hedge_mode().await? && !self.settings.exchange.allow_hedge_mode {
            return Err(EngineError::HedgeMode);
        }
        match self.ex.locked_symbols().await {
            Ok(l) => self.locked = l,
            Err(e) => tracing::warn!(error = %e, "could not read the API trading status; assuming no locks"),
        }
        let balance = self.ex.balance().await?;
        if let Ok(mut hub) = self.handles.hub.write() {
            hub.account.wallet_balance = balance.wallet_balance;
            hub.account.available_balance = balance.available_balance;
            hub.account.updated_at = self.ex.now_ms();
        }
        let now = self.ex.now_ms();
        if let Some(pm) = PositionManager::new(&self.settings, now, balance.equity) {
            self.pm = pm;
        }
        // The emergency latch survives restarts.
        if clear_emergency {
            self.journal.clear_state(EMERGENCY_STATE_KEY)?;
            tracing::warn!("emergency latch cleared by the operator (--clear-emergency)");
        } else if let Some(v) = self.journal.state(EMERGENCY_STATE_KEY)? {
            let since = v.get("since").and_then(serde_json::Value::as_i64).unwrap_or(now);
            self.pm.set_emergency(Some(EmergencyLatch { since }));
            self.pm.check_emergency(Decimal::ZERO, balance.equity, now);
            if self.pm.emergency().is_some() {
                tracing::warn!(since, "emergency exit latched: no new entries until cleared (--clear-emergency)");
            } else {
                self.journal.clear_state(EMERGENCY_STATE_KEY)?;
            }
        }
        self.reconcile_positions(true).await?;
        self.refresh_stops().await;
        // Protection before anything else.
        self.protect().await;
        let held: Vec<String> = self.pm.positions().map(|p| p.position.symbol.clone()).collect();
        for s in held {
            self.warm_up(&s).await;
        }
        self.publish_status();
        Ok(())
    }

    /// Makes the exchange the truth: keep, adopt or drop positions. At start-up (`startup`)
    /// journal positions are loaded; later runs compare the brain with the exchange.
    async fn reconcile_positions(&mut self, startup: bool) -> Result<(), EngineError> {
        let now = self.ex.now_ms();
        let held = self.ex.positions().await?;
        let holdings: Vec<ExchangeHolding> = held
            .iter()
            .map(|p| ExchangeHolding {
                symbol: p.symbol.clone(),
                signed_qty: if p.direction == Direction::Long { p.qty } else { -p.qty },
                entry_price: p.entry_price,
                mark_price: p.mark_price,
                leverage: p.leverage,
            })
            .collect();
        let known: Vec<Position> = if startup {
            self.journal.open_positions()?.into_iter().map(|j| j.position).collect()
        } else {
            self.pm.positions().map(|m| m.position.clone()).collect()
        };
        let policy = AdoptionPolicy {
            max_stop_pct: decimal_from_f64(self.settings.strategy.max_stop_pct).unwrap_or(Decimal::from(3)),
            trail_start_pct: decimal_from_f64(self.settings.strategy.trail_start_pct).unwrap_or(Decimal::from(3)),
        };
        for action in reconcile(&known, &holdings, &policy, now) {
            match action {
                ReconcileAction::Keep { position, size_changed } => {
                    if startup {
                        let Some(f) = self.filters(&position.symbol) else { continue };
                        self.journal.update_position(&position)?;
                        self.pm.restore_position(position.clone(), &f, 0);
                        tracing::info!(symbol = %position.symbol, qty = %position.qty, stage = ?position.stage,
                            stop = %position.stop_loss, "position restored from the journal");
                    } else if size_changed {
                        tracing::warn!(symbol = %position.symbol, qty = %position.qty,
                            "exchange size differs from ours; following the exchange");
                        self.pm.sync_quantity(&position.symbol, position.qty);
                        self.journal_position(&position.symbol);
                    }
                }
                ReconcileAction::Adopt { mut position } => {
                    let Some(f) = self.filters(&position.symbol) else {
                        tracing::error!(symbol = %position.symbol, "position on an unknown symbol; cannot manage it");
                        continue;
                    };
                    position.stop_loss = round_stop(position.direction, position.stop_loss, f.tick_size);
                    tracing::warn!(symbol = %position.symbol, direction = %position.direction.as_str(),
                        qty = %position.qty, entry = %position.entry_price, stop = %position.stop_loss,
                        "adopting a position the journal does not know, with a conservative ladder");
                    self.journal.open_position(&position, true)?;
                    self.pm.restore_position(position, &f, 0);
                }
                ReconcileAction::CloseAdopted { position } => {
                    tracing::warn!(symbol = %position.symbol, "adopted position is beyond its stop; closing at market");
                    if let Some(f) = self.filters(&position.symbol) {
                        let mut p = position.clone();
                        p.stop_loss = round_stop(position.direction, position.stop_loss, f.tick_size);
                        self.journal.open_position(&p, true)?;
                        self.pm.restore_position(p, &f, 0);
                        let take = self.pm.reduce_remaining(&position.symbol, position.qty);
                        if take > Decimal::ZERO {
                            self.close_market(&position.symbol, take, ExitReason::StopLoss, "adopted_beyond_stop")
                                .await;
                        }
                    }
                }
                ReconcileAction::Drop { symbol } => {
                    let mark = self.mark(&symbol);
                    tracing::warn!(%symbol, "position no longer exists on the exchange; recording it closed");
                    if let Some(mp) = self.pm.position(&symbol).cloned() {
                        let price = match self.stop_execution(&symbol).await {
                            Some(p) => p,
                            None => mark.unwrap_or(mp.position.stop_loss),
                        };
                        let left = self.pm.reduce_remaining(&symbol, mp.ladder.remaining_qty);
                        let reason = if mp.position.stage == LadderStage::Trailing {
                            ExitReason::TrailingStop
                        } else {
                            ExitReason::StopLoss
                        };
                        if let Some(t) = self.pm.on_exit_filled(&symbol, left, price, Decimal::ZERO, reason, now) {
                            self.finish_trade(&t, "closed_on_exchange");
                        } else {
                            self.pm.sync_quantity(&symbol, Decimal::ZERO);
                        }
                    } else if let Ok(open) = self.journal.open_positions() {
                        for j in open.into_iter().filter(|j| j.position.symbol == symbol) {
                            self.journal.close_position(
                                &symbol,
                                now,
                                "closed_while_offline",
                                j.realized_pnl,
                                j.fees,
                            )?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// How the exchange closed a position we missed the events of: the execution of one of our
    /// protective stops (their triggered orders carry the stop's client id). Journals the
    /// execution and returns its average price.
    async fn stop_execution(&mut self, symbol: &str) -> Option<Decimal> {
        let candidates: Vec<String> =
            self.journal.stops_without_fill(symbol).ok()?.into_iter().map(|o| o.client_order_id).collect();
        for id in candidates.iter().rev() {
            if let Ok(Some(r)) = self.ex.query_order(symbol, id).await
                && r.executed_qty > Decimal::ZERO
            {
                self.journal_report(&r, "protective_stop");
                return Some(r.avg_price);
            }
        }
        None
    }

    async fn refresh_stops(&mut self) {
        match self.ex.open_stops().await {
            Ok(list) => {
                self.stops = list.into_iter().filter(|s| s.status.is_resting()).map(|s| (s.algo_id, s)).collect();
                let n = i64::try_from(self.stops.len()).unwrap_or(i64::MAX);
                self.handles.metrics.algo_orders_open.set(n);
            }
            Err(e) => tracing::warn!(error = %e, "could not list open stops; keeping our view"),
        }
    }

    /// Brings a symbol's three timeframes up to date (full warm-up the first time).
    async fn warm_up(&mut self, symbol: &str) {
        for tf in [Timeframe::H4, Timeframe::H1, Timeframe::M15] {
            if !self.catch_up(symbol, tf).await {
                return;
            }
        }
    }

    /// Fetches the closed candles of `tf` missing since the analyzer's last one (the whole
    /// warm-up when it has none). At most one request; nothing when already current.
    async fn catch_up(&mut self, symbol: &str, tf: Timeframe) -> bool {
        let now = self.ex.now_ms();
        let dur = tf.duration_ms();
        let last = self.pm.analyzer(symbol).and_then(|a| a.state(tf)).and_then(|s| s.last_close_time());
        let limit = match last {
            None => WARMUP_CANDLES,
            Some(t) => {
                let missing = (now - t) / dur;
                if missing < 1 {
                    return true;
                }
                u16::try_from((missing + 2).min(i64::from(WARMUP_CANDLES))).unwrap_or(WARMUP_CANDLES)
            }
        };
        match self.ex.klines(symbol, tf, None, None, limit).await {
            Ok(candles) => {
                for c in candles.iter().filter(|c| c.close_time < now) {
                    self.pm.on_closed_candle(symbol, tf, c);
                    if let Ok(mut hub) = self.handles.hub.write() {
                        hub.merge_candle(symbol, tf, *c);
                    }
                }
                true
            }
            Err(e) => {
                tracing::warn!(%symbol, timeframe = tf.as_str(), error = %e, "candle history fetch failed");
                false
            }
        }
    }

    fn update_kline_subscriptions(&mut self) {
        let mut set: BTreeSet<String> = self.candidates.iter().cloned().collect();
        set.extend(self.pm.positions().map(|p| p.position.symbol.clone()));
        if let Some(c) = &self.control {
            c.set_kline_symbols(set);
        }
    }

    // ------------------------------------------------------------------------------- events

    async fn on_event(&mut self, ev: ExchangeEvent) {
        let now = self.ex.now_ms();
        match ev {
            ExchangeEvent::Kline { symbol, timeframe, candle, closed } => {
                if !candle.is_sane() {
                    self.handles.metrics.dropped_messages.get_or_create(&Metrics::label("source", "kline")).inc();
                    tracing::warn!(%symbol, timeframe = timeframe.as_str(), ?candle, "malformed candle dropped");
                    return;
                }
                if let Ok(mut hub) = self.handles.hub.write() {
                    hub.merge_candle(&symbol, timeframe, candle);
                    hub.stream_message("market", now);
                }
                if closed {
                    self.on_closed_candle(&symbol, timeframe, &candle).await;
                }
            }
            ExchangeEvent::Backfill { symbol, timeframe, candles } => {
                let mut fresh = false;
                for c in candles.iter().filter(|c| c.close_time < now) {
                    if let Ok(mut hub) = self.handles.hub.write() {
                        hub.merge_candle(&symbol, timeframe, *c);
                    }
                    fresh |= self.pm.on_closed_candle(&symbol, timeframe, c);
                }
                // A candidate's 15m candle that closed while the stream was down is evaluated
                // as if it had arrived live.
                if fresh && timeframe == Timeframe::M15 && self.candidates.iter().any(|c| c == &symbol) {
                    self.consider_entry(&symbol).await;
                }
            }
            ExchangeEvent::MarkPrices(updates) => {
                if let Ok(mut hub) = self.handles.hub.write() {
                    for u in &updates {
                        let prev = hub.mark_prices.get(&u.symbol).copied();
                        hub.mark_prices.insert(
                            u.symbol.clone(),
                            MarkPrice {
                                price: u.mark_price,
                                funding_rate: u.funding_rate.or(prev.map(|p| p.funding_rate)).unwrap_or_default(),
                                next_funding_time: u
                                    .next_funding_time
                                    .or(prev.map(|p| p.next_funding_time))
                                    .unwrap_or_default(),
                                time: u.event_time,
                            },
                        );
                    }
                    hub.stream_message("market", now);
                }
                for u in &updates {
                    if self.pm.has_position(&u.symbol) {
                        self.on_position_price(&u.symbol, u.mark_price).await;
                    }
                }
            }
            ExchangeEvent::Tickers(tickers) => {
                if let Ok(mut hub) = self.handles.hub.write() {
                    for t in tickers {
                        hub.tickers.insert(t.symbol.clone(), t);
                    }
                    hub.stream_message("market", now);
                }
            }
            ExchangeEvent::OrderUpdate { report, fill } => self.on_order_update(report, fill, now).await,
            ExchangeEvent::StopUpdate(stop) => {
                self.journal_stop(&stop, "protective_stop");
                if stop.status.is_resting() {
                    self.stops.insert(stop.algo_id, stop);
                } else {
                    if matches!(stop.status, StopStatus::Triggered | StopStatus::Finished) {
                        tracing::info!(symbol = %stop.symbol, trigger = %stop.trigger_price,
                            status = ?stop.status, "protective stop triggered on the exchange");
                    }
                    self.stops.remove(&stop.algo_id);
                }
                let n = i64::try_from(self.stops.len()).unwrap_or(i64::MAX);
                self.handles.metrics.algo_orders_open.set(n);
            }
            ExchangeEvent::AccountUpdate { balance, positions, time } => {
                if let (Some(b), Ok(mut hub)) = (balance, self.handles.hub.write()) {
                    hub.account.wallet_balance = b.wallet_balance;
                    hub.account.available_balance = b.available_balance;
                    hub.account.updated_at = time;
                }
                for p in positions {
                    let ours = self.pm.position(&p.symbol).map(|m| m.ladder.remaining_qty);
                    if let Some(ours) = ours
                        && p.qty.is_zero()
                        && ours > Decimal::ZERO
                        && !self.awaiting_stop.contains_key(&p.symbol)
                    {
                        tracing::warn!(symbol = %p.symbol, "exchange reports the position closed; resyncing");
                    }
                }
                if let Ok(mut hub) = self.handles.hub.write() {
                    hub.stream_message("user", now);
                }
            }
            ExchangeEvent::MarginCall { symbols, .. } => {
                tracing::warn!(?symbols, "MARGIN CALL from the exchange");
            }
            ExchangeEvent::Stream(s) => {
                self.on_stream_event(s);
                let healthy = self.handles.hub.read().map(|h| h.streams_live()).unwrap_or(false);
                if healthy && !self.deferred.is_empty() {
                    let due: Vec<String> = std::mem::take(&mut self.deferred)
                        .into_iter()
                        .filter(|s| self.candidates.contains(s))
                        .collect();
                    for s in due {
                        self.consider_entry(&s).await;
                    }
                }
            }
        }
    }

    fn on_stream_event(&mut self, s: StreamEvent) {
        let Ok(mut hub) = self.handles.hub.write() else { return };
        match s {
            StreamEvent::Connected { stream, reconnect } => {
                hub.set_stream_state(&stream, StreamState::Live, reconnect);
                if reconnect {
                    self.handles.metrics.ws_reconnects.get_or_create(&Metrics::label("stream", &stream)).inc();
                    tracing::info!(%stream, "stream reconnected");
                }
            }
            StreamEvent::Disconnected { stream, reason } => {
                hub.set_stream_state(&stream, StreamState::Connecting, false);
                tracing::warn!(%stream, %reason, "stream disconnected; reconnecting");
            }
            StreamEvent::Stale { stream, silent_ms } => {
                hub.set_stream_state(&stream, StreamState::Stale, false);
                tracing::warn!(%stream, silent_ms, "stream silent for too long; recycling the connection");
            }
        }
    }

    async fn on_closed_candle(&mut self, symbol: &str, tf: Timeframe, candle: &Candle) {
        self.pm.on_closed_candle(symbol, tf, candle);
        if tf == Timeframe::M15 && self.candidates.iter().any(|c| c == symbol) {
            self.consider_entry(symbol).await;
        }
    }

    async fn on_order_update(&mut self, report: OrderReport, fill: Option<crate::exchange::Fill>, now: TimestampMs) {
        if let Some(f) = &fill {
            let _ = self.journal.record_fill(&JournalFill {
                client_order_id: f.client_order_id.clone(),
                trade_id: f.trade_id,
                symbol: f.symbol.clone(),
                side: f.side.as_str().to_string(),
                price: f.price,
                qty: f.qty,
                fee: f.fee,
                realized_pnl: f.realized_pnl,
                time: f.time,
            });
        }
        if self.is_own(&report.client_order_id) {
            return;
        }
        // The order a triggered protective stop became carries the stop's client id.
        if report.client_order_id.starts_with("ke-s-") {
            self.journal_report(&report, "protective_stop");
        }
        // Not ours: a triggered protective stop, a liquidation or a manual order.
        let Some(f) = fill else { return };
        if !f.reduce_only && !self.pm.has_position(&f.symbol) {
            return;
        }
        let Some(mp) = self.pm.position(&f.symbol).cloned() else { return };
        if f.side != mp.position.direction.exit_side() {
            tracing::warn!(symbol = %f.symbol, "a foreign order added to our position; following the exchange");
            return;
        }
        let reason = match self.awaiting_stop.get_mut(&f.symbol) {
            Some(p) => {
                let r = p.reason;
                p.qty -= f.qty.min(p.qty);
                if p.qty.is_zero() {
                    self.awaiting_stop.remove(&f.symbol);
                }
                r
            }
            None => {
                self.pm.reduce_remaining(&f.symbol, f.qty);
                if mp.position.stage == LadderStage::Trailing { ExitReason::TrailingStop } else { ExitReason::StopLoss }
            }
        };
        tracing::info!(symbol = %f.symbol, qty = %f.qty, price = %f.price, reason = reason.as_str(),
            "exchange-side stop filled");
        let trade = self.pm.on_exit_filled(&f.symbol, f.qty, f.price, f.fee, reason, now);
        self.journal_position(&f.symbol);
        if let Some(t) = trade {
            self.finish_trade(&t, reason.as_str());
        }
    }

    // ------------------------------------------------------------------------------ scanning

    async fn scan(&mut self) {
        let now = self.ex.now_ms();
        let tickers = match self.ex.tickers().await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "scan skipped: tickers unavailable");
                return;
            }
        };
        if let Ok(mut hub) = self.handles.hub.write() {
            for t in &tickers {
                hub.tickers.insert(t.symbol.clone(), t.clone());
            }
        }
        let sc = self.settings.scanner.clone();
        // Stage 1: cheap ticker filters; stage 2 needs 15m candles, fetched only for survivors.
        let mut survivors: Vec<_> = tickers
            .iter()
            .filter(|t| self.symbols.contains_key(&t.symbol))
            .filter(|t| is_allowed(&t.symbol, &sc) && passes_liquidity_floor(t, &sc) && passes_momentum_filter(t, &sc))
            .cloned()
            .collect();
        survivors.sort_by(|a, b| b.quote_volume.partial_cmp(&a.quote_volume).unwrap_or(std::cmp::Ordering::Equal));
        survivors.truncate(sc.max_candidates.saturating_mul(4).max(10));
        // The volume filter needs the latest closed 15m candle of every survivor: one small
        // request per symbol per 15 minutes (streamed symbols are current already).
        let streamed: BTreeSet<String> =
            self.candidates.iter().cloned().chain(self.pm.positions().map(|m| m.position.symbol.clone())).collect();
        for t in &survivors {
            if !streamed.contains(&t.symbol) {
                self.catch_up(&t.symbol, Timeframe::M15).await;
            }
        }
        let ranked = self.pm.scan(&survivors);
        let before: BTreeSet<String> = self.candidates.iter().cloned().collect();
        self.candidates = ranked.iter().map(|c| c.symbol.clone()).collect();
        let after: BTreeSet<String> = self.candidates.iter().cloned().collect();
        // Symbols that no longer pass the ticker filters keep nothing unless we hold them:
        // memory stays O(tracked symbols).
        let keep: BTreeSet<&str> = survivors.iter().map(|t| t.symbol.as_str()).collect();
        let tracked: Vec<String> = self.tracked.iter().cloned().collect();
        for gone in tracked {
            if !keep.contains(gone.as_str()) && !self.pm.has_position(&gone) {
                self.tracked.remove(&gone);
                self.pm.forget_symbol(&gone);
                if let Ok(mut hub) = self.handles.hub.write() {
                    hub.drop_candles(&gone);
                }
            }
        }
        self.tracked.extend(keep.iter().map(|s| (*s).to_string()));
        tracing::info!(
            symbols = tickers.len(),
            prefiltered = survivors.len(),
            candidates = ?self.candidates,
            "scan"
        );
        self.last_scan = Some(json!({
            "time": now,
            "symbols": tickers.len(),
            "prefiltered": survivors.len(),
            "candidates": ranked.iter().map(|c| json!({
                "symbol": c.symbol, "volume_ratio": c.volume_ratio,
                "price_change_pct": c.price_change_pct, "rank_score": c.rank_score,
            })).collect::<Vec<_>>(),
        }));
        self.update_kline_subscriptions();
        // New candidates: bring 1h/4h up to date, then evaluate on the latest closed candle.
        let new: Vec<String> = after.difference(&before).cloned().collect();
        for s in new {
            self.warm_up(&s).await;
            self.consider_entry(&s).await;
        }
    }

    // ------------------------------------------------------------------------------- entries

    async fn consider_entry(&mut self, symbol: &str) {
        if self.locked.contains(crate::exchange::binance::ACCOUNT_LOCK_KEY) {
            tracing::warn!(%symbol, "skipped: the account is locked by Binance's trading rules");
            return;
        }
        if self.locked.contains(symbol) {
            tracing::info!(%symbol, "skipped: symbol locked by Binance's trading rules");
            return;
        }
        let healthy = self.handles.hub.read().map(|h| h.streams_live()).unwrap_or(false);
        if !healthy {
            tracing::info!(%symbol, "deferred: market data streams not live; evaluating when they recover");
            self.deferred.insert(symbol.to_string());
            return;
        }
        self.deferred.remove(symbol);
        let Some(info) = self.symbols.get(symbol).cloned() else { return };
        let now = self.ex.now_ms();
        let Some(price) =
            self.mark(symbol).or_else(|| self.pm.analyzer(symbol).and_then(|a| decimal_from_f64(a.m15.last_close())))
        else {
            return;
        };
        let balance = match self.ex.balance().await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(%symbol, error = %e, "skipped: balance unavailable");
                return;
            }
        };
        let marks = self.marks();
        let (upnl, notional) = self.pm.exposure(&|s| marks.get(s).copied());
        let snapshot = PortfolioSnapshot {
            equity: balance.wallet_balance + upnl,
            available_balance: balance.available_balance,
            open_positions: self.pm.open_count(),
            open_notional: notional,
            unrealized_pnl: upnl,
        };
        let price = round_to_increment(price, info.filters.tick_size, RoundingStrategy::MidpointAwayFromZero);
        let decision = self.pm.evaluate_entry(symbol, now, price, &info.filters, info.max_leverage, &snapshot, false);
        self.journal_decision(&decision);
        match decision.outcome {
            Ok(plan) => self.enter(plan, &info.filters).await,
            Err(reason) => {
                if decision.score_total.is_some_and(|s| s >= self.settings.strategy.min_confidence) {
                    tracing::info!(%symbol, score = decision.score_total, %reason, "signal not taken");
                } else {
                    tracing::debug!(%symbol, score = decision.score_total, %reason, "no signal");
                }
            }
        }
    }

    fn journal_decision(&mut self, d: &EntryDecision) {
        let (Some(total), Some(direction)) = (d.score_total, d.direction) else { return };
        if total < self.settings.strategy.min_confidence {
            return;
        }
        let breakdown = json!({ "components": d.components, "outcome": match &d.outcome {
            Ok(p) => json!({"enter": true, "leverage": p.leverage, "qty": plain_decimal(p.qty), "notional": plain_decimal(p.notional)}),
            Err(r) => json!({"enter": false, "reason": r}),
        }});
        let (entry, stop, tp) = match &d.outcome {
            Ok(p) => (p.signal.entry_price, p.signal.stop_loss, p.signal.take_profit),
            Err(_) => (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO),
        };
        let record = SignalRecord {
            time: d.time,
            symbol: d.symbol.clone(),
            direction,
            confidence: total,
            entry_price: entry,
            stop_loss: stop,
            take_profit: tp,
            breakdown: breakdown.clone(),
        };
        let signal_id = match self.journal.record_signal(&record) {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::error!(error = %e, "journal: could not record signal");
                None
            }
        };
        if let Some(r) = &d.risk {
            tracing::info!(symbol = %d.symbol, score = total, direction = direction.as_str(), passed = r.passed(),
                checks = %r.checks.iter().map(|c| format!("{}={}", c.name, if c.passed {"pass"} else {"FAIL"})).collect::<Vec<_>>().join(" "),
                "signal with risk verdicts");
            let _ = self.journal.record_risk_check(&RiskCheckRecord {
                time: d.time,
                symbol: d.symbol.clone(),
                signal_id,
                passed: r.passed(),
                results: serde_json::to_value(&r.checks).unwrap_or_default(),
            });
        }
        self.recent_signals.push_front(json!({
            "time": d.time, "symbol": d.symbol, "direction": direction.as_str(), "score": total,
            "components": d.components, "taken": d.outcome.is_ok(),
            "reason": d.outcome.as_ref().err(),
        }));
        self.recent_signals.truncate(20);
    }

    async fn enter(&mut self, plan: EntryPlan, filters: &SymbolFilters) {
        let symbol = plan.signal.symbol.clone();
        if let Err(e) =
            self.ex.prepare_symbol(&symbol, margin_type(self.settings.exchange.margin_type), plan.leverage).await
        {
            tracing::warn!(%symbol, error = %e, "entry skipped: could not set margin type/leverage");
            return;
        }
        let side = plan.signal.direction.entry_side();
        let mut qty = plan.qty;
        let mut report = None;
        for attempt in 0..2 {
            let id = self.client_id("e");
            self.remember_own(&id);
            let req = MarketOrderRequest { symbol: symbol.clone(), side, qty, reduce_only: false, client_order_id: id };
            self.journal_order_intent(&req, "entry");
            tracing::info!(%symbol, side = side.as_str(), %qty, leverage = plan.leverage, score = plan.signal.confidence,
                client_order_id = %req.client_order_id, "entry order sent");
            self.handles.metrics.orders_sent.get_or_create(&Metrics::label("kind", "entry")).inc();
            match self.ex.place_market(&req).await {
                Ok(r) => {
                    report = Some(r);
                    break;
                }
                Err(e) if e.is_insufficient_margin() && attempt == 0 => {
                    self.count_reject(&e);
                    let half = filters.floor_market_qty(qty / Decimal::TWO);
                    tracing::warn!(%symbol, %qty, %half, "insufficient margin (-2019): retrying once at half size");
                    if half <= Decimal::ZERO || half * plan.signal.entry_price < filters.min_notional {
                        return;
                    }
                    qty = half;
                }
                Err(e) => {
                    self.count_reject(&e);
                    tracing::warn!(%symbol, error = %e, "entry failed; trade skipped");
                    return;
                }
            }
        }
        let Some(report) = report else { return };
        self.journal_report(&report, "entry");
        if report.executed_qty <= Decimal::ZERO {
            tracing::warn!(%symbol, status = ?report.status, "entry did not fill");
            return;
        }
        let fee = crate::manager::position_manager::fee_for(
            report.avg_price * report.executed_qty,
            self.settings.paper.taker_fee_pct,
        );
        let now = self.ex.now_ms();
        let Some(stop) = self.pm.open_position(&plan, report.executed_qty, report.avg_price, fee, filters, now) else {
            tracing::error!(%symbol, "entry filled but could not be tracked; closing it");
            return;
        };
        tracing::info!(%symbol, direction = plan.signal.direction.as_str(), qty = %report.executed_qty,
            price = %report.avg_price, %stop, "entry filled");
        if let Some(mp) = self.pm.position(&symbol)
            && let Err(e) = self.journal.open_position(&mp.position, false)
        {
            tracing::error!(error = %e, "journal: could not record position");
        }
        self.update_kline_subscriptions();
        self.place_stop(&symbol, plan.signal.direction.exit_side(), report.executed_qty, stop).await;
        self.publish_status();
    }

    // ---------------------------------------------------------------------------------- exits

    async fn on_position_price(&mut self, symbol: &str, price: Decimal) {
        let actions = self.pm.on_price(symbol, price);
        self.execute_exits(symbol, actions).await;
    }

    async fn execute_exits(&mut self, symbol: &str, actions: Vec<ExitAction>) {
        if actions.is_empty() {
            return;
        }
        let now = self.ex.now_ms();
        for a in actions {
            match a {
                ExitAction::Close { qty, reason, trigger_price } => {
                    tracing::info!(%symbol, %qty, level = %trigger_price, reason = reason.as_str(), "take-profit hit");
                    // Write-ahead: the ladder's new stage is journaled before the close is sent,
                    // so a crash in between can never make the same level fire twice.
                    self.journal_position(symbol);
                    if !self.close_market(symbol, qty, reason, reason.as_str()).await {
                        // The ladder was put back; the stop keeps covering the full size and
                        // the audit reconciles it on the next tick.
                        break;
                    }
                }
                ExitAction::MoveStop { stop_price, .. } => {
                    // Size from the position as it is now (a close in this batch may have
                    // filled partly), never from the plan.
                    let Some(qty) = self.pm.position(symbol).map(|m| m.ladder.remaining_qty) else { continue };
                    if qty <= Decimal::ZERO {
                        continue;
                    }
                    self.journal_position(symbol);
                    self.replace_stop(symbol, qty, stop_price).await;
                }
                ExitAction::CloseAll { qty, reason, trigger_price } => {
                    // The resting stop on the exchange fills this; we close ourselves only if
                    // it has not filled within the grace period (monitor loop).
                    tracing::info!(%symbol, %qty, stop = %trigger_price, reason = reason.as_str(),
                        "stop level reached; expecting the exchange-side stop to fill");
                    self.awaiting_stop.insert(symbol.to_string(), PendingExit { qty, reason, since: now });
                    self.journal_position(symbol);
                }
            }
        }
        self.publish_status();
    }

    /// Reduce-only market close of `qty` (already deducted by the ladder), booked from the
    /// response. Returns false when it did not execute; the deduction is then reverted so the
    /// position is tracked — and protected — at its real size.
    async fn close_market(&mut self, symbol: &str, qty: Decimal, reason: ExitReason, intent: &str) -> bool {
        let Some(mp) = self.pm.position(symbol).cloned() else { return false };
        let side = mp.position.direction.exit_side();
        let id = self.client_id("x");
        self.remember_own(&id);
        let req = MarketOrderRequest { symbol: symbol.to_string(), side, qty, reduce_only: true, client_order_id: id };
        self.journal_order_intent(&req, intent);
        self.handles.metrics.orders_sent.get_or_create(&Metrics::label("kind", intent)).inc();
        match self.ex.place_market(&req).await {
            Ok(r) => {
                self.journal_report(&r, intent);
                let now = self.ex.now_ms();
                let fee = crate::manager::position_manager::fee_for(
                    r.avg_price * r.executed_qty,
                    self.settings.paper.taker_fee_pct,
                );
                let shortfall = qty - r.executed_qty;
                if shortfall > Decimal::ZERO {
                    tracing::warn!(%symbol, %shortfall, status = ?r.status, "close filled partly; tracking the rest");
                    self.pm.revert_close(symbol, shortfall, reason, r.executed_qty.is_zero());
                }
                if r.executed_qty.is_zero() {
                    self.journal_position(symbol);
                    return false;
                }
                let trade = self.pm.on_exit_filled(symbol, r.executed_qty, r.avg_price, fee, reason, now);
                tracing::info!(%symbol, qty = %r.executed_qty, price = %r.avg_price, reason = reason.as_str(),
                    "close filled");
                self.journal_position(symbol);
                if let Some(t) = trade {
                    self.finish_trade(&t, intent);
                }
                true
            }
            Err(e) => {
                self.count_reject(&e);
                tracing::error!(%symbol, %qty, error = %e,
                    "close failed; the position stays tracked at full size with its exchange-side stop");
                self.pm.revert_close(symbol, qty, reason, true);
                self.journal_position(symbol);
                false
            }
        }
    }

    fn finish_trade(&mut self, t: &ClosedTrade, reason: &str) {
        tracing::info!(symbol = %t.symbol, direction = t.direction.as_str(), entry = %t.entry_price,
            exit = %t.exit_price.round_dp(8), pnl = %t.net_pnl().round_dp(4), fees = %t.fees.round_dp(4),
            reason = t.exit_reason.as_str(), "position closed");
        // The final exits are not in the journal yet: the brain dropped the position on close.
        if let Ok(open) = self.journal.open_positions()
            && let Some(mut j) = open.into_iter().find(|j| j.position.symbol == t.symbol)
        {
            j.position.partial_exits.clone_from(&t.partial_exits);
            j.position.qty = Decimal::ZERO;
            if let Err(e) = self.journal.update_position(&j.position) {
                tracing::error!(error = %e, "journal: could not record the final exits");
            }
        }
        if let Err(e) = self.journal.close_position(&t.symbol, t.exit_time, reason, t.gross_pnl, t.fees) {
            tracing::error!(error = %e, "journal: could not close position");
        }
        self.awaiting_stop.remove(&t.symbol);
        // Any stop left for the symbol is an orphan now; the audit cancels it.
        self.update_kline_subscriptions();
        self.publish_status();
    }

    // ---------------------------------------------------------------------------------- stops

    async fn place_stop(&mut self, symbol: &str, side: Side, qty: Decimal, trigger: Decimal) -> bool {
        let id = self.client_id("s");
        let req = StopRequest { symbol: symbol.to_string(), side, qty, trigger_price: trigger, client_id: id };
        self.handles.metrics.orders_sent.get_or_create(&Metrics::label("kind", "protective_stop")).inc();
        match self.ex.place_stop(&req).await {
            Ok(stop) => {
                tracing::info!(%symbol, %qty, %trigger, algo_id = stop.algo_id, "protective stop resting on the exchange");
                self.journal_stop(&stop, "protective_stop");
                self.stops.insert(stop.algo_id, stop);
                true
            }
            Err(e) => {
                self.count_reject(&e);
                if e.code() == Some(-2021) {
                    tracing::warn!(%symbol, %trigger, "stop would trigger immediately; closing at market");
                    let reason = if self.pm.position(symbol).is_some_and(|m| m.position.stage == LadderStage::Trailing)
                    {
                        ExitReason::TrailingStop
                    } else {
                        ExitReason::StopLoss
                    };
                    let left = self.pm.position(symbol).map(|m| m.ladder.remaining_qty).unwrap_or_default();
                    let take = self.pm.reduce_remaining(symbol, left);
                    if take > Decimal::ZERO {
                        self.close_market(symbol, take, reason, "stop_immediate").await;
                    }
                } else {
                    tracing::error!(%symbol, %trigger, error = %e, "could not place protective stop; retrying next tick");
                }
                false
            }
        }
    }

    /// Moves/resizes the stop: place the new one first, then cancel the old ones.
    async fn replace_stop(&mut self, symbol: &str, qty: Decimal, trigger: Decimal) {
        let Some(mp) = self.pm.position(symbol) else { return };
        let side = mp.position.direction.exit_side();
        let old: Vec<i64> = self.stops.values().filter(|s| s.symbol == symbol).map(|s| s.algo_id).collect();
        if self.place_stop(symbol, side, qty, trigger).await {
            tracing::info!(%symbol, stop = %trigger, %qty, "stop moved");
            for id in old {
                if let Err(e) = self.ex.cancel_stop(symbol, id).await {
                    tracing::warn!(%symbol, algo_id = id, error = %e, "could not cancel the replaced stop; audit retries");
                } else {
                    self.stops.remove(&id);
                }
            }
        }
    }

    /// The protection audit: exactly one correct stop per position, no orphans.
    async fn protect(&mut self) {
        let held: Vec<HeldPosition> = self
            .pm
            .positions()
            .filter(|m| m.ladder.remaining_qty > Decimal::ZERO && !self.awaiting_stop.contains_key(&m.position.symbol))
            .map(|m| HeldPosition {
                symbol: m.position.symbol.clone(),
                direction: m.position.direction,
                qty: m.ladder.remaining_qty,
                stop_price: m.ladder.stop,
            })
            .collect();
        let awaiting: BTreeSet<String> = self.awaiting_stop.keys().cloned().collect();
        let resting: Vec<RestingStop> = self
            .stops
            .values()
            .filter(|s| !awaiting.contains(&s.symbol))
            .map(|s| RestingStop {
                id: s.algo_id.to_string(),
                symbol: s.symbol.clone(),
                side: s.side,
                qty: s.qty,
                trigger_price: s.trigger_price,
            })
            .collect();
        for action in audit(&held, &resting) {
            match action {
                ProtectionAction::PlaceStop { symbol, side, qty, trigger_price, reason } => {
                    tracing::warn!(%symbol, %qty, trigger = %trigger_price, reason = reason.as_str(),
                        "protection audit: placing stop");
                    if self.place_stop(&symbol, side, qty, trigger_price).await {
                        self.handles.metrics.protective_stops_repaired.inc();
                    }
                }
                ProtectionAction::CancelStop { symbol, id, reason } => {
                    let Ok(algo_id) = id.parse::<i64>() else { continue };
                    tracing::warn!(%symbol, algo_id, reason = reason.as_str(), "protection audit: cancelling stop");
                    match self.ex.cancel_stop(&symbol, algo_id).await {
                        Ok(()) => {
                            self.stops.remove(&algo_id);
                            self.handles.metrics.orphan_stops_cancelled.inc();
                        }
                        Err(e) => tracing::warn!(%symbol, algo_id, error = %e, "cancel failed; retrying next tick"),
                    }
                }
            }
        }
    }

    // -------------------------------------------------------------------------------- monitor

    async fn monitor_tick(&mut self) {
        self.ticks += 1;
        let now = self.ex.now_ms();
        self.handles.metrics.monitor_ticks.inc();
        // Exit ladder on every open position at the current mark price.
        let marks = self.marks();
        let symbols: Vec<String> = self.pm.positions().map(|m| m.position.symbol.clone()).collect();
        for s in &symbols {
            if let Some(p) = marks.get(s).copied() {
                self.on_position_price(s, p).await;
            }
        }
        // Stops the exchange did not fill in time: close at market ourselves.
        let overdue: Vec<(String, PendingExit)> = self
            .awaiting_stop
            .iter()
            .filter(|(_, p)| now - p.since > STOP_FILL_GRACE_MS)
            .map(|(s, p)| (s.clone(), p.clone()))
            .collect();
        for (symbol, pending) in overdue {
            self.awaiting_stop.remove(&symbol);
            let still = match self.ex.positions().await {
                Ok(ps) => ps.iter().find(|p| p.symbol == symbol).map(|p| p.qty).unwrap_or_default(),
                Err(_) => pending.qty,
            };
            let qty = still.min(pending.qty);
            if qty > Decimal::ZERO {
                tracing::warn!(%symbol, %qty, "exchange-side stop did not fill in time; closing at market");
                self.close_market(&symbol, qty, pending.reason, "stop_fallback").await;
            } else if self.pm.has_position(&symbol) {
                let price = match self.stop_execution(&symbol).await {
                    Some(p) => p,
                    None => marks.get(&symbol).copied().unwrap_or_default(),
                };
                if let Some(t) = self.pm.on_exit_filled(&symbol, pending.qty, price, Decimal::ZERO, pending.reason, now)
                {
                    self.finish_trade(&t, pending.reason.as_str());
                }
            }
        }
        // Emergency exit.
        let (upnl, _) = self.pm.exposure(&|s| marks.get(s).copied());
        let wallet = self.handles.hub.read().map(|h| h.account.wallet_balance).unwrap_or_default();
        let equity = wallet + upnl;
        let was_latched = self.pm.emergency().is_some();
        if self.pm.check_emergency(upnl, equity, now) {
            tracing::error!(unrealized = %upnl.round_dp(2), equity = %equity.round_dp(2),
                "EMERGENCY EXIT: portfolio unrealized loss reached the limit; closing everything");
            if !was_latched {
                let _ = self.journal.set_state(EMERGENCY_STATE_KEY, &json!({"since": now}), now);
            }
            self.emergency_close_all(&marks).await;
        } else if was_latched && self.pm.emergency().is_none() {
            let _ = self.journal.clear_state(EMERGENCY_STATE_KEY);
            tracing::info!("emergency latch cleared (next UTC day)");
        }
        // Periodic reconciliation with the exchange's truth.
        if self.ticks % RESYNC_EVERY_TICKS == 0 {
            self.resync().await;
        }
        self.protect().await;
        self.publish_status();
        self.journal_equity(false);
    }

    async fn emergency_close_all(&mut self, marks: &HashMap<String, Decimal>) {
        self.awaiting_stop.clear();
        // Close first, cancel after: a position whose close fails keeps its stop.
        let actions = self.pm.close_all_actions(ExitReason::Emergency, &|s| marks.get(s).copied());
        for (symbol, action) in actions {
            if let ExitAction::CloseAll { qty, .. } = action
                && self.close_market(&symbol, qty, ExitReason::Emergency, "emergency").await
                && !self.pm.has_position(&symbol)
            {
                if let Err(e) = self.ex.cancel_all(&symbol).await {
                    tracing::warn!(%symbol, error = %e, "emergency: cancel-all failed; the audit retries");
                } else {
                    self.stops.retain(|_, st| st.symbol != symbol);
                }
            }
        }
    }

    async fn resync(&mut self) {
        match self.ex.balance().await {
            Ok(b) => {
                if let Ok(mut hub) = self.handles.hub.write() {
                    hub.account.wallet_balance = b.wallet_balance;
                    hub.account.available_balance = b.available_balance;
                    hub.account.updated_at = self.ex.now_ms();
                }
            }
            Err(e) => tracing::warn!(error = %e, "balance refresh failed"),
        }
        if self.awaiting_stop.is_empty()
            && let Err(e) = self.reconcile_positions(false).await
        {
            tracing::warn!(error = %e, "position resync failed");
        }
        self.refresh_stops().await;
        if let Ok(l) = self.ex.locked_symbols().await {
            if l != self.locked {
                tracing::warn!(locked = ?l, "API trading status changed");
            }
            self.locked = l;
        }
    }

    // ------------------------------------------------------------------------------- journal

    fn journal_order_intent(&mut self, req: &MarketOrderRequest, intent: &str) {
        let now = self.ex.now_ms();
        let o = JournalOrder {
            client_order_id: req.client_order_id.clone(),
            exchange_order_id: None,
            symbol: req.symbol.clone(),
            side: req.side.as_str().to_string(),
            order_type: "MARKET".into(),
            intent: intent.to_string(),
            qty: req.qty,
            price: None,
            trigger_price: None,
            reduce_only: req.reduce_only,
            status: "PENDING".into(),
            filled_qty: Decimal::ZERO,
            avg_fill_price: None,
            created_at: now,
            updated_at: now,
        };
        if let Err(e) = self.journal.upsert_order(&o) {
            tracing::error!(error = %e, "journal: could not record order intent");
        }
    }

    fn journal_report(&mut self, r: &OrderReport, intent: &str) {
        let o = JournalOrder {
            client_order_id: r.client_order_id.clone(),
            exchange_order_id: Some(r.order_id),
            symbol: r.symbol.clone(),
            side: r.side.as_str().to_string(),
            order_type: "MARKET".into(),
            intent: intent.to_string(),
            qty: r.orig_qty,
            price: None,
            trigger_price: None,
            reduce_only: r.reduce_only,
            status: format!("{:?}", r.status).to_uppercase(),
            filled_qty: r.executed_qty,
            avg_fill_price: (r.executed_qty > Decimal::ZERO).then_some(r.avg_price),
            created_at: r.update_time,
            updated_at: r.update_time,
        };
        if let Err(e) = self.journal.upsert_order(&o) {
            tracing::error!(error = %e, "journal: could not record order");
        }
    }

    fn journal_stop(&mut self, s: &StopOrder, intent: &str) {
        let status = match s.status {
            StopStatus::New => "NEW",
            StopStatus::Triggered => "TRIGGERED",
            StopStatus::Finished => "FINISHED",
            StopStatus::Canceled => "CANCELED",
            StopStatus::Expired => "EXPIRED",
            StopStatus::Rejected => "REJECTED",
        };
        let o = JournalOrder {
            client_order_id: s.client_id.clone(),
            exchange_order_id: Some(s.algo_id),
            symbol: s.symbol.clone(),
            side: s.side.as_str().to_string(),
            order_type: "STOP_MARKET".into(),
            intent: intent.to_string(),
            qty: s.qty,
            price: None,
            trigger_price: Some(s.trigger_price),
            reduce_only: true,
            status: status.to_string(),
            filled_qty: Decimal::ZERO,
            avg_fill_price: None,
            created_at: s.update_time,
            updated_at: s.update_time,
        };
        if let Err(e) = self.journal.upsert_order(&o) {
            tracing::error!(error = %e, "journal: could not record stop");
        }
    }

    fn journal_position(&mut self, symbol: &str) {
        if let Some(mp) = self.pm.position(symbol)
            && let Err(e) = self.journal.update_position(&mp.position)
        {
            tracing::error!(error = %e, "journal: could not update position");
        }
    }

    fn journal_equity(&mut self, force: bool) {
        let now = self.ex.now_ms();
        if !force && now - self.last_equity_journal < 60_000 {
            return;
        }
        self.last_equity_journal = now;
        let marks = self.marks();
        let (upnl, _) = self.pm.exposure(&|s| marks.get(s).copied());
        let wallet = self.handles.hub.read().map(|h| h.account.wallet_balance).unwrap_or_default();
        let _ = self.journal.record_equity(&EquitySnapshot {
            time: now,
            wallet_balance: wallet,
            unrealized_pnl: upnl,
            equity: wallet + upnl,
        });
    }

    fn count_reject(&self, e: &ExchangeError) {
        let code = e.code().map(|c| c.to_string()).unwrap_or_else(|| "none".to_string());
        self.handles.metrics.orders_rejected.get_or_create(&Metrics::label("code", &code)).inc();
    }

    // -------------------------------------------------------------------------------- status

    fn publish_status(&mut self) {
        let now = self.ex.now_ms();
        let marks = self.marks();
        let (upnl, _) = self.pm.exposure(&|s| marks.get(s).copied());
        let (wallet, streams) = match self.handles.hub.read() {
            Ok(h) => (h.account.wallet_balance, h.stream_statuses()),
            Err(_) => (Decimal::ZERO, Vec::new()),
        };
        let equity = wallet + upnl;
        let positions: Vec<serde_json::Value> = self
            .pm
            .positions()
            .map(|m| {
                let p = &m.position;
                let mark = marks.get(&p.symbol).copied();
                json!({
                    "symbol": p.symbol, "direction": p.direction.as_str(),
                    "entry_price": plain_decimal(p.entry_price), "qty": plain_decimal(m.ladder.remaining_qty),
                    "original_qty": plain_decimal(p.original_qty), "leverage": p.leverage,
                    "stop": plain_decimal(m.ladder.stop), "stage": p.stage,
                    "tp1": plain_decimal(m.ladder.tp1_price), "tp2": plain_decimal(m.ladder.tp2_price),
                    "trail_start": plain_decimal(m.ladder.trail_start_price),
                    "best_price": plain_decimal(m.ladder.best_price),
                    "mark_price": mark.map(plain_decimal),
                    "unrealized_pnl": mark.map(|px| plain_decimal(((px - p.entry_price) * m.ladder.remaining_qty * p.direction.sign()).round_dp(8))),
                    "stop_on_exchange": self.stops.values().any(|s| s.symbol == p.symbol),
                    "entry_time": p.entry_time,
                })
            })
            .collect();
        let open_orders: Vec<serde_json::Value> = self
            .stops
            .values()
            .map(|s| {
                json!({"symbol": s.symbol, "type": "STOP_MARKET", "side": s.side.as_str(),
                "qty": plain_decimal(s.qty), "trigger_price": plain_decimal(s.trigger_price), "algo_id": s.algo_id})
            })
            .collect();
        let rb = &self.pm.risk;
        let risk = json!({
            "emergency_latched": self.pm.emergency().is_some(),
            "emergency_since": self.pm.emergency().map(|l| l.since),
            "daily_latched": rb.daily_latched,
            "day_realized_pnl": plain_decimal(rb.day_realized_pnl.round_dp(8)),
            "consecutive_losses": rb.consecutive_losses,
            "loss_pause_until": rb.loss_pause_until,
            "locked_symbols": self.locked,
        });
        let snapshot = StatusSnapshot {
            mode: if self.dry_run { "dry_run".into() } else { "live".into() },
            equity: plain_decimal(equity.round_dp(8)),
            wallet_balance: plain_decimal(wallet.round_dp(8)),
            unrealized_pnl: plain_decimal(upnl.round_dp(8)),
            positions,
            open_orders,
            last_scan: self.last_scan.clone(),
            recent_signals: self.recent_signals.iter().cloned().collect(),
            risk,
            streams,
            last_monitor_tick: if self.ticks > 0 { Some(now) } else { None },
            started_at: self.started_at,
        };
        if let Ok(mut s) = self.handles.status.write() {
            *s = snapshot;
        }
        let m = &self.handles.metrics;
        m.equity_usdt.set(dec_f64(equity));
        m.wallet_balance_usdt.set(dec_f64(wallet));
        m.unrealized_pnl_usdt.set(dec_f64(upnl));
        m.open_positions.set(i64::try_from(self.pm.open_count()).unwrap_or(i64::MAX));
        let pct = if equity > Decimal::ZERO { dec_f64(upnl / equity * Decimal::ONE_HUNDRED) } else { 0.0 };
        m.emergency_distance_pct.set(pct + self.settings.risk.emergency_loss_pct);
        m.emergency_latched.set(i64::from(self.pm.emergency().is_some()));
        let stats = self.ex.stats();
        m.rest_weight_used.set(i64::from(stats.rest_weight_used_1m));
        m.clock_offset_ms.set(stats.clock_offset_ms);
        m.algo_orders_open.set(i64::from(stats.algo_orders_open).max(i64::try_from(self.stops.len()).unwrap_or(0)));
        m.algo_orders_limit.set(200);
        // The client counts the frames it could not decode; export the increase.
        let dropped = m.dropped_messages.get_or_create(&Metrics::label("source", "exchange"));
        let seen = dropped.get();
        if stats.dropped_messages > seen {
            dropped.inc_by(stats.dropped_messages - seen);
        }
        if let Ok(h) = self.handles.hub.read() {
            for s in h.stream_statuses() {
                let age = s.last_message_at.map(|t| (now - t).max(0) as f64 / 1000.0).unwrap_or(f64::INFINITY);
                m.stream_staleness_secs.get_or_create(&Metrics::label("stream", &s.name)).set(age);
            }
        }
    }
}
