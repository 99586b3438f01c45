//! The delivery queue on SQLite. Leases, outcomes and releases go through the writer;
//! `next_due` reads.
//!
//! The lease and the next-due query, run by every lane, write their states into the
//! SQL from the states' words. Bound, a state decides whether the `pending`-only
//! partial indexes apply, and SQLite then prepares the statement again each time it
//! is bound (a fifth of the service's CPU at 100 events/s); written in, the plan is
//! made once. Statements run less often bind them (the test in `sqlite` proves the
//! plans of both kinds).

use std::collections::HashSet;
use std::sync::LazyLock;

use super::SqliteStore;
use super::integrations::existing_integrations;
use super::logs::insert_logs;
use super::orders::apply_order_changes;
use crate::domain::clock::now_ms;
use crate::domain::{DeliveryId, DeliveryState, IntegrationId, LeaseToken};
use crate::live_logs::LogRecord;
use crate::store::StoreError;
use crate::store::queue::{Finish, Lease, LeaseAsk, NOT_HELD, Parcel};
use crate::store::rows;

/// Takes the oldest due deliveries of one integration: lease expiry, token, now;
/// integration, now; how many. A delivery of an order waits while one accepted before
/// it for the same order is not delivered ([`NOT_HELD`]).
pub(super) static LEASE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE deliveries SET available_at = ?, lease_token = ?, updated_at = ?
         WHERE id IN (
             SELECT id FROM deliveries d
             WHERE integration_id = ? AND state = '{}' AND available_at <= ?
               AND {held}
             ORDER BY available_at LIMIT ?)
         RETURNING id, integration_id, message_id, event_name, call, warnings, test, attempts, url, body, lease_token, order_key",
        DeliveryState::Pending,
        held = NOT_HELD.as_str(),
    )
});

/// When an integration's next delivery is due (one held behind an earlier delivery of
/// its order is not): integration.
pub(super) static NEXT_DUE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT MIN(available_at) FROM deliveries d WHERE integration_id = ? AND state = '{}' AND {held}",
        DeliveryState::Pending,
        held = NOT_HELD.as_str(),
    )
});

/// Makes every leased pending delivery due at `?`. The state is written in, as in
/// [`LEASE`]: bound, the writer's connection (which plans once, whatever is bound)
/// read every delivery stored at each start.
pub(super) static RELEASE_ALL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE deliveries SET available_at = ?, lease_token = NULL WHERE state = '{}' AND lease_token IS NOT NULL",
        DeliveryState::Pending
    )
});

impl SqliteStore {
    pub(in crate::store) async fn lease(
        &self,
        integration_id: &IntegrationId,
        ask: &LeaseAsk,
    ) -> Result<Lease, StoreError> {
        let (integration_id, ask) = (integration_id.clone(), ask.clone());
        self.writer
            .direct(move |db| {
                // The time of the writer's turn: what is due then is taken.
                let now = now_ms();
                let mut lease = db.prepare_cached(&LEASE)?;
                let mut rows = lease.query(rusqlite::params![
                    now + ask.lease_for.as_millis() as i64,
                    ask.token,
                    now,
                    integration_id,
                    now,
                    ask.limit as i64,
                ])?;
                let mut leased = Vec::with_capacity(ask.limit);
                while let Some(row) = rows.next()? {
                    leased.push(rows::leased(row)?);
                }
                drop(rows);
                // RETURNING gives no order; serve the oldest first.
                leased.sort_by(|a, b| a.parcel.id.cmp(&b.parcel.id));
                let drained = leased.len() < ask.limit;
                let next_due = if drained {
                    db.prepare_cached(&NEXT_DUE)?
                        .query_row([&integration_id], |row| row.get(0))?
                } else {
                    None
                };
                Ok(Lease {
                    taken: leased,
                    drained,
                    next_due,
                })
            })
            .await
    }

    pub(in crate::store) async fn finish(
        &self,
        finishes: Vec<Finish>,
        now: i64,
    ) -> Result<(Vec<Finish>, u64), StoreError> {
        self.writer
            .direct(move |db| {
                let mut update = db.prepare_cached(
                    "UPDATE deliveries SET state = ?, attempts = attempts + ?, available_at = ?, lease_token = NULL, updated_at = ?
                     WHERE id = ? AND lease_token = ?",
                )?;
                let mut updated = 0;
                for f in &finishes {
                    updated += update.execute(rusqlite::params![
                        f.state,
                        i64::from(f.count_attempt),
                        f.available_at,
                        now,
                        f.delivery_id,
                        f.lease_token,
                    ])? as u64;
                }
                let lost = finishes.len() as u64 - updated.min(finishes.len() as u64);
                // Outcomes of an integration deleted meanwhile are not recorded.
                let ids: Vec<&IntegrationId> =
                    finishes.iter().map(|f| &f.log.integration_id).collect();
                let existing: HashSet<IntegrationId> = existing_integrations(db, &ids)?;
                let logs: Vec<&LogRecord> = finishes
                    .iter()
                    .map(|f| &f.log)
                    .filter(|l| existing.contains(&l.integration_id))
                    .collect();
                insert_logs(db, &logs)?;
                let orders: Vec<_> = finishes
                    .iter()
                    .filter(|f| existing.contains(&f.log.integration_id))
                    .filter_map(|f| f.order.as_ref().map(|o| (&f.log.integration_id, o)))
                    .collect();
                apply_order_changes(db, &orders, now)?;
                Ok((finishes, lost))
            })
            .await
    }

    pub(in crate::store) async fn release(
        &self,
        leases: Vec<(DeliveryId, LeaseToken)>,
        available_at: i64,
    ) -> Result<(), StoreError> {
        self.writer
            .direct(move |db| {
                let mut release = db.prepare_cached(
                    "UPDATE deliveries SET lease_token = NULL, available_at = ?
                     WHERE id = ? AND lease_token = ? AND state = ?",
                )?;
                for (id, token) in &leases {
                    release.execute(rusqlite::params![
                        available_at,
                        id,
                        token,
                        DeliveryState::Pending
                    ])?;
                }
                Ok(())
            })
            .await
    }

    /// Makes every leased delivery due now: the embedded file belongs to this process
    /// alone, so leases a previous run held when it stopped (or crashed) are taken
    /// back at once instead of waiting for their expiry.
    pub(super) async fn release_all_leases(&self, now: i64) -> Result<u64, StoreError> {
        self.writer
            .direct(move |db| Ok(db.execute(RELEASE_ALL.as_str(), [now])? as u64))
            .await
    }

    pub(in crate::store) async fn held_behind(
        &self,
        integration_id: &IntegrationId,
        order_key: &str,
        delivery: &DeliveryId,
    ) -> Result<Vec<Parcel>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, integration_id, message_id, event_name, call, warnings, test FROM deliveries
             WHERE integration_id = ? AND order_key = ?
               AND order_seq > (SELECT order_seq FROM deliveries WHERE id = ?) AND state = ?
             ORDER BY order_seq",
        )
        .bind(integration_id)
        .bind(order_key)
        .bind(delivery)
        .bind(DeliveryState::Pending)
        .fetch_all(&self.read)
        .await?;
        Ok(rows.iter().map(rows::parcel).collect::<Result<_, _>>()?)
    }

    pub(in crate::store) async fn add_entries(
        &self,
        logs: Vec<LogRecord>,
    ) -> Result<(), StoreError> {
        self.writer
            .direct(move |db| {
                let refs: Vec<&LogRecord> = logs.iter().collect();
                insert_logs(db, &refs)
            })
            .await
    }

    pub(in crate::store) async fn next_due(
        &self,
        integration_id: &IntegrationId,
    ) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(NEXT_DUE.as_str()))
            .bind(integration_id)
            .fetch_one(&self.read)
            .await?)
    }
}
