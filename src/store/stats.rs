//! What an operator and the metrics read about the queue: its depth and age, dead
//! letters, the lifetime count of each outcome, and the recent entries by outcome.

use sqlx::{Database, Encode, QueryBuilder, Type};

use super::{Store, StoreError, on_backend};
use crate::domain::clock::from_ms;
use crate::domain::{IntegrationId, LogId, Outcome};

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

/// The statement of [`Store::recent_outcome_counts`], the same on both backends but for
/// what follows `FROM` (`live_logs`, with its index named where the planner must be
/// told): columns `outcome`, `slot` (the window) and `n`. Every outcome is named, so
/// that the outcome index is read as one range per outcome.
pub(super) fn recent_outcomes_query<DB>(
    from: &str,
    integration_id: &IntegrationId,
    bounds: &[i64],
) -> QueryBuilder<DB>
where
    DB: Database,
    DB::Arguments: Default,
    for<'t> LogId: Encode<'t, DB> + Type<DB>,
    for<'t> IntegrationId: Encode<'t, DB> + Type<DB>,
    for<'t> Outcome: Encode<'t, DB> + Type<DB>,
{
    let floor = |ms: i64| LogId::floor_at(from_ms(ms));
    let mut q: QueryBuilder<DB> = QueryBuilder::new("SELECT outcome, CASE");
    for (slot, bound) in bounds.iter().enumerate().skip(1) {
        q.push(" WHEN id < ")
            .push_bind(floor(*bound))
            .push(format_args!(" THEN CAST({} AS BIGINT)", slot - 1));
    }
    q.push(format_args!(
        " ELSE CAST({} AS BIGINT) END AS slot, COUNT(*) AS n FROM {from} WHERE integration_id = ",
        bounds.len() - 1
    ))
    .push_bind(integration_id.clone());
    q.push(" AND outcome IN (");
    let mut outcomes = q.separated(", ");
    for outcome in Outcome::ALL {
        outcomes.push_bind(*outcome);
    }
    q.push(") AND id >= ")
        .push_bind(floor(bounds[0]))
        .push(" GROUP BY outcome, slot");
    q
}
