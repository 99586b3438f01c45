//! Retention: live-log entries past their age or beyond each integration's cap, then
//! the events and finished deliveries no longer needed, and dead letters past theirs.
//! Deleted in bounded chunks, each its own commit, so ingest never waits long behind
//! a prune.

use std::time::{Duration, SystemTime};

use super::{Store, StoreError, on_backend};

#[derive(Debug, Clone)]
pub struct PrunePolicy {
    pub max_age: Duration,
    pub max_entries_per_integration: u64,
    pub dead_letter_max_age: Duration,
}

impl Store {
    /// Removes what `policy` no longer keeps. Answers how many rows went.
    pub async fn prune(&self, now: SystemTime, policy: &PrunePolicy) -> Result<u64, StoreError> {
        on_backend!(self.backend, db => db.prune(now, policy).await)
    }
}
