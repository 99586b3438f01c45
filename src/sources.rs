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
use std::sync::atomic::{AtomicU64, Ordering};
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

#[derive(Default, Clone)]
struct Table {
    by_id: BTreeMap<SourceId, Arc<Source>>,
    by_digest: HashMap<[u8; 32], SourceId>,
    /// The ticket of the read that last set a source (or its absence), where newer
    /// than `all_read`: a read that began earlier does not overwrite it.
    read: HashMap<SourceId, u64>,
    /// The ticket of the last read of every source.
    all_read: u64,
}

impl Table {
    fn last_read(&self, id: &SourceId) -> u64 {
        self.read.get(id).copied().unwrap_or(0).max(self.all_read)
    }

    /// The table with `id` set from a read of `ticket`; `None` if a later read set it.
    fn published(&self, id: &SourceId, row: Option<SourceRow>, ticket: u64) -> Option<Table> {
        if ticket < self.last_read(id) {
            return None;
        }
        let mut next = self.clone();
        next.set(id, row);
        next.read.insert(id.clone(), ticket);
        Some(next)
    }

    /// The table as a read of every source (`rows`, under `ticket`) leaves it: each
    /// source set by a later read keeps what that read set. `None` if a later read of
    /// every source is in already.
    fn reloaded(&self, rows: Vec<SourceRow>, ticket: u64) -> Option<Table> {
        if ticket < self.all_read {
            return None;
        }
        let mut table = Table {
            all_read: ticket,
            ..Table::default()
        };
        for row in rows {
            let (digest, source) = open(row);
            table.by_digest.insert(digest, source.id.clone());
            table.by_id.insert(source.id.clone(), Arc::new(source));
        }
        for (id, &read) in self.read.iter().filter(|(_, r)| **r > ticket) {
            table.keep(self, id);
            table.read.insert(id.clone(), read);
        }
        Some(table)
    }

    /// Takes source `id` (or its absence) from `other`.
    fn keep(&mut self, other: &Table, id: &SourceId) {
        self.by_id.remove(id);
        self.by_digest.retain(|_, s| s != id);
        if let Some(source) = other.by_id.get(id) {
            self.by_id.insert(id.clone(), source.clone());
        }
        for (digest, _) in other.by_digest.iter().filter(|(_, s)| *s == id) {
            self.by_digest.insert(*digest, id.clone());
        }
    }

    fn set(&mut self, id: &SourceId, row: Option<SourceRow>) {
        self.by_id.remove(id);
        self.by_digest.retain(|_, s| s != id);
        if let Some(row) = row {
            let (digest, source) = open(row);
            self.by_digest.insert(digest, source.id.clone());
            self.by_id.insert(source.id.clone(), Arc::new(source));
        }
    }
}

pub struct Sources {
    store: Store,
    current: RwLock<Arc<Table>>,
    /// Orders what is read from the store. A read takes a ticket before it reads, a
    /// local delete after its write is committed, and what is in memory is replaced
    /// only by a later ticket: a reload that read a source just before it was deleted
    /// (one set off by another replica's change, say) cannot bring it back.
    tickets: AtomicU64,
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
            tickets: AtomicU64::new(1),
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

    fn ticket(&self) -> u64 {
        self.tickets.fetch_add(1, Ordering::AcqRel)
    }

    /// Replaces (or, with `None`, removes) one source in memory, unless what is there
    /// came from a later `ticket`.
    fn publish(&self, id: &SourceId, row: Option<SourceRow>, ticket: u64) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if let Some(next) = current.published(id, row, ticket) {
            *current = Arc::new(next);
        }
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
        let ticket = self.ticket();
        self.publish(id, None, ticket);
        if existed {
            Ok(())
        } else {
            Err(SourceError::NotFound(id.clone()))
        }
    }

    /// Reads one source again from the store (after a change here or elsewhere).
    pub async fn reload(&self, id: &SourceId) -> Result<(), StoreError> {
        let ticket = self.ticket();
        let row = self.store.get_source(id).await?;
        self.publish(id, row, ticket);
        Ok(())
    }

    /// Reads every source again. A source set meanwhile by a later read keeps that.
    pub async fn reload_all(&self) -> Result<(), StoreError> {
        let ticket = self.ticket();
        let rows = self.store.all_sources().await?;
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        if let Some(table) = current.reloaded(rows, ticket) {
            *current = Arc::new(table);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &SourceId, name: &str) -> SourceRow {
        SourceRow {
            id: id.clone(),
            name: name.into(),
            token_sha256: vec![7; 32],
            integrations: Vec::new(),
            created_at: 0,
            updated_at: 0,
        }
    }

    /// A reload that read a source before it was deleted, published after the delete,
    /// does not bring it back; a later read does.
    #[test]
    fn a_stale_read_does_not_undo_a_later_change() {
        let id = SourceId::new();
        let table = Table::default()
            .published(&id, Some(row(&id, "a")), 5)
            .unwrap();
        assert!(table.by_id.contains_key(&id));
        let deleted = table.published(&id, None, 7).unwrap();
        assert!(deleted.by_id.is_empty() && deleted.by_digest.is_empty());
        assert!(
            deleted.published(&id, Some(row(&id, "a")), 6).is_none(),
            "a read begun before the delete is refused"
        );
        let back = deleted.published(&id, Some(row(&id, "b")), 8).unwrap();
        assert_eq!(back.by_id[&id].name, "b");
        assert_eq!(back.by_digest[&[7; 32]], id);
    }

    /// A read of every source begun before a delete keeps the delete, and takes the
    /// rest; one begun after takes everything it read; an older one changes nothing.
    #[test]
    fn a_stale_reload_of_every_source_keeps_later_changes() {
        let (gone, other) = (SourceId::new(), SourceId::new());
        let mut other_row = row(&other, "other");
        other_row.token_sha256 = vec![9; 32];
        let table = Table::default()
            .published(&gone, Some(row(&gone, "a")), 5)
            .unwrap()
            .published(&gone, None, 7)
            .unwrap();
        let stale = table
            .reloaded(vec![row(&gone, "a"), other_row.clone()], 6)
            .unwrap();
        assert!(!stale.by_id.contains_key(&gone), "the delete stands");
        assert_eq!(stale.by_digest.len(), 1);
        assert_eq!(stale.by_id[&other].name, "other");
        let fresh = stale.reloaded(vec![row(&gone, "b")], 8).unwrap();
        assert_eq!(fresh.by_id[&gone].name, "b");
        assert!(!fresh.by_id.contains_key(&other));
        assert!(
            fresh.reloaded(Vec::new(), 7).is_none(),
            "older than the last"
        );
    }
}
