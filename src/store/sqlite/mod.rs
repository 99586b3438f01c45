//! The embedded SQLite backend (WAL mode): one file, one process. Reads use a pool of
//! connections; every write goes through the group-commit [`writer`], the only
//! connection that writes; a background connection checkpoints the write-ahead log.
//! One file per concern holds its SQL, beside the store's file of the same name.

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
mod wal_gather;
mod writer;

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{SqlSafeStr, SqlitePool};

use super::StoreError;
use crate::config::{DatabaseSettings, Synchronous};
use crate::domain::clock::now_ms;
use writer::{DirectOptions, Writer, Written};

#[derive(Clone)]
pub(super) struct SqliteStore {
    read: SqlitePool,
    write_pool: SqlitePool,
    checkpoint_pool: SqlitePool,
    stop_checkpoints: tokio::sync::watch::Sender<bool>,
    writer: Writer,
}

fn migrator() -> Migrator {
    // The initial migration is kept byte for byte as first applied: sqlx checks each
    // applied migration's checksum, so an edit (even to a comment) would stop every
    // existing database from opening. Schema changes come as new files. Its comments
    // on the states a column holds are history: `crate::domain::states` defines them,
    // and the plan test below holds its partial indexes to those definitions.
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            Cow::Borrowed("initial"),
            MigrationType::Simple,
            include_str!("../../../migrations/sqlite/0001_initial.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            Cow::Borrowed("remap"),
            MigrationType::Simple,
            include_str!("../../../migrations/sqlite/0002_remap.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            Cow::Borrowed("sources"),
            MigrationType::Simple,
            include_str!("../../../migrations/sqlite/0003_sources.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            4,
            Cow::Borrowed("order_key"),
            MigrationType::Simple,
            include_str!("../../../migrations/sqlite/0004_order_key.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            5,
            Cow::Borrowed("order_states"),
            MigrationType::Simple,
            include_str!("../../../migrations/sqlite/0005_order_states.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            6,
            Cow::Borrowed("store_probe"),
            MigrationType::Simple,
            include_str!("../../../migrations/sqlite/0006_store_probe.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            7,
            Cow::Borrowed("live_log_filters"),
            MigrationType::Simple,
            include_str!("../../../migrations/sqlite/0007_live_log_filters.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            8,
            Cow::Borrowed("packed_values"),
            MigrationType::Simple,
            include_str!("../../../migrations/sqlite/0008_packed_values.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            9,
            Cow::Borrowed("dead_letter_age"),
            MigrationType::Simple,
            include_str!("../../../migrations/sqlite/0009_dead_letter_age.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            10,
            Cow::Borrowed("order_seq"),
            MigrationType::Simple,
            include_str!("../../../migrations/sqlite/0010_order_seq.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            11,
            Cow::Borrowed("packed_values_v2"),
            MigrationType::Simple,
            include_str!("../../../migrations/sqlite/0011_packed_values_v2.sql").into_sql_str(),
            false,
        ),
    ])
}

/// Creates the database file owner-only (SQLite gives its `-wal` and `-shm` files the
/// database file's permissions), and makes existing ones owner-only: events hold
/// customers' data.
fn owner_only(database: &std::path::Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if database.as_os_str().is_empty() || database.as_os_str() == ":memory:" {
        return Ok(());
    }
    let io = |e: std::io::Error| {
        StoreError::Unavailable(format!(
            "cannot make {} owner-only: {e}",
            database.display()
        ))
    };
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(database)
        .map_err(io)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut path = database.as_os_str().to_owned();
        path.push(suffix);
        if std::path::Path::new(&path).exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        }
    }
    Ok(())
}

impl SqliteStore {
    pub(super) async fn open(url: &str, settings: &DatabaseSettings) -> Result<Self, StoreError> {
        let (synchronous, synchronous_word) = match settings.synchronous {
            Synchronous::Full => (SqliteSynchronous::Full, "FULL"),
            Synchronous::Normal => (SqliteSynchronous::Normal, "NORMAL"),
        };
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .busy_timeout(settings.busy_timeout)
            .pragma("temp_store", "memory")
            .statement_cache_capacity(256);
        owner_only(options.get_filename())?;
        // Commits do not checkpoint (a checkpoint inside a commit stalls every write
        // waiting behind it): a background connection does, see `checkpoints`. The
        // writer's own threshold stays as a backstop should that ever fall behind.
        let writer_pragmas = vec![
            (
                "cache_size",
                format!("-{}", settings.writer_cache_mib * 1024),
            ),
            ("wal_autocheckpoint", "16384".to_owned()),
            ("journal_size_limit", "67108864".to_owned()),
        ];
        let write_pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            // The writer waits for its connection (re-made after a failed commit) no
            // longer than for a lock.
            .acquire_timeout(settings.busy_timeout)
            .connect_with(
                writer_pragmas
                    .iter()
                    .fold(options.clone(), |o, (name, value)| {
                        o.pragma(*name, value.clone())
                    }),
            )
            .await?;
        // The writer's own connection, for its direct writes: as sqlx's writer.
        let direct = DirectOptions {
            path: options.get_filename().to_owned(),
            busy_timeout: settings.busy_timeout,
            gather_wal: wal_gather::usable(settings.synchronous == Synchronous::Full),
            pragmas: [
                ("foreign_keys", "ON".to_owned()),
                ("synchronous", synchronous_word.to_owned()),
                ("temp_store", "memory".to_owned()),
            ]
            .into_iter()
            .chain(writer_pragmas)
            .collect(),
        };
        migrator()
            .run(&write_pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migrations failed: {e}")))?;
        let read = SqlitePoolOptions::new()
            .max_connections(settings.read_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await?;
        let checkpoint_pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        let (stop_checkpoints, stopping) = tokio::sync::watch::channel(false);
        let writer = Writer::start(write_pool.clone(), direct, settings.max_batch_ops);
        tokio::spawn(checkpoints(
            checkpoint_pool.clone(),
            writer.written(),
            stopping,
        ));
        let store = Self {
            read,
            write_pool,
            checkpoint_pool,
            stop_checkpoints,
            writer,
        };
        let released = store.release_all_leases(now_ms()).await?;
        if released > 0 {
            tracing::warn!(
                deliveries = released,
                "took back deliveries leased by a previous run that did not finish them"
            );
        }
        Ok(store)
    }

    /// Where work on the commit path runs: the writer's own thread.
    pub(super) fn commit_path(&self) -> tokio::runtime::Handle {
        self.writer.handle().clone()
    }

    /// Commits a one-row write through the writer, as every write goes.
    pub(super) async fn probe_commit(&self) -> Result<(), StoreError> {
        let at = now_ms();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO store_probe (id, probed_at) VALUES (1, ?1) \
                         ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at",
                    )
                    .bind(at)
                    .execute(&mut *conn)
                    .await?;
                    Ok(())
                })
            })
            .await
    }

    pub(super) async fn close(&self) {
        self.writer.stop().await;
        let _ = self.stop_checkpoints.send(true);
        self.checkpoint_pool.close().await;
        self.read.close().await;
        self.write_pool.close().await;
    }
}

/// How often the checkpoint task looks at what was written.
const CHECKPOINT_STEP: Duration = Duration::from_millis(200);
/// Operations written since the last checkpoint that call for one at the next step.
const CHECKPOINT_AFTER_OPS: u64 = 1_000;
/// The longest anything written waits for a checkpoint.
const CHECKPOINT_AT_MOST: Duration = Duration::from_secs(1);

/// Copies the write-ahead log into the database from a connection of its own, so that
/// commits never carry a checkpoint (and its sync of the database file). PASSIVE never
/// blocks the writer or readers; what it cannot copy now it copies a second later.
///
/// It checkpoints at the first 200 ms step after [`CHECKPOINT_AFTER_OPS`] operations
/// were written (a busy store: a few MB of log), else once a second while anything is
/// written, and never while nothing is. A quiet store thus syncs its database file
/// once a second rather than five times, copying each page its commits keep rewriting
/// (an index's last leaf) once for all of them; measured at 100 events/s: 1.5 fewer
/// context switches per event (BENCHMARKS.md).
async fn checkpoints(
    pool: SqlitePool,
    written: Written,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut copied = written.ops();
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CHECKPOINT_STEP) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now_written = written.ops();
        if !checkpoint_due(now_written - copied, last.elapsed()) {
            continue;
        }
        last = tokio::time::Instant::now();
        match checkpoint(&pool).await {
            Ok(true) => copied = now_written,
            // A reader on an older snapshot kept part of the log back: what is left
            // waits for the next second, not for the next write.
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "checkpoint failed; will try again"),
        }
    }
}

/// One PASSIVE checkpoint; whether it copied the whole log into the database file.
async fn checkpoint(pool: &SqlitePool) -> Result<bool, sqlx::Error> {
    // Its row: whether it was blocked, the frames in the log, the frames copied.
    let (blocked, log, copied): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(pool)
        .await?;
    Ok(blocked == 0 && copied >= log)
}

/// Whether to checkpoint, with `waiting` operations written since the last checkpoint
/// and `since` it.
fn checkpoint_due(waiting: u64, since: Duration) -> bool {
    waiting >= CHECKPOINT_AFTER_OPS || (waiting > 0 && since >= CHECKPOINT_AT_MOST)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DeliveryState, IntegrationId};

    async fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let settings = crate::config::Settings::load_from(Vec::<(String, String)>::new())
            .unwrap()
            .database;
        let url = format!("sqlite://{}/plans.db", dir.path().display());
        let store = SqliteStore::open(&url, &settings).await.unwrap();
        (dir, store)
    }

    /// How SQLite plans `sql` with `state` bound where the statement compares it.
    async fn plan(store: &SqliteStore, sql: &str, binds: Vec<Bind>) -> String {
        let mut q = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
        for b in binds {
            q = match b {
                Bind::Id => q.bind(IntegrationId::new()),
                Bind::State(s) => q.bind(s),
                Bind::Int => q.bind(0_i64),
                Bind::Text => q.bind("x"),
            };
        }
        let rows = q.fetch_all(&store.read).await.unwrap();
        rows.iter()
            .map(|r| sqlx::Row::get::<String, _>(r, "detail"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    enum Bind {
        Id,
        State(DeliveryState),
        Int,
        Text,
    }

    /// The queue's partial indexes are written for fixed states (`WHERE state =
    /// 'pending'`); the lease and next-due statements write the state in, the others
    /// bind it. These plans prove SQLite uses the indexes either way, so the
    /// migration's words and the enum's agree.
    #[tokio::test]
    async fn bound_states_use_the_partial_indexes() {
        use Bind::*;
        let (_dir, store) = store().await;
        let lease = plan(&store, &queue::LEASE, vec![Int, Text, Int, Id, Int, Int]).await;
        assert!(lease.contains("USING INDEX deliveries_due"), "{lease}");
        // An order's earlier changes are a range of the order's index, not a scan.
        assert!(
            lease.contains(
                "USING INDEX deliveries_order (integration_id=? AND order_key=? AND order_seq<?)"
            ),
            "{lease}"
        );
        let last = plan(&store, ingest::LAST_ORDER_SEQ, vec![Id, Text]).await;
        assert!(
            last.contains("USING COVERING INDEX deliveries_order"),
            "{last}"
        );
        let next = plan(&store, &queue::NEXT_DUE, vec![Id]).await;
        assert!(next.contains("deliveries_due"), "{next}");
        assert!(next.contains("deliveries_order"), "{next}");
        let dead = plan(
            &store,
            dead_letters::LIST,
            vec![Id, State(DeliveryState::Dead), Text, Int],
        )
        .await;
        assert!(dead.contains("USING INDEX deliveries_dead ("), "{dead}");
        let finished = plan(&store, &retention::FINISHED_DELIVERIES, vec![Int, Int]).await;
        assert!(
            finished.contains("USING INDEX deliveries_finished"),
            "{finished}"
        );
        // A bound state the index is not for is not planned with it.
        let wrong = plan(
            &store,
            dead_letters::LIST,
            vec![Id, State(DeliveryState::Delivered), Text, Int],
        )
        .await;
        assert!(!wrong.contains("deliveries_dead"), "{wrong}");
        store.close().await;
    }

    /// Retention runs on the writer, between ingest's commits: each of its statements
    /// must find the rows it deletes through an index, never read a whole table or
    /// index (the dead letters' once read every delivery stored, 378-495 ms of the
    /// writer's time at 1.5 million). Planned as the writer's own connection plans
    /// them, once and whatever is bound (`SQLITE_DBCONFIG_ENABLE_QPSG`).
    #[tokio::test]
    async fn retention_statements_search_indexes_as_the_writer_plans_them() {
        let (dir, store) = store().await;
        let db = rusqlite::Connection::open(dir.path().join("plans.db")).unwrap();
        db.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )
        .unwrap();
        let cut = rusqlite::types::Value::Integer(0);
        let id = rusqlite::types::Value::Text(IntegrationId::new().to_string());
        for (sql, first, index) in [
            (
                retention::ENTRIES_BEFORE,
                &id,
                "sqlite_autoindex_live_logs_1",
            ),
            (retention::OLDEST_ENTRIES, &id, "live_logs_integration"),
            (&retention::FINISHED_DELIVERIES, &cut, "deliveries_finished"),
            (&retention::DEAD_LETTERS, &cut, "deliveries_dead_age"),
            (retention::EVENTS, &cut, "events_received"),
        ] {
            let plan = direct_plan(&db, sql, (first, 100));
            assert!(!plan.contains("SCAN"), "{sql}: {plan}");
            assert!(plan.contains(index), "{sql}: {plan}");
        }
        // Taking back every lease at start reads the pending deliveries, not all.
        let release = direct_plan(&db, &queue::RELEASE_ALL, (&cut,));
        assert!(
            release.contains("SCAN deliveries USING INDEX deliveries_due"),
            "{release}"
        );
        store.close().await;
    }

    /// How the writer's connection `db` plans `sql` with `params` bound.
    fn direct_plan(db: &rusqlite::Connection, sql: &str, params: impl rusqlite::Params) -> String {
        let mut explain = db.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let plan: Vec<String> = explain
            .query_map(params, |row| row.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        plan.join("; ")
    }

    #[test]
    fn checkpoints_follow_what_was_written() {
        let step = CHECKPOINT_STEP;
        assert!(!checkpoint_due(0, step), "nothing written");
        assert!(
            !checkpoint_due(0, Duration::from_secs(3600)),
            "idle for an hour"
        );
        assert!(
            !checkpoint_due(1, step),
            "a quiet store waits up to a second"
        );
        assert!(checkpoint_due(1, CHECKPOINT_AT_MOST));
        assert!(
            checkpoint_due(CHECKPOINT_AFTER_OPS, step),
            "a busy store at once"
        );
        assert!(!checkpoint_due(CHECKPOINT_AFTER_OPS - 1, step));
    }

    /// A lone write reaches the database file itself (not only the write-ahead log)
    /// within a few checkpoint periods, with no further writes to push it.
    #[tokio::test]
    async fn a_lone_write_is_checkpointed_into_the_database_file() {
        let (dir, store) = store().await;
        let file = dir.path().join("plans.db");
        // Let the migrations' own log be copied first.
        tokio::time::sleep(CHECKPOINT_AT_MOST + CHECKPOINT_STEP * 2).await;
        let before = std::fs::metadata(&file).unwrap().len();
        write(
            &store,
            "CREATE TABLE bulk (b BLOB); INSERT INTO bulk VALUES (zeroblob(262144));",
        )
        .await;
        let written = tokio::time::Instant::now();
        loop {
            let now = std::fs::metadata(&file).unwrap().len();
            if now >= before + 262_144 {
                break;
            }
            assert!(
                written.elapsed() < CHECKPOINT_AT_MOST * 5,
                "the database file is still {now} bytes (was {before}): never checkpointed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        store.close().await;
    }

    async fn write(store: &SqliteStore, sql: &'static str) {
        store
            .writer
            .direct(move |db| {
                db.execute_batch(sql)?;
                Ok(())
            })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_checkpoint_says_when_a_reader_held_part_of_the_log_back() {
        let (_dir, store) = store().await;
        write(&store, "CREATE TABLE t (x); INSERT INTO t VALUES (1);").await;
        assert!(checkpoint(&store.checkpoint_pool).await.unwrap());
        let mut reader = store.read.acquire().await.unwrap();
        sqlx::query("BEGIN").execute(&mut *reader).await.unwrap();
        sqlx::query("SELECT count(*) FROM t")
            .fetch_one(&mut *reader)
            .await
            .unwrap();
        write(&store, "INSERT INTO t VALUES (2);").await;
        assert!(
            !checkpoint(&store.checkpoint_pool).await.unwrap(),
            "the reader's snapshot holds the new frames back"
        );
        sqlx::query("COMMIT").execute(&mut *reader).await.unwrap();
        drop(reader);
        assert!(checkpoint(&store.checkpoint_pool).await.unwrap());
        store.close().await;
    }
}
