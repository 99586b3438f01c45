//! Ingest's write on SQLite. What is already stored is found first (only the few
//! repeats come back from the store; new rows are written without reading anything
//! back), and the large values (each event's payload, each request body) are moved
//! into the statements rather than copied, so the records come back without them.
//!
//! Finding first is exact: this runs on the only writer, inside its transaction.

use std::collections::HashSet;

use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use super::SqliteStore;
use super::integrations::existing_integrations;
use super::logs::insert_logs;
use super::rows::insert;
use crate::domain::{DeliveryId, IntegrationId};
use crate::live_logs::LogRecord;
use crate::store::ingest::{IngestRecord, NewDelivery, Written};
use crate::store::rows::{DeliveryRow, EventRow};
use crate::store::{MAX_BINDS, StoreError, pieces};

impl SqliteStore {
    pub(in crate::store) async fn ingest(
        &self,
        records: Vec<IngestRecord>,
    ) -> Result<Vec<(IngestRecord, Written)>, StoreError> {
        self.writer
            .write(move |conn| Box::pin(async move { write(conn, records).await }))
            .await
    }
}

async fn write(
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
    let events: Vec<EventRow> = records
        .iter_mut()
        .zip(&new_event)
        .filter(|(_, new)| **new)
        .map(|(r, _)| {
            let payload = std::mem::take(&mut r.event.payload);
            EventRow {
                event: &r.event,
                payload,
            }
        })
        .collect();
    let expected = events.len();
    expect_rows("events", insert(conn, events).await?, expected)?;

    // Deliveries: an event reaches each integration once. An integration deleted
    // since the request was routed takes nothing (deletes go through this same
    // writer, so this check cannot race them).
    let ids: Vec<&IntegrationId> = records
        .iter()
        .flat_map(|r| r.deliveries.iter().map(|d| &d.parcel.integration_id))
        .collect();
    let existing = existing_integrations(conn, &ids).await?;
    let candidates: Vec<&NewDelivery> = records
        .iter()
        .flat_map(|r| r.deliveries.iter())
        .filter(|d| existing.contains(&d.parcel.integration_id))
        .collect();
    let stored = stored_deliveries(conn, &candidates).await?;
    let stored: HashSet<(&IntegrationId, &str)> =
        stored.iter().map(|(i, m)| (i, m.as_str())).collect();
    let mut seen = HashSet::with_capacity(candidates.len());
    let written: HashSet<DeliveryId> = candidates
        .iter()
        .filter(|d| {
            let key = (&d.parcel.integration_id, d.parcel.message_id.as_str());
            !stored.contains(&key) && seen.insert(key)
        })
        .map(|d| d.parcel.id.clone())
        .collect();
    drop((seen, stored, candidates));
    let deliveries: Vec<DeliveryRow> = records
        .iter_mut()
        .flat_map(|r| r.deliveries.iter_mut())
        .filter(|d| written.contains(&d.parcel.id))
        .map(|d| {
            let body = d.body.take();
            DeliveryRow { delivery: d, body }
        })
        .collect();
    let expected = deliveries.len();
    expect_rows("deliveries", insert(conn, deliveries).await?, expected)?;

    let logs: Vec<&LogRecord> = records
        .iter()
        .flat_map(|r| r.logs.iter())
        .filter(|l| l.delivery_id.as_ref().is_some_and(|d| written.contains(d)))
        .collect();
    insert_logs(conn, &logs).await?;
    Ok(records
        .into_iter()
        .zip(new_event)
        .map(|(r, new_event)| {
            let outcome = Written {
                new_event,
                deliveries: r
                    .deliveries
                    .iter()
                    .filter(|d| written.contains(&d.parcel.id))
                    .map(|d| d.parcel.id.clone())
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
    for n in pieces(records.len(), MAX_BINDS) {
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
) -> Result<Vec<(IntegrationId, String)>, StoreError> {
    let mut by_integration: Vec<(&IntegrationId, Vec<&str>)> = Vec::new();
    for d in deliveries {
        let p = &d.parcel;
        match by_integration
            .iter_mut()
            .find(|(i, _)| *i == &p.integration_id)
        {
            Some((_, ids)) => ids.push(&p.message_id),
            None => by_integration.push((&p.integration_id, vec![&p.message_id])),
        }
    }
    let mut stored = Vec::new();
    for (integration_id, message_ids) in by_integration {
        let mut rest: &[&str] = &message_ids;
        for n in pieces(message_ids.len(), MAX_BINDS - 1) {
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
                stored.push((integration_id.clone(), row.try_get::<String, _>(0)?));
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
