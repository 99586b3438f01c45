//! Replay after a blueprint fix: events that failed to map are stored; once the
//! blueprint is fixed, `POST .../logs/replay` maps them again, queues what now maps
//! (Button receives the exact request) and points each new entry at the one it
//! replaces. On both backends.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, purchase};

const WAIT: Duration = Duration::from_secs(10);

/// Makes every read of `event.properties.currency` fall back to
/// `event.properties.currency_code`: the fix for a sender that names it so.
fn also_read_currency_code(v: &mut Value) {
    let ours = json!("event.properties.currency");
    let theirs = json!("event.properties.currency_code");
    match v {
        Value::Array(items) => {
            if let Some(at) = items.iter().position(|i| *i == ours) {
                items.insert(at + 1, theirs);
            }
            items.iter_mut().for_each(also_read_currency_code);
        }
        Value::Object(fields) => {
            for value in fields.values_mut() {
                if *value == ours {
                    *value = json!([ours.clone(), theirs.clone()]);
                } else {
                    also_read_currency_code(value);
                }
            }
        }
        _ => {}
    }
}

async fn replay(app: &TestApp, id: &str, body: Option<Value>) -> (StatusCode, Value) {
    app.admin(
        "POST",
        &format!("/v1/admin/integrations/{id}/logs/replay"),
        body,
    )
    .await
}

#[tokio::test]
async fn a_mapping_failure_fixed_by_a_blueprint_change_is_replayed() {
    let app = TestApp::spawn().await;
    let id = app.install().await;

    // A sender that names the currency `currency_code`: the default blueprint cannot
    // map the purchase. A cart event without a product id fails too.
    let mut order = purchase("replay-1");
    let props = order["properties"].as_object_mut().unwrap();
    let currency = props.remove("currency").unwrap();
    props.insert("currency_code".into(), currency);
    let mut cart = crate::helpers::add_to_cart("replay-2");
    cart["properties"]
        .as_object_mut()
        .unwrap()
        .remove("product_id");
    for event in [order.clone(), cart] {
        let (status, body) = app.send_event(event).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["results"][0]["mapping_failed"], 1, "{body}");
    }
    let failed = app.logs(&id, "outcome=mapping_failed&event=purchase").await;
    assert_eq!(failed.len(), 1);
    let first = failed[0]["id"].as_str().unwrap().to_owned();
    assert!(
        failed[0]["error"].as_str().unwrap().contains("currency"),
        "{failed:?}"
    );

    // Replayed before the fix: still failing, and the new entry says so.
    let (status, summary) = replay(&app, &id, Some(json!({"event": "purchase"}))).await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    assert_eq!(
        (
            summary["matched"].clone(),
            summary["queued"].clone(),
            summary["mapping_failed"].clone()
        ),
        (json!(1), json!(0), json!(1)),
        "{summary}"
    );
    let again = &summary["results"][0];
    assert_eq!(again["replaces"], first.as_str(), "{summary}");
    assert_eq!(again["outcome"], "mapping_failed");
    let second = again["log_id"].as_str().unwrap().to_owned();
    assert!(app.fake.received().is_empty(), "nothing was sent");

    // The fix: the blueprint also reads currency_code.
    let path = format!("/v1/admin/integrations/{id}/blueprint");
    let mut fixed = app.get(&path).await;
    also_read_currency_code(&mut fixed);
    let (status, body) = app.admin("PUT", &path, Some(fixed)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, summary) = replay(&app, &id, Some(json!({"event": "purchase"}))).await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    assert_eq!(summary["matched"], 1, "only the purchase: {summary}");
    assert_eq!(summary["queued"], 1, "{summary}");
    let queued = &summary["results"][0];
    assert_eq!(queued["outcome"], "remapped");
    assert_eq!(
        queued["replaces"],
        second.as_str(),
        "points at the entry it replaces"
    );
    assert_eq!(queued["messageId"], "replay-1");

    // Button receives the order as the fixed blueprint maps it.
    let received = app.fake.wait_for(1, WAIT).await;
    assert_eq!(received.len(), 1);
    let sent = received[0].json.clone().unwrap();
    assert_eq!(received[0].path, "/v1/order");
    assert_eq!(sent["order_id"], "order-replay-1");
    assert_eq!(sent["currency"], "USD");
    assert_eq!(sent["total"], 5998);
    assert_eq!(sent["line_items"][0]["amount"], 2999);
    let delivered = app
        .wait_logs(&id, "outcome=delivered&message_id=replay-1", 1, WAIT)
        .await;
    assert_eq!(delivered.len(), 1, "the replayed event is delivered");
    let entry = app
        .get(&format!(
            "/v1/admin/integrations/{id}/logs/{}",
            queued["log_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(entry["outcome"], "remapped");
    assert_eq!(entry["replaces"], second.as_str());
    assert_eq!(entry["request"]["body"]["currency"], "USD", "{entry}");

    // Nothing is sent twice: the purchase no longer matches; the cart event, still
    // unmappable, is left for its own fix.
    let (_, summary) = replay(&app, &id, Some(json!({"event": "purchase"}))).await;
    assert_eq!(summary["matched"], 0, "{summary}");
    let (_, summary) = replay(&app, &id, None).await;
    assert_eq!(summary["matched"], 1, "{summary}");
    assert_eq!(summary["mapping_failed"], 1, "{summary}");
    app.settled(&id).await;
    assert_eq!(app.fake.received().len(), 1);
}

#[tokio::test]
async fn a_replay_names_what_is_wrong_with_its_filters() {
    let app = TestApp::spawn().await;
    let id = app.install().await;
    for (body, field) in [
        (json!({"outcome": "delivered"}), "outcome"),
        (json!({"outcome": "nonsense"}), "outcome"),
        (json!({"limit": 0}), "limit"),
        (json!({"limit": 2.5}), "limit"),
        (json!({"limit": 1e12}), "limit"),
        (json!({"since": "yesterday"}), "since"),
        (json!({"message_ids": vec!["m"; 1001]}), "message_ids"),
        (json!({"evnt": "purchase"}), "evnt"),
    ] {
        let (status, answer) = replay(&app, &id, Some(body.clone())).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        let text = answer.to_string();
        assert!(text.contains(field), "{body}: {answer} names {field}");
    }
    // A whole number written with a fraction is that number (JSON Schema's integer).
    let (status, answer) = replay(&app, &id, Some(json!({"limit": 398.0}))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) = replay(&app, "int_01j00000000000000000000000", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
}
