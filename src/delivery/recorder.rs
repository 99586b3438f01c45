//! Records what attempts did: the delivery's new state and its live-log entry, many
//! attempts per commit, then the live tail and the metrics. An attempt hands its
//! result over and frees its slot at once; a store that cannot take the write is
//! retried (the results wait in memory), so no outcome is dropped while the process
//! lives.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::lane::Lane;
use crate::domain::clock::now_ms;
use crate::live_logs::{Hub, RequestView};
use crate::metrics::Metrics;
use crate::store::Store;
use crate::store::queue::Finish;

pub struct Record {
    pub finish: Finish,
    /// The request, for the live tail (only built when someone is watching).
    pub request: Option<RequestView>,
    /// The lane to wake once the outcome is committed (a later change of the same
    /// order may wait for it).
    pub wake: Option<Arc<Lane>>,
}

enum Msg {
    Record(Box<Record>),
    /// Answered once everything sent before it is committed.
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Msg>,
}

const BATCH: usize = 512;

impl Recorder {
    pub fn start(
        store: Store,
        hub: Hub,
        metrics: Arc<Metrics>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(BATCH * 8);
        let task = tokio::spawn(run(rx, store, hub, metrics));
        (Self { tx }, task)
    }

    pub async fn record(&self, record: Record) {
        if self.tx.send(Msg::Record(Box::new(record))).await.is_err() {
            tracing::error!(
                "recorder stopped; an attempt's outcome is not recorded (its lease will expire and it will be retried)"
            );
        }
    }

    /// Waits until every outcome recorded so far is committed.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// How outcomes gather before they are committed together. Recording is not on
/// anyone's critical path (the attempt is over, its slot already free), and fewer,
/// larger commits leave the store to ingest, whose answers wait on it.
///
/// The recorder looks every `GATHER_STEP` and commits once it holds `GATHER_ENOUGH`
/// outcomes or the first has waited `GATHER_MAX` (or a batch is full, or a flush
/// waits). Under load a commit fills in a step or two, so its size (and the time it
/// keeps ingest waiting for the writer) stays bounded. At a low rate a commit takes
/// what came in `GATHER_MAX` instead of one or two outcomes: each commit is a fixed
/// cost (its WAL pages, its fsync) whatever it holds. Entries reach Live Logs at most
/// `GATHER_MAX` after their attempt; a flush is answered within a step.
const GATHER_STEP: Duration = Duration::from_millis(20);
const GATHER_ENOUGH: usize = 32;
const GATHER_MAX: Duration = Duration::from_millis(100);

async fn run(mut rx: mpsc::Receiver<Msg>, store: Store, hub: Hub, metrics: Arc<Metrics>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let first = tokio::time::Instant::now();
        loop {
            if batch.len() >= BATCH || batch.iter().any(|m| matches!(m, Msg::Flush(_))) {
                break;
            }
            tokio::time::sleep(GATHER_STEP).await;
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(msg) => batch.push(msg),
                    Err(_) => break,
                }
            }
            if batch.len() >= GATHER_ENOUGH || first.elapsed() >= GATHER_MAX {
                break;
            }
        }
        let mut records = Vec::with_capacity(batch.len());
        let mut flushes = Vec::new();
        for msg in batch.drain(..) {
            match msg {
                Msg::Record(r) => records.push(*r),
                Msg::Flush(done) => flushes.push(done),
            }
        }
        commit(&mut records, &store, &hub, &metrics).await;
        for done in flushes {
            let _ = done.send(());
        }
    }
}

async fn commit(records: &mut Vec<Record>, store: &Store, hub: &Hub, metrics: &Metrics) {
    if records.is_empty() {
        return;
    }
    let mut wait = Duration::from_millis(50);
    loop {
        let finishes: Vec<Finish> = records.iter().map(|r| r.finish.clone()).collect();
        match store.finish(finishes, now_ms()).await {
            Ok((_, lost)) => {
                if lost > 0 {
                    tracing::warn!(
                        lost,
                        "leases expired before their attempts were recorded; those deliveries may be sent again"
                    );
                }
                break;
            }
            Err(e) => {
                tracing::error!(error = %e, attempts = records.len(), retry_in_ms = wait.as_millis() as u64, "cannot record attempt outcomes; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
    let watched = hub.has_subscribers();
    for record in records.drain(..) {
        let log = &record.finish.log;
        metrics.delivery(&log.integration_id, log.outcome);
        if watched {
            hub.publish(log, record.request);
        }
        if let Some(lane) = record.wake {
            lane.wake();
        }
    }
}
