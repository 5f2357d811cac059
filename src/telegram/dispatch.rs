//! What to do with one Telegram update, decided without I/O: is the chat allowed, which
//! command is it, is it fresh, and — for a force exit — has it been confirmed. The task
//! carries the [`Step`]s out (answers, control commands) and tests drive this directly.

use std::collections::{BTreeSet, HashMap};

use crate::control::{ControlAction, ExitTarget};
use crate::core::models::TimestampMs;
use crate::telegram::{BotCommand, Incoming, parse_command};

/// How long a force exit waits for its confirmation.
pub const CONFIRM_WINDOW_MS: TimestampMs = 60_000;
/// Commands sent longer ago than this are not carried out (they queued while the daemon was
/// down: the operator may have acted otherwise since).
pub const STALE_COMMAND_MS: TimestampMs = 300_000;

/// A read-only command, answered from the status snapshot and the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    Status,
    Positions,
    Profit,
    Balance,
    Daily,
    Health,
    Help,
}

/// One thing the task does for an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A chat that is not allowed: nothing is done or answered; the task counts it.
    Refused { chat_id: i64 },
    /// Send `text` to the chat, with a confirmation button carrying `button` when set.
    Reply { chat_id: i64, text: String, button: Option<String> },
    /// Answer a read-only command.
    Answer { chat_id: i64, query: Query },
    /// Submit an operator command to the position manager and send its outcome.
    Act { chat_id: i64, who: String, action: ControlAction },
    /// Acknowledge a button press (stops the client's spinner).
    AckButton { callback_id: String },
}

/// The allow-list and the force exits awaiting confirmation, per chat.
#[derive(Debug, Clone, Default)]
pub struct Dispatcher {
    allowed: BTreeSet<i64>,
    pending: HashMap<i64, (ExitTarget, TimestampMs)>,
}

/// The `/help` text.
pub const HELP: &str = "Kinetic commands:
/status - mode, equity, entries paused or blocked, latches
/positions - open positions with stops and unrealized PnL
/profit - realized PnL today, last 7 days and all time
/balance - wallet, unrealized PnL, equity, today's PnL
/daily - realized PnL of each of the last 7 UTC days
/health - the daemon's health verdict
/pause - no new entries; open positions keep being managed
/resume - allow new entries again
/forceexit SYMBOL|all - close at market (reduce-only), asks for confirmation
/clear_emergency - clear the emergency-exit latch
/reconcile - read positions and stops from the exchange now
/help - this list";

impl Dispatcher {
    pub fn new(allowed: impl IntoIterator<Item = i64>) -> Dispatcher {
        Dispatcher { allowed: allowed.into_iter().collect(), pending: HashMap::new() }
    }

    pub fn is_allowed(&self, chat_id: i64) -> bool {
        self.allowed.contains(&chat_id)
    }

    /// The steps for one update received at `now`.
    pub fn on_update(&mut self, incoming: &Incoming, now: TimestampMs) -> Vec<Step> {
        self.pending.retain(|_, (_, at)| now - *at <= CONFIRM_WINDOW_MS);
        match incoming {
            Incoming::Other => Vec::new(),
            Incoming::Message { chat_id, .. } | Incoming::Button { chat_id, .. } if !self.is_allowed(*chat_id) => {
                vec![Step::Refused { chat_id: *chat_id }]
            }
            Incoming::Message { chat_id, user_id, sent_at, text } => {
                let Some(command) = parse_command(text) else { return Vec::new() };
                if now - *sent_at > STALE_COMMAND_MS {
                    let age = (now - *sent_at) / 1000;
                    let text = format!(
                        "Ignored {}: sent {age} s ago, more than {} s before it arrived. Send it again if it still stands.",
                        first_word(text),
                        STALE_COMMAND_MS / 1000
                    );
                    return vec![Step::Reply { chat_id: *chat_id, text, button: None }];
                }
                let who = who(*chat_id, *user_id);
                self.on_command(command, *chat_id, who, now)
            }
            Incoming::Button { callback_id, chat_id, user_id, data } => {
                let mut steps = vec![Step::AckButton { callback_id: callback_id.clone() }];
                if let Some(command) = parse_command(data) {
                    steps.extend(self.on_command(command, *chat_id, who(*chat_id, Some(*user_id)), now));
                }
                steps
            }
        }
    }

    fn on_command(&mut self, command: BotCommand, chat_id: i64, who: String, now: TimestampMs) -> Vec<Step> {
        let answer = |query| vec![Step::Answer { chat_id, query }];
        let act = |action| vec![Step::Act { chat_id, who: who.clone(), action }];
        let reply = |text: String| vec![Step::Reply { chat_id, text, button: None }];
        match command {
            BotCommand::Status => answer(Query::Status),
            BotCommand::Positions => answer(Query::Positions),
            BotCommand::Profit => answer(Query::Profit),
            BotCommand::Balance => answer(Query::Balance),
            BotCommand::Daily => answer(Query::Daily),
            BotCommand::Health => answer(Query::Health),
            BotCommand::Help => answer(Query::Help),
            BotCommand::Pause => act(ControlAction::Pause),
            BotCommand::Resume => act(ControlAction::Resume),
            BotCommand::ClearEmergency => act(ControlAction::ClearEmergency),
            BotCommand::Reconcile => act(ControlAction::Reconcile),
            BotCommand::ForceExit { target, confirm: false } => {
                let name = target.as_str().to_string();
                self.pending.insert(chat_id, (target, now));
                let what = if name == "all" { "every open position".to_string() } else { name.clone() };
                vec![Step::Reply {
                    chat_id,
                    text: format!(
                        "Force exit {what}: a reduce-only market close; the stop stays until the position is flat.\n\
                         Confirm within {} s: send /forceexit {name} confirm or press the button.",
                        CONFIRM_WINDOW_MS / 1000
                    ),
                    button: Some(format!("/forceexit {name} confirm")),
                }]
            }
            BotCommand::ForceExit { target, confirm: true } => match self.pending.get(&chat_id) {
                Some((waiting, _)) if *waiting == target => {
                    self.pending.remove(&chat_id);
                    act(ControlAction::ForceExit(target))
                }
                _ => reply(format!(
                    "No force exit of {0} is waiting for confirmation in this chat (a request expires after {1} s). \
                     Send /forceexit {0} first.",
                    target.as_str(),
                    CONFIRM_WINDOW_MS / 1000
                )),
            },
            BotCommand::ForceExitUsage => reply("Usage: /forceexit SYMBOL or /forceexit all".into()),
            BotCommand::Unknown(name) => reply(format!("Unknown command /{name}. /help lists the commands.")),
        }
    }
}

/// `chat/user` as journaled in `who`.
fn who(chat_id: i64, user_id: Option<i64>) -> String {
    match user_id {
        Some(u) => format!("chat {chat_id} user {u}"),
        None => format!("chat {chat_id}"),
    }
}

fn first_word(text: &str) -> String {
    text.split_whitespace().next().unwrap_or("").chars().take(40).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    const NOW: TimestampMs = 1_700_000_000_000;

    fn msg(chat_id: i64, text: &str, sent_at: TimestampMs) -> Incoming {
        Incoming::Message { chat_id, user_id: Some(7), sent_at, text: text.into() }
    }

    #[test]
    fn only_allowed_chats_are_answered() {
        let mut d = Dispatcher::new([10]);
        assert_eq!(d.on_update(&msg(11, "/pause", NOW), NOW), vec![Step::Refused { chat_id: 11 }]);
        let button = Incoming::Button { callback_id: "x".into(), chat_id: 11, user_id: 7, data: "/pause".into() };
        assert_eq!(d.on_update(&button, NOW), vec![Step::Refused { chat_id: 11 }]);
        assert_eq!(
            d.on_update(&msg(10, "/pause", NOW), NOW),
            vec![Step::Act { chat_id: 10, who: "chat 10 user 7".into(), action: ControlAction::Pause }]
        );
        assert!(d.on_update(&msg(10, "hello", NOW), NOW).is_empty());
        assert_eq!(
            d.on_update(&msg(10, "/profit", NOW), NOW),
            vec![Step::Answer { chat_id: 10, query: Query::Profit }]
        );
    }

    #[test]
    fn stale_commands_are_not_carried_out() {
        let mut d = Dispatcher::new([10]);
        let steps = d.on_update(&msg(10, "/pause", NOW - STALE_COMMAND_MS - 1000), NOW);
        assert!(matches!(&steps[..], [Step::Reply { text, .. }] if text.starts_with("Ignored /pause")), "{steps:?}");
    }

    #[test]
    fn a_force_exit_needs_its_confirmation_in_the_same_chat_within_the_window() {
        let mut d = Dispatcher::new([10, 20]);
        let sol = ControlAction::ForceExit(ExitTarget::Symbol("SOLUSDT".into()));
        // Confirming without a request does nothing.
        let steps = d.on_update(&msg(10, "/forceexit SOLUSDT confirm", NOW), NOW);
        assert!(matches!(&steps[..], [Step::Reply { button: None, .. }]), "{steps:?}");
        // The request asks, with a button.
        let steps = d.on_update(&msg(10, "/forceexit solusdt", NOW), NOW);
        assert!(
            matches!(&steps[..], [Step::Reply { button: Some(b), .. }] if b == "/forceexit SOLUSDT confirm"),
            "{steps:?}"
        );
        // Another chat, or another symbol, does not confirm it.
        assert!(!matches!(d.on_update(&msg(20, "/forceexit SOLUSDT confirm", NOW), NOW)[..], [Step::Act { .. }]));
        assert!(!matches!(d.on_update(&msg(10, "/forceexit all confirm", NOW), NOW)[..], [Step::Act { .. }]));
        // The typed confirmation carries it out once.
        let steps = d.on_update(&msg(10, "/forceexit SOLUSDT confirm", NOW + 1000), NOW + 1000);
        assert_eq!(steps, vec![Step::Act { chat_id: 10, who: "chat 10 user 7".into(), action: sol.clone() }]);
        assert!(!matches!(d.on_update(&msg(10, "/forceexit SOLUSDT confirm", NOW), NOW)[..], [Step::Act { .. }]));
        // The button works the same; a late one does not.
        d.on_update(&msg(10, "/forceexit all", NOW), NOW);
        let press = || Incoming::Button {
            callback_id: "cb".into(),
            chat_id: 10,
            user_id: 8,
            data: "/forceexit all confirm".into(),
        };
        let late = d.clone().on_update(&press(), NOW + CONFIRM_WINDOW_MS + 1);
        assert!(!late.iter().any(|s| matches!(s, Step::Act { .. })), "{late:?}");
        let steps = d.on_update(&press(), NOW + 30_000);
        assert_eq!(
            steps,
            vec![
                Step::AckButton { callback_id: "cb".into() },
                Step::Act {
                    chat_id: 10,
                    who: "chat 10 user 8".into(),
                    action: ControlAction::ForceExit(ExitTarget::All)
                }
            ]
        );
    }
}
