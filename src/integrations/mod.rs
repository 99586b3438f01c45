//! Integrations: what installing a catalog entry creates. An install or update request
//! is parsed into valid values ([`request`]); the [`registry`] keeps the live, compiled
//! form of every integration that ingest and delivery read, and is the one way to
//! change one (the store first, then memory, then an announcement to the lanes).

pub mod registry;
pub mod request;

use std::sync::Arc;

use secrecy::SecretString;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::blueprint::Blueprint;
use crate::button::CallKind;
use crate::catalog::CatalogEntry;
use crate::domain::{IntegrationId, LaneState};
pub use registry::{LoadError, Registry, RegistryError};
pub use request::{Install, Update, parse_install, parse_update};

/// How secret config values are shown.
pub const MASK: &str = "***";

/// An integration as the service runs it: config parsed, secrets open, blueprint
/// compiled. Immutable; a change makes a new one.
pub struct Integration {
    pub id: IntegrationId,
    /// The catalog entry it was installed from.
    pub entry: &'static CatalogEntry,
    pub name: String,
    pub variant: String,
    pub delivery_mode: String,
    pub enabled: bool,
    /// Non-secret config; blueprints read it as `config.*`.
    pub config: Value,
    pub api_key: SecretString,
    /// The blueprint document as written. Integrations with the same document share
    /// it and its compiled form ([`registry`]'s `Blueprints`).
    pub blueprint_doc: Arc<RawValue>,
    pub blueprint: Arc<Blueprint<CallKind>>,
    pub lane_state: LaneState,
    pub lane_reason: Option<String>,
    pub created_at: i64,
    /// Strictly increasing with every change: the integration's version.
    pub updated_at: i64,
}

impl Integration {
    /// Whether its lane must not send now (auth failure or an operator's pause).
    pub fn lane_held(&self) -> bool {
        self.lane_state != LaneState::Active
    }
}
