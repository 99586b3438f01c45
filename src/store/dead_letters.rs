//! Dead letters: deliveries that used up their attempts, kept for inspection, replay
//! (with a fresh attempt budget) or discarding.

use super::{Page, Store, StoreError, on_backend};
use crate::button::CallKind;
use crate::domain::{DeliveryId, IntegrationId};

/// A dead-lettered delivery as listed.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub id: DeliveryId,
    pub message_id: String,
    pub event_name: String,
    pub call: Option<CallKind>,
    pub attempts: i64,
    pub created_at: i64,
    /// When it was dead-lettered.
    pub updated_at: i64,
}

/// Which dead letters an operation applies to.
#[derive(Debug, Clone)]
pub enum Selection {
    All,
    Ids(Vec<DeliveryId>),
}

/// What to do with the selected dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Back to the queue, due now, with a fresh attempt budget.
    Replay,
    /// Never sent.
    Discard,
}

impl Store {
    /// Dead letters of one integration, newest first (a page starts below its key).
    pub async fn list_dead_letters(
        &self,
        integration_id: &IntegrationId,
        page: &Page<DeliveryId>,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        on_backend!(self.backend, db => db.list_dead_letters(integration_id, page).await)
    }

    /// Replays or discards dead letters, now (and, named by id, failed deliveries, which
    /// may hold the later changes of their order). Answers how many moved.
    pub async fn resolve_dead_letters(
        &self,
        integration_id: &IntegrationId,
        selection: Selection,
        resolution: Resolution,
    ) -> Result<u64, StoreError> {
        on_backend!(self.backend, db => db.resolve_dead_letters(integration_id, selection, resolution).await)
    }
}
