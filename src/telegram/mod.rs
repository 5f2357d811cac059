//! Telegram commands: the operator's bot. Long polling with `getUpdates` brings messages;
//! only chats listed in `notify.telegram.command_chat_ids` are answered (everything else is
//! ignored and counted). Reads (`/status`, `/positions`, `/profit`, ...) are answered from the
//! status snapshot and the journal; actions (`/pause`, `/forceexit`, ...) go through the
//! control channel to the position manager, which carries them out and journals them with
//! channel `telegram`.
//!
//! - this module: the wire types of the Bot API updates and the command grammar (pure);
//! - [`dispatch`]: what to do with one update — allow-list, confirmation of force exits (pure);
//! - [`replies`]: the texts of the read commands (pure);
//! - [`bot`]: the HTTP calls (`getUpdates`, `sendMessage`, `answerCallbackQuery`). URLs hold
//!   the bot token: no URL and no reqwest error with its URL is ever logged or returned.
//!
//! The task that polls and executes is [`crate::tasks::telegram`].

pub mod bot;
pub mod dispatch;
pub mod replies;

use serde::Deserialize;

use crate::control::ExitTarget;
use crate::core::models::TimestampMs;

/// One update as the Bot API sends it (only the parts we read).
#[derive(Debug, Clone, Deserialize)]
struct WireUpdate {
    update_id: i64,
    message: Option<WireMessage>,
    callback_query: Option<WireCallback>,
}

#[derive(Debug, Clone, Deserialize)]
struct WireMessage {
    chat: WireChat,
    from: Option<WireUser>,
    /// Unix seconds.
    date: i64,
    text: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct WireChat {
    id: i64,
}

#[derive(Debug, Clone, Deserialize)]
struct WireUser {
    id: i64,
}

#[derive(Debug, Clone, Deserialize)]
struct WireCallback {
    id: String,
    from: WireUser,
    message: Option<WireMessage>,
    data: Option<String>,
}

/// What an update carries, as far as commands go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A text message.
    Message { chat_id: i64, user_id: Option<i64>, sent_at: TimestampMs, text: String },
    /// A press on an inline button we attached to one of our messages.
    Button { callback_id: String, chat_id: i64, user_id: i64, data: String },
    /// Anything else (edits, stickers, joins...): only its offset matters.
    Other,
}

/// An update: its id (the next poll asks for `update_id + 1`) and what it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub update_id: i64,
    pub incoming: Incoming,
}

impl From<WireUpdate> for Update {
    fn from(w: WireUpdate) -> Update {
        let incoming = if let Some(m) = w.message {
            match m.text {
                Some(text) => Incoming::Message {
                    chat_id: m.chat.id,
                    user_id: m.from.map(|u| u.id),
                    sent_at: m.date.saturating_mul(1000),
                    text,
                },
                None => Incoming::Other,
            }
        } else if let Some(c) = w.callback_query {
            match (c.message, c.data) {
                (Some(m), Some(data)) => {
                    Incoming::Button { callback_id: c.id, chat_id: m.chat.id, user_id: c.from.id, data }
                }
                _ => Incoming::Other,
            }
        } else {
            Incoming::Other
        };
        Update { update_id: w.update_id, incoming }
    }
}

/// Why a Bot API answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the Bot API answered with malformed JSON: {0}")]
    Json(String),
    /// `{"ok": false, ...}`: Telegram's code and description (they never hold the token).
    #[error("the Bot API refused: {code} {description}")]
    Refused { code: i64, description: String },
}

#[derive(Debug, Deserialize)]
struct Envelope {
    ok: bool,
    #[serde(default)]
    result: serde_json::Value,
    error_code: Option<i64>,
    description: Option<String>,
}

/// The `result` of a Bot API answer, or its refusal.
///
/// # Errors
/// [`DecodeError`]: malformed JSON, or `ok: false`.
pub fn decode_envelope(body: &[u8]) -> Result<serde_json::Value, DecodeError> {
    let e: Envelope = serde_json::from_slice(body).map_err(|e| DecodeError::Json(e.to_string()))?;
    if e.ok {
        Ok(e.result)
    } else {
        Err(DecodeError::Refused {
            code: e.error_code.unwrap_or(0),
            description: e.description.unwrap_or_default().chars().take(200).collect(),
        })
    }
}

/// The updates in a `getUpdates` answer. An update we cannot read is kept as
/// [`Incoming::Other`] when its id is readable, so the offset still moves past it.
///
/// # Errors
/// [`DecodeError`]: malformed JSON, `ok: false`, or a result that is not a list.
pub fn decode_updates(body: &[u8]) -> Result<Vec<Update>, DecodeError> {
    let result = decode_envelope(body)?;
    let serde_json::Value::Array(items) = result else {
        return Err(DecodeError::Json("getUpdates result is not a list".into()));
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let id = item.get("update_id").and_then(serde_json::Value::as_i64);
        match (serde_json::from_value::<WireUpdate>(item), id) {
            (Ok(w), _) => out.push(w.into()),
            (Err(_), Some(update_id)) => out.push(Update { update_id, incoming: Incoming::Other }),
            (Err(e), None) => return Err(DecodeError::Json(format!("an update without update_id: {e}"))),
        }
    }
    Ok(out)
}

/// A bot command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BotCommand {
    Status,
    Positions,
    Profit,
    Balance,
    Daily,
    Health,
    Help,
    Pause,
    Resume,
    /// `/forceexit SYMBOL|all [confirm]`.
    ForceExit {
        target: ExitTarget,
        confirm: bool,
    },
    /// `/forceexit` without a usable target.
    ForceExitUsage,
    ClearEmergency,
    Reconcile,
    Unknown(String),
}

/// The command in a message's text; `None` when it is not a command (no leading `/`).
/// `/cmd@BotName` (group chats) is the same as `/cmd`; names are case-insensitive.
pub fn parse_command(text: &str) -> Option<BotCommand> {
    let mut words = text.split_whitespace();
    let head = words.next()?.strip_prefix('/')?;
    let name = head.split('@').next().unwrap_or(head).to_ascii_lowercase();
    let args: Vec<&str> = words.collect();
    Some(match name.as_str() {
        "status" | "start" => BotCommand::Status,
        "positions" => BotCommand::Positions,
        "profit" => BotCommand::Profit,
        "balance" => BotCommand::Balance,
        "daily" => BotCommand::Daily,
        "health" => BotCommand::Health,
        "help" => BotCommand::Help,
        "pause" | "stopentry" => BotCommand::Pause,
        "resume" => BotCommand::Resume,
        "clear_emergency" => BotCommand::ClearEmergency,
        "reconcile" => BotCommand::Reconcile,
        "forceexit" => match args.as_slice() {
            [t] => ExitTarget::parse(t)
                .map_or(BotCommand::ForceExitUsage, |target| BotCommand::ForceExit { target, confirm: false }),
            [t, c] if c.eq_ignore_ascii_case("confirm") => ExitTarget::parse(t)
                .map_or(BotCommand::ForceExitUsage, |target| BotCommand::ForceExit { target, confirm: true }),
            _ => BotCommand::ForceExitUsage,
        },
        other => BotCommand::Unknown(other.chars().take(32).collect()),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_with_bot_names_case_and_arguments() {
        let cases: &[(&str, Option<BotCommand>)] = &[
            ("/pause", Some(BotCommand::Pause)),
            ("/Pause@kinetic_bot", Some(BotCommand::Pause)),
            ("/status  ", Some(BotCommand::Status)),
            (
                "/forceexit btcusdt",
                Some(BotCommand::ForceExit { target: ExitTarget::Symbol("BTCUSDT".into()), confirm: false }),
            ),
            ("/forceexit ALL confirm", Some(BotCommand::ForceExit { target: ExitTarget::All, confirm: true })),
            ("/forceexit", Some(BotCommand::ForceExitUsage)),
            ("/forceexit BTC-USDT", Some(BotCommand::ForceExitUsage)),
            ("/forceexit BTCUSDT now", Some(BotCommand::ForceExitUsage)),
            ("/clear_emergency", Some(BotCommand::ClearEmergency)),
            ("/moon", Some(BotCommand::Unknown("moon".into()))),
            ("pause", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(&parse_command(text), want, "{text:?}");
        }
    }

    #[test]
    fn updates_decode_messages_buttons_and_skip_what_they_cannot_read() {
        let body = br#"{"ok":true,"result":[
            {"update_id":7,"message":{"message_id":1,"from":{"id":42,"is_bot":false},"chat":{"id":-100,"type":"group"},"date":1700000000,"text":"/pause"}},
            {"update_id":8,"callback_query":{"id":"cb1","from":{"id":42},"message":{"message_id":2,"chat":{"id":-100},"date":1700000001},"data":"/forceexit all confirm"}},
            {"update_id":9,"message":{"message_id":3,"chat":{"id":5},"date":1700000002,"sticker":{}}},
            {"update_id":10,"message":"not an object"}
        ]}"#;
        let u = decode_updates(body).unwrap();
        assert_eq!(u.len(), 4);
        assert_eq!(
            u[0].incoming,
            Incoming::Message { chat_id: -100, user_id: Some(42), sent_at: 1_700_000_000_000, text: "/pause".into() }
        );
        assert_eq!(
            u[1].incoming,
            Incoming::Button {
                callback_id: "cb1".into(),
                chat_id: -100,
                user_id: 42,
                data: "/forceexit all confirm".into()
            }
        );
        assert_eq!((u[2].update_id, &u[2].incoming), (9, &Incoming::Other));
        assert_eq!((u[3].update_id, &u[3].incoming), (10, &Incoming::Other));
        let refused = decode_updates(
            br#"{"ok":false,"error_code":409,"description":"Conflict: terminated by other getUpdates request"}"#,
        );
        assert!(matches!(refused, Err(DecodeError::Refused { code: 409, .. })));
        assert!(matches!(decode_updates(b"<html>"), Err(DecodeError::Json(_))));
    }
}
