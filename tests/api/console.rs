//! The ops console's routes: static files with a strict policy, no data, no token, no
//! way around the admin API (the browser tests in tests/console drive the console).

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::json;

use crate::helpers::{TestApp, purchase};

/// A client that shows redirects instead of following them.
fn no_redirects() -> reqwest::Client {
    crate::helpers::client();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// What every console answer carries, whatever its status.
fn assert_secured(what: &str, headers: &HeaderMap) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let policy = header("content-security-policy");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(
            policy.split(';').any(|d| d.trim() == directive),
            "{what}: the policy has {directive:?}: {policy:?}"
        );
    }
    assert!(
        !policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"),
        "{what}: {policy}"
    );
    assert_eq!(header("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(header("referrer-policy"), "no-referrer", "{what}");
    assert_eq!(header("cache-control"), "no-cache", "{what}");
}

#[tokio::test]
async fn console_files_are_served_with_their_types_a_strict_policy_and_entity_tags() {
    let app = TestApp::spawn().await;
    let http = no_redirects();

    let response = http.get(app.url("/console")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(response.headers()["location"], "console/");
    assert_secured("/console", response.headers());

    for (path, content_type) in [
        ("/console/", "text/html; charset=utf-8"),
        ("/console/app.js", "text/javascript; charset=utf-8"),
        ("/console/views/logs.js", "text/javascript; charset=utf-8"),
        ("/console/console.css", "text/css; charset=utf-8"),
        ("/console/icon.svg", "image/svg+xml"),
    ] {
        let response = http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.headers()["content-type"], content_type, "{path}");
        assert_secured(path, response.headers());
        let etag = response.headers()["etag"].to_str().unwrap().to_owned();
        assert!(
            etag.starts_with('"') && etag.len() > 10,
            "{path}: etag {etag}"
        );
        let body = response.text().await.unwrap();
        assert!(!body.is_empty(), "{path}");

        // Unchanged since: 304, with the headers and no body.
        let again = http
            .get(app.url(path))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_secured(path, again.headers());
        assert!(again.text().await.unwrap().is_empty());
    }

    // The page loads only its own files: no inline script or style, nothing remote.
    let page = http
        .get(app.url("/console/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"<script type="module" src="app.js"></script>"#));
    assert!(!page.contains("<script>") && !page.contains("<style"));
    assert!(!page.contains("http://") && !page.contains("https://"));

    // A file that is not there: 404, secured too.
    let missing = http
        .get(app.url("/console/nothing.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_secured("/console/nothing.js", missing.headers());
}

/// The console is files: they are the same with a token or without, hold nothing of
/// the service's data, take no writes, and reach no admin route. Its data comes from
/// the admin API, which still refuses a call without a token.
#[tokio::test]
async fn no_console_route_returns_data_or_takes_a_write_without_a_token() {
    let app = TestApp::spawn().await;
    let http = no_redirects();
    let id = app.install().await;
    let (status, _) = app
        .admin(
            "PATCH",
            &format!("/v1/admin/integrations/{id}"),
            Some(json!({"name": "Console-secret-name"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.send_event(purchase("console-m-1")).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    for path in [
        "/console",
        "/console/",
        "/console/app.js",
        "/console/api.js",
        "/console/views/integration.js",
        "/console/v1/admin/integrations",
    ] {
        let anonymous = http.get(app.url(path)).send().await.unwrap();
        let status = anonymous.status();
        assert!(
            status == StatusCode::OK
                || status == StatusCode::PERMANENT_REDIRECT
                || status == StatusCode::NOT_FOUND,
            "{path}: {status}"
        );
        let anonymous = anonymous.text().await.unwrap();
        let with_token = http
            .get(app.url(path))
            .bearer_auth(&app.admin_token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(
            anonymous, with_token,
            "{path} is the same file for everyone"
        );
        for secret in [
            id.as_str(),
            "Console-secret-name",
            "console-m-1",
            app.admin_token.as_str(),
            app.ingest_token.as_str(),
            app.api_key.as_str(),
        ] {
            assert!(!anonymous.contains(secret), "{path} gives away {secret}");
        }
    }

    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        let response = http
            .request(method.parse().unwrap(), app.url("/console/"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} /console/"
        );
    }

    // What the console shows comes from here, and here a token is still required.
    for path in [
        "/v1/admin/integrations".to_owned(),
        format!("/v1/admin/integrations/{id}/stats"),
        format!("/v1/admin/integrations/{id}/logs"),
    ] {
        let (status, body) = app.request("GET", &path, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
    }
}

/// The console's routes are files, not API: the OpenAPI document leaves them out.
#[tokio::test]
async fn the_openapi_document_leaves_the_console_out() {
    let app = TestApp::spawn().await;
    let (status, doc) = app.request("GET", "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let paths = doc["paths"].as_object().unwrap();
    assert!(
        paths.keys().all(|p| !p.starts_with("/console")),
        "{:?}",
        paths.keys().collect::<Vec<_>>()
    );
}
