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
    /// Writes a new integration, or a change to one (its id, entry, variant, delivery
    /// mode and creation time never change). A change to an integration deleted
    /// meanwhile would bring it back: the registry, the one caller, serialises every
    /// save and delete, and saves only what it has just read.
    pub async fn save_integration(&self, row: IntegrationRow) -> Result<(), StoreError> {
        on_backend!(self.backend, db => db.save_integration(row).await)
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
