//! The Segment / RudderStack tracking API, as their SDKs speak it, so sites and
//! backends already instrumented with one can send here: `POST /v1/batch` and the
//! single calls `/v1/track`, `/v1/page`, `/v1/screen`, `/v1/identify`, `/v1/group` and
//! `/v1/alias`. The write key comes as the HTTP Basic username (empty password), as a
//! bearer token, or as `writeKey` in the body; it is a source's token or an ingest
//! token from config. Bodies may be gzipped.
//!
//! Answers are what the SDKs expect: `200 {"success": true}` only after the commit (as
//! for `/v1/events`); errors carry the SDKs' `code` and `message` beside Signal's
//! `error`; `429` and `5xx` for what they should retry, other `4xx` for what they must
//! not. Every message goes through ingest like a Signal event: track events with a
//! name the blueprint takes produce deliveries, the other types are stored and
//! counted (`identify` traits do not enrich later events).

use std::io::Read;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, extract::Request};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::AppState;
use super::contract::{self, TrackingBatch};
use super::error::{ApiError, ErrorBody, with_status_headers};
use super::extract::read_body;
use crate::domain::FieldError;
use crate::ingest::{EventResult, Incoming, Target};
use crate::sources::Sender;

/// An answer the SDKs read as success.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrackingAnswer {
    /// Always `true`: every accepted message is committed.
    pub success: bool,
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: usize,
    /// What became of each message, in order.
    pub results: Vec<EventResult>,
}

/// An error as the SDKs parse it (`code`, `message`) and as Signal's clients do
/// (`error`).
pub struct TrackingError(ApiError);

impl From<ApiError> for TrackingError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl IntoResponse for TrackingError {
    fn into_response(self) -> Response {
        let (status, body) = self.0.render();
        let json = serde_json::json!({
            "success": false,
            "code": body.error.code,
            "message": body.error.message,
            "error": body.error,
        });
        with_status_headers(status, (status, Json(json)).into_response())
    }
}

#[derive(Deserialize)]
struct BatchBody<'a> {
    #[serde(borrow)]
    batch: Vec<&'a RawValue>,
    #[serde(rename = "writeKey")]
    write_key: Option<String>,
}

/// The write key of HTTP Basic (the username) or of a bearer token.
fn header_key(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD.decode(rest.trim()).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let user = text.split_once(':').map_or(text.as_str(), |(u, _)| u);
        (!user.is_empty()).then(|| user.to_owned())
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Some(rest.trim().to_owned()).filter(|t| !t.is_empty())
    } else {
        None
    }
}

fn sender(state: &AppState, key: Option<&str>) -> Result<Sender, ApiError> {
    let key = key.ok_or_else(|| {
        ApiError::Unauthorized(
            "no write key: send it as the HTTP Basic username (empty password) or as writeKey in the body".into(),
        )
    })?;
    super::auth::sender_of(state, key).ok_or_else(|| {
        ApiError::Unauthorized("the write key is not a source's token or an ingest token".into())
    })
}

/// The body, gunzipped when it says it is gzip, within `limit` bytes either way.
async fn body_bytes(headers: &HeaderMap, body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let raw = read_body(body, limit).await?;
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "identity" | "" => Ok(raw.to_vec()),
        "gzip" | "x-gzip" => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&raw[..])
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| {
                    ApiError::bad_request(
                        "invalid_gzip",
                        format!("the gzip body cannot be read: {e}"),
                    )
                })?;
            if out.len() > limit {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            Ok(out)
        }
        other => Err(ApiError::BadRequest {
            code: "unsupported_encoding",
            message: format!("Content-Encoding {other:?} is not supported: send gzip or none"),
            details: Vec::new(),
        }),
    }
}

fn invalid_json(e: &serde_json::Error) -> ApiError {
    ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
}

async fn accept(
    state: &AppState,
    sender: Sender,
    messages: Vec<Incoming>,
) -> Result<Json<TrackingAnswer>, TrackingError> {
    let summary = state
        .ingest
        .accept(messages, &Target::Routed(sender))
        .await
        .map_err(ApiError::from)?;
    if summary.accepted == 0 && summary.duplicates == 0 {
        // Nothing usable: a 400, which the SDKs do not send again.
        let details = summary
            .results
            .into_iter()
            .flat_map(|r| {
                let at = format!("batch[{}]", r.index);
                r.errors.into_iter().map(move |e| e.within(&at))
            })
            .collect();
        return Err(ApiError::BadRequest {
            code: "invalid_request",
            message: "no message of the request was valid".into(),
            details,
        }
        .into());
    }
    Ok(Json(TrackingAnswer {
        success: true,
        accepted: summary.accepted,
        duplicates: summary.duplicates,
        rejected: summary.rejected,
        results: summary.results,
    }))
}

/// A batch of messages of any type, as every Segment and RudderStack SDK sends them.
#[utoipa::path(post, path = "/v1/batch", tag = "tracking",
    security(("write_key" = []), ("ingest_token" = [])),
    request_body(content = TrackingBatch, description = "{\"batch\": [messages], \"sentAt\": ...}; writeKey in the body or as the Basic username; gzip allowed"),
    responses(
        (status = 200, description = "Committed (each message's fate in results)", body = TrackingAnswer),
        (status = 400, description = "Not JSON, not a batch, or no valid message: do not retry", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, description = "The batch holds no message, or more than ingest.max_batch_events", body = ErrorBody),
        (status = 503, description = "Nothing committed: retry", body = ErrorBody)))]
pub async fn batch(
    State(state): State<AppState>,
    request: Request,
) -> Result<Json<TrackingAnswer>, TrackingError> {
    state.store.admit().map_err(ApiError::from)?;
    let (parts, body) = request.into_parts();
    let limits = &state.settings.ingest;
    let bytes = body_bytes(&parts.headers, body, limits.max_batch_bytes).await?;
    let parsed: BatchBody = serde_json::from_slice(&bytes).map_err(|e| invalid_json(&e))?;
    let key = header_key(&parts.headers).or(parsed.write_key);
    let sender = sender(&state, key.as_deref())?;
    if parsed.batch.is_empty() || parsed.batch.len() > limits.max_batch_events {
        return Err(ApiError::validation(vec![FieldError::new(
            "batch",
            "invalid_length",
            format!(
                "must hold 1 to {} messages, not {}",
                limits.max_batch_events,
                parsed.batch.len()
            ),
        )])
        .into());
    }
    let messages = parsed
        .batch
        .iter()
        .map(|raw| Incoming::parse(raw.get().to_owned(), limits.max_event_bytes))
        .collect();
    accept(&state, sender, messages).await
}

/// One message of the type the path names (its `type` may be left out).
async fn single(
    state: AppState,
    call: &'static str,
    request: Request,
) -> Result<Json<TrackingAnswer>, TrackingError> {
    state.store.admit().map_err(ApiError::from)?;
    let (parts, body) = request.into_parts();
    let limit = state.settings.ingest.max_event_bytes;
    let bytes = body_bytes(&parts.headers, body, limit).await?;
    let mut message: Map<String, Value> =
        serde_json::from_slice(&bytes).map_err(|e| invalid_json(&e))?;
    let body_key = match message.remove("writeKey") {
        Some(Value::String(key)) => Some(key),
        None | Some(Value::Null) => None,
        Some(_) => {
            return Err(ApiError::validation(vec![FieldError::new(
                "writeKey",
                "invalid_type",
                "must be a string",
            )])
            .into());
        }
    };
    let sender = sender(&state, header_key(&parts.headers).or(body_key).as_deref())?;
    match message.get("type") {
        None => {
            message.insert("type".into(), Value::String(call.into()));
        }
        Some(Value::String(t)) if t == call => {}
        Some(_) => {
            return Err(ApiError::validation(vec![FieldError::new(
                "type",
                "invalid_value",
                format!("must be {call} on /v1/{call} (or left out)"),
            )])
            .into());
        }
    }
    let raw = Value::Object(message).to_string();
    accept(&state, sender, vec![Incoming::parse(raw, limit)]).await
}

macro_rules! single_call {
    ($name:ident, $message:ident, $call:literal, $what:literal) => {
        #[doc = concat!("One `", $call, "` message: its `type` may be left out.")]
        pub struct $message;

        impl utoipa::PartialSchema for $message {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                contract::tracking_message($call)
            }
        }

        impl utoipa::ToSchema for $message {}

        #[doc = $what]
        #[utoipa::path(post, path = concat!("/v1/", $call), tag = "tracking",
            security(("write_key" = []), ("ingest_token" = [])),
            request_body(content = $message, description = concat!("One ", $call, " message")),
            responses(
                (status = 200, description = "Committed", body = TrackingAnswer),
                (status = 400, description = "Not JSON or not a valid message: do not retry", body = ErrorBody),
                (status = 401, body = ErrorBody), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody),
                (status = 503, description = "Nothing committed: retry", body = ErrorBody)))]
        pub async fn $name(
            State(state): State<AppState>,
            request: Request,
        ) -> Result<Json<TrackingAnswer>, TrackingError> {
            single(state, $call, request).await
        }
    };
}

single_call!(
    track,
    TrackMessage,
    "track",
    "A track message: an event with a name (`Order Completed`, ...)."
);
single_call!(
    page,
    PageMessage,
    "page",
    "A page view: stored and counted."
);
single_call!(
    screen,
    ScreenMessage,
    "screen",
    "A screen view: stored and counted."
);
single_call!(
    identify,
    IdentifyMessage,
    "identify",
    "An identify: stored and counted (its traits do not enrich later events)."
);
single_call!(
    group,
    GroupMessage,
    "group",
    "A group call: stored and counted."
);
single_call!(
    alias,
    AliasMessage,
    "alias",
    "An alias call: stored and counted."
);
