//! The delivery stage: one [`lane::Lane`] per integration leases due deliveries from
//! the store, sends them through the Button client, and hands each outcome to the
//! [`recorder::Recorder`]. What follows an answer is [`decide::decide`]'s: retryable
//! failures come back with exponential backoff and jitter (or Button's `Retry-After`,
//! which holds the whole lane); terminal ones fail at once with their hint; a `401`
//! pauses the lane without spending attempts; exhausted deliveries go to the dead
//! letters. A partial refund is computed when it is sent ([`refund`]).

pub mod backoff;
pub mod decide;
pub mod lane;
pub mod recorder;
pub mod refund;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use crate::button::Client;
use crate::config::DeliverySettings;
use crate::domain::IntegrationId;
use crate::domain::clock::now_ms;
use crate::integrations::Registry;
use crate::live_logs::Hub;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::store::queue::Leased;
pub use backoff::RetryPolicy;
use lane::{Lane, LaneStatus};
use recorder::Recorder;

/// What every lane and attempt uses.
pub struct Shared {
    pub store: Store,
    pub registry: Arc<Registry>,
    pub client: Client,
    pub recorder: Recorder,
    pub hub: Hub,
    pub metrics: Arc<Metrics>,
    pub policy: RetryPolicy,
    pub settings: DeliverySettings,
    /// Deliveries held in memory across lanes (`delivery.max_held`).
    pub room: lane::Room,
}

pub struct Delivery {
    shared: Arc<Shared>,
    lanes: Mutex<HashMap<IntegrationId, Arc<Lane>>>,
    stop: watch::Sender<bool>,
    /// The lanes' loops, awaited at shutdown (they give back leases not started).
    lane_tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Delivery {
    /// Starts a lane for every integration, and follows the registry as integrations
    /// come, change and go.
    pub fn start(
        store: Store,
        registry: Arc<Registry>,
        client: Client,
        hub: Hub,
        metrics: Arc<Metrics>,
        settings: DeliverySettings,
    ) -> Arc<Self> {
        let (recorder, _recorder_task) =
            Recorder::start(store.clone(), hub.clone(), metrics.clone());
        let shared = Arc::new(Shared {
            store,
            registry: registry.clone(),
            client,
            recorder,
            hub,
            metrics,
            policy: RetryPolicy::from_settings(&settings),
            room: Arc::new(tokio::sync::Semaphore::new(settings.max_held)),
            settings,
        });
        let (stop, _) = watch::channel(false);
        let delivery = Arc::new(Self {
            shared,
            lanes: Mutex::new(HashMap::new()),
            stop,
            lane_tasks: Mutex::new(Vec::new()),
        });
        let changes = registry.subscribe();
        for id in registry.snapshot().keys() {
            delivery.sync_lane(id);
        }
        tokio::spawn(follow(
            Arc::downgrade(&delivery),
            changes,
            delivery.stop.subscribe(),
        ));
        tokio::spawn(sweep(Arc::downgrade(&delivery), delivery.stop.subscribe()));
        delivery
    }

    fn lanes(&self) -> std::sync::MutexGuard<'_, HashMap<IntegrationId, Arc<Lane>>> {
        self.lanes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts, wakes or retires the lane of integration `id` to match the registry.
    fn sync_lane(&self, id: &IntegrationId) {
        if *self.stop.borrow() {
            return;
        }
        let exists = self.shared.registry.get(id).is_some();
        let mut lanes = self.lanes();
        match (lanes.get(id), exists) {
            (Some(lane), true) => lane.wake(),
            (Some(_), false) => {
                if let Some(lane) = lanes.remove(id) {
                    lane.wake();
                }
            }
            (None, true) => {
                let settings = &self.shared.settings;
                let lane = Lane::new(id.clone(), settings, self.shared.room.clone());
                let task =
                    tokio::spawn(lane.clone().run(self.shared.clone(), self.stop.subscribe()));
                self.lane_tasks
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(task);
                lanes.insert(id.clone(), lane);
            }
            (None, false) => {}
        }
    }

    /// New deliveries are queued for integration `id`.
    pub fn notify(&self, id: &IntegrationId) {
        if let Some(lane) = self.lanes().get(id) {
            lane.wake();
        }
    }

    /// How long a lease lasts: ingest leases for as long as a lane does.
    pub fn lease_for(&self) -> Duration {
        self.shared.settings.lease_duration
    }

    /// Reserves room on integration `id`'s lane for up to `want` new deliveries that
    /// ingest would lease in its own commit and hand over ([`Delivery::hand`]).
    /// Answers how many fit: none unless the lane is open, found nothing more due at
    /// its last lease, and has room ahead of its slots.
    pub fn reserve(&self, id: &IntegrationId, want: usize) -> usize {
        let Some(lane) = self.lanes().get(id).cloned() else {
            return 0;
        };
        if lane.closed(&self.shared) {
            return 0;
        }
        lane.reserve(want)
    }

    /// Frees room reserved on integration `id`'s lane by a write that failed.
    pub fn unreserve(&self, id: &IntegrationId, reserved: usize) {
        if let Some(lane) = self.lanes().get(id) {
            lane.unreserve(reserved);
        }
    }

    /// Hands integration `id`'s lane the deliveries ingest leased for it in `reserved`
    /// room. If the lane is gone, their leases are given back.
    pub fn hand(&self, id: &IntegrationId, leased: Vec<Leased>, reserved: usize) {
        let handed = leased.len() as u64;
        let back = match self.lanes().get(id).cloned() {
            Some(lane) => lane.hand(leased, reserved),
            None => leased,
        };
        self.shared
            .metrics
            .deliveries_handed
            .inc_by(handed - back.len() as u64);
        if back.is_empty() {
            return;
        }
        let store = self.shared.store.clone();
        let leases: Vec<_> = back
            .into_iter()
            .map(|j| (j.parcel.id, j.lease_token))
            .collect();
        tokio::spawn(async move {
            if let Err(e) = store.release(leases, now_ms()).await {
                tracing::warn!(error = %e, "could not give back deliveries leased for a stopped lane; they return when their lease expires");
            }
        });
    }

    /// Holds the integration's lane until `until`: Button's `Retry-After`, heard by
    /// another replica.
    pub fn hold(&self, id: &IntegrationId, until: std::time::SystemTime) {
        // The lane of an integration this replica has just learnt of may not be
        // started yet (that follows the registry's announcement on a task of its own):
        // start it now, so the hold is not lost.
        self.sync_lane(id);
        if let Some(lane) = self.lanes().get(id) {
            lane.hold_until(until);
        }
    }

    pub fn lane_status(&self, id: &IntegrationId) -> Option<LaneStatus> {
        let lane = self.lanes().get(id).cloned()?;
        Some(lane.status(self.shared.registry.get(id).as_deref()))
    }

    /// Waits until integration `id`'s lane has nothing to do now: no attempt in flight,
    /// nothing leased and waiting, every outcome committed, and nothing due (or the
    /// lane closed: paused, disabled, held by `Retry-After`). Answers `false` if
    /// `deadline` came first. Lets a test (or a tool) see delivery settle instead of
    /// sleeping for a while and hoping it did.
    pub async fn settled(&self, id: &IntegrationId, deadline: Instant) -> bool {
        let settled = async {
            while !self.is_settled(id).await {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout_at(deadline, settled).await.is_ok()
    }

    async fn is_settled(&self, id: &IntegrationId) -> bool {
        let Some(lane) = self.lanes().get(id).cloned() else {
            return true; // No lane: nothing of it is delivered.
        };
        // A lease taken while this looks would move a due delivery out of sight
        // (its lease expiry is its new due time): the count tells.
        let leases = lane.leases_taken();
        if lane.busy() {
            return false;
        }
        // Outcomes handed over before this point are committed after it.
        self.shared.recorder.flush().await;
        let nothing_due = lane.closed(&self.shared)
            || match self.shared.store.next_due(id).await {
                Ok(due) => due.is_none_or(|due| due > now_ms()),
                Err(_) => false,
            };
        nothing_due && !lane.busy() && lane.leases_taken() == leases
    }

    /// Stops leasing, gives back leases not started, lets attempts in flight finish
    /// until `deadline`, and commits their outcomes. Attempts still running then are
    /// abandoned: their leases bring them back on the next start.
    pub async fn shutdown(&self, deadline: Instant) {
        let _ = self.stop.send(true);
        let lanes: Vec<Arc<Lane>> = self.lanes().values().cloned().collect();
        let tasks: Vec<_> =
            std::mem::take(&mut *self.lane_tasks.lock().unwrap_or_else(|e| e.into_inner()));
        let drained = async {
            for task in tasks {
                let _ = task.await;
            }
            for lane in &lanes {
                lane.drained().await;
            }
        };
        if tokio::time::timeout_at(deadline, drained).await.is_err() {
            tracing::warn!(
                "attempts still in flight at shutdown; their leases will bring them back"
            );
        }
        // A store that cannot take writes would keep the recorder retrying: the
        // outcomes it holds then come back as leases, not as a hung shutdown.
        if tokio::time::timeout_at(
            deadline.max(Instant::now() + Duration::from_secs(1)),
            self.shared.recorder.flush(),
        )
        .await
        .is_err()
        {
            tracing::warn!(
                "attempt outcomes not recorded by the deadline; those deliveries will be sent again"
            );
        }
    }
}

async fn follow(
    delivery: std::sync::Weak<Delivery>,
    mut changes: broadcast::Receiver<IntegrationId>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let change = tokio::select! {
            c = changes.recv() => c,
            _ = stop.changed() => return,
        };
        let Some(delivery) = delivery.upgrade() else {
            return;
        };
        match change {
            Ok(id) => delivery.sync_lane(&id),
            Err(broadcast::error::RecvError::Lagged(_)) => {
                let ids: Vec<IntegrationId> = delivery
                    .shared
                    .registry
                    .snapshot()
                    .keys()
                    .cloned()
                    .chain(delivery.lanes().keys().cloned())
                    .collect();
                for id in ids {
                    delivery.sync_lane(&id);
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Lanes sleep while they have nothing due, and are woken by what gives them work.
/// On a shared store (PostgreSQL) some work comes unannounced: another replica's
/// queued deliveries, a dead replica's expired leases. Every `delivery.poll_interval`
/// one query asks which idle lanes have such work, and wakes those. The embedded
/// store has one process and nothing to sweep: this ends at once there.
async fn sweep(weak: std::sync::Weak<Delivery>, mut stop: watch::Receiver<bool>) {
    loop {
        let Some(delivery) = weak.upgrade() else {
            return;
        };
        let poll = delivery.shared.settings.poll_interval;
        let idle: Vec<IntegrationId> = delivery
            .lanes()
            .iter()
            .filter(|(_, lane)| !lane.busy())
            .map(|(id, _)| id.clone())
            .collect();
        match delivery.shared.store.due_among(&idle).await {
            None => return,
            Some(Ok(due)) => {
                for id in &due {
                    delivery.notify(id);
                }
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "cannot look for deliveries due on idle lanes; trying again")
            }
        }
        drop(delivery);
        tokio::select! {
            () = tokio::time::sleep(poll) => {}
            _ = stop.changed() => return,
        }
    }
}
