//! The blueprint over HTTP: golden events in both dialects and their exact Button
//! requests (Preview), blueprint replace/reset/validation, and Test Event.

use std::path::PathBuf;
use std::time::Duration;

use fake_button::{Reply, Rule, When};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestApp;

pub struct Golden {
    pub name: String,
    pub event: Value,
    pub expected: Value,
}

pub fn golden_fixtures() -> Vec<Golden> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let doc: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            Golden {
                name: path.file_name().unwrap().to_string_lossy().into_owned(),
                event: doc["event"].clone(),
                expected: doc["expected"].clone(),
            }
        })
        .collect()
}

/// The URL a golden fixture's request goes to on this app's fake Button.
pub fn expected_url(app: &TestApp, which: &str) -> String {
    match which {
        "orders" => format!("{}/v1/order", app.fake.orders_base_url()),
        "activity" => app
            .fake
            .activity_url_template()
            .replace("{application_id}", "app-abc123def456"),
        other => panic!("unknown url kind {other}"),
    }
}

#[tokio::test]
async fn golden_events_preview_as_their_exact_button_requests() {
    let app = TestApp::spawn().await;
    let id = app.install().await;
    let fixtures = golden_fixtures();
    assert!(fixtures.len() >= 12);
    for golden in fixtures {
        let (status, preview) = app
            .admin(
                "POST",
                &format!("/v1/admin/integrations/{id}/preview"),
                Some(golden.event.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{}: {preview}", golden.name);
        let expected = &golden.expected;
        assert_eq!(
            preview["outcome"], expected["outcome"],
            "{}: {preview:#}",
            golden.name
        );
        match expected["outcome"].as_str().unwrap() {
            "request" => {
                let request = &preview["request"];
                assert_eq!(request["method"], expected["method"], "{}", golden.name);
                assert_eq!(
                    request["url"],
                    expected_url(&app, expected["url"].as_str().unwrap()),
                    "{}",
                    golden.name
                );
                assert_eq!(
                    request["body"], expected["body"],
                    "{}: body differs\n got: {:#}\nwant: {:#}",
                    golden.name, request["body"], expected["body"]
                );
                assert_eq!(request["headers"]["content-type"], "application/json");
                let auth = request["headers"].get("authorization");
                if expected["url"] == "orders" {
                    assert_eq!(
                        auth,
                        Some(&json!("Basic ***")),
                        "{}: orders carry the (redacted) key",
                        golden.name
                    );
                } else {
                    assert_eq!(
                        auth, None,
                        "{}: the activity call never carries the key",
                        golden.name
                    );
                }
                let warned: Vec<&str> = preview["warnings"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|w| w["field"].as_str().unwrap())
                    .collect();
                let want: Vec<&str> = expected["warnings"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|w| w.as_str().unwrap())
                    .collect();
                assert_eq!(warned, want, "{}", golden.name);
                for w in preview["warnings"].as_array().unwrap() {
                    assert!(
                        w["hint"]
                            .as_str()
                            .unwrap()
                            .contains("Conversions not attributed"),
                        "{}",
                        golden.name
                    );
                }
            }
            "mapping_failed" => {
                let fields: Vec<&str> = preview["errors"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["field"].as_str().unwrap())
                    .collect();
                let want: Vec<&str> = expected["errors"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e.as_str().unwrap())
                    .collect();
                assert_eq!(fields, want, "{}: {preview:#}", golden.name);
                if let Some(hint) = expected["hint"].as_str() {
                    assert!(
                        preview["errors"][0]["hint"]
                            .as_str()
                            .unwrap_or_default()
                            .contains(hint),
                        "{}: {preview:#}",
                        golden.name
                    );
                }
                assert_eq!(preview["request"], Value::Null);
            }
            "filtered" => assert!(
                preview["reason"].as_str().unwrap().contains("consent"),
                "{}",
                golden.name
            ),
            other => panic!("{}: unknown outcome {other}", golden.name),
        }
    }
    // Preview sends nothing.
    assert!(app.fake.received().is_empty());
}

#[tokio::test]
async fn preview_refuses_what_is_not_an_event() {
    let app = TestApp::spawn().await;
    let id = app.install().await;
    let (status, body) = app
        .admin(
            "POST",
            &format!("/v1/admin/integrations/{id}/preview"),
            Some(json!({"event": "purchase"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["details"][0]["field"], "messageId");
    let (status, body) = app
        .admin(
            "POST",
            &format!("/v1/admin/integrations/{id}/preview"),
            Some(json!({"type": "track", "event": "signup", "messageId": "m"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["outcome"], "not_subscribed");
}

#[tokio::test]
async fn a_blueprint_can_be_replaced_with_aliases_and_reset() {
    let app = TestApp::spawn().await;
    let id = app.install().await;
    let path = format!("/v1/admin/integrations/{id}/blueprint");
    let original = app.get(&path).await;
    let mut custom = original.clone();
    for (i, aliases) in [
        (0, ["order_completed", "Checkout Done"]),
        (1, ["product_added", "Cart Add"]),
        (2, ["product_viewed", "item_seen"]),
    ] {
        let events = custom["mappings"][i]["events"].as_array_mut().unwrap();
        events.extend(aliases.iter().map(|a| json!(a)));
    }
    let (status, stored) = app.admin("PUT", &path, Some(custom.clone())).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored, custom);
    assert_eq!(app.get(&path).await, custom);

    let mut event = crate::helpers::purchase("alias-1");
    event["event"] = json!("Checkout Done");
    let (_, preview) = app
        .admin(
            "POST",
            &format!("/v1/admin/integrations/{id}/preview"),
            Some(event),
        )
        .await;
    assert_eq!(preview["outcome"], "request", "{preview}");
    assert_eq!(preview["request"]["body"]["order_id"], "order-alias-1");
    let mut view = crate::helpers::product_view("alias-2");
    view["event"] = json!("item_seen");
    let (_, preview) = app
        .admin(
            "POST",
            &format!("/v1/admin/integrations/{id}/preview"),
            Some(view),
        )
        .await;
    assert_eq!(
        preview["request"]["body"]["activity_data"]["name"],
        "product-viewed"
    );

    let (status, reset) = app.admin("POST", &format!("{path}/reset"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reset, original);
    let mut event = crate::helpers::purchase("alias-3");
    event["event"] = json!("order_completed");
    let (_, preview) = app
        .admin(
            "POST",
            &format!("/v1/admin/integrations/{id}/preview"),
            Some(event),
        )
        .await;
    assert_eq!(preview["outcome"], "not_subscribed");
}

#[tokio::test]
async fn a_bad_blueprint_is_refused_and_the_old_one_kept() {
    let app = TestApp::spawn().await;
    let id = app.install().await;
    let path = format!("/v1/admin/integrations/{id}/blueprint");
    let original = app.get(&path).await;
    let mut bad = original.clone();
    bad["mappings"][0]["fields"][0]["transform"] = json!(["string", "rot13"]);
    bad["mappings"][1]["fields"][0]["from"] = json!("config..application_id");
    let fields = bad["mappings"][0]["fields"].as_array_mut().unwrap();
    fields.retain(|f| f["to"] != "total");
    let (status, body) = app.admin("PUT", &path, Some(bad)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let at: Vec<&str> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        at,
        [
            "mappings[0].fields[0].transform[1]",
            "mappings[1].fields[0].from"
        ],
        "{body:#}"
    );
    assert!(
        body["error"]["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("unknown transform \"rot13\"")
    );

    let mut missing_total = original.clone();
    missing_total["mappings"][0]["fields"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f["to"] != "total");
    let (status, body) = app.admin("PUT", &path, Some(missing_total)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["details"][0]["field"], "mappings[0].fields");
    assert!(
        body["error"]["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("order.create needs the field \"total\"")
    );

    let (status, body) = app
        .admin("PUT", &path, Some(json!("not a blueprint")))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(app.get(&path).await, original, "nothing changed");
}

#[tokio::test]
async fn test_event_sends_a_test_purchase_and_records_it() {
    let app = TestApp::spawn().await;
    let id = app.install().await;
    let (status, result) = app
        .admin(
            "POST",
            &format!("/v1/admin/integrations/{id}/test-event"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result["outcome"], "delivered");
    assert_eq!(result["classification"], "delivered");
    assert_eq!(result["status"], "200 OK");
    assert_eq!(result["status_code"], 200);
    assert!(result["latency_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(
        result["response"]["body"]
            .as_str()
            .map(|b| b.contains("\"status\":\"ok\"")),
        Some(true),
        "{result}"
    );
    assert_eq!(result["request"]["headers"]["authorization"], "Basic ***");

    let received = app.fake.received();
    assert_eq!(received.len(), 1);
    let order = received[0].json.as_ref().unwrap();
    let token = order["btn_ref"].as_str().unwrap();
    assert!(
        token.starts_with("fakesrctok-")
            && token.len() == 27
            && token[11..].bytes().all(|b| b.is_ascii_hexdigit()),
        "{token}"
    );
    assert!(order["order_id"].as_str().unwrap().starts_with("test-"));
    assert_eq!(received[0].api_key.as_deref(), Some(app.api_key.as_str()));

    let logs = app.logs(&id, "test=true").await;
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0]["id"], result["log_id"]);
    assert_eq!(logs[0]["test"], true);
    assert_eq!(logs[0]["outcome"], "delivered");
    assert_eq!(logs[0]["status"], "200 OK");
    assert!(app.logs(&id, "test=false").await.is_empty());
    let entry = app
        .get(&format!(
            "/v1/admin/integrations/{id}/logs/{}",
            result["log_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        entry["event"]["event"], "purchase",
        "the event as sent is kept: {entry}"
    );
    app.assert_secrets_absent(&[]);
}

#[tokio::test]
async fn test_event_with_a_wrong_key_shows_buttons_answer_and_the_hint() {
    let app = TestApp::spawn().await;
    let id = app
        .install_with("sk-not-accepted", "app-abc123def456")
        .await;
    let (status, result) = app
        .admin(
            "POST",
            &format!("/v1/admin/integrations/{id}/test-event"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(result["outcome"], "failed");
    assert_eq!(result["classification"], "terminal");
    assert_eq!(result["status"], "401 Unauthorized");
    assert_eq!(result["error"], "Invalid api_key");
    assert!(
        result["hint"]
            .as_str()
            .unwrap()
            .contains("Verify api_key in Button Settings > API Keys"),
        "{result}"
    );
    // A test does not pause the lane.
    let integration = app.get(&format!("/v1/admin/integrations/{id}")).await;
    assert_eq!(integration["status"]["lane"], "active");
}

#[tokio::test]
async fn test_event_takes_a_given_event() {
    let app = TestApp::spawn().await;
    let id = app.install().await;
    let (status, result) = app
        .admin(
            "POST",
            &format!("/v1/admin/integrations/{id}/test-event"),
            Some(json!({"event": crate::helpers::add_to_cart("given")})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result["status"], "200 OK");
    let got = app.fake.wait_for(1, Duration::from_secs(2)).await;
    assert_eq!(got[0].kind, fake_button::Kind::Activity);
    assert!(
        got[0].headers.get("authorization").is_none(),
        "no key to the activity host"
    );
    assert_ne!(result["messageId"], "given", "a test has its own messageId");
    // An event name alone sends a sample event of that name, as the README says.
    let (status, result) = app
        .admin(
            "POST",
            &format!("/v1/admin/integrations/{id}/test-event"),
            Some(json!({"event": "add_to_cart"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result["status"], "200 OK", "{result}");
    assert_eq!(
        result["request"]["body"]["activity_data"]["name"],
        "add-to-cart"
    );
    let got = app.fake.wait_for(2, Duration::from_secs(2)).await;
    assert_eq!(got.len(), 2);

    app.fake.add_rule(Rule::times(
        1,
        When::Any,
        Reply::status(503).retry_after("5"),
    ));
    let (_, result) = app
        .admin(
            "POST",
            &format!("/v1/admin/integrations/{id}/test-event"),
            Some(json!({"event": crate::helpers::product_view("given-2")})),
        )
        .await;
    assert_eq!(result["classification"], "retryable");
    assert_eq!(result["status"], "503 Service Unavailable");

    let (status, body) = app
        .admin(
            "POST",
            &format!("/v1/admin/integrations/{id}/test-event"),
            Some(json!({"event": {"type": "track", "event": "signup"}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["details"][0]["field"], "event.event");
    let (status, body) = app
        .admin(
            "POST",
            &format!("/v1/admin/integrations/{id}/test-event"),
            Some(json!({"evnt": {}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["details"][0]["field"], "evnt");
}

#[tokio::test]
async fn a_blueprint_reads_back_as_it_was_written() {
    let app = TestApp::spawn().await;
    let id = app.install().await;
    let url = app.url(&format!("/v1/admin/integrations/{id}/blueprint"));
    let original = app
        .http
        .get(&url)
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        original.starts_with("{\n  \"version\": 1,"),
        "the default reads as written: {}",
        &original[..40]
    );
    // The operator's own order and layout survive a replace.
    let written = original.replacen("\"version\": 1,", "\"version\":   1,", 1);
    let put = app
        .http
        .put(&url)
        .bearer_auth(&app.admin_token)
        .header("content-type", "application/json")
        .body(written.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    let read = app
        .http
        .get(&url)
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(read, written.trim());
}
