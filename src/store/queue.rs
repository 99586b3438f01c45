//! The delivery queue: one row per (event, integration), written at ingest in the same
//! transaction as the event, leased by the integration's lane with an expiry (or, for
//! a lane with room whose last lease found nothing more due, in that ingest
//! transaction), and finished with its live-log entry in one transaction.

use std::sync::LazyLock;
use std::time::Duration;

use super::{Store, StoreError, on_backend};
use crate::blueprint::Issue;
use crate::button::CallKind;
use crate::domain::{DeliveryId, DeliveryState, IntegrationId, LeaseToken};
use crate::live_logs::LogRecord;

/// A delivery's identity and what it carries: the event (by messageId and name), the
/// integration it goes to, the Button call and the mapping's warnings. Written at
/// ingest, read back with every lease, and named in every live-log entry about it.
#[derive(Debug, Clone)]
pub struct Parcel {
    pub id: DeliveryId,
    pub integration_id: IntegrationId,
    pub message_id: String,
    pub event_name: String,
    /// Always written; read as optional so that a row without one fails alone.
    pub call: Option<CallKind>,
    pub warnings: Vec<Issue>,
    /// Sent by Test Event.
    pub test: bool,
}

/// A delivery taken by a lane: it belongs to the taker until its lease expires.
#[derive(Debug, Clone)]
pub struct Leased {
    pub parcel: Parcel,
    /// Attempts made before this one.
    pub attempts: i64,
    /// With the call and `body`, the request to send (always there for a queued
    /// delivery; a row without them fails instead of being sent).
    pub url: Option<String>,
    pub body: Option<Vec<u8>>,
    pub lease_token: LeaseToken,
    /// The order it creates or changes, if any.
    pub order_key: Option<String>,
}

/// A delivery `d` of an order waits while one accepted before it for the same order is
/// not delivered (pending, or in flight), failed, or dead-lettered; replaying the
/// earlier one (or discarding a dead letter) releases it. The same SQL on both
/// backends, with the states written in from their words.
///
/// "Before" is the order's sequence (`order_seq`), not the id: ingest numbers an
/// order's changes in the order it commits them (each backend's ingest says how), so
/// a change committed before another is always seen by the other's check, and one
/// whose write is still open is numbered after any it could not see.
pub(super) static NOT_HELD: LazyLock<String> = LazyLock::new(|| {
    format!(
        "(d.order_key IS NULL OR NOT EXISTS (
             SELECT 1 FROM deliveries p
             WHERE p.integration_id = d.integration_id AND p.order_key = d.order_key
               AND p.order_seq < d.order_seq AND p.state IN ('{}', '{}', '{}')))",
        DeliveryState::Pending,
        DeliveryState::Failed,
        DeliveryState::Dead
    )
});

/// Leases a delivery ingest has just written unless an earlier change of its order
/// holds it ([`NOT_HELD`]): the same rule a lane's lease applies, in the ingest
/// commit. SQLite: lease expiry, token, id.
pub(super) static LEASE_IF_FREE_SQLITE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE deliveries AS d SET available_at = ?, lease_token = ? WHERE d.id = ? AND {}",
        NOT_HELD.as_str()
    )
});

/// The same on PostgreSQL, for many at once: ids, tokens, lease expiries (arrays).
pub(super) static LEASE_IF_FREE_POSTGRES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE deliveries AS d SET available_at = u.until, lease_token = u.token
         FROM unnest($1::text[], $2::text[], $3::int8[]) AS u(id, token, until)
         WHERE d.id = u.id AND {}
         RETURNING d.id",
        NOT_HELD.as_str()
    )
});

/// What a lease took. When it took less than it asked for, nothing else was due: it
/// also says when the integration's next delivery falls due (`next_due`, ms; the
/// deliveries just taken count, due again when their lease ends), so that the lane
/// can sleep until then without asking again.
#[derive(Debug)]
pub struct Lease {
    pub taken: Vec<Leased>,
    pub drained: bool,
    pub next_due: Option<i64>,
}

/// What a lane asks for when it leases.
#[derive(Debug, Clone)]
pub struct LeaseAsk {
    /// Most deliveries to take.
    pub limit: usize,
    /// How long they belong to the lane.
    pub lease_for: Duration,
    pub token: LeaseToken,
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
    /// What a delivered order call leaves at Button, kept for later refunds.
    pub order: Option<OrderChange>,
}

pub use super::orders::OrderChange;

impl Store {
    /// The pending deliveries of `order_key` accepted after `delivery` (those it holds).
    pub async fn held_behind(
        &self,
        integration_id: &IntegrationId,
        order_key: &str,
        delivery: &DeliveryId,
    ) -> Result<Vec<Parcel>, StoreError> {
        on_backend!(self.backend, db => db.held_behind(integration_id, order_key, delivery).await)
    }

    /// Writes entries that change no delivery (a held change's note).
    pub async fn add_entries(&self, logs: Vec<LogRecord>) -> Result<(), StoreError> {
        if logs.is_empty() {
            return Ok(());
        }
        on_backend!(self.backend, db => db.add_entries(logs).await)
    }

    /// Leases due deliveries of one integration, oldest first.
    pub async fn lease(
        &self,
        integration_id: &IntegrationId,
        ask: &LeaseAsk,
    ) -> Result<Lease, StoreError> {
        on_backend!(self.backend, db => db.lease(integration_id, ask).await)
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

    /// Of `ids`, the integrations with a delivery due now that no replica told this
    /// one about: on PostgreSQL, work another replica queued or a dead replica's
    /// expired leases. One statement, whatever the number of integrations, so a
    /// replica's idle lanes are looked after for the price of one query. The embedded
    /// store has one process, whose lanes hear of all their work: `None` there, and
    /// nothing needs sweeping.
    pub async fn due_among(
        &self,
        ids: &[IntegrationId],
    ) -> Option<Result<Vec<IntegrationId>, StoreError>> {
        match &self.backend {
            super::Backend::Sqlite(_) => None,
            super::Backend::Postgres(db) => Some(db.due_among(ids).await),
        }
    }

    /// When the integration's next pending delivery falls due, if it has one.
    pub async fn next_due(
        &self,
        integration_id: &IntegrationId,
    ) -> Result<Option<i64>, StoreError> {
        on_backend!(self.backend, db => db.next_due(integration_id).await)
    }
}
