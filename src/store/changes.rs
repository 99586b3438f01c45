//! What replicas share as it happens: another replica announces a change to an
//! integration, a `Retry-After` hold on a lane, or live-log entries it committed, and
//! this replica follows. Only PostgreSQL has other replicas; the embedded store has
//! one process, and its operations here do nothing.

use tokio::sync::mpsc;

use super::logs::LogRow;
use super::{Backend, Store, StoreError};
use crate::domain::{IntegrationId, LogId, SourceId};

/// One announcement of another replica's (or this one's: a replica hears its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// An integration was created, changed or deleted.
    Integration(IntegrationId),
    /// A source was created, changed or deleted.
    Source(SourceId),
    /// Button asked that the integration's lane send nothing before `until` (ms).
    Hold {
        integration_id: IntegrationId,
        until: i64,
    },
    /// Entries another replica committed.
    Logs(Vec<LogId>),
    /// The connection that hears announcements was lost and is back: some may have
    /// been missed, so what they would have said must be read again.
    Missed,
}

impl Store {
    /// Starts hearing the announcements of every replica; `None` where there are no
    /// other replicas.
    pub async fn follow_changes(&self) -> Result<Option<mpsc::Receiver<Change>>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(None),
            Backend::Postgres(db) => db.follow_changes().await.map(Some),
        }
    }

    /// Holds an integration's lane until `until` (ms) on every replica. (A lane holds
    /// itself on the replica that heard Button; this tells the others.)
    pub async fn hold_lane(
        &self,
        integration_id: &IntegrationId,
        until: i64,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(()),
            Backend::Postgres(db) => db.hold_lane(integration_id, until).await,
        }
    }

    /// The lane holds in force at `now` (ms).
    pub async fn lane_holds(&self, now: i64) -> Result<Vec<(IntegrationId, i64)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Vec::new()),
            Backend::Postgres(db) => db.lane_holds(now).await,
        }
    }

    /// Entries by id: those another replica announced, for this replica's live tail.
    pub async fn logs_by_id(&self, ids: &[LogId]) -> Result<Vec<LogRow>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Vec::new()),
            Backend::Postgres(db) => db.logs_by_id(ids).await,
        }
    }
}
