//! Live-log rows: written in the same transaction as the queue change they record,
//! read newest first with filters, pruned by age and count.

use std::time::SystemTime;

use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use super::{Store, StoreError, pieces};
use crate::ids;

/// One immutable live-log row.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    pub id: String,
    pub integration_id: String,
    pub delivery_id: Option<String>,
    pub message_id: Option<String>,
    pub event_name: Option<String>,
    pub call: Option<String>,
    pub attempt: Option<i64>,
    pub outcome: String,
    pub status_code: Option<i64>,
    pub status_line: Option<String>,
    pub latency_ms: Option<f64>,
    pub error: Option<String>,
    pub hint: Option<String>,
    /// JSON array of `{message, hint}`.
    pub warnings: Option<String>,
    pub next_attempt_at: Option<i64>,
    /// JSON `{headers, body, truncated}`.
    pub response: Option<String>,
    pub test: bool,
    pub created_at: i64,
}

/// A log row with what it refers to: the request its delivery sends and, when asked
/// for, the event as received.
#[derive(Debug, Clone)]
pub struct LogRow {
    pub record: LogRecord,
    pub url: Option<String>,
    pub body: Option<Vec<u8>>,
    pub event: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub outcome: Option<String>,
    pub event_name: Option<String>,
    pub message_id: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub test: Option<bool>,
}

const COLUMNS: usize = 18;

/// Inserts `records` and adds them to the lifetime outcome counts.
pub async fn insert(conn: &mut SqliteConnection, records: &[LogRecord]) -> Result<(), StoreError> {
    let mut rest = records;
    for n in pieces(records.len(), super::MAX_BINDS / COLUMNS) {
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO live_logs (id, integration_id, delivery_id, message_id, event_name, call, attempt, outcome, status_code, status_line, latency_ms, error, hint, warnings, next_attempt_at, response, test, created_at) ",
        );
        q.push_values(chunk, |mut b, r| {
            b.push_bind(&r.id)
                .push_bind(&r.integration_id)
                .push_bind(&r.delivery_id)
                .push_bind(&r.message_id)
                .push_bind(&r.event_name)
                .push_bind(&r.call)
                .push_bind(r.attempt)
                .push_bind(&r.outcome)
                .push_bind(r.status_code)
                .push_bind(&r.status_line)
                .push_bind(r.latency_ms)
                .push_bind(&r.error)
                .push_bind(&r.hint)
                .push_bind(&r.warnings)
                .push_bind(r.next_attempt_at)
                .push_bind(&r.response)
                .push_bind(r.test)
                .push_bind(r.created_at);
        });
        q.build().execute(&mut *conn).await?;
    }
    count_outcomes(conn, records).await
}

async fn count_outcomes(
    conn: &mut SqliteConnection,
    records: &[LogRecord],
) -> Result<(), StoreError> {
    let mut counts: Vec<((&str, &str), i64)> = Vec::new();
    for r in records {
        let key = (r.integration_id.as_str(), r.outcome.as_str());
        match counts.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => counts.push((key, 1)),
        }
    }
    let mut entries: Vec<(&str, i64)> = Vec::new();
    for ((integration_id, outcome), n) in counts {
        sqlx::query(
            "INSERT INTO outcome_counts (integration_id, outcome, count) VALUES (?, ?, ?)
             ON CONFLICT (integration_id, outcome) DO UPDATE SET count = outcome_counts.count + excluded.count",
        )
        .bind(integration_id)
        .bind(outcome)
        .bind(n)
        .execute(&mut *conn)
        .await?;
        match entries.iter_mut().find(|(i, _)| *i == integration_id) {
            Some((_, total)) => *total += n,
            None => entries.push((integration_id, n)),
        }
    }
    for (integration_id, n) in entries {
        add_entries(conn, integration_id, n).await?;
    }
    Ok(())
}

/// Keeps `live_log_counts` (entries stored per integration) current, so retention by
/// count never has to count.
async fn add_entries(
    conn: &mut SqliteConnection,
    integration_id: &str,
    n: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO live_log_counts (integration_id, entries) VALUES (?, ?)
         ON CONFLICT (integration_id) DO UPDATE SET entries = live_log_counts.entries + excluded.entries",
    )
    .bind(integration_id)
    .bind(n)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Deletes the entries `select` names (a query for at most `CHUNK` ids), and takes
/// them off their integrations' counts. Answers how many went.
async fn delete_entries(
    conn: &mut SqliteConnection,
    select: &str,
    args: &[Arg],
) -> Result<u64, StoreError> {
    let sql = format!("DELETE FROM live_logs WHERE id IN ({select}) RETURNING integration_id");
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for arg in args {
        q = match arg {
            Arg::Text(s) => q.bind(s.clone()),
            Arg::Int(i) => q.bind(*i),
        };
    }
    let rows = q.fetch_all(&mut *conn).await?;
    let mut gone: Vec<(String, i64)> = Vec::new();
    for row in &rows {
        let integration_id: String = row.try_get(0)?;
        match gone.iter_mut().find(|(i, _)| *i == integration_id) {
            Some((_, n)) => *n += 1,
            None => gone.push((integration_id, 1)),
        }
    }
    for (integration_id, n) in gone {
        add_entries(conn, &integration_id, -n).await?;
    }
    Ok(rows.len() as u64)
}

const CHUNK: i64 = 5000;

fn decode(row: &SqliteRow) -> Result<LogRecord, StoreError> {
    Ok(LogRecord {
        id: row.try_get("id")?,
        integration_id: row.try_get("integration_id")?,
        delivery_id: row.try_get("delivery_id")?,
        message_id: row.try_get("message_id")?,
        event_name: row.try_get("event_name")?,
        call: row.try_get("call")?,
        attempt: row.try_get("attempt")?,
        outcome: row.try_get("outcome")?,
        status_code: row.try_get("status_code")?,
        status_line: row.try_get("status_line")?,
        latency_ms: row.try_get("latency_ms")?,
        error: row.try_get("error")?,
        hint: row.try_get("hint")?,
        warnings: row.try_get("warnings")?,
        next_attempt_at: row.try_get("next_attempt_at")?,
        response: row.try_get("response")?,
        test: row.try_get("test")?,
        created_at: row.try_get("created_at")?,
    })
}

const SELECT: &str = "SELECT l.id, l.integration_id, l.delivery_id, l.message_id, l.event_name, l.call, l.attempt, l.outcome, l.status_code, l.status_line, l.latency_ms, l.error, l.hint, l.warnings, l.next_attempt_at, l.response, l.test, l.created_at, d.url, d.body";

impl Store {
    /// Entries of one integration, newest first, older than the id `before`.
    pub async fn list_logs(
        &self,
        integration_id: &str,
        filter: &LogFilter,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<LogRow>, StoreError> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(SELECT);
        q.push(" FROM live_logs l LEFT JOIN deliveries d ON d.id = l.delivery_id WHERE l.integration_id = ")
            .push_bind(integration_id.to_owned());
        if let Some(before) = before {
            q.push(" AND l.id < ").push_bind(before.to_owned());
        }
        if let Some(outcome) = &filter.outcome {
            q.push(" AND l.outcome = ").push_bind(outcome.clone());
        }
        if let Some(name) = &filter.event_name {
            q.push(" AND l.event_name = ").push_bind(name.clone());
        }
        if let Some(message_id) = &filter.message_id {
            q.push(" AND l.message_id = ").push_bind(message_id.clone());
        }
        if let Some(since) = filter.since_ms {
            // Ids are time-ordered: a range on the primary key instead of a scan.
            q.push(" AND l.id >= ")
                .push_bind(ids::floor_at(ids::LOG, super::from_ms(since)));
        }
        if let Some(until) = filter.until_ms {
            q.push(" AND l.id < ").push_bind(ids::floor_at(
                ids::LOG,
                super::from_ms(until.saturating_add(1)),
            ));
        }
        if let Some(test) = filter.test {
            q.push(" AND l.test = ").push_bind(test);
        }
        q.push(" ORDER BY l.id DESC LIMIT ")
            .push_bind(i64::from(limit));
        let rows = q.build().fetch_all(self.reader()).await?;
        rows.iter()
            .map(|row| {
                Ok(LogRow {
                    record: decode(row)?,
                    url: row.try_get("url")?,
                    body: row.try_get("body")?,
                    event: None,
                })
            })
            .collect()
    }

    /// One entry, with the event as received.
    pub async fn get_log(
        &self,
        integration_id: &str,
        id: &str,
    ) -> Result<Option<LogRow>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT}, e.payload FROM live_logs l LEFT JOIN deliveries d ON d.id = l.delivery_id
             LEFT JOIN events e ON e.message_id = l.message_id
             WHERE l.integration_id = ? AND l.id = ?"
        )))
        .bind(integration_id)
        .bind(id)
        .fetch_optional(self.reader())
        .await?;
        row.map(|row| {
            Ok(LogRow {
                record: decode(&row)?,
                url: row.try_get("url")?,
                body: row.try_get("body")?,
                event: row.try_get("payload")?,
            })
        })
        .transpose()
    }

    /// Lifetime counts of each outcome for the integration.
    pub async fn outcome_counts(
        &self,
        integration_id: &str,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT outcome, count FROM outcome_counts WHERE integration_id = ? ORDER BY outcome",
        )
        .bind(integration_id)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("outcome")?, r.try_get("count")?)))
            .collect()
    }

    /// Number of live-log rows of the integration (used by tests and benchmarks).
    pub async fn count_logs(&self, integration_id: &str) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM live_logs WHERE integration_id = ?")
                .bind(integration_id)
                .fetch_one(self.reader())
                .await?,
        )
    }

    /// Removes live-log entries older than `max_age` and beyond the newest
    /// `max_entries` of each integration, then the events and finished deliveries no
    /// longer needed. Works in bounded chunks so the writer is never held long.
    /// Answers how many rows went.
    pub async fn prune(&self, now: SystemTime, policy: &PrunePolicy) -> Result<u64, StoreError> {
        let mut removed = 0;
        let log_cutoff = ids::floor_at(ids::LOG, now - policy.max_age);
        removed += self
            .delete_entries_in_chunks(
                "SELECT id FROM live_logs WHERE id < ? LIMIT ?",
                vec![Arg::Text(log_cutoff)],
                u64::MAX,
            )
            .await?;
        // Over its cap, an integration loses its oldest entries: counted from the
        // oldest end, so the cost is what goes, not what stays.
        let over: Vec<(String, i64)> =
            sqlx::query_as("SELECT integration_id, entries FROM live_log_counts WHERE entries > ?")
                .bind(policy.max_entries_per_integration as i64)
                .fetch_all(self.reader())
                .await?;
        for (integration_id, entries) in over {
            let excess = (entries - policy.max_entries_per_integration as i64).max(0) as u64;
            removed += self
                .delete_entries_in_chunks(
                    "SELECT id FROM live_logs WHERE integration_id = ? ORDER BY id LIMIT ?",
                    vec![Arg::Text(integration_id)],
                    excess,
                )
                .await?;
        }
        let finished_cutoff = super::to_ms(now - policy.max_age);
        removed += self
            .delete_in_chunks(
                "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries WHERE state NOT IN ('pending', 'dead') AND updated_at < ? LIMIT 5000)",
                vec![Arg::Int(finished_cutoff)],
            )
            .await?;
        removed += self
            .delete_in_chunks(
                "DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries WHERE state = 'dead' AND updated_at < ? LIMIT 5000)",
                vec![Arg::Int(super::to_ms(now - policy.dead_letter_max_age))],
            )
            .await?;
        removed += self
            .delete_in_chunks(
                "DELETE FROM events WHERE message_id IN (SELECT message_id FROM events WHERE received_at < ? LIMIT 5000)",
                vec![Arg::Int(finished_cutoff)],
            )
            .await?;
        Ok(removed)
    }

    /// Deletes live-log entries named by `select` (its last parameter is the chunk
    /// size), one bounded chunk per transaction, until `limit` went or none is left.
    async fn delete_entries_in_chunks(
        &self,
        select: &'static str,
        args: Vec<Arg>,
        limit: u64,
    ) -> Result<u64, StoreError> {
        let mut total = 0;
        while total < limit {
            let mut args = args.clone();
            let chunk = (limit - total).min(CHUNK as u64) as i64;
            args.push(Arg::Int(chunk));
            let n = self
                .writer()
                .write(move |conn| {
                    Box::pin(async move { delete_entries(conn, select, &args).await })
                })
                .await?;
            total += n;
            if (n as i64) < chunk {
                break;
            }
        }
        Ok(total)
    }

    async fn delete_in_chunks(&self, sql: &'static str, args: Vec<Arg>) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let args = args.clone();
            let n = self
                .writer()
                .write(move |conn| {
                    Box::pin(async move {
                        let mut q = sqlx::query(sql);
                        for arg in args {
                            q = match arg {
                                Arg::Text(s) => q.bind(s),
                                Arg::Int(i) => q.bind(i),
                            };
                        }
                        Ok(q.execute(&mut *conn).await?.rows_affected())
                    })
                })
                .await?;
            total += n;
            if n < 5000 {
                return Ok(total);
            }
        }
    }
}

#[derive(Clone)]
enum Arg {
    Text(String),
    Int(i64),
}

#[derive(Debug, Clone)]
pub struct PrunePolicy {
    pub max_age: std::time::Duration,
    pub max_entries_per_integration: u64,
    pub dead_letter_max_age: std::time::Duration,
}
