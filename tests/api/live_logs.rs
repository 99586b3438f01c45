//! Live Logs: entries, filters and pagination, the SSE live tail, and retention.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, add_to_cart, purchase};
use fake_button::{Reply, Rule, When};

const WAIT: Duration = Duration::from_secs(10);

/// Reads SSE frames from a live-tail response until `done` says so or time runs out.
pub async fn read_sse(
    response: &mut reqwest::Response,
    timeout: Duration,
    done: impl Fn(&[(String, Value)]) -> bool,
) -> Vec<(String, Value)> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buffer = String::new();
    let mut frames = Vec::new();
    while !done(&frames) {
        let chunk = match tokio::time::timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(chunk))) => chunk,
            _ => break,
        };
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let mut event = String::new();
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = e.trim().to_owned();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            if !event.is_empty() {
                frames.push((event, serde_json::from_str(&data).unwrap_or(Value::Null)));
            }
        }
    }
    frames
}

async fn open_stream(app: &TestApp, id: &str, query: &str) -> reqwest::Response {
    let url = app.url(&format!("/v1/admin/integrations/{id}/logs/stream?{query}"));
    open_tail(&app.http, &url, &app.admin_token).await
}

/// Opens a live tail (`.../logs/stream`) at `url`, checking that it is one.
pub async fn open_tail(http: &reqwest::Client, url: &str, token: &str) -> reqwest::Response {
    let response = http.get(url).bearer_auth(token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    response
}

#[tokio::test]
async fn the_live_tail_streams_new_entries_with_its_filters() {
    let app = TestApp::spawn().await;
    let id = app.install().await;
    let mut everything = open_stream(&app, &id, "").await;
    let mut delivered_only = open_stream(&app, &id, "outcome=delivered").await;
    let mut broken = purchase("sse-bad");
    broken["properties"]
        .as_object_mut()
        .unwrap()
        .remove("products");
    app.send_batch(vec![broken, purchase("sse-good")]).await;

    let frames = read_sse(&mut everything, WAIT, |f| f.len() >= 2).await;
    let outcomes: Vec<&str> = frames
        .iter()
        .map(|(_, e)| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["mapping_failed", "delivered"], "{frames:#?}");
    assert!(frames.iter().all(|(kind, _)| kind == "log"));
    let delivered = &frames[1].1;
    assert_eq!(delivered["message_id"], "sse-good");
    assert_eq!(delivered["status"], "200 OK");
    assert_eq!(
        delivered["request"]["headers"]["authorization"],
        "Basic ***"
    );

    let frames = read_sse(&mut delivered_only, Duration::from_millis(800), |_| false).await;
    assert_eq!(frames.len(), 1, "{frames:#?}");
    assert_eq!(frames[0].1["message_id"], "sse-good");
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_is_told_what_it_missed() {
    let app = TestApp::spawn_with(&[("BUTTON_LIVE_LOGS__STREAM_BUFFER", "2")]).await;
    let id = app.install().await;
    let mut stream = open_stream(&app, &id, "").await;
    // Forty mapping failures are published in one go, faster than the stream drains.
    let events: Vec<Value> = (0..40)
        .map(|i| {
            let mut e = purchase(&format!("lag-{i}"));
            e["properties"].as_object_mut().unwrap().remove("order_id");
            e
        })
        .collect();
    let (status, _) = app.send_batch(events).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let frames = read_sse(&mut stream, Duration::from_secs(3), |f| {
        f.iter().any(|(k, _)| k == "missed")
    })
    .await;
    let missed = frames
        .iter()
        .find(|(k, _)| k == "missed")
        .expect("a missed notice");
    let n = missed.1["missed"].as_u64().unwrap();
    let logs = frames.iter().filter(|(k, _)| k == "log").count() as u64;
    assert!(n > 0 && logs < 40, "missed {n}, got {logs}");
    // Delivery never waited on the subscriber: all forty are in the store.
    assert_eq!(app.logs(&id, "outcome=mapping_failed").await.len(), 40);
}

#[tokio::test]
async fn logs_page_newest_first_and_filter() {
    let app = TestApp::spawn().await;
    let id = app.install().await;
    let mut broken = purchase("f-bad");
    broken["properties"]
        .as_object_mut()
        .unwrap()
        .remove("order_id");
    let mut events = vec![
        purchase("f-1"),
        purchase("f-2"),
        purchase("f-3"),
        broken,
        add_to_cart("f-4"),
        add_to_cart("f-5"),
    ];
    events.rotate_left(0);
    app.send_batch(events).await;
    app.wait_logs(&id, "outcome=delivered", 5, WAIT).await;

    let mut ids = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = app
            .get(&format!("/v1/admin/integrations/{id}/logs?limit=2{cursor}"))
            .await;
        for e in page["data"].as_array().unwrap() {
            ids.push(e["id"].as_str().unwrap().to_owned());
        }
        if page["has_more"] == false {
            break;
        }
        cursor = format!("&cursor={}", page["next_cursor"].as_str().unwrap());
    }
    assert_eq!(ids.len(), 6);
    let mut sorted = ids.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "newest first, each once");

    assert_eq!(app.logs(&id, "outcome=mapping_failed").await.len(), 1);
    assert_eq!(app.logs(&id, "event=add_to_cart").await.len(), 2);
    assert_eq!(app.logs(&id, "message_id=f-2").await.len(), 1);
    assert_eq!(
        app.logs(&id, "outcome=delivered&event=purchase")
            .await
            .len(),
        3
    );
    let future = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let past = (time::OffsetDateTime::now_utc() - time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    assert!(
        app.logs(&id, &format!("since={}", urlencode(&future)))
            .await
            .is_empty()
    );
    assert_eq!(
        app.logs(&id, &format!("since={}", urlencode(&past)))
            .await
            .len(),
        6
    );
    assert!(
        app.logs(&id, &format!("until={}", urlencode(&past)))
            .await
            .is_empty()
    );
    assert_eq!(
        app.logs(&id, &format!("until={}", urlencode(&future)))
            .await
            .len(),
        6
    );

    for (query, field) in [
        ("outcome=lost", "outcome"),
        ("since=yesterday", "since"),
        ("test=maybe", "test"),
        ("limit=1000", "limit"),
    ] {
        let (status, body) = app
            .admin(
                "GET",
                &format!("/v1/admin/integrations/{id}/logs?{query}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(
            body["error"]["details"][0]["field"], field,
            "{query}: {body}"
        );
    }
    let (status, _) = app
        .admin("GET", "/v1/admin/integrations/int_nope/logs", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn one_entry_shows_the_event_the_request_and_the_answer() {
    let app = TestApp::spawn().await;
    let id = app.install().await;
    let event = purchase("one-1");
    app.send_event(event.clone()).await;
    let entries = app.wait_logs(&id, "outcome=delivered", 1, WAIT).await;
    let entry = app
        .get(&format!(
            "/v1/admin/integrations/{id}/logs/{}",
            entries[0]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(entry["event"], event, "the event as received");
    assert_eq!(entry["integration_id"], id);
    assert_eq!(entry["call"], "order.create");
    assert_eq!(entry["event_name"], "purchase");
    assert_eq!(entry["request"]["method"], "POST");
    assert_eq!(entry["request"]["headers"]["authorization"], "Basic ***");
    assert_eq!(entry["request"]["body"]["order_id"], "order-one-1");
    assert_eq!(
        entry["response"]["headers"]["content-type"],
        "application/json"
    );
    assert_eq!(entry["response"]["truncated"], false);
    assert!(entry["delivery_id"].as_str().unwrap().starts_with("dlv_"));
    let (status, body) = app
        .admin(
            "GET",
            &format!("/v1/admin/integrations/{id}/logs/log_01jzzzzzzzzzzzzzzzzzzzzzzz"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn retention_keeps_only_the_newest_entries() {
    let app = TestApp::spawn_with(&[
        ("BUTTON_LIVE_LOGS__MAX_ENTRIES_PER_INTEGRATION", "5"),
        ("BUTTON_LIVE_LOGS__PRUNE_INTERVAL", "200ms"),
    ])
    .await;
    let id = app.install().await;
    for i in 0..12 {
        app.send_event(purchase(&format!("ret-{i:02}"))).await;
    }
    app.fake.wait_for(12, WAIT).await;
    // Every outcome recorded (12 entries went in) before counting what pruning kept.
    app.settled(&id).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut logs = app.logs(&id, "").await;
    while logs.len() != 5 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        logs = app.logs(&id, "").await;
    }
    let kept: Vec<&str> = logs
        .iter()
        .map(|e| e["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(kept, ["ret-11", "ret-10", "ret-09", "ret-08", "ret-07"]);
    // Lifetime counts are not pruned.
    let stats = app.get(&format!("/v1/admin/integrations/{id}/stats")).await;
    assert_eq!(stats["outcomes"]["delivered"], 12);
}

#[tokio::test]
async fn retention_drops_entries_events_and_finished_deliveries_past_their_age() {
    let app = TestApp::spawn_with(&[
        ("BUTTON_LIVE_LOGS__MAX_AGE", "1s"),
        ("BUTTON_LIVE_LOGS__PRUNE_INTERVAL", "200ms"),
    ])
    .await;
    let id = app.install().await;
    app.send_batch((0..3).map(|i| purchase(&format!("old-{i}"))).collect())
        .await;
    app.wait_logs(&id, "outcome=delivered", 3, WAIT).await;
    // Everything ages past max_age (1 s); the pruner, every 200 ms, removes the
    // entries, then the finished deliveries, then the events.
    let deadline = tokio::time::Instant::now() + WAIT;
    for table in ["live_logs", "deliveries", "events"] {
        loop {
            let n = app.count_rows(table).await;
            if n == 0 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{table}: {n} rows past max_age are still there"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(
        app.logs(&id, "").await.is_empty(),
        "entries older than max_age are gone"
    );
    let stats = app.get(&format!("/v1/admin/integrations/{id}/stats")).await;
    assert_eq!(stats["outcomes"]["delivered"], 3);
}

/// Dead letters have an age of their own (`dead_letter_max_age`): past it they go,
/// while the events and entries that tell their story stay for `max_age`.
#[tokio::test]
async fn retention_drops_dead_letters_past_their_own_age() {
    let app = TestApp::spawn_with(&[
        ("BUTTON_LIVE_LOGS__DEAD_LETTER_MAX_AGE", "1s"),
        ("BUTTON_LIVE_LOGS__PRUNE_INTERVAL", "200ms"),
    ])
    .await;
    let id = app.install().await;
    app.fake
        .add_rule(Rule::always(When::Any, Reply::status(500)));
    app.send_batch(vec![purchase("dead-old-1"), purchase("dead-old-2")])
        .await;
    app.wait_logs(&id, "outcome=dead_lettered", 2, WAIT).await;
    let letters = format!("/v1/admin/integrations/{id}/dead-letters");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = app.get(&letters).await["data"].as_array().unwrap().len();
        if left == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{left} dead letters past dead_letter_max_age are still listed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.count_rows("deliveries").await, 0);
    assert_eq!(app.count_rows("events").await, 2, "events stay for max_age");
    assert_eq!(
        app.logs(&id, "outcome=dead_lettered").await.len(),
        2,
        "entries stay for max_age"
    );
}

/// A page of integrations' stats in one call (the console's list of integrations):
/// the list's order, cursor and limits, each integration's figures as its own
/// `/stats` gives them.
#[tokio::test]
async fn every_integrations_stats_come_a_page_at_a_time() {
    let app = TestApp::spawn().await;
    let first = app.install().await;
    let paused = app.install_another("app-second").await;
    let third = app.install_another("app-third").await;
    let (status, body) = app
        .admin(
            "POST",
            &format!("/v1/admin/integrations/{paused}/pause"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    app.send_batch(vec![purchase("page-1"), purchase("page-2")])
        .await;
    for id in [&first, &third] {
        app.wait_logs(id, "outcome=delivered", 2, WAIT).await;
        app.settled(id).await;
    }

    let page = app.get("/v1/admin/integrations/stats?limit=2").await;
    let listed = app.get("/v1/admin/integrations?limit=2").await;
    let ids: Vec<&Value> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["integration_id"])
        .collect();
    assert_eq!(
        ids,
        [&Value::from(first.as_str()), &Value::from(paused.as_str())],
        "{page}"
    );
    assert_eq!(page["has_more"], true, "{page}");
    assert_eq!(page["next_cursor"], listed["next_cursor"], "{page}");
    for (stats, id) in page["data"]
        .as_array()
        .unwrap()
        .iter()
        .zip([&first, &paused])
    {
        let own = app.get(&format!("/v1/admin/integrations/{id}/stats")).await;
        for field in ["lane", "outcomes"] {
            assert_eq!(stats[field], own[field], "{field} of {id}");
        }
        // The oldest pending age moves between the two calls.
        for field in ["depth", "dead_letters"] {
            assert_eq!(
                stats["queue"][field], own["queue"][field],
                "{field} of {id}"
            );
        }
        assert_eq!(
            stats["last_hour"]["outcomes"], own["last_hour"]["outcomes"],
            "{id}"
        );
    }
    assert_eq!(page["data"][0]["outcomes"]["delivered"], 2, "{page}");
    assert_eq!(page["data"][1]["lane"]["state"], "paused", "{page}");
    assert_eq!(page["data"][1]["queue"]["depth"], 2, "{page}");

    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = app
        .get(&format!(
            "/v1/admin/integrations/stats?limit=2&cursor={cursor}"
        ))
        .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 1, "{rest}");
    assert_eq!(rest["data"][0]["integration_id"], third.as_str(), "{rest}");
    assert_eq!(rest["data"][0]["outcomes"]["delivered"], 2, "{rest}");
    assert_eq!(rest["has_more"], false, "{rest}");
    assert!(rest["next_cursor"].is_null(), "{rest}");

    let (status, body) = app
        .admin("GET", "/v1/admin/integrations/stats?limit=101", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_parameter", "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("limit"),
        "{body}"
    );
}

/// The figures the console draws: the last hour's entries by outcome, in twelve
/// five-minute windows aligned to the clock, the current one last.
#[tokio::test]
async fn stats_count_the_last_hours_entries_by_outcome_in_five_minute_windows() {
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;
    let parse = |v: &Value| OffsetDateTime::parse(v.as_str().unwrap(), &Rfc3339).unwrap();

    let app = TestApp::spawn().await;
    let id = app.install().await;
    let mut refused = purchase("hour-3");
    refused["context"] = serde_json::json!({"consent": {"canonical": {"marketing": false}}});
    app.send_batch(vec![purchase("hour-1"), purchase("hour-2"), refused])
        .await;
    app.wait_logs(&id, "outcome=delivered", 2, WAIT).await;
    app.settled(&id).await;

    let stats = app.get(&format!("/v1/admin/integrations/{id}/stats")).await;
    let hour = &stats["last_hour"];
    assert_eq!(hour["window_seconds"], 300, "{hour}");
    assert_eq!(hour["outcomes"]["delivered"], 2, "{hour}");
    assert_eq!(hour["outcomes"]["filtered"], 1, "{hour}");
    assert_eq!(
        hour["outcomes"]["failed"], 0,
        "every outcome is listed: {hour}"
    );
    let windows = hour["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 12, "{hour}");
    assert_eq!(hour["since"], windows[0]["start"]);
    for pair in windows.windows(2) {
        assert_eq!(
            (parse(&pair[1]["start"]) - parse(&pair[0]["start"])).whole_seconds(),
            300,
            "{hour}"
        );
    }
    let last = parse(&windows[11]["start"]);
    let now = OffsetDateTime::now_utc();
    assert!(
        last <= now && now - last < time::Duration::seconds(300),
        "the last window is the current one: {last} at {now}"
    );
    assert_eq!(last.unix_timestamp() % 300, 0, "aligned to the clock");
    // The windows add up to the totals; an outcome without entries is left out of a window.
    for outcome in ["delivered", "filtered"] {
        let sum: i64 = windows
            .iter()
            .map(|w| w["outcomes"][outcome].as_i64().unwrap_or(0))
            .sum();
        assert_eq!(
            sum,
            hour["outcomes"][outcome].as_i64().unwrap(),
            "{outcome}: {hour}"
        );
    }
    assert!(
        windows
            .iter()
            .all(|w| w["outcomes"].get("failed").is_none())
    );
}
