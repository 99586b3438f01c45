//! The PostgreSQL backend: any number of replicas of the service on one database. Every
//! write is its own transaction on a pool (PostgreSQL takes concurrent writers and
//! groups their commits itself); ingest still gathers concurrent requests into one
//! transaction through the store's committer. Deliveries are leased with
//! `FOR UPDATE SKIP LOCKED`, so no two replicas hold one. One file per concern, beside
//! the store's file of the same name.
//!
//! Two statement habits differ from SQLite's. Words a partial index serves (`pending`,
//! `dead`) are written into the statement from the enum, not bound: after its first
//! executions PostgreSQL may plan a prepared statement once for any value, and such a
//! generic plan cannot use an index whose predicate names one value. And every text is
//! bound through [`rows`], which keeps U+0000 out of TEXT (an event's own strings go
//! to BYTEA).

mod changes;
mod dead_letters;
mod ingest;
mod integrations;
mod logs;
mod orders;
mod queue;
mod remap;
mod retention;
mod rows;
mod sources;
mod stats;

use std::borrow::Cow;
use std::str::FromStr;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use std::sync::Arc;

use super::StoreError;
use crate::config::DatabaseSettings;

#[derive(Clone)]
pub(super) struct PgStore {
    pool: PgPool,
    /// This replica, as its announcements name it (so that it skips its own).
    replica: Arc<str>,
}

pub(super) fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            Cow::Borrowed("initial"),
            MigrationType::Simple,
            include_str!("../../../migrations/postgres/0001_initial.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            Cow::Borrowed("remap"),
            MigrationType::Simple,
            include_str!("../../../migrations/postgres/0002_remap.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            Cow::Borrowed("sources"),
            MigrationType::Simple,
            include_str!("../../../migrations/postgres/0003_sources.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            4,
            Cow::Borrowed("order_key"),
            MigrationType::Simple,
            include_str!("../../../migrations/postgres/0004_order_key.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            5,
            Cow::Borrowed("order_states"),
            MigrationType::Simple,
            include_str!("../../../migrations/postgres/0005_order_states.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            6,
            Cow::Borrowed("store_probe"),
            MigrationType::Simple,
            include_str!("../../../migrations/postgres/0006_store_probe.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            7,
            Cow::Borrowed("live_log_filters"),
            MigrationType::Simple,
            include_str!("../../../migrations/postgres/0007_live_log_filters.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            8,
            Cow::Borrowed("packed_values"),
            MigrationType::Simple,
            include_str!("../../../migrations/postgres/0008_packed_values.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            9,
            Cow::Borrowed("dead_letter_age"),
            MigrationType::Simple,
            include_str!("../../../migrations/postgres/0009_dead_letter_age.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            10,
            Cow::Borrowed("order_seq"),
            MigrationType::Simple,
            include_str!("../../../migrations/postgres/0010_order_seq.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            11,
            Cow::Borrowed("packed_values_v2"),
            MigrationType::Simple,
            include_str!("../../../migrations/postgres/0011_packed_values_v2.sql").into_sql_str(),
            false,
        ),
    ])
}

impl PgStore {
    /// Connects; applies pending migrations when `settings.migrate_on_start` (replicas
    /// starting together take turns on an advisory lock), else refuses a database
    /// that lacks one.
    pub(super) async fn open(url: &str, settings: &DatabaseSettings) -> Result<Self, StoreError> {
        // A write that waits longer than busy_timeout for a lock fails (ingest then
        // answers 503, as with a locked SQLite file) instead of waiting without end.
        let options = PgConnectOptions::from_str(url)?
            .application_name("button-delivery")
            .statement_cache_capacity(256)
            .options([(
                "lock_timeout",
                format!("{}ms", settings.busy_timeout.as_millis()),
            )]);
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .min_connections(1)
            .acquire_timeout(settings.busy_timeout)
            .connect_with(options)
            .await?;
        let migrator = migrator();
        if settings.migrate_on_start {
            migrator
                .run(&pool)
                .await
                .map_err(|e| StoreError::Unavailable(format!("migrations failed: {e}")))?;
        } else {
            check_migrated(&migrator, &pool).await?;
        }
        Ok(Self {
            pool,
            replica: format!("{:016x}", rand::random::<u64>()).into(),
        })
    }

    /// `button-delivery migrate`: applies pending migrations and stops.
    pub(super) async fn migrate(url: &str) -> Result<usize, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(PgConnectOptions::from_str(url)?)
            .await?;
        let migrator = migrator();
        let pending = pending(&migrator, &applied(&pool).await);
        migrator
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migrations failed: {e}")))?;
        pool.close().await;
        Ok(pending)
    }

    /// How many ingest writes commit at once: a quarter of the pool (at most 4), so
    /// that leases, outcomes and reads keep connections of their own.
    pub(super) fn ingest_writes(settings: &DatabaseSettings) -> usize {
        (settings.max_connections as usize / 4).clamp(1, 4)
    }

    /// Where work on the commit path runs: any of the runtime's workers.
    pub(super) fn commit_path(&self) -> tokio::runtime::Handle {
        tokio::runtime::Handle::current()
    }

    /// Commits a one-row write.
    pub(super) async fn probe_commit(&self) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO store_probe (id, probed_at) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at",
        )
        .bind(crate::domain::clock::now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
    }
}

/// The migrations the database has applied.
async fn applied(pool: &PgPool) -> Vec<i64> {
    sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(pool)
        .await
        .unwrap_or_default()
}

/// How many of `migrator`'s migrations are not among those `applied`.
fn pending(migrator: &Migrator, applied: &[i64]) -> usize {
    migrator
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .count()
}

/// Refuses a database with migrations still to apply, or with ones this release does
/// not know: a later release has used it, and may have stored values this one would
/// misread (as applying migrations at start refuses it too).
async fn check_migrated(migrator: &Migrator, pool: &PgPool) -> Result<(), StoreError> {
    let applied = applied(pool).await;
    let unknown: Vec<i64> = applied
        .iter()
        .copied()
        .filter(|v| !migrator.iter().any(|m| m.version == *v))
        .collect();
    if !unknown.is_empty() {
        return Err(StoreError::Unavailable(format!(
            "the database has migration(s) {unknown:?} that this release does not know: a later release has used it"
        )));
    }
    match pending(migrator, &applied) {
        0 => Ok(()),
        n => Err(StoreError::Unavailable(format!(
            "the database lacks {n} migration(s): run `button-delivery migrate` (or set database.migrate_on_start)"
        ))),
    }
}
