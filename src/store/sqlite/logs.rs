//! Live-log rows on SQLite: inserted with the lifetime outcome counts and the
//! per-integration entry counts kept current, and read newest first.

use sqlx::{QueryBuilder, Sqlite};

use super::SqliteStore;
use super::rows::insert_direct;
use crate::domain::clock::from_ms;
use crate::domain::{IntegrationId, LogId};
use crate::live_logs::{LogFilter, LogRecord};
use crate::store::logs::{LogRow, Tally};
use crate::store::rows;
use crate::store::{Page, StoreError};

/// An entry's columns with its delivery's request, `l` and `d` in the queries below.
const SELECT: &str = "SELECT l.id, l.integration_id, l.delivery_id, l.message_id, l.event_name, l.call, l.attempt, l.outcome, l.status_code, l.status_line, l.latency_ms, l.error, l.hint, l.warnings, l.next_attempt_at, l.response, l.test, l.created_at, l.replaces, d.url, d.body";

/// Inserts `records` and adds them to the lifetime outcome counts and the entry counts.
pub(super) fn insert_logs(
    db: &rusqlite::Connection,
    records: &[&LogRecord],
) -> Result<(), StoreError> {
    insert_direct(db, records.iter().copied())?;
    let tally = Tally::of(records);
    let mut count = db.prepare_cached(
        "INSERT INTO outcome_counts (integration_id, outcome, count) VALUES (?, ?, ?)
         ON CONFLICT (integration_id, outcome) DO UPDATE SET count = outcome_counts.count + excluded.count",
    )?;
    for ((integration_id, outcome), n) in tally.outcomes {
        count.execute(rusqlite::params![integration_id, outcome, n])?;
    }
    for (integration_id, n) in tally.entries {
        add_entries(db, integration_id, n)?;
    }
    Ok(())
}

/// Keeps `live_log_counts` (entries stored per integration) current, so retention by
/// count never has to count.
pub(super) fn add_entries(
    db: &rusqlite::Connection,
    integration_id: &IntegrationId,
    n: i64,
) -> Result<(), StoreError> {
    db.prepare_cached(
        "INSERT INTO live_log_counts (integration_id, entries) VALUES (?, ?)
         ON CONFLICT (integration_id) DO UPDATE SET entries = live_log_counts.entries + excluded.entries",
    )?
    .execute(rusqlite::params![integration_id, n])?;
    Ok(())
}

/// The smallest entry id at or after `ms`: ids are time-ordered, so a time range is a
/// range on the primary key instead of a scan.
fn log_floor(ms: i64) -> LogId {
    LogId::floor_at(from_ms(ms))
}

/// The index a list reads, by its filters: each filter has one (migration 0007) that
/// holds its entries newest first, so a filter that matches rarely or never reads only
/// what it returns. SQLite keeps no statistics here, so the choice is made, not left to
/// the planner: the messageId (a handful of entries), else Test Event entries (few),
/// else the outcome or the event name, whichever is narrower (an outcome's share of
/// the integration's entries is known from the lifetime counts; an event name's is
/// not, so the outcome is taken unless it is most of them), else the integration's.
/// The other filters are checked on the entries that index yields.
async fn index_for(
    read: &sqlx::SqlitePool,
    integration_id: &IntegrationId,
    filter: &LogFilter,
) -> Result<&'static str, StoreError> {
    if filter.message_id.is_some() {
        return Ok("live_logs_message");
    }
    if filter.test == Some(true) {
        return Ok("live_logs_test");
    }
    Ok(match (filter.outcome, &filter.event_name) {
        (Some(outcome), Some(_)) => {
            let (of_outcome, all): (Option<i64>, Option<i64>) = sqlx::query_as(
                "SELECT SUM(CASE WHEN outcome = ? THEN count ELSE 0 END), SUM(count)
                 FROM outcome_counts WHERE integration_id = ?",
            )
            .bind(outcome)
            .bind(integration_id)
            .fetch_one(read)
            .await?;
            if of_outcome.unwrap_or(0) * 2 <= all.unwrap_or(0) {
                "live_logs_outcome"
            } else {
                "live_logs_event"
            }
        }
        (Some(_), None) => "live_logs_outcome",
        (None, Some(_)) => "live_logs_event",
        (None, None) => "live_logs_integration",
    })
}

impl SqliteStore {
    pub(in crate::store) async fn list_logs(
        &self,
        integration_id: &IntegrationId,
        filter: &LogFilter,
        page: &Page<LogId>,
    ) -> Result<Vec<LogRow>, StoreError> {
        let index = index_for(&self.read, integration_id, filter).await?;
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(SELECT);
        q.push(", NULL AS payload FROM live_logs l INDEXED BY ")
            .push(index)
            .push(" LEFT JOIN deliveries d ON d.id = l.delivery_id WHERE l.integration_id = ")
            .push_bind(integration_id);
        if let Some(before) = &page.from {
            q.push(" AND l.id < ").push_bind(before);
        }
        if let Some(outcome) = filter.outcome {
            q.push(" AND l.outcome = ").push_bind(outcome);
        }
        if let Some(name) = &filter.event_name {
            q.push(" AND l.event_name = ").push_bind(name);
        }
        if let Some(message_id) = &filter.message_id {
            q.push(" AND l.message_id = ").push_bind(message_id);
        }
        if let Some(since) = filter.since_ms {
            q.push(" AND l.id >= ").push_bind(log_floor(since));
        }
        if let Some(until) = filter.until_ms {
            q.push(" AND l.id < ")
                .push_bind(log_floor(until.saturating_add(1)));
        }
        // Written, not bound: the partial index of Test Event entries is planned only
        // for the predicate it was made with (`test = 1`).
        match filter.test {
            Some(true) => q.push(" AND l.test = 1"),
            Some(false) => q.push(" AND l.test = 0"),
            None => &mut q,
        };
        q.push(" ORDER BY l.id DESC LIMIT ")
            .push_bind(i64::from(page.limit));
        let rows = q.build().fetch_all(&self.read).await?;
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
             WHERE l.integration_id = ? AND l.id = ?"
        )))
        .bind(integration_id)
        .bind(id)
        .fetch_optional(&self.read)
        .await?;
        Ok(row.as_ref().map(rows::log_row).transpose()?)
    }
}
