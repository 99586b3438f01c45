//! Ingest's write on SQLite. What is already stored is found first (only the few
//! repeats come back from the store; new rows are written without reading anything
//! back), and the large values (each event's payload, each request body) are moved
//! into the statements rather than copied, so the records come back without them.
//!
//! Finding first is exact: this runs on the only writer, inside its transaction, on
//! its direct connection (one prepared statement per lookup and per row).

use std::collections::{HashMap, HashSet};

use rusqlite::OptionalExtension;

use super::SqliteStore;
use super::integrations::existing_integrations;
use super::logs::insert_logs;
use super::rows::insert_direct;
use crate::domain::{DeliveryId, IntegrationId};
use crate::live_logs::LogRecord;
use crate::store::StoreError;
use crate::store::ingest::{
    IngestRecord, NewDelivery, Written, answers, order_changes, written_leases,
};
use crate::store::queue::LEASE_IF_FREE_SQLITE;
use crate::store::rows::{DeliveryRow, EventRow};

impl SqliteStore {
    pub(in crate::store) async fn ingest(
        &self,
        records: Vec<IngestRecord>,
    ) -> Result<Vec<(IngestRecord, Written)>, StoreError> {
        self.writer.direct(move |db| write(db, records)).await
    }
}

fn write(
    db: &rusqlite::Connection,
    mut records: Vec<IngestRecord>,
) -> Result<Vec<(IngestRecord, Written)>, StoreError> {
    // Events: new unless stored, or repeated earlier in this same write.
    let stored = stored_events(db, &records)?;
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
    expect_rows("events", insert_direct(db, events)?, expected)?;

    // Deliveries: an event reaches each integration once. An integration deleted
    // since the request was routed takes nothing (deletes go through this same
    // writer, so this check cannot race them).
    let ids: Vec<&IntegrationId> = records
        .iter()
        .flat_map(|r| r.deliveries.iter().map(|d| &d.parcel.integration_id))
        .collect();
    let existing = existing_integrations(db, &ids)?;
    let candidates: Vec<&NewDelivery> = records
        .iter()
        .flat_map(|r| r.deliveries.iter())
        .filter(|d| existing.contains(&d.parcel.integration_id))
        .collect();
    let stored = stored_deliveries(db, &candidates)?;
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
    let numbers = number_order_changes(db, &records, &written)?;
    let deliveries: Vec<DeliveryRow> = records
        .iter_mut()
        .flat_map(|r| r.deliveries.iter_mut())
        .filter(|d| written.contains(&d.parcel.id))
        .map(|d| {
            let body = d.body.take();
            let order_seq = numbers.get(&d.parcel.id).copied();
            DeliveryRow {
                delivery: d,
                body,
                order_seq,
            }
        })
        .collect();
    let expected = deliveries.len();
    expect_rows("deliveries", insert_direct(db, deliveries)?, expected)?;
    let leased = lease_written(db, &records, &written)?;

    let logs: Vec<&LogRecord> = records
        .iter()
        .flat_map(|r| r.logs.iter())
        .filter(|l| l.delivery_id.as_ref().is_some_and(|d| written.contains(d)))
        .collect();
    insert_logs(db, &logs)?;
    Ok(answers(records, new_event, &written, &leased))
}

/// The last number an order's changes took: integration, order key.
pub(super) const LAST_ORDER_SEQ: &str =
    "SELECT ifnull(max(order_seq), 0) FROM deliveries WHERE integration_id = ? AND order_key = ?";

/// Numbers the changes of orders `written` ([`order_changes`]): each order's last
/// stored number, plus one, plus the change's rank in the write. This is the only
/// writer, so the numbers follow the commits.
fn number_order_changes(
    db: &rusqlite::Connection,
    records: &[IngestRecord],
    written: &HashSet<DeliveryId>,
) -> Result<HashMap<DeliveryId, i64>, StoreError> {
    let mut numbers = HashMap::new();
    let mut last: HashMap<(&IntegrationId, &str), i64> = HashMap::new();
    let changes = order_changes(records, |d| {
        (&d.parcel.integration_id, d.order_key.as_deref())
    });
    for (d, (integration, order_key), rank) in changes {
        let (Some(order_key), true) = (order_key, written.contains(&d.parcel.id)) else {
            continue;
        };
        let stored = match last.get(&(integration, order_key)) {
            Some(&n) => n,
            None => {
                let mut find = db.prepare_cached(LAST_ORDER_SEQ)?;
                let n = find.query_row(rusqlite::params![integration, order_key], |row| {
                    row.get::<_, i64>(0)
                })?;
                last.insert((integration, order_key), n);
                n
            }
        };
        numbers.insert(d.parcel.id.clone(), stored + 1 + rank);
    }
    Ok(numbers)
}

/// Of the deliveries written, those now leased: each written with its lease, and
/// each of an order whose lease held once written (nothing earlier of the order
/// pending, failed or dead).
fn lease_written(
    db: &rusqlite::Connection,
    records: &[IngestRecord],
    written: &HashSet<DeliveryId>,
) -> Result<HashSet<DeliveryId>, StoreError> {
    let (mut leased, to_check) = written_leases(records, written);
    if to_check.is_empty() {
        return Ok(leased);
    }
    let mut if_free = db.prepare_cached(&LEASE_IF_FREE_SQLITE)?;
    for (id, lease) in to_check {
        if if_free.execute(rusqlite::params![lease.until, lease.token, id])? == 1 {
            leased.insert(id.clone());
        }
    }
    Ok(leased)
}

/// The messageIds of `records` already stored.
fn stored_events(
    db: &rusqlite::Connection,
    records: &[IngestRecord],
) -> Result<HashSet<String>, StoreError> {
    let mut find = db.prepare_cached("SELECT 1 FROM events WHERE message_id = ?")?;
    let mut stored = HashSet::new();
    for r in records {
        let id = r.event.message_id.as_str();
        if find.query_row([id], |_| Ok(())).optional()?.is_some() {
            stored.insert(id.to_owned());
        }
    }
    Ok(stored)
}

/// The (integration, messageId) pairs of `deliveries` already stored, on the
/// `deliveries_once` index.
fn stored_deliveries(
    db: &rusqlite::Connection,
    deliveries: &[&NewDelivery],
) -> Result<Vec<(IntegrationId, String)>, StoreError> {
    let mut find =
        db.prepare_cached("SELECT 1 FROM deliveries WHERE integration_id = ? AND message_id = ?")?;
    let mut stored = Vec::new();
    for d in deliveries {
        let p = &d.parcel;
        let found = find
            .query_row(
                rusqlite::params![p.integration_id, p.message_id.as_str()],
                |_| Ok(()),
            )
            .optional()?;
        if found.is_some() {
            stored.push((p.integration_id.clone(), p.message_id.clone()));
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
