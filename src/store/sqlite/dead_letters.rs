//! Dead letters on SQLite: listed newest first by id, replayed or discarded in one
//! statement.

use sqlx::{QueryBuilder, Sqlite};

use super::SqliteStore;
use crate::domain::clock::now_ms;
use crate::domain::{DeliveryId, DeliveryState, IntegrationId};
use crate::store::dead_letters::{DeadLetter, Resolution, Selection};
use crate::store::rows;
use crate::store::{Page, StoreError};

/// An integration's dead letters, newest first, before an id: integration, `dead`,
/// before, how many.
pub(super) const LIST: &str =
    "SELECT id, message_id, event_name, call, attempts, created_at, updated_at
     FROM deliveries WHERE integration_id = ? AND state = ? AND id < ? ORDER BY id DESC LIMIT ?";

/// Sorts after every delivery id (`~` after every letter and digit).
const AFTER_EVERY_ID: &str = "dlv_~";

impl SqliteStore {
    pub(in crate::store) async fn list_dead_letters(
        &self,
        integration_id: &IntegrationId,
        page: &Page<DeliveryId>,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let rows = sqlx::query(LIST)
            .bind(integration_id)
            .bind(DeliveryState::Dead)
            .bind(
                page.from
                    .as_ref()
                    .map_or(AFTER_EVERY_ID, DeliveryId::as_str),
            )
            .bind(i64::from(page.limit))
            .fetch_all(&self.read)
            .await?;
        Ok(rows
            .iter()
            .map(rows::dead_letter)
            .collect::<Result<_, _>>()?)
    }

    pub(in crate::store) async fn resolve_dead_letters(
        &self,
        integration_id: &IntegrationId,
        selection: Selection,
        resolution: Resolution,
    ) -> Result<u64, StoreError> {
        if matches!(&selection, Selection::Ids(ids) if ids.is_empty()) {
            return Ok(0);
        }
        let integration_id = integration_id.clone();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let now = now_ms();
                    let mut q: QueryBuilder<Sqlite> =
                        QueryBuilder::new("UPDATE deliveries SET state = ");
                    match resolution {
                        Resolution::Replay => {
                            q.push_bind(DeliveryState::Pending)
                                .push(", attempts = 0, lease_token = NULL, available_at = ")
                                .push_bind(now);
                        }
                        Resolution::Discard => {
                            q.push_bind(DeliveryState::Discarded);
                        }
                    }
                    q.push(", updated_at = ")
                        .push_bind(now)
                        .push(" WHERE (state = ")
                        .push_bind(DeliveryState::Dead);
                    if matches!(selection, Selection::Ids(_)) {
                        // Named by id, a failed delivery may be replayed or discarded
                        // too (it may hold the later changes of its order).
                        q.push(" OR state = ").push_bind(DeliveryState::Failed);
                    }
                    q.push(") AND integration_id = ").push_bind(integration_id);
                    if let Selection::Ids(ids) = selection {
                        q.push(" AND id IN (");
                        let mut list = q.separated(", ");
                        for id in ids {
                            list.push_bind(id);
                        }
                        list.push_unseparated(")");
                    }
                    Ok(q.build().execute(&mut *conn).await?.rows_affected())
                })
            })
            .await
    }
}
