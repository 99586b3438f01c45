//! Live Logs over HTTP: the list (filters, newest first), one entry, and the live tail
//! as Server-Sent Events.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::{Extension, Json};
use futures_util::Stream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::contract::Timestamp;
use super::error::{ApiError, ErrorBody};
use super::extract::{AdminJson, List, LogPage, Params, with_one_more};
use super::integrations::find;
use crate::button::Client;
use crate::domain::clock::parse_rfc3339;
use crate::domain::{DeliveryId, DeliveryState, FieldError, LogId, Outcome};
use crate::live_logs::{LogEntry, LogFilter, RequestView};
use crate::remap::RemapSummary;
use crate::store::logs::LogRow;
use crate::store::remap::RemapFilter;

/// An entry as the API shows it: with the request its delivery sends, and the event.
fn entry(row: LogRow, client: &Client) -> LogEntry {
    let request = client
        .stored_request(row.record.call, row.url.as_deref(), row.body.as_deref())
        .map(|r| RequestView::of(&r));
    LogEntry {
        record: row.record,
        request,
        event: row
            .event
            .as_deref()
            .and_then(|e| serde_json::from_str(e).ok()),
    }
}

fn filter(params: &Params) -> Result<LogFilter, ApiError> {
    Ok(LogFilter {
        outcome: params.parsed::<Outcome>("outcome")?,
        event_name: params.get("event").map(str::to_owned),
        message_id: params
            .get("message_id")
            .or_else(|| params.get("messageId"))
            .map(str::to_owned),
        since_ms: params.time("since")?,
        until_ms: params.time("until")?,
        test: params.bool("test")?,
    })
}

/// Live-log entries of the integration, newest first.
#[utoipa::path(get, path = "/v1/admin/integrations/{id}/logs", tag = "live logs",
    security(("admin_token" = [])),
    params(("id" = String, Path),
        ("outcome" = Option<Outcome>, Query, description = "delivered, retry_scheduled, failed, dead_lettered, filtered, mapping_failed, paused, remapped or held"),
        ("event" = Option<String>, Query, description = "Event name, e.g. purchase"),
        ("message_id" = Option<String>, Query, description = "The event's messageId"),
        ("since" = Option<Timestamp>, Query, description = "RFC 3339 time: entries at or after it"),
        ("until" = Option<Timestamp>, Query, description = "RFC 3339 time: entries at or before it"),
        ("test" = Option<bool>, Query, description = "Only Test Event entries (true) or none of them (false)"),
        LogPage),
    responses((status = 200, body = inline(List<LogEntry>)), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_logs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    params: Params,
) -> Result<Json<List<LogEntry>>, ApiError> {
    let integration = find(&state, &id)?;
    let filter = filter(&params)?;
    let page = params.page::<LogId>()?;
    let rows = state
        .store
        .list_logs(&integration.id, &filter, &with_one_more(&page))
        .await?;
    let entries = rows.into_iter().map(|r| entry(r, &state.client)).collect();
    Ok(Json(List::page(entries, page.limit, |e| {
        e.record.id.clone()
    })))
}

/// One live-log entry, with the event as received.
#[utoipa::path(get, path = "/v1/admin/integrations/{id}/logs/{log_id}", tag = "live logs",
    security(("admin_token" = [])),
    params(("id" = String, Path), ("log_id" = String, Path)),
    responses((status = 200, body = LogEntry), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_log(
    State(state): State<AppState>,
    Path((id, log_id)): Path<(String, String)>,
) -> Result<Json<LogEntry>, ApiError> {
    let integration = find(&state, &id)?;
    let not_found = || ApiError::not_found("live-log entry", log_id.as_str());
    let parsed = LogId::parse(&log_id).map_err(|_| not_found())?;
    let row = state
        .store
        .get_log(&integration.id, &parsed)
        .await?
        .ok_or_else(not_found)?;
    Ok(Json(entry(row, &state.client)))
}

/// A live tail of the integration's entries as Server-Sent Events (`event: log`, the
/// entry as data, its id as the event id), with the list's filters. A subscriber that
/// falls behind gets `event: missed` with `{"missed": n}` and continues.
#[utoipa::path(get, path = "/v1/admin/integrations/{id}/logs/stream", tag = "live logs",
    security(("admin_token" = [])),
    params(("id" = String, Path),
        ("outcome" = Option<Outcome>, Query), ("event" = Option<String>, Query),
        ("message_id" = Option<String>, Query), ("test" = Option<bool>, Query)),
    responses((status = 200, description = "text/event-stream of log entries", content_type = "text/event-stream", body = String),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn stream_logs(
    State(state): State<AppState>,
    Path(id): Path<String>,
    params: Params,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let id = find(&state, &id)?.id.clone();
    let filter = filter(&params)?;
    let stream = BroadcastStream::new(state.hub.subscribe()).filter_map(move |entry| match entry {
        Ok(entry) if entry.record.matches(&id, &filter) => {
            let data = serde_json::to_string(&*entry).unwrap_or_default();
            Some(Ok(Event::default()
                .event("log")
                .id(entry.record.id.as_str())
                .data(data)))
        }
        Ok(_) => None,
        Err(BroadcastStreamRecvError::Lagged(missed)) => Some(Ok(Event::default()
            .event("missed")
            .data(serde_json::json!({"missed": missed}).to_string()))),
    });
    // A live tail ends when the service stops, so shutdown does not wait on it.
    let mut stopping = state.stopping.clone();
    let stream = futures_util::StreamExt::take_until(stream, async move {
        let _ = stopping.wait_for(|stopping| *stopping).await;
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Which stored events to map again. Every field is optional.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"outcome": "mapping_failed", "event": "purchase", "since": "2024-05-01T00:00:00Z"}))]
pub struct ReplayRequest {
    /// The entries to replace: `mapping_failed` (the default) or `filtered`.
    #[schema(value_type = Option<ReplayOutcome>)]
    pub outcome: Option<Outcome>,
    /// Event name, e.g. `purchase`.
    pub event: Option<String>,
    /// RFC 3339 time: events received at or after it.
    #[schema(value_type = Option<Timestamp>)]
    pub since: Option<String>,
    /// RFC 3339 time: events received at or before it.
    #[schema(value_type = Option<Timestamp>)]
    pub until: Option<String>,
    /// Only these events (at most 1,000 messageIds).
    #[schema(max_items = 1000)]
    pub message_ids: Option<Vec<String>>,
    /// Go on past this delivery (the `next` of the previous answer).
    pub after: Option<DeliveryId>,
    /// Most deliveries mapped again in this call: 1 to 1,000, default 1,000.
    #[schema(minimum = 1, maximum = 1000)]
    #[serde(default, deserialize_with = "whole_number")]
    pub limit: Option<u32>,
}

/// A whole number however JSON writes it: `398.0` is the integer 398 (as JSON Schema
/// says), not an error. One out of range stays out of range (clamped to `0` or
/// `u32::MAX`) for the caller's own bounds to name.
fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    use serde::de::Error;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(v) = n.as_u64() {
        return Ok(Some(u32::try_from(v).unwrap_or(u32::MAX)));
    }
    match n.as_f64() {
        Some(f) if f.is_finite() && f.fract() == 0.0 => {
            Ok(Some(f.clamp(0.0, u32::MAX as f64) as u32))
        }
        _ => Err(D::Error::custom(format!("{n} is not a whole number"))),
    }
}

/// The outcomes whose entries a replay maps again (the document's view of
/// [`ReplayRequest::outcome`]).
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ReplayOutcome {
    MappingFailed,
    Filtered,
}

/// Most deliveries one replay maps again (and most messageIds it names).
const MAX_REPLAY: u32 = 1000;

fn replay_filter(body: Option<Value>) -> Result<RemapFilter, ApiError> {
    let bad = |field: &str, message: String| {
        ApiError::validation(vec![FieldError::new(field, "invalid_value", message)])
    };
    // No body, or `null`, is every mapping failure.
    let request: ReplayRequest = match body {
        None | Some(Value::Null) => ReplayRequest::default(),
        Some(body) => serde_path_to_error::deserialize(body)
            .map_err(|e| bad(&e.path().to_string(), e.into_inner().to_string()))?,
    };
    let state = match request.outcome.unwrap_or(Outcome::MappingFailed) {
        Outcome::MappingFailed => DeliveryState::MappingFailed,
        Outcome::Filtered => DeliveryState::Filtered,
        other => {
            return Err(bad(
                "outcome",
                format!(
                    "{other} entries cannot be mapped again: only mapping_failed and filtered \
                     (dead letters are replayed at .../dead-letters/replay)"
                ),
            ));
        }
    };
    let time = |field: &str, value: Option<String>| {
        value
            .map(|v| parse_rfc3339(&v).map_err(|why| bad(field, why)))
            .transpose()
    };
    let message_ids = request.message_ids.unwrap_or_default();
    if message_ids.len() > MAX_REPLAY as usize {
        return Err(bad(
            "message_ids",
            format!("at most {MAX_REPLAY} messageIds at a time"),
        ));
    }
    let limit = request.limit.unwrap_or(MAX_REPLAY);
    if !(1..=MAX_REPLAY).contains(&limit) {
        return Err(bad("limit", format!("must be 1 to {MAX_REPLAY}")));
    }
    Ok(RemapFilter {
        state,
        event_name: request.event,
        since_ms: time("since", request.since)?,
        until_ms: time("until", request.until)?,
        message_ids,
        after: request.after,
        limit,
    })
}

/// Maps stored events again with the integration's current blueprint (after a fix):
/// deliveries that failed to map (or were filtered) and now map are queued for
/// Button; each gets a new entry that points at the entry it replaces. At most
/// `limit` deliveries, oldest first; `next` continues.
#[utoipa::path(post, path = "/v1/admin/integrations/{id}/logs/replay", tag = "live logs",
    security(("admin_token" = [])),
    params(("id" = String, Path)),
    request_body(content = Option<ReplayRequest>, description = "Filters; no body (or null) maps every mapping failure again"),
    responses((status = 200, body = RemapSummary), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
               (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn replay_logs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Option<AdminJson>,
) -> Result<Json<RemapSummary>, ApiError> {
    let integration = find(&state, &id)?;
    let filter = replay_filter(body.map(|b| b.value))?;
    let summary = state.ingest.remap(&integration, &filter).await?;
    tracing::info!(
        audit = "logs.replayed",
        integration_id = %integration.id,
        caller = %caller,
        matched = summary.matched,
        queued = summary.queued,
        mapping_failed = summary.mapping_failed,
        "stored events mapped again"
    );
    Ok(Json(summary))
}
