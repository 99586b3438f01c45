//! The delivery queue. One row per (event, integration): written at ingest in the same
//! transaction as the event, leased by the integration's lane with an expiry, finished
//! with its live-log entry in one transaction.

use std::collections::HashSet;

use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use super::logs::{self, LogRecord};
use super::{Store, StoreError, pieces};

pub mod state {
    pub const PENDING: &str = "pending";
    pub const DELIVERED: &str = "delivered";
    pub const FAILED: &str = "failed";
    pub const DEAD: &str = "dead";
    pub const FILTERED: &str = "filtered";
    pub const MAPPING_FAILED: &str = "mapping_failed";
    pub const DISCARDED: &str = "discarded";
}

#[derive(Debug, Clone)]
pub struct NewEvent {
    pub message_id: String,
    pub event_name: Option<String>,
    pub received_at: i64,
    /// The event exactly as received.
    pub payload: String,
}

#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: String,
    pub integration_id: String,
    pub message_id: String,
    pub event_name: String,
    pub call: Option<String>,
    pub state: &'static str,
    /// Where the request goes; with `call` and `body` it is the whole request (method
    /// and headers follow from the call, credentials are added when sent).
    pub url: Option<String>,
    pub body: Option<Vec<u8>>,
    pub warnings: Option<String>,
    pub test: bool,
    pub created_at: i64,
}

/// An accepted event with everything ingest decided for it.
#[derive(Debug, Clone)]
pub struct IngestRecord {
    pub event: NewEvent,
    pub deliveries: Vec<NewDelivery>,
    /// Live-log entries of deliveries that ended at ingest (filtered, mapping failed).
    pub logs: Vec<LogRecord>,
}

/// What ingest wrote for one record.
#[derive(Debug, Clone, Default)]
pub struct Written {
    /// The event's messageId was new.
    pub new_event: bool,
    /// Ids of the deliveries written: an event reaches each integration once, so a
    /// delivery to an integration that already had this messageId is not written.
    pub deliveries: Vec<String>,
}

/// A delivery taken by a lane: it belongs to the taker until `lease_token` expires.
#[derive(Debug, Clone)]
pub struct Leased {
    pub id: String,
    pub integration_id: String,
    pub message_id: String,
    pub event_name: String,
    pub call: Option<String>,
    pub attempts: i64,
    pub url: Option<String>,
    pub body: Option<Vec<u8>>,
    pub warnings: Option<String>,
    pub lease_token: String,
    pub created_at: i64,
}

/// What became of a leased delivery.
#[derive(Debug, Clone)]
pub struct Finish {
    pub delivery_id: String,
    pub lease_token: String,
    pub state: &'static str,
    /// Whether this attempt counts against the delivery's attempt budget (a pause on
    /// `401` does not).
    pub count_attempt: bool,
    pub available_at: i64,
    pub log: Option<LogRecord>,
}

/// A dead-lettered delivery as listed.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub id: String,
    pub message_id: String,
    pub event_name: String,
    pub call: Option<String>,
    pub attempts: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct QueueDepth {
    pub pending: i64,
    pub in_flight: i64,
    pub oldest_pending_at: Option<i64>,
    pub dead: i64,
}

/// Which dead letters an operation applies to.
#[derive(Debug, Clone)]
pub enum Selection {
    All,
    Ids(Vec<String>),
}

impl Store {
    /// Writes each event with its deliveries and live-log entries, all in one commit.
    /// A repeated `messageId` is stored once, and reaches each integration once: a
    /// delivery to an integration that already has one for this `messageId` is not
    /// written, nor its log entries. Answers what was written for each record.
    pub async fn ingest(
        &self,
        records: Vec<IngestRecord>,
    ) -> Result<Vec<(IngestRecord, Written)>, StoreError> {
        self.writer()
            .write(move |conn| Box::pin(async move { ingest(conn, records).await }))
            .await
    }

    /// Leases up to `limit` due deliveries of one integration until `lease_until`.
    pub async fn lease(
        &self,
        integration_id: &str,
        limit: usize,
        now: i64,
        lease_until: i64,
        lease_token: &str,
    ) -> Result<Vec<Leased>, StoreError> {
        let (integration_id, token) = (integration_id.to_owned(), lease_token.to_owned());
        self.writer()
            .write(move |conn| {
                Box::pin(async move {
                    let rows = sqlx::query(
                        "UPDATE deliveries SET available_at = ?, lease_token = ?, updated_at = ?
                         WHERE id IN (
                             SELECT id FROM deliveries
                             WHERE integration_id = ? AND state = 'pending' AND available_at <= ?
                             ORDER BY available_at LIMIT ?)
                         RETURNING id, integration_id, message_id, event_name, call, attempts, url, body, warnings, lease_token, created_at",
                    )
                    .bind(lease_until)
                    .bind(&token)
                    .bind(now)
                    .bind(&integration_id)
                    .bind(now)
                    .bind(limit as i64)
                    .fetch_all(&mut *conn)
                    .await?;
                    let mut leased = rows.iter().map(decode_leased).collect::<Result<Vec<_>, _>>()?;
                    // RETURNING gives no order; serve the oldest first.
                    leased.sort_by(|a, b| a.id.cmp(&b.id));
                    Ok(leased)
                })
            })
            .await
    }

    /// Records what became of leased deliveries, with their live-log entries. A
    /// delivery whose lease was lost meanwhile keeps its newer state; its log entry is
    /// still written (the attempt happened). Answers how many leases were lost.
    pub async fn finish(
        &self,
        finishes: Vec<Finish>,
        now: i64,
    ) -> Result<(Vec<Finish>, u64), StoreError> {
        self.writer()
            .write(move |conn| {
                Box::pin(async move {
                    // One statement per chunk: the new state of each delivery comes in
                    // a VALUES list (columns column1.. in SQLite and PostgreSQL alike).
                    let mut updated = 0;
                    let mut rest: &[Finish] = &finishes;
                    for n in pieces(finishes.len(), super::MAX_BINDS / 5) {
                        let (chunk, tail) = rest.split_at(n);
                        rest = tail;
                        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
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
                        updated += q.build().execute(&mut *conn).await?.rows_affected();
                    }
                    let lost = finishes.len() as u64 - updated.min(finishes.len() as u64);
                    // Outcomes of an integration deleted meanwhile are not recorded.
                    let ids: Vec<&str> = finishes.iter().filter_map(|f| f.log.as_ref()).map(|l| l.integration_id.as_str()).collect();
                    let existing = existing_integrations(conn, &ids).await?;
                    let records: Vec<LogRecord> = finishes
                        .iter()
                        .filter_map(|f| f.log.clone())
                        .filter(|l| existing.contains(l.integration_id.as_str()))
                        .collect();
                    logs::insert(conn, &records).await?;
                    Ok((finishes, lost))
                })
            })
            .await
    }

    /// Gives leased deliveries back untouched (shutdown), due at `available_at`.
    pub async fn release(
        &self,
        leases: Vec<(String, String)>,
        available_at: i64,
    ) -> Result<(), StoreError> {
        self.writer()
            .write(move |conn| {
                Box::pin(async move {
                    let mut rest: &[(String, String)] = &leases;
                    for n in pieces(leases.len(), super::MAX_BINDS / 2) {
                        let (chunk, tail) = rest.split_at(n);
                        rest = tail;
                        let mut q: QueryBuilder<Sqlite> =
                            QueryBuilder::new("UPDATE deliveries SET lease_token = NULL, available_at = ");
                        q.push_bind(available_at).push(" FROM (");
                        q.push_values(chunk, |mut b, (id, token)| {
                            b.push_bind(id).push_bind(token);
                        });
                        q.push(
                            ") AS v WHERE deliveries.id = v.column1 AND deliveries.lease_token = v.column2 AND deliveries.state = 'pending'",
                        );
                        q.build().execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .await
    }

    /// Makes every leased delivery due now. Only for a store no other process uses (the
    /// embedded SQLite file at start-up): leases held by a previous, crashed run of
    /// this process would otherwise wait for their expiry.
    pub async fn release_all_leases(&self, now: i64) -> Result<u64, StoreError> {
        self.writer()
            .write(move |conn| {
                Box::pin(async move {
                    Ok(sqlx::query(
                        "UPDATE deliveries SET available_at = ?, lease_token = NULL WHERE state = 'pending' AND lease_token IS NOT NULL",
                    )
                    .bind(now)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected())
                })
            })
            .await
    }

    /// When the integration's next pending delivery falls due, if it has one.
    pub async fn next_due(&self, integration_id: &str) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT MIN(available_at) FROM deliveries WHERE integration_id = ? AND state = 'pending'",
        )
        .bind(integration_id)
        .fetch_one(self.reader())
        .await?)
    }

    pub async fn queue_depth(
        &self,
        integration_id: &str,
        now: i64,
    ) -> Result<QueueDepth, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS pending,
                    COALESCE(SUM(CASE WHEN lease_token IS NOT NULL AND available_at > ? THEN 1 ELSE 0 END), 0) AS in_flight,
                    MIN(created_at) AS oldest
             FROM deliveries WHERE integration_id = ? AND state = 'pending'",
        )
        .bind(now)
        .bind(integration_id)
        .fetch_one(self.reader())
        .await?;
        let dead: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM deliveries WHERE integration_id = ? AND state = 'dead'",
        )
        .bind(integration_id)
        .fetch_one(self.reader())
        .await?;
        Ok(QueueDepth {
            pending: row.try_get("pending")?,
            in_flight: row.try_get("in_flight")?,
            oldest_pending_at: row.try_get("oldest")?,
            dead,
        })
    }

    /// Pending count and oldest pending creation time of every integration with a queue.
    pub async fn all_queue_depths(&self) -> Result<Vec<(String, i64, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT integration_id, COUNT(*) AS pending, MIN(created_at) AS oldest
             FROM deliveries WHERE state = 'pending' GROUP BY integration_id",
        )
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("integration_id")?,
                    r.try_get("pending")?,
                    r.try_get("oldest")?,
                ))
            })
            .collect()
    }

    /// Dead letters of one integration, newest first, older than the id `before`.
    pub async fn list_dead_letters(
        &self,
        integration_id: &str,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT id, message_id, event_name, call, attempts, created_at, updated_at FROM deliveries WHERE integration_id = ",
        );
        q.push_bind(integration_id).push(" AND state = 'dead'");
        if let Some(before) = before {
            q.push(" AND id < ").push_bind(before);
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(limit));
        let rows = q.build().fetch_all(self.reader()).await?;
        rows.iter()
            .map(|r| {
                Ok(DeadLetter {
                    id: r.try_get("id")?,
                    message_id: r.try_get("message_id")?,
                    event_name: r.try_get("event_name")?,
                    call: r.try_get("call")?,
                    attempts: r.try_get("attempts")?,
                    created_at: r.try_get("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                })
            })
            .collect()
    }

    /// Moves dead letters back to the queue with a fresh attempt budget, or discards
    /// them. Answers how many moved.
    pub async fn resolve_dead_letters(
        &self,
        integration_id: &str,
        selection: Selection,
        replay: bool,
        now: i64,
    ) -> Result<u64, StoreError> {
        let integration_id = integration_id.to_owned();
        self.writer()
            .write(move |conn| {
                Box::pin(async move {
                    let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("UPDATE deliveries SET ");
                    if replay {
                        q.push(
                            "state = 'pending', attempts = 0, lease_token = NULL, available_at = ",
                        )
                        .push_bind(now);
                    } else {
                        q.push("state = 'discarded'");
                    }
                    q.push(", updated_at = ")
                        .push_bind(now)
                        .push(" WHERE state = 'dead' AND integration_id = ")
                        .push_bind(integration_id);
                    if let Selection::Ids(ids) = selection {
                        if ids.is_empty() {
                            return Ok(0);
                        }
                        q.push(" AND id IN (");
                        let mut list = q.separated(", ");
                        for id in ids {
                            list.push_bind(id);
                        }
                        list.push_unseparated(")");
                    }
                    Ok(q.build().execute(&mut *conn).await?.rows_affected())
                })
            })
            .await
    }
}

/// Which of `ids` name integrations that exist.
async fn existing_integrations(
    conn: &mut SqliteConnection,
    ids: &[&str],
) -> Result<HashSet<String>, StoreError> {
    let mut wanted: Vec<&str> = ids.to_vec();
    wanted.sort_unstable();
    wanted.dedup();
    if wanted.is_empty() {
        return Ok(HashSet::new());
    }
    let mut q: QueryBuilder<Sqlite> =
        QueryBuilder::new("SELECT id FROM integrations WHERE id IN (");
    let mut list = q.separated(", ");
    for id in wanted {
        list.push_bind(id);
    }
    list.push_unseparated(")");
    let rows = q.build().fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|r| Ok(r.try_get::<String, _>(0)?))
        .collect()
}

fn decode_leased(row: &SqliteRow) -> Result<Leased, StoreError> {
    Ok(Leased {
        id: row.try_get("id")?,
        integration_id: row.try_get("integration_id")?,
        message_id: row.try_get("message_id")?,
        event_name: row.try_get("event_name")?,
        call: row.try_get("call")?,
        attempts: row.try_get("attempts")?,
        url: row.try_get("url")?,
        body: row.try_get("body")?,
        warnings: row.try_get("warnings")?,
        lease_token: row.try_get("lease_token")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Writes the records. What is already stored is found first (only the few repeats
/// come back from the store; new rows are written without reading anything back), and
/// the large values (each event's payload, each request body) are moved into the
/// statements rather than copied, so the records come back without them.
///
/// Finding first is exact: this runs on the only writer, inside its transaction.
async fn ingest(
    conn: &mut SqliteConnection,
    mut records: Vec<IngestRecord>,
) -> Result<Vec<(IngestRecord, Written)>, StoreError> {
    // Events: new unless stored, or repeated earlier in this same write.
    let stored = stored_events(conn, &records).await?;
    let mut seen = HashSet::with_capacity(records.len());
    let new_event: Vec<bool> = records
        .iter()
        .map(|r| {
            let id = r.event.message_id.as_str();
            !stored.contains(id) && seen.insert(id)
        })
        .collect();
    drop(seen);
    // Each new event with its payload, taken out of the record to be moved into the
    // statement.
    let mut events = records
        .iter_mut()
        .zip(&new_event)
        .filter(|(_, new)| **new)
        .map(|(r, _)| {
            let payload = std::mem::take(&mut r.event.payload);
            let r: &IngestRecord = r;
            (&r.event, payload)
        })
        .collect::<Vec<_>>()
        .into_iter();
    for n in pieces(events.len(), super::MAX_BINDS / 4) {
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO events (message_id, event_name, received_at, payload) ");
        q.push_values(events.by_ref().take(n), |mut b, (e, payload)| {
            b.push_bind(&e.message_id)
                .push_bind(&e.event_name)
                .push_bind(e.received_at)
                .push_bind(payload);
        });
        let inserted = q.build().execute(&mut *conn).await?.rows_affected();
        expect_rows("events", inserted, n)?;
    }
    drop(events);

    // Deliveries: an event reaches each integration once. An integration deleted
    // since the request was routed takes nothing (deletes go through this same
    // writer, so this check cannot race them).
    let ids: Vec<&str> = records
        .iter()
        .flat_map(|r| r.deliveries.iter().map(|d| d.integration_id.as_str()))
        .collect();
    let existing = existing_integrations(conn, &ids).await?;
    let candidates: Vec<&NewDelivery> = records
        .iter()
        .flat_map(|r| r.deliveries.iter())
        .filter(|d| existing.contains(d.integration_id.as_str()))
        .collect();
    let stored = stored_deliveries(conn, &candidates).await?;
    let stored: HashSet<(&str, &str)> = stored
        .iter()
        .map(|(i, m)| (i.as_str(), m.as_str()))
        .collect();
    let mut seen = HashSet::with_capacity(candidates.len());
    let written: HashSet<String> = candidates
        .iter()
        .filter(|d| {
            let key = (d.integration_id.as_str(), d.message_id.as_str());
            !stored.contains(&key) && seen.insert(key)
        })
        .map(|d| d.id.clone())
        .collect();
    drop((seen, stored, candidates));
    // Each delivery to write with its body, taken out to be moved into the statement.
    let deliveries: Vec<(&NewDelivery, Option<Vec<u8>>)> = records
        .iter_mut()
        .flat_map(|r| r.deliveries.iter_mut())
        .filter(|d| written.contains(&d.id))
        .map(|d| {
            let body = d.body.take();
            let d: &NewDelivery = d;
            (d, body)
        })
        .collect();
    insert_deliveries(conn, deliveries).await?;

    let log_records: Vec<LogRecord> = records
        .iter()
        .flat_map(|r| r.logs.iter())
        .filter(|l| l.delivery_id.as_ref().is_some_and(|d| written.contains(d)))
        .cloned()
        .collect();
    logs::insert(conn, &log_records).await?;
    Ok(records
        .into_iter()
        .zip(new_event)
        .map(|(r, new_event)| {
            let outcome = Written {
                new_event,
                deliveries: r
                    .deliveries
                    .iter()
                    .filter(|d| written.contains(&d.id))
                    .map(|d| d.id.clone())
                    .collect(),
            };
            (r, outcome)
        })
        .collect())
}

/// The messageIds of `records` already stored.
async fn stored_events(
    conn: &mut SqliteConnection,
    records: &[IngestRecord],
) -> Result<HashSet<String>, StoreError> {
    let mut stored = HashSet::new();
    let mut rest = records;
    for n in pieces(records.len(), super::MAX_BINDS) {
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT message_id FROM events WHERE message_id IN (");
        let mut list = q.separated(", ");
        for r in chunk {
            list.push_bind(&r.event.message_id);
        }
        list.push_unseparated(")");
        for row in q.build().fetch_all(&mut *conn).await? {
            stored.insert(row.try_get::<String, _>(0)?);
        }
    }
    Ok(stored)
}

/// The (integration, messageId) pairs of `deliveries` already stored: one query per
/// integration, on the `deliveries_once` index.
async fn stored_deliveries(
    conn: &mut SqliteConnection,
    deliveries: &[&NewDelivery],
) -> Result<Vec<(String, String)>, StoreError> {
    let mut by_integration: Vec<(&str, Vec<&str>)> = Vec::new();
    for d in deliveries {
        let id = d.integration_id.as_str();
        match by_integration.iter_mut().find(|(i, _)| *i == id) {
            Some((_, ids)) => ids.push(&d.message_id),
            None => by_integration.push((id, vec![&d.message_id])),
        }
    }
    let mut stored = Vec::new();
    for (integration_id, message_ids) in by_integration {
        let mut rest: &[&str] = &message_ids;
        for n in pieces(message_ids.len(), super::MAX_BINDS - 1) {
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            let mut q: QueryBuilder<Sqlite> =
                QueryBuilder::new("SELECT message_id FROM deliveries WHERE integration_id = ");
            q.push_bind(integration_id).push(" AND message_id IN (");
            let mut list = q.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            list.push_unseparated(")");
            for row in q.build().fetch_all(&mut *conn).await? {
                stored.push((integration_id.to_owned(), row.try_get::<String, _>(0)?));
            }
        }
    }
    Ok(stored)
}

/// A write that found first what was stored inserts exactly the rows it expects; any
/// other count means the store changed under the writer, and nothing is acknowledged.
fn expect_rows(table: &str, inserted: u64, expected: usize) -> Result<(), StoreError> {
    if inserted == expected as u64 {
        Ok(())
    } else {
        Err(StoreError::Unavailable(format!(
            "{table}: {inserted} rows inserted where {expected} were expected"
        )))
    }
}

/// Inserts `deliveries` (none of them stored yet), each with its body.
async fn insert_deliveries(
    conn: &mut SqliteConnection,
    deliveries: Vec<(&NewDelivery, Option<Vec<u8>>)>,
) -> Result<(), StoreError> {
    let mut deliveries = deliveries.into_iter();
    for n in pieces(deliveries.len(), super::MAX_BINDS / DELIVERY_COLUMNS) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO deliveries (id, integration_id, message_id, event_name, call, state, attempts, available_at, url, body, warnings, test, created_at, updated_at) ",
        );
        q.push_values(deliveries.by_ref().take(n), |mut b, (d, body)| {
            b.push_bind(&d.id)
                .push_bind(&d.integration_id)
                .push_bind(&d.message_id)
                .push_bind(&d.event_name)
                .push_bind(&d.call)
                .push_bind(d.state)
                .push_bind(0_i64)
                .push_bind(d.created_at)
                .push_bind(&d.url)
                .push_bind(body)
                .push_bind(&d.warnings)
                .push_bind(d.test)
                .push_bind(d.created_at)
                .push_bind(d.created_at);
        });
        let inserted = q.build().execute(&mut *conn).await?.rows_affected();
        expect_rows("deliveries", inserted, n)?;
    }
    Ok(())
}

const DELIVERY_COLUMNS: usize = 14;
