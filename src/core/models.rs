//! Domain models shared by every layer: candles, tickers, indicators, signals, positions,
//! orders and symbol trading rules.
//!
//! Two number types, on purpose. Market data that only feeds indicator maths and scanner
//! filters (candle OHLCV, 24 h ticker figures, indicator values) is `f64`: it is never sent to
//! the exchange and the maths is floating point anyway. Anything that becomes an order, a
//! position or money (prices we trade at, quantities, notionals, balances, PnL) is
//! `rust_decimal::Decimal`, rounded by the symbol's filters. This module holds plain data and
//! pure helpers only: no I/O, no clock reads, no locks.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use rust_decimal::prelude::*;
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC (Binance's unit for every timestamp).
pub type TimestampMs = i64;

/// Candle interval. The strategy uses 15m, 1h and 4h; the others exist for data download.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Timeframe {
    #[serde(rename = "1m")]
    M1,
    #[serde(rename = "5m")]
    M5,
    #[serde(rename = "15m")]
    M15,
    #[serde(rename = "30m")]
    M30,
    #[serde(rename = "1h")]
    H1,
    #[serde(rename = "2h")]
    H2,
    #[serde(rename = "4h")]
    H4,
    #[serde(rename = "1d")]
    D1,
}

impl Timeframe {
    /// The three timeframes the strategy scores, highest first.
    pub const STRATEGY: [Timeframe; 3] = [Timeframe::H4, Timeframe::H1, Timeframe::M15];

    /// Binance's interval string (`15m`, `1h`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Timeframe::M1 => "1m",
            Timeframe::M5 => "5m",
            Timeframe::M15 => "15m",
            Timeframe::M30 => "30m",
            Timeframe::H1 => "1h",
            Timeframe::H2 => "2h",
            Timeframe::H4 => "4h",
            Timeframe::D1 => "1d",
        }
    }

    /// Length of one candle in milliseconds.
    pub fn duration_ms(self) -> i64 {
        const MIN: i64 = 60_000;
        match self {
            Timeframe::M1 => MIN,
            Timeframe::M5 => 5 * MIN,
            Timeframe::M15 => 15 * MIN,
            Timeframe::M30 => 30 * MIN,
            Timeframe::H1 => 60 * MIN,
            Timeframe::H2 => 120 * MIN,
            Timeframe::H4 => 240 * MIN,
            Timeframe::D1 => 1440 * MIN,
        }
    }

    /// Open time of the candle that contains `t`.
    pub fn align(self, t: TimestampMs) -> TimestampMs {
        t - t.rem_euclid(self.duration_ms())
    }
}

impl fmt::Display for Timeframe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for an interval string we do not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown interval `{0}` (expected one of 1m, 5m, 15m, 30m, 1h, 2h, 4h, 1d)")]
pub struct UnknownTimeframe(pub String);

impl FromStr for Timeframe {
    type Err = UnknownTimeframe;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "1m" => Timeframe::M1,
            "5m" => Timeframe::M5,
            "15m" => Timeframe::M15,
            "30m" => Timeframe::M30,
            "1h" => Timeframe::H1,
            "2h" => Timeframe::H2,
            "4h" => Timeframe::H4,
            "1d" => Timeframe::D1,
            other => return Err(UnknownTimeframe(other.to_string())),
        })
    }
}

/// One closed (or, from a live stream, possibly still open) candle.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Candle {
    pub open_time: TimestampMs,
    /// `open_time + interval - 1`, Binance's convention.
    pub close_time: TimestampMs,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    /// Base-asset volume.
    pub volume: f64,
    /// Quote-asset volume; 0 when the source does not have it.
    pub quote_volume: f64,
    pub trades: u64,
    pub taker_buy_volume: f64,
    pub taker_buy_quote_volume: f64,
}

impl Candle {
    /// Typical price `(h + l + c) / 3`, used to estimate quote volume when it is missing.
    pub fn typical_price(&self) -> f64 {
        (self.high + self.low + self.close) / 3.0
    }

    /// Quote volume, estimated as `volume × typical price` when the source left it empty.
    pub fn quote_volume_or_estimate(&self) -> f64 {
        if self.quote_volume > 0.0 { self.quote_volume } else { self.volume * self.typical_price() }
    }

    /// True when every price is finite and positive, `low ≤ open, close ≤ high`, volume ≥ 0.
    pub fn is_sane(&self) -> bool {
        let prices = [self.open, self.high, self.low, self.close];
        prices.iter().all(|p| p.is_finite() && *p > 0.0)
            && self.volume.is_finite()
            && self.volume >= 0.0
            && self.low <= self.high
            && self.low <= self.open.min(self.close)
            && self.high >= self.open.max(self.close)
            && self.close_time >= self.open_time
    }
}

/// How far past its close time the exchange clock must be before a candle fetched over REST
/// counts as closed. It covers the error of our estimate of the exchange clock (half a
/// round trip plus drift) and the exchange finishing the candle's last trades: a candle fetched
/// a moment too early still holds its forming values, and delivered as closed it would shadow
/// the real close (consumers ignore a second candle with the same open time).
pub const CANDLE_CLOSE_MARGIN_MS: i64 = 1_000;

/// True once the exchange clock `exchange_now_ms` is past the candle's close time by
/// [`CANDLE_CLOSE_MARGIN_MS`]: only then is a candle fetched over REST taken as final.
/// Stream klines carry their own closed flag and do not need this.
pub fn is_closed_at(candle: &Candle, exchange_now_ms: TimestampMs) -> bool {
    exchange_now_ms > candle.close_time.saturating_add(CANDLE_CLOSE_MARGIN_MS)
}

/// Rolling 24 h statistics of one symbol, as the scanner needs them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ticker {
    pub symbol: String,
    pub last_price: f64,
    /// 24 h price change in percent (e.g. `2.5` for +2.5 %).
    pub price_change_pct: f64,
    /// 24 h base volume.
    pub volume: f64,
    /// 24 h quote (USDT) volume.
    pub quote_volume: f64,
    pub event_time: TimestampMs,
}

/// Indicator values of one timeframe at one closed candle.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Indicators {
    pub ema_9: f64,
    pub ema_21: f64,
    pub rsi: f64,
    pub macd_line: f64,
    pub macd_signal: f64,
    pub macd_histogram: f64,
    pub atr: f64,
    pub volume_ratio: f64,
}

/// Trade direction of a signal or position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Direction {
    Long,
    Short,
}

impl Direction {
    /// The order side that opens a position in this direction.
    pub fn entry_side(self) -> Side {
        match self {
            Direction::Long => Side::Buy,
            Direction::Short => Side::Sell,
        }
    }

    /// The order side that reduces or closes a position in this direction.
    pub fn exit_side(self) -> Side {
        match self {
            Direction::Long => Side::Sell,
            Direction::Short => Side::Buy,
        }
    }

    /// +1 for long, −1 for short: multiply a price move by this to get the position's gain.
    pub fn sign(self) -> Decimal {
        match self {
            Direction::Long => Decimal::ONE,
            Direction::Short => Decimal::NEGATIVE_ONE,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Long => "LONG",
            Direction::Short => "SHORT",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Order side as Binance names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "BUY",
            Side::Sell => "SELL",
        }
    }

    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The indicator values of the three strategy timeframes that a signal was built from.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct TimeframeIndicators {
    pub h4: Indicators,
    pub h1: Indicators,
    pub m15: Indicators,
}

/// A trade idea produced by the analyzer, before risk checks and sizing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    pub symbol: String,
    pub direction: Direction,
    /// Score 0–100.
    pub confidence: u8,
    pub entry_price: Decimal,
    pub stop_loss: Decimal,
    /// The +3.0 % level from which the last part trails.
    pub take_profit: Decimal,
    /// ATR(14) of the 15m timeframe at the signal candle.
    pub atr: f64,
    /// 4h and 1h trends agree.
    pub timeframe_alignment: bool,
    pub indicators: TimeframeIndicators,
    /// Close time of the 15m candle the signal was computed on.
    pub timestamp: TimestampMs,
}

/// How far a position has come along the exit ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LadderStage {
    /// Nothing taken yet.
    #[default]
    Open,
    /// TP1 executed (40 % closed).
    Tp1Done,
    /// TP2 executed (70 % closed in total).
    Tp2Done,
    /// Price reached the trailing start; the rest trails behind the best price.
    Trailing,
}

/// A partial exit that has been executed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartialExit {
    pub price: Decimal,
    pub qty: Decimal,
    pub time: TimestampMs,
    pub reason: String,
}

/// An open position as the position manager tracks it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    pub symbol: String,
    pub direction: Direction,
    pub entry_price: Decimal,
    /// Quantity at entry; TP fractions are taken of this.
    pub original_qty: Decimal,
    /// Quantity still open.
    pub qty: Decimal,
    pub leverage: u32,
    /// Current protective stop price (moves with trailing).
    pub stop_loss: Decimal,
    pub take_profit: Decimal,
    pub trailing_stop: Option<Decimal>,
    pub partial_exits: Vec<PartialExit>,
    /// Best price seen since entry (highest for long, lowest for short).
    pub best_price: Decimal,
    pub peak_pnl: Decimal,
    pub stage: LadderStage,
    pub entry_time: TimestampMs,
}

impl Position {
    /// Notional at `price`.
    pub fn notional(&self, price: Decimal) -> Decimal {
        self.qty * price
    }

    /// Unrealized PnL of the open quantity at `price` (before fees).
    pub fn unrealized_pnl(&self, price: Decimal) -> Decimal {
        (price - self.entry_price) * self.qty * self.direction.sign()
    }

    /// Price move from entry in percent, positive when in the position's favour.
    pub fn move_pct(&self, price: Decimal) -> Decimal {
        if self.entry_price.is_zero() {
            return Decimal::ZERO;
        }
        (price - self.entry_price) / self.entry_price * Decimal::ONE_HUNDRED * self.direction.sign()
    }
}

/// Order types we send. Stops are conditional (algo) orders on Binance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderType {
    Market,
    Limit,
    StopMarket,
}

impl OrderType {
    /// Binance's name.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderType::Market => "MARKET",
            OrderType::Limit => "LIMIT",
            OrderType::StopMarket => "STOP_MARKET",
        }
    }
}

/// Lifecycle state of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    New,
    PartiallyFilled,
    Filled,
    Canceled,
    Expired,
    Rejected,
    /// A status this build does not know (Binance adds enum values): kept, not final, never
    /// acted on as a fill.
    Other,
}

impl OrderStatus {
    /// True once the order can no longer change.
    pub fn is_final(self) -> bool {
        matches!(self, OrderStatus::Filled | OrderStatus::Canceled | OrderStatus::Expired | OrderStatus::Rejected)
    }
}

/// An order as we know it (sent by us or read back from the exchange).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Our id (`newClientOrderId` / `clientAlgoId`), unique per intent.
    pub client_order_id: String,
    /// Exchange id (`orderId` / `algoId`) once known.
    pub exchange_order_id: Option<i64>,
    pub symbol: String,
    pub side: Side,
    pub order_type: OrderType,
    pub qty: Decimal,
    pub price: Option<Decimal>,
    /// Trigger price of a stop.
    pub trigger_price: Option<Decimal>,
    pub reduce_only: bool,
    pub status: OrderStatus,
    pub filled_qty: Decimal,
    pub avg_fill_price: Option<Decimal>,
    pub created_at: TimestampMs,
    pub updated_at: TimestampMs,
}

/// Trading rules of one symbol, from exchange info. A zero limit means "no limit".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SymbolFilters {
    pub symbol: String,
    pub tick_size: Decimal,
    pub min_price: Decimal,
    pub max_price: Decimal,
    /// LOT_SIZE step (limit orders).
    pub step_size: Decimal,
    pub min_qty: Decimal,
    pub max_qty: Decimal,
    /// MARKET_LOT_SIZE step and bounds (market orders).
    pub market_step_size: Decimal,
    pub market_min_qty: Decimal,
    pub market_max_qty: Decimal,
    /// MIN_NOTIONAL `notional`; reduce-only orders are exempt.
    pub min_notional: Decimal,
    /// PERCENT_PRICE multipliers.
    pub percent_price_up: Decimal,
    pub percent_price_down: Decimal,
    /// Highest leverage of the first notional bracket.
    pub max_leverage: u32,
}

impl SymbolFilters {
    /// Price rounded to the nearest tick (half away from zero), as PRICE_FILTER demands.
    pub fn round_price(&self, price: Decimal) -> Decimal {
        round_to_increment(price, self.tick_size, RoundingStrategy::MidpointAwayFromZero)
    }

    /// Price rounded to a tick in the given direction (down for a long stop keeps it at or below).
    pub fn round_price_with(&self, price: Decimal, strategy: RoundingStrategy) -> Decimal {
        round_to_increment(price, self.tick_size, strategy)
    }

    /// Step of market-order quantities (MARKET_LOT_SIZE, else LOT_SIZE).
    pub fn market_step(&self) -> Decimal {
        if self.market_step_size.is_zero() { self.step_size } else { self.market_step_size }
    }

    /// Market-order quantity rounded DOWN to the market step (never more than asked for).
    pub fn floor_market_qty(&self, qty: Decimal) -> Decimal {
        round_to_increment(qty, self.market_step(), RoundingStrategy::ToZero)
    }

    /// Largest quantity a single market order may carry.
    pub fn market_max_qty(&self) -> Decimal {
        if self.market_max_qty.is_zero() { self.max_qty } else { self.market_max_qty }
    }

    /// Smallest quantity a market order may carry.
    pub fn market_min_qty(&self) -> Decimal {
        if self.market_min_qty.is_zero() { self.min_qty } else { self.market_min_qty }
    }
}

/// Rounds `value` to a multiple of `increment` with `strategy`; a zero increment leaves it as is.
/// The result is normalized (no trailing zeros), so it prints as a plain decimal.
pub fn round_to_increment(value: Decimal, increment: Decimal, strategy: RoundingStrategy) -> Decimal {
    if increment <= Decimal::ZERO {
        return value.normalize();
    }
    let units = (value / increment).round_dp_with_strategy(0, strategy);
    (units * increment).normalize()
}

/// Plain decimal text for the exchange: never an exponent, no trailing zeros.
pub fn plain_decimal(value: Decimal) -> String {
    value.normalize().to_string()
}

/// Converts a finite `f64` to `Decimal`; `None` for NaN, infinities and out-of-range values.
pub fn decimal_from_f64(value: f64) -> Option<Decimal> {
    if !value.is_finite() {
        return None;
    }
    Decimal::from_f64(value)
}

/// BTCUSDT's real filters (exchange info, 2025-12), shared by unit tests across modules.
#[cfg(test)]
pub(crate) fn btcusdt_test_filters() -> SymbolFilters {
    use rust_decimal_macros::dec;
    SymbolFilters {
        symbol: "BTCUSDT".into(),
        tick_size: dec!(0.10),
        min_price: dec!(556.80),
        max_price: dec!(4529764),
        step_size: dec!(0.001),
        min_qty: dec!(0.001),
        max_qty: dec!(1000),
        market_step_size: dec!(0.001),
        market_min_qty: dec!(0.001),
        market_max_qty: dec!(120),
        min_notional: dec!(100),
        percent_price_up: dec!(1.05),
        percent_price_down: dec!(0.95),
        max_leverage: 125,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn filters() -> SymbolFilters {
        btcusdt_test_filters()
    }

    #[test]
    fn a_candle_is_closed_only_past_the_margin() {
        let open = Timeframe::M15.align(1_700_000_123_456);
        let c = Candle {
            open_time: open,
            close_time: open + 899_999,
            open: 1.0,
            high: 1.0,
            low: 1.0,
            close: 1.0,
            volume: 0.0,
            quote_volume: 0.0,
            trades: 0,
            taker_buy_volume: 0.0,
            taker_buy_quote_volume: 0.0,
        };
        // (exchange now relative to close_time, closed?)
        let cases = [
            (-900_000, false),
            (-1, false),
            (0, false),
            (1, false),
            (CANDLE_CLOSE_MARGIN_MS, false),
            (CANDLE_CLOSE_MARGIN_MS + 1, true),
            (900_000, true),
        ];
        for (offset, closed) in cases {
            assert_eq!(is_closed_at(&c, c.close_time + offset), closed, "now = close_time {offset:+}");
        }
        let end_of_time = Candle { close_time: i64::MAX, ..c };
        assert!(!is_closed_at(&end_of_time, i64::MAX));
    }

    #[test]
    fn qty_rounds_down_to_step() {
        let f = filters();
        assert_eq!(f.floor_market_qty(dec!(0.0019999)), dec!(0.001));
        assert_eq!(f.floor_market_qty(dec!(1.2345)), dec!(1.234));
        assert_eq!(f.floor_market_qty(dec!(0.0009)), dec!(0));
    }

    #[test]
    fn price_rounds_to_tick_and_prints_plainly() {
        let f = filters();
        assert_eq!(plain_decimal(f.round_price(dec!(65432.149))), "65432.1");
        assert_eq!(plain_decimal(f.round_price(dec!(65432.15))), "65432.2");
        assert_eq!(plain_decimal(dec!(0.00001)), "0.00001");
        assert_eq!(plain_decimal(dec!(100.000)), "100");
    }

    #[test]
    fn timeframe_round_trips_and_aligns() {
        for tf in [Timeframe::M15, Timeframe::H1, Timeframe::H4] {
            assert_eq!(tf.as_str().parse::<Timeframe>(), Ok(tf));
        }
        assert!("7m".parse::<Timeframe>().is_err());
        assert_eq!(Timeframe::H4.align(1_700_000_123_456), 1_699_992_000_000);
    }

    #[test]
    fn position_pnl_has_the_direction_sign() {
        let mut p = Position {
            symbol: "BTCUSDT".into(),
            direction: Direction::Short,
            entry_price: dec!(100),
            original_qty: dec!(2),
            qty: dec!(2),
            leverage: 5,
            stop_loss: dec!(103),
            take_profit: dec!(97),
            trailing_stop: None,
            partial_exits: vec![],
            best_price: dec!(100),
            peak_pnl: dec!(0),
            stage: LadderStage::Open,
            entry_time: 0,
        };
        assert_eq!(p.unrealized_pnl(dec!(99)), dec!(2));
        assert_eq!(p.move_pct(dec!(99)), dec!(1));
        p.direction = Direction::Long;
        assert_eq!(p.unrealized_pnl(dec!(99)), dec!(-2));
    }
}
