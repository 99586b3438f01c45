//! Live-log rows on PostgreSQL: inserted with the lifetime outcome counts and the
//! per-integration entry counts kept current, and read newest first.

use std::collections::BTreeSet;
use std::sync::LazyLock;

use sqlx::{PgConnection, Postgres, QueryBuilder};

use super::PgStore;
use super::changes::announce_logs;
use super::rows::{columns, parameters, split};
use crate::domain::clock::from_ms;
use crate::domain::{IntegrationId, LogId};
use crate::live_logs::{LogFilter, LogRecord};
use crate::store::logs::LogRow;
use crate::store::rows::Insert;
use crate::store::{Page, StoreError, rows};

/// An entry's columns with its delivery's request, `l` and `d` in the queries below.
const SELECT: &str = "SELECT l.id, l.integration_id, l.delivery_id, l.message_id, l.event_name, l.call, l.attempt, l.outcome, l.status_code, l.status_line, l.latency_ms, l.error, l.hint, l.warnings, l.next_attempt_at, l.response, l.test, l.created_at, l.replaces, d.url, d.body";

/// The part of a statement that writes live-log entries (`WITH` queries), bound as
/// one array per column from `$first`, and `$replica` naming this replica: the
/// entries of integrations in `existing` go in (`new_logs`), are added to the
/// lifetime outcome counts and the entry counts (in key order, so that concurrent
/// writers update the counting rows in one order), and are announced to the other
/// replicas (`notes`, which the statement must read).
pub(super) fn write_logs(first: usize, replica: usize) -> String {
    let columns = <&LogRecord as Insert>::COLUMNS.join(", ");
    format!(
        "new_logs AS (INSERT INTO live_logs ({columns}) \
             SELECT * FROM unnest({parameters}) AS l ({columns}) \
             WHERE l.integration_id IN (SELECT id FROM existing) \
             RETURNING id, integration_id, outcome), \
         outcomes AS (INSERT INTO outcome_counts (integration_id, outcome, count) \
             SELECT integration_id, outcome, count(*) FROM new_logs GROUP BY 1, 2 ORDER BY 1, 2 \
             ON CONFLICT (integration_id, outcome) DO UPDATE SET count = outcome_counts.count + excluded.count), \
         entries AS (INSERT INTO live_log_counts (integration_id, entries) \
             SELECT integration_id, count(*) FROM new_logs GROUP BY 1 ORDER BY 1 \
             ON CONFLICT (integration_id) DO UPDATE SET entries = live_log_counts.entries + excluded.entries), \
         {notes}",
        parameters = parameters(first, <&LogRecord as Insert>::COLUMNS.len()),
        notes = announce_logs(replica),
    )
}

/// Integrations that exist, of those given (`$1`, a text array), locked for share
/// until the transaction ends, so that a delete elsewhere waits for it (or wins, and
/// they are not there): `existing`.
pub(super) const EXISTING: &str =
    "existing AS (SELECT id FROM integrations WHERE id = ANY($1) ORDER BY id FOR SHARE)";

/// Entries alone: the integrations they are of, this replica, then their columns.
static LOGS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH {EXISTING}, {} SELECT count(*) FROM notes",
        write_logs(3, 2)
    )
});

/// The integrations `records` are of, each once: `existing`'s parameter.
pub(super) fn integrations_of<'a>(records: impl Iterator<Item = &'a LogRecord>) -> Vec<&'a str> {
    let ids: BTreeSet<&str> = records.map(|r| r.integration_id.as_str()).collect();
    ids.into_iter().collect()
}

/// About the bytes an entry binds: Button's answer, and the rest.
pub(super) fn log_bytes(record: &LogRecord) -> usize {
    512 + record.response.as_ref().map_or(0, |r| r.body.len())
        + record.error.as_ref().map_or(0, String::len)
}

/// Inserts `records` (of integrations that exist), adds them to the lifetime outcome
/// counts and the entry counts, and announces them to the other replicas (`replica`
/// is this one): one statement, or one per piece of a large write.
pub(super) async fn insert_logs(
    conn: &mut PgConnection,
    replica: &str,
    records: &[&LogRecord],
) -> Result<(), StoreError> {
    // By integration and outcome, so that the pieces of a split write update the
    // counting rows in key order across the transaction.
    let mut records = records.to_vec();
    records.sort_by_key(|r| (r.integration_id.as_str(), r.outcome.as_str()));
    for piece in split(records, |r| log_bytes(r)) {
        let q = sqlx::query(sqlx::AssertSqlSafe(LOGS.as_str()))
            .bind(integrations_of(piece.iter().copied()))
            .bind(replica);
        columns(piece).bind_to(q).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Keeps `live_log_counts` (entries stored per integration) current, so retention by
/// count never has to count.
pub(super) async fn add_entries(
    conn: &mut PgConnection,
    integration_id: &IntegrationId,
    n: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO live_log_counts (integration_id, entries) VALUES ($1, $2)
         ON CONFLICT (integration_id) DO UPDATE SET entries = live_log_counts.entries + excluded.entries",
    )
    .bind(integration_id)
    .bind(n)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl PgStore {
    pub(in crate::store) async fn list_logs(
        &self,
        integration_id: &IntegrationId,
        filter: &LogFilter,
        page: &Page<LogId>,
    ) -> Result<Vec<LogRow>, StoreError> {
        let mut q: QueryBuilder<Postgres> = QueryBuilder::new(SELECT);
        q.push(", NULL::bytea AS payload FROM live_logs l LEFT JOIN deliveries d ON d.id = l.delivery_id WHERE l.integration_id = ")
            .push_bind(integration_id);
        if let Some(before) = &page.from {
            q.push(" AND l.id < ").push_bind(before);
        }
        if let Some(outcome) = filter.outcome {
            q.push(" AND l.outcome = ").push_bind(outcome);
        }
        if let Some(name) = &filter.event_name {
            q.push(" AND l.event_name = ").push_bind(name.as_bytes());
        }
        if let Some(message_id) = &filter.message_id {
            q.push(" AND l.message_id = ")
                .push_bind(message_id.as_bytes());
        }
        if let Some(since) = filter.since_ms {
            q.push(" AND l.id >= ")
                .push_bind(LogId::floor_at(from_ms(since)));
        }
        if let Some(until) = filter.until_ms {
            q.push(" AND l.id < ")
                .push_bind(LogId::floor_at(from_ms(until.saturating_add(1))));
        }
        // Written, not bound: the partial index of Test Event entries is planned only
        // for a predicate that implies its own (`test`).
        match filter.test {
            Some(true) => q.push(" AND l.test"),
            Some(false) => q.push(" AND NOT l.test"),
            None => &mut q,
        };
        q.push(" ORDER BY l.id DESC LIMIT ")
            .push_bind(i64::from(page.limit));
        // Planned with its values every time (an unnamed statement), never with a
        // generic plan: which index is narrowest for combined filters (a rare outcome,
        // a rare event name) depends on the values, and PostgreSQL's statistics know.
        let rows = q.build().persistent(false).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(rows::log_row).collect::<Result<_, _>>()?)
    }

    pub(in crate::store) async fn get_log(
        &self,
        integration_id: &IntegrationId,
        id: &LogId,
    ) -> Result<Option<LogRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT}, e.payload FROM live_logs l LEFT JOIN deliveries d ON d.id = l.delivery_id
             LEFT JOIN events e ON e.message_id = l.message_id
             WHERE l.integration_id = $1 AND l.id = $2"
        )))
        .bind(integration_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(rows::log_row).transpose()?)
    }
    /// Entries by id (those other replicas wrote, for this replica's live tail).
    pub(in crate::store) async fn logs_by_id(
        &self,
        ids: &[LogId],
    ) -> Result<Vec<LogRow>, StoreError> {
        let ids: Vec<&str> = ids.iter().map(LogId::as_str).collect();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT}, NULL::bytea AS payload FROM live_logs l LEFT JOIN deliveries d ON d.id = l.delivery_id
             WHERE l.id = ANY($1) ORDER BY l.id"
        )))
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(rows::log_row).collect::<Result<_, _>>()?)
    }
}
