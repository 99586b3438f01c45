//! A problem with one field of what a caller sent: the shape every validation in the
//! service reports, and the HTTP surface answers as an error's `details`.

use serde::Serialize;
use utoipa::ToSchema;

/// Longest display name (of an integration, a source), in characters.
pub const MAX_NAME: usize = 200;

/// A regex (ECMA, Rust and Python read it alike) for one character that is not white
/// space as `str::trim` sees it (Unicode `White_Space`): a text holding one is not blank.
pub const NOT_BLANK_PATTERN: &str =
    "[^\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";

/// A regex for what [`FieldError::check_name`] takes (with 1 to [`MAX_NAME`]
/// characters): no control character, and one that is not white space.
pub const NAME_PATTERN: &str = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\x00-\\x20\\x7f-\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\x00-\\x1f\\x7f-\\x9f]*$";

/// A display name's schema in the OpenAPI document.
pub fn name_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_NAME))
        .pattern(Some(NAME_PATTERN))
        .description(Some(
            "1 to 200 characters, not blank, no control characters; surrounding white space is trimmed",
        ))
        .build()
}

/// One offending field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// Where the problem is, as a dotted path into the request (`config.application_id`).
    pub field: String,
    /// Stable machine-readable reason (`required`, `invalid_format`, ...).
    pub code: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// A display name (of an integration, a source) as given in `field`: trimmed, or
    /// refused when it holds control characters (PostgreSQL's text cannot hold U+0000,
    /// and no name needs any) or is not 1 to [`MAX_NAME`] characters.
    pub fn check_name(field: &str, text: &str) -> Result<String, Self> {
        if text.chars().any(char::is_control) {
            return Err(Self::new(
                field,
                "invalid_characters",
                "must not contain control characters",
            ));
        }
        if text.trim().is_empty() || text.chars().count() > MAX_NAME {
            return Err(Self::new(
                field,
                "invalid_length",
                format!("must be 1 to {MAX_NAME} characters"),
            ));
        }
        Ok(text.trim().to_owned())
    }

    /// The same problem, located inside `parent` (`event` + `timestamp` is
    /// `event.timestamp`; an empty field is the parent itself).
    pub fn within(self, parent: &str) -> Self {
        let field = if self.field.is_empty() {
            parent.to_owned()
        } else {
            format!("{parent}.{}", self.field)
        };
        Self { field, ..self }
    }
}
