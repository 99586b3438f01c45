//! Integration rows on SQLite.

use std::collections::HashSet;

use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::SqliteStore;
use super::rows::insert;
use crate::domain::IntegrationId;
use crate::store::StoreError;
use crate::store::integrations::IntegrationRow;
use crate::store::rows::{self, Insert};

fn select() -> String {
    format!(
        "SELECT {} FROM integrations",
        <&IntegrationRow as Insert>::COLUMNS.join(", ")
    )
}

impl SqliteStore {
    pub(in crate::store) async fn insert_integration(
        &self,
        row: IntegrationRow,
    ) -> Result<(), StoreError> {
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    insert(conn, vec![&row]).await?;
                    Ok(())
                })
            })
            .await
    }

    pub(in crate::store) async fn update_integration(
        &self,
        row: IntegrationRow,
        seen: i64,
    ) -> Result<bool, StoreError> {
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    let mut q = QueryBuilder::<Sqlite>::new(rows::integration_change_head());
                    q.push_values([&row], |mut values, row| {
                        rows::bind_integration_change(row, &mut values)
                    });
                    q.push(rows::INTEGRATION_CHANGE_WHERE)
                        .push_bind(&row.id)
                        .push(" AND integrations.updated_at = ")
                        .push_bind(seen);
                    Ok(q.build().execute(&mut *conn).await?.rows_affected() == 1)
                })
            })
            .await
    }

    pub(in crate::store) async fn delete_integration(
        &self,
        id: &IntegrationId,
    ) -> Result<bool, StoreError> {
        let id = id.clone();
        self.writer
            .write(move |conn| Box::pin(async move { delete_all(conn, &id).await }))
            .await
    }

    pub(in crate::store) async fn get_integration(
        &self,
        id: &IntegrationId,
    ) -> Result<Option<IntegrationRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{} WHERE id = ?", select())))
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.as_ref().map(rows::integration_row).transpose()?)
    }

    pub(in crate::store) async fn all_integrations(
        &self,
    ) -> Result<Vec<IntegrationRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{} ORDER BY id", select())))
            .fetch_all(&self.read)
            .await?;
        Ok(rows
            .iter()
            .map(rows::integration_row)
            .collect::<Result<_, _>>()?)
    }
}

async fn delete_all(conn: &mut SqliteConnection, id: &IntegrationId) -> Result<bool, StoreError> {
    let gone = sqlx::query("DELETE FROM integrations WHERE id = ?")
        .bind(id)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    for sql in [
        "DELETE FROM deliveries WHERE integration_id = ?",
        "DELETE FROM live_logs WHERE integration_id = ?",
        "DELETE FROM outcome_counts WHERE integration_id = ?",
        "DELETE FROM live_log_counts WHERE integration_id = ?",
        "DELETE FROM source_integrations WHERE integration_id = ?",
        "DELETE FROM order_states WHERE integration_id = ?",
    ] {
        sqlx::query(sql).bind(id).execute(&mut *conn).await?;
    }
    Ok(gone > 0)
}

/// Which of `ids` name integrations that exist (read inside the writer's transaction,
/// so a delete cannot slip in between).
pub(super) fn existing_integrations(
    db: &rusqlite::Connection,
    ids: &[&IntegrationId],
) -> Result<HashSet<IntegrationId>, StoreError> {
    let mut wanted: Vec<&IntegrationId> = ids.to_vec();
    wanted.sort_unstable();
    wanted.dedup();
    let mut find = db.prepare_cached("SELECT 1 FROM integrations WHERE id = ?")?;
    let mut existing = HashSet::with_capacity(wanted.len());
    for id in wanted {
        if find.exists([id])? {
            existing.insert(id.clone());
        }
    }
    Ok(existing)
}
