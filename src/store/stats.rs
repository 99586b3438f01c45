//! What an operator and the metrics read about the queue: its depth and age, dead
//! letters, the lifetime count of each outcome, and the recent entries by outcome.

use super::{Store, StoreError, on_backend};
use crate::domain::{IntegrationId, Outcome};

#[derive(Debug, Clone, Copy, Default)]
pub struct QueueDepth {
    /// Deliveries waiting or in flight.
    pub pending: i64,
    pub oldest_pending_at: Option<i64>,
    pub dead: i64,
}

/// One integration's pending deliveries, for the metrics.
#[derive(Debug, Clone)]
pub struct PendingCount {
    pub integration_id: IntegrationId,
    pub pending: i64,
    pub oldest_pending_at: i64,
}

impl Store {
    pub async fn queue_depth(
        &self,
        integration_id: &IntegrationId,
    ) -> Result<QueueDepth, StoreError> {
        on_backend!(self.backend, db => db.queue_depth(integration_id).await)
    }

    /// Pending count and oldest pending creation time of every integration with a queue.
    pub async fn all_queue_depths(&self) -> Result<Vec<PendingCount>, StoreError> {
        on_backend!(self.backend, db => db.all_queue_depths().await)
    }

    /// Lifetime counts of each outcome for the integration (not reduced by pruning).
    pub async fn outcome_counts(
        &self,
        integration_id: &IntegrationId,
    ) -> Result<Vec<(Outcome, i64)>, StoreError> {
        on_backend!(self.backend, db => db.outcome_counts(integration_id).await)
    }

    /// Live-log entries of the integration from `bounds[0]` on, by outcome, in the
    /// windows `bounds` delimit (milliseconds, ascending): `(outcome, window, count)`,
    /// window `i` running from `bounds[i]` to `bounds[i + 1]` and the last one open.
    /// Entry ids are time-ordered, so the windows are ranges of the outcome index and
    /// only the entries in them are read.
    pub async fn recent_outcome_counts(
        &self,
        integration_id: &IntegrationId,
        bounds: &[i64],
    ) -> Result<Vec<(Outcome, usize, i64)>, StoreError> {
        if bounds.is_empty() {
            return Ok(Vec::new());
        }
        on_backend!(self.backend, db => db.recent_outcome_counts(integration_id, bounds).await)
    }
}
