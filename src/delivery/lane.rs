//! A lane: one integration's delivery loop, with its own concurrency limit, its own
//! `Retry-After` hold and its own pause. Lanes share nothing but the store, so a slow,
//! failing or paused integration never delays another.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};

use super::Shared;
use crate::blueprint::Issue;
use crate::button::{Attempt, Auth, Classification, PreparedRequest};
use crate::ids;
use crate::integrations::Integration;
use crate::live_logs::{Outcome, RequestView, ResponseView};
use crate::store::logs::LogRecord;
use crate::store::queue::{Finish, Leased, state};
use crate::store::{now_ms, to_ms};

use super::recorder::Record;

enum Gate {
    Open,
    Closed(Option<(Instant, SystemTime)>),
}

pub struct Lane {
    pub id: String,
    concurrency: usize,
    permits: Arc<Semaphore>,
    wake: Notify,
    /// Button asked us (`Retry-After`) not to call before this.
    hold: Mutex<Option<(Instant, SystemTime)>>,
}

/// What a lane is doing, for stats and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaneStatus {
    /// `active`, `rate_limited`, `auth_failed`, `paused` or `disabled`.
    pub state: &'static str,
    pub held_until: Option<SystemTime>,
    pub in_flight: usize,
}

impl Lane {
    pub fn new(id: String, concurrency: usize) -> Arc<Self> {
        Arc::new(Self {
            id,
            concurrency,
            permits: Arc::new(Semaphore::new(concurrency)),
            wake: Notify::new(),
            hold: Mutex::new(None),
        })
    }

    /// There may be new work, or the integration changed.
    pub fn wake(&self) {
        self.wake.notify_one();
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

    fn hold_for(&self, d: Duration) {
        let until = (Instant::now() + d, SystemTime::now() + d);
        let mut hold = self.hold.lock().unwrap_or_else(|e| e.into_inner());
        if hold.is_none_or(|(current, _)| current < until.0) {
            *hold = Some(until);
        }
    }

    pub fn status(&self, integration: Option<&Integration>) -> LaneStatus {
        let held = self.held_until();
        let state = match integration {
            Some(i) if !i.enabled => "disabled",
            Some(i) if i.auth_failed() => "auth_failed",
            Some(i) if i.lane_held() => "paused",
            _ if held.is_some() => "rate_limited",
            _ => "active",
        };
        LaneStatus {
            state,
            held_until: held.map(|(_, t)| t),
            in_flight: self.concurrency - self.permits.available_permits(),
        }
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
    /// the lane closes are given back at once.
    pub async fn run(self: Arc<Self>, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
        let lease_ms = shared.settings.lease_duration.as_millis() as i64;
        let poll = shared.settings.poll_interval;
        let ahead = shared.settings.lease_batch.min(self.concurrency * 2).max(1);
        let mut ready: VecDeque<Leased> = VecDeque::new();
        loop {
            if *stop.borrow() {
                break;
            }
            match self.gate(&shared) {
                None => break,
                Some(Gate::Closed(until)) => {
                    self.give_back(&shared, &mut ready, until.map(|(_, at)| at))
                        .await;
                    self.idle(&mut stop, until.map(|(at, _)| at)).await;
                    continue;
                }
                Some(Gate::Open) => {}
            }
            if ready.is_empty() {
                let now = now_ms();
                let token = ids::new_id("lease");
                match shared
                    .store
                    .lease(&self.id, ahead, now, now + lease_ms, &token)
                    .await
                {
                    Ok(leased) if !leased.is_empty() => ready.extend(leased),
                    Ok(_) => {
                        let wake_at = match shared.store.next_due(&self.id).await {
                            Ok(Some(due)) => {
                                Instant::now()
                                    + Duration::from_millis((due - now_ms()).max(0) as u64)
                                        .min(poll)
                            }
                            _ => Instant::now() + poll,
                        };
                        self.idle(&mut stop, Some(wake_at)).await;
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
                tokio::spawn(attempt(shared.clone(), self.clone(), job, permit));
            }
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
        let leases: Vec<(String, String)> =
            ready.drain(..).map(|j| (j.id, j.lease_token)).collect();
        let due = at.map(to_ms).unwrap_or_else(now_ms);
        if let Err(e) = shared.store.release(leases, due).await {
            tracing::warn!(integration_id = %self.id, error = %e, "could not give back leased deliveries; they return when their lease expires");
        }
    }

    async fn idle(&self, stop: &mut watch::Receiver<bool>, until: Option<Instant>) {
        let sleep = async {
            match until {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.wake.notified() => {}
            _ = sleep => {}
            _ = stop.changed() => {}
        }
    }
}

/// One attempt of one leased delivery, and what follows from its answer.
async fn attempt(shared: Arc<Shared>, lane: Arc<Lane>, job: Leased, permit: OwnedSemaphorePermit) {
    let number = job.attempts + 1;
    let Some(integration) = shared.registry.get(&job.integration_id) else {
        return; // Deleted meanwhile: its deliveries went with it.
    };
    let (Some(call), Some(url)) = (job.call.clone(), job.url.clone()) else {
        let finish = finish(
            &job,
            state::FAILED,
            true,
            now_ms(),
            None,
            Outcome::Failed,
            number,
            None,
            Some("the stored request is incomplete".into()),
            None,
        );
        shared
            .recorder
            .record(Record {
                finish,
                request: None,
            })
            .await;
        return;
    };
    let request = shared.client.request(
        call,
        url,
        bytes::Bytes::from(job.body.clone().unwrap_or_default()),
    );

    // The key of the moment: a rotation reaches deliveries leased before it.
    let answer = shared.client.send(&request, &integration.api_key).await;
    shared
        .metrics
        .attempt_duration
        .get_or_create(&crate::metrics::IntegrationLabels {
            integration: job.integration_id.clone(),
        })
        .observe(answer.latency.as_secs_f64());

    let now = SystemTime::now();
    let policy = &shared.policy;
    let (state, counted, due, outcome, next) = match answer.classification {
        Classification::Delivered { .. } => (state::DELIVERED, true, now, Outcome::Delivered, None),
        Classification::Retryable { retry_after } => {
            if let Some(d) =
                retry_after.filter(|_| matches!(answer.status.map(|s| s.as_u16()), Some(429 | 503)))
            {
                lane.hold_for(policy.cap_retry_after(d));
            }
            if policy.exhausted(number as u32) {
                (state::DEAD, true, now, Outcome::DeadLettered, None)
            } else {
                let wait = retry_after
                    .map(|d| policy.cap_retry_after(d))
                    .unwrap_or_else(|| policy.delay(number as u32));
                (
                    state::PENDING,
                    true,
                    now + wait,
                    Outcome::RetryScheduled,
                    Some(now + wait),
                )
            }
        }
        Classification::Terminal
            if answer.status.map(|s| s.as_u16()) == Some(401) && request.auth == Auth::ApiKey =>
        {
            // The key is wrong for every event: hold the lane instead of spending
            // each delivery's attempts. This one waits with the rest.
            let reason = format!(
                "Button refused the api_key ({}); deliveries wait for a new key or a resume",
                answer.error.as_deref().unwrap_or("401 Unauthorized")
            );
            if let Err(e) = shared
                .registry
                .pause_for_auth(&job.integration_id, integration.updated_at, reason)
                .await
            {
                tracing::error!(integration_id = %job.integration_id, error = ?e, "cannot pause the lane");
            }
            (state::PENDING, false, now, Outcome::Paused, None)
        }
        Classification::Terminal => (state::FAILED, true, now, Outcome::Failed, None),
    };

    log_attempt(&job, &request, number, outcome, &answer);
    let view = shared
        .hub
        .has_subscribers()
        .then(|| RequestView::of(&request));
    let finish = finish(
        &job,
        state,
        counted,
        to_ms(due),
        Some(&answer),
        outcome,
        number,
        next.map(to_ms),
        answer.error.clone(),
        answer.hint.map(str::to_owned),
    );
    // The slot is freed once the outcome is with the recorder (so a shutdown that
    // waits for the slots finds every outcome queued for its flush).
    shared
        .recorder
        .record(Record {
            finish,
            request: view,
        })
        .await;
    drop(permit);
    match (outcome, next) {
        (Outcome::RetryScheduled, Some(at)) => {
            let lane = lane.clone();
            let wait = at
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            tokio::spawn(async move {
                tokio::time::sleep(wait).await;
                lane.wake();
            });
        }
        (Outcome::Paused, _) => {}
        _ => lane.wake(),
    }
}

#[allow(clippy::too_many_arguments)]
fn finish(
    job: &Leased,
    state: &'static str,
    counted: bool,
    available_at: i64,
    answer: Option<&Attempt>,
    outcome: Outcome,
    number: i64,
    next_attempt_at: Option<i64>,
    error: Option<String>,
    hint: Option<String>,
) -> Finish {
    let response = answer.filter(|a| a.status.is_some()).map(|a| {
        serde_json::to_string(&ResponseView {
            headers: a
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into()))
                .collect(),
            body: a.body.clone(),
            truncated: a.truncated,
        })
        .unwrap_or_default()
    });
    Finish {
        delivery_id: job.id.clone(),
        lease_token: job.lease_token.clone(),
        state,
        count_attempt: counted,
        available_at,
        log: Some(LogRecord {
            id: ids::new_id(ids::LOG),
            integration_id: job.integration_id.clone(),
            delivery_id: Some(job.id.clone()),
            message_id: Some(job.message_id.clone()),
            event_name: Some(job.event_name.clone()),
            call: job.call.clone(),
            attempt: Some(number),
            outcome: outcome.as_str().to_owned(),
            status_code: answer.and_then(|a| a.status).map(|s| i64::from(s.as_u16())),
            status_line: answer.and_then(Attempt::status_line),
            latency_ms: answer.map(|a| a.latency.as_secs_f64() * 1000.0),
            error,
            hint,
            warnings: job.warnings.clone().filter(|w| !w.is_empty() && w != "[]"),
            next_attempt_at,
            response,
            test: false,
            created_at: now_ms(),
        }),
    }
}

/// The one stdout line per attempt: ids, call, outcome, status and latency; never the
/// payload or a credential.
fn log_attempt(
    job: &Leased,
    request: &PreparedRequest,
    attempt: i64,
    outcome: Outcome,
    answer: &Attempt,
) {
    let status = answer.status.map(|s| s.as_u16());
    let latency_ms = answer.latency.as_secs_f64() * 1000.0;
    match outcome {
        Outcome::Delivered | Outcome::RetryScheduled => tracing::info!(
            target: "delivery",
            integration_id = %job.integration_id,
            delivery_id = %job.id,
            message_id = %job.message_id,
            call = %request.call,
            attempt,
            outcome = outcome.as_str(),
            status,
            latency_ms,
            error = answer.error.as_deref(),
            "delivery attempt"
        ),
        _ => tracing::warn!(
            target: "delivery",
            integration_id = %job.integration_id,
            delivery_id = %job.id,
            message_id = %job.message_id,
            call = %request.call,
            attempt,
            outcome = outcome.as_str(),
            status,
            latency_ms,
            error = answer.error.as_deref(),
            hint = answer.hint,
            "delivery attempt"
        ),
    }
}

/// Warnings as stored with a delivery.
pub fn warnings_json(warnings: &[Issue]) -> Option<String> {
    (!warnings.is_empty()).then(|| serde_json::to_string(warnings).unwrap_or_default())
}
