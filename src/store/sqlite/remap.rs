//! Stored events mapped again, on SQLite: ended deliveries read with their events, new
//! mappings written through the writer with their entries.

use sqlx::{QueryBuilder, Sqlite};

use super::SqliteStore;
use super::logs::insert_logs;
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

/// A new mapping, if the delivery still holds the state it was found in: state, call,
/// url, body, warnings, now (available), now (updated); id, the state it was in.
const REWRITE: &str = "UPDATE deliveries SET state = ?, call = ?, url = ?, body = ?, warnings = ?,
     attempts = 0, lease_token = NULL, available_at = ?, updated_at = ?
     WHERE id = ? AND state = ?";

impl SqliteStore {
    pub(in crate::store) async fn unmapped(
        &self,
        integration_id: &IntegrationId,
        filter: &RemapFilter,
    ) -> Result<Vec<Unmapped>, StoreError> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(SELECT);
        q.push_bind(integration_id)
            .push(" AND d.state = ")
            .push_bind(filter.state);
        if let Some(after) = &filter.after {
            q.push(" AND d.id > ").push_bind(after);
        }
        if let Some(name) = &filter.event_name {
            q.push(" AND d.event_name = ").push_bind(name);
        }
        if let Some(since) = filter.since_ms {
            q.push(" AND d.created_at >= ").push_bind(since);
        }
        if let Some(until) = filter.until_ms {
            q.push(" AND d.created_at <= ").push_bind(until);
        }
        if !filter.message_ids.is_empty() {
            q.push(" AND d.message_id IN (");
            let mut list = q.separated(", ");
            for id in &filter.message_ids {
                list.push_bind(id);
            }
            list.push_unseparated(")");
        }
        q.push(" ORDER BY d.id LIMIT ")
            .push_bind(i64::from(filter.limit));
        let rows = q.build().fetch_all(&self.read).await?;
        Ok(rows.iter().map(rows::unmapped).collect::<Result<_, _>>()?)
    }

    pub(in crate::store) async fn remap(
        &self,
        remaps: Vec<Remap>,
    ) -> Result<Vec<Remap>, StoreError> {
        self.writer
            .direct(move |db| {
                let now = now_ms();
                let mut rewrite = db.prepare_cached(REWRITE)?;
                let mut written = Vec::with_capacity(remaps.len());
                for remap in remaps {
                    let changed = rewrite.execute(rusqlite::params![
                        remap.state,
                        remap.call,
                        remap.url.as_deref(),
                        remap.body.as_deref().map(|b| pack(Kind::Request, b)),
                        rows::warnings_text(&remap.log.warnings),
                        now,
                        now,
                        remap.delivery_id,
                        remap.from,
                    ])?;
                    if changed == 1 {
                        written.push(remap);
                    }
                }
                let logs: Vec<&LogRecord> = written.iter().map(|r| &r.log).collect();
                insert_logs(db, &logs)?;
                Ok(written)
            })
            .await
    }
}
