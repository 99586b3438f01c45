//! Integration rows. Secret config values arrive here already sealed; this module never
//! sees them in clear.

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use super::{Store, StoreError};

#[derive(Debug, Clone)]
pub struct IntegrationRow {
    pub id: String,
    pub catalog_key: String,
    pub name: String,
    pub variant: String,
    pub delivery_mode: String,
    pub enabled: bool,
    /// Non-secret config values, a JSON object.
    pub config: String,
    /// Secret config values, sealed.
    pub secrets: Vec<u8>,
    /// The blueprint document, JSON.
    pub blueprint: String,
    pub lane_state: String,
    pub lane_reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, catalog_key, name, variant, delivery_mode, enabled, config, secrets, blueprint, lane_state, lane_reason, created_at, updated_at";

fn decode(row: &SqliteRow) -> Result<IntegrationRow, StoreError> {
    Ok(IntegrationRow {
        id: row.try_get("id")?,
        catalog_key: row.try_get("catalog_key")?,
        name: row.try_get("name")?,
        variant: row.try_get("variant")?,
        delivery_mode: row.try_get("delivery_mode")?,
        enabled: row.try_get("enabled")?,
        config: row.try_get("config")?,
        secrets: row.try_get("secrets")?,
        blueprint: row.try_get("blueprint")?,
        lane_state: row.try_get("lane_state")?,
        lane_reason: row.try_get("lane_reason")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl Store {
    pub async fn insert_integration(
        &self,
        row: IntegrationRow,
    ) -> Result<IntegrationRow, StoreError> {
        self.writer()
            .write(move |conn| {
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO integrations (id, catalog_key, name, variant, delivery_mode, enabled, config, secrets, blueprint, lane_state, lane_reason, created_at, updated_at)
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    )
                    .bind(&row.id)
                    .bind(&row.catalog_key)
                    .bind(&row.name)
                    .bind(&row.variant)
                    .bind(&row.delivery_mode)
                    .bind(row.enabled)
                    .bind(&row.config)
                    .bind(&row.secrets)
                    .bind(&row.blueprint)
                    .bind(&row.lane_state)
                    .bind(&row.lane_reason)
                    .bind(row.created_at)
                    .bind(row.updated_at)
                    .execute(&mut *conn)
                    .await?;
                    Ok(row)
                })
            })
            .await
    }

    /// Replaces every mutable column of the integration with `row`'s.
    pub async fn update_integration(
        &self,
        row: IntegrationRow,
    ) -> Result<IntegrationRow, StoreError> {
        self.writer()
            .write(move |conn| {
                Box::pin(async move {
                    sqlx::query(
                        "UPDATE integrations SET name = ?, enabled = ?, config = ?, secrets = ?, blueprint = ?, lane_state = ?, lane_reason = ?, updated_at = ?
                         WHERE id = ?",
                    )
                    .bind(&row.name)
                    .bind(row.enabled)
                    .bind(&row.config)
                    .bind(&row.secrets)
                    .bind(&row.blueprint)
                    .bind(&row.lane_state)
                    .bind(&row.lane_reason)
                    .bind(row.updated_at)
                    .bind(&row.id)
                    .execute(&mut *conn)
                    .await?;
                    Ok(row)
                })
            })
            .await
    }

    /// Deletes the integration with its queue, dead letters and live logs. Answers
    /// whether it existed.
    pub async fn delete_integration(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.writer()
            .write(move |conn| Box::pin(async move { delete_all(conn, &id).await }))
            .await
    }

    pub async fn get_integration(&self, id: &str) -> Result<Option<IntegrationRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM integrations WHERE id = ?"
        )))
        .bind(id)
        .fetch_optional(self.reader())
        .await?;
        row.as_ref().map(decode).transpose()
    }

    /// Integrations in creation order, after the id `after`.
    pub async fn list_integrations(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<IntegrationRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM integrations WHERE id > ? ORDER BY id LIMIT ?"
        )))
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(decode).collect()
    }

    pub async fn all_integrations(&self) -> Result<Vec<IntegrationRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM integrations ORDER BY id"
        )))
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(decode).collect()
    }
}

async fn delete_all(conn: &mut SqliteConnection, id: &str) -> Result<bool, StoreError> {
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
    ] {
        sqlx::query(sql).bind(id).execute(&mut *conn).await?;
    }
    Ok(gone > 0)
}
