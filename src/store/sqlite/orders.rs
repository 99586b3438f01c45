//! Order states on SQLite.

use sqlx::SqliteConnection;

use super::SqliteStore;
use crate::domain::IntegrationId;
use crate::store::StoreError;
use crate::store::orders::OrderChange;

impl SqliteStore {
    pub(in crate::store) async fn order_state(
        &self,
        integration_id: &IntegrationId,
        order_id: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT body FROM order_states WHERE integration_id = ? AND order_id = ?",
        )
        .bind(integration_id)
        .bind(order_id)
        .fetch_optional(&self.read)
        .await?)
    }
}

/// Records what delivered order calls left at Button (inside the finishing commit).
pub(super) async fn apply_order_changes(
    conn: &mut SqliteConnection,
    changes: &[(&IntegrationId, &OrderChange)],
    now: i64,
) -> Result<(), StoreError> {
    for (integration_id, change) in changes {
        match change {
            OrderChange::Sent { order_id, body } => {
                sqlx::query(
                    "INSERT INTO order_states (integration_id, order_id, body, updated_at) VALUES (?, ?, ?, ?)
                     ON CONFLICT (integration_id, order_id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
                )
                .bind(*integration_id)
                .bind(order_id)
                .bind(body)
                .bind(now)
                .execute(&mut *conn)
                .await?;
            }
            OrderChange::Cancelled { order_id } => {
                sqlx::query("DELETE FROM order_states WHERE integration_id = ? AND order_id = ?")
                    .bind(*integration_id)
                    .bind(order_id)
                    .execute(&mut *conn)
                    .await?;
            }
        }
    }
    Ok(())
}
