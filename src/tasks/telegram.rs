//! The Telegram command task: long-polls `getUpdates`, lets the [`Dispatcher`] decide, and
//! carries the steps out — answers from the status snapshot and the journal, actions through
//! the control channel (the position manager journals them with channel `telegram`).
//!
//! No command runs twice: the offset past each update is journaled (state key
//! [`OFFSET_STATE_KEY`]) *before* the update is acted on, and the next poll confirms it to
//! Telegram. A crash between the two loses that one command rather than repeating it.
//! It runs beside trading and never blocks it: its only link to the position manager is the
//! bounded control channel.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::api::{Metrics, StatusSnapshot};
use crate::control::{ControlAction, ControlHandle, Origin};
use crate::core::clock::Clock;
use crate::core::liveness::Liveness;
use crate::core::models::TimestampMs;
use crate::store::Journal;
use crate::telegram::bot::BotApi;
use crate::telegram::dispatch::{Dispatcher, HELP, Query, Step};
use crate::telegram::{Update, replies};

/// Journal state key of the next `getUpdates` offset (`{"next_offset": n}`).
pub const OFFSET_STATE_KEY: &str = "telegram_offset";
/// Longest wait between two failed polls (1 s, 2 s, 4 s ... up to this).
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The channel name commands are journaled under.
pub const CHANNEL: &str = "telegram";

/// The next offset as journaled, if any.
///
/// # Errors
/// Journal errors.
pub fn journaled_offset(journal: &Journal) -> Result<Option<i64>, crate::store::StoreError> {
    Ok(journal.state(OFFSET_STATE_KEY)?.and_then(|v| v.get("next_offset").and_then(serde_json::Value::as_i64)))
}

/// The command task and what it reads.
pub struct TelegramCommands {
    pub bot: BotApi,
    pub dispatcher: Dispatcher,
    pub control: ControlHandle,
    pub status: Arc<RwLock<StatusSnapshot>>,
    pub liveness: Arc<Liveness>,
    /// Its own connection to the journal: the offset, and closed trades for `/profit`. (In a
    /// mutex only so the task's future is `Send`; nothing else shares it.)
    pub journal: Mutex<Journal>,
    pub metrics: Metrics,
    /// Wall-clock time (Telegram dates messages in it).
    pub clock: Arc<dyn Clock>,
    pub poll_timeout: Duration,
}

impl TelegramCommands {
    /// Polls and answers until `cancel` fires.
    pub async fn run(mut self, cancel: CancellationToken) {
        let read = self
            .journal
            .lock()
            .map_err(|_| "lock poisoned".to_string())
            .and_then(|j| journaled_offset(&j).map_err(|e| e.to_string()));
        let mut offset = match read {
            Ok(o) => o,
            Err(e) => {
                // Without the offset a restart could repeat commands: do not answer any.
                tracing::error!(error = %e, "telegram: cannot read the journaled offset; commands stay off");
                return;
            }
        };
        tracing::info!(offset, "telegram commands on (long polling)");
        let mut backoff = Duration::from_secs(1);
        loop {
            let polled = tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                r = self.bot.get_updates(offset, self.poll_timeout) => r,
            };
            let updates = match polled {
                Ok(u) => {
                    backoff = Duration::from_secs(1);
                    u
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_secs = backoff.as_secs(), "telegram: getUpdates failed");
                    tokio::select! {
                        biased;
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            for update in updates {
                if offset.is_some_and(|o| update.update_id < o) {
                    continue; // confirmed before; Telegram should not send it again
                }
                offset = Some(update.update_id + 1);
                let now = self.clock.now_ms();
                let value = json!({"next_offset": update.update_id + 1});
                let saved = match self.journal.lock() {
                    Ok(j) => j.set_state(OFFSET_STATE_KEY, &value, now).map_err(|e| e.to_string()),
                    Err(_) => Err("journal lock poisoned".to_string()),
                };
                if let Err(e) = saved {
                    tracing::error!(error = %e, update = update.update_id,
                        "telegram: cannot journal the offset; the command is not carried out");
                    continue;
                }
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => return,
                    () = self.handle(update, now) => {}
                }
            }
        }
    }

    async fn handle(&mut self, update: Update, now: TimestampMs) {
        for step in self.dispatcher.on_update(&update.incoming, now) {
            match step {
                Step::Refused { chat_id } => {
                    self.metrics.control_refused.get_or_create(&Metrics::label("channel", CHANNEL)).inc();
                    tracing::warn!(chat_id, "telegram: message from a chat that is not allowed ignored");
                }
                Step::Reply { chat_id, text, button } => self.send(chat_id, &text, button.as_deref()).await,
                Step::Answer { chat_id, query } => {
                    let text = self.answer(query, now);
                    self.send(chat_id, &text, None).await;
                }
                Step::Act { chat_id, who, action } => {
                    let text = self.act(action, who).await;
                    self.send(chat_id, &text, None).await;
                }
                Step::AckButton { callback_id } => {
                    if let Err(e) = self.bot.answer_callback(&callback_id).await {
                        tracing::warn!(error = %e, "telegram: answerCallbackQuery failed");
                    }
                }
            }
        }
    }

    async fn act(&self, action: ControlAction, who: String) -> String {
        let name = action.name();
        match self.control.submit(action, Origin { channel: CHANNEL, who }).await {
            Ok(reply) => {
                let labels = vec![
                    ("channel".to_string(), CHANNEL.to_string()),
                    ("action".to_string(), name.to_string()),
                    ("ok".to_string(), reply.ok.to_string()),
                ];
                self.metrics.control_commands.get_or_create(&labels).inc();
                format!("{} {name} (#{}): {}", if reply.ok { "Done:" } else { "Refused:" }, reply.id, reply.message)
            }
            Err(e) => format!("Not carried out: {name}: {e}"),
        }
    }

    fn answer(&self, query: Query, now: TimestampMs) -> String {
        let snapshot = || self.status.read().map(|s| s.clone()).unwrap_or_default();
        match query {
            Query::Status => replies::status(&snapshot()),
            Query::Positions => replies::positions(&snapshot()),
            Query::Balance => replies::balance(&snapshot()),
            Query::Health => replies::health(&crate::api::health(&snapshot(), &self.liveness)),
            Query::Help => HELP.to_string(),
            Query::Profit | Query::Daily => {
                let since = if query == Query::Profit {
                    TimestampMs::MIN
                } else {
                    (now.div_euclid(replies::DAY_MS) - replies::RECENT_DAYS) * replies::DAY_MS
                };
                let trades = match self.journal.lock() {
                    Ok(j) => j.closed_trades_since(since).map_err(|e| e.to_string()),
                    Err(_) => Err("journal lock poisoned".to_string()),
                };
                match trades {
                    Ok(trades) if query == Query::Profit => replies::profit(&trades, now),
                    Ok(trades) => replies::daily(&trades, now),
                    Err(e) => {
                        tracing::error!(error = %e, "telegram: cannot read closed trades from the journal");
                        "Cannot read the journal right now; see the daemon's log.".to_string()
                    }
                }
            }
        }
    }

    async fn send(&self, chat_id: i64, text: &str, button: Option<&str>) {
        if let Err(e) = self.bot.send_message(chat_id, text, button).await {
            tracing::warn!(chat_id, error = %e, "telegram: answer not delivered");
        }
    }
}
