//! Shared helpers of the engine tests: a crafted market whose candles make the real analyzer
//! produce a long (or short) signal, and a scripted public market-data source (an `Exchange`
//! that serves those candles and lets the test push stream events). The scripted source
//! refuses every account method and counts the attempts, so a test can prove that the paper
//! exchange never forwards one.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use kinetic::core::models::{Candle, Direction, SymbolFilters, Ticker, Timeframe, TimestampMs};
use kinetic::exchange::{
    AccountBalance, EventSinks, ExResult, Exchange, ExchangeError, ExchangeEvent, ExchangePosition, ExchangeStats,
    MarginType, MarkPriceUpdate, MarketOrderRequest, OrderReport, StopOrder, StopRequest, StreamControl, SymbolInfo,
};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub fn now_ms() -> TimestampMs {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

pub fn filters(symbol: &str) -> SymbolFilters {
    SymbolFilters {
        symbol: symbol.to_string(),
        tick_size: dec!(0.01),
        min_price: dec!(0.01),
        max_price: dec!(1000000),
        step_size: dec!(0.001),
        min_qty: dec!(0.001),
        max_qty: dec!(10000),
        market_step_size: dec!(0.001),
        market_min_qty: dec!(0.001),
        market_max_qty: dec!(10000),
        min_notional: dec!(5),
        percent_price_up: dec!(1.05),
        percent_price_down: dec!(0.95),
        max_leverage: 50,
    }
}

fn candle(open_time: TimestampMs, tf: Timeframe, open: f64, close: f64, range_pct: f64, volume: f64) -> Candle {
    let hi = open.max(close) * (1.0 + range_pct / 200.0);
    let lo = open.min(close) * (1.0 - range_pct / 200.0);
    Candle {
        open_time,
        close_time: open_time + tf.duration_ms() - 1,
        open,
        high: hi,
        low: lo,
        close,
        volume,
        quote_volume: volume * close,
        trades: 100,
        taker_buy_volume: volume / 2.0,
        taker_buy_quote_volume: volume * close / 2.0,
    }
}

/// A crafted three-timeframe market ending at `end_price` at the last closed 15m candle
/// before `now`: a steady trend on 4h and 1h (in `direction`), and on 15m the trend followed
/// by a ten-candle pullback (RSI into the 30–45 zone for a long, 55–70 for a short) on a volume
/// spike. The real analyzer scores it 70 (trend 25 + alignment 20 + RSI 15 + volume 10).
/// `range_15m_pct` sets the 15m candle range (and so ATR and the stop distance).
pub struct CraftedMarket {
    pub symbol: String,
    pub direction: Direction,
    pub history: HashMap<Timeframe, Vec<Candle>>,
    /// The next 15m candle, to be pushed on the stream as closed; it continues the pullback.
    pub next_15m: Candle,
    pub end_price: f64,
}

impl CraftedMarket {
    pub fn new(symbol: &str, direction: Direction, end_price: f64, range_15m_pct: f64, now: TimestampMs) -> Self {
        let sign = if direction == Direction::Long { 1.0 } else { -1.0 };
        let mut history = HashMap::new();
        for (tf, step_pct, n) in [(Timeframe::H4, 0.8, 150usize), (Timeframe::H1, 0.3, 150usize)] {
            let last_open = tf.align(now) - tf.duration_ms();
            let mut out = Vec::with_capacity(n);
            // Walk backwards from the end price so the last close is near it.
            let mut closes = vec![end_price];
            for _ in 1..n {
                let prev = *closes.last().unwrap() / (1.0 + sign * step_pct / 100.0);
                closes.push(prev);
            }
            closes.reverse();
            for (i, c) in closes.iter().enumerate() {
                let open_time = last_open - (n - 1 - i) as i64 * tf.duration_ms();
                let open = c / (1.0 + sign * step_pct / 100.0);
                out.push(candle(open_time, tf, open, *c, 0.2, 1000.0));
            }
            history.insert(tf, out);
        }
        // 15m: trend, then a 10-candle pullback of 0.15 % per candle; the last one on 3x volume.
        let tf = Timeframe::M15;
        let n = 150usize;
        let pull = 10usize;
        // The stream candle is the 11th pullback candle; history holds the 10 before it.
        let last_open = tf.align(now) - 2 * tf.duration_ms();
        let mut closes = Vec::with_capacity(n);
        let mut p = end_price;
        // Build backwards: the stream candle ends at end_price, so history ends one step above.
        p /= 1.0 - sign * 0.15 / 100.0;
        for _ in 0..pull {
            closes.push(p);
            p /= 1.0 - sign * 0.15 / 100.0;
        }
        for _ in pull..n {
            closes.push(p);
            p /= 1.0 + sign * 0.1 / 100.0;
        }
        closes.reverse();
        let mut out = Vec::with_capacity(n);
        for (i, c) in closes.iter().enumerate() {
            let open_time = last_open - (n - 1 - i) as i64 * tf.duration_ms();
            let in_pull = i >= n - pull;
            let open = if in_pull { c / (1.0 - sign * 0.15 / 100.0) } else { c / (1.0 + sign * 0.1 / 100.0) };
            let vol = if i == n - 1 { 3000.0 } else { 1000.0 };
            out.push(candle(open_time, tf, open, *c, range_15m_pct, vol));
        }
        let last_close = *closes.last().unwrap();
        let next_15m = candle(last_open + tf.duration_ms(), tf, last_close, end_price, range_15m_pct, 3000.0);
        history.insert(tf, out);
        CraftedMarket { symbol: symbol.to_string(), direction, history, next_15m, end_price }
    }

    pub fn ticker(&self) -> Ticker {
        let sign = if self.direction == Direction::Long { 1.0 } else { -1.0 };
        Ticker {
            symbol: self.symbol.clone(),
            last_price: self.end_price,
            price_change_pct: 2.5 * sign,
            volume: 1_000_000.0,
            quote_volume: 100_000_000.0,
            event_time: now_ms(),
        }
    }
}

/// A public market-data source over crafted markets; account methods are refused and counted.
pub struct ScriptedMarket {
    pub symbols: Vec<SymbolInfo>,
    pub tickers: Mutex<Vec<Ticker>>,
    pub klines: Mutex<HashMap<(String, Timeframe), Vec<Candle>>>,
    pub events: Mutex<Option<EventSinks>>,
    pub kline_symbols: Mutex<Option<watch::Receiver<BTreeSet<String>>>>,
    pub account_calls: AtomicU64,
    /// Replay clock: when set (non-zero), `now_ms` returns it instead of the wall clock.
    pub clock: std::sync::atomic::AtomicI64,
}

impl ScriptedMarket {
    pub fn new(markets: &[&CraftedMarket]) -> Self {
        let mut klines = HashMap::new();
        for m in markets {
            for (tf, cs) in &m.history {
                klines.insert((m.symbol.clone(), *tf), cs.clone());
            }
        }
        ScriptedMarket {
            symbols: markets.iter().map(|m| SymbolInfo { filters: filters(&m.symbol), max_leverage: 50 }).collect(),
            tickers: Mutex::new(markets.iter().map(|m| m.ticker()).collect()),
            klines: Mutex::new(klines),
            events: Mutex::new(None),
            kline_symbols: Mutex::new(None),
            account_calls: AtomicU64::new(0),
            clock: std::sync::atomic::AtomicI64::new(0),
        }
    }

    /// A market over arbitrary symbols and candle histories (a replay).
    pub fn with_data(
        symbols: Vec<SymbolInfo>,
        tickers: Vec<Ticker>,
        klines: HashMap<(String, Timeframe), Vec<Candle>>,
    ) -> Self {
        ScriptedMarket {
            symbols,
            tickers: Mutex::new(tickers),
            klines: Mutex::new(klines),
            events: Mutex::new(None),
            kline_symbols: Mutex::new(None),
            account_calls: AtomicU64::new(0),
            clock: std::sync::atomic::AtomicI64::new(0),
        }
    }

    pub fn sender(&self) -> Option<EventSinks> {
        self.events.lock().unwrap().clone()
    }

    pub async fn push(&self, ev: ExchangeEvent) {
        let tx = self.sender().expect("streams started");
        tx.send(ev).await.expect("engine listening");
    }

    pub async fn push_mark(&self, symbol: &str, price: Decimal) {
        self.push(ExchangeEvent::MarkPrices(vec![MarkPriceUpdate {
            symbol: symbol.to_string(),
            mark_price: price,
            index_price: None,
            funding_rate: None,
            next_funding_time: None,
            event_time: now_ms(),
        }]))
        .await;
    }

    fn refuse<T>(&self) -> ExResult<T> {
        self.account_calls.fetch_add(1, Ordering::SeqCst);
        Err(ExchangeError::Refused("account method on a public market-data source".into()))
    }
}

impl Exchange for ScriptedMarket {
    fn is_paper(&self) -> bool {
        false
    }
    async fn symbols(&self) -> ExResult<Vec<SymbolInfo>> {
        Ok(self.symbols.clone())
    }
    async fn tickers(&self) -> ExResult<Vec<Ticker>> {
        Ok(self.tickers.lock().unwrap().clone())
    }
    async fn klines(
        &self,
        symbol: &str,
        timeframe: Timeframe,
        _start: Option<TimestampMs>,
        _end: Option<TimestampMs>,
        limit: u16,
    ) -> ExResult<Vec<Candle>> {
        let all = self.klines.lock().unwrap().get(&(symbol.to_string(), timeframe)).cloned().unwrap_or_default();
        let skip = all.len().saturating_sub(usize::from(limit));
        Ok(all[skip..].to_vec())
    }
    async fn locked_symbols(&self) -> ExResult<BTreeSet<String>> {
        self.refuse()
    }
    async fn hedge_mode(&self) -> ExResult<bool> {
        self.refuse()
    }
    async fn balance(&self) -> ExResult<AccountBalance> {
        self.refuse()
    }
    async fn positions(&self) -> ExResult<Vec<ExchangePosition>> {
        self.refuse()
    }
    async fn open_orders(&self) -> ExResult<Vec<OrderReport>> {
        self.refuse()
    }
    async fn open_stops(&self) -> ExResult<Vec<StopOrder>> {
        self.refuse()
    }
    async fn prepare_symbol(&self, _s: &str, _m: MarginType, _l: u32) -> ExResult<()> {
        self.refuse()
    }
    async fn place_market(&self, _r: &MarketOrderRequest) -> ExResult<OrderReport> {
        self.refuse()
    }
    async fn query_order(&self, _s: &str, _c: &str) -> ExResult<Option<OrderReport>> {
        self.refuse()
    }
    async fn place_stop(&self, _r: &StopRequest) -> ExResult<StopOrder> {
        self.refuse()
    }
    async fn cancel_stop(&self, _s: &str, _id: i64) -> ExResult<()> {
        self.refuse()
    }
    async fn cancel_all(&self, _s: &str) -> ExResult<()> {
        self.refuse()
    }
    async fn start_streams(&self, events: EventSinks, _cancel: CancellationToken) -> ExResult<StreamControl> {
        *self.events.lock().unwrap() = Some(events);
        let (tx, rx) = watch::channel(BTreeSet::new());
        *self.kline_symbols.lock().unwrap() = Some(rx);
        Ok(StreamControl { kline_symbols: tx })
    }
    fn stats(&self) -> ExchangeStats {
        ExchangeStats::default()
    }
    fn now_ms(&self) -> TimestampMs {
        match self.clock.load(Ordering::SeqCst) {
            0 => now_ms(),
            t => t,
        }
    }
}

/// The live engine run in-process on the real Binance client (pointed at a fake server by
/// `settings`), with its journal in a private folder.
pub struct LiveEngine {
    pub status: std::sync::Arc<std::sync::RwLock<kinetic::api::StatusSnapshot>>,
    pub metrics: kinetic::api::Metrics,
    pub liveness: std::sync::Arc<kinetic::core::liveness::Liveness>,
    pub cancel: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
    pub journal_path: std::path::PathBuf,
    pub dir: tempfile::TempDir,
}

/// Starts [`LiveEngine`] with `credentials`; the engine task panics if start-up fails.
pub fn start_live_engine(settings: kinetic::config::Settings, credentials: kinetic::config::Credentials) -> LiveEngine {
    use std::sync::{Arc, RwLock};
    let client = kinetic::exchange::binance::BinanceClient::new(&settings.exchange, Some(credentials)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let journal_path = dir.path().join("live.db");
    let journal = kinetic::store::Journal::open(&journal_path).unwrap();
    let status = Arc::new(RwLock::new(kinetic::api::StatusSnapshot::default()));
    let metrics = kinetic::api::Metrics::default();
    let handles = kinetic::tasks::EngineHandles::new(Arc::clone(&status), metrics.clone());
    let liveness = Arc::clone(&handles.liveness);
    let engine = kinetic::tasks::Engine::new(Arc::new(client), settings, journal, handles, false).unwrap();
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    let task = tokio::spawn(async move { engine.run(c, false).await.unwrap() });
    LiveEngine { status, metrics, liveness, cancel, task, journal_path, dir }
}
