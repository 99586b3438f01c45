//! A problem with one field of what a caller sent: the shape every validation in the
//! service reports, and the HTTP surface answers as an error's `details`.

use serde::Serialize;
use utoipa::ToSchema;

/// Longest display name (of an integration, a source), in characters.
pub const MAX_NAME: usize = 200;

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
