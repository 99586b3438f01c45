//! Building and running the service: open the store, resolve secrets, load the
//! integrations, start delivery and the pruner, bind the listener; then serve until a
//! signal, and stop in order (HTTP, delivery, store).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::button::{self, ClientConfig};
use crate::config::{DatabaseKind, Settings};
use crate::delivery::Delivery;
use crate::http::{self, AppState};
use crate::ingest::Ingest;
use crate::integrations::Registry;
use crate::live_logs::Hub;
use crate::metrics::Metrics;
use crate::replicas::Follower;
use crate::secrets::{Secrets, TokenSet};
use crate::sources::Sources;
use crate::store::Store;
use crate::store::retention::PrunePolicy;
use crate::test_event::TestEvents;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Secrets(#[from] crate::secrets::SecretsError),
    #[error("cannot open the store at {url}: {source}")]
    Store {
        url: String,
        source: crate::store::StoreError,
    },
    #[error("cannot load integrations: {0}")]
    Integrations(#[from] crate::integrations::LoadError),
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    DataDirInUse(String),
}

/// The embedded store belongs to one process: the data directory is locked for the
/// life of the service (a second start on it would take back the first one's leases
/// and send their deliveries again).
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, StartError> {
    let path = dir.join("button-delivery.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StartError::DataDirInUse(format!("cannot open {}: {e}", path.display())))?;
    file.try_lock().map_err(|_| {
        StartError::DataDirInUse(format!(
            "another process is using the data directory {} (it holds {}); one service per data directory",
            dir.display(),
            path.display()
        ))
    })?;
    Ok(file)
}

/// `url` without its password, for messages.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    stop: watch::Sender<bool>,
    data_dir_lock: Option<std::fs::File>,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartError> {
        let secrets = Secrets::resolve(&settings)?;
        let kind = settings
            .database_kind()
            .expect("the settings were validated");
        // The embedded store belongs to one process; replicas share PostgreSQL.
        let data_dir_lock = match kind {
            DatabaseKind::Sqlite => Some(lock_data_dir(&settings.server.data_dir)?),
            DatabaseKind::Postgres => None,
        };
        let url = settings.database_url();
        let store = Store::open(kind, &url, &settings.database)
            .await
            .map_err(|source| StartError::Store {
                url: redact_url(&url),
                source,
            })?;
        let registry = Arc::new(Registry::load(store.clone(), secrets.cipher.clone()).await?);
        let sources =
            Arc::new(
                Sources::load(store.clone())
                    .await
                    .map_err(|source| StartError::Store {
                        url: redact_url(&url),
                        source,
                    })?,
            );
        let client = button::Client::new(ClientConfig {
            orders_base_url: settings.button.orders_base_url.clone(),
            activity_url_template: settings.button.activity_url_template.clone(),
            api_version: settings.button.api_version.clone(),
            connect_timeout: settings.button.connect_timeout,
            request_timeout: settings.button.request_timeout,
            max_response_bytes: settings.button.max_response_bytes,
        })?;
        let hub = Hub::new(settings.live_logs.stream_buffer);
        let metrics = Arc::new(Metrics::new());
        let delivery = Delivery::start(
            store.clone(),
            registry.clone(),
            client.clone(),
            hub.clone(),
            metrics.clone(),
            settings.delivery.clone(),
        );
        let ingest = Ingest {
            registry: registry.clone(),
            store: store.clone(),
            delivery: delivery.clone(),
            client: client.clone(),
            hub: hub.clone(),
            metrics: metrics.clone(),
        };
        let test_events = TestEvents {
            store: store.clone(),
            client: client.clone(),
            hub: hub.clone(),
            metrics: metrics.clone(),
        };
        let (stop, stopping) = watch::channel(false);
        tokio::spawn(prune(store.clone(), settings.clone(), stopping.clone()));
        Follower {
            store: store.clone(),
            registry: registry.clone(),
            sources: sources.clone(),
            delivery: delivery.clone(),
            hub: hub.clone(),
            client: client.clone(),
        }
        .start(stopping.clone())
        .await
        .map_err(|source| StartError::Store {
            url: redact_url(&url),
            source,
        })?;
        let addr = settings.listen_addr()?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let metrics_tokens = TokenSet::new(&settings.auth.metrics_tokens);
        let admin_rate_limit = http::rate_limit::RateLimit::new(
            settings.server.admin_rate_limit,
            secrets.admin_tokens.len(),
        );
        let state = AppState::new(http::Services {
            settings: Arc::new(settings),
            store,
            registry,
            sources,
            delivery,
            ingest,
            test_events,
            client,
            hub,
            metrics,
            admin_tokens: secrets.admin_tokens,
            admin_rate_limit,
            metrics_tokens,
            ingest_tokens: secrets.ingest_tokens,
            stopping,
        });
        let (router, _) = http::router(state.clone());
        Ok(Self {
            listener,
            router,
            state,
            stop,
            data_dir_lock,
        })
    }

    /// The delivery stage, for tests that wait for it to settle.
    pub fn delivery(&self) -> Arc<Delivery> {
        self.state.delivery.clone()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until SIGTERM or SIGINT.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `signal` completes, then stops: no new connections, in-flight
    /// requests finish (up to the grace period), delivery finishes or releases its
    /// attempts, and the store is closed.
    pub async fn run_until(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Self {
            listener,
            router,
            state,
            stop,
            data_dir_lock,
        } = self;
        // One grace period for the whole stop, counted from the signal.
        let grace = state.settings.server.shutdown_grace;
        let (began, beginning) = watch::channel(None::<tokio::time::Instant>);
        let stop_for_http = stop.clone();
        let limits = http::server::Limits {
            header_read_timeout: state.settings.server.header_read_timeout,
            body_read_timeout: state.settings.server.body_read_timeout,
            idle_timeout: state.settings.server.idle_timeout,
            max_connections: state.settings.server.max_connections,
        };
        let server = http::server::serve(listener, router, limits, async move {
            signal.await;
            tracing::info!("stopping: no new connections; finishing requests in flight");
            let _ = stop_for_http.send(true);
            let _ = began.send(Some(tokio::time::Instant::now()));
        });
        let mut signalled = beginning.clone();
        let overdue = async move {
            let at = signalled
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|at| *at);
            if let Some(at) = at {
                tokio::time::sleep_until(at + grace).await;
            }
        };
        tokio::select! {
            served = server => served?,
            () = overdue => tracing::warn!("requests still open after the grace period; closing them"),
        }
        let _ = stop.send(true);
        let signalled_at = *beginning.borrow();
        let deadline = signalled_at.unwrap_or_else(tokio::time::Instant::now) + grace;
        state.delivery.shutdown(deadline).await;
        state.store.close().await;
        drop(data_dir_lock);
        tracing::info!("stopped");
        Ok(())
    }
}

async fn prune(store: Store, settings: Settings, mut stopping: watch::Receiver<bool>) {
    let policy = PrunePolicy {
        max_age: settings.live_logs.max_age,
        max_entries_per_integration: settings.live_logs.max_entries_per_integration,
        dead_letter_max_age: settings.live_logs.dead_letter_max_age,
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(settings.live_logs.prune_interval) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
        let started = tokio::time::Instant::now();
        match store.prune(SystemTime::now(), &policy).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(
                removed,
                took_ms = started.elapsed().as_millis() as u64,
                "pruned live logs, events and finished deliveries past retention"
            ),
            Err(e) => tracing::error!(error = %e, "pruning failed; will try again"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
