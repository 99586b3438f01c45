//! Sources: who sends events. A source has its own ingest token (its write key: shown
//! once, kept only as its SHA-256) and is connected to chosen integrations; its events
//! go only to those, then narrowed by the event's `integrations` object. The ingest
//! tokens from config are the default source, connected to every integration, so a
//! deployment without sources works as before.
//!
//! Like the integration registry, sources are kept in memory for the ingest path (a
//! token is one hash lookup), every change goes to the store first, and a change
//! another replica made is [`reload`](Sources::reload)ed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use secrecy::{ExposeSecret, SecretString};

use crate::domain::clock::now_ms;
use crate::domain::{IntegrationId, SourceId};
use crate::secrets::{new_token, token_digest};
use crate::store::sources::SourceRow;
use crate::store::{Store, StoreError};

/// The prefix of a source's token, so a leaked one is recognised for what it is.
pub const TOKEN_PREFIX: &str = "src-";

/// One source, as routing and the API see it.
#[derive(Debug, Clone)]
pub struct Source {
    pub id: SourceId,
    pub name: String,
    pub integrations: BTreeSet<IntegrationId>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Who sent a request, as its ingest token says.
#[derive(Debug, Clone)]
pub enum Sender {
    /// A token from config: every integration.
    Default,
    /// A source's token: its connected integrations.
    Source(Arc<Source>),
}

impl Sender {
    /// Whether events of this sender may go to `integration`.
    pub fn reaches(&self, integration: &IntegrationId) -> bool {
        match self {
            Self::Default => true,
            Self::Source(source) => source.integrations.contains(integration),
        }
    }
}

/// Why a change to a source did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source {0} not found")]
    NotFound(SourceId),
    #[error("integration {0} not found")]
    IntegrationNotFound(IntegrationId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Default)]
struct Table {
    by_id: BTreeMap<SourceId, Arc<Source>>,
    by_digest: HashMap<[u8; 32], SourceId>,
}

pub struct Sources {
    store: Store,
    current: RwLock<Arc<Table>>,
}

fn open(row: SourceRow) -> ([u8; 32], Source) {
    let mut digest = [0u8; 32];
    if row.token_sha256.len() == 32 {
        digest.copy_from_slice(&row.token_sha256);
    }
    let source = Source {
        id: row.id,
        name: row.name,
        integrations: row.integrations.into_iter().collect(),
        created_at: row.created_at,
        updated_at: row.updated_at,
    };
    (digest, source)
}

impl Sources {
    /// Loads every stored source.
    pub async fn load(store: Store) -> Result<Self, StoreError> {
        let sources = Self {
            store,
            current: RwLock::new(Arc::default()),
        };
        sources.reload_all().await?;
        Ok(sources)
    }

    fn table(&self) -> Arc<Table> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The source whose token this is.
    pub fn by_token(&self, token: &str) -> Option<Arc<Source>> {
        let table = self.table();
        let id = table.by_digest.get(&token_digest(token))?;
        table.by_id.get(id).cloned()
    }

    pub fn get(&self, id: &SourceId) -> Option<Arc<Source>> {
        self.table().by_id.get(id).cloned()
    }

    /// Every source, oldest first.
    pub fn all(&self) -> Vec<Arc<Source>> {
        self.table().by_id.values().cloned().collect()
    }

    /// Replaces (or, with `None`, removes) one source in memory.
    fn publish(&self, id: &SourceId, row: Option<SourceRow>) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        let mut next = Table {
            by_id: current.by_id.clone(),
            by_digest: current.by_digest.clone(),
        };
        next.by_id.remove(id);
        next.by_digest.retain(|_, s| s != id);
        if let Some(row) = row {
            let (digest, source) = open(row);
            next.by_digest.insert(digest, source.id.clone());
            next.by_id.insert(source.id.clone(), Arc::new(source));
        }
        *current = Arc::new(next);
    }

    /// Creates a source connected to `integrations`; answers it with its token, which
    /// is never shown again.
    pub async fn create(
        &self,
        name: String,
        integrations: Vec<IntegrationId>,
    ) -> Result<(Arc<Source>, SecretString), SourceError> {
        let token = new_token(TOKEN_PREFIX);
        let now = now_ms();
        let row = SourceRow {
            id: SourceId::new(),
            name,
            token_sha256: token_digest(token.expose_secret()).to_vec(),
            integrations,
            created_at: now,
            updated_at: now,
        };
        let id = row.id.clone();
        self.store.insert_source(row).await?;
        self.reload(&id).await?;
        let source = self.get(&id).ok_or(SourceError::NotFound(id))?;
        Ok((source, token))
    }

    /// Gives the source a new token (the old one stops working at once).
    pub async fn rotate(&self, id: &SourceId) -> Result<(Arc<Source>, SecretString), SourceError> {
        let token = new_token(TOKEN_PREFIX);
        let digest = token_digest(token.expose_secret()).to_vec();
        if !self.store.rotate_source_token(id, digest, now_ms()).await? {
            return Err(SourceError::NotFound(id.clone()));
        }
        self.reload(id).await?;
        let source = self
            .get(id)
            .ok_or_else(|| SourceError::NotFound(id.clone()))?;
        Ok((source, token))
    }

    /// Connects (`true`) or disconnects an integration.
    pub async fn connect(
        &self,
        id: &SourceId,
        integration: &IntegrationId,
        connected: bool,
    ) -> Result<Arc<Source>, SourceError> {
        if self.get(id).is_none() {
            return Err(SourceError::NotFound(id.clone()));
        }
        let found = self
            .store
            .connect_source(id, integration, connected, now_ms())
            .await?;
        self.reload(id).await?;
        let source = self
            .get(id)
            .ok_or_else(|| SourceError::NotFound(id.clone()))?;
        if !found {
            return Err(SourceError::IntegrationNotFound(integration.clone()));
        }
        Ok(source)
    }

    pub async fn delete(&self, id: &SourceId) -> Result<(), SourceError> {
        let existed = self.store.delete_source(id).await?;
        self.publish(id, None);
        if existed {
            Ok(())
        } else {
            Err(SourceError::NotFound(id.clone()))
        }
    }

    /// Reads one source again from the store (after a change here or elsewhere).
    pub async fn reload(&self, id: &SourceId) -> Result<(), StoreError> {
        let row = self.store.get_source(id).await?;
        self.publish(id, row);
        Ok(())
    }

    /// Reads every source again.
    pub async fn reload_all(&self) -> Result<(), StoreError> {
        let mut table = Table::default();
        for row in self.store.all_sources().await? {
            let (digest, source) = open(row);
            table.by_digest.insert(digest, source.id.clone());
            table.by_id.insert(source.id.clone(), Arc::new(source));
        }
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
        Ok(())
    }
}
