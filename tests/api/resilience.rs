//! What the service does when its world fails or a client pushes: a full disk, a lost
//! PostgreSQL connection, a flood past the commit queue's bound, and connections that
//! idle, trickle their heads, or send heads over the limits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{TestApp, call, on_postgres, postgres_server, product_view};

/// A product view padded to about `bytes`.
fn padded_view(message_id: &str, bytes: usize) -> Value {
    let mut event = product_view(message_id);
    event["properties"]["description"] = json!("x".repeat(bytes));
    event
}

/// Polls `GET /readyz` until it answers `want` (or 15 s pass); answers the last status.
async fn readiness_becomes(app: &TestApp, want: StatusCode) -> StatusCode {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _) = app.request("GET", "/readyz", None, None).await;
        if status == want || Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A tmpfs mounted for one test (unmounted when dropped).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status();
        match status {
            Ok(s) if s.success() => Some(Self { dir }),
            _ if std::env::var_os("BUTTON_TEST_SKIP_FULL_DISK").is_some() => None,
            _ => panic!(
                "this test mounts a small tmpfs to fill it (root or CAP_SYS_ADMIN); where that \
                 cannot be, set BUTTON_TEST_SKIP_FULL_DISK=1 to skip it"
            ),
        }
    }

    fn resize(&self, size: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "remount {size}");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_answers_503_and_the_service_recovers_when_space_returns() {
    if on_postgres() {
        return; // the embedded store's disk; PostgreSQL's connection has its own test
    }
    let Some(disk) = Tmpfs::mount("3m") else {
        return;
    };
    let data_dir = disk.dir.path().display().to_string();
    let app = TestApp::spawn_with(&[("BUTTON_SERVER__DATA_DIR", &data_dir)]).await;
    let id = app.install().await;
    let (status, _) = app
        .admin("POST", &format!("/v1/admin/integrations/{id}/pause"), None)
        .await;
    assert_eq!(status, StatusCode::OK);

    // Fill the disk with accepted events until the store refuses.
    let mut accepted = 0;
    let refusal = loop {
        assert!(accepted < 5_000, "3 MB never filled up");
        let (status, body) = app
            .send_event(padded_view(&format!("fill-{accepted}"), 3_000))
            .await;
        match status {
            StatusCode::ACCEPTED => accepted += 1,
            StatusCode::SERVICE_UNAVAILABLE => break body,
            other => panic!("{other}: {body}"),
        }
    };
    assert!(accepted > 50, "only {accepted} events fit");
    assert_eq!(refusal["error"]["code"], "unavailable", "{refusal}");
    let response = app
        .http
        .post(app.url("/v1/events"))
        .bearer_auth(&app.ingest_token)
        .json(&padded_view("while-full", 3_000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(
        readiness_becomes(&app, StatusCode::SERVICE_UNAVAILABLE).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "/readyz tells the store cannot commit"
    );

    // Space comes back: the same process takes writes again, without a restart.
    disk.resize("64m");
    assert_eq!(
        readiness_becomes(&app, StatusCode::OK).await,
        StatusCode::OK,
        "/readyz recovers with the disk"
    );
    let (status, body) = app.send_event(padded_view("after", 3_000)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = app
        .admin("POST", &format!("/v1/admin/integrations/{id}/resume"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "admin writes work again: {body}");

    // Everything acknowledged is there, once each, and is delivered.
    let delivered = app
        .wait_logs(
            &id,
            "outcome=delivered&limit=100",
            (accepted + 1).min(100),
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(delivered.len(), (accepted + 1).min(100));
    app.settled(&id).await;
    let url = format!("sqlite://{data_dir}/button-delivery.db?mode=ro");
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let (events, pending): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM events), \
                (SELECT COUNT(*) FROM deliveries WHERE state NOT IN ('delivered'))",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    assert_eq!(events, accepted as i64 + 1, "every 202 was kept, once");
    assert_eq!(pending, 0, "and delivered");
}

/// A TCP proxy between the service and PostgreSQL that a test can cut.
struct Proxy {
    addr: std::net::SocketAddr,
    refusing: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let refusing = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (r, l) = (refusing.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if r.load(Ordering::SeqCst) {
                    continue; // dropped: the database is gone
                }
                let upstream = upstream.clone();
                let link = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                l.lock().unwrap().push(link.abort_handle());
            }
        });
        Self {
            addr,
            refusing,
            links,
        }
    }

    /// Drops every connection and refuses new ones, as a database that went away.
    fn cut(&self) {
        self.refusing.store(true, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.refusing.store(false, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_lost_postgres_connection_answers_503_and_the_service_recovers() {
    let Some(server) = postgres_server() else {
        return; // PostgreSQL's connection; the embedded store's disk has its own test
    };
    let database = crate::helpers::fresh_postgres_database(&server).await;
    let mut url = url::Url::parse(&database).unwrap();
    let upstream = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
    let proxy = Proxy::start(upstream).await;
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(proxy.addr.port())).unwrap();
    let app = TestApp::spawn_with(&[
        ("BUTTON_DATABASE__URL", url.as_str()),
        ("BUTTON_DATABASE__BUSY_TIMEOUT", "1s"),
    ])
    .await;
    let id = app.install().await;
    let (status, _) = app.send_event(product_view("before")).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    proxy.cut();
    let started = Instant::now();
    let response = app
        .http
        .post(app.url("/v1/events"))
        .bearer_auth(&app.ingest_token)
        .json(&product_view("while-gone"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered in {:?}",
        started.elapsed()
    );
    assert_eq!(
        readiness_becomes(&app, StatusCode::SERVICE_UNAVAILABLE).await,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // The database is back (as after a restart): new connections, no restart of ours.
    proxy.restore();
    assert_eq!(
        readiness_becomes(&app, StatusCode::OK).await,
        StatusCode::OK
    );
    let (status, body) = app.send_event(product_view("after")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let delivered = app
        .wait_logs(&id, "outcome=delivered", 2, Duration::from_secs(20))
        .await;
    let mut ids: Vec<&str> = delivered
        .iter()
        .map(|e| e["message_id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["after", "before"]);
    assert_eq!(
        app.count_rows("events").await,
        2,
        "the refused one is not kept"
    );
}

#[tokio::test]
async fn ingest_past_the_commit_queue_bound_is_shed_at_once_with_503() {
    let app = TestApp::spawn_with(&[
        ("BUTTON_DATABASE__MAX_QUEUED_EVENTS", "2"),
        ("BUTTON_DATABASE__BUSY_TIMEOUT", "20s"),
    ])
    .await;
    let _id = app.install().await;
    // Another process holds the database: commits wait, and the queue fills.
    let lock = app.lock_store().await;
    let waiting: Vec<_> = (0..2)
        .map(|i| {
            let (http, url, token) = (
                app.http.clone(),
                app.url("/v1/events"),
                app.ingest_token.clone(),
            );
            tokio::spawn(async move {
                call(
                    &http,
                    "POST",
                    &url,
                    Some(&token),
                    Some(product_view(&format!("queued-{i}"))),
                )
                .await
            })
        })
        .collect();
    // Both are queued (on a local socket, within milliseconds); a third is refused.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let response = app
        .http
        .post(app.url("/v1/events"))
        .bearer_auth(&app.ingest_token)
        .json(&product_view("shed"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("answered at once, not queued");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "shed at once, not after waiting"
    );
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("2 events"), "{message}");

    lock.release().await;
    for request in waiting {
        let (status, body) = request.await.unwrap();
        assert_eq!(status, StatusCode::ACCEPTED, "queued work commits: {body}");
    }
    let (status, _) = app.send_event(product_view("after")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "the queue drained");
}

/// Reads until the server closes the connection; answers what came and when it closed.
async fn read_to_close(stream: &mut TcpStream, within: Duration) -> Option<(Vec<u8>, Instant)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some((got, Instant::now())),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_connection_must_send_its_head_in_time_and_may_idle_only_so_long() {
    let app = TestApp::spawn_with(&[
        ("BUTTON_SERVER__HEADER_READ_TIMEOUT", "400ms"),
        ("BUTTON_SERVER__IDLE_TIMEOUT", "800ms"),
    ])
    .await;
    // A head that never ends is cut at the header timeout.
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    let opened = Instant::now();
    slow.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (_, closed) = read_to_close(&mut slow, Duration::from_secs(5))
        .await
        .expect("a trickling head is closed");
    let took = closed - opened;
    assert!(
        took >= Duration::from_millis(350) && took < Duration::from_secs(2),
        "{took:?}"
    );

    // A kept-alive connection that answers in time stays, then idles out.
    let mut kept = TcpStream::connect(app.addr).await.unwrap();
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    for _ in 0..4 {
        kept.write_all(request).await.unwrap();
        let mut buf = [0u8; 1024];
        let n = kept.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "served while in use");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let idle_from = Instant::now();
    let (_, closed) = read_to_close(&mut kept, Duration::from_secs(5))
        .await
        .expect("an idle connection is closed");
    let idled = closed - idle_from;
    assert!(
        idled >= Duration::from_millis(400) && idled < Duration::from_secs(2),
        "{idled:?}"
    );
}

#[tokio::test]
async fn a_body_that_arrives_too_slowly_is_answered_408() {
    let app = TestApp::spawn_with(&[("BUTTON_SERVER__BODY_READ_TIMEOUT", "500ms")]).await;
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    let sent = Instant::now();
    slow.write_all(
        format!(
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"type\":",
            app.ingest_token
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") || !answer.ends_with(b"}") {
        let n = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf))
            .await
            .expect("answered within 5 s")
            .unwrap();
        assert!(n > 0, "closed without an answer");
        answer.extend_from_slice(&buf[..n]);
    }
    let took = sent.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    let body: Value = serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["error"]["code"], "request_timeout", "{body}");
    // A body sent in time is taken as ever.
    let (status, _) = app.send_event(product_view("in-time")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn at_the_connection_cap_idle_connections_make_room_for_real_requests() {
    let app = TestApp::spawn_with(&[("BUTTON_SERVER__MAX_CONNECTIONS", "20")]).await;
    let mut hogs = Vec::new();
    for _ in 0..60 {
        let mut hog = TcpStream::connect(app.addr).await.unwrap();
        hog.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        hogs.push(hog);
    }
    for _ in 0..10 {
        let started = Instant::now();
        let (status, _) = app.request("GET", "/healthz", None, None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    let mut still_open = 0;
    for hog in &mut hogs {
        if read_to_close(hog, Duration::from_millis(20))
            .await
            .is_none()
        {
            still_open += 1;
        }
    }
    assert!(
        still_open <= 20,
        "{still_open} idle connections held past the cap"
    );
}

#[tokio::test]
async fn heads_over_the_limits_get_signals_error_body() {
    let app = TestApp::spawn().await;
    // A request target over 64 KiB, over a raw socket; and a request the HTTP library
    // cannot read at all.
    for (head, status, code) in [
        (
            format!(
                "GET /v1/admin/integrations?q={} HTTP/1.1\r\nHost: x\r\n\r\n",
                "a".repeat(70_000)
            ),
            "431",
            "headers_too_large",
        ),
        (
            "GET / HTTP/1.1\r\nBad Header\r\n\r\n".to_owned(),
            "400",
            "bad_request",
        ),
    ] {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        let _ = stream.write_all(head.as_bytes()).await;
        let (answer, _) = read_to_close(&mut stream, Duration::from_secs(5))
            .await
            .expect("closed after answering");
        let answer = String::from_utf8(answer).unwrap();
        let (status_line, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(
            status_line.starts_with(&format!("HTTP/1.1 {status} ")),
            "{answer}"
        );
        let body: Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"]["code"], code, "{body}");
    }

    // Too many header fields, or too many bytes of them: 431, to a real client.
    let mut many = reqwest::header::HeaderMap::new();
    for i in 0..150 {
        many.insert(
            reqwest::header::HeaderName::from_bytes(format!("x-h{i}").as_bytes()).unwrap(),
            "v".parse().unwrap(),
        );
    }
    let big = "b".repeat(80_000);
    for request in [
        app.http.get(app.url("/healthz")).headers(many),
        app.http.get(app.url("/healthz")).header("x-big", &big),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "headers_too_large", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("65536 bytes or 100 header fields"),
            "{body}"
        );
    }
    // The service's own 400s are left as they are, and it goes on serving.
    let (status, body) = app
        .request(
            "GET",
            "/v1/admin/integrations?limit=0",
            Some(&app.admin_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_ne!(body["error"]["code"], "bad_request", "{body}");
    let (status, _) = app.request("GET", "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
}
