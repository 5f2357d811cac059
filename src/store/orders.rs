//! Orders and fills in the journal: an order is journaled before it is sent and updated with
//! what the exchange said (keyed by client order id, the filled quantity never regresses);
//! fills are recorded once per trade id.

use rusqlite::params;

use crate::store::StoreError;
use crate::store::journal::{Journal, JournalFill, JournalOrder, dec, opt_dec};
use crate::store::types::{OrderIntent, OrderState, parse_order_type, parse_side};

impl Journal {
    /// Inserts or updates an order keyed by its client order id. Journal the intent *before*
    /// sending, then update with what the exchange said.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn upsert_order(&self, o: &JournalOrder) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO orders (client_order_id, exchange_order_id, symbol, side, order_type, intent, qty, price,
                                 trigger_price, reduce_only, status, filled_qty, avg_fill_price, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
             ON CONFLICT(client_order_id) DO UPDATE SET
                exchange_order_id = COALESCE(excluded.exchange_order_id, orders.exchange_order_id),
                status = excluded.status,
                filled_qty = CASE WHEN CAST(excluded.filled_qty AS REAL) >= CAST(orders.filled_qty AS REAL)
                                  THEN excluded.filled_qty ELSE orders.filled_qty END,
                avg_fill_price = COALESCE(excluded.avg_fill_price, orders.avg_fill_price),
                trigger_price = excluded.trigger_price,
                qty = excluded.qty,
                updated_at = excluded.updated_at",
            params![
                o.client_order_id,
                o.exchange_order_id,
                o.symbol,
                o.side.as_str(),
                o.order_type.as_str(),
                o.intent.as_str(),
                o.qty.to_string(),
                o.price.map(|d| d.to_string()),
                o.trigger_price.map(|d| d.to_string()),
                o.reduce_only,
                o.status.as_str(),
                o.filled_qty.to_string(),
                o.avg_fill_price.map(|d| d.to_string()),
                o.created_at,
                o.updated_at
            ],
        )?;
        Ok(())
    }

    /// One order by client id.
    ///
    /// # Errors
    /// SQLite errors, unreadable rows.
    pub fn order(&self, client_order_id: &str) -> Result<Option<JournalOrder>, StoreError> {
        let mut orders = self.orders_where("client_order_id = ?1", client_order_id)?;
        Ok(orders.pop())
    }

    /// Protective stops of `symbol` that may have executed without us seeing the fill: not
    /// cancelled, expired or rejected, and no fill recorded.
    ///
    /// # Errors
    /// SQLite errors, unreadable rows.
    pub fn stops_without_fill(&self, symbol: &str) -> Result<Vec<JournalOrder>, StoreError> {
        self.orders_where(
            "symbol = ?1 AND order_type = 'STOP_MARKET' AND CAST(filled_qty AS REAL) = 0
             AND status NOT IN ('CANCELED', 'EXPIRED', 'REJECTED', 'FAILED')",
            symbol,
        )
    }

    /// Orders of `symbol` whose last known status is not final.
    ///
    /// # Errors
    /// SQLite errors, unreadable rows.
    pub fn live_orders(&self, symbol: &str) -> Result<Vec<JournalOrder>, StoreError> {
        self.orders_where("symbol = ?1 AND status IN ('NEW', 'PARTIALLY_FILLED', 'PARTIALLYFILLED', 'PENDING')", symbol)
    }

    fn orders_where(&self, cond: &str, arg: &str) -> Result<Vec<JournalOrder>, StoreError> {
        let sql = format!(
            "SELECT client_order_id, exchange_order_id, symbol, side, order_type, intent, qty, price, trigger_price,
                    reduce_only, status, filled_qty, avg_fill_price, created_at, updated_at
             FROM orders WHERE {cond} ORDER BY created_at, client_order_id"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        type Row = (
            String,
            Option<i64>,
            String,
            String,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
            bool,
            String,
            String,
            Option<String>,
            i64,
            i64,
        );
        let rows = stmt.query_map([arg], |r| -> rusqlite::Result<Row> {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
                r.get(11)?,
                r.get(12)?,
                r.get(13)?,
                r.get(14)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (
                cid,
                eid,
                symbol,
                side,
                order_type,
                intent,
                qty,
                price,
                trigger,
                reduce_only,
                status,
                filled,
                avg,
                c,
                u,
            ) = row?;
            out.push(JournalOrder {
                client_order_id: cid,
                exchange_order_id: eid,
                symbol,
                side: parse_side(&side)?,
                order_type: parse_order_type(&order_type)?,
                intent: OrderIntent::parse(&intent)?,
                qty: dec("orders.qty", &qty)?,
                price: opt_dec("orders.price", price)?,
                trigger_price: opt_dec("orders.trigger_price", trigger)?,
                reduce_only,
                status: OrderState::parse(&status)?,
                filled_qty: dec("orders.filled_qty", &filled)?,
                avg_fill_price: opt_dec("orders.avg_fill_price", avg)?,
                created_at: c,
                updated_at: u,
            });
        }
        Ok(out)
    }

    /// Records a fill; a replayed fill (same order and trade id) is ignored. Returns whether it
    /// was new.
    ///
    /// # Errors
    /// SQLite errors.
    pub fn record_fill(&self, f: &JournalFill) -> Result<bool, StoreError> {
        let n = self.conn.execute(
            "INSERT OR IGNORE INTO fills (client_order_id, trade_id, symbol, side, price, qty, fee, realized_pnl, time)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                f.client_order_id,
                f.trade_id,
                f.symbol,
                f.side,
                f.price.to_string(),
                f.qty.to_string(),
                f.fee.to_string(),
                f.realized_pnl.to_string(),
                f.time
            ],
        )?;
        Ok(n == 1)
    }

    /// All fills of one order, oldest first.
    ///
    /// # Errors
    /// SQLite errors, unreadable rows.
    pub fn fills_of(&self, client_order_id: &str) -> Result<Vec<JournalFill>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT client_order_id, trade_id, symbol, side, price, qty, fee, realized_pnl, time
             FROM fills WHERE client_order_id = ?1 ORDER BY time, trade_id",
        )?;
        let rows = stmt.query_map([client_order_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, String>(7)?,
                r.get::<_, i64>(8)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (cid, trade_id, symbol, side, price, qty, fee, pnl, time) = row?;
            out.push(JournalFill {
                client_order_id: cid,
                trade_id,
                symbol,
                side,
                price: dec("fills.price", &price)?,
                qty: dec("fills.qty", &qty)?,
                fee: dec("fills.fee", &fee)?,
                realized_pnl: dec("fills.realized_pnl", &pnl)?,
                time,
            });
        }
        Ok(out)
    }
}
