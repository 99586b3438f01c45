//! Group commit. Every write of the service is an operation sent to one writer task,
//! which runs all the operations waiting at that moment in one transaction (one per
//! connection, below), each in its own savepoint, and answers each only after the
//! commit. Under load many ingest
//! requests, lease grabs and attempt results share one commit (one fsync), which is
//! what makes durable ingest fast; alone, an operation commits at once.
//!
//! An operation that fails is rolled back to its savepoint without touching the others;
//! a commit that fails fails every operation of the batch, and none is acknowledged.
//!
//! Each operation keeps its own typed answer: the writer only runs it and then tells
//! it whether its transaction committed, so no value passes through it untyped.
//!
//! The frequent writes (ingest, leases, outcomes, live-log entries, retention) are
//! [`Writer::direct`] operations: they run on the writer thread itself, on a rusqlite
//! connection the writer opens and owns. Through sqlx each statement is a round trip
//! to the connection's own worker thread (two thread hand-offs, about 1.2 ms of CPU
//! per event at 100 events/s); here a batch costs none. The rest (installs, sources,
//! dead-letter changes) still go through sqlx's connection, in a transaction of their
//! own after the direct one. The two connections never hold the write lock at once:
//! one thread runs both, one after the other.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::{Connection, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use crate::store::StoreError;

/// How many statements the direct connection keeps prepared.
const DIRECT_STATEMENTS: usize = 64;

/// One write through sqlx, as the writer sees it.
trait Operation: Send {
    /// Runs the write on `conn` and keeps its result. `Err` (a copy of the write's
    /// error) means it must be rolled back.
    fn run<'c>(
        &'c mut self,
        conn: &'c mut SqliteConnection,
    ) -> BoxFuture<'c, Result<(), StoreError>>;

    /// Answers the caller: with the kept result if the transaction committed, else
    /// with why it did not.
    fn answer(self: Box<Self>, committed: Result<(), StoreError>);
}

/// One write on the writer thread itself ([`Writer::direct`]).
trait DirectOperation: Send {
    /// Runs the write on `db` and keeps its result, as [`Operation::run`].
    fn run(&mut self, db: &rusqlite::Connection) -> Result<(), StoreError>;

    fn answer(self: Box<Self>, committed: Result<(), StoreError>);
}

struct Typed<T, F> {
    job: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Typed<T, F> {
    /// Keeps the job's result; answers whether it must be rolled back.
    fn keep(&mut self, result: Result<T, StoreError>) -> Result<(), StoreError> {
        let outcome = match &result {
            Ok(_) => Ok(()),
            Err(e) => Err(e.clone()),
        };
        self.result = Some(result);
        outcome
    }

    fn reply(self, committed: Result<(), StoreError>) {
        let answer = match (committed, self.result) {
            (Ok(()), Some(result)) => result,
            (Err(e), _) => Err(e),
            (Ok(()), None) => Err(StoreError::Unavailable(
                "the write was not run before its batch ended".into(),
            )),
        };
        let _ = self.reply.send(answer);
    }
}

impl<T, F> Operation for Typed<T, F>
where
    T: Send,
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>> + Send,
{
    fn run<'c>(
        &'c mut self,
        conn: &'c mut SqliteConnection,
    ) -> BoxFuture<'c, Result<(), StoreError>> {
        Box::pin(async move {
            let job = self.job.take().expect("an operation runs once");
            let result = job(conn).await;
            self.keep(result)
        })
    }

    fn answer(self: Box<Self>, committed: Result<(), StoreError>) {
        self.reply(committed)
    }
}

impl<T, F> DirectOperation for Typed<T, F>
where
    T: Send,
    F: FnOnce(&rusqlite::Connection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, db: &rusqlite::Connection) -> Result<(), StoreError> {
        let job = self.job.take().expect("an operation runs once");
        let result = job(db);
        self.keep(result)
    }

    fn answer(self: Box<Self>, committed: Result<(), StoreError>) {
        self.reply(committed)
    }
}

enum Op {
    Sqlx(Box<dyn Operation>),
    Direct(Box<dyn DirectOperation>),
}

#[derive(Clone)]
pub struct Writer {
    ops: mpsc::Sender<Op>,
    stop: mpsc::Sender<oneshot::Sender<()>>,
    handle: tokio::runtime::Handle,
    written: Written,
}

/// How many operations the writer has run (committed or failed) so far: it only grows,
/// and stands still while nothing is written. What the checkpoints go by.
#[derive(Clone, Default)]
pub struct Written(Arc<AtomicU64>);

impl Written {
    pub fn ops(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn add(&self, ops: usize) {
        self.0.fetch_add(ops as u64, Ordering::Relaxed);
    }
}

impl Writer {
    /// Starts the writer on `pool` (one connection is enough: it is the only writer),
    /// on a thread of its own with its own runtime: the commit loop is the critical
    /// path of every write, and must not wait behind request handlers for a turn on
    /// the main runtime's workers. Tasks that feed it batches can run there too
    /// ([`Writer::handle`]).
    pub fn start(pool: SqlitePool, options: DirectOptions, max_batch: usize) -> Self {
        let (tx, rx) = mpsc::channel(max_batch.max(1) * 4);
        let (stop, stop_rx) = mpsc::channel(1);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("store-writer")
            .build()
            .expect("the writer's runtime starts");
        let handle = runtime.handle().clone();
        let written = Written::default();
        let counted = written.clone();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                runtime.block_on(run(pool, options, rx, stop_rx, max_batch.max(1), counted))
            })
            .expect("the writer thread starts");
        Self {
            ops: tx,
            stop,
            handle,
            written,
        }
    }

    /// What it has written so far.
    pub fn written(&self) -> Written {
        self.written.clone()
    }

    /// Commits what was sent before, then stops; later writes fail as unavailable.
    pub async fn stop(&self) {
        let (done, stopped) = oneshot::channel();
        if self.stop.send(done).await.is_ok() {
            let _ = stopped.await;
        }
    }

    /// The writer thread's runtime, for tasks on the commit path.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// Runs `job` inside the next group commit and returns its value once committed.
    pub async fn write<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, StoreError>>
            + Send
            + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let op = Op::Sqlx(Box::new(Typed {
            job: Some(job),
            result: None,
            reply,
        }));
        self.send(op, answer).await
    }

    /// Runs `job` on the writer thread inside the next group commit, and returns its
    /// value once committed. `job` must not block on anything but the database.
    pub async fn direct<T, F>(&self, job: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let op = Op::Direct(Box::new(Typed {
            job: Some(job),
            result: None,
            reply,
        }));
        self.send(op, answer).await
    }

    async fn send<T>(
        &self,
        op: Op,
        answer: oneshot::Receiver<Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let stopped = || StoreError::Unavailable("the store writer has stopped".into());
        self.ops.send(op).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// How the writer opens its direct connection: the database file, and the settings
/// sqlx's connections get too.
pub struct DirectOptions {
    pub path: PathBuf,
    pub busy_timeout: Duration,
    /// Whether its log writes are gathered, a commit's in one call
    /// ([`super::wal_gather`]), or written as SQLite's default VFS writes them.
    pub gather_wal: bool,
    /// `PRAGMA` name and value, in order.
    pub pragmas: Vec<(&'static str, String)>,
}

impl DirectOptions {
    fn open(&self) -> Result<rusqlite::Connection, StoreError> {
        let db = if self.gather_wal {
            super::wal_gather::open(&self.path)?
        } else {
            rusqlite::Connection::open(&self.path)?
        };
        db.busy_timeout(self.busy_timeout)?;
        for (name, value) in &self.pragmas {
            // Some pragmas answer with a row (journal_size_limit), some do not.
            db.query_row(&format!("PRAGMA {name} = {value}"), [], |_| Ok(()))
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(()),
                    e => Err(e),
                })?;
        }
        // A statement's plan never depends on the values bound to it (the states that
        // choose a partial index are written into the SQL), so a value bound must not
        // make SQLite plan it again.
        db.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
            true,
        )?;
        db.set_prepared_statement_cache_capacity(DIRECT_STATEMENTS);
        if self.gather_wal && !super::wal_gather::holds(&db)? {
            return Err(StoreError::Unavailable(
                "the writer's connection gathers its log writes but lost the settings that needs (synchronous FULL, cache_spill OFF, powersafe overwrite)".into(),
            ));
        }
        Ok(db)
    }
}

/// The writer's two connections.
struct Session {
    pool: SqlitePool,
    options: DirectOptions,
    /// Opened at the first direct write, and again after one that left it doubtful.
    direct: Option<rusqlite::Connection>,
}

async fn run(
    pool: SqlitePool,
    options: DirectOptions,
    mut rx: mpsc::Receiver<Op>,
    mut stop: mpsc::Receiver<oneshot::Sender<()>>,
    max_batch: usize,
    written: Written,
) {
    let mut batch = Vec::with_capacity(max_batch);
    let mut session = Session {
        pool,
        options,
        direct: None,
    };
    let stopped = loop {
        tokio::select! {
            biased;
            n = rx.recv_many(&mut batch, max_batch) => {
                if n == 0 {
                    break None;
                }
                commit_batch(&mut session, &mut batch).await;
                written.add(n);
            }
            Some(done) = stop.recv() => {
                rx.close();
                while rx.recv_many(&mut batch, max_batch).await > 0 {
                    commit_batch(&mut session, &mut batch).await;
                }
                break Some(done);
            }
        }
    };
    drop(session);
    tracing::debug!("store writer stopped");
    if let Some(done) = stopped {
        let _ = done.send(());
    }
}

/// Commits the direct operations of `batch` in one transaction, then the others in
/// another.
async fn commit_batch(session: &mut Session, batch: &mut Vec<Op>) {
    let mut direct = Vec::new();
    let mut sqlx_ops = Vec::new();
    for op in batch.drain(..) {
        match op {
            Op::Direct(op) => direct.push(op),
            Op::Sqlx(op) => sqlx_ops.push(op),
        }
    }
    if !direct.is_empty() {
        if session.direct.is_none() {
            match session.options.open() {
                Ok(db) => session.direct = Some(db),
                Err(e) => {
                    fail_direct(direct, e);
                    direct = Vec::new();
                }
            }
        }
        if let Some(db) = &session.direct
            && !direct.is_empty()
            && let Left::Doubtful = commit_direct(db, direct)
        {
            // As below: a fresh connection knows its state.
            session.direct = None;
            tracing::warn!(
                "the writer's direct connection failed mid-transaction; it is replaced by a new one"
            );
        }
    }
    if !sqlx_ops.is_empty() {
        commit_sqlx(&session.pool, &mut sqlx_ops).await;
    }
}

async fn commit_sqlx(pool: &SqlitePool, batch: &mut Vec<Box<dyn Operation>>) {
    let mut conn = match pool.acquire().await {
        Ok(conn) => conn,
        Err(e) => return fail_all(batch, StoreError::from(e)),
    };
    if let Left::Doubtful = commit_on(&mut conn, batch).await {
        // After a failed COMMIT or ROLLBACK (a full disk, an I/O error) SQLite
        // may have ended the transaction itself while the driver still counts it open,
        // and every later BEGIN on this connection would fail. A fresh one knows its
        // state: this one is closed, and the pool opens the next when it is needed.
        conn.close_on_drop();
        tracing::warn!(
            "the writer's connection failed mid-transaction; it is replaced by a new one"
        );
    }
}

fn fail_direct(batch: Vec<Box<dyn DirectOperation>>, e: StoreError) {
    tracing::error!(error = %e, ops = batch.len(), "cannot start a write transaction");
    for op in batch {
        op.answer(Err(e.clone()));
    }
}

/// What a batch left its connection in.
enum Left {
    /// No transaction open, as the driver believes.
    Sound,
    /// A COMMIT or ROLLBACK failed: what the database holds open is not known.
    Doubtful,
}

async fn commit_on(conn: &mut SqliteConnection, batch: &mut Vec<Box<dyn Operation>>) -> Left {
    // IMMEDIATE takes the write lock now: if the database cannot be written, the whole
    // batch fails here at once instead of op by op.
    let mut tx = match conn.begin_with("BEGIN IMMEDIATE").await {
        Ok(tx) => tx,
        Err(e) => {
            // BEGIN failed (locked, most often): no transaction was opened.
            fail_all(batch, StoreError::from(e));
            return Left::Sound;
        }
    };
    let mut done: Vec<(Box<dyn Operation>, Result<(), StoreError>)> =
        Vec::with_capacity(batch.len());
    if batch.len() == 1 {
        // Alone, the transaction itself is the operation's savepoint.
        let mut op = batch.pop().expect("one operation");
        if let Err(e) = op.run(&mut tx).await {
            let rolled_back = tx.rollback().await.is_ok();
            op.answer(Err(e));
            return if rolled_back {
                Left::Sound
            } else {
                Left::Doubtful
            };
        }
        done.push((op, Ok(())));
    } else {
        let mut ops = batch.drain(..);
        while let Some(mut op) = ops.next() {
            let ran = run_in_savepoint(&mut tx, op.as_mut()).await;
            if let Err(e) = &ran
                && e.is_unavailable()
            {
                // The store itself failed, not this operation: nothing of the batch
                // can be committed.
                let e = e.clone();
                let rolled_back = tx.rollback().await.is_ok();
                tracing::error!(error = %e, "the store failed during a write; the batch was rolled back");
                for op in std::iter::once(op)
                    .chain(done.into_iter().map(|(op, _)| op))
                    .chain(ops)
                {
                    op.answer(Err(e.clone()));
                }
                return if rolled_back {
                    Left::Sound
                } else {
                    Left::Doubtful
                };
            }
            done.push((op, ran));
        }
    }
    match tx.commit().await {
        Ok(()) => {
            for (op, ran) in done {
                // One rolled back to its savepoint answers with its own error.
                op.answer(ran);
            }
            Left::Sound
        }
        Err(e) => {
            let e = StoreError::from(e);
            tracing::error!(error = %e, ops = done.len(), "commit failed; no operation of the batch was applied");
            for (op, _) in done {
                op.answer(Err(e.clone()));
            }
            Left::Doubtful
        }
    }
}

async fn run_in_savepoint(
    tx: &mut SqliteConnection,
    op: &mut dyn Operation,
) -> Result<(), StoreError> {
    let mut savepoint = Connection::begin(tx).await?;
    match op.run(&mut savepoint).await {
        Ok(()) => {
            savepoint.commit().await?;
            Ok(())
        }
        Err(e) => {
            savepoint.rollback().await?;
            Err(e)
        }
    }
}

fn fail_all(batch: &mut Vec<Box<dyn Operation>>, e: StoreError) {
    tracing::error!(error = %e, ops = batch.len(), "cannot start a write transaction");
    for op in batch.drain(..) {
        op.answer(Err(e.clone()));
    }
}

/// [`commit_on`] for direct operations: one transaction, each operation in its own
/// savepoint (alone, the transaction is its savepoint), answered after the commit.
fn commit_direct(db: &rusqlite::Connection, mut batch: Vec<Box<dyn DirectOperation>>) -> Left {
    let exec = |sql: &str| -> Result<(), StoreError> {
        db.prepare_cached(sql)?.execute([])?;
        Ok(())
    };
    if let Err(e) = exec("BEGIN IMMEDIATE") {
        fail_direct(batch, e);
        return Left::Sound;
    }
    let rollback = || exec("ROLLBACK").is_ok();
    let mut done: Vec<(Box<dyn DirectOperation>, Result<(), StoreError>)> =
        Vec::with_capacity(batch.len());
    if batch.len() == 1 {
        let mut op = batch.pop().expect("one operation");
        if let Err(e) = op.run(db) {
            let rolled_back = rollback();
            op.answer(Err(e));
            return if rolled_back {
                Left::Sound
            } else {
                Left::Doubtful
            };
        }
        done.push((op, Ok(())));
    } else {
        let mut ops = batch.into_iter();
        while let Some(mut op) = ops.next() {
            let ran = exec("SAVEPOINT op").and_then(|()| match op.run(db) {
                Ok(()) => exec("RELEASE op"),
                Err(e) => {
                    exec("ROLLBACK TO op")?;
                    exec("RELEASE op")?;
                    Err(e)
                }
            });
            if let Err(e) = &ran
                && e.is_unavailable()
            {
                let e = e.clone();
                let rolled_back = rollback();
                tracing::error!(error = %e, "the store failed during a write; the batch was rolled back");
                for op in std::iter::once(op)
                    .chain(done.into_iter().map(|(op, _)| op))
                    .chain(ops)
                {
                    op.answer(Err(e.clone()));
                }
                return if rolled_back {
                    Left::Sound
                } else {
                    Left::Doubtful
                };
            }
            done.push((op, ran));
        }
    }
    match exec("COMMIT") {
        Ok(()) => {
            for (op, ran) in done {
                op.answer(ran);
            }
            Left::Sound
        }
        Err(e) => {
            tracing::error!(error = %e, ops = done.len(), "commit failed; no operation of the batch was applied");
            for (op, _) in done {
                op.answer(Err(e.clone()));
            }
            // A failed COMMIT may leave the transaction open: end it if it is.
            if !db.is_autocommit() {
                let _ = exec("ROLLBACK");
            }
            Left::Doubtful
        }
    }
}
