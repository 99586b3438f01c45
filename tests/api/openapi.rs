//! `/openapi.json` is a valid OpenAPI 3 document listing every route the router serves.

use reqwest::StatusCode;

use crate::helpers::TestApp;

/// Every route the service serves. A route added to the router must be added here, and
/// the test proves the document lists it; the document is generated from the same
/// registrations as the router, so a route it lists is also served (checked below).
/// The console's static files (`/console/`) are served beside the API, not described
/// in it (tests/api/console.rs).
const ROUTES: &[(&str, &str)] = &[
    ("get", "/v1/admin/integration-catalog"),
    ("get", "/v1/admin/integration-catalog/{key}"),
    ("post", "/v1/admin/integration-catalog/{key}/install"),
    ("get", "/v1/admin/integrations"),
    ("get", "/v1/admin/integrations/stats"),
    ("get", "/v1/admin/integrations/{id}"),
    ("patch", "/v1/admin/integrations/{id}"),
    ("delete", "/v1/admin/integrations/{id}"),
    ("post", "/v1/admin/integrations/{id}/pause"),
    ("post", "/v1/admin/integrations/{id}/resume"),
    ("get", "/v1/admin/integrations/{id}/stats"),
    ("get", "/v1/admin/integrations/{id}/blueprint"),
    ("put", "/v1/admin/integrations/{id}/blueprint"),
    ("post", "/v1/admin/integrations/{id}/blueprint/reset"),
    ("post", "/v1/admin/integrations/{id}/preview"),
    ("post", "/v1/admin/integrations/{id}/test-event"),
    ("get", "/v1/admin/integrations/{id}/logs"),
    ("get", "/v1/admin/integrations/{id}/logs/stream"),
    ("post", "/v1/admin/integrations/{id}/logs/replay"),
    ("get", "/v1/admin/integrations/{id}/logs/{log_id}"),
    ("get", "/v1/admin/integrations/{id}/dead-letters"),
    ("post", "/v1/admin/integrations/{id}/dead-letters/replay"),
    ("post", "/v1/admin/integrations/{id}/dead-letters/discard"),
    ("get", "/v1/admin/sources"),
    ("post", "/v1/admin/sources"),
    ("get", "/v1/admin/sources/{id}"),
    ("delete", "/v1/admin/sources/{id}"),
    ("post", "/v1/admin/sources/{id}/rotate-token"),
    (
        "put",
        "/v1/admin/sources/{id}/integrations/{integration_id}",
    ),
    (
        "delete",
        "/v1/admin/sources/{id}/integrations/{integration_id}",
    ),
    ("post", "/v1/events"),
    ("post", "/v1/events/batch"),
    ("post", "/v1/integrations/{id}/events"),
    ("post", "/v1/integrations/{id}/events/batch"),
    ("post", "/v1/batch"),
    ("post", "/v1/track"),
    ("post", "/v1/page"),
    ("post", "/v1/screen"),
    ("post", "/v1/identify"),
    ("post", "/v1/group"),
    ("post", "/v1/alias"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
];

#[tokio::test]
async fn the_openapi_document_is_valid_and_lists_exactly_the_served_routes() {
    let app = TestApp::spawn().await;
    let (status, doc) = app.request("GET", "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let parsed: oas3::OpenApiV3Spec =
        serde_json::from_value(doc.clone()).expect("a valid OpenAPI 3.1 document");
    assert!(parsed.openapi.starts_with("3."), "{}", parsed.openapi);

    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in parsed.paths.iter().flatten() {
        for (method, op) in item.methods() {
            documented.push((method.as_str().to_lowercase(), path.clone()));
            assert!(
                !op.responses.as_ref().is_none_or(|r| r.is_empty()),
                "{method} {path} documents its responses"
            );
        }
    }
    documented.sort();
    let mut expected: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    expected.sort();
    assert_eq!(documented, expected);

    // Every response is described, and every reference resolves.
    let text = doc.to_string();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (code, response) in op["responses"].as_object().unwrap() {
                assert!(
                    response["description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty()),
                    "{method} {path} {code} has a description"
                );
            }
        }
    }
    for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = reference.split('"').next().unwrap();
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "schema {name} is defined"
        );
    }
    for scheme in ["admin_token", "ingest_token"] {
        assert!(doc["components"]["securitySchemes"].get(scheme).is_some());
    }
    assert_eq!(
        doc,
        serde_json::from_str::<serde_json::Value>(
            &button_delivery::http::openapi().to_json().unwrap()
        )
        .unwrap(),
        "`button-delivery openapi` prints the served document"
    );

    // Every documented route is served (none falls through to the 404 fallback).
    let id = app.install().await;
    for (method, path) in ROUTES {
        let concrete = path
            .replace("{key}", "button")
            .replace("{id}", &id)
            .replace("{log_id}", "log_01jzzzzzzzzzzzzzzzzzzzzzzz");
        let mut request = app
            .http
            .request(method.to_uppercase().parse().unwrap(), app.url(&concrete));
        if concrete.contains("/v1/admin/") {
            request = request.bearer_auth(&app.admin_token);
        } else if concrete.contains("/events") {
            request = request.bearer_auth(&app.ingest_token);
        }
        if *method == "delete" {
            continue; // deleting would break the other calls; its route is proven by the admin tests
        }
        let response = request
            .header("content-type", "application/json")
            .body("{}")
            .timeout(std::time::Duration::from_millis(500))
            .send()
            .await;
        let Ok(response) = response else { continue }; // the SSE stream keeps the response open
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let fell_through = status == StatusCode::NOT_FOUND
            && body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("route"));
        assert!(
            !fell_through && status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path} is served ({status} {body})"
        );
    }
}

/// Where the document bounds a value, the server takes exactly that: `limit` is 1 to
/// 100 on every list (schemathesis found the document saying 0), and an event body
/// is the envelope ingest checks, not any object.
#[tokio::test]
async fn the_documents_bounds_are_the_servers() {
    let app = TestApp::spawn().await;
    let (_, doc) = app.request("GET", "/openapi.json", None, None).await;

    let mut lists = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let Some(get) = item.get("get") else { continue };
        let params = get["parameters"].as_array().cloned().unwrap_or_default();
        let Some(limit) = params.iter().find(|p| p["name"] == "limit") else {
            continue;
        };
        lists += 1;
        assert_eq!(limit["in"], "query", "{path}");
        assert_eq!(limit["schema"]["minimum"], 1, "{path}: {limit}");
        assert_eq!(limit["schema"]["maximum"], 100, "{path}: {limit}");
    }
    assert_eq!(
        lists, 5,
        "integrations, their stats, sources, logs and dead letters are lists"
    );
    for (limit, expected) in [
        ("0", StatusCode::BAD_REQUEST),
        ("1", StatusCode::OK),
        ("100", StatusCode::OK),
        ("101", StatusCode::BAD_REQUEST),
    ] {
        let (status, body) = app
            .admin(
                "GET",
                &format!("/v1/admin/integrations?limit={limit}"),
                None,
            )
            .await;
        assert_eq!(status, expected, "limit={limit}: {body}");
    }

    // The event body: messageId always, event for a track event; {} is not an event.
    let event = &doc["components"]["schemas"]["SignalEvent"]["oneOf"];
    assert_eq!(
        event[0]["required"],
        serde_json::json!(["messageId", "event"])
    );
    assert_eq!(
        event[1]["required"],
        serde_json::json!(["messageId", "type"])
    );
    let post = |body: serde_json::Value| {
        let app = &app;
        async move {
            app.request("POST", "/v1/events", Some(&app.ingest_token), Some(body))
                .await
        }
    };
    let (status, body) = post(serde_json::json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = post(serde_json::json!({"messageId": "m-1", "event": "x"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = post(serde_json::json!({"messageId": "m-2", "type": "page"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    // Every route documents the answers the HTTP layer can give.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for status in ["414", "431"] {
                assert!(
                    op["responses"].get(status).is_some(),
                    "{method} {path} documents {status}"
                );
            }
        }
    }
}
