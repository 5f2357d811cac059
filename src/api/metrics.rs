//! Prometheus metrics of the daemon, registered once and updated by the tasks. Rendering is
//! the only thing the HTTP server does with them.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type GaugeF = Gauge<f64, AtomicU64>;
type Labels = Vec<(String, String)>;

/// Every metric the daemon exports. Cheap to clone (handles share their values).
#[derive(Clone, Default)]
pub struct Metrics {
    pub equity_usdt: GaugeF,
    pub wallet_balance_usdt: GaugeF,
    pub open_positions: Gauge,
    pub unrealized_pnl_usdt: GaugeF,
    /// Unrealized PnL in percent of equity minus the emergency line (−5 %): how far we are from it.
    pub emergency_distance_pct: GaugeF,
    pub emergency_latched: Gauge,
    pub orders_sent: Family<Labels, Counter>,
    pub orders_rejected: Family<Labels, Counter>,
    pub ws_reconnects: Family<Labels, Counter>,
    /// Seconds since the last message, per stream.
    pub stream_staleness_secs: Family<Labels, GaugeF>,
    pub rest_weight_used: Gauge,
    pub clock_offset_ms: Gauge,
    pub algo_orders_open: Gauge,
    pub algo_orders_limit: Gauge,
    /// How late the last monitor tick ran, in seconds.
    pub monitor_loop_lag_secs: GaugeF,
    pub monitor_ticks: Counter,
    pub dropped_messages: Family<Labels, Counter>,
    pub protective_stops_repaired: Counter,
    pub orphan_stops_cancelled: Counter,
    /// 1 per unsafe property of the API key (`reason`: withdrawals_enabled, no_ip_restriction).
    pub api_key_unsafe: Family<Labels, Gauge>,
    /// Protective stops that triggered but left their position open beyond the grace.
    pub protective_stops_failed: Counter,
    /// Operator commands carried out, by `channel`, `action` and `ok`.
    pub control_commands: Family<Labels, Counter>,
    /// Requests or messages refused on an operator channel (wrong token, chat not allowed).
    pub control_refused: Family<Labels, Counter>,
    /// 1 while an operator has paused new entries.
    pub entries_paused: Gauge,
    /// Notifications delivered, failed (after every retry) and dropped (queue full), by channel.
    pub notifications_sent: Family<Labels, Counter>,
    pub notifications_failed: Family<Labels, Counter>,
    pub notifications_dropped: Family<Labels, Counter>,
    /// 1 while the daily loss limit blocks new entries (until the next UTC day).
    pub daily_loss_blocked: Gauge,
    /// Today's PnL: equity − day-start equity − today's net transfers.
    pub today_pnl_usdt: GaugeF,
    /// Tracked positions without a protective stop on the exchange right now.
    pub positions_unprotected: Gauge,
}

impl Metrics {
    /// Registers every metric under the `kinetic_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("kinetic");
        r.register("equity_usdt", "Account equity: wallet balance + unrealized PnL", self.equity_usdt.clone());
        r.register("wallet_balance_usdt", "Wallet balance", self.wallet_balance_usdt.clone());
        r.register("open_positions", "Open positions", self.open_positions.clone());
        r.register("unrealized_pnl_usdt", "Total unrealized PnL", self.unrealized_pnl_usdt.clone());
        r.register(
            "emergency_distance_pct",
            "Percentage points between unrealized PnL/equity and the emergency exit line",
            self.emergency_distance_pct.clone(),
        );
        r.register(
            "emergency_latched",
            "1 while the emergency-exit latch blocks new entries",
            self.emergency_latched.clone(),
        );
        r.register("orders_sent", "Orders sent, by kind", self.orders_sent.clone());
        r.register("orders_rejected", "Orders rejected, by Binance code", self.orders_rejected.clone());
        r.register("ws_reconnects", "WebSocket reconnects, by stream", self.ws_reconnects.clone());
        r.register(
            "stream_staleness_seconds",
            "Seconds since the last message, by stream",
            self.stream_staleness_secs.clone(),
        );
        r.register("rest_weight_used", "X-MBX-USED-WEIGHT-1M of the last response", self.rest_weight_used.clone());
        r.register("clock_offset_ms", "Server time minus local time", self.clock_offset_ms.clone());
        r.register("algo_orders_open", "Open algo (conditional) orders on the account", self.algo_orders_open.clone());
        r.register("algo_orders_limit", "Account-wide algo order limit", self.algo_orders_limit.clone());
        r.register("monitor_loop_lag_seconds", "Lateness of the last monitor tick", self.monitor_loop_lag_secs.clone());
        r.register("monitor_ticks", "Monitor-loop ticks", self.monitor_ticks.clone());
        r.register(
            "dropped_messages",
            "Malformed or out-of-range messages dropped, by source",
            self.dropped_messages.clone(),
        );
        r.register(
            "protective_stops_repaired",
            "Protective stops placed by the audit for unprotected positions",
            self.protective_stops_repaired.clone(),
        );
        r.register(
            "protective_stops_failed",
            "Protective stops marked triggered on the exchange whose position stayed open beyond the grace (alert)",
            self.protective_stops_failed.clone(),
        );
        r.register(
            "api_key_unsafe",
            "1 when the API key has this unsafe property (reason: withdrawals_enabled, no_ip_restriction)",
            self.api_key_unsafe.clone(),
        );
        r.register(
            "orphan_stops_cancelled",
            "Stops cancelled because no position matched",
            self.orphan_stops_cancelled.clone(),
        );
        r.register(
            "control_commands",
            "Operator commands carried out, by channel, action and ok",
            self.control_commands.clone(),
        );
        r.register(
            "control_refused",
            "Operator-channel requests refused (bad or missing token, chat not allowed), by channel",
            self.control_refused.clone(),
        );
        r.register("entries_paused", "1 while an operator has paused new entries", self.entries_paused.clone());
        r.register("notifications_sent", "Notifications delivered, by channel", self.notifications_sent.clone());
        r.register(
            "notifications_failed",
            "Notifications given up after every retry, by channel",
            self.notifications_failed.clone(),
        );
        r.register(
            "notifications_dropped",
            "Notifications dropped because the channel's queue was full, by channel",
            self.notifications_dropped.clone(),
        );
        r.register(
            "daily_loss_blocked",
            "1 while the daily loss limit blocks new entries until the next UTC day",
            self.daily_loss_blocked.clone(),
        );
        r.register(
            "today_pnl_usdt",
            "Today's PnL: equity minus day-start equity minus today's net transfers",
            self.today_pnl_usdt.clone(),
        );
        r.register(
            "positions_unprotected",
            "Tracked positions without a protective stop on the exchange",
            self.positions_unprotected.clone(),
        );
    }

    /// One-label helper: `[(name, value)]`.
    pub fn label(name: &str, value: &str) -> Labels {
        vec![(name.to_string(), value.to_string())]
    }
}

/// Renders a registry as Prometheus text.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if encode(&mut out, registry).is_err() {
        out.clear();
    }
    out
}
