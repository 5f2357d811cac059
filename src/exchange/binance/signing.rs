//! HMAC-SHA256 request signing over the exact bytes sent, as Binance specifies: the
//! percent-encoded query string concatenated with the body, signature appended last.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Hex HMAC-SHA256 of `payload` with `secret`.
pub fn sign(secret: &str, payload: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail; fall back to an empty signature
    // (which Binance rejects with -1022) rather than panic.
    match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(payload.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Binance's documented example (docs/binance-usdm-futures.md §2).
    #[test]
    fn documented_example_signature() {
        let secret = "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9";
        let params = "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC&recvWindow=5000&timestamp=1591702613943";
        assert_eq!(sign(secret, params), "3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9");
        let mixed = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTCquantity=1&price=9000&recvWindow=5000&timestamp=1591702613943";
        assert_eq!(sign(secret, mixed), "30baaf0fab549bbeda7f5ef201898b34122da25fd23c646cac2c529aebe670a4");
    }
}
