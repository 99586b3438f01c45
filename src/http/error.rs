//! The one error type of the HTTP surface. Every error answers Signal's body
//! `{"error":{"code":"snake_case","message":"...","details":[...]}}`; internal failures
//! are logged with their cause and answered as a bare `internal` error, so internals
//! never leak. Domain errors become answers here, at the edge.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::FieldError;
use crate::integrations::RegistryError;
use crate::sources::SourceError;
use crate::store::StoreError;
use crate::test_event::TestEventError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Why the bearer token was refused.
    #[error("{0}")]
    Unauthorized(String),
    #[error("{resource} {id:?} not found")]
    NotFound { resource: &'static str, id: String },
    #[error("{path} does not take this method")]
    MethodNotAllowed { path: String },
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: String,
        details: Vec<FieldError>,
    },
    #[error("{message}")]
    Validation {
        message: String,
        details: Vec<FieldError>,
    },
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// Authenticated, but not allowed this.
    #[error("{message}")]
    Forbidden { code: &'static str, message: String },
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request body did not arrive whole within {seconds} s")]
    RequestTimeout { seconds: u64 },
    #[error("the request line is longer than the limit of {limit} bytes")]
    UriTooLong { limit: usize },
    #[error(
        "the request head (request line and header fields) is over the limit of {max_bytes} bytes or {max_fields} header fields"
    )]
    HeadersTooLarge { max_bytes: usize, max_fields: usize },
    #[error("{message}")]
    Unavailable { message: String },
    #[error(
        "over the admin API's limit of {per_minute} requests a minute for this token: retry in {retry_after} s"
    )]
    RateLimited { retry_after: u64, per_minute: u32 },
    #[error("internal error: {0}")]
    Internal(String),
}

/// The error body, as documented in the OpenAPI description.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<FieldError>,
}

impl ApiError {
    pub fn validation(details: Vec<FieldError>) -> Self {
        let message = match details.as_slice() {
            [one] if one.field.is_empty() => one.message.clone(),
            [one] => format!("{}: {}", one.field, one.message),
            many => format!(
                "{} fields are invalid: {}",
                many.len(),
                many.iter()
                    .map(|d| d.field.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        Self::Validation { message, details }
    }

    pub fn not_found(resource: &'static str, id: impl Into<String>) -> Self {
        Self::NotFound {
            resource,
            id: id.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }

    pub(super) fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            Self::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "unauthorized",
            Self::NotFound { .. } => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::BadRequest { code, .. }
            | Self::Conflict { code, .. }
            | Self::Forbidden { code, .. } => code,
            Self::Validation { .. } => "validation_failed",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::RequestTimeout { .. } => "request_timeout",
            Self::UriTooLong { .. } => "uri_too_long",
            Self::HeadersTooLarge { .. } => "headers_too_large",
            Self::Unavailable { .. } => "unavailable",
            Self::RateLimited { .. } => "rate_limited",
            Self::Internal(_) => "internal",
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(cause) => {
                tracing::error!(error = %cause, "store unavailable");
                Self::Unavailable {
                    message:
                        "the store cannot take writes right now; nothing was accepted, retry later"
                            .into(),
                }
            }
            StoreError::Overloaded { queued } => {
                tracing::warn!(queued, "ingest shed: the commit queue is full");
                Self::Unavailable {
                    message: format!(
                        "the service is at its bound of {queued} events waiting for a commit; nothing was accepted, retry later"
                    ),
                }
            }
            other => Self::internal(other),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::NotFound(id) => Self::not_found("integration", id.as_str()),
            RegistryError::Store(e) => e.into(),
            RegistryError::Load(e) => Self::internal(e),
        }
    }
}

impl From<SourceError> for ApiError {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::NotFound(id) => Self::not_found("source", id.as_str()),
            SourceError::IntegrationNotFound(id) => Self::not_found("integration", id.as_str()),
            SourceError::Store(e) => e.into(),
        }
    }
}

impl From<TestEventError> for ApiError {
    fn from(e: TestEventError) -> Self {
        match e {
            TestEventError::Invalid(details) => Self::validation(details),
            TestEventError::NotSubscribed => Self::validation(vec![FieldError::new(
                "event.event",
                "not_subscribed",
                "the integration's blueprint takes no event of this name; send one it subscribes to",
            )]),
            TestEventError::Store(e) => e.into(),
        }
    }
}

impl ApiError {
    /// The status and body of the answer (an internal cause is logged, never shown).
    pub(super) fn render(self) -> (StatusCode, ErrorBody) {
        let status = self.status();
        let code = self.code().to_owned();
        let message = match &self {
            Self::Internal(cause) => {
                tracing::error!(error = %cause, "internal error");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        let details = match self {
            Self::BadRequest { details, .. } | Self::Validation { details, .. } => details,
            _ => Vec::new(),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message,
                details,
            },
        };
        (status, body)
    }
}

/// The headers an answer of `status` carries: how to authenticate, when to retry.
pub(super) fn with_status_headers(status: StatusCode, mut response: Response) -> Response {
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = match &self {
            Self::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        let (status, body) = self.render();
        let mut response = with_status_headers(status, (status, Json(body)).into_response());
        if let Some(seconds) = retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}
