//! Bearer-token authentication: admin tokens on `/v1/admin/*`, ingest tokens on the
//! event routes. Tokens are compared in constant time (see [`crate::secrets::TokenSet`]).

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use crate::secrets::TokenSet;

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

/// The index of the presented token, or why it is refused.
fn check(tokens: &TokenSet, headers: &HeaderMap, kind: &str) -> Result<usize, String> {
    let message = match bearer(headers) {
        Presented::Token(t) => match tokens.verify(t) {
            Some(index) => return Ok(index),
            None => format!("the bearer token is not a valid {kind} token"),
        },
        Presented::Missing => {
            format!("missing Authorization header: send Authorization: Bearer <{kind} token>")
        }
        Presented::Malformed => {
            format!("malformed Authorization header: expected Bearer <{kind} token>")
        }
    };
    Err(message)
}

pub async fn admin(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    match check(&state.admin_tokens, request.headers(), "admin") {
        Ok(index) => {
            request.extensions_mut().insert(Caller(index));
            next.run(request).await
        }
        Err(message) => ApiError::Unauthorized(message).into_response(),
    }
}

pub async fn ingest(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match check(&state.ingest_tokens, request.headers(), "ingest") {
        Ok(_) => next.run(request).await,
        Err(message) => ApiError::Unauthorized(message).into_response(),
    }
}
