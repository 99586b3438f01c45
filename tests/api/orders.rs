//! The life of an order after its purchase: `Order Updated` and `Order Cancelled`
//! reach Button as `POST` and `DELETE /v1/order/{order_id}`, never before the changes
//! accepted before them were delivered; Button's `403` (finalized) and `404` (never
//! received) fail at once with their hints. Against a fake Button that learns the
//! orders it is sent. On both backends.

use std::time::Duration;

use fake_button::{Kind, Reply, Rule, When};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, purchase};

const WAIT: Duration = Duration::from_secs(15);

fn change(kind: &str, message_id: &str, order_id: &str) -> Value {
    let mut event = purchase(message_id);
    event["event"] = json!(kind);
    event["properties"]["order_id"] = json!(order_id);
    event
}

/// The order requests Button received, as (method, path, order id in the body).
fn order_requests(app: &TestApp) -> Vec<(String, String)> {
    app.fake
        .received()
        .iter()
        .filter(|r| r.kind.is_order())
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect()
}

#[tokio::test]
async fn an_update_and_a_cancellation_wait_for_the_order_and_reach_button() {
    let app = TestApp::spawn().await;
    let id = app.install().await;
    // The create fails twice before it succeeds; its changes wait behind it.
    app.fake
        .add_rule(Rule::times(2, When::Orders, Reply::status(503)));
    let mut updated = change("Order Updated", "life-2", "order-life-1");
    updated["properties"]["revenue"] = json!(29.99);
    updated["properties"]["products"][0]["quantity"] = json!(1);
    for event in [
        purchase("life-1"),
        updated,
        change("Order Cancelled", "life-3", "order-life-1"),
        // Another order is never held by this one.
        purchase("other-1"),
    ] {
        let (status, body) = app.send_event(event).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["deliveries_queued"], 1, "{body}");
    }
    app.wait_logs(&id, "message_id=life-3&outcome=delivered", 1, WAIT)
        .await;
    app.settled(&id).await;
    let life = order_requests(&app);
    let position = |method: &str, path: &str| {
        life.iter()
            .position(|(m, p)| m == method && p == path)
            .unwrap_or_else(|| panic!("{method} {path} was sent: {life:?}"))
    };
    let update = position("POST", "/v1/order/order-life-1");
    let cancel = position("DELETE", "/v1/order/order-life-1");
    let creates: Vec<usize> = life
        .iter()
        .enumerate()
        .filter(|(_, (m, p))| m == "POST" && p == "/v1/order")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        creates.len(),
        4,
        "three attempts of one create, one of the other: {life:?}"
    );
    let received = app.fake.received();
    let last_create_of_life = creates
        .iter()
        .copied()
        .filter(|&i| {
            let r: Vec<_> = received.iter().filter(|r| r.kind.is_order()).collect();
            r[i].json.as_ref().unwrap()["order_id"] == "order-life-1"
        })
        .max()
        .unwrap();
    assert!(
        last_create_of_life < update && update < cancel,
        "create, then update, then cancel: {life:?}"
    );
    // Button has the order as updated, then cancelled.
    let order = app.fake.order("order-life-1").unwrap();
    assert_eq!(order.status, "deleted");
    assert_eq!(order.object["total"], 2999);
    assert_eq!(order.object["line_items"][0]["quantity"], 1);
    // The cancel is a bare DELETE with the key; the update the whole order.
    let cancel_request = received
        .iter()
        .find(|r| r.kind == Kind::OrderCancel)
        .unwrap();
    assert!(cancel_request.body.is_empty());
    assert!(cancel_request.api_key.is_some());
    let update_request = received
        .iter()
        .find(|r| r.kind == Kind::OrderUpdate)
        .unwrap();
    assert_eq!(
        update_request.json.as_ref().unwrap()["order_id"],
        "order-life-1"
    );
    let entries = app.logs(&id, "message_id=life-3").await;
    assert_eq!(entries[0]["call"], "order.cancel");
    assert_eq!(entries[0]["status"], "200 OK");
}

#[tokio::test]
async fn a_dead_lettered_create_holds_its_changes_until_it_is_replayed() {
    let app = TestApp::spawn().await;
    let id = app.install().await;
    app.fake
        .add_rule(Rule::always(When::Orders, Reply::status(500)));
    app.send_event(purchase("held-1")).await;
    app.send_event(change("Order Cancelled", "held-2", "order-held-1"))
        .await;
    let dead = app.wait_logs(&id, "outcome=dead_lettered", 1, WAIT).await;
    assert_eq!(dead[0]["message_id"], "held-1");
    app.fake.clear_rules();
    // Another order flows while this one is held.
    app.send_event(purchase("free-1")).await;
    app.wait_logs(&id, "message_id=free-1&outcome=delivered", 1, WAIT)
        .await;
    app.settled(&id).await;
    assert!(
        !order_requests(&app).iter().any(|(m, _)| m == "DELETE"),
        "the cancel waits behind its dead-lettered create"
    );
    assert!(app.logs(&id, "message_id=held-2").await.is_empty());
    let stats = app.get(&format!("/v1/admin/integrations/{id}/stats")).await;
    assert_eq!(stats["queue"]["depth"], 1, "the cancel waits: {stats}");

    // Replaying the create releases the cancel after it.
    let letters = app
        .get(&format!("/v1/admin/integrations/{id}/dead-letters"))
        .await;
    let letter = letters["data"][0]["id"].as_str().unwrap().to_owned();
    let (status, _) = app
        .admin(
            "POST",
            &format!("/v1/admin/integrations/{id}/dead-letters/replay"),
            Some(json!({"ids": [letter]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    app.wait_logs(&id, "message_id=held-2&outcome=delivered", 1, WAIT)
        .await;
    assert_eq!(app.fake.order("order-held-1").unwrap().status, "deleted");
}

#[tokio::test]
async fn a_finalized_or_unknown_order_fails_at_once_with_its_hint() {
    let app = TestApp::spawn().await;
    let id = app.install().await;
    // Button never received this order.
    app.send_event(change("Order Cancelled", "unknown-1", "order-nobody"))
        .await;
    let failed = app
        .wait_logs(&id, "message_id=unknown-1&outcome=failed", 1, WAIT)
        .await;
    assert_eq!(failed[0]["status"], "404 Not Found");
    assert!(
        failed[0]["hint"]
            .as_str()
            .unwrap()
            .contains("never received"),
        "{failed:?}"
    );
    // A finalized order changes only through Button.
    app.send_event(purchase("final-1")).await;
    app.wait_logs(&id, "message_id=final-1&outcome=delivered", 1, WAIT)
        .await;
    app.fake.finalize("order-final-1");
    let mut updated = change("Order Updated", "final-2", "order-final-1");
    updated["properties"]["revenue"] = json!(1);
    app.send_event(updated).await;
    let failed = app
        .wait_logs(&id, "message_id=final-2&outcome=failed", 1, WAIT)
        .await;
    assert_eq!(failed[0]["status"], "403 Forbidden");
    assert!(
        failed[0]["hint"].as_str().unwrap().contains("finalized"),
        "{failed:?}"
    );
    assert_eq!(failed[0]["attempt"], 1, "no retry");
    assert_eq!(
        app.fake.order("order-final-1").unwrap().object["total"],
        5998
    );
}
