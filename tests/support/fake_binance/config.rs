//! Configuration of the fake server: account, fees, symbols with their trading rules, stream timing.

use std::str::FromStr;

use rust_decimal::Decimal;
use rust_decimal_macros::dec;

/// The documented Binance HMAC example key pair (docs/binance-usdm-futures.md §2). The fake server
/// uses it by default so the documented signature can be checked against it.
pub const DOC_API_KEY: &str = "dbefbc809e3e83c283a984c3a1459732ea7db1360ca80c5c2c8867408d28cc83";
pub const DOC_API_SECRET: &str = "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9";

/// One leverage bracket (`/fapi/v1/leverageBracket`).
#[derive(Debug, Clone, PartialEq)]
pub struct Bracket {
    pub initial_leverage: u32,
    pub notional_floor: Decimal,
    pub notional_cap: Decimal,
    pub maint_margin_ratio: Decimal,
    pub cum: Decimal,
}

/// A symbol listed by the fake server, with Binance's filters.
#[derive(Debug, Clone, PartialEq)]
pub struct SymbolSpec {
    pub symbol: String,
    pub base_asset: String,
    pub quote_asset: String,
    /// `PERPETUAL`, `CURRENT_QUARTER`, ...
    pub contract_type: String,
    /// `TRADING`, `SETTLING`, `PENDING_TRADING`, ...
    pub status: String,
    pub tick_size: Decimal,
    pub min_price: Decimal,
    pub max_price: Decimal,
    pub step_size: Decimal,
    pub min_qty: Decimal,
    pub max_qty: Decimal,
    pub market_max_qty: Decimal,
    /// MIN_NOTIONAL `notional`.
    pub min_notional: Decimal,
    pub multiplier_up: Decimal,
    pub multiplier_down: Decimal,
    pub max_num_orders: u32,
    pub price_precision: u32,
    pub quantity_precision: u32,
    /// Initial mark = last price.
    pub price: Decimal,
    /// 24 h statistics served by `ticker/24hr` and the mini-ticker streams.
    pub quote_volume_24h: Decimal,
    pub price_change_pct_24h: Decimal,
    pub funding_rate: Decimal,
    pub brackets: Vec<Bracket>,
}

impl SymbolSpec {
    /// A USDT perpetual with the given rules; everything else gets sensible defaults.
    pub fn new(symbol: &str, price: Decimal, tick_size: Decimal, step_size: Decimal, min_notional: Decimal) -> Self {
        let base = symbol.strip_suffix("USDT").unwrap_or(symbol).to_string();
        let price_precision = tick_size.normalize().scale();
        let quantity_precision = step_size.normalize().scale();
        SymbolSpec {
            symbol: symbol.to_string(),
            base_asset: base,
            quote_asset: "USDT".into(),
            contract_type: "PERPETUAL".into(),
            status: "TRADING".into(),
            tick_size,
            min_price: tick_size,
            max_price: price * dec!(1000),
            step_size,
            min_qty: step_size,
            max_qty: dec!(10000000),
            market_max_qty: dec!(1000000),
            min_notional,
            multiplier_up: dec!(1.0500),
            multiplier_down: dec!(0.9500),
            max_num_orders: 200,
            price_precision,
            quantity_precision,
            price,
            quote_volume_24h: dec!(50000000),
            price_change_pct_24h: dec!(1.5),
            funding_rate: dec!(0.0001),
            brackets: generated_brackets(50),
        }
    }

    /// Maximum leverage of the first bracket.
    pub fn max_leverage(&self) -> u32 {
        self.brackets.first().map(|b| b.initial_leverage).unwrap_or(1)
    }

    /// The bracket containing `notional`.
    pub fn bracket_for(&self, notional: Decimal) -> Option<&Bracket> {
        self.brackets.iter().find(|b| notional <= b.notional_cap).or(self.brackets.last())
    }
}

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap_or_default()
}

/// Brackets as in Binance's real tables (initial leverage, notional cap, maintenance ratio);
/// `cum` is derived the way Binance does (tax-bracket style).
pub fn brackets_from(rows: &[(u32, &str, &str)]) -> Vec<Bracket> {
    let mut out: Vec<Bracket> = Vec::new();
    let mut floor = Decimal::ZERO;
    let mut cum = Decimal::ZERO;
    let mut prev_mmr = Decimal::ZERO;
    for (lev, cap, mmr) in rows {
        let mmr = d(mmr);
        cum += floor * (mmr - prev_mmr);
        let cap = d(cap);
        out.push(Bracket {
            initial_leverage: *lev,
            notional_floor: floor,
            notional_cap: cap,
            maint_margin_ratio: mmr,
            cum,
        });
        floor = cap;
        prev_mmr = mmr;
    }
    out
}

/// Generic brackets starting at `max_leverage`.
pub fn generated_brackets(max_leverage: u32) -> Vec<Bracket> {
    let mut rows: Vec<(u32, String, String)> = Vec::new();
    let mut lev = max_leverage.max(1);
    let mut cap = Decimal::from(25_000);
    loop {
        let mmr = (Decimal::ONE / Decimal::from(lev * 2)).round_dp(4);
        rows.push((lev, cap.to_string(), mmr.to_string()));
        if lev == 1 {
            break;
        }
        lev = (lev / 2).max(1);
        cap *= Decimal::from(5);
    }
    let borrowed: Vec<(u32, &str, &str)> = rows.iter().map(|(l, c, m)| (*l, c.as_str(), m.as_str())).collect();
    brackets_from(&borrowed)
}

/// BTCUSDT, ETHUSDT, SOLUSDT with the filters and brackets of the real exchangeInfo /
/// leverageBracket captures (tests/fixtures/binance/rest/*_trimmed.json).
pub fn default_symbols() -> Vec<SymbolSpec> {
    let mut btc = SymbolSpec::new("BTCUSDT", dec!(68000.00), dec!(0.10), dec!(0.001), dec!(100));
    btc.min_price = dec!(261.10);
    btc.max_price = dec!(809484);
    btc.max_qty = dec!(1000);
    btc.market_max_qty = dec!(1000);
    btc.max_num_orders = 10000;
    btc.quote_volume_24h = dec!(12000000000);
    btc.brackets = brackets_from(&[
        (125, "50000", "0.004"),
        (100, "600000", "0.005"),
        (75, "3000000", "0.0065"),
        (50, "12000000", "0.01"),
        (25, "70000000", "0.02"),
        (20, "100000000", "0.025"),
        (10, "230000000", "0.05"),
        (5, "480000000", "0.1"),
        (4, "600000000", "0.125"),
        (3, "800000000", "0.15"),
        (2, "1200000000", "0.25"),
        (1, "1800000000", "0.5"),
    ]);
    btc.price_precision = 2;
    btc.quantity_precision = 3;

    let mut eth = SymbolSpec::new("ETHUSDT", dec!(3500.00), dec!(0.01), dec!(0.001), dec!(20));
    eth.min_price = dec!(39.86);
    eth.max_price = dec!(306177);
    eth.max_qty = dec!(10000);
    eth.market_max_qty = dec!(10000);
    eth.max_num_orders = 10000;
    eth.quote_volume_24h = dec!(6000000000);
    eth.brackets = brackets_from(&[
        (125, "50000", "0.004"),
        (100, "600000", "0.005"),
        (75, "3000000", "0.0065"),
        (50, "12000000", "0.01"),
        (25, "50000000", "0.02"),
        (20, "65000000", "0.025"),
        (10, "150000000", "0.05"),
        (5, "320000000", "0.1"),
        (4, "400000000", "0.125"),
        (3, "530000000", "0.15"),
        (2, "800000000", "0.25"),
        (1, "1200000000", "0.5"),
    ]);

    let mut sol = SymbolSpec::new("SOLUSDT", dec!(150.00), dec!(0.0100), dec!(1), dec!(5));
    sol.min_price = dec!(0.4200);
    sol.max_price = dec!(6857);
    sol.max_qty = dec!(10000000);
    sol.market_max_qty = dec!(10000000);
    sol.price_precision = 4;
    sol.quantity_precision = 0;
    sol.quote_volume_24h = dec!(1500000000);
    sol.brackets = brackets_from(&[
        (100, "20000", "0.005"),
        (75, "100000", "0.0065"),
        (50, "800000", "0.01"),
        (25, "4000000", "0.02"),
        (20, "8000000", "0.025"),
        (10, "40000000", "0.05"),
        (5, "80000000", "0.1"),
        (4, "100000000", "0.125"),
        (2, "200000000", "0.25"),
        (1, "400000000", "0.5"),
    ]);
    vec![btc, eth, sol]
}

/// `n` generated USDT perpetuals `GEN000USDT`, `GEN001USDT`, ... with varied prices, tick and step
/// sizes, volumes and max leverage (deterministic: a function of the index only).
pub fn generated_symbols(n: usize) -> Vec<SymbolSpec> {
    (0..n)
        .map(|i| {
            let kind = i % 4;
            // Prices spread over 0.01 .. 1000 with matching tick and step sizes.
            let (price, tick, step) = match kind {
                0 => (Decimal::new(1234 + i as i64 * 7, 5), dec!(0.000001), dec!(1)),
                1 => (Decimal::new(12345 + i as i64 * 13, 4), dec!(0.0001), dec!(1)),
                2 => (Decimal::new(45678 + i as i64 * 11, 3), dec!(0.001), dec!(0.1)),
                _ => (Decimal::new(250000 + i as i64 * 97, 3), dec!(0.01), dec!(0.01)),
            };
            let mut s = SymbolSpec::new(&format!("GEN{i:03}USDT"), price, tick, step, dec!(5));
            s.quote_volume_24h = Decimal::from(5_000_000 + (i as i64 % 37) * 3_000_000);
            s.price_change_pct_24h = Decimal::new((i as i64 % 21) * 50 - 500, 2);
            s.brackets = generated_brackets([20u32, 25, 50, 75][i % 4]);
            s
        })
        .collect()
}

/// Everything the fake server needs at start. `Default` gives the documented test key pair,
/// BTCUSDT/ETHUSDT/SOLUSDT, 10 000 USDT, 0.05 % taker / 0.02 % maker fees, one-way mode, 20x
/// isolated, a 1 s market tick, and Binance's limits.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    pub api_key: String,
    pub api_secret: String,
    pub symbols: Vec<SymbolSpec>,
    pub starting_balance: Decimal,
    pub taker_fee_rate: Decimal,
    pub maker_fee_rate: Decimal,
    pub default_leverage: u32,
    /// Initial margin type of every symbol: "ISOLATED" or "CROSSED".
    pub default_margin_type: String,
    pub hedge_mode: bool,
    /// Seed of every random decision (listen keys, random faults).
    pub seed: u64,
    /// Period of the `!markPrice@arr@1s` / `!miniTicker@arr` / `@markPrice@1s` pushes; `None`
    /// pushes only when a test changes a price.
    pub market_tick_ms: Option<u64>,
    /// REQUEST_WEIGHT per minute (Binance: 2400); `None` disables the limit (weights are still
    /// counted and reported in `X-MBX-USED-WEIGHT-1M`).
    pub weight_limit_1m: Option<u32>,
    /// ORDERS limits: (per 10 s, per minute); Binance: 300 and 1200. Over → -1015.
    pub order_limits: (u32, u32),
    /// Requests answered while already rate limited (429) before the IP gets a 418 ban.
    pub requests_429_before_ban: u32,
    /// Length of an automatic 418 ban.
    pub ban_secs: u64,
    /// listenKey validity after creation or the last keep-alive (Binance: 60 min).
    pub listen_key_ttl_ms: i64,
    /// Open conditional orders per account (Binance: 200).
    pub max_algo_orders: usize,
    /// Server ping period (Binance: 3 min).
    pub ws_ping_interval_ms: u64,
    /// Drop a connection that has not answered a ping for this long (Binance: 10 min).
    pub ws_pong_timeout_ms: u64,
    /// Close connections after this lifetime (Binance: 24 h); `None` = never.
    pub ws_max_lifetime_ms: Option<u64>,
    /// Disconnect a client that sends more than 10 messages in one second (Binance's rule).
    pub ws_enforce_msg_rate: bool,
    /// Liquidate positions whose margin falls to the maintenance margin (off by default so
    /// that tests moving prices far do not lose positions by surprise).
    pub liquidation: bool,
}

impl Default for FakeConfig {
    fn default() -> Self {
        FakeConfig {
            api_key: DOC_API_KEY.into(),
            api_secret: DOC_API_SECRET.into(),
            symbols: default_symbols(),
            starting_balance: dec!(10000),
            taker_fee_rate: dec!(0.0005),
            maker_fee_rate: dec!(0.0002),
            default_leverage: 20,
            default_margin_type: "ISOLATED".into(),
            hedge_mode: false,
            seed: 42,
            market_tick_ms: Some(1000),
            weight_limit_1m: Some(2400),
            order_limits: (300, 1200),
            requests_429_before_ban: 20,
            ban_secs: 120,
            listen_key_ttl_ms: 60 * 60 * 1000,
            max_algo_orders: 200,
            ws_ping_interval_ms: 180_000,
            ws_pong_timeout_ms: 600_000,
            ws_max_lifetime_ms: None,
            ws_enforce_msg_rate: true,
            liquidation: false,
        }
    }
}

impl FakeConfig {
    /// The default symbols plus `n` generated ones (for ~300-symbol tests).
    pub fn with_generated_symbols(mut self, n: usize) -> Self {
        self.symbols.extend(generated_symbols(n));
        self
    }

    /// Adds symbols that test selection and encoding: `BTCUSDT_250926` (CURRENT_QUARTER),
    /// `EOSUSDT` (SETTLING), `BTCUSDC` (USDC-quoted) — none tradeable by the daemon's rule — and
    /// the tradeable non-ASCII `币安人生USDT` (percent-encoded in requests, as on Binance since
    /// 2025-10-09).
    pub fn with_edge_case_symbols(mut self) -> Self {
        let mut quarter = SymbolSpec::new("BTCUSDT_250926", dec!(68500.0), dec!(0.1), dec!(0.001), dec!(5));
        quarter.contract_type = "CURRENT_QUARTER".into();
        quarter.base_asset = "BTC".into();
        let mut settling = SymbolSpec::new("EOSUSDT", dec!(0.500), dec!(0.001), dec!(0.1), dec!(5));
        settling.status = "SETTLING".into();
        let mut usdc = SymbolSpec::new("BTCUSDC", dec!(68000.0), dec!(0.1), dec!(0.001), dec!(5));
        usdc.quote_asset = "USDC".into();
        usdc.base_asset = "BTC".into();
        let unicode = SymbolSpec::new("币安人生USDT", dec!(0.15000), dec!(0.00001), dec!(1), dec!(5));
        self.symbols.extend([quarter, settling, usdc, unicode]);
        self
    }

    /// No periodic market pushes (fully test-driven streams).
    pub fn without_market_tick(mut self) -> Self {
        self.market_tick_ms = None;
        self
    }
}
