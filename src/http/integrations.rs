//! `/v1/admin/integrations`: list, read, change, pause state, stats and delete.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::extract::{AdminJson, List, Params};
use crate::catalog;
use crate::error::{ApiError, ErrorBody};
use crate::integrations::{self, Integration, IntegrationView};
use crate::live_logs::Outcome;
use crate::store::{now_ms, rfc3339};

/// The integration `id`, or 404.
pub fn find(state: &AppState, id: &str) -> Result<Arc<Integration>, ApiError> {
    state
        .registry
        .get(id)
        .ok_or_else(|| ApiError::not_found("integration", id))
}

/// Integrations, oldest first.
#[utoipa::path(get, path = "/v1/admin/integrations", tag = "integrations",
    security(("admin_token" = [])),
    params(("cursor" = Option<String>, Query, description = "From a previous page's next_cursor"),
           ("limit" = Option<u32>, Query, description = "1 to 100, default 50")),
    responses((status = 200, body = inline(List<IntegrationView>)), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_integrations(
    State(state): State<AppState>,
    params: Params,
) -> Result<Json<List<IntegrationView>>, ApiError> {
    let page = params.page()?;
    let rows = state
        .store
        .list_integrations(page.after.as_deref(), page.limit + 1)
        .await?;
    let views: Vec<IntegrationView> = rows
        .iter()
        .filter_map(|row| state.registry.get(&row.id))
        .map(|i| i.view())
        .collect();
    Ok(Json(List::page(views, page.limit, |v| v.id.clone())))
}

#[utoipa::path(get, path = "/v1/admin/integrations/{id}", tag = "integrations",
    security(("admin_token" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = IntegrationView), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn get_integration(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<IntegrationView>, ApiError> {
    Ok(Json(find(&state, &id)?.view()))
}

/// A partial update: any of these fields.
#[derive(ToSchema)]
#[schema(example = json!({"name": "Button (web)", "enabled": true, "config": {"api_key": "new_key"}}))]
#[allow(dead_code)]
pub struct UpdateRequest {
    name: Option<String>,
    enabled: Option<bool>,
    /// `application_id` and/or `api_key` (rotation). A new api_key resumes a lane
    /// paused by a 401.
    #[schema(value_type = Option<Object>)]
    config: Option<serde_json::Value>,
}

/// Renames, enables or disables, changes the application ID, or rotates the API key.
#[utoipa::path(patch, path = "/v1/admin/integrations/{id}", tag = "integrations",
    security(("admin_token" = [])),
    params(("id" = String, Path)),
    request_body = UpdateRequest,
    responses((status = 200, body = IntegrationView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
               (status = 404, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_integration(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    AdminJson(body): AdminJson,
) -> Result<Json<IntegrationView>, ApiError> {
    let current = find(&state, &id)?;
    let entry = catalog::entry(&current.catalog_key)
        .ok_or_else(|| ApiError::internal("integration of an unknown catalog entry"))?;
    let update = integrations::parse_update(&entry, &body)?;
    let rotated = update.api_key.is_some();
    let updated = state.registry.update(&id, update).await?;
    tracing::info!(audit = "integration.updated", integration_id = %id, caller = %caller, api_key_rotated = rotated, "integration updated");
    Ok(Json(updated.view()))
}

/// Pauses delivery for the integration: events keep being accepted and queued, nothing
/// is sent to Button until a resume.
#[utoipa::path(post, path = "/v1/admin/integrations/{id}/pause", tag = "integrations",
    security(("admin_token" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = IntegrationView), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn pause_integration(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<IntegrationView>, ApiError> {
    find(&state, &id)?;
    let paused = state.registry.pause(&id).await?;
    tracing::info!(audit = "integration.updated", integration_id = %id, caller = %caller, "lane paused");
    Ok(Json(paused.view()))
}

/// Resumes a lane paused by an operator or by a `401` (after fixing the key in
/// Button, say).
#[utoipa::path(post, path = "/v1/admin/integrations/{id}/resume", tag = "integrations",
    security(("admin_token" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = IntegrationView), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn resume_integration(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<IntegrationView>, ApiError> {
    find(&state, &id)?;
    let resumed = state.registry.resume(&id).await?;
    tracing::info!(audit = "integration.updated", integration_id = %id, caller = %caller, "lane resumed");
    Ok(Json(resumed.view()))
}

/// Deletes the integration with its queue, dead letters and live logs.
#[utoipa::path(delete, path = "/v1/admin/integrations/{id}", tag = "integrations",
    security(("admin_token" = [])),
    params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn delete_integration(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !state.registry.delete(&id).await? {
        return Err(ApiError::not_found("integration", id));
    }
    tracing::info!(audit = "integration.deleted", integration_id = %id, caller = %caller, "integration deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    pub integration_id: String,
    pub lane: LaneStats,
    pub queue: QueueStats,
    /// Lifetime count of each live-log outcome.
    pub outcomes: BTreeMap<String, i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LaneStats {
    /// `active`, `rate_limited`, `auth_failed`, `paused` or `disabled`.
    pub state: String,
    /// While `rate_limited`: when Button's Retry-After ends.
    pub held_until: Option<String>,
    pub in_flight: usize,
    pub concurrency: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QueueStats {
    /// Deliveries waiting or in flight.
    pub depth: i64,
    pub oldest_pending_age_seconds: Option<f64>,
    pub dead_letters: i64,
}

/// Counts by outcome, queue depth, oldest pending age, lane state.
#[utoipa::path(get, path = "/v1/admin/integrations/{id}/stats", tag = "integrations",
    security(("admin_token" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Stats), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn integration_stats(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Stats>, ApiError> {
    let integration = find(&state, &id)?;
    let now = now_ms();
    let depth = state.store.queue_depth(&id, now).await?;
    let mut outcomes: BTreeMap<String, i64> = Outcome::ALL
        .iter()
        .map(|o| (o.as_str().to_owned(), 0))
        .collect();
    outcomes.extend(state.store.outcome_counts(&id).await?);
    let lane = state.delivery.lane_status(&id);
    Ok(Json(Stats {
        integration_id: id,
        lane: LaneStats {
            state: lane
                .as_ref()
                .map(|l| l.state)
                .unwrap_or(integration.lane_state.as_str())
                .to_owned(),
            held_until: lane
                .as_ref()
                .and_then(|l| l.held_until)
                .map(|t| rfc3339(crate::store::to_ms(t))),
            in_flight: lane.as_ref().map(|l| l.in_flight).unwrap_or(0),
            concurrency: state.settings.delivery.lane_concurrency,
        },
        queue: QueueStats {
            depth: depth.pending,
            oldest_pending_age_seconds: depth
                .oldest_pending_at
                .map(|t| ((now - t).max(0) as f64) / 1000.0),
            dead_letters: depth.dead,
        },
        outcomes,
    }))
}
