//! Notifications: what an operator is told, and the channels that tell them (Telegram's Bot
//! API, a generic webhook). Trading code only calls [`Notifier::notify`], which never waits:
//! each channel has its own bounded queue and worker; when a queue is full the message is
//! dropped and counted (`kinetic_notifications_dropped_total{channel}`). A channel that
//! hangs or fails delays nothing but its own queue.
//!
//! - [`watch`]: derives events from the position manager's journal writes and state.
//! - [`deliver`]: the channel workers (timeouts, retries with backoff, signatures).

pub mod deliver;
pub mod watch;

use rust_decimal::Decimal;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::api::Metrics;
use crate::core::models::{Direction, TimestampMs, plain_decimal};

/// Something an operator should hear about.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    Start {
        mode: String,
    },
    Stop,
    Entry {
        symbol: String,
        direction: Direction,
        qty: Decimal,
        entry_price: Decimal,
        leverage: u32,
        score: Option<u8>,
        stop: Decimal,
    },
    TakeProfit {
        symbol: String,
        /// `take_profit_1`, `take_profit_2`.
        level: String,
        qty: Decimal,
        price: Decimal,
        pnl: Decimal,
    },
    PositionClosed {
        symbol: String,
        /// `stop_loss`, `trailing_stop`, `emergency`, `force_exit`, ...
        reason: String,
        /// Realized PnL of the whole trade, fees included.
        pnl: Decimal,
    },
    Emergency {
        unrealized_pnl: Decimal,
        equity: Decimal,
    },
    DailyLoss {
        today_pnl: Decimal,
        day_start_equity: Decimal,
    },
    LossStreak {
        consecutive_losses: u32,
        until: TimestampMs,
    },
    Exchange {
        reachable: bool,
    },
    Stream {
        name: String,
        live: bool,
    },
    DailySummary {
        equity: Decimal,
        today_pnl: Decimal,
        realized_today: Decimal,
        open_positions: usize,
        paused: bool,
        emergency_latched: bool,
    },
    Command {
        channel: String,
        who: String,
        action: String,
        ok: bool,
        outcome: String,
    },
}

fn money(d: Decimal) -> String {
    let r = d.round_dp(2);
    if r > Decimal::ZERO { format!("+{}", plain_decimal(r)) } else { plain_decimal(r) }
}

impl Event {
    /// The event kind channels select on (`notify.*.events`).
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Start { .. } => "start",
            Event::Stop => "stop",
            Event::Entry { .. } => "entry",
            Event::TakeProfit { .. } => "take_profit",
            Event::PositionClosed { .. } => "position_closed",
            Event::Emergency { .. } => "emergency",
            Event::DailyLoss { .. } => "daily_loss",
            Event::LossStreak { .. } => "loss_streak",
            Event::Exchange { .. } => "exchange",
            Event::Stream { .. } => "stream",
            Event::DailySummary { .. } => "daily_summary",
            Event::Command { .. } => "command",
        }
    }

    /// One human-readable message.
    pub fn text(&self) -> String {
        match self {
            Event::Start { mode } => format!("kinetic started ({mode})"),
            Event::Stop => "kinetic stopped: no new entries; open positions keep their exchange-side stops".into(),
            Event::Entry { symbol, direction, qty, entry_price, leverage, score, stop } => format!(
                "ENTRY {symbol} {} {} @ {} x{leverage} score {} stop {}",
                direction.as_str(),
                plain_decimal(*qty),
                plain_decimal(*entry_price),
                score.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                plain_decimal(*stop)
            ),
            Event::TakeProfit { symbol, level, qty, price, pnl } => format!(
                "{} {symbol}: closed {} @ {} PnL {} USDT",
                if level == "take_profit_1" {
                    "TP1"
                } else if level == "take_profit_2" {
                    "TP2"
                } else {
                    level
                },
                plain_decimal(*qty),
                plain_decimal(*price),
                money(*pnl)
            ),
            Event::PositionClosed { symbol, reason, pnl } => {
                let what = match reason.as_str() {
                    "stop_loss" => "STOP-OUT",
                    "trailing_stop" => "TRAILING STOP",
                    "emergency" => "EMERGENCY CLOSE",
                    "force_exit" => "FORCE EXIT",
                    _ => "CLOSED",
                };
                format!("{what} {symbol} ({reason}): trade PnL {} USDT", money(*pnl))
            }
            Event::Emergency { unrealized_pnl, equity } => format!(
                "EMERGENCY EXIT: unrealized PnL {} USDT on equity {} USDT; closing everything, entries latched until cleared",
                money(*unrealized_pnl),
                plain_decimal(equity.round_dp(2))
            ),
            Event::DailyLoss { today_pnl, day_start_equity } => format!(
                "DAILY LOSS LIMIT: today {} USDT from {} USDT; no new entries until the next UTC day",
                money(*today_pnl),
                plain_decimal(day_start_equity.round_dp(2))
            ),
            Event::LossStreak { consecutive_losses, until } => format!(
                "LOSS STREAK: {consecutive_losses} losing trades in a row; no new entries until {}",
                chrono::DateTime::from_timestamp_millis(*until)
                    .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                    .unwrap_or_else(|| until.to_string())
            ),
            Event::Exchange { reachable: false } => "EXCHANGE UNREACHABLE: the last account read failed".into(),
            Event::Exchange { reachable: true } => "exchange reachable again".into(),
            Event::Stream { name, live: false } => format!("STREAM SILENT: {name} (no new entries on stale data)"),
            Event::Stream { name, live: true } => format!("stream {name} live again"),
            Event::DailySummary { equity, today_pnl, realized_today, open_positions, paused, emergency_latched } => {
                format!(
                    "Daily summary: equity {} USDT, today {} USDT (realized {}), {open_positions} open position(s){}{}",
                    plain_decimal(equity.round_dp(2)),
                    money(*today_pnl),
                    money(*realized_today),
                    if *paused { ", entries PAUSED" } else { "" },
                    if *emergency_latched { ", EMERGENCY LATCHED" } else { "" }
                )
            }
            Event::Command { channel, who, action, ok, outcome } => {
                format!("command {action} from {channel}:{who} {}: {outcome}", if *ok { "done" } else { "refused" })
            }
        }
    }
}

/// A message as queued for a channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub time: TimestampMs,
    pub event: Event,
}

/// The queue of one channel.
#[derive(Debug, Clone)]
struct Outlet {
    name: &'static str,
    events: Vec<String>,
    tx: mpsc::Sender<Message>,
}

/// Where events go: one bounded queue per channel. Cheap to clone; with no channel
/// configured it does nothing.
#[derive(Clone, Default)]
pub struct Notifier {
    outlets: Vec<Outlet>,
    metrics: Metrics,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").field("channels", &self.outlets.iter().map(|o| o.name).collect::<Vec<_>>()).finish()
    }
}

impl Notifier {
    /// A notifier without channels.
    pub fn disabled() -> Notifier {
        Notifier::default()
    }

    pub(crate) fn new(metrics: Metrics) -> Notifier {
        Notifier { outlets: Vec::new(), metrics }
    }

    pub(crate) fn add(&mut self, name: &'static str, events: Vec<String>, tx: mpsc::Sender<Message>) {
        self.outlets.push(Outlet { name, events, tx });
    }

    pub fn is_enabled(&self) -> bool {
        !self.outlets.is_empty()
    }

    /// Queues `event` on every channel that selects it; never waits. A full queue drops the
    /// message (counted per channel).
    pub fn notify(&self, event: Event, now: TimestampMs) {
        let kind = event.kind();
        for o in &self.outlets {
            if !o.events.iter().any(|e| e == "all" || e == kind) {
                continue;
            }
            if o.tx.try_send(Message { time: now, event: event.clone() }).is_err() {
                self.metrics.notifications_dropped.get_or_create(&Metrics::label("channel", o.name)).inc();
                tracing::warn!(channel = o.name, kind, "notification queue full; message dropped");
            }
        }
    }
}
