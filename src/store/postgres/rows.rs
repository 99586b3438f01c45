//! How PostgreSQL binds and reads each kind of value: row by row in a multi-row insert,
//! or column by column as arrays ([`Columns`]).
//!
//! PostgreSQL's TEXT cannot hold U+0000. An event's own strings go to BYTEA, losslessly;
//! any other text (Button's answers, messages quoting them) has U+0000 replaced by
//! U+FFFD on the way in, so no answer can make a write fail.

use std::borrow::Cow;
use std::fmt::Display;
use std::sync::Arc;

use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
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

/// Rows bound column by column, each column one array parameter: a statement that
/// reads them (`SELECT * FROM unnest($1, $2, ...)`) is the same text whatever the
/// number of rows, so each connection prepares it once, and it has no bind limit.
/// Its columns are made by the first row bound: with none, it binds nothing.
#[derive(Default)]
pub(super) struct Columns {
    columns: Vec<Column>,
    /// The column the next value of the row being bound goes to.
    at: usize,
}

enum Column {
    Text(Vec<Option<String>>),
    Bytes(Vec<Option<Vec<u8>>>),
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Flag(Vec<bool>),
}

impl Columns {
    /// Starts the next row; `row` binds it ([`Insert::bind`], and any values after).
    pub(super) fn row(&mut self) -> &mut Self {
        self.at = 0;
        self
    }

    /// Binds the columns, in order, as the query's next parameters.
    pub(super) fn bind_to<'q>(
        self,
        mut q: Query<'q, Postgres, PgArguments>,
    ) -> Query<'q, Postgres, PgArguments> {
        for column in self.columns {
            q = match column {
                Column::Text(v) => q.bind(v),
                Column::Bytes(v) => q.bind(v),
                Column::Int(v) => q.bind(v),
                Column::Float(v) => q.bind(v),
                Column::Flag(v) => q.bind(v),
            };
        }
        q
    }

    /// The column of the next value, made by `new` for the first row.
    fn next(&mut self, new: fn() -> Column) -> &mut Column {
        if self.at == self.columns.len() {
            self.columns.push(new());
        }
        self.at += 1;
        &mut self.columns[self.at - 1]
    }
}

/// Every row binds the same kinds of value in the same order (its [`Insert::bind`]).
const SAME_KINDS: &str = "every row binds the same kinds of value in the same order";

impl Values for Columns {
    fn text(&mut self, value: Option<&str>) {
        let Column::Text(column) = self.next(|| Column::Text(Vec::new())) else {
            unreachable!("{SAME_KINDS}")
        };
        column.push(value.map(|v| storable(v).into_owned()));
    }

    fn event_text(&mut self, value: Option<&str>) {
        self.bytes(value.map(|v| v.as_bytes().to_vec()));
    }

    fn shared(&mut self, value: Option<Arc<str>>) {
        self.text(value.as_deref());
    }

    fn int(&mut self, value: Option<i64>) {
        let Column::Int(column) = self.next(|| Column::Int(Vec::new())) else {
            unreachable!("{SAME_KINDS}")
        };
        column.push(value);
    }

    fn float(&mut self, value: Option<f64>) {
        let Column::Float(column) = self.next(|| Column::Float(Vec::new())) else {
            unreachable!("{SAME_KINDS}")
        };
        column.push(value);
    }

    fn flag(&mut self, value: bool) {
        let Column::Flag(column) = self.next(|| Column::Flag(Vec::new())) else {
            unreachable!("{SAME_KINDS}")
        };
        column.push(value);
    }

    fn bytes(&mut self, value: Option<Vec<u8>>) {
        let Column::Bytes(column) = self.next(|| Column::Bytes(Vec::new())) else {
            unreachable!("{SAME_KINDS}")
        };
        column.push(value);
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

/// Inserts `rows` in as few multi-row statements as the bind limit allows.
pub(super) async fn insert<T: Insert>(
    conn: &mut PgConnection,
    rows: Vec<T>,
) -> Result<(), StoreError> {
    let mut rows = rows.into_iter();
    let head = format!("INSERT INTO {} ({}) ", T::TABLE, T::COLUMNS.join(", "));
    for n in pieces(rows.len(), MAX_BINDS / T::COLUMNS.len()) {
        let mut q = QueryBuilder::<Postgres>::new(head.as_str());
        q.push_values(rows.by_ref().take(n), |mut values, row| {
            row.bind(&mut values)
        });
        q.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// `$from`, `$from + 1`, ... for the `n` columns of a kind of row.
pub(super) fn parameters(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Most rows of a kind in one statement, and most bytes of what they bind (events,
/// bodies, Button's answers): a larger write is split, so no statement's parameters
/// grow without bound (PostgreSQL refuses a message over 1 GB).
pub(super) const STATEMENT_ROWS: usize = 1024;
pub(super) const STATEMENT_BYTES: usize = 8 << 20;

/// `rows` bound as one array per column.
pub(super) fn columns<T: Insert>(rows: Vec<T>) -> Columns {
    let mut columns = Columns::default();
    for row in rows {
        row.bind(columns.row());
    }
    columns
}

/// `rows`, in order, in pieces of [`STATEMENT_ROWS`] and [`STATEMENT_BYTES`] at most
/// (a row larger than that alone).
pub(super) fn split<T>(rows: Vec<T>, bytes: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut pieces: Vec<Vec<T>> = Vec::new();
    let mut size = 0;
    for row in rows {
        let n = bytes(&row);
        match pieces.last_mut() {
            Some(piece) if piece.len() < STATEMENT_ROWS && size + n <= STATEMENT_BYTES => {
                size += n;
                piece.push(row);
            }
            _ => {
                size = n;
                pieces.push(vec![row]);
            }
        }
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_write_splits_in_order_by_rows_and_bytes() {
        let sizes: Vec<usize> = (0..STATEMENT_ROWS + 10).map(|_| 1).collect();
        let pieces = split(sizes, |&n| n);
        assert_eq!(
            pieces.iter().map(Vec::len).collect::<Vec<_>>(),
            [STATEMENT_ROWS, 10]
        );

        let half = STATEMENT_BYTES / 2;
        let rows = vec![
            (0, half),
            (1, half),
            (2, 1),
            (3, STATEMENT_BYTES * 2),
            (4, 1),
        ];
        let pieces = split(rows, |&(_, n)| n);
        let ids: Vec<Vec<i32>> = pieces
            .iter()
            .map(|p| p.iter().map(|&(id, _)| id).collect())
            .collect();
        assert_eq!(ids, [vec![0, 1], vec![2], vec![3], vec![4]]);
    }
}
