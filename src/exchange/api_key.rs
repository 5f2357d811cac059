//! API-key hygiene: what the key the user gave us may do (Binance's Wallet API
//! `GET /sapi/v1/account/apiRestrictions`, on the spot REST host) and what Kinetic thinks of
//! it. Pure: the client fetches the permissions, [`assess`] judges them, `kinetic run` and
//! `kinetic check-key` act on the verdict. Nothing here ever sees the secret.
//!
//! - No futures permission (`enableFutures = false`: a key created before the futures account
//!   was opened, or with portfolio margin): the key cannot trade; starting would fail only at
//!   the first order. Fatal.
//! - Withdrawals enabled, or no IP allow-list: a leaked `kinetic.env` becomes a drained
//!   account. A loud warning (log, `/status`, a metric), and a refusal to start when
//!   `exchange.refuse_unsafe_key = true`.

use serde::Serialize;

/// The permissions of an API key, as `apiRestrictions` reports them. Fields Binance does not
/// send are `false` (or 0): a permission not reported is not granted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApiKeyPermissions {
    pub ip_restrict: bool,
    pub enable_reading: bool,
    pub enable_futures: bool,
    pub enable_withdrawals: bool,
    pub enable_internal_transfer: bool,
    pub permits_universal_transfer: bool,
    pub enable_spot_and_margin_trading: bool,
    pub enable_margin: bool,
    pub enable_vanilla_options: bool,
    pub enable_portfolio_margin_trading: bool,
    /// When the key was created, ms since epoch (0 when not reported).
    pub create_time: i64,
}

/// A property of the key that turns a leaked secret into lost money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyWarning {
    /// The key may withdraw funds.
    WithdrawalsEnabled,
    /// The key works from any IP address.
    NoIpRestriction,
}

impl KeyWarning {
    /// Label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyWarning::WithdrawalsEnabled => "withdrawals_enabled",
            KeyWarning::NoIpRestriction => "no_ip_restriction",
        }
    }

    /// What it means and how to fix it.
    pub fn advice(self) -> &'static str {
        match self {
            KeyWarning::WithdrawalsEnabled => {
                "the API key can WITHDRAW funds: anyone who reads kinetic.env can empty the account. \
                 Untick 'Enable Withdrawals' for this key in Binance API Management"
            }
            KeyWarning::NoIpRestriction => {
                "the API key has NO IP access restriction: it works from any machine. Restrict it \
                 to this server's IP address in Binance API Management"
            }
        }
    }
}

/// What Kinetic thinks of a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyVerdict {
    /// The key can trade USDⓈ-M futures.
    pub can_trade_futures: bool,
    /// Unsafe properties, in a fixed order.
    pub warnings: Vec<KeyWarning>,
}

impl KeyVerdict {
    /// Why the key cannot be used at all, with the fix; `None` when it can trade futures.
    pub fn fatal_reason(&self) -> Option<&'static str> {
        (!self.can_trade_futures).then_some(
            "the API key has no futures permission (Binance reports enableFutures = false: the key was \
             created before the futures account was opened, or portfolio margin is on). Create a new \
             API key in Binance API Management AFTER opening the USDⓈ-M futures account, tick \
             'Enable Futures' (not 'Enable Withdrawals'), restrict it to this server's IP, and put it \
             in BINANCE_API_KEY / BINANCE_API_SECRET",
        )
    }

    /// One line for logs and the CLI.
    pub fn summary(&self) -> String {
        match (self.fatal_reason(), self.warnings.is_empty()) {
            (Some(_), _) => "unusable: no futures permission".to_string(),
            (None, true) => "ok: futures trading, no withdrawals, IP-restricted".to_string(),
            (None, false) => {
                format!("UNSAFE: {}", self.warnings.iter().map(|w| w.as_str()).collect::<Vec<_>>().join(", "))
            }
        }
    }
}

/// Judges a key's permissions.
pub fn assess(p: &ApiKeyPermissions) -> KeyVerdict {
    let mut warnings = Vec::new();
    if p.enable_withdrawals {
        warnings.push(KeyWarning::WithdrawalsEnabled);
    }
    if !p.ip_restrict {
        warnings.push(KeyWarning::NoIpRestriction);
    }
    KeyVerdict { can_trade_futures: p.enable_futures, warnings }
}

/// What `/status` shows about the key (no secret, no key: permissions and the verdict).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeyStatus {
    /// `checked`, or `skipped` (no Wallet API where we trade, e.g. the testnet).
    pub check: String,
    pub verdict: String,
    pub warnings: Vec<KeyWarning>,
    pub permissions: Option<ApiKeyPermissions>,
}

impl ApiKeyStatus {
    pub fn checked(p: &ApiKeyPermissions, v: &KeyVerdict) -> Self {
        ApiKeyStatus {
            check: "checked".into(),
            verdict: v.summary(),
            warnings: v.warnings.clone(),
            permissions: Some(p.clone()),
        }
    }

    pub fn skipped(why: &str) -> Self {
        ApiKeyStatus { check: "skipped".into(), verdict: why.to_string(), warnings: Vec::new(), permissions: None }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    fn key(futures: bool, withdrawals: bool, ip: bool) -> ApiKeyPermissions {
        ApiKeyPermissions {
            enable_futures: futures,
            enable_withdrawals: withdrawals,
            ip_restrict: ip,
            enable_reading: true,
            ..ApiKeyPermissions::default()
        }
    }

    #[test]
    fn verdicts() {
        use KeyWarning::*;
        // (futures, withdrawals, ip) → (usable, warnings)
        let cases = [
            ((true, false, true), true, vec![]),
            ((true, true, true), true, vec![WithdrawalsEnabled]),
            ((true, false, false), true, vec![NoIpRestriction]),
            ((true, true, false), true, vec![WithdrawalsEnabled, NoIpRestriction]),
            ((false, false, true), false, vec![]),
            ((false, true, false), false, vec![WithdrawalsEnabled, NoIpRestriction]),
        ];
        for ((f, w, ip), usable, warnings) in cases {
            let v = assess(&key(f, w, ip));
            assert_eq!(v.can_trade_futures, usable, "{f} {w} {ip}");
            assert_eq!(v.fatal_reason().is_none(), usable);
            assert_eq!(v.warnings, warnings, "{f} {w} {ip}");
        }
        assert!(assess(&key(true, false, true)).summary().starts_with("ok"));
        assert!(assess(&key(true, true, true)).summary().contains("withdrawals_enabled"));
        let fatal = assess(&key(false, false, true));
        assert!(fatal.fatal_reason().unwrap().contains("Enable Futures"));
    }
}
