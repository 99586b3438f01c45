//! What can go wrong in the store, as the rest of the service needs to know it: wait
//! and retry (unavailable), a bug (rejected), or data this version cannot read
//! (corrupt).

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be written or read now (locked, full disk, read-only file,
    /// I/O error, writer stopped). Nothing of the failed operation was applied.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// More events wait for a commit than the bound allows: this write was not queued.
    #[error("{queued} events already wait for a commit (database.max_queued_events)")]
    Overloaded { queued: usize },
    /// The database refused this operation (a constraint, a bad statement): a bug,
    /// not a condition to wait out.
    #[error("store refused the operation: {0}")]
    Rejected(String),
    /// A stored record is not what this version of the service expects.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Overloaded { .. })
    }
}

/// SQLite primary result codes that mean the store cannot take writes now: BUSY,
/// LOCKED, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, NOTADB.
const SQLITE_UNAVAILABLE: [i64; 8] = [5, 6, 8, 10, 11, 13, 14, 26];

/// PostgreSQL SQLSTATE classes and codes that mean the same: a serialization failure
/// or deadlock (40), a lock not granted in time (55P03), a dropped connection (08),
/// insufficient resources such as a full disk (53), an administrator's or a
/// timeout's cancel (57), a read-only transaction (25006).
fn postgres_unavailable(code: &str) -> bool {
    matches!(code.get(..2), Some("08" | "40" | "53" | "57")) || code == "55P03" || code == "25006"
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::ColumnNotFound(_) => Self::Corrupt(e.to_string()),
            sqlx::Error::Database(db) => {
                let code = db.code().unwrap_or_default();
                let unavailable = match code.parse::<i64>() {
                    Ok(sqlite) => SQLITE_UNAVAILABLE.contains(&(sqlite & 0xff)),
                    Err(_) => postgres_unavailable(&code),
                };
                if unavailable {
                    Self::Unavailable(e.to_string())
                } else {
                    Self::Rejected(e.to_string())
                }
            }
            _ => Self::Unavailable(e.to_string()),
        }
    }
}

/// The writer's direct statements on SQLite ([`rusqlite`]) fail as sqlx's do.
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::Error as E;
        match &e {
            E::SqliteFailure(failure, _) => {
                if SQLITE_UNAVAILABLE.contains(&(i64::from(failure.extended_code) & 0xff)) {
                    Self::Unavailable(e.to_string())
                } else {
                    Self::Rejected(e.to_string())
                }
            }
            E::FromSqlConversionFailure(..)
            | E::IntegralValueOutOfRange(..)
            | E::Utf8Error(..)
            | E::InvalidColumnIndex(_)
            | E::InvalidColumnName(_)
            | E::InvalidColumnType(..) => Self::Corrupt(e.to_string()),
            _ => Self::Rejected(e.to_string()),
        }
    }
}
