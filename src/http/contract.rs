//! What the OpenAPI document promises beyond each route's own annotation, so that a
//! client (or a fuzzer such as schemathesis) generated from it sends what the server
//! takes and expects what it answers:
//!
//! - the Signal event envelope exactly as ingest checks it ([`crate::ingest::validate`]):
//!   a valid event by the document is accepted, an invalid one refused;
//! - the answers any route can give whatever its handler does: `400`, `414` and `431`
//!   from the HTTP layer, `408`, `413` (and `415` where JSON is required) where a body
//!   is read, `429`
//!   on the admin API, `503` with `Retry-After` where the store must commit.

use serde_json::{Value, json};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::{Object, Schema, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{PartialSchema, ToSchema};

use crate::domain::problem::NOT_BLANK_PATTERN as NOT_BLANK;

/// The longest `messageId`, in characters.
const MAX_MESSAGE_ID: usize = 255;

/// An RFC 3339 time with a zone whose UTC year is one ingest takes (1970 to 2100,
/// [`crate::blueprint::transform::timestamp`]): years 1971 to 2099 here, so that no
/// offset moves it out; 29 February is left out (it needs a leap year).
const TIMESTAMP: &str = "^(197[1-9]|19[89][0-9]|20[0-9]{2})-((0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])|(0[13-9]|1[0-2])-(29|30)|(0[13578]|1[02])-31)T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])$";

/// An RFC 3339 time with a zone, as a query parameter or a filter takes it.
pub struct Timestamp;

impl PartialSchema for Timestamp {
    fn schema() -> RefOr<Schema> {
        schema(json!({"type": "string", "pattern": TIMESTAMP,
            "description": "RFC 3339 with a zone (Z or an offset), e.g. 2024-05-01T10:00:00Z"}))
    }
}

impl ToSchema for Timestamp {}

/// The message types of the tracking API and of Signal events.
pub const TYPES: [&str; 6] = ["track", "page", "screen", "identify", "group", "alias"];

/// A schema written as JSON. Every schema object must carry `type` (utoipa reads an
/// untyped one as something else); debug builds check that it reads back as written.
pub fn schema(value: Value) -> RefOr<Schema> {
    let schema: RefOr<Schema> =
        serde_json::from_value(value.clone()).expect("a schema utoipa can hold");
    debug_assert_eq!(
        serde_json::to_value(&schema).ok(),
        Some(value),
        "utoipa holds the schema as written"
    );
    schema
}

/// The envelope's properties; `types` are the `type` values this body may carry.
fn envelope(types: &[&str], track: bool, extra: &[(&str, Value)]) -> Value {
    let mut properties = json!({
        "messageId": {"type": "string", "minLength": 1, "maxLength": MAX_MESSAGE_ID, "pattern": NOT_BLANK,
            "description": "The event's unique id (1 to 255 characters, not blank): an event is delivered once per messageId"},
        "type": {"type": "string", "enum": types},
        "event": {"type": "string", "pattern": NOT_BLANK,
            "description": "The event name (purchase, add_to_cart, ...); required for track events"},
        "timestamp": {"type": "string", "pattern": TIMESTAMP,
            "description": "RFC 3339 with a zone (Z or an offset), in the years 1970 to 2100 (UTC)"},
        "properties": {"type": ["object", "null"]},
        "context": {"type": ["object", "null"]},
        "traits": {"type": ["object", "null"]},
        "integrations": {"type": ["object", "null"],
            "description": "Segment's routing switches: an integration's id, name or type (or All) set to false skips it"},
    });
    for (name, value) in extra {
        properties[name] = value.clone();
    }
    let mut required = vec!["messageId"];
    if track {
        required.push("event");
    } else if types.len() > 1 {
        required.push("type");
    }
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": true,
    })
}

/// A Signal event, as `/v1/events` and Preview take it: a track event (`type` track or
/// left out) has an `event` name; the other types need none.
pub struct SignalEvent;

impl PartialSchema for SignalEvent {
    fn schema() -> RefOr<Schema> {
        let others: Vec<&str> = TYPES[1..].to_vec();
        let mut value = json!({
            "oneOf": [
                envelope(&["track"], true, &[]),
                envelope(&others, false, &[]),
            ],
            "description": "A Segment-style event. messageId is required; event (its name) is required for track events, which are those with type track or no type; other fields (userId, anonymousId, ...) are kept as sent.",
        });
        value["example"] = json!({
            "type": "track", "event": "purchase", "messageId": "0b7f6a4e-2c1d-4f7e-9a51-3c2d9e0f1a2b",
            "timestamp": "2024-05-01T10:00:00Z",
            "properties": {"order_id": "ord-1001", "total": 59.99, "currency": "USD"},
            "context": {"consent": {"canonical": {"marketing": true}}}
        });
        schema(value)
    }
}

impl ToSchema for SignalEvent {}

/// `{"batch": [events]}`: each event is checked alone.
pub struct EventBatch;

/// Most events a batch holds by default (`ingest.max_batch_events`).
pub const MAX_BATCH_EVENTS: usize = 500;

fn batch(items: RefOr<Schema>, extra: &[(&str, Value)], description: &str) -> RefOr<Schema> {
    let mut properties = json!({
        "batch": {"type": "array", "minItems": 1, "maxItems": MAX_BATCH_EVENTS, "items": items},
    });
    for (name, value) in extra {
        properties[name] = value.clone();
    }
    schema(json!({
        "type": "object",
        "properties": properties,
        "required": ["batch"],
        "additionalProperties": true,
        "description": description,
    }))
}

impl PartialSchema for EventBatch {
    fn schema() -> RefOr<Schema> {
        batch(
            Ref::from_schema_name("SignalEvent").into(),
            &[],
            "1 to ingest.max_batch_events (500) events. Each is checked alone: the valid ones are accepted, each invalid one is named by index; with none valid the answer is 422.",
        )
    }
}

impl ToSchema for EventBatch {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        schemas.push((SignalEvent::name().into_owned(), SignalEvent::schema()));
    }
}

/// A `writeKey` in the body: the tracking SDKs' way to authenticate when not by header.
fn write_key() -> (&'static str, Value) {
    (
        "writeKey",
        json!({"type": ["string", "null"], "description": "The write key, when not sent as the Basic username"}),
    )
}

/// The tracking API's batch: messages of any type.
pub struct TrackingBatch;

impl PartialSchema for TrackingBatch {
    fn schema() -> RefOr<Schema> {
        batch(
            Ref::from_schema_name("SignalEvent").into(),
            &[write_key()],
            "1 to ingest.max_batch_events (500) messages (sentAt, context and other fields are ignored). Each is checked alone; with none valid the answer is 400.",
        )
    }
}

impl ToSchema for TrackingBatch {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        schemas.push((SignalEvent::name().into_owned(), SignalEvent::schema()));
    }
}

/// One message of the tracking call `call` (`type` may be left out; if given it is
/// `call`).
pub fn tracking_message(call: &str) -> RefOr<Schema> {
    schema(envelope(&[call], call == "track", &[write_key()]))
}

/// The operations of one path, whatever their methods.
pub(super) fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
    ]
    .into_iter()
    .flatten()
}

/// The answers the document adds to every operation, with why.
pub fn complete(api: &mut utoipa::openapi::OpenApi) {
    for (path, item) in api.paths.paths.iter_mut() {
        let admin = path.starts_with("/v1/admin/");
        let ingest = is_ingest(path);
        for operation in operations(item) {
            let responses = &mut operation.responses.responses;
            let mut add = |status: u16, description: &str, retry_after: bool| {
                responses
                    .entry(status.to_string())
                    .or_insert_with(|| error_response(description, retry_after));
            };
            add(
                400,
                "The request cannot be read as HTTP/1.1 (request line or header field)",
                false,
            );
            add(414, "The request line (the URI) is too long", false);
            add(
                431,
                "The request head is over 64 KiB or 100 header fields",
                false,
            );
            if operation.request_body.is_some() {
                add(413, "The request body is larger than the limit", false);
                add(
                    408,
                    "The request body did not arrive within server.body_read_timeout",
                    false,
                );
                // The tracking API reads any content type, as the SDKs send it.
                if !is_tracking(path) {
                    add(
                        415,
                        "The body is not JSON (Content-Type: application/json)",
                        false,
                    );
                }
            }
            if admin {
                add(
                    429,
                    "Over the admin API's rate limit for this token (server.admin_rate_limit a minute): retry after Retry-After seconds",
                    true,
                );
                add(
                    503,
                    "The store cannot take writes right now: nothing was changed, retry after Retry-After seconds",
                    true,
                );
            }
            if ingest {
                add(
                    503,
                    "The store cannot commit or its commit queue is full: nothing was accepted, retry after Retry-After seconds",
                    true,
                );
            }
            // A 503 documented by the route itself also carries Retry-After.
            if let Some(RefOr::T(response)) = responses.get_mut("503")
                && !response.headers.contains_key("Retry-After")
                && (admin || ingest)
            {
                response
                    .headers
                    .insert("Retry-After".into(), RefOr::T(retry_after_header()));
            }
        }
    }
}

/// The routes that take events (Signal's and the tracking API's).
fn is_ingest(path: &str) -> bool {
    path.starts_with("/v1/events")
        || (path.starts_with("/v1/integrations/") && path.contains("/events"))
        || is_tracking(path)
}

fn is_tracking(path: &str) -> bool {
    path.strip_prefix("/v1/")
        .is_some_and(|call| call == "batch" || TYPES.contains(&call))
}

fn retry_after_header() -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(Some(Object::with_type(Type::Integer)))
        .description(Some("Seconds to wait before retrying"))
        .build()
}

fn error_response(description: &str, retry_after: bool) -> RefOr<utoipa::openapi::Response> {
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build(),
    );
    if retry_after {
        response = response.header("Retry-After", retry_after_header());
    }
    RefOr::T(response.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Building each schema runs the round-trip check of [`schema`].
    #[test]
    fn schemas_written_as_json_read_back_as_written() {
        SignalEvent::schema();
        EventBatch::schema();
        TrackingBatch::schema();
        for call in TYPES {
            tracking_message(call);
        }
    }
}
