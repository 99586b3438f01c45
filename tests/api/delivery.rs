//! The durable pipeline against the real server and a fake Button whose behaviour
//! changes mid-test: ingest, routing, retries, Retry-After, terminal failures, the 401
//! pause, dead letters, graceful and crash restarts, a store that refuses writes.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use fake_button::{Kind, Reply, Rule, When};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, add_to_cart, product_view, purchase, random_secret};
use crate::mapping::golden_fixtures;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn each_event_type_is_delivered_with_the_exact_expected_body() {
    let app = TestApp::spawn().await;
    let id = app.install().await;
    let goldens: Vec<_> = golden_fixtures()
        .into_iter()
        .filter(|g| g.expected["outcome"] == "request")
        .collect();
    let events: Vec<Value> = goldens.iter().map(|g| g.event.clone()).collect();
    let (status, summary) = app.send_batch(events).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{summary}");
    assert_eq!(summary["accepted"], goldens.len());
    assert_eq!(summary["deliveries_queued"], goldens.len());

    let received = app.fake.wait_for(goldens.len(), WAIT).await;
    assert_eq!(
        received.len(),
        goldens.len(),
        "every event reached Button once"
    );
    for golden in &goldens {
        let matching: Vec<_> = received
            .iter()
            .filter(|r| r.json.as_ref() == Some(&golden.expected["body"]))
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "{}: its exact body arrived once",
            golden.name
        );
        let r = matching[0];
        assert_eq!(r.status, 200, "{}", golden.name);
        match golden.expected["url"].as_str().unwrap() {
            "orders" => {
                assert_eq!(r.kind, Kind::Order);
                assert_eq!(r.api_key.as_deref(), Some(app.api_key.as_str()));
            }
            _ => {
                assert_eq!(r.kind, Kind::Activity);
                assert!(r.headers.get("authorization").is_none());
            }
        }
    }
    let delivered = app
        .wait_logs(&id, "outcome=delivered", goldens.len(), WAIT)
        .await;
    assert_eq!(delivered.len(), goldens.len());
    for entry in &delivered {
        assert_eq!(entry["status"], "200 OK");
        assert_eq!(entry["attempt"], 1);
        assert!(entry["latency_ms"].as_f64().unwrap() > 0.0);
        assert!(
            entry["response"]["body"]
                .as_str()
                .unwrap()
                .contains("\"ok\"")
        );
    }
    let unattributed = delivered
        .iter()
        .find(|e| e["message_id"] == "golden-05")
        .unwrap();
    assert_eq!(unattributed["warnings"][0]["field"], "btn_ref");
    app.assert_secrets_absent(&[]);
}

#[tokio::test]
async fn a_repeated_message_id_is_acknowledged_but_delivered_once() {
    let app = TestApp::spawn().await;
    let id = app.install().await;
    let (status, first) = app.send_event(purchase("dup-1")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert_eq!(first["results"][0]["status"], "accepted");
    let (status, second) = app.send_event(purchase("dup-1")).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["duplicates"], 1);
    assert_eq!(second["results"][0]["status"], "duplicate");
    assert_eq!(second["deliveries_queued"], 0);
    let (status, batch) = app
        .send_batch(vec![
            purchase("dup-1"),
            purchase("dup-2"),
            purchase("dup-2"),
        ])
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let statuses: Vec<&str> = batch["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["duplicate", "accepted", "duplicate"]);
    app.fake.wait_for(2, WAIT).await;
    app.settled(&id).await;
    let ids: Vec<String> = app
        .fake
        .received()
        .iter()
        .map(|r| r.order_id().to_owned())
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&"order-dup-1".into()) && ids.contains(&"order-dup-2".into()));
}

#[tokio::test]
async fn a_batch_is_accepted_in_part_and_each_rejection_named() {
    let app = TestApp::spawn().await;
    app.install().await;
    let mut bad_time = purchase("b-3");
    bad_time["timestamp"] = json!("last tuesday");
    let (status, summary) = app
        .send_batch(vec![
            purchase("b-1"),
            json!({"type": "track", "event": "purchase"}),
            json!("not an event"),
            bad_time,
            add_to_cart("b-5"),
        ])
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{summary}");
    assert_eq!(
        (summary["accepted"].as_u64(), summary["rejected"].as_u64()),
        (Some(2), Some(3))
    );
    let results = summary["results"].as_array().unwrap();
    let rejected: Vec<(u64, &str)> = results
        .iter()
        .filter(|r| r["status"] == "rejected")
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["errors"][0]["field"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(rejected, [(1, "messageId"), (2, ""), (3, "timestamp")]);
    assert!(
        results[2]["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("JSON object")
    );
    assert_eq!(app.fake.wait_for(2, WAIT).await.len(), 2);

    let (status, all_bad) = app.send_batch(vec![json!({"event": "x"}), json!(7)]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(all_bad["error"]["code"], "validation_failed");
    let fields: Vec<&str> = all_bad["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["batch[0].messageId", "batch[1]"]);
    let (status, body) = app
        .request(
            "POST",
            "/v1/events/batch",
            Some(&app.ingest_token.clone()),
            Some(json!({"batch": []})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["details"][0]["field"], "batch");
    let (status, body) = app
        .request(
            "POST",
            "/v1/events/batch",
            Some(&app.ingest_token.clone()),
            Some(json!([purchase("x")])),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "invalid_json");
}

#[tokio::test]
async fn ingest_needs_the_ingest_token_and_a_valid_event() {
    let app = TestApp::spawn().await;
    let id = app.install().await;
    for token in [None, Some(app.admin_token.clone()), Some("nope".to_owned())] {
        let (status, body) = app
            .request(
                "POST",
                "/v1/events",
                token.as_deref(),
                Some(purchase("t-1")),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    let (status, body) = app
        .send_event(json!({"type": "track", "event": "purchase"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["details"][0]["field"], "messageId");
    let response = app
        .http
        .post(app.url("/v1/events"))
        .bearer_auth(&app.ingest_token)
        .header("content-type", "application/json")
        .body("{\"messageId\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let big = json!({"type": "track", "event": "purchase", "messageId": "big", "properties": {"blob": "x".repeat(70_000)}});
    let (status, body) = app.send_event(big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let response = app
        .http
        .post(app.url("/v1/events"))
        .bearer_auth(&app.ingest_token)
        .body(purchase("ct").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    app.settled(&id).await;
    assert!(
        app.fake.received().is_empty(),
        "nothing refused was delivered"
    );
    assert_eq!(app.queue_depth(&id).await, 0, "nothing refused was queued");
}

#[tokio::test]
async fn two_503s_then_200_is_one_delivery_in_three_logged_attempts() {
    let app = TestApp::spawn().await;
    let id = app.install().await;
    app.fake
        .add_rule(Rule::times(2, When::Any, Reply::status(503)));
    app.send_event(purchase("r-1")).await;
    let logs = app
        .wait_logs(&id, "message_id=r-1&outcome=delivered", 1, WAIT)
        .await;
    assert_eq!(logs.len(), 1);
    let all = app.logs(&id, "message_id=r-1").await;
    assert_eq!(all.len(), 3, "{all:#?}");
    let (third, second, first) = (&all[0], &all[1], &all[2]);
    assert_eq!(
        (first["attempt"].as_i64(), first["outcome"].as_str()),
        (Some(1), Some("retry_scheduled"))
    );
    assert_eq!(
        (second["attempt"].as_i64(), second["outcome"].as_str()),
        (Some(2), Some("retry_scheduled"))
    );
    assert_eq!(
        (third["attempt"].as_i64(), third["outcome"].as_str()),
        (Some(3), Some("delivered"))
    );
    for retry in [first, second] {
        assert_eq!(retry["status"], "503 Service Unavailable");
        assert_eq!(retry["status_code"], 503);
        assert!(retry["next_attempt_at"].as_str().unwrap() > retry["time"].as_str().unwrap());
    }
    assert_eq!(third["status"], "200 OK");
    assert_eq!(third["next_attempt_at"], Value::Null);
    // Backoff: 300 ms, then 600 ms (the test policy, no jitter).
    let at = |e: &Value, k: &str| {
        time::OffsetDateTime::parse(
            e[k].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    let wait1 = (at(first, "next_attempt_at") - at(first, "time")).whole_milliseconds();
    let wait2 = (at(second, "next_attempt_at") - at(second, "time")).whole_milliseconds();
    assert!(
        (250..=400).contains(&wait1) && (550..=700).contains(&wait2),
        "{wait1} {wait2}"
    );
    let got = app.fake.received();
    assert_eq!(got.len(), 3);
    assert!(
        got[0].body == got[1].body && got[1].body == got[2].body,
        "every retry sends the same bytes"
    );
    let gap = got[2].at.duration_since(got[1].at).unwrap();
    assert!(
        gap >= Duration::from_millis(550),
        "the second retry waited its backoff ({gap:?})"
    );
    let stats = app.get(&format!("/v1/admin/integrations/{id}/stats")).await;
    assert_eq!(stats["outcomes"]["retry_scheduled"], 2);
    assert_eq!(stats["outcomes"]["delivered"], 1);
    assert_eq!(stats["queue"]["depth"], 0);
}

#[tokio::test]
async fn retry_after_holds_one_lane_while_another_keeps_flowing() {
    let app = TestApp::spawn().await;
    let held = app.install().await;
    let flowing = app.install_another("app-other999").await;
    app.fake.add_rule(Rule::times(
        1,
        When::ApiKey(app.api_key.clone()),
        Reply::status(429).retry_after("2"),
    ));
    let ingest = app.ingest_token.clone();
    let (status, _) = app
        .request(
            "POST",
            &format!("/v1/integrations/{held}/events"),
            Some(&ingest),
            Some(purchase("h-1")),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    app.fake.wait_for(1, WAIT).await;
    let limited_at = SystemTime::now();
    // The held lane takes more work meanwhile; the other lane gets some too.
    for i in 0..3 {
        app.request(
            "POST",
            &format!("/v1/integrations/{held}/events"),
            Some(&ingest),
            Some(purchase(&format!("h-more-{i}"))),
        )
        .await;
        app.request(
            "POST",
            &format!("/v1/integrations/{flowing}/events"),
            Some(&ingest),
            Some(purchase(&format!("f-{i}"))),
        )
        .await;
    }
    let stats = app
        .get(&format!("/v1/admin/integrations/{held}/stats"))
        .await;
    assert_eq!(stats["lane"]["state"], "rate_limited", "{stats}");
    assert!(stats["lane"]["held_until"].is_string());
    let other_done = app
        .wait_logs(&flowing, "outcome=delivered", 3, Duration::from_secs(1))
        .await;
    assert_eq!(
        other_done.len(),
        3,
        "the other integration flowed during the hold"
    );
    app.wait_logs(&held, "outcome=delivered", 4, WAIT).await;
    let held_requests: Vec<_> = app
        .fake
        .received()
        .into_iter()
        .filter(|r| r.api_key.as_deref() == Some(app.api_key.as_str()))
        .collect();
    assert_eq!(held_requests.len(), 5, "one 429, then four deliveries");
    for r in &held_requests[1..] {
        let after = r.at.duration_since(limited_at).unwrap_or_default();
        assert!(
            after >= Duration::from_millis(1900),
            "a request came {after:?} after the 429 asked for 2s"
        );
    }
    let retry = app
        .logs(&held, "message_id=h-1&outcome=retry_scheduled")
        .await;
    assert_eq!(retry[0]["status"], "429 Too Many Requests");
}

#[tokio::test]
async fn a_400_fails_at_once_with_its_hint() {
    let app = TestApp::spawn().await;
    let id = app.install().await;
    app.fake.add_rule(Rule::times(
        1,
        When::Any,
        Reply::error(400, "Missing required field total"),
    ));
    app.send_event(purchase("bad-1")).await;
    let failed = app.wait_logs(&id, "outcome=failed", 1, WAIT).await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["attempt"], 1);
    assert_eq!(failed[0]["status"], "400 Bad Request");
    assert_eq!(failed[0]["error"], "Missing required field total");
    assert!(
        failed[0]["hint"]
            .as_str()
            .unwrap()
            .contains("Ensure order_id and total are mapped in the blueprint")
    );
    app.settled(&id).await;
    assert_eq!(app.fake.received().len(), 1, "no further attempt");
    assert_eq!(app.queue_depth(&id).await, 0, "no attempt scheduled");
    assert_eq!(app.logs(&id, "message_id=bad-1").await.len(), 1);
}

#[tokio::test]
async fn a_401_pauses_the_lane_and_a_new_key_delivers_what_waited() {
    let app = TestApp::spawn_with(&[("BUTTON_DELIVERY__LANE_CONCURRENCY", "1")]).await;
    let wrong = random_secret("sk-wrong-");
    let id = app.install_with(&wrong, "app-abc123def456").await;
    let events: Vec<Value> = (0..5).map(|i| purchase(&format!("p-{i}"))).collect();
    let (status, _) = app.send_batch(events).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let paused = app.wait_logs(&id, "outcome=paused", 1, WAIT).await;
    assert_eq!(paused[0]["status"], "401 Unauthorized");
    assert!(
        paused[0]["hint"]
            .as_str()
            .unwrap()
            .contains("Verify api_key in Button Settings > API Keys")
    );
    app.settled(&id).await;
    assert_eq!(
        app.fake.received().len(),
        1,
        "the queued events waited; no attempt was spent on them"
    );
    let integration = app.get(&format!("/v1/admin/integrations/{id}")).await;
    assert_eq!(integration["status"]["lane"], "auth_failed");
    assert!(
        integration["status"]["reason"]
            .as_str()
            .unwrap()
            .contains("Invalid api_key")
    );
    let stats = app.get(&format!("/v1/admin/integrations/{id}/stats")).await;
    assert_eq!(stats["lane"]["state"], "auth_failed");
    assert_eq!(stats["queue"]["depth"], 5);

    let (status, rotated) = app
        .admin(
            "PATCH",
            &format!("/v1/admin/integrations/{id}"),
            Some(json!({"config": {"api_key": app.api_key}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rotated["status"]["lane"], "active");
    let delivered = app.wait_logs(&id, "outcome=delivered", 5, WAIT).await;
    assert_eq!(delivered.len(), 5);
    assert!(
        delivered.iter().all(|e| e["attempt"] == 1),
        "the pause spent no attempt: {delivered:#?}"
    );
    let keys: Vec<_> = app
        .fake
        .received()
        .iter()
        .map(|r| r.api_key.clone().unwrap())
        .collect();
    assert_eq!(keys[0], wrong);
    assert!(keys[1..].iter().all(|k| *k == app.api_key));
    app.assert_secrets_absent(&[&wrong]);
    let logs = app
        .get(&format!("/v1/admin/integrations/{id}/logs?limit=100"))
        .await
        .to_string();
    assert!(
        !logs.contains(&wrong) && !logs.contains(&app.api_key),
        "no key in Live Logs"
    );
}

#[tokio::test]
async fn an_explicit_resume_restarts_a_paused_lane() {
    let app = TestApp::spawn().await;
    let id = app.install_with("sk-soon-valid", "app-abc123def456").await;
    app.send_event(purchase("resume-1")).await;
    app.wait_logs(&id, "outcome=paused", 1, WAIT).await;
    app.fake.set_api_keys(&["sk-soon-valid"]); // fixed on Button's side
    let (status, resumed) = app
        .admin("POST", &format!("/v1/admin/integrations/{id}/resume"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(resumed["status"]["lane"], "active");
    assert_eq!(
        app.wait_logs(&id, "outcome=delivered", 1, WAIT).await.len(),
        1
    );
}

#[tokio::test]
async fn exhausted_attempts_are_dead_lettered_listed_replayed_and_discarded() {
    let app = TestApp::spawn().await;
    let id = app.install().await;
    app.fake
        .add_rule(Rule::always(When::Any, Reply::status(500)));
    app.send_batch(vec![purchase("dl-1"), purchase("dl-2")])
        .await;
    let dead = app.wait_logs(&id, "outcome=dead_lettered", 2, WAIT).await;
    assert_eq!(dead.len(), 2);
    assert!(
        dead.iter().all(|e| e["attempt"] == 3),
        "max_attempts is 3 in the test policy"
    );
    assert_eq!(app.fake.received().len(), 6);

    let list = app
        .get(&format!("/v1/admin/integrations/{id}/dead-letters"))
        .await;
    let letters = list["data"].as_array().unwrap();
    assert_eq!(letters.len(), 2);
    let by_message: HashMap<&str, &str> = letters
        .iter()
        .map(|l| (l["messageId"].as_str().unwrap(), l["id"].as_str().unwrap()))
        .collect();
    assert_eq!(letters[0]["attempts"], 3);
    let stats = app.get(&format!("/v1/admin/integrations/{id}/stats")).await;
    assert_eq!(stats["queue"]["dead_letters"], 2);

    app.fake.clear_rules();
    let (status, replayed) = app
        .admin(
            "POST",
            &format!("/v1/admin/integrations/{id}/dead-letters/replay"),
            Some(json!({"ids": [by_message["dl-1"]]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(replayed["count"], 1);
    let delivered = app.wait_logs(&id, "outcome=delivered", 1, WAIT).await;
    assert_eq!(delivered[0]["message_id"], "dl-1");
    assert_eq!(
        delivered[0]["attempt"], 1,
        "a replay starts its attempts afresh"
    );

    let (_, discarded) = app
        .admin(
            "POST",
            &format!("/v1/admin/integrations/{id}/dead-letters/discard"),
            Some(json!({"all": true})),
        )
        .await;
    assert_eq!(discarded["count"], 1);
    let list = app
        .get(&format!("/v1/admin/integrations/{id}/dead-letters"))
        .await;
    assert!(list["data"].as_array().unwrap().is_empty());
    app.settled(&id).await;
    assert_eq!(
        app.fake.received().len(),
        7,
        "the discarded one was never sent again"
    );
    let (status, body) = app
        .admin(
            "POST",
            &format!("/v1/admin/integrations/{id}/dead-letters/replay"),
            Some(json!({"ids": []})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[tokio::test]
async fn routing_follows_the_integrations_object_and_targeted_posts() {
    let app = TestApp::spawn().await;
    let web = app.install().await;
    let apps = app.install_another("app-mobile1").await;
    // Default: both Button integrations.
    app.send_event(product_view("r-all")).await;
    // Segment's object: All off, Button on -> both again; by id -> just one.
    let mut only_web = product_view("r-web");
    only_web["integrations"] = json!({"All": false, web.as_str(): true});
    app.send_event(only_web).await;
    let mut none = product_view("r-none");
    none["integrations"] = json!({"Button": false});
    let (_, summary) = app.send_event(none).await;
    assert_eq!(summary["deliveries_queued"], 0);
    let mut all_off_button_on = product_view("r-button");
    all_off_button_on["integrations"] = json!({"All": false, "Button": {}});
    app.send_event(all_off_button_on).await;
    // Targeted post.
    let ingest = app.ingest_token.clone();
    app.request(
        "POST",
        &format!("/v1/integrations/{apps}/events"),
        Some(&ingest),
        Some(product_view("r-apps")),
    )
    .await;
    app.wait_logs(&web, "outcome=delivered", 3, WAIT).await;
    app.wait_logs(&apps, "outcome=delivered", 3, WAIT).await;
    app.settled(&web).await;
    app.settled(&apps).await;
    assert_eq!(app.logs(&web, "").await.len(), 3);
    assert_eq!(app.logs(&apps, "").await.len(), 3);
    let web_ids: Vec<Value> = app
        .logs(&web, "")
        .await
        .iter()
        .map(|e| e["message_id"].clone())
        .collect();
    assert!(web_ids.contains(&json!("r-web")) && !web_ids.contains(&json!("r-apps")));

    // A disabled integration takes nothing: not routed, and a targeted post is refused.
    app.admin(
        "PATCH",
        &format!("/v1/admin/integrations/{apps}"),
        Some(json!({"enabled": false})),
    )
    .await;
    let (_, summary) = app.send_event(product_view("r-after")).await;
    assert_eq!(summary["deliveries_queued"], 1);
    let (status, body) = app
        .request(
            "POST",
            &format!("/v1/integrations/{apps}/events"),
            Some(&ingest),
            Some(product_view("r-x")),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "integration_disabled");
    let (status, _) = app
        .request(
            "POST",
            "/v1/integrations/int_nope/events",
            Some(&ingest),
            Some(product_view("r-y")),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn mapping_failures_and_filtered_events_are_recorded_not_sent() {
    let app = TestApp::spawn().await;
    let id = app.install().await;
    let mut no_order = purchase("mf-1");
    no_order["properties"]
        .as_object_mut()
        .unwrap()
        .remove("order_id");
    let mut no_consent = purchase("fl-1");
    no_consent["context"] = json!({"consent": {"canonical": {"marketing": false}}});
    let (status, summary) = app.send_batch(vec![no_order, no_consent]).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(summary["results"][0]["mapping_failed"], 1);
    assert_eq!(summary["results"][1]["filtered"], 1);
    assert_eq!(summary["deliveries_queued"], 0);
    let failed = app.logs(&id, "outcome=mapping_failed").await;
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("order_id:")
    );
    assert!(
        failed[0]["hint"]
            .as_str()
            .unwrap()
            .contains("Ensure order_id and total are mapped")
    );
    let filtered = app.logs(&id, "outcome=filtered").await;
    assert!(filtered[0]["error"].as_str().unwrap().contains("consent"));
    app.settled(&id).await;
    assert!(app.fake.received().is_empty());
    assert_eq!(app.queue_depth(&id).await, 0);
}

#[tokio::test]
async fn a_graceful_restart_finishes_attempts_in_flight_without_duplicates() {
    let mut app = TestApp::spawn().await;
    let id = app.install().await;
    app.fake.set_latency(Duration::from_millis(400));
    let events: Vec<Value> = (0..20).map(|i| purchase(&format!("g-{i}"))).collect();
    app.send_batch(events).await;
    app.fake.wait_for(1, WAIT).await;
    app.restart().await;
    app.fake.set_latency(Duration::ZERO);
    app.wait_logs(&id, "outcome=delivered", 20, WAIT).await;
    app.settled(&id).await;
    let ids: Vec<String> = app
        .fake
        .received()
        .iter()
        .map(|r| r.order_id().to_owned())
        .collect();
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 20, "every event delivered");
    assert_eq!(ids.len(), 20, "a graceful restart sends nothing twice");
}

#[tokio::test]
async fn a_store_that_refuses_writes_gets_503_and_loses_nothing_accepted() {
    let app = TestApp::spawn_with(&[("BUTTON_DATABASE__BUSY_TIMEOUT", "300ms")]).await;
    let id = app.install().await;
    app.fake
        .add_rule(Rule::always(When::Any, Reply::status(503)));
    let (status, _) = app
        .send_batch((0..5).map(|i| purchase(&format!("before-{i}"))).collect())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // Another process takes the database's write lock and holds it.
    let locked_at = crate::helpers::log_offset();
    let lock = app.lock_store().await;
    let started = Instant::now();
    let (status, body) = app.send_event(purchase("during")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(started.elapsed() < Duration::from_secs(5));
    let (status, _) = app.send_batch(vec![purchase("during-2")]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // Readiness asks for a commit. SQLite's lock covers the whole database, so it
    // cannot commit anything; PostgreSQL's covers these two tables, and it still can.
    let (status, ready) = app.request("GET", "/readyz", None, None).await;
    let expected = if crate::helpers::on_postgres() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    assert_eq!(status, expected, "{ready}");
    // Hold the lock until delivery has run into it too (a lease or an outcome that
    // could not be written), then let go.
    // (No other test locks its store, so an outcome that could not be recorded after
    // this test took the lock is this test's.)
    assert!(
        crate::helpers::wait_for_log_line_after(locked_at, |l| {
            (l.contains(&id) && l.contains("cannot lease deliveries"))
                || l.contains("cannot record attempt outcomes")
        })
        .await,
        "delivery never met the locked store"
    );
    lock.release().await;

    app.fake.clear_rules();
    let (status, _) = app.send_event(purchase("after")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let delivered = app
        .wait_logs(&id, "outcome=delivered", 6, Duration::from_secs(15))
        .await;
    let mut ids: Vec<String> = delivered
        .iter()
        .map(|e| e["message_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids,
        [
            "after", "before-0", "before-1", "before-2", "before-3", "before-4"
        ],
        "everything acknowledged arrived; nothing refused did"
    );
    assert!(
        !app.fake
            .received()
            .iter()
            .any(|r| { r.order_id().contains("during") })
    );
}

#[tokio::test]
async fn metrics_count_events_deliveries_and_queues() {
    let app = TestApp::spawn().await;
    let id = app.install().await;
    app.send_batch(vec![
        purchase("m-1"),
        purchase("m-1"),
        json!({"event": "x"}),
    ])
    .await;
    app.wait_logs(&id, "outcome=delivered", 1, WAIT).await;
    // Integration ids and volumes are not for anyone who can reach the port.
    let response = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = response.text().await.unwrap();
    for line in [
        "button_delivery_events_ingested_total 1",
        "button_delivery_events_duplicate_total 1",
        "button_delivery_events_rejected_total 1",
        &format!(
            "button_delivery_deliveries_total{{integration=\"{id}\",outcome=\"delivered\"}} 1"
        ),
        &format!("button_delivery_lane_state{{integration=\"{id}\",state=\"active\"}} 1"),
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(
        text.contains(&format!(
            "button_delivery_attempt_duration_seconds_count{{integration=\"{id}\"}} 1"
        )),
        "{text}"
    );
}

#[tokio::test]
async fn an_operator_pause_queues_events_until_resumed() {
    let app = TestApp::spawn().await;
    let id = app.install().await;
    let (status, paused) = app
        .admin("POST", &format!("/v1/admin/integrations/{id}/pause"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(paused["status"]["lane"], "paused");
    let queued_at = Instant::now();
    let (status, summary) = app
        .send_batch(vec![purchase("pz-1"), add_to_cart("pz-2")])
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(summary["deliveries_queued"], 2);
    // A key rotation does not lift an operator's pause.
    app.admin(
        "PATCH",
        &format!("/v1/admin/integrations/{id}"),
        Some(json!({"config": {"api_key": app.api_key}})),
    )
    .await;
    app.settled(&id).await;
    assert!(app.fake.received().is_empty());
    let stats = app.get(&format!("/v1/admin/integrations/{id}/stats")).await;
    assert_eq!(stats["lane"]["state"], "paused");
    assert_eq!(stats["queue"]["depth"], 2);
    let age = stats["queue"]["oldest_pending_age_seconds"]
        .as_f64()
        .unwrap();
    assert!(
        (0.0..=queued_at.elapsed().as_secs_f64() + 0.01).contains(&age),
        "the oldest event waited {age}s"
    );
    app.admin("POST", &format!("/v1/admin/integrations/{id}/resume"), None)
        .await;
    assert_eq!(
        app.wait_logs(&id, "outcome=delivered", 2, WAIT).await.len(),
        2
    );
}

#[tokio::test]
async fn dead_letter_selections_are_bounded_and_name_what_is_wrong() {
    let app = TestApp::spawn().await;
    let id = app.install().await;
    let path = format!("/v1/admin/integrations/{id}/dead-letters/replay");
    let ids: Vec<String> = (0..1001).map(|i| format!("dlv_01j{i:023}")).collect();
    let (status, body) = app.admin("POST", &path, Some(json!({"ids": ids}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at most 1000")
    );
    for (selection, field, says) in [
        (
            json!({"ids": ["dlv_01j00000000000000000000000", "not-an-id"]}),
            "ids[1]",
            "is not a delivery id",
        ),
        (json!({"ids": [7]}), "ids[0]", "invalid type"),
        (json!({"all": true, "and": 1}), "and", "unknown field `and`"),
        (json!({"all": false}), "ids", "non-empty"),
        (json!({"ids": null, "all": true}), "ids", "must not be null"),
        (json!([1]), "body", "send {"),
    ] {
        let (status, body) = app.admin("POST", &path, Some(selection.clone())).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{selection}: {body}"
        );
        let detail = &body["error"]["details"][0];
        assert_eq!(detail["field"], field, "{selection}: {body}");
        assert!(
            detail["message"].as_str().unwrap().contains(says),
            "{selection}: {body}"
        );
    }
}

#[tokio::test]
async fn a_known_event_still_reaches_an_integration_it_has_not_reached() {
    let app = TestApp::spawn().await;
    let web = app.install().await;
    let apps = app.install_another("app-mobile1").await;
    let mut only_web = product_view("k-1");
    only_web["integrations"] = json!({"All": false, web.as_str(): true});
    let (status, first) = app.send_event(only_web).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert_eq!(first["deliveries_queued"], 1);
    // The event is stored; a post targeting the other integration still reaches it,
    // once.
    let ingest = app.ingest_token.clone();
    let path = format!("/v1/integrations/{apps}/events");
    let (status, second) = app
        .request("POST", &path, Some(&ingest), Some(product_view("k-1")))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{second}");
    assert_eq!(second["results"][0]["status"], "accepted");
    assert_eq!(second["deliveries_queued"], 1);
    let (status, third) = app
        .request("POST", &path, Some(&ingest), Some(product_view("k-1")))
        .await;
    assert_eq!(status, StatusCode::OK, "{third}");
    assert_eq!(third["results"][0]["status"], "duplicate");
    app.wait_logs(&web, "outcome=delivered", 1, WAIT).await;
    app.wait_logs(&apps, "outcome=delivered", 1, WAIT).await;
    app.settled(&web).await;
    app.settled(&apps).await;
    assert_eq!(app.logs(&web, "").await.len(), 1);
    assert_eq!(app.logs(&apps, "").await.len(), 1);
}

#[tokio::test]
async fn event_times_need_a_zone_and_a_plausible_year_and_message_ids_count_characters() {
    let app = TestApp::spawn().await;
    app.install().await;
    for (timestamp, says) in [
        ("2024-05-01T10:00:00", "no time zone"),
        ("0000-01-01T00:00:00Z", "outside 1970 to 2100"),
        ("9999-12-31T23:59:59Z", "outside 1970 to 2100"),
    ] {
        let mut event = purchase("ts-1");
        event["timestamp"] = json!(timestamp);
        let (status, body) = app.send_event(event).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{timestamp}: {body}"
        );
        assert_eq!(body["error"]["details"][0]["field"], "timestamp", "{body}");
        let message = body["error"]["details"][0]["message"].as_str().unwrap();
        assert!(message.contains(says), "{timestamp}: {message}");
    }
    // 255 characters of two bytes each are 255 characters.
    let (status, body) = app.send_event(purchase(&"é".repeat(255))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = app.send_event(purchase(&"é".repeat(256))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["details"][0]["field"], "messageId");
}

#[tokio::test]
async fn error_messages_read_cleanly() {
    let app = TestApp::spawn().await;
    let (status, body) = app.send_event(json!([1, 2])).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["message"], "an event must be a JSON object");
    let response = app
        .http
        .post(app.url("/v1/events"))
        .bearer_auth(&app.ingest_token)
        .header("content-type", "application/json")
        .body("{\"messageId\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert_eq!(message.matches("column").count(), 1, "said once: {message}");
}

/// `button_delivery_deliveries_handed_total`, from the metrics.
async fn handed(app: &TestApp) -> u64 {
    let text = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("button_delivery_deliveries_handed_total "))
        .unwrap_or_else(|| panic!("no handed counter in\n{text}"))
        .parse()
        .unwrap()
}

/// A lane with nothing else due is handed new deliveries leased in the commit that
/// accepted them, and takes no lease of its own for them. What must wait is left in
/// the store for the lane's lease: an order's change behind its create, work beyond
/// the lane's room (two slots' worth), anything while the lane is paused. All of it
/// arrives, the order's changes in order.
#[tokio::test]
async fn an_idle_lane_is_handed_new_work_in_the_commit_that_accepts_it() {
    let app = TestApp::spawn_with(&[("BUTTON_DELIVERY__LANE_CONCURRENCY", "2")]).await;
    let id = app.install().await;
    // Once this is delivered the lane has looked at the store and found nothing else.
    app.send_event(product_view("h-0")).await;
    app.wait_logs(&id, "outcome=delivered", 1, WAIT).await;
    app.settled(&id).await;
    let before = handed(&app).await;

    app.send_event(add_to_cart("h-1")).await;
    app.wait_logs(&id, "outcome=delivered", 2, WAIT).await;
    assert_eq!(handed(&app).await, before + 1, "the event was handed over");

    // A create and its update in one batch: the create is handed over, the update
    // waits in the store until the create is delivered.
    let mut update = purchase("h-3");
    update["event"] = json!("Order Updated");
    update["properties"]["order_id"] = json!("order-h-2");
    let (status, body) = app.send_batch(vec![purchase("h-2"), update]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    app.wait_logs(&id, "message_id=h-3&outcome=delivered", 1, WAIT)
        .await;
    app.settled(&id).await;
    assert_eq!(handed(&app).await, before + 2, "only the create was handed");
    let orders: Vec<(String, String)> = app
        .fake
        .received()
        .iter()
        .filter(|r| r.kind.is_order())
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    assert_eq!(
        orders,
        [
            ("POST".to_owned(), "/v1/order".to_owned()),
            ("POST".to_owned(), "/v1/order/order-h-2".to_owned())
        ],
        "the create, then its update"
    );

    // Ten at once: the lane has room for four (two slots' worth); the rest it leases.
    let batch: Vec<Value> = (0..10).map(|i| add_to_cart(&format!("h-b{i}"))).collect();
    let (status, body) = app.send_batch(batch).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    app.wait_logs(&id, "outcome=delivered", 14, WAIT).await;
    app.settled(&id).await;
    assert_eq!(
        handed(&app).await,
        before + 6,
        "four of the ten were handed"
    );
    assert_eq!(
        app.fake.received().len(),
        14,
        "each event reached Button once"
    );

    // Paused: nothing is handed; once resumed, the lane leases what waited.
    app.admin("POST", &format!("/v1/admin/integrations/{id}/pause"), None)
        .await;
    app.send_event(add_to_cart("h-p")).await;
    app.settled(&id).await;
    assert_eq!(
        app.fake.received().len(),
        14,
        "nothing is sent while paused"
    );
    app.admin("POST", &format!("/v1/admin/integrations/{id}/resume"), None)
        .await;
    app.wait_logs(&id, "message_id=h-p&outcome=delivered", 1, WAIT)
        .await;
    assert_eq!(
        handed(&app).await,
        before + 6,
        "a paused lane is handed nothing"
    );
    assert_eq!(app.queue_depth(&id).await, 0);
}

#[tokio::test]
async fn lanes_share_one_bound_on_the_deliveries_held_in_memory() {
    // Three lanes of four slots each, and room for three deliveries in all.
    let app = TestApp::spawn_with(&[
        ("BUTTON_DELIVERY__LANE_CONCURRENCY", "4"),
        ("BUTTON_DELIVERY__MAX_HELD", "3"),
    ])
    .await;
    let apps = ["app-first001", "app-second01", "app-third001"];
    let mut ids = Vec::new();
    for application_id in apps {
        ids.push(app.install_another(application_id).await);
    }
    app.fake.set_latency(Duration::from_millis(100));
    let ingest = app.ingest_token.clone();
    for (n, id) in ids.iter().enumerate() {
        let batch: Vec<Value> = (0..6).map(|i| add_to_cart(&format!("r-{n}-{i}"))).collect();
        let (status, body) = app
            .request(
                "POST",
                &format!("/v1/integrations/{id}/events/batch"),
                Some(&ingest),
                Some(json!({ "batch": batch })),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    for id in &ids {
        app.wait_logs(id, "outcome=delivered", 6, WAIT).await;
    }
    let received = app.fake.received();
    assert_eq!(received.len(), 18, "each event reached Button once");
    let peak = app.fake.stats().peak_in_flight;
    assert!(
        peak <= 3,
        "{peak} requests in flight at once, past the bound of 3"
    );
    assert!(
        peak >= 2,
        "the lanes still send side by side (at most {peak} at once)"
    );
    // The room is shared in turn, a lease at a time: the last lane to get work does
    // not wait for the one before it to finish all of its own.
    let at = |app_id: &str| -> Vec<usize> {
        received
            .iter()
            .enumerate()
            .filter(|(_, r)| r.application_id.as_deref() == Some(app_id))
            .map(|(i, _)| i)
            .collect()
    };
    let (second, third) = (at(apps[1]), at(apps[2]));
    assert!(
        third[0] < second[second.len() - 1],
        "the third integration waited for the second to finish: {:?}",
        received
            .iter()
            .map(|r| r.application_id.clone())
            .collect::<Vec<_>>()
    );
    for id in &ids {
        app.settled(id).await;
        assert_eq!(app.queue_depth(id).await, 0);
    }
}

/// A lane that waits for room for its next lease starts what ingest hands it
/// meanwhile: that work came with room of its own. Here the room is the lane's two
/// deliveries ahead, so when ingest reserves both for events still being written and
/// a third event's wake (it found no room) sends the lane to lease, the lane asks for
/// room that only its own handed work holds. Waiting for room alone, it waited
/// forever, and with it every lane.
#[tokio::test]
async fn a_lane_waiting_for_room_starts_what_ingest_hands_it() {
    let app = TestApp::spawn_with(&[
        ("BUTTON_DELIVERY__LANE_CONCURRENCY", "1"),
        ("BUTTON_DELIVERY__MAX_HELD", "2"),
    ])
    .await;
    let id = app.install().await;
    let mut sent = 0;
    for wave in 0..30 {
        let requests = (0..6).map(|i| app.send_event(add_to_cart(&format!("w-{wave}-{i}"))));
        for (status, body) in futures_util::future::join_all(requests).await {
            assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        }
        sent += 6;
        let received = app.fake.wait_for(sent, Duration::from_secs(10)).await;
        assert_eq!(
            received.len(),
            sent,
            "wave {wave}: delivery stalled with events accepted and not sent"
        );
    }
    app.settled(&id).await;
    assert_eq!(app.queue_depth(&id).await, 0);
}

/// Work a busy lane has in the store (here: what ingest could not hand over, past
/// the lane's room) is leased before long even while new events keep coming, each of
/// which ingest could hand over: the lane's room is not kept full with new work
/// while the older waits for the load to end.
#[tokio::test]
async fn work_in_the_store_is_not_starved_by_new_work_handed_over() {
    let app = TestApp::spawn_with(&[("BUTTON_DELIVERY__LANE_CONCURRENCY", "1")]).await;
    let id = app.install().await;
    app.send_event(purchase("s-0")).await;
    app.wait_logs(&id, "outcome=delivered", 1, WAIT).await;
    app.settled(&id).await;
    // One attempt at a time, 100 ms each: 10 a second. The lane has room for two
    // ahead of its slot; of six at once, the other four wait in the store.
    app.fake.set_latency(Duration::from_millis(100));
    let old: Vec<Value> = (0..6).map(|i| purchase(&format!("s-old-{i}"))).collect();
    let (status, body) = app.send_batch(old).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    // Then 20 a second, twice what the lane delivers, for two seconds.
    for i in 0..40 {
        let (status, body) = app.send_event(purchase(&format!("s-new-{i}"))).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let received = app.fake.wait_for(47, Duration::from_secs(30)).await;
    assert_eq!(received.len(), 47, "every event reached Button");
    let orders: Vec<String> = received.iter().map(|r| r.order_id().to_owned()).collect();
    // In the order accepted, give or take what ingest hands over while the lane
    // leases: two at a time at most (its room).
    let last_old = orders
        .iter()
        .rposition(|o| o.starts_with("order-s-old-"))
        .unwrap();
    let new_before = orders[..last_old]
        .iter()
        .filter(|o| o.starts_with("order-s-new-"))
        .count();
    assert!(
        new_before <= 4,
        "the older events waited behind {new_before} new ones: {orders:?}"
    );
    app.fake.set_latency(Duration::ZERO);
    app.settled(&id).await;
}

/// One event for the store's ingest, as the service would write it: `deliveries` of
/// it, made by [`pending_delivery`].
fn stored_event(
    message_id: &str,
    deliveries: Vec<button_delivery::store::ingest::NewDelivery>,
) -> button_delivery::store::ingest::IngestRecord {
    use button_delivery::store::ingest::{IngestRecord, NewEvent};
    IngestRecord {
        event: NewEvent {
            message_id: message_id.into(),
            event_name: Some("product_view".into()),
            received_at: button_delivery::domain::clock::now_ms(),
            payload: format!(
                r#"{{"type":"track","event":"product_view","messageId":"{message_id}"}}"#
            ),
        },
        deliveries,
        logs: Vec::new(),
    }
}

/// A product view of `message_id` queued for `integration_id`, due now.
fn pending_delivery(
    app: &TestApp,
    integration_id: &button_delivery::domain::IntegrationId,
    message_id: &str,
) -> button_delivery::store::ingest::NewDelivery {
    use button_delivery::button::CallKind;
    use button_delivery::domain::{DeliveryId, DeliveryState};
    use button_delivery::store::queue::Parcel;
    button_delivery::store::ingest::NewDelivery {
        parcel: Parcel {
            id: DeliveryId::new(),
            integration_id: integration_id.clone(),
            message_id: message_id.into(),
            event_name: "product_view".into(),
            call: Some(CallKind::ActivityProductViewed),
            warnings: Vec::new(),
            test: false,
        },
        state: DeliveryState::Pending,
        url: Some(format!("http://{}/never", app.fake.addr())),
        body: Some(b"{}".to_vec()),
        order_key: None,
        created_at: button_delivery::domain::clock::now_ms(),
        lease: None,
    }
}

/// A purchase of `order_id` queued for `integration_id`, due now, with the lease ingest
/// gives a lane with room (taken only if no earlier change of the order holds it).
fn order_change(
    app: &TestApp,
    integration_id: &button_delivery::domain::IntegrationId,
    message_id: &str,
    order_id: &str,
) -> button_delivery::store::ingest::NewDelivery {
    use button_delivery::button::CallKind;
    use button_delivery::store::ingest::IngestLease;
    let mut change = pending_delivery(app, integration_id, message_id);
    change.parcel.event_name = "purchase".into();
    change.parcel.call = Some(CallKind::OrderCreate);
    change.order_key = Some(order_id.into());
    change.lease = Some(IngestLease {
        token: button_delivery::domain::LeaseToken::new(),
        until: button_delivery::domain::clock::now_ms() + 60_000,
    });
    change
}

/// `change` as its lane holds it once ingest leased it.
fn leased_at_ingest(
    change: &button_delivery::store::ingest::NewDelivery,
) -> button_delivery::store::queue::Leased {
    button_delivery::store::queue::Leased {
        parcel: change.parcel.clone(),
        attempts: 0,
        url: change.url.clone(),
        body: change.body.clone(),
        lease_token: change.lease.as_ref().unwrap().token.clone(),
        order_key: change.order_key.clone(),
    }
}

/// An order's changes go to Button in the order they were committed, whatever their
/// ids say. Ids are made before the write reaches the store (on different threads, or
/// replicas), so a change committed second can have the smaller id; here it does,
/// and it waits for the first, in flight, to be delivered.
#[tokio::test]
async fn an_orders_changes_go_in_the_order_committed_not_that_of_their_ids() {
    use button_delivery::domain::Outcome;

    let app = TestApp::spawn().await;
    let id = paused_integration(&app).await;
    let store = app.open_store().await;
    let second = order_change(&app, &id, "m-commit-2", "order-commit");
    let first = order_change(&app, &id, "m-commit-1", "order-commit");
    assert!(second.parcel.id < first.parcel.id);
    let written = store
        .ingest(vec![stored_event("m-commit-1", vec![first.clone()])])
        .await
        .unwrap();
    assert_eq!(written[0].1.leased, std::slice::from_ref(&first.parcel.id));
    let written = store
        .ingest(vec![stored_event("m-commit-2", vec![second.clone()])])
        .await
        .unwrap();
    assert_eq!(
        written[0].1.deliveries,
        std::slice::from_ref(&second.parcel.id)
    );
    assert!(
        written[0].1.leased.is_empty(),
        "the change committed second was sent while the first was in flight"
    );
    let held = lease(&store, &id, Duration::from_secs(60)).await;
    assert!(held.taken.is_empty(), "{:?}", held.taken);
    assert_eq!(held.next_due, Some(first.lease.as_ref().unwrap().until));
    let behind = store
        .held_behind(&id, "order-commit", &first.parcel.id)
        .await
        .unwrap();
    let behind: Vec<_> = behind.iter().map(|p| p.id.clone()).collect();
    assert_eq!(behind, std::slice::from_ref(&second.parcel.id));

    let lost = record_attempt(&store, &leased_at_ingest(&first), Outcome::Delivered).await;
    assert_eq!(lost, 0);
    let next = lease(&store, &id, Duration::from_secs(60)).await;
    let next: Vec<_> = next.taken.iter().map(|l| l.parcel.id.clone()).collect();
    assert_eq!(
        next,
        std::slice::from_ref(&second.parcel.id),
        "the second goes once the first is delivered"
    );
    store.close().await;
}

/// Changes of one order written at the same moment by several replicas (each its own
/// handle on the store, with its own connections): exactly one goes in flight, the
/// others wait for it. Twenty orders, eight writers each.
#[tokio::test]
async fn changes_of_one_order_written_at_once_by_several_replicas_go_one_at_a_time() {
    let app = TestApp::spawn().await;
    let id = paused_integration(&app).await;
    let mut stores = Vec::new();
    for _ in 0..8 {
        stores.push(app.open_store().await);
    }
    for round in 0..20 {
        let order = format!("order-race-{round}");
        let mut writes = tokio::task::JoinSet::new();
        for (i, store) in stores.iter().enumerate() {
            let message_id = format!("m-race-{round}-{i}");
            let change = order_change(&app, &id, &message_id, &order);
            let store = store.clone();
            writes.spawn(async move {
                let written = store
                    .ingest(vec![stored_event(&message_id, vec![change])])
                    .await
                    .unwrap();
                written[0].1.leased.len()
            });
        }
        let leased: usize = writes.join_all().await.into_iter().sum();
        assert_eq!(
            leased, 1,
            "round {round}: {leased} changes of one order in flight at once"
        );
        let lane = lease(&stores[round % 8], &id, Duration::from_secs(60)).await;
        assert!(
            lane.taken.is_empty(),
            "round {round}: a lane's lease took a change held behind the one in flight"
        );
    }
    for store in stores {
        store.close().await;
    }
}

/// A delivery whose integration is gone by the time of the write (deleted on another
/// replica after this one routed the event) is not written; the event and its
/// deliveries to integrations that exist are.
#[tokio::test]
async fn ingest_writes_no_delivery_to_an_integration_deleted_before_the_write() {
    use button_delivery::domain::IntegrationId;

    let app = TestApp::spawn().await;
    let live: IntegrationId = app.install().await.parse().unwrap();
    let gone = IntegrationId::new();
    let store = app.open_store().await;
    let to_live = pending_delivery(&app, &live, "m-gone-1");
    let to_gone = pending_delivery(&app, &gone, "m-gone-1");
    let record = stored_event("m-gone-1", vec![to_gone, to_live.clone()]);
    let written = store.ingest(vec![record]).await.unwrap();
    assert_eq!(written.len(), 1);
    let (_, written) = &written[0];
    assert!(written.new_event);
    assert_eq!(written.deliveries, vec![to_live.parcel.id.clone()]);
    assert_eq!(app.count_rows("events").await, 1);
    assert_eq!(app.count_rows("deliveries").await, 1);
}

/// A new integration whose lane is paused, so that only the test leases its
/// deliveries.
async fn paused_integration(app: &TestApp) -> button_delivery::domain::IntegrationId {
    let id = app.install().await;
    let (status, _) = app
        .admin("POST", &format!("/v1/admin/integrations/{id}/pause"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    id.parse().unwrap()
}

/// Queues one delivery for a new integration whose lane is paused (so that only the
/// test leases it), through a second handle on the store as another replica would.
async fn one_delivery_to_lease(
    app: &TestApp,
) -> (
    button_delivery::store::Store,
    button_delivery::domain::IntegrationId,
    button_delivery::domain::DeliveryId,
) {
    let id = paused_integration(app).await;
    let store = app.open_store().await;
    let delivery = pending_delivery(app, &id, "m-lease-1");
    let delivery_id = delivery.parcel.id.clone();
    store
        .ingest(vec![stored_event("m-lease-1", vec![delivery])])
        .await
        .unwrap();
    (store, id, delivery_id)
}

/// Leases what is due of `integration_id` for `lease_for`, under a new token, 10 at
/// most.
async fn lease(
    store: &button_delivery::store::Store,
    integration_id: &button_delivery::domain::IntegrationId,
    lease_for: Duration,
) -> button_delivery::store::queue::Lease {
    use button_delivery::store::queue::LeaseAsk;
    let ask = LeaseAsk {
        limit: 10,
        lease_for,
        token: button_delivery::domain::LeaseToken::new(),
    };
    store.lease(integration_id, &ask).await.unwrap()
}

/// Records an attempt of `leased` that ended `outcome` (a retry an hour later, or its
/// end) as the recorder would; answers how many leases were lost (0 or 1).
async fn record_attempt(
    store: &button_delivery::store::Store,
    leased: &button_delivery::store::queue::Leased,
    outcome: button_delivery::domain::Outcome,
) -> u64 {
    use button_delivery::domain::{DeliveryState, Outcome};
    let now = button_delivery::domain::clock::now_ms();
    let (state, next) = match outcome {
        Outcome::RetryScheduled => (DeliveryState::Pending, Some(now + 3_600_000)),
        Outcome::Delivered => (DeliveryState::Delivered, None),
        other => panic!("no finish written for {other}"),
    };
    let finish = button_delivery::store::queue::Finish {
        delivery_id: leased.parcel.id.clone(),
        lease_token: leased.lease_token.clone(),
        state,
        count_attempt: true,
        available_at: next.unwrap_or(now),
        log: button_delivery::records::attempt(
            &leased.parcel,
            leased.attempts + 1,
            outcome,
            Err("the test's attempt"),
            next,
            now,
        ),
        order: None,
    };
    let (_, lost) = store.finish(vec![finish], now).await.unwrap();
    lost
}

/// An attempt that outlived its lease (a replica stalled past it) does not undo what
/// the newer lease's attempt records: its outcome is counted as lost and the delivery
/// stays with the newer lease, while its entry is still written (it happened).
#[tokio::test]
async fn a_finish_whose_lease_expired_leaves_the_newer_lease_alone() {
    use button_delivery::domain::Outcome;

    let app = TestApp::spawn().await;
    let (store, id, delivery_id) = one_delivery_to_lease(&app).await;
    let stale = lease(&store, &id, Duration::from_millis(1)).await.taken;
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].parcel.id, delivery_id);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let before = button_delivery::domain::clock::now_ms();
    let fresh = lease(&store, &id, Duration::from_secs(60)).await;
    let after = button_delivery::domain::clock::now_ms();
    // Taking fewer than asked, the lease says when the next delivery falls due: the
    // one it took, when its lease ends.
    assert!(fresh.drained);
    let due = fresh
        .next_due
        .expect("the taken delivery is due again at its expiry");
    assert!(
        (before + 60_000..=after + 60_000).contains(&due),
        "next due {due}, leased for 60 s between {before} and {after}"
    );
    let fresh = fresh.taken;
    assert_eq!(fresh.len(), 1, "the expired lease is taken again");
    assert_eq!(fresh[0].parcel.id, delivery_id);
    assert_ne!(fresh[0].lease_token, stale[0].lease_token);

    let lost = record_attempt(&store, &stale[0], Outcome::RetryScheduled).await;
    assert_eq!(lost, 1, "the stale attempt's lease was lost");
    let again = lease(&store, &id, Duration::from_secs(60)).await;
    assert!(
        again.taken.is_empty(),
        "the delivery is still leased to the newer lease, not due again"
    );
    assert_eq!(again.next_due, Some(due), "due at the newer lease's expiry");
    let lost = record_attempt(&store, &fresh[0], Outcome::Delivered).await;
    assert_eq!(lost, 0, "the newer lease still held the delivery");
    let done = lease(&store, &id, Duration::from_secs(60)).await;
    assert!(done.taken.is_empty() && done.drained);
    assert_eq!(done.next_due, None, "nothing is pending");
    assert_eq!(app.queue_depth(id.as_str()).await, 0);
    let outcomes: Vec<Value> = app
        .logs(id.as_str(), "")
        .await
        .iter()
        .map(|l| l["outcome"].clone())
        .collect();
    assert_eq!(outcomes, [json!("delivered"), json!("retry_scheduled")]);
}

/// An attempt whose integration was deleted meanwhile (on this replica or another)
/// leaves nothing behind: no delivery, no entry, no count.
#[tokio::test]
async fn a_finish_for_an_integration_deleted_meanwhile_writes_nothing() {
    use button_delivery::domain::Outcome;

    let app = TestApp::spawn().await;
    let (store, id, _) = one_delivery_to_lease(&app).await;
    let leased = lease(&store, &id, Duration::from_secs(60)).await.taken;
    assert_eq!(leased.len(), 1);
    let (status, _) = app
        .admin(
            "DELETE",
            &format!("/v1/admin/integrations/{id}?force=true"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let lost = record_attempt(&store, &leased[0], Outcome::Delivered).await;
    assert_eq!(lost, 1);
    assert_eq!(app.count_rows("deliveries").await, 0);
    assert_eq!(app.count_rows("live_logs").await, 0, "no orphan entry");
    assert_eq!(app.count_rows("outcome_counts").await, 0, "no orphan count");
}

/// A write larger than one statement holds on PostgreSQL (500 events to three
/// integrations: 1,500 deliveries) is stored whole and answered right, and its
/// repeat is known for one.
#[tokio::test]
async fn a_write_too_large_for_one_statement_is_stored_whole() {
    let app = TestApp::spawn().await;
    let mut ids = vec![app.install().await];
    for application in ["app-large2", "app-large3"] {
        ids.push(app.install_with(&app.api_key, application).await);
    }
    let batch: Vec<Value> = (0..500)
        .map(|i| product_view(&format!("large-{i}")))
        .collect();
    let (status, summary) = app.send_batch(batch.clone()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{summary}");
    assert_eq!(summary["accepted"], 500);
    assert_eq!(summary["deliveries_queued"], 1500);
    let (status, again) = app.send_batch(batch).await;
    assert_eq!(status, StatusCode::OK, "only duplicates: {again}");
    assert_eq!(again["duplicates"], 500, "{again}");
    assert_eq!(again["deliveries_queued"], 0, "{again}");
    let received = app.fake.wait_for(1500, Duration::from_secs(30)).await;
    assert_eq!(received.len(), 1500, "each delivery reached Button once");
    for id in &ids {
        app.settled(id).await;
    }
    assert_eq!(app.fake.received().len(), 1500, "and nothing twice");
}
