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
use crate::button::{Attempt, CallKind, Client, PreparedRequest};
use crate::domain::clock::rfc3339;
use crate::domain::{DeliveryId, IntegrationId, LogId, Outcome};
use crate::store::logs::{LogFilter, LogRecord, LogRow};

/// One live-log entry.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LogEntry {
    /// Newer entries have greater ids.
    pub id: LogId,
    pub time: String,
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

impl LogEntry {
    pub fn from_record(record: &LogRecord, request: Option<RequestView>) -> Self {
        Self {
            id: record.id.clone(),
            time: rfc3339(record.created_at),
            integration_id: record.integration_id.clone(),
            delivery_id: record.delivery_id.clone(),
            message_id: record.message_id.clone(),
            event_name: record.event_name.clone(),
            call: record.call,
            attempt: record.attempt,
            outcome: record.outcome,
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
        let request = client
            .stored_request(row.record.call, row.url.as_deref(), row.body.as_deref())
            .map(|r| RequestView::of(&r));
        let mut entry = Self::from_record(&row.record, request);
        entry.event = row
            .event
            .as_deref()
            .and_then(|e| serde_json::from_str(e).ok());
        entry
    }

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
