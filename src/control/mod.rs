//! Operator control: the commands an operator can give a running daemon (pause and resume
//! entries, force-exit one symbol or all, clear the emergency latch, reconcile now), the
//! bounded channel that carries them into the position-manager task, and the reply each one
//! gets. The channels that accept commands (the control API, Telegram) only translate; the
//! position manager — the one owner of the book — carries them out, journals them and answers.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::core::models::TimestampMs;
use crate::store::CommandRecord;

/// Commands queue here between their channels and the position manager.
pub const CONTROL_CHANNEL: usize = 32;
/// How long a channel waits for the position manager's answer.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// What a force exit closes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitTarget {
    All,
    Symbol(String),
}

impl ExitTarget {
    /// `all` (any case) or a symbol name (upper-cased); `None` for an empty or odd name.
    pub fn parse(text: &str) -> Option<ExitTarget> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("all") {
            return Some(ExitTarget::All);
        }
        let valid = !t.is_empty() && t.len() <= 32 && t.chars().all(|c| c.is_ascii_alphanumeric());
        valid.then(|| ExitTarget::Symbol(t.to_ascii_uppercase()))
    }

    pub fn as_str(&self) -> &str {
        match self {
            ExitTarget::All => "all",
            ExitTarget::Symbol(s) => s,
        }
    }
}

/// An operator command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlAction {
    /// No new entries; open positions keep being managed (ladders, trailing, protection).
    Pause,
    Resume,
    /// Reduce-only market close of whole positions; each keeps its stop until flat.
    ForceExit(ExitTarget),
    ClearEmergency,
    /// A full account read now (positions and stops from the exchange are the truth).
    Reconcile,
}

impl ControlAction {
    /// The command's name in the journal and the API paths.
    pub fn name(&self) -> &'static str {
        match self {
            ControlAction::Pause => "pause",
            ControlAction::Resume => "resume",
            ControlAction::ForceExit(_) => "forceexit",
            ControlAction::ClearEmergency => "clear_emergency",
            ControlAction::Reconcile => "reconcile",
        }
    }

    /// The command's arguments as journaled.
    pub fn args(&self) -> serde_json::Value {
        match self {
            ControlAction::ForceExit(t) => serde_json::json!({ "symbol": t.as_str() }),
            _ => serde_json::json!({}),
        }
    }
}

/// Where a command came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `api`, `telegram`.
    pub channel: &'static str,
    /// Who on that channel: the peer address, the chat id.
    pub who: String,
}

/// The position manager's answer to a command (also what the API returns).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandReply {
    /// The command's journal id (0 when the journal could not record it).
    pub id: i64,
    pub action: String,
    pub ok: bool,
    pub message: String,
    pub paused: bool,
}

/// A command with its way back.
#[derive(Debug)]
pub struct ControlRequest {
    pub action: ControlAction,
    pub origin: Origin,
    pub reply: oneshot::Sender<CommandReply>,
}

/// Why a command got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("the position manager is not running")]
    NotRunning,
    #[error("the command queue is full; try again")]
    Busy,
    #[error("no answer from the position manager within {} s", REPLY_TIMEOUT.as_secs())]
    Timeout,
}

/// The sending side, cloned into every channel that accepts commands.
#[derive(Debug, Clone)]
pub struct ControlHandle {
    tx: mpsc::Sender<ControlRequest>,
}

impl ControlHandle {
    /// A handle and the receiving end the position manager listens on.
    pub fn channel() -> (ControlHandle, mpsc::Receiver<ControlRequest>) {
        let (tx, rx) = mpsc::channel(CONTROL_CHANNEL);
        (ControlHandle { tx }, rx)
    }

    /// Sends `action` and waits for the position manager's answer.
    ///
    /// # Errors
    /// [`ControlError`]: the manager is not running, its queue is full, or it did not answer
    /// within [`REPLY_TIMEOUT`].
    pub async fn submit(&self, action: ControlAction, origin: Origin) -> Result<CommandReply, ControlError> {
        let (reply, answer) = oneshot::channel();
        self.tx.try_send(ControlRequest { action, origin, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ControlError::Busy,
            mpsc::error::TrySendError::Closed(_) => ControlError::NotRunning,
        })?;
        match tokio::time::timeout(REPLY_TIMEOUT, answer).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => Err(ControlError::NotRunning),
            Err(_) => Err(ControlError::Timeout),
        }
    }
}

/// The operator-control part of `/status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ControlStatus {
    /// New entries paused by an operator.
    pub paused: bool,
    pub paused_since: Option<TimestampMs>,
    /// `channel:who` of the pause.
    pub paused_by: Option<String>,
    /// Symbols a force exit still has to close (waiting for a request in flight, or retrying).
    pub pending_force_exits: Vec<String>,
    /// The latest commands, newest first.
    pub recent_commands: Vec<CommandRecord>,
}
