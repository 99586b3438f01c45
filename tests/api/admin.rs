//! The admin side: auth, catalog, install, integration management, persistence.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestApp;

/// Every admin route, with a body where it takes one. `{id}` is an installed
/// integration.
fn admin_routes(id: &str) -> Vec<(&'static str, String)> {
    [
        ("GET", "/v1/admin/integration-catalog"),
        ("GET", "/v1/admin/integration-catalog/button"),
        ("POST", "/v1/admin/integration-catalog/button/install"),
        ("GET", "/v1/admin/integrations"),
        ("GET", "/v1/admin/integrations/{id}"),
        ("PATCH", "/v1/admin/integrations/{id}"),
        ("DELETE", "/v1/admin/integrations/{id}"),
        ("POST", "/v1/admin/integrations/{id}/pause"),
        ("POST", "/v1/admin/integrations/{id}/resume"),
        ("GET", "/v1/admin/integrations/{id}/stats"),
        ("GET", "/v1/admin/integrations/stats"),
        ("GET", "/v1/admin/integrations/{id}/blueprint"),
        ("PUT", "/v1/admin/integrations/{id}/blueprint"),
        ("POST", "/v1/admin/integrations/{id}/blueprint/reset"),
        ("POST", "/v1/admin/integrations/{id}/preview"),
        ("POST", "/v1/admin/integrations/{id}/test-event"),
        ("GET", "/v1/admin/integrations/{id}/logs"),
        ("GET", "/v1/admin/integrations/{id}/logs/stream"),
        (
            "GET",
            "/v1/admin/integrations/{id}/logs/log_01jzzzzzzzzzzzzzzzzzzzzzzz",
        ),
        ("GET", "/v1/admin/integrations/{id}/dead-letters"),
        ("POST", "/v1/admin/integrations/{id}/dead-letters/replay"),
        ("POST", "/v1/admin/integrations/{id}/dead-letters/discard"),
    ]
    .into_iter()
    .map(|(m, p)| (m, p.replace("{id}", id)))
    .collect()
}

#[tokio::test]
async fn every_admin_route_refuses_missing_malformed_and_wrong_tokens() {
    let app = TestApp::spawn().await;
    let id = app.install().await;
    let cases: [(&str, Option<String>); 5] = [
        ("missing", None),
        ("wrong scheme", Some(format!("Basic {}", app.admin_token))),
        ("empty bearer", Some("Bearer ".into())),
        ("wrong token", Some("Bearer not-the-token".into())),
        ("ingest token", Some(format!("Bearer {}", app.ingest_token))),
    ];
    for (method, path) in admin_routes(&id) {
        for (case, header) in &cases {
            let mut request = app.http.request(method.parse().unwrap(), app.url(&path));
            if let Some(h) = header {
                request = request.header("authorization", h);
            }
            let response = request
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {case}"
            );
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            let body: Value = response.json().await.unwrap();
            assert_eq!(
                body["error"]["code"], "unauthorized",
                "{method} {path} with {case}: {body}"
            );
            assert!(
                body["error"]["message"].as_str().unwrap().contains("token"),
                "{body}"
            );
        }
    }
    // The integration is untouched by all those refused calls.
    let (status, _) = app
        .admin("GET", &format!("/v1/admin/integrations/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    app.assert_secrets_absent(&[]);
}

#[tokio::test]
async fn the_catalog_describes_button_as_the_product_page_does() {
    let app = TestApp::spawn().await;
    let list = app.get("/v1/admin/integration-catalog").await;
    assert_eq!(list["has_more"], false);
    let entries = list["data"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    let button = app.get("/v1/admin/integration-catalog/button").await;
    assert_eq!(entries[0], button);
    assert_eq!(button["key"], "button");
    assert_eq!(button["name"], "Button");
    assert_eq!(button["category"], "attribution");
    assert_eq!(button["status"], "ga");
    assert!(button["website"].as_str().unwrap().starts_with("https://"));
    assert!(
        button["description"]
            .as_str()
            .unwrap()
            .contains("mobile commerce attribution")
    );
    let fields = button["config_fields"].as_array().unwrap();
    assert_eq!(fields[0]["key"], "application_id");
    assert_eq!(fields[0]["type"], "string");
    assert_eq!(fields[0]["required"], true);
    assert_eq!(fields[0]["pattern"], "^app-[0-9a-zA-Z]+$");
    assert!(
        fields[0]["help_text"]
            .as_str()
            .unwrap()
            .contains("Settings > Applications")
    );
    assert_eq!(fields[1]["key"], "api_key");
    assert_eq!(fields[1]["type"], "secret");
    assert_eq!(fields[1]["required"], true);
    assert!(
        fields[1]["help_text"]
            .as_str()
            .unwrap()
            .contains("Settings > API Keys")
    );
    assert_eq!(button["variants"][0]["key"], "default");
    assert_eq!(button["delivery_modes"], json!(["server_side"]));
    let events: Vec<&str> = button["event_mappings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["signal_event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["purchase", "add_to_cart", "product_view"]);
    assert_eq!(button["default_blueprint"]["version"], 1);

    let (status, body) = app
        .admin("GET", "/v1/admin/integration-catalog/shopify", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn the_product_pages_install_call_creates_a_ready_integration() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .admin(
            "POST",
            "/v1/admin/integration-catalog/button/install",
            Some(json!({
                "name": "Button",
                "variant": "default",
                "config": {"application_id": "app-abc123def456", "api_key": "your_api_key"},
                "delivery_mode": "server_side"
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap();
    assert!(id.starts_with("int_") && id.len() == 30, "{id}");
    assert_eq!(body["type"], "button");
    assert_eq!(body["name"], "Button");
    assert_eq!(body["variant"], "default");
    assert_eq!(body["delivery_mode"], "server_side");
    assert_eq!(body["enabled"], true);
    assert_eq!(
        body["config"],
        json!({"application_id": "app-abc123def456", "api_key": "***"})
    );
    assert_eq!(body["status"]["lane"], "active");
    let catalog = app.get("/v1/admin/integration-catalog/button").await;
    assert_eq!(
        body["blueprint"], catalog["default_blueprint"],
        "installed with the default blueprint"
    );
    assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(body["created_at"], body["updated_at"]);
    assert!(!body.to_string().contains("your_api_key"));

    let fetched = app.get(&format!("/v1/admin/integrations/{id}")).await;
    assert_eq!(fetched, body);
    app.assert_secrets_absent(&["your_api_key"]);
}

async fn install_error(
    app: &TestApp,
    content_type: Option<&str>,
    body: &str,
) -> (StatusCode, Value) {
    let mut request = app
        .http
        .post(app.url("/v1/admin/integration-catalog/button/install"))
        .bearer_auth(&app.admin_token)
        .body(body.to_owned());
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

fn detail_fields(body: &Value) -> Vec<String> {
    body["error"]["details"]
        .as_array()
        .map(|d| {
            d.iter()
                .map(|e| e["field"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn every_invalid_install_names_its_fields() {
    let app = TestApp::spawn().await;
    let valid = json!({"name": "Button", "variant": "default",
        "config": {"application_id": "app-abc123def456", "api_key": "k"}, "delivery_mode": "server_side"});
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = valid.clone();
        f(&mut v);
        v.to_string()
    };
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "missing application_id",
            with(&|v| {
                v["config"]
                    .as_object_mut()
                    .unwrap()
                    .remove("application_id");
            }),
            vec!["config.application_id"],
        ),
        (
            "malformed application_id",
            with(&|v| v["config"]["application_id"] = json!("abc123")),
            vec!["config.application_id"],
        ),
        (
            "application_id not a string",
            with(&|v| v["config"]["application_id"] = json!(12)),
            vec!["config.application_id"],
        ),
        (
            "missing api_key",
            with(&|v| {
                v["config"].as_object_mut().unwrap().remove("api_key");
            }),
            vec!["config.api_key"],
        ),
        (
            "empty api_key",
            with(&|v| v["config"]["api_key"] = json!("   ")),
            vec!["config.api_key"],
        ),
        (
            "unknown variant",
            with(&|v| v["variant"] = json!("premium")),
            vec!["variant"],
        ),
        (
            "client-side delivery",
            with(&|v| v["delivery_mode"] = json!("client_side")),
            vec!["delivery_mode"],
        ),
        (
            "missing config",
            with(&|v| {
                v.as_object_mut().unwrap().remove("config");
            }),
            vec!["config"],
        ),
        (
            "unknown field",
            with(&|v| v["colour"] = json!("blue")),
            vec!["colour"],
        ),
        (
            "unknown config field",
            with(&|v| v["config"]["apikey"] = json!("x")),
            vec!["config.apikey"],
        ),
        ("empty name", with(&|v| v["name"] = json!("")), vec!["name"]),
        (
            "a control character in the name",
            with(&|v| v["name"] = json!("Button\u{0}EU")),
            vec!["name"],
        ),
        (
            "several at once",
            with(&|v| {
                v["config"] = json!({"application_id": "nope"});
                v["variant"] = json!("x");
            }),
            vec!["variant", "config.application_id", "config.api_key"],
        ),
        ("not an object", "[1,2]".into(), vec!["body"]),
    ];
    for (case, body, fields) in cases {
        let (status, answer) = install_error(&app, Some("application/json"), &body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{case}: {answer}");
        assert_eq!(answer["error"]["code"], "validation_failed", "{case}");
        assert_eq!(detail_fields(&answer), fields, "{case}: {answer}");
    }
    let (_, answer) = install_error(
        &app,
        Some("application/json"),
        &with(&|v| v["delivery_mode"] = json!("client_side")),
    )
    .await;
    let why = answer["error"]["details"][0]["message"].as_str().unwrap();
    assert!(
        why.contains("server_side") && why.contains("api_key must never reach"),
        "{why}"
    );

    let (status, answer) = install_error(&app, Some("application/json"), "{\"name\": ").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"]["code"], "invalid_json");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 1"),
        "{answer}"
    );

    let (status, answer) = install_error(&app, Some("text/plain"), &valid.to_string()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(answer["error"]["code"], "unsupported_media_type");
    let (status, _) = install_error(&app, None, &valid.to_string()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let huge = with(&|v| v["name"] = json!("x".repeat(2 * 1024 * 1024)));
    let (status, answer) = install_error(&app, Some("application/json"), &huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer["error"]["code"], "payload_too_large");

    let (status, answer) = app
        .admin(
            "POST",
            "/v1/admin/integration-catalog/segment/install",
            Some(valid.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("segment")
    );

    // Nothing was created by any of them.
    let list = app.get("/v1/admin/integrations").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn integrations_page_with_signals_cursor() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(app.install().await);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let query = match &cursor {
            Some(c) => format!("?limit=2&cursor={c}"),
            None => "?limit=2".into(),
        };
        let page = app.get(&format!("/v1/admin/integrations{query}")).await;
        pages += 1;
        for item in page["data"].as_array().unwrap() {
            assert_eq!(item["config"]["api_key"], "***");
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        if page["has_more"] == false {
            assert_eq!(page["next_cursor"], Value::Null);
            break;
        }
        cursor = Some(page["next_cursor"].as_str().unwrap().to_owned());
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids, "every integration once, in creation order");

    let all = app.get("/v1/admin/integrations").await;
    assert_eq!(
        all["data"].as_array().unwrap().len(),
        5,
        "default limit is 50"
    );
    for bad in ["limit=0", "limit=101", "limit=abc", "cursor=!!"] {
        let (status, body) = app
            .admin("GET", &format!("/v1/admin/integrations?{bad}"), None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        let field = bad.split('=').next().unwrap();
        assert_eq!(body["error"]["details"][0]["field"], field, "{bad}: {body}");
    }
}

#[tokio::test]
async fn integrations_can_be_renamed_disabled_rotated_and_deleted() {
    let app = TestApp::spawn().await;
    let id = app.install().await;
    let path = format!("/v1/admin/integrations/{id}");
    let before = app.get(&path).await;

    let (status, renamed) = app
        .admin("PATCH", &path, Some(json!({"name": "Button (web)"})))
        .await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(renamed["name"], "Button (web)");
    assert_eq!(renamed["enabled"], true, "a partial update keeps the rest");
    assert_eq!(renamed["config"], before["config"]);
    assert!(renamed["updated_at"].as_str() > before["updated_at"].as_str());

    let (_, disabled) = app
        .admin("PATCH", &path, Some(json!({"enabled": false})))
        .await;
    assert_eq!(disabled["enabled"], false);
    assert_eq!(disabled["name"], "Button (web)");

    let (_, moved) = app
        .admin(
            "PATCH",
            &path,
            Some(json!({"config": {"application_id": "app-zzz999"}})),
        )
        .await;
    assert_eq!(
        moved["config"],
        json!({"application_id": "app-zzz999", "api_key": "***"})
    );

    let new_key = crate::helpers::random_secret("sk-rotated-");
    let (status, rotated) = app
        .admin(
            "PATCH",
            &path,
            Some(json!({"config": {"api_key": new_key}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rotated["config"]["api_key"], "***");
    assert_eq!(rotated["config"]["application_id"], "app-zzz999");
    assert!(!rotated.to_string().contains(&new_key));

    for (body, field) in [
        (json!({"enabled": "yes"}), "enabled"),
        (
            json!({"config": {"application_id": "bad"}}),
            "config.application_id",
        ),
        (json!({"config": {"api_key": ""}}), "config.api_key"),
        (json!({"delivery_mode": "device_mode"}), "delivery_mode"),
        (json!({"variant": "x"}), "variant"),
    ] {
        let (status, answer) = app.admin("PATCH", &path, Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(detail_fields(&answer), [field], "{body}: {answer}");
    }

    let (status, _) = app.admin("DELETE", &path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, answer) = app.admin("GET", &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(answer["error"]["code"], "not_found");
    let (status, _) = app.admin("DELETE", &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app.admin("PATCH", &path, Some(json!({"name": "x"}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.assert_secrets_absent(&[&new_key]);
}

#[tokio::test]
async fn integrations_survive_a_restart_on_the_same_data_directory() {
    let mut app = TestApp::spawn().await;
    let id = app.install().await;
    let new_key = crate::helpers::random_secret("sk-after-");
    app.admin(
        "PATCH",
        &format!("/v1/admin/integrations/{id}"),
        Some(json!({"name": "Kept", "config": {"api_key": new_key}})),
    )
    .await;
    let before = app.get(&format!("/v1/admin/integrations/{id}")).await;
    app.restart().await;
    let after = app.get(&format!("/v1/admin/integrations/{id}")).await;
    assert_eq!(after, before);
    assert_eq!(after["name"], "Kept");
    // The rotated key is the one in use after the restart.
    app.fake.set_api_keys(&[&new_key]);
    let (status, result) = app
        .admin(
            "POST",
            &format!("/v1/admin/integrations/{id}/test-event"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(result["status"], "200 OK", "{result}");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_signals_error_shape() {
    let app = TestApp::spawn().await;
    let (status, body) = app.admin("GET", "/v1/admin/nothing-here", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    let (status, body) = app
        .admin("PUT", "/v1/admin/integration-catalog", None)
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn health_and_readiness_need_no_token() {
    let app = TestApp::spawn().await;
    let (status, body) = app.request("GET", "/healthz", None, None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (status, body) = app.request("GET", "/readyz", None, None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
}

#[tokio::test]
async fn a_request_id_is_returned_and_an_incoming_one_is_kept() {
    let app = TestApp::spawn().await;
    let response = app.http.get(app.url("/healthz")).send().await.unwrap();
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(id.starts_with("req_"), "{id}");
    let response = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "caller-chosen-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "caller-chosen-42");
    // The request's log line carries it.
    assert!(
        crate::helpers::wait_for_log_line(
            |l| l.contains("caller-chosen-42") && l.contains("request finished")
        )
        .await
    );
}

#[tokio::test]
async fn the_masked_key_sent_back_keeps_the_key_and_is_refused_at_install() {
    let app = TestApp::spawn().await;
    let id = app.install().await;
    let path = format!("/v1/admin/integrations/{id}");
    let mut read = app.get(&path).await;
    read["config"]["application_id"] = json!("app-moved1");
    // A client that sends back what it read (with "***") changes only what it edited.
    let (status, updated) = app
        .admin(
            "PATCH",
            &path,
            Some(json!({"config": read["config"].clone()})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["config"]["application_id"], "app-moved1");
    let (_, result) = app.admin("POST", &format!("{path}/test-event"), None).await;
    assert_eq!(
        result["status"], "200 OK",
        "the key is still the real one: {result}"
    );
    let (status, body) = app
        .admin(
            "POST",
            "/v1/admin/integration-catalog/button/install",
            Some(json!({"config": {"application_id": "app-abc123def456", "api_key": "***"}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["details"][0]["field"], "config.api_key");
}

#[tokio::test]
async fn a_malformed_application_id_is_not_repeated_in_the_answer() {
    let app = TestApp::spawn().await;
    let pasted_key = "sk-live-0123456789abcdef";
    let (status, body) = app
        .admin(
            "POST",
            "/v1/admin/integration-catalog/button/install",
            Some(json!({"config": {"application_id": pasted_key, "api_key": "app-abc123def456"}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["error"]["details"][0]["field"],
        "config.application_id"
    );
    assert!(!body.to_string().contains(pasted_key), "{body}");
}

#[tokio::test]
async fn deleting_an_integration_with_queued_work_needs_force_and_says_what_it_dropped() {
    let app = TestApp::spawn().await;
    let id = app.install().await;
    let path = format!("/v1/admin/integrations/{id}");
    let (status, _) = app.admin("POST", &format!("{path}/pause"), None).await;
    assert_eq!(status, StatusCode::OK);
    for n in 0..3 {
        let (status, _) = app
            .send_event(crate::helpers::purchase(&format!("queued-{n}")))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    // Acknowledged work is not dropped silently: 409, and nothing is deleted.
    let (status, answer) = app.admin("DELETE", &path, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"]["code"], "queued_work");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("3 queued deliveries"), "{message}");
    assert!(message.contains("force=true"), "{message}");
    assert_eq!(app.queue_depth(&id).await, 3);
    let (status, answer) = app
        .admin("DELETE", &format!("{path}?force=yes"), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    // Forced, it goes, and the audit line counts what went with it.
    let (status, _) = app
        .admin("DELETE", &format!("{path}?force=true"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = app.admin("GET", &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        crate::helpers::wait_for_log_line(|l| l.contains("integration.deleted")
            && l.contains(&id)
            && l.contains("\"dropped_queued\":3"))
        .await,
        "the audit line carries the counts"
    );
}

#[tokio::test]
async fn the_admin_api_answers_429_with_retry_after_past_its_rate_limit() {
    let app = TestApp::spawn_with(&[("BUTTON_SERVER__ADMIN_RATE_LIMIT", "6")]).await;
    for n in 0..6 {
        let (status, body) = app.admin("GET", "/v1/admin/integrations", None).await;
        assert_eq!(status, StatusCode::OK, "request {n}: {body}");
    }
    let response = app
        .http
        .get(app.url("/v1/admin/integrations"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=10).contains(&wait),
        "6 a minute: one every 10 s ({wait})"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("6 requests a minute")
    );
    // Ingest is not the admin API: it keeps flowing.
    let (status, _) = app.send_event(crate::helpers::purchase("rl-1")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // A wrong token is refused as before (401), not counted against the caller.
    let (status, _) = app
        .request("GET", "/v1/admin/integrations", Some("nope"), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn metrics_take_a_metrics_or_admin_token_unless_made_public() {
    let app = TestApp::spawn_with(&[("BUTTON_AUTH__METRICS_TOKENS", "prom-scrape-token")]).await;
    let status = |token: Option<&'static str>| {
        let request = app.http.get(app.url("/metrics"));
        let request = match token {
            Some(t) => request.bearer_auth(t),
            None => request,
        };
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(status(None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(Some("prom-scrape-token")).await, StatusCode::OK);
    assert_eq!(status(Some("wrong")).await, StatusCode::UNAUTHORIZED);
    let ingest = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth(&app.ingest_token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        ingest.status(),
        StatusCode::UNAUTHORIZED,
        "an ingest token is not enough"
    );
    // The health routes and the API description stay open.
    for path in ["/healthz", "/readyz", "/openapi.json"] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }

    let public = TestApp::spawn_with(&[("BUTTON_SERVER__PUBLIC_METRICS", "true")]).await;
    let response = public
        .http
        .get(public.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
