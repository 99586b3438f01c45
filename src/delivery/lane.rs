//! A lane: one integration's delivery loop, with its own concurrency limit, its own
//! `Retry-After` hold and its own pause. Lanes share the store and one bound on the
//! deliveries held in memory ([`Room`]); a slow, failing or paused integration
//! delays no other.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};

use super::decide::{Answered, Decision, decide, remaining};
use super::recorder::Record;
use super::refund;
use super::{RetryPolicy, Shared};
use crate::button::{Attempt, PreparedRequest};
use crate::config::{DeliverySettings, LEASE_AHEAD_SLOTS};
use crate::domain::clock::{now_ms, to_ms};
use crate::domain::{DeliveryState, IntegrationId, LaneCondition, LaneState, LeaseToken, Outcome};
use crate::integrations::Integration;
use crate::live_logs::{LogRecord, RequestView};
use crate::records;
use crate::store::queue::{Finish, LeaseAsk, Leased, Parcel};

/// What ended a lane's wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Woken {
    /// There may be new work in the store, or the integration changed.
    Work,
    /// Ingest handed leased deliveries over.
    Handed,
    /// The time waited for came, or the service stops.
    Time,
}

enum Gate {
    Open,
    Closed(Option<(Instant, SystemTime)>),
}

/// The bound, shared by every lane, on deliveries held in memory: leased and not yet
/// started, in flight, or with their outcome waiting for the recorder
/// (`delivery.max_held`). Each such delivery holds one permit.
///
/// Without it each lane could hold its own slots and two slots' worth ahead, so a
/// thousand busy lanes behind a slow store held tens of thousands of deliveries and
/// attempts. A lane waits for room for its next lease (twice what its last one took,
/// up to two slots' worth) in turn with the others (the semaphore is fair): when room
/// is scarce the lanes with work take it in turn rather than the first taking it all,
/// and a lane's own slots still cap what one integration holds. Ingest hands a lane new deliveries only with room that is free
/// at that moment; it never waits for it.
pub type Room = Arc<Semaphore>;

/// Permits of the [`Room`], one per delivery held.
#[derive(Default)]
struct Held(Option<OwnedSemaphorePermit>);

impl Held {
    /// Up to `want` permits of what `room` has free now, without waiting.
    fn free(room: &Room, want: usize) -> Self {
        let n = want.min(room.available_permits());
        if n == 0 {
            return Self(None);
        }
        Self(room.clone().try_acquire_many_owned(n as u32).ok())
    }

    fn count(&self) -> usize {
        self.0.as_ref().map_or(0, OwnedSemaphorePermit::num_permits)
    }

    fn add(&mut self, more: Held) {
        match (&mut self.0, more.0) {
            (Some(held), Some(more)) => held.merge(more),
            (held, more) => *held = held.take().or(more),
        }
    }

    /// Takes `n` of the permits (fewer if it holds fewer).
    fn take(&mut self, n: usize) -> Held {
        let n = n.min(self.count());
        if n == 0 {
            return Self(None);
        }
        Self(self.0.as_mut().and_then(|p| p.split(n)))
    }
}

pub struct Lane {
    pub id: IntegrationId,
    concurrency: usize,
    permits: Arc<Semaphore>,
    room: Room,
    wake: Notify,
    /// Button asked us (`Retry-After`) not to call before this.
    hold: Mutex<Option<(Instant, SystemTime)>>,
    /// Deliveries leased and not yet started. With `asking` and `leases`, these let
    /// `Delivery::settled` see the lane at rest; the lane's loop does not read them.
    waiting: AtomicUsize,
    /// While a lease is being taken, the most it may take (its deliveries are not yet
    /// counted in `waiting`, but ingest's reservations count them); 0 otherwise.
    asking: AtomicUsize,
    /// Leases that took deliveries, ever.
    leases: AtomicU64,
    /// Most deliveries leased and not yet started (two slots' worth, at most the
    /// lease batch).
    ahead: usize,
    /// What ingest hands over: deliveries it leased in its own commit.
    inbox: Mutex<Inbox>,
    /// Rung when ingest hands deliveries over. Apart from `wake`: handed work is
    /// leased already, so a lane that had nothing else due need not ask the store.
    handed: Notify,
}

/// Deliveries ingest leased for a lane in the commit that accepted them, so that the
/// lane need not lease them in a commit of its own. Ingest hands over only while the
/// lane is open and its last lease found nothing more due (no backlog waits in the
/// store), and only as many as fit ahead of its slots: the room is reserved before
/// the commit and freed when the commit is done.
///
/// A wake (a delivery ingest could not hand over, a retry falling due, an order's
/// next change, a change of the integration) closes the inbox only while the lane
/// holds work not yet started. A lane with nothing waiting leases at once, and what
/// ingest hands over meanwhile may start a few milliseconds before the work the wake
/// announced; a lane with work waiting would lease only once that has started, so
/// ingest must stop refilling it, or under overload the work in the store would wait
/// behind new events for as long as the overload lasts. A lease that finds a backlog
/// keeps the inbox closed until one drains it. (Closed at every wake, a busy lane's
/// inbox was hardly ever open: while the lease a wake started was under way, an
/// ingest write went through unhanded, and its wake closed the inbox again. On
/// PostgreSQL, one integration at 1,000 events/s, 397 of 9,999 deliveries were
/// handed over.)
#[derive(Default)]
struct Inbox {
    open: bool,
    /// The lane's loop has ended: what comes now is given back.
    ended: bool,
    reserved: usize,
    handed: Vec<Leased>,
    /// One permit of the [`Room`] for each delivery reserved or handed.
    room: Held,
}

/// What a lane is doing, for stats and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneStatus {
    pub condition: LaneCondition,
    pub held_until: Option<SystemTime>,
    pub in_flight: usize,
}

impl Lane {
    pub fn new(id: IntegrationId, settings: &DeliverySettings, room: Room) -> Arc<Self> {
        let concurrency = settings.lane_concurrency;
        Arc::new(Self {
            id,
            concurrency,
            permits: Arc::new(Semaphore::new(concurrency)),
            room,
            wake: Notify::new(),
            hold: Mutex::new(None),
            waiting: AtomicUsize::new(0),
            asking: AtomicUsize::new(0),
            leases: AtomicU64::new(0),
            // Never more than the whole room, or a lease would wait for it forever;
            // the settings' check of `delivery.lease_duration` counts on the slots'
            // worth.
            ahead: settings
                .lease_batch
                .min(concurrency * LEASE_AHEAD_SLOTS)
                .min(settings.max_held)
                .max(1),
            inbox: Mutex::new(Inbox::default()),
            handed: Notify::new(),
        })
    }

    /// There may be new work, or the integration changed: the lane leases again once
    /// what it holds has started (see [`Inbox`] for what ingest hands it meanwhile).
    pub fn wake(&self) {
        {
            let mut inbox = self.inbox();
            if self.waiting.load(Ordering::Acquire) > 0 || !inbox.handed.is_empty() {
                inbox.open = false;
            }
        }
        self.wake.notify_one();
    }

    fn inbox(&self) -> std::sync::MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserves room for up to `want` deliveries that ingest is about to write leased
    /// to this lane; answers how many fit (none unless the inbox is open): ahead of
    /// the lane's slots, and in the [`Room`] without waiting for it.
    pub fn reserve(&self, want: usize) -> usize {
        let mut inbox = self.inbox();
        if !inbox.open || inbox.ended {
            return 0;
        }
        // `asking` first: the lane counts what a lease took in `waiting` before it
        // clears `asking`, so that either is seen.
        let asking = self.asking.load(Ordering::Acquire);
        let held =
            asking + self.waiting.load(Ordering::Acquire) + inbox.reserved + inbox.handed.len();
        let room = Held::free(&self.room, want.min(self.ahead.saturating_sub(held)));
        let granted = room.count();
        inbox.room.add(room);
        inbox.reserved += granted;
        granted
    }

    /// Frees room reserved for deliveries that were not written leased.
    pub fn unreserve(&self, reserved: usize) {
        let mut inbox = self.inbox();
        let reserved = reserved.min(inbox.reserved);
        inbox.reserved -= reserved;
        drop(inbox.room.take(reserved));
    }

    /// Takes deliveries ingest leased for this lane, freeing the `reserved` room they
    /// were written in. Answers them back if the lane's loop has ended (the caller
    /// gives their leases back).
    pub fn hand(&self, leased: Vec<Leased>, reserved: usize) -> Vec<Leased> {
        let mut inbox = self.inbox();
        let reserved = reserved.min(inbox.reserved);
        inbox.reserved -= reserved;
        // The room of what was reserved and not leased is free again; so is all of it
        // if the lane has ended.
        let kept = if inbox.ended { 0 } else { leased.len() };
        drop(inbox.room.take(reserved.saturating_sub(kept)));
        if inbox.ended {
            return leased;
        }
        if !leased.is_empty() {
            inbox.handed.extend(leased);
            drop(inbox);
            self.handed.notify_one();
        }
        Vec::new()
    }

    /// Moves what ingest handed over, and its room, into `ready` and `held`.
    fn take_handed(&self, ready: &mut VecDeque<Leased>, held: &mut Held) {
        let mut inbox = self.inbox();
        if !inbox.handed.is_empty() {
            let n = inbox.handed.len();
            held.add(inbox.room.take(n));
            ready.extend(inbox.handed.drain(..));
            self.waiting.store(ready.len(), Ordering::Release);
        }
    }

    fn held_until(&self) -> Option<(Instant, SystemTime)> {
        let mut hold = self.hold.lock().unwrap_or_else(|e| e.into_inner());
        match *hold {
            Some((until, _)) if until <= Instant::now() => {
                *hold = None;
                None
            }
            other => other,
        }
    }

    /// Holds the lane until `until` (a hold another replica heard from Button).
    pub fn hold_until(&self, until: SystemTime) {
        if let Ok(left) = until.duration_since(SystemTime::now()) {
            self.hold_for(left);
            self.wake();
        }
    }

    fn hold_for(&self, d: Duration) {
        let until = (Instant::now() + d, SystemTime::now() + d);
        let mut hold = self.hold.lock().unwrap_or_else(|e| e.into_inner());
        if hold.is_none_or(|(current, _)| current < until.0) {
            *hold = Some(until);
        }
    }

    pub fn status(&self, integration: Option<&Integration>) -> LaneStatus {
        let held = self.held_until();
        let condition = match integration {
            Some(i) if !i.enabled => LaneCondition::Disabled,
            Some(i) if i.lane_state != LaneState::Active => i.lane_state.into(),
            _ if held.is_some() => LaneCondition::RateLimited,
            _ => LaneCondition::Set(LaneState::Active),
        };
        LaneStatus {
            condition,
            held_until: held.map(|(_, t)| t),
            in_flight: self.in_flight(),
        }
    }

    fn in_flight(&self) -> usize {
        self.concurrency - self.permits.available_permits()
    }

    /// Whether the lane has an attempt running, leased deliveries not yet started, or
    /// deliveries that ingest is handing over.
    pub fn busy(&self) -> bool {
        self.asking.load(Ordering::Acquire) > 0
            || self.in_flight() > 0
            || self.waiting.load(Ordering::Acquire) > 0
            || {
                let inbox = self.inbox();
                inbox.reserved > 0 || !inbox.handed.is_empty()
            }
    }

    /// How many leases have taken deliveries so far.
    pub fn leases_taken(&self) -> u64 {
        self.leases.load(Ordering::Acquire)
    }

    /// Whether the lane may not send now (paused, disabled, held, or deleted).
    pub fn closed(&self, shared: &Shared) -> bool {
        !matches!(self.gate(shared), Some(Gate::Open))
    }

    /// Waits until every attempt of the lane has finished.
    pub async fn drained(&self) {
        let _all = self.permits.acquire_many(self.concurrency as u32).await;
    }

    /// Whether the lane may send now: `None` when its integration is gone; otherwise
    /// open, or closed until a time (a hold) or until woken (paused, disabled).
    fn gate(&self, shared: &Shared) -> Option<Gate> {
        let integration = shared.registry.get(&self.id)?;
        Some(if !integration.enabled || integration.lane_held() {
            Gate::Closed(None)
        } else if let Some(held) = self.held_until() {
            Gate::Closed(Some(held))
        } else {
            Gate::Open
        })
    }

    /// Leases due deliveries ahead of the free slots (at most two slots' worth, so
    /// none waits in memory for long against its lease) and starts an attempt per free
    /// slot, until the integration is deleted or the service stops. Leases held when
    /// the lane closes are given back at once. While its last lease found nothing more
    /// due, ingest hands it new deliveries already leased ([`Inbox`]).
    pub async fn run(self: Arc<Self>, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
        let poll = shared.settings.poll_interval;
        let mut ready: VecDeque<Leased> = VecDeque::new();
        // One permit of the room for each delivery in `ready`.
        let mut held = Held::default();
        // How many the next lease asks for (and waits for room for): twice what the
        // last one took, up to `ahead`. A lane that keeps up holds little room while
        // it leases; one with a backlog grows to whole leases in a few.
        let mut want = 1;
        // When the last lease took all that was due: until when nothing else is.
        let mut drained: Option<Option<Instant>> = None;
        loop {
            if *stop.borrow() {
                break;
            }
            self.take_handed(&mut ready, &mut held);
            match self.gate(&shared) {
                None => break,
                Some(Gate::Closed(until)) => {
                    // Once open again, the lane asks afresh.
                    drained = None;
                    self.inbox().open = false;
                    self.give_back(&shared, &mut ready, until.map(|(_, at)| at))
                        .await;
                    held = Held::default();
                    self.idle(&mut stop, until.map(|(at, _)| at)).await;
                    continue;
                }
                Some(Gate::Open) => {}
            }
            if ready.is_empty() {
                // The last lease took everything due: nothing to ask until the next
                // delivery falls due or the lane is woken (new work, a committed
                // outcome that frees an order's next change, a change of the
                // integration, the replicas' sweep). An idle lane costs nothing.
                // Deliveries handed over by ingest leave that so: they were leased
                // in their own commit.
                if let Some(wake_at) = drained {
                    if self.idle(&mut stop, wake_at).await != Woken::Handed {
                        drained = None;
                    }
                    continue;
                }
                // Ahead of the slots, what ingest reserved or handed over meanwhile
                // counts too.
                let asked = {
                    let inbox = self.inbox();
                    let pending = inbox.reserved + inbox.handed.len();
                    let ask = want.min(self.ahead.saturating_sub(pending)).max(1);
                    self.asking.store(ask, Ordering::Release);
                    ask
                };
                // Room for what the lease asks for, waited for in turn with the other
                // lanes; what the lease does not take goes back. What ingest hands
                // over while the lane waits brought room of its own and starts first:
                // the room waited for may be the very room that work holds. The
                // inbox then closes, as a wake would close it with work waiting, so
                // that the lease this wait was for comes next.
                let mut room = tokio::select! {
                    biased;
                    room = self.room.clone().acquire_many_owned(asked as u32) => Held(room.ok()),
                    _ = self.handed.notified() => {
                        self.asking.store(0, Ordering::Release);
                        self.inbox().open = false;
                        continue;
                    }
                    _ = stop.changed() => {
                        self.asking.store(0, Ordering::Release);
                        continue;
                    }
                };
                let ask = LeaseAsk {
                    limit: room.count().max(1),
                    lease_for: shared.settings.lease_duration,
                    token: LeaseToken::new(),
                };
                let lease = shared.store.lease(&self.id, &ask).await;
                if let Ok(lease) = &lease {
                    want = (lease.taken.len() * 2).clamp(1, self.ahead);
                    held.add(room.take(lease.taken.len()));
                    self.waiting.store(lease.taken.len(), Ordering::Release);
                    if !lease.taken.is_empty() {
                        self.leases.fetch_add(1, Ordering::AcqRel);
                    }
                }
                // What the lease did not take is free again (before a failed lease's
                // wait, too).
                drop(room);
                self.asking.store(0, Ordering::Release);
                // Nothing more due: ingest may hand new work over. A wake that came
                // meanwhile has left its permit, so the lane leases again once what
                // it now holds has started.
                self.inbox().open = matches!(&lease, Ok(l) if l.drained);
                match lease {
                    Ok(lease) => {
                        if lease.drained {
                            drained = Some(lease.next_due.map(|due| {
                                Instant::now()
                                    + Duration::from_millis((due - now_ms()).max(0) as u64)
                            }));
                        }
                        ready.extend(lease.taken);
                    }
                    Err(e) => {
                        tracing::error!(integration_id = %self.id, error = %e, "cannot lease deliveries; retrying");
                        self.idle(&mut stop, Some(Instant::now() + poll)).await;
                    }
                }
                continue;
            }
            let permit = tokio::select! {
                permit = self.permits.clone().acquire_owned() => permit.expect("lane semaphores are never closed"),
                _ = stop.changed() => continue,
            };
            // Waiting for the slot may have taken a while: the attempt that freed it
            // may have paused the lane or put it on hold.
            if !matches!(self.gate(&shared), Some(Gate::Open)) {
                drop(permit);
                continue;
            }
            if let Some(job) = ready.pop_front() {
                let slot = Slot {
                    _lane: permit,
                    _room: held.take(1),
                };
                tokio::spawn(attempt(shared.clone(), self.clone(), job, slot));
                self.waiting.store(ready.len(), Ordering::Release);
            }
        }
        {
            let mut inbox = self.inbox();
            inbox.ended = true;
            inbox.open = false;
            ready.extend(inbox.handed.drain(..));
            drop(inbox.room.take(usize::MAX));
        }
        self.give_back(&shared, &mut ready, None).await;
    }

    /// Returns leased deliveries that were not started, due at `at` (now by default).
    async fn give_back(
        &self,
        shared: &Shared,
        ready: &mut VecDeque<Leased>,
        at: Option<SystemTime>,
    ) {
        if ready.is_empty() {
            return;
        }
        let leases: Vec<_> = ready
            .drain(..)
            .map(|j| (j.parcel.id, j.lease_token))
            .collect();
        let due = at.map(to_ms).unwrap_or_else(now_ms);
        if let Err(e) = shared.store.release(leases, due).await {
            tracing::warn!(integration_id = %self.id, error = %e, "could not give back leased deliveries; they return when their lease expires");
        }
        self.waiting.store(0, Ordering::Release);
    }

    /// Waits for a wake, a hand-over, `until`, or the stop; answers which came.
    async fn idle(&self, stop: &mut watch::Receiver<bool>, until: Option<Instant>) -> Woken {
        let sleep = async {
            match until {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.wake.notified() => Woken::Work,
            _ = self.handed.notified() => Woken::Handed,
            _ = sleep => Woken::Time,
            _ = stop.changed() => Woken::Time,
        }
    }
}

/// What an attempt holds until its outcome is with the recorder: a slot of its lane
/// and its delivery's place in the [`Room`].
struct Slot {
    _lane: OwnedSemaphorePermit,
    _room: Held,
}

/// One attempt of one leased delivery, and what follows from its answer.
async fn attempt(shared: Arc<Shared>, lane: Arc<Lane>, job: Leased, slot: Slot) {
    let number = job.attempts + 1;
    let parcel = &job.parcel;
    let Some(integration) = shared.registry.get(&parcel.integration_id) else {
        return; // Deleted meanwhile: its deliveries went with it.
    };
    let Some(request) =
        shared
            .client
            .stored_request(parcel.call, job.url.as_deref(), job.body.as_deref())
    else {
        let log = records::attempt(
            parcel,
            number,
            Outcome::Failed,
            Err(records::INCOMPLETE_REQUEST),
            None,
            now_ms(),
        );
        let finish = finish(&job, &Decision::Fail, SystemTime::now(), log);
        shared
            .recorder
            .record(Record {
                finish,
                request: None,
                wake: None,
            })
            .await;
        return;
    };

    // The large futures (the store's read, the HTTP call) are boxed: an attempt's
    // task is as large as its largest await, and it lives on while its outcome waits
    // for the recorder. With a thousand busy lanes that is tens of thousands of
    // tasks; unboxed, each held about 6.5 KB of finished futures (heap profile).
    //
    // A partial refund becomes an update of the order as Button has it now (or, when
    // it cannot, an attempt that failed without being sent).
    let (request, unsent) = Box::pin(refund::resolve(
        &shared.store,
        &shared.client,
        &parcel.integration_id,
        request,
    ))
    .await;
    // The key of the moment: a rotation reaches deliveries leased before it.
    let answer = match unsent {
        Some(unsent) => unsent,
        None => Box::pin(shared.client.send(&request, &integration.api_key)).await,
    };
    shared
        .metrics
        .attempt_duration
        .get_or_create(&crate::metrics::IntegrationLabels {
            integration: parcel.integration_id.to_string(),
        })
        .observe(answer.latency.as_secs_f64());

    let now = SystemTime::now();
    let decision = decide(
        &Answered::of(&answer, request.auth()),
        number as u32,
        &shared.policy,
        now,
        RetryPolicy::draw_spread(),
    );
    if let Some(until) = decision.hold_lane_until() {
        lane.hold_for(remaining(until, now));
        // Every other replica's lane holds too.
        let (store, id) = (shared.store.clone(), parcel.integration_id.clone());
        tokio::spawn(async move {
            if let Err(e) = store.hold_lane(&id, to_ms(until)).await {
                tracing::warn!(integration_id = %id, error = %e, "cannot tell the other replicas of Button's Retry-After");
            }
        });
    }
    if decision == Decision::PauseLane {
        // The key is wrong for every event: hold the lane instead of spending each
        // delivery's attempts. This one waits with the rest.
        let reason = format!(
            "Button refused the api_key ({}); deliveries wait for a new key or a resume",
            answer.error.as_deref().unwrap_or("401 Unauthorized")
        );
        if let Err(e) = Box::pin(shared.registry.pause_for_auth(
            &parcel.integration_id,
            integration.updated_at,
            reason,
        ))
        .await
        {
            tracing::error!(integration_id = %parcel.integration_id, error = %e, "cannot pause the lane");
        }
    }

    log_attempt(&job, &request, number, decision.outcome(), &answer);
    let view = shared
        .hub
        .has_subscribers()
        .then(|| RequestView::of(&request));
    let log = records::attempt(
        parcel,
        number,
        decision.outcome(),
        Ok(&answer),
        decision.next_attempt_at().map(to_ms),
        to_ms(now),
    );
    // The slot is freed once the outcome is with the recorder (so a shutdown that
    // waits for the slots finds every outcome queued for its flush).
    // A later change of the same order waits for this one's outcome to be committed:
    // the recorder wakes the lane then.
    shared
        .recorder
        .record(Record {
            finish: Finish {
                order: (decision == Decision::Delivered)
                    .then(|| refund::order_change(job.order_key.as_deref(), &request))
                    .flatten(),
                ..finish(&job, &decision, now, log)
            },
            request: view,
            wake: job.order_key.is_some().then(|| lane.clone()),
        })
        .await;
    drop(slot);
    if matches!(decision, Decision::Fail | Decision::DeadLetter { .. })
        && let Some(order_key) = job.order_key.clone()
    {
        tokio::spawn(note_held(
            shared.clone(),
            parcel.clone(),
            order_key,
            decision.state(),
        ));
    }
    // A retry wakes the lane when it falls due. A freed slot needs no wake: a lane
    // with leased work waits on its slots, and an idle one had nothing to send.
    if let Decision::Retry { at, .. } = decision {
        let wait = remaining(at, SystemTime::now());
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            lane.wake();
        });
    }
}

/// Tells Live Logs which later changes of an order now wait behind `behind`, which
/// failed or was dead-lettered.
async fn note_held(shared: Arc<Shared>, behind: Parcel, order_key: String, how: DeliveryState) {
    let held = match shared
        .store
        .held_behind(&behind.integration_id, &order_key, &behind.id)
        .await
    {
        Ok(held) => held,
        Err(e) => {
            tracing::warn!(integration_id = %behind.integration_id, error = %e, "cannot read the changes held behind a failed order delivery");
            return;
        }
    };
    let now = now_ms();
    let logs: Vec<LogRecord> = held
        .iter()
        .map(|p| records::held(p, &behind.id, how, now))
        .collect();
    if let Err(e) = shared.store.add_entries(logs.clone()).await {
        tracing::warn!(integration_id = %behind.integration_id, error = %e, "cannot record the changes held behind a failed order delivery");
        return;
    }
    for log in &logs {
        shared.metrics.delivery(&log.integration_id, log.outcome);
        shared.hub.publish(log, None);
    }
}

/// The delivery's new state after `decision`, with the entry that records it.
fn finish(job: &Leased, decision: &Decision, now: SystemTime, log: LogRecord) -> Finish {
    Finish {
        delivery_id: job.parcel.id.clone(),
        lease_token: job.lease_token.clone(),
        state: decision.state(),
        count_attempt: decision.counts_attempt(),
        available_at: to_ms(decision.due_at(now)),
        log,
        order: None,
    }
}

/// The one stdout line per attempt: ids, call, outcome, status and latency; never the
/// payload or a credential. Failures are warnings.
fn log_attempt(
    job: &Leased,
    request: &PreparedRequest,
    attempt: i64,
    outcome: Outcome,
    answer: &Attempt,
) {
    let parcel = &job.parcel;
    let status = answer.status.map(|s| s.as_u16());
    let latency_ms = answer.latency.as_secs_f64() * 1000.0;
    let succeeded = matches!(outcome, Outcome::Delivered | Outcome::RetryScheduled);
    // What to do about it, on the lines of failures.
    let hint = answer.hint.filter(|_| !succeeded);
    macro_rules! line {
        ($level:expr) => {
            tracing::event!(
                target: "delivery",
                $level,
                integration_id = %parcel.integration_id,
                delivery_id = %parcel.id,
                message_id = %parcel.message_id,
                call = %request.call,
                attempt,
                outcome = outcome.as_str(),
                status,
                latency_ms,
                error = answer.error.as_deref(),
                hint,
                "delivery attempt"
            )
        };
    }
    if succeeded {
        line!(tracing::Level::INFO)
    } else {
        line!(tracing::Level::WARN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What ingest may reserve counts the lease being taken: a lane woken with
    /// nothing waiting leases with its inbox open, and before, ingest could fill the
    /// lane's whole `ahead` meanwhile, and the lease take as much again.
    #[test]
    fn ingest_reserves_only_what_the_lease_being_taken_leaves_ahead() {
        let settings = DeliverySettings {
            lane_concurrency: 4,
            lease_batch: 100,
            max_held: 1_000,
            lease_duration: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            max_attempts: 5,
            backoff_initial: Duration::from_secs(1),
            backoff_multiplier: 2.0,
            backoff_max: Duration::from_secs(60),
            jitter: 0.0,
            retry_after_max: Duration::from_secs(60),
        };
        let room: Room = Arc::new(Semaphore::new(settings.max_held));
        let lane = Lane::new(IntegrationId::new(), &settings, room.clone());
        assert_eq!(lane.ahead, 8, "two slots' worth");
        lane.inbox().open = true;
        lane.asking.store(6, Ordering::Release);
        assert_eq!(lane.reserve(8), 2);
        assert_eq!(room.available_permits(), 998);
        lane.asking.store(0, Ordering::Release);
        assert_eq!(lane.reserve(8), 6, "with the lease done, the rest");
        lane.unreserve(8);
        assert_eq!(room.available_permits(), 1_000);
    }
}
