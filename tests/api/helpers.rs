//! `TestApp::spawn()` starts the real service on a random port with a fresh data
//! directory and a fake Button; tests talk to it over HTTP.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use button_delivery::config::{LogFormat, LogSettings, Settings};
use button_delivery::delivery::Delivery;
use button_delivery::domain::IntegrationId;
use button_delivery::startup::Application;
use fake_button::{Config as FakeConfig, FakeButton};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;

/// Every log line of every in-process test, for secret scans.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().unwrap()).into_owned()
}

/// Waits (up to 10 s) until some captured log line passes `line`.
pub async fn wait_for_log_line(line: impl Fn(&str) -> bool) -> bool {
    wait_for_log_line_after(0, line).await
}

/// How much has been logged so far: lines logged later come after this offset.
pub fn log_offset() -> usize {
    log_buffer().lock().unwrap().len()
}

/// Waits (up to 10 s) until a line logged after `offset` passes `line`.
pub async fn wait_for_log_line_after(offset: usize, line: impl Fn(&str) -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let logged = captured_logs();
        if logged.get(offset..).unwrap_or_default().lines().any(&line) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUFFER: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUFFER.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = BufferWriter(buffer.clone());
        button_delivery::telemetry::init_with_writer(
            &LogSettings {
                format: LogFormat::Json,
                level: "debug,sqlx=warn,hyper=warn,reqwest=warn,h2=warn,rustls=warn".into(),
            },
            move || writer.clone(),
        );
        buffer
    })
}

#[derive(Clone)]
struct BufferWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for BufferWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A plain HTTP client for tests (after the TLS provider every reqwest client needs).
pub fn client() -> reqwest::Client {
    button_delivery::button::client::install_tls_provider();
    reqwest::Client::new()
}

/// A fresh secret, remembered so that every test's end scans the captured logs for
/// every secret any test has made.
pub fn random_secret(prefix: &str) -> String {
    let secret = format!("{prefix}{:032x}", rand::random::<u128>());
    all_secrets().lock().unwrap().push(secret.clone());
    secret
}

fn all_secrets() -> &'static Mutex<Vec<String>> {
    static SECRETS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    SECRETS.get_or_init(|| Mutex::new(Vec::new()))
}

/// Asserts that no secret made so far (keys, tokens) appears in any captured log line.
pub fn assert_no_secret_logged() {
    let logs = captured_logs();
    for secret in all_secrets().lock().unwrap().iter() {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret ({}...) appears in the logs",
            &secret[..10.min(secret.len())]
        );
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub admin_token: String,
    pub ingest_token: String,
    /// The api_key the fake Button accepts.
    pub api_key: String,
    pub fake: Arc<FakeButton>,
    pub dir: Arc<TempDir>,
    pub http: reqwest::Client,
    env: Vec<(String, String)>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    delivery: Option<Arc<Delivery>>,
}

/// The PostgreSQL server tests run on, from `BUTTON_TEST_POSTGRES_URL` (for example
/// `postgres://postgres@127.0.0.1:5432/postgres`); unset, they run on the embedded
/// SQLite store. Each service then gets a database of its own.
pub fn postgres_server() -> Option<String> {
    std::env::var("BUTTON_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
}

pub fn on_postgres() -> bool {
    postgres_server().is_some()
}

/// Creates a fresh database on `server` and answers its URL. The first call also drops
/// the databases earlier test runs left behind (named after processes that are gone).
pub async fn fresh_postgres_database(server: &str) -> String {
    use sqlx::Connection;
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    static SWEPT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    let mut admin = sqlx::PgConnection::connect(server)
        .await
        .unwrap_or_else(|e| panic!("BUTTON_TEST_POSTGRES_URL={server} is not reachable: {e}"));
    SWEPT
        .get_or_init(|| async {
            let names: Vec<String> = sqlx::query_scalar(
                r"SELECT datname FROM pg_database WHERE datname LIKE 'bdtest\_%'",
            )
            .fetch_all(&mut admin)
            .await
            .unwrap();
            for name in names {
                let pid = name.split('_').nth(1).unwrap_or_default();
                if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                    let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(drop))
                        .execute(&mut admin)
                        .await;
                }
            }
        })
        .await;
    let name = format!(
        "bdtest_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut admin)
        .await
        .unwrap();
    let mut url = url::Url::parse(server).expect("a postgres:// URL");
    url.set_path(&name);
    url.to_string()
}

/// Settings a test may change, as environment pairs (with a fresh database of its own
/// when the tests run on PostgreSQL).
pub async fn test_env(
    dir: &TempDir,
    fake: &FakeButton,
    admin: &str,
    ingest: &str,
) -> Vec<(String, String)> {
    let database = match postgres_server() {
        Some(server) => Some(fresh_postgres_database(&server).await),
        None => None,
    };
    [
        ("BUTTON_SERVER__LISTEN", "127.0.0.1:0".to_owned()),
        ("BUTTON_SERVER__DATA_DIR", dir.path().display().to_string()),
        ("BUTTON_SERVER__SHUTDOWN_GRACE", "3s".into()),
        // Tests poll the admin API far faster than an operator; the limit has a test
        // of its own.
        ("BUTTON_SERVER__ADMIN_RATE_LIMIT", "0".into()),
        ("BUTTON_AUTH__ADMIN_TOKENS", admin.to_owned()),
        ("BUTTON_AUTH__INGEST_TOKENS", ingest.to_owned()),
        ("BUTTON_BUTTON__ORDERS_BASE_URL", fake.orders_base_url()),
        (
            "BUTTON_BUTTON__ACTIVITY_URL_TEMPLATE",
            fake.activity_url_template(),
        ),
        ("BUTTON_BUTTON__REQUEST_TIMEOUT", "2s".into()),
        ("BUTTON_BUTTON__CONNECT_TIMEOUT", "1s".into()),
        ("BUTTON_DELIVERY__LEASE_DURATION", "10s".into()),
        ("BUTTON_DELIVERY__POLL_INTERVAL", "100ms".into()),
        ("BUTTON_DELIVERY__MAX_ATTEMPTS", "3".into()),
        ("BUTTON_DELIVERY__BACKOFF_INITIAL", "300ms".into()),
        ("BUTTON_DELIVERY__BACKOFF_MULTIPLIER", "2".into()),
        ("BUTTON_DELIVERY__JITTER", "0".into()),
        ("BUTTON_DELIVERY__RETRY_AFTER_MAX", "30s".into()),
        ("BUTTON_LIVE_LOGS__PRUNE_INTERVAL", "1h".into()),
    ]
    .into_iter()
    .chain(database.map(|url| ("BUTTON_DATABASE__URL", url)))
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// One HTTP call to a service: its status and its JSON body (a string when the body
/// is not JSON, `null` when there is none).
pub async fn call(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = http
        .request(method.parse().unwrap(), url)
        .timeout(Duration::from_secs(20));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body).unwrap());
    }
    let response = request.send().await.expect("the service answers");
    let status = response.status();
    let bytes = response.bytes().await.unwrap();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    (status, value)
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(&[]).await
    }

    /// Starts with extra settings (`BUTTON_...` pairs) on top of the test defaults.
    pub async fn spawn_with(overrides: &[(&str, &str)]) -> Self {
        log_buffer();
        let api_key = random_secret("sk-test-");
        let fake = Arc::new(
            FakeButton::start(FakeConfig {
                api_keys: vec![api_key.clone()],
                ..FakeConfig::default()
            })
            .await,
        );
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let admin_token = random_secret("admin-");
        let ingest_token = random_secret("ingest-");
        let mut env = test_env(&dir, &fake, &admin_token, &ingest_token).await;
        for (k, v) in overrides {
            env.retain(|(key, _)| key != k);
            env.push((k.to_string(), v.to_string()));
        }
        let mut app = Self {
            addr: "127.0.0.1:0".parse().unwrap(),
            admin_token,
            ingest_token,
            api_key,
            fake,
            dir,
            http: client(),
            env,
            stop: None,
            task: None,
            delivery: None,
        };
        app.start().await;
        app
    }

    async fn start(&mut self) {
        let settings = Settings::load_from(self.env.clone()).expect("test settings are valid");
        let application = Application::build(settings)
            .await
            .expect("the service starts");
        self.addr = application.local_addr();
        self.delivery = Some(application.delivery());
        let (stop, stopped) = oneshot::channel::<()>();
        self.task = Some(tokio::spawn(async move {
            application
                .run_until(async {
                    let _ = stopped.await;
                })
                .await
                .expect("the service runs");
        }));
        self.stop = Some(stop);
    }

    /// Stops the service gracefully and starts it again on the same data directory.
    pub async fn restart(&mut self) {
        self.shutdown().await;
        self.start().await;
    }

    pub async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .expect("the service stops within 15s")
                .expect("the service task ends cleanly");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        call(&self.http, method, &self.url(path), token, body).await
    }

    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.request(method, path, Some(&self.admin_token.clone()), body)
            .await
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = self.admin("GET", path, None).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    /// Installs Button as the product page's curl does (with this app's fake key).
    pub async fn install(&self) -> String {
        self.install_with(&self.api_key.clone(), "app-abc123def456")
            .await
    }

    /// Installs a second Button integration with a fresh key of its own, which the fake
    /// Button accepts beside this app's key.
    pub async fn install_another(&self, application_id: &str) -> String {
        let key = random_secret("sk-app-");
        self.fake.set_api_keys(&[&self.api_key, &key]);
        self.install_with(&key, application_id).await
    }

    pub async fn install_with(&self, api_key: &str, application_id: &str) -> String {
        let (status, body) = self
            .admin(
                "POST",
                "/v1/admin/integration-catalog/button/install",
                Some(json!({
                    "name": "Button",
                    "variant": "default",
                    "config": {"application_id": application_id, "api_key": api_key},
                    "delivery_mode": "server_side"
                })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "install: {body}");
        body["id"].as_str().unwrap().to_owned()
    }

    pub async fn send_event(&self, event: Value) -> (StatusCode, Value) {
        self.request(
            "POST",
            "/v1/events",
            Some(&self.ingest_token.clone()),
            Some(event),
        )
        .await
    }

    pub async fn send_batch(&self, events: Vec<Value>) -> (StatusCode, Value) {
        self.request(
            "POST",
            "/v1/events/batch",
            Some(&self.ingest_token.clone()),
            Some(json!({"batch": events})),
        )
        .await
    }

    /// Live-log entries of the integration (newest first), with `query`.
    pub async fn logs(&self, integration: &str, query: &str) -> Vec<Value> {
        let body = self
            .get(&format!(
                "/v1/admin/integrations/{integration}/logs?limit=100&{query}"
            ))
            .await;
        body["data"].as_array().unwrap().clone()
    }

    /// Waits until the integration's live logs hold `n` entries matching `query`.
    pub async fn wait_logs(
        &self,
        integration: &str,
        query: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let logs = self.logs(integration, query).await;
            if logs.len() >= n || tokio::time::Instant::now() >= deadline {
                return logs;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the integration's delivery has settled: no attempt in flight, every
    /// outcome recorded, and nothing due now (or its lane closed). What a test then
    /// sees is final until something changes; the test fails if it takes over 10 s.
    pub async fn settled(&self, integration: &str) {
        let id = IntegrationId::parse(integration).expect("an integration id");
        let delivery = self.delivery.as_ref().expect("the service runs");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        assert!(
            delivery.settled(&id, deadline).await,
            "delivery for {integration} did not settle within 10 s"
        );
    }

    /// The PostgreSQL database of this service, if it runs on PostgreSQL.
    pub fn postgres_url(&self) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == "BUTTON_DATABASE__URL")
            .map(|(_, v)| v.as_str())
    }

    /// A second handle on the service's store, as another replica would open it.
    pub async fn open_store(&self) -> button_delivery::store::Store {
        let settings = Settings::load_from(self.env.clone()).expect("test settings are valid");
        button_delivery::store::Store::open(
            settings.database_kind().expect("a known store"),
            &settings.database_url(),
            &settings.database,
        )
        .await
        .expect("the store opens")
    }

    /// Rows in one of the store's tables.
    pub async fn count_rows(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        match self.postgres_url() {
            Some(url) => {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                let n = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                pool.close().await;
                n
            }
            None => {
                let url = format!(
                    "sqlite://{}/button-delivery.db?mode=ro",
                    self.dir.path().display()
                );
                let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
                let n = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                pool.close().await;
                n
            }
        }
    }

    /// Everything the store holds, as bytes to search: the database files, or on
    /// PostgreSQL every row of every table as text (byte columns written out as the
    /// bytes they hold).
    pub async fn stored_bytes(&self) -> Vec<u8> {
        match self.postgres_url() {
            Some(url) => {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                let mut bytes = Vec::new();
                for table in [
                    "integrations",
                    "events",
                    "deliveries",
                    "live_logs",
                    "lane_holds",
                ] {
                    let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                        "SELECT t::text FROM {table} t"
                    )))
                    .fetch_all(&pool)
                    .await
                    .unwrap();
                    bytes.extend(rows.concat().into_bytes());
                }
                for (table, column) in [
                    ("integrations", "secrets"),
                    ("deliveries", "body"),
                    ("deliveries", "message_id"),
                ] {
                    let cells: Vec<Option<Vec<u8>>> = sqlx::query_scalar(sqlx::AssertSqlSafe(
                        format!("SELECT {column} FROM {table}"),
                    ))
                    .fetch_all(&pool)
                    .await
                    .unwrap();
                    bytes.extend(cells.into_iter().flatten().flatten());
                }
                pool.close().await;
                bytes
            }
            None => {
                let mut bytes = Vec::new();
                for entry in std::fs::read_dir(self.dir.path()).unwrap() {
                    let path = entry.unwrap().path();
                    if path.to_string_lossy().contains(".db") {
                        bytes.extend(std::fs::read(&path).unwrap());
                    }
                }
                bytes
            }
        }
    }

    /// Takes the store's write lock from another connection (as another process
    /// would) and holds it until the answer is dropped or released.
    pub async fn lock_store(&self) -> StoreLock {
        use sqlx::Connection;
        match self.postgres_url() {
            Some(url) => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
                sqlx::query("LOCK TABLE events, deliveries IN ACCESS EXCLUSIVE MODE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                StoreLock::Postgres(conn)
            }
            None => {
                let url = format!("sqlite://{}/button-delivery.db", self.dir.path().display());
                let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
                sqlx::query("BEGIN EXCLUSIVE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                StoreLock::Sqlite(conn)
            }
        }
    }

    /// The integration's queue depth (pending deliveries, due or scheduled).
    pub async fn queue_depth(&self, integration: &str) -> i64 {
        let stats = self
            .get(&format!("/v1/admin/integrations/{integration}/stats"))
            .await;
        stats["queue"]["depth"].as_i64().expect("a queue depth")
    }

    /// Asserts that no secret of this app appears in any log line captured so far.
    pub fn assert_secrets_absent(&self, more: &[&str]) {
        let logs = captured_logs();
        for secret in [self.api_key.as_str(), &self.admin_token, &self.ingest_token]
            .into_iter()
            .chain(more.iter().copied())
        {
            assert!(
                !logs.contains(secret),
                "a secret ({}...) appears in the logs",
                &secret[..8.min(secret.len())]
            );
        }
    }
}

/// A store lock held by a test (see [`TestApp::lock_store`]).
pub enum StoreLock {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl StoreLock {
    pub async fn release(self) {
        match self {
            Self::Sqlite(mut conn) => {
                sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
            }
            Self::Postgres(mut conn) => {
                sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
            }
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Every test ends with a scan of everything logged so far.
        if !std::thread::panicking() {
            assert_no_secret_logged();
        }
    }
}

/// A Segment-style purchase.
pub fn purchase(message_id: &str) -> Value {
    json!({
        "type": "track",
        "event": "purchase",
        "messageId": message_id,
        "timestamp": "2024-05-01T10:00:00Z",
        "userId": "user-1",
        "traits": {"email": "Buyer@Example.com"},
        "properties": {
            "order_id": format!("order-{message_id}"),
            "revenue": 59.98,
            "currency": "USD",
            "btn_ref": "srctok-abc123",
            "products": [{"product_id": "sku-1", "sku": "SKU-1", "name": "Blue shirt", "price": 29.99, "quantity": 2, "category": "Apparel"}]
        }
    })
}

pub fn add_to_cart(message_id: &str) -> Value {
    json!({
        "type": "track",
        "event": "add_to_cart",
        "messageId": message_id,
        "timestamp": "2024-05-01T10:00:00Z",
        "properties": {"product_id": "sku-1", "name": "Blue shirt", "price": 25.99, "currency": "USD", "quantity": 2,
                        "url": "https://shop.example/p/1", "category": "Apparel"},
        "context": {"page": {"url": "https://shop.example/p/1?btn_ref=srctok-xyz"}}
    })
}

pub fn product_view(message_id: &str) -> Value {
    json!({
        "type": "track",
        "event": "product_view",
        "messageId": message_id,
        "timestamp": "2024-05-01T10:00:00Z",
        "properties": {"product_id": "sku-9", "name": "Red hat", "price": 10, "currency": "EUR", "btn_ref": "srctok-pv"}
    })
}
