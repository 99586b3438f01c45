//! Retention on PostgreSQL: one replica prunes at a time (a session advisory lock; the
//! others skip their turn), in chunks of a few thousand rows, each its own
//! transaction, so ingest never waits behind a delete of millions of rows.
//!
//! Each delete names its chunk as `= ANY(ARRAY(SELECT ... LIMIT n))`, not
//! `IN (SELECT ... LIMIT n)`: for the latter PostgreSQL often plans a hash join over
//! the whole table, reading every row to delete a few thousand (a chunk of 5,000 of
//! 400,000 rows: 75.6 ms with a sequential scan, against 11.9 ms through the primary
//! key; BENCHMARKS.md).

use std::time::SystemTime;

use sqlx::{PgConnection, Row};

use super::PgStore;
use super::logs::add_entries;
use crate::domain::clock::to_ms;
use crate::domain::{DeliveryState, IntegrationId, LogId};
use crate::store::StoreError;
use crate::store::retention::PrunePolicy;

/// Rows deleted per transaction.
const CHUNK: i64 = 5000;

/// The advisory lock whose holder prunes (any fixed number; this one spells "btn-prun").
const PRUNER: i64 = 0x6274_6e2d_7072_756e;

/// Which live-log entries a step deletes: `$1` is the step's argument, `$2` the chunk.
enum Entries {
    /// Made before an id (the age cut).
    Before(LogId),
    /// The oldest of one integration (its cap).
    OldestOf(IntegrationId),
}

impl PgStore {
    pub(in crate::store) async fn prune(
        &self,
        now: SystemTime,
        policy: &PrunePolicy,
    ) -> Result<u64, StoreError> {
        // The lock belongs to this connection's session: held for the whole pass,
        // released when it ends (or when the connection does).
        let mut lock = self.pool.acquire().await?;
        let ours: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(PRUNER)
            .fetch_one(&mut *lock)
            .await?;
        if !ours {
            return Ok(0); // Another replica is pruning.
        }
        let pruned = self.prune_locked(now, policy).await;
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(PRUNER)
            .execute(&mut *lock)
            .await;
        pruned
    }

    async fn prune_locked(&self, now: SystemTime, policy: &PrunePolicy) -> Result<u64, StoreError> {
        let mut removed = self
            .delete_entries(
                Entries::Before(LogId::floor_at(now - policy.max_age)),
                u64::MAX,
            )
            .await?;
        // Over its cap, an integration loses its oldest entries: counted from the
        // oldest end, so the cost is what goes, not what stays.
        let over: Vec<(IntegrationId, i64)> = sqlx::query_as(
            "SELECT integration_id, entries FROM live_log_counts WHERE entries > $1",
        )
        .bind(policy.max_entries_per_integration as i64)
        .fetch_all(&self.pool)
        .await?;
        for (integration_id, entries) in over {
            let excess = (entries - policy.max_entries_per_integration as i64).max(0) as u64;
            removed += self
                .delete_entries(Entries::OldestOf(integration_id), excess)
                .await?;
        }
        let finished = format!(
            "DELETE FROM deliveries WHERE id = ANY(ARRAY(SELECT id FROM deliveries WHERE state NOT IN ('{}', '{}') AND updated_at < $1 LIMIT {CHUNK}))",
            DeliveryState::Pending,
            DeliveryState::Dead
        );
        removed += self
            .delete_rows(&finished, to_ms(now - policy.max_age))
            .await?;
        let dead = format!(
            "DELETE FROM deliveries WHERE id = ANY(ARRAY(SELECT id FROM deliveries WHERE state = '{}' AND updated_at < $1 LIMIT {CHUNK}))",
            DeliveryState::Dead
        );
        removed += self
            .delete_rows(&dead, to_ms(now - policy.dead_letter_max_age))
            .await?;
        let events = format!(
            "DELETE FROM events WHERE message_id = ANY(ARRAY(SELECT message_id FROM events WHERE received_at < $1 LIMIT {CHUNK}))"
        );
        removed += self
            .delete_rows(&events, to_ms(now - policy.max_age))
            .await?;
        Ok(removed)
    }

    /// Deletes entries chunk by chunk, each with its integrations' counts, until
    /// `limit` went or none is left.
    async fn delete_entries(&self, which: Entries, limit: u64) -> Result<u64, StoreError> {
        let mut total = 0;
        while total < limit {
            let chunk = (limit - total).min(CHUNK as u64) as i64;
            let mut tx = self.pool.begin().await?;
            let n = delete_entry_chunk(&mut tx, &which, chunk).await?;
            tx.commit().await?;
            total += n;
            if (n as i64) < chunk {
                break;
            }
        }
        Ok(total)
    }

    /// Runs `sql` (a delete of at most one chunk, cut at `$1`) until it deletes fewer.
    async fn delete_rows(&self, sql: &str, cut: i64) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let n = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(cut)
                .execute(&self.pool)
                .await?
                .rows_affected();
            total += n;
            if n < CHUNK as u64 {
                return Ok(total);
            }
        }
    }
}

async fn delete_entry_chunk(
    conn: &mut PgConnection,
    which: &Entries,
    chunk: i64,
) -> Result<u64, StoreError> {
    let rows = match which {
        Entries::Before(cut) => sqlx::query(
            "DELETE FROM live_logs WHERE id = ANY(ARRAY(SELECT id FROM live_logs WHERE id < $1 LIMIT $2)) RETURNING integration_id",
        )
        .bind(cut),
        Entries::OldestOf(integration_id) => sqlx::query(
            "DELETE FROM live_logs WHERE id = ANY(ARRAY(SELECT id FROM live_logs WHERE integration_id = $1 ORDER BY id LIMIT $2)) RETURNING integration_id",
        )
        .bind(integration_id),
    }
    .bind(chunk)
    .fetch_all(&mut *conn)
    .await?;
    let mut gone: std::collections::BTreeMap<IntegrationId, i64> = Default::default();
    for row in &rows {
        *gone.entry(row.try_get(0)?).or_default() += 1;
    }
    for (integration_id, n) in gone {
        add_entries(conn, &integration_id, -n).await?;
    }
    Ok(rows.len() as u64)
}
