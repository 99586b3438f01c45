//! How SQLite binds and reads each kind of value, through sqlx and through the
//! writer's direct connection (rusqlite), and the inserts of each.

use std::fmt::Display;
use std::sync::Arc;

use rusqlite::types::Value;
use sqlx::query_builder::Separated;
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use crate::store::rows::{Cells, Insert, Values};
use crate::store::{MAX_BINDS, StoreError, pieces};

impl<Sep: Display> Values for Separated<'_, Sqlite, Sep> {
    fn text(&mut self, value: Option<&str>) {
        self.push_bind(value.map(str::to_owned));
    }

    fn event_text(&mut self, value: Option<&str>) {
        self.text(value);
    }

    fn shared(&mut self, value: Option<Arc<str>>) {
        self.push_bind(value);
    }

    fn int(&mut self, value: Option<i64>) {
        self.push_bind(value);
    }

    fn float(&mut self, value: Option<f64>) {
        self.push_bind(value);
    }

    fn flag(&mut self, value: bool) {
        self.push_bind(value);
    }

    fn bytes(&mut self, value: Option<Vec<u8>>) {
        self.push_bind(value);
    }
}

impl Cells for SqliteRow {
    fn text(&self, column: &str) -> Result<Option<String>, sqlx::Error> {
        self.try_get(column)
    }

    fn event_text(&self, column: &str) -> Result<Option<String>, sqlx::Error> {
        self.try_get(column)
    }

    fn int(&self, column: &str) -> Result<Option<i64>, sqlx::Error> {
        self.try_get(column)
    }

    fn float(&self, column: &str) -> Result<Option<f64>, sqlx::Error> {
        self.try_get(column)
    }

    fn flag(&self, column: &str) -> Result<bool, sqlx::Error> {
        self.try_get(column)
    }

    fn bytes(&self, column: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
        self.try_get(column)
    }
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

/// One row's values for a direct statement, in column order.
#[derive(Default)]
pub(super) struct Params(pub Vec<Value>);

impl Params {
    /// The values bound so far, taken for a statement.
    pub(super) fn take(&mut self) -> rusqlite::ParamsFromIter<Vec<Value>> {
        rusqlite::params_from_iter(std::mem::take(&mut self.0))
    }
}

impl Values for Params {
    fn text(&mut self, value: Option<&str>) {
        self.0
            .push(value.map_or(Value::Null, |v| Value::Text(v.to_owned())));
    }

    fn event_text(&mut self, value: Option<&str>) {
        Values::text(self, value);
    }

    fn shared(&mut self, value: Option<Arc<str>>) {
        Values::text(self, value.as_deref());
    }

    fn int(&mut self, value: Option<i64>) {
        self.0.push(value.map_or(Value::Null, Value::Integer));
    }

    fn float(&mut self, value: Option<f64>) {
        self.0.push(value.map_or(Value::Null, Value::Real));
    }

    fn flag(&mut self, value: bool) {
        self.0.push(Value::Integer(i64::from(value)));
    }

    fn bytes(&mut self, value: Option<Vec<u8>>) {
        self.0.push(value.map_or(Value::Null, Value::Blob));
    }
}

fn decode(e: rusqlite::Error) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(e))
}

impl Cells for rusqlite::Row<'_> {
    fn text(&self, column: &str) -> Result<Option<String>, sqlx::Error> {
        self.get(column).map_err(decode)
    }

    fn event_text(&self, column: &str) -> Result<Option<String>, sqlx::Error> {
        self.get(column).map_err(decode)
    }

    fn int(&self, column: &str) -> Result<Option<i64>, sqlx::Error> {
        self.get(column).map_err(decode)
    }

    fn float(&self, column: &str) -> Result<Option<f64>, sqlx::Error> {
        self.get(column).map_err(decode)
    }

    fn flag(&self, column: &str) -> Result<bool, sqlx::Error> {
        self.get(column).map_err(decode)
    }

    fn bytes(&self, column: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
        self.get(column).map_err(decode)
    }
}

/// Inserts `rows` on the writer's direct connection, one prepared statement for all:
/// without a thread hop per statement, a row per statement costs less than building
/// a multi-row one. Answers how many rows went in.
pub(super) fn insert_direct<T: Insert>(
    db: &rusqlite::Connection,
    rows: impl IntoIterator<Item = T>,
) -> Result<u64, StoreError> {
    let sql = format!(
        "INSERT INTO {} ({}) VALUES ({})",
        T::TABLE,
        T::COLUMNS.join(", "),
        vec!["?"; T::COLUMNS.len()].join(", ")
    );
    let mut statement = db.prepare_cached(&sql)?;
    let mut params = Params::default();
    let mut inserted = 0;
    for row in rows {
        row.bind(&mut params);
        inserted += statement.execute(params.take())? as u64;
    }
    Ok(inserted)
}
