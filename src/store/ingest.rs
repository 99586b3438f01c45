//! Ingest's write: each accepted event with its deliveries and the live-log entries of
//! deliveries that ended at once (filtered, mapping failed), all in one commit. The
//! [`Committer`] gathers the records of concurrent requests so they share that commit.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use super::queue::Parcel;
use super::{Backend, Store, StoreError, on_backend};
use crate::domain::{DeliveryId, DeliveryState, LeaseToken};
use crate::live_logs::LogRecord;

#[derive(Debug, Clone)]
pub struct NewEvent {
    pub message_id: String,
    pub event_name: Option<String>,
    pub received_at: i64,
    /// The event exactly as received.
    pub payload: String,
}

/// One event for one integration: queued, or ended at once (filtered, unmappable).
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub parcel: Parcel,
    pub state: DeliveryState,
    /// Where the request goes; with the call and `body` it is the whole request
    /// (method, headers and credentials follow from the call).
    pub url: Option<String>,
    pub body: Option<Vec<u8>>,
    /// The order it creates or changes: deliveries of one order are sent one at a
    /// time, in the order they were accepted.
    pub order_key: Option<String>,
    pub created_at: i64,
    /// Leased in the ingest commit itself, to be handed straight to its lane (which
    /// had room and found nothing more due at its last lease): the lease the lane
    /// would otherwise take in a commit of its own. A delivery of an order is leased
    /// only when no earlier change of the same order holds it ([`NOT_HELD`]);
    /// otherwise it is written unleased, like any other, and the lane leases it when
    /// it is free.
    ///
    /// [`NOT_HELD`]: super::queue::NOT_HELD
    pub lease: Option<IngestLease>,
}

/// The lease ingest writes with a delivery: whose it is, and until when.
#[derive(Debug, Clone)]
pub struct IngestLease {
    pub token: LeaseToken,
    /// When the lease ends (ms): as a lane's lease, the delivery is due again then.
    pub until: i64,
}

impl NewDelivery {
    /// The lease written with the row itself: a delivery of no order cannot be held,
    /// so its lease goes in with it. One of an order is leased after it is written,
    /// if nothing holds it.
    pub(super) fn lease_on_insert(&self) -> Option<&IngestLease> {
        self.lease.as_ref().filter(|_| self.order_key.is_none())
    }

    /// Its lease, if it must first be checked against the order's earlier changes.
    pub(super) fn lease_if_free(&self) -> Option<&IngestLease> {
        self.lease.as_ref().filter(|_| self.order_key.is_some())
    }
}

/// An accepted event with everything ingest decided for it.
#[derive(Debug, Clone)]
pub struct IngestRecord {
    pub event: NewEvent,
    pub deliveries: Vec<NewDelivery>,
    /// Live-log entries of deliveries that ended at ingest (filtered, mapping failed).
    pub logs: Vec<LogRecord>,
}

/// What ingest wrote for one record.
#[derive(Debug, Clone, Default)]
pub struct Written {
    /// The event's messageId was new.
    pub new_event: bool,
    /// Ids of the deliveries written: an event reaches each integration once, so a
    /// delivery to an integration that already had this messageId is not written.
    pub deliveries: Vec<DeliveryId>,
    /// Of those, the ones written leased ([`NewDelivery::lease`]), now the lane's.
    pub leased: Vec<DeliveryId>,
}

/// Of the deliveries `written`, those leased with their row, and the leases of those
/// of an order still to be checked against the order's earlier changes (each backend
/// checks them its own way, with [`NOT_HELD`]).
///
/// [`NOT_HELD`]: super::queue::NOT_HELD
pub(super) fn written_leases<'a>(
    records: &'a [IngestRecord],
    written: &HashSet<DeliveryId>,
) -> (HashSet<DeliveryId>, Vec<(&'a DeliveryId, &'a IngestLease)>) {
    let mut leased = HashSet::new();
    let mut to_check = Vec::new();
    for d in records
        .iter()
        .flat_map(|r| r.deliveries.iter())
        .filter(|d| written.contains(&d.parcel.id))
    {
        if d.lease_on_insert().is_some() {
            leased.insert(d.parcel.id.clone());
        } else if let Some(lease) = d.lease_if_free() {
            to_check.push((&d.parcel.id, lease));
        }
    }
    (leased, to_check)
}

/// The changes of orders among the deliveries of `records`, each with its order (as
/// `key` gives it: the backend's stored form) and its rank among that order's changes
/// in the write, by id. One write's changes of the same order came either from one
/// request, whose thread made their ids in order, or from concurrent requests, which
/// may go in either order. Each backend numbers an order's changes in the order it
/// commits them (its ingest says how): after the numbers already stored, by rank. The
/// numbers decide which change of an order goes first ([`NOT_HELD`]).
///
/// [`NOT_HELD`]: super::queue::NOT_HELD
pub(super) fn order_changes<'a, K: Clone + Eq + std::hash::Hash>(
    records: &'a [IngestRecord],
    key: impl Fn(&'a NewDelivery) -> K,
) -> Vec<(&'a NewDelivery, K, i64)> {
    let mut changes: Vec<&NewDelivery> = records
        .iter()
        .flat_map(|r| r.deliveries.iter())
        .filter(|d| d.order_key.is_some())
        .collect();
    changes.sort_by(|a, b| a.parcel.id.cmp(&b.parcel.id));
    let mut next: HashMap<K, i64> = HashMap::new();
    changes
        .into_iter()
        .map(|d| {
            let order = key(d);
            let rank = next.entry(order.clone()).or_insert(0);
            *rank += 1;
            (d, order, *rank - 1)
        })
        .collect()
}

/// Each record with what was written for it: whether its event was new, which of its
/// deliveries were `written`, and which of those `leased`.
pub(super) fn answers(
    records: Vec<IngestRecord>,
    new_event: Vec<bool>,
    written: &HashSet<DeliveryId>,
    leased: &HashSet<DeliveryId>,
) -> Vec<(IngestRecord, Written)> {
    let ids = |r: &IngestRecord, of: &HashSet<DeliveryId>| -> Vec<DeliveryId> {
        r.deliveries
            .iter()
            .filter(|d| of.contains(&d.parcel.id))
            .map(|d| d.parcel.id.clone())
            .collect()
    };
    records
        .into_iter()
        .zip(new_event)
        .map(|(r, new_event)| {
            let outcome = Written {
                new_event,
                deliveries: ids(&r, written),
                leased: ids(&r, leased),
            };
            (r, outcome)
        })
        .collect()
}

impl Store {
    /// Writes each event with its deliveries and live-log entries, all in one commit
    /// shared with other requests writing now. A repeated `messageId` is stored once,
    /// and reaches each integration once: a delivery to an integration that already
    /// has one for this `messageId` is not written, nor its log entries. Answers what
    /// was written for each record, once committed.
    pub async fn ingest(
        &self,
        records: Vec<IngestRecord>,
    ) -> Result<Vec<(IngestRecord, Written)>, StoreError> {
        self.committer.commit(records).await
    }

    /// Refuses a write before the caller does any work for it when the commit queue
    /// is all but full (under a sixteenth of it free): a flood is then shed for the
    /// price of reading a request head, not of parsing and mapping its events.
    pub fn admit(&self) -> Result<(), StoreError> {
        self.committer.admit()
    }
}

type Committed = Result<Vec<(IngestRecord, Written)>, StoreError>;

struct Pending {
    records: Vec<IngestRecord>,
    reply: oneshot::Sender<Committed>,
    /// Its place in the queue, given back once it is answered (even if its caller
    /// has gone away meanwhile).
    _queued: OwnedSemaphorePermit,
}

/// Commits the records of many concurrent ingest requests together: while a write is
/// being committed the next requests gather, and go in the next one (one set of
/// inserts and one sync for all of them). Each request still gets its answer only
/// after the commit that holds its records. Up to `in_flight` writes are committed at
/// once (one on SQLite, whose writer is one connection; several on PostgreSQL, which
/// runs each on a backend of its own).
///
/// The queue is bounded in events ([`DatabaseSettings::max_queued_events`]): a write
/// that would go past the bound is refused at once ([`StoreError::Overloaded`]), so
/// a flood gets quick `503`s instead of ever longer waits.
///
/// [`DatabaseSettings::max_queued_events`]: crate::config::DatabaseSettings::max_queued_events
#[derive(Clone)]
pub(super) struct Committer {
    tx: mpsc::UnboundedSender<Pending>,
    /// One permit per event queued or being committed.
    queued: Arc<Semaphore>,
    bound: usize,
}

/// Most records in one commit.
const COMMIT_RECORDS: usize = 4096;

impl Committer {
    /// Starts gathering on `runtime` (the backend's commit path, where gathering the
    /// next batch does not wait behind request handlers).
    pub(super) fn start(
        backend: Backend,
        runtime: tokio::runtime::Handle,
        in_flight: usize,
        max_queued_events: usize,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel::<Pending>();
        runtime.spawn(gather(
            backend,
            rx,
            Arc::new(Semaphore::new(in_flight.max(1))),
        ));
        let bound = max_queued_events.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            tx,
            queued: Arc::new(Semaphore::new(bound)),
            bound,
        }
    }

    fn admit(&self) -> Result<(), StoreError> {
        if self.queued.available_permits() < self.bound / 16 {
            return Err(StoreError::Overloaded { queued: self.bound });
        }
        Ok(())
    }

    async fn commit(&self, records: Vec<IngestRecord>) -> Committed {
        let stopped = || StoreError::Unavailable("the ingest committer has stopped".into());
        // A batch larger than the bound still goes, alone.
        let wanted = u32::try_from(records.len().clamp(1, self.bound)).unwrap_or(u32::MAX);
        let queued = self
            .queued
            .clone()
            .try_acquire_many_owned(wanted)
            .map_err(|_| StoreError::Overloaded { queued: self.bound })?;
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Pending {
                records,
                reply,
                _queued: queued,
            })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn gather(
    backend: Backend,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    writes: Arc<Semaphore>,
) {
    let mut carry: Option<Pending> = None;
    loop {
        // Requests gather while every write is busy, so a busy store gets larger writes.
        let Ok(write) = writes.clone().acquire_owned().await else {
            return;
        };
        let mut waiting: Vec<Pending> = Vec::new();
        if let Some(p) = carry.take() {
            waiting.push(p);
        } else {
            match rx.recv().await {
                Some(p) => waiting.push(p),
                None => return,
            }
        }
        let mut count: usize = waiting.iter().map(|p| p.records.len()).sum();
        while count < COMMIT_RECORDS {
            match rx.try_recv() {
                Ok(p) if count + p.records.len() > COMMIT_RECORDS => {
                    carry = Some(p);
                    break;
                }
                Ok(p) => {
                    count += p.records.len();
                    waiting.push(p);
                }
                Err(_) => break,
            }
        }
        let backend = backend.clone();
        tokio::spawn(async move {
            commit(&backend, waiting).await;
            drop(write);
        });
    }
}

/// One write of the gathered requests' records; each request gets its own answers.
async fn commit(backend: &Backend, mut waiting: Vec<Pending>) {
    let sizes: Vec<usize> = waiting.iter().map(|p| p.records.len()).collect();
    let records: Vec<IngestRecord> = waiting
        .iter_mut()
        .flat_map(|p| std::mem::take(&mut p.records))
        .collect();
    match on_backend!(backend, db => db.ingest(records).await) {
        Ok(written) => {
            let mut written = written.into_iter();
            for (p, n) in waiting.into_iter().zip(sizes) {
                let _ = p.reply.send(Ok(written.by_ref().take(n).collect()));
            }
        }
        Err(e) => {
            for p in waiting {
                let _ = p.reply.send(Err(e.clone()));
            }
        }
    }
}
