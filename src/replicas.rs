//! Several replicas on one database (PostgreSQL): each follows what the others
//! announce. An integration or a source changed elsewhere is reloaded (an operator's pause, a
//! `401` pause, a key rotation, a new blueprint: all are changes of the integration);
//! a `Retry-After` heard elsewhere holds this replica's lane too; entries committed
//! elsewhere go to this replica's live tail. Every [`RESYNC`], and whenever the
//! connection that hears announcements was lost, the integrations and holds are read
//! again whole, so nothing missed stays missed.
//!
//! The embedded store has one process and nothing to follow.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::button::Client;
use crate::delivery::Delivery;
use crate::domain::clock::{from_ms, now_ms};
use crate::integrations::Registry;
use crate::live_logs::{Hub, RequestView};
use crate::sources::Sources;
use crate::store::changes::Change;
use crate::store::{Store, StoreError};

/// How often the integrations and lane holds are read again whole.
pub const RESYNC: Duration = Duration::from_secs(30);

/// What following the other replicas needs.
pub struct Follower {
    pub store: Store,
    pub registry: Arc<Registry>,
    pub sources: Arc<Sources>,
    pub delivery: Arc<Delivery>,
    pub hub: Hub,
    pub client: Client,
}

impl Follower {
    /// Starts following, until `stopping`; nothing to do on the embedded store.
    pub async fn start(self, stopping: watch::Receiver<bool>) -> Result<(), StoreError> {
        let Some(changes) = self.store.follow_changes().await? else {
            return Ok(());
        };
        self.apply_holds().await;
        tokio::spawn(self.run(changes, stopping));
        Ok(())
    }

    async fn run(self, mut changes: mpsc::Receiver<Change>, mut stopping: watch::Receiver<bool>) {
        let mut resync = tokio::time::interval(RESYNC);
        resync.tick().await;
        loop {
            let change = tokio::select! {
                change = changes.recv() => match change {
                    Some(change) => change,
                    None => return,
                },
                _ = resync.tick() => Change::Missed,
                _ = stopping.wait_for(|s| *s) => return,
            };
            self.follow(change).await;
        }
    }

    async fn follow(&self, change: Change) {
        match change {
            Change::Integration(id) => {
                if let Err(e) = self.registry.reload(&id).await {
                    tracing::error!(integration_id = %id, error = %e, "cannot reload an integration another replica changed");
                }
                if self.registry.get(&id).is_none() {
                    // Deleted: sources lose their connection to it.
                    self.reload_sources().await;
                }
            }
            Change::Source(id) => {
                if let Err(e) = self.sources.reload(&id).await {
                    tracing::error!(source_id = %id, error = %e, "cannot reload a source another replica changed");
                }
            }
            Change::Hold {
                integration_id,
                until,
            } => self.delivery.hold(&integration_id, from_ms(until)),
            Change::Logs(ids) => self.tail(&ids).await,
            Change::Missed => {
                match self.registry.reload_all().await {
                    Ok(0) => {}
                    Ok(changed) => tracing::info!(changed, "integrations reloaded from the store"),
                    Err(e) => tracing::error!(error = %e, "cannot reload the integrations"),
                }
                self.reload_sources().await;
                self.apply_holds().await;
            }
        }
    }

    async fn reload_sources(&self) {
        if let Err(e) = self.sources.reload_all().await {
            tracing::error!(error = %e, "cannot reload the sources");
        }
    }

    async fn apply_holds(&self) {
        match self.store.lane_holds(now_ms()).await {
            Ok(holds) => {
                for (id, until) in holds {
                    self.delivery.hold(&id, from_ms(until));
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the lane holds"),
        }
    }

    /// Shows entries another replica committed to this replica's live-tail readers.
    async fn tail(&self, ids: &[crate::domain::LogId]) {
        if !self.hub.has_subscribers() {
            return;
        }
        match self.store.logs_by_id(ids).await {
            Ok(rows) => {
                for row in rows {
                    let request = self
                        .client
                        .stored_request(row.record.call, row.url.as_deref(), row.body.as_deref())
                        .map(|r| RequestView::of(&r));
                    self.hub.publish(&row.record, request);
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read entries another replica wrote"),
        }
    }
}
