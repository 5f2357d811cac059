//! Operator settings: the control API (`[control]`) and the secrets the operator channels
//! read from the environment only (never from a file, never printed).

use std::collections::HashMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{ConfigError, Secret, invalid};

/// Environment variable holding the control API's bearer token.
pub const ENV_CONTROL_TOKEN: &str = "KINETIC_CONTROL_TOKEN";
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
}

impl OperatorSecrets {
    /// Reads the variables that are set and non-empty.
    pub fn from_env(env: &HashMap<String, String>) -> OperatorSecrets {
        let read = |name: &str| env.get(name).map(|s| s.trim()).filter(|s| !s.is_empty()).map(Secret::new);
        OperatorSecrets { control_token: read(ENV_CONTROL_TOKEN) }
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
