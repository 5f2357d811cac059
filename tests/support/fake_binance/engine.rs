//! The matching engine: order validation with Binance's error codes, immediate fills for MARKET
//! orders at the last price, resting LIMIT orders, one-way (or hedge) positions with average entry
//! price, realized PnL, fees, margin checks, conditional (algo) orders triggered by the mark or
//! last price, funding, and the user-stream events all of that produces.

use rand::Rng;
use rand::distr::Alphanumeric;
use rust_decimal::Decimal;

use super::algo::{finish_algo_of, track_trailing, trigger_algo, trigger_reached, working_price};
use super::json;
use super::state::{AlgoOrder, FillRecord, Order, Position, State, fmt_dec};

/// A Binance error answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub http_status: u16,
    pub code: i64,
    pub msg: String,
}

impl ApiError {
    pub fn new(code: i64, msg: impl Into<String>) -> Self {
        ApiError { http_status: 400, code, msg: msg.into() }
    }

    pub fn with_status(mut self, http_status: u16) -> Self {
        self.http_status = http_status;
        self
    }

    pub fn mandatory(name: &str) -> Self {
        ApiError::new(-1102, format!("Mandatory parameter '{name}' was not sent, was empty/null, or malformed."))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Conditional types that `/fapi/v1/order` refuses since 2025-12-09.
pub const CONDITIONAL_TYPES: [&str; 5] =
    ["STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"];

/// Parameters of a new order after decoding.
#[derive(Debug, Clone, Default)]
pub struct NewOrder {
    pub symbol: String,
    pub side: String,
    pub position_side: Option<String>,
    pub order_type: String,
    pub time_in_force: Option<String>,
    pub quantity: Option<Decimal>,
    pub price: Option<Decimal>,
    /// `Some` when the parameter was sent.
    pub reduce_only: Option<bool>,
    pub client_order_id: Option<String>,
}

fn valid_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 36
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '/' | '_' | '-'))
}

fn random_id(st: &mut State, len: usize) -> String {
    (&mut st.rng).sample_iter(Alphanumeric).take(len).map(char::from).collect()
}

/// `a × b`, saturating instead of panicking on overflow (absurd inputs are refused later).
pub(super) fn mul(a: Decimal, b: Decimal) -> Decimal {
    a.checked_mul(b).unwrap_or(Decimal::MAX)
}

pub(super) fn sign_of(side: &str) -> Decimal {
    if side == "BUY" { Decimal::ONE } else { Decimal::NEGATIVE_ONE }
}

/// Checks a quantity against LOT_SIZE (or MARKET_LOT_SIZE) rules.
pub(super) fn check_qty(st: &State, symbol: &str, qty: Decimal, market: bool) -> ApiResult<()> {
    let Some(m) = st.markets.get(symbol) else { return Err(ApiError::new(-1121, "Invalid symbol.")) };
    let s = &m.spec;
    if qty <= Decimal::ZERO {
        return Err(ApiError::new(-4003, "Quantity less than or equal to zero."));
    }
    if !s.step_size.is_zero() && qty.normalize().scale() > s.step_size.normalize().scale() {
        return Err(ApiError::new(-1111, "Precision is over the maximum defined for this asset."));
    }
    if !s.step_size.is_zero() && !((qty - s.min_qty) % s.step_size).is_zero() {
        return Err(ApiError::new(-4023, "Quantity not increased by step size."));
    }
    if qty < s.min_qty {
        return Err(ApiError::new(-4004, "Quantity less than min qty."));
    }
    let max = if market { s.market_max_qty } else { s.max_qty };
    if !max.is_zero() && qty > max {
        return Err(ApiError::new(-4005, "Quantity greater than max qty."));
    }
    Ok(())
}

/// Checks a price (or trigger price) against PRICE_FILTER.
pub(super) fn check_price(st: &State, symbol: &str, price: Decimal) -> ApiResult<()> {
    let Some(m) = st.markets.get(symbol) else { return Err(ApiError::new(-1121, "Invalid symbol.")) };
    let s = &m.spec;
    if price <= Decimal::ZERO {
        return Err(ApiError::new(-4001, "Price less than 0."));
    }
    if !s.tick_size.is_zero() && price.normalize().scale() > s.tick_size.normalize().scale() {
        return Err(ApiError::new(-1111, "Precision is over the maximum defined for this asset."));
    }
    if !s.tick_size.is_zero() && !((price - s.min_price) % s.tick_size).is_zero() {
        return Err(ApiError::new(-4014, "Price not increased by tick size."));
    }
    if price < s.min_price {
        return Err(ApiError::new(-4013, "Price less than min price."));
    }
    if !s.max_price.is_zero() && price > s.max_price {
        return Err(ApiError::new(-4016, "Price greater than max price."));
    }
    Ok(())
}

/// Position side to use, with the one-way/hedge rules (-4061, -1106).
pub(super) fn resolve_position_side(st: &State, ps: Option<&str>, reduce_only_sent: bool) -> ApiResult<String> {
    if st.hedge_mode {
        if reduce_only_sent {
            return Err(ApiError::new(-1106, "Parameter 'reduceOnly' sent when not required."));
        }
        match ps {
            Some("LONG") | Some("SHORT") => Ok(ps.unwrap_or_default().to_string()),
            _ => Err(ApiError::new(-4061, "Order's position side does not match user's setting.")),
        }
    } else {
        match ps {
            None | Some("BOTH") => Ok("BOTH".into()),
            _ => Err(ApiError::new(-4061, "Order's position side does not match user's setting.")),
        }
    }
}

/// Whether an order on `side`/`position_side` reduces the position, and how much it can close.
pub(super) fn reducible(st: &State, symbol: &str, side: &str, position_side: &str) -> Decimal {
    let amt = st.position(symbol, position_side).map(|p| p.amount).unwrap_or_default();
    let closes = match position_side {
        "LONG" => side == "SELL",
        "SHORT" => side == "BUY",
        _ => (side == "SELL" && amt > Decimal::ZERO) || (side == "BUY" && amt < Decimal::ZERO),
    };
    if closes { amt.abs() } else { Decimal::ZERO }
}

/// True for orders that may only reduce: reduce-only in one-way mode, the closing side in hedge mode.
pub(super) fn is_closing(side: &str, position_side: &str, reduce_only: bool) -> bool {
    match position_side {
        "LONG" => side == "SELL",
        "SHORT" => side == "BUY",
        _ => reduce_only,
    }
}

/// A client-chosen id must be well-formed (-4015) and not used by a known order (-4116).
pub(super) fn check_client_id_free(st: &State, id: &str, algo: bool) -> ApiResult<()> {
    if !valid_client_id(id) {
        return Err(ApiError::new(-4015, "Client order id is not valid."));
    }
    let dup = if algo {
        st.algo_orders.values().any(|a| a.client_algo_id == id)
    } else {
        st.orders.values().any(|o| o.client_order_id == id && o.algo_id.is_none())
    };
    if dup {
        return Err(ApiError::new(-4116, "ClientOrderId is duplicated."));
    }
    Ok(())
}

pub(super) fn check_client_id(st: &mut State, given: Option<String>, algo: bool) -> ApiResult<String> {
    match given {
        Some(id) => {
            check_client_id_free(st, &id, algo)?;
            Ok(id)
        }
        None => Ok(random_id(st, 22)),
    }
}

/// ORDERS rate limits (300 per 10 s, 1200 per minute by default): -1015 (HTTP 429).
pub(super) fn check_order_rate(st: &State) -> ApiResult<()> {
    let now = st.now();
    let (limit_10s, limit_1m) = st.cfg.order_limits;
    if st.order_count_10s.0 == now / 10_000 && st.order_count_10s.1 >= limit_10s {
        return Err(ApiError::new(
            -1015,
            format!("Too many new orders; current limit is {limit_10s} orders per TEN_SECONDS."),
        )
        .with_status(429));
    }
    if st.order_count_1m.0 == now / 60_000 && st.order_count_1m.1 >= limit_1m {
        return Err(ApiError::new(
            -1015,
            format!("Too many new orders; current limit is {limit_1m} orders per MINUTE."),
        )
        .with_status(429));
    }
    Ok(())
}

pub(super) fn count_order(st: &mut State) {
    let now = st.now();
    let (w10, w60) = (now / 10_000, now / 60_000);
    st.order_count_10s = if st.order_count_10s.0 == w10 { (w10, st.order_count_10s.1 + 1) } else { (w10, 1) };
    st.order_count_1m = if st.order_count_1m.0 == w60 { (w60, st.order_count_1m.1 + 1) } else { (w60, 1) };
}

/// Initial margin needed to open `open_qty` at `price`, plus the taker fee.
pub(super) fn margin_ok(st: &State, symbol: &str, open_qty: Decimal, price: Decimal) -> bool {
    if open_qty.is_zero() {
        return true;
    }
    let lev = st.markets.get(symbol).map(|m| m.leverage.max(1)).unwrap_or(1);
    let notional = mul(open_qty, price);
    let need = (notional / Decimal::from(lev)).saturating_add(mul(notional, st.cfg.taker_fee_rate));
    need <= st.available_balance()
}

/// `POST /fapi/v1/order`. Returns the order id.
pub fn place_order(st: &mut State, req: NewOrder) -> ApiResult<i64> {
    let Some(market) = st.markets.get(&req.symbol).cloned() else {
        return Err(ApiError::new(-1121, "Invalid symbol."));
    };
    if req.side != "BUY" && req.side != "SELL" {
        return Err(ApiError::new(-1117, "Invalid side."));
    }
    if CONDITIONAL_TYPES.contains(&req.order_type.as_str()) {
        return Err(ApiError::new(
            -4120,
            "Order type not supported for this endpoint. Please use the Algo Order API endpoints instead.",
        ));
    }
    if req.order_type != "MARKET" && req.order_type != "LIMIT" {
        return Err(ApiError::new(-1116, "Invalid orderType."));
    }
    check_order_rate(st)?;
    // Id checks first, so that a blind resend of an order that landed always gets -4116.
    if let Some(id) = &req.client_order_id {
        check_client_id_free(st, id, false)?;
    }
    let position_side = resolve_position_side(st, req.position_side.as_deref(), req.reduce_only.is_some())?;
    let reduce_only = req.reduce_only.unwrap_or(false);
    let qty = req.quantity.ok_or_else(|| ApiError::mandatory("quantity"))?;
    let is_market = req.order_type == "MARKET";
    check_qty(st, &req.symbol, qty, is_market)?;
    let tif = if is_market {
        if req.time_in_force.is_some() {
            return Err(ApiError::new(-1106, "Parameter 'timeInForce' sent when not required."));
        }
        "GTC".to_string()
    } else {
        let tif = req.time_in_force.clone().ok_or_else(|| ApiError::mandatory("timeInForce"))?;
        if !["GTC", "IOC", "FOK", "GTX", "GTD"].contains(&tif.as_str()) {
            return Err(ApiError::new(-1115, "Invalid timeInForce."));
        }
        tif
    };
    let price = if is_market {
        Decimal::ZERO
    } else {
        let p = req.price.ok_or_else(|| ApiError::mandatory("price"))?;
        check_price(st, &req.symbol, p)?;
        let s = &market.spec;
        if req.side == "BUY" && !s.multiplier_up.is_zero() && p > mul(market.mark_price, s.multiplier_up) {
            return Err(ApiError::new(
                -4016,
                format!(
                    "Limit price can't be higher than {}.",
                    fmt_dec((market.mark_price * s.multiplier_up).round_dp(s.tick_size.normalize().scale()))
                ),
            ));
        }
        if req.side == "SELL" && p < mul(market.mark_price, s.multiplier_down) {
            return Err(ApiError::new(
                -4024,
                format!(
                    "Limit price can't be lower than {}.",
                    fmt_dec((market.mark_price * s.multiplier_down).round_dp(s.tick_size.normalize().scale()))
                ),
            ));
        }
        p
    };
    // A closing order (reduce-only, or the closing side in hedge mode) never opens or flips.
    let closing = is_closing(&req.side, &position_side, reduce_only);
    let closable = reducible(st, &req.symbol, &req.side, &position_side);
    if !closing {
        if market.spec.status != "TRADING" {
            return Err(ApiError::new(-4140, "Invalid symbol status for opening position."));
        }
        if market.locked {
            return Err(ApiError::new(
                -4400,
                "Futures Trading Quantitative Rules violated, only reduceOnly order is allowed, please try again later.",
            ));
        }
    }
    let ref_price = if is_market { market.mark_price } else { price };
    if !closing && mul(qty, ref_price) < market.spec.min_notional {
        return Err(ApiError::new(
            -4164,
            format!(
                "Order's notional must be no smaller than {} (unless you choose reduce only).",
                fmt_dec(market.spec.min_notional)
            ),
        ));
    }
    if closing && closable.is_zero() {
        return Err(ApiError::new(-2022, "ReduceOnly Order is rejected."));
    }
    let fill_price = if is_market { market.last_price } else { price };
    let open_qty = if closing { Decimal::ZERO } else { (qty - closable).max(Decimal::ZERO) };
    if !margin_ok(st, &req.symbol, open_qty, fill_price) {
        return Err(ApiError::new(-2019, "Margin is insufficient."));
    }
    let marketable = is_market
        || (req.side == "BUY" && market.last_price <= price)
        || (req.side == "SELL" && market.last_price >= price);
    if tif == "GTX" && marketable {
        return Err(ApiError::new(
            -5022,
            "Due to the order could not be executed as maker, the Post Only order will be rejected. The order will not be recorded in the order history",
        ));
    }
    let client_order_id = check_client_id(st, req.client_order_id.clone(), false)?;
    count_order(st);
    let now = st.now();
    let order_id = st.next_order_id;
    st.next_order_id += 1;
    let order = Order {
        order_id,
        client_order_id,
        symbol: req.symbol.clone(),
        side: req.side.clone(),
        position_side,
        order_type: req.order_type.clone(),
        orig_type: req.order_type.clone(),
        time_in_force: tif.clone(),
        price,
        stop_price: Decimal::ZERO,
        orig_qty: qty,
        executed_qty: Decimal::ZERO,
        cum_quote: Decimal::ZERO,
        avg_price: Decimal::ZERO,
        status: "NEW".into(),
        reduce_only,
        close_position: false,
        working_type: "CONTRACT_PRICE".into(),
        time: now,
        update_time: now,
        algo_id: None,
    };
    st.orders.insert(order_id, order);
    emit_order_update(st, order_id, "NEW", None);
    if marketable {
        // Taker fill at the last price (a marketable LIMIT gets the better last price too).
        execute(st, order_id, market.last_price, false);
    } else if tif == "IOC" || tif == "FOK" {
        finish_unfilled(st, order_id, "EXPIRED");
    }
    Ok(order_id)
}

pub(super) fn emit_order_update(st: &mut State, order_id: i64, exec_type: &str, fill: Option<&FillRecord>) {
    let Some(o) = st.orders.get(&order_id).cloned() else { return };
    let t = st.event_time();
    let ev = json::order_update_event(st, &o, exec_type, fill, t);
    st.emit_user(ev);
}

pub(super) fn finish_unfilled(st: &mut State, order_id: i64, status: &str) {
    let now = st.now();
    if let Some(o) = st.orders.get_mut(&order_id) {
        o.status = status.to_string();
        o.update_time = now;
    }
    emit_order_update(st, order_id, status, None);
    finish_algo_of(st, order_id);
}

/// Fills (what can be filled of) an open order at `price`; reduce-only orders are clamped to the
/// position and the remainder expires.
pub(super) fn execute(st: &mut State, order_id: i64, price: Decimal, maker: bool) {
    execute_as(st, order_id, price, maker, None);
}

/// `execute`; with `liquidation_fee` the fill is a liquidation: x=CALCULATED, no TRADE_LITE, and
/// the given clearance fee instead of the trading fee.
pub(super) fn execute_as(st: &mut State, order_id: i64, price: Decimal, maker: bool, liquidation_fee: Option<Decimal>) {
    let Some(o) = st.orders.get(&order_id).cloned() else { return };
    let mut qty = o.orig_qty - o.executed_qty;
    let closing = o.close_position || is_closing(&o.side, &o.position_side, o.reduce_only);
    if closing {
        qty = qty.min(reducible(st, &o.symbol, &o.side, &o.position_side));
    }
    if qty <= Decimal::ZERO {
        finish_unfilled(st, order_id, "EXPIRED");
        return;
    }
    let now = st.now();
    let fee_rate = if maker { st.cfg.maker_fee_rate } else { st.cfg.taker_fee_rate };
    let key = (o.symbol.clone(), o.position_side.clone());
    let mut pos = st.positions.get(&key).cloned().unwrap_or_else(|| Position {
        symbol: o.symbol.clone(),
        position_side: o.position_side.clone(),
        ..Position::default()
    });
    let delta = qty * sign_of(&o.side);
    let a = pos.amount;
    let mut realized = Decimal::ZERO;
    if a.is_zero() || a.is_sign_positive() == delta.is_sign_positive() {
        let new_abs = a.abs() + qty;
        pos.entry_price = ((a.abs() * pos.entry_price + qty * price) / new_abs).round_dp(8);
        pos.amount = a + delta;
    } else {
        let close_qty = qty.min(a.abs());
        let dir = if a > Decimal::ZERO { Decimal::ONE } else { Decimal::NEGATIVE_ONE };
        realized = (close_qty * (price - pos.entry_price) * dir).round_dp(8);
        let rest = qty - close_qty;
        if rest > Decimal::ZERO {
            pos.amount = rest * sign_of(&o.side);
            pos.entry_price = price;
        } else {
            pos.amount = a + delta;
            if pos.amount.is_zero() {
                pos.entry_price = Decimal::ZERO;
            }
        }
    }
    pos.accumulated_realized += realized;
    pos.update_time = now;
    let fee = match liquidation_fee {
        Some(f) => f.max(Decimal::ZERO).round_dp(8),
        None => (qty * price * fee_rate).round_dp(8),
    };
    st.wallet_balance += realized - fee;
    st.positions.insert(key, pos.clone());
    let trade_id = st.next_trade_id;
    st.next_trade_id += 1;
    let fill = FillRecord {
        trade_id,
        order_id,
        client_order_id: o.client_order_id.clone(),
        symbol: o.symbol.clone(),
        side: o.side.clone(),
        position_side: o.position_side.clone(),
        price,
        qty,
        quote_qty: qty * price,
        commission: fee,
        realized_pnl: realized,
        maker,
        reduce_only: o.reduce_only,
        time: now,
    };
    st.fills.push(fill.clone());
    let done;
    {
        let Some(ord) = st.orders.get_mut(&order_id) else { return };
        ord.executed_qty += qty;
        ord.cum_quote += qty * price;
        ord.avg_price = (ord.cum_quote / ord.executed_qty).round_dp(8);
        ord.status = if ord.executed_qty >= ord.orig_qty { "FILLED".into() } else { "PARTIALLY_FILLED".into() };
        ord.update_time = now;
        done = ord.status == "FILLED";
    }
    if liquidation_fee.is_some() {
        emit_order_update(st, order_id, "CALCULATED", Some(&fill));
    } else {
        let t = st.event_time();
        if let Some(ord) = st.orders.get(&order_id).cloned() {
            st.emit_user(json::trade_lite_event(&ord, &fill, t));
        }
        emit_order_update(st, order_id, "TRADE", Some(&fill));
    }
    let t = st.event_time();
    let ev = json::account_update_event(st, "ORDER", &[pos], Decimal::ZERO, t);
    st.emit_user(ev);
    if done {
        finish_algo_of(st, order_id);
    } else if o.order_type == "MARKET" || closing {
        // The part of a reduce-only/market order that could not be filled expires.
        finish_unfilled(st, order_id, "EXPIRED");
    }
}

/// Cancels an open order (`DELETE /fapi/v1/order`).
pub fn cancel_order(st: &mut State, order_id: i64) -> ApiResult<()> {
    match st.orders.get(&order_id) {
        Some(o) if o.is_open() => {
            finish_unfilled(st, order_id, "CANCELED");
            Ok(())
        }
        _ => Err(ApiError::new(-2011, "Unknown order sent.")),
    }
}

/// After a price change: fills crossing LIMIT orders and fires reached triggers.
pub fn on_price_change(st: &mut State, symbol: &str) {
    let last = st.markets.get(symbol).map(|m| m.last_price).unwrap_or_default();
    let crossing: Vec<(i64, Decimal)> = st
        .orders
        .values()
        .filter(|o| o.symbol == symbol && o.is_open() && o.order_type == "LIMIT")
        .filter(|o| (o.side == "BUY" && last <= o.price) || (o.side == "SELL" && last >= o.price))
        .map(|o| (o.order_id, o.price))
        .collect();
    for (id, px) in crossing {
        execute(st, id, px, true);
    }
    let working: Vec<(i64, Decimal)> = st
        .algo_orders
        .values()
        .filter(|a| a.symbol == symbol && a.is_open() && a.order_type == "TRAILING_STOP_MARKET")
        .map(|a| (a.algo_id, working_price(st, a)))
        .collect();
    for (id, price) in working {
        let mut activated = false;
        if let Some(a) = st.algo_orders.get_mut(&id) {
            let before = a.trailing_extreme.is_some();
            track_trailing(a, price);
            activated = !before && a.trailing_extreme.is_some();
        }
        if activated {
            // The second NEW (`ia:true`) of a trailing stop reaching its activatePrice.
            super::algo::emit_algo_update(st, id);
        }
    }
    let fired: Vec<i64> = st
        .algo_orders
        .values()
        .filter(|a| a.symbol == symbol && a.is_open() && trigger_reached(a, working_price(st, a)))
        .map(|a| a.algo_id)
        .collect();
    for id in fired {
        // An earlier trigger may have changed the picture; re-check before firing.
        if st.algo_orders.get(&id).is_some_and(|a| a.is_open()) {
            trigger_algo(st, id);
        }
    }
    check_liquidations(st, symbol);
}

/// Liquidates (opt-in, `FakeBinance::set_liquidation`) every position of `symbol` whose margin —
/// initial margin at entry plus unrealized PnL at the mark — fell to its maintenance margin: an
/// `autoclose-` IOC order closes it at the mark (ORDER_TRADE_UPDATE x=CALCULATED, NEW then
/// FILLED) and what is left of its margin goes as the clearance fee, so the whole margin is lost.
pub fn check_liquidations(st: &mut State, symbol: &str) {
    if !st.liquidation {
        return;
    }
    let Some(m) = st.markets.get(symbol).cloned() else { return };
    let lev = Decimal::from(m.leverage.max(1));
    let doomed: Vec<Position> = st
        .positions
        .values()
        .filter(|p| p.symbol == symbol && !p.amount.is_zero())
        .filter(|p| {
            let margin = p.amount.abs() * p.entry_price / lev;
            margin + st.unrealized(p) <= st.maint_margin(p)
        })
        .cloned()
        .collect();
    for p in doomed {
        let margin = p.amount.abs() * p.entry_price / lev;
        let remaining = margin + st.unrealized(&p);
        let now = st.now();
        let order_id = st.next_order_id;
        st.next_order_id += 1;
        let side = if p.amount > Decimal::ZERO { "SELL" } else { "BUY" };
        st.orders.insert(
            order_id,
            Order {
                order_id,
                client_order_id: format!("autoclose-{now}{order_id}"),
                symbol: symbol.to_string(),
                side: side.into(),
                position_side: p.position_side.clone(),
                order_type: "LIMIT".into(),
                orig_type: "LIMIT".into(),
                time_in_force: "IOC".into(),
                price: m.mark_price,
                stop_price: Decimal::ZERO,
                orig_qty: p.amount.abs(),
                executed_qty: Decimal::ZERO,
                cum_quote: Decimal::ZERO,
                avg_price: Decimal::ZERO,
                status: "NEW".into(),
                reduce_only: true,
                close_position: false,
                working_type: "CONTRACT_PRICE".into(),
                time: now,
                update_time: now,
                algo_id: None,
            },
        );
        emit_order_update(st, order_id, "CALCULATED", None);
        execute_as(st, order_id, m.mark_price, false, Some(remaining));
    }
}

/// Funding payment on every position of `symbol` at the current mark and funding rate
/// (longs pay when the rate is positive); ACCOUNT_UPDATE with reason FUNDING_FEE.
pub fn apply_funding(st: &mut State, symbol: &str) -> Decimal {
    let Some(m) = st.markets.get(symbol).cloned() else { return Decimal::ZERO };
    let positions: Vec<Position> =
        st.positions.values().filter(|p| p.symbol == symbol && !p.amount.is_zero()).cloned().collect();
    let mut total = Decimal::ZERO;
    for p in positions {
        let payment = (p.amount * m.mark_price * m.funding_rate).round_dp(8);
        st.wallet_balance -= payment;
        total -= payment;
        let t = st.event_time();
        let shown: Vec<Position> = if m.margin_type == "ISOLATED" { vec![p.clone()] } else { vec![] };
        let ev = json::account_update_event(st, "FUNDING_FEE", &shown, -payment, t);
        st.emit_user(ev);
    }
    total
}
