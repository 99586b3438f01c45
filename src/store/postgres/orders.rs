//! Order states on PostgreSQL.

use sqlx::PgConnection;

use super::PgStore;
use super::rows::storable;
use crate::domain::IntegrationId;
use crate::store::StoreError;
use crate::store::orders::OrderChange;
use crate::store::pack::{Kind, pack, unpack_text};

impl PgStore {
    pub(in crate::store) async fn order_state(
        &self,
        integration_id: &IntegrationId,
        order_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let stored: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT body FROM order_states WHERE integration_id = $1 AND order_id = $2",
        )
        .bind(integration_id)
        .bind(storable(order_id).as_ref())
        .fetch_optional(&self.pool)
        .await?;
        Ok(stored
            .map(|b| unpack_text(Kind::Request, b))
            .transpose()
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?)
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
                .bind(pack(Kind::Request, body.as_bytes()))
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
