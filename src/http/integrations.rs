//! `/v1/admin/integrations`: list, read, change, pause state, stats and delete.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use futures_util::{StreamExt, TryStreamExt, stream};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::extract::{AdminJson, IntegrationPage, List, Params};
use crate::domain::clock::{now_ms, rfc3339, to_ms};
use crate::domain::{IntegrationId, LaneCondition, LaneState, Outcome};
use crate::integrations::{self, Integration, MASK, request};

/// The integration a path names, or 404 (a malformed id names none).
pub fn find(state: &AppState, id: &str) -> Result<Arc<Integration>, ApiError> {
    IntegrationId::parse(id)
        .ok()
        .and_then(|id| state.registry.get(&id))
        .ok_or_else(|| ApiError::not_found("integration", id))
}

/// An integration as the API shows it: secrets as `***`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IntegrationView {
    pub id: IntegrationId,
    /// The catalog entry installed (`button`).
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub name: String,
    pub variant: String,
    pub delivery_mode: String,
    pub enabled: bool,
    /// Config values; secret ones are shown as `***`.
    #[schema(value_type = Object, example = json!({"application_id": "app-abc123def456", "api_key": "***"}))]
    pub config: Map<String, Value>,
    pub status: IntegrationStatus,
    #[schema(value_type = Object)]
    pub blueprint: Box<RawValue>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IntegrationStatus {
    /// `auth_failed` when Button refused the api_key and deliveries wait for a new one
    /// (or a resume); `paused` by an operator.
    pub lane: LaneState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl IntegrationView {
    pub fn of(integration: &Integration) -> Self {
        let mut config = integration.config.as_object().cloned().unwrap_or_default();
        config.insert("api_key".into(), Value::String(MASK.into()));
        Self {
            id: integration.id.clone(),
            kind: integration.entry.key,
            name: integration.name.clone(),
            variant: integration.variant.clone(),
            delivery_mode: integration.delivery_mode.clone(),
            enabled: integration.enabled,
            config,
            status: IntegrationStatus {
                lane: integration.lane_state,
                reason: integration.lane_reason.clone(),
            },
            blueprint: integration.blueprint_doc.as_ref().to_owned(),
            created_at: rfc3339(integration.created_at),
            updated_at: rfc3339(integration.updated_at),
        }
    }
}

/// Integrations, oldest first.
#[utoipa::path(get, path = "/v1/admin/integrations", tag = "integrations",
    security(("admin_token" = [])),
    params(IntegrationPage),
    responses((status = 200, body = inline(List<IntegrationView>)), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_integrations(
    State(state): State<AppState>,
    params: Params,
) -> Result<Json<List<IntegrationView>>, ApiError> {
    let page = params.page::<IntegrationId>()?;
    let views: Vec<IntegrationView> = state
        .registry
        .page(page.from.as_ref(), page.limit as usize + 1)
        .iter()
        .map(|i| IntegrationView::of(i))
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
    let integration = find(&state, &id)?;
    Ok(Json(IntegrationView::of(&integration)))
}

/// Renames, enables or disables, changes the application ID, or rotates the API key.
#[utoipa::path(patch, path = "/v1/admin/integrations/{id}", tag = "integrations",
    security(("admin_token" = [])),
    params(("id" = String, Path)),
    request_body = request::UpdateRequest,
    responses((status = 200, body = IntegrationView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
               (status = 404, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_integration(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    AdminJson { value: body, .. }: AdminJson,
) -> Result<Json<IntegrationView>, ApiError> {
    let current = find(&state, &id)?;
    let update = integrations::parse_update(current.entry, &body).map_err(ApiError::validation)?;
    let rotated = update.api_key.is_some();
    let updated = state.registry.update(&current.id, update).await?;
    tracing::info!(audit = "integration.updated", integration_id = %id, caller = %caller, api_key_rotated = rotated, "integration updated");
    Ok(Json(IntegrationView::of(&updated)))
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
    let integration = find(&state, &id)?;
    let paused = state.registry.pause(&integration.id).await?;
    tracing::info!(audit = "integration.updated", integration_id = %id, caller = %caller, "lane paused");
    Ok(Json(IntegrationView::of(&paused)))
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
    let integration = find(&state, &id)?;
    let resumed = state.registry.resume(&integration.id).await?;
    tracing::info!(audit = "integration.updated", integration_id = %id, caller = %caller, "lane resumed");
    Ok(Json(IntegrationView::of(&resumed)))
}

/// Deletes the integration with its live logs. Acknowledged work is never dropped
/// silently: while deliveries are queued or dead letters wait, the answer is `409`
/// naming them, unless `?force=true` says to drop them too.
#[utoipa::path(delete, path = "/v1/admin/integrations/{id}", tag = "integrations",
    security(("admin_token" = [])),
    params(("id" = String, Path),
        ("force" = Option<bool>, Query, description = "Delete even with deliveries queued or dead letters waiting (they are dropped)")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 409, description = "Deliveries are queued or dead letters wait; nothing was deleted", body = ErrorBody)))]
pub async fn delete_integration(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    params: Params,
) -> Result<StatusCode, ApiError> {
    let force = params.bool("force")?.unwrap_or(false);
    let integration = find(&state, &id)?;
    let id = integration.id.clone();
    let depth = state.store.queue_depth(&id).await?;
    if !force && (depth.pending > 0 || depth.dead > 0) {
        return Err(ApiError::Conflict {
            code: "queued_work",
            message: format!(
                "integration {id} still has {} queued deliveries and {} dead letters; let them deliver, replay or discard them, or delete with ?force=true to drop them",
                depth.pending, depth.dead
            ),
        });
    }
    state.registry.delete(&id).await?;
    // The store dropped the sources' connections to it; so does memory.
    state.sources.reload_all().await?;
    tracing::info!(
        audit = "integration.deleted",
        integration_id = %id,
        caller = %caller,
        forced = force,
        dropped_queued = depth.pending,
        dropped_dead_letters = depth.dead,
        "integration deleted"
    );
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    pub integration_id: IntegrationId,
    pub lane: LaneStats,
    pub queue: QueueStats,
    /// Lifetime count of each live-log outcome.
    pub outcomes: BTreeMap<&'static str, i64>,
    pub last_hour: LastHour,
}

/// Live-log entries of about the last hour by outcome (Test Event ones too), in
/// windows of five minutes aligned to the clock: the current one, still filling, last.
/// The delivery rate and outcome mix the console draws.
#[derive(Debug, Serialize, ToSchema)]
pub struct LastHour {
    /// Start of the first window (RFC 3339).
    pub since: String,
    pub window_seconds: u32,
    /// Entries of each outcome over all the windows.
    pub outcomes: BTreeMap<&'static str, i64>,
    /// Twelve windows, oldest first.
    pub windows: Vec<OutcomeWindow>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OutcomeWindow {
    /// When the window starts (RFC 3339).
    pub start: String,
    /// Entries of each outcome that has any in the window.
    pub outcomes: BTreeMap<&'static str, i64>,
}

/// Windows of [`LastHour`].
const WINDOW_MS: i64 = 5 * 60 * 1000;
const WINDOWS: i64 = 12;

async fn last_hour(state: &AppState, id: &IntegrationId, now: i64) -> Result<LastHour, ApiError> {
    let current = now - now.rem_euclid(WINDOW_MS);
    let starts: Vec<i64> = (0..WINDOWS)
        .map(|i| current - (WINDOWS - 1 - i) * WINDOW_MS)
        .collect();
    let mut outcomes: BTreeMap<&'static str, i64> =
        Outcome::ALL.iter().map(|o| (o.as_str(), 0)).collect();
    let mut windows: Vec<OutcomeWindow> = starts
        .iter()
        .map(|&start| OutcomeWindow {
            start: rfc3339(start),
            outcomes: BTreeMap::new(),
        })
        .collect();
    for (outcome, slot, count) in state.store.recent_outcome_counts(id, &starts).await? {
        *outcomes.entry(outcome.as_str()).or_default() += count;
        if let Some(window) = windows.get_mut(slot) {
            *window.outcomes.entry(outcome.as_str()).or_default() += count;
        }
    }
    Ok(LastHour {
        since: rfc3339(starts[0]),
        window_seconds: (WINDOW_MS / 1000) as u32,
        outcomes,
        windows,
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LaneStats {
    pub state: LaneCondition,
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

/// Counts by outcome, queue depth, oldest pending age, lane state, and the last hour's
/// entries by outcome in five-minute windows.
#[utoipa::path(get, path = "/v1/admin/integrations/{id}/stats", tag = "integrations",
    security(("admin_token" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Stats), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn integration_stats(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Stats>, ApiError> {
    let integration = find(&state, &id)?;
    Ok(Json(stats_of(&state, &integration, now_ms()).await?))
}

/// Every integration's stats, a page at a time: the same order, cursor and limits as
/// `GET /v1/admin/integrations`. One call for a page of integrations (the console's
/// list), where one call each would spend the admin rate limit.
#[utoipa::path(get, path = "/v1/admin/integrations/stats", tag = "integrations",
    security(("admin_token" = [])),
    params(IntegrationPage),
    responses((status = 200, body = inline(List<Stats>)), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_integration_stats(
    State(state): State<AppState>,
    params: Params,
) -> Result<Json<List<Stats>>, ApiError> {
    let page = params.page::<IntegrationId>()?;
    let integrations = List::page(
        state
            .registry
            .page(page.from.as_ref(), page.limit as usize + 1),
        page.limit,
        |i| i.id.clone(),
    );
    // A few at a time: each is several short reads, on connections of the pool.
    let now = now_ms();
    let data: Vec<Stats> = stream::iter(integrations.data)
        .map(|integration| {
            let state = state.clone();
            async move { stats_of(&state, &integration, now).await }
        })
        .buffered(STATS_AT_ONCE)
        .try_collect()
        .await?;
    Ok(Json(List {
        data,
        next_cursor: integrations.next_cursor,
        has_more: integrations.has_more,
    }))
}

/// How many integrations' stats one call of the list reads at once.
const STATS_AT_ONCE: usize = 4;

/// One integration's stats, as of `now`.
async fn stats_of(
    state: &AppState,
    integration: &Integration,
    now: i64,
) -> Result<Stats, ApiError> {
    let id = &integration.id;
    let depth = state.store.queue_depth(id).await?;
    let mut outcomes: BTreeMap<&'static str, i64> =
        Outcome::ALL.iter().map(|o| (o.as_str(), 0)).collect();
    for (outcome, count) in state.store.outcome_counts(id).await? {
        outcomes.insert(outcome.as_str(), count);
    }
    let lane = state.delivery.lane_status(id);
    let last_hour = last_hour(state, id, now).await?;
    Ok(Stats {
        integration_id: id.clone(),
        lane: LaneStats {
            state: lane
                .as_ref()
                .map(|l| l.condition)
                .unwrap_or(integration.lane_state.into()),
            held_until: lane
                .as_ref()
                .and_then(|l| l.held_until)
                .map(|t| rfc3339(to_ms(t))),
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
        last_hour,
    })
}
