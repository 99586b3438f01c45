//! How SQLite binds and reads each kind of value, and the multi-row insert.

use std::fmt::Display;
use std::sync::Arc;

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
