//! Integration rows on PostgreSQL. Every change is announced on the
//! `button_integrations` channel when it commits, so the other replicas reload it.

use sqlx::{PgConnection, Postgres, QueryBuilder};

use super::PgStore;
use super::rows::insert;
use crate::domain::IntegrationId;
use crate::store::StoreError;
use crate::store::integrations::IntegrationRow;
use crate::store::rows::{self, Insert};

/// The channel that announces changes to integrations and sources (payload: the id).
pub(super) const CHANGES: &str = "button_integrations";

fn select() -> String {
    format!(
        "SELECT {} FROM integrations",
        <&IntegrationRow as Insert>::COLUMNS.join(", ")
    )
}

pub(super) async fn announce(conn: &mut PgConnection, id: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANGES)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl PgStore {
    pub(in crate::store) async fn insert_integration(
        &self,
        row: IntegrationRow,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        insert(&mut tx, vec![&row]).await?;
        announce(&mut tx, row.id.as_str()).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(in crate::store) async fn update_integration(
        &self,
        row: IntegrationRow,
        seen: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut q = QueryBuilder::<Postgres>::new(rows::integration_change_head());
        q.push_values([&row], |mut values, row| {
            rows::bind_integration_change(row, &mut values)
        });
        q.push(rows::INTEGRATION_CHANGE_WHERE)
            .push_bind(&row.id)
            .push(" AND integrations.updated_at = ")
            .push_bind(seen);
        let written = q.build().execute(&mut *tx).await?.rows_affected() == 1;
        if written {
            announce(&mut tx, row.id.as_str()).await?;
        }
        tx.commit().await?;
        Ok(written)
    }

    pub(in crate::store) async fn delete_integration(
        &self,
        id: &IntegrationId,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let gone = sqlx::query("DELETE FROM integrations WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        for sql in [
            "DELETE FROM deliveries WHERE integration_id = $1",
            "DELETE FROM live_logs WHERE integration_id = $1",
            "DELETE FROM outcome_counts WHERE integration_id = $1",
            "DELETE FROM live_log_counts WHERE integration_id = $1",
            "DELETE FROM lane_holds WHERE integration_id = $1",
            "DELETE FROM source_integrations WHERE integration_id = $1",
            "DELETE FROM order_states WHERE integration_id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        announce(&mut tx, id.as_str()).await?;
        tx.commit().await?;
        Ok(gone > 0)
    }

    pub(in crate::store) async fn get_integration(
        &self,
        id: &IntegrationId,
    ) -> Result<Option<IntegrationRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{} WHERE id = $1", select())))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(rows::integration_row).transpose()?)
    }

    pub(in crate::store) async fn all_integrations(
        &self,
    ) -> Result<Vec<IntegrationRow>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{} ORDER BY id", select())))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(rows::integration_row)
            .collect::<Result<_, _>>()?)
    }
}
