//! Live-log rows: written in the same transaction as the queue change they record, and
//! read newest first with filters.

use super::{Store, StoreError, on_backend};
use crate::button::CallKind;
use crate::domain::{DeliveryId, IntegrationId, LogId, Outcome};

/// One immutable live-log row.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    pub id: LogId,
    pub integration_id: IntegrationId,
    pub delivery_id: Option<DeliveryId>,
    pub message_id: Option<String>,
    pub event_name: Option<String>,
    pub call: Option<CallKind>,
    pub attempt: Option<i64>,
    pub outcome: Outcome,
    pub status_code: Option<i64>,
    pub status_line: Option<String>,
    pub latency_ms: Option<f64>,
    pub error: Option<String>,
    pub hint: Option<String>,
    /// JSON array of `{field, message, hint}`.
    pub warnings: Option<String>,
    pub next_attempt_at: Option<i64>,
    /// JSON `{headers, body, truncated}`.
    pub response: Option<String>,
    pub test: bool,
    pub created_at: i64,
}

/// A log row with what it refers to: the request its delivery sends and, when asked
/// for, the event as received.
#[derive(Debug, Clone)]
pub struct LogRow {
    pub record: LogRecord,
    pub url: Option<String>,
    pub body: Option<Vec<u8>>,
    pub event: Option<String>,
}

/// Which entries a list (or a live tail) shows.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub outcome: Option<Outcome>,
    pub event_name: Option<String>,
    pub message_id: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub test: Option<bool>,
}

impl Store {
    /// Entries of one integration, newest first, older than `before`.
    pub async fn list_logs(
        &self,
        integration_id: &IntegrationId,
        filter: &LogFilter,
        before: Option<&LogId>,
        limit: u32,
    ) -> Result<Vec<LogRow>, StoreError> {
        on_backend!(self.backend, db => db.list_logs(integration_id, filter, before, limit).await)
    }

    /// One entry, with the event as received.
    pub async fn get_log(
        &self,
        integration_id: &IntegrationId,
        id: &LogId,
    ) -> Result<Option<LogRow>, StoreError> {
        on_backend!(self.backend, db => db.get_log(integration_id, id).await)
    }
}
