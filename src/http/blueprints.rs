//! An integration's blueprint (read, replace, reset), Preview and Test Event.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::extract::{AdminDocument, AdminJson};
use super::integrations::find;
use crate::blueprint::Issue;
use crate::button::Classification;
use crate::catalog;
use crate::delivery::lane::warnings_json;
use crate::error::{ApiError, ErrorBody, FieldError};
use crate::ids;
use crate::ingest;
use crate::integrations::compile_blueprint;
use crate::live_logs::{LogEntry, Outcome, RequestView, ResponseView};
use crate::mapping::{self, Prepared};
use crate::store::logs::LogRecord;
use crate::store::now_ms;
use crate::store::queue::{IngestRecord, NewDelivery, NewEvent, state as delivery_state};

/// The integration's blueprint document.
#[utoipa::path(get, path = "/v1/admin/integrations/{id}/blueprint", tag = "blueprints",
    security(("admin_token" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "The blueprint document", body = Object), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn get_blueprint(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Box<RawValue>>, ApiError> {
    Ok(Json(find(&state, &id)?.blueprint_doc.clone()))
}

/// Replaces the blueprint. It is compiled first; a bad one is refused with an error per
/// offending entry (`details[].field` is its location in the document).
#[utoipa::path(put, path = "/v1/admin/integrations/{id}/blueprint", tag = "blueprints",
    security(("admin_token" = [])),
    params(("id" = String, Path)),
    request_body(content = Object, description = "A blueprint document (see the default one in the catalog entry)"),
    responses((status = 200, description = "The stored blueprint", body = Object), (status = 400, body = ErrorBody),
               (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn replace_blueprint(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    doc: AdminDocument,
) -> Result<Json<Box<RawValue>>, ApiError> {
    let integration = find(&state, &id)?;
    if let Err(errors) = compile_blueprint(&integration.catalog_key, &doc.value) {
        let details = errors
            .into_iter()
            .map(|e| {
                FieldError::new(
                    if e.at.is_empty() {
                        "blueprint".to_owned()
                    } else {
                        e.at
                    },
                    "invalid_blueprint",
                    e.message,
                )
            })
            .collect();
        return Err(ApiError::validation(details));
    }
    let updated = state.registry.set_blueprint(&id, doc.text.trim()).await?;
    tracing::info!(audit = "integration.updated", integration_id = %id, caller = %caller, "blueprint replaced");
    Ok(Json(updated.blueprint_doc.clone()))
}

/// Puts the catalog entry's default blueprint back.
#[utoipa::path(post, path = "/v1/admin/integrations/{id}/blueprint/reset", tag = "blueprints",
    security(("admin_token" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "The default blueprint, now in use", body = Object), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn reset_blueprint(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Box<RawValue>>, ApiError> {
    let integration = find(&state, &id)?;
    let entry = catalog::entry(&integration.catalog_key)
        .ok_or_else(|| ApiError::internal("unknown catalog entry"))?;
    let updated = state
        .registry
        .set_blueprint(&id, entry.default_blueprint.get())
        .await?;
    tracing::info!(audit = "integration.updated", integration_id = %id, caller = %caller, "blueprint reset to default");
    Ok(Json(updated.blueprint_doc.clone()))
}

/// What the blueprint makes of an event.
#[derive(Debug, Serialize, ToSchema)]
pub struct PreviewResult {
    /// `request`, `filtered`, `mapping_failed` or `not_subscribed`.
    pub outcome: String,
    pub call: Option<String>,
    /// The exact request delivery would send (credentials redacted).
    pub request: Option<RequestView>,
    pub warnings: Vec<Issue>,
    pub errors: Vec<Issue>,
    pub reason: Option<String>,
}

fn preview_of(prepared: &Prepared) -> PreviewResult {
    let mut result = PreviewResult {
        outcome: String::new(),
        call: prepared.call().map(str::to_owned),
        request: None,
        warnings: Vec::new(),
        errors: Vec::new(),
        reason: None,
    };
    match prepared {
        Prepared::NotSubscribed => {
            result.outcome = "not_subscribed".into();
            result.reason = Some(
                "no mapping of the blueprint takes this event (check its event name and type)"
                    .into(),
            );
        }
        Prepared::Filtered { reason, .. } => {
            result.outcome = Outcome::Filtered.as_str().into();
            result.reason = Some(reason.clone());
        }
        Prepared::Request { request, warnings } => {
            result.outcome = "request".into();
            result.request = Some(RequestView::of(request));
            result.warnings = warnings.clone();
        }
        Prepared::Failed {
            errors, warnings, ..
        } => {
            result.outcome = Outcome::MappingFailed.as_str().into();
            result.errors = errors.clone();
            result.warnings = warnings.clone();
        }
    }
    result
}

/// Maps a Signal event through the integration's blueprint and shows the Button request
/// it produces, without sending anything.
#[utoipa::path(post, path = "/v1/admin/integrations/{id}/preview", tag = "blueprints",
    security(("admin_token" = [])),
    params(("id" = String, Path)),
    request_body(content = Object, description = "A Signal event"),
    responses((status = 200, body = PreviewResult), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
               (status = 404, body = ErrorBody), (status = 422, description = "Not a valid event envelope", body = ErrorBody)))]
pub async fn preview(
    State(state): State<AppState>,
    Path(id): Path<String>,
    AdminJson(event): AdminJson,
) -> Result<Json<PreviewResult>, ApiError> {
    let integration = find(&state, &id)?;
    ingest::validate(&event).map_err(ApiError::validation)?;
    Ok(Json(preview_of(&mapping::prepare(
        &integration,
        &state.client,
        &event,
    ))))
}

/// The outcome of a Test Event.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestEventResult {
    /// `delivered`, `failed`, `filtered` or `mapping_failed`.
    pub outcome: String,
    /// `delivered`, `retryable` or `terminal`, as delivery would treat Button's answer.
    pub classification: Option<String>,
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
    pub log_id: String,
    #[serde(rename = "messageId")]
    pub message_id: String,
}

/// Sends a test event through the integration now, bypassing the queue: by default a
/// test purchase with a test order id and a `fakesrctok-` token; or the event given as
/// `{"event": {...}}`. The result is recorded in Live Logs, marked as a test.
#[utoipa::path(post, path = "/v1/admin/integrations/{id}/test-event", tag = "blueprints",
    security(("admin_token" = [])),
    params(("id" = String, Path)),
    request_body(content = Option<Object>, description = "Optional: {\"event\": <a Signal event>}"),
    responses((status = 200, body = TestEventResult), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
               (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn test_event(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Option<AdminJson>,
) -> Result<Json<TestEventResult>, ApiError> {
    let integration = find(&state, &id)?;
    let message_id = format!("test-{}", ids::new_id("evt"));
    let mut event = match body.map(|AdminJson(b)| b) {
        None | Some(Value::Null) => test_purchase(&message_id),
        Some(Value::Object(mut obj)) => {
            let unknown: Vec<FieldError> = obj
                .keys()
                .filter(|k| *k != "event")
                .map(|k| FieldError::new(k.clone(), "unknown_field", "expected only \"event\""))
                .collect();
            if !unknown.is_empty() {
                return Err(ApiError::validation(unknown));
            }
            obj.remove("event")
                .ok_or_else(|| ApiError::validation(vec![FieldError::new("event", "required", "give the event to send as {\"event\": {...}}, or send no body for a test purchase")]))?
        }
        Some(_) => {
            return Err(ApiError::validation(vec![FieldError::new(
                "body",
                "invalid_type",
                "must be {\"event\": {...}}",
            )]));
        }
    };
    // A test gets its own messageId, so it never collides with (or is deduplicated
    // against) a real event.
    if let Some(obj) = event.as_object_mut() {
        obj.insert("messageId".into(), Value::String(message_id.clone()));
    }
    ingest::validate(&event).map_err(|errors| {
        ApiError::validation(
            errors
                .into_iter()
                .map(|e| FieldError {
                    field: format!("event.{}", e.field),
                    ..e
                })
                .collect(),
        )
    })?;

    let prepared = mapping::prepare(&integration, &state.client, &event);
    let preview = preview_of(&prepared);
    let now = now_ms();
    let delivery_id = ids::new_id(ids::DELIVERY);
    let mut delivery = NewDelivery {
        id: delivery_id.clone(),
        integration_id: id.clone(),
        message_id: message_id.clone(),
        event_name: crate::blueprint::event_name(&event)
            .unwrap_or_default()
            .to_owned(),
        call: prepared.call().map(str::to_owned),
        state: delivery_state::FAILED,
        url: None,
        body: None,
        warnings: warnings_json(&preview.warnings),
        test: true,
        created_at: now,
    };
    let mut log = LogRecord {
        id: ids::new_id(ids::LOG),
        integration_id: id.clone(),
        delivery_id: Some(delivery_id),
        message_id: Some(message_id.clone()),
        event_name: Some(delivery.event_name.clone()),
        call: delivery.call.clone(),
        attempt: None,
        outcome: String::new(),
        status_code: None,
        status_line: None,
        latency_ms: None,
        error: None,
        hint: None,
        warnings: delivery.warnings.clone(),
        next_attempt_at: None,
        response: None,
        test: true,
        created_at: now,
    };
    let mut result = TestEventResult {
        outcome: String::new(),
        classification: None,
        status: None,
        status_code: None,
        latency_ms: None,
        error: None,
        hint: None,
        warnings: preview.warnings.clone(),
        errors: preview.errors.clone(),
        request: preview.request.clone(),
        response: None,
        log_id: log.id.clone(),
        message_id: message_id.clone(),
    };
    match &prepared {
        Prepared::NotSubscribed => {
            return Err(ApiError::validation(vec![FieldError::new(
                "event.event",
                "not_subscribed",
                "the integration's blueprint takes no event of this name; send one it subscribes to",
            )]));
        }
        Prepared::Filtered { reason, .. } => {
            delivery.state = delivery_state::FILTERED;
            log.outcome = Outcome::Filtered.as_str().into();
            log.error = Some(reason.clone());
        }
        Prepared::Failed { errors, .. } => {
            delivery.state = delivery_state::MAPPING_FAILED;
            log.outcome = Outcome::MappingFailed.as_str().into();
            log.error = Some(mapping::summarize(errors));
            log.hint = mapping::first_hint(errors);
        }
        Prepared::Request { request, .. } => {
            delivery.url = Some(request.url.clone());
            delivery.body = Some(request.body.to_vec());
            let answer = state.client.send(request, &integration.api_key).await;
            let (classification, outcome) = match answer.classification {
                Classification::Delivered { .. } => ("delivered", Outcome::Delivered),
                Classification::Retryable { .. } => ("retryable", Outcome::Failed),
                Classification::Terminal => ("terminal", Outcome::Failed),
            };
            delivery.state = if outcome == Outcome::Delivered {
                delivery_state::DELIVERED
            } else {
                delivery_state::FAILED
            };
            let response = answer.status.map(|_| ResponseView {
                headers: answer
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone().into()))
                    .collect(),
                body: answer.body.clone(),
                truncated: answer.truncated,
            });
            log.outcome = outcome.as_str().into();
            log.attempt = Some(1);
            log.status_code = answer.status.map(|s| i64::from(s.as_u16()));
            log.status_line = answer.status_line();
            log.latency_ms = Some(answer.latency.as_secs_f64() * 1000.0);
            log.error = answer.error.clone();
            log.hint = answer.hint.map(str::to_owned);
            log.response = response
                .as_ref()
                .map(|r| serde_json::to_string(r).unwrap_or_default());
            result.classification = Some(classification.into());
            result.status = answer.status_line();
            result.status_code = answer.status.map(|s| s.as_u16());
            result.latency_ms = log.latency_ms;
            result.response = response;
        }
    }
    result.outcome = log.outcome.clone();
    result.error = log.error.clone();
    result.hint = log.hint.clone();
    let record = IngestRecord {
        event: NewEvent {
            message_id,
            event_name: Some(delivery.event_name.clone()),
            received_at: now,
            payload: event.to_string(),
        },
        deliveries: vec![delivery],
        logs: vec![log.clone()],
    };
    state.store.ingest(vec![record]).await?;
    state.metrics.delivery(&id, &log.outcome);
    state
        .hub
        .publish(LogEntry::from_record(&log, result.request.clone()));
    tracing::info!(integration_id = %id, message_id = %result.message_id, outcome = %result.outcome, status = result.status_code, "test event");
    Ok(Json(result))
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
