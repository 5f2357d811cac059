//! Operator commands in the journal: every pause, resume, force exit, latch clear and
//! reconciliation request, with who sent it, over which channel, when, and what came of it.
//! Append-only; read back for `/status`. Also what the operator channels read on their own
//! connection: closed trades for `/profit` and `/daily`.

use rusqlite::params;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::core::models::TimestampMs;
use crate::store::StoreError;
use crate::store::journal::{Journal, dec};

/// A closed trade as `/profit` and `/daily` count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClosedTrade {
    pub closed_at: TimestampMs,
    /// Realized PnL of the whole trade, fees deducted.
    pub net_pnl: Decimal,
}

/// One operator command and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandRecord {
    /// Journal id (0 before it is recorded).
    pub id: i64,
    pub time: TimestampMs,
    /// `api`, `telegram`, ...
    pub channel: String,
    /// Who sent it on that channel (peer address, chat id).
    pub who: String,
    /// `pause`, `resume`, `forceexit`, `clear_emergency`, `reconcile`.
    pub action: String,
    /// The command's arguments (e.g. `{"symbol": "all"}`).
    pub args: serde_json::Value,
    pub ok: bool,
    pub outcome: String,
}

impl Journal {
    /// Appends an operator command; returns its id.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn record_command(&self, c: &CommandRecord) -> Result<i64, StoreError> {
        self.conn.execute(
            "INSERT INTO commands (time, channel, who, action, args, ok, outcome) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![c.time, c.channel, c.who, c.action, c.args.to_string(), c.ok, c.outcome],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The latest `limit` commands, newest first.
    ///
    /// # Errors
    /// SQLite errors, unreadable arguments.
    pub fn recent_commands(&self, limit: usize) -> Result<Vec<CommandRecord>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, time, channel, who, action, args, ok, outcome FROM commands ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, bool>(6)?,
                r.get::<_, String>(7)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, time, channel, who, action, args, ok, outcome) = row?;
            let args = serde_json::from_str(&args)
                .map_err(|e| StoreError::Corrupt { what: "commands.args", detail: e.to_string() })?;
            out.push(CommandRecord { id, time, channel, who, action, args, ok, outcome });
        }
        Ok(out)
    }

    /// Trades closed at or after `since`, oldest first.
    ///
    /// # Errors
    /// SQLite errors, unreadable amounts.
    pub fn closed_trades_since(&self, since: TimestampMs) -> Result<Vec<ClosedTrade>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT closed_at, realized_pnl, fees FROM positions
             WHERE closed_at IS NOT NULL AND closed_at >= ?1 ORDER BY closed_at, id",
        )?;
        let rows =
            stmt.query_map([since], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (closed_at, pnl, fees) = row?;
            let net_pnl = dec("positions.realized_pnl", &pnl)? - dec("positions.fees", &fees)?;
            out.push(ClosedTrade { closed_at, net_pnl });
        }
        Ok(out)
    }
}
