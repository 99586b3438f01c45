//! The life of an order after its purchase: `Order Updated` and `Order Cancelled`
//! reach Button as `POST` and `DELETE /v1/order/{order_id}`, never before the changes
//! accepted before them were delivered; Button's `403` (finalized) and `404` (never
//! received) fail at once with their hints. Against a fake Button that learns the
//! orders it is sent. On both backends.

use std::time::Duration;

use fake_button::{Kind, Reply, Rule, When};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, product_view, purchase};

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
        update_request.json.as_ref().unwrap(),
        &json!({
            "order_id": "order-life-1", "total": 2999, "currency": "USD",
            "purchase_date": "2024-05-01T10:00:00Z", "btn_ref": "srctok-abc123",
            "customer": {"id": "user-1",
                         "email_sha256": "6a6c26195c3682faa816966af789717c3bfa834eee6c599d667d2b3429c27cfd"},
            "line_items": [{"identifier": "sku-1", "total": 2999, "amount": 2999, "quantity": 1,
                            "description": "Blue shirt", "sku": "SKU-1", "category": ["Apparel"]}]
        }),
        "the order as the Order Updated event gives it"
    );
    assert_eq!(update_request.path, "/v1/order/order-life-1");
    let entries = app.logs(&id, "message_id=life-3").await;
    assert_eq!(entries[0]["call"], "order.cancel");
    assert_eq!(entries[0]["status"], "200 OK");
}

/// The create, update and cancel of one order in one batch, with `padding` product
/// views besides: each change is written, and leased or not, in the same write as the
/// create it must wait for, and still waits for it.
async fn changes_in_the_batch_of_their_create_wait_for_it(padding: usize) {
    let app = TestApp::spawn().await;
    let id = app.install().await;
    // The lane is up and idle, so ingest leases what it writes and hands it over.
    app.send_event(product_view("batch-warm")).await;
    app.wait_logs(&id, "message_id=batch-warm&outcome=delivered", 1, WAIT)
        .await;
    app.fake
        .add_rule(Rule::times(2, When::Orders, Reply::status(503)));
    let mut batch = vec![
        purchase("batch-1"),
        change("Order Updated", "batch-2", "order-batch-1"),
        change("Order Cancelled", "batch-3", "order-batch-1"),
    ];
    batch.extend((0..padding).map(|i| product_view(&format!("batch-view-{i}"))));
    let (status, summary) = app.send_batch(batch).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{summary}");
    assert_eq!(summary["deliveries_queued"], 3 + padding, "{summary}");
    app.wait_logs(&id, "message_id=batch-3&outcome=delivered", 1, WAIT)
        .await;
    let life = order_requests(&app);
    let methods: Vec<&str> = life.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(
        methods,
        ["POST", "POST", "POST", "POST", "DELETE"],
        "three attempts of the create, then the update, then the cancel: {life:?}"
    );
    assert_eq!(life[3].1, "/v1/order/order-batch-1", "{life:?}");
    assert_eq!(app.fake.order("order-batch-1").unwrap().status, "deleted");
}

#[tokio::test]
async fn changes_in_the_batch_of_their_create_wait_for_it_in_a_small_write() {
    changes_in_the_batch_of_their_create_wait_for_it(0).await;
}

/// More deliveries than the lane has room for: some written leased, the rest not.
#[tokio::test]
async fn changes_in_the_batch_of_their_create_wait_for_it_in_a_large_write() {
    changes_in_the_batch_of_their_create_wait_for_it(300).await;
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
    // Live Logs says what the cancel waits behind.
    let held = app
        .wait_logs(&id, "message_id=held-2&outcome=held", 1, WAIT)
        .await;
    assert_eq!(held.len(), 1, "{held:?}");
    let note = held[0]["error"].as_str().unwrap();
    assert!(
        note.contains(dead[0]["delivery_id"].as_str().unwrap()) && note.contains("dead"),
        "{note}"
    );
    assert_eq!(held[0]["call"], "order.cancel");
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

/// A purchase or a change of it, Segment-shaped, in `currency` with these products
/// (`(id, price as written, quantity)`).
fn order_event(
    kind: &str,
    message_id: &str,
    order_id: &str,
    currency: &str,
    revenue: &str,
    products: &[(&str, &str, i64)],
) -> Value {
    let products: Vec<Value> = products
        .iter()
        .map(|(id, price, quantity)| {
            json!({"product_id": id, "price": serde_json::from_str::<Value>(price).unwrap(),
                   "quantity": quantity, "name": format!("Product {id}")})
        })
        .collect();
    let mut properties = json!({"order_id": order_id, "currency": currency});
    if !revenue.is_empty() {
        properties["revenue"] = serde_json::from_str(revenue).unwrap();
    }
    if !products.is_empty() {
        properties["products"] = json!(products);
    }
    json!({
        "type": "track", "event": kind, "messageId": message_id,
        "timestamp": "2024-05-01T10:00:00Z", "properties": properties
    })
}

/// (currency, revenue, products bought, products refunded, the lines after, the total
/// after).
type RefundCase<'a> = (
    &'a str,
    &'a str,
    Vec<(&'a str, &'a str, i64)>,
    Vec<(&'a str, i64)>,
    Vec<Value>,
    i64,
);

fn line(id: &str, amount: i64, quantity: i64) -> Value {
    json!({"identifier": id, "amount": amount, "quantity": quantity, "total": amount * quantity,
           "description": format!("Product {id}")})
}

#[tokio::test]
async fn partial_refunds_send_the_order_less_what_came_back_exactly_in_each_currency() {
    let app = TestApp::spawn().await;
    let id = app.install().await;
    let cases: [RefundCase; 3] = [
        (
            "JPY",
            "4100",
            vec![("a", "1200", 3), ("b", "500", 1)],
            vec![("a", 1)],
            vec![line("a", 1200, 2), line("b", 500, 1)],
            2900,
        ),
        (
            "USD",
            "70.97",
            vec![("a", "19.99", 3), ("b", "5.50", 2)],
            vec![("a", 2), ("b", 1)],
            vec![line("a", 1999, 1), line("b", 550, 1)],
            7097 - 2 * 1999 - 550,
        ),
        (
            "KWD",
            "4.000",
            vec![("a", "1.250", 2), ("b", "0.375", 4)],
            vec![("b", 3)],
            vec![line("a", 1250, 2), line("b", 375, 1)],
            4000 - 3 * 375,
        ),
    ];
    for (currency, revenue, products, refunded, lines, total) in cases {
        let order_id = format!("order-{currency}");
        let create = order_event(
            "Order Completed",
            &format!("{currency}-1"),
            &order_id,
            currency,
            revenue,
            &products,
        );
        let refunded: Vec<(&str, &str, i64)> =
            refunded.iter().map(|(p, q)| (*p, "0", *q)).collect();
        let refund = order_event(
            "Order Refunded",
            &format!("{currency}-2"),
            &order_id,
            currency,
            "",
            &refunded,
        );
        for event in [create, refund] {
            let (status, body) = app.send_event(event).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{body}");
            assert_eq!(body["deliveries_queued"], 1, "{body}");
        }
        app.wait_logs(
            &id,
            &format!("message_id={currency}-2&outcome=delivered"),
            1,
            WAIT,
        )
        .await;
        let update = app
            .fake
            .received()
            .into_iter()
            .find(|r| r.kind == Kind::OrderUpdate && r.path == format!("/v1/order/{order_id}"))
            .unwrap_or_else(|| panic!("{currency}: the refund was sent as an update"));
        assert_eq!(
            update.json.unwrap(),
            json!({"order_id": order_id, "total": total, "currency": currency,
                   "purchase_date": "2024-05-01T10:00:00Z", "line_items": lines}),
            "{currency}"
        );
    }

    // A second partial refund starts from the order as the first left it; the last
    // units going leave nothing, which cancels the order.
    let again = order_event(
        "Order Refunded",
        "JPY-3",
        "order-JPY",
        "JPY",
        "",
        &[("a", "0", 2)],
    );
    app.send_event(again).await;
    app.wait_logs(&id, "message_id=JPY-3&outcome=delivered", 1, WAIT)
        .await;
    let order = app.fake.order("order-JPY").unwrap();
    assert_eq!(order.object["total"], 500);
    assert_eq!(order.object["line_items"], json!([line("b", 500, 1)]));
    let rest = order_event("refund", "JPY-4", "order-JPY", "JPY", "", &[("b", "0", 1)]);
    app.send_event(rest).await;
    app.wait_logs(&id, "message_id=JPY-4&outcome=delivered", 1, WAIT)
        .await;
    assert_eq!(app.fake.order("order-JPY").unwrap().status, "deleted");
    // Button has nothing left of a cancelled order: a refund after it fails at once,
    // and is not sent.
    let late = order_event("refund", "JPY-5", "order-JPY", "JPY", "", &[("b", "0", 1)]);
    app.send_event(late).await;
    let failed = app
        .wait_logs(&id, "message_id=JPY-5&outcome=failed", 1, WAIT)
        .await;
    assert_eq!(failed[0]["status"], Value::Null, "not sent: {failed:?}");
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("was cancelled"),
        "{failed:?}"
    );

    // A full refund (no products listed) is a cancellation.
    let full = order_event("Order Refunded", "USD-3", "order-USD", "USD", "", &[]);
    app.send_event(full).await;
    app.wait_logs(&id, "message_id=USD-3&outcome=delivered", 1, WAIT)
        .await;
    assert_eq!(app.fake.order("order-USD").unwrap().status, "deleted");
    let entries = app.logs(&id, "message_id=USD-3").await;
    assert_eq!(entries[0]["call"], "order.cancel");

    // Test Event sends a partial refund as the update it stands for.
    let refund = order_event(
        "Order Refunded",
        "t-1",
        "order-KWD",
        "KWD",
        "",
        &[("a", "0", 1)],
    );
    let (status, result) = app
        .admin(
            "POST",
            &format!("/v1/admin/integrations/{id}/test-event"),
            Some(json!({"event": refund})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result["status"], "200 OK", "{result}");
    assert_eq!(result["request"]["method"], "POST");
    assert_eq!(result["request"]["body"]["total"], 2875 - 1250, "{result}");
    assert_eq!(
        result["request"]["body"]["line_items"],
        json!([line("a", 1250, 1), line("b", 375, 1)])
    );

    // A refund of an order never sent to Button fails and says so, sending nothing.
    let before = app.fake.received().len();
    let stray = order_event(
        "Order Refunded",
        "stray-1",
        "order-never",
        "USD",
        "",
        &[("a", "0", 1)],
    );
    app.send_event(stray).await;
    let failed = app
        .wait_logs(&id, "message_id=stray-1&outcome=failed", 1, WAIT)
        .await;
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("never delivered to Button"),
        "{failed:?}"
    );
    assert!(
        failed[0]["hint"].as_str().unwrap().contains("purchase"),
        "{failed:?}"
    );
    assert_eq!(app.fake.received().len(), before, "nothing was sent");
}
