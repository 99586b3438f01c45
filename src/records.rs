//! The records of an event's trip, built here and nowhere else: the delivery of an
//! event to an integration (queued, or ended at once with the live-log entry that says
//! why: filtered, unmappable), the same mapped again after a blueprint fix, and the
//! live-log entry of each attempt. Ingest, remapping, delivery and Test Event all
//! record through these, so an entry reads the same whoever wrote it.

use crate::button::Attempt;
use crate::domain::{DeliveryId, DeliveryState, LogId, Outcome};
use crate::integrations::Integration;
use crate::live_logs::{LogRecord, ResponseView};
use crate::mapping::{self, Prepared};
use crate::store::ingest::NewDelivery;
use crate::store::queue::Parcel;

/// The event a delivery carries, as its records name it.
#[derive(Debug, Clone, Copy)]
pub struct EventRef<'a> {
    pub message_id: &'a str,
    pub event_name: Option<&'a str>,
}

/// Why a delivery without a whole stored request fails instead of being sent.
pub const INCOMPLETE_REQUEST: &str = "the stored request is incomplete";

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
    let mut parcel = Parcel {
        id: DeliveryId::new(),
        integration_id: integration.id.clone(),
        message_id: event.message_id.to_owned(),
        event_name: event.event_name.unwrap_or_default().to_owned(),
        call: Some(prepared.call()?),
        warnings: Vec::new(),
        test,
    };
    let mut order_key = None;
    let (state, url, body, ended) = match prepared {
        Prepared::NotSubscribed => return None,
        Prepared::Request {
            request,
            warnings,
            order,
        } => {
            parcel.warnings = warnings;
            order_key = order;
            let body = Vec::from(request.body);
            (DeliveryState::Pending, Some(request.url), Some(body), None)
        }
        Prepared::Filtered { reason, .. } => {
            let mut log = entry(&parcel, Outcome::Filtered, now);
            log.error = Some(reason);
            (DeliveryState::Filtered, None, None, Some(log))
        }
        Prepared::Failed {
            errors, warnings, ..
        } => {
            parcel.warnings = warnings;
            let mut log = entry(&parcel, Outcome::MappingFailed, now);
            log.error = Some(mapping::summarize(&errors));
            log.hint = mapping::first_hint(&errors);
            (DeliveryState::MappingFailed, None, None, Some(log))
        }
    };
    let delivery = NewDelivery {
        parcel,
        state,
        url,
        body,
        order_key,
        created_at: now,
        lease: None,
    };
    Some((delivery, ended))
}

/// A delivery that ended without a request, mapped again: as [`delivery`] makes it but
/// keeping its id `id`, with the entry that records the new mapping (`remapped` when it
/// is queued, else why it ended again) pointing at the entry it `replaces`. `None`
/// when the blueprint no longer takes the event.
pub fn remapped(
    integration: &Integration,
    event: EventRef<'_>,
    id: DeliveryId,
    prepared: Prepared,
    test: bool,
    replaces: Option<LogId>,
    now: i64,
) -> Option<(NewDelivery, LogRecord)> {
    let (mut delivery, ended) = self::delivery(integration, event, prepared, test, now)?;
    delivery.parcel.id = id;
    let mut log = match ended {
        Some(mut log) => {
            log.delivery_id = Some(delivery.parcel.id.clone());
            log
        }
        None => entry(&delivery.parcel, Outcome::Remapped, now),
    };
    log.replaces = replaces;
    Some((delivery, log))
}

/// The entry that says a delivery of an order waits behind `behind`, an earlier
/// delivery of the same order that ended `how` (failed, dead-lettered).
pub fn held(parcel: &Parcel, behind: &DeliveryId, how: DeliveryState, now: i64) -> LogRecord {
    let mut log = entry(parcel, Outcome::Held, now);
    log.error = Some(format!(
        "held behind delivery {behind} of the same order ({how}): it is sent once that one is delivered; replay that one (dead-letters/replay with its id) to release it"
    ));
    log
}

/// The entry of attempt `number` of a delivery: Button's answer, or (`Err`) why no
/// request could be sent.
pub fn attempt(
    parcel: &Parcel,
    number: i64,
    outcome: Outcome,
    answer: Result<&Attempt, &str>,
    next_attempt_at: Option<i64>,
    now: i64,
) -> LogRecord {
    let mut log = entry(parcel, outcome, now);
    log.attempt = Some(number);
    log.next_attempt_at = next_attempt_at;
    match answer {
        Ok(answer) => {
            log.status_code = answer.status.map(|s| i64::from(s.as_u16()));
            log.status_line = answer.status_line();
            log.latency_ms = Some(answer.latency.as_secs_f64() * 1000.0);
            log.error = answer.error.clone();
            log.hint = answer.hint.map(str::to_owned);
            log.response = ResponseView::of(answer);
        }
        Err(why) => log.error = Some(why.to_owned()),
    }
    log
}

/// An entry about a delivery with nothing yet but its outcome.
fn entry(parcel: &Parcel, outcome: Outcome, now: i64) -> LogRecord {
    LogRecord {
        id: LogId::new(),
        created_at: now,
        integration_id: parcel.integration_id.clone(),
        delivery_id: Some(parcel.id.clone()),
        message_id: Some(parcel.message_id.clone()),
        event_name: Some(parcel.event_name.clone()),
        call: parcel.call,
        attempt: None,
        outcome,
        status_line: None,
        status_code: None,
        latency_ms: None,
        error: None,
        hint: None,
        warnings: parcel.warnings.clone(),
        next_attempt_at: None,
        test: parcel.test,
        response: None,
        replaces: None,
    }
}
