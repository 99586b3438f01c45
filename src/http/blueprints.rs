//! An integration's blueprint (read, replace, reset), Preview and Test Event.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::contract::SignalEvent;
use super::error::{ApiError, ErrorBody};
use super::extract::AdminJson;
use super::integrations::find;
use crate::blueprint::Issue;
use crate::button::CallKind;
use crate::domain::{FieldError, Outcome};
use crate::ingest;
use crate::live_logs::RequestView;
use crate::mapping::{self, Prepared};
use crate::test_event::TestEventResult;

/// The integration's blueprint document.
#[utoipa::path(get, path = "/v1/admin/integrations/{id}/blueprint", tag = "blueprints",
    security(("admin_token" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "The blueprint document", body = Object), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn get_blueprint(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Box<RawValue>>, ApiError> {
    Ok(Json(find(&state, &id)?.blueprint_doc.as_ref().to_owned()))
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
    doc: AdminJson,
) -> Result<Json<Box<RawValue>>, ApiError> {
    let integration = find(&state, &id)?;
    if let Err(errors) = integration.entry.compile(&doc.value) {
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
    let updated = state
        .registry
        .set_blueprint(&integration.id, doc.text.trim())
        .await?;
    tracing::info!(audit = "integration.updated", integration_id = %id, caller = %caller, "blueprint replaced");
    Ok(Json(updated.blueprint_doc.as_ref().to_owned()))
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
    let updated = state
        .registry
        .set_blueprint(&integration.id, integration.entry.default_blueprint.get())
        .await?;
    tracing::info!(audit = "integration.updated", integration_id = %id, caller = %caller, "blueprint reset to default");
    Ok(Json(updated.blueprint_doc.as_ref().to_owned()))
}

/// What the blueprint makes of an event: a request to send, the outcome Live Logs
/// would record instead of sending (`filtered`, `mapping_failed`), or no mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreviewOutcome {
    Request,
    Recorded(Outcome),
    NotSubscribed,
}

impl PreviewOutcome {
    const ALL: &'static [Self] = &[
        Self::Request,
        Self::Recorded(Outcome::Filtered),
        Self::Recorded(Outcome::MappingFailed),
        Self::NotSubscribed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Recorded(outcome) => outcome.as_str(),
            Self::NotSubscribed => "not_subscribed",
        }
    }
}

crate::domain::words::worded!(
    PreviewOutcome,
    [
        "What the blueprint makes of an event: a request to send, the outcome Live Logs",
        "would record instead of sending (`filtered`, `mapping_failed`), or no mapping."
    ],
    serialize
);

/// What the blueprint makes of an event.
#[derive(Debug, Serialize, ToSchema)]
pub struct PreviewResult {
    pub outcome: PreviewOutcome,
    pub call: Option<CallKind>,
    /// The exact request delivery would send (credentials redacted).
    pub request: Option<RequestView>,
    pub warnings: Vec<Issue>,
    pub errors: Vec<Issue>,
    pub reason: Option<String>,
}

impl PreviewResult {
    fn of(prepared: &Prepared) -> Self {
        let mut result = Self {
            outcome: PreviewOutcome::NotSubscribed,
            call: prepared.call(),
            request: None,
            warnings: Vec::new(),
            errors: Vec::new(),
            reason: None,
        };
        match prepared {
            Prepared::NotSubscribed => {
                result.reason = Some(
                    "no mapping of the blueprint takes this event (check its event name and type)"
                        .into(),
                );
            }
            Prepared::Filtered { reason, .. } => {
                result.outcome = PreviewOutcome::Recorded(Outcome::Filtered);
                result.reason = Some(reason.clone());
            }
            Prepared::Request {
                request, warnings, ..
            } => {
                result.outcome = PreviewOutcome::Request;
                result.request = Some(RequestView::of(request));
                result.warnings = warnings.clone();
            }
            Prepared::Failed {
                errors, warnings, ..
            } => {
                result.outcome = PreviewOutcome::Recorded(Outcome::MappingFailed);
                result.errors = errors.clone();
                result.warnings = warnings.clone();
            }
        }
        result
    }
}

/// Maps a Signal event through the integration's blueprint and shows the Button request
/// it produces, without sending anything.
#[utoipa::path(post, path = "/v1/admin/integrations/{id}/preview", tag = "blueprints",
    security(("admin_token" = [])),
    params(("id" = String, Path)),
    request_body(content = SignalEvent, description = "A Signal event"),
    responses((status = 200, body = PreviewResult), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
               (status = 404, body = ErrorBody), (status = 422, description = "Not a valid event envelope", body = ErrorBody)))]
pub async fn preview(
    State(state): State<AppState>,
    Path(id): Path<String>,
    AdminJson { value: event, .. }: AdminJson,
) -> Result<Json<PreviewResult>, ApiError> {
    let integration = find(&state, &id)?;
    ingest::validate(&event).map_err(ApiError::validation)?;
    Ok(Json(PreviewResult::of(&mapping::prepare(
        &integration,
        &state.client,
        &event,
    ))))
}

/// The body of Test Event, when there is one.
pub struct TestEventRequest;

impl utoipa::PartialSchema for TestEventRequest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        super::contract::schema(serde_json::json!({
            "type": "object",
            "properties": {"event": {"oneOf": [
                {"type": "string", "pattern": crate::domain::problem::NOT_BLANK_PATTERN,
                    "description": "An event name: a sample event of that name"},
                {"type": "object",
                    "description": "A Signal event (its messageId is replaced by a test one)"},
            ]}},
            "required": ["event"],
            "additionalProperties": false,
        }))
    }
}

impl ToSchema for TestEventRequest {}

/// Sends a test event through the integration now, bypassing the queue: by default a
/// test purchase with a test order id and a `fakesrctok-` token; or the event given as
/// `{"event": {...}}`. The result is recorded in Live Logs, marked as a test.
#[utoipa::path(post, path = "/v1/admin/integrations/{id}/test-event", tag = "blueprints",
    security(("admin_token" = [])),
    params(("id" = String, Path)),
    request_body(content = Option<TestEventRequest>, description = "Optional: {\"event\": <a Signal event>}, or {\"event\": \"add_to_cart\"} for a sample event of that name"),
    responses((status = 200, body = TestEventResult), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
               (status = 404, body = ErrorBody),
               (status = 422, description = "Not a valid event, or one the integration's blueprint takes no mapping for", body = ErrorBody)))]
pub async fn test_event(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Option<AdminJson>,
) -> Result<Json<TestEventResult>, ApiError> {
    let integration = find(&state, &id)?;
    let event = match body.map(|json| json.value) {
        None | Some(Value::Null) => None,
        Some(Value::Object(mut obj)) => {
            let unknown: Vec<FieldError> = obj
                .keys()
                .filter(|k| *k != "event")
                .map(|k| FieldError::new(k.clone(), "unknown_field", "expected only \"event\""))
                .collect();
            if !unknown.is_empty() {
                return Err(ApiError::validation(unknown));
            }
            Some(obj.remove("event").ok_or_else(|| {
                ApiError::validation(vec![FieldError::new(
                    "event",
                    "required",
                    "give the event to send as {\"event\": {...}}, or send no body for a test purchase",
                )])
            })?)
        }
        Some(_) => {
            return Err(ApiError::validation(vec![FieldError::new(
                "body",
                "invalid_type",
                "must be {\"event\": {...}}",
            )]));
        }
    };
    Ok(Json(state.test_events.send(&integration, event).await?))
}
