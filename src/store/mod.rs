//! The store: integrations, the event log, the delivery queue and the live logs, in one
//! SQL database behind one interface. SQLite (embedded, WAL mode) is the default. The
//! statements keep to shapes PostgreSQL shares (`ON CONFLICT`, `RETURNING`,
//! `UPDATE ... FROM (VALUES ...)`, partial indexes, a lease subquery that takes
//! `FOR UPDATE SKIP LOCKED` there), so a PostgreSQL backend needs its own placeholders
//! (`$n`) and DDL, not a new design.
//!
//! Reads use a pool of connections; every write goes through the group-commit
//! [`writer`].

pub mod integrations;
pub mod logs;
pub mod queue;
pub mod writer;

use std::borrow::Cow;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{SqlSafeStr, SqlitePool};

use crate::config::{DatabaseSettings, Synchronous};
pub use writer::Writer;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be written or read now (locked, full disk, read-only file,
    /// I/O error, writer stopped). Nothing of the failed operation was applied.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The database refused this operation (a constraint, a bad statement): a bug,
    /// not a condition to wait out.
    #[error("store refused the operation: {0}")]
    Rejected(String),
    /// A stored record is not what this version of the service expects.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// SQLite primary result codes that mean the store cannot take writes now: BUSY,
/// LOCKED, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, NOTADB.
const UNAVAILABLE_CODES: [i64; 8] = [5, 6, 8, 10, 11, 13, 14, 26];

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::ColumnNotFound(_) => Self::Corrupt(e.to_string()),
            sqlx::Error::Database(db) => {
                let primary = db
                    .code()
                    .and_then(|c| c.parse::<i64>().ok())
                    .map(|c| c & 0xff);
                if primary.is_some_and(|c| UNAVAILABLE_CODES.contains(&c)) {
                    Self::Unavailable(e.to_string())
                } else {
                    Self::Rejected(e.to_string())
                }
            }
            _ => Self::Unavailable(e.to_string()),
        }
    }
}

/// The single database of the service.
#[derive(Clone)]
pub struct Store {
    read: SqlitePool,
    write_pool: SqlitePool,
    checkpoint_pool: SqlitePool,
    stop_checkpoints: tokio::sync::watch::Sender<bool>,
    writer: Writer,
}

/// Copies the write-ahead log into the database every 200 ms, from a connection of its
/// own, so that commits never carry a checkpoint (and its sync of the database file).
/// PASSIVE never blocks the writer or readers; what it cannot copy now it copies next
/// time.
async fn checkpoints(pool: SqlitePool, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::warn!(error = %e, "checkpoint failed; will try again");
        }
    }
}

fn migrator() -> Migrator {
    Migrator::with_migrations(vec![Migration::new(
        1,
        Cow::Borrowed("initial"),
        MigrationType::Simple,
        include_str!("../../migrations/sqlite/0001_initial.sql").into_sql_str(),
        false,
    )])
}

impl Store {
    /// Opens (creating if needed) the database at `url`, runs the migrations and starts
    /// the writer.
    pub async fn open(url: &str, settings: &DatabaseSettings) -> Result<Self, StoreError> {
        let synchronous = match settings.synchronous {
            Synchronous::Full => SqliteSynchronous::Full,
            Synchronous::Normal => SqliteSynchronous::Normal,
        };
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .busy_timeout(settings.busy_timeout)
            .pragma("temp_store", "memory")
            .statement_cache_capacity(256);
        // Commits do not checkpoint (a checkpoint inside a commit stalls every write
        // waiting behind it): a background connection does, see `checkpoints`. The
        // writer's own threshold stays as a backstop should that ever fall behind.
        let write_pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(
                options
                    .clone()
                    .pragma(
                        "cache_size",
                        format!("-{}", settings.writer_cache_mib * 1024),
                    )
                    .pragma("wal_autocheckpoint", "16384")
                    .pragma("journal_size_limit", "67108864"),
            )
            .await?;
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
        tokio::spawn(checkpoints(checkpoint_pool.clone(), stopping));
        let writer = Writer::start(write_pool.clone(), settings.max_batch_ops);
        Ok(Self {
            read,
            write_pool,
            checkpoint_pool,
            stop_checkpoints,
            writer,
        })
    }

    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    pub fn reader(&self) -> &SqlitePool {
        &self.read
    }

    /// Readiness: the database answers a query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    /// Commits what is queued, stops the writer and closes every connection.
    pub async fn close(&self) {
        self.writer.stop().await;
        let _ = self.stop_checkpoints.send(true);
        self.checkpoint_pool.close().await;
        self.read.close().await;
        self.write_pool.close().await;
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    to_ms(SystemTime::now())
}

pub fn to_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as i64
}

pub fn from_ms(ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// RFC 3339 rendering of a stored time, as the API shows it: UTC, always with
/// milliseconds, so renderings sort as the times do.
pub fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .unwrap_or_default()
}

/// Most bound parameters in one statement. SQLite allows 32766 (and PostgreSQL
/// 65535); a few thousand keeps each multi-row statement's text (and its cached
/// preparation) small while still writing hundreds of rows at a time.
pub(crate) const MAX_BINDS: usize = 4096;

/// Splits `total` rows into statement sizes: full chunks of `max`, then the rest in
/// powers of two, so only a handful of distinct multi-row statements is ever prepared
/// and cached.
pub(crate) fn pieces(total: usize, max: usize) -> impl Iterator<Item = usize> {
    let max = max.max(1);
    let mut rest = total % max;
    std::iter::repeat_n(max, total / max).chain(std::iter::from_fn(move || {
        if rest == 0 {
            return None;
        }
        let piece = 1usize << (usize::BITS - 1 - rest.leading_zeros());
        rest -= piece;
        Some(piece)
    }))
}

#[cfg(test)]
mod tests {
    use super::pieces;

    #[test]
    fn pieces_cover_the_total_with_few_distinct_sizes() {
        for total in 0..300 {
            let p: Vec<usize> = pieces(total, 55).collect();
            assert_eq!(p.iter().sum::<usize>(), total);
            assert!(
                p.iter().all(|&n| n == 55 || n.is_power_of_two()),
                "{total}: {p:?}"
            );
        }
    }
}
