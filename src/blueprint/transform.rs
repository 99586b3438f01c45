//! The value transforms a blueprint can name. Each takes a present JSON value and gives
//! a value, nothing (the field counts as missing), or an error naming the problem.
//!
//! Money never goes through floating point: JSON numbers keep their exact text
//! (serde_json's `arbitrary_precision`), are parsed as decimals, and are scaled to
//! minor units by the currency's ISO 4217 exponent, rounding once, half away from zero.

use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{Number, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// Parses a decimal amount from a JSON number or a numeric string, exactly.
pub fn decimal(value: &Value) -> Result<Decimal, String> {
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_owned(),
        other => return Err(format!("expected a number, found {}", kind(other))),
    };
    parse_decimal(&text).ok_or_else(|| {
        if text.parse::<f64>().is_ok_and(|_| !text.contains(['i', 'I', 'n', 'N'])) {
            format!(
                "{text:?} is a number, but not one an exact amount can hold (at most 28 significant digits, nothing smaller than 1e-28)"
            )
        } else {
            format!("{text:?} is not a decimal number")
        }
    })
}

fn parse_decimal(text: &str) -> Option<Decimal> {
    if text.is_empty()
        || !text
            .bytes()
            .all(|b| b.is_ascii_digit() || b".-+eE".contains(&b))
    {
        return None;
    }
    if text.contains(['e', 'E']) {
        Decimal::from_scientific(text).ok()
    } else {
        Decimal::from_str_exact(text).ok()
    }
}

/// The number of minor-unit digits of an ISO 4217 currency code (`USD` 2, `JPY` 0,
/// `KWD` 3).
pub fn currency_exponent(code: &str) -> Result<u32, String> {
    let currency = iso_currency::Currency::from_code(code)
        .ok_or_else(|| format!("{code:?} is not an ISO 4217 currency code"))?;
    currency
        .exponent()
        .map(u32::from)
        .ok_or_else(|| format!("{code} has no minor unit (it is not a currency money is paid in)"))
}

/// `amount` (major units) in integer minor units of `currency`: `19.99 USD` is `1999`,
/// `500 JPY` is `500`, `1.5 KWD` is `1500`. More decimals than the currency has are
/// rounded once, half away from zero (`19.995 USD` is `2000`).
pub fn minor_units(amount: Decimal, currency: &str) -> Result<i64, String> {
    let exponent = currency_exponent(currency)?;
    let scaled = amount
        .checked_mul(Decimal::from(10_i64.pow(exponent)))
        .ok_or_else(|| format!("{amount} {currency} is too large"))?
        .round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
    i64::try_from(scaled).map_err(|_| format!("{amount} {currency} is too large"))
}

pub fn decimal_value(d: Decimal) -> Value {
    Number::from_str(&d.normalize().to_string())
        .map(Value::Number)
        .unwrap_or_else(|_| Value::String(d.to_string()))
}

/// Hex SHA-256 of the trimmed, lower-cased email, as Button's `customer.email_sha256`.
pub fn sha256_email(value: &Value) -> Result<Option<Value>, String> {
    let email = as_str(value)?.trim().to_lowercase();
    if email.is_empty() {
        return Ok(None);
    }
    Ok(Some(Value::String(hex::encode(Sha256::digest(
        email.as_bytes(),
    )))))
}

/// The first non-empty value of query parameter `name` in the URL, percent-decoded.
/// A URL without it (or without a query) gives nothing.
pub fn url_param(value: &Value, name: &str) -> Result<Option<Value>, String> {
    let text = as_str(value)?.trim();
    // Only the query is read: what comes after the first `?` and before the fragment,
    // decoded as a browser would (`+` is a space, percent-escapes are decoded).
    let before_fragment = text.split('#').next().unwrap_or_default();
    let Some((_, query)) = before_fragment.split_once('?') else {
        return Ok(None);
    };
    Ok(url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, v)| k == name && !v.is_empty())
        .map(|(_, v)| Value::String(v.into_owned())))
}

/// An ISO-8601 timestamp in UTC with seconds precision (`2017-07-25T08:23:52Z`), the
/// form Button documents. An offset is converted to UTC; a time without an offset is
/// taken as UTC; sub-second digits are dropped.
/// The years a commerce event's time may fall in: older or later is a bug upstream,
/// which Button should not be sent.
const EARLIEST_YEAR: i32 = 1970;
const LATEST_YEAR: i32 = 2100;

pub fn timestamp(value: &Value) -> Result<Value, String> {
    let text = as_str(value)?.trim();
    let t = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
        let naive = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
        );
        if time::PrimitiveDateTime::parse(text, naive).is_ok() {
            // Guessing UTC could move an order by hours: say what is missing.
            format!("{text:?} has no time zone: add Z or an offset (2024-05-01T10:00:00Z)")
        } else {
            format!("{text:?} is not an ISO-8601 timestamp with a time zone (2024-05-01T10:00:00Z)")
        }
    })?;
    let utc = t.to_offset(time::UtcOffset::UTC);
    if !(EARLIEST_YEAR..=LATEST_YEAR).contains(&utc.year()) {
        return Err(format!(
            "{text:?} is in the year {}, outside {EARLIEST_YEAR} to {LATEST_YEAR}",
            utc.year()
        ));
    }
    let out = utc
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .map_err(|e| e.to_string())?;
    Ok(Value::String(out))
}

pub fn to_string(value: &Value) -> Result<Value, String> {
    match value {
        Value::String(_) => Ok(value.clone()),
        Value::Number(n) => Ok(Value::String(n.to_string())),
        Value::Bool(b) => Ok(Value::String(b.to_string())),
        other => Err(format!("expected text, found {}", kind(other))),
    }
}

pub fn to_integer(value: &Value) -> Result<Value, String> {
    let d = decimal(value)?;
    if !d.fract().is_zero() {
        return Err(format!("{d} is not a whole number"));
    }
    i64::try_from(d)
        .map(|i| Value::Number(i.into()))
        .map_err(|_| format!("{d} is too large"))
}

pub fn map_str(value: &Value, f: impl Fn(&str) -> String) -> Result<Value, String> {
    Ok(Value::String(f(as_str(value)?)))
}

fn as_str(value: &Value) -> Result<&str, String> {
    value
        .as_str()
        .ok_or_else(|| format!("expected text, found {}", kind(value)))
}

pub fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn minor(amount: &str, currency: &str) -> Result<i64, String> {
        let v: Value = serde_json::from_str(amount).unwrap();
        minor_units(decimal(&v)?, currency)
    }

    #[test]
    fn money_converts_by_the_currency_exponent() {
        assert_eq!(minor("19.99", "USD"), Ok(1999));
        assert_eq!(minor("0.07", "USD"), Ok(7));
        assert_eq!(minor("1e2", "USD"), Ok(10000));
        assert_eq!(minor("1.5E-1", "EUR"), Ok(15));
        assert_eq!(minor("500", "JPY"), Ok(500));
        assert_eq!(minor("1.234", "KWD"), Ok(1234));
        assert_eq!(minor("1.5", "BHD"), Ok(1500));
        assert_eq!(minor("\"59.99\"", "GBP"), Ok(5999));
        assert_eq!(minor("0", "USD"), Ok(0));
    }

    #[test]
    fn money_with_more_decimals_than_the_currency_rounds_half_away_from_zero() {
        assert_eq!(minor("19.995", "USD"), Ok(2000));
        assert_eq!(minor("19.994", "USD"), Ok(1999));
        assert_eq!(minor("0.005", "USD"), Ok(1));
        assert_eq!(minor("-0.005", "USD"), Ok(-1));
        assert_eq!(minor("499.5", "JPY"), Ok(500));
        assert_eq!(minor("1.2345", "KWD"), Ok(1235));
    }

    #[test]
    fn money_is_exact_for_large_totals_and_float_traps() {
        assert_eq!(minor("12345678901234.56", "USD"), Ok(1234567890123456));
        assert_eq!(minor("0.30000000000000004", "USD"), Ok(30));
        assert_eq!(
            minor("1.005", "USD"),
            Ok(101),
            "1.005 is 1.00499999... as a float"
        );
        assert_eq!(
            minor("92233720368547758.08", "USD"),
            Err("92233720368547758.08 USD is too large".into())
        );
    }

    #[test]
    fn money_refuses_what_is_not_money() {
        assert!(
            minor("\"abc\"", "USD")
                .unwrap_err()
                .contains("not a decimal")
        );
        assert!(minor("\"1,99\"", "USD").is_err());
        assert!(
            minor("true", "USD")
                .unwrap_err()
                .contains("expected a number")
        );
        assert!(minor("1", "XYZ").unwrap_err().contains("ISO 4217"));
        assert!(minor("1", "XAU").unwrap_err().contains("no minor unit"));
    }

    proptest! {
        #[test]
        fn any_two_decimal_amount_becomes_its_cents(cents in 0_i64..1_000_000_000_000_000) {
            let text = format!("{}.{:02}", cents / 100, cents % 100);
            prop_assert_eq!(minor(&text, "USD"), Ok(cents));
            prop_assert_eq!(minor(&format!("\"{text}\""), "USD"), Ok(cents));
        }

        #[test]
        fn three_decimal_currencies_keep_every_digit(mils in 0_i64..1_000_000_000_000) {
            let text = format!("{}.{:03}", mils / 1000, mils % 1000);
            prop_assert_eq!(minor(&text, "KWD"), Ok(mils));
        }

        #[test]
        fn sums_of_converted_amounts_never_drift(a in 0_i64..10_000_000, b in 0_i64..10_000_000) {
            let (x, y) = (format!("{}.{:02}", a / 100, a % 100), format!("{}.{:02}", b / 100, b % 100));
            let sum = decimal(&json!(x)).unwrap() + decimal(&json!(y)).unwrap();
            prop_assert_eq!(minor_units(sum, "USD"), Ok(a + b));
        }
    }

    #[test]
    fn email_hash_matches_known_sha256_values() {
        // sha256("test@example.com")
        let expected = "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b";
        for input in [
            "test@example.com",
            "  Test@Example.COM  ",
            "TEST@EXAMPLE.COM\n",
        ] {
            assert_eq!(
                sha256_email(&json!(input)).unwrap(),
                Some(json!(expected)),
                "{input:?}"
            );
        }
        // sha256("") is never sent: an empty email is no email.
        assert_eq!(sha256_email(&json!("   ")).unwrap(), None);
        assert!(sha256_email(&json!(42)).is_err());
    }

    #[test]
    fn url_param_extraction() {
        let get = |u: &str| url_param(&json!(u), "btn_ref").unwrap();
        assert_eq!(
            get("https://shop.example/p/1?btn_ref=srctok-abc123"),
            Some(json!("srctok-abc123"))
        );
        assert_eq!(
            get("https://shop.example/p?x=1&btn_ref=srctok%2Dabc%20d"),
            Some(json!("srctok-abc d"))
        );
        assert_eq!(
            get("https://shop.example/p?btn_ref=first&btn_ref=second"),
            Some(json!("first"))
        );
        assert_eq!(
            get("https://shop.example/p?btn_ref=&btn_ref=second"),
            Some(json!("second"))
        );
        assert_eq!(get("https://shop.example/p?other=1"), None);
        assert_eq!(get("https://shop.example/p"), None);
        assert_eq!(get("/p/1?btn_ref=srctok-rel"), Some(json!("srctok-rel")));
        assert_eq!(get("https://shop.example/p#btn_ref=fragment"), None);
        assert_eq!(get("https://shop.example/p#x?btn_ref=fragment"), None);
        assert_eq!(
            get("https://shop.example/p?a=1+2&btn_ref=a+b#c"),
            Some(json!("a b"))
        );
    }

    #[test]
    fn a_number_too_small_or_long_for_an_amount_says_so() {
        let tiny = decimal(&json!("1e-400")).unwrap_err();
        assert!(
            tiny.contains("is a number, but not one an exact amount can hold"),
            "{tiny}"
        );
        let long = decimal(&json!("1.00000000000000000000000000001")).unwrap_err();
        assert!(long.contains("28 significant digits"), "{long}");
        let word = decimal(&json!("ten")).unwrap_err();
        assert!(word.contains("is not a decimal number"), "{word}");
        assert!(
            decimal(&json!("inf"))
                .unwrap_err()
                .contains("not a decimal number")
        );
    }

    #[test]
    fn timestamps_normalise_to_utc_seconds() {
        let t = |s: &str| timestamp(&json!(s));
        assert_eq!(t("2017-07-25T08:23:52Z"), Ok(json!("2017-07-25T08:23:52Z")));
        assert_eq!(
            t("2017-07-25T08:23:52.123456Z"),
            Ok(json!("2017-07-25T08:23:52Z"))
        );
        assert_eq!(
            t("2017-07-25T10:23:52+02:00"),
            Ok(json!("2017-07-25T08:23:52Z"))
        );
        assert_eq!(
            t("2017-07-24T23:23:52-09:00"),
            Ok(json!("2017-07-25T08:23:52Z"))
        );
        let naive = t("2017-07-25T08:23:52").unwrap_err();
        assert!(naive.contains("no time zone"), "{naive}");
        for year in [
            "0000-01-01T00:00:00Z",
            "9999-12-31T00:00:00Z",
            "1969-12-31T23:59:59Z",
        ] {
            let err = t(year).unwrap_err();
            assert!(err.contains("outside 1970 to 2100"), "{year}: {err}");
        }
        assert!(t("25/07/2017").is_err());
        assert!(t("2017-13-01T00:00:00Z").is_err());
        assert!(timestamp(&json!(1500970000)).is_err());
    }

    #[test]
    fn string_and_integer_conversions() {
        assert_eq!(to_string(&json!(12345)), Ok(json!("12345")));
        assert_eq!(to_string(&json!("a")), Ok(json!("a")));
        assert!(to_string(&json!({"a": 1})).is_err());
        assert_eq!(to_integer(&json!("3")), Ok(json!(3)));
        assert_eq!(to_integer(&json!(2.0)), Ok(json!(2)));
        assert!(to_integer(&json!(2.5)).is_err());
    }
}
