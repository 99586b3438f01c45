//! Order states on SQLite.

use sqlx::SqliteConnection;

use super::SqliteStore;
use crate::domain::IntegrationId;
use crate::store::StoreError;
use crate::store::orders::OrderChange;
use crate::store::pack::{Kind, pack, unpack_text};

impl SqliteStore {
    pub(in crate::store) async fn order_state(
        &self,
        integration_id: &IntegrationId,
        order_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let stored: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT body FROM order_states WHERE integration_id = ? AND order_id = ?",
        )
        .bind(integration_id)
        .bind(order_id)
        .fetch_optional(&self.read)
        .await?;
        Ok(stored
            .map(|b| unpack_text(Kind::Request, b))
            .transpose()
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?)
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
                .bind(pack(Kind::Request, body.as_bytes()))
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
