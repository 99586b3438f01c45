//! Secrets never leave in clear: not in logs, not in answers, not in the database file.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, random_secret};

/// The service binary, started on a free port with the given environment. What it
/// prints is collected as it goes (a full pipe would block the service).
pub struct Process {
    child: Option<Child>,
    output: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    pub port: u16,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Process {
    pub fn start(env: &[(String, String)]) -> Self {
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_button-delivery"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("BUTTON_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "BUTTON_LOG__LEVEL",
                "debug,sqlx=info,hyper=info,reqwest=info,h2=info,rustls=info",
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the service binary starts");
        let output = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        let pipes: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        for mut pipe in pipes {
            let output = output.clone();
            readers.push(std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    output
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }));
        }
        Self {
            child: Some(child),
            output,
            readers,
            port,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// Waits (up to 30 s: a process starting beside the whole suite on two cores, its
    /// migrations on a shared PostgreSQL, has taken over 10) until it answers ready.
    pub async fn wait_ready(&self) {
        let client = crate::helpers::client();
        for _ in 0..600 {
            if let Ok(r) = client.get(self.url("/readyz")).send().await
                && r.status() == StatusCode::OK
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the service did not become ready:\n{}",
            self.output.lock().unwrap()
        );
    }

    /// Everything it printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits (up to `limit`) for the process to exit by itself; its status and output.
    pub fn wait_exit(mut self, limit: Duration) -> (std::process::ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        let deadline = std::time::Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("still running after {limit:?}:\n{}", self.output());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let output = self.output();
        (status, output)
    }

    /// SIGTERM, wait, and everything it printed.
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let status = child.wait().expect("the service exits");
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let output = self.output.lock().unwrap().clone();
        (status, output)
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test]
async fn a_full_run_of_the_binary_logs_no_secret() {
    let fake = fake_button::FakeButton::start(fake_button::Config::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let admin = random_secret("admin-");
    let ingest = random_secret("ingest-");
    let env = crate::helpers::test_env(&dir, &fake, &admin, &ingest).await;
    let process = Process::start(&env);
    process.wait_ready().await;
    let client = crate::helpers::client();
    let first_key = random_secret("sk-first-");
    let install = client
        .post(process.url("/v1/admin/integration-catalog/button/install"))
        .bearer_auth(&admin)
        .json_body(json!({"name": "Button", "variant": "default",
            "config": {"application_id": "app-abc123def456", "api_key": first_key}, "delivery_mode": "server_side"}))
        .send()
        .await
        .unwrap();
    assert_eq!(install.status(), StatusCode::CREATED);
    let body: serde_json::Value = serde_json::from_slice(&install.bytes().await.unwrap()).unwrap();
    let id = body["id"].as_str().unwrap().to_owned();
    let second_key = random_secret("sk-second-");
    let rotate = client
        .patch(process.url(&format!("/v1/admin/integrations/{id}")))
        .bearer_auth(&admin)
        .json_body(json!({"config": {"api_key": second_key}}))
        .send()
        .await
        .unwrap();
    assert_eq!(rotate.status(), StatusCode::OK);
    // A refused token and a delivery Button refuses (the fake knows neither key).
    let _ = client
        .get(process.url("/v1/admin/integrations"))
        .bearer_auth("wrong-token")
        .send()
        .await;
    let event = crate::helpers::purchase("m-secret-scan");
    let sent = client
        .post(process.url("/v1/events"))
        .bearer_auth(&ingest)
        .json_body(event)
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), StatusCode::ACCEPTED);
    let test = client
        .post(process.url(&format!("/v1/admin/integrations/{id}/test-event")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(test.status(), StatusCode::OK);
    // Wait for the event's attempt to be in Live Logs (its log line is written then).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let logs = loop {
        let logs = client
            .get(process.url(&format!("/v1/admin/integrations/{id}/logs")))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if logs.contains("m-secret-scan") {
            break logs;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the event's attempt never reached Live Logs: {logs}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (status, output) = process.stop();
    assert!(
        status.success(),
        "clean exit on SIGTERM: {status}\n{output}"
    );
    assert!(output.lines().count() > 5, "the run logged: {output}");
    let not_json: Vec<&str> = output.lines().filter(|l| !l.starts_with('{')).collect();
    assert!(
        not_json.is_empty(),
        "JSON lines on stdout by default, not: {not_json:?}"
    );
    assert!(output.contains("integration.created") && output.contains("integration.updated"));
    assert!(output.contains("delivery attempt"));
    for secret in [&first_key, &second_key, &admin, &ingest] {
        assert!(
            !output.contains(secret.as_str()),
            "a secret appears in the service's output"
        );
        assert!(
            !logs.contains(secret.as_str()),
            "a secret appears in Live Logs"
        );
    }
    // Nor the Basic credentials built from the keys.
    use base64::Engine;
    for key in [&first_key, &second_key] {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{key}:"));
        assert!(!output.contains(&basic) && !logs.contains(&basic));
    }
}

#[tokio::test]
async fn the_api_key_is_not_stored_in_clear() {
    let mut app = TestApp::spawn().await;
    let first = random_secret("sk-clear-");
    let id = app.install_with(&first, "app-abc123def456").await;
    let second = random_secret("sk-clear2-");
    app.admin(
        "PATCH",
        &format!("/v1/admin/integrations/{id}"),
        Some(json!({"config": {"api_key": second}})),
    )
    .await;
    app.shutdown().await;
    let bytes = app.stored_bytes().await;
    assert!(bytes.len() > 1024, "the database was read");
    let contains = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(
        contains("app-abc123def456"),
        "the non-secret config is there in clear, so the scan works"
    );
    assert!(
        !contains(&first),
        "the first api_key is in the database in clear"
    );
    assert!(
        !contains(&second),
        "the rotated api_key is in the database in clear"
    );
}

#[tokio::test]
async fn admin_and_ingest_tokens_are_generated_owner_only_when_not_configured() {
    use std::os::unix::fs::PermissionsExt;
    let fake = fake_button::FakeButton::start(fake_button::Config::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("fresh");
    let mut env = crate::helpers::test_env(&dir, &fake, "", "").await;
    env.retain(|(k, _)| !k.starts_with("BUTTON_AUTH") && k != "BUTTON_SERVER__DATA_DIR");
    env.push(("BUTTON_SERVER__DATA_DIR".into(), data.display().to_string()));
    let process = Process::start(&env);
    process.wait_ready().await;
    let token = std::fs::read_to_string(data.join("admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(token.len() >= 40, "a strong token");
    for file in ["admin-token", "ingest-token", "encryption-key"] {
        let mode = std::fs::metadata(data.join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
    let dir_mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
    // The database holds customers' data: owner-only too, its journal files included.
    let database_files: &[&str] = if crate::helpers::on_postgres() {
        &[] // PostgreSQL's files are its own.
    } else {
        &[
            "button-delivery.db",
            "button-delivery.db-wal",
            "button-delivery.db-shm",
        ]
    };
    for file in database_files {
        let path = data.join(file);
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
    let client = crate::helpers::client();
    let ok = client
        .get(process.url("/v1/admin/integrations"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let (_, output) = process.stop();
    assert!(
        output.contains("admin-token"),
        "the log says where the token is"
    );
    assert!(!output.contains(&token), "but never the token");
}

trait JsonBody {
    fn json_body(self, body: serde_json::Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, body: serde_json::Value) -> Self {
        self.header("content-type", "application/json")
            .body(body.to_string())
    }
}

#[tokio::test]
async fn invalid_configuration_stops_start_up_naming_the_setting() {
    let output = Command::new(env!("CARGO_BIN_EXE_button-delivery"))
        .env_clear()
        .env("BUTTON_DELIVERY__LANE_CONCURRENCY", "0")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("delivery.lane_concurrency"), "{stderr}");
}

#[tokio::test]
async fn the_healthcheck_subcommand_reports_the_local_service() {
    let fake = fake_button::FakeButton::start(fake_button::Config::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let env = crate::helpers::test_env(&dir, &fake, "a-token", "i-token").await;
    let process = Process::start(&env);
    process.wait_ready().await;
    let check = |port: u16| {
        Command::new(env!("CARGO_BIN_EXE_button-delivery"))
            .arg("healthcheck")
            .env_clear()
            .env("BUTTON_SERVER__LISTEN", format!("0.0.0.0:{port}"))
            .output()
            .unwrap()
    };
    assert!(check(process.port).status.success());
    let down = check(free_port());
    assert!(!down.status.success());
    assert!(String::from_utf8_lossy(&down.stderr).contains("unhealthy"));
}

#[test]
fn unknown_arguments_are_refused_with_the_usage_and_nothing_starts() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_button-delivery"))
            .args(args)
            .env_clear()
            .env("BUTTON_SERVER__DATA_DIR", dir.path())
            .env(
                "BUTTON_SERVER__LISTEN",
                format!("127.0.0.1:{}", free_port()),
            )
            .output()
            .unwrap()
    };
    for args in [&["--halp"][..], &["serve", "now"]] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("unknown arguments") && stderr.contains("usage: button-delivery"),
            "{stderr}"
        );
    }
    let help = run(&["--help"]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("migrate"));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no service started: the data directory stays empty"
    );
}

#[tokio::test]
async fn a_second_service_on_the_same_data_directory_refuses_to_start() {
    if crate::helpers::on_postgres() {
        // The data-directory lock is the embedded store's: replicas share PostgreSQL
        // (the multi-replica tests run several on one database).
        return;
    }
    let fake = fake_button::FakeButton::start(fake_button::Config::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let env = crate::helpers::test_env(&dir, &fake, "a-token", "i-token").await;
    let first = Process::start(&env);
    first.wait_ready().await;
    let second = Command::new(env!("CARGO_BIN_EXE_button-delivery"))
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env(
            "BUTTON_SERVER__LISTEN",
            format!("127.0.0.1:{}", free_port()),
        )
        .output()
        .unwrap();
    assert!(!second.status.success());
    let out = String::from_utf8_lossy(&second.stdout);
    assert!(
        out.contains("another process is using the data directory"),
        "{out}"
    );
    let (status, _) = first.stop();
    assert!(status.success(), "the first one was not disturbed");
}
