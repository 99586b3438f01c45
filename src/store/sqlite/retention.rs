//! Retention on SQLite: each delete is a bounded chunk in its own write, so the writer
//! is never held long and ingest keeps committing between chunks.

use std::sync::LazyLock;
use std::time::SystemTime;

use super::SqliteStore;
use super::logs::add_entries;
use crate::domain::clock::to_ms;
use crate::domain::{DeliveryState, IntegrationId, LogId};
use crate::store::StoreError;
use crate::store::retention::PrunePolicy;

/// Rows deleted per write.
const CHUNK: i64 = 5000;

/// Finished deliveries past `?`. The states are written into the statement from their
/// words rather than bound: the `deliveries_finished` partial index is planned only
/// for a predicate that matches its own (`NOT IN ('pending', 'dead')`) as written,
/// and SQLite compares bound values with a partial index's predicate only at the top
/// level (`state = ?`), not inside `NOT IN (...)`.
pub(super) static FINISHED_DELIVERIES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries WHERE state NOT IN ('{}', '{}') AND updated_at < ? LIMIT {CHUNK})",
        DeliveryState::Pending,
        DeliveryState::Dead
    )
});

#[derive(Clone)]
enum Arg {
    Text(String),
    Int(i64),
    State(DeliveryState),
}

impl rusqlite::ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Arg::Text(s) => s.to_sql(),
            Arg::Int(i) => i.to_sql(),
            Arg::State(s) => s.to_sql(),
        }
    }
}

impl SqliteStore {
    pub(in crate::store) async fn prune(
        &self,
        now: SystemTime,
        policy: &PrunePolicy,
    ) -> Result<u64, StoreError> {
        let mut removed = 0;
        let log_cutoff = LogId::floor_at(now - policy.max_age);
        removed += self
            .delete_entries_in_chunks(
                "SELECT id FROM live_logs WHERE id < ? LIMIT ?",
                vec![Arg::Text(log_cutoff.to_string())],
                u64::MAX,
            )
            .await?;
        // Over its cap, an integration loses its oldest entries: counted from the
        // oldest end, so the cost is what goes, not what stays.
        let over: Vec<(IntegrationId, i64)> =
            sqlx::query_as("SELECT integration_id, entries FROM live_log_counts WHERE entries > ?")
                .bind(policy.max_entries_per_integration as i64)
                .fetch_all(&self.read)
                .await?;
        for (integration_id, entries) in over {
            let excess = (entries - policy.max_entries_per_integration as i64).max(0) as u64;
            removed += self
                .delete_entries_in_chunks(
                    "SELECT id FROM live_logs WHERE integration_id = ? ORDER BY id LIMIT ?",
                    vec![Arg::Text(integration_id.to_string())],
                    excess,
                )
                .await?;
        }
        let finished_cutoff = to_ms(now - policy.max_age);
        removed += self
            .delete_in_chunks(
                FINISHED_DELIVERIES.as_str(),
                vec![Arg::Int(finished_cutoff)],
            )
            .await?;
        removed += self
            .delete_in_chunks(
                "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries WHERE state = ? AND updated_at < ? LIMIT 5000)",
                vec![
                    Arg::State(DeliveryState::Dead),
                    Arg::Int(to_ms(now - policy.dead_letter_max_age)),
                ],
            )
            .await?;
        removed += self
            .delete_in_chunks(
                "DELETE FROM events WHERE message_id IN (SELECT message_id FROM events WHERE received_at < ? LIMIT 5000)",
                vec![Arg::Int(finished_cutoff)],
            )
            .await?;
        Ok(removed)
    }

    /// Deletes live-log entries named by `select` (its last parameter is the chunk
    /// size), one bounded chunk per write, until `limit` went or none is left, and
    /// takes them off their integrations' entry counts.
    async fn delete_entries_in_chunks(
        &self,
        select: &'static str,
        args: Vec<Arg>,
        limit: u64,
    ) -> Result<u64, StoreError> {
        let mut total = 0;
        while total < limit {
            let mut args = args.clone();
            let chunk = (limit - total).min(CHUNK as u64) as i64;
            args.push(Arg::Int(chunk));
            let n = self
                .writer
                .direct(move |db| {
                    let sql = format!(
                        "DELETE FROM live_logs WHERE id IN ({select}) RETURNING integration_id"
                    );
                    let mut delete = db.prepare_cached(&sql)?;
                    let mut rows = delete.query(rusqlite::params_from_iter(&args))?;
                    let mut deleted = 0;
                    let mut gone: Vec<(IntegrationId, i64)> = Vec::new();
                    while let Some(row) = rows.next()? {
                        deleted += 1;
                        let integration_id: IntegrationId = row.get(0)?;
                        match gone.iter_mut().find(|(i, _)| *i == integration_id) {
                            Some((_, n)) => *n += 1,
                            None => gone.push((integration_id, 1)),
                        }
                    }
                    drop(rows);
                    for (integration_id, n) in gone {
                        add_entries(db, &integration_id, -n)?;
                    }
                    Ok(deleted)
                })
                .await?;
            total += n;
            if (n as i64) < chunk {
                break;
            }
        }
        Ok(total)
    }

    /// Runs a delete of at most [`CHUNK`] rows, one write at a time, until it deletes
    /// fewer.
    async fn delete_in_chunks(&self, sql: &'static str, args: Vec<Arg>) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let args = args.clone();
            let n = self
                .writer
                .direct(move |db| {
                    Ok(db
                        .prepare_cached(sql)?
                        .execute(rusqlite::params_from_iter(&args))? as u64)
                })
                .await?;
            total += n;
            if n < CHUNK as u64 {
                return Ok(total);
            }
        }
    }
}
