//! Button's API: its objects, its rules, an HTTP client, and what its answers mean.
//! This module knows nothing about Signal events; it takes Button objects.

pub mod call;
pub mod client;
pub mod model;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

pub use call::{Api, Auth, Call, CallKind};
pub use client::{Attempt, Client, ClientConfig, PreparedRequest};

/// The product page's troubleshooting advice, attached to the answers it explains.
pub mod hints {
    pub const INVALID_API_KEY: &str = "401 Unauthorized: invalid API key. Verify api_key in Button Settings > API Keys and update the integration in Signal.";
    pub const MISSING_FIELDS: &str = "400 Bad Request: missing required fields. Ensure order_id and total are mapped in the blueprint.";
    pub const WRONG_APPLICATION: &str =
        "Wrong application: verify the application ID matches the property you are tracking.";
    pub const FINALIZED: &str = "403 Forbidden: the order is finalized at Button and can no longer change through the API. Returns and cancellations of a finalized order go through Button (your Button contact).";
    pub const REFUND_UNSENT: &str = "A refund is sent as the order Button last received, less what came back; this order's purchase never reached Button, or the order was cancelled since. Deliver (or replay) the purchase first.";
    pub const REFUND_MISMATCH: &str = "The refund does not fit the order as it was last sent to Button (a product it did not have, or more units than it had): check the refunded products' ids and quantities against the purchase.";
    pub const NEVER_RECEIVED: &str = "404 Not Found: Button does not have this order. It never received the order's create (look for the purchase in Live Logs), or the order was cancelled already.";
}

/// What an answer means for the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classification {
    /// Button has it (or answered that it had it before: `409` on an order create).
    Delivered,
    /// Worth trying again later; Button may have said when.
    Retryable { retry_after: Option<Duration> },
    /// Trying again will not help: the request or the credentials must change.
    Terminal,
}

/// A classified answer with what to tell the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub classification: Classification,
    pub error: Option<String>,
    pub hint: Option<&'static str>,
}

/// Classifies Button's answer to `call`: 2xx delivered (and `409` on an order create,
/// which means the order exists); `408`, `429` and 5xx retryable; every other status
/// terminal. The error is Button's own message when its error envelope carries one.
pub fn classify(
    call: CallKind,
    status: StatusCode,
    retry_after: Option<Duration>,
    body: &str,
) -> Verdict {
    let is_create = call == CallKind::OrderCreate;
    let message = error_message(body);
    let classification = match status.as_u16() {
        200..=299 => Classification::Delivered,
        409 if is_create => Classification::Delivered,
        408 | 429 | 500..=599 => Classification::Retryable { retry_after },
        _ => Classification::Terminal,
    };
    if classification == Classification::Delivered {
        return Verdict {
            classification,
            error: None,
            hint: None,
        };
    }
    let names_application = message
        .as_deref()
        .is_some_and(|m| m.to_ascii_lowercase().contains("application"));
    let hint = match status.as_u16() {
        _ if names_application => Some(hints::WRONG_APPLICATION),
        401 => Some(hints::INVALID_API_KEY),
        400 => Some(hints::MISSING_FIELDS),
        403 if call.api() == Api::Orders => Some(hints::FINALIZED),
        404 if call.changes_an_order() => Some(hints::NEVER_RECEIVED),
        404 if call.api() == Api::Activity => Some(hints::WRONG_APPLICATION),
        _ => None,
    };
    let error = message.or_else(|| {
        let snippet: String = body.trim().chars().take(200).collect();
        let line = client::status_line(status);
        Some(if snippet.is_empty() {
            line
        } else {
            format!("{line}: {snippet}")
        })
    });
    Verdict {
        classification,
        error,
        hint,
    }
}

/// Button's error message from `{"meta":{"status":"error"},"error":{"message":...}}`.
fn error_message(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    let error = v.get("error")?;
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .or_else(|| error.as_str())?;
    Some(match error.get("type").and_then(Value::as_str) {
        Some(kind) => format!("{message} ({kind})"),
        None => message.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn verdict(call: &str, status: u16, body: &str) -> Verdict {
        let call = call.parse().unwrap();
        classify(call, StatusCode::from_u16(status).unwrap(), None, body)
    }

    #[test]
    fn success_and_conflict_on_create_are_delivered() {
        for (call, status, expected) in [
            ("order.create", 200, Classification::Delivered),
            ("order.create", 202, Classification::Delivered),
            ("order.create", 409, Classification::Delivered),
            ("activity.add-to-cart", 409, Classification::Terminal),
        ] {
            assert_eq!(
                verdict(call, status, "{}").classification,
                expected,
                "{call} {status}"
            );
        }
    }

    #[test]
    fn a_finalized_or_unknown_order_fails_with_its_hint() {
        for call in ["order.update", "order.cancel"] {
            let finalized = verdict(
                call,
                403,
                r#"{"meta":{"status":"error"},"error":{"message":"Order is finalized"}}"#,
            );
            assert_eq!(finalized.classification, Classification::Terminal);
            assert_eq!(finalized.hint, Some(hints::FINALIZED), "{call}");
            let unknown = verdict(call, 404, "");
            assert_eq!(unknown.classification, Classification::Terminal);
            assert_eq!(unknown.hint, Some(hints::NEVER_RECEIVED), "{call}");
        }
        assert_eq!(verdict("order.create", 404, "").hint, None);
    }

    #[test]
    fn transient_statuses_are_retryable() {
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(
                matches!(
                    verdict("order.create", status, "").classification,
                    Classification::Retryable { .. }
                ),
                "{status}"
            );
        }
    }

    #[test]
    fn client_errors_are_terminal_with_the_product_pages_hint() {
        let v = verdict(
            "order.create",
            401,
            r#"{"meta":{"status":"error"},"error":{"message":"Invalid api_key"}}"#,
        );
        assert_eq!(v.classification, Classification::Terminal);
        assert_eq!(v.error.as_deref(), Some("Invalid api_key"));
        assert_eq!(v.hint, Some(hints::INVALID_API_KEY));
        let v = verdict(
            "order.create",
            400,
            r#"{"meta":{"status":"error"},"error":{"message":"Missing order_id","type":"invalid_request"}}"#,
        );
        assert_eq!(
            v.error.as_deref(),
            Some("Missing order_id (invalid_request)")
        );
        assert_eq!(v.hint, Some(hints::MISSING_FIELDS));
        let v = verdict(
            "order.create",
            400,
            r#"{"meta":{"status":"error"},"error":{"message":"Unknown application app-x"}}"#,
        );
        assert_eq!(v.hint, Some(hints::WRONG_APPLICATION));
        let v = verdict("order.create", 404, "not json at all");
        assert_eq!(v.classification, Classification::Terminal);
        assert_eq!(v.error.as_deref(), Some("404 Not Found: not json at all"));
    }

    #[test]
    fn retry_after_reads_both_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            client::parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            client::parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(
            client::parse_retry_after(&earlier, now),
            Some(Duration::ZERO)
        );
        assert_eq!(client::parse_retry_after("soon", now), None);
        assert_eq!(client::parse_retry_after("-5", now), None);
    }
}
