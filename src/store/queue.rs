//! The delivery queue: one row per (event, integration), written at ingest in the same
//! transaction as the event, leased by the integration's lane with an expiry, and
//! finished with its live-log entry in one transaction.

use super::logs::LogRecord;
use super::{Store, StoreError, on_backend};
use crate::button::CallKind;
use crate::domain::{DeliveryId, DeliveryState, IntegrationId, LeaseToken};

/// A delivery taken by a lane: it belongs to the taker until its lease expires.
#[derive(Debug, Clone)]
pub struct Leased {
    pub id: DeliveryId,
    pub integration_id: IntegrationId,
    pub message_id: String,
    pub event_name: String,
    /// With `url` and `body`, the request to send (always there for a queued delivery;
    /// a row without them fails instead of being sent).
    pub call: Option<CallKind>,
    /// Attempts made before this one.
    pub attempts: i64,
    pub url: Option<String>,
    pub body: Option<Vec<u8>>,
    pub warnings: Option<String>,
    pub lease_token: LeaseToken,
}

/// What became of a leased delivery, with the live-log entry that records it.
#[derive(Debug, Clone)]
pub struct Finish {
    pub delivery_id: DeliveryId,
    pub lease_token: LeaseToken,
    pub state: DeliveryState,
    /// Whether this attempt counts against the delivery's attempt budget (a pause on
    /// `401` does not).
    pub count_attempt: bool,
    /// When a delivery left pending is due again.
    pub available_at: i64,
    pub log: LogRecord,
}

impl Store {
    /// Leases up to `limit` due deliveries of one integration until `lease_until`,
    /// oldest first.
    pub async fn lease(
        &self,
        integration_id: &IntegrationId,
        limit: usize,
        now: i64,
        lease_until: i64,
        token: &LeaseToken,
    ) -> Result<Vec<Leased>, StoreError> {
        on_backend!(self.backend, db => db.lease(integration_id, limit, now, lease_until, token).await)
    }

    /// Records what became of leased deliveries, with their live-log entries. A
    /// delivery whose lease was lost meanwhile keeps its newer state; its log entry is
    /// still written (the attempt happened), unless its integration was deleted.
    /// Answers the finishes and how many leases were lost.
    pub async fn finish(
        &self,
        finishes: Vec<Finish>,
        now: i64,
    ) -> Result<(Vec<Finish>, u64), StoreError> {
        on_backend!(self.backend, db => db.finish(finishes, now).await)
    }

    /// Gives leased deliveries back untouched, due at `available_at`.
    pub async fn release(
        &self,
        leases: Vec<(DeliveryId, LeaseToken)>,
        available_at: i64,
    ) -> Result<(), StoreError> {
        on_backend!(self.backend, db => db.release(leases, available_at).await)
    }

    /// Makes every leased delivery due now. Only for a store no other process uses (the
    /// embedded SQLite file at start-up): leases held by a previous, crashed run of
    /// this process would otherwise wait for their expiry.
    pub async fn release_all_leases(&self, now: i64) -> Result<u64, StoreError> {
        on_backend!(self.backend, db => db.release_all_leases(now).await)
    }

    /// When the integration's next pending delivery falls due, if it has one.
    pub async fn next_due(
        &self,
        integration_id: &IntegrationId,
    ) -> Result<Option<i64>, StoreError> {
        on_backend!(self.backend, db => db.next_due(integration_id).await)
    }
}
