//! A problem with one field of what a caller sent: the shape every validation in the
//! service reports, and the HTTP surface answers as an error's `details`.

use serde::Serialize;
use utoipa::ToSchema;

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
