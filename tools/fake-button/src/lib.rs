//! A local stand-in for Button's server-side APIs, for tests, benchmarks and local
//! trials. It answers `POST /v1/order` (HTTP Basic auth with the API key, empty
//! password) and `POST /v1/app/activity` (no credentials; the application id comes
//! from the host name `{app}.mobileapi...` or the path prefix `/app/{app}`), and checks
//! each request the way the real API does: credentials, content type, required fields
//! and their types, `409` for an `order_id` it already has. It learns the orders it is
//! sent: `POST /v1/order/{order_id}` updates one and `DELETE` cancels it, `404` for an
//! order it does not have, `403` for one a test has [`finalize`](FakeButton::finalize)d.
//!
//! Its behaviour can change while it runs: [`Rule`]s, tried in order, can answer with
//! any status (and `Retry-After`), add latency, hang, or drop the connection, for all
//! requests or those of one API key or application, a number of times or until
//! removed.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tokio::sync::{Notify, oneshot};

/// Which requests a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    Any,
    /// Orders API requests authenticated with this key.
    ApiKey(String),
    /// Activity requests for this application.
    Application(String),
    Orders,
    Activity,
}

/// How to answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    /// A fixed status; `None` answers as the real API would after its checks.
    pub status: Option<u16>,
    pub body: Option<String>,
    pub retry_after: Option<String>,
    pub delay: Duration,
    /// Close the connection without answering.
    pub drop: bool,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status: Some(status),
            ..Self::default()
        }
    }

    /// Button's error envelope with `message`.
    pub fn error(status: u16, message: &str) -> Self {
        Self {
            status: Some(status),
            body: Some(
                json!({"meta": {"status": "error"}, "error": {"message": message}}).to_string(),
            ),
            ..Self::default()
        }
    }

    pub fn retry_after(mut self, value: impl Into<String>) -> Self {
        self.retry_after = Some(value.into());
        self
    }

    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// The normal answer, after `d`.
    pub fn delay(d: Duration) -> Self {
        Self {
            delay: d,
            ..Self::default()
        }
    }

    /// No answer for an hour (longer than any client timeout).
    pub fn hang() -> Self {
        Self::delay(Duration::from_secs(3600))
    }

    pub fn drop_connection() -> Self {
        Self {
            drop: true,
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub when: When,
    pub reply: Reply,
    /// How many requests it answers before it is spent; `None`: until removed.
    pub times: Option<usize>,
}

impl Rule {
    pub fn always(when: When, reply: Reply) -> Self {
        Self {
            when,
            reply,
            times: None,
        }
    }

    pub fn times(n: usize, when: When, reply: Reply) -> Self {
        Self {
            when,
            reply,
            times: Some(n),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `POST /v1/order`: a create.
    Order,
    /// `POST /v1/order/{order_id}`: the order as it now stands.
    OrderUpdate,
    /// `DELETE /v1/order/{order_id}`.
    OrderCancel,
    Activity,
    Other,
}

impl Kind {
    /// A call of the Orders API (API key, Basic auth).
    pub fn is_order(self) -> bool {
        matches!(self, Self::Order | Self::OrderUpdate | Self::OrderCancel)
    }
}

/// An order as the fake keeps it: Button's status (`open`, `finalized`, `deleted`)
/// and the order as last written.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredOrder {
    pub status: &'static str,
    pub object: Value,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: SystemTime,
    pub kind: Kind,
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub json: Option<Value>,
    /// The API key from Basic auth, if any.
    pub api_key: Option<String>,
    pub application_id: Option<String>,
    /// The status answered (0 when the connection was dropped).
    pub status: u16,
}

impl Received {
    /// The order an Orders API request's body names (`order_id`); `""` for any other.
    pub fn order_id(&self) -> &str {
        self.json
            .as_ref()
            .and_then(|j| j["order_id"].as_str())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// API keys the Orders API accepts.
    pub api_keys: Vec<String>,
    /// Latency added to every answer.
    pub latency: Duration,
    /// Keep every request (tests); off, only counts are kept (benchmarks).
    pub record: bool,
    /// Keep (id, arrival time) of every delivered object, for delivery-lag figures.
    pub record_arrivals: bool,
    /// Without a rule, answer with these statuses in these proportions (weights); a
    /// 2xx means the normal answer. Empty: always the normal answer.
    pub status_mix: Vec<(u16, u32)>,
    /// `Retry-After` sent with a 429 or 503 from the mix.
    pub retry_after: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            api_keys: vec!["sk-test-valid".into()],
            latency: Duration::ZERO,
            record: true,
            record_arrivals: false,
            status_mix: Vec::new(),
            retry_after: None,
        }
    }
}

struct Inner {
    config: Mutex<Config>,
    rules: Mutex<Vec<Rule>>,
    received: Mutex<Vec<Received>>,
    orders: Mutex<HashMap<String, StoredOrder>>,
    arrivals: Mutex<Vec<(String, u64)>>,
    arrived: Notify,
    total: AtomicU64,
    ok: AtomicU64,
    rejected: AtomicU64,
    in_flight: AtomicU64,
    peak_in_flight: AtomicU64,
    started: Instant,
}

pub struct FakeButton {
    addr: SocketAddr,
    inner: Arc<Inner>,
    stop: Option<oneshot::Sender<()>>,
}

/// Counts of what the fake saw, as `GET /__control/stats` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub total: u64,
    pub ok: u64,
    pub rejected: u64,
    pub peak_in_flight: u64,
}

impl FakeButton {
    /// Starts on a random local port.
    pub async fn start(config: Config) -> Self {
        Self::start_on("127.0.0.1:0".parse().expect("an address"), config).await
    }

    pub async fn start_on(addr: SocketAddr, config: Config) -> Self {
        let inner = Arc::new(Inner {
            config: Mutex::new(config),
            rules: Mutex::new(Vec::new()),
            received: Mutex::new(Vec::new()),
            orders: Mutex::new(HashMap::new()),
            arrivals: Mutex::new(Vec::new()),
            arrived: Notify::new(),
            total: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            peak_in_flight: AtomicU64::new(0),
            started: Instant::now(),
        });
        let router = Router::new()
            .route("/v1/order", post(order))
            .route(
                "/v1/order/{order_id}",
                post(order_update).delete(order_cancel),
            )
            .route("/v1/app/activity", post(activity))
            .route(
                "/app/{application_id}/v1/app/activity",
                post(activity_by_path),
            )
            .route("/__control/stats", get(stats))
            .route("/__control/arrivals", get(arrivals))
            .route("/__control/reset", post(reset))
            .fallback(fallback)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("fake Button binds");
        let addr = listener.local_addr().expect("bound");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Self {
            addr,
            inner,
            stop: Some(stop),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL of the Orders API.
    pub fn orders_base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Activity URL template, with the application id in the path.
    pub fn activity_url_template(&self) -> String {
        format!(
            "http://{}/app/{{application_id}}/v1/app/activity",
            self.addr
        )
    }

    pub fn add_rule(&self, rule: Rule) {
        lock(&self.inner.rules).push(rule);
    }

    pub fn clear_rules(&self) {
        lock(&self.inner.rules).clear();
    }

    pub fn set_latency(&self, latency: Duration) {
        lock(&self.inner.config).latency = latency;
    }

    pub fn set_api_keys(&self, keys: &[&str]) {
        lock(&self.inner.config).api_keys = keys.iter().map(|k| k.to_string()).collect();
    }

    /// Every request so far.
    /// The order as the fake keeps it (what Button would have).
    pub fn order(&self, order_id: &str) -> Option<StoredOrder> {
        lock(&self.inner.orders).get(order_id).cloned()
    }

    /// Finalizes an order, as Button does when its commission is settled: it can no
    /// longer be updated or cancelled (`403`).
    pub fn finalize(&self, order_id: &str) {
        if let Some(order) = lock(&self.inner.orders).get_mut(order_id) {
            order.status = "finalized";
        }
    }

    pub fn received(&self) -> Vec<Received> {
        lock(&self.inner.received).clone()
    }

    /// Waits until `n` requests were received or `timeout` passed; answers them all.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.arrived.notified();
            let got = self.received();
            if got.len() >= n || tokio::time::Instant::now() >= deadline {
                return got;
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }
}

impl Drop for FakeButton {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    fn stats(&self) -> Stats {
        Stats {
            total: self.total.load(Ordering::Relaxed),
            ok: self.ok.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            peak_in_flight: self.peak_in_flight.load(Ordering::Relaxed),
        }
    }

    /// The first live rule for this request, spending one of its uses.
    fn rule_for(
        &self,
        kind: Kind,
        api_key: Option<&str>,
        application: Option<&str>,
    ) -> Option<Reply> {
        let mut rules = lock(&self.rules);
        let index = rules.iter().position(|r| {
            r.times != Some(0)
                && match &r.when {
                    When::Any => true,
                    When::ApiKey(k) => kind.is_order() && api_key == Some(k.as_str()),
                    When::Application(a) => {
                        kind == Kind::Activity && application == Some(a.as_str())
                    }
                    When::Orders => kind.is_order(),
                    When::Activity => kind == Kind::Activity,
                }
        })?;
        let rule = &mut rules[index];
        if let Some(n) = rule.times.as_mut() {
            *n -= 1;
        }
        Some(rule.reply.clone())
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = json!({"meta": {"status": "error"}, "error": {"message": message.into()}});
    (status, Json(body)).into_response()
}

fn basic_key(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    password.is_empty().then(|| user.to_owned())
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim() == "application/json")
        })
}

fn is_rfc3339(s: &str) -> bool {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
}

/// Checks an order the way Button's Orders API does; the error names the field.
fn check_order(order: &Value) -> Result<(), String> {
    let obj = order.as_object().ok_or("body must be a JSON object")?;
    match obj.get("order_id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() && id.len() <= 255 && id.is_ascii() => {}
        _ => return Err("Missing or invalid order_id".into()),
    }
    match obj.get("total") {
        Some(Value::Number(n)) if n.as_i64().is_some_and(|t| t >= 0) => {}
        _ => return Err("total must be a non-negative integer (minor units)".into()),
    }
    match obj.get("currency").and_then(Value::as_str) {
        Some(c) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()) => {}
        _ => return Err("currency must be an ISO 4217 code".into()),
    }
    match obj.get("purchase_date").and_then(Value::as_str) {
        Some(d) if is_rfc3339(d) => {}
        _ => return Err("purchase_date must be an ISO-8601 timestamp with zone".into()),
    }
    if let Some(r) = obj.get("btn_ref")
        && r.as_str().is_none_or(|r| r.len() >= 256)
    {
        return Err("btn_ref must be a string".into());
    }
    if let Some(items) = obj.get("line_items") {
        let items = items.as_array().ok_or("line_items must be an array")?;
        let mut ids = HashSet::new();
        for (i, item) in items.iter().enumerate() {
            let id = item
                .get("identifier")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty());
            let Some(id) = id else {
                return Err(format!("line_items[{i}].identifier is required"));
            };
            if !ids.insert(id) {
                return Err(format!("line_items[{i}].identifier is not unique"));
            }
            if item.get("total").and_then(Value::as_i64).is_none() {
                return Err(format!("line_items[{i}].total must be an integer"));
            }
            for field in ["amount", "quantity"] {
                if item.get(field).is_some_and(|v| v.as_i64().is_none()) {
                    return Err(format!("line_items[{i}].{field} must be an integer"));
                }
            }
        }
    }
    Ok(())
}

fn check_activity(activity: &Value, application: &str) -> Result<(), String> {
    let obj = activity.as_object().ok_or("body must be a JSON object")?;
    match obj.get("application_id").and_then(Value::as_str) {
        Some(a) if a == application => {}
        Some(a) => {
            return Err(format!(
                "application_id {a} does not match application {application}"
            ));
        }
        None => return Err("Missing application_id".into()),
    }
    let data = obj
        .get("activity_data")
        .and_then(Value::as_object)
        .ok_or("Missing activity_data")?;
    match data.get("name").and_then(Value::as_str) {
        Some("product-viewed" | "add-to-cart" | "cart-viewed") => {}
        _ => {
            return Err(
                "activity_data.name must be product-viewed, add-to-cart or cart-viewed".into(),
            );
        }
    }
    let products = data
        .get("products")
        .and_then(Value::as_array)
        .ok_or("activity_data.products must be an array")?;
    for (i, p) in products.iter().enumerate() {
        if p.get("value")
            .is_some_and(|v| !v.is_null() && v.as_i64().is_none())
        {
            return Err(format!(
                "activity_data.products[{i}].value must be an integer"
            ));
        }
    }
    Ok(())
}

struct InFlight<'a>(&'a Inner);

impl<'a> InFlight<'a> {
    fn enter(inner: &'a Inner) -> Self {
        let now = inner.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        inner.peak_in_flight.fetch_max(now, Ordering::Relaxed);
        Self(inner)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One request of `kind`; `application` is the activity's (from the host or the path),
/// `path_order` the order an update or cancel names in its path.
async fn handle(
    inner: Arc<Inner>,
    kind: Kind,
    application: Option<String>,
    path_order: Option<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let method = match kind {
        Kind::OrderCancel => "DELETE",
        _ => "POST",
    };
    let _in_flight = InFlight::enter(&inner);
    inner.total.fetch_add(1, Ordering::Relaxed);
    let api_key = basic_key(&headers);
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    let (latency, record, record_arrivals, keys, mixed) = {
        let c = lock(&inner.config);
        let n = inner.total.load(Ordering::Relaxed);
        (
            c.latency,
            c.record,
            c.record_arrivals,
            c.api_keys.clone(),
            mixed_reply(&c, n),
        )
    };
    let reply = inner
        .rule_for(kind, api_key.as_deref(), application.as_deref())
        .or(mixed);
    let delay = latency + reply.as_ref().map(|r| r.delay).unwrap_or_default();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let dropped = reply.as_ref().is_some_and(|r| r.drop);
    let response = match reply.as_ref().and_then(|r| r.status.map(|s| (s, r))) {
        _ if dropped => None,
        Some((status, r)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = match &r.body {
                Some(b) => (
                    status,
                    [(header::CONTENT_TYPE, "application/json")],
                    b.clone(),
                )
                    .into_response(),
                None if status.is_success() => (
                    status,
                    Json(json!({"meta": {"status": "ok"}, "object": {}})),
                )
                    .into_response(),
                None => error(status, status.canonical_reason().unwrap_or("error")),
            };
            if let Some(ra) = &r.retry_after
                && let Ok(v) = ra.parse()
            {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            Some(response)
        }
        None => Some(answer(
            &inner,
            kind,
            application.as_deref(),
            api_key.as_deref(),
            &keys,
            &headers,
            json.as_ref(),
            path_order.as_deref(),
        )),
    };
    let status = response.as_ref().map(|r| r.status().as_u16()).unwrap_or(0);
    if (200..300).contains(&status) {
        inner.ok.fetch_add(1, Ordering::Relaxed);
        if record_arrivals && let Some(json) = &json {
            let at = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_micros() as u64;
            lock(&inner.arrivals).push((arrival_id(kind, json), at));
        }
    } else {
        inner.rejected.fetch_add(1, Ordering::Relaxed);
    }
    if record {
        lock(&inner.received).push(Received {
            at: SystemTime::now(),
            kind,
            method: method.into(),
            path: uri.path().to_owned(),
            headers,
            body,
            json,
            api_key,
            application_id: application,
            status,
        });
    }
    inner.arrived.notify_waiters();
    match response {
        Some(r) => r,
        // Unwinding the connection's task closes the socket without an answer; the
        // payload is not a panic message, so nothing is printed.
        None => std::panic::resume_unwind(Box::new("dropping the connection")),
    }
}

/// The status-mix answer for request number `n`: statuses spread by weight, evenly
/// (a multiplicative hash of `n` picks the slot, so runs are repeatable).
fn mixed_reply(config: &Config, n: u64) -> Option<Reply> {
    let total: u64 = config.status_mix.iter().map(|(_, w)| u64::from(*w)).sum();
    if total == 0 {
        return None;
    }
    let mut slot = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) % total;
    for (status, weight) in &config.status_mix {
        if slot < u64::from(*weight) {
            if (200..300).contains(status) {
                return None;
            }
            let mut reply = Reply::status(*status);
            if matches!(status, 429 | 503) {
                reply.retry_after = config.retry_after.clone();
            }
            return Some(reply);
        }
        slot -= u64::from(*weight);
    }
    None
}

/// What the real API would answer.
#[allow(clippy::too_many_arguments)]
fn answer(
    inner: &Inner,
    kind: Kind,
    application: Option<&str>,
    api_key: Option<&str>,
    keys: &[String],
    headers: &HeaderMap,
    json: Option<&Value>,
    path_order: Option<&str>,
) -> Response {
    if kind.is_order() && !api_key.is_some_and(|k| keys.iter().any(|valid| valid == k)) {
        return error(StatusCode::UNAUTHORIZED, "Invalid api_key");
    }
    match kind {
        Kind::OrderUpdate | Kind::OrderCancel => {
            let order_id = path_order.unwrap_or_default();
            let mut orders = lock(&inner.orders);
            let Some(stored) = orders.get_mut(order_id).filter(|o| o.status != "deleted") else {
                return error(StatusCode::NOT_FOUND, "Order not found");
            };
            if stored.status == "finalized" {
                return error(
                    StatusCode::FORBIDDEN,
                    "Order is finalized and cannot be changed",
                );
            }
            if kind == Kind::OrderCancel {
                stored.status = "deleted";
            } else {
                if !is_json(headers) {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "Content-Type must be application/json",
                    );
                }
                let Some(order) = json else {
                    return error(StatusCode::BAD_REQUEST, "Body is not valid JSON");
                };
                if let Err(message) = check_order(order) {
                    return error(StatusCode::BAD_REQUEST, message);
                }
                if order["order_id"] != order_id {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "order_id in the body does not match the path",
                    );
                }
                stored.object = order.clone();
            }
            let mut object = stored.object.clone();
            object["status"] = json!(if kind == Kind::OrderCancel {
                "deleted"
            } else {
                "open"
            });
            (
                StatusCode::OK,
                Json(json!({"meta": {"status": "ok"}, "object": object})),
            )
                .into_response()
        }
        Kind::Order => {
            if !is_json(headers) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Content-Type must be application/json",
                );
            }
            let Some(order) = json else {
                return error(StatusCode::BAD_REQUEST, "Body is not valid JSON");
            };
            if let Err(message) = check_order(order) {
                return error(StatusCode::BAD_REQUEST, message);
            }
            let order_id = order["order_id"].as_str().unwrap_or_default().to_owned();
            {
                let mut orders = lock(&inner.orders);
                if orders.contains_key(&order_id) {
                    return error(StatusCode::CONFLICT, "Order already exists");
                }
                orders.insert(
                    order_id.clone(),
                    StoredOrder {
                        status: "open",
                        object: order.clone(),
                    },
                );
            }
            let mut object = order.clone();
            object["button_order_id"] = json!(format!(
                "btnorder-{:016x}",
                inner.total.load(Ordering::Relaxed)
            ));
            object["status"] = json!("open");
            (
                StatusCode::OK,
                Json(json!({"meta": {"status": "ok"}, "object": object})),
            )
                .into_response()
        }
        Kind::Activity => {
            if headers.contains_key(header::AUTHORIZATION) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "The activity API takes no Authorization header",
                );
            }
            if !is_json(headers) {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Content-Type must be application/json",
                );
            }
            let (Some(application), Some(activity)) = (application, json) else {
                return error(StatusCode::BAD_REQUEST, "Body is not valid JSON");
            };
            if let Err(message) = check_activity(activity, application) {
                return error(StatusCode::BAD_REQUEST, message);
            }
            (
                StatusCode::OK,
                Json(json!({"meta": {"status": "ok"}, "object": {}})),
            )
                .into_response()
        }
        Kind::Other => error(StatusCode::NOT_FOUND, "Not found"),
    }
}

/// The id a load generator put in a delivered object: the order id, or the first
/// product's id.
fn arrival_id(kind: Kind, json: &Value) -> String {
    let id = match kind {
        Kind::Order => json.get("order_id"),
        _ => json.pointer("/activity_data/products/0/id"),
    };
    id.and_then(Value::as_str).unwrap_or_default().to_owned()
}

fn host_application(headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let app = host.split('.').next()?;
    app.starts_with("app-").then(|| app.to_owned())
}

async fn order(
    State(inner): State<Arc<Inner>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(inner, Kind::Order, None, None, uri, headers, body).await
}

async fn order_update(
    State(inner): State<Arc<Inner>>,
    Path(order_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(
        inner,
        Kind::OrderUpdate,
        None,
        Some(order_id),
        uri,
        headers,
        body,
    )
    .await
}

async fn order_cancel(
    State(inner): State<Arc<Inner>>,
    Path(order_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(
        inner,
        Kind::OrderCancel,
        None,
        Some(order_id),
        uri,
        headers,
        body,
    )
    .await
}

async fn activity(
    State(inner): State<Arc<Inner>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let application = host_application(&headers);
    handle(inner, Kind::Activity, application, None, uri, headers, body).await
}

async fn activity_by_path(
    State(inner): State<Arc<Inner>>,
    axum::extract::Path(application): axum::extract::Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(
        inner,
        Kind::Activity,
        Some(application),
        None,
        uri,
        headers,
        body,
    )
    .await
}

async fn fallback(
    State(inner): State<Arc<Inner>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(inner, Kind::Other, None, None, uri, headers, body).await
}

async fn stats(State(inner): State<Arc<Inner>>) -> Json<Value> {
    let s = inner.stats();
    Json(json!({
        "total": s.total, "ok": s.ok, "rejected": s.rejected, "peak_in_flight": s.peak_in_flight,
        "uptime_s": inner.started.elapsed().as_secs_f64(),
    }))
}

/// Arrivals as `id<TAB>unix-microseconds` lines.
async fn arrivals(State(inner): State<Arc<Inner>>) -> String {
    let arrivals = lock(&inner.arrivals);
    let mut out = String::with_capacity(arrivals.len() * 40);
    for (id, at) in arrivals.iter() {
        out.push_str(id);
        out.push('\t');
        out.push_str(&at.to_string());
        out.push('\n');
    }
    out
}

async fn reset(State(inner): State<Arc<Inner>>) -> StatusCode {
    lock(&inner.rules).clear();
    lock(&inner.received).clear();
    lock(&inner.arrivals).clear();
    lock(&inner.orders).clear();
    for counter in [
        &inner.total,
        &inner.ok,
        &inner.rejected,
        &inner.peak_in_flight,
    ] {
        counter.store(0, Ordering::Relaxed);
    }
    StatusCode::NO_CONTENT
}
