//! Integrations: what installing a catalog entry creates. Install and update requests
//! are parsed here into valid values (every bad field named), secrets are sealed
//! before they reach the store, and the [`Registry`] keeps the live, compiled form of
//! every integration that ingest and delivery read.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::sync::broadcast;
use utoipa::ToSchema;

use crate::blueprint::{Blueprint, BlueprintError};
use crate::button::model::is_application_id;
use crate::catalog::{self, CatalogEntry, button};
use crate::error::{ApiError, FieldError};
use crate::ids;
use crate::secrets::SecretCipher;
use crate::store::integrations::IntegrationRow;
use crate::store::{Store, now_ms, rfc3339};

/// How secret config values are shown.
pub const MASK: &str = "***";
pub const LANE_ACTIVE: &str = "active";
pub const LANE_AUTH_FAILED: &str = "auth_failed";
/// Paused by an operator (`POST .../pause`): events still queue; nothing is sent.
pub const LANE_PAUSED: &str = "paused";
const MAX_NAME: usize = 200;

/// An integration as the service runs it: config parsed, secrets open, blueprint
/// compiled. Immutable; a change makes a new one.
pub struct Integration {
    pub id: String,
    pub catalog_key: String,
    pub name: String,
    pub variant: String,
    pub delivery_mode: String,
    pub enabled: bool,
    /// Non-secret config; blueprints read it as `config.*`.
    pub config: Value,
    pub api_key: SecretString,
    /// The blueprint document as written.
    pub blueprint_doc: Box<RawValue>,
    pub blueprint: Blueprint,
    pub lane_state: String,
    pub lane_reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Integration {
    pub fn application_id(&self) -> &str {
        self.config
            .get("application_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    pub fn auth_failed(&self) -> bool {
        self.lane_state == LANE_AUTH_FAILED
    }

    /// Whether its lane must not send now (auth failure or an operator's pause).
    pub fn lane_held(&self) -> bool {
        self.lane_state != LANE_ACTIVE
    }

    /// The integration as the API shows it: secrets as `***`.
    pub fn view(&self) -> IntegrationView {
        let mut config = self.config.as_object().cloned().unwrap_or_default();
        config.insert("api_key".into(), Value::String(MASK.into()));
        IntegrationView {
            id: self.id.clone(),
            kind: self.catalog_key.clone(),
            name: self.name.clone(),
            variant: self.variant.clone(),
            delivery_mode: self.delivery_mode.clone(),
            enabled: self.enabled,
            config,
            status: IntegrationStatus {
                lane: self.lane_state.clone(),
                reason: self.lane_reason.clone(),
            },
            blueprint: self.blueprint_doc.clone(),
            created_at: rfc3339(self.created_at),
            updated_at: rfc3339(self.updated_at),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IntegrationView {
    /// `int_` followed by a ULID.
    pub id: String,
    /// The catalog entry installed (`button`).
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub variant: String,
    pub delivery_mode: String,
    pub enabled: bool,
    /// Config values; secret ones are shown as `***`.
    #[schema(value_type = Object, example = json!({"application_id": "app-abc123def456", "api_key": "***"}))]
    pub config: Map<String, Value>,
    pub status: IntegrationStatus,
    #[schema(value_type = Object)]
    pub blueprint: Box<RawValue>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct IntegrationStatus {
    /// `active`; `auth_failed` when Button refused the api_key and deliveries wait for
    /// a new one (or a resume); `paused` by an operator.
    pub lane: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

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

/// Collects every problem of a request body before answering.
#[derive(Default)]
struct Problems(Vec<FieldError>);

impl Problems {
    fn add(&mut self, field: &str, code: &str, message: impl Into<String>) {
        self.0.push(FieldError::new(field, code, message));
    }

    fn finish<T>(self, value: impl FnOnce() -> T) -> Result<T, ApiError> {
        if self.0.is_empty() {
            Ok(value())
        } else {
            Err(ApiError::validation(self.0))
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
            Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= MAX_NAME => {
                Some(s.trim().to_owned())
            }
            Some(Value::String(_)) => {
                self.add(
                    "name",
                    "invalid_length",
                    format!("must be 1 to {MAX_NAME} characters"),
                );
                None
            }
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
pub fn parse_install(entry: &CatalogEntry, body: &Value) -> Result<Install, ApiError> {
    let mut p = Problems::default();
    let Some(obj) = as_object(body, &mut p, "body") else {
        return Err(ApiError::validation(p.0));
    };
    p.unknown_keys(
        obj,
        "",
        &["name", "variant", "config", "delivery_mode", "enabled"],
    );
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
                p.unknown_keys(config, "config.", &["application_id", "api_key"]);
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
pub fn parse_update(entry: &CatalogEntry, body: &Value) -> Result<Update, ApiError> {
    let mut p = Problems::default();
    let Some(obj) = as_object(body, &mut p, "body") else {
        return Err(ApiError::validation(p.0));
    };
    p.unknown_keys(obj, "", &["name", "enabled", "config", "delivery_mode"]);
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
        p.unknown_keys(config, "config.", &["application_id", "api_key"]);
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

/// The live integrations, and the one way to change them: every change goes to the
/// store first, then replaces the in-memory value, then is announced to whoever
/// watches (the delivery lanes).
pub struct Registry {
    store: Store,
    cipher: SecretCipher,
    current: RwLock<Arc<HashMap<String, Arc<Integration>>>>,
    changes: broadcast::Sender<String>,
    /// Serialises read-modify-write changes, so concurrent ones never lose each other.
    changing: tokio::sync::Mutex<()>,
}

/// Why a stored integration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("integration {id}: {message}")]
    Invalid { id: String, message: String },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl Registry {
    /// Loads every stored integration.
    pub async fn load(store: Store, cipher: SecretCipher) -> Result<Self, LoadError> {
        let (changes, _) = broadcast::channel(1024);
        let mut map = HashMap::new();
        for row in store.all_integrations().await? {
            let integration = open(&row, &cipher)?;
            map.insert(integration.id.clone(), Arc::new(integration));
        }
        Ok(Self {
            store,
            cipher,
            current: RwLock::new(Arc::new(map)),
            changes,
            changing: tokio::sync::Mutex::new(()),
        })
    }

    /// Every integration, as one consistent snapshot.
    pub fn snapshot(&self) -> Arc<HashMap<String, Arc<Integration>>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn get(&self, id: &str) -> Option<Arc<Integration>> {
        self.snapshot().get(id).cloned()
    }

    /// Ids of changed (or deleted) integrations, as they change.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.changes.subscribe()
    }

    fn publish(&self, id: &str, integration: Option<Arc<Integration>>) {
        {
            let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
            let mut next = HashMap::clone(&current);
            match integration {
                Some(i) => next.insert(id.to_owned(), i),
                None => next.remove(id),
            };
            *current = Arc::new(next);
        }
        let _ = self.changes.send(id.to_owned());
    }

    pub async fn install(
        &self,
        entry: &CatalogEntry,
        install: Install,
    ) -> Result<Arc<Integration>, ApiError> {
        let now = now_ms();
        let id = ids::new_id(ids::INTEGRATION);
        let row = IntegrationRow {
            secrets: self.seal(&id, &install.api_key),
            config: serde_json::json!({"application_id": install.application_id}).to_string(),
            blueprint: entry.default_blueprint.get().to_owned(),
            id,
            catalog_key: entry.key.to_owned(),
            name: install.name,
            variant: install.variant,
            delivery_mode: install.delivery_mode,
            enabled: install.enabled,
            lane_state: LANE_ACTIVE.to_owned(),
            lane_reason: None,
            created_at: now,
            updated_at: now,
        };
        let integration = Arc::new(open(&row, &self.cipher).map_err(ApiError::internal)?);
        self.store.insert_integration(row).await?;
        self.publish(&integration.id, Some(integration.clone()));
        Ok(integration)
    }

    /// Applies a partial update. A new api_key also clears an `auth_failed` lane: the
    /// waiting deliveries go out with the new key.
    pub async fn update(&self, id: &str, update: Update) -> Result<Arc<Integration>, ApiError> {
        let _changing = self.changing.lock().await;
        let mut row = self.row(id).await?;
        if let Some(name) = update.name {
            row.name = name;
        }
        if let Some(enabled) = update.enabled {
            row.enabled = enabled;
        }
        if let Some(application_id) = update.application_id {
            let mut config: Map<String, Value> =
                serde_json::from_str(&row.config).unwrap_or_default();
            config.insert("application_id".into(), Value::String(application_id));
            row.config = Value::Object(config).to_string();
        }
        if let Some(api_key) = &update.api_key {
            row.secrets = self.seal(&row.id, api_key);
            if row.lane_state == LANE_AUTH_FAILED {
                row.lane_state = LANE_ACTIVE.to_owned();
                row.lane_reason = None;
            }
        }
        self.save(row).await
    }

    /// Replaces the blueprint document (already compiled by the caller), kept as
    /// written.
    pub async fn set_blueprint(&self, id: &str, doc: &str) -> Result<Arc<Integration>, ApiError> {
        let _changing = self.changing.lock().await;
        let mut row = self.row(id).await?;
        row.blueprint = doc.to_owned();
        self.save(row).await
    }

    /// Marks the lane `auth_failed` after Button refused the api_key, unless the
    /// integration changed since `seen_updated_at` (a key rotated meanwhile must not be
    /// paused by an answer to the old key). Answers the paused integration.
    pub async fn pause_for_auth(
        &self,
        id: &str,
        seen_updated_at: i64,
        reason: String,
    ) -> Result<Option<Arc<Integration>>, ApiError> {
        let _changing = self.changing.lock().await;
        match self.store.get_integration(id).await? {
            Some(mut row)
                if row.updated_at == seen_updated_at && row.lane_state != LANE_AUTH_FAILED =>
            {
                row.lane_state = LANE_AUTH_FAILED.to_owned();
                row.lane_reason = Some(reason);
                self.save(row).await.map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Clears an `auth_failed` or `paused` lane so its deliveries go out again.
    pub async fn resume(&self, id: &str) -> Result<Arc<Integration>, ApiError> {
        self.set_lane(id, LANE_ACTIVE, None).await
    }

    /// Holds the lane: events keep queueing, nothing is sent until a resume.
    pub async fn pause(&self, id: &str) -> Result<Arc<Integration>, ApiError> {
        self.set_lane(id, LANE_PAUSED, Some("paused by an operator".into()))
            .await
    }

    async fn set_lane(
        &self,
        id: &str,
        state: &str,
        reason: Option<String>,
    ) -> Result<Arc<Integration>, ApiError> {
        let _changing = self.changing.lock().await;
        let mut row = self.row(id).await?;
        row.lane_state = state.to_owned();
        row.lane_reason = reason;
        self.save(row).await
    }

    pub async fn delete(&self, id: &str) -> Result<bool, ApiError> {
        let _changing = self.changing.lock().await;
        let existed = self.store.delete_integration(id).await?;
        if existed {
            self.publish(id, None);
        }
        Ok(existed)
    }

    async fn row(&self, id: &str) -> Result<IntegrationRow, ApiError> {
        self.store
            .get_integration(id)
            .await?
            .ok_or_else(|| ApiError::not_found("integration", id))
    }

    async fn save(&self, mut row: IntegrationRow) -> Result<Arc<Integration>, ApiError> {
        // Strictly increasing: updated_at doubles as the integration's version.
        row.updated_at = now_ms().max(row.updated_at + 1);
        let integration = Arc::new(open(&row, &self.cipher).map_err(ApiError::internal)?);
        self.store.update_integration(row).await?;
        self.publish(&integration.id, Some(integration.clone()));
        Ok(integration)
    }

    fn seal(&self, id: &str, api_key: &SecretString) -> Vec<u8> {
        let secrets = serde_json::json!({"api_key": api_key.expose_secret()}).to_string();
        self.cipher.encrypt(secrets.as_bytes(), id)
    }
}

/// Compiles a blueprint for the catalog entry `key`.
pub fn compile_blueprint(key: &str, doc: &Value) -> Result<Blueprint, Vec<BlueprintError>> {
    let calls = match key {
        button::KEY => button::CALLS,
        _ => &[],
    };
    Blueprint::compile(doc, calls)
}

/// Opens a stored row: parses config, decrypts secrets, compiles the blueprint.
fn open(row: &IntegrationRow, cipher: &SecretCipher) -> Result<Integration, LoadError> {
    let invalid = |message: String| LoadError::Invalid {
        id: row.id.clone(),
        message,
    };
    if catalog::entry(&row.catalog_key).is_none() {
        return Err(invalid(format!(
            "unknown catalog entry {:?}",
            row.catalog_key
        )));
    }
    let config: Value =
        serde_json::from_str(&row.config).map_err(|e| invalid(format!("config: {e}")))?;
    let secrets = cipher.decrypt(&row.secrets, &row.id).map_err(invalid)?;
    let secrets: Value =
        serde_json::from_slice(&secrets).map_err(|_| invalid("secrets are not JSON".into()))?;
    let api_key = secrets
        .get("api_key")
        .and_then(Value::as_str)
        .map(SecretString::from)
        .ok_or_else(|| invalid("secrets hold no api_key".into()))?;
    let document: Value =
        serde_json::from_str(&row.blueprint).map_err(|e| invalid(format!("blueprint: {e}")))?;
    let blueprint_doc = RawValue::from_string(row.blueprint.clone())
        .map_err(|e| invalid(format!("blueprint: {e}")))?;
    let blueprint = compile_blueprint(&row.catalog_key, &document)
        .map_err(|errors| invalid(format!("stored blueprint does not compile: {errors:?}")))?;
    Ok(Integration {
        id: row.id.clone(),
        catalog_key: row.catalog_key.clone(),
        name: row.name.clone(),
        variant: row.variant.clone(),
        delivery_mode: row.delivery_mode.clone(),
        enabled: row.enabled,
        config,
        api_key,
        blueprint_doc,
        blueprint,
        lane_state: row.lane_state.clone(),
        lane_reason: row.lane_reason.clone(),
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}
