//! The registry: every integration, opened (config parsed, secrets decrypted, blueprint
//! compiled) and kept in memory for ingest and delivery. Every change goes to the store
//! first, then replaces the in-memory value, then is announced to whoever watches (the
//! delivery lanes). A change is written only over the version it read (`updated_at`),
//! so two replicas changing one integration at once never lose either change; a
//! change another replica made is [`reload`](Registry::reload)ed.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::ops::Bound;
use std::sync::{Arc, Mutex, RwLock, Weak};

use secrecy::{ExposeSecret, SecretString};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::sync::broadcast;

use super::{Install, Integration, Update};
use crate::blueprint::{Blueprint, BlueprintError};
use crate::button::CallKind;
use crate::catalog::{self, CatalogEntry};
use crate::domain::clock::now_ms;
use crate::domain::{IntegrationId, LaneState};
use crate::secrets::SecretCipher;
use crate::store::integrations::IntegrationRow;
use crate::store::{Store, StoreError};

/// Every integration by id; ids sort in creation order.
pub type Snapshot = Arc<BTreeMap<IntegrationId, Arc<Integration>>>;

/// Why a stored integration could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("integration {id}: {message}")]
    Invalid { id: IntegrationId, message: String },
    #[error(
        "auth.encryption_key cannot open the api_key stored for integration {0}: every replica, and every restart, needs the key the integrations were stored with"
    )]
    WrongKey(IntegrationId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a change to an integration did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("integration {0} not found")]
    NotFound(IntegrationId),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The changed integration would not open (a bug: changes are validated first).
    #[error(transparent)]
    Load(#[from] LoadError),
}

pub struct Registry {
    store: Store,
    cipher: SecretCipher,
    blueprints: Blueprints,
    current: RwLock<Snapshot>,
    changes: broadcast::Sender<IntegrationId>,
    /// Serialises read-modify-write changes, so concurrent ones never lose each other.
    changing: tokio::sync::Mutex<()>,
}

impl Registry {
    /// Loads every stored integration.
    pub async fn load(store: Store, cipher: SecretCipher) -> Result<Self, LoadError> {
        let (changes, _) = broadcast::channel(1024);
        let blueprints = Blueprints::default();
        let mut map = BTreeMap::new();
        for row in store.all_integrations().await? {
            let integration = open(&row, &cipher, &blueprints)?;
            map.insert(integration.id.clone(), Arc::new(integration));
        }
        Ok(Self {
            store,
            cipher,
            blueprints,
            current: RwLock::new(Arc::new(map)),
            changes,
            changing: tokio::sync::Mutex::new(()),
        })
    }

    /// Every integration, as one consistent snapshot.
    pub fn snapshot(&self) -> Snapshot {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn get(&self, id: &IntegrationId) -> Option<Arc<Integration>> {
        self.snapshot().get(id).cloned()
    }

    /// Up to `limit` integrations created after `after`, oldest first.
    pub fn page(&self, after: Option<&IntegrationId>, limit: usize) -> Vec<Arc<Integration>> {
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.snapshot()
            .range((from, Bound::Unbounded))
            .take(limit)
            .map(|(_, i)| i.clone())
            .collect()
    }

    /// Ids of changed (or deleted) integrations, as they change.
    pub fn subscribe(&self) -> broadcast::Receiver<IntegrationId> {
        self.changes.subscribe()
    }

    fn publish(&self, id: &IntegrationId, integration: Option<Arc<Integration>>) {
        {
            let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
            let mut next = BTreeMap::clone(&current);
            match integration {
                Some(i) => next.insert(id.clone(), i),
                None => next.remove(id),
            };
            *current = Arc::new(next);
        }
        let _ = self.changes.send(id.clone());
    }

    pub async fn install(
        &self,
        entry: &'static CatalogEntry,
        install: Install,
    ) -> Result<Arc<Integration>, RegistryError> {
        let now = now_ms();
        let id = IntegrationId::new();
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
            lane_state: LaneState::Active,
            lane_reason: None,
            created_at: now,
            updated_at: now,
        };
        let integration = Arc::new(open(&row, &self.cipher, &self.blueprints)?);
        self.store.insert_integration(row).await?;
        self.publish(&integration.id, Some(integration.clone()));
        Ok(integration)
    }

    /// Reads the integration, lets `edit` change it, and writes the change unless
    /// someone (here or on another replica) changed it meanwhile; then it reads it
    /// again and retries. An `edit` answering false leaves it as it is (`None`).
    async fn change(
        &self,
        id: &IntegrationId,
        mut edit: impl FnMut(&mut IntegrationRow) -> bool,
    ) -> Result<Option<Arc<Integration>>, RegistryError> {
        let _changing = self.changing.lock().await;
        loop {
            let mut row = self.row(id).await?;
            let seen = row.updated_at;
            if !edit(&mut row) {
                return Ok(None);
            }
            // Strictly increasing: updated_at doubles as the integration's version.
            row.updated_at = now_ms().max(seen + 1);
            let integration = Arc::new(open(&row, &self.cipher, &self.blueprints)?);
            if self.store.update_integration(row, seen).await? {
                self.publish(id, Some(integration.clone()));
                return Ok(Some(integration));
            }
        }
    }

    /// Like [`change`](Self::change), for an edit that always applies.
    async fn apply(
        &self,
        id: &IntegrationId,
        mut edit: impl FnMut(&mut IntegrationRow),
    ) -> Result<Arc<Integration>, RegistryError> {
        let changed = self
            .change(id, |row| {
                edit(row);
                true
            })
            .await?;
        Ok(changed.expect("an edit that always applies changes it"))
    }

    /// Brings this replica's copy of an integration up to date with the store (after
    /// another replica announced a change to it). Answers whether it changed here.
    pub async fn reload(&self, id: &IntegrationId) -> Result<bool, RegistryError> {
        let _changing = self.changing.lock().await;
        let held = self.get(id);
        match self.store.get_integration(id).await? {
            Some(row) if held.as_ref().map(|i| i.updated_at) != Some(row.updated_at) => {
                let integration = Arc::new(open(&row, &self.cipher, &self.blueprints)?);
                self.publish(id, Some(integration));
                Ok(true)
            }
            Some(_) => Ok(false),
            None if held.is_some() => {
                self.publish(id, None);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// [`reload`](Self::reload)s every integration (a safety net for announcements
    /// missed while a connection was down). Answers how many changed here.
    pub async fn reload_all(&self) -> Result<usize, RegistryError> {
        let stored: Vec<IntegrationId> = self
            .store
            .all_integrations()
            .await?
            .into_iter()
            .map(|row| row.id)
            .collect();
        let held: Vec<IntegrationId> = self.snapshot().keys().cloned().collect();
        let mut ids: Vec<IntegrationId> = stored.into_iter().chain(held).collect();
        ids.sort();
        ids.dedup();
        let mut changed = 0;
        for id in ids {
            match self.reload(&id).await {
                Ok(true) => changed += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(integration_id = %id, error = %e, "cannot reload the integration")
                }
            }
        }
        Ok(changed)
    }

    /// Applies a partial update. A new api_key also clears an `auth_failed` lane: the
    /// waiting deliveries go out with the new key.
    pub async fn update(
        &self,
        id: &IntegrationId,
        update: Update,
    ) -> Result<Arc<Integration>, RegistryError> {
        self.apply(id, |row| {
            if let Some(name) = &update.name {
                row.name = name.clone();
            }
            if let Some(enabled) = update.enabled {
                row.enabled = enabled;
            }
            if let Some(application_id) = &update.application_id {
                let mut config: Map<String, Value> =
                    serde_json::from_str(&row.config).unwrap_or_default();
                config.insert(
                    "application_id".into(),
                    Value::String(application_id.clone()),
                );
                row.config = Value::Object(config).to_string();
            }
            if let Some(api_key) = &update.api_key {
                row.secrets = self.seal(&row.id, api_key);
                if row.lane_state == LaneState::AuthFailed {
                    row.lane_state = LaneState::Active;
                    row.lane_reason = None;
                }
            }
        })
        .await
    }

    /// Replaces the blueprint document (already compiled by the caller), kept as
    /// written.
    pub async fn set_blueprint(
        &self,
        id: &IntegrationId,
        doc: &str,
    ) -> Result<Arc<Integration>, RegistryError> {
        self.apply(id, |row| row.blueprint = doc.to_owned()).await
    }

    /// Marks the lane `auth_failed` after Button refused the api_key, unless the
    /// integration changed since `seen_updated_at` (a key rotated meanwhile must not be
    /// paused by an answer to the old key). Answers the paused integration.
    pub async fn pause_for_auth(
        &self,
        id: &IntegrationId,
        seen_updated_at: i64,
        reason: String,
    ) -> Result<Option<Arc<Integration>>, RegistryError> {
        let paused = self
            .change(id, |row| {
                let pause =
                    row.updated_at == seen_updated_at && row.lane_state != LaneState::AuthFailed;
                if pause {
                    row.lane_state = LaneState::AuthFailed;
                    row.lane_reason = Some(reason.clone());
                }
                pause
            })
            .await;
        match paused {
            // Deleted meanwhile: nothing to pause.
            Err(RegistryError::NotFound(_)) => Ok(None),
            other => other,
        }
    }

    /// Clears an `auth_failed` or `paused` lane so its deliveries go out again.
    pub async fn resume(&self, id: &IntegrationId) -> Result<Arc<Integration>, RegistryError> {
        self.apply(id, |row| {
            row.lane_state = LaneState::Active;
            row.lane_reason = None;
        })
        .await
    }

    /// Holds the lane: events keep queueing, nothing is sent until a resume.
    pub async fn pause(&self, id: &IntegrationId) -> Result<Arc<Integration>, RegistryError> {
        self.apply(id, |row| {
            row.lane_state = LaneState::Paused;
            row.lane_reason = Some("paused by an operator".into());
        })
        .await
    }

    /// Deletes the integration with its queue, dead letters and live logs.
    pub async fn delete(&self, id: &IntegrationId) -> Result<(), RegistryError> {
        let _changing = self.changing.lock().await;
        if !self.store.delete_integration(id).await? {
            return Err(RegistryError::NotFound(id.clone()));
        }
        self.publish(id, None);
        Ok(())
    }

    async fn row(&self, id: &IntegrationId) -> Result<IntegrationRow, RegistryError> {
        self.store
            .get_integration(id)
            .await?
            .ok_or_else(|| RegistryError::NotFound(id.clone()))
    }

    fn seal(&self, id: &IntegrationId, api_key: &SecretString) -> Vec<u8> {
        let secrets = serde_json::json!({"api_key": api_key.expose_secret()}).to_string();
        self.cipher.encrypt(secrets.as_bytes(), id.as_str())
    }
}

/// Opens a stored row: finds its catalog entry, parses config, decrypts secrets,
/// compiles the blueprint.
fn open(
    row: &IntegrationRow,
    cipher: &SecretCipher,
    blueprints: &Blueprints,
) -> Result<Integration, LoadError> {
    let invalid = |message: String| LoadError::Invalid {
        id: row.id.clone(),
        message,
    };
    let entry = catalog::entry(&row.catalog_key)
        .ok_or_else(|| invalid(format!("unknown catalog entry {:?}", row.catalog_key)))?;
    let config: Value =
        serde_json::from_str(&row.config).map_err(|e| invalid(format!("config: {e}")))?;
    let secrets = cipher
        .decrypt(&row.secrets, row.id.as_str())
        .map_err(|_| LoadError::WrongKey(row.id.clone()))?;
    let secrets: Value =
        serde_json::from_slice(&secrets).map_err(|_| invalid("secrets are not JSON".into()))?;
    let api_key = secrets
        .get("api_key")
        .and_then(Value::as_str)
        .map(SecretString::from)
        .ok_or_else(|| invalid("secrets hold no api_key".into()))?;
    let (blueprint_doc, blueprint) = blueprints.open(entry, &row.blueprint).map_err(|e| {
        invalid(match e {
            Unopened::Json(e) => format!("blueprint: {e}"),
            Unopened::Compile(errors) => format!("stored blueprint does not compile: {errors:?}"),
        })
    })?;
    Ok(Integration {
        id: row.id.clone(),
        entry,
        name: row.name.clone(),
        variant: row.variant.clone(),
        delivery_mode: row.delivery_mode.clone(),
        enabled: row.enabled,
        config,
        api_key,
        blueprint_doc,
        blueprint,
        lane_state: row.lane_state,
        lane_reason: row.lane_reason.clone(),
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// Blueprints by document, compiled once and shared. Most integrations run their
/// catalog entry's default blueprint; compiled, one is about 140 KB, which every
/// integration held a copy of (measured: 300 integrations took 47 MB with the default
/// blueprint and 4 MB with a one-mapping one). An integration holds its blueprint;
/// this keeps only weak references, so a document no integration runs any more goes.
#[derive(Default)]
struct Blueprints {
    hasher: RandomState,
    by_hash: Mutex<HashMap<u64, Vec<Interned>>>,
}

struct Interned {
    entry: &'static str,
    doc: Weak<RawValue>,
    blueprint: Weak<Blueprint<CallKind>>,
}

enum Unopened {
    Json(serde_json::Error),
    Compile(Vec<BlueprintError>),
}

impl Blueprints {
    /// `text` compiled for `entry`, shared with every integration that runs the same.
    fn open(
        &self,
        entry: &'static CatalogEntry,
        text: &str,
    ) -> Result<(Arc<RawValue>, Arc<Blueprint<CallKind>>), Unopened> {
        let hash = self.hasher.hash_one((entry.key, text));
        let mut by_hash = self.by_hash.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bucket) = by_hash.get(&hash) {
            let found = bucket.iter().find_map(|i| {
                let doc = i.doc.upgrade()?;
                let blueprint = i.blueprint.upgrade()?;
                (i.entry == entry.key && doc.get() == text).then_some((doc, blueprint))
            });
            if let Some(shared) = found {
                return Ok(shared);
            }
        }
        let document: Value = serde_json::from_str(text).map_err(Unopened::Json)?;
        let blueprint = Arc::new(entry.compile(&document).map_err(Unopened::Compile)?);
        let doc: Arc<RawValue> = RawValue::from_string(text.to_owned())
            .map_err(Unopened::Json)?
            .into();
        // Documents no integration runs any more are forgotten.
        by_hash.retain(|_, bucket| {
            bucket.retain(|i| i.doc.strong_count() > 0);
            !bucket.is_empty()
        });
        by_hash.entry(hash).or_default().push(Interned {
            entry: entry.key,
            doc: Arc::downgrade(&doc),
            blueprint: Arc::downgrade(&blueprint),
        });
        Ok((doc, blueprint))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integrations_with_the_same_blueprint_share_one_compiled_copy() {
        let entry = catalog::entry("button").expect("the Button entry");
        let blueprints = Blueprints::default();
        let default = entry.default_blueprint.get();
        let (doc_a, a) = blueprints.open(entry, default).ok().expect("opens");
        let (doc_b, b) = blueprints.open(entry, default).ok().expect("opens");
        assert!(Arc::ptr_eq(&a, &b) && Arc::ptr_eq(&doc_a, &doc_b));

        // Another document (the same blueprint, written differently) is its own.
        let mut value: Value = serde_json::from_str(default).expect("JSON");
        value["description"] = Value::String("mine".into());
        let (doc_c, c) = blueprints
            .open(entry, &value.to_string())
            .ok()
            .expect("opens");
        assert!(!Arc::ptr_eq(&a, &c));
        assert!(doc_c.get().contains("\"mine\""));

        // Once no integration runs a document, it is compiled afresh and forgotten.
        drop((doc_a, a, doc_b, b));
        let (_, again) = blueprints.open(entry, default).ok().expect("opens");
        assert_eq!(Arc::strong_count(&again), 1);
        let held: usize = blueprints
            .by_hash
            .lock()
            .unwrap()
            .values()
            .map(Vec::len)
            .sum();
        assert_eq!(held, 2, "the dropped copy is forgotten");

        // A document that does not compile is refused, and not kept.
        assert!(matches!(
            blueprints.open(entry, r#"{"mappings": 1}"#),
            Err(Unopened::Compile(_))
        ));
        assert!(matches!(
            blueprints.open(entry, "{"),
            Err(Unopened::Json(_))
        ));
    }
}
