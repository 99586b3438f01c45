//! Ingest's write on PostgreSQL, in one transaction. Other replicas write at the same
//! time, so nothing is found first: each insert skips what is already stored
//! (`ON CONFLICT DO NOTHING`) and returns what it wrote. The integrations the
//! deliveries go to are locked for share until the commit, so a delete on another
//! replica waits for it (or wins, and they take nothing).
//!
//! Writes run concurrently (several per replica, and other replicas'), and an insert
//! that meets a key another open transaction inserted waits for it. So every insert
//! takes its rows in key order: two writes wait on each other in one order only, and
//! cannot deadlock.

use std::collections::HashSet;

use sqlx::{PgConnection, Row};

use super::PgStore;
use super::logs::insert_logs;
use super::rows::{Rows, insert, insert_rows};
use crate::domain::DeliveryId;
use crate::live_logs::LogRecord;
use crate::store::StoreError;
use crate::store::ingest::{IngestRecord, Written, answers, written_leases};
use crate::store::queue::LEASE_IF_FREE_POSTGRES;
use crate::store::rows::{DeliveryRow, EventRow};

impl PgStore {
    pub(in crate::store) async fn ingest(
        &self,
        records: Vec<IngestRecord>,
    ) -> Result<Vec<(IngestRecord, Written)>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let written = write(&mut tx, &self.replica, records).await?;
        tx.commit().await?;
        Ok(written)
    }
}

async fn write(
    conn: &mut PgConnection,
    replica: &str,
    mut records: Vec<IngestRecord>,
) -> Result<Vec<(IngestRecord, Written)>, StoreError> {
    // Events: new if this write stored it, and only for its first record.
    let mut events: Vec<EventRow> = records
        .iter_mut()
        .map(|r| {
            let payload = std::mem::take(&mut r.event.payload);
            EventRow {
                event: &r.event,
                payload,
            }
        })
        .collect();
    events.sort_by(|a, b| a.event.message_id.cmp(&b.event.message_id));
    let (stored, _) = insert(
        conn,
        events,
        " ON CONFLICT (message_id) DO NOTHING RETURNING message_id",
    )
    .await?;
    let mut stored_now: HashSet<Vec<u8>> = stored
        .iter()
        .map(|row| row.try_get::<Vec<u8>, _>(0))
        .collect::<Result<_, _>>()?;
    let new_event: Vec<bool> = records
        .iter()
        .map(|r| stored_now.remove(r.event.message_id.as_bytes()))
        .collect();

    // Deliveries: an event reaches each integration once (the unique index decides,
    // here or on any replica); an integration deleted meanwhile takes nothing.
    let mut deliveries: Vec<DeliveryRow> = records
        .iter_mut()
        .flat_map(|r| r.deliveries.iter_mut())
        .map(|d| {
            let body = d.body.take();
            DeliveryRow { delivery: d, body }
        })
        .collect();
    deliveries.sort_by(|a, b| {
        let (a, b) = (&a.delivery.parcel, &b.delivery.parcel);
        (a.integration_id.as_str(), &a.message_id).cmp(&(b.integration_id.as_str(), &b.message_id))
    });
    let (inserted, _) = insert_rows(
        conn,
        deliveries,
        Rows::OfExistingIntegrations,
        " ON CONFLICT (integration_id, message_id) DO NOTHING RETURNING id",
    )
    .await?;
    let written: HashSet<DeliveryId> = inserted
        .iter()
        .map(|row| row.try_get::<DeliveryId, _>(0))
        .collect::<Result<_, _>>()?;

    let leased = lease_written(conn, &records, &written).await?;

    let logs: Vec<&LogRecord> = records
        .iter()
        .flat_map(|r| r.logs.iter())
        .filter(|l| l.delivery_id.as_ref().is_some_and(|d| written.contains(d)))
        .collect();
    insert_logs(conn, replica, &logs).await?;
    Ok(answers(records, new_event, &written, &leased))
}

/// Of the deliveries written, those now leased: each written with its lease, and each
/// of an order whose lease held once written (nothing earlier of the order pending,
/// failed or dead), in one statement for all of those.
async fn lease_written(
    conn: &mut PgConnection,
    records: &[IngestRecord],
    written: &HashSet<DeliveryId>,
) -> Result<HashSet<DeliveryId>, StoreError> {
    let (mut leased, to_check) = written_leases(records, written);
    if to_check.is_empty() {
        return Ok(leased);
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
    for row in &rows {
        leased.insert(row.try_get::<DeliveryId, _>(0)?);
    }
    Ok(leased)
}
