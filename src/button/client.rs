//! The Button HTTP client: prepares the exact request for a call, sends it with the
//! credentials of the moment, and classifies the answer.

use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::call::{Api, Auth, Call, CallKind};
use super::{Classification, classify};

/// How much of an answer is read to classify it, whatever is kept for Live Logs.
const CLASSIFY_BYTES: usize = 64 * 1024;

pub const USER_AGENT: &str = concat!("signal-button-delivery/", env!("CARGO_PKG_VERSION"));

/// What the client needs to know.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub orders_base_url: String,
    /// `{application_id}` is replaced by the application's id.
    pub activity_url_template: String,
    /// Sent as `X-Button-API-Version` on Orders API calls when not empty.
    pub api_version: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_response_bytes: usize,
}

/// A request ready to send, without its credentials: what is stored at ingest, sent
/// (the same bytes) by every attempt, and shown in live logs. Its method, headers and
/// credentials follow from its call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreparedRequest {
    pub call: CallKind,
    pub url: String,
    /// Non-secret headers, in sending order.
    pub headers: Vec<(String, String)>,
    #[serde(skip)]
    pub body: Bytes,
}

impl PreparedRequest {
    pub fn method(&self) -> reqwest::Method {
        self.call.method()
    }

    pub fn auth(&self) -> Auth {
        self.call.auth()
    }

    /// The headers as sent, with the credentials redacted.
    pub fn redacted_headers(&self) -> Vec<(String, String)> {
        let mut headers = self.headers.clone();
        if self.auth() == Auth::ApiKey {
            headers.push(("authorization".to_owned(), "Basic ***".to_owned()));
        }
        headers
    }
}

/// The answer to one attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub classification: Classification,
    pub status: Option<StatusCode>,
    pub latency: Duration,
    /// Selected response headers (content type, `Retry-After`, Button's request id).
    pub headers: Vec<(String, String)>,
    /// The answer's body, cut at the configured bound.
    pub body: String,
    pub truncated: bool,
    /// What went wrong: Button's error message, or the transport failure.
    pub error: Option<String>,
    pub hint: Option<&'static str>,
}

impl Attempt {
    /// `200 OK`, as Live Logs shows it.
    pub fn status_line(&self) -> Option<String> {
        self.status.map(status_line)
    }
}

pub fn status_line(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// Installs the process-wide rustls provider (ring: no system OpenSSL, no cmake build).
/// Idempotent; every reqwest client of the process needs it first.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    config: ClientConfig,
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Self, reqwest::Error> {
        install_tls_provider();
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { http, config })
    }

    /// The exact request for `call`.
    pub fn prepare(&self, call: &Call) -> PreparedRequest {
        let url = call.url(
            &self.config.orders_base_url,
            &self.config.activity_url_template,
        );
        self.request(call.kind(), url, Bytes::from(call.body()))
    }

    /// The request a stored delivery sends: its call, URL and body.
    pub fn request(&self, call: CallKind, url: String, body: Bytes) -> PreparedRequest {
        let mut headers = vec![(header::USER_AGENT.to_string(), USER_AGENT.to_owned())];
        if !body.is_empty() {
            headers.insert(
                0,
                (
                    header::CONTENT_TYPE.to_string(),
                    "application/json".to_owned(),
                ),
            );
        }
        if call.api() == Api::Orders && !self.config.api_version.is_empty() {
            headers.push((
                "x-button-api-version".to_owned(),
                self.config.api_version.clone(),
            ));
        }
        PreparedRequest {
            call,
            url,
            headers,
            body,
        }
    }

    /// A request kept as its parts (a stored delivery), if it has them all.
    pub fn stored_request(
        &self,
        call: Option<CallKind>,
        url: Option<&str>,
        body: Option<&[u8]>,
    ) -> Option<PreparedRequest> {
        Some(self.request(
            call?,
            url?.to_owned(),
            Bytes::copy_from_slice(body.unwrap_or_default()),
        ))
    }

    /// Sends `request` once. `api_key` is used only if the request takes it.
    #[tracing::instrument(name = "button.send", skip_all, fields(call = %request.call))]
    pub async fn send(&self, request: &PreparedRequest, api_key: &SecretString) -> Attempt {
        let started = Instant::now();
        let mut headers = HeaderMap::with_capacity(request.headers.len() + 1);
        for (name, value) in &request.headers {
            if let (Ok(n), Ok(v)) = (
                header::HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.append(n, v);
            }
        }
        if request.auth() == Auth::ApiKey {
            let encoded = STANDARD.encode(format!("{}:", api_key.expose_secret()));
            if let Ok(mut v) = HeaderValue::from_str(&format!("Basic {encoded}")) {
                v.set_sensitive(true);
                headers.insert(header::AUTHORIZATION, v);
            }
        }
        let sent = self
            .http
            .request(request.method(), &request.url)
            .headers(headers)
            .body(request.body.clone())
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => return transport_failure(&e, started, self.config.request_timeout),
        };
        let status = response.status();
        let kept = keep_headers(response.headers());
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        // Read enough to find Button's error message; keep the configured bound.
        let (mut body, mut truncated, read_error) =
            read_bounded(response, self.config.max_response_bytes.max(CLASSIFY_BYTES)).await;
        let verdict = classify(request.call, status, retry_after, &body);
        if body.len() > self.config.max_response_bytes {
            let mut cut = self.config.max_response_bytes;
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            body.truncate(cut);
            truncated = true;
        }
        Attempt {
            classification: verdict.classification,
            status: Some(status),
            latency: started.elapsed(),
            headers: kept,
            body,
            truncated,
            error: verdict.error.or(read_error),
            hint: verdict.hint,
        }
    }
}

fn transport_failure(e: &reqwest::Error, started: Instant, timeout: Duration) -> Attempt {
    let error = if e.is_timeout() {
        format!("no answer within {}s (timed out)", timeout.as_secs_f64())
    } else if e.is_connect() {
        format!("could not connect: {}", source_chain(e))
    } else {
        format!("connection failed: {}", source_chain(e))
    };
    Attempt {
        classification: Classification::Retryable { retry_after: None },
        status: None,
        latency: started.elapsed(),
        headers: Vec::new(),
        body: String::new(),
        truncated: false,
        error: Some(error),
        hint: None,
    }
}

/// The innermost causes of a transport error, which say what actually happened
/// ("connection refused", "connection closed before message completed").
fn source_chain(e: &reqwest::Error) -> String {
    let mut causes = Vec::new();
    let mut current: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = current {
        causes.push(c.to_string());
        current = c.source();
    }
    if causes.is_empty() {
        e.to_string()
    } else {
        causes.join(": ")
    }
}

fn keep_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    const KEEP: [&str; 4] = [
        "content-type",
        "retry-after",
        "x-request-id",
        "x-button-request-id",
    ];
    headers
        .iter()
        .filter(|(name, _)| KEEP.contains(&name.as_str()))
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
        .collect()
}

async fn read_bounded(
    mut response: reqwest::Response,
    max: usize,
) -> (String, bool, Option<String>) {
    let mut body = Vec::new();
    let mut truncated = false;
    let mut error = None;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = max.saturating_sub(body.len());
                if chunk.len() > room {
                    body.extend_from_slice(&chunk[..room]);
                    truncated = true;
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => {
                error = Some(format!("the answer was cut off: {}", source_chain(&e)));
                break;
            }
        }
    }
    (
        String::from_utf8_lossy(&body).into_owned(),
        truncated,
        error,
    )
}

/// `Retry-After` in either of its forms: delay seconds, or an HTTP date (a date in the
/// past means now).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}
