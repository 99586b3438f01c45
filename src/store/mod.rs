//! The store: integrations, the event log, the delivery queue and the live logs. One
//! file per concern says what the service asks of the store, with the records it
//! passes: [`ingest`] (events and their deliveries, written together, with the
//! committer that gathers concurrent requests), [`queue`] (leases and outcomes),
//! [`orders`] (each order as last delivered), [`dead_letters`], [`remap`] (stored events mapped again), [`stats`], [`logs`] (the
//! live-log entries), [`retention`], [`integrations`] and [`sources`]. Those operations
//! are the boundary a backend implements.
//!
//! # The boundary: an enum over backends
//!
//! [`Store`] holds a [`Backend`], an enum with one variant per database, and each
//! operation matches on it. A trait object was the other choice; the enum wins here:
//!
//! - the backends are a closed set known when the service is built (SQLite embedded,
//!   PostgreSQL for several replicas) and chosen at run time by `database.url`, so both
//!   are compiled in anyway;
//! - a backend that lacks an operation is a compile error in the `match`, not a
//!   default method that does the wrong thing;
//! - calls stay static: no boxed futures or `async-trait` on the paths every event
//!   takes (ingest, lease, finish), and the futures' `Send`-ness stays checked;
//! - the backends differ in more than syntax (SQLite writes through one group-commit
//!   writer and finds duplicates before inserting; PostgreSQL takes concurrent
//!   transactions and leases with `FOR UPDATE SKIP LOCKED`), so the SQL is per backend
//!   (`sqlite/`, one file per concern) and what they share is the records and the
//!   vocabulary ([`crate::domain`]) they store.

pub mod changes;
pub mod dead_letters;
pub mod error;
pub mod ingest;
pub mod integrations;
pub mod logs;
pub mod orders;
pub mod queue;
pub mod remap;
pub mod retention;
pub mod sources;
pub mod stats;

mod columns;
pub(crate) mod pack;
mod postgres;
mod rows;
mod sqlite;

use crate::config::{DatabaseKind, DatabaseSettings};
pub use error::StoreError;
use ingest::Committer;
use postgres::PgStore;
use sqlite::SqliteStore;

/// The single database of the service.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    committer: Committer,
}

/// One variant per database the service can run on.
#[derive(Clone)]
enum Backend {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// Runs `$body` with `$db` bound to the database behind `$backend`.
macro_rules! on_backend {
    ($backend:expr, $db:ident => $body:expr) => {
        match &$backend {
            $crate::store::Backend::Sqlite($db) => $body,
            $crate::store::Backend::Postgres($db) => $body,
        }
    };
}
pub(crate) use on_backend;

impl Store {
    /// Opens the `kind` database at `url` (creating an embedded one if needed) and
    /// brings its schema up to date.
    pub async fn open(
        kind: DatabaseKind,
        url: &str,
        settings: &DatabaseSettings,
    ) -> Result<Self, StoreError> {
        let (backend, commit_path, in_flight) = match kind {
            DatabaseKind::Sqlite => {
                let db = SqliteStore::open(url, settings).await?;
                let path = db.commit_path();
                (Backend::Sqlite(db), path, 1)
            }
            DatabaseKind::Postgres => {
                let db = PgStore::open(url, settings).await?;
                let path = db.commit_path();
                (
                    Backend::Postgres(db),
                    path,
                    PgStore::ingest_writes(settings),
                )
            }
        };
        let committer = Committer::start(
            backend.clone(),
            commit_path,
            in_flight,
            settings.max_queued_events,
        );
        Ok(Self { backend, committer })
    }

    /// Applies the pending migrations of the database at `url` and stops (`button-delivery
    /// migrate`). Answers how many were applied.
    pub async fn migrate(
        kind: DatabaseKind,
        url: &str,
        settings: &DatabaseSettings,
    ) -> Result<usize, StoreError> {
        match kind {
            DatabaseKind::Postgres => PgStore::migrate(url).await,
            DatabaseKind::Sqlite => {
                // The embedded store migrates whenever it opens.
                Self::open(kind, url, settings).await?.close().await;
                Ok(0)
            }
        }
    }

    /// Readiness: the store can commit a write now (one row, rewritten each time).
    pub async fn probe_commit(&self) -> Result<(), StoreError> {
        on_backend!(self.backend, db => db.probe_commit().await)
    }

    /// Commits what is queued, stops writing and closes every connection.
    pub async fn close(&self) {
        on_backend!(self.backend, db => db.close().await)
    }
}

/// Which part of a list to read: up to `limit` items past `from`, the sort key of the
/// last item of the page before (in the list's own order).
#[derive(Debug, Clone)]
pub struct Page<K> {
    pub from: Option<K>,
    pub limit: u32,
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
