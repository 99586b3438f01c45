//! Several replicas on one PostgreSQL database: three processes of the real binary,
//! each with a data directory of its own, sharing the database, the encryption key and
//! the tokens. (The embedded SQLite store has one process per data directory; these
//! tests need `BUTTON_TEST_POSTGRES_URL` and say so when it is unset.)

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use fake_button::{Config, FakeButton, Reply, Rule, When};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::helpers::{call, client, on_postgres, purchase, random_secret};
use crate::live_logs::{open_tail, read_sse};
use crate::secrets::Process;

/// Every replica's lane concurrency in these tests.
const CONCURRENCY: usize = 8;
/// How soon a change made on one replica must hold on the others.
const PROPAGATION: Duration = Duration::from_secs(1);

struct Cluster {
    fake: FakeButton,
    admin: String,
    ingest: String,
    api_key: String,
    replicas: Vec<Option<Process>>,
    env: Vec<(String, String)>,
    http: reqwest::Client,
    _dirs: Vec<TempDir>,
}

impl Cluster {
    /// `n` replicas on a fresh database, or `None` (with a note) off PostgreSQL.
    async fn start(n: usize, fake: Config, settings: &[(&str, &str)]) -> Option<Self> {
        if !on_postgres() {
            eprintln!("several replicas need PostgreSQL: set BUTTON_TEST_POSTGRES_URL");
            return None;
        }
        let api_key = random_secret("sk-replicas-");
        let fake = FakeButton::start(Config {
            api_keys: vec![api_key.clone()],
            ..fake
        })
        .await;
        let admin = random_secret("admin-");
        let ingest = random_secret("ingest-");
        let first = tempfile::tempdir().unwrap();
        let mut env = crate::helpers::test_env(&first, &fake, &admin, &ingest).await;
        env.retain(|(k, _)| k != "BUTTON_SERVER__DATA_DIR");
        env.push(("BUTTON_AUTH__ENCRYPTION_KEY".into(), encryption_key()));
        for (k, v) in settings {
            env.retain(|(key, _)| key != k);
            env.push((k.to_string(), v.to_string()));
        }
        let mut cluster = Self {
            fake,
            admin,
            ingest,
            api_key,
            replicas: Vec::new(),
            env,
            http: client(),
            _dirs: vec![first],
        };
        // All at once: they migrate the fresh database together (one at a time, by
        // the migrator's advisory lock).
        for _ in 0..n {
            let process = cluster.spawn(&[]);
            cluster.replicas.push(Some(process));
        }
        for process in cluster.replicas.iter().flatten() {
            process.wait_ready().await;
        }
        Some(cluster)
    }

    /// One more replica on the same database, with a data directory of its own.
    fn spawn(&mut self, extra: &[(&str, &str)]) -> Process {
        let dir = tempfile::tempdir().unwrap();
        let mut env = self.env.clone();
        env.push((
            "BUTTON_SERVER__DATA_DIR".into(),
            dir.path().display().to_string(),
        ));
        for (k, v) in extra {
            env.retain(|(key, _)| key != k);
            env.push((k.to_string(), v.to_string()));
        }
        self._dirs.push(dir);
        Process::start(&env)
    }

    fn replica(&self, i: usize) -> &Process {
        self.replicas[i].as_ref().expect("a live replica")
    }

    async fn admin(
        &self,
        i: usize,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        call(
            &self.http,
            method,
            &self.replica(i).url(path),
            Some(&self.admin),
            body,
        )
        .await
    }

    async fn get(&self, i: usize, path: &str) -> Value {
        let (status, body) = self.admin(i, "GET", path, None).await;
        assert_eq!(status, StatusCode::OK, "GET {path} on replica {i}: {body}");
        body
    }

    async fn install(&self, i: usize, api_key: &str) -> String {
        let (status, body) = self
            .admin(
                i,
                "POST",
                "/v1/admin/integration-catalog/button/install",
                Some(
                    json!({"name": "Button", "variant": "default", "delivery_mode": "server_side",
                    "config": {"application_id": "app-replicas1", "api_key": api_key}}),
                ),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    async fn send(&self, i: usize, path: &str, body: Value) {
        let (status, answer) = call(
            &self.http,
            "POST",
            &self.replica(i).url(path),
            Some(&self.ingest),
            Some(body),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    }

    /// Waits (up to [`PROPAGATION`]) until `check` holds on replica `i`; answers how
    /// long it took.
    async fn within_a_second<F, Fut>(&self, i: usize, what: &str, check: F) -> Duration
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = bool>,
    {
        let start = Instant::now();
        loop {
            if check(i).await {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < PROPAGATION,
                "replica {i}: {what} did not hold within {PROPAGATION:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn lane_state(&self, i: usize, id: &str) -> String {
        let stats = self
            .get(i, &format!("/v1/admin/integrations/{id}/stats"))
            .await;
        stats["lane"]["state"].as_str().unwrap().to_owned()
    }

    /// Stops every replica still running; asserts none logged a secret.
    fn stop(mut self) {
        let secrets = [&self.api_key, &self.admin, &self.ingest];
        for (i, process) in self.replicas.drain(..).enumerate() {
            let Some(process) = process else { continue };
            let (status, output) = process.stop();
            assert!(status.success(), "replica {i} stopped cleanly:\n{output}");
            for secret in secrets {
                assert!(
                    !output.contains(secret.as_str()),
                    "replica {i} logged a secret"
                );
            }
        }
    }
}

fn encryption_key() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
}

/// Order ids that reached Button (accepted, or 409 for an order it already has), with
/// how many times each arrived.
fn arrivals(fake: &FakeButton) -> HashMap<String, usize> {
    let mut arrivals = HashMap::new();
    for r in fake.received() {
        if r.status == 200 || r.status == 409 {
            let order = r.order_id().to_owned();
            *arrivals.entry(order).or_default() += 1;
        }
    }
    arrivals
}

/// Idle lanes never poll; on PostgreSQL one query per `delivery.poll_interval` finds
/// work no replica announced (another replica's, or a dead one's expired lease). Here
/// a delivered order is made due again behind the service's back, as the database
/// would show such work: only that sweep can find it, since its lane sleeps with
/// nothing due.
#[tokio::test]
async fn idle_lanes_find_work_no_replica_announced() {
    let Some(cluster) = Cluster::start(
        1,
        Config::default(),
        &[("BUTTON_DELIVERY__POLL_INTERVAL", "200ms")],
    )
    .await
    else {
        return;
    };
    let key = cluster.api_key.clone();
    cluster.install(0, &key).await;
    cluster.send(0, "/v1/events", purchase("sweep-1")).await;
    let arrived = |n: usize| {
        let fake = &cluster.fake;
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            while arrivals(fake).get("order-sweep-1").copied().unwrap_or(0) < n {
                assert!(
                    Instant::now() < deadline,
                    "arrival {n} of the order never came"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    arrived(1).await;
    // Its lane has nothing due now and sleeps.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let url = &cluster
        .env
        .iter()
        .find(|(k, _)| k == "BUTTON_DATABASE__URL")
        .expect("the cluster's database")
        .1;
    let db = sqlx::PgPool::connect(url).await.unwrap();
    let requeued = sqlx::query(
        "UPDATE deliveries SET state = 'pending', available_at = 0, lease_token = NULL",
    )
    .execute(&db)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(requeued, 1);
    db.close().await;
    let since = Instant::now();
    arrived(2).await;
    println!(
        "sweep test: unannounced work found and sent {} ms after it became due",
        since.elapsed().as_millis()
    );
    cluster.stop();
}

#[tokio::test]
async fn nothing_acknowledged_is_lost_when_one_of_three_replicas_is_killed() {
    let concurrency = CONCURRENCY.to_string();
    let Some(mut cluster) = Cluster::start(
        3,
        Config {
            latency: Duration::from_millis(200),
            ..Config::default()
        },
        &[("BUTTON_DELIVERY__LANE_CONCURRENCY", &concurrency)],
    )
    .await
    else {
        return;
    };
    let key = cluster.api_key.clone();
    let id = cluster.install(0, &key).await;
    // Ingest spread over all three: batches and single events.
    let mut acknowledged = Vec::new();
    for batch in 0..9 {
        let events: Vec<Value> = (0..40)
            .map(|i| purchase(&format!("kill-{batch}-{i}")))
            .collect();
        cluster
            .send(batch % 3, "/v1/events/batch", json!({"batch": events}))
            .await;
        acknowledged.extend((0..40).map(|i| format!("order-kill-{batch}-{i}")));
    }
    for i in 0..30 {
        cluster
            .send(i % 3, "/v1/events", purchase(&format!("kill-single-{i}")))
            .await;
        acknowledged.push(format!("order-kill-single-{i}"));
    }
    // The victim has attempts in flight (200 ms each) when it is killed.
    let deadline = Instant::now() + Duration::from_secs(10);
    let in_flight = loop {
        let stats = cluster
            .get(1, &format!("/v1/admin/integrations/{id}/stats"))
            .await;
        let in_flight = stats["lane"]["in_flight"].as_u64().unwrap();
        if in_flight > 0 {
            break in_flight;
        }
        assert!(
            Instant::now() < deadline,
            "replica 1 never had an attempt in flight"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    cluster.replicas[1].take().unwrap().kill();
    let before_kill = arrivals(&cluster.fake).len();
    assert!(
        before_kill < acknowledged.len(),
        "the kill came with work pending"
    );

    // The survivors deliver the rest, and the victim's leases once they expire (10 s).
    let deadline = Instant::now() + Duration::from_secs(60);
    let arrived = loop {
        let arrived = arrivals(&cluster.fake);
        if acknowledged.iter().all(|id| arrived.contains_key(id)) || Instant::now() > deadline {
            break arrived;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !arrived.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events never reached Button, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // Requests Button saw beyond one per event: the victim's attempts cut off by the
    // kill count too (the fake drops a request whose client went away, a real Button may
    // have processed it), and so do orders answered twice (Button says 409 to the second).
    let requests = cluster.fake.stats().total as usize;
    let sent_again = requests - acknowledged.len();
    let answered_twice = arrived.values().filter(|&&n| n > 1).count();
    println!(
        "replicas kill test: {} events acknowledged on 3 replicas, {before_kill} delivered before SIGKILL \
         (the victim had {in_flight} attempts in flight); all delivered after, in {requests} requests: \
         {sent_again} sent again, {answered_twice} answered twice",
        acknowledged.len()
    );
    // Only attempts the victim had sent but not yet recorded go again: at most its
    // lane's concurrency in flight, plus outcomes gathered for a commit (20 ms) at the kill.
    assert!(
        sent_again <= 2 * CONCURRENCY,
        "{sent_again} sent again: more than the victim can have had in flight"
    );
    cluster.stop();
}

#[tokio::test]
async fn a_retry_after_or_a_401_on_one_replica_holds_every_replica() {
    let Some(cluster) = Cluster::start(
        3,
        Config::default(),
        &[("BUTTON_DELIVERY__LANE_CONCURRENCY", "1")],
    )
    .await
    else {
        return;
    };
    let key = cluster.api_key.clone();
    let id = cluster.install(0, &key).await;
    let path = format!("/v1/integrations/{id}/events");

    // Retry-After: 2 s, answered to one replica.
    cluster.fake.add_rule(Rule::times(
        1,
        When::Any,
        Reply::status(429).retry_after("2"),
    ));
    cluster.send(0, &path, purchase("held-0")).await;
    cluster.fake.wait_for(1, Duration::from_secs(10)).await;
    let limited_at = SystemTime::now();
    for i in 0..3 {
        let took = cluster
            .within_a_second(i, "the Retry-After hold", |i| {
                let cluster = &cluster;
                let id = &id;
                async move { cluster.lane_state(i, id).await == "rate_limited" }
            })
            .await;
        println!("replica {i} held its lane {took:?} after the 429");
    }
    for i in 0..3 {
        cluster
            .send(i, &path, purchase(&format!("held-{}", i + 1)))
            .await;
    }
    let received = cluster.fake.wait_for(5, Duration::from_secs(10)).await;
    for r in &received[1..] {
        let after = r.at.duration_since(limited_at).unwrap_or_default();
        assert!(
            after >= Duration::from_millis(1900),
            "a request came {after:?} after the 429 asked for 2 s"
        );
    }

    // A 401 seen by one replica pauses them all; a new key given to another resumes.
    cluster.fake.set_api_keys(&[]);
    cluster.send(1, &path, purchase("auth-0")).await;
    let refused = cluster.fake.wait_for(6, Duration::from_secs(10)).await;
    assert_eq!(refused[5].status, 401);
    for i in 0..3 {
        let took = cluster
            .within_a_second(i, "the 401 pause", |i| {
                let cluster = &cluster;
                let id = &id;
                async move { cluster.lane_state(i, id).await == "auth_failed" }
            })
            .await;
        println!("replica {i} paused its lane {took:?} after the 401");
    }
    for i in 0..3 {
        cluster
            .send(i, &path, purchase(&format!("auth-{}", i + 1)))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let while_paused = cluster.fake.received().len();
    assert_eq!(
        while_paused, 6,
        "one refused attempt, then nothing on any replica while paused"
    );
    let good = random_secret("sk-rotated-");
    cluster.fake.set_api_keys(&[&good]);
    let (status, rotated) = cluster
        .admin(
            2,
            "PATCH",
            &format!("/v1/admin/integrations/{id}"),
            Some(json!({"config": {"api_key": good}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    for i in 0..3 {
        cluster
            .within_a_second(i, "the resume after the key rotation", |i| {
                let cluster = &cluster;
                let id = &id;
                async move { cluster.lane_state(i, id).await == "active" }
            })
            .await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while (0..4).any(|i| !arrivals(&cluster.fake).contains_key(&format!("order-auth-{i}"))) {
        assert!(
            Instant::now() < deadline,
            "the events that waited were delivered with the new key"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        cluster.fake.received()[while_paused..]
            .iter()
            .all(|r| r.api_key.as_deref() == Some(good.as_str())),
        "after the rotation every replica sends the new key"
    );
    cluster.stop();
}

#[tokio::test]
async fn admin_changes_and_the_live_tail_reach_every_replica() {
    let Some(mut cluster) = Cluster::start(3, Config::default(), &[]).await else {
        return;
    };
    let key = cluster.api_key.clone();
    let id = cluster.install(0, &key).await;
    let one = format!("/v1/admin/integrations/{id}");
    let mut slowest = Duration::ZERO;
    for i in [1, 2] {
        slowest = slowest.max(
            cluster
                .within_a_second(i, "the install", |i| {
                    let (cluster, one) = (&cluster, &one);
                    async move { cluster.admin(i, "GET", one, None).await.0 == StatusCode::OK }
                })
                .await,
        );
    }
    // A rename on replica 1 is read back on the others.
    let (status, _) = cluster
        .admin(1, "PATCH", &one, Some(json!({"name": "Button EU"})))
        .await;
    assert_eq!(status, StatusCode::OK);
    for i in [0, 2] {
        slowest = slowest.max(
            cluster
                .within_a_second(i, "the rename", |i| {
                    let (cluster, one) = (&cluster, &one);
                    async move { cluster.get(i, one).await["name"] == "Button EU" }
                })
                .await,
        );
    }
    // A new blueprint on replica 2 maps on the others.
    let blueprint = format!("{one}/blueprint");
    let mut custom = cluster.get(2, &blueprint).await;
    custom["mappings"][0]["events"]
        .as_array_mut()
        .unwrap()
        .push(json!("Checkout Done"));
    let (status, body) = cluster.admin(2, "PUT", &blueprint, Some(custom)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut aliased = purchase("alias-1");
    aliased["event"] = json!("Checkout Done");
    for i in [0, 1] {
        slowest = slowest.max(
            cluster
                .within_a_second(i, "the new blueprint", |i| {
                    let (cluster, one, aliased) = (&cluster, &one, &aliased);
                    async move {
                        let (_, preview) = cluster
                            .admin(i, "POST", &format!("{one}/preview"), Some(aliased.clone()))
                            .await;
                        preview["outcome"] == "request"
                    }
                })
                .await,
        );
    }
    // An operator pause on replica 0 stops every replica's lane; a resume on 1 restarts them.
    let (status, _) = cluster
        .admin(0, "POST", &format!("{one}/pause"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    for i in [1, 2] {
        slowest = slowest.max(
            cluster
                .within_a_second(i, "the pause", |i| {
                    let (cluster, id) = (&cluster, &id);
                    async move { cluster.lane_state(i, id).await == "paused" }
                })
                .await,
        );
    }
    for i in 0..3 {
        cluster
            .send(
                i,
                &format!("/v1/integrations/{id}/events"),
                purchase(&format!("paused-{i}")),
            )
            .await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        cluster.fake.received().len(),
        0,
        "nothing is sent while paused"
    );
    // Every replica's live tail shows every replica's attempts.
    let stream = format!("{one}/logs/stream?outcome=delivered");
    let mut tails = Vec::new();
    for i in 0..3 {
        tails.push(
            open_tail(
                &cluster.http,
                &cluster.replica(i).url(&stream),
                &cluster.admin,
            )
            .await,
        );
    }
    let (status, _) = cluster
        .admin(1, "POST", &format!("{one}/resume"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    for i in 0..3 {
        for n in 0..3 {
            cluster
                .send(i, "/v1/events", purchase(&format!("tail-{i}-{n}")))
                .await;
        }
    }
    for (i, tail) in tails.iter_mut().enumerate() {
        let frames = read_sse(tail, Duration::from_secs(10), |f| f.len() >= 12).await;
        let mut seen: Vec<&str> = frames
            .iter()
            .map(|(_, e)| e["message_id"].as_str().unwrap())
            .collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(
            seen.len(),
            12,
            "replica {i}'s tail shows every delivery: {seen:?}"
        );
    }
    // A source created on replica 0 is known to the others; its token rotated on
    // replica 1 stops working on all of them.
    let (status, created) = cluster
        .admin(
            0,
            "POST",
            "/v1/admin/sources",
            Some(json!({"name": "Web", "integrations": [id]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let source = created["id"].as_str().unwrap().to_owned();
    let token = created["token"].as_str().unwrap().to_owned();
    let authorized = |i: usize, token: String| {
        let cluster = &cluster;
        async move {
            let (status, _) = call(
                &cluster.http,
                "POST",
                &cluster.replica(i).url("/v1/events"),
                Some(&token),
                Some(purchase("source-probe")),
            )
            .await;
            status != StatusCode::UNAUTHORIZED
        }
    };
    for i in [1, 2] {
        slowest = slowest.max(
            cluster
                .within_a_second(i, "the new source", |i| authorized(i, token.clone()))
                .await,
        );
    }
    let (status, _) = cluster
        .admin(
            1,
            "POST",
            &format!("/v1/admin/sources/{source}/rotate-token"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for i in [0, 2] {
        slowest = slowest.max(
            cluster
                .within_a_second(i, "the rotated token", |i| {
                    let authorized = &authorized;
                    let token = token.clone();
                    async move { !authorized(i, token).await }
                })
                .await,
        );
    }
    println!("replicas: admin changes reached the other replicas within {slowest:?} at most");

    // A replica whose encryption key cannot open the stored api_key refuses to start.
    let wrong = cluster.spawn(&[("BUTTON_AUTH__ENCRYPTION_KEY", &encryption_key())]);
    let (status, output) = wrong.wait_exit(Duration::from_secs(10));
    assert!(!status.success(), "{output}");
    assert!(
        output.contains("auth.encryption_key cannot open"),
        "{output}"
    );
    // Deleting on one replica removes it everywhere.
    let (status, _) = cluster
        .admin(2, "DELETE", &format!("{one}?force=true"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for i in [0, 1] {
        cluster
            .within_a_second(i, "the delete", |i| {
                let (cluster, one) = (&cluster, &one);
                async move { cluster.admin(i, "GET", one, None).await.0 == StatusCode::NOT_FOUND }
            })
            .await;
    }
    cluster.stop();
}

#[tokio::test]
async fn migrate_runs_apart_and_a_replica_refuses_an_unmigrated_or_later_database() {
    let Some(server) = crate::helpers::postgres_server() else {
        eprintln!("migrations of a PostgreSQL database need BUTTON_TEST_POSTGRES_URL");
        return;
    };
    let url = crate::helpers::fresh_postgres_database(&server).await;
    let dir = tempfile::tempdir().unwrap();
    let env = |extra: &[(&str, &str)]| {
        let mut env = vec![
            ("BUTTON_DATABASE__URL".to_owned(), url.clone()),
            (
                "BUTTON_SERVER__DATA_DIR".to_owned(),
                dir.path().display().to_string(),
            ),
            ("BUTTON_AUTH__ENCRYPTION_KEY".to_owned(), encryption_key()),
            (
                "BUTTON_AUTH__ADMIN_TOKENS".to_owned(),
                random_secret("admin-"),
            ),
            (
                "BUTTON_AUTH__INGEST_TOKENS".to_owned(),
                random_secret("ingest-"),
            ),
        ];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        env
    };
    // Told not to migrate, a replica refuses the empty database and says what to run.
    let refused = Process::start(&env(&[("BUTTON_DATABASE__MIGRATE_ON_START", "false")]));
    let (status, output) = refused.wait_exit(Duration::from_secs(10));
    assert!(!status.success(), "{output}");
    assert!(output.contains("button-delivery migrate"), "{output}");
    // `button-delivery migrate` applies them, once.
    let migrate = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_button-delivery"))
            .arg("migrate")
            .env_clear()
            .envs(env(&[]))
            .output()
            .unwrap()
    };
    let first = migrate();
    assert!(first.status.success(), "{first:?}");
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count();
    assert!(
        String::from_utf8_lossy(&first.stdout).contains(&format!("{migrations} applied")),
        "{first:?}"
    );
    let again = migrate();
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("0 applied"),
        "{again:?}"
    );
    // Now it starts.
    let started = Process::start(&env(&[("BUTTON_DATABASE__MIGRATE_ON_START", "false")]));
    started.wait_ready().await;
    let (status, output) = started.stop();
    assert!(status.success(), "{output}");

    // A database a later release has used (a migration this one does not know, such as
    // a change of the stored format) is refused either way, not misread.
    use sqlx::Connection;
    let mut db = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'a later release', true, '\\x00', 0)",
    )
    .execute(&mut db)
    .await
    .unwrap();
    for migrate_on_start in ["false", "true"] {
        let refused = Process::start(&env(&[(
            "BUTTON_DATABASE__MIGRATE_ON_START",
            migrate_on_start,
        )]));
        let (status, output) = refused.wait_exit(Duration::from_secs(10));
        assert!(
            !status.success(),
            "migrate_on_start={migrate_on_start}: {output}"
        );
        assert!(
            output.contains("9999"),
            "migrate_on_start={migrate_on_start}: {output}"
        );
    }
}
