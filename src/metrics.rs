//! Prometheus metrics, served at `/metrics` in the OpenMetrics text format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::domain::{IntegrationId, Outcome};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IntegrationLabels {
    pub integration: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub integration: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LaneLabels {
    pub integration: String,
    pub state: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub events_ingested: Counter,
    pub events_duplicate: Counter,
    pub events_rejected: Counter,
    pub deliveries_handed: Counter,
    pub deliveries: Family<OutcomeLabels, Counter>,
    pub attempt_duration: Family<IntegrationLabels, Histogram>,
    pub queue_depth: Family<IntegrationLabels, Gauge>,
    pub queue_oldest_age: Family<IntegrationLabels, Gauge<f64, AtomicU64>>,
    pub lane_state: Family<LaneLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("button_delivery");
        let events_ingested = Counter::default();
        registry.register(
            "events_ingested",
            "Events accepted at ingest (new messageId)",
            events_ingested.clone(),
        );
        let events_duplicate = Counter::default();
        registry.register(
            "events_duplicate",
            "Events acknowledged as duplicates of an earlier messageId",
            events_duplicate.clone(),
        );
        let events_rejected = Counter::default();
        registry.register(
            "events_rejected",
            "Events refused at ingest as invalid",
            events_rejected.clone(),
        );
        let deliveries_handed = Counter::default();
        registry.register(
            "deliveries_handed",
            "Deliveries leased in the commit that accepted them and handed straight to their lane",
            deliveries_handed.clone(),
        );
        let deliveries = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "deliveries",
            "Live-log outcomes by integration: delivered, retry_scheduled, failed, dead_lettered, filtered, mapping_failed, paused, remapped, held",
            deliveries.clone(),
        );
        let attempt_duration = Family::<IntegrationLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register(
            "attempt_duration_seconds",
            "Latency of delivery attempts to Button",
            attempt_duration.clone(),
        );
        let queue_depth = Family::<IntegrationLabels, Gauge>::default();
        registry.register(
            "queue_depth",
            "Pending deliveries per integration",
            queue_depth.clone(),
        );
        let queue_oldest_age = Family::<IntegrationLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "queue_oldest_age_seconds",
            "Age of the oldest pending delivery per integration",
            queue_oldest_age.clone(),
        );
        let lane_state = Family::<LaneLabels, Gauge>::default();
        registry.register(
            "lane_state",
            "1 for the current state of each integration's lane: active, rate_limited, auth_failed, paused, disabled",
            lane_state.clone(),
        );
        Self {
            registry,
            events_ingested,
            events_duplicate,
            events_rejected,
            deliveries_handed,
            deliveries,
            attempt_duration,
            queue_depth,
            queue_oldest_age,
            lane_state,
        }
    }

    pub fn delivery(&self, integration: &IntegrationId, outcome: Outcome) {
        self.deliveries
            .get_or_create(&OutcomeLabels {
                integration: integration.to_string(),
                outcome: outcome.as_str(),
            })
            .inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
