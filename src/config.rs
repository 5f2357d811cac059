//! Typed settings: layered loading (compiled-in defaults → `--config` file → environment
//! `KINETIC__SECTION__KEY`), unknown-key detection, range validation and redacted display.
//!
//! API credentials never come from a file: only from `BINANCE_API_KEY` / `BINANCE_API_SECRET`,
//! held in [`Secret`], whose `Debug` and `Display` print `[REDACTED]`. Loading takes the
//! environment as a map so tests never mutate the process environment.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat, Value, ValueKind};

pub mod operator;

pub use operator::{ControlSettings, NotifySettings, OperatorSecrets, WebhookFormat};
use serde::{Deserialize, Serialize};

/// The documented defaults, compiled in so a fresh clone needs no config file.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Prefix of configuration environment variables.
pub const ENV_PREFIX: &str = "KINETIC";
/// Environment variable holding the API key.
pub const ENV_API_KEY: &str = "BINANCE_API_KEY";
/// Environment variable holding the API secret.
pub const ENV_API_SECRET: &str = "BINANCE_API_SECRET";

/// Errors of loading or validating the configuration. Every one maps to exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown config key `{key}` (from {origin}); see config/default.toml for the valid keys")]
    UnknownKey { key: String, origin: String },
    #[error("invalid config value for `{key}`: {value} (allowed: {allowed})")]
    Invalid { key: String, value: String, allowed: String },
    #[error("cannot read config file {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config error: {0}")]
    Parse(#[source] config::ConfigError),
    #[error(
        "live trading needs credentials: set BINANCE_API_KEY and BINANCE_API_SECRET in the environment, or run with --dry-run"
    )]
    MissingCredentials,
}

/// A string that must never be shown: `Debug` and `Display` print `[REDACTED]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value, for signing and headers only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// API key and secret, from the environment only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub api_key: Secret,
    pub api_secret: Secret,
}

impl Credentials {
    /// Reads both variables from `env`; `None` unless both are set and non-empty.
    pub fn from_env(env: &HashMap<String, String>) -> Option<Credentials> {
        let key = env.get(ENV_API_KEY).map(|s| s.trim()).filter(|s| !s.is_empty())?;
        let secret = env.get(ENV_API_SECRET).map(|s| s.trim()).filter(|s| !s.is_empty())?;
        Some(Credentials { api_key: Secret::new(key), api_secret: Secret::new(secret) })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub exchange: ExchangeSettings,
    pub scanner: ScannerSettings,
    pub strategy: StrategySettings,
    pub risk: RiskSettings,
    pub monitor: MonitorSettings,
    pub paper: PaperSettings,
    pub backtest: BacktestSettings,
    pub storage: StorageSettings,
    pub api: ApiSettings,
    pub control: ControlSettings,
    pub notify: NotifySettings,
    /// Secrets of the operator channels, from the environment only (never serialized).
    #[serde(skip)]
    pub secrets: OperatorSecrets,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MarginType {
    #[serde(rename = "ISOLATED")]
    Isolated,
    #[serde(rename = "CROSSED")]
    Crossed,
}

impl MarginType {
    pub fn as_str(self) -> &'static str {
        match self {
            MarginType::Isolated => "ISOLATED",
            MarginType::Crossed => "CROSSED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeSettings {
    pub rest_url: String,
    pub ws_url: String,
    pub testnet: bool,
    pub recv_window_ms: u64,
    pub margin_type: MarginType,
    pub allow_hedge_mode: bool,
    pub request_timeout_secs: u64,
    pub stream_stale_secs: u64,
    pub time_sync_interval_secs: u64,
    pub exchange_info_refresh_secs: u64,
    pub trading_status_interval_secs: u64,
    pub rest_min_spacing_ms: u64,
    pub weight_limit_per_min: u32,
    pub weight_slowdown_pct: f64,
    /// Spot REST host: only the Wallet API's key-permission check goes there.
    pub spot_rest_url: String,
    /// Refuse to start when the API key can withdraw or has no IP allow-list.
    pub refuse_unsafe_key: bool,
}

/// Binance's testnet (demo trading) REST base URL.
pub const TESTNET_REST_URL: &str = "https://demo-fapi.binance.com";
/// Binance's testnet WebSocket base URL.
pub const TESTNET_WS_URL: &str = "wss://fstream.binancefuture.com";

impl ExchangeSettings {
    /// REST base URL in effect (`testnet = true` switches to the testnet).
    pub fn effective_rest_url(&self) -> &str {
        if self.testnet { TESTNET_REST_URL } else { self.rest_url.trim_end_matches('/') }
    }

    /// WebSocket base URL in effect.
    pub fn effective_ws_url(&self) -> &str {
        if self.testnet { TESTNET_WS_URL } else { self.ws_url.trim_end_matches('/') }
    }

    /// Spot REST base URL in effect; `None` on the testnet, which has no Wallet API (the key
    /// check is skipped there).
    pub fn effective_spot_rest_url(&self) -> Option<&str> {
        if self.testnet { None } else { Some(self.spot_rest_url.trim_end_matches('/')) }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScannerSettings {
    pub interval_secs: u64,
    pub min_quote_volume: f64,
    pub volume_ratio_min: f64,
    pub volume_lookback: usize,
    pub min_abs_change_pct: f64,
    pub max_candidates: usize,
    /// Keep at most this many symbols (by 24 h quote volume) for the volume filter; 0 = all.
    pub prefilter_top_n: usize,
    pub exclude: Vec<String>,
    pub rank_volume_weight: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrategySettings {
    pub min_confidence: u8,
    pub atr_stop_mult: f64,
    pub max_stop_pct: f64,
    pub tp1_pct: f64,
    pub tp1_close_pct: f64,
    pub tp2_pct: f64,
    pub tp2_close_pct: f64,
    pub trail_start_pct: f64,
    pub trail_pct: f64,
    pub macd_cross_window: usize,
    pub swing_fractal_width: usize,
    pub rsi_long_min: f64,
    pub rsi_long_max: f64,
    pub rsi_short_min: f64,
    pub rsi_short_max: f64,
    pub volume_spike_ratio: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmergencyReset {
    /// Only an operator clears the latch (restart with `--clear-emergency`).
    Manual,
    /// The latch clears itself at the next UTC midnight.
    NextUtcDay,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeverageTier {
    pub min_confidence: u8,
    pub leverage: u32,
    pub high_volatility_leverage: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizingTier {
    pub min_confidence: u8,
    pub risk_pct: f64,
    pub max_notional_pct: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskSettings {
    pub max_open_positions: usize,
    pub symbol_cooldown_mins: u64,
    pub daily_loss_limit_pct: f64,
    pub max_total_exposure_pct: f64,
    pub margin_buffer_pct: f64,
    pub max_consecutive_losses: u32,
    pub loss_cooldown_mins: u64,
    pub high_volatility_atr_pct: f64,
    pub emergency_loss_pct: f64,
    pub emergency_reset: EmergencyReset,
    pub leverage_tiers: Vec<LeverageTier>,
    pub sizing_tiers: Vec<SizingTier>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorSettings {
    pub interval_secs: u64,
    /// How long a protective stop seen TRIGGERING/TRIGGERED may leave its position open
    /// before it counts as failed.
    pub stuck_stop_grace_secs: u64,
    /// What replaces a failed stop.
    pub stuck_stop_action: StuckStopAction,
}

/// What the daemon does when a protective stop triggered on the exchange but its position
/// stayed open beyond `monitor.stuck_stop_grace_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StuckStopAction {
    /// Close what is left of the position at market (reduce-only).
    Close,
    /// Place a new protective stop (the position keeps running with its ladder).
    Replace,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaperSettings {
    pub starting_balance: f64,
    pub taker_fee_pct: f64,
    pub maker_fee_pct: f64,
    pub slippage_pct: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BacktestSettings {
    pub data_dir: PathBuf,
    pub out_dir: PathBuf,
    pub flat_funding_rate_pct: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSettings {
    pub path: PathBuf,
    pub dry_run_path: PathBuf,
    pub sync: JournalSync,
}

/// How hard the journal pushes each commit to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalSync {
    /// WAL + `synchronous = NORMAL`: every commit survives a process crash (kill -9, panic);
    /// an OS crash or power loss may lose the last commits. Sub-millisecond writes.
    Normal,
    /// WAL + `synchronous = FULL`: every commit is fsynced before the call returns; survives
    /// power loss, at the cost of an fsync (milliseconds) before every order.
    Full,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    pub listen: String,
    pub allow_public_bind: bool,
}

impl ApiSettings {
    /// The listen address, parsed (validation guarantees it parses).
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|_| ConfigError::Invalid {
            key: "api.listen".into(),
            value: self.listen.clone(),
            allowed: "an IP:port socket address such as 127.0.0.1:9184".into(),
        })
    }
}

/// Where a configuration came from: an optional file and the environment.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources<'a> {
    pub file: Option<&'a Path>,
    pub env: HashMap<String, String>,
}

/// Loads the configuration with its three layers, rejects unknown keys and validates ranges.
///
/// # Errors
/// [`ConfigError`] naming the offending key, value and what is allowed.
pub fn load(sources: &ConfigSources<'_>) -> Result<Settings, ConfigError> {
    let defaults = Config::builder()
        .add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml))
        .build()
        .map_err(ConfigError::Parse)?;
    let known = leaf_keys(&defaults.cache);

    let mut builder = Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
    if let Some(path) = sources.file {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::File { path: path.to_path_buf(), source })?;
        let file_layer = Config::builder()
            .add_source(File::from_str(&text, FileFormat::Toml))
            .build()
            .map_err(ConfigError::Parse)?;
        check_known(&file_layer.cache, &known, &format!("file {}", path.display()))?;
        builder = builder.add_source(File::from_str(&text, FileFormat::Toml));
    }

    let env: HashMap<String, String> = sources
        .env
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for name in env.keys() {
        let key = name[ENV_PREFIX.len() + 2..].replace("__", ".").to_lowercase();
        if !known.contains_key(&key) {
            return Err(ConfigError::UnknownKey { key, origin: format!("environment variable {name}") });
        }
    }
    let environment = Environment::with_prefix(ENV_PREFIX)
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
        .list_separator(",")
        .with_list_parse_key("scanner.exclude")
        .with_list_parse_key("notify.telegram.chat_ids")
        .with_list_parse_key("notify.telegram.command_chat_ids")
        .with_list_parse_key("notify.telegram.events")
        .with_list_parse_key("notify.webhook.events")
        .source(Some(env.into_iter().collect()));
    builder = builder.add_source(environment);

    let merged = builder.build().map_err(ConfigError::Parse)?;
    let mut settings: Settings = merged.try_deserialize().map_err(|e| type_error(e, &known))?;
    settings.secrets = OperatorSecrets::from_env(&sources.env);
    validate(&settings)?;
    Ok(settings)
}

/// Flattens a config tree into `section.key` → value; arrays are leaves.
fn leaf_keys(value: &Value) -> BTreeMap<String, Value> {
    fn walk(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
        match &value.kind {
            ValueKind::Table(table) => {
                for (k, v) in table {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&key, v, out);
                }
            }
            _ => {
                out.insert(prefix.to_string(), value.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", value, &mut out);
    out
}

fn check_known(layer: &Value, known: &BTreeMap<String, Value>, origin: &str) -> Result<(), ConfigError> {
    for key in leaf_keys(layer).keys() {
        if !known.contains_key(key) {
            return Err(ConfigError::UnknownKey { key: key.clone(), origin: origin.to_string() });
        }
    }
    Ok(())
}

/// Turns a deserialization error into one that names the key when the message carries it.
fn type_error(err: config::ConfigError, known: &BTreeMap<String, Value>) -> ConfigError {
    let text = err.to_string();
    if let Some(key) = known.keys().find(|k| text.contains(&format!("`{k}`")) || text.contains(&format!("key {k}"))) {
        return ConfigError::Invalid {
            key: key.clone(),
            value: text.clone(),
            allowed: "a value of the type shown in config/default.toml".into(),
        };
    }
    ConfigError::Parse(err)
}

fn invalid(key: &str, value: impl fmt::Display, allowed: &str) -> ConfigError {
    ConfigError::Invalid { key: key.to_string(), value: value.to_string(), allowed: allowed.to_string() }
}

fn pct_range(key: &str, v: f64, lo: f64, hi: f64, lo_inclusive: bool) -> Result<(), ConfigError> {
    let ok = v.is_finite() && (if lo_inclusive { v >= lo } else { v > lo }) && v <= hi;
    if ok {
        Ok(())
    } else {
        let open = if lo_inclusive { "[" } else { "(" };
        Err(invalid(key, v, &format!("a number in {open}{lo}, {hi}]")))
    }
}

fn int_range<T: PartialOrd + fmt::Display + Copy>(key: &str, v: T, lo: T, hi: T) -> Result<(), ConfigError> {
    if v >= lo && v <= hi { Ok(()) } else { Err(invalid(key, v, &format!("an integer in [{lo}, {hi}]"))) }
}

/// Range-checks every numeric key and the consistency of the tables.
///
/// # Errors
/// The first violation found, naming the key.
pub fn validate(s: &Settings) -> Result<(), ConfigError> {
    let e = &s.exchange;
    for (key, url, schemes) in [
        ("exchange.rest_url", &e.rest_url, ["http://", "https://"]),
        ("exchange.ws_url", &e.ws_url, ["ws://", "wss://"]),
        ("exchange.spot_rest_url", &e.spot_rest_url, ["http://", "https://"]),
    ] {
        if !schemes.iter().any(|p| url.starts_with(p)) || url::Url::parse(url).is_err() {
            return Err(invalid(key, url, &format!("a URL starting with {} or {}", schemes[0], schemes[1])));
        }
    }
    int_range("exchange.recv_window_ms", e.recv_window_ms, 1, 60_000)?;
    int_range("exchange.request_timeout_secs", e.request_timeout_secs, 1, 120)?;
    int_range("exchange.stream_stale_secs", e.stream_stale_secs, 2, 3600)?;
    int_range("exchange.time_sync_interval_secs", e.time_sync_interval_secs, 10, 86_400)?;
    int_range("exchange.exchange_info_refresh_secs", e.exchange_info_refresh_secs, 60, 86_400)?;
    int_range("exchange.trading_status_interval_secs", e.trading_status_interval_secs, 10, 86_400)?;
    int_range("exchange.rest_min_spacing_ms", e.rest_min_spacing_ms, 100, 10_000)?;
    int_range("exchange.weight_limit_per_min", e.weight_limit_per_min, 1, 100_000)?;
    pct_range("exchange.weight_slowdown_pct", e.weight_slowdown_pct, 0.0, 100.0, false)?;

    let sc = &s.scanner;
    int_range("scanner.interval_secs", sc.interval_secs, 1, 86_400)?;
    if !(sc.min_quote_volume.is_finite() && sc.min_quote_volume >= 0.0) {
        return Err(invalid("scanner.min_quote_volume", sc.min_quote_volume, "a number >= 0"));
    }
    if !(sc.volume_ratio_min.is_finite() && sc.volume_ratio_min > 0.0 && sc.volume_ratio_min <= 100.0) {
        return Err(invalid("scanner.volume_ratio_min", sc.volume_ratio_min, "a number in (0, 100]"));
    }
    int_range("scanner.volume_lookback", sc.volume_lookback, 1, 500)?;
    pct_range("scanner.min_abs_change_pct", sc.min_abs_change_pct, 0.0, 100.0, true)?;
    int_range("scanner.max_candidates", sc.max_candidates, 1, 200)?;
    int_range("scanner.prefilter_top_n", sc.prefilter_top_n, 0, 10_000)?;
    if !(0.0..=1.0).contains(&sc.rank_volume_weight) {
        return Err(invalid("scanner.rank_volume_weight", sc.rank_volume_weight, "a number in [0, 1]"));
    }
    for sym in &sc.exclude {
        if sym.is_empty() || sym.chars().any(char::is_whitespace) {
            return Err(invalid("scanner.exclude", sym, "symbol names such as \"BTCUSDT\""));
        }
    }

    let st = &s.strategy;
    int_range("strategy.min_confidence", st.min_confidence, 1, 100)?;
    if !(st.atr_stop_mult.is_finite() && st.atr_stop_mult > 0.0 && st.atr_stop_mult <= 20.0) {
        return Err(invalid("strategy.atr_stop_mult", st.atr_stop_mult, "a number in (0, 20]"));
    }
    pct_range("strategy.max_stop_pct", st.max_stop_pct, 0.0, 100.0, false)?;
    pct_range("strategy.tp1_pct", st.tp1_pct, 0.0, 100.0, false)?;
    pct_range("strategy.tp2_pct", st.tp2_pct, 0.0, 100.0, false)?;
    pct_range("strategy.trail_start_pct", st.trail_start_pct, 0.0, 100.0, false)?;
    pct_range("strategy.trail_pct", st.trail_pct, 0.0, 100.0, false)?;
    pct_range("strategy.tp1_close_pct", st.tp1_close_pct, 0.0, 100.0, false)?;
    pct_range("strategy.tp2_close_pct", st.tp2_close_pct, 0.0, 100.0, false)?;
    if st.tp2_pct <= st.tp1_pct {
        return Err(invalid(
            "strategy.tp2_pct",
            st.tp2_pct,
            &format!("greater than strategy.tp1_pct ({})", st.tp1_pct),
        ));
    }
    if st.trail_start_pct < st.tp2_pct {
        return Err(invalid(
            "strategy.trail_start_pct",
            st.trail_start_pct,
            &format!("at least strategy.tp2_pct ({})", st.tp2_pct),
        ));
    }
    if st.tp1_close_pct + st.tp2_close_pct >= 100.0 {
        return Err(invalid(
            "strategy.tp2_close_pct",
            st.tp2_close_pct,
            "tp1_close_pct + tp2_close_pct below 100 (something must be left to trail)",
        ));
    }
    int_range("strategy.macd_cross_window", st.macd_cross_window, 1, 50)?;
    int_range("strategy.swing_fractal_width", st.swing_fractal_width, 1, 10)?;
    for (key, v) in [
        ("strategy.rsi_long_min", st.rsi_long_min),
        ("strategy.rsi_long_max", st.rsi_long_max),
        ("strategy.rsi_short_min", st.rsi_short_min),
        ("strategy.rsi_short_max", st.rsi_short_max),
    ] {
        pct_range(key, v, 0.0, 100.0, true)?;
    }
    if st.rsi_long_min > st.rsi_long_max {
        return Err(invalid(
            "strategy.rsi_long_max",
            st.rsi_long_max,
            &format!(">= strategy.rsi_long_min ({})", st.rsi_long_min),
        ));
    }
    if st.rsi_short_min > st.rsi_short_max {
        return Err(invalid(
            "strategy.rsi_short_max",
            st.rsi_short_max,
            &format!(">= strategy.rsi_short_min ({})", st.rsi_short_min),
        ));
    }
    if !(st.volume_spike_ratio.is_finite() && st.volume_spike_ratio > 0.0 && st.volume_spike_ratio <= 100.0) {
        return Err(invalid("strategy.volume_spike_ratio", st.volume_spike_ratio, "a number in (0, 100]"));
    }

    let r = &s.risk;
    int_range("risk.max_open_positions", r.max_open_positions, 1, 100)?;
    int_range("risk.symbol_cooldown_mins", r.symbol_cooldown_mins, 0, 10_080)?;
    pct_range("risk.daily_loss_limit_pct", r.daily_loss_limit_pct, 0.0, 100.0, false)?;
    pct_range("risk.max_total_exposure_pct", r.max_total_exposure_pct, 0.0, 1000.0, false)?;
    pct_range("risk.margin_buffer_pct", r.margin_buffer_pct, 0.0, 100.0, true)?;
    int_range("risk.max_consecutive_losses", r.max_consecutive_losses, 1, 100)?;
    int_range("risk.loss_cooldown_mins", r.loss_cooldown_mins, 0, 10_080)?;
    pct_range("risk.high_volatility_atr_pct", r.high_volatility_atr_pct, 0.0, 100.0, false)?;
    pct_range("risk.emergency_loss_pct", r.emergency_loss_pct, 0.0, 100.0, false)?;
    validate_leverage_tiers(&r.leverage_tiers, st.min_confidence)?;
    validate_sizing_tiers(&r.sizing_tiers, st.min_confidence)?;

    int_range("monitor.interval_secs", s.monitor.interval_secs, 1, 60)?;
    int_range("monitor.stuck_stop_grace_secs", s.monitor.stuck_stop_grace_secs, 1, 300)?;

    let p = &s.paper;
    if !(p.starting_balance.is_finite() && p.starting_balance > 0.0 && p.starting_balance <= 1e12) {
        return Err(invalid("paper.starting_balance", p.starting_balance, "a number in (0, 1e12]"));
    }
    pct_range("paper.taker_fee_pct", p.taker_fee_pct, 0.0, 5.0, true)?;
    pct_range("paper.maker_fee_pct", p.maker_fee_pct, 0.0, 5.0, true)?;
    pct_range("paper.slippage_pct", p.slippage_pct, 0.0, 10.0, true)?;
    if !(s.backtest.flat_funding_rate_pct.is_finite() && s.backtest.flat_funding_rate_pct.abs() <= 5.0) {
        return Err(invalid("backtest.flat_funding_rate_pct", s.backtest.flat_funding_rate_pct, "a number in [-5, 5]"));
    }
    if s.storage.path.as_os_str().is_empty() {
        return Err(invalid("storage.path", "\"\"", "a file path"));
    }
    if s.storage.dry_run_path == s.storage.path {
        return Err(invalid(
            "storage.dry_run_path",
            s.storage.dry_run_path.display(),
            "a path different from storage.path (paper trades never mix with live ones)",
        ));
    }
    let addr = s.api.listen_addr()?;
    if !addr.ip().is_loopback() && !s.api.allow_public_bind {
        return Err(invalid(
            "api.listen",
            &s.api.listen,
            "a loopback address (127.0.0.1 or ::1), or set api.allow_public_bind = true",
        ));
    }
    operator::validate(&s.control, &s.secrets)?;
    operator::validate_notify(&s.notify, &s.secrets)?;
    Ok(())
}

fn validate_leverage_tiers(tiers: &[LeverageTier], min_confidence: u8) -> Result<(), ConfigError> {
    let key = "risk.leverage_tiers";
    let first = tiers.first().ok_or_else(|| invalid(key, "[]", "at least one tier"))?;
    if first.min_confidence > min_confidence {
        return Err(invalid(
            key,
            format!("first tier starts at {}", first.min_confidence),
            &format!("a first tier at or below strategy.min_confidence ({min_confidence})"),
        ));
    }
    for (i, t) in tiers.iter().enumerate() {
        int_range(&format!("{key}[{i}].min_confidence"), t.min_confidence, 1, 100)?;
        int_range(&format!("{key}[{i}].leverage"), t.leverage, 1, 125)?;
        int_range(&format!("{key}[{i}].high_volatility_leverage"), t.high_volatility_leverage, 1, 125)?;
        if t.high_volatility_leverage > t.leverage {
            return Err(invalid(
                &format!("{key}[{i}].high_volatility_leverage"),
                t.high_volatility_leverage,
                &format!("at most the tier's leverage ({})", t.leverage),
            ));
        }
        if let Some(prev) = i.checked_sub(1).and_then(|j| tiers.get(j)) {
            if t.min_confidence <= prev.min_confidence {
                return Err(invalid(
                    &format!("{key}[{i}].min_confidence"),
                    t.min_confidence,
                    "strictly ascending tiers",
                ));
            }
            if t.leverage < prev.leverage || t.high_volatility_leverage < prev.high_volatility_leverage {
                return Err(invalid(
                    &format!("{key}[{i}].leverage"),
                    t.leverage,
                    "non-decreasing leverage as confidence rises",
                ));
            }
        }
    }
    Ok(())
}

fn validate_sizing_tiers(tiers: &[SizingTier], min_confidence: u8) -> Result<(), ConfigError> {
    let key = "risk.sizing_tiers";
    let first = tiers.first().ok_or_else(|| invalid(key, "[]", "at least one tier"))?;
    if first.min_confidence > min_confidence {
        return Err(invalid(
            key,
            format!("first tier starts at {}", first.min_confidence),
            &format!("a first tier at or below strategy.min_confidence ({min_confidence})"),
        ));
    }
    for (i, t) in tiers.iter().enumerate() {
        int_range(&format!("{key}[{i}].min_confidence"), t.min_confidence, 1, 100)?;
        pct_range(&format!("{key}[{i}].risk_pct"), t.risk_pct, 0.0, 10.0, false)?;
        pct_range(&format!("{key}[{i}].max_notional_pct"), t.max_notional_pct, 0.0, 100.0, false)?;
        if let Some(prev) = i.checked_sub(1).and_then(|j| tiers.get(j)) {
            if t.min_confidence <= prev.min_confidence {
                return Err(invalid(
                    &format!("{key}[{i}].min_confidence"),
                    t.min_confidence,
                    "strictly ascending tiers",
                ));
            }
            if t.risk_pct < prev.risk_pct || t.max_notional_pct < prev.max_notional_pct {
                return Err(invalid(
                    &format!("{key}[{i}].risk_pct"),
                    t.risk_pct,
                    "non-decreasing risk and cap as confidence rises",
                ));
            }
        }
    }
    Ok(())
}

/// The effective configuration as TOML, with a `[credentials]` section that only says whether
/// each secret is set. Nothing secret is ever printed.
///
/// # Errors
/// Serialization failure (not expected for these types).
pub fn render_effective(settings: &Settings, credentials: Option<&Credentials>) -> Result<String, toml::ser::Error> {
    let mut out = toml::to_string_pretty(settings)?;
    let state = if credentials.is_some() { "\"[REDACTED]\"" } else { "\"(not set)\"" };
    out.push_str(&format!("\n[credentials]\n# from the environment only\napi_key = {state}\napi_secret = {state}\n"));
    Ok(out)
}

impl Settings {
    /// The compiled-in defaults.
    ///
    /// # Errors
    /// Only if the shipped default file were broken (a test guards it).
    pub fn defaults() -> Result<Settings, ConfigError> {
        load(&ConfigSources::default())
    }

    /// Checks that live trading has what it needs.
    ///
    /// # Errors
    /// [`ConfigError::MissingCredentials`] for a live run without credentials.
    pub fn require_credentials(dry_run: bool, credentials: Option<&Credentials>) -> Result<(), ConfigError> {
        if dry_run || credentials.is_some() { Ok(()) } else { Err(ConfigError::MissingCredentials) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load_and_validate() -> Result<(), ConfigError> {
        let s = Settings::defaults()?;
        assert_eq!(s.risk.max_open_positions, 5);
        assert_eq!(s.strategy.min_confidence, 60);
        assert_eq!(s.api.listen, "127.0.0.1:9184");
        assert_eq!(s.risk.leverage_tiers.len(), 4);
        Ok(())
    }

    #[test]
    fn secret_never_formats() {
        let s = Secret::new("abc-very-secret");
        assert_eq!(format!("{s:?} {s}"), "[REDACTED] [REDACTED]");
        let c = Credentials { api_key: s.clone(), api_secret: s };
        assert!(!format!("{c:?}").contains("very-secret"));
    }
}
