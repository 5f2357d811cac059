//! The journal itself: schema migrations in code (`PRAGMA user_version`), and one method per
//! kind of record. Decimals are stored as their exact text; structured details as JSON.

use std::path::Path;
use std::str::FromStr;

use rusqlite::{Connection, OptionalExtension, params};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::core::models::{Direction, LadderStage, OrderType, PartialExit, Position, Side, TimestampMs};
use crate::store::types::{OrderIntent, OrderState};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("journal database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot create the journal folder {path}: {source}")]
    Folder {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("journal holds an unreadable value in {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("journal schema version {found} is newer than this binary understands ({known})")]
    TooNew { found: i64, known: i64 },
    #[error("an in-memory journal has no file a second connection could open")]
    InMemory,
}

/// Schema migrations, applied in order; index + 1 is the `user_version` after each.
const MIGRATIONS: &[&str] = &[
    // 1: initial schema
    "CREATE TABLE signals (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time INTEGER NOT NULL,
        symbol TEXT NOT NULL,
        direction TEXT NOT NULL,
        confidence INTEGER NOT NULL,
        entry_price TEXT NOT NULL,
        stop_loss TEXT NOT NULL,
        take_profit TEXT NOT NULL,
        breakdown TEXT NOT NULL
    );
    CREATE INDEX signals_time ON signals(time);
    CREATE TABLE risk_checks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time INTEGER NOT NULL,
        symbol TEXT NOT NULL,
        signal_id INTEGER REFERENCES signals(id),
        passed INTEGER NOT NULL,
        results TEXT NOT NULL
    );
    CREATE TABLE orders (
        client_order_id TEXT PRIMARY KEY,
        exchange_order_id INTEGER,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        order_type TEXT NOT NULL,
        intent TEXT NOT NULL,
        qty TEXT NOT NULL,
        price TEXT,
        trigger_price TEXT,
        reduce_only INTEGER NOT NULL,
        status TEXT NOT NULL,
        filled_qty TEXT NOT NULL,
        avg_fill_price TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX orders_symbol ON orders(symbol, status);
    CREATE TABLE fills (
        client_order_id TEXT NOT NULL,
        trade_id INTEGER NOT NULL,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        price TEXT NOT NULL,
        qty TEXT NOT NULL,
        fee TEXT NOT NULL,
        realized_pnl TEXT NOT NULL,
        time INTEGER NOT NULL,
        PRIMARY KEY (client_order_id, trade_id)
    );
    CREATE TABLE positions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        symbol TEXT NOT NULL,
        direction TEXT NOT NULL,
        entry_price TEXT NOT NULL,
        original_qty TEXT NOT NULL,
        qty TEXT NOT NULL,
        leverage INTEGER NOT NULL,
        stop_loss TEXT NOT NULL,
        take_profit TEXT NOT NULL,
        trailing_stop TEXT,
        best_price TEXT NOT NULL,
        peak_pnl TEXT NOT NULL,
        stage TEXT NOT NULL,
        partial_exits TEXT NOT NULL,
        opened_at INTEGER NOT NULL,
        closed_at INTEGER,
        close_reason TEXT,
        realized_pnl TEXT NOT NULL DEFAULT '0',
        fees TEXT NOT NULL DEFAULT '0',
        adopted INTEGER NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX positions_one_open_per_symbol ON positions(symbol) WHERE closed_at IS NULL;
    CREATE TABLE equity_snapshots (
        time INTEGER NOT NULL,
        wallet_balance TEXT NOT NULL,
        unrealized_pnl TEXT NOT NULL,
        equity TEXT NOT NULL
    );
    CREATE TABLE state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    );",
    // 2: operator commands (who, channel, when, what, outcome)
    "CREATE TABLE commands (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time INTEGER NOT NULL,
        channel TEXT NOT NULL,
        who TEXT NOT NULL,
        action TEXT NOT NULL,
        args TEXT NOT NULL,
        ok INTEGER NOT NULL,
        outcome TEXT NOT NULL
    );
    CREATE INDEX commands_time ON commands(time);",
];

/// A signal with its score breakdown (any JSON the analyzer produces).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalRecord {
    pub time: TimestampMs,
    pub symbol: String,
    pub direction: Direction,
    pub confidence: u8,
    pub entry_price: Decimal,
    pub stop_loss: Decimal,
    pub take_profit: Decimal,
    pub breakdown: serde_json::Value,
}

/// The outcome of the five risk checks for one attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskCheckRecord {
    pub time: TimestampMs,
    pub symbol: String,
    pub signal_id: Option<i64>,
    pub passed: bool,
    pub results: serde_json::Value,
}

/// An order as journaled: what we intended and what the exchange reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalOrder {
    pub client_order_id: String,
    pub exchange_order_id: Option<i64>,
    pub symbol: String,
    pub side: Side,
    pub order_type: OrderType,
    /// Why we sent it.
    pub intent: OrderIntent,
    pub qty: Decimal,
    pub price: Option<Decimal>,
    pub trigger_price: Option<Decimal>,
    pub reduce_only: bool,
    pub status: OrderState,
    pub filled_qty: Decimal,
    pub avg_fill_price: Option<Decimal>,
    pub created_at: TimestampMs,
    pub updated_at: TimestampMs,
}

/// One execution of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalFill {
    pub client_order_id: String,
    pub trade_id: i64,
    pub symbol: String,
    pub side: String,
    pub price: Decimal,
    pub qty: Decimal,
    pub fee: Decimal,
    pub realized_pnl: Decimal,
    pub time: TimestampMs,
}

/// A position row: the live state plus bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalPosition {
    pub id: i64,
    pub position: Position,
    pub closed_at: Option<TimestampMs>,
    pub close_reason: Option<String>,
    pub realized_pnl: Decimal,
    pub fees: Decimal,
    /// Found on the exchange at start-up without a journal record.
    pub adopted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EquitySnapshot {
    pub time: TimestampMs,
    pub wallet_balance: Decimal,
    pub unrealized_pnl: Decimal,
    pub equity: Decimal,
}

/// The journal: one SQLite connection in WAL mode, `synchronous = NORMAL` unless
/// [`Journal::set_full_sync`] asks for `FULL` (`storage.sync`).
pub struct Journal {
    pub(super) conn: Connection,
}

pub(super) fn dec(what: &'static str, text: &str) -> Result<Decimal, StoreError> {
    Decimal::from_str(text).map_err(|e| StoreError::Corrupt { what, detail: format!("`{text}`: {e}") })
}

pub(super) fn opt_dec(what: &'static str, text: Option<String>) -> Result<Option<Decimal>, StoreError> {
    text.map(|t| dec(what, &t)).transpose()
}

fn stage_str(stage: LadderStage) -> &'static str {
    match stage {
        LadderStage::Open => "open",
        LadderStage::Tp1Done => "tp1_done",
        LadderStage::Tp2Done => "tp2_done",
        LadderStage::Trailing => "trailing",
    }
}

fn parse_stage(text: &str) -> Result<LadderStage, StoreError> {
    Ok(match text {
        "open" => LadderStage::Open,
        "tp1_done" => LadderStage::Tp1Done,
        "tp2_done" => LadderStage::Tp2Done,
        "trailing" => LadderStage::Trailing,
        other => return Err(StoreError::Corrupt { what: "positions.stage", detail: other.to_string() }),
    })
}

fn parse_direction(text: &str) -> Result<Direction, StoreError> {
    match text {
        "LONG" => Ok(Direction::Long),
        "SHORT" => Ok(Direction::Short),
        other => Err(StoreError::Corrupt { what: "direction", detail: other.to_string() }),
    }
}

fn json_err(what: &'static str) -> impl Fn(serde_json::Error) -> StoreError {
    move |e| StoreError::Corrupt { what, detail: e.to_string() }
}

impl Journal {
    /// Opens (creating if needed) the journal at `path` and applies pending migrations.
    ///
    /// # Errors
    /// File-system and SQLite errors; a schema newer than this binary.
    pub fn open(path: &Path) -> Result<Journal, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|source| StoreError::Folder { path: parent.display().to_string(), source })?;
        }
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    /// `true`: fsync every commit (`synchronous = FULL`, survives power loss); `false`:
    /// `synchronous = NORMAL` (survives process crashes; the default).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn set_full_sync(&self, full: bool) -> Result<(), StoreError> {
        self.conn.pragma_update(None, "synchronous", if full { "FULL" } else { "NORMAL" })?;
        Ok(())
    }

    /// The current `synchronous` level (1 = NORMAL, 2 = FULL).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn sync_level(&self) -> Result<i64, StoreError> {
        Ok(self.conn.pragma_query_value(None, "synchronous", |r| r.get(0))?)
    }

    /// A second connection to the same journal file, for a task that reads (and keeps its
    /// own small state keys) beside the position manager; WAL lets both work at once.
    ///
    /// # Errors
    /// [`StoreError::InMemory`] for an in-memory journal; SQLite errors.
    pub fn reopen(&self) -> Result<Journal, StoreError> {
        match self.conn.path().filter(|p| !p.is_empty()) {
            Some(path) => Journal::open(Path::new(path)),
            None => Err(StoreError::InMemory),
        }
    }

    /// An in-memory journal (tests and backtests).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn open_in_memory() -> Result<Journal, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Journal, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // journal_mode returns a row; in-memory databases answer "memory".
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")?;
        let mut journal = Journal { conn };
        journal.migrate()?;
        Ok(journal)
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let version: i64 = self.conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
        if version > known {
            return Err(StoreError::TooNew { found: version, known });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(version).unwrap_or(0)) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Current schema version.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self.conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// The SQLite journal mode in effect (`wal` for a file journal).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn journal_mode(&self) -> Result<String, StoreError> {
        Ok(self.conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?)
    }

    /// Records a signal; returns its id.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn record_signal(&self, s: &SignalRecord) -> Result<i64, StoreError> {
        self.conn.execute(
            "INSERT INTO signals (time, symbol, direction, confidence, entry_price, stop_loss, take_profit, breakdown)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                s.time,
                s.symbol,
                s.direction.as_str(),
                s.confidence,
                s.entry_price.to_string(),
                s.stop_loss.to_string(),
                s.take_profit.to_string(),
                s.breakdown.to_string()
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The most recent `limit` signals, newest first.
    ///
    /// # Errors
    /// SQLite errors, unreadable rows.
    pub fn recent_signals(&self, limit: usize) -> Result<Vec<SignalRecord>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT time, symbol, direction, confidence, entry_price, stop_loss, take_profit, breakdown
             FROM signals ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, u8>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, String>(7)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (time, symbol, direction, confidence, entry, stop, tp, breakdown) = row?;
            out.push(SignalRecord {
                time,
                symbol,
                direction: parse_direction(&direction)?,
                confidence,
                entry_price: dec("signals.entry_price", &entry)?,
                stop_loss: dec("signals.stop_loss", &stop)?,
                take_profit: dec("signals.take_profit", &tp)?,
                breakdown: serde_json::from_str(&breakdown).map_err(json_err("signals.breakdown"))?,
            });
        }
        Ok(out)
    }

    /// Records the five risk-check results of one attempt.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn record_risk_check(&self, r: &RiskCheckRecord) -> Result<i64, StoreError> {
        self.conn.execute(
            "INSERT INTO risk_checks (time, symbol, signal_id, passed, results) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![r.time, r.symbol, r.signal_id, r.passed, r.results.to_string()],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Number of risk-check records (for audits and tests).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn risk_check_count(&self) -> Result<i64, StoreError> {
        Ok(self.conn.query_row("SELECT COUNT(*) FROM risk_checks", [], |r| r.get(0))?)
    }

    /// Opens a position record; at most one open position per symbol. Returns its id.
    ///
    /// # Errors
    /// SQLite errors (including a second open position on the same symbol).
    pub fn open_position(&self, p: &Position, adopted: bool) -> Result<i64, StoreError> {
        let exits = serde_json::to_string(&p.partial_exits).map_err(json_err("positions.partial_exits"))?;
        self.conn.execute(
            "INSERT INTO positions (symbol, direction, entry_price, original_qty, qty, leverage, stop_loss, take_profit,
                                    trailing_stop, best_price, peak_pnl, stage, partial_exits, opened_at, adopted)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            params![
                p.symbol,
                p.direction.as_str(),
                p.entry_price.to_string(),
                p.original_qty.to_string(),
                p.qty.to_string(),
                p.leverage,
                p.stop_loss.to_string(),
                p.take_profit.to_string(),
                p.trailing_stop.map(|d| d.to_string()),
                p.best_price.to_string(),
                p.peak_pnl.to_string(),
                stage_str(p.stage),
                exits,
                p.entry_time,
                adopted
            ],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Saves the live state (size, stop, ladder stage, best price, partial exits) of the open
    /// position on `p.symbol`. Returns false when no open position exists for it.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn update_position(&self, p: &Position) -> Result<bool, StoreError> {
        let exits = serde_json::to_string(&p.partial_exits).map_err(json_err("positions.partial_exits"))?;
        let n = self.conn.execute(
            "UPDATE positions SET qty = ?2, stop_loss = ?3, trailing_stop = ?4, best_price = ?5, peak_pnl = ?6,
                    stage = ?7, partial_exits = ?8, leverage = ?9
             WHERE symbol = ?1 AND closed_at IS NULL",
            params![
                p.symbol,
                p.qty.to_string(),
                p.stop_loss.to_string(),
                p.trailing_stop.map(|d| d.to_string()),
                p.best_price.to_string(),
                p.peak_pnl.to_string(),
                stage_str(p.stage),
                exits,
                p.leverage
            ],
        )?;
        Ok(n == 1)
    }

    /// Marks the open position on `symbol` closed. Returns false when none was open.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn close_position(
        &self,
        symbol: &str,
        closed_at: TimestampMs,
        reason: &str,
        realized_pnl: Decimal,
        fees: Decimal,
    ) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "UPDATE positions SET closed_at = ?2, close_reason = ?3, realized_pnl = ?4, fees = ?5, qty = '0'
             WHERE symbol = ?1 AND closed_at IS NULL",
            params![symbol, closed_at, reason, realized_pnl.to_string(), fees.to_string()],
        )?;
        Ok(n == 1)
    }

    /// Every open position, by symbol.
    ///
    /// # Errors
    /// SQLite errors, unreadable rows.
    pub fn open_positions(&self) -> Result<Vec<JournalPosition>, StoreError> {
        self.positions_where("closed_at IS NULL ORDER BY symbol")
    }

    /// Closed positions, most recently closed first.
    ///
    /// # Errors
    /// SQLite errors, unreadable rows.
    pub fn closed_positions(&self, limit: usize) -> Result<Vec<JournalPosition>, StoreError> {
        self.positions_where(&format!("closed_at IS NOT NULL ORDER BY closed_at DESC, id DESC LIMIT {limit}"))
    }

    fn positions_where(&self, cond: &str) -> Result<Vec<JournalPosition>, StoreError> {
        let sql = format!(
            "SELECT id, symbol, direction, entry_price, original_qty, qty, leverage, stop_loss, take_profit,
                    trailing_stop, best_price, peak_pnl, stage, partial_exits, opened_at, closed_at, close_reason,
                    realized_pnl, fees, adopted
             FROM positions WHERE {cond}"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let text = |i: usize| r.get::<_, String>(i);
            let exits: Vec<PartialExit> =
                serde_json::from_str(&text(13)?).map_err(json_err("positions.partial_exits"))?;
            let position = Position {
                symbol: text(1)?,
                direction: parse_direction(&text(2)?)?,
                entry_price: dec("positions.entry_price", &text(3)?)?,
                original_qty: dec("positions.original_qty", &text(4)?)?,
                qty: dec("positions.qty", &text(5)?)?,
                leverage: r.get(6)?,
                stop_loss: dec("positions.stop_loss", &text(7)?)?,
                take_profit: dec("positions.take_profit", &text(8)?)?,
                trailing_stop: opt_dec("positions.trailing_stop", r.get(9)?)?,
                best_price: dec("positions.best_price", &text(10)?)?,
                peak_pnl: dec("positions.peak_pnl", &text(11)?)?,
                stage: parse_stage(&text(12)?)?,
                partial_exits: exits,
                entry_time: r.get(14)?,
            };
            out.push(JournalPosition {
                id: r.get(0)?,
                position,
                closed_at: r.get(15)?,
                close_reason: r.get(16)?,
                realized_pnl: dec("positions.realized_pnl", &text(17)?)?,
                fees: dec("positions.fees", &text(18)?)?,
                adopted: r.get(19)?,
            });
        }
        Ok(out)
    }

    /// Records an equity snapshot.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn record_equity(&self, e: &EquitySnapshot) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO equity_snapshots (time, wallet_balance, unrealized_pnl, equity) VALUES (?1, ?2, ?3, ?4)",
            params![e.time, e.wallet_balance.to_string(), e.unrealized_pnl.to_string(), e.equity.to_string()],
        )?;
        Ok(())
    }

    /// The latest equity snapshot, if any.
    ///
    /// # Errors
    /// SQLite errors, unreadable rows.
    pub fn last_equity(&self) -> Result<Option<EquitySnapshot>, StoreError> {
        let row = self
            .conn
            .query_row(
                "SELECT time, wallet_balance, unrealized_pnl, equity FROM equity_snapshots ORDER BY time DESC, rowid DESC LIMIT 1",
                [],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?)),
            )
            .optional()?;
        row.map(|(time, w, u, e)| {
            Ok(EquitySnapshot {
                time,
                wallet_balance: dec("equity.wallet_balance", &w)?,
                unrealized_pnl: dec("equity.unrealized_pnl", &u)?,
                equity: dec("equity.equity", &e)?,
            })
        })
        .transpose()
    }

    /// Stores a small piece of daemon state (emergency latch, day start equity, loss streak).
    ///
    /// # Errors
    /// SQLite errors.
    pub fn set_state(&self, key: &str, value: &serde_json::Value, now: TimestampMs) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO state (key, value, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            params![key, value.to_string(), now],
        )?;
        Ok(())
    }

    /// Reads a piece of daemon state.
    ///
    /// # Errors
    /// SQLite errors, unreadable JSON.
    pub fn state(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let text: Option<String> =
            self.conn.query_row("SELECT value FROM state WHERE key = ?1", [key], |r| r.get(0)).optional()?;
        text.map(|t| serde_json::from_str(&t).map_err(json_err("state.value"))).transpose()
    }

    /// Removes a piece of daemon state.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn clear_state(&self, key: &str) -> Result<(), StoreError> {
        self.conn.execute("DELETE FROM state WHERE key = ?1", [key])?;
        Ok(())
    }
}
