//! Wallet API payloads (spot REST host): the API key's permissions.

use serde::Deserialize;

use super::json;
use crate::exchange::ExResult;
use crate::exchange::api_key::ApiKeyPermissions;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiRestrictionsWire {
    // The three the verdict rests on are required: a payload without them is malformed, not
    // "permission absent".
    ip_restrict: bool,
    enable_futures: bool,
    enable_withdrawals: bool,
    #[serde(default)]
    enable_reading: bool,
    #[serde(default)]
    enable_internal_transfer: bool,
    #[serde(default)]
    permits_universal_transfer: bool,
    #[serde(default)]
    enable_spot_and_margin_trading: bool,
    #[serde(default)]
    enable_margin: bool,
    #[serde(default)]
    enable_vanilla_options: bool,
    #[serde(default)]
    enable_portfolio_margin_trading: bool,
    #[serde(default)]
    create_time: i64,
}

/// `GET /sapi/v1/account/apiRestrictions`.
///
/// # Errors
/// [`crate::exchange::ExchangeError::Decode`] when `ipRestrict`, `enableFutures` or
/// `enableWithdrawals` is missing or the document has another shape.
pub fn api_restrictions(bytes: &[u8]) -> ExResult<ApiKeyPermissions> {
    let w: ApiRestrictionsWire = json("api restrictions", bytes)?;
    Ok(ApiKeyPermissions {
        ip_restrict: w.ip_restrict,
        enable_reading: w.enable_reading,
        enable_futures: w.enable_futures,
        enable_withdrawals: w.enable_withdrawals,
        enable_internal_transfer: w.enable_internal_transfer,
        permits_universal_transfer: w.permits_universal_transfer,
        enable_spot_and_margin_trading: w.enable_spot_and_margin_trading,
        enable_margin: w.enable_margin,
        enable_vanilla_options: w.enable_vanilla_options,
        enable_portfolio_margin_trading: w.enable_portfolio_margin_trading,
        create_time: w.create_time,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    /// The documented example (Wallet API "Get API Key Permission"), with the FIX fields
    /// Binance added since.
    const DOC: &str = r#"{"ipRestrict":false,"createTime":1698645219000,"enableInternalTransfer":false,
        "enableFutures":false,"enablePortfolioMarginTrading":true,"enableVanillaOptions":false,
        "permitsUniversalTransfer":false,"enableReading":true,"enableSpotAndMarginTrading":false,
        "enableWithdrawals":false,"enableMargin":false,"enableFixApiTrade":false,"enableFixReadOnly":true,
        "tradingAuthorityExpirationTime":1628985600000}"#;

    #[test]
    fn decodes_the_documented_example_and_refuses_incomplete_ones() {
        let p = api_restrictions(DOC.as_bytes()).unwrap();
        assert!(!p.ip_restrict && !p.enable_futures && !p.enable_withdrawals && p.enable_reading);
        assert!(p.enable_portfolio_margin_trading);
        assert_eq!(p.create_time, 1_698_645_219_000);
        for bad in [
            r#"{"ipRestrict":true,"enableWithdrawals":false}"#,
            r#"{"enableFutures":true,"enableWithdrawals":false}"#,
            r#"{"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}"#,
            "[]",
            "",
        ] {
            assert!(api_restrictions(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
