//! The Button client against a local fake Button over real HTTP: what it sends, and how
//! it classifies every kind of answer.

use std::time::{Duration, SystemTime};

use base64::Engine;
use button_delivery::button::model::{
    Activity, ActivityData, ActivityName, ActivityProduct, LineItem, Order,
};
use button_delivery::button::{Call, Classification, Client, ClientConfig, hints};
use fake_button::{Config, FakeButton, Kind, Reply, Rule, When};
use secrecy::SecretString;

const KEY: &str = "sk-client-test-0123456789";

async fn setup() -> (FakeButton, Client) {
    crate::helpers::captured_logs();
    let fake = FakeButton::start(Config {
        api_keys: vec![KEY.into()],
        ..Config::default()
    })
    .await;
    let client = Client::new(ClientConfig {
        orders_base_url: fake.orders_base_url(),
        activity_url_template: fake.activity_url_template(),
        api_version: "2018-02-13".into(),
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_millis(800),
        max_response_bytes: 64,
    })
    .unwrap();
    (fake, client)
}

fn order(id: &str) -> Call {
    Call::CreateOrder(Order {
        order_id: id.into(),
        total: 1999,
        currency: "USD".into(),
        purchase_date: "2024-05-01T10:00:00Z".into(),
        btn_ref: Some("srctok-1".into()),
        customer: None,
        customer_order_id: None,
        line_items: vec![LineItem {
            identifier: "p-1".into(),
            total: 1999,
            amount: Some(1999),
            quantity: Some(1),
            description: None,
            sku: None,
            upc: None,
            category: None,
            attributes: None,
        }],
        finalization_date: None,
    })
}

fn activity() -> Call {
    Call::Activity(Activity {
        application_id: "app-abc123def456".into(),
        btn_ref: None,
        session_id: None,
        ifa: None,
        activity_data: ActivityData {
            name: ActivityName::AddToCart,
            products: vec![ActivityProduct {
                id: Some("p".into()),
                upc: None,
                name: None,
                currency: Some("USD".into()),
                value: Some(100),
                quantity: Some(1),
                url: None,
                categories: None,
                attributes: Default::default(),
            }],
        },
    })
}

fn key() -> SecretString {
    SecretString::from(KEY)
}

#[tokio::test]
async fn an_order_is_sent_as_buttons_api_wants_it() {
    let (fake, client) = setup().await;
    let request = client.prepare(&order("o-1"));
    let attempt = client.send(&request, &key()).await;
    assert_eq!(attempt.classification, Classification::Delivered);
    assert_eq!(attempt.status_line().as_deref(), Some("200 OK"));
    let got = fake.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.kind, Kind::Order);
    assert_eq!(r.path, "/v1/order");
    let expected_auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{KEY}:"))
    );
    assert_eq!(r.headers["authorization"], expected_auth.as_str());
    assert_eq!(r.headers["content-type"], "application/json");
    assert!(
        r.headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("signal-button-delivery/")
    );
    assert_eq!(r.headers["x-button-api-version"], "2018-02-13");
    assert_eq!(
        r.body, request.body,
        "the bytes prepared are the bytes sent"
    );
    // The record kept for live logs has the credentials redacted.
    let recorded =
        serde_json::to_string(&request).unwrap() + &format!("{:?}", request.redacted_headers());
    assert!(!recorded.contains(KEY) && !recorded.contains(&expected_auth[6..]));
    assert!(
        request
            .redacted_headers()
            .contains(&("authorization".into(), "Basic ***".into()))
    );
}

#[tokio::test]
async fn activity_carries_no_api_key() {
    let (fake, client) = setup().await;
    let request = client.prepare(&activity());
    assert_eq!(request.call.as_str(), "activity.add-to-cart");
    assert!(
        request.url.contains("/app/app-abc123def456/"),
        "{}",
        request.url
    );
    let attempt = client.send(&request, &key()).await;
    assert_eq!(attempt.classification, Classification::Delivered);
    let got = fake.received();
    assert!(got[0].headers.get("authorization").is_none());
    assert_eq!(got[0].application_id.as_deref(), Some("app-abc123def456"));
    assert!(
        !request
            .redacted_headers()
            .iter()
            .any(|(k, _)| k == "authorization")
    );
}

#[tokio::test]
async fn a_repeated_order_id_is_already_delivered() {
    let (_fake, client) = setup().await;
    let request = client.prepare(&order("o-dup"));
    assert_eq!(
        client.send(&request, &key()).await.classification,
        Classification::Delivered
    );
    let again = client.send(&request, &key()).await;
    assert_eq!(again.status.map(|s| s.as_u16()), Some(409));
    assert_eq!(again.classification, Classification::Delivered);
}

#[tokio::test]
async fn client_errors_are_terminal_with_their_hints() {
    let (fake, client) = setup().await;
    // 401 from the real checks: a key Button does not know.
    let attempt = client
        .send(
            &client.prepare(&order("o-401")),
            &SecretString::from("sk-wrong"),
        )
        .await;
    assert_eq!(attempt.classification, Classification::Terminal);
    assert_eq!(attempt.error.as_deref(), Some("Invalid api_key"));
    assert_eq!(attempt.hint, Some(hints::INVALID_API_KEY));

    // 400 from the real checks: a body Button refuses.
    let mut bad = client.prepare(&order("o-400"));
    bad.body = bytes::Bytes::from_static(br#"{"order_id":"o-400","total":"19.99","currency":"USD","purchase_date":"2024-05-01T10:00:00Z"}"#);
    let attempt = client.send(&bad, &key()).await;
    assert_eq!(attempt.status.map(|s| s.as_u16()), Some(400));
    assert_eq!(attempt.classification, Classification::Terminal);
    assert!(
        attempt.error.as_deref().unwrap().contains("total"),
        "{:?}",
        attempt.error
    );
    assert_eq!(attempt.hint, Some(hints::MISSING_FIELDS));

    // A rejection that names the application.
    let mut wrong_app = client.prepare(&activity());
    wrong_app.url = wrong_app.url.replace("app-abc123def456", "app-other");
    let attempt = client.send(&wrong_app, &key()).await;
    assert_eq!(attempt.classification, Classification::Terminal);
    assert_eq!(
        attempt.hint,
        Some(hints::WRONG_APPLICATION),
        "{:?}",
        attempt.error
    );

    // 404 with a body that is not Button's envelope.
    fake.add_rule(Rule::times(
        1,
        When::Any,
        Reply::status(404).body("<html>no such thing</html>"),
    ));
    let attempt = client.send(&client.prepare(&order("o-404")), &key()).await;
    assert_eq!(attempt.classification, Classification::Terminal);
    assert_eq!(
        attempt.error.as_deref(),
        Some("404 Not Found: <html>no such thing</html>")
    );
}

#[tokio::test]
async fn transient_answers_are_retryable_and_retry_after_is_read_in_both_forms() {
    let (fake, client) = setup().await;
    let send = |id: &'static str| {
        let request = client.prepare(&order(id));
        let client = client.clone();
        async move { client.send(&request, &key()).await }
    };
    fake.add_rule(Rule::times(
        1,
        When::Any,
        Reply::status(429).retry_after("7"),
    ));
    let a = send("o-429s").await;
    assert_eq!(
        a.classification,
        Classification::Retryable {
            retry_after: Some(Duration::from_secs(7))
        }
    );
    assert!(a.headers.contains(&("retry-after".into(), "7".into())));

    let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
    fake.add_rule(Rule::times(
        1,
        When::Any,
        Reply::status(429).retry_after(at),
    ));
    let a = send("o-429d").await;
    let Classification::Retryable {
        retry_after: Some(d),
    } = a.classification
    else {
        panic!("{:?}", a.classification)
    };
    assert!((28..=30).contains(&d.as_secs()), "{d:?}");

    for status in [408, 500, 502, 503, 504] {
        fake.add_rule(Rule::times(1, When::Any, Reply::status(status)));
        let a = send("o-5xx").await;
        assert_eq!(
            a.classification,
            Classification::Retryable { retry_after: None },
            "{status}"
        );
        assert_eq!(a.hint, None);
    }
}

#[tokio::test]
async fn timeouts_and_dropped_connections_are_retryable() {
    let (fake, client) = setup().await;
    fake.add_rule(Rule::times(1, When::Any, Reply::hang()));
    let started = std::time::Instant::now();
    let a = client.send(&client.prepare(&order("o-hang")), &key()).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the timeout cut the wait"
    );
    assert_eq!(
        a.classification,
        Classification::Retryable { retry_after: None }
    );
    assert!(a.status.is_none());
    assert!(
        a.error.as_deref().unwrap().contains("timed out"),
        "{:?}",
        a.error
    );

    fake.add_rule(Rule::times(1, When::Any, Reply::drop_connection()));
    let a = client.send(&client.prepare(&order("o-drop")), &key()).await;
    assert_eq!(
        a.classification,
        Classification::Retryable { retry_after: None }
    );
    assert!(a.status.is_none());
    assert!(a.error.is_some());

    // Button gone: wait until its port refuses connections, then call it.
    let addr = fake
        .orders_base_url()
        .trim_start_matches("http://")
        .to_owned();
    drop(fake);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(&addr).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the fake Button kept listening"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let a = client
        .send(&client.prepare(&order("o-refused")), &key())
        .await;
    assert_eq!(
        a.classification,
        Classification::Retryable { retry_after: None }
    );
    assert!(
        a.error.as_deref().unwrap().contains("connect"),
        "{:?}",
        a.error
    );
}

#[tokio::test]
async fn long_answers_are_cut_to_the_bound() {
    let (fake, client) = setup().await;
    fake.add_rule(Rule::times(
        1,
        When::Any,
        Reply::status(500).body("x".repeat(10_000)),
    ));
    let a = client.send(&client.prepare(&order("o-long")), &key()).await;
    assert!(a.truncated);
    assert_eq!(a.body.len(), 64);
}
