//! The records of an event's trip, built here and nowhere else: the delivery queued
//! for an integration (and the live-log entry of one that ends at once, filtered or
//! unmappable), and the live-log entry of each attempt. Ingest, delivery and Test
//! Event all record through these, so an entry reads the same whoever wrote it.

use crate::blueprint::Issue;
use crate::button::{Attempt, CallKind};
use crate::domain::{DeliveryId, DeliveryState, IntegrationId, LogId, Outcome};
use crate::integrations::Integration;
use crate::live_logs::ResponseView;
use crate::mapping::{self, Prepared};
use crate::store::ingest::NewDelivery;
use crate::store::logs::LogRecord;
use crate::store::queue::Leased;

/// The event a delivery carries, as its records name it.
#[derive(Debug, Clone, Copy)]
pub struct EventRef<'a> {
    pub message_id: &'a str,
    pub event_name: Option<&'a str>,
}

/// A delivery for `integration` of what mapping made of the event: queued when there
/// is a request to send, else ended at once with the entry that says why. `None` when
/// the integration's blueprint does not take the event.
pub fn delivery(
    integration: &Integration,
    event: EventRef<'_>,
    prepared: Prepared,
    test: bool,
    now: i64,
) -> Option<(NewDelivery, Option<LogRecord>)> {
    let call = prepared.call()?;
    let mut delivery = NewDelivery {
        id: DeliveryId::new(),
        integration_id: integration.id.clone(),
        message_id: event.message_id.to_owned(),
        event_name: event.event_name.unwrap_or_default().to_owned(),
        call,
        state: DeliveryState::Pending,
        url: None,
        body: None,
        warnings: None,
        test,
        created_at: now,
    };
    let ended = |delivery: &NewDelivery, outcome: Outcome, error: String, hint: Option<String>| {
        let mut log = entry(&delivery.attempted(), outcome, now);
        log.error = Some(error);
        log.hint = hint;
        log
    };
    let log = match prepared {
        Prepared::NotSubscribed => return None,
        Prepared::Request { request, warnings } => {
            delivery.body = Some(Vec::from(request.body));
            delivery.url = Some(request.url);
            delivery.warnings = warnings_json(&warnings);
            None
        }
        Prepared::Filtered { reason, .. } => {
            delivery.state = DeliveryState::Filtered;
            Some(ended(&delivery, Outcome::Filtered, reason, None))
        }
        Prepared::Failed {
            errors, warnings, ..
        } => {
            delivery.state = DeliveryState::MappingFailed;
            delivery.warnings = warnings_json(&warnings);
            Some(ended(
                &delivery,
                Outcome::MappingFailed,
                mapping::summarize(&errors),
                mapping::first_hint(&errors),
            ))
        }
    };
    Some((delivery, log))
}

/// The delivery an attempt was made for.
#[derive(Debug, Clone, Copy)]
pub struct Attempted<'a> {
    pub integration_id: &'a IntegrationId,
    pub delivery_id: &'a DeliveryId,
    pub message_id: &'a str,
    pub event_name: &'a str,
    pub call: Option<CallKind>,
    /// The mapping's warnings, as stored with the delivery.
    pub warnings: Option<&'a str>,
    pub test: bool,
}

impl NewDelivery {
    pub fn attempted(&self) -> Attempted<'_> {
        Attempted {
            integration_id: &self.integration_id,
            delivery_id: &self.id,
            message_id: &self.message_id,
            event_name: &self.event_name,
            call: Some(self.call),
            warnings: self.warnings.as_deref(),
            test: self.test,
        }
    }
}

impl Leased {
    pub fn attempted(&self) -> Attempted<'_> {
        Attempted {
            integration_id: &self.integration_id,
            delivery_id: &self.id,
            message_id: &self.message_id,
            event_name: &self.event_name,
            call: self.call,
            warnings: self.warnings.as_deref(),
            test: false,
        }
    }
}

/// Why a delivery without a whole stored request fails instead of being sent.
pub const INCOMPLETE_REQUEST: &str = "the stored request is incomplete";

/// The entry of attempt `number` of a delivery: Button's answer, or (`Err`) why no
/// request could be sent.
pub fn attempt(
    of: &Attempted<'_>,
    number: i64,
    outcome: Outcome,
    answer: Result<&Attempt, &str>,
    next_attempt_at: Option<i64>,
    now: i64,
) -> LogRecord {
    let mut log = entry(of, outcome, now);
    log.attempt = Some(number);
    log.next_attempt_at = next_attempt_at;
    match answer {
        Ok(answer) => {
            log.status_code = answer.status.map(|s| i64::from(s.as_u16()));
            log.status_line = answer.status_line();
            log.latency_ms = Some(answer.latency.as_secs_f64() * 1000.0);
            log.error = answer.error.clone();
            log.hint = answer.hint.map(str::to_owned);
            log.response = ResponseView::of(answer)
                .map(|r| serde_json::to_string(&r).expect("a response view serialises"));
        }
        Err(why) => log.error = Some(why.to_owned()),
    }
    log
}

/// An entry about `of` with nothing yet but its outcome.
fn entry(of: &Attempted<'_>, outcome: Outcome, now: i64) -> LogRecord {
    LogRecord {
        id: LogId::new(),
        integration_id: of.integration_id.clone(),
        delivery_id: Some(of.delivery_id.clone()),
        message_id: Some(of.message_id.to_owned()),
        event_name: Some(of.event_name.to_owned()),
        call: of.call,
        attempt: None,
        outcome,
        status_code: None,
        status_line: None,
        latency_ms: None,
        error: None,
        hint: None,
        warnings: of
            .warnings
            .filter(|w| !w.is_empty() && *w != "[]")
            .map(str::to_owned),
        next_attempt_at: None,
        response: None,
        test: of.test,
        created_at: now,
    }
}

/// Warnings as stored with a delivery and its entries: a JSON array, or nothing.
pub fn warnings_json(warnings: &[Issue]) -> Option<String> {
    (!warnings.is_empty()).then(|| serde_json::to_string(warnings).expect("issues serialise"))
}
