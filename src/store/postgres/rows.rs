//! How PostgreSQL binds and reads each kind of value, and the multi-row insert.
//!
//! PostgreSQL's TEXT cannot hold U+0000. An event's own strings go to BYTEA, losslessly;
//! any other text (Button's answers, messages quoting them) has U+0000 replaced by
//! U+FFFD on the way in, so no answer can make a write fail.

use std::borrow::Cow;
use std::fmt::Display;
use std::sync::Arc;

use sqlx::postgres::PgRow;
use sqlx::query_builder::Separated;
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};

use crate::store::rows::{Cells, Insert, Values};
use crate::store::{MAX_BINDS, StoreError, pieces};

/// `text` as TEXT can hold it.
pub(super) fn storable(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

impl<Sep: Display> Values for Separated<'_, Postgres, Sep> {
    fn text(&mut self, value: Option<&str>) {
        self.push_bind(value.map(|v| storable(v).into_owned()));
    }

    fn event_text(&mut self, value: Option<&str>) {
        self.push_bind(value.map(|v| v.as_bytes().to_vec()));
    }

    fn shared(&mut self, value: Option<Arc<str>>) {
        self.push_bind(value.map(|v| v.to_string()));
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

impl Cells for PgRow {
    fn text(&self, column: &str) -> Result<Option<String>, sqlx::Error> {
        self.try_get(column)
    }

    fn event_text(&self, column: &str) -> Result<Option<String>, sqlx::Error> {
        self.try_get::<Option<Vec<u8>>, _>(column)?
            .map(|bytes| {
                String::from_utf8(bytes).map_err(|e| sqlx::Error::ColumnDecode {
                    index: column.to_owned(),
                    source: Box::new(e),
                })
            })
            .transpose()
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

/// Inserts `rows` in as few statements as the bind limit allows, each statement ending
/// with `tail` (`ON CONFLICT ... RETURNING ...`, or nothing). Answers the rows the
/// statements returned and how many went in.
pub(super) async fn insert<T: Insert>(
    conn: &mut PgConnection,
    rows: Vec<T>,
    tail: &str,
) -> Result<(Vec<PgRow>, u64), StoreError> {
    insert_rows(conn, rows, Rows::All, tail).await
}

/// Which of the rows given an insert writes.
#[derive(Clone, Copy)]
pub(super) enum Rows {
    All,
    /// Only those whose `integration_id` names an integration that exists, each such
    /// integration locked for share (in id order) until the commit, in the statement
    /// itself: a delete on another replica waits for the commit, or wins and they are
    /// not written.
    OfExistingIntegrations,
}

/// [`insert`], writing the rows `which` says.
pub(super) async fn insert_rows<T: Insert>(
    conn: &mut PgConnection,
    rows: Vec<T>,
    which: Rows,
    tail: &str,
) -> Result<(Vec<PgRow>, u64), StoreError> {
    let mut rows = rows.into_iter();
    let columns = T::COLUMNS.join(", ");
    let (head, source) = match which {
        Rows::All => (
            format!("INSERT INTO {} ({columns}) ", T::TABLE),
            String::new(),
        ),
        Rows::OfExistingIntegrations => (
            format!("WITH v ({columns}) AS ("),
            format!(
                ") INSERT INTO {} ({columns}) SELECT * FROM v WHERE integration_id IN \
                 (SELECT id FROM integrations WHERE id IN (SELECT integration_id FROM v) \
                 ORDER BY id FOR SHARE)",
                T::TABLE
            ),
        ),
    };
    let (mut returned, mut inserted) = (Vec::new(), 0);
    for n in pieces(rows.len(), MAX_BINDS / T::COLUMNS.len()) {
        let mut q = QueryBuilder::<Postgres>::new(head.as_str());
        q.push_values(rows.by_ref().take(n), |mut values, row| {
            row.bind(&mut values)
        });
        q.push(source.as_str());
        q.push(tail);
        if tail.contains("RETURNING") {
            let got = q.build().fetch_all(&mut *conn).await?;
            inserted += got.len() as u64;
            returned.extend(got);
        } else {
            inserted += q.build().execute(&mut *conn).await?.rows_affected();
        }
    }
    Ok((returned, inserted))
}
