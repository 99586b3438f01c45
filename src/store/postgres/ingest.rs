//! Ingest's write on PostgreSQL: one statement inserts the events and the deliveries,
//! each kind of row bound as one array per column, so the statement's text is the
//! same for any number of rows (prepared once per connection). A statement commits on
//! its own: unless more must go in the same transaction, the write is that one round
//! trip, with no BEGIN and COMMIT around it. More goes in when a write holds live-log
//! entries (of events that ended at ingest), or a change of an order given a lease,
//! leased only if nothing holds it ([`NOT_HELD`]). That check is a statement of its
//! own after the insert, so that it sees every change of the order committed until
//! then (a statement sees what was committed when it started). A write holds the
//! orders it changes until its commit and numbers their changes ([`OrderNumbers`]),
//! in its insert. A write too large for one statement ([`one_statement`]) is split
//! into several, in a transaction.
//!
//! Other replicas write at the same time, so nothing is found first: each insert skips
//! what is already stored (`ON CONFLICT DO NOTHING`) and returns what it wrote. The
//! integrations the deliveries go to are locked for share until the commit, so a
//! delete on another replica waits for it (or wins, and they take nothing).
//!
//! Writes run concurrently (several per replica, and other replicas'), and an insert
//! that meets a key another open transaction inserted waits for it. So the rows go in
//! key order, events before deliveries, after the orders' locks (in their own order,
//! taken before any row): two writes wait on each other in one order only, and cannot
//! deadlock. In the one statement that order is the executor's: it
//! runs the events' insert to its end when the answer first reads it, before the
//! deliveries' (PostgreSQL does not promise an order among data-modifying `WITH`
//! queries; this is how it runs them, a statement with no parallel plan).
//!
//! [`NOT_HELD`]: crate::store::queue::NOT_HELD

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use sqlx::{PgConnection, Row};

use super::PgStore;
use super::logs::insert_logs;
use super::rows::{STATEMENT_BYTES, STATEMENT_ROWS, columns, parameters, split, storable};
use crate::domain::DeliveryId;
use crate::live_logs::LogRecord;
use crate::store::StoreError;
use crate::store::ingest::{
    IngestRecord, NewDelivery, Written, answers, order_changes, written_leases,
};
use crate::store::queue::LEASE_IF_FREE_POSTGRES;
use crate::store::rows::{DeliveryRow, EventRow, Insert};

impl PgStore {
    pub(in crate::store) async fn ingest(
        &self,
        mut records: Vec<IngestRecord>,
    ) -> Result<Vec<(IngestRecord, Written)>, StoreError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let at_once = one_statement(&records);
        let alone = at_once
            && records.iter().all(|r| {
                r.logs.is_empty() && r.deliveries.iter().all(|d| d.lease_if_free().is_none())
            });
        let mut orders = OrderNumbers::of(&records)?;
        let stored = if alone {
            let mut conn = self.pool.acquire().await?;
            write(&mut conn, &mut records, true, &mut orders).await?
        } else {
            let mut tx = self.pool.begin().await?;
            if !at_once {
                orders.hold(&mut tx).await?;
            }
            let mut stored = write(&mut tx, &mut records, at_once, &mut orders).await?;
            let leased = lease_if_free(&mut tx, &records, &stored.written).await?;
            stored.leased.extend(leased);
            let logs: Vec<&LogRecord> = records
                .iter()
                .flat_map(|r| r.logs.iter())
                .filter(|l| {
                    l.delivery_id
                        .as_ref()
                        .is_some_and(|d| stored.written.contains(d))
                })
                .collect();
            insert_logs(&mut tx, &self.replica, &logs).await?;
            tx.commit().await?;
            stored
        };
        Ok(answers(
            records,
            stored.new_event,
            &stored.written,
            &stored.leased,
        ))
    }
}

/// Holds the orders a write changes until its commit, and gives the write its block
/// of numbers (`base`), from the parameter `$p`: the orders' integrations and keys
/// (text arrays, one pair per change), then the block if it was taken already. Each
/// order is held on an advisory lock, taken in one order (so two writes cannot
/// deadlock on them), all before the block is taken (`block` reads `held` whole). A
/// block is a step of the sequence (2^20 numbers); a change's number is the block
/// plus its rank among its order's changes in the write ([`OrderNumbers`]).
fn orders_held(p: usize) -> String {
    format!(
        "held AS (SELECT count(*) AS n FROM (SELECT pg_advisory_xact_lock(k) \
             FROM (SELECT DISTINCT hashtextextended(o.integration_id || ' ' || o.order_key, 0) AS k \
                   FROM unnest(${p}::text[], ${q}::text[]) AS o (integration_id, order_key) \
                   ORDER BY k) AS keys) AS l), \
         block AS (SELECT COALESCE(${r}::bigint, nextval('deliveries_order_seq')) AS base FROM held)",
        q = p + 1,
        r = p + 2,
    )
}

/// Holds the orders alone, and takes the write's block: for a write of several
/// statements, before its first.
static HOLD_ORDERS: LazyLock<String> =
    LazyLock::new(|| format!("WITH {} SELECT base FROM block", orders_held(1)));

/// Ranks at most this many changes of one order in one write: the sequence's step.
const BLOCK: i64 = 1 << 20;

/// Numbers the changes of orders in a write ([`order_changes`]). Two writes of one
/// order take their blocks one after the other, the second once the first has
/// committed: so an order's numbers follow its commits, and the second's check
/// ([`lease_if_free`]), a statement after the one that waited for the order, sees the
/// first's changes. A lane's lease sees an order's changes committed up to some
/// point, each before all numbered after it. A write of one statement holds the
/// orders and takes its block in that statement ([`orders_held`]); one of several
/// does so first ([`OrderNumbers::hold`]).
#[derive(Default)]
struct OrderNumbers {
    /// Each change's rank among its order's changes in the write, by id.
    ranks: HashMap<DeliveryId, i64>,
    /// The orders to hold (integration, order key), once per change; empty once held.
    integrations: Vec<String>,
    orders: Vec<String>,
    /// The block, once taken.
    base: Option<i64>,
}

impl OrderNumbers {
    /// Refuses a write with more changes of one order than a block numbers.
    fn of(records: &[IngestRecord]) -> Result<Self, StoreError> {
        let mut numbers = Self::default();
        // Keyed as stored: two keys that store the same are one order.
        let stored = |d: &NewDelivery| {
            let order_key = d.order_key.as_deref().unwrap_or_default();
            (
                d.parcel.integration_id.clone(),
                storable(order_key).into_owned(),
            )
        };
        for (d, (integration, order_key), rank) in order_changes(records, stored) {
            if rank >= BLOCK {
                return Err(StoreError::Unavailable(format!(
                    "more than {BLOCK} changes of one order in one write"
                )));
            }
            numbers.ranks.insert(d.parcel.id.clone(), rank);
            numbers.integrations.push(integration.as_str().to_owned());
            numbers.orders.push(order_key);
        }
        Ok(numbers)
    }

    /// Holds the orders and takes the block, in a statement of its own.
    async fn hold(&mut self, conn: &mut PgConnection) -> Result<(), StoreError> {
        if self.ranks.is_empty() {
            return Ok(());
        }
        let base: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(HOLD_ORDERS.as_str()))
            .bind(std::mem::take(&mut self.integrations))
            .bind(std::mem::take(&mut self.orders))
            .bind(None::<i64>)
            .fetch_one(&mut *conn)
            .await?;
        self.base = Some(base);
        Ok(())
    }

    /// A change's rank, which the statement adds to the block.
    fn rank(&self, id: &DeliveryId) -> Option<i64> {
        self.ranks.get(id).copied()
    }

    /// Binds what [`orders_held`] reads, moving the orders out: the first statement
    /// that binds them holds them until the commit.
    fn bind_to<'q>(
        &mut self,
        q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        q.bind(std::mem::take(&mut self.integrations))
            .bind(std::mem::take(&mut self.orders))
            .bind(self.base)
    }
}

/// Whether the events and deliveries of `records` go in one statement.
fn one_statement(records: &[IngestRecord]) -> bool {
    let deliveries = records.iter().map(|r| r.deliveries.len()).sum::<usize>();
    records.len() <= STATEMENT_ROWS
        && deliveries <= STATEMENT_ROWS
        && records.iter().map(bytes).sum::<usize>() <= STATEMENT_BYTES
}

/// The bytes of a record's event and bodies, before packing.
fn bytes(record: &IngestRecord) -> usize {
    let bodies = record.deliveries.iter();
    record.event.payload.len()
        + bodies
            .map(|d| d.body.as_ref().map_or(0, Vec::len))
            .sum::<usize>()
}

/// Inserts the events (one array per column, from `$1`); `after_held`, only once the
/// orders are held ([`orders_held`]: a one-time filter, evaluated before the first
/// event row is read).
fn events(after_held: bool) -> String {
    format!(
        "new_events AS (INSERT INTO events ({}) SELECT * FROM unnest({}) {} \
         ON CONFLICT (message_id) DO NOTHING RETURNING message_id)",
        EventRow::COLUMNS.join(", "),
        parameters(1, EventRow::COLUMNS.len()),
        if after_held {
            "WHERE (SELECT n FROM held) >= 0"
        } else {
            ""
        }
    )
}

/// Inserts the deliveries (one array per column, from `$first`), each only if its
/// integration exists (locked for share), with the lease it was given if it is of no
/// order, and a change of an order with its number (its rank plus the block). Only
/// once the orders are held (the same one-time filter as the events'), so also
/// before the integrations are locked.
fn deliveries_from(first: usize) -> String {
    let columns = DeliveryRow::COLUMNS.join(", ");
    let values = DeliveryRow::COLUMNS
        .iter()
        .map(|&c| match c {
            "order_seq" => "CASE WHEN c.order_seq IS NULL THEN NULL \
                 ELSE c.order_seq + (SELECT base FROM block) END"
                .to_owned(),
            c => format!("c.{c}"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "candidates AS (SELECT * FROM unnest({parameters}) AS c ({columns})), \
         new_deliveries AS (INSERT INTO deliveries ({columns}) SELECT {values} FROM candidates c \
             WHERE (SELECT n FROM held) >= 0 AND c.integration_id IN (SELECT id FROM integrations \
                 WHERE id = ANY(ARRAY(SELECT integration_id FROM candidates)) ORDER BY id FOR SHARE) \
             ON CONFLICT (integration_id, message_id) DO NOTHING \
             RETURNING id, lease_token IS NOT NULL AS leased)",
        parameters = parameters(first, DeliveryRow::COLUMNS.len()),
    )
}

/// The events alone. Each statement answers a row per new event (its messageId), then
/// a row per delivery written (its id, and whether it went in leased).
static EVENTS_ONLY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH {} SELECT message_id, NULL::text AS id, NULL::boolean AS leased FROM new_events",
        events(false)
    )
});

/// The deliveries alone (of a write whose orders are held already). Parameters: the
/// deliveries' columns from `$1`, then [`orders_held`]'s three.
static DELIVERIES_ONLY: LazyLock<String> = LazyLock::new(|| {
    let columns = DeliveryRow::COLUMNS.len();
    format!(
        "WITH {}, {} SELECT NULL::bytea AS message_id, id, leased FROM new_deliveries",
        orders_held(columns + 1),
        deliveries_from(1)
    )
});

/// The events and their deliveries. Parameters: the events' columns from `$1`, the
/// deliveries' after them, then [`orders_held`]'s three.
static EVENTS_AND_DELIVERIES: LazyLock<String> = LazyLock::new(|| {
    let columns = EventRow::COLUMNS.len() + DeliveryRow::COLUMNS.len();
    format!(
        "WITH {}, {}, {} \
         SELECT message_id, NULL::text AS id, NULL::boolean AS leased FROM new_events \
         UNION ALL SELECT NULL::bytea, id, leased FROM new_deliveries",
        orders_held(columns + 1),
        events(true),
        deliveries_from(EventRow::COLUMNS.len() + 1),
    )
});

/// What a write stored.
#[derive(Default)]
struct Stored {
    /// Per record, whether its event was new.
    new_event: Vec<bool>,
    /// The deliveries written.
    written: HashSet<DeliveryId>,
    /// Of those, the ones written leased.
    leased: HashSet<DeliveryId>,
}

/// Writes the events and deliveries of `records` (their payloads and bodies moved
/// out): in one statement if they fit (`at_once`, [`one_statement`]), or else (in the
/// caller's transaction) the events then the deliveries, each in statements of
/// [`STATEMENT_ROWS`] and [`STATEMENT_BYTES`] at most, in key order throughout. A
/// delivery of an order goes in unleased ([`lease_if_free`]).
async fn write(
    conn: &mut PgConnection,
    records: &mut [IngestRecord],
    at_once: bool,
    orders: &mut OrderNumbers,
) -> Result<Stored, StoreError> {
    let mut events: Vec<EventRow> = Vec::with_capacity(records.len());
    let mut deliveries: Vec<DeliveryRow> = Vec::new();
    for r in records.iter_mut() {
        let payload = std::mem::take(&mut r.event.payload);
        events.push(EventRow {
            event: &r.event,
            payload,
        });
        for d in r.deliveries.iter_mut() {
            let order_seq = orders.rank(&d.parcel.id);
            let body = d.body.take();
            deliveries.push(DeliveryRow {
                delivery: d,
                body,
                order_seq,
            });
        }
    }
    events.sort_by(|a, b| a.event.message_id.cmp(&b.event.message_id));
    deliveries.sort_by(|a, b| {
        let (a, b) = (&a.delivery.parcel, &b.delivery.parcel);
        (a.integration_id.as_str(), &a.message_id).cmp(&(b.integration_id.as_str(), &b.message_id))
    });
    let mut stored = HashSet::new();
    let mut answer = Stored::default();
    if at_once {
        let sql = if deliveries.is_empty() {
            EVENTS_ONLY.as_str()
        } else {
            EVENTS_AND_DELIVERIES.as_str()
        };
        let q = sqlx::query(sqlx::AssertSqlSafe(sql));
        let with_deliveries = !deliveries.is_empty();
        let q = columns(deliveries).bind_to(columns(events).bind_to(q));
        let q = if with_deliveries {
            orders.bind_to(q)
        } else {
            q
        };
        read(q.fetch_all(&mut *conn).await?, &mut stored, &mut answer)?;
    } else {
        let event_bytes = |e: &EventRow| e.payload.len();
        for chunk in split(events, event_bytes) {
            let q = columns(chunk).bind_to(sqlx::query(sqlx::AssertSqlSafe(EVENTS_ONLY.as_str())));
            read(q.fetch_all(&mut *conn).await?, &mut stored, &mut answer)?;
        }
        let body_bytes = |d: &DeliveryRow| d.body.as_ref().map_or(0, Vec::len);
        for chunk in split(deliveries, body_bytes) {
            let q = sqlx::query(sqlx::AssertSqlSafe(DELIVERIES_ONLY.as_str()));
            let q = orders.bind_to(columns(chunk).bind_to(q));
            read(q.fetch_all(&mut *conn).await?, &mut stored, &mut answer)?;
        }
    }
    // Of records with the same messageId, only the first counts its event as new.
    answer.new_event = records
        .iter()
        .map(|r| stored.remove(r.event.message_id.as_bytes()))
        .collect();
    Ok(answer)
}

/// Reads a statement's answer: new events' messageIds into `stored`, deliveries into
/// `answer`.
fn read(
    rows: Vec<sqlx::postgres::PgRow>,
    stored: &mut HashSet<Vec<u8>>,
    answer: &mut Stored,
) -> Result<(), StoreError> {
    for row in rows {
        if let Some(message_id) = row.try_get::<Option<Vec<u8>>, _>(0)? {
            stored.insert(message_id);
            continue;
        }
        let id: DeliveryId = row.try_get(1)?;
        if row.try_get::<bool, _>(2)? {
            answer.leased.insert(id.clone());
        }
        answer.written.insert(id);
    }
    Ok(())
}

/// Of the deliveries `written`, those of an order given a lease at ingest, leased if
/// nothing holds them ([`NOT_HELD`]), in one statement: answers those leased.
///
/// [`NOT_HELD`]: crate::store::queue::NOT_HELD
async fn lease_if_free(
    conn: &mut PgConnection,
    records: &[IngestRecord],
    written: &HashSet<DeliveryId>,
) -> Result<HashSet<DeliveryId>, StoreError> {
    let (_, to_check) = written_leases(records, written);
    if to_check.is_empty() {
        return Ok(HashSet::new());
    }
    let ids: Vec<&str> = to_check.iter().map(|(id, _)| id.as_str()).collect();
    let tokens: Vec<&str> = to_check.iter().map(|(_, l)| l.token.as_str()).collect();
    let until: Vec<i64> = to_check.iter().map(|(_, l)| l.until).collect();
    let rows = sqlx::query(sqlx::AssertSqlSafe(LEASE_IF_FREE_POSTGRES.as_str()))
        .bind(&ids)
        .bind(&tokens)
        .bind(&until)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|row| Ok(row.try_get::<DeliveryId, _>(0)?))
        .collect()
}
