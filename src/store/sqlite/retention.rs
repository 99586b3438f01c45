//! Retention on SQLite. Every write of the service goes through one writer, so a
//! prune must share it: each delete is a chunk in its own write, sized to a couple of
//! milliseconds of the writer's time, and the next one waits as long as the last took
//! (see [`Pace`]). A write queued behind a chunk waits for one small chunk, never for
//! the prune; and every statement finds what it deletes through an index, so none
//! reads a table whose size the prune does not control.

use std::sync::LazyLock;
use std::time::{Duration, Instant, SystemTime};

use rusqlite::types::Value;

use super::SqliteStore;
use super::logs::add_entries;
use crate::domain::clock::to_ms;
use crate::domain::{DeliveryState, IntegrationId, LogId};
use crate::store::StoreError;
use crate::store::retention::PrunePolicy;

/// Live-log entries made before an id (`?1`); `?2` rows at most.
pub(super) const ENTRIES_BEFORE: &str = "DELETE FROM live_logs WHERE id IN \
     (SELECT id FROM live_logs WHERE id < ?1 LIMIT ?2) RETURNING integration_id";

/// The oldest live-log entries of one integration (`?1`); `?2` rows at most.
pub(super) const OLDEST_ENTRIES: &str = "DELETE FROM live_logs WHERE id IN \
     (SELECT id FROM live_logs WHERE integration_id = ?1 ORDER BY id LIMIT ?2) RETURNING integration_id";

/// Finished deliveries last changed before `?1`; `?2` rows at most. The states are
/// written into the statement from their words rather than bound: the writer's
/// connection plans a statement once, whatever is bound to it (`SQLITE_DBCONFIG_ENABLE_QPSG`),
/// and a partial index (`deliveries_finished`, `deliveries_dead_age`) is planned only
/// for a predicate that matches its own as written.
pub(super) static FINISHED_DELIVERIES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries WHERE state NOT IN ('{}', '{}') AND updated_at < ?1 LIMIT ?2)",
        DeliveryState::Pending,
        DeliveryState::Dead
    )
});

/// Dead letters last changed before `?1`; `?2` rows at most. With the state bound, as
/// it was, SQLite read every delivery stored to find them: 378-495 ms of the writer's
/// time with 1.5 million stored, once a minute (BENCHMARKS.md).
pub(super) static DEAD_LETTERS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries WHERE state = '{}' AND updated_at < ?1 LIMIT ?2)",
        DeliveryState::Dead
    )
});

/// Events received before `?1`; `?2` rows at most.
pub(super) const EVENTS: &str = "DELETE FROM events WHERE message_id IN \
     (SELECT message_id FROM events WHERE received_at < ?1 LIMIT ?2)";

/// The writer time a chunk is sized to take.
const CHUNK_TIME: Duration = Duration::from_millis(2);
/// The rows of a pass's first chunk; later ones follow [`CHUNK_TIME`].
const FIRST_CHUNK: i64 = 200;
/// The shortest pause between chunks.
const MIN_PAUSE: Duration = Duration::from_millis(1);
/// Bounds on a chunk's rows whatever the clock says.
const MIN_CHUNK: i64 = 20;
const MAX_CHUNK: i64 = 5000;

/// How a prune shares the writer. A chunk runs inside a group commit with whatever
/// ingest, leases and outcomes are queued, so they wait for it: chunks are sized to
/// take about [`CHUNK_TIME`] of the writer's own time. After each full chunk (one
/// that leaves more to delete) the prune pauses as long as the chunk's statement took
/// (at least [`MIN_PAUSE`]): the writes that queued meanwhile (the ingest committer,
/// on the writer's own thread, included) commit before its next chunk, and the
/// prune's statements take at most about half of the writer's time. Without the
/// pause the next chunk, sent from another thread the moment the last was answered,
/// could keep winning the writer: ingest requests waited through eight 5,000-row
/// chunks (270 ms). (Not the chunk's time from being sent to being answered: on a
/// saturated writer that is mostly queueing, and a prune pausing for it would fall
/// behind what is written.)
#[derive(Debug)]
struct Pace {
    rows: i64,
}

impl Pace {
    fn new() -> Self {
        Self { rows: FIRST_CHUNK }
    }

    /// Rows for the next chunk.
    fn rows(&self) -> i64 {
        self.rows
    }

    /// After a chunk of [`Pace::rows`] ran `took` on the writer: sizes the next one
    /// (at most twice or half the last, so one odd measurement does not swing it).
    fn ran(&mut self, took: Duration) {
        let took = took.as_secs_f64().max(1e-6);
        let aimed = (self.rows as f64 * CHUNK_TIME.as_secs_f64() / took) as i64;
        self.rows = aimed
            .clamp(self.rows / 2, self.rows * 2)
            .clamp(MIN_CHUNK, MAX_CHUNK);
    }
}

/// What one chunk did.
struct Chunk {
    deleted: u64,
    /// Its statement's time on the writer.
    took: Duration,
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
            .delete_in_chunks(
                ENTRIES_BEFORE,
                Value::Text(log_cutoff.to_string()),
                u64::MAX,
                true,
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
                .delete_in_chunks(
                    OLDEST_ENTRIES,
                    Value::Text(integration_id.to_string()),
                    excess,
                    true,
                )
                .await?;
        }
        let finished_cutoff = Value::Integer(to_ms(now - policy.max_age));
        removed += self
            .delete_in_chunks(
                FINISHED_DELIVERIES.as_str(),
                finished_cutoff.clone(),
                u64::MAX,
                false,
            )
            .await?;
        removed += self
            .delete_in_chunks(
                DEAD_LETTERS.as_str(),
                Value::Integer(to_ms(now - policy.dead_letter_max_age)),
                u64::MAX,
                false,
            )
            .await?;
        removed += self
            .delete_in_chunks(EVENTS, finished_cutoff, u64::MAX, false)
            .await?;
        Ok(removed)
    }

    /// Runs `sql` (a delete cut at `cut`, of at most `?2` rows) one paced chunk per
    /// write until `limit` rows went or a chunk deletes fewer than it could. With
    /// `entries`, `sql` returns the integration of each live-log entry it deleted, and
    /// each chunk takes them off their integrations' entry counts in its own write.
    async fn delete_in_chunks(
        &self,
        sql: &'static str,
        cut: Value,
        limit: u64,
        entries: bool,
    ) -> Result<u64, StoreError> {
        let mut pace = Pace::new();
        let mut total = 0;
        while total < limit {
            let rows = i64::try_from(limit - total)
                .unwrap_or(i64::MAX)
                .min(pace.rows());
            let cut = cut.clone();
            let chunk = self
                .writer
                .direct(move |db| {
                    let started = Instant::now();
                    let mut delete = db.prepare_cached(sql)?;
                    let deleted = if entries {
                        delete_entries(db, &mut delete, (&cut, rows))?
                    } else {
                        delete.execute((&cut, rows))? as u64
                    };
                    Ok(Chunk {
                        deleted,
                        took: started.elapsed(),
                    })
                })
                .await?;
            total += chunk.deleted;
            if (chunk.deleted as i64) < rows {
                break;
            }
            pace.ran(chunk.took);
            tokio::time::sleep(chunk.took.max(MIN_PAUSE)).await;
        }
        Ok(total)
    }
}

/// Runs a live-log delete (`RETURNING integration_id`) and takes what went off each
/// integration's count; answers how many entries went.
fn delete_entries(
    db: &rusqlite::Connection,
    delete: &mut rusqlite::CachedStatement<'_>,
    params: impl rusqlite::Params,
) -> Result<u64, StoreError> {
    let mut rows = delete.query(params)?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_sized_to_the_writer_time_they_take() {
        let mut pace = Pace::new();
        assert_eq!(pace.rows(), FIRST_CHUNK);
        // 200 rows in 1 ms: 400 would take the 2 ms aimed at.
        pace.ran(Duration::from_millis(1));
        assert_eq!(pace.rows(), 400);
        // In 0.1 ms 8,000 would, but a chunk at most doubles...
        pace.ran(Duration::from_micros(100));
        assert_eq!(pace.rows(), 800);
        // ...or halves, even after a stall of a second.
        pace.ran(Duration::from_secs(1));
        assert_eq!(pace.rows(), 400);
        pace.ran(CHUNK_TIME);
        assert_eq!(pace.rows(), 400, "on time: unchanged");
        for _ in 0..20 {
            pace.ran(Duration::ZERO);
        }
        assert_eq!(pace.rows(), MAX_CHUNK);
        for _ in 0..20 {
            pace.ran(Duration::from_secs(10));
        }
        assert_eq!(pace.rows(), MIN_CHUNK);
    }
}
