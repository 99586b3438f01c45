//! Live-log entries: written in the same transaction as the queue change they record,
//! and read newest first with filters.

use super::{Page, Store, StoreError, on_backend};
use crate::domain::{IntegrationId, LogId};
use crate::live_logs::{LogFilter, LogRecord};

/// A log row with what it refers to: the request its delivery sends and, when asked
/// for, the event as received.
#[derive(Debug, Clone)]
pub struct LogRow {
    pub record: LogRecord,
    pub url: Option<String>,
    pub body: Option<Vec<u8>>,
    pub event: Option<String>,
}

impl Store {
    /// Entries of one integration, newest first (a page starts below its key).
    pub async fn list_logs(
        &self,
        integration_id: &IntegrationId,
        filter: &LogFilter,
        page: &Page<LogId>,
    ) -> Result<Vec<LogRow>, StoreError> {
        on_backend!(self.backend, db => db.list_logs(integration_id, filter, page).await)
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
