//! The remap stage: events that were stored but sent nowhere, because the blueprint
//! could not map them (a field missing, a currency it did not expect) or kept them
//! from Button, mapped again with the integration's current blueprint, after a fix.
//! What now maps is queued as if it had just arrived; each new mapping's live-log
//! entry points at the entry it replaces. Deliveries keep their ids, so an event still
//! reaches an integration at most once.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::blueprint;
use crate::domain::clock::now_ms;
use crate::domain::{DeliveryId, DeliveryState, LogId, Outcome};
use crate::ingest::Ingest;
use crate::integrations::Integration;
use crate::mapping;
use crate::records::{self, EventRef};
use crate::store::StoreError;
use crate::store::remap::{Remap, RemapFilter};

/// What a replay did.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct RemapSummary {
    /// Deliveries the filters selected (at most `limit`).
    pub matched: usize,
    /// Mapped now, and queued for Button.
    pub queued: usize,
    /// Still not mappable: the new entry says why.
    pub mapping_failed: usize,
    /// Kept from Button again (no marketing consent).
    pub filtered: usize,
    /// The current blueprint no longer takes the event: left as it was.
    pub not_taken: usize,
    /// The event is no longer stored (retention removed it): left as it was.
    pub event_missing: usize,
    /// More may match: send this as `after` to go on.
    pub next: Option<DeliveryId>,
    /// The entries written, one per delivery mapped again.
    pub results: Vec<RemapResult>,
}

/// One delivery mapped again.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RemapResult {
    #[serde(rename = "messageId")]
    pub message_id: String,
    pub delivery_id: DeliveryId,
    /// `remapped` (queued), `mapping_failed` or `filtered`.
    pub outcome: Outcome,
    /// The new entry.
    pub log_id: LogId,
    /// The entry it replaces.
    pub replaces: Option<LogId>,
}

impl Ingest {
    /// Maps the ended deliveries of `integration` that `filter` selects again, with its
    /// current blueprint, and writes what came of each in one commit.
    pub async fn remap(
        &self,
        integration: &Integration,
        filter: &RemapFilter,
    ) -> Result<RemapSummary, StoreError> {
        let found = self.store.unmapped(&integration.id, filter).await?;
        let mut summary = RemapSummary {
            matched: found.len(),
            next: (found.len() >= filter.limit as usize)
                .then(|| found.last().map(|u| u.delivery_id.clone()))
                .flatten(),
            ..RemapSummary::default()
        };
        let now = now_ms();
        let mut remaps = Vec::with_capacity(found.len());
        for unmapped in found {
            let Some(event) = unmapped
                .payload
                .as_deref()
                .and_then(|p| serde_json::from_str::<Value>(p).ok())
            else {
                summary.event_missing += 1;
                continue;
            };
            let about = EventRef {
                message_id: &unmapped.message_id,
                event_name: blueprint::event_name(&event),
            };
            let prepared = mapping::prepare(integration, &self.client, &event);
            let Some((delivery, log)) = records::remapped(
                integration,
                about,
                unmapped.delivery_id,
                prepared,
                unmapped.test,
                unmapped.last_entry,
                now,
            ) else {
                summary.not_taken += 1;
                continue;
            };
            remaps.push(Remap {
                delivery_id: delivery.parcel.id,
                from: filter.state,
                state: delivery.state,
                call: delivery.parcel.call,
                url: delivery.url,
                body: delivery.body,
                log,
            });
        }
        let written = self.store.remap(remaps).await?;
        let watched = self.hub.has_subscribers();
        for remap in &written {
            match remap.state {
                DeliveryState::Pending => summary.queued += 1,
                DeliveryState::Filtered => summary.filtered += 1,
                _ => summary.mapping_failed += 1,
            }
            self.metrics.delivery(&integration.id, remap.log.outcome);
            if watched {
                self.hub.publish(&remap.log, None);
            }
            summary.results.push(RemapResult {
                message_id: remap.log.message_id.clone().unwrap_or_default(),
                delivery_id: remap.delivery_id.clone(),
                outcome: remap.log.outcome,
                log_id: remap.log.id.clone(),
                replaces: remap.log.replaces.clone(),
            });
        }
        if summary.queued > 0 {
            self.delivery.notify(&integration.id);
        }
        Ok(summary)
    }
}
