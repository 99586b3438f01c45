//! Queue depth, dead letters and outcome counts on SQLite (reads).

use sqlx::{Row, Sqlite};

use super::SqliteStore;
use crate::domain::{DeliveryState, IntegrationId, Outcome};
use crate::store::StoreError;
use crate::store::stats::{PendingCount, QueueDepth, recent_outcomes_query};

impl SqliteStore {
    pub(in crate::store) async fn queue_depth(
        &self,
        integration_id: &IntegrationId,
    ) -> Result<QueueDepth, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS queued, MIN(created_at) AS oldest
             FROM deliveries WHERE integration_id = ? AND state = ?",
        )
        .bind(integration_id)
        .bind(DeliveryState::Pending)
        .fetch_one(&self.read)
        .await?;
        let dead: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM deliveries WHERE integration_id = ? AND state = ?",
        )
        .bind(integration_id)
        .bind(DeliveryState::Dead)
        .fetch_one(&self.read)
        .await?;
        Ok(QueueDepth {
            pending: row.try_get("queued")?,
            oldest_pending_at: row.try_get("oldest")?,
            dead,
        })
    }

    pub(in crate::store) async fn all_queue_depths(&self) -> Result<Vec<PendingCount>, StoreError> {
        let rows = sqlx::query(
            "SELECT integration_id, COUNT(*) AS queued, MIN(created_at) AS oldest
             FROM deliveries WHERE state = ? GROUP BY integration_id",
        )
        .bind(DeliveryState::Pending)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PendingCount {
                    integration_id: r.try_get("integration_id")?,
                    pending: r.try_get("queued")?,
                    oldest_pending_at: r.try_get("oldest")?,
                })
            })
            .collect()
    }

    pub(in crate::store) async fn outcome_counts(
        &self,
        integration_id: &IntegrationId,
    ) -> Result<Vec<(Outcome, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT outcome, count FROM outcome_counts WHERE integration_id = ? ORDER BY outcome",
        )
        .bind(integration_id)
        .fetch_all(&self.read)
        .await?)
    }

    pub(in crate::store) async fn recent_outcome_counts(
        &self,
        integration_id: &IntegrationId,
        bounds: &[i64],
    ) -> Result<Vec<(Outcome, usize, i64)>, StoreError> {
        // SQLite's planner must be told to read the outcome index.
        let mut q = recent_outcomes_query::<Sqlite>(
            "live_logs INDEXED BY live_logs_outcome",
            integration_id,
            bounds,
        );
        let rows = q.build().fetch_all(&self.read).await?;
        rows.iter()
            .map(|r| {
                let slot: i64 = r.try_get("slot")?;
                Ok((r.try_get("outcome")?, slot as usize, r.try_get("n")?))
            })
            .collect()
    }
}
