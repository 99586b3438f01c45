//! The language's compiled form: what the compiler produces and the evaluator reads.
//! It sits apart from both phases so neither owns the other's data.

use serde_json::Value;

use super::path::Path;

#[derive(Debug, Clone)]
pub(super) struct Mapping<C> {
    /// The destination call the mapping makes.
    pub(super) call: C,
    pub(super) fields: Vec<Field>,
}

#[derive(Debug, Clone)]
pub(super) struct Field {
    pub(super) to: Vec<String>,
    /// `to` joined with dots, for messages.
    pub(super) name: String,
    pub(super) value: FieldValue,
    /// Used when the value is missing (after any warning is noted).
    pub(super) default: Option<Value>,
    pub(super) required: Option<Report>,
    pub(super) warn: Option<Report>,
}

#[derive(Debug, Clone)]
pub(super) struct Report {
    pub(super) message: String,
    pub(super) hint: Option<String>,
}

#[derive(Debug, Clone)]
pub(super) enum FieldValue {
    Source(Source),
    Each { over: Source, fields: Vec<Field> },
}

#[derive(Debug, Clone)]
pub(super) enum Source {
    Path(Path),
    Literal(Value),
    First(Vec<Source>),
    All(Vec<Source>),
    Piped {
        from: Box<Source>,
        transforms: Vec<Transform>,
        default: Option<Value>,
    },
}

#[derive(Debug, Clone)]
pub(super) enum Transform {
    String,
    Integer,
    Upper,
    Lower,
    Trim,
    Timestamp,
    Sha256Email,
    Array,
    MinorUnits { currency: Source },
    UrlParam(String),
    Subtract(Vec<Source>),
    Multiply(Source),
}

pub(super) const TRANSFORMS: &str = "string, integer, upper, lower, trim, timestamp, sha256_email, array, {\"minor_units\": {\"currency\": source}}, {\"url_param\": \"name\"}, {\"subtract\": [sources]}, {\"multiply\": source}";
