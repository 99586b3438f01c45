//! The delivery queue on PostgreSQL. A lease takes due rows with
//! `FOR UPDATE SKIP LOCKED`: replicas leasing at once take different rows, never
//! waiting for each other, and a dead replica's leases come back when they expire.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::LazyLock;

use sqlx::{PgConnection, Postgres, QueryBuilder, Row};

use super::PgStore;
use super::logs::{EXISTING, insert_logs, integrations_of, log_bytes, write_logs};
use super::rows::{columns, split, storable};
use crate::domain::clock::now_ms;
use crate::domain::{DeliveryId, DeliveryState, IntegrationId, LeaseToken};
use crate::live_logs::LogRecord;
use crate::store::orders::OrderChange;
use crate::store::pack::{Kind, pack};
use crate::store::queue::{Finish, Lease, LeaseAsk, NOT_HELD, Parcel};
use crate::store::{MAX_BINDS, StoreError, pieces, rows};

/// Takes the oldest due deliveries of one integration: lease expiry, token, now;
/// integration, now; how many. `pending` is written from its word (see the module
/// doc of `postgres`). When it takes fewer than asked (nothing else is due), one more
/// row, with no id, says when the integration's next delivery falls due
/// (`next_due`), so that a drained lane needs no second round trip to know how long
/// it may sleep. The statement sees the rows it takes as they were (due now): they
/// count at their new expiry (`$1`), the others at theirs.
static LEASE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH taken AS (UPDATE deliveries SET available_at = $1, lease_token = $2, updated_at = $3
             WHERE id IN (
                 SELECT id FROM deliveries d
                 WHERE integration_id = $4 AND state = '{pending}' AND available_at <= $5
                   AND {held}
                 ORDER BY available_at LIMIT $6
                 FOR UPDATE SKIP LOCKED)
             RETURNING {LEASED})
         SELECT {LEASED}, NULL::bigint AS next_due FROM taken
         UNION ALL
         SELECT {nothing}, LEAST(({others}), (SELECT MIN($1::bigint) FROM taken))
         WHERE (SELECT count(*) FROM taken) < $6",
        pending = DeliveryState::Pending,
        held = NOT_HELD.as_str(),
        nothing = vec!["NULL"; LEASED.split(", ").count()].join(", "),
        others = next_due_sql(4, "AND d.id <> ALL (ARRAY(SELECT id FROM taken))"),
    )
});

/// The columns of a leased delivery.
const LEASED: &str = "id, integration_id, message_id, event_name, call, warnings, test, attempts, url, body, lease_token, order_key";

/// When an integration's next delivery is due: integration.
static NEXT_DUE: LazyLock<String> = LazyLock::new(|| next_due_sql(1, ""));

/// When the next delivery of the integration `$param` is due, of those that also meet
/// `and` (a condition on `d`, the delivery).
fn next_due_sql(param: usize, and: &str) -> String {
    format!(
        "SELECT MIN(available_at) FROM deliveries d WHERE integration_id = ${param} AND state = '{}' AND {held} {and}",
        DeliveryState::Pending,
        held = NOT_HELD.as_str(),
    )
}

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
        let mut leased = Vec::with_capacity(rows.len());
        let mut next_due = None;
        for row in &rows {
            if row.try_get::<Option<&str>, _>("id")?.is_some() {
                leased.push(rows::leased(row)?);
            } else {
                next_due = row.try_get("next_due")?;
            }
        }
        // RETURNING gives no order; serve the oldest first.
        leased.sort_by(|a, b| a.parcel.id.cmp(&b.parcel.id));
        Ok(Lease {
            drained: leased.len() < ask.limit,
            taken: leased,
            next_due,
        })
    }

    pub(in crate::store) async fn finish(
        &self,
        finishes: Vec<Finish>,
        now: i64,
    ) -> Result<(Vec<Finish>, u64), StoreError> {
        if finishes.is_empty() {
            return Ok((finishes, 0));
        }
        let pieces = split(in_count_order(&finishes), finish_bytes);
        let mut updated = 0;
        if let [piece] = pieces.as_slice() {
            let mut conn = self.pool.acquire().await?;
            updated = finish_piece(&mut conn, &self.replica, piece, now).await?;
        } else {
            let mut tx = self.pool.begin().await?;
            for piece in &pieces {
                updated += finish_piece(&mut tx, &self.replica, piece, now).await?;
            }
            tx.commit().await?;
        }
        let lost = finishes.len() as u64 - updated.min(finishes.len() as u64);
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
             WHERE integration_id = $1 AND order_key = $2
               AND order_seq > (SELECT order_seq FROM deliveries WHERE id = $3) AND state = $4
             ORDER BY order_seq",
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

/// Records attempts' outcomes: the deliveries' new states (each only while its lease is
/// held), what delivered order calls left at Button, and the entries with their
/// counts and announcement; nothing for an integration deleted meanwhile. The
/// deliveries are updated only once every integration is locked (`existing`, read
/// whole first as the array the update compares with): a delete, which locks the
/// integration and then its deliveries, never waits on a delivery this holds while
/// this waits on the integration. (Written as `IN (SELECT id FROM existing)`, the
/// planner joined from the integration to all of its deliveries: one finish read
/// every delivery the integration had.)
/// Parameters: the integrations (`existing`), this replica, now; the deliveries' id,
/// lease token, state, attempts to add and next due time; the orders sent
/// (integration, order, packed body) and cancelled (integration, order); then the
/// entries' columns. Answers the deliveries updated.
static FINISH: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH {EXISTING}, \
         finished AS (UPDATE deliveries SET state = v.state, attempts = deliveries.attempts + v.attempts, \
                 available_at = v.available_at, lease_token = NULL, updated_at = $3 \
             FROM unnest($4::text[], $5::text[], $6::text[], $7::bigint[], $8::bigint[]) \
                 AS v (id, lease_token, state, attempts, available_at) \
             WHERE deliveries.id = v.id AND deliveries.lease_token = v.lease_token \
                 AND deliveries.integration_id = ANY((SELECT array_agg(id) FROM existing)::text[]) \
             RETURNING 1), \
         sent AS (INSERT INTO order_states (integration_id, order_id, body, updated_at) \
             SELECT s.integration_id, s.order_id, s.body, $3 \
             FROM unnest($9::text[], $10::text[], $11::bytea[]) AS s (integration_id, order_id, body) \
             WHERE s.integration_id IN (SELECT id FROM existing) ORDER BY 1, 2 \
             ON CONFLICT (integration_id, order_id) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at), \
         cancelled AS (DELETE FROM order_states o USING unnest($12::text[], $13::text[]) AS c (integration_id, order_id) \
             WHERE o.integration_id = c.integration_id AND o.order_id = c.order_id \
                 AND c.integration_id IN (SELECT id FROM existing)), \
         {} \
         SELECT (SELECT count(*) FROM finished), (SELECT count(*) FROM notes)",
        write_logs(14, 2)
    )
});

/// `finishes` by integration and outcome (stable: an order's changes keep their
/// order), so that the pieces of a split write update the counting rows in key order
/// across the whole transaction, as one statement does within itself.
fn in_count_order(finishes: &[Finish]) -> Vec<&Finish> {
    let mut sorted: Vec<&Finish> = finishes.iter().collect();
    sorted.sort_by_key(|f| (f.log.integration_id.as_str(), f.log.outcome.as_str()));
    sorted
}

/// About the bytes a finish binds: its entry, and an order's body.
fn finish_bytes(finish: &&Finish) -> usize {
    let order = match &finish.order {
        Some(OrderChange::Sent { body, .. }) => body.len(),
        _ => 0,
    };
    log_bytes(&finish.log) + order
}

/// Records `finishes` in one statement ([`FINISH`]): answers how many deliveries were
/// still leased to them.
async fn finish_piece(
    conn: &mut PgConnection,
    replica: &str,
    finishes: &[&Finish],
    now: i64,
) -> Result<u64, StoreError> {
    let mut deliveries: Vec<&Finish> = finishes.to_vec();
    deliveries.sort_by(|a, b| a.delivery_id.cmp(&b.delivery_id));
    // An order's last change in the piece is what Button has: one row per order.
    // Keyed as stored: two ids that store the same are one row.
    let mut orders: BTreeMap<(&str, Cow<str>), &OrderChange> = BTreeMap::new();
    for f in finishes {
        if let Some(change) = &f.order {
            orders.insert(
                (f.log.integration_id.as_str(), storable(change.order_id())),
                change,
            );
        }
    }
    let (mut sent, mut cancelled) = (OrderColumns::default(), OrderColumns::default());
    for ((integration_id, order_id), change) in orders {
        let to = match change {
            OrderChange::Sent { body, .. } => {
                sent.bodies.push(pack(Kind::Request, body.as_bytes()));
                &mut sent
            }
            OrderChange::Cancelled { .. } => &mut cancelled,
        };
        to.integrations.push(integration_id);
        to.orders.push(order_id);
    }
    let logs: Vec<&LogRecord> = finishes.iter().map(|f| &f.log).collect();
    let q = sqlx::query(sqlx::AssertSqlSafe(FINISH.as_str()))
        .bind(integrations_of(logs.iter().copied()))
        .bind(replica)
        .bind(now)
        .bind(each(&deliveries, |f| f.delivery_id.as_str()))
        .bind(each(&deliveries, |f| f.lease_token.as_str()))
        .bind(each(&deliveries, |f| f.state.as_str()))
        .bind(each(&deliveries, |f| i64::from(f.count_attempt)))
        .bind(each(&deliveries, |f| f.available_at))
        .bind(sent.integrations)
        .bind(sent.orders)
        .bind(sent.bodies)
        .bind(cancelled.integrations)
        .bind(cancelled.orders);
    let row = columns(logs).bind_to(q).fetch_one(&mut *conn).await?;
    let updated: i64 = row.try_get(0)?;
    Ok(updated as u64)
}

/// One value of each finish: a column bound as an array.
fn each<'a, T>(finishes: &[&'a Finish], value: impl Fn(&'a Finish) -> T) -> Vec<T> {
    finishes.iter().map(|f| value(f)).collect()
}

/// Orders' changes of one kind, one array per column.
#[derive(Default)]
struct OrderColumns<'a> {
    integrations: Vec<&'a str>,
    orders: Vec<Cow<'a, str>>,
    bodies: Vec<Vec<u8>>,
}
