//! The HTTP surface: admin API (`/v1/admin`, admin token), event ingest (`/v1/events`,
//! ingest token), operations (`/healthz`, `/readyz`, `/metrics`) and the OpenAPI
//! document (`/openapi.json`), which is generated from the same route registrations
//! that build the router, so every route of the API is described. Beside it, the ops
//! console's static files ([`crate::console`], `/console/`): no API, no data, no token.

pub mod auth;
pub mod blueprints;
pub mod catalog;
pub mod contract;
pub mod dead_letters;
pub mod error;
pub mod events;
pub mod extract;
pub mod integrations;
pub mod logs;
pub mod ops;
pub mod rate_limit;
pub mod server;
pub mod sources;
pub mod tracking;

use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use tokio::sync::watch;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::button::Client;
use crate::config::Settings;
use crate::delivery::Delivery;
use crate::ingest::Ingest;
use crate::integrations::Registry;
use crate::live_logs::Hub;
use crate::metrics::Metrics;
use crate::secrets::TokenSet;
use crate::sources::Sources;
use crate::store::Store;
use crate::telemetry::{self, MakeRequestIds, REQUEST_ID_HEADER};
use crate::test_event::TestEvents;
use error::ApiError;

/// Everything a request handler may use; cloned per request, so one pointer.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

pub struct Services {
    pub settings: Arc<Settings>,
    pub store: Store,
    pub registry: Arc<Registry>,
    pub sources: Arc<Sources>,
    pub delivery: Arc<Delivery>,
    pub ingest: Ingest,
    pub test_events: TestEvents,
    pub client: Client,
    pub hub: Hub,
    pub metrics: Arc<Metrics>,
    pub admin_tokens: TokenSet,
    pub admin_rate_limit: rate_limit::RateLimit,
    pub metrics_tokens: TokenSet,
    pub ingest_tokens: TokenSet,
    /// Turns true when the service begins to stop (live tails end then).
    pub stopping: watch::Receiver<bool>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Button delivery service for Signal",
        description = "Installs the Button integration, receives Signal's commerce events, maps them through a blueprint to Button's Orders and activity APIs, delivers them reliably and records every attempt in Live Logs."
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "catalog", description = "The integration catalog and installing from it"),
        (name = "integrations", description = "Installed integrations"),
        (name = "blueprints", description = "Blueprints (the mapping, as data), Preview and Test Event"),
        (name = "live logs", description = "Every attempt, filtering and mapping failure"),
        (name = "dead letters", description = "Deliveries that used up their attempts"),
        (name = "sources", description = "Senders with their own ingest token, each connected to chosen integrations"),
        (name = "events", description = "Event ingest from Signal core"),
        (name = "tracking", description = "The Segment / RudderStack tracking API, for their SDKs"),
        (name = "operations", description = "Health, readiness, metrics")
    )
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, description) in [
            (
                "admin_token",
                "Admin token: configured in auth.admin_tokens, or generated into <data_dir>/admin-token",
            ),
            (
                "ingest_token",
                "Ingest token: configured in auth.ingest_tokens, or generated into <data_dir>/ingest-token (the default source, every integration), or a source's token (its connected integrations)",
            ),
        ] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(description))
                        .build(),
                ),
            );
        }
        components.add_security_scheme(
            "metrics_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A metrics token (auth.metrics_tokens) or an admin token; none with server.public_metrics",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "write_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "A Segment-style write key as the Basic username, empty password: a source's token or an ingest token",
                    ))
                    .build(),
            ),
        );
    }
}

/// Every route, registered once: the router and the OpenAPI document both come from
/// these. Admin, event, tracking and operations routes apart, for their different auth
/// (the tracking routes read the SDKs' write key themselves).
fn registrations() -> [OpenApiRouter<AppState>; 5] {
    let admin = OpenApiRouter::new()
        .routes(routes!(catalog::list_catalog))
        .routes(routes!(catalog::get_catalog_entry))
        .routes(routes!(catalog::install))
        .routes(routes!(integrations::list_integrations))
        .routes(routes!(
            integrations::get_integration,
            integrations::update_integration,
            integrations::delete_integration
        ))
        .routes(routes!(integrations::pause_integration))
        .routes(routes!(integrations::resume_integration))
        .routes(routes!(integrations::integration_stats))
        .routes(routes!(integrations::list_integration_stats))
        .routes(routes!(
            blueprints::get_blueprint,
            blueprints::replace_blueprint
        ))
        .routes(routes!(blueprints::reset_blueprint))
        .routes(routes!(blueprints::preview))
        .routes(routes!(blueprints::test_event))
        .routes(routes!(logs::list_logs))
        .routes(routes!(logs::stream_logs))
        .routes(routes!(logs::replay_logs))
        .routes(routes!(logs::get_log))
        .routes(routes!(dead_letters::list_dead_letters))
        .routes(routes!(dead_letters::replay_dead_letters))
        .routes(routes!(dead_letters::discard_dead_letters))
        .routes(routes!(sources::list_sources, sources::create_source))
        .routes(routes!(sources::get_source, sources::delete_source))
        .routes(routes!(sources::rotate_source_token))
        .routes(routes!(
            sources::connect_integration,
            sources::disconnect_integration
        ));
    let events = OpenApiRouter::new()
        .routes(routes!(events::post_event))
        .routes(routes!(events::post_batch))
        .routes(routes!(events::post_integration_event))
        .routes(routes!(events::post_integration_batch));
    let tracking = OpenApiRouter::new()
        .routes(routes!(tracking::batch))
        .routes(routes!(tracking::track))
        .routes(routes!(tracking::page))
        .routes(routes!(tracking::screen))
        .routes(routes!(tracking::identify))
        .routes(routes!(tracking::group))
        .routes(routes!(tracking::alias));
    let ops = OpenApiRouter::new()
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(openapi_json));
    let metrics = OpenApiRouter::new().routes(routes!(ops::metrics));
    [admin, events, tracking, ops, metrics]
}

fn merge(parts: [OpenApiRouter<AppState>; 5]) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let [admin, events, tracking, ops, metrics] = parts;
    let (router, mut api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(admin)
        .merge(events)
        .merge(tracking)
        .merge(ops)
        .merge(metrics)
        .split_for_parts();
    contract::complete(&mut api);
    describe_responses(&mut api);
    (router, api)
}

/// The OpenAPI document alone (`button-delivery openapi` prints it).
pub fn openapi() -> utoipa::openapi::OpenApi {
    merge(registrations()).1
}

/// The router with every route, and the OpenAPI document describing exactly those.
pub fn router(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let [admin, events, tracking, ops, metrics] = registrations();
    let admin = admin.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        auth::admin,
    ));
    let events = events.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        auth::ingest,
    ));
    let metrics = metrics.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        auth::metrics,
    ));
    let (router, api) = merge([admin, events, tracking, ops, metrics]);
    let document = Arc::new(api.to_json().expect("the OpenAPI document serialises"));
    let router = router
        .merge(crate::console::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(Extension(OpenApiDocument(document)))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID_HEADER))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(telemetry::request_span)
                .on_request(())
                .on_response(telemetry::on_response)
                .on_failure(()),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID_HEADER, MakeRequestIds));
    (router, api)
}

/// OpenAPI requires a description on every response; where a route gives none, the
/// status's reason phrase ("Unauthorized") is the description.
fn describe_responses(api: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    for item in api.paths.paths.values_mut() {
        for operation in contract::operations(item) {
            for (code, response) in operation.responses.responses.iter_mut() {
                if let RefOr::T(response) = response
                    && response.description.is_empty()
                {
                    response.description = code
                        .parse::<u16>()
                        .ok()
                        .and_then(|c| StatusCode::from_u16(c).ok())
                        .and_then(|c| c.canonical_reason())
                        .unwrap_or("Response")
                        .to_owned();
                }
            }
        }
    }
}

#[derive(Clone)]
struct OpenApiDocument(Arc<String>);

/// This document: OpenAPI 3, every route with its requests and responses.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3 document", body = Object)))]
async fn openapi_json(Extension(doc): Extension<OpenApiDocument>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        doc.0.as_str().to_owned(),
    )
        .into_response()
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound {
        resource: "route",
        id: uri.path().to_owned(),
    }
}

async fn method_not_allowed(uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        path: uri.path().to_owned(),
    }
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::internal("handler panicked").into_response()
}
