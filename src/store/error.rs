//! What can go wrong in the store, as the rest of the service needs to know it: wait
//! and retry (unavailable), a bug (rejected), or data this version cannot read
//! (corrupt).

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be written or read now (locked, full disk, read-only file,
    /// I/O error, writer stopped). Nothing of the failed operation was applied.
    #[error("store unavailable: {0}")]
    Unavailable(String),
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
        matches!(self, Self::Unavailable(_))
    }
}

/// SQLite primary result codes that mean the store cannot take writes now: BUSY,
/// LOCKED, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, NOTADB.
const UNAVAILABLE_CODES: [i64; 8] = [5, 6, 8, 10, 11, 13, 14, 26];

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::ColumnNotFound(_) => Self::Corrupt(e.to_string()),
            sqlx::Error::Database(db) => {
                let primary = db
                    .code()
                    .and_then(|c| c.parse::<i64>().ok())
                    .map(|c| c & 0xff);
                if primary.is_some_and(|c| UNAVAILABLE_CODES.contains(&c)) {
                    Self::Unavailable(e.to_string())
                } else {
                    Self::Rejected(e.to_string())
                }
            }
            _ => Self::Unavailable(e.to_string()),
        }
    }
}
