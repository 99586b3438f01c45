//! Settings: the defaults compiled in from `config/default.toml`, then an optional file
//! named by `BUTTON_CONFIG_FILE`, then `BUTTON_*` environment variables (`__` between
//! section and key). Invalid settings stop start-up with a message naming the setting.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

const DEFAULTS: &str = include_str!("../config/default.toml");
const ENV_PREFIX: &str = "BUTTON";
/// How many slots' worth of deliveries a lane leases ahead of its free slots.
pub const LEASE_AHEAD_SLOTS: usize = 2;
/// How many attempts' time a lease must outlast: those a leased delivery may wait for
/// a slot of its lane ([`LEASE_AHEAD_SLOTS`]), then its own.
const LEASE_ROUNDS: u32 = LEASE_AHEAD_SLOTS as u32 + 1;

/// Largest `delivery.max_held`: a million deliveries in memory is past any sensible
/// bound (and far below what the semaphore behind it can count).
const MAX_HELD: usize = 1_000_000;

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl ConfigError {
    fn setting(name: &str, why: impl std::fmt::Display) -> Self {
        Self(format!("{name}: {why}"))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub auth: AuthSettings,
    pub log: LogSettings,
    pub button: ButtonSettings,
    pub ingest: IngestSettings,
    pub delivery: DeliverySettings,
    pub live_logs: LiveLogSettings,
}

/// The sections of [`Settings`], for telling a mistyped setting variable from a
/// `BUTTON_*` variable that belongs to something else.
const SECTIONS: [&str; 8] = [
    "server",
    "database",
    "auth",
    "log",
    "button",
    "ingest",
    "delivery",
    "live_logs",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: String,
    pub data_dir: PathBuf,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    pub max_admin_body_bytes: usize,
    /// Admin requests a minute per admin token (0: no limit).
    pub admin_rate_limit: u32,
    /// `/metrics` without a token.
    pub public_metrics: bool,
    /// How long a connection may take to send a whole request head (from opening, or
    /// from the first byte of the head on a kept-alive connection).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// How long a request's body may take to arrive, from its head.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// How long a kept-alive connection may idle between requests.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Most open connections; at the cap the one idle the longest makes room.
    pub max_connections: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: String,
    /// Runs pending migrations at start-up; when false, start-up refuses a database
    /// whose migrations are not all applied (`button-delivery migrate` applies them).
    pub migrate_on_start: bool,
    /// PostgreSQL: connections of this replica's pool.
    pub max_connections: u32,
    pub read_connections: u32,
    pub synchronous: Synchronous,
    pub max_batch_ops: usize,
    /// Page cache of the writing connection, in MiB: with a large store, inserts into
    /// big indexes stay in memory (the service's RSS grows by up to this much).
    pub writer_cache_mib: u64,
    /// How long a write waits for a locked database before it fails (and ingest
    /// answers 503).
    #[serde(with = "humantime_serde")]
    pub busy_timeout: Duration,
    /// Most events waiting for their commit (or in it); ingest beyond this answers
    /// 503 with Retry-After at once instead of queueing (load shedding).
    pub max_queued_events: usize,
}

/// The databases the service runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    /// One embedded file, one process.
    Sqlite,
    /// Any number of replicas on one database.
    Postgres,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    Full,
    Normal,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub admin_tokens: Vec<SecretString>,
    pub ingest_tokens: Vec<SecretString>,
    /// Tokens for `/metrics` besides the admin tokens.
    pub metrics_tokens: Vec<SecretString>,
    pub encryption_key: SecretString,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ButtonSettings {
    pub orders_base_url: String,
    pub activity_url_template: String,
    pub api_version: String,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    pub max_response_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSettings {
    pub max_event_bytes: usize,
    pub max_batch_events: usize,
    pub max_batch_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverySettings {
    pub lane_concurrency: usize,
    pub lease_batch: usize,
    pub max_held: usize,
    #[serde(with = "humantime_serde")]
    pub lease_duration: Duration,
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    pub max_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub backoff_initial: Duration,
    pub backoff_multiplier: f64,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    pub jitter: f64,
    #[serde(with = "humantime_serde")]
    pub retry_after_max: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveLogSettings {
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    pub max_entries_per_integration: u64,
    #[serde(with = "humantime_serde")]
    pub dead_letter_max_age: Duration,
    #[serde(with = "humantime_serde")]
    pub prune_interval: Duration,
    pub stream_buffer: usize,
}

impl Settings {
    /// Reads the settings from the compiled-in defaults, `BUTTON_CONFIG_FILE` and the
    /// process environment.
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_from(std::env::vars())
    }

    /// Like [`Settings::load`], with the environment given explicitly (tests use this so
    /// they never touch the process environment).
    pub fn load_from(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let prefix = format!("{ENV_PREFIX}_");
        let vars: std::collections::HashMap<String, String> = vars
            .into_iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .collect();
        // A setting is `BUTTON_<SECTION>__<KEY>`. Other `BUTTON_*` variables (a test
        // harness's, a deployment's own) are not ours and are left alone, unless one
        // reads like a setting with a single underscore, which is refused with the fix.
        let mut settings_vars = std::collections::HashMap::new();
        for (name, value) in &vars {
            let rest = &name[prefix.len()..];
            if rest.contains("__") {
                settings_vars.insert(name.clone(), value.clone());
                continue;
            }
            let lower = rest.to_ascii_lowercase();
            if let Some(section) = SECTIONS
                .iter()
                .find(|s| lower.starts_with(&format!("{s}_")) && lower.len() > s.len() + 1)
            {
                let key = &rest[section.len() + 1..];
                let fixed = format!("{prefix}{}__{key}", &rest[..section.len()]);
                return Err(ConfigError::setting(
                    name,
                    format!("section and key are separated by two underscores: {fixed}"),
                ));
            }
        }
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml));
        if let Some(file) = vars.get("BUTTON_CONFIG_FILE") {
            if !std::path::Path::new(file).is_file() {
                return Err(ConfigError::setting(
                    "BUTTON_CONFIG_FILE",
                    format!("{file} is not a readable file"),
                ));
            }
            builder = builder.add_source(config::File::new(file, config::FileFormat::Toml));
        }
        let env = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("_")
            .separator("__")
            .list_separator(",")
            .with_list_parse_key("auth.admin_tokens")
            .with_list_parse_key("auth.ingest_tokens")
            .with_list_parse_key("auth.metrics_tokens")
            .try_parsing(true)
            .source(Some(settings_vars));
        let settings: Settings = builder
            .add_source(env)
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        if self.server.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::setting("server.data_dir", "must not be empty"));
        }
        if self.database_kind().is_none() {
            return Err(ConfigError::setting(
                "database.url",
                "must start with sqlite: (the embedded default) or postgres:",
            ));
        }
        positive(
            "database.max_connections",
            u64::from(self.database.max_connections),
        )?;
        positive(
            "database.read_connections",
            self.database.read_connections as u64,
        )?;
        positive("database.max_batch_ops", self.database.max_batch_ops as u64)?;
        positive(
            "database.max_queued_events",
            self.database.max_queued_events as u64,
        )?;
        positive("database.writer_cache_mib", self.database.writer_cache_mib)?;
        positive(
            "server.max_admin_body_bytes",
            self.server.max_admin_body_bytes as u64,
        )?;
        nonzero(
            "server.header_read_timeout",
            self.server.header_read_timeout,
        )?;
        nonzero("server.idle_timeout", self.server.idle_timeout)?;
        nonzero("server.body_read_timeout", self.server.body_read_timeout)?;
        positive("server.max_connections", self.server.max_connections as u64)?;
        http_url("button.orders_base_url", &self.button.orders_base_url)?;
        http_url(
            "button.activity_url_template",
            &self
                .button
                .activity_url_template
                .replace("{application_id}", "app-0"),
        )?;
        nonzero("button.connect_timeout", self.button.connect_timeout)?;
        nonzero("button.request_timeout", self.button.request_timeout)?;
        positive(
            "button.max_response_bytes",
            self.button.max_response_bytes as u64,
        )?;
        positive("ingest.max_event_bytes", self.ingest.max_event_bytes as u64)?;
        positive(
            "ingest.max_batch_events",
            self.ingest.max_batch_events as u64,
        )?;
        positive("ingest.max_batch_bytes", self.ingest.max_batch_bytes as u64)?;
        let d = &self.delivery;
        positive("delivery.lane_concurrency", d.lane_concurrency as u64)?;
        positive("delivery.lease_batch", d.lease_batch as u64)?;
        positive("delivery.max_held", d.max_held as u64)?;
        if d.max_held > MAX_HELD {
            return Err(ConfigError::setting(
                "delivery.max_held",
                format!("must be at most {MAX_HELD}"),
            ));
        }
        positive("delivery.max_attempts", u64::from(d.max_attempts))?;
        nonzero("delivery.poll_interval", d.poll_interval)?;
        // Nothing renews a lease: one shorter than LEASE_ROUNDS attempts could end
        // before its last delivery's attempt does, and another worker would send the
        // delivery again.
        if d.lease_duration <= self.button.request_timeout * LEASE_ROUNDS {
            return Err(ConfigError::setting(
                "delivery.lease_duration",
                format!(
                    "must be longer than {LEASE_ROUNDS} x button.request_timeout (a leased delivery may wait {LEASE_AHEAD_SLOTS} attempts' time for a slot, then take one), or attempts still running would be taken by another worker"
                ),
            ));
        }
        if !(d.backoff_multiplier >= 1.0 && d.backoff_multiplier.is_finite()) {
            return Err(ConfigError::setting(
                "delivery.backoff_multiplier",
                "must be a number >= 1",
            ));
        }
        if !(0.0..1.0).contains(&d.jitter) {
            return Err(ConfigError::setting("delivery.jitter", "must be in [0, 1)"));
        }
        nonzero("live_logs.max_age", self.live_logs.max_age)?;
        nonzero("live_logs.prune_interval", self.live_logs.prune_interval)?;
        positive(
            "live_logs.max_entries_per_integration",
            self.live_logs.max_entries_per_integration,
        )?;
        positive(
            "live_logs.stream_buffer",
            self.live_logs.stream_buffer as u64,
        )?;
        Ok(())
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.server.listen.parse().map_err(|e| {
            ConfigError::setting(
                "server.listen",
                format!("{e} (expected host:port, e.g. 0.0.0.0:8084)"),
            )
        })
    }

    /// Which database `database.url` names.
    pub fn database_kind(&self) -> Option<DatabaseKind> {
        let url = self.database.url.trim_start();
        if url.starts_with("sqlite:") {
            Some(DatabaseKind::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Some(DatabaseKind::Postgres)
        } else {
            None
        }
    }

    /// The database URL with `{data_dir}` filled in.
    pub fn database_url(&self) -> String {
        self.database
            .url
            .replace("{data_dir}", &self.server.data_dir.to_string_lossy())
    }
}

fn positive(name: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::setting(name, "must be greater than 0"));
    }
    Ok(())
}

fn nonzero(name: &str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        return Err(ConfigError::setting(name, "must be longer than 0s"));
    }
    Ok(())
}

fn http_url(name: &str, value: &str) -> Result<(), ConfigError> {
    let url = url::Url::parse(value)
        .map_err(|e| ConfigError::setting(name, format!("{e}: {value:?}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::setting(
            name,
            "must be an http:// or https:// URL",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load_and_listen_on_8084() {
        let s = Settings::load_from(env(&[])).expect("defaults are valid");
        assert_eq!(s.listen_addr().unwrap().port(), 8084);
        assert_eq!(s.database_url(), "sqlite://data/button-delivery.db");
        assert_eq!(s.log.format, LogFormat::Json);
    }

    #[test]
    fn environment_overrides_nested_settings_and_lists() {
        let s = Settings::load_from(env(&[
            ("BUTTON_SERVER__LISTEN", "127.0.0.1:9000"),
            ("BUTTON_DELIVERY__LANE_CONCURRENCY", "7"),
            ("BUTTON_AUTH__ADMIN_TOKENS", "one,two"),
            ("BUTTON_BUTTON__REQUEST_TIMEOUT", "2s"),
            ("UNRELATED", "x"),
        ]))
        .unwrap();
        assert_eq!(s.server.listen, "127.0.0.1:9000");
        assert_eq!(s.delivery.lane_concurrency, 7);
        assert_eq!(s.auth.admin_tokens.len(), 2);
        assert_eq!(s.button.request_timeout, Duration::from_secs(2));
    }

    #[test]
    fn invalid_settings_name_the_setting() {
        let cases = [
            ("BUTTON_SERVER__LISTEN", "not-an-address", "server.listen"),
            (
                "BUTTON_BUTTON__ORDERS_BASE_URL",
                "ftp://x",
                "button.orders_base_url",
            ),
            ("BUTTON_DELIVERY__JITTER", "1.5", "delivery.jitter"),
            (
                "BUTTON_DELIVERY__LEASE_DURATION",
                "1s",
                "delivery.lease_duration",
            ),
            // Longer than one attempt (15 s by default) but not than three.
            (
                "BUTTON_DELIVERY__LEASE_DURATION",
                "45s",
                "delivery.lease_duration",
            ),
            ("BUTTON_LOG__FORMAT", "xml", "log.format"),
            ("BUTTON_DATABASE__URL", "mysql://x", "database.url"),
            (
                "BUTTON_DATABASE__MAX_CONNECTIONS",
                "0",
                "database.max_connections",
            ),
            (
                "BUTTON_DELIVERY__LANE_CONCURRENCY",
                "0",
                "delivery.lane_concurrency",
            ),
            ("BUTTON_DELIVERY__MAX_HELD", "0", "delivery.max_held"),
            ("BUTTON_DELIVERY__MAX_HELD", "1000001", "delivery.max_held"),
        ];
        for (key, value, setting) in cases {
            let err = Settings::load_from(env(&[(key, value)]))
                .expect_err(key)
                .to_string();
            assert!(
                err.contains(setting),
                "{key}={value}: error {err:?} does not name {setting}"
            );
        }
    }

    #[test]
    fn a_config_file_sits_between_the_defaults_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("local.toml");
        std::fs::write(
            &file,
            "[server]\nlisten = \"127.0.0.1:7000\"\n[delivery]\nlane_concurrency = 4\n",
        )
        .unwrap();
        let path = file.display().to_string();
        let s = Settings::load_from(env(&[
            ("BUTTON_CONFIG_FILE", &path),
            ("BUTTON_DELIVERY__LANE_CONCURRENCY", "9"),
        ]))
        .unwrap();
        assert_eq!(
            s.server.listen, "127.0.0.1:7000",
            "the file overrides the defaults"
        );
        assert_eq!(
            s.delivery.lane_concurrency, 9,
            "the environment overrides the file"
        );
        let err = Settings::load_from(env(&[("BUTTON_CONFIG_FILE", "/nonexistent.toml")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("BUTTON_CONFIG_FILE"), "{err}");
    }

    #[test]
    fn other_button_variables_are_ignored_and_a_single_underscore_is_refused() {
        let s = Settings::load_from(env(&[
            ("BUTTON_TEST_POSTGRES_URL", "postgres://elsewhere/x"),
            ("BUTTON_SERVER__LISTEN", "127.0.0.1:7001"),
        ]))
        .expect("a BUTTON_ variable that names no setting is not ours");
        assert_eq!(s.server.listen, "127.0.0.1:7001");
        let err = Settings::load_from(env(&[("BUTTON_LIVE_LOGS_MAX_ENTRIES", "5")]))
            .expect_err("a single underscore after a section is a typo")
            .to_string();
        assert!(
            err.contains("BUTTON_LIVE_LOGS__MAX_ENTRIES"),
            "the error shows the fix: {err}"
        );
    }

    #[test]
    fn unknown_setting_is_refused() {
        let err = Settings::load_from(env(&[("BUTTON_DELIVERY__LANE_CONCURENCY", "3")]))
            .expect_err("typo must be refused")
            .to_string();
        assert!(err.contains("lane_concurency"), "{err}");
    }
}
