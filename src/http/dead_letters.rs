//! Dead letters: deliveries that used up their attempts. List them, replay them (with a
//! fresh attempt budget) or discard them.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::extract::{AdminJson, List, Params};
use super::integrations::find;
use crate::error::{ApiError, ErrorBody, FieldError};
use crate::store::queue::Selection;
use crate::store::{now_ms, rfc3339};

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterView {
    /// The delivery's id (`dlv_...`); its attempts are in Live Logs.
    pub id: String,
    #[serde(rename = "messageId")]
    pub message_id: String,
    pub event_name: String,
    pub call: Option<String>,
    pub attempts: i64,
    pub created_at: String,
    pub dead_lettered_at: String,
}

/// Dead-lettered deliveries, newest first.
#[utoipa::path(get, path = "/v1/admin/integrations/{id}/dead-letters", tag = "dead letters",
    security(("admin_token" = [])),
    params(("id" = String, Path), ("cursor" = Option<String>, Query), ("limit" = Option<u32>, Query)),
    responses((status = 200, body = inline(List<DeadLetterView>)), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_dead_letters(
    State(state): State<AppState>,
    Path(id): Path<String>,
    params: Params,
) -> Result<Json<List<DeadLetterView>>, ApiError> {
    find(&state, &id)?;
    let page = params.page()?;
    let rows = state
        .store
        .list_dead_letters(&id, page.after.as_deref(), page.limit + 1)
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
#[derive(ToSchema)]
#[schema(example = json!({"ids": ["dlv_01j0000000000000000000000"]}))]
#[allow(dead_code)]
pub struct DeadLetterSelection {
    ids: Option<Vec<String>>,
    all: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterResult {
    /// How many dead letters were replayed or discarded.
    pub count: u64,
}

/// Most dead letters named in one replay or discard.
const MAX_IDS: usize = 1000;

fn selection(body: &Value) -> Result<Selection, ApiError> {
    let bad = |message: &str| {
        ApiError::validation(vec![FieldError::new("ids", "invalid_value", message)])
    };
    let Some(obj) = body.as_object() else {
        return Err(bad("send {\"ids\": [...]} or {\"all\": true}"));
    };
    if let Some(unknown) = obj.keys().find(|k| *k != "ids" && *k != "all") {
        return Err(ApiError::validation(vec![FieldError::new(
            unknown.clone(),
            "unknown_field",
            "expected ids or all",
        )]));
    }
    match (obj.get("ids"), obj.get("all")) {
        (None, Some(Value::Bool(true))) => Ok(Selection::All),
        (Some(Value::Array(ids)), None) if ids.len() > MAX_IDS => Err(bad(&format!(
            "at most {MAX_IDS} ids at a time (or {{\"all\": true}})"
        ))),
        (Some(Value::Array(ids)), None) if !ids.is_empty() => ids
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| bad("every id must be a string"))
            })
            .collect::<Result<_, _>>()
            .map(Selection::Ids),
        _ => Err(bad(
            "send a non-empty {\"ids\": [...]} or {\"all\": true}, not both",
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
    AdminJson(body): AdminJson,
) -> Result<Json<DeadLetterResult>, ApiError> {
    find(&state, &id)?;
    let count = state
        .store
        .resolve_dead_letters(&id, selection(&body)?, true, now_ms())
        .await?;
    state.delivery.notify(&id);
    tracing::info!(audit = "dead_letters.replayed", integration_id = %id, caller = %caller, count, "dead letters replayed");
    Ok(Json(DeadLetterResult { count }))
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
    AdminJson(body): AdminJson,
) -> Result<Json<DeadLetterResult>, ApiError> {
    find(&state, &id)?;
    let count = state
        .store
        .resolve_dead_letters(&id, selection(&body)?, false, now_ms())
        .await?;
    tracing::info!(audit = "dead_letters.discarded", integration_id = %id, caller = %caller, count, "dead letters discarded");
    Ok(Json(DeadLetterResult { count }))
}
