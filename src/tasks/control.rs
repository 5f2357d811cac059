//! Operator commands inside the position-manager task: [`ControlState`] carries each
//! [`ControlRequest`] out on the trading core, journals it (who, channel, when, what,
//! outcome), persists the pause, answers, and keeps retrying force exits of symbols that were
//! busy with a request in flight until they are flat.
//!
//! It is synchronous, like the core: it returns the core's actions for the task to execute.

use std::collections::{BTreeMap, VecDeque};

use serde_json::json;

use crate::control::{CommandReply, ControlAction, ControlRequest, ControlStatus, ExitTarget};
use crate::core::models::TimestampMs;
use crate::manager::commands::Action;
use crate::manager::exit_ladder::ExitReason;
use crate::manager::trading_core::TradingCore;
use crate::store::{CommandRecord, Journal};

/// Journal state key of the operator's pause (`{"paused", "since", "by"}`).
pub const PAUSE_STATE_KEY: &str = "operator_pause";
/// Commands kept for `/status`.
pub const RECENT_COMMANDS: usize = 20;
/// Close orders a force exit sends for one symbol before it gives up (each after the
/// previous one did not flatten the position).
pub const FORCE_EXIT_ATTEMPTS: u32 = 5;

/// A force exit still to be carried out on one symbol.
#[derive(Debug, Clone, PartialEq)]
struct PendingExit {
    command_id: i64,
    sends: u32,
}

/// The operator-control state the position manager keeps.
#[derive(Debug, Default)]
pub struct ControlState {
    paused_since: Option<TimestampMs>,
    paused_by: Option<String>,
    pending_exits: BTreeMap<String, PendingExit>,
    recent: VecDeque<CommandRecord>,
}

/// The journaled pause, if any: `(since, by)`.
///
/// # Errors
/// Journal errors.
pub fn journaled_pause(journal: &Journal) -> Result<Option<(TimestampMs, String)>, crate::store::StoreError> {
    let Some(v) = journal.state(PAUSE_STATE_KEY)? else { return Ok(None) };
    if v.get("paused").and_then(serde_json::Value::as_bool) != Some(true) {
        return Ok(None);
    }
    let since = v.get("since").and_then(serde_json::Value::as_i64).unwrap_or(0);
    let by = v.get("by").and_then(serde_json::Value::as_str).unwrap_or("unknown").to_string();
    Ok(Some((since, by)))
}

impl ControlState {
    /// The state after a restart: the journaled pause and the latest commands.
    pub fn load(journal: &Journal) -> ControlState {
        let mut state = ControlState::default();
        match journaled_pause(journal) {
            Ok(Some((since, by))) => {
                state.paused_since = Some(since);
                state.paused_by = Some(by);
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "could not read the journaled pause"),
        }
        match journal.recent_commands(RECENT_COMMANDS) {
            Ok(c) => state.recent = c.into(),
            Err(e) => tracing::warn!(error = %e, "could not read the journaled commands"),
        }
        state
    }

    /// Carries out one command and answers it; returns the core's actions.
    pub fn handle(
        &mut self,
        req: ControlRequest,
        core: &mut TradingCore,
        journal: &Journal,
        now: TimestampMs,
    ) -> Vec<Action> {
        let ControlRequest { action, origin, reply } = req;
        let by = format!("{}:{}", origin.channel, origin.who);
        let (actions, ok, message) = self.apply(&action, &by, core, journal, now);
        let mut record = CommandRecord {
            id: 0,
            time: now,
            channel: origin.channel.to_string(),
            who: origin.who.clone(),
            action: action.name().to_string(),
            args: action.args(),
            ok,
            outcome: message.clone(),
        };
        match journal.record_command(&record) {
            Ok(id) => record.id = id,
            Err(e) => tracing::error!(error = %e, action = action.name(), "could not journal the operator command"),
        }
        if let ControlAction::ForceExit(_) = action {
            for p in self.pending_exits.values_mut().filter(|p| p.command_id == 0) {
                p.command_id = record.id;
            }
        }
        tracing::warn!(channel = origin.channel, who = %origin.who, action = action.name(), args = %record.args, ok,
            outcome = %message, "operator command");
        let answer = CommandReply { id: record.id, action: record.action.clone(), ok, message, paused: core.paused() };
        self.recent.push_front(record);
        self.recent.truncate(RECENT_COMMANDS);
        // The channel may have given up waiting; the command stands either way.
        let _ = reply.send(answer);
        actions
    }

    fn apply(
        &mut self,
        action: &ControlAction,
        by: &str,
        core: &mut TradingCore,
        journal: &Journal,
        now: TimestampMs,
    ) -> (Vec<Action>, bool, String) {
        match action {
            ControlAction::Pause | ControlAction::Resume => {
                let pause = *action == ControlAction::Pause;
                if core.paused() == pause {
                    let state = if pause { "already paused" } else { "not paused" };
                    return (Vec::new(), true, format!("entries {state}; nothing changed"));
                }
                core.set_paused(pause);
                self.paused_since = pause.then_some(now);
                self.paused_by = pause.then(|| by.to_string());
                let value = json!({ "paused": pause, "since": now, "by": by });
                let persisted = match journal.set_state(PAUSE_STATE_KEY, &value, now) {
                    Ok(()) => String::new(),
                    Err(e) => {
                        tracing::error!(error = %e, "could not journal the pause state");
                        " (not journaled: it will not survive a restart)".to_string()
                    }
                };
                let what =
                    if pause { "new entries paused; open positions keep being managed" } else { "new entries resumed" };
                (Vec::new(), true, format!("{what}{persisted}"))
            }
            ControlAction::ForceExit(target) => self.force_exit(target, core, now),
            ControlAction::ClearEmergency => {
                let (actions, was) = core.clear_emergency();
                let message = if was { "emergency latch cleared" } else { "no emergency latch was set" };
                (actions, true, message.to_string())
            }
            ControlAction::Reconcile => {
                let (actions, sent) = core.request_resync(now);
                let message = if sent {
                    "account read requested: positions and stops are reconciled with the exchange"
                } else {
                    "an account read is already in progress; it reconciles on arrival"
                };
                (actions, true, message.to_string())
            }
        }
    }

    fn force_exit(
        &mut self,
        target: &ExitTarget,
        core: &mut TradingCore,
        now: TimestampMs,
    ) -> (Vec<Action>, bool, String) {
        let tracked = core.tracked_symbols();
        let targets: Vec<String> = match target {
            ExitTarget::All => tracked,
            ExitTarget::Symbol(s) if tracked.contains(s) => vec![s.clone()],
            ExitTarget::Symbol(s) => return (Vec::new(), false, format!("no open position on {s}")),
        };
        if targets.is_empty() {
            return (Vec::new(), true, "no open positions".to_string());
        }
        let only = match target {
            ExitTarget::All => None,
            ExitTarget::Symbol(s) => Some(s.as_str()),
        };
        let (actions, busy) = core.force_exit(only, ExitReason::ForceExit, now);
        let sent = sent_symbols(&actions);
        for s in &targets {
            let sends = u32::from(sent.contains(s));
            self.pending_exits.entry(s.clone()).or_insert(PendingExit { command_id: 0, sends });
        }
        let closing: Vec<&String> = targets.iter().filter(|s| sent.contains(*s)).collect();
        let mut message = format!("closing at market (reduce-only): {}", list(&closing));
        if !busy.is_empty() {
            message.push_str(&format!("; waiting for a request in flight, then closing: {}", busy.join(", ")));
        }
        (actions, true, message)
    }

    /// Force exits still to do: symbols that were busy get their close once idle; a close
    /// that did not flatten the position is sent again (up to [`FORCE_EXIT_ATTEMPTS`]);
    /// symbols no longer tracked are done. Call after each step.
    pub fn retry_exits(&mut self, core: &mut TradingCore, now: TimestampMs) -> Vec<Action> {
        if self.pending_exits.is_empty() {
            return Vec::new();
        }
        let tracked = core.tracked_symbols();
        self.pending_exits.retain(|s, _| tracked.contains(s));
        let mut out = Vec::new();
        let symbols: Vec<String> = self.pending_exits.keys().cloned().collect();
        for symbol in symbols {
            if core.in_flight(&symbol) {
                continue;
            }
            let (actions, _busy) = core.force_exit(Some(&symbol), ExitReason::ForceExit, now);
            if sent_symbols(&actions).contains(&symbol)
                && let Some(p) = self.pending_exits.get_mut(&symbol)
            {
                p.sends += 1;
                tracing::info!(%symbol, attempt = p.sends, command = p.command_id, "force exit: close sent");
                if p.sends >= FORCE_EXIT_ATTEMPTS {
                    tracing::error!(%symbol, command = p.command_id,
                        "force exit: last attempt sent; the position is left to its stop and the operator if it fails");
                    self.pending_exits.remove(&symbol);
                }
            }
            out.extend(actions);
        }
        out
    }

    /// The latest command.
    pub fn last(&self) -> Option<&CommandRecord> {
        self.recent.front()
    }

    /// The `/status` view.
    pub fn status(&self, paused: bool) -> ControlStatus {
        ControlStatus {
            paused,
            paused_since: if paused { self.paused_since } else { None },
            paused_by: if paused { self.paused_by.clone() } else { None },
            pending_force_exits: self.pending_exits.keys().cloned().collect(),
            recent_commands: self.recent.iter().cloned().collect(),
        }
    }
}

fn sent_symbols(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(cmd) => Some(cmd.symbol.clone()),
            _ => None,
        })
        .collect()
}

fn list(symbols: &[&String]) -> String {
    if symbols.is_empty() {
        "none yet".to_string()
    } else {
        symbols.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
    }
}
