//! Live-log entries: written in the same transaction as the queue change they record,
//! and read newest first with filters.

use super::{Page, Store, StoreError, on_backend};
use crate::domain::{IntegrationId, LogId, Outcome};
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

/// What a write of `records` adds to the counts: entries per (integration, outcome)
/// and per integration, each in the order of its key, so that concurrent writers
/// update the counting rows in the same order.
pub(super) struct Tally<'a> {
    pub outcomes: Vec<((&'a IntegrationId, Outcome), i64)>,
    pub entries: Vec<(&'a IntegrationId, i64)>,
}

impl<'a> Tally<'a> {
    pub(super) fn of(records: &[&'a LogRecord]) -> Self {
        let mut outcomes: std::collections::BTreeMap<(&IntegrationId, &str), (Outcome, i64)> =
            Default::default();
        let mut entries: std::collections::BTreeMap<&IntegrationId, i64> = Default::default();
        for r in records {
            outcomes
                .entry((&r.integration_id, r.outcome.as_str()))
                .or_insert((r.outcome, 0))
                .1 += 1;
            *entries.entry(&r.integration_id).or_default() += 1;
        }
        Self {
            outcomes: outcomes
                .into_iter()
                .map(|((id, _), (outcome, n))| ((id, outcome), n))
                .collect(),
            entries: entries.into_iter().collect(),
        }
    }
}
