//! Order states on PostgreSQL.

use sqlx::PgConnection;

use super::PgStore;
use super::rows::storable;
use crate::domain::IntegrationId;
use crate::store::StoreError;
use crate::store::orders::OrderChange;

impl PgStore {
    pub(in crate::store) async fn order_state(
        &self,
        integration_id: &IntegrationId,
        order_id: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT body FROM order_states WHERE integration_id = $1 AND order_id = $2",
        )
        .bind(integration_id)
        .bind(storable(order_id).as_ref())
        .fetch_optional(&self.pool)
        .await?)
    }
}

/// Records what delivered order calls left at Button (inside the finishing
/// transaction).
pub(super) async fn apply_order_changes(
    conn: &mut PgConnection,
    changes: &[(&IntegrationId, &OrderChange)],
    now: i64,
) -> Result<(), StoreError> {
    for (integration_id, change) in changes {
        match change {
            OrderChange::Sent { order_id, body } => {
                sqlx::query(
                    "INSERT INTO order_states (integration_id, order_id, body, updated_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (integration_id, order_id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
                )
                .bind(*integration_id)
                .bind(storable(order_id).as_ref())
                .bind(storable(body).as_ref())
                .bind(now)
                .execute(&mut *conn)
                .await?;
            }
            OrderChange::Cancelled { order_id } => {
                sqlx::query("DELETE FROM order_states WHERE integration_id = $1 AND order_id = $2")
                    .bind(*integration_id)
                    .bind(storable(order_id).as_ref())
                    .execute(&mut *conn)
                    .await?;
            }
        }
    }
    Ok(())
}
