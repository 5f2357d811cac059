//! Operator settings: the control API (`[control]`) and the secrets the operator channels
//! read from the environment only (never from a file, never printed).

use std::collections::HashMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::validate::invalid;
use super::{ConfigError, Secret};

/// Environment variable holding the control API's bearer token.
pub const ENV_CONTROL_TOKEN: &str = "KINETIC_CONTROL_TOKEN";
/// Environment variable holding the Telegram bot token.
pub const ENV_TELEGRAM_TOKEN: &str = "KINETIC_TELEGRAM_BOT_TOKEN";
/// Environment variable holding the webhook signing secret.
pub const ENV_WEBHOOK_SECRET: &str = "KINETIC_WEBHOOK_SECRET";
/// Event kinds a notification channel can select (`all` selects every one).
pub const EVENT_KINDS: &[&str] = &[
    "start",
    "stop",
    "entry",
    "take_profit",
    "position_closed",
    "emergency",
    "daily_loss",
    "loss_streak",
    "exchange",
    "stream",
    "daily_summary",
    "command",
];

/// A list, or a single value (an environment variable holding one item arrives unsplit).
fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        Many(Vec<T>),
        One(T),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::Many(v) => v,
        OneOrMany::One(x) => vec![x],
    })
}

/// `[notify]`: notifications from their own task with a bounded queue per channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifySettings {
    /// Messages queued per channel; beyond it new ones are dropped (counted), trading never waits.
    pub queue_size: usize,
    /// UTC hour of the daily summary (0..=23), or -1 for none.
    pub daily_summary_hour_utc: i32,
    /// Minimum seconds between two alerts about the same trouble (exchange, a stream).
    pub alert_interval_secs: u64,
    /// Seconds a market stream may stay not live before it is reported silent.
    pub stream_silent_secs: u64,
    /// Timeout of one delivery attempt, in seconds.
    pub timeout_secs: u64,
    /// Retries after a failed delivery (backoff 1 s, 2 s, 4 s, ...).
    pub retries: u32,
    pub telegram: TelegramSettings,
    pub webhook: WebhookSettings,
}

/// `[notify.telegram]`: the Telegram Bot API (token in `KINETIC_TELEGRAM_BOT_TOKEN`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramSettings {
    pub enabled: bool,
    /// Bot API base URL (no trailing slash).
    pub api_url: String,
    /// Chats that receive notifications.
    #[serde(deserialize_with = "one_or_many")]
    pub chat_ids: Vec<i64>,
    /// Event kinds sent to Telegram (see [`EVENT_KINDS`]; `all` = every one).
    #[serde(deserialize_with = "one_or_many")]
    pub events: Vec<String>,
    /// Answer commands (long polling with `getUpdates`); off by default.
    pub commands_enabled: bool,
    /// Chats whose commands are answered; every other chat is ignored (and counted).
    #[serde(deserialize_with = "one_or_many")]
    pub command_chat_ids: Vec<i64>,
    /// Seconds one `getUpdates` long poll waits for a message.
    pub poll_timeout_secs: u64,
}

/// The body a webhook receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// `{"event", "time", "text", "data"}`.
    Json,
    /// `{"content": text}` (Discord webhooks).
    Discord,
    /// `{"text": text}` (Slack incoming webhooks).
    Slack,
}

/// `[notify.webhook]`: a generic JSON webhook, signed with `KINETIC_WEBHOOK_SECRET` when set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Empty = off.
    pub url: String,
    pub format: WebhookFormat,
    #[serde(deserialize_with = "one_or_many")]
    pub events: Vec<String>,
}

/// The shortest control token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// `[control]`: the authenticated control API (`POST /api/v1/...`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlSettings {
    /// Off by default; when on, `KINETIC_CONTROL_TOKEN` must hold the bearer token.
    pub api_enabled: bool,
    /// Its own listener, loopback by default (the read-only server may be public for
    /// Prometheus while the control API stays private).
    pub api_listen: String,
    /// Binding the control API to a non-loopback address is refused unless this is true.
    pub api_allow_public_bind: bool,
}

impl ControlSettings {
    /// The control API's address.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming `control.api_listen`.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.api_listen.parse().map_err(|_| {
            invalid("control.api_listen", &self.api_listen, "an IP:port socket address such as 127.0.0.1:9185")
        })
    }
}

/// Secrets of the operator channels, read from the environment by [`super::load`]. Not part
/// of the configuration files; `Debug` shows `[REDACTED]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperatorSecrets {
    pub control_token: Option<Secret>,
    pub telegram_token: Option<Secret>,
    pub webhook_secret: Option<Secret>,
}

impl OperatorSecrets {
    /// Reads the variables that are set and non-empty.
    pub fn from_env(env: &HashMap<String, String>) -> OperatorSecrets {
        let read = |name: &str| env.get(name).map(|s| s.trim()).filter(|s| !s.is_empty()).map(Secret::new);
        OperatorSecrets {
            control_token: read(ENV_CONTROL_TOKEN),
            telegram_token: read(ENV_TELEGRAM_TOKEN),
            webhook_secret: read(ENV_WEBHOOK_SECRET),
        }
    }
}

/// Checks `[control]` against the secrets that are set.
///
/// # Errors
/// The first problem, naming the key (a missing or short token names the variable).
pub fn validate(c: &ControlSettings, secrets: &OperatorSecrets) -> Result<(), ConfigError> {
    let addr = c.listen_addr()?;
    if !c.api_enabled {
        return Ok(());
    }
    if !addr.ip().is_loopback() && !c.api_allow_public_bind {
        return Err(invalid(
            "control.api_listen",
            &c.api_listen,
            "a loopback address (127.0.0.1 or ::1), or set control.api_allow_public_bind = true",
        ));
    }
    match &secrets.control_token {
        Some(t) if t.expose().len() >= MIN_TOKEN_LEN => Ok(()),
        Some(_) => Err(invalid(
            "control.api_enabled",
            "true",
            &format!("only with a token of at least {MIN_TOKEN_LEN} characters in {ENV_CONTROL_TOKEN}"),
        )),
        None => Err(invalid(
            "control.api_enabled",
            "true",
            &format!("only with the bearer token set in {ENV_CONTROL_TOKEN}"),
        )),
    }
}

fn validate_events(key: &str, events: &[String]) -> Result<(), ConfigError> {
    let allowed = format!("a list of: all, {}", EVENT_KINDS.join(", "));
    for e in events {
        if e != "all" && !EVENT_KINDS.contains(&e.as_str()) {
            return Err(invalid(key, e, &allowed));
        }
    }
    Ok(())
}

/// Checks `[notify]` against the secrets that are set.
///
/// # Errors
/// The first problem, naming the key.
pub fn validate_notify(n: &NotifySettings, secrets: &OperatorSecrets) -> Result<(), ConfigError> {
    if !(1..=100_000).contains(&n.queue_size) {
        return Err(invalid("notify.queue_size", n.queue_size, "an integer in [1, 100000]"));
    }
    if !(-1..=23).contains(&n.daily_summary_hour_utc) {
        return Err(invalid("notify.daily_summary_hour_utc", n.daily_summary_hour_utc, "-1 (none) or 0..=23"));
    }
    if !(1..=300).contains(&n.timeout_secs) {
        return Err(invalid("notify.timeout_secs", n.timeout_secs, "an integer in [1, 300]"));
    }
    if n.retries > 10 {
        return Err(invalid("notify.retries", n.retries, "an integer in [0, 10]"));
    }
    validate_events("notify.telegram.events", &n.telegram.events)?;
    validate_events("notify.webhook.events", &n.webhook.events)?;
    if n.telegram.enabled {
        if secrets.telegram_token.is_none() {
            return Err(invalid(
                "notify.telegram.enabled",
                "true",
                &format!("only with the bot token set in {ENV_TELEGRAM_TOKEN}"),
            ));
        }
        if n.telegram.chat_ids.is_empty() {
            return Err(invalid("notify.telegram.chat_ids", "[]", "at least one chat id when Telegram is enabled"));
        }
    }
    if n.telegram.commands_enabled {
        if secrets.telegram_token.is_none() {
            return Err(invalid(
                "notify.telegram.commands_enabled",
                "true",
                &format!("only with the bot token set in {ENV_TELEGRAM_TOKEN}"),
            ));
        }
        if n.telegram.command_chat_ids.is_empty() {
            return Err(invalid(
                "notify.telegram.command_chat_ids",
                "[]",
                "at least one chat id when Telegram commands are enabled",
            ));
        }
        if !(1..=50).contains(&n.telegram.poll_timeout_secs) {
            return Err(invalid(
                "notify.telegram.poll_timeout_secs",
                n.telegram.poll_timeout_secs,
                "an integer in [1, 50]",
            ));
        }
    }
    if (n.telegram.enabled || n.telegram.commands_enabled)
        && url::Url::parse(&n.telegram.api_url).map(|u| !matches!(u.scheme(), "http" | "https")).unwrap_or(true)
    {
        return Err(invalid("notify.telegram.api_url", &n.telegram.api_url, "an http(s) URL"));
    }
    if !n.webhook.url.is_empty()
        && url::Url::parse(&n.webhook.url).map(|u| !matches!(u.scheme(), "http" | "https")).unwrap_or(true)
    {
        // The URL may carry a token (Discord, Slack): it is not echoed.
        return Err(invalid("notify.webhook.url", "(not shown)", "empty (off) or an http(s) URL"));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use crate::config::{ConfigSources, load};

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect()
    }

    #[test]
    fn the_control_api_is_off_by_default_and_needs_a_token_when_on() {
        let s = load(&ConfigSources::default()).unwrap_or_else(|e| panic!("{e}"));
        assert!(!s.control.api_enabled);
        assert_eq!(s.control.api_listen, "127.0.0.1:9185");
        let on = [("KINETIC__CONTROL__API_ENABLED", "true")];
        let err = load(&ConfigSources { file: None, env: env(&on) }).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("control.api_enabled") && err.contains(ENV_CONTROL_TOKEN), "{err}");
        let short = [("KINETIC__CONTROL__API_ENABLED", "true"), (ENV_CONTROL_TOKEN, "short")];
        let err =
            load(&ConfigSources { file: None, env: env(&short) }).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("at least 16") && !err.contains("short"), "the token is not echoed: {err}");
        let public = [
            ("KINETIC__CONTROL__API_ENABLED", "true"),
            ("KINETIC__CONTROL__API_LISTEN", "0.0.0.0:9185"),
            (ENV_CONTROL_TOKEN, "0123456789abcdef0123"),
        ];
        let err =
            load(&ConfigSources { file: None, env: env(&public) }).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("control.api_listen"), "{err}");
    }

    #[test]
    fn secrets_never_show_in_debug_or_the_effective_config() {
        let vars = [("KINETIC__CONTROL__API_ENABLED", "true"), (ENV_CONTROL_TOKEN, "very-secret-token-value-42")];
        let s = load(&ConfigSources { file: None, env: env(&vars) }).unwrap_or_else(|e| panic!("{e}"));
        assert!(!format!("{s:?}").contains("very-secret"));
        let text = crate::config::render_effective(&s, None).unwrap_or_default();
        assert!(!text.contains("very-secret") && text.contains("api_enabled = true"));
    }
}
