//! What the position manager tells the notifier: [`NotifyWatch`] looks at the journal writes
//! the task executes (entries, take-profits, closes with their PnL) and at the state after
//! each step (emergency latch, daily-loss block, loss-streak pause, exchange reachability,
//! stream health, the daily summary hour) and queues an [`Event`] for each change. Alerts
//! about lasting trouble are rate-limited and followed by a recovery message.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Timelike};

use crate::config::NotifySettings;
use crate::core::data_hub::{StreamState, StreamStatus};
use crate::core::models::TimestampMs;
use crate::manager::commands::Record;
use crate::manager::trading_core::TradingCore;
use crate::notify::{Event, Notifier};
use crate::store::CommandRecord;

const DAY_MS: i64 = 86_400_000;

/// A trouble being watched: since when, when it was last reported.
#[derive(Debug, Clone, Copy, Default)]
struct Trouble {
    since: TimestampMs,
    alerted_at: Option<TimestampMs>,
}

/// Turns the manager's records and state into notifications. See the module documentation.
#[derive(Debug)]
pub struct NotifyWatch {
    notifier: Notifier,
    settings: NotifySettings,
    /// Partial exits already reported, per symbol.
    exits_seen: HashMap<String, usize>,
    /// The score of the last signal taken, per symbol (for the entry message).
    scores: HashMap<String, u8>,
    emergency: bool,
    daily_latched: bool,
    loss_pause_until: Option<TimestampMs>,
    exchange_down: Option<Trouble>,
    streams_down: BTreeMap<String, Trouble>,
    last_summary_day: Option<i64>,
}

impl NotifyWatch {
    /// A watch whose baseline is the core's state now (nothing restored is reported again).
    pub fn new(notifier: Notifier, settings: NotifySettings, core: &TradingCore, now: TimestampMs) -> NotifyWatch {
        let exits_seen =
            core.manager().positions().map(|m| (m.position.symbol.clone(), m.position.partial_exits.len())).collect();
        let hour = DateTime::from_timestamp_millis(now).map(|t| i64::from(t.hour())).unwrap_or(0);
        let summary_hour = i64::from(settings.daily_summary_hour_utc);
        NotifyWatch {
            notifier,
            exits_seen,
            scores: HashMap::new(),
            emergency: core.manager().emergency().is_some(),
            daily_latched: core.manager().risk.daily_latched,
            loss_pause_until: core.manager().risk.loss_pause_until,
            exchange_down: None,
            streams_down: BTreeMap::new(),
            // A start after today's summary hour waits for tomorrow's.
            last_summary_day: (hour >= summary_hour).then_some(now.div_euclid(DAY_MS)),
            settings,
        }
    }

    pub fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    /// A journal write the manager is about to execute.
    pub fn on_record(&mut self, r: &Record, now: TimestampMs) {
        if !self.notifier.is_enabled() {
            return;
        }
        match r {
            Record::Signal { signal, .. }
                if signal.breakdown.pointer("/outcome/enter") == Some(&serde_json::Value::Bool(true)) =>
            {
                self.scores.insert(signal.symbol.clone(), signal.confidence);
            }
            Record::PositionOpened { position: p, adopted } => {
                self.exits_seen.insert(p.symbol.clone(), p.partial_exits.len());
                if !adopted {
                    let event = Event::Entry {
                        symbol: p.symbol.clone(),
                        direction: p.direction,
                        qty: p.qty,
                        entry_price: p.entry_price,
                        leverage: p.leverage,
                        score: self.scores.remove(&p.symbol),
                        stop: p.stop_loss,
                    };
                    self.notifier.notify(event, now);
                }
            }
            Record::PositionUpdated(p) => self.new_exits(p, now),
            Record::PositionClosed { position: p, reason, gross_pnl, fees, .. } => {
                self.new_exits(p, now);
                self.exits_seen.remove(&p.symbol);
                let event =
                    Event::PositionClosed { symbol: p.symbol.clone(), reason: reason.clone(), pnl: *gross_pnl - *fees };
                self.notifier.notify(event, now);
            }
            _ => {}
        }
    }

    /// Take-profits among the partial exits not reported yet.
    fn new_exits(&mut self, p: &crate::core::models::Position, now: TimestampMs) {
        let seen = self.exits_seen.entry(p.symbol.clone()).or_insert(0);
        for exit in p.partial_exits.iter().skip(*seen) {
            if exit.reason.starts_with("take_profit") {
                let pnl = (exit.price - p.entry_price) * exit.qty * p.direction.sign();
                let event = Event::TakeProfit {
                    symbol: p.symbol.clone(),
                    level: exit.reason.clone(),
                    qty: exit.qty,
                    price: exit.price,
                    pnl: pnl.round_dp(8),
                };
                self.notifier.notify(event, now);
            }
        }
        *seen = (*seen).max(p.partial_exits.len());
    }

    /// The risk state after a step: emergency latch, daily-loss block, loss-streak pause.
    pub fn on_step(&mut self, core: &TradingCore, now: TimestampMs) {
        if !self.notifier.is_enabled() {
            return;
        }
        let risk = &core.manager().risk;
        let emergency = core.manager().emergency().is_some();
        if emergency && !self.emergency {
            let (upnl, _) = core.exposure();
            self.notifier.notify(Event::Emergency { unrealized_pnl: upnl, equity: core.equity() }, now);
        }
        self.emergency = emergency;
        if risk.daily_latched && !self.daily_latched {
            let event =
                Event::DailyLoss { today_pnl: risk.today_pnl(core.equity()), day_start_equity: risk.day_start_equity };
            self.notifier.notify(event, now);
        }
        self.daily_latched = risk.daily_latched;
        if let Some(until) = risk.loss_pause_until
            && self.loss_pause_until != Some(until)
            && until > now
        {
            self.notifier.notify(Event::LossStreak { consecutive_losses: risk.consecutive_losses, until }, now);
        }
        self.loss_pause_until = risk.loss_pause_until;
    }

    /// The monitor tick: exchange reachability, stream health, the daily summary.
    pub fn on_tick(&mut self, core: &TradingCore, reachable: bool, streams: &[StreamStatus], now: TimestampMs) {
        if !self.notifier.is_enabled() {
            return;
        }
        let interval = i64::try_from(self.settings.alert_interval_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let silent_after = i64::try_from(self.settings.stream_silent_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let notifier = &self.notifier;
        track(&mut self.exchange_down, !reachable, 0, interval, now, |down| {
            notifier.notify(Event::Exchange { reachable: !down }, now);
        });
        for s in streams {
            let mut trouble = self.streams_down.get(&s.name).copied();
            track(&mut trouble, s.state != StreamState::Live, silent_after, interval, now, |down| {
                notifier.notify(Event::Stream { name: s.name.clone(), live: !down }, now);
            });
            match trouble {
                Some(t) => self.streams_down.insert(s.name.clone(), t),
                None => self.streams_down.remove(&s.name),
            };
        }
        self.daily_summary(core, now);
    }

    fn daily_summary(&mut self, core: &TradingCore, now: TimestampMs) {
        let Ok(hour) = u32::try_from(self.settings.daily_summary_hour_utc) else { return };
        let day = now.div_euclid(DAY_MS);
        let at = DateTime::from_timestamp_millis(now).map(|t| t.hour());
        if at != Some(hour) || self.last_summary_day == Some(day) {
            return;
        }
        self.last_summary_day = Some(day);
        let risk = &core.manager().risk;
        let equity = core.equity();
        let event = Event::DailySummary {
            equity,
            today_pnl: risk.today_pnl(equity),
            realized_today: risk.day_realized_pnl,
            open_positions: core.manager().open_count(),
            paused: core.paused(),
            emergency_latched: core.manager().emergency().is_some(),
        };
        self.notifier.notify(event, now);
    }

    /// An operator command was carried out.
    pub fn on_command(&self, c: &CommandRecord) {
        let event = Event::Command {
            channel: c.channel.clone(),
            who: c.who.clone(),
            action: c.action.clone(),
            ok: c.ok,
            outcome: c.outcome.clone(),
        };
        self.notifier.notify(event, c.time);
    }
}

/// One trouble's life: reported once it lasted `after` ms, again every `interval` ms while
/// it lasts, and a recovery once it ends if it was reported. `report(true)` = down.
fn track(
    trouble: &mut Option<Trouble>,
    down: bool,
    after: i64,
    interval: i64,
    now: TimestampMs,
    report: impl FnOnce(bool),
) {
    match (trouble.as_mut(), down) {
        (None, true) => {
            let mut t = Trouble { since: now, alerted_at: None };
            if after == 0 {
                t.alerted_at = Some(now);
                report(true);
            }
            *trouble = Some(t);
        }
        (Some(t), true) => {
            let due = match t.alerted_at {
                None => now - t.since >= after,
                Some(at) => now - at >= interval,
            };
            if due {
                t.alerted_at = Some(now);
                report(true);
            }
        }
        (Some(t), false) => {
            if t.alerted_at.is_some() {
                report(false);
            }
            *trouble = None;
        }
        (None, false) => {}
    }
}
