//! `/v1/admin/integration-catalog`: what can be installed, and installing it.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::AppState;
use super::auth::Caller;
use super::extract::{AdminJson, List};
use crate::catalog::{self, CatalogEntry};
use crate::error::{ApiError, ErrorBody};
use crate::integrations::{self, IntegrationView};

/// The catalog entries.
#[utoipa::path(get, path = "/v1/admin/integration-catalog", tag = "catalog",
    security(("admin_token" = [])),
    responses((status = 200, body = inline(List<CatalogEntry>)), (status = 401, body = ErrorBody)))]
pub async fn list_catalog() -> Json<List<CatalogEntry>> {
    Json(List {
        data: catalog::entries(),
        next_cursor: None,
        has_more: false,
    })
}

/// One catalog entry.
#[utoipa::path(get, path = "/v1/admin/integration-catalog/{key}", tag = "catalog",
    security(("admin_token" = [])),
    params(("key" = String, Path, description = "Catalog key, e.g. `button`")),
    responses((status = 200, body = CatalogEntry), (status = 404, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn get_catalog_entry(Path(key): Path<String>) -> Result<Json<CatalogEntry>, ApiError> {
    catalog::entry(&key)
        .map(Json)
        .ok_or_else(|| ApiError::not_found("catalog entry", key))
}

/// The install request of the product page.
#[derive(utoipa::ToSchema)]
#[schema(example = json!({"name": "Button", "variant": "default",
    "config": {"application_id": "app-abc123def456", "api_key": "your_api_key"}, "delivery_mode": "server_side"}))]
#[allow(dead_code)]
pub struct InstallRequest {
    /// Display name; defaults to the entry's name.
    name: Option<String>,
    /// A variant key of the entry; defaults to `default`.
    variant: Option<String>,
    /// `application_id` (`^app-[0-9a-zA-Z]+$`) and `api_key` (secret).
    #[schema(value_type = Object)]
    config: serde_json::Value,
    /// `server_side`, the only mode Button supports.
    delivery_mode: Option<String>,
    enabled: Option<bool>,
}

/// Installs a catalog entry: creates an integration with the entry's default blueprint.
#[utoipa::path(post, path = "/v1/admin/integration-catalog/{key}/install", tag = "catalog",
    security(("admin_token" = [])),
    params(("key" = String, Path, description = "Catalog key, e.g. `button`")),
    request_body = InstallRequest,
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
    AdminJson(body): AdminJson,
) -> Result<(StatusCode, Json<IntegrationView>), ApiError> {
    let entry = catalog::entry(&key).ok_or_else(|| ApiError::not_found("catalog entry", key))?;
    let install = integrations::parse_install(&entry, &body)?;
    let integration = state.registry.install(&entry, install).await?;
    tracing::info!(audit = "integration.created", integration_id = %integration.id, caller = %caller, "integration installed");
    Ok((StatusCode::CREATED, Json(integration.view())))
}
