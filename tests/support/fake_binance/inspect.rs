//! Inspection helpers and waits for assertions (a second `impl FakeBinance` block).

use std::collections::BTreeSet;
use std::time::Duration;

use rust_decimal::Decimal;

use super::state::{AlgoOrder, FillRecord, Order, Position, RequestRecord};
use super::{BalanceSnapshot, FakeBinance, WsConnectionInfo, rest, ws};

impl FakeBinance {
    // ---- inspection ----

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.st().requests.clone()
    }

    pub fn requests_to(&self, method: &str, path: &str) -> Vec<RequestRecord> {
        self.st().requests.iter().filter(|r| r.method.eq_ignore_ascii_case(method) && r.path == path).cloned().collect()
    }

    /// Requests whose handling panicked inside the fake server (should always be 0).
    pub fn panicked_requests(&self) -> usize {
        self.st().requests.iter().filter(|r| r.fault.as_deref() == Some(rest::PANIC_LABEL)).count()
    }

    pub fn signed_request_count(&self) -> usize {
        self.st().requests.iter().filter(|r| r.signed).count()
    }

    pub fn clear_requests(&self) {
        self.st().requests.clear();
    }

    pub fn orders(&self) -> Vec<Order> {
        self.st().orders.values().cloned().collect()
    }

    pub fn open_orders(&self) -> Vec<Order> {
        self.st().orders.values().filter(|o| o.is_open()).cloned().collect()
    }

    pub fn order_by_client_id(&self, client_order_id: &str) -> Option<Order> {
        self.st().orders.values().rev().find(|o| o.client_order_id == client_order_id).cloned()
    }

    /// How many orders carry `client_order_id` (an idempotent client makes this ≤ 1).
    pub fn orders_with_client_id(&self, client_order_id: &str) -> usize {
        self.st().orders.values().filter(|o| o.client_order_id == client_order_id && o.algo_id.is_none()).count()
    }

    pub fn algo_orders(&self) -> Vec<AlgoOrder> {
        self.st().algo_orders.values().cloned().collect()
    }

    pub fn open_algo_orders(&self) -> Vec<AlgoOrder> {
        self.st().algo_orders.values().filter(|a| a.is_open()).cloned().collect()
    }

    pub fn fills(&self) -> Vec<FillRecord> {
        self.st().fills.clone()
    }

    /// Non-zero positions.
    pub fn positions(&self) -> Vec<Position> {
        self.st().positions.values().filter(|p| !p.amount.is_zero()).cloned().collect()
    }

    /// The one-way (BOTH) position of `symbol`, if non-zero.
    pub fn position(&self, symbol: &str) -> Option<Position> {
        self.st().position(symbol, "BOTH").filter(|p| !p.amount.is_zero()).cloned()
    }

    /// Symbols whose non-zero position is not fully covered by resting stop-type algo orders
    /// (STOP_MARKET/STOP on the closing side, reduce-only or closePosition). Issue 5/7 audits.
    pub fn unprotected_positions(&self) -> Vec<String> {
        let st = self.st();
        st.positions
            .values()
            .filter(|p| !p.amount.is_zero())
            .filter(|p| {
                let closing_side = if p.amount > Decimal::ZERO { "SELL" } else { "BUY" };
                let stops = st.algo_orders.values().filter(|a| {
                    a.is_open()
                        && a.symbol == p.symbol
                        && a.side == closing_side
                        && (a.order_type.starts_with("STOP") || a.order_type == "TRAILING_STOP_MARKET")
                        && (a.reduce_only || a.close_position)
                });
                let covered = stops.clone().any(|a| a.close_position)
                    || stops.map(|a| a.quantity).sum::<Decimal>() >= p.amount.abs();
                !covered
            })
            .map(|p| p.symbol.clone())
            .collect()
    }

    pub fn balance(&self) -> BalanceSnapshot {
        let st = self.st();
        let unrealized = st.total_unrealized();
        BalanceSnapshot {
            wallet_balance: st.wallet_balance,
            unrealized_pnl: unrealized,
            equity: st.wallet_balance + unrealized,
            available_balance: st.available_balance(),
        }
    }

    /// The current listenKey, if one was created and is still alive.
    pub fn listen_key(&self) -> Option<String> {
        self.st().listen_key.as_ref().filter(|k| !k.dead).map(|k| k.key.clone())
    }

    pub fn ws_connection_count(&self) -> usize {
        self.st().conns.len()
    }

    pub fn ws_connections(&self) -> Vec<WsConnectionInfo> {
        self.st()
            .conns
            .values()
            .map(|c| WsConnectionInfo {
                id: c.id,
                route: c.route,
                path: c.path.clone(),
                combined: c.combined,
                subscriptions: c.subscriptions.clone(),
                listen_key: c.listen_key.clone(),
                connected_at: c.connected_at,
            })
            .collect()
    }

    /// WS handshakes completed since start (reconnect counting).
    pub fn ws_connects_total(&self) -> u64 {
        self.st().ws_connects_total
    }

    /// Union of all connections' subscriptions.
    pub fn subscriptions(&self) -> BTreeSet<String> {
        self.st().conns.values().flat_map(|c| c.subscriptions.iter().cloned()).collect()
    }

    pub fn weight_used_1m(&self) -> u32 {
        let st = self.st();
        if st.weight_window.0 == st.now() / 60_000 { st.weight_window.1 } else { 0 }
    }

    // ---- waits ----

    /// Polls `cond` every 10 ms until true or `timeout`; returns the last result.
    pub async fn wait_until(&self, timeout: Duration, mut cond: impl FnMut(&FakeBinance) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if cond(self) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `wait_until` for sync code (polls with `std::thread::sleep`; use with
    /// `start_on_own_runtime`).
    pub fn wait_until_blocking(&self, timeout: Duration, mut cond: impl FnMut(&FakeBinance) -> bool) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if cond(self) {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub async fn wait_for_ws_connections(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |f| f.ws_connection_count() >= n).await
    }

    pub async fn wait_for_subscription(&self, stream: &str, timeout: Duration) -> bool {
        let s = ws::normalize_stream(stream);
        self.wait_until(timeout, |f| f.subscriptions().contains(&s)).await
    }
}
