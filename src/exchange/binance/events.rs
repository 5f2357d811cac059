//! WebSocket message decoders: bytes of one frame → a typed message, as pure functions (no I/O,
//! no clock, no shared state), so they are tested on recorded payloads, fuzzed and benched.
//!
//! Both the combined form (`{"stream":..,"data":..}`, what we connect with) and raw payloads are
//! accepted. Anything malformed is an [`ExchangeError::Decode`]; the stream task counts and drops
//! it. Unknown event types and streams decode to `Ignored` rather than an error: Binance adds
//! events (TRADE_LITE, ACCOUNT_CONFIG_UPDATE, ...) that we do not use.

use rust_decimal::Decimal;
use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::wire::{clip, decimal, decimal_or_zero, float, order_status, side, stop_status};
use crate::core::models::{Candle, Direction, Ticker, Timeframe, TimestampMs};
use crate::exchange::{
    AccountBalance, ExResult, ExchangeError, ExchangePosition, Fill, MarkPriceUpdate, OrderReport, StopOrder,
};

fn decode_err(what: &str, e: impl std::fmt::Display) -> ExchangeError {
    ExchangeError::decode(format!("{what}: {e}"))
}

/// One decoded frame of the market stream.
#[derive(Debug, Clone, PartialEq)]
pub enum MarketMessage {
    Kline {
        symbol: String,
        timeframe: Timeframe,
        candle: Candle,
        closed: bool,
    },
    MarkPrices(Vec<MarkPriceUpdate>),
    Tickers(Vec<Ticker>),
    /// Reply to a SUBSCRIBE/UNSUBSCRIBE (`{"result":null,"id":N}`).
    Ack {
        id: u64,
    },
    /// An error reply to a control message (`{"code":N,"msg":..}`).
    ControlError {
        code: i64,
        msg: String,
    },
    /// A stream or event we do not use.
    Ignored,
}

#[derive(Deserialize)]
struct KlineEventWire<'a> {
    #[serde(borrow)]
    s: &'a str,
    #[serde(borrow)]
    k: KlineWire<'a>,
}

#[derive(Deserialize)]
struct KlineWire<'a> {
    t: i64,
    #[serde(rename = "T")]
    close_time: i64,
    #[serde(borrow)]
    i: &'a str,
    #[serde(borrow)]
    o: &'a str,
    #[serde(borrow)]
    c: &'a str,
    #[serde(borrow)]
    h: &'a str,
    #[serde(borrow)]
    l: &'a str,
    #[serde(borrow)]
    v: &'a str,
    #[serde(default)]
    n: u64,
    x: bool,
    #[serde(default, borrow)]
    q: Option<&'a str>,
    #[serde(default, borrow, rename = "V")]
    taker_v: Option<&'a str>,
    #[serde(default, borrow, rename = "Q")]
    taker_q: Option<&'a str>,
}

fn opt_float(field: &str, v: Option<&str>) -> ExResult<f64> {
    match v {
        Some(s) => float(field, s),
        None => Ok(0.0),
    }
}

fn kline_event(json: &str) -> ExResult<MarketMessage> {
    let w: KlineEventWire<'_> = serde_json::from_str(json).map_err(|e| decode_err("kline", e))?;
    kline_from_wire(&w)
}

fn kline_from_wire(w: &KlineEventWire<'_>) -> ExResult<MarketMessage> {
    let timeframe: Timeframe = w.k.i.parse().map_err(|e| decode_err("kline interval", e))?;
    let candle = Candle {
        open_time: w.k.t,
        close_time: w.k.close_time,
        open: float("o", w.k.o)?,
        high: float("h", w.k.h)?,
        low: float("l", w.k.l)?,
        close: float("c", w.k.c)?,
        volume: float("v", w.k.v)?,
        quote_volume: opt_float("q", w.k.q)?,
        trades: w.k.n,
        taker_buy_volume: opt_float("V", w.k.taker_v)?,
        taker_buy_quote_volume: opt_float("Q", w.k.taker_q)?,
    };
    // Only what would poison indicator maths is refused; Binance's own examples have opens
    // outside [low, high].
    if candle.high < candle.low || candle.close_time < candle.open_time {
        return Err(ExchangeError::decode(format!("kline {} {}: high < low or close < open time", clip(w.s), w.k.t)));
    }
    Ok(MarketMessage::Kline { symbol: w.s.to_string(), timeframe, candle, closed: w.k.x })
}

#[derive(Deserialize)]
struct MarkPriceWire<'a> {
    #[serde(rename = "E")]
    event_time: i64,
    #[serde(borrow)]
    s: &'a str,
    #[serde(borrow)]
    p: &'a str,
    #[serde(default, borrow)]
    i: Option<&'a str>,
    #[serde(default, borrow)]
    r: Option<&'a str>,
    #[serde(default, rename = "T")]
    next_funding: Option<i64>,
    /// 1 = USDⓈ-M, 2 = COIN-M (added 2026-06); absent means USDⓈ-M.
    #[serde(default)]
    st: Option<u8>,
}

fn opt_dec(field: &str, v: Option<&str>) -> ExResult<Option<Decimal>> {
    match v {
        Some(s) if !s.is_empty() => decimal(field, s).map(Some),
        _ => Ok(None),
    }
}

fn mark_price(w: &MarkPriceWire<'_>) -> ExResult<MarkPriceUpdate> {
    let mark = decimal("p", w.p)?;
    // A mark that is not positive is malformed input, never a price to act on (it would fake a
    // loss and fire the emergency exit).
    if mark <= Decimal::ZERO || w.s.is_empty() {
        return Err(ExchangeError::decode(format!("mark price {} of `{}` is not a positive price", mark, clip(w.s))));
    }
    Ok(MarkPriceUpdate {
        symbol: w.s.to_string(),
        mark_price: mark,
        index_price: opt_dec("i", w.i)?,
        funding_rate: opt_dec("r", w.r)?,
        next_funding_time: w.next_funding.filter(|t| *t > 0),
        event_time: w.event_time,
    })
}

fn mark_prices(json: &str) -> ExResult<MarketMessage> {
    let list: Vec<MarkPriceWire<'_>> = serde_json::from_str(json).map_err(|e| decode_err("mark prices", e))?;
    let mut out = Vec::with_capacity(list.len());
    for w in list.iter().filter(|w| w.st.is_none_or(|st| st == 1)) {
        out.push(mark_price(w)?);
    }
    Ok(MarketMessage::MarkPrices(out))
}

fn single_mark_price(json: &str) -> ExResult<MarketMessage> {
    let w: MarkPriceWire<'_> = serde_json::from_str(json).map_err(|e| decode_err("mark price", e))?;
    Ok(MarketMessage::MarkPrices(vec![mark_price(&w)?]))
}

/// `24hrMiniTicker` and `24hrTicker` share `E s c o v q`; the full ticker adds `P`.
#[derive(Deserialize)]
struct MiniTickerWire<'a> {
    #[serde(rename = "E")]
    event_time: i64,
    #[serde(borrow)]
    s: &'a str,
    #[serde(borrow)]
    c: &'a str,
    #[serde(borrow)]
    o: &'a str,
    #[serde(borrow)]
    v: &'a str,
    #[serde(borrow)]
    q: &'a str,
    #[serde(default)]
    st: Option<u8>,
}

fn ticker(w: &MiniTickerWire<'_>) -> ExResult<Ticker> {
    let last = float("c", w.c)?;
    let open = float("o", w.o)?;
    let change = if open > 0.0 { (last - open) / open * 100.0 } else { 0.0 };
    Ok(Ticker {
        symbol: w.s.to_string(),
        last_price: last,
        price_change_pct: change,
        volume: float("v", w.v)?,
        quote_volume: float("q", w.q)?,
        event_time: w.event_time,
    })
}

fn tickers(json: &str) -> ExResult<MarketMessage> {
    let list: Vec<MiniTickerWire<'_>> = serde_json::from_str(json).map_err(|e| decode_err("tickers", e))?;
    let mut out = Vec::with_capacity(list.len());
    for w in list.iter().filter(|w| w.st.is_none_or(|st| st == 1)) {
        out.push(ticker(w)?);
    }
    Ok(MarketMessage::Tickers(out))
}

fn single_ticker(json: &str) -> ExResult<MarketMessage> {
    let w: MiniTickerWire<'_> = serde_json::from_str(json).map_err(|e| decode_err("ticker", e))?;
    Ok(MarketMessage::Tickers(vec![ticker(&w)?]))
}

/// Decodes a payload by its stream name (combined mode).
fn by_stream(stream: &str, data: &str) -> ExResult<MarketMessage> {
    if stream.starts_with("!markPrice@arr") {
        mark_prices(data)
    } else if stream.starts_with("!miniTicker@arr") || stream.starts_with("!ticker@arr") {
        tickers(data)
    } else if stream.contains("@kline_") {
        kline_event(data)
    } else if stream.contains("@markPrice") {
        single_mark_price(data)
    } else if stream.ends_with("@miniTicker") || stream.ends_with("@ticker") {
        single_ticker(data)
    } else {
        Ok(MarketMessage::Ignored)
    }
}

#[derive(Deserialize)]
struct EventProbe<'a> {
    #[serde(default, borrow)]
    e: Option<&'a str>,
}

/// Decodes a raw payload by its event type (`ws` mode).
fn by_event(json: &str) -> ExResult<MarketMessage> {
    let trimmed = json.trim_start();
    if trimmed.starts_with('[') {
        // An all-market array: its first element names the event.
        let first: Vec<EventProbe<'_>> = serde_json::from_str(json).map_err(|e| decode_err("array", e))?;
        return match first.first().and_then(|p| p.e) {
            Some("markPriceUpdate") => mark_prices(json),
            Some("24hrMiniTicker") | Some("24hrTicker") => tickers(json),
            None if first.is_empty() => Ok(MarketMessage::Ignored),
            _ => Ok(MarketMessage::Ignored),
        };
    }
    let probe: EventProbe<'_> = serde_json::from_str(json).map_err(|e| decode_err("event", e))?;
    match probe.e {
        Some("kline") => kline_event(json),
        Some("markPriceUpdate") => single_mark_price(json),
        Some("24hrMiniTicker") | Some("24hrTicker") => single_ticker(json),
        Some(_) => Ok(MarketMessage::Ignored),
        None => Err(ExchangeError::decode("market frame without stream, id or event type")),
    }
}

/// What a combined stream's `data` holds, by the stream's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamKind {
    MarkArray,
    TickerArray,
    Kline,
    Mark,
    Ticker,
    Other,
}

fn stream_kind(stream: &str) -> StreamKind {
    if stream.starts_with("!markPrice@arr") {
        StreamKind::MarkArray
    } else if stream.starts_with("!miniTicker@arr") || stream.starts_with("!ticker@arr") {
        StreamKind::TickerArray
    } else if stream.contains("@kline_") {
        StreamKind::Kline
    } else if stream.contains("@markPrice") {
        StreamKind::Mark
    } else if stream.ends_with("@miniTicker") || stream.ends_with("@ticker") {
        StreamKind::Ticker
    } else {
        StreamKind::Other
    }
}

/// Decodes `data` straight into the typed message while the frame is parsed: one pass over
/// the bytes (the hot path: ~300 mark prices every second).
struct DataSeed(StreamKind);

struct MarkSeq;

impl<'de> Visitor<'de> for MarkSeq {
    type Value = Vec<MarkPriceUpdate>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of markPriceUpdate events")
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(512).min(4096));
        while let Some(w) = seq.next_element::<MarkPriceWire<'de>>()? {
            if w.st.is_none_or(|st| st == 1) {
                out.push(mark_price(&w).map_err(S::Error::custom)?);
            }
        }
        Ok(out)
    }
}

impl<'de> DeserializeSeed<'de> for DataSeed {
    type Value = MarketMessage;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let converted = match self.0 {
            StreamKind::MarkArray => return d.deserialize_seq(MarkSeq).map(MarketMessage::MarkPrices),
            StreamKind::TickerArray => {
                let list = Vec::<MiniTickerWire<'de>>::deserialize(d)?;
                list.iter()
                    .filter(|w| w.st.is_none_or(|st| st == 1))
                    .map(ticker)
                    .collect::<ExResult<Vec<_>>>()
                    .map(MarketMessage::Tickers)
            }
            StreamKind::Kline => kline_from_wire(&KlineEventWire::deserialize(d)?),
            StreamKind::Mark => mark_price(&MarkPriceWire::deserialize(d)?).map(|m| MarketMessage::MarkPrices(vec![m])),
            StreamKind::Ticker => ticker(&MiniTickerWire::deserialize(d)?).map(|t| MarketMessage::Tickers(vec![t])),
            StreamKind::Other => {
                IgnoredAny::deserialize(d)?;
                Ok(MarketMessage::Ignored)
            }
        };
        converted.map_err(D::Error::custom)
    }
}

/// A market frame after one pass.
enum FrameOut<'a> {
    Decoded(MarketMessage),
    /// `data` came before `stream`: decode it afterwards.
    Late(&'a str, &'a RawValue),
    Control {
        id: Option<u64>,
        code: Option<i64>,
        msg: Option<String>,
        event: bool,
    },
}

struct FrameVisitor;

impl<'de> Visitor<'de> for FrameVisitor {
    type Value = FrameOut<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a market stream frame")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut stream: Option<&'de str> = None;
        let mut decoded: Option<MarketMessage> = None;
        let mut late: Option<&'de RawValue> = None;
        let (mut id, mut code, mut msg, mut event) = (None, None, None, false);
        while let Some(key) = map.next_key::<&'de str>()? {
            match key {
                "stream" => stream = Some(map.next_value()?),
                "data" => match stream {
                    Some(s) => decoded = Some(map.next_value_seed(DataSeed(stream_kind(s)))?),
                    None => late = Some(map.next_value()?),
                },
                "id" => id = map.next_value::<Option<u64>>()?,
                "code" => code = map.next_value::<Option<i64>>()?,
                "msg" => msg = map.next_value::<Option<String>>()?,
                "e" => {
                    event = true;
                    map.next_value::<IgnoredAny>()?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(match (decoded, stream, late) {
            (Some(m), _, _) => FrameOut::Decoded(m),
            (None, Some(s), Some(raw)) => FrameOut::Late(s, raw),
            _ => FrameOut::Control { id, code, msg, event },
        })
    }
}

impl<'de> Deserialize<'de> for FrameOut<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(FrameVisitor)
    }
}

/// Decodes one text frame of a market stream.
///
/// # Errors
/// [`ExchangeError::Decode`] for malformed JSON or a known event with unreadable fields.
pub fn decode_market(bytes: &[u8]) -> ExResult<MarketMessage> {
    let text = || std::str::from_utf8(bytes).map_err(|e| decode_err("market frame", e));
    if bytes.trim_ascii_start().starts_with(b"[") {
        return by_event(text()?);
    }
    // From the bytes: serde_json checks UTF-8 inside strings as it goes, no separate pass.
    match serde_json::from_slice::<FrameOut<'_>>(bytes).map_err(|e| decode_err("market frame", e))? {
        FrameOut::Decoded(m) => Ok(m),
        FrameOut::Late(stream, raw) => by_stream(stream, raw.get()),
        FrameOut::Control { code: Some(code), msg, .. } => {
            Ok(MarketMessage::ControlError { code, msg: msg.unwrap_or_default() })
        }
        FrameOut::Control { event: true, .. } => by_event(text()?),
        FrameOut::Control { id: Some(id), .. } => Ok(MarketMessage::Ack { id }),
        FrameOut::Control { .. } => Err(ExchangeError::decode("market frame without stream, id or event type")),
    }
}

// ---------------------------------------------------------------------------------------------
// User data stream

/// One decoded frame of the user data stream.
#[derive(Debug, Clone, PartialEq)]
pub enum UserMessage {
    Order {
        report: OrderReport,
        fill: Option<Fill>,
    },
    Account {
        balance: Option<AccountBalance>,
        positions: Vec<ExchangePosition>,
        time: TimestampMs,
        /// USDT deposited (+) or withdrawn (−) by this event, for transfer reasons only.
        transfer: Option<Decimal>,
    },
    Algo {
        stop: StopOrder,
        key: AlgoUpdateKey,
    },
    MarginCall {
        symbols: Vec<String>,
        time: TimestampMs,
    },
    ListenKeyExpired,
    /// An event we do not use (TRADE_LITE, ACCOUNT_CONFIG_UPDATE, ...), by name.
    Ignored(String),
}

/// What makes two ALGO_UPDATE frames the same update: algo id, status, the matching-engine
/// order id (`ai`, set once triggered) and the `ia` flag when the exchange sends one. Replays
/// after a reconnect carry the same key and are dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AlgoUpdateKey {
    pub algo_id: i64,
    pub status: String,
    pub actual_order_id: String,
    pub ia: String,
}

#[derive(Deserialize)]
struct UserFrame<'a> {
    #[serde(default, borrow)]
    data: Option<&'a RawValue>,
    #[serde(default, borrow)]
    e: Option<&'a str>,
}

#[derive(Deserialize)]
struct OrderEventWire {
    #[serde(rename = "E")]
    event_time: i64,
    o: OrderUpdateWire,
}

#[derive(Deserialize)]
struct OrderUpdateWire {
    s: String,
    c: String,
    #[serde(rename = "S")]
    side: String,
    q: String,
    #[serde(default)]
    ap: Option<String>,
    x: String,
    #[serde(rename = "X")]
    status: String,
    i: i64,
    #[serde(default)]
    l: Option<String>,
    #[serde(default)]
    z: Option<String>,
    #[serde(default, rename = "L")]
    last_price: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default, rename = "T")]
    trade_time: Option<i64>,
    #[serde(default)]
    t: Option<i64>,
    #[serde(default, rename = "R")]
    reduce_only: Option<bool>,
    #[serde(default)]
    rp: Option<String>,
}

fn opt_zero(field: &str, v: &Option<String>) -> ExResult<Decimal> {
    match v {
        Some(s) => decimal_or_zero(field, s),
        None => Ok(Decimal::ZERO),
    }
}

fn order_update(json: &str) -> ExResult<UserMessage> {
    let w: OrderEventWire = serde_json::from_str(json).map_err(|e| decode_err("ORDER_TRADE_UPDATE", e))?;
    let o = w.o;
    let time = o.trade_time.filter(|t| *t > 0).unwrap_or(w.event_time);
    let order_side = side(&o.side)?;
    let reduce_only = o.reduce_only.unwrap_or(false);
    let last_qty = opt_zero("l", &o.l)?;
    let fill = if (o.x == "TRADE" || o.x == "CALCULATED") && last_qty > Decimal::ZERO {
        Some(Fill {
            symbol: o.s.clone(),
            client_order_id: o.c.clone(),
            order_id: o.i,
            trade_id: o.t.unwrap_or(0),
            side: order_side,
            price: opt_zero("L", &o.last_price)?,
            qty: last_qty,
            fee: opt_zero("n", &o.n)?.abs(),
            realized_pnl: opt_zero("rp", &o.rp)?,
            reduce_only,
            time,
        })
    } else {
        None
    };
    let report = OrderReport {
        status: order_status(&o.status)?,
        orig_qty: decimal_or_zero("q", &o.q)?,
        executed_qty: opt_zero("z", &o.z)?,
        avg_price: opt_zero("ap", &o.ap)?,
        side: order_side,
        reduce_only,
        update_time: time,
        order_id: o.i,
        symbol: o.s,
        client_order_id: o.c,
    };
    Ok(UserMessage::Order { report, fill })
}

#[derive(Deserialize)]
struct AccountEventWire {
    #[serde(rename = "E")]
    event_time: i64,
    #[serde(default, rename = "T")]
    tx_time: Option<i64>,
    a: AccountUpdateWire,
}

#[derive(Deserialize)]
struct AccountUpdateWire {
    /// Why the account changed (ORDER, FUNDING_FEE, DEPOSIT, WITHDRAW, ...).
    #[serde(default)]
    m: Option<String>,
    #[serde(default, rename = "B")]
    balances: Vec<BalanceWire>,
    #[serde(default, rename = "P")]
    positions: Vec<PositionWire>,
}

#[derive(Deserialize)]
struct BalanceWire {
    a: String,
    wb: String,
    #[serde(default)]
    cw: Option<String>,
    /// Balance change excluding PnL and commission.
    #[serde(default)]
    bc: Option<String>,
}

/// `ACCOUNT_UPDATE` reasons that move money in or out of the futures wallet without being
/// profit or loss.
const TRANSFER_REASONS: [&str; 9] = [
    "DEPOSIT",
    "WITHDRAW",
    "WITHDRAW_REJECT",
    "ADMIN_DEPOSIT",
    "ADMIN_WITHDRAW",
    "ASSET_TRANSFER",
    "MARGIN_TRANSFER",
    "COIN_SWAP_DEPOSIT",
    "COIN_SWAP_WITHDRAW",
];

#[derive(Deserialize)]
struct PositionWire {
    s: String,
    pa: String,
    #[serde(default)]
    ep: Option<String>,
    #[serde(default)]
    up: Option<String>,
    #[serde(default)]
    ps: Option<String>,
}

/// ACCOUNT_UPDATE carries only wallet (`wb`) and cross-wallet (`cw`) balances and the changed
/// positions. The balance reported: wallet = `wb`, available ≈ `cw`, unrealized PnL = sum of the
/// listed positions' `up`, equity = wallet + that sum. Positions have no mark price or leverage
/// in this event: the mark is derived from `ep + up / pa`, leverage is 0 (unknown).
fn account_update(json: &str) -> ExResult<UserMessage> {
    let w: AccountEventWire = serde_json::from_str(json).map_err(|e| decode_err("ACCOUNT_UPDATE", e))?;
    let time = w.tx_time.filter(|t| *t > 0).unwrap_or(w.event_time);
    let mut positions = Vec::with_capacity(w.a.positions.len());
    let mut upnl_sum = Decimal::ZERO;
    for p in &w.a.positions {
        let amt = decimal("pa", &p.pa)?;
        let entry = opt_zero("ep", &p.ep)?;
        let upnl = opt_zero("up", &p.up)?;
        upnl_sum += upnl;
        let direction = match p.ps.as_deref() {
            Some("LONG") => Direction::Long,
            Some("SHORT") => Direction::Short,
            _ if amt.is_sign_negative() => Direction::Short,
            _ => Direction::Long,
        };
        let mark = if amt.is_zero() { entry } else { entry + upnl.checked_div(amt).unwrap_or(Decimal::ZERO) };
        positions.push(ExchangePosition {
            symbol: p.s.clone(),
            direction,
            qty: amt.abs(),
            entry_price: entry,
            mark_price: mark,
            unrealized_pnl: upnl,
            leverage: 0,
            liquidation_price: None,
            update_time: time,
        });
    }
    let quote = w.a.balances.iter().find(|b| b.a == super::wire::QUOTE_ASSET);
    let is_transfer = w.a.m.as_deref().is_some_and(|m| TRANSFER_REASONS.contains(&m));
    let transfer = match quote.filter(|_| is_transfer) {
        Some(b) => Some(opt_zero("bc", &b.bc)?),
        None => None,
    };
    let balance = match quote {
        Some(b) => {
            let wallet = decimal("wb", &b.wb)?;
            Some(AccountBalance {
                wallet_balance: wallet,
                equity: wallet + upnl_sum,
                available_balance: opt_zero("cw", &b.cw)?,
                unrealized_pnl: upnl_sum,
            })
        }
        None => None,
    };
    Ok(UserMessage::Account { balance, positions, time, transfer })
}

#[derive(Deserialize)]
struct AlgoEventWire {
    #[serde(rename = "E")]
    event_time: i64,
    #[serde(default, rename = "T")]
    tx_time: Option<i64>,
    o: AlgoUpdateWire,
}

#[derive(Deserialize)]
struct AlgoUpdateWire {
    #[serde(default)]
    caid: String,
    aid: i64,
    s: String,
    #[serde(rename = "S")]
    side: String,
    #[serde(default)]
    q: Option<String>,
    #[serde(rename = "X")]
    status: String,
    #[serde(default)]
    ai: Option<serde_json::Value>,
    #[serde(default)]
    ia: Option<serde_json::Value>,
    #[serde(default)]
    tp: Option<String>,
    #[serde(default, rename = "R")]
    reduce_only: Option<bool>,
    #[serde(default)]
    cp: Option<bool>,
}

fn value_text(v: &Option<serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn algo_update(json: &str) -> ExResult<UserMessage> {
    let w: AlgoEventWire = serde_json::from_str(json).map_err(|e| decode_err("ALGO_UPDATE", e))?;
    let o = w.o;
    let stop = StopOrder {
        algo_id: o.aid,
        client_id: o.caid,
        side: side(&o.side)?,
        qty: opt_zero("q", &o.q)?,
        trigger_price: opt_zero("tp", &o.tp)?,
        reduce_only: o.reduce_only.unwrap_or(false) || o.cp.unwrap_or(false),
        status: stop_status(&o.status)?,
        update_time: w.tx_time.filter(|t| *t > 0).unwrap_or(w.event_time),
        symbol: o.s,
    };
    let key =
        AlgoUpdateKey { algo_id: o.aid, status: o.status, actual_order_id: value_text(&o.ai), ia: value_text(&o.ia) };
    Ok(UserMessage::Algo { stop, key })
}

#[derive(Deserialize)]
struct MarginCallWire {
    #[serde(rename = "E")]
    event_time: i64,
    #[serde(default)]
    p: Vec<MarginCallPositionWire>,
}

#[derive(Deserialize)]
struct MarginCallPositionWire {
    s: String,
}

fn margin_call(json: &str) -> ExResult<UserMessage> {
    let w: MarginCallWire = serde_json::from_str(json).map_err(|e| decode_err("MARGIN_CALL", e))?;
    let mut symbols: Vec<String> = w.p.into_iter().map(|p| p.s).collect();
    symbols.sort();
    symbols.dedup();
    Ok(UserMessage::MarginCall { symbols, time: w.event_time })
}

fn user_event(json: &str) -> ExResult<UserMessage> {
    let probe: EventProbe<'_> = serde_json::from_str(json).map_err(|e| decode_err("user event", e))?;
    match probe.e {
        Some("ORDER_TRADE_UPDATE") => order_update(json),
        Some("ACCOUNT_UPDATE") => account_update(json),
        Some("ALGO_UPDATE") => algo_update(json),
        Some("MARGIN_CALL") => margin_call(json),
        Some("listenKeyExpired") => Ok(UserMessage::ListenKeyExpired),
        Some(other) => Ok(UserMessage::Ignored(clip(other))),
        None => Err(ExchangeError::decode("user event without `e`")),
    }
}

/// Decodes one text frame of the user data stream (raw or wrapped in `{"stream","data"}`).
///
/// # Errors
/// [`ExchangeError::Decode`] for malformed JSON or a known event with unreadable fields.
pub fn decode_user(bytes: &[u8]) -> ExResult<UserMessage> {
    let text = std::str::from_utf8(bytes).map_err(|e| decode_err("user frame", e))?;
    let frame: UserFrame<'_> = serde_json::from_str(text).map_err(|e| decode_err("user frame", e))?;
    match (frame.e, frame.data) {
        (None, Some(data)) => user_event(data.get()),
        (Some(_), _) => user_event(text),
        (None, None) => Err(ExchangeError::decode("user frame without `e` or `data`")),
    }
}
