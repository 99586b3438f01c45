//! `/v1/admin/integration-catalog`: what can be installed, and installing it.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ErrorBody};
use super::extract::{AdminJson, List};
use super::integrations::IntegrationView;
use crate::catalog::{self, CatalogEntry};
use crate::integrations::{self, request};

/// The catalog entries.
#[utoipa::path(get, path = "/v1/admin/integration-catalog", tag = "catalog",
    security(("admin_token" = [])),
    responses((status = 200, body = inline(List<CatalogEntry>)), (status = 401, body = ErrorBody)))]
pub async fn list_catalog() -> Json<List<&'static CatalogEntry>> {
    Json(List {
        data: catalog::entries().iter().collect(),
        next_cursor: None,
        has_more: false,
    })
}

/// One catalog entry.
#[utoipa::path(get, path = "/v1/admin/integration-catalog/{key}", tag = "catalog",
    security(("admin_token" = [])),
    params(("key" = String, Path, description = "Catalog key, e.g. `button`")),
    responses((status = 200, body = CatalogEntry), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn get_catalog_entry(
    Path(key): Path<String>,
) -> Result<Json<&'static CatalogEntry>, ApiError> {
    catalog::entry(&key)
        .map(Json)
        .ok_or_else(|| ApiError::not_found("catalog entry", key))
}

/// Installs a catalog entry: creates an integration with the entry's default blueprint.
#[utoipa::path(post, path = "/v1/admin/integration-catalog/{key}/install", tag = "catalog",
    security(("admin_token" = [])),
    params(("key" = String, Path, description = "Catalog key, e.g. `button`")),
    request_body = request::InstallRequest,
    responses(
        (status = 201, description = "The new integration; secrets shown as ***", body = IntegrationView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, description = "Unknown catalog key", body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody),
        (status = 422, description = "Invalid fields, each named in details", body = ErrorBody)))]
pub async fn install(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(key): Path<String>,
    AdminJson { value: body, .. }: AdminJson,
) -> Result<(StatusCode, Json<IntegrationView>), ApiError> {
    let entry = catalog::entry(&key).ok_or_else(|| ApiError::not_found("catalog entry", key))?;
    let install = integrations::parse_install(entry, &body).map_err(ApiError::validation)?;
    let integration = state.registry.install(entry, install).await?;
    tracing::info!(audit = "integration.created", integration_id = %integration.id, caller = %caller, "integration installed");
    Ok((StatusCode::CREATED, Json(IntegrationView::of(&integration))))
}
