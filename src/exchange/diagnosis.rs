//! Why the exchange could not be reached, in words an operator can act on: which host, what
//! failed (DNS, TCP, TLS, timeout, HTTP 451 restricted location, 403, ...) and what to do.
//! Pure: reads an [`ExchangeError`] and the configured URL, returns text and a verdict.

use std::error::Error as _;

use super::{ExchangeError, TransportStage};

/// What kind of failure it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Dns,
    Refused,
    Tls,
    Timeout,
    Connect,
    RestrictedLocation,
    Forbidden,
    Unauthorized,
    RateLimited,
    Banned,
    ServerError,
    Other,
}

/// A failure to reach the exchange, explained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    pub host: String,
    pub cause: Cause,
    /// One line: what happened, naming the host.
    pub what: String,
    /// One line: what the operator can do.
    pub advice: String,
    /// Whether trying again later can help (a network fault) or not (a refused API key).
    pub retry: bool,
}

impl std::fmt::Display for Diagnosis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; {}", self.what, self.advice)
    }
}

/// The error and every cause below it, as one lower-case string.
fn chain_text(err: &ExchangeError) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(" | ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text.to_lowercase()
}

/// The host of `url`, or the URL itself.
fn host_of(url: &str) -> String {
    url::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_else(|| url.to_string())
}

/// Explains `err`, met while talking to `rest_url`.
pub fn diagnose(err: &ExchangeError, rest_url: &str) -> Diagnosis {
    let host = match err {
        ExchangeError::Transport { host, .. } | ExchangeError::Http { host, .. } if !host.is_empty() => host.clone(),
        _ => host_of(rest_url),
    };
    let text = chain_text(err);
    let has = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    let status = match err {
        ExchangeError::Api { http_status, .. } | ExchangeError::Http { http_status, .. } => Some(*http_status),
        _ => None,
    };
    let (cause, what, advice) = match (err, status) {
        (_, Some(451)) => (
            Cause::RestrictedLocation,
            format!("{host} refuses service from this location (HTTP 451, restricted location)"),
            "Binance does not serve this country or region: run from a machine in an allowed location; \
             exchange.testnet = true reaches the testnet, which may be allowed"
                .to_string(),
        ),
        (_, Some(403)) => (
            Cause::Forbidden,
            format!("{host} refused access (HTTP 403: a firewall/WAF block or an IP restriction)"),
            "check that this machine's public IP is allowed (the API key's IP allow-list) and not blocked".to_string(),
        ),
        (ExchangeError::Banned { .. }, _) | (_, Some(418)) => (
            Cause::Banned,
            format!("{host} banned this IP for too many requests (HTTP 418)"),
            "wait until the ban ends; another program on this IP may be using the same limits".to_string(),
        ),
        (ExchangeError::RateLimited { .. }, _) | (_, Some(429)) => (
            Cause::RateLimited,
            format!("{host} rate-limited this IP (HTTP 429)"),
            "wait; another program on this IP may be using the same request budget".to_string(),
        ),
        (_, Some(401)) => (
            Cause::Unauthorized,
            format!("{host} refused the API key (HTTP 401)"),
            "check BINANCE_API_KEY / BINANCE_API_SECRET (futures enabled, IP allow-list), or run with --dry-run"
                .to_string(),
        ),
        (ExchangeError::Api { code, .. }, _) if [-2008, -2014, -2015, -1022].contains(code) => (
            Cause::Unauthorized,
            format!("{host} refused the API key or its signature (code {code})"),
            "check BINANCE_API_KEY / BINANCE_API_SECRET (futures enabled, IP allow-list), or run with --dry-run"
                .to_string(),
        ),
        (_, Some(s)) if s >= 500 => (
            Cause::ServerError,
            format!("{host} is failing (HTTP {s})"),
            "the exchange or a proxy in between has a problem; it usually passes".to_string(),
        ),
        (ExchangeError::Transport { .. }, _)
            if has(&[
                "dns error",
                "failed to lookup address",
                "name or service not known",
                "no address associated",
            ]) =>
        {
            (
                Cause::Dns,
                format!("cannot resolve {host} (DNS lookup failed)"),
                "check this machine's internet connection and DNS resolver (try `getent hosts` on the host name)"
                    .to_string(),
            )
        }
        (ExchangeError::Transport { .. }, _) if has(&["connection refused"]) => (
            Cause::Refused,
            format!("{host} refused the TCP connection"),
            "a firewall or proxy blocks it, or exchange.rest_url points to the wrong place".to_string(),
        ),
        (ExchangeError::Transport { .. }, _) if has(&["certificate", "tls", "handshake", "invalidcertificate"]) => (
            Cause::Tls,
            format!("the TLS handshake with {host} failed"),
            "a proxy may be intercepting HTTPS, or the system clock is wrong; check both".to_string(),
        ),
        (ExchangeError::Transport { stage: TransportStage::Timeout, .. }, _) => (
            Cause::Timeout,
            format!("{host} did not answer in time"),
            "the network path is slow or silently blocked; check the firewall and the connection".to_string(),
        ),
        (ExchangeError::Transport { .. }, _) if has(&["timed out", "timeout"]) => (
            Cause::Timeout,
            format!("connecting to {host} timed out"),
            "the network path is slow or silently blocked; check the firewall and the connection".to_string(),
        ),
        (ExchangeError::Transport { stage: TransportStage::Setup, .. }, _) => (
            Cause::Other,
            format!("the HTTP client for {host} could not be set up"),
            "check exchange.rest_url".to_string(),
        ),
        (ExchangeError::Transport { .. }, _) => (
            Cause::Connect,
            format!("cannot connect to {host}"),
            "check this machine's internet connection, firewall and proxy".to_string(),
        ),
        _ => (Cause::Other, format!("{host}: {err}"), "see the error above".to_string()),
    };
    let retry = !matches!(cause, Cause::Unauthorized)
        && !matches!(err, ExchangeError::Transport { stage: TransportStage::Setup, .. });
    let what = if matches!(cause, Cause::Other) { what } else { format!("{what} [{err}]") };
    Diagnosis { host, cause, what, advice, retry }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn transport(stage: TransportStage, cause: &str) -> ExchangeError {
        let source: Arc<dyn std::error::Error + Send + Sync> = Arc::new(std::io::Error::other(cause.to_string()));
        ExchangeError::Transport { host: "fapi.binance.com".into(), stage, source }
    }

    #[test]
    fn causes_are_told_apart() {
        let url = "https://fapi.binance.com";
        let cases = [
            (transport(TransportStage::Connect, "dns error: failed to lookup address information"), Cause::Dns),
            (
                transport(TransportStage::Connect, "tcp connect error: Connection refused (os error 111)"),
                Cause::Refused,
            ),
            (transport(TransportStage::Connect, "invalid peer certificate: UnknownIssuer"), Cause::Tls),
            (transport(TransportStage::Timeout, "operation timed out"), Cause::Timeout),
            (
                ExchangeError::Http { http_status: 451, host: "fapi.binance.com".into(), body_len: 10 },
                Cause::RestrictedLocation,
            ),
            (ExchangeError::Http { http_status: 403, host: "fapi.binance.com".into(), body_len: 10 }, Cause::Forbidden),
            (ExchangeError::Api { http_status: 401, code: -2015, msg: "Invalid API-key".into() }, Cause::Unauthorized),
            (ExchangeError::Http { http_status: 502, host: String::new(), body_len: 0 }, Cause::ServerError),
        ];
        for (err, cause) in cases {
            let d = diagnose(&err, url);
            assert_eq!(d.cause, cause, "{err}");
            assert_eq!(d.host, "fapi.binance.com");
            assert!(d.to_string().contains("fapi.binance.com"), "{d}");
            assert_eq!(d.retry, cause != Cause::Unauthorized);
        }
    }
}
