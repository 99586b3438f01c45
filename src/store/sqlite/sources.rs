//! Sources on SQLite, written through the writer.

use sqlx::SqliteConnection;

use super::SqliteStore;
use crate::domain::{IntegrationId, SourceId};
use crate::store::sources::SourceRow;
use crate::store::{StoreError, rows};

/// Connects an integration, if it exists: source, integration, integration.
const CONNECT: &str = "INSERT INTO source_integrations (source_id, integration_id)
     SELECT ?, id FROM integrations WHERE id = ? ON CONFLICT DO NOTHING";

async fn touch(conn: &mut SqliteConnection, id: &SourceId, now: i64) -> Result<bool, StoreError> {
    Ok(
        sqlx::query("UPDATE sources SET updated_at = ? WHERE id = ?")
            .bind(now)
            .bind(id)
            .execute(&mut *conn)
            .await?
            .rows_affected()
            == 1,
    )
}

impl SqliteStore {
    pub(in crate::store) async fn insert_source(&self, row: SourceRow) -> Result<(), StoreError> {
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO sources (id, name, token_sha256, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                    )
                    .bind(&row.id)
                    .bind(&row.name)
                    .bind(&row.token_sha256)
                    .bind(row.created_at)
                    .bind(row.updated_at)
                    .execute(&mut *conn)
                    .await?;
                    for integration in &row.integrations {
                        sqlx::query(CONNECT)
                            .bind(&row.id)
                            .bind(integration)
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .await
    }

    pub(in crate::store) async fn rotate_source_token(
        &self,
        id: &SourceId,
        token_sha256: Vec<u8>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let id = id.clone();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    Ok(sqlx::query(
                        "UPDATE sources SET token_sha256 = ?, updated_at = ? WHERE id = ?",
                    )
                    .bind(token_sha256)
                    .bind(now)
                    .bind(&id)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected()
                        == 1)
                })
            })
            .await
    }

    pub(in crate::store) async fn connect_source(
        &self,
        id: &SourceId,
        integration: &IntegrationId,
        connected: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        let (id, integration) = (id.clone(), integration.clone());
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    if !touch(conn, &id, now).await? {
                        return Ok(false);
                    }
                    if connected {
                        let added = sqlx::query(CONNECT)
                            .bind(&id)
                            .bind(&integration)
                            .execute(&mut *conn)
                            .await?
                            .rows_affected();
                        if added == 0 {
                            // Already connected, or no such integration.
                            return Ok(sqlx::query("SELECT 1 FROM integrations WHERE id = ?")
                                .bind(&integration)
                                .fetch_optional(&mut *conn)
                                .await?
                                .is_some());
                        }
                    } else {
                        sqlx::query(
                            "DELETE FROM source_integrations WHERE source_id = ? AND integration_id = ?",
                        )
                        .bind(&id)
                        .bind(&integration)
                        .execute(&mut *conn)
                        .await?;
                    }
                    Ok(true)
                })
            })
            .await
    }

    pub(in crate::store) async fn delete_source(&self, id: &SourceId) -> Result<bool, StoreError> {
        let id = id.clone();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    sqlx::query("DELETE FROM source_integrations WHERE source_id = ?")
                        .bind(&id)
                        .execute(&mut *conn)
                        .await?;
                    Ok(sqlx::query("DELETE FROM sources WHERE id = ?")
                        .bind(&id)
                        .execute(&mut *conn)
                        .await?
                        .rows_affected()
                        == 1)
                })
            })
            .await
    }

    pub(in crate::store) async fn sources(
        &self,
        only: Option<&SourceId>,
    ) -> Result<Vec<SourceRow>, StoreError> {
        let mut tx = self.read.begin().await?;
        let (sources, connections) = match only {
            Some(id) => (
                sqlx::query("SELECT id, name, token_sha256, created_at, updated_at FROM sources WHERE id = ?")
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await?,
                sqlx::query("SELECT source_id, integration_id FROM source_integrations WHERE source_id = ? ORDER BY integration_id")
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await?,
            ),
            None => (
                sqlx::query("SELECT id, name, token_sha256, created_at, updated_at FROM sources ORDER BY id")
                    .fetch_all(&mut *tx)
                    .await?,
                sqlx::query("SELECT source_id, integration_id FROM source_integrations ORDER BY source_id, integration_id")
                    .fetch_all(&mut *tx)
                    .await?,
            ),
        };
        tx.commit().await?;
        Ok(rows::sources_with_connections(&sources, &connections)?)
    }
}
