//! Test Event: the product page's button that proves an integration works. One event
//! (a test purchase by default) goes through the integration's blueprint and straight
//! to Button, bypassing the queue; the answer comes back at once and is recorded in
//! Live Logs like any delivery, marked as a test.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::blueprint::{self, Issue};
use crate::button::{Classification, Client};
use crate::delivery::refund;
use crate::domain::clock::now_ms;
use crate::domain::words::worded;
use crate::domain::{DeliveryState, FieldError, LogId, Outcome, TestEventId};
use crate::ingest;
use crate::integrations::Integration;
use crate::live_logs::{Hub, RequestView, ResponseView};
use crate::mapping::{self, Prepared};
use crate::metrics::Metrics;
use crate::records::{self, EventRef};
use crate::store::ingest::{IngestRecord, NewEvent};
use crate::store::{Store, StoreError};

/// How delivery would treat Button's answer: as delivered, retryable (a test is not
/// retried) or terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Treatment {
    Delivered,
    Retryable,
    Terminal,
}

impl Treatment {
    const ALL: &'static [Self] = &[Self::Delivered, Self::Retryable, Self::Terminal];

    pub fn as_str(self) -> &'static str {
        match self {
            // The outcome Live Logs records for it.
            Self::Delivered => Outcome::Delivered.as_str(),
            Self::Retryable => "retryable",
            Self::Terminal => "terminal",
        }
    }
}

worded!(
    Treatment,
    [
        "How delivery would treat Button's answer: `delivered`, `retryable` (a test is not",
        "retried) or `terminal`."
    ],
    serialize
);

impl From<Classification> for Treatment {
    fn from(c: Classification) -> Self {
        match c {
            Classification::Delivered => Self::Delivered,
            Classification::Retryable { .. } => Self::Retryable,
            Classification::Terminal => Self::Terminal,
        }
    }
}

/// The outcome of a Test Event.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestEventResult {
    /// `delivered`, `failed`, `filtered` or `mapping_failed`.
    pub outcome: Outcome,
    /// How delivery would treat Button's answer (a test is never retried).
    pub classification: Option<Treatment>,
    /// Button's status line, e.g. `200 OK`.
    pub status: Option<String>,
    pub status_code: Option<u16>,
    pub latency_ms: Option<f64>,
    pub error: Option<String>,
    pub hint: Option<String>,
    pub warnings: Vec<Issue>,
    pub errors: Vec<Issue>,
    pub request: Option<RequestView>,
    pub response: Option<ResponseView>,
    /// The Live Logs entry recording this test.
    pub log_id: LogId,
    #[serde(rename = "messageId")]
    pub message_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TestEventError {
    /// The event given is not a valid event envelope (fields named inside `event`).
    #[error("the test event is invalid")]
    Invalid(Vec<FieldError>),
    #[error("the integration's blueprint takes no event of this name")]
    NotSubscribed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone)]
pub struct TestEvents {
    pub store: Store,
    pub client: Client,
    pub hub: Hub,
    pub metrics: Arc<Metrics>,
}

impl TestEvents {
    /// Sends `event` (or a test purchase) through `integration` now and records it.
    pub async fn send(
        &self,
        integration: &Integration,
        event: Option<Value>,
    ) -> Result<TestEventResult, TestEventError> {
        // A test gets its own messageId, so it never collides with (or is deduplicated
        // against) a real event.
        let message_id = format!("test-{}", TestEventId::new());
        // No event: a test purchase; an event name alone: a sample event of that name.
        let mut event = match event {
            None => test_purchase(&message_id),
            Some(Value::String(name)) => {
                let mut sample = test_purchase(&message_id);
                sample["event"] = Value::String(name);
                sample
            }
            Some(event) => event,
        };
        if let Some(obj) = event.as_object_mut() {
            obj.insert("messageId".into(), Value::String(message_id.clone()));
        }
        ingest::validate(&event).map_err(|errors| {
            TestEventError::Invalid(errors.into_iter().map(|e| e.within("event")).collect())
        })?;

        let prepared = mapping::prepare(integration, &self.client, &event);
        let (warnings, errors) = match &prepared {
            Prepared::NotSubscribed => return Err(TestEventError::NotSubscribed),
            Prepared::Request { warnings, .. } => (warnings.clone(), Vec::new()),
            Prepared::Filtered { .. } => (Vec::new(), Vec::new()),
            Prepared::Failed {
                errors, warnings, ..
            } => (warnings.clone(), errors.clone()),
        };
        let now = now_ms();
        let name = blueprint::event_name(&event).map(str::to_owned);
        let about = EventRef {
            message_id: &message_id,
            event_name: name.as_deref(),
        };
        let (mut delivery, ended) = records::delivery(integration, about, prepared, true, now)
            .ok_or(TestEventError::NotSubscribed)?;
        // What a lane would send: the request as stored with the delivery.
        let request = self.client.stored_request(
            delivery.parcel.call,
            delivery.url.as_deref(),
            delivery.body.as_deref(),
        );
        // A partial refund is sent as the order Button has, less what came back.
        let (request, unsent) = match request {
            Some(r) => {
                let (r, unsent) =
                    refund::resolve(&self.store, &self.client, &integration.id, r).await;
                (Some(r), unsent)
            }
            None => (None, None),
        };
        let mut answer = None;
        let log = match (ended, &request) {
            (Some(log), _) => log,
            (None, Some(request)) => {
                let answered = match unsent {
                    Some(attempt) => attempt,
                    None => self.client.send(request, &integration.api_key).await,
                };
                let outcome = if answered.classification == Classification::Delivered {
                    Outcome::Delivered
                } else {
                    Outcome::Failed
                };
                let log = records::attempt(&delivery.parcel, 1, outcome, Ok(&answered), None, now);
                answer = Some(answered);
                log
            }
            (None, None) => records::attempt(
                &delivery.parcel,
                1,
                Outcome::Failed,
                Err(records::INCOMPLETE_REQUEST),
                None,
                now,
            ),
        };
        if delivery.state == DeliveryState::Pending {
            // Sent now, never queued: it ends with its attempt.
            delivery.state = match log.outcome {
                Outcome::Delivered => DeliveryState::Delivered,
                _ => DeliveryState::Failed,
            };
        }
        let request_view = request.as_ref().map(RequestView::of);
        let result = TestEventResult {
            outcome: log.outcome,
            classification: answer.as_ref().map(|a| a.classification.into()),
            status: log.status_line.clone(),
            status_code: answer.as_ref().and_then(|a| a.status).map(|s| s.as_u16()),
            latency_ms: log.latency_ms,
            error: log.error.clone(),
            hint: log.hint.clone(),
            warnings,
            errors,
            request: request_view.clone(),
            response: answer.as_ref().and_then(ResponseView::of),
            log_id: log.id.clone(),
            message_id: message_id.clone(),
        };
        let record = IngestRecord {
            event: NewEvent {
                message_id,
                event_name: name,
                received_at: now,
                payload: event.to_string(),
            },
            deliveries: vec![delivery],
            logs: vec![log.clone()],
        };
        self.store.ingest(vec![record]).await?;
        self.metrics.delivery(&integration.id, log.outcome);
        self.hub.publish(&log, request_view);
        tracing::info!(integration_id = %integration.id, message_id = %result.message_id, outcome = %result.outcome, status = result.status_code, "test event");
        Ok(result)
    }
}

/// The default test event: a purchase of one test product, with a test order id and a
/// test attribution token (`fakesrctok-` and 16 hex digits, Button's test-token shape).
fn test_purchase(message_id: &str) -> Value {
    let mut token = [0u8; 8];
    rand::fill(&mut token);
    let btn_ref = format!("fakesrctok-{}", hex::encode(token));
    let timestamp = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    serde_json::json!({
        "type": "track",
        "event": "purchase",
        "messageId": message_id,
        "timestamp": timestamp,
        "userId": "signal-test-user",
        "properties": {
            "order_id": message_id,
            "revenue": "1.00",
            "currency": "USD",
            "btn_ref": btn_ref,
            "products": [{"product_id": "signal-test-product", "sku": "signal-test-product", "name": "Signal test product", "price": "1.00", "quantity": 1}]
        },
        "context": {"library": {"name": "signal-test-event"}}
    })
}
