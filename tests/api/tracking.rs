//! The Segment / RudderStack tracking API: the official SDKs (Python and Node) as real
//! clients, and the wire format's corners (Basic auth, writeKey in the body, gzip, the
//! single calls, errors the SDKs can parse). On both backends.
//!
//! The SDK tests need the SDKs: `BUTTON_TEST_SDK_PYTHON` (a Python with
//! segment-analytics-python) and `BUTTON_TEST_SDK_NODE_MODULES` (a node_modules with
//! @segment/analytics-node); `.ci/run` installs both and sets them.

use std::io::Write;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, purchase};

const WAIT: Duration = Duration::from_secs(10);

/// What Button must receive for the SDK scripts' three events (tag `tag`).
fn expected(tag: &str) -> Vec<(String, Value)> {
    let product = |name: &str| {
        json!({
            "application_id": "app-abc123def456", "btn_ref": format!("srctok-{tag}"),
            "session_id": null, "ifa": null,
            "activity_data": {"name": name, "products": [{
                "id": "sku-1", "upc": null, "name": "Blue shirt", "currency": "USD", "value": 2999,
                "quantity": 2, "url": null, "categories": ["Apparel"], "attributes": {}}]}
        })
    };
    vec![
        (
            "/v1/order".to_owned(),
            json!({
                "order_id": format!("{tag}-o1"), "total": 5998, "currency": "USD",
                "purchase_date": "2024-05-01T10:00:00Z", "btn_ref": format!("srctok-{tag}"),
                "customer": {"id": "user-1"},
                "line_items": [{"identifier": "sku-1", "total": 5998, "amount": 2999, "quantity": 2,
                                "description": "Blue shirt", "sku": "SKU-1", "category": ["Apparel"]}]
            }),
        ),
        ("activity".to_owned(), product("add-to-cart")),
        ("activity".to_owned(), product("product-viewed")),
    ]
}

async fn source_token(app: &TestApp, integration: &str) -> String {
    let (status, body) = app
        .admin(
            "POST",
            "/v1/admin/sources",
            Some(json!({"name": "web", "integrations": [integration]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

/// Runs an SDK script against a fresh service and checks what Button received.
async fn sdk_delivers(tag: &str, command: std::process::Command) {
    let app = TestApp::spawn().await;
    let id = app.install().await;
    let token = source_token(&app, &id).await;
    let mut command = command;
    command
        .env("HOST", app.url(""))
        .env("WRITE_KEY", &token)
        .env("TAG", tag);
    // Off the test's runtime thread, which serves the service meanwhile.
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("the SDK script runs");
    assert!(
        output.status.success(),
        "{tag}: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let received = app.fake.wait_for(3, WAIT).await;
    app.settled(&id).await;
    assert_eq!(
        app.fake.received().len(),
        3,
        "{tag}: exactly three requests"
    );
    for (path, body) in expected(tag) {
        let found = received
            .iter()
            .any(|r| r.json.as_ref() == Some(&body) && (path == "activity" || r.path == path));
        assert!(
            found,
            "{tag}: Button did not receive {body:#}\nit received: {:#?}",
            received.iter().map(|r| r.json.clone()).collect::<Vec<_>>()
        );
    }
    // The identify was stored and counted, not sent.
    let logs = app.logs(&id, "").await;
    assert_eq!(logs.len(), 3, "{logs:?}");
    app.assert_secrets_absent(&[&token]);
}

#[tokio::test]
async fn segments_python_sdk_delivers_orders_and_activity() {
    let Ok(python) = std::env::var("BUTTON_TEST_SDK_PYTHON") else {
        eprintln!("the Python SDK test needs BUTTON_TEST_SDK_PYTHON (see .ci/run)");
        return;
    };
    let mut command = std::process::Command::new(python);
    command.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/sdk/segment_python.py"
    ));
    sdk_delivers("py", command).await;
}

#[tokio::test]
async fn segments_node_sdk_delivers_orders_and_activity() {
    let Ok(modules) = std::env::var("BUTTON_TEST_SDK_NODE_MODULES") else {
        eprintln!("the Node SDK test needs BUTTON_TEST_SDK_NODE_MODULES (see .ci/run)");
        return;
    };
    let mut command = std::process::Command::new("node");
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/sdk/segment_node.cjs"
        ))
        .env("NODE_PATH", modules);
    sdk_delivers("node", command).await;
}

fn gzip(body: &Value) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(body.to_string().as_bytes()).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn the_wire_format_is_read_as_the_sdks_write_it() {
    let app = TestApp::spawn().await;
    let id = app.install().await;
    let token = source_token(&app, &id).await;
    let basic = format!("Basic {}", STANDARD.encode(format!("{token}:")));
    let mut order = purchase("wire-1");
    order["event"] = json!("Order Completed");

    // A gzipped batch with Basic auth: 200 {"success": true}, once committed.
    let response = app
        .http
        .post(app.url("/v1/batch"))
        .header("authorization", &basic)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gzip(
            &json!({"batch": [order], "sentAt": "2024-05-01T10:00:01Z"}),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(body["accepted"], 1, "{body}");
    assert_eq!(body["results"][0]["integrations"], json!([id]));

    // The write key in the body; a single call without its type.
    let mut view = crate::helpers::product_view("wire-2");
    view.as_object_mut().unwrap().remove("type");
    view["writeKey"] = json!(token);
    let (status, body) = app.request("POST", "/v1/track", None, Some(view)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["results"][0]["deliveries_queued"], 1, "{body}");
    for call in ["page", "screen", "identify", "group", "alias"] {
        let message = json!({"messageId": format!("wire-{call}"), "userId": "u1", "writeKey": token,
                             "timestamp": "2024-05-01T10:00:00Z"});
        let (status, body) = app
            .request("POST", &format!("/v1/{call}"), None, Some(message))
            .await;
        assert_eq!(status, StatusCode::OK, "{call}: {body}");
        assert_eq!(body["accepted"], 1, "{call}: {body}");
        assert_eq!(
            body["results"][0]["deliveries_queued"], 0,
            "{call}: stored, not sent"
        );
    }
    app.fake.wait_for(2, WAIT).await;
    app.settled(&id).await;
    assert_eq!(
        app.fake.received().len(),
        2,
        "the order and the product view"
    );

    // Errors the SDKs parse: code and message at the top, and the right class of
    // status (4xx: do not retry).
    let (status, body) = app
        .request(
            "POST",
            "/v1/batch",
            None,
            Some(json!({"batch": [purchase("wire-3")]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["success"], false);
    assert_eq!(body["code"], "unauthorized");
    assert!(
        body["message"].as_str().unwrap().contains("write key"),
        "{body}"
    );
    let (status, body) = app
        .request(
            "POST",
            "/v1/batch",
            Some(&token),
            Some(json!({"batch": [{"type": "track", "messageId": "wire-4"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "invalid_request");
    assert_eq!(
        body["error"]["details"][0]["field"], "batch[0].event",
        "{body}"
    );
    let response = app
        .http
        .post(app.url("/v1/batch"))
        .header("authorization", &basic)
        .header("content-encoding", "gzip")
        .body("not gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "invalid_gzip", "{body}");
    app.assert_secrets_absent(&[&token]);
}
