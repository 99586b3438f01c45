//! Ingest's write on PostgreSQL: one statement inserts the events and the deliveries,
//! each kind of row bound as one array per column, so the statement's text is the
//! same for any number of rows (prepared once per connection). A statement commits on
//! its own: unless more must go in the same transaction, the write is that one round
//! trip, with no BEGIN and COMMIT around it. More goes in when a write holds live-log
//! entries (of events that ended at ingest), or changes of orders: it first holds
//! those orders and numbers their changes ([`number_order_changes`]), and a change
//! given a lease is leased only if nothing holds it ([`NOT_HELD`]). That check is a
//! statement of its own after the insert, so that it sees every change of the order
//! committed until then (a statement sees what was committed when it started). A
//! write too large for one statement ([`one_statement`]) is split into several, in a
//! transaction.
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

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use sqlx::{PgConnection, Row};

use super::PgStore;
use super::logs::insert_logs;
use super::rows::{STATEMENT_BYTES, STATEMENT_ROWS, columns, parameters, split, storable};
use crate::domain::DeliveryId;
use crate::live_logs::LogRecord;
use crate::store::StoreError;
use crate::store::ingest::{IngestRecord, Written, answers, order_changes, written_leases};
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
            && records
                .iter()
                .all(|r| r.logs.is_empty() && r.deliveries.iter().all(|d| d.order_key.is_none()));
        let stored = if alone {
            let mut conn = self.pool.acquire().await?;
            write(&mut conn, &mut records, true, &HashMap::new()).await?
        } else {
            let mut tx = self.pool.begin().await?;
            let numbers = number_order_changes(&mut tx, &records).await?;
            let mut stored = write(&mut tx, &mut records, at_once, &numbers).await?;
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

/// Holds the orders of the changes given (integrations, order keys: text arrays)
/// until the commit, each on an advisory lock taken in one order (so two writes
/// cannot deadlock on them), and only then takes as many numbers (`$3`) from the
/// sequence. The locks are all taken before the first number: the aggregate reads
/// its input whole before the join gives its one row.
const NUMBER_ORDER_CHANGES: &str = "SELECT nextval('deliveries_order_seq') \
    FROM (SELECT count(*) FROM (SELECT pg_advisory_xact_lock(k) \
              FROM (SELECT DISTINCT hashtextextended(o.integration_id || ' ' || o.order_key, 0) AS k \
                    FROM unnest($1::text[], $2::text[]) AS o (integration_id, order_key) ORDER BY k) AS keys) AS l) AS held, \
         generate_series(1, $3)";

/// Numbers the changes of orders in `records` ([`order_changes`]). Two writes of one
/// order take their numbers one after the other, the second once the first has
/// committed: so an order's numbers follow its commits, and the second's check
/// ([`lease_if_free`]), a statement started after the first committed, sees the
/// first's changes. A lane's lease sees an order's changes committed up to some
/// point, each before all numbered after it.
async fn number_order_changes(
    conn: &mut PgConnection,
    records: &[IngestRecord],
) -> Result<HashMap<DeliveryId, i64>, StoreError> {
    let changes = order_changes(records);
    if changes.is_empty() {
        return Ok(HashMap::new());
    }
    let (integrations, orders): (Vec<&str>, Vec<Cow<str>>) = changes
        .iter()
        .map(|d| {
            let order_key = d.order_key.as_deref().unwrap_or_default();
            (d.parcel.integration_id.as_str(), storable(order_key))
        })
        .unzip();
    let mut numbers: Vec<i64> = sqlx::query_scalar(NUMBER_ORDER_CHANGES)
        .bind(integrations)
        .bind(orders)
        .bind(changes.len() as i32)
        .fetch_all(&mut *conn)
        .await?;
    // Each number is greater than every one this connection took before.
    numbers.sort_unstable();
    Ok(changes
        .iter()
        .map(|d| d.parcel.id.clone())
        .zip(numbers)
        .collect())
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

/// Inserts the events (one array per column, from `$1`).
static EVENTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "new_events AS (INSERT INTO events ({}) SELECT * FROM unnest({}) \
         ON CONFLICT (message_id) DO NOTHING RETURNING message_id)",
        EventRow::COLUMNS.join(", "),
        parameters(1, EventRow::COLUMNS.len())
    )
});

/// Inserts the deliveries (one array per column, from `$first`), each only if its
/// integration exists (locked for share), with the lease it was given if it is of no
/// order.
fn deliveries_from(first: usize) -> String {
    let columns = DeliveryRow::COLUMNS.join(", ");
    format!(
        "candidates AS (SELECT * FROM unnest({parameters}) AS c ({columns})), \
         new_deliveries AS (INSERT INTO deliveries ({columns}) SELECT * FROM candidates \
             WHERE integration_id IN (SELECT id FROM integrations \
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
        EVENTS.as_str()
    )
});

/// The deliveries alone.
static DELIVERIES_ONLY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH {} SELECT NULL::bytea AS message_id, id, leased FROM new_deliveries",
        deliveries_from(1)
    )
});

/// The events and their deliveries, whose columns follow the events'.
static EVENTS_AND_DELIVERIES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH {}, {} \
         SELECT message_id, NULL::text AS id, NULL::boolean AS leased FROM new_events \
         UNION ALL SELECT NULL::bytea, id, leased FROM new_deliveries",
        EVENTS.as_str(),
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
    numbers: &HashMap<DeliveryId, i64>,
) -> Result<Stored, StoreError> {
    let mut events: Vec<EventRow> = Vec::with_capacity(records.len());
    let mut deliveries: Vec<DeliveryRow> = Vec::new();
    for r in records.iter_mut() {
        let payload = std::mem::take(&mut r.event.payload);
        events.push(EventRow {
            event: &r.event,
            payload,
        });
        deliveries.extend(r.deliveries.iter_mut().map(|d| {
            let body = d.body.take();
            let order_seq = numbers.get(&d.parcel.id).copied();
            DeliveryRow {
                delivery: d,
                body,
                order_seq,
            }
        }));
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
        let q = columns(deliveries).bind_to(columns(events).bind_to(q));
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
            let q = columns(chunk).bind_to(q);
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
