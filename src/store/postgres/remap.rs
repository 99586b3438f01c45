//! Stored events mapped again, on PostgreSQL: ended deliveries read with their events,
//! new mappings written in one transaction with their entries (announced to the other
//! replicas' live tails).

use std::sync::LazyLock;

use sqlx::{Postgres, QueryBuilder};

use super::PgStore;
use super::logs::{EXISTING, insert_logs, integrations_of};
use super::rows::storable;
use crate::domain::IntegrationId;
use crate::domain::clock::now_ms;
use crate::live_logs::LogRecord;
use crate::store::pack::{Kind, pack};
use crate::store::remap::{Remap, RemapFilter, Unmapped};
use crate::store::{StoreError, rows};

/// An ended delivery with its event and its newest entry, `d` and `e` below.
const SELECT: &str = "SELECT d.id, d.message_id, d.event_name, d.test, e.payload,
     (SELECT MAX(l.id) FROM live_logs l
      WHERE l.integration_id = d.integration_id AND l.message_id = d.message_id AND l.delivery_id = d.id) AS last_entry
     FROM deliveries d LEFT JOIN events e ON e.message_id = d.message_id
     WHERE d.integration_id = ";

/// A new mapping, if the delivery still holds the state it was found in.
const REWRITE: &str =
    "UPDATE deliveries SET state = $1, call = $2, url = $3, body = $4, warnings = $5,
     attempts = 0, lease_token = NULL, available_at = $6, updated_at = $6
     WHERE id = $7 AND state = $8";

/// Locks the integrations given (a text array) for share, as the entries' statement
/// does ([`EXISTING`]).
static LOCK: LazyLock<String> =
    LazyLock::new(|| format!("WITH {EXISTING} SELECT count(*) FROM existing"));

impl PgStore {
    pub(in crate::store) async fn unmapped(
        &self,
        integration_id: &IntegrationId,
        filter: &RemapFilter,
    ) -> Result<Vec<Unmapped>, StoreError> {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(SELECT);
        q.push_bind(integration_id)
            .push(" AND d.state = ")
            .push_bind(filter.state);
        if let Some(after) = &filter.after {
            q.push(" AND d.id > ").push_bind(after);
        }
        if let Some(name) = &filter.event_name {
            q.push(" AND d.event_name = ").push_bind(name.as_bytes());
        }
        if let Some(since) = filter.since_ms {
            q.push(" AND d.created_at >= ").push_bind(since);
        }
        if let Some(until) = filter.until_ms {
            q.push(" AND d.created_at <= ").push_bind(until);
        }
        if !filter.message_ids.is_empty() {
            let ids: Vec<Vec<u8>> = filter
                .message_ids
                .iter()
                .map(|m| m.as_bytes().to_vec())
                .collect();
            q.push(" AND d.message_id = ANY(").push_bind(ids).push(")");
        }
        q.push(" ORDER BY d.id LIMIT ")
            .push_bind(i64::from(filter.limit));
        let rows = q.build().fetch_all(&self.pool).await?;
        Ok(rows.iter().map(rows::unmapped).collect::<Result<_, _>>()?)
    }

    pub(in crate::store) async fn remap(
        &self,
        remaps: Vec<Remap>,
    ) -> Result<Vec<Remap>, StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        // The integrations first, as every writer locks them before their deliveries
        // (the entries' statement locks them too): a delete, which locks the
        // integration and then its deliveries, never waits on a delivery this holds
        // while this waits on the integration.
        sqlx::query(sqlx::AssertSqlSafe(LOCK.as_str()))
            .bind(integrations_of(remaps.iter().map(|r| &r.log)))
            .execute(&mut *tx)
            .await?;
        let mut written = Vec::with_capacity(remaps.len());
        for remap in remaps {
            let warnings = rows::warnings_text(&remap.log.warnings);
            let changed = sqlx::query(REWRITE)
                .bind(remap.state)
                .bind(remap.call)
                .bind(remap.url.as_deref().map(storable))
                .bind(remap.body.as_deref().map(|b| pack(Kind::Request, b)))
                .bind(warnings.as_deref().map(storable))
                .bind(now)
                .bind(&remap.delivery_id)
                .bind(remap.from)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if changed == 1 {
                written.push(remap);
            }
        }
        let logs: Vec<&LogRecord> = written.iter().map(|r| &r.log).collect();
        insert_logs(&mut tx, &self.replica, &logs).await?;
        tx.commit().await?;
        Ok(written)
    }
}
