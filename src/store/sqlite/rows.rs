//! Rows in and out: for each record the store writes in bulk, its table and columns
//! named once (they make the statement and size its chunks) and how one record binds
//! them; for each record it reads, one decoder.

use sqlx::query_builder::Separated;
use sqlx::sqlite::SqliteRow;
use sqlx::{FromRow, QueryBuilder, Row, Sqlite, SqliteConnection};

use crate::blueprint::Issue;
use crate::live_logs::LogRecord;
use crate::store::dead_letters::DeadLetter;
use crate::store::integrations::IntegrationRow;
use crate::store::logs::LogRow;
use crate::store::queue::{Leased, Parcel};
use crate::store::{MAX_BINDS, StoreError, pieces};

/// Warnings as stored: a JSON array, or NULL for none.
pub(super) fn warnings_text(warnings: &[Issue]) -> Option<String> {
    (!warnings.is_empty()).then(|| serde_json::to_string(warnings).expect("issues serialise"))
}

/// Stored warnings read back (unreadable ones are dropped rather than failing the row).
fn warnings_of(text: Option<String>) -> Vec<Issue> {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// A record written with multi-row `INSERT`s.
pub(super) trait Insert {
    const TABLE: &'static str;
    /// The columns written, in the order [`Insert::bind`] binds them.
    const COLUMNS: &'static [&'static str];

    fn bind(self, values: &mut Separated<'_, Sqlite, &'static str>);
}

/// Inserts `rows` in as few statements as the bind limit allows. Answers how many
/// rows went in.
pub(super) async fn insert<T: Insert>(
    conn: &mut SqliteConnection,
    rows: Vec<T>,
) -> Result<u64, StoreError> {
    let mut rows = rows.into_iter();
    let head = format!("INSERT INTO {} ({}) ", T::TABLE, T::COLUMNS.join(", "));
    let mut inserted = 0;
    for n in pieces(rows.len(), MAX_BINDS / T::COLUMNS.len()) {
        let mut q = QueryBuilder::<Sqlite>::new(head.as_str());
        q.push_values(rows.by_ref().take(n), |mut values, row| {
            row.bind(&mut values)
        });
        inserted += q.build().execute(&mut *conn).await?.rows_affected();
    }
    Ok(inserted)
}

impl Insert for &LogRecord {
    const TABLE: &'static str = "live_logs";
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "integration_id",
        "delivery_id",
        "message_id",
        "event_name",
        "call",
        "attempt",
        "outcome",
        "status_code",
        "status_line",
        "latency_ms",
        "error",
        "hint",
        "warnings",
        "next_attempt_at",
        "response",
        "test",
        "created_at",
    ];

    fn bind(self, b: &mut Separated<'_, Sqlite, &'static str>) {
        b.push_bind(&self.id)
            .push_bind(&self.integration_id)
            .push_bind(&self.delivery_id)
            .push_bind(&self.message_id)
            .push_bind(&self.event_name)
            .push_bind(self.call)
            .push_bind(self.attempt)
            .push_bind(self.outcome)
            .push_bind(self.status_code)
            .push_bind(&self.status_line)
            .push_bind(self.latency_ms)
            .push_bind(&self.error)
            .push_bind(&self.hint)
            .push_bind(warnings_text(&self.warnings))
            .push_bind(self.next_attempt_at)
            .push_bind(
                self.response
                    .as_ref()
                    .map(|r| serde_json::to_string(r).expect("a response view serialises")),
            )
            .push_bind(self.test)
            .push_bind(self.created_at);
    }
}

impl<'r> FromRow<'r, SqliteRow> for LogRecord {
    fn from_row(row: &'r SqliteRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
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
            warnings: warnings_of(row.try_get("warnings")?),
            next_attempt_at: row.try_get("next_attempt_at")?,
            response: row
                .try_get::<Option<String>, _>("response")?
                .and_then(|r| serde_json::from_str(&r).ok()),
            test: row.try_get("test")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

/// Read with the delivery's `url` and `body`, and the event's `payload` (or a NULL
/// `payload` where the event is not asked for).
impl<'r> FromRow<'r, SqliteRow> for LogRow {
    fn from_row(row: &'r SqliteRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            record: LogRecord::from_row(row)?,
            url: row.try_get("url")?,
            body: row.try_get("body")?,
            event: row.try_get("payload")?,
        })
    }
}

impl<'r> FromRow<'r, SqliteRow> for Parcel {
    fn from_row(row: &'r SqliteRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            integration_id: row.try_get("integration_id")?,
            message_id: row.try_get("message_id")?,
            event_name: row.try_get("event_name")?,
            // A call this version does not know fails that delivery alone (as a
            // request it cannot send) rather than every lease of its lane.
            call: row
                .try_get::<Option<&str>, _>("call")?
                .and_then(|c| c.parse().ok()),
            warnings: warnings_of(row.try_get("warnings")?),
            test: row.try_get("test")?,
        })
    }
}

impl<'r> FromRow<'r, SqliteRow> for Leased {
    fn from_row(row: &'r SqliteRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            parcel: Parcel::from_row(row)?,
            attempts: row.try_get("attempts")?,
            url: row.try_get("url")?,
            body: row.try_get("body")?,
            lease_token: row.try_get("lease_token")?,
        })
    }
}

impl<'r> FromRow<'r, SqliteRow> for DeadLetter {
    fn from_row(row: &'r SqliteRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            message_id: row.try_get("message_id")?,
            event_name: row.try_get("event_name")?,
            call: row.try_get("call")?,
            attempts: row.try_get("attempts")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

impl Insert for &IntegrationRow {
    const TABLE: &'static str = "integrations";
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "catalog_key",
        "name",
        "variant",
        "delivery_mode",
        "enabled",
        "config",
        "secrets",
        "blueprint",
        "lane_state",
        "lane_reason",
        "created_at",
        "updated_at",
    ];

    fn bind(self, b: &mut Separated<'_, Sqlite, &'static str>) {
        b.push_bind(&self.id)
            .push_bind(&self.catalog_key)
            .push_bind(&self.name)
            .push_bind(&self.variant)
            .push_bind(&self.delivery_mode)
            .push_bind(self.enabled)
            .push_bind(&self.config)
            .push_bind(&self.secrets)
            .push_bind(&self.blueprint)
            .push_bind(self.lane_state)
            .push_bind(&self.lane_reason)
            .push_bind(self.created_at)
            .push_bind(self.updated_at);
    }
}

impl<'r> FromRow<'r, SqliteRow> for IntegrationRow {
    fn from_row(row: &'r SqliteRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            catalog_key: row.try_get("catalog_key")?,
            name: row.try_get("name")?,
            variant: row.try_get("variant")?,
            delivery_mode: row.try_get("delivery_mode")?,
            enabled: row.try_get("enabled")?,
            config: row.try_get("config")?,
            secrets: row.try_get("secrets")?,
            blueprint: row.try_get("blueprint")?,
            lane_state: row.try_get("lane_state")?,
            lane_reason: row.try_get("lane_reason")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Binds one record and checks that it gave one value per column.
    pub(in crate::store::sqlite) fn binds_every_column<T: Insert>(row: T) {
        let mut q = QueryBuilder::<Sqlite>::new("");
        q.push_values(std::iter::once(row), |mut values, row| {
            row.bind(&mut values)
        });
        let placeholders = q.sql().as_str().matches('?').count();
        assert_eq!(
            placeholders,
            T::COLUMNS.len(),
            "{}: {placeholders} values bound for {} columns",
            T::TABLE,
            T::COLUMNS.len()
        );
    }
}
