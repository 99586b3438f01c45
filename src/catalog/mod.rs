//! The integration catalog, built into the code and versioned with it: what can be
//! installed, the config each entry takes, its default blueprint and the calls a
//! blueprint of it may make. Button is the one entry; [`button`] also turns what a
//! blueprint produced into Button calls.

pub mod button;

use std::sync::LazyLock;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::blueprint::{Blueprint, BlueprintError, CallSpec};
use crate::button::CallKind;

/// A catalog entry, as Signal's Integration Library shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CatalogEntry {
    pub key: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    /// `advertising`, `analytics`, `attribution`, `cdp`, `cloud_storage` or `other`.
    pub category: &'static str,
    /// `ga`, `beta` or `alpha`.
    pub status: &'static str,
    pub website: &'static str,
    pub documentation_url: &'static str,
    pub config_fields: Vec<ConfigField>,
    pub variants: Vec<Variant>,
    pub delivery_modes: Vec<&'static str>,
    /// How Signal events map to the destination by default.
    pub event_mappings: Vec<EventMapping>,
    /// The blueprint every new integration starts with (the document as written).
    #[schema(value_type = Object)]
    pub default_blueprint: Box<RawValue>,
    /// The destination calls a blueprint of this entry may map events to.
    #[serde(skip)]
    pub calls: &'static [CallSpec<CallKind>],
}

impl CatalogEntry {
    /// Compiles a blueprint document against this entry's calls.
    pub fn compile(&self, doc: &Value) -> Result<Blueprint<CallKind>, Vec<BlueprintError>> {
        Blueprint::compile(doc, self.calls)
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConfigField {
    pub key: &'static str,
    pub label: &'static str,
    /// `string` or `secret`; secret values are stored encrypted and shown as `***`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub required: bool,
    pub placeholder: &'static str,
    pub help_text: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Variant {
    pub key: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    #[schema(value_type = Object)]
    pub default_config: Map<String, Value>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventMapping {
    pub signal_event: &'static str,
    pub destination_mapping: &'static str,
    pub notes: &'static str,
}

static ENTRIES: LazyLock<Vec<CatalogEntry>> = LazyLock::new(|| vec![button::entry()]);

/// Every entry of the catalog.
pub fn entries() -> &'static [CatalogEntry] {
    &ENTRIES
}

pub fn entry(key: &str) -> Option<&'static CatalogEntry> {
    entries().iter().find(|e| e.key == key)
}
