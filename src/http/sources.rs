//! Sources over HTTP: create one (its token shown once), list, read, rotate its token,
//! delete, and connect or disconnect integrations.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::extract::{AdminJson, List, Params, SourcePage};
use crate::domain::clock::rfc3339;
use crate::domain::{FieldError, IntegrationId, SourceId};
use crate::sources::Source;

/// A source as the API shows it (never its token, which is kept only as a hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceView {
    pub id: SourceId,
    pub name: String,
    /// The integrations its events go to.
    pub integrations: Vec<IntegrationId>,
    pub created_at: String,
    pub updated_at: String,
}

impl SourceView {
    fn of(source: &Source) -> Self {
        Self {
            id: source.id.clone(),
            name: source.name.clone(),
            integrations: source.integrations.iter().cloned().collect(),
            created_at: rfc3339(source.created_at),
            updated_at: rfc3339(source.updated_at),
        }
    }
}

/// A source with its new token: shown in this answer only.
#[derive(Debug, Serialize, ToSchema)]
pub struct SourceWithToken {
    #[serde(flatten)]
    pub source: SourceView,
    /// The source's ingest token (its write key), for `Authorization: Bearer`. Shown
    /// once: store it now.
    pub token: String,
}

fn with_token(source: &Source, token: &SecretString) -> SourceWithToken {
    SourceWithToken {
        source: SourceView::of(source),
        token: token.expose_secret().to_owned(),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "EU storefront", "integrations": ["int_01j00000000000000000000000"]}))]
pub struct CreateSource {
    #[schema(schema_with = crate::domain::problem::name_schema)]
    pub name: String,
    /// Integrations to connect now (more can be connected later).
    #[serde(default)]
    pub integrations: Vec<IntegrationId>,
}

fn source_id(id: &str) -> Result<SourceId, ApiError> {
    SourceId::parse(id).map_err(|_| ApiError::not_found("source", id))
}

fn find_source(state: &AppState, id: &str) -> Result<Arc<Source>, ApiError> {
    state
        .sources
        .get(&source_id(id)?)
        .ok_or_else(|| ApiError::not_found("source", id))
}

/// Every source, oldest first.
#[utoipa::path(get, path = "/v1/admin/sources", tag = "sources",
    security(("admin_token" = [])),
    params(SourcePage),
    responses((status = 200, body = inline(List<SourceView>)), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_sources(
    State(state): State<AppState>,
    params: Params,
) -> Result<Json<List<SourceView>>, ApiError> {
    let page = params.page::<SourceId>()?;
    let views: Vec<SourceView> = state
        .sources
        .all()
        .iter()
        .filter(|s| page.from.as_ref().is_none_or(|from| s.id > *from))
        .take(page.limit as usize + 1)
        .map(|s| SourceView::of(s))
        .collect();
    Ok(Json(List::page(views, page.limit, |v| v.id.clone())))
}

/// Creates a source connected to the given integrations. The answer holds its token,
/// shown this once.
#[utoipa::path(post, path = "/v1/admin/sources", tag = "sources",
    security(("admin_token" = [])),
    request_body = CreateSource,
    responses((status = 201, body = SourceWithToken), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, description = "An integration to connect does not exist", body = ErrorBody),
              (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_source(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    AdminJson { value, .. }: AdminJson,
) -> Result<(StatusCode, Json<SourceWithToken>), ApiError> {
    let invalid = |field: String, code: &'static str, message: String| {
        ApiError::validation(vec![FieldError::new(field, code, message)])
    };
    let request: CreateSource = serde_path_to_error::deserialize(value).map_err(|e| {
        invalid(
            e.path().to_string(),
            "invalid_value",
            e.into_inner().to_string(),
        )
    })?;
    let name = FieldError::check_name("name", &request.name)
        .map_err(|problem| ApiError::validation(vec![problem]))?;
    if let Some(missing) = request
        .integrations
        .iter()
        .find(|i| state.registry.get(i).is_none())
    {
        return Err(ApiError::not_found("integration", missing.as_str()));
    }
    let (source, token) = state.sources.create(name, request.integrations).await?;
    tracing::info!(audit = "source.created", source_id = %source.id, caller = %caller, integrations = source.integrations.len(), "source created");
    Ok((StatusCode::CREATED, Json(with_token(&source, &token))))
}

#[utoipa::path(get, path = "/v1/admin/sources/{id}", tag = "sources",
    security(("admin_token" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = SourceView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_source(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SourceView>, ApiError> {
    let source = find_source(&state, &id)?;
    Ok(Json(SourceView::of(&source)))
}

/// Deletes the source: its token stops working at once.
#[utoipa::path(delete, path = "/v1/admin/sources/{id}", tag = "sources",
    security(("admin_token" = [])),
    params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete_source(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = source_id(&id)?;
    state.sources.delete(&id).await?;
    tracing::info!(audit = "source.deleted", source_id = %id, caller = %caller, "source deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Gives the source a new token, shown in this answer only; the old one stops working
/// at once.
#[utoipa::path(post, path = "/v1/admin/sources/{id}/rotate-token", tag = "sources",
    security(("admin_token" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = SourceWithToken), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn rotate_source_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<SourceWithToken>, ApiError> {
    let (source, token) = state.sources.rotate(&source_id(&id)?).await?;
    tracing::info!(audit = "source.token_rotated", source_id = %source.id, caller = %caller, "source token rotated");
    Ok(Json(with_token(&source, &token)))
}

async fn connect(
    state: &AppState,
    caller: Caller,
    id: &str,
    integration: &str,
    connected: bool,
) -> Result<Json<SourceView>, ApiError> {
    let id = source_id(id)?;
    let integration = IntegrationId::parse(integration)
        .map_err(|_| ApiError::not_found("integration", integration))?;
    let source = state.sources.connect(&id, &integration, connected).await?;
    tracing::info!(
        audit = if connected { "source.connected" } else { "source.disconnected" },
        source_id = %id,
        integration_id = %integration,
        caller = %caller,
        "source connection changed"
    );
    Ok(Json(SourceView::of(&source)))
}

/// Connects an integration: the source's events go to it from now on.
#[utoipa::path(put, path = "/v1/admin/sources/{id}/integrations/{integration_id}", tag = "sources",
    security(("admin_token" = [])),
    params(("id" = String, Path), ("integration_id" = String, Path)),
    responses((status = 200, body = SourceView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn connect_integration(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, integration)): Path<(String, String)>,
) -> Result<Json<SourceView>, ApiError> {
    connect(&state, caller, &id, &integration, true).await
}

/// Disconnects an integration: the source's events no longer go to it.
#[utoipa::path(delete, path = "/v1/admin/sources/{id}/integrations/{integration_id}", tag = "sources",
    security(("admin_token" = [])),
    params(("id" = String, Path), ("integration_id" = String, Path)),
    responses((status = 200, body = SourceView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn disconnect_integration(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((id, integration)): Path<(String, String)>,
) -> Result<Json<SourceView>, ApiError> {
    connect(&state, caller, &id, &integration, false).await
}
