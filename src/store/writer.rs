//! Group commit. Every write of the service is an operation sent to one writer task,
//! which runs all the operations waiting at that moment in one transaction, each in its
//! own savepoint, and answers each only after the commit. Under load many ingest
//! requests, lease grabs and attempt results share one commit (one fsync), which is
//! what makes durable ingest fast; alone, an operation commits at once.
//!
//! An operation that fails is rolled back to its savepoint without touching the others;
//! a commit that fails fails every operation of the batch, and none is acknowledged.

use std::any::Any;

use futures_util::future::BoxFuture;
use sqlx::{Connection, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::StoreError;

type Value = Box<dyn Any + Send>;
type Job = Box<
    dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<Value, StoreError>> + Send,
>;

struct Op {
    job: Job,
    reply: oneshot::Sender<Result<Value, StoreError>>,
}

#[derive(Clone)]
pub struct Writer {
    ops: mpsc::Sender<Op>,
    stop: mpsc::Sender<oneshot::Sender<()>>,
    handle: tokio::runtime::Handle,
}

impl Writer {
    /// Starts the writer on `pool` (one connection is enough: it is the only writer),
    /// on a thread of its own with its own runtime: the commit loop is the critical
    /// path of every write, and must not wait behind request handlers for a turn on
    /// the main runtime's workers. Tasks that feed it batches can run there too
    /// ([`Writer::handle`]).
    pub fn start(pool: SqlitePool, max_batch: usize) -> Self {
        let (tx, rx) = mpsc::channel(max_batch.max(1) * 4);
        let (stop, stop_rx) = mpsc::channel(1);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("store-writer")
            .build()
            .expect("the writer's runtime starts");
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || runtime.block_on(run(pool, rx, stop_rx, max_batch.max(1))))
            .expect("the writer thread starts");
        Self {
            ops: tx,
            stop,
            handle,
        }
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
        let job: Job = Box::new(move |conn| {
            Box::pin(async move { job(conn).await.map(|v| Box::new(v) as Value) })
        });
        self.ops
            .send(Op { job, reply })
            .await
            .map_err(|_| StoreError::Unavailable("the store writer has stopped".into()))?;
        let value = answer
            .await
            .map_err(|_| StoreError::Unavailable("the store writer has stopped".into()))??;
        Ok(*value
            .downcast::<T>()
            .expect("a write answers with the type it was given"))
    }
}

async fn run(
    pool: SqlitePool,
    mut rx: mpsc::Receiver<Op>,
    mut stop: mpsc::Receiver<oneshot::Sender<()>>,
    max_batch: usize,
) {
    let mut batch = Vec::with_capacity(max_batch);
    let stopped = loop {
        tokio::select! {
            biased;
            n = rx.recv_many(&mut batch, max_batch) => {
                if n == 0 {
                    break None;
                }
                commit_batch(&pool, &mut batch).await;
            }
            Some(done) = stop.recv() => {
                rx.close();
                while rx.recv_many(&mut batch, max_batch).await > 0 {
                    commit_batch(&pool, &mut batch).await;
                }
                break Some(done);
            }
        }
    };
    tracing::debug!("store writer stopped");
    if let Some(done) = stopped {
        let _ = done.send(());
    }
}

async fn commit_batch(pool: &SqlitePool, batch: &mut Vec<Op>) {
    let mut conn = match pool.acquire().await {
        Ok(conn) => conn,
        Err(e) => return fail_all(batch, StoreError::from(e)),
    };
    // IMMEDIATE takes the write lock now: if the database cannot be written, the whole
    // batch fails here at once instead of op by op.
    let mut tx = match (*conn).begin_with("BEGIN IMMEDIATE").await {
        Ok(tx) => tx,
        Err(e) => return fail_all(batch, StoreError::from(e)),
    };
    let mut done: Vec<(oneshot::Sender<_>, Result<Value, StoreError>)> =
        Vec::with_capacity(batch.len());
    if batch.len() == 1 {
        // Alone, the transaction itself is the operation's savepoint.
        let op = batch.pop().expect("one operation");
        match (op.job)(&mut tx).await {
            Ok(value) => done.push((op.reply, Ok(value))),
            Err(e) => {
                let _ = tx.rollback().await;
                let _ = op.reply.send(Err(e));
                return;
            }
        }
    } else {
        let mut ops = batch.drain(..);
        for op in ops.by_ref() {
            let result = run_in_savepoint(&mut tx, op.job).await;
            if let Err(e) = &result
                && e.is_unavailable()
            {
                // The store itself failed, not this operation: nothing of the batch
                // can be committed.
                let e = e.clone();
                let _ = tx.rollback().await;
                let _ = op.reply.send(Err(e.clone()));
                for (reply, _) in done {
                    let _ = reply.send(Err(e.clone()));
                }
                for op in ops {
                    let _ = op.reply.send(Err(e.clone()));
                }
                tracing::error!(error = %e, "the store failed during a write; the batch was rolled back");
                return;
            }
            done.push((op.reply, result));
        }
    }
    match tx.commit().await {
        Ok(()) => {
            for (reply, result) in done {
                let _ = reply.send(result);
            }
        }
        Err(e) => {
            let e = StoreError::from(e);
            tracing::error!(error = %e, ops = done.len(), "commit failed; no operation of the batch was applied");
            for (reply, _) in done {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

async fn run_in_savepoint(tx: &mut SqliteConnection, job: Job) -> Result<Value, StoreError> {
    let mut savepoint = Connection::begin(tx).await?;
    match job(&mut savepoint).await {
        Ok(value) => {
            savepoint.commit().await?;
            Ok(value)
        }
        Err(e) => {
            savepoint.rollback().await?;
            Err(e)
        }
    }
}

fn fail_all(batch: &mut Vec<Op>, e: StoreError) {
    tracing::error!(error = %e, ops = batch.len(), "cannot start a write transaction");
    for op in batch.drain(..) {
        let _ = op.reply.send(Err(e.clone()));
    }
}
