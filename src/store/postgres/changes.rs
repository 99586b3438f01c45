//! Announcements on PostgreSQL: `NOTIFY` on three channels, sent inside the transaction
//! of the change (so only committed changes are announced), heard by a listener
//! connection of each replica.

use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::mpsc;

use super::PgStore;
use super::integrations::CHANGES;
use crate::domain::{IntegrationId, LogId, SourceId};
use crate::store::StoreError;
use crate::store::changes::Change;

/// Lane holds: `<integration id>:<until ms>`.
const HOLDS: &str = "button_lane_holds";
/// Committed live-log entries: `<replica>|<log id>,<log id>,...`.
const LOGS: &str = "button_live_logs";
/// A notification's payload must stay under 8,000 bytes.
const MAX_PAYLOAD: usize = 7_000;

impl PgStore {
    pub(in crate::store) async fn follow_changes(
        &self,
    ) -> Result<mpsc::Receiver<Change>, StoreError> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen_all([CHANGES, HOLDS, LOGS]).await?;
        let (tx, rx) = mpsc::channel(1024);
        let replica = self.replica.clone();
        tokio::spawn(async move {
            loop {
                // The listener holds one of the pool's connections: it must end when
                // the follower does, or closing the pool would wait for it forever.
                let heard = tokio::select! {
                    heard = listener.try_recv() => heard,
                    () = tx.closed() => return,
                };
                let change = match heard {
                    Ok(Some(note)) => read(note.channel(), note.payload(), &replica),
                    // The connection was lost; the listener is connected again.
                    Ok(None) => Some(Change::Missed),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot hear other replicas' announcements; trying again");
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            () = tx.closed() => return,
                        }
                        None
                    }
                };
                if let Some(change) = change
                    && tx.send(change).await.is_err()
                {
                    return; // Nobody follows any more.
                }
            }
        });
        Ok(rx)
    }

    pub(in crate::store) async fn hold_lane(
        &self,
        integration_id: &IntegrationId,
        until: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO lane_holds (integration_id, held_until) VALUES ($1, $2)
             ON CONFLICT (integration_id) DO UPDATE SET held_until = GREATEST(lane_holds.held_until, excluded.held_until)",
        )
        .bind(integration_id)
        .bind(until)
        .execute(&mut *tx)
        .await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(HOLDS)
            .bind(format!("{integration_id}:{until}"))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(in crate::store) async fn lane_holds(
        &self,
        now: i64,
    ) -> Result<Vec<(IntegrationId, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT integration_id, held_until FROM lane_holds WHERE held_until > $1",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?)
    }
}

/// Entry ids in one announcement: a log id is 30 bytes, and a comma.
const LOGS_PER_NOTE: usize = (MAX_PAYLOAD - 64) / 31;

/// The part of a statement that announces the entries `new_logs` answers (a
/// `WITH` query: `notes`), this replica named by parameter `$replica`: one
/// notification per [`LOGS_PER_NOTE`] entries. It runs only if the statement reads
/// `notes`; it is sent when the statement's transaction commits.
pub(super) fn announce_logs(replica: usize) -> String {
    format!(
        "notes AS (SELECT pg_notify('{LOGS}', ${replica} || '|' || string_agg(id, ',' ORDER BY id)) \
             FROM (SELECT id, (row_number() OVER (ORDER BY id) - 1) / {LOGS_PER_NOTE} AS note FROM new_logs) n \
             GROUP BY note)"
    )
}

/// What a notification says, if it is news to this replica.
fn read(channel: &str, payload: &str, replica: &str) -> Option<Change> {
    match channel {
        CHANGES => IntegrationId::parse(payload)
            .map(Change::Integration)
            .or_else(|_| SourceId::parse(payload).map(Change::Source))
            .ok(),
        HOLDS => {
            let (id, until) = payload.split_once(':')?;
            Some(Change::Hold {
                integration_id: IntegrationId::parse(id).ok()?,
                until: until.parse().ok()?,
            })
        }
        LOGS => {
            let (from, ids) = payload.split_once('|')?;
            (from != replica).then(|| {
                Change::Logs(
                    ids.split(',')
                        .filter_map(|id| LogId::parse(id).ok())
                        .collect(),
                )
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_read_back() {
        let id = IntegrationId::new();
        assert_eq!(
            read(CHANGES, id.as_str(), "r1"),
            Some(Change::Integration(id.clone()))
        );
        let source = SourceId::new();
        assert_eq!(
            read(CHANGES, source.as_str(), "r1"),
            Some(Change::Source(source))
        );
        assert_eq!(
            read(HOLDS, &format!("{id}:42"), "r1"),
            Some(Change::Hold {
                integration_id: id,
                until: 42
            })
        );
        let (a, b) = (LogId::new(), LogId::new());
        assert_eq!(
            read(LOGS, &format!("r2|{a},{b}"), "r1"),
            Some(Change::Logs(vec![a.clone(), b]))
        );
        assert_eq!(read(LOGS, &format!("r1|{a}"), "r1"), None, "its own");
        assert_eq!(read(HOLDS, "garbage", "r1"), None);
    }

    #[test]
    fn a_full_announcement_stays_under_the_payload_bound() {
        let ids: Vec<String> = (0..LOGS_PER_NOTE)
            .map(|_| LogId::new().to_string())
            .collect();
        let payload = format!("{:016x}|{}", u64::MAX, ids.join(","));
        assert!(payload.len() <= MAX_PAYLOAD, "{}", payload.len());
    }
}
