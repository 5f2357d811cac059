//! API-key hygiene: `kinetic check-key` (prints the key's permissions and the verdict, trades
//! nothing) and the same check before a live `kinetic run`. The key and its secret are never
//! printed or logged; only what Binance says the key may do.
//!
//! Outcomes: no futures permission → exit 2 with how to fix the key; withdrawals enabled or no
//! IP allow-list → a loud warning (log, `/status`, `kinetic_api_key_unsafe`), or exit 2 when
//! `exchange.refuse_unsafe_key = true`; no Wallet API in this environment (the testnet) → the
//! check is skipped with a log line.

use crate::cli::{CliError, Context};
use crate::config::{ExchangeSettings, Settings};
use crate::exchange::ExchangeError;
use crate::exchange::api_key::{ApiKeyPermissions, ApiKeyStatus, KeyVerdict, assess};
use crate::exchange::binance::BinanceClient;

/// Why the check was skipped on the testnet.
pub const SKIPPED_TESTNET: &str =
    "skipped: the testnet (exchange.testnet = true) has no Wallet API to report the key's permissions";

/// What the check found (`None` permissions: skipped).
pub struct KeyCheck {
    pub permissions: Option<ApiKeyPermissions>,
    pub verdict: Option<KeyVerdict>,
}

impl KeyCheck {
    pub fn status(&self) -> ApiKeyStatus {
        match (&self.permissions, &self.verdict) {
            (Some(p), Some(v)) => ApiKeyStatus::checked(p, v),
            _ => ApiKeyStatus::skipped(SKIPPED_TESTNET),
        }
    }
}

fn rejected_key(e: &ExchangeError) -> bool {
    matches!(e.code(), Some(-2008 | -2014 | -2015 | -1022)) || matches!(e.http_status(), Some(401))
}

/// Reads the key's permissions (nothing else is sent).
///
/// # Errors
/// Binance rejected the key → [`CliError::Usage`] (exit 2); the host is unreachable or the
/// answer unreadable → [`CliError::Fatal`] (exit 1).
pub async fn read(client: &BinanceClient) -> Result<KeyCheck, CliError> {
    match client.api_key_permissions().await {
        Ok(Some(p)) => {
            let v = assess(&p);
            Ok(KeyCheck { permissions: Some(p), verdict: Some(v) })
        }
        Ok(None) => Ok(KeyCheck { permissions: None, verdict: None }),
        Err(e) if rejected_key(&e) => Err(CliError::Usage(format!(
            "Binance rejected the API key while reading its permissions ({e}): check BINANCE_API_KEY and \
             BINANCE_API_SECRET, and that this server's IP is on the key's allow-list"
        ))),
        Err(e) => Err(CliError::Fatal(format!("could not read the API key's permissions: {e}"))),
    }
}

/// Applies the verdict before a live start: logs it loudly and refuses what must be refused.
///
/// # Errors
/// [`CliError::Usage`] (exit 2): no futures permission, or an unsafe key with
/// `exchange.refuse_unsafe_key = true`.
pub fn enforce(check: &KeyCheck, settings: &ExchangeSettings) -> Result<(), CliError> {
    let Some(v) = &check.verdict else {
        tracing::warn!("API-key permission check {SKIPPED_TESTNET}");
        return Ok(());
    };
    if let Some(reason) = v.fatal_reason() {
        return Err(CliError::Usage(reason.to_string()));
    }
    for w in &v.warnings {
        tracing::error!(warning = w.as_str(), "UNSAFE API KEY: {}", w.advice());
    }
    if !v.warnings.is_empty() && settings.refuse_unsafe_key {
        let list: Vec<&str> = v.warnings.iter().map(|w| w.as_str()).collect();
        return Err(CliError::Usage(format!(
            "refusing to start with an unsafe API key ({}) because exchange.refuse_unsafe_key = true; fix \
             the key in Binance API Management, or set exchange.refuse_unsafe_key = false to start with a warning",
            list.join(", ")
        )));
    }
    if v.warnings.is_empty() {
        tracing::info!(verdict = %v.summary(), "API key checked");
    }
    Ok(())
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// The report `kinetic check-key` prints.
pub fn render(check: &KeyCheck, settings: &Settings) -> String {
    let mut out = String::new();
    let Some((p, v)) = check.permissions.as_ref().zip(check.verdict.as_ref()) else {
        out.push_str(&format!("API key check {SKIPPED_TESTNET}\n"));
        return out;
    };
    out.push_str("API key permissions (GET /sapi/v1/account/apiRestrictions):\n");
    for (name, value) in [
        ("futures trading (enableFutures)", p.enable_futures),
        ("reading (enableReading)", p.enable_reading),
        ("withdrawals (enableWithdrawals)", p.enable_withdrawals),
        ("IP allow-list (ipRestrict)", p.ip_restrict),
        ("internal transfer (enableInternalTransfer)", p.enable_internal_transfer),
        ("universal transfer (permitsUniversalTransfer)", p.permits_universal_transfer),
        ("spot and margin trading (enableSpotAndMarginTrading)", p.enable_spot_and_margin_trading),
        ("margin (enableMargin)", p.enable_margin),
        ("options (enableVanillaOptions)", p.enable_vanilla_options),
        ("portfolio margin (enablePortfolioMarginTrading)", p.enable_portfolio_margin_trading),
    ] {
        out.push_str(&format!("  {name:<56} {}\n", yes(value)));
    }
    out.push_str(&format!("verdict: {}\n", v.summary()));
    if let Some(reason) = v.fatal_reason() {
        out.push_str(&format!("  - {reason}\n"));
    }
    for w in &v.warnings {
        out.push_str(&format!("  - {}\n", w.advice()));
    }
    let refuses = v.fatal_reason().is_some() || (!v.warnings.is_empty() && settings.exchange.refuse_unsafe_key);
    out.push_str(if refuses {
        "kinetic run would refuse to start with this key\n"
    } else if v.warnings.is_empty() {
        "kinetic run will start with this key\n"
    } else {
        "kinetic run will start with this key, warning loudly (exchange.refuse_unsafe_key = false)\n"
    });
    out
}

/// `kinetic check-key`.
///
/// # Errors
/// No credentials, a rejected or unusable key → exit 2; the host unreachable → exit 1.
pub fn execute(ctx: &Context) -> Result<(), CliError> {
    Settings::require_credentials(false, ctx.credentials.as_ref())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Fatal(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(async {
        let client = BinanceClient::new(&ctx.settings.exchange, ctx.credentials.clone())
            .map_err(|e| CliError::Fatal(format!("cannot build the exchange client: {e}")))?;
        let check = read(&client).await?;
        print!("{}", render(&check, &ctx.settings));
        match &check.verdict {
            Some(v) if v.fatal_reason().is_some() => Err(CliError::Usage("the API key cannot trade futures".into())),
            Some(v) if !v.warnings.is_empty() && ctx.settings.exchange.refuse_unsafe_key => {
                Err(CliError::Usage("unsafe API key and exchange.refuse_unsafe_key = true".into()))
            }
            _ => Ok(()),
        }
    })
}
