//! Sources: who sends events, each with its own ingest token (stored only as its
//! SHA-256) and the integrations it is connected to. Each change is one statement or
//! transaction of its own (connecting one integration, rotating the token), so two
//! operators (or replicas) changing one source at once never undo each other.

use super::{Store, StoreError, on_backend};
use crate::domain::{IntegrationId, SourceId};

#[derive(Debug, Clone)]
pub struct SourceRow {
    pub id: SourceId,
    pub name: String,
    /// SHA-256 of the source's ingest token; the token itself is never stored.
    pub token_sha256: Vec<u8>,
    /// The integrations its events go to, in id order.
    pub integrations: Vec<IntegrationId>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Store {
    /// Creates a source connected to `row.integrations` (those that exist).
    pub async fn insert_source(&self, row: SourceRow) -> Result<(), StoreError> {
        on_backend!(self.backend, db => db.insert_source(row).await)
    }

    /// Replaces the source's token digest. Answers whether the source exists.
    pub async fn rotate_source_token(
        &self,
        id: &SourceId,
        token_sha256: Vec<u8>,
        now: i64,
    ) -> Result<bool, StoreError> {
        on_backend!(self.backend, db => db.rotate_source_token(id, token_sha256, now).await)
    }

    /// Connects (`true`) or disconnects an integration. Answers whether both exist.
    pub async fn connect_source(
        &self,
        id: &SourceId,
        integration: &IntegrationId,
        connected: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        on_backend!(self.backend, db => db.connect_source(id, integration, connected, now).await)
    }

    /// Deletes the source and its connections. Answers whether it existed.
    pub async fn delete_source(&self, id: &SourceId) -> Result<bool, StoreError> {
        on_backend!(self.backend, db => db.delete_source(id).await)
    }

    pub async fn get_source(&self, id: &SourceId) -> Result<Option<SourceRow>, StoreError> {
        Ok(on_backend!(self.backend, db => db.sources(Some(id)).await)?.pop())
    }

    /// Every source, oldest first.
    pub async fn all_sources(&self) -> Result<Vec<SourceRow>, StoreError> {
        on_backend!(self.backend, db => db.sources(None).await)
    }
}
