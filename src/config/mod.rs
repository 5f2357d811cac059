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

pub mod hints;
mod validate;

pub use validate::validate;

/// The documented defaults, compiled in so a fresh clone needs no config file.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// Prefix of configuration environment variables.
pub const ENV_PREFIX: &str = "KINETIC";
/// Environment variable holding the API key.
pub const ENV_API_KEY: &str = "BINANCE_API_KEY";
/// Environment variable holding the API secret.
pub const ENV_API_SECRET: &str = "BINANCE_API_SECRET";

/// Errors of loading or validating the configuration. Every one maps to exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown config key `{key}` (from {origin}){hint}; see config/default.toml for the valid keys")]
    UnknownKey {
        key: String,
        origin: String,
        /// `"; did you mean `x`?"` when a known key is close, else empty.
        hint: String,
    },
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
    /// Binance's public data archive (data.binance.vision): `download-data --source dumps`.
    pub dumps_url: String,
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
            return Err(unknown_key(key, format!("environment variable {name}"), &known));
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
    let mut settings: Settings = merged.clone().try_deserialize().map_err(|e| type_error(e, &known, &merged))?;
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
            return Err(unknown_key(key.clone(), origin.to_string(), known));
        }
    }
    Ok(())
}

fn unknown_key(key: String, origin: String, known: &BTreeMap<String, Value>) -> ConfigError {
    let hint = hints::nearest_key(&key, known.keys().map(String::as_str))
        .map(|k| format!("; did you mean `{k}`?"))
        .unwrap_or_default();
    ConfigError::UnknownKey { key, origin, hint }
}

/// Turns a deserialization error into one that names the key, the value given and what the
/// key accepts (the enumeration's values, or the kind of value of its default).
fn type_error(err: config::ConfigError, known: &BTreeMap<String, Value>, merged: &Config) -> ConfigError {
    let text = err.to_string();
    let Some(key) = hints::key_in_message(&text) else {
        return ConfigError::Parse(err);
    };
    let value = merged
        .get::<Value>(&key)
        .map(|v| match &v.kind {
            ValueKind::String(s) => format!("\"{s}\""),
            _ => v.to_string(),
        })
        .unwrap_or_else(|_| text.clone());
    let allowed = hints::allowed_for(&key, known.get(&key));
    ConfigError::Invalid { key, value, allowed }
}

/// The effective configuration as a TOML document that `--config` accepts as it is. The
/// endpoints shown are the ones in effect (the testnet's when `exchange.testnet = true`).
/// Credentials appear only as a comment saying whether each is set: never their values.
///
/// # Errors
/// Serialization failure (not expected for these types).
pub fn render_effective(settings: &Settings, credentials: Option<&Credentials>) -> Result<String, toml::ser::Error> {
    let mut shown = settings.clone();
    shown.exchange.rest_url = settings.exchange.effective_rest_url().to_string();
    shown.exchange.ws_url = settings.exchange.effective_ws_url().to_string();
    let state = if credentials.is_some() { "set ([REDACTED])" } else { "not set" };
    let mut out = format!(
        "# credentials come from the environment only, never from this file:\n\
         #   {ENV_API_KEY} {state}\n#   {ENV_API_SECRET} {state}\n"
    );
    if settings.exchange.testnet {
        out.push_str("# exchange.testnet = true: rest_url and ws_url are the testnet endpoints in effect\n");
    }
    out.push('\n');
    out.push_str(&toml::to_string_pretty(&shown)?);
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
