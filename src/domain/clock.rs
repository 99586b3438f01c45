//! Times as the store keeps them (integer milliseconds since the Unix epoch) and as the
//! API shows them (RFC 3339, UTC, always with milliseconds, so renderings sort as the
//! times do).

use std::time::{Duration, SystemTime};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    to_ms(SystemTime::now())
}

pub fn to_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as i64
}

pub fn from_ms(ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

/// RFC 3339 rendering of a stored time.
pub fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .unwrap_or_default()
}

/// Serialises a stored time as [`rfc3339`] renders it.
pub fn serialize_rfc3339<S: serde::Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*ms))
}

/// [`serialize_rfc3339`] for a time that may be absent.
pub fn serialize_rfc3339_opt<S: serde::Serializer>(
    ms: &Option<i64>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => serialize_rfc3339(ms, s),
        None => s.serialize_none(),
    }
}

/// An RFC 3339 time given by a caller, as stored milliseconds, or what is wrong with it.
pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| format!("{text:?} is not an RFC 3339 time (2024-05-01T12:00:00Z)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_times_render_with_milliseconds_and_read_back() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_714_557_600_123), "2024-05-01T10:00:00.123Z");
        assert_eq!(
            parse_rfc3339("2024-05-01T10:00:00.123Z"),
            Ok(1_714_557_600_123)
        );
        assert_eq!(
            parse_rfc3339("2024-05-01T12:00:00.123+02:00"),
            Ok(1_714_557_600_123)
        );
        assert!(
            parse_rfc3339("yesterday")
                .unwrap_err()
                .contains("not an RFC 3339 time")
        );
        assert_eq!(to_ms(from_ms(42)), 42);
    }
}
