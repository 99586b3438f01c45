//! Sources on PostgreSQL. Every change is announced on the channel of integration
//! changes (the payload is the source's id) when it commits, so the other replicas
//! reload it.

use super::PgStore;
use super::integrations::announce;
use crate::domain::{IntegrationId, SourceId};
use crate::store::sources::SourceRow;
use crate::store::{StoreError, rows};

/// Connects an integration, if it exists.
const CONNECT: &str = "INSERT INTO source_integrations (source_id, integration_id)
     SELECT $1, id FROM integrations WHERE id = $2 ON CONFLICT DO NOTHING";

impl PgStore {
    pub(in crate::store) async fn insert_source(&self, row: SourceRow) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO sources (id, name, token_sha256, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&row.id)
        .bind(super::rows::storable(&row.name).as_ref())
        .bind(&row.token_sha256)
        .bind(row.created_at)
        .bind(row.updated_at)
        .execute(&mut *tx)
        .await?;
        for integration in &row.integrations {
            sqlx::query(CONNECT)
                .bind(&row.id)
                .bind(integration)
                .execute(&mut *tx)
                .await?;
        }
        announce(&mut tx, row.id.as_str()).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(in crate::store) async fn rotate_source_token(
        &self,
        id: &SourceId,
        token_sha256: Vec<u8>,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let found =
            sqlx::query("UPDATE sources SET token_sha256 = $1, updated_at = $2 WHERE id = $3")
                .bind(token_sha256)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
        if found {
            announce(&mut tx, id.as_str()).await?;
        }
        tx.commit().await?;
        Ok(found)
    }

    pub(in crate::store) async fn connect_source(
        &self,
        id: &SourceId,
        integration: &IntegrationId,
        connected: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        // Taking the source's row first orders concurrent changes to one source.
        let found = sqlx::query("UPDATE sources SET updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if !found {
            return Ok(false);
        }
        let exists = if connected {
            sqlx::query(CONNECT)
                .bind(id)
                .bind(integration)
                .execute(&mut *tx)
                .await?;
            sqlx::query("SELECT 1 FROM integrations WHERE id = $1")
                .bind(integration)
                .fetch_optional(&mut *tx)
                .await?
                .is_some()
        } else {
            sqlx::query(
                "DELETE FROM source_integrations WHERE source_id = $1 AND integration_id = $2",
            )
            .bind(id)
            .bind(integration)
            .execute(&mut *tx)
            .await?;
            true
        };
        announce(&mut tx, id.as_str()).await?;
        tx.commit().await?;
        Ok(exists)
    }

    pub(in crate::store) async fn delete_source(&self, id: &SourceId) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM source_integrations WHERE source_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let gone = sqlx::query("DELETE FROM sources WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        announce(&mut tx, id.as_str()).await?;
        tx.commit().await?;
        Ok(gone)
    }

    pub(in crate::store) async fn sources(
        &self,
        only: Option<&SourceId>,
    ) -> Result<Vec<SourceRow>, StoreError> {
        // One snapshot for both reads.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut *tx)
            .await?;
        let (sources, connections) = match only {
            Some(id) => (
                sqlx::query("SELECT id, name, token_sha256, created_at, updated_at FROM sources WHERE id = $1")
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await?,
                sqlx::query("SELECT source_id, integration_id FROM source_integrations WHERE source_id = $1 ORDER BY integration_id")
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
