//! Blueprints: the mapping from Signal events to a destination's requests, as data.
//!
//! A blueprint is a JSON document stored per integration. This module compiles it
//! (refusing a bad one with errors that point at the offending entry) and interprets
//! it. It knows nothing about Button: the destination's call names and required fields
//! come in as [`CallSpec`]s, and the default Button blueprint lives with the catalog.
//!
//! ```json
//! {"version": 1,
//!  "consent": {"from": "event.context.consent.canonical.marketing"},
//!  "mappings": [
//!    {"name": "order", "events": ["purchase", "order_completed"], "call": "order.create",
//!     "fields": [
//!       {"to": "order_id", "from": ["event.properties.order_id", "event.properties.transaction_id"],
//!        "transform": ["string"], "required": {"message": "...", "hint": "..."}},
//!       {"to": "currency", "from": "event.properties.currency", "transform": ["trim", "upper"]},
//!       {"to": "line_items", "each": ["event.properties.products", "event.properties.items"],
//!        "fields": [{"to": "identifier", "from": ["item.product_id", "item.sku"]}]}]}]}
//! ```
//!
//! A field takes its value `from` a source (a path, a quoted literal `"'USD'"`, a nested
//! `{"from", "transform", "default"}`, or `{"all": [...]}` collecting several paths into
//! a list), from a list of sources tried in order (the first present one wins), from a
//! literal `value`, or builds a list with `each` over a source list and its own
//! `fields`, where `item.` names the current element. A value is missing when it is
//! absent, `null`, `""` or `[]`. Then `transform`s apply in order; when the value is
//! missing, `warn_if_missing` reports a warning, and `default` fills it in or else
//! `required` reports an error. Transforms: `string`, `integer`, `upper`, `lower`, `trim`,
//! `timestamp`, `sha256_email`, `array`, `{"minor_units": {"currency": source}}`,
//! `{"url_param": "name"}`, `{"subtract": [sources]}`, `{"multiply": source}`.

pub mod path;
pub mod transform;

mod compile;
mod evaluate;
mod language;

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use language::{Mapping, Source};

pub const VERSION: u64 = 1;

/// A destination call a mapping may target, and the fields it needs. `C` is how the
/// destination knows the call: the blueprint matches a mapping's `"call"` against
/// `name` and hands `call` back with every event it maps, never looking inside it.
#[derive(Debug, Clone, Copy)]
pub struct CallSpec<C> {
    /// The call's name in a blueprint document.
    pub name: &'static str,
    pub call: C,
    /// Destination fields the mapping must produce (`line_items[].total` is a field of
    /// each element of the list `line_items`).
    pub required: &'static [&'static str],
    /// Every destination field the call accepts.
    pub fields: &'static [&'static str],
}

impl<C> CallSpec<C> {
    /// Whether the call accepts destination field `path`; a field listed as `x.*`
    /// accepts every key under `x` (free-form maps such as `attributes`).
    pub fn accepts(&self, path: &str) -> bool {
        self.fields.iter().any(|f| match f.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix) && path.len() > prefix.len(),
            None => *f == path,
        })
    }
}

/// A problem found in a blueprint, located by a path into the document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct BlueprintError {
    /// Where in the document, e.g. `mappings[0].fields[3].transform[1]`.
    pub at: String,
    pub message: String,
}

/// Something to report about one destination field of one event: a missing required
/// field, a value that could not be transformed, or a warning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct Issue {
    pub field: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// What a blueprint makes of one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped<C> {
    /// No mapping of the blueprint takes this event.
    NotSubscribed,
    /// Subscribed, but the consent rule keeps it from this destination.
    Filtered { call: C, reason: String },
    /// The request body for `call`.
    Request {
        call: C,
        body: Value,
        warnings: Vec<Issue>,
    },
    /// Subscribed, but the event lacks what the request needs.
    Failed {
        call: C,
        errors: Vec<Issue>,
        warnings: Vec<Issue>,
    },
}

/// A compiled blueprint for a destination whose calls are `C`s.
#[derive(Debug, Clone)]
pub struct Blueprint<C> {
    consent: Option<Source>,
    mappings: Vec<Mapping<C>>,
    by_event: HashMap<String, usize>,
}

impl<C: Copy> Blueprint<C> {
    /// Compiles a blueprint document for a destination offering `calls`. Every problem
    /// found is reported, each with its location.
    pub fn compile(doc: &Value, calls: &[CallSpec<C>]) -> Result<Self, Vec<BlueprintError>> {
        compile::compile(doc, calls)
    }

    /// Maps one event. `config` is the integration's non-secret config (`config.` paths).
    pub fn map(&self, event: &Value, config: &Value) -> Mapped<C> {
        evaluate::map(self, event, config)
    }
}

/// The name a blueprint subscribes by: `event` of a `track` call (or of an event
/// without a `type`).
pub fn event_name(event: &Value) -> Option<&str> {
    match event.get("type").and_then(Value::as_str) {
        None | Some("track") => event.get("event").and_then(Value::as_str),
        Some(_) => None,
    }
}

#[cfg(test)]
mod property_tests;
#[cfg(test)]
mod tests;
