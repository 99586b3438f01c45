//! Queue depth, dead letters and outcome counts on PostgreSQL (reads).

use std::sync::LazyLock;

use sqlx::{Postgres, Row};

use super::PgStore;
use crate::domain::{DeliveryState, IntegrationId, Outcome};
use crate::store::StoreError;
use crate::store::stats::{PendingCount, QueueDepth, recent_outcomes_query};

/// Pending count and oldest of one integration, and its dead letters (each counted on
/// its partial index, so the words are written from the enum).
static DEPTH: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT
           (SELECT COUNT(*) FROM deliveries WHERE integration_id = $1 AND state = '{pending}') AS queued,
           (SELECT MIN(created_at) FROM deliveries WHERE integration_id = $1 AND state = '{pending}') AS oldest,
           (SELECT COUNT(*) FROM deliveries WHERE integration_id = $1 AND state = '{dead}') AS dead",
        pending = DeliveryState::Pending,
        dead = DeliveryState::Dead
    )
});

static ALL_DEPTHS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT integration_id, COUNT(*) AS queued, MIN(created_at) AS oldest
         FROM deliveries WHERE state = '{}' GROUP BY integration_id",
        DeliveryState::Pending
    )
});

impl PgStore {
    pub(in crate::store) async fn queue_depth(
        &self,
        integration_id: &IntegrationId,
    ) -> Result<QueueDepth, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(DEPTH.as_str()))
            .bind(integration_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(QueueDepth {
            pending: row.try_get("queued")?,
            oldest_pending_at: row.try_get("oldest")?,
            dead: row.try_get("dead")?,
        })
    }

    pub(in crate::store) async fn all_queue_depths(&self) -> Result<Vec<PendingCount>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(ALL_DEPTHS.as_str()))
            .fetch_all(&self.pool)
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
            "SELECT outcome, count FROM outcome_counts WHERE integration_id = $1 ORDER BY outcome",
        )
        .bind(integration_id)
        .fetch_all(&self.pool)
        .await?)
    }

    pub(in crate::store) async fn recent_outcome_counts(
        &self,
        integration_id: &IntegrationId,
        bounds: &[i64],
    ) -> Result<Vec<(Outcome, usize, i64)>, StoreError> {
        let mut q = recent_outcomes_query::<Postgres>("live_logs", integration_id, bounds);
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let slot: i64 = r.try_get("slot")?;
                Ok((r.try_get("outcome")?, slot as usize, r.try_get("n")?))
            })
            .collect()
    }
}
