//! The delivery queue on PostgreSQL. A lease takes due rows with
//! `FOR UPDATE SKIP LOCKED`: replicas leasing at once take different rows, never
//! waiting for each other, and a dead replica's leases come back when they expire.

use std::collections::HashSet;
use std::sync::LazyLock;

use sqlx::{Postgres, QueryBuilder};

use super::PgStore;
use super::integrations::existing_integrations;
use super::logs::insert_logs;
use super::orders::apply_order_changes;
use super::rows::storable;
use crate::domain::clock::now_ms;
use crate::domain::{DeliveryId, DeliveryState, IntegrationId, LeaseToken};
use crate::live_logs::LogRecord;
use crate::store::queue::{Finish, Lease, LeaseAsk, NOT_HELD, Parcel};
use crate::store::{MAX_BINDS, StoreError, pieces, rows};

/// Takes the oldest due deliveries of one integration: lease expiry, token, now;
/// integration, now; how many. `pending` is written from its word (see the module
/// doc of `postgres`).
static LEASE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE deliveries SET available_at = $1, lease_token = $2, updated_at = $3
         WHERE id IN (
             SELECT id FROM deliveries d
             WHERE integration_id = $4 AND state = '{}' AND available_at <= $5
               AND {held}
             ORDER BY available_at LIMIT $6
             FOR UPDATE SKIP LOCKED)
         RETURNING id, integration_id, message_id, event_name, call, warnings, test, attempts, url, body, lease_token, order_key",
        DeliveryState::Pending,
        held = NOT_HELD.as_str(),
    )
});

/// When an integration's next delivery is due: integration.
static NEXT_DUE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT MIN(available_at) FROM deliveries d WHERE integration_id = $1 AND state = '{}' AND {held}",
        DeliveryState::Pending,
        held = NOT_HELD.as_str(),
    )
});

/// Which of the integrations given (a text array) have a delivery due: ids, now.
static DUE_AMONG: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT u.id FROM unnest($1::text[]) AS u(id)
         WHERE EXISTS (SELECT 1 FROM deliveries d
                       WHERE d.integration_id = u.id COLLATE \"C\" AND d.state = '{}'
                         AND d.available_at <= $2 AND {held})",
        DeliveryState::Pending,
        held = NOT_HELD.as_str(),
    )
});

impl PgStore {
    pub(in crate::store) async fn lease(
        &self,
        integration_id: &IntegrationId,
        ask: &LeaseAsk,
    ) -> Result<Lease, StoreError> {
        let now = now_ms();
        let rows = sqlx::query(sqlx::AssertSqlSafe(LEASE.as_str()))
            .bind(now + ask.lease_for.as_millis() as i64)
            .bind(&ask.token)
            .bind(now)
            .bind(integration_id)
            .bind(now)
            .bind(ask.limit as i64)
            .fetch_all(&self.pool)
            .await?;
        let mut leased = rows
            .iter()
            .map(rows::leased)
            .collect::<Result<Vec<_>, _>>()?;
        // RETURNING gives no order; serve the oldest first.
        leased.sort_by(|a, b| a.parcel.id.cmp(&b.parcel.id));
        let drained = leased.len() < ask.limit;
        let next_due = if drained {
            self.next_due(integration_id).await?
        } else {
            None
        };
        Ok(Lease {
            taken: leased,
            drained,
            next_due,
        })
    }

    pub(in crate::store) async fn finish(
        &self,
        finishes: Vec<Finish>,
        now: i64,
    ) -> Result<(Vec<Finish>, u64), StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut updated = 0;
        let mut rest: &[Finish] = &finishes;
        for n in pieces(finishes.len(), MAX_BINDS / 5) {
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
                "UPDATE deliveries SET state = v.column3, attempts = attempts + v.column4, available_at = v.column5, lease_token = NULL, updated_at = ",
            );
            q.push_bind(now).push(" FROM (");
            q.push_values(chunk, |mut b, f| {
                b.push_bind(&f.delivery_id)
                    .push_bind(&f.lease_token)
                    .push_bind(f.state)
                    .push_bind(i64::from(f.count_attempt))
                    .push_bind(f.available_at);
            });
            q.push(") AS v WHERE deliveries.id = v.column1 AND deliveries.lease_token = v.column2");
            updated += q.build().execute(&mut *tx).await?.rows_affected();
        }
        let lost = finishes.len() as u64 - updated.min(finishes.len() as u64);
        // Outcomes of an integration deleted meanwhile are not recorded.
        let ids: Vec<&IntegrationId> = finishes.iter().map(|f| &f.log.integration_id).collect();
        let existing: HashSet<IntegrationId> = existing_integrations(&mut tx, &ids).await?;
        let logs: Vec<&LogRecord> = finishes
            .iter()
            .map(|f| &f.log)
            .filter(|l| existing.contains(&l.integration_id))
            .collect();
        insert_logs(&mut tx, &self.replica, &logs).await?;
        let orders: Vec<_> = finishes
            .iter()
            .filter(|f| existing.contains(&f.log.integration_id))
            .filter_map(|f| f.order.as_ref().map(|o| (&f.log.integration_id, o)))
            .collect();
        apply_order_changes(&mut tx, &orders, now).await?;
        tx.commit().await?;
        Ok((finishes, lost))
    }

    pub(in crate::store) async fn release(
        &self,
        leases: Vec<(DeliveryId, LeaseToken)>,
        available_at: i64,
    ) -> Result<(), StoreError> {
        let mut rest: &[(DeliveryId, LeaseToken)] = &leases;
        for n in pieces(leases.len(), MAX_BINDS / 2) {
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            let mut q: QueryBuilder<Postgres> =
                QueryBuilder::new("UPDATE deliveries SET lease_token = NULL, available_at = ");
            q.push_bind(available_at).push(" FROM (");
            q.push_values(chunk, |mut b, (id, token)| {
                b.push_bind(id).push_bind(token);
            });
            q.push(") AS v WHERE deliveries.id = v.column1 AND deliveries.lease_token = v.column2 AND deliveries.state = ")
                .push_bind(DeliveryState::Pending);
            q.build().execute(&self.pool).await?;
        }
        Ok(())
    }

    pub(in crate::store) async fn held_behind(
        &self,
        integration_id: &IntegrationId,
        order_key: &str,
        delivery: &DeliveryId,
    ) -> Result<Vec<Parcel>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, integration_id, message_id, event_name, call, warnings, test FROM deliveries
             WHERE integration_id = $1 AND order_key = $2 AND id > $3 AND state = $4 ORDER BY id",
        )
        .bind(integration_id)
        .bind(storable(order_key).as_ref())
        .bind(delivery)
        .bind(DeliveryState::Pending)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(rows::parcel).collect::<Result<_, _>>()?)
    }

    pub(in crate::store) async fn add_entries(
        &self,
        logs: Vec<LogRecord>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let refs: Vec<&LogRecord> = logs.iter().collect();
        insert_logs(&mut tx, &self.replica, &refs).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(in crate::store) async fn due_among(
        &self,
        ids: &[IntegrationId],
    ) -> Result<Vec<IntegrationId>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = ids.iter().map(IntegrationId::as_str).collect();
        let due: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(DUE_AMONG.as_str()))
            .bind(ids)
            .bind(now_ms())
            .fetch_all(&self.pool)
            .await?;
        Ok(due
            .iter()
            .filter_map(|id| IntegrationId::parse(id).ok())
            .collect())
    }

    pub(in crate::store) async fn next_due(
        &self,
        integration_id: &IntegrationId,
    ) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(NEXT_DUE.as_str()))
            .bind(integration_id)
            .fetch_one(&self.pool)
            .await?)
    }
}
