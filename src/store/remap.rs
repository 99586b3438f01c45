//! Mapping stored events again: the deliveries that ended without a request (mapping
//! failed, filtered) found with the events they carry, and, once mapped with the
//! current blueprint, each queued or ended again with the entry that says so.

use super::{Store, StoreError, on_backend};
use crate::button::CallKind;
use crate::domain::{DeliveryId, DeliveryState, IntegrationId, LogId};
use crate::live_logs::LogRecord;

/// Which ended deliveries of one integration to map again.
#[derive(Debug, Clone)]
pub struct RemapFilter {
    /// `mapping_failed` or `filtered`.
    pub state: DeliveryState,
    pub event_name: Option<String>,
    /// Received at or after (ms).
    pub since_ms: Option<i64>,
    /// Received at or before (ms).
    pub until_ms: Option<i64>,
    /// Only these messageIds (none: any).
    pub message_ids: Vec<String>,
    /// Past this delivery (deliveries are taken oldest first).
    pub after: Option<DeliveryId>,
    pub limit: u32,
}

/// A delivery that ended without a request, with its event as received.
#[derive(Debug, Clone)]
pub struct Unmapped {
    pub delivery_id: DeliveryId,
    pub message_id: String,
    pub event_name: String,
    pub test: bool,
    /// `None` when retention has removed the event.
    pub payload: Option<String>,
    /// The delivery's newest entry (the one a new mapping replaces).
    pub last_entry: Option<LogId>,
}

/// What a new mapping makes of an ended delivery: its new state and request, and the
/// entry that records it (pointing at the entry it replaces).
#[derive(Debug, Clone)]
pub struct Remap {
    pub delivery_id: DeliveryId,
    /// The state it was found in: it is changed only if it still holds it.
    pub from: DeliveryState,
    pub state: DeliveryState,
    pub call: Option<CallKind>,
    pub url: Option<String>,
    pub body: Option<Vec<u8>>,
    pub log: LogRecord,
}

impl Store {
    /// Ended deliveries of `integration_id` that `filter` selects, oldest first.
    pub async fn unmapped(
        &self,
        integration_id: &IntegrationId,
        filter: &RemapFilter,
    ) -> Result<Vec<Unmapped>, StoreError> {
        on_backend!(self.backend, db => db.unmapped(integration_id, filter).await)
    }

    /// Writes new mappings (a pending one is due now, with a fresh attempt budget) and
    /// their entries, in one commit. A delivery no longer in the state it was found in
    /// (another replay took it) is left alone. Answers the remaps written.
    pub async fn remap(&self, remaps: Vec<Remap>) -> Result<Vec<Remap>, StoreError> {
        if remaps.is_empty() {
            return Ok(remaps);
        }
        on_backend!(self.backend, db => db.remap(remaps).await)
    }
}
