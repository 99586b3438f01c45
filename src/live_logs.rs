//! Live Logs: the immutable record of every attempt, filtering and mapping failure,
//! as the API shows it, and the live tail that fans new entries out to subscribers.
//! A slow subscriber never slows delivery: it has a bounded buffer, and when it falls
//! behind it is told how many entries it missed.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::broadcast;
use utoipa::ToSchema;

use crate::blueprint::Issue;
use crate::button::{Client, PreparedRequest};
use crate::store::logs::{LogFilter, LogRecord, LogRow};
use crate::store::rfc3339;

/// What happened, as Live Logs names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    RetryScheduled,
    Failed,
    DeadLettered,
    Filtered,
    MappingFailed,
    Paused,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Self::Delivered,
        Self::RetryScheduled,
        Self::Failed,
        Self::DeadLettered,
        Self::Filtered,
        Self::MappingFailed,
        Self::Paused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::RetryScheduled => "retry_scheduled",
            Self::Failed => "failed",
            Self::DeadLettered => "dead_lettered",
            Self::Filtered => "filtered",
            Self::MappingFailed => "mapping_failed",
            Self::Paused => "paused",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// One live-log entry.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LogEntry {
    /// `log_` followed by a ULID; newer entries have greater ids.
    pub id: String,
    pub time: String,
    pub integration_id: String,
    pub delivery_id: Option<String>,
    pub message_id: Option<String>,
    pub event_name: Option<String>,
    /// The Button call: `order.create`, `activity.add-to-cart`, `activity.product-viewed`.
    pub call: Option<String>,
    /// 1 for the first attempt of a delivery.
    pub attempt: Option<i64>,
    /// `delivered`, `retry_scheduled`, `failed`, `dead_lettered`, `filtered`,
    /// `mapping_failed` or `paused`.
    pub outcome: String,
    /// Button's status line, e.g. `200 OK`.
    pub status: Option<String>,
    pub status_code: Option<i64>,
    pub latency_ms: Option<f64>,
    pub error: Option<String>,
    /// What to do about it, from the product page's troubleshooting table.
    pub hint: Option<String>,
    pub warnings: Vec<Issue>,
    pub next_attempt_at: Option<String>,
    /// Whether this came from Test Event.
    pub test: bool,
    /// The request sent (or to be sent), credentials redacted.
    pub request: Option<RequestView>,
    /// Button's answer, cut to a bound.
    pub response: Option<ResponseView>,
    /// The event as received (only when one entry is fetched).
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

#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema)]
pub struct ResponseView {
    #[schema(value_type = Object)]
    pub headers: Map<String, Value>,
    pub body: String,
    /// Whether the body was cut at the configured bound.
    pub truncated: bool,
}

impl RequestView {
    pub fn of(request: &PreparedRequest) -> Self {
        Self {
            method: request.method.clone(),
            url: request.url.clone(),
            headers: request
                .redacted_headers()
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
            body: body_value(&request.body),
        }
    }

    /// From a stored delivery's call, URL and body.
    pub fn from_stored(
        client: &Client,
        call: Option<&str>,
        url: Option<&str>,
        body: Option<&[u8]>,
    ) -> Option<Self> {
        let prepared = client.request(
            call?.to_owned(),
            url?.to_owned(),
            bytes::Bytes::copy_from_slice(body.unwrap_or_default()),
        );
        Some(Self::of(&prepared))
    }
}

fn body_value(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

impl LogEntry {
    pub fn from_record(record: &LogRecord, request: Option<RequestView>) -> Self {
        Self {
            id: record.id.clone(),
            time: rfc3339(record.created_at),
            integration_id: record.integration_id.clone(),
            delivery_id: record.delivery_id.clone(),
            message_id: record.message_id.clone(),
            event_name: record.event_name.clone(),
            call: record.call.clone(),
            attempt: record.attempt,
            outcome: record.outcome.clone(),
            status: record.status_line.clone(),
            status_code: record.status_code,
            latency_ms: record.latency_ms,
            error: record.error.clone(),
            hint: record.hint.clone(),
            warnings: record
                .warnings
                .as_deref()
                .and_then(|w| serde_json::from_str(w).ok())
                .unwrap_or_default(),
            next_attempt_at: record.next_attempt_at.map(rfc3339),
            test: record.test,
            request,
            response: record
                .response
                .as_deref()
                .and_then(|r| serde_json::from_str(r).ok()),
            event: None,
        }
    }

    pub fn from_row(row: &LogRow, client: &Client) -> Self {
        let request = RequestView::from_stored(
            client,
            row.record.call.as_deref(),
            row.url.as_deref(),
            row.body.as_deref(),
        );
        let mut entry = Self::from_record(&row.record, request);
        entry.event = row
            .event
            .as_deref()
            .and_then(|e| serde_json::from_str(e).ok());
        entry
    }

    /// Whether the entry passes a live-tail filter.
    pub fn matches(&self, integration_id: &str, filter: &LogFilter) -> bool {
        self.integration_id == integration_id
            && filter.outcome.as_ref().is_none_or(|o| *o == self.outcome)
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

    /// Publishes entries that are already committed. Never waits.
    pub fn publish(&self, entry: LogEntry) {
        if self.sender.receiver_count() > 0 {
            let _ = self.sender.send(Arc::new(entry));
        }
    }

    pub fn has_subscribers(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LogEntry>> {
        self.sender.subscribe()
    }
}
