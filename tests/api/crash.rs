//! Crash safety: the service binary is killed with SIGKILL while deliveries are pending
//! and in flight, then started again on the same data directory. Every acknowledged
//! event must reach Button at least once.

use std::collections::HashMap;
use std::time::Duration;

use fake_button::{Config, FakeButton};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{client, purchase, random_secret};
use crate::secrets::Process;

#[tokio::test]
async fn nothing_acknowledged_is_lost_to_kill_9() {
    let api_key = random_secret("sk-crash-");
    let fake = FakeButton::start(Config {
        api_keys: vec![api_key.clone()],
        latency: Duration::from_millis(200),
        ..Config::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let admin = random_secret("admin-");
    let ingest = random_secret("ingest-");
    let mut env = crate::helpers::test_env(&dir, &fake, &admin, &ingest).await;
    env.push(("BUTTON_DELIVERY__LANE_CONCURRENCY".into(), "8".into()));
    let http = client();

    let process = Process::start(&env);
    process.wait_ready().await;
    let install = http
        .post(process.url("/v1/admin/integration-catalog/button/install"))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body(json!({"name": "Button", "config": {"application_id": "app-crash1", "api_key": api_key}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(install.status(), StatusCode::CREATED);

    let mut acknowledged = Vec::new();
    for batch in 0..6 {
        let events: Vec<Value> = (0..50)
            .map(|i| purchase(&format!("crash-{batch}-{i}")))
            .collect();
        let response = http
            .post(process.url("/v1/events/batch"))
            .bearer_auth(&ingest)
            .header("content-type", "application/json")
            .body(json!({"batch": events}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        acknowledged.extend((0..50).map(|i| format!("order-crash-{batch}-{i}")));
    }
    // Some deliveries have arrived, some are in flight (200 ms each), most wait.
    fake.wait_for(10, Duration::from_secs(10)).await;
    let before_kill = fake.received().len();
    process.kill();
    assert!(
        before_kill < acknowledged.len(),
        "the kill came with work pending ({before_kill} delivered)"
    );

    let process = Process::start(&env);
    process.wait_ready().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut arrivals: HashMap<String, usize> = HashMap::new();
    while tokio::time::Instant::now() < deadline {
        arrivals.clear();
        for r in fake
            .received()
            .iter()
            .filter(|r| r.status == 200 || r.status == 409)
        {
            *arrivals.entry(r.order_id().to_owned()).or_default() += 1;
        }
        if acknowledged.iter().all(|id| arrivals.contains_key(id)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !arrivals.contains_key(*id))
        .collect();
    if !missing.is_empty() {
        let (_, output) = process.stop();
        let tail: Vec<&str> = output.lines().rev().take(40).collect();
        panic!(
            "{} acknowledged events never reached Button, e.g. {:?}; the service's last lines:\n{}",
            missing.len(),
            &missing[..missing.len().min(5)],
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    // Attempts in flight at the kill are sent again after the restart; Button answers
    // 409 for an order it has, which counts as delivered.
    let conflicts = fake.received().iter().filter(|r| r.status == 409).count();
    let sent_twice = arrivals.values().filter(|&&n| n > 1).count();
    println!(
        "crash test: {} events acknowledged, {before_kill} delivered before SIGKILL, all {} delivered after restart; {sent_twice} sent twice (Button answered 409 to {conflicts})",
        acknowledged.len(),
        acknowledged.len()
    );
    assert!(
        sent_twice * 4 < acknowledged.len(),
        "only what was in flight or unrecorded at the kill goes twice: {sent_twice}"
    );
    let (status, _) = process.stop();
    assert!(status.success());
}

/// A store a later release has used (a migration this release does not know, as a
/// change of the stored format brings) is refused at start, not read: its values may
/// be packed in a way this release would take for text.
#[tokio::test]
async fn a_store_a_later_release_has_used_is_refused_at_start() {
    let fake = FakeButton::start(Config::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let env = crate::helpers::test_env(&dir, &fake, "admin-later", "ingest-later").await;
    let process = Process::start(&env);
    process.wait_ready().await;
    let (status, output) = process.stop();
    assert!(status.success(), "{output}");

    let later = "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                 VALUES (9999, 'a later release', true, X'00', 0)";
    match env.iter().find(|(k, _)| k == "BUTTON_DATABASE__URL") {
        Some((_, url)) => {
            use sqlx::Connection;
            let mut db = sqlx::PgConnection::connect(url).await.unwrap();
            let later = later.replace("X'00'", "'\\x00'");
            sqlx::query(sqlx::AssertSqlSafe(later))
                .execute(&mut db)
                .await
                .unwrap();
        }
        None => {
            let file = dir.path().join("button-delivery.db");
            let db = rusqlite::Connection::open(&file).unwrap();
            db.execute(later, []).unwrap();
        }
    }

    let refused = Process::start(&env);
    let (status, output) = refused.wait_exit(Duration::from_secs(20));
    assert!(!status.success(), "{output}");
    assert!(output.contains("9999"), "{output}");
}
