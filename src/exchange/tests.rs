//! Error classification of [`super::ExchangeError`].
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use super::*;

fn api(http_status: u16, code: i64, msg: &str) -> ExchangeError {
    ExchangeError::Api { http_status, code, msg: msg.into() }
}

fn transport(stage: TransportStage) -> ExchangeError {
    let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset by peer");
    ExchangeError::Transport { host: "fapi.binance.com".into(), stage, source: Arc::new(io) }
}

fn http(http_status: u16) -> ExchangeError {
    ExchangeError::Http { http_status, host: "fapi.binance.com".into(), body_len: 150 }
}

/// (case, error, retryable, unknown outcome, fatal)
fn cases() -> Vec<(&'static str, ExchangeError, bool, bool, bool)> {
    use TransportStage::*;
    let unknown = ExchangeError::UnknownOutcome {
        client_order_id: "ke-1".into(),
        detail: "3 lookups failed".into(),
        cause: Some(Arc::new(transport(Timeout))),
    };
    vec![
        ("connect failed: nothing sent", transport(Connect), true, false, false),
        ("timeout after sending", transport(Timeout), false, true, false),
        ("connection lost after sending", transport(Response), false, true, false),
        ("HTTP client cannot be built", transport(Setup), false, false, true),
        ("429", ExchangeError::RateLimited { retry_after_ms: 1000 }, true, false, false),
        ("-1003 too many requests", api(429, -1003, "Too many requests"), true, false, false),
        ("-1003 on a 418 is a ban", api(418, -1003, "IP banned until 1"), false, false, true),
        ("418 ban", ExchangeError::Banned { until: 1 }, false, false, true),
        ("-1008 overload", api(503, -1008, "Request throttled by system-level protection."), true, false, false),
        ("-1015 too many orders", api(429, -1015, "Too many new orders"), true, false, false),
        ("-1021 (after a resync)", api(400, -1021, "outside of the recvWindow"), true, false, false),
        ("-5028 ME recvWindow", api(400, -5028, "outside of the ME recvWindow"), true, false, false),
        ("503 Service Unavailable", api(503, -1001, "Service Unavailable."), true, false, false),
        ("503 Unknown error", api(503, -1000, "Unknown error, please check your request"), false, true, false),
        ("500 internal", api(500, -1000, "An unknown error occured"), false, true, false),
        ("-1001 disconnected", api(400, -1001, "Internal error; unable to process"), false, true, false),
        ("-1006 bus", api(400, -1006, "Unexpected response"), false, true, false),
        ("-1007 backend timeout", api(408, -1007, "Timeout waiting for response"), false, true, false),
        ("502 HTML page", http(502), false, true, false),
        ("504 empty", http(504), false, true, false),
        ("404 HTML page", http(404), false, false, false),
        ("401 without a code", http(401), false, false, true),
        ("UnknownOutcome", unknown, false, true, false),
        ("-2019 margin", api(400, -2019, "Margin is insufficient."), false, false, false),
        ("-2010 rejected", api(400, -2010, "Order would immediately trigger"), false, false, false),
        ("-1111 precision", api(400, -1111, "Precision is over the maximum"), false, false, false),
        ("-1022 signature", api(400, -1022, "Signature for this request is not valid."), false, false, true),
        ("-2014 key format", api(401, -2014, "API-key format invalid."), false, false, true),
        ("-2015 key/IP/permissions", api(401, -2015, "Invalid API-key, IP, or permissions"), false, false, true),
        ("-2008 key id", api(401, -2008, "Invalid Api-Key ID."), false, false, true),
        ("-4061 hedge mode", api(400, -4061, "Order's position side does not match"), false, false, true),
        ("decode", ExchangeError::decode("ticker: price"), false, false, false),
        ("refused locally", ExchangeError::Refused("budget".into()), false, false, false),
    ]
}

#[test]
fn errors_are_classified_by_code_and_status() {
    for (case, e, retryable, unknown, fatal) in cases() {
        assert_eq!(e.is_retryable(), retryable, "{case}: is_retryable");
        assert_eq!(e.is_unknown_outcome(), unknown, "{case}: is_unknown_outcome");
        assert_eq!(e.is_fatal(), fatal, "{case}: is_fatal");
        // At most one of the three: each tells the caller what to do.
        assert!(u8::from(retryable) + u8::from(unknown) + u8::from(fatal) <= 1, "{case}");
    }
}

#[test]
fn codes_margin_and_timestamp_helpers() {
    let margin = api(400, -2019, "Margin is insufficient.");
    assert_eq!(margin.code(), Some(-2019));
    assert!(margin.is_insufficient_margin());
    assert_eq!(margin.http_status(), Some(400));
    assert!(api(400, -1021, "x").is_timestamp_rejected());
    assert!(!api(400, -1022, "x").is_timestamp_rejected());
    assert_eq!(transport(TransportStage::Timeout).code(), None);
    assert_eq!(ExchangeError::RateLimited { retry_after_ms: 1 }.http_status(), Some(429));
}

#[test]
fn causes_are_sources_and_appear_in_the_message() {
    use std::error::Error as _;
    let e = transport(TransportStage::Timeout);
    assert_eq!(
        e.to_string(),
        "transport error talking to fapi.binance.com (timed out after sending): connection reset by peer"
    );
    assert_eq!(e.source().map(ToString::to_string).as_deref(), Some("connection reset by peer"));

    let json = serde_json::from_str::<u32>("x").unwrap_err();
    let d = ExchangeError::decode_with("server time", json);
    assert!(d.to_string().starts_with("malformed exchange response: server time: expected value"), "{d}");
    assert!(d.source().is_some());
    assert!(ExchangeError::decode("x").source().is_none());

    let u = ExchangeError::UnknownOutcome {
        client_order_id: "ke-1".into(),
        detail: "3 lookups failed".into(),
        cause: Some(Arc::new(e.clone())),
    };
    let cause = u.source();
    assert_eq!(cause.map(|c| c.to_string()), Some(e.to_string()));
    assert!(cause.and_then(|c| c.source()).is_some(), "the chain goes down to the I/O error");
    assert_eq!(
        u.to_string(),
        "outcome of order ke-1 unknown: 3 lookups failed: transport error talking to fapi.binance.com \
         (timed out after sending): connection reset by peer"
    );
}

#[test]
fn errors_clone_and_compare_by_content() {
    for (case, e, ..) in cases() {
        assert_eq!(e.clone(), e, "{case}");
    }
    assert_ne!(transport(TransportStage::Timeout), transport(TransportStage::Response));
    assert_ne!(api(400, -2019, "a"), api(400, -2019, "b"));
    assert_ne!(ExchangeError::decode("a"), ExchangeError::Refused("a".into()));
}
