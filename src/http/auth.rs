//! Bearer-token authentication: admin tokens on `/v1/admin/*`, ingest tokens (those
//! from config, or a source's) on the event routes. Tokens are compared in constant time (see [`crate::secrets::TokenSet`]).

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use crate::secrets::TokenSet;
use crate::sources::Sender;

/// Which admin token the caller used (its index in the configuration), for audit lines.
#[derive(Debug, Clone, Copy)]
pub struct Caller(pub usize);

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "admin_token#{}", self.0)
    }
}

enum Presented<'a> {
    Missing,
    Malformed,
    Token(&'a str),
}

fn bearer(headers: &HeaderMap) -> Presented<'_> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Presented::Missing;
    };
    let Ok(value) = value.to_str() else {
        return Presented::Malformed;
    };
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Presented::Token(token.trim())
        }
        _ => Presented::Malformed,
    }
}

/// Why a presented `kind` token is refused.
fn refusal(presented: &Presented<'_>, kind: &str) -> String {
    match presented {
        Presented::Token(_) => format!("the bearer token is not a valid {kind} token"),
        Presented::Missing => {
            format!("missing Authorization header: send Authorization: Bearer <{kind} token>")
        }
        Presented::Malformed => {
            format!("malformed Authorization header: expected Bearer <{kind} token>")
        }
    }
}

/// The index of the presented token, or why it is refused.
fn check(tokens: &TokenSet, headers: &HeaderMap, kind: &str) -> Result<usize, String> {
    let presented = bearer(headers);
    if let Presented::Token(t) = presented
        && let Some(index) = tokens.verify(t)
    {
        return Ok(index);
    }
    Err(refusal(&presented, kind))
}

/// Who an ingest token (or a tracking write key) is: an ingest token from config is
/// the default source, a source's token that source.
pub fn sender_of(state: &AppState, token: &str) -> Option<Sender> {
    if state.ingest_tokens.verify(token).is_some() {
        return Some(Sender::Default);
    }
    state.sources.by_token(token).map(Sender::Source)
}

pub async fn admin(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    match check(&state.admin_tokens, request.headers(), "admin") {
        Ok(index) => {
            if let Err(wait) = state
                .admin_rate_limit
                .take(index, std::time::Instant::now())
            {
                return ApiError::RateLimited {
                    retry_after: wait.as_secs().max(1) + u64::from(wait.subsec_nanos() > 0),
                    per_minute: state.settings.server.admin_rate_limit,
                }
                .into_response();
            }
            request.extensions_mut().insert(Caller(index));
            next.run(request).await
        }
        Err(message) => ApiError::Unauthorized(message).into_response(),
    }
}

/// `/metrics`: a metrics token or an admin token, unless `server.public_metrics`.
pub async fn metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if state.settings.server.public_metrics {
        return next.run(request).await;
    }
    let allowed = match bearer(request.headers()) {
        Presented::Token(token) => {
            state.metrics_tokens.verify(token).is_some()
                || state.admin_tokens.verify(token).is_some()
        }
        _ => false,
    };
    if allowed {
        next.run(request).await
    } else {
        ApiError::Unauthorized(
            "/metrics takes a metrics token (auth.metrics_tokens) or an admin token: send Authorization: Bearer <token>, or set server.public_metrics".into(),
        )
        .into_response()
    }
}

/// An ingest token from config is the default source; a source's token is that
/// source. Which one rides on the request as its [`Sender`].
pub async fn ingest(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let presented = bearer(request.headers());
    let sender = match presented {
        Presented::Token(token) => sender_of(&state, token),
        _ => None,
    };
    let Some(sender) = sender else {
        return ApiError::Unauthorized(refusal(&presented, "ingest")).into_response();
    };
    request.extensions_mut().insert(sender);
    next.run(request).await
}
