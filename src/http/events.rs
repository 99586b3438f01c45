//! Event ingest over HTTP: one event, a batch, or either aimed at one integration.
//! `202` means every accepted event and its deliveries are committed; `503` means
//! nothing was.

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::AppState;
use super::contract::{EventBatch, SignalEvent};
use super::error::{ApiError, ErrorBody};
use super::extract::{read_body, require_json};
use super::integrations::find;
use crate::domain::FieldError;
use crate::ingest::{EventStatus, Incoming, IngestSummary, Rejection, Target};
use crate::sources::Sender;

#[derive(Deserialize)]
struct BatchBody<'a> {
    #[serde(borrow)]
    batch: Vec<&'a RawValue>,
}

async fn one(
    state: &AppState,
    request: Request,
    target: Target,
) -> Result<(StatusCode, Json<IngestSummary>), ApiError> {
    require_json(request.headers())?;
    state.store.admit()?;
    let limit = state.settings.ingest.max_event_bytes;
    let body = read_body(request.into_body(), limit).await?;
    let raw = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("invalid_json", "the body is not UTF-8"))?;
    let incoming = Incoming::parse(raw, limit);
    if let Err(rejection) = &incoming.parsed {
        state.metrics.events_rejected.inc();
        return Err(match rejection.clone() {
            Rejection::NotJson(message) => ApiError::bad_request(
                "invalid_json",
                format!("the body is not valid JSON: {message}"),
            ),
            Rejection::TooLarge { limit, .. } => ApiError::PayloadTooLarge { limit },
            Rejection::Invalid(errors) => ApiError::validation(errors),
        });
    }
    let summary = state.ingest.accept(vec![incoming], &target).await?;
    let status = match summary.results.first().map(|r| r.status) {
        Some(EventStatus::Duplicate) => StatusCode::OK,
        _ => StatusCode::ACCEPTED,
    };
    Ok((status, Json(summary)))
}

async fn batch(
    state: &AppState,
    request: Request,
    target: Target,
) -> Result<(StatusCode, Json<IngestSummary>), ApiError> {
    require_json(request.headers())?;
    state.store.admit()?;
    let limits = &state.settings.ingest;
    let body = read_body(request.into_body(), limits.max_batch_bytes).await?;
    let parsed: BatchBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("the body must be {{\"batch\": [events]}}: {e}"),
        )
    })?;
    if parsed.batch.is_empty() || parsed.batch.len() > limits.max_batch_events {
        return Err(ApiError::validation(vec![FieldError::new(
            "batch",
            "invalid_length",
            format!(
                "must hold 1 to {} events, not {}",
                limits.max_batch_events,
                parsed.batch.len()
            ),
        )]));
    }
    let events = parsed
        .batch
        .iter()
        .map(|raw| Incoming::parse(raw.get().to_owned(), limits.max_event_bytes))
        .collect();
    let summary = state.ingest.accept(events, &target).await?;
    if summary.rejected == summary.results.len() {
        // Nothing accepted: Signal's error shape, each event's problems by index.
        let details = summary
            .results
            .into_iter()
            .flat_map(|r| {
                let at = format!("batch[{}]", r.index);
                r.errors.into_iter().map(move |e| e.within(&at))
            })
            .collect();
        return Err(ApiError::Validation {
            message: "every event of the batch was rejected".into(),
            details,
        });
    }
    let status = if summary.accepted > 0 {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(summary)))
}

fn target(state: &AppState, sender: &Sender, id: &str) -> Result<Target, ApiError> {
    let integration = find(state, id)?;
    if !sender.reaches(&integration.id) {
        return Err(ApiError::Forbidden {
            code: "not_connected",
            message: format!(
                "this source is not connected to integration {id}: connect it with PUT /v1/admin/sources/{{source_id}}/integrations/{id}"
            ),
        });
    }
    if !integration.enabled {
        return Err(ApiError::Conflict {
            code: "integration_disabled",
            message: format!("integration {id} is disabled; enable it to send it events"),
        });
    }
    Ok(Target::Only(integration))
}

/// Accepts one Signal event for every integration that takes it.
#[utoipa::path(post, path = "/v1/events", tag = "events",
    security(("ingest_token" = [])),
    request_body(content = SignalEvent, description = "A Signal event (Segment-style envelope with messageId)"),
    responses(
        (status = 202, description = "Accepted and committed", body = IngestSummary),
        (status = 200, description = "A duplicate messageId: acknowledged, not delivered again", body = IngestSummary),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, description = "Invalid envelope, each field named", body = ErrorBody),
        (status = 503, description = "The store cannot commit; nothing was accepted", body = ErrorBody)))]
pub async fn post_event(
    State(state): State<AppState>,
    Extension(sender): Extension<Sender>,
    request: Request,
) -> Result<(StatusCode, Json<IngestSummary>), ApiError> {
    one(&state, request, Target::Routed(sender)).await
}

/// Accepts a batch `{"batch": [events]}`: valid events are accepted, each invalid one is
/// named by index with its reason.
#[utoipa::path(post, path = "/v1/events/batch", tag = "events",
    security(("ingest_token" = [])),
    request_body(content = EventBatch, description = "{\"batch\": [Signal events]}"),
    responses(
        (status = 202, description = "At least one event accepted and committed", body = IngestSummary),
        (status = 200, description = "Only duplicates", body = IngestSummary),
        (status = 422, description = "No event valid: each named as batch[i].field in details", body = ErrorBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn post_batch(
    State(state): State<AppState>,
    Extension(sender): Extension<Sender>,
    request: Request,
) -> Result<(StatusCode, Json<IngestSummary>), ApiError> {
    batch(&state, request, Target::Routed(sender)).await
}

/// Accepts one event for this integration only (a merchant with two Button properties
/// keeps their orders apart this way).
#[utoipa::path(post, path = "/v1/integrations/{id}/events", tag = "events",
    security(("ingest_token" = [])),
    params(("id" = String, Path)),
    request_body(content = SignalEvent, description = "A Signal event"),
    responses(
        (status = 202, body = IngestSummary), (status = 200, body = IngestSummary),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 403, description = "The source is not connected to the integration", body = ErrorBody),
        (status = 409, description = "The integration is disabled", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn post_integration_event(
    State(state): State<AppState>,
    Extension(sender): Extension<Sender>,
    Path(id): Path<String>,
    request: Request,
) -> Result<(StatusCode, Json<IngestSummary>), ApiError> {
    let target = target(&state, &sender, &id)?;
    one(&state, request, target).await
}

/// A batch for this integration only.
#[utoipa::path(post, path = "/v1/integrations/{id}/events/batch", tag = "events",
    security(("ingest_token" = [])),
    params(("id" = String, Path)),
    request_body(content = EventBatch, description = "{\"batch\": [Signal events]}"),
    responses(
        (status = 202, body = IngestSummary), (status = 200, body = IngestSummary), (status = 422, body = ErrorBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn post_integration_batch(
    State(state): State<AppState>,
    Extension(sender): Extension<Sender>,
    Path(id): Path<String>,
    request: Request,
) -> Result<(StatusCode, Json<IngestSummary>), ApiError> {
    let target = target(&state, &sender, &id)?;
    batch(&state, request, target).await
}
