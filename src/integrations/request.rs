//! Install and update requests, parsed into valid values. Every problem of a request is
//! collected and each names its field, so a caller fixes them all in one go.

use secrecy::SecretString;
use serde_json::{Map, Value};

use super::MASK;
use crate::button::model::is_application_id;
use crate::catalog::{CatalogEntry, button};
use crate::domain::FieldError;

/// A valid install request.
pub struct Install {
    pub name: String,
    pub variant: String,
    pub delivery_mode: String,
    pub enabled: bool,
    pub application_id: String,
    pub api_key: SecretString,
}

/// A valid partial update.
#[derive(Default)]
pub struct Update {
    pub name: Option<String>,
    pub enabled: Option<bool>,
    pub application_id: Option<String>,
    pub api_key: Option<SecretString>,
}

/// A key a request may carry: what the parser accepts and the OpenAPI schema shows,
/// from this one list.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub name: &'static str,
    pub kind: Kind,
    /// Whether a request must carry it.
    pub required: bool,
    pub about: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A display name ([`FieldError::check_name`]).
    Name,
    /// A variant key of the catalog entry.
    Variant,
    /// A delivery mode of the catalog entry.
    DeliveryMode,
    /// A Button application ID.
    ApplicationId,
    /// A secret: any text that is not blank.
    Secret,
    Boolean,
    /// The integration's config: the [`CONFIG`] keys.
    Config,
}

const fn key(name: &'static str, kind: Kind, required: bool, about: &'static str) -> Key {
    Key {
        name,
        kind,
        required,
        about,
    }
}

/// An install request's keys.
pub const INSTALL: &[Key] = &[
    key(
        "name",
        Kind::Name,
        false,
        "Display name; defaults to the entry's name.",
    ),
    key(
        "variant",
        Kind::Variant,
        false,
        "A variant key of the entry; defaults to `default`.",
    ),
    key("config", Kind::Config, true, "The integration's config."),
    key(
        "delivery_mode",
        Kind::DeliveryMode,
        false,
        "`server_side`, the only mode Button supports.",
    ),
    key(
        "enabled",
        Kind::Boolean,
        false,
        "Whether events go to it; defaults to true.",
    ),
];

/// A partial update's keys: any of them.
pub const UPDATE: &[Key] = &[
    key("name", Kind::Name, false, "A new display name."),
    key("enabled", Kind::Boolean, false, "Enable or disable it."),
    key(
        "config",
        Kind::Config,
        false,
        "`application_id` and/or `api_key` (rotation); a new api_key resumes a lane paused by a 401. `\"api_key\": \"***\"` (as read) keeps the key.",
    ),
    key(
        "delivery_mode",
        Kind::DeliveryMode,
        false,
        "`server_side`, the only mode Button supports.",
    ),
];

/// The keys of `config`.
pub const CONFIG: &[Key] = &[
    key(
        "application_id",
        Kind::ApplicationId,
        true,
        "Your Button application ID from Settings > Applications (`^app-[0-9a-zA-Z]+$`).",
    ),
    key(
        "api_key",
        Kind::Secret,
        true,
        "Your Button API key from Settings > API Keys; secret: stored encrypted, shown as `***`.",
    ),
];

fn names(keys: &[Key]) -> Vec<&'static str> {
    keys.iter().map(|k| k.name).collect()
}

/// Collects every problem of a request body before answering.
#[derive(Default)]
struct Problems(Vec<FieldError>);

impl Problems {
    fn add(&mut self, field: &str, code: &str, message: impl Into<String>) {
        self.0.push(FieldError::new(field, code, message));
    }

    fn finish<T>(self, value: impl FnOnce() -> T) -> Result<T, Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(value())
        } else {
            Err(self.0)
        }
    }

    fn unknown_keys(&mut self, obj: &Map<String, Value>, prefix: &str, allowed: &[&str]) {
        for key in obj.keys().filter(|k| !allowed.contains(&k.as_str())) {
            self.add(
                &format!("{prefix}{key}"),
                "unknown_field",
                format!("unknown field; expected one of: {}", allowed.join(", ")),
            );
        }
    }

    fn name(&mut self, v: Option<&Value>) -> Option<String> {
        match v {
            None => None,
            Some(Value::String(s)) => match FieldError::check_name("name", s) {
                Ok(name) => Some(name),
                Err(problem) => {
                    self.0.push(problem);
                    None
                }
            },
            Some(_) => {
                self.add("name", "invalid_type", "must be a string");
                None
            }
        }
    }

    fn delivery_mode(&mut self, entry: &CatalogEntry, v: Option<&Value>) -> String {
        match v {
            None => button::SERVER_SIDE.to_owned(),
            Some(Value::String(m)) if entry.delivery_modes.contains(&m.as_str()) => m.clone(),
            Some(other) => {
                self.add(
                    "delivery_mode",
                    "unsupported",
                    format!(
                        "{} is not supported: Button takes server_side delivery only, because its Orders API is server-to-server and the api_key must never reach a browser or app",
                        other
                    ),
                );
                String::new()
            }
        }
    }

    fn application_id(&mut self, v: Option<&Value>, required: bool) -> Option<String> {
        match v {
            None if required => {
                self.add(
                    "config.application_id",
                    "required",
                    "is required: your Button application ID from Settings > Applications",
                );
                None
            }
            None => None,
            Some(Value::String(s)) if is_application_id(s.trim()) => Some(s.trim().to_owned()),
            // The value is not repeated: a key pasted into the wrong field must not come
            // back in an answer (or in a client's logs).
            Some(Value::String(_)) => {
                self.add(
                    "config.application_id",
                    "invalid_format",
                    "does not match ^app-[0-9a-zA-Z]+$ (e.g. app-abc123def456); find it in Button Settings > Applications",
                );
                None
            }
            Some(_) => {
                self.add("config.application_id", "invalid_type", "must be a string");
                None
            }
        }
    }

    /// The api_key. On an update, the masked `***` every answer shows means "keep the
    /// key" (a client may send back what it read); on install it is refused.
    fn api_key(&mut self, v: Option<&Value>, required: bool) -> Option<SecretString> {
        match v {
            Some(Value::String(s)) if s.trim() == MASK && !required => None,
            Some(Value::String(s)) if s.trim() == MASK => {
                self.add(
                    "config.api_key",
                    "invalid_value",
                    "*** is how the key is shown, not a key: give your Button API key from Settings > API Keys",
                );
                None
            }
            None if required => {
                self.add(
                    "config.api_key",
                    "required",
                    "is required: your Button API key from Settings > API Keys",
                );
                None
            }
            None => None,
            Some(Value::String(s)) if !s.trim().is_empty() => Some(SecretString::from(s.trim())),
            Some(Value::String(_)) => {
                self.add("config.api_key", "required", "must not be empty");
                None
            }
            Some(_) => {
                self.add("config.api_key", "invalid_type", "must be a string");
                None
            }
        }
    }
}

fn as_object<'a>(
    body: &'a Value,
    problems: &mut Problems,
    field: &str,
) -> Option<&'a Map<String, Value>> {
    match body {
        Value::Object(obj) => Some(obj),
        _ => {
            problems.add(field, "invalid_type", "must be a JSON object");
            None
        }
    }
}

/// Parses an install request for catalog `entry`.
pub fn parse_install(entry: &CatalogEntry, body: &Value) -> Result<Install, Vec<FieldError>> {
    let mut p = Problems::default();
    let Some(obj) = as_object(body, &mut p, "body") else {
        return Err(p.0);
    };
    p.unknown_keys(obj, "", &names(INSTALL));
    let name = p
        .name(obj.get("name"))
        .unwrap_or_else(|| entry.name.to_owned());
    let variant = match obj.get("variant") {
        None => "default".to_owned(),
        Some(Value::String(v)) if entry.variants.iter().any(|x| x.key == v) => v.clone(),
        Some(other) => {
            let known: Vec<&str> = entry.variants.iter().map(|v| v.key).collect();
            p.add(
                "variant",
                "unknown_variant",
                format!(
                    "{other} is not a variant of {}; variants: {}",
                    entry.key,
                    known.join(", ")
                ),
            );
            String::new()
        }
    };
    let delivery_mode = p.delivery_mode(entry, obj.get("delivery_mode"));
    let enabled = match obj.get("enabled") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            p.add("enabled", "invalid_type", "must be true or false");
            true
        }
    };
    let (mut application_id, mut api_key) = (None, None);
    match obj.get("config") {
        None => p.add(
            "config",
            "required",
            "is required: {\"application_id\": ..., \"api_key\": ...}",
        ),
        Some(config) => {
            if let Some(config) = as_object(config, &mut p, "config") {
                p.unknown_keys(config, "config.", &names(CONFIG));
                application_id = p.application_id(config.get("application_id"), true);
                api_key = p.api_key(config.get("api_key"), true);
            }
        }
    }
    p.finish(|| Install {
        name,
        variant,
        delivery_mode,
        enabled,
        application_id: application_id.expect("checked"),
        api_key: api_key.expect("checked"),
    })
}

/// Parses a partial update.
pub fn parse_update(entry: &CatalogEntry, body: &Value) -> Result<Update, Vec<FieldError>> {
    let mut p = Problems::default();
    let Some(obj) = as_object(body, &mut p, "body") else {
        return Err(p.0);
    };
    p.unknown_keys(obj, "", &names(UPDATE));
    let name = p.name(obj.get("name"));
    p.delivery_mode(entry, obj.get("delivery_mode"));
    let enabled = match obj.get("enabled") {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            p.add("enabled", "invalid_type", "must be true or false");
            None
        }
    };
    let (mut application_id, mut api_key) = (None, None);
    if let Some(config) = obj.get("config")
        && let Some(config) = as_object(config, &mut p, "config")
    {
        p.unknown_keys(config, "config.", &names(CONFIG));
        application_id = p.application_id(config.get("application_id"), false);
        api_key = p.api_key(config.get("api_key"), false);
    }
    p.finish(|| Update {
        name,
        enabled,
        application_id,
        api_key,
    })
}

/// The install request of the product page, as the OpenAPI document shows it (from
/// [`INSTALL`]).
pub struct InstallRequest;

/// A partial update, as the OpenAPI document shows it (from [`UPDATE`]).
pub struct UpdateRequest;

mod schema {
    use serde_json::json;
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Schema, SchemaType, Type};
    use utoipa::{PartialSchema, ToSchema};

    use super::{CONFIG, InstallRequest, Key, Kind, UPDATE, UpdateRequest};
    use crate::catalog;
    use crate::domain::problem::{NOT_BLANK_PATTERN, name_schema};

    /// Every value the catalog's entries take for `values` (variants, delivery modes).
    fn known(values: impl Fn(&catalog::CatalogEntry) -> Vec<&'static str>) -> Vec<&'static str> {
        let mut all: Vec<&'static str> = catalog::entries().iter().flat_map(values).collect();
        all.dedup();
        all
    }

    fn string() -> ObjectBuilder {
        ObjectBuilder::new().schema_type(SchemaType::from(Type::String))
    }

    fn object(keys: &[Key], partial: bool) -> ObjectBuilder {
        let mut schema = ObjectBuilder::new()
            .schema_type(Type::Object)
            .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)));
        for key in keys {
            let property = match key.kind {
                Kind::Name => {
                    let name = name_schema();
                    let about = format!(
                        "{} {}",
                        key.about,
                        name.description.clone().unwrap_or_default()
                    );
                    schema = schema
                        .property(key.name, ObjectBuilder::from(name).description(Some(about)));
                    if key.required && !partial {
                        schema = schema.required(key.name);
                    }
                    continue;
                }
                Kind::Variant => string()
                    .enum_values(Some(known(|e| e.variants.iter().map(|v| v.key).collect()))),
                Kind::DeliveryMode => {
                    string().enum_values(Some(known(|e| e.delivery_modes.clone())))
                }
                // Surrounding white space is trimmed by the server; the document shows the
                // value as it is kept.
                Kind::ApplicationId => string().pattern(Some("^app-[0-9A-Za-z]+$")),
                Kind::Secret => string().pattern(Some(NOT_BLANK_PATTERN)),
                Kind::Boolean => ObjectBuilder::new().schema_type(SchemaType::from(Type::Boolean)),
                Kind::Config => object(CONFIG, partial),
            };
            schema = schema.property(key.name, property.description(Some(key.about)));
            if key.required && !partial {
                schema = schema.required(key.name);
            }
        }
        schema
    }

    impl PartialSchema for InstallRequest {
        fn schema() -> RefOr<Schema> {
            object(super::INSTALL, false)
                .examples([json!({"name": "Button", "variant": "default",
                    "config": {"application_id": "app-abc123def456", "api_key": "your_api_key"},
                    "delivery_mode": "server_side"})])
                .into()
        }
    }

    impl ToSchema for InstallRequest {}

    impl PartialSchema for UpdateRequest {
        fn schema() -> RefOr<Schema> {
            object(UPDATE, true)
                .examples([json!({"name": "Button (web)", "enabled": true,
                    "config": {"api_key": "new_key"}})])
                .into()
        }
    }

    impl ToSchema for UpdateRequest {}
}
