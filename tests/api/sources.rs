//! Sources: each has its own ingest token and goes only to the integrations it is
//! connected to, so two Button properties never receive each other's events. On both
//! backends.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, product_view, purchase};

const WAIT: Duration = Duration::from_secs(10);

async fn create(app: &TestApp, name: &str, integrations: &[&str]) -> (String, String) {
    let (status, body) = app
        .admin(
            "POST",
            "/v1/admin/sources",
            Some(json!({"name": name, "integrations": integrations})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("src-") && token.len() > 40, "{token}");
    (body["id"].as_str().unwrap().to_owned(), token)
}

async fn send(app: &TestApp, token: &str, path: &str, event: Value) -> (StatusCode, Value) {
    app.request("POST", path, Some(token), Some(event)).await
}

#[tokio::test]
async fn two_sources_keep_two_button_properties_apart() {
    let app = TestApp::spawn().await;
    let us = app.install().await;
    let eu = app.install_another("app-eu2024store").await;
    let (us_source, us_token) = create(&app, "US storefront", &[&us]).await;
    let (_, eu_token) = create(&app, "EU storefront", &[&eu]).await;

    // Each source's purchase and product view go to its own property only, and the
    // answer says where.
    for (token, tag, integration) in [(&us_token, "us", &us), (&eu_token, "eu", &eu)] {
        for event in [
            purchase(&format!("{tag}-order")),
            product_view(&format!("{tag}-view")),
        ] {
            let (status, body) = send(&app, token, "/v1/events", event).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{body}");
            assert_eq!(
                body["results"][0]["integrations"],
                json!([integration]),
                "{body}"
            );
            assert_eq!(body["deliveries_queued"], 1, "{body}");
        }
    }
    let received = app.fake.wait_for(4, WAIT).await;
    app.settled(&us).await;
    app.settled(&eu).await;
    assert_eq!(
        app.fake.received().len(),
        4,
        "nothing sent twice or crosswise"
    );
    for r in &received {
        let body = r.json.clone().unwrap();
        let order = body["order_id"].as_str();
        let product = body["activity_data"]["products"][0]["id"].as_str();
        match (order, r.application_id.as_deref()) {
            (Some(order), _) => {
                let us_order = order == "order-us-order";
                assert!(us_order || order == "order-eu-order", "{order}");
                // The US property's orders carry the US key, and only those.
                assert_eq!(
                    r.api_key.as_deref() == Some(app.api_key.as_str()),
                    us_order,
                    "{order}"
                );
            }
            (None, Some(application)) => {
                assert!(product.is_some(), "{body}");
                let view_of = if application == "app-eu2024store" {
                    "eu"
                } else {
                    "us"
                };
                let expected = if view_of == "eu" {
                    "app-eu2024store"
                } else {
                    "app-abc123def456"
                };
                assert_eq!(application, expected);
            }
            other => panic!("unexpected request {other:?}: {body}"),
        }
    }
    let us_logs = app.logs(&us, "").await;
    assert!(
        us_logs
            .iter()
            .all(|l| l["message_id"].as_str().unwrap().starts_with("us-")),
        "{us_logs:?}"
    );
    let eu_logs = app.logs(&eu, "").await;
    assert!(
        eu_logs
            .iter()
            .all(|l| l["message_id"].as_str().unwrap().starts_with("eu-")),
        "{eu_logs:?}"
    );

    // A source may not aim at an integration it is not connected to.
    let (status, body) = send(
        &app,
        &us_token,
        &format!("/v1/integrations/{eu}/events"),
        purchase("us-aimed-at-eu"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "not_connected");

    // The config's ingest token is the default source: every integration, as before.
    let (status, body) = app.send_event(purchase("default-order")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["deliveries_queued"], 2, "{body}");

    // Disconnected, the US source's events go nowhere; connected again, they flow.
    let connection = format!("/v1/admin/sources/{us_source}/integrations/{us}");
    let (status, view) = app.admin("DELETE", &connection, None).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["integrations"], json!([]));
    let (status, body) = send(&app, &us_token, "/v1/events", purchase("us-unrouted")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["deliveries_queued"], 0, "{body}");
    let (status, view) = app.admin("PUT", &connection, None).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["integrations"], json!([us]));
    let (_, body) = send(&app, &us_token, "/v1/events", purchase("us-again")).await;
    assert_eq!(body["results"][0]["integrations"], json!([us]), "{body}");
}

#[tokio::test]
async fn a_source_token_is_shown_once_stored_hashed_rotated_and_revoked() {
    let app = TestApp::spawn().await;
    let id = app.install().await;
    let (source, token) = create(&app, "Backend", &[&id]).await;

    // Never shown again, never stored or logged in clear.
    let one = app.get(&format!("/v1/admin/sources/{source}")).await;
    assert_eq!(one["name"], "Backend");
    assert_eq!(one["integrations"], json!([id]));
    assert!(one.get("token").is_none(), "{one}");
    let list = app.get("/v1/admin/sources").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains(&token));
    let (status, _) = send(&app, &token, "/v1/events", purchase("src-1")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let stored = app.stored_bytes().await;
    assert!(
        !stored.windows(token.len()).any(|w| w == token.as_bytes()),
        "the token is not stored in clear"
    );

    // Rotated: the old token stops at once, the new one works.
    let (status, rotated) = app
        .admin(
            "POST",
            &format!("/v1/admin/sources/{source}/rotate-token"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_token = rotated["token"].as_str().unwrap().to_owned();
    assert_ne!(new_token, token);
    let (status, body) = send(&app, &token, "/v1/events", purchase("src-2")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _) = send(&app, &new_token, "/v1/events", purchase("src-3")).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // Deleting the integration drops the connection; deleting the source, its token.
    let (status, _) = app
        .admin(
            "DELETE",
            &format!("/v1/admin/integrations/{id}?force=true"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let one = app.get(&format!("/v1/admin/sources/{source}")).await;
    assert_eq!(one["integrations"], json!([]), "{one}");
    let (status, _) = app
        .admin("DELETE", &format!("/v1/admin/sources/{source}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = send(&app, &new_token, "/v1/events", purchase("src-4")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = app
        .admin("GET", &format!("/v1/admin/sources/{source}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.assert_secrets_absent(&[&token, &new_token]);
}

#[tokio::test]
async fn a_source_is_refused_with_each_problem_named() {
    let app = TestApp::spawn().await;
    for (body, status, names) in [
        (
            json!({"name": ""}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
        ),
        (
            json!({"name": "a\u{7}b"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_characters",
        ),
        (
            json!({"integrations": []}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "name",
        ),
        (
            json!({"name": "x", "integrations": ["nope"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "integrations",
        ),
        (
            json!({"name": "x", "integrations": ["int_01j00000000000000000000000"]}),
            StatusCode::NOT_FOUND,
            "int_01j00000000000000000000000",
        ),
        (
            json!({"name": "x", "token": "mine"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "token",
        ),
    ] {
        let (got, answer) = app
            .admin("POST", "/v1/admin/sources", Some(body.clone()))
            .await;
        assert_eq!(got, status, "{body}: {answer}");
        assert!(
            answer.to_string().contains(names),
            "{body}: {answer} names {names}"
        );
    }
    let (status, _) = app
        .admin("PUT", "/v1/admin/sources/src_01j00000000000000000000000/integrations/int_01j00000000000000000000000", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
