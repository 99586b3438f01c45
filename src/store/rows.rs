//! Records as rows, once for every backend: for each record the store writes, its table
//! and columns named once (they make the statement and size its chunks) and how one
//! record binds them; for each record it reads, one decoder. A backend says how it
//! binds and reads each kind of value ([`Values`], [`Cells`]): that is where the
//! databases differ (an event's own strings are TEXT in SQLite and bytes in
//! PostgreSQL, whose text refuses U+0000).

use std::str::FromStr;
use std::sync::Arc;

use crate::blueprint::Issue;
use crate::domain::SourceId;
use crate::live_logs::LogRecord;
use crate::store::dead_letters::DeadLetter;
use crate::store::ingest::{NewDelivery, NewEvent};
use crate::store::integrations::IntegrationRow;
use crate::store::logs::LogRow;
use crate::store::pack::{Kind, pack, unpack};
use crate::store::queue::{Leased, Parcel};
use crate::store::remap::Unmapped;
use crate::store::sources::SourceRow;

/// One row being bound, value by value, in column order.
pub(super) trait Values {
    fn text(&mut self, value: Option<&str>);
    /// A string that came from an event (its messageId, its name): anything the
    /// event held, U+0000 included.
    fn event_text(&mut self, value: Option<&str>);
    /// An id or any other text held shared.
    fn shared(&mut self, value: Option<Arc<str>>);
    fn int(&mut self, value: Option<i64>);
    fn float(&mut self, value: Option<f64>);
    fn flag(&mut self, value: bool);
    fn bytes(&mut self, value: Option<Vec<u8>>);
}

/// One row being read, column by column.
pub(super) trait Cells {
    fn text(&self, column: &str) -> Result<Option<String>, sqlx::Error>;
    fn event_text(&self, column: &str) -> Result<Option<String>, sqlx::Error>;
    fn int(&self, column: &str) -> Result<Option<i64>, sqlx::Error>;
    fn float(&self, column: &str) -> Result<Option<f64>, sqlx::Error>;
    fn flag(&self, column: &str) -> Result<bool, sqlx::Error>;
    fn bytes(&self, column: &str) -> Result<Option<Vec<u8>>, sqlx::Error>;

    /// A column that must hold a value.
    fn required<T>(
        &self,
        column: &str,
        read: impl FnOnce(&Self, &str) -> Result<Option<T>, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        read(self, column)?.ok_or_else(|| sqlx::Error::ColumnDecode {
            index: column.to_owned(),
            source: "NULL where a value is required".into(),
        })
    }

    /// A value kept packed ([`pack`]), as it was before packing.
    fn packed(&self, column: &str, kind: Kind) -> Result<Option<Vec<u8>>, sqlx::Error> {
        self.bytes(column)?
            .map(|stored| {
                unpack(kind, stored).map_err(|e| sqlx::Error::ColumnDecode {
                    index: column.to_owned(),
                    source: Box::new(e),
                })
            })
            .transpose()
    }

    /// A text value kept packed ([`pack`]), as it was before packing.
    fn packed_text(&self, column: &str, kind: Kind) -> Result<Option<String>, sqlx::Error> {
        self.packed(column, kind)?
            .map(|bytes| {
                String::from_utf8(bytes).map_err(|e| sqlx::Error::ColumnDecode {
                    index: column.to_owned(),
                    source: Box::new(e),
                })
            })
            .transpose()
    }

    /// A word or an id, parsed from its text.
    fn parsed<T>(&self, column: &str) -> Result<Option<T>, sqlx::Error>
    where
        T: FromStr,
        T::Err: std::error::Error + Send + Sync + 'static,
    {
        self.text(column)?
            .map(|text| {
                text.parse().map_err(|e| sqlx::Error::ColumnDecode {
                    index: column.to_owned(),
                    source: Box::new(e),
                })
            })
            .transpose()
    }
}

/// A record written as a row of an `INSERT`: of a multi-row one, or of one bound as an
/// array per column (PostgreSQL's ingest, entries and outcomes).
pub(super) trait Insert {
    const TABLE: &'static str;
    /// The columns written, in the order [`Insert::bind`] binds them.
    const COLUMNS: &'static [&'static str];

    fn bind(self, values: &mut impl Values);
}

/// Warnings as stored: a JSON array, or NULL for none.
pub(super) fn warnings_text(warnings: &[Issue]) -> Option<String> {
    (!warnings.is_empty()).then(|| serde_json::to_string(warnings).expect("issues serialise"))
}

/// Stored warnings read back (unreadable ones are dropped rather than failing the row).
fn warnings_of(text: Option<String>) -> Vec<Issue> {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

impl Insert for &LogRecord {
    const TABLE: &'static str = "live_logs";
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "integration_id",
        "delivery_id",
        "message_id",
        "event_name",
        "call",
        "attempt",
        "outcome",
        "status_code",
        "status_line",
        "latency_ms",
        "error",
        "hint",
        "warnings",
        "next_attempt_at",
        "response",
        "test",
        "created_at",
        "replaces",
    ];

    fn bind(self, b: &mut impl Values) {
        b.shared(Some(self.id.shared()));
        b.shared(Some(self.integration_id.shared()));
        b.shared(self.delivery_id.as_ref().map(|d| d.shared()));
        b.event_text(self.message_id.as_deref());
        b.event_text(self.event_name.as_deref());
        b.text(self.call.map(|c| c.as_str()));
        b.int(self.attempt);
        b.text(Some(self.outcome.as_str()));
        b.int(self.status_code);
        b.text(self.status_line.as_deref());
        b.float(self.latency_ms);
        b.text(self.error.as_deref());
        b.text(self.hint.as_deref());
        b.text(warnings_text(&self.warnings).as_deref());
        b.int(self.next_attempt_at);
        b.bytes(self.response.as_ref().map(|r| {
            pack(
                Kind::Response,
                &serde_json::to_vec(r).expect("a response view serialises"),
            )
        }));
        b.flag(self.test);
        b.int(Some(self.created_at));
        b.shared(self.replaces.as_ref().map(|r| r.shared()));
    }
}

pub(super) fn log_record(c: &impl Cells) -> Result<LogRecord, sqlx::Error> {
    Ok(LogRecord {
        id: c.required("id", Cells::parsed)?,
        integration_id: c.required("integration_id", Cells::parsed)?,
        delivery_id: c.parsed("delivery_id")?,
        message_id: c.event_text("message_id")?,
        event_name: c.event_text("event_name")?,
        call: c.parsed("call")?,
        attempt: c.int("attempt")?,
        outcome: c.required("outcome", Cells::parsed)?,
        status_code: c.int("status_code")?,
        status_line: c.text("status_line")?,
        latency_ms: c.float("latency_ms")?,
        error: c.text("error")?,
        hint: c.text("hint")?,
        warnings: warnings_of(c.text("warnings")?),
        next_attempt_at: c.int("next_attempt_at")?,
        response: c
            .packed("response", Kind::Response)?
            .and_then(|r| serde_json::from_slice(&r).ok()),
        test: c.flag("test")?,
        created_at: c.required("created_at", Cells::int)?,
        replaces: c.parsed("replaces")?,
    })
}

/// An entry read with its delivery's `url` and `body`, and the event's `payload` (a
/// NULL `payload` where the event is not asked for).
pub(super) fn log_row(c: &impl Cells) -> Result<LogRow, sqlx::Error> {
    Ok(LogRow {
        record: log_record(c)?,
        url: c.text("url")?,
        body: c.packed("body", Kind::Request)?,
        event: c.packed_text("payload", Kind::Event)?,
    })
}

pub(super) fn parcel(c: &impl Cells) -> Result<Parcel, sqlx::Error> {
    Ok(Parcel {
        id: c.required("id", Cells::parsed)?,
        integration_id: c.required("integration_id", Cells::parsed)?,
        message_id: c.required("message_id", Cells::event_text)?,
        event_name: c.required("event_name", Cells::event_text)?,
        // A call this version does not know fails that delivery alone (as a request
        // it cannot send) rather than every lease of its lane.
        call: c.text("call")?.and_then(|call| call.parse().ok()),
        warnings: warnings_of(c.text("warnings")?),
        test: c.flag("test")?,
    })
}

pub(super) fn leased(c: &impl Cells) -> Result<Leased, sqlx::Error> {
    Ok(Leased {
        parcel: parcel(c)?,
        attempts: c.required("attempts", Cells::int)?,
        url: c.text("url")?,
        body: c.packed("body", Kind::Request)?,
        lease_token: c.required("lease_token", Cells::parsed)?,
        order_key: c.text("order_key")?,
    })
}

pub(super) fn unmapped(c: &impl Cells) -> Result<Unmapped, sqlx::Error> {
    Ok(Unmapped {
        delivery_id: c.required("id", Cells::parsed)?,
        message_id: c.required("message_id", Cells::event_text)?,
        event_name: c.required("event_name", Cells::event_text)?,
        test: c.flag("test")?,
        payload: c.packed_text("payload", Kind::Event)?,
        last_entry: c.parsed("last_entry")?,
    })
}

/// Sources with their connections, read apart: `connections` are `source_id`,
/// `integration_id` rows in that order.
pub(super) fn sources_with_connections(
    sources: &[impl Cells],
    connections: &[impl Cells],
) -> Result<Vec<SourceRow>, sqlx::Error> {
    let mut rows = sources
        .iter()
        .map(source_row)
        .collect::<Result<Vec<_>, _>>()?;
    for c in connections {
        let source: SourceId = c.required("source_id", Cells::parsed)?;
        let integration = c.required("integration_id", Cells::parsed)?;
        if let Ok(i) = rows.binary_search_by(|s| s.id.cmp(&source)) {
            rows[i].integrations.push(integration);
        }
    }
    Ok(rows)
}

/// A source without its connections (read apart).
fn source_row(c: &impl Cells) -> Result<SourceRow, sqlx::Error> {
    Ok(SourceRow {
        id: c.required("id", Cells::parsed)?,
        name: c.required("name", Cells::text)?,
        token_sha256: c.required("token_sha256", Cells::bytes)?,
        integrations: Vec::new(),
        created_at: c.required("created_at", Cells::int)?,
        updated_at: c.required("updated_at", Cells::int)?,
    })
}

pub(super) fn dead_letter(c: &impl Cells) -> Result<DeadLetter, sqlx::Error> {
    Ok(DeadLetter {
        id: c.required("id", Cells::parsed)?,
        message_id: c.required("message_id", Cells::event_text)?,
        event_name: c.required("event_name", Cells::event_text)?,
        call: c.parsed("call")?,
        attempts: c.required("attempts", Cells::int)?,
        created_at: c.required("created_at", Cells::int)?,
        updated_at: c.required("updated_at", Cells::int)?,
    })
}

impl Insert for &IntegrationRow {
    const TABLE: &'static str = "integrations";
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "catalog_key",
        "name",
        "variant",
        "delivery_mode",
        "enabled",
        "config",
        "secrets",
        "blueprint",
        "lane_state",
        "lane_reason",
        "created_at",
        "updated_at",
    ];

    fn bind(self, b: &mut impl Values) {
        b.shared(Some(self.id.shared()));
        b.text(Some(&self.catalog_key));
        b.text(Some(&self.name));
        b.text(Some(&self.variant));
        b.text(Some(&self.delivery_mode));
        b.flag(self.enabled);
        b.text(Some(&self.config));
        b.bytes(Some(self.secrets.clone()));
        b.text(Some(&self.blueprint));
        b.text(Some(self.lane_state.as_str()));
        b.text(self.lane_reason.as_deref());
        b.int(Some(self.created_at));
        b.int(Some(self.updated_at));
    }
}

/// What a change to an integration rewrites (its id, entry, variant, delivery mode and
/// creation time never change), bound by [`bind_integration_change`] in this order.
const CHANGEABLE: [&str; 8] = [
    "name",
    "enabled",
    "config",
    "secrets",
    "blueprint",
    "lane_state",
    "lane_reason",
    "updated_at",
];

/// The start of the statement that writes a change to an integration:
/// `... FROM (VALUES (` the changed values; the caller closes it with
/// [`INTEGRATION_CHANGE_WHERE`] and its condition.
pub(super) fn integration_change_head() -> String {
    let set: Vec<String> = CHANGEABLE
        .iter()
        .enumerate()
        .map(|(i, column)| format!("{column} = v.column{}", i + 1))
        .collect();
    format!("UPDATE integrations SET {} FROM (", set.join(", "))
}

/// Closes [`integration_change_head`]'s values and starts its condition.
pub(super) const INTEGRATION_CHANGE_WHERE: &str = ") AS v WHERE integrations.id = ";

pub(super) fn bind_integration_change(row: &IntegrationRow, b: &mut impl Values) {
    b.text(Some(&row.name));
    b.flag(row.enabled);
    b.text(Some(&row.config));
    b.bytes(Some(row.secrets.clone()));
    b.text(Some(&row.blueprint));
    b.text(Some(row.lane_state.as_str()));
    b.text(row.lane_reason.as_deref());
    b.int(Some(row.updated_at));
}

pub(super) fn integration_row(c: &impl Cells) -> Result<IntegrationRow, sqlx::Error> {
    Ok(IntegrationRow {
        id: c.required("id", Cells::parsed)?,
        catalog_key: c.required("catalog_key", Cells::text)?,
        name: c.required("name", Cells::text)?,
        variant: c.required("variant", Cells::text)?,
        delivery_mode: c.required("delivery_mode", Cells::text)?,
        enabled: c.flag("enabled")?,
        config: c.required("config", Cells::text)?,
        secrets: c.required("secrets", Cells::bytes)?,
        blueprint: c.required("blueprint", Cells::text)?,
        lane_state: c.required("lane_state", Cells::parsed)?,
        lane_reason: c.text("lane_reason")?,
        created_at: c.required("created_at", Cells::int)?,
        updated_at: c.required("updated_at", Cells::int)?,
    })
}

/// An event to insert, with its payload moved out of the record.
pub(super) struct EventRow<'a> {
    pub event: &'a NewEvent,
    pub payload: String,
}

impl Insert for EventRow<'_> {
    const TABLE: &'static str = "events";
    const COLUMNS: &'static [&'static str] =
        &["message_id", "event_name", "received_at", "payload"];

    fn bind(self, b: &mut impl Values) {
        b.event_text(Some(&self.event.message_id));
        b.event_text(self.event.event_name.as_deref());
        b.int(Some(self.event.received_at));
        b.bytes(Some(pack(Kind::Event, self.payload.as_bytes())));
    }
}

/// A delivery to insert, with its body moved out of the record, and its place among
/// its order's changes if it is one ([`order_changes`]): its number on SQLite; on
/// PostgreSQL its rank in the write, to which the statement adds the write's block.
///
/// [`order_changes`]: super::ingest::order_changes
pub(super) struct DeliveryRow<'a> {
    pub delivery: &'a NewDelivery,
    pub body: Option<Vec<u8>>,
    pub order_seq: Option<i64>,
}

impl Insert for DeliveryRow<'_> {
    const TABLE: &'static str = "deliveries";
    const COLUMNS: &'static [&'static str] = &[
        "id",
        "integration_id",
        "message_id",
        "event_name",
        "call",
        "state",
        "attempts",
        "available_at",
        "url",
        "body",
        "warnings",
        "test",
        "created_at",
        "updated_at",
        "order_key",
        "lease_token",
        "order_seq",
    ];

    fn bind(self, b: &mut impl Values) {
        let (d, p) = (self.delivery, &self.delivery.parcel);
        let lease = d.lease_on_insert();
        b.shared(Some(p.id.shared()));
        b.shared(Some(p.integration_id.shared()));
        b.event_text(Some(&p.message_id));
        b.event_text(Some(&p.event_name));
        b.text(p.call.map(|c| c.as_str()));
        b.text(Some(d.state.as_str()));
        b.int(Some(0));
        b.int(Some(lease.map_or(d.created_at, |l| l.until)));
        b.text(d.url.as_deref());
        b.bytes(self.body.map(|body| pack(Kind::Request, &body)));
        b.text(warnings_text(&p.warnings).as_deref());
        b.flag(p.test);
        b.int(Some(d.created_at));
        b.int(Some(d.created_at));
        b.text(d.order_key.as_deref());
        b.text(lease.map(|l| l.token.as_str()));
        b.int(self.order_seq);
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Counts the values one record binds.
    #[derive(Default)]
    struct Count(usize);

    impl Values for Count {
        fn text(&mut self, _: Option<&str>) {
            self.0 += 1;
        }
        fn event_text(&mut self, _: Option<&str>) {
            self.0 += 1;
        }
        fn shared(&mut self, _: Option<Arc<str>>) {
            self.0 += 1;
        }
        fn int(&mut self, _: Option<i64>) {
            self.0 += 1;
        }
        fn float(&mut self, _: Option<f64>) {
            self.0 += 1;
        }
        fn flag(&mut self, _: bool) {
            self.0 += 1;
        }
        fn bytes(&mut self, _: Option<Vec<u8>>) {
            self.0 += 1;
        }
    }

    /// Binds one record and checks that it gave one value per column.
    pub fn binds_every_column<T: Insert>(row: T) {
        let mut count = Count::default();
        row.bind(&mut count);
        assert_eq!(
            count.0,
            T::COLUMNS.len(),
            "{}: {} values bound for {} columns",
            T::TABLE,
            count.0,
            T::COLUMNS.len()
        );
    }

    #[test]
    fn an_integration_change_binds_every_column_it_sets() {
        let row = IntegrationRow {
            id: crate::domain::IntegrationId::new(),
            catalog_key: "button".into(),
            name: "Button".into(),
            variant: "default".into(),
            delivery_mode: "server_side".into(),
            enabled: true,
            config: "{}".into(),
            secrets: Vec::new(),
            blueprint: "{}".into(),
            lane_state: crate::domain::LaneState::Active,
            lane_reason: None,
            created_at: 0,
            updated_at: 0,
        };
        let mut count = Count::default();
        bind_integration_change(&row, &mut count);
        assert_eq!(count.0, CHANGEABLE.len());
        assert!(
            CHANGEABLE
                .iter()
                .all(|c| <&IntegrationRow as Insert>::COLUMNS.contains(c))
        );
    }

    #[test]
    fn every_record_binds_every_column() {
        use crate::button::CallKind;
        use crate::domain::{DeliveryId, DeliveryState, IntegrationId, LaneState, LogId, Outcome};

        let event = NewEvent {
            message_id: "m".into(),
            event_name: None,
            received_at: 0,
            payload: String::new(),
        };
        binds_every_column(EventRow {
            event: &event,
            payload: "{}".into(),
        });
        let delivery = NewDelivery {
            parcel: Parcel {
                id: DeliveryId::new(),
                integration_id: IntegrationId::new(),
                message_id: "m".into(),
                event_name: "purchase".into(),
                call: Some(CallKind::OrderCreate),
                warnings: Vec::new(),
                test: false,
            },
            state: DeliveryState::Pending,
            url: None,
            body: None,
            order_key: None,
            created_at: 0,
            lease: None,
        };
        binds_every_column(DeliveryRow {
            delivery: &delivery,
            body: None,
            order_seq: None,
        });
        binds_every_column(&LogRecord {
            id: LogId::new(),
            created_at: 0,
            integration_id: IntegrationId::new(),
            delivery_id: None,
            message_id: None,
            event_name: None,
            call: None,
            attempt: None,
            outcome: Outcome::Delivered,
            status_line: None,
            status_code: None,
            latency_ms: None,
            error: None,
            hint: None,
            warnings: Vec::new(),
            next_attempt_at: None,
            test: false,
            response: None,
            replaces: None,
        });
        binds_every_column(&IntegrationRow {
            id: IntegrationId::new(),
            catalog_key: "button".into(),
            name: "Button".into(),
            variant: "default".into(),
            delivery_mode: "server_side".into(),
            enabled: true,
            config: "{}".into(),
            secrets: Vec::new(),
            blueprint: "{}".into(),
            lane_state: LaneState::Active,
            lane_reason: None,
            created_at: 0,
            updated_at: 0,
        });
    }
}
