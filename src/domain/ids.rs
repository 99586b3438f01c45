//! Prefixed, time-ordered identifiers (`int_...`, `src_...`, `dlv_...`, `log_...`), one type per
//! prefix so an id of one kind is never taken for another. Each is a lower-cased
//! ULID, monotonic per thread (one generator per thread, so busy threads never wait
//! for each other): ids sort in creation order to the millisecond, which is how lists
//! page newest-first and how retention cuts.
//!
//! Text becomes an id only through `parse` (at the HTTP edge, and when a stored row is
//! read), so the core only ever holds well-formed ones. An id is a shared string:
//! copies and database binds are reference-count bumps, not allocations.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ulid::{Generator, ULID_LEN, Ulid};

thread_local! {
    static GENERATOR: RefCell<Generator> = const { RefCell::new(Generator::new()) };
}

/// Text that is not an id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not {article} {kind} id ({prefix}_ followed by 26 characters)")]
pub struct InvalidId {
    pub kind: &'static str,
    article: &'static str,
    prefix: &'static str,
    text: String,
}

fn generate() -> Ulid {
    GENERATOR.with(|g| {
        // Overflow means 2^80 ids in one millisecond; step into the next one.
        g.borrow_mut()
            .generate()
            .unwrap_or_else(|o| o.commit_overflow_increment())
    })
}

fn render(prefix: &str, ulid: Ulid) -> Arc<str> {
    let mut buf = [0u8; ULID_LEN];
    let encoded = ulid.array_to_str(&mut buf);
    encoded.make_ascii_lowercase();
    let mut text = String::with_capacity(prefix.len() + 1 + ULID_LEN);
    text.push_str(prefix);
    text.push('_');
    text.push_str(encoded);
    text.into()
}

fn well_formed(prefix: &str, text: &str) -> bool {
    text.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|u| {
            u.len() == ULID_LEN
                && u.bytes().all(|b| !b.is_ascii_uppercase())
                && Ulid::from_string(u).is_ok()
        })
}

/// Declares an id type with its prefix.
macro_rules! prefixed_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal, $kind:literal, $article:literal) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Arc<str>);

        impl $name {
            /// A new id, greater than every id this thread made before.
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                Self(render($prefix, generate()))
            }

            pub fn parse(text: &str) -> Result<Self, InvalidId> {
                if well_formed($prefix, text) {
                    Ok(Self(text.into()))
                } else {
                    Err(InvalidId {
                        kind: $kind,
                        article: $article,
                        prefix: $prefix,
                        text: text.chars().take(64).collect(),
                    })
                }
            }

            /// The smallest id of this kind made at `at`: every id made before `at`
            /// sorts below it.
            pub fn floor_at(at: SystemTime) -> Self {
                let ms = at
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or(Duration::ZERO)
                    .as_millis() as u64;
                Self(render($prefix, Ulid::from_parts(ms, 0)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The shared text, for a database bind that takes it without copying.
            pub fn shared(&self) -> Arc<str> {
                self.0.clone()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidId;

            fn from_str(s: &str) -> Result<Self, InvalidId> {
                Self::parse(s)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                use utoipa::openapi::schema::{ObjectBuilder, Type};
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some(concat!("`", $prefix, "_` followed by a lower-cased ULID; newer ids sort higher")))
                    // A ULID in Crockford's base 32 (no i, l, o, u), at most 7zzz...
                    .pattern(Some(concat!("^", $prefix, "_[0-7][0-9a-hjkmnp-tv-z]{25}$")))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

prefixed_id!(
    /// An installed integration.
    IntegrationId,
    "int",
    "integration",
    "an"
);
prefixed_id!(
    /// A source: a sender with its own ingest token, connected to chosen integrations.
    SourceId,
    "src",
    "source",
    "a"
);
prefixed_id!(
    /// One delivery: an event on its way to one integration.
    DeliveryId,
    "dlv",
    "delivery",
    "a"
);
prefixed_id!(
    /// One live-log entry.
    LogId,
    "log",
    "live-log entry",
    "a"
);
prefixed_id!(
    /// Who holds a leased delivery: a lane's lease, renewed at every lease.
    LeaseToken,
    "lease",
    "lease",
    "a"
);
prefixed_id!(
    /// One HTTP request, as `x-request-id` and in its log line.
    RequestId,
    "req",
    "request",
    "a"
);
prefixed_id!(
    /// A Test Event's own event (its messageId is `test-` and this id).
    TestEventId,
    "evt",
    "test event",
    "a"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_in_creation_order() {
        let ids: Vec<LogId> = (0..1000).map(|_| LogId::new()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        assert!(
            ids.iter()
                .all(|id| LogId::parse(id.as_str()).as_ref() == Ok(id))
        );
    }

    #[test]
    fn floor_sorts_below_later_ids_and_above_earlier_ones() {
        let before = LogId::new();
        std::thread::sleep(Duration::from_millis(3));
        let floor = LogId::floor_at(SystemTime::now());
        std::thread::sleep(Duration::from_millis(3));
        let after = LogId::new();
        assert!(before < floor && floor < after, "{before} {floor} {after}");
    }

    #[test]
    fn parsing_checks_prefix_and_shape() {
        assert!(IntegrationId::parse("int_").is_err());
        assert!(IntegrationId::parse(LogId::new().as_str()).is_err());
        assert!(IntegrationId::parse("int_../../etc/passwd").is_err());
        let id = IntegrationId::new();
        assert!(IntegrationId::parse(&id.as_str().to_uppercase()).is_err());
        let e = DeliveryId::parse("dlv_0").unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"dlv_0\" is not a delivery id (dlv_ followed by 26 characters)"
        );
    }

    #[test]
    fn ids_are_written_as_json_strings_and_parsed_back() {
        let id = DeliveryId::new();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<DeliveryId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<DeliveryId>("\"int_x\"").is_err());
    }
}
