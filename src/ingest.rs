//! The ingest stage: validate each event's envelope, route it to the integrations that
//! take it, map it to the exact Button request for each, and write the event, its
//! deliveries and any immediate outcome (filtered, mapping failed) in one commit.
//! Nothing is acknowledged before that commit. A lane with room whose last lease found
//! nothing more due gets its new deliveries leased in that same commit and handed
//! straight over ([`Handover`]), so it takes no lease of its own for them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::blueprint::{self, transform};
use crate::button::Client;
use crate::delivery::Delivery;
use crate::domain::clock::now_ms;
use crate::domain::{DeliveryId, DeliveryState, FieldError, IntegrationId, LeaseToken};
use crate::integrations::{Integration, Registry};
use crate::live_logs::Hub;
use crate::mapping;
use crate::metrics::Metrics;
use crate::records::{self, EventRef};
use crate::sources::Sender;
use crate::store::ingest::{IngestLease, IngestRecord, NewEvent};
use crate::store::queue::Leased;
use crate::store::{Store, StoreError};

const MAX_MESSAGE_ID: usize = 255;

/// Where events go.
#[derive(Clone)]
pub enum Target {
    /// To every enabled integration the sender reaches (all of them for the default
    /// source, the connected ones for a source) whose blueprint takes the event,
    /// narrowed by the event's `integrations` object.
    Routed(Sender),
    /// To this integration only.
    Only(Arc<Integration>),
}

/// One event of a request: its raw text, parsed, or why it was refused.
pub struct Incoming {
    pub raw: String,
    pub parsed: Result<Value, Rejection>,
}

/// Why an event was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejection {
    TooLarge {
        bytes: usize,
        limit: usize,
    },
    /// Not JSON, with where the syntax broke.
    NotJson(String),
    /// JSON, but not a valid event envelope: every problem named.
    Invalid(Vec<FieldError>),
}

impl Rejection {
    /// The rejection as field problems (an empty field is the event itself).
    pub fn into_field_errors(self) -> Vec<FieldError> {
        match self {
            Self::TooLarge { bytes, limit } => vec![FieldError::new(
                "",
                "too_large",
                format!("the event is {bytes} bytes; the limit is {limit}"),
            )],
            Self::NotJson(message) => vec![FieldError::new("", "invalid_json", message)],
            Self::Invalid(errors) => errors,
        }
    }
}

impl Incoming {
    pub fn parse(raw: String, max_bytes: usize) -> Self {
        let parsed = if raw.len() > max_bytes {
            Err(Rejection::TooLarge {
                bytes: raw.len(),
                limit: max_bytes,
            })
        } else {
            serde_json::from_str::<Value>(&raw)
                .map_err(|e| Rejection::NotJson(e.to_string()))
                .and_then(|v| validate(&v).map(|()| v).map_err(Rejection::Invalid))
        };
        Self { raw, parsed }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    Accepted,
    Duplicate,
    Rejected,
}

/// What became of one event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventResult {
    pub index: usize,
    #[serde(rename = "messageId")]
    pub message_id: Option<String>,
    pub status: EventStatus,
    /// Deliveries queued for Button.
    pub deliveries_queued: usize,
    /// Deliveries recorded as filtered (no consent).
    pub filtered: usize,
    /// Deliveries recorded as mapping failures (see Live Logs for the reason).
    pub mapping_failed: usize,
    /// The integrations the event went to (queued, filtered or failed to map there).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub integrations: Vec<IntegrationId>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// The answer to an ingest request.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IngestSummary {
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: usize,
    pub deliveries_queued: usize,
    pub results: Vec<EventResult>,
}

#[derive(Clone)]
pub struct Ingest {
    pub registry: Arc<Registry>,
    pub store: Store,
    pub delivery: Arc<Delivery>,
    pub client: Client,
    pub hub: Hub,
    pub metrics: Arc<Metrics>,
}

impl Ingest {
    /// Accepts `events`: the valid ones are written (with their deliveries) in one
    /// commit before this returns; the invalid ones are named in the answer.
    pub async fn accept(
        &self,
        events: Vec<Incoming>,
        target: &Target,
    ) -> Result<IngestSummary, StoreError> {
        let integrations: Vec<Arc<Integration>> = match target {
            Target::Routed(sender) => self
                .registry
                .snapshot()
                .values()
                .filter(|i| i.enabled && sender.reaches(&i.id))
                .cloned()
                .collect(),
            Target::Only(i) => vec![i.clone()],
        };
        let now = now_ms();
        let mut results = Vec::with_capacity(events.len());
        let mut records = Vec::with_capacity(events.len());
        for (index, incoming) in events.into_iter().enumerate() {
            let event = match incoming.parsed {
                Ok(v) => v,
                Err(rejection) => {
                    results.push(EventResult {
                        index,
                        message_id: None,
                        status: EventStatus::Rejected,
                        deliveries_queued: 0,
                        filtered: 0,
                        mapping_failed: 0,
                        integrations: Vec::new(),
                        errors: rejection.into_field_errors(),
                    });
                    continue;
                }
            };
            let record = self.route(&event, incoming.raw, &integrations, target, now);
            results.push(EventResult {
                index,
                message_id: Some(record.event.message_id.clone()),
                status: EventStatus::Accepted,
                deliveries_queued: 0,
                filtered: 0,
                mapping_failed: 0,
                integrations: Vec::new(),
                errors: Vec::new(),
            });
            records.push((index, record));
        }
        let (indexes, mut records): (Vec<usize>, Vec<IngestRecord>) = records.into_iter().unzip();
        let handover = Handover::reserve(&self.delivery, &mut records, now);
        let written = if records.is_empty() {
            Vec::new()
        } else {
            match self.store.ingest(records).await {
                Ok(written) => written,
                Err(e) => {
                    handover.cancel(&self.delivery);
                    return Err(e);
                }
            }
        };

        // Committed: now hand the lanes what was leased for them, wake those with
        // other new work, and tell the live tail and the metrics.
        let leased: HashSet<DeliveryId> = written
            .iter()
            .flat_map(|(_, w)| w.leased.iter().cloned())
            .collect();
        handover.hand(&self.delivery, &leased);
        let mut woken = HashSet::new();
        let watched = self.hub.has_subscribers();
        for (index, (record, written)) in indexes.into_iter().zip(written) {
            let result = &mut results[index];
            let kept: Vec<_> = record
                .deliveries
                .iter()
                .filter(|d| written.deliveries.contains(&d.parcel.id))
                .collect();
            // Nothing new: the event was known, or every integration it goes to had
            // this messageId already (the event row may have aged out first).
            let all_known = !record.deliveries.is_empty() && kept.is_empty();
            if (!written.new_event && kept.is_empty()) || all_known {
                result.status = EventStatus::Duplicate;
                continue;
            }
            for d in &kept {
                result.integrations.push(d.parcel.integration_id.clone());
                match d.state {
                    DeliveryState::Pending => {
                        result.deliveries_queued += 1;
                        let to = &d.parcel.integration_id;
                        if !leased.contains(&d.parcel.id) && woken.insert(to.clone()) {
                            self.delivery.notify(to);
                        }
                    }
                    DeliveryState::Filtered => result.filtered += 1,
                    _ => result.mapping_failed += 1,
                }
            }
            for log in record.logs.iter().filter(|l| {
                l.delivery_id
                    .as_ref()
                    .is_some_and(|id| written.deliveries.contains(id))
            }) {
                self.metrics.delivery(&log.integration_id, log.outcome);
                if watched {
                    self.hub.publish(log, None);
                }
            }
        }
        let summary = IngestSummary {
            accepted: results
                .iter()
                .filter(|r| r.status == EventStatus::Accepted)
                .count(),
            duplicates: results
                .iter()
                .filter(|r| r.status == EventStatus::Duplicate)
                .count(),
            rejected: results
                .iter()
                .filter(|r| r.status == EventStatus::Rejected)
                .count(),
            deliveries_queued: results.iter().map(|r| r.deliveries_queued).sum(),
            results,
        };
        self.metrics.events_ingested.inc_by(summary.accepted as u64);
        self.metrics
            .events_duplicate
            .inc_by(summary.duplicates as u64);
        self.metrics.events_rejected.inc_by(summary.rejected as u64);
        Ok(summary)
    }

    /// Maps the event for every integration it goes to.
    fn route(
        &self,
        event: &Value,
        raw: String,
        integrations: &[Arc<Integration>],
        target: &Target,
        now: i64,
    ) -> IngestRecord {
        let message_id = event["messageId"].as_str().unwrap_or_default().to_owned();
        let name = blueprint::event_name(event).map(str::to_owned);
        let about = EventRef {
            message_id: &message_id,
            event_name: name.as_deref(),
        };
        let mut deliveries = Vec::new();
        let mut logs = Vec::new();
        for integration in integrations {
            if matches!(target, Target::Routed(_)) && !routed_to(event, integration) {
                continue;
            }
            let prepared = mapping::prepare(integration, &self.client, event);
            if let Some((delivery, log)) =
                records::delivery(integration, about, prepared, false, now)
            {
                deliveries.push(delivery);
                logs.extend(log);
            }
        }
        IngestRecord {
            event: NewEvent {
                message_id,
                event_name: name,
                received_at: now,
                payload: raw,
            },
            deliveries,
            logs,
        }
    }
}

/// Segment's `integrations` object narrows where an event goes: a key naming this
/// integration (its id, its name, or its catalog entry's, any case) decides; else
/// `All` does; else it goes. A value is "on" unless it is `false`.
fn routed_to(event: &Value, integration: &Integration) -> bool {
    let Some(options) = event.get("integrations").and_then(Value::as_object) else {
        return true;
    };
    let on = |v: &Value| !matches!(v, Value::Bool(false));
    if let Some(v) = options.get(integration.id.as_str()) {
        return on(v);
    }
    if let Some((_, v)) = options.iter().find(|(k, _)| {
        k.eq_ignore_ascii_case(&integration.name) || k.eq_ignore_ascii_case(integration.entry.key)
    }) {
        return on(v);
    }
    options.get("All").is_none_or(on)
}

/// The envelope every event must have; the payload is the blueprint's business.
pub fn validate(event: &Value) -> Result<(), Vec<FieldError>> {
    let Some(obj) = event.as_object() else {
        return Err(vec![FieldError::new(
            "",
            "invalid_type",
            "an event must be a JSON object",
        )]);
    };
    let mut errors = Vec::new();
    match obj.get("messageId") {
        Some(Value::String(id))
            if !id.trim().is_empty() && id.chars().count() <= MAX_MESSAGE_ID => {}
        Some(Value::String(_)) => errors.push(FieldError::new(
            "messageId",
            "invalid_length",
            format!("must be 1 to {MAX_MESSAGE_ID} characters"),
        )),
        Some(_) => errors.push(FieldError::new(
            "messageId",
            "invalid_type",
            "must be a string",
        )),
        None => errors.push(FieldError::new(
            "messageId",
            "required",
            "is required: the event's unique id, used to deliver it only once",
        )),
    }
    let kind = obj.get("type");
    match kind {
        None => {}
        Some(Value::String(t))
            if ["track", "page", "screen", "identify", "group", "alias"].contains(&t.as_str()) => {}
        Some(_) => errors.push(FieldError::new(
            "type",
            "invalid_value",
            "must be one of track, page, screen, identify, group, alias",
        )),
    }
    let is_track = kind.and_then(Value::as_str).is_none_or(|t| t == "track");
    match obj.get("event") {
        Some(Value::String(name)) if !name.trim().is_empty() => {}
        None if !is_track => {}
        Some(Value::String(_)) | None => errors.push(FieldError::new(
            "event",
            "required",
            "is required for track events: the event name",
        )),
        Some(_) => errors.push(FieldError::new("event", "invalid_type", "must be a string")),
    }
    if let Some(ts) = obj.get("timestamp")
        && let Err(e) = transform::timestamp(ts)
    {
        errors.push(FieldError::new("timestamp", "invalid_format", e));
    }
    for field in ["properties", "context", "traits", "integrations"] {
        if obj
            .get(field)
            .is_some_and(|v| !v.is_object() && !v.is_null())
        {
            errors.push(FieldError::new(field, "invalid_type", "must be an object"));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// New deliveries leased in the ingest commit, for lanes that have room and found
/// nothing more due at their last lease ([`Delivery::reserve`]): each lane is handed
/// its own once the commit is done, instead of leasing them in a commit of its own.
/// What the commit did not lease (a repeat, an order change held behind an earlier
/// one) frees its room and waits in the store for the lane's lease, like any
/// delivery.
struct Handover {
    /// Per lane: the room reserved, and the deliveries written into it.
    lanes: HashMap<IntegrationId, (usize, Vec<Leased>)>,
}

impl Handover {
    /// Reserves room for the queued deliveries of `records`, oldest first, and marks
    /// those that fit to be leased by the write.
    fn reserve(delivery: &Delivery, records: &mut [IngestRecord], now: i64) -> Self {
        let mut wanted: HashMap<&IntegrationId, usize> = HashMap::new();
        for d in records.iter().flat_map(|r| r.deliveries.iter()) {
            if d.state == DeliveryState::Pending {
                *wanted.entry(&d.parcel.integration_id).or_default() += 1;
            }
        }
        let mut lanes: HashMap<IntegrationId, (usize, Vec<Leased>)> = wanted
            .into_iter()
            .filter_map(|(id, want)| {
                let granted = delivery.reserve(id, want);
                (granted > 0).then(|| (id.clone(), (granted, Vec::with_capacity(granted))))
            })
            .collect();
        if lanes.is_empty() {
            return Self { lanes };
        }
        let lease = IngestLease {
            token: LeaseToken::new(),
            until: now + delivery.lease_for().as_millis() as i64,
        };
        for d in records.iter_mut().flat_map(|r| r.deliveries.iter_mut()) {
            if d.state != DeliveryState::Pending {
                continue;
            }
            let Some((_, handed)) = lanes
                .get_mut(&d.parcel.integration_id)
                .filter(|(granted, handed)| handed.len() < *granted)
            else {
                continue;
            };
            d.lease = Some(lease.clone());
            handed.push(Leased {
                parcel: d.parcel.clone(),
                attempts: 0,
                url: d.url.clone(),
                body: d.body.clone(),
                lease_token: lease.token.clone(),
                order_key: d.order_key.clone(),
            });
        }
        Self { lanes }
    }

    /// Hands each lane the deliveries the commit leased (`leased`), freeing the room
    /// of the rest.
    fn hand(self, delivery: &Delivery, leased: &HashSet<DeliveryId>) {
        for (id, (reserved, mut handed)) in self.lanes {
            handed.retain(|j| leased.contains(&j.parcel.id));
            delivery.hand(&id, handed, reserved);
        }
    }

    /// Frees the room of a write that failed.
    fn cancel(self, delivery: &Delivery) {
        for (id, (reserved, _)) in self.lanes {
            delivery.unreserve(&id, reserved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: Value) -> Vec<String> {
        validate(&v)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn a_well_formed_track_event_passes() {
        assert!(fields(json!({"type": "track", "event": "purchase", "messageId": "m-1", "timestamp": "2024-01-01T00:00:00Z"})).is_empty());
        assert!(fields(json!({"type": "identify", "messageId": "m-2", "traits": {}})).is_empty());
    }

    #[test]
    fn envelope_problems_name_their_field() {
        assert_eq!(fields(json!({"event": "purchase"})), ["messageId"]);
        assert_eq!(fields(json!({"messageId": 5, "event": "x"})), ["messageId"]);
        assert_eq!(
            fields(json!({"messageId": "m", "type": "track"})),
            ["event"]
        );
        assert_eq!(
            fields(json!({"messageId": "m", "event": "x", "type": "nope"})),
            ["type"]
        );
        assert_eq!(
            fields(json!({"messageId": "m", "event": "x", "timestamp": "yesterday"})),
            ["timestamp"]
        );
        assert_eq!(
            fields(json!({"messageId": "m", "event": "x", "properties": [1]})),
            ["properties"]
        );
        assert_eq!(fields(json!([1])), [""]);
    }
}
