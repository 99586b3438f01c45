//! Order states on SQLite.

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
pub(super) fn apply_order_changes(
    db: &rusqlite::Connection,
    changes: &[(&IntegrationId, &OrderChange)],
    now: i64,
) -> Result<(), StoreError> {
    for (integration_id, change) in changes {
        match change {
            OrderChange::Sent { order_id, body } => {
                db.prepare_cached(
                    "INSERT INTO order_states (integration_id, order_id, body, updated_at) VALUES (?, ?, ?, ?)
                     ON CONFLICT (integration_id, order_id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
                )?
                .execute(rusqlite::params![
                    integration_id,
                    order_id,
                    pack(Kind::Request, body.as_bytes()),
                    now
                ])?;
            }
            OrderChange::Cancelled { order_id } => {
                db.prepare_cached(
                    "DELETE FROM order_states WHERE integration_id = ? AND order_id = ?",
                )?
                .execute(rusqlite::params![integration_id, order_id])?;
            }
        }
    }
    Ok(())
}
