//! Live Logs: the immutable record of every attempt, filtering and mapping failure (one
//! [`LogRecord`], stored as written and shown as stored), and the live tail that fans
//! new entries out to subscribers. A slow subscriber never slows delivery: it has a
//! bounded buffer, and when it falls behind it is told how many entries it missed.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::broadcast;
use utoipa::ToSchema;

use crate::blueprint::Issue;
use crate::button::{Attempt, CallKind, PreparedRequest};
use crate::domain::clock;
use crate::domain::{DeliveryId, IntegrationId, LogId, Outcome};

/// One live-log entry, as stored and as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LogRecord {
    /// Newer entries have greater ids.
    pub id: LogId,
    #[serde(rename = "time", serialize_with = "clock::serialize_rfc3339")]
    #[schema(value_type = String, example = "2024-05-01T10:00:00.123Z")]
    pub created_at: i64,
    pub integration_id: IntegrationId,
    pub delivery_id: Option<DeliveryId>,
    pub message_id: Option<String>,
    pub event_name: Option<String>,
    /// The Button call.
    pub call: Option<CallKind>,
    /// 1 for the first attempt of a delivery.
    pub attempt: Option<i64>,
    pub outcome: Outcome,
    /// Button's status line, e.g. `200 OK`.
    #[serde(rename = "status")]
    pub status_line: Option<String>,
    pub status_code: Option<i64>,
    pub latency_ms: Option<f64>,
    pub error: Option<String>,
    /// What to do about it, from the product page's troubleshooting table.
    pub hint: Option<String>,
    pub warnings: Vec<Issue>,
    #[serde(serialize_with = "clock::serialize_rfc3339_opt")]
    #[schema(value_type = Option<String>)]
    pub next_attempt_at: Option<i64>,
    /// Whether this came from Test Event.
    pub test: bool,
    /// Button's answer, cut to a bound.
    pub response: Option<ResponseView>,
    /// The entry this one replaces: a stored event mapped again after a blueprint
    /// fix points at the entry of its earlier mapping.
    pub replaces: Option<LogId>,
}

/// An entry with the request its delivery sends, and (when one entry is fetched) the
/// event as received.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LogEntry {
    #[serde(flatten)]
    pub record: LogRecord,
    /// The request sent (or to be sent), credentials redacted.
    pub request: Option<RequestView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub event: Option<Value>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RequestView {
    pub method: String,
    pub url: String,
    #[schema(value_type = Object)]
    pub headers: Map<String, Value>,
    /// The body: JSON when it is JSON.
    #[schema(value_type = Object)]
    pub body: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResponseView {
    #[schema(value_type = Object)]
    pub headers: Map<String, Value>,
    pub body: String,
    /// Whether the body was cut at the configured bound.
    pub truncated: bool,
}

impl ResponseView {
    /// Button's answer to an attempt, if it answered.
    pub fn of(answer: &Attempt) -> Option<Self> {
        answer.status?;
        Some(Self {
            headers: answer
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
            body: answer.body.clone(),
            truncated: answer.truncated,
        })
    }
}

impl RequestView {
    pub fn of(request: &PreparedRequest) -> Self {
        Self {
            method: request.method().to_string(),
            url: request.url.clone(),
            headers: request
                .redacted_headers()
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
            body: body_value(&request.body),
        }
    }
}

fn body_value(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// Which entries a list or a live tail shows.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub outcome: Option<Outcome>,
    pub event_name: Option<String>,
    pub message_id: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub test: Option<bool>,
}

impl LogRecord {
    /// Whether the entry passes a live-tail filter.
    pub fn matches(&self, integration_id: &IntegrationId, filter: &LogFilter) -> bool {
        self.integration_id == *integration_id
            && filter.outcome.is_none_or(|o| o == self.outcome)
            && filter
                .event_name
                .as_ref()
                .is_none_or(|n| Some(n) == self.event_name.as_ref())
            && filter
                .message_id
                .as_ref()
                .is_none_or(|m| Some(m) == self.message_id.as_ref())
            && filter.test.is_none_or(|t| t == self.test)
    }
}

/// Fans committed entries out to live-tail subscribers.
#[derive(Clone)]
pub struct Hub {
    sender: broadcast::Sender<Arc<LogEntry>>,
}

impl Hub {
    pub fn new(buffer: usize) -> Self {
        Self {
            sender: broadcast::channel(buffer.max(1)).0,
        }
    }

    /// Publishes an entry that is already committed. Never waits.
    pub fn publish(&self, record: &LogRecord, request: Option<RequestView>) {
        if self.sender.receiver_count() > 0 {
            let _ = self.sender.send(Arc::new(LogEntry {
                record: record.clone(),
                request,
                event: None,
            }));
        }
    }

    pub fn has_subscribers(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LogEntry>> {
        self.sender.subscribe()
    }
}
