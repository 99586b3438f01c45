//! Integration rows. Secret config values arrive here already sealed; the store never
//! sees them in clear.

use super::{Store, StoreError, on_backend};
use crate::domain::{IntegrationId, LaneState};

#[derive(Debug, Clone)]
pub struct IntegrationRow {
    pub id: IntegrationId,
    pub catalog_key: String,
    pub name: String,
    pub variant: String,
    pub delivery_mode: String,
    pub enabled: bool,
    /// Non-secret config values, a JSON object.
    pub config: String,
    /// Secret config values, sealed.
    pub secrets: Vec<u8>,
    /// The blueprint document, JSON.
    pub blueprint: String,
    pub lane_state: LaneState,
    pub lane_reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Store {
    pub async fn insert_integration(&self, row: IntegrationRow) -> Result<(), StoreError> {
        on_backend!(self.backend, db => db.insert_integration(row).await)
    }

    /// Writes a change to an integration read at version `seen` (its `updated_at`),
    /// unless it changed or went meanwhile, here or on another replica. Answers
    /// whether it was written.
    pub async fn update_integration(
        &self,
        row: IntegrationRow,
        seen: i64,
    ) -> Result<bool, StoreError> {
        on_backend!(self.backend, db => db.update_integration(row, seen).await)
    }

    /// Deletes the integration with its queue, dead letters and live logs. Answers
    /// whether it existed.
    pub async fn delete_integration(&self, id: &IntegrationId) -> Result<bool, StoreError> {
        on_backend!(self.backend, db => db.delete_integration(id).await)
    }

    pub async fn get_integration(
        &self,
        id: &IntegrationId,
    ) -> Result<Option<IntegrationRow>, StoreError> {
        on_backend!(self.backend, db => db.get_integration(id).await)
    }

    /// Every integration, oldest first.
    pub async fn all_integrations(&self) -> Result<Vec<IntegrationRow>, StoreError> {
        on_backend!(self.backend, db => db.all_integrations().await)
    }
}
