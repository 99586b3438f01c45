//! Dead letters: deliveries that used up their attempts. List them, replay them (with a
//! fresh attempt budget) or discard them.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::extract::{AdminJson, DeliveryPage, List, Params, with_one_more};
use super::integrations::find;
use crate::button::CallKind;
use crate::domain::clock::rfc3339;
use crate::domain::{DeliveryId, FieldError};
use crate::store::dead_letters::{Resolution, Selection};

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterView {
    /// The delivery's id; its attempts are in Live Logs.
    pub id: DeliveryId,
    #[serde(rename = "messageId")]
    pub message_id: String,
    pub event_name: String,
    pub call: Option<CallKind>,
    pub attempts: i64,
    pub created_at: String,
    pub dead_lettered_at: String,
}

/// Dead-lettered deliveries, newest first.
#[utoipa::path(get, path = "/v1/admin/integrations/{id}/dead-letters", tag = "dead letters",
    security(("admin_token" = [])),
    params(("id" = String, Path), DeliveryPage),
    responses((status = 200, body = inline(List<DeadLetterView>)), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_dead_letters(
    State(state): State<AppState>,
    Path(id): Path<String>,
    params: Params,
) -> Result<Json<List<DeadLetterView>>, ApiError> {
    let integration = find(&state, &id)?;
    let page = params.page::<DeliveryId>()?;
    let rows = state
        .store
        .list_dead_letters(&integration.id, &with_one_more(&page))
        .await?;
    let views = rows
        .into_iter()
        .map(|d| DeadLetterView {
            id: d.id,
            message_id: d.message_id,
            event_name: d.event_name,
            call: d.call,
            attempts: d.attempts,
            created_at: rfc3339(d.created_at),
            dead_lettered_at: rfc3339(d.updated_at),
        })
        .collect();
    Ok(Json(List::page(views, page.limit, |v| v.id.clone())))
}

/// Which dead letters: `{"ids": ["dlv_..."]}` or `{"all": true}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterSelection {
    /// At most 1,000 dead letters by id.
    pub ids: Option<Vec<DeliveryId>>,
    /// Every dead letter of the integration.
    pub all: Option<bool>,
}

/// Exactly one of the two forms, as [`selection`] takes them (no `null`s).
impl utoipa::PartialSchema for DeadLetterSelection {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let ids = <DeliveryId as utoipa::PartialSchema>::schema();
        super::contract::schema(serde_json::json!({
            "oneOf": [
                {
                    "type": "object",
                    "properties": {"ids": {"type": "array", "items": ids, "minItems": 1, "maxItems": MAX_IDS,
                        "description": "1 to 1,000 dead letters by id"}},
                    "required": ["ids"],
                    "additionalProperties": false,
                },
                {
                    "type": "object",
                    "properties": {"all": {"type": "boolean", "enum": [true],
                        "description": "Every dead letter of the integration"}},
                    "required": ["all"],
                    "additionalProperties": false,
                },
            ],
            "example": {"ids": ["dlv_01j00000000000000000000000"]},
        }))
    }
}

impl ToSchema for DeadLetterSelection {}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterResult {
    /// How many dead letters were replayed or discarded.
    pub count: u64,
}

/// Most dead letters named in one replay or discard.
const MAX_IDS: usize = 1000;

fn selection(body: Value) -> Result<Selection, ApiError> {
    let bad = |field: String, message: String| {
        ApiError::validation(vec![FieldError::new(field, "invalid_value", message)])
    };
    let Some(obj) = body.as_object() else {
        return Err(bad(
            "body".into(),
            "send {\"ids\": [...]} or {\"all\": true}".into(),
        ));
    };
    // `null` is not "absent": `{"ids": null, "all": true}` is refused, not read as all.
    if let Some((key, _)) = obj.iter().find(|(_, v)| v.is_null()) {
        return Err(bad(
            key.clone(),
            "must not be null: send a non-empty {\"ids\": [...]} or {\"all\": true}".into(),
        ));
    }
    let selection: DeadLetterSelection = serde_path_to_error::deserialize(body)
        .map_err(|e| bad(e.path().to_string(), e.into_inner().to_string()))?;
    match selection {
        DeadLetterSelection {
            ids: None,
            all: Some(true),
        } => Ok(Selection::All),
        DeadLetterSelection {
            ids: Some(ids),
            all: None,
        } if ids.len() > MAX_IDS => Err(bad(
            "ids".into(),
            format!("at most {MAX_IDS} ids at a time (or {{\"all\": true}})"),
        )),
        DeadLetterSelection {
            ids: Some(ids),
            all: None,
        } if !ids.is_empty() => Ok(Selection::Ids(ids)),
        _ => Err(bad(
            "ids".into(),
            "send a non-empty {\"ids\": [...]} or {\"all\": true}, not both".into(),
        )),
    }
}

/// Puts dead letters back in the queue with a fresh attempt budget.
#[utoipa::path(post, path = "/v1/admin/integrations/{id}/dead-letters/replay", tag = "dead letters",
    security(("admin_token" = [])),
    params(("id" = String, Path)),
    request_body = DeadLetterSelection,
    responses((status = 200, body = DeadLetterResult), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
               (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn replay_dead_letters(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    AdminJson { value: body, .. }: AdminJson,
) -> Result<Json<DeadLetterResult>, ApiError> {
    resolve(&state, caller, &id, body, Resolution::Replay).await
}

/// Discards dead letters: they are never sent.
#[utoipa::path(post, path = "/v1/admin/integrations/{id}/dead-letters/discard", tag = "dead letters",
    security(("admin_token" = [])),
    params(("id" = String, Path)),
    request_body = DeadLetterSelection,
    responses((status = 200, body = DeadLetterResult), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
               (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn discard_dead_letters(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    AdminJson { value: body, .. }: AdminJson,
) -> Result<Json<DeadLetterResult>, ApiError> {
    resolve(&state, caller, &id, body, Resolution::Discard).await
}

async fn resolve(
    state: &AppState,
    caller: Caller,
    id: &str,
    body: Value,
    resolution: Resolution,
) -> Result<Json<DeadLetterResult>, ApiError> {
    let integration = find(state, id)?;
    let count = state
        .store
        .resolve_dead_letters(&integration.id, selection(body)?, resolution)
        .await?;
    match resolution {
        Resolution::Replay => {
            state.delivery.notify(&integration.id);
            tracing::info!(audit = "dead_letters.replayed", integration_id = %id, caller = %caller, count, "dead letters replayed");
        }
        Resolution::Discard => {
            tracing::info!(audit = "dead_letters.discarded", integration_id = %id, caller = %caller, count, "dead letters discarded");
        }
    }
    Ok(Json(DeadLetterResult { count }))
}
