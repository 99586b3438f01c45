//! Operations routes: liveness and readiness (no token), Prometheus metrics (a metrics
//! or admin token unless `server.public_metrics`).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::domain::LaneCondition;
use crate::domain::clock::now_ms;
use crate::metrics::{IntegrationLabels, LaneLabels};

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `unavailable` with the reason.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok",
        reason: None,
    })
}

/// How long readiness waits for its write to commit.
const READY_WITHIN: std::time::Duration = std::time::Duration::from_secs(1);

/// The store can commit a write right now, so the service can take events: a full
/// disk, a lost database or a writer that cannot recover answers `503`.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let probe = tokio::time::timeout(READY_WITHIN, state.store.probe_commit()).await;
    let failure = match probe {
        Ok(Ok(())) => {
            return (
                StatusCode::OK,
                Json(Health {
                    status: "ok",
                    reason: None,
                }),
            );
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no commit within {} ms", READY_WITHIN.as_millis()),
    };
    // The cause (paths, driver text) goes to the log, not to an unauthenticated caller.
    tracing::error!(error = %failure, "readiness check failed: the store cannot commit");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(Health {
            status: "unavailable",
            reason: Some("the store cannot commit a write now".into()),
        }),
    )
}

/// Prometheus metrics (OpenMetrics text): events ingested, duplicated and rejected;
/// deliveries by outcome; attempt latency; queue depth, oldest age and lane state per
/// integration.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    security(("metrics_token" = []), ("admin_token" = [])),
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String),
              (status = 401, description = "No metrics or admin token (unless server.public_metrics)", body = super::error::ErrorBody)))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let now = now_ms();
    let metrics = &state.metrics;
    metrics.queue_depth.clear();
    metrics.queue_oldest_age.clear();
    metrics.lane_state.clear();
    if let Ok(depths) = state.store.all_queue_depths().await {
        for depth in depths {
            let labels = IntegrationLabels {
                integration: depth.integration_id.to_string(),
            };
            metrics
                .queue_depth
                .get_or_create(&labels)
                .set(depth.pending);
            metrics
                .queue_oldest_age
                .get_or_create(&labels)
                .set(((now - depth.oldest_pending_at).max(0) as f64) / 1000.0);
        }
    }
    for id in state.registry.snapshot().keys() {
        if let Some(lane) = state.delivery.lane_status(id) {
            for condition in LaneCondition::ALL {
                metrics
                    .lane_state
                    .get_or_create(&LaneLabels {
                        integration: id.to_string(),
                        state: condition.as_str(),
                    })
                    .set(i64::from(lane.condition == *condition));
            }
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
}
