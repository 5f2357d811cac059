//! The server's state: market, account, orders, listen keys, connections, request log and
//! faults. One `std::sync::Mutex<State>`, never held across an `.await`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use kinetic::core::models::Candle;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rust_decimal::Decimal;
use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;

use super::config::{FakeConfig, SymbolSpec};
use super::faults::Faults;

/// Wall clock in ms.
pub fn system_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Live market state of one symbol.
#[derive(Debug, Clone)]
pub struct Market {
    pub spec: SymbolSpec,
    pub mark_price: Decimal,
    /// Last traded price; market orders fill here. Follows the mark unless set explicitly.
    pub last_price: Decimal,
    pub last_follows_mark: bool,
    pub index_price: Decimal,
    pub funding_rate: Decimal,
    /// Quantitative-rules lock (`apiTradingStatus`).
    pub locked: bool,
    pub leverage: u32,
    /// "ISOLATED" / "CROSSED".
    pub margin_type: String,
}

/// An order in the matching engine (`/fapi/v1/order`).
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub order_id: i64,
    pub client_order_id: String,
    pub symbol: String,
    pub side: String,
    pub position_side: String,
    /// MARKET / LIMIT.
    pub order_type: String,
    /// Type before triggering (STOP_MARKET for a triggered stop), else = order_type.
    pub orig_type: String,
    pub time_in_force: String,
    pub price: Decimal,
    pub stop_price: Decimal,
    pub orig_qty: Decimal,
    pub executed_qty: Decimal,
    pub cum_quote: Decimal,
    pub avg_price: Decimal,
    /// NEW, PARTIALLY_FILLED, FILLED, CANCELED, EXPIRED.
    pub status: String,
    pub reduce_only: bool,
    pub close_position: bool,
    pub working_type: String,
    pub time: i64,
    pub update_time: i64,
    /// Set when the order came from a triggered algo order.
    pub algo_id: Option<i64>,
}

impl Order {
    pub fn is_open(&self) -> bool {
        self.status == "NEW" || self.status == "PARTIALLY_FILLED"
    }
}

/// A conditional order (`/fapi/v1/algoOrder`).
#[derive(Debug, Clone, PartialEq)]
pub struct AlgoOrder {
    pub algo_id: i64,
    pub client_algo_id: String,
    pub symbol: String,
    pub side: String,
    pub position_side: String,
    /// STOP_MARKET, TAKE_PROFIT_MARKET, STOP, TAKE_PROFIT.
    pub order_type: String,
    pub time_in_force: String,
    pub quantity: Decimal,
    pub trigger_price: Decimal,
    pub price: Decimal,
    /// MARK_PRICE / CONTRACT_PRICE.
    pub working_type: String,
    pub close_position: bool,
    pub reduce_only: bool,
    pub price_protect: bool,
    /// NEW, CANCELED, TRIGGERING, TRIGGERED, FINISHED, REJECTED, EXPIRED.
    pub status: String,
    pub create_time: i64,
    pub update_time: i64,
    pub trigger_time: i64,
    pub actual_order_id: Option<i64>,
    pub actual_price: Decimal,
    pub actual_qty: Decimal,
    pub reject_reason: String,
    /// TRAILING_STOP_MARKET: callback in % (0 for other types); `trigger_price` holds the
    /// activation price (0 = active at once).
    pub callback_rate: Decimal,
    /// TRAILING_STOP_MARKET: best price since activation (`None` = not activated yet).
    pub trailing_extreme: Option<Decimal>,
}

impl AlgoOrder {
    pub fn is_open(&self) -> bool {
        self.status == "NEW"
    }
}

/// One trade of ours.
#[derive(Debug, Clone, PartialEq)]
pub struct FillRecord {
    pub trade_id: i64,
    pub order_id: i64,
    pub client_order_id: String,
    pub symbol: String,
    pub side: String,
    pub position_side: String,
    pub price: Decimal,
    pub qty: Decimal,
    pub quote_qty: Decimal,
    pub commission: Decimal,
    pub realized_pnl: Decimal,
    pub maker: bool,
    pub reduce_only: bool,
    pub time: i64,
}

/// A position (one-way: position side BOTH, signed amount).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Position {
    pub symbol: String,
    pub position_side: String,
    /// Signed in one-way mode; positive for LONG and negative for SHORT in hedge mode.
    pub amount: Decimal,
    pub entry_price: Decimal,
    /// Accumulated realized PnL (pre-fee), ACCOUNT_UPDATE `cr`.
    pub accumulated_realized: Decimal,
    pub update_time: i64,
}

/// A listenKey.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenKey {
    pub key: String,
    pub expires_at: i64,
    /// Set once `listenKeyExpired` was pushed (or the key was deleted).
    pub dead: bool,
}

/// One logged REST request.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRecord {
    /// Arrival order, from 1.
    pub seq: u64,
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: String,
    /// A `signature` parameter was sent.
    pub signed: bool,
    /// The `X-MBX-APIKEY` header was present.
    pub api_key_present: bool,
    /// Server time when it arrived.
    pub time_ms: i64,
    pub http_status: u16,
    /// Binance error code of the answer, if it was an error.
    pub error_code: Option<i64>,
    /// A fault switch decided the answer.
    pub fault: Option<String>,
}

/// WebSocket route of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Route {
    Market,
    Public,
    Private,
    /// Legacy `/ws` or `/stream` without a route: only `/public` streams deliver since 2026-04-23.
    Unrouted,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Market => "market",
            Route::Public => "public",
            Route::Private => "private",
            Route::Unrouted => "unrouted",
        }
    }
}

/// What the writer task of a connection does next.
#[derive(Debug, Clone)]
pub enum WsOut {
    Text(String),
    Ping,
    /// Send a close frame and end.
    Close,
    /// End without a close frame (TCP reset from the client's point of view).
    Drop,
}

/// A live WebSocket connection.
#[derive(Debug, Clone)]
pub struct Conn {
    pub id: u64,
    pub route: Route,
    /// `/stream` mode: every payload wrapped as `{"stream":..,"data":..}`.
    pub combined: bool,
    pub path: String,
    pub subscriptions: BTreeSet<String>,
    pub listen_key: Option<String>,
    /// `events=` filter of a private connection (None = everything).
    pub events: Option<BTreeSet<String>>,
    pub connected_at: i64,
    pub tx: UnboundedSender<WsOut>,
}

/// Everything mutable.
pub struct State {
    pub cfg: FakeConfig,
    pub clock_skew_ms: i64,
    pub markets: BTreeMap<String, Market>,
    pub klines: HashMap<(String, String), BTreeMap<i64, Candle>>,
    pub hedge_mode: bool,
    pub wallet_balance: Decimal,
    pub positions: BTreeMap<(String, String), Position>,
    pub orders: BTreeMap<i64, Order>,
    pub algo_orders: BTreeMap<i64, AlgoOrder>,
    pub fills: Vec<FillRecord>,
    pub next_order_id: i64,
    pub next_algo_id: i64,
    pub next_trade_id: i64,
    pub listen_key: Option<ListenKey>,
    pub conns: BTreeMap<u64, Conn>,
    pub next_conn_id: u64,
    pub ws_connects_total: u64,
    pub requests: Vec<RequestRecord>,
    pub next_request_seq: u64,
    pub faults: Faults,
    pub rng: StdRng,
    /// (minute index, weight used in that minute).
    pub weight_window: (i64, u32),
    /// Order count windows: (10 s index, count), (minute index, count).
    pub order_count_10s: (i64, u32),
    pub order_count_1m: (i64, u32),
    pub requests_while_limited: u32,
    pub ban_until: Option<i64>,
    pub last_event_time: i64,
    /// Accept WS connections and ACK control messages but send no data at all.
    pub ws_silent: bool,
    /// Like `ws_silent`, for the listed routes only.
    pub ws_silent_routes: BTreeSet<Route>,
    /// Refuse WS handshakes (HTTP 503).
    pub ws_refuse: bool,
    /// Random walk of prices on each market tick: (max step in bps, RNG).
    pub price_walk: Option<(u32, StdRng)>,
    /// Stream the current candle of subscribed kline streams on each tick.
    pub auto_klines: bool,
    /// Drop all WS connections periodically (ms).
    pub ws_drop_interval_ms: Option<u64>,
    /// Liquidate positions whose margin falls to the maintenance margin.
    pub liquidation: bool,
    /// The answer of `GET /sapi/v1/account/apiRestrictions` (spot host, Wallet API).
    pub api_restrictions: Value,
    /// Symbols whose algo orders, once triggered, stay TRIGGERING and never produce an order
    /// (the 2026-10 demo-environment field report).
    pub stuck_triggers: BTreeSet<String>,
    /// `GET /fapi/v1/fundingInfo` rows: symbol → (interval hours, cap, floor).
    pub funding_info: BTreeMap<String, (u32, Decimal, Decimal)>,
    /// `GET /fapi/v1/fundingRate` rows per symbol: (funding time, rate, mark price), in time order.
    pub funding_history: BTreeMap<String, Vec<(i64, Decimal, Decimal)>>,
}

/// A well-kept key: reading and futures only, IP-restricted, no withdrawals.
pub fn safe_api_restrictions() -> Value {
    serde_json::json!({
        "ipRestrict": true,
        "createTime": 1_760_000_000_000_i64,
        "enableReading": true,
        "enableWithdrawals": false,
        "enableInternalTransfer": false,
        "enableMargin": false,
        "enableFutures": true,
        "permitsUniversalTransfer": false,
        "enableVanillaOptions": false,
        "enableFixApiTrade": false,
        "enableFixReadOnly": false,
        "enableSpotAndMarginTrading": false,
        "enablePortfolioMarginTrading": false
    })
}

impl State {
    pub fn new(cfg: FakeConfig) -> Self {
        let mut markets = BTreeMap::new();
        for spec in &cfg.symbols {
            markets.insert(spec.symbol.clone(), market_from_spec(spec, &cfg));
        }
        State {
            clock_skew_ms: 0,
            markets,
            klines: HashMap::new(),
            hedge_mode: cfg.hedge_mode,
            wallet_balance: cfg.starting_balance,
            positions: BTreeMap::new(),
            orders: BTreeMap::new(),
            algo_orders: BTreeMap::new(),
            fills: Vec::new(),
            next_order_id: 4_000_000_001,
            next_algo_id: 1_000_000_000_001,
            next_trade_id: 700_000_001,
            listen_key: None,
            conns: BTreeMap::new(),
            next_conn_id: 1,
            ws_connects_total: 0,
            requests: Vec::new(),
            next_request_seq: 1,
            faults: Faults::default(),
            rng: StdRng::seed_from_u64(cfg.seed),
            weight_window: (0, 0),
            order_count_10s: (0, 0),
            order_count_1m: (0, 0),
            requests_while_limited: 0,
            ban_until: None,
            last_event_time: 0,
            ws_silent: false,
            ws_silent_routes: BTreeSet::new(),
            ws_refuse: false,
            price_walk: None,
            auto_klines: false,
            ws_drop_interval_ms: None,
            liquidation: cfg.liquidation,
            api_restrictions: safe_api_restrictions(),
            stuck_triggers: BTreeSet::new(),
            funding_info: BTreeMap::new(),
            funding_history: BTreeMap::new(),
            cfg,
        }
    }

    /// Server time (wall clock + the test-set skew).
    pub fn now(&self) -> i64 {
        system_ms() + self.clock_skew_ms
    }

    /// Event time for a pushed event: the server time, strictly increasing.
    pub fn event_time(&mut self) -> i64 {
        let t = self.now().max(self.last_event_time + 1);
        self.last_event_time = t;
        t
    }

    pub fn position(&self, symbol: &str, side: &str) -> Option<&Position> {
        self.positions.get(&(symbol.to_string(), side.to_string()))
    }

    /// Unrealized PnL of one position at the mark.
    pub fn unrealized(&self, p: &Position) -> Decimal {
        let mark = self.markets.get(&p.symbol).map(|m| m.mark_price).unwrap_or(p.entry_price);
        p.amount * (mark - p.entry_price)
    }

    /// Initial margin of one position at the mark.
    pub fn position_initial_margin(&self, p: &Position) -> Decimal {
        match self.markets.get(&p.symbol) {
            Some(m) => (p.amount.abs() * m.mark_price / Decimal::from(m.leverage.max(1))).round_dp(8),
            None => Decimal::ZERO,
        }
    }

    /// Maintenance margin of one position (bracket-based, `notional × mmr − cum`).
    pub fn maint_margin(&self, p: &Position) -> Decimal {
        match self.markets.get(&p.symbol) {
            Some(m) => {
                let notional = p.amount.abs() * m.mark_price;
                match m.spec.bracket_for(notional) {
                    Some(b) => (notional * b.maint_margin_ratio - b.cum).max(Decimal::ZERO).round_dp(8),
                    None => Decimal::ZERO,
                }
            }
            None => Decimal::ZERO,
        }
    }

    pub fn total_unrealized(&self) -> Decimal {
        self.positions.values().map(|p| self.unrealized(p)).sum()
    }

    pub fn total_initial_margin(&self) -> Decimal {
        self.positions.values().map(|p| self.position_initial_margin(p)).sum()
    }

    /// Margin free for new positions: wallet + uPnL − initial margin of open positions.
    pub fn available_balance(&self) -> Decimal {
        (self.wallet_balance + self.total_unrealized() - self.total_initial_margin()).round_dp(8)
    }

    pub fn open_algo_count(&self) -> usize {
        self.algo_orders.values().filter(|a| a.is_open()).count()
    }
}

pub fn market_from_spec(spec: &SymbolSpec, cfg: &FakeConfig) -> Market {
    Market {
        spec: spec.clone(),
        mark_price: spec.price,
        last_price: spec.price,
        last_follows_mark: true,
        index_price: spec.price,
        funding_rate: spec.funding_rate,
        locked: false,
        leverage: cfg.default_leverage.min(spec.max_leverage()).max(1),
        margin_type: cfg.default_margin_type.clone(),
    }
}

/// Binance decimal string: plain digits, no exponent, no trailing zeros ("0" for zero).
pub fn fmt_dec(x: Decimal) -> String {
    let n = x.normalize();
    if n.is_zero() { "0".to_string() } else { n.to_string() }
}

/// A decimal padded to `dp` decimal places (prices and quantities in responses).
pub fn fmt_dp(x: Decimal, dp: u32) -> String {
    let mut r = x.round_dp(dp);
    r.rescale(dp);
    r.to_string()
}

/// Plain text of a float candle value (Rust's `Display` never uses an exponent).
pub fn fmt_f64(x: f64) -> String {
    if x.is_finite() { format!("{x}") } else { "0".to_string() }
}

/// Shorthand for event JSON objects.
pub type Json = Value;
