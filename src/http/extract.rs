//! Reading requests: JSON bodies with clear errors (content type, size, syntax), query
//! parameters by name, and Signal's cursor pagination.

use std::collections::HashMap;
use std::str::FromStr;

use axum::body::Body;
use axum::extract::{FromRef, FromRequest, OptionalFromRequest, RawQuery, Request};
use axum::http::{HeaderMap, header};
use serde::Serialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::ApiError;
use crate::domain::FieldError;
use crate::domain::clock::parse_rfc3339;
use crate::store::Page;

/// Whether the request says its body is JSON (`application/json`, or `+json`).
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json")) {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

/// Reads the whole body, refusing more than `limit` bytes.
pub async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let source = std::error::Error::source(&e);
        if source.is_some_and(|s| s.is::<http_body_util::LengthLimitError>()) {
            ApiError::PayloadTooLarge { limit }
        } else if let Some(late) = std::iter::successors(source, |s| s.source())
            .find_map(|s| s.downcast_ref::<super::server::BodyTooSlow>())
        {
            ApiError::RequestTimeout {
                seconds: late.allowed.as_secs().max(1),
            }
        } else {
            ApiError::bad_request(
                "unreadable_body",
                format!("could not read the request body: {e}"),
            )
        }
    })
}

/// Parses JSON, answering a syntax error with where it is.
pub fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request("invalid_json", format!("the body is not valid JSON: {e}"))
    })
}

/// The JSON body of an admin request, within `server.max_admin_body_bytes`: parsed,
/// and as written (a blueprint is kept as the operator wrote it).
pub struct AdminJson {
    pub value: Value,
    pub text: String,
}

impl<S> FromRequest<S> for AdminJson
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        require_json(req.headers())?;
        let limit = AppState::from_ref(state)
            .settings
            .server
            .max_admin_body_bytes;
        let bytes = read_body(req.into_body(), limit).await?;
        Ok(Self {
            value: parse_json(&bytes)?,
            // Valid JSON is valid UTF-8.
            text: String::from_utf8_lossy(&bytes).into_owned(),
        })
    }
}

/// An optional JSON body: a request without a body (no Content-Type, empty) is `None`.
impl<S> OptionalFromRequest<S> for AdminJson
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        let empty = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|l| l.as_bytes() == b"0")
            || (!req.headers().contains_key(header::CONTENT_TYPE)
                && !req.headers().contains_key(header::TRANSFER_ENCODING));
        if empty {
            return Ok(None);
        }
        <Self as FromRequest<S>>::from_request(req, state)
            .await
            .map(Some)
    }
}

/// Query parameters, read by name with errors that name them.
pub struct Params(HashMap<String, String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let RawQuery(query) = RawQuery::from_request_parts(parts, state)
            .await
            .unwrap_or(RawQuery(None));
        let map = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
        Ok(Self(map))
    }
}

impl Params {
    /// The parameter as given; an empty one (`?limit=`) is given, and so checked like
    /// any other value (the document describes no empty value as absent).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(invalid_param(
                name,
                format!("{other:?} is not true or false"),
            )),
        }
    }

    /// An RFC 3339 time, as milliseconds since the epoch.
    pub fn time(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|v| parse_rfc3339(v).map_err(|why| invalid_param(name, why)))
            .transpose()
    }

    /// A parameter that must read as a `T` (a word of the vocabulary, say).
    pub fn parsed<T>(&self, name: &str) -> Result<Option<T>, ApiError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        self.get(name)
            .map(|v| {
                v.parse()
                    .map_err(|e: T::Err| invalid_param(name, e.to_string()))
            })
            .transpose()
    }

    /// Signal's pagination: `limit` (default 50, at most 100) and a `cursor`: the sort
    /// key (`K`, an id) of the item the page starts after, as `next_cursor` gave it.
    pub fn page<K: FromStr>(&self) -> Result<Page<K>, ApiError> {
        let limit = match self.get("limit") {
            None => DEFAULT_LIMIT,
            Some(v) => match v.parse::<u32>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(invalid_param(
                        "limit",
                        format!("{v:?} is not a number from 1 to {MAX_LIMIT}"),
                    ));
                }
            },
        };
        let from = self
            .get("cursor")
            .map(|c| {
                c.parse()
                    .map_err(|_| invalid_param("cursor", "is not a cursor this API gave out"))
            })
            .transpose()?;
        Ok(Page { from, limit })
    }
}

/// Signal's pagination parameters of a list sorted by `$key`, as the document shows
/// them ([`Params::page`] reads them).
macro_rules! page_query {
    ($name:ident, $key:ty) => {
        #[derive(IntoParams)]
        #[into_params(parameter_in = Query)]
        #[allow(dead_code)] // only its description is used
        pub struct $name {
            /// The `next_cursor` of the previous page.
            cursor: Option<$key>,
            /// Items a page: 1 to 100, default 50.
            #[param(minimum = 1, maximum = 100)]
            limit: Option<u32>,
        }
    };
}

page_query!(IntegrationPage, crate::domain::IntegrationId);
page_query!(SourcePage, crate::domain::SourceId);
page_query!(LogPage, crate::domain::LogId);
page_query!(DeliveryPage, crate::domain::DeliveryId);

pub fn invalid_param(name: &str, message: impl Into<String>) -> ApiError {
    let message = message.into();
    ApiError::BadRequest {
        code: "invalid_parameter",
        message: format!("{name}: {message}"),
        details: vec![FieldError::new(name, "invalid_value", message)],
    }
}

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 100;

/// What to ask the store for a page: one item more than the page shows, so the answer
/// tells whether there is more.
pub fn with_one_more<K: Clone>(page: &Page<K>) -> Page<K> {
    Page {
        from: page.from.clone(),
        limit: page.limit + 1,
    }
}

/// A page of a list: `{"data": [...], "next_cursor": "...", "has_more": true}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct List<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

impl<T> List<T> {
    /// Builds a page from up to `limit + 1` items fetched in order; `key` is each
    /// item's sort key.
    pub fn page<K: std::fmt::Display>(
        mut items: Vec<T>,
        limit: u32,
        key: impl Fn(&T) -> K,
    ) -> Self {
        let has_more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_cursor = if has_more {
            items.last().map(|last| key(last).to_string())
        } else {
            None
        };
        Self {
            data: items,
            next_cursor,
            has_more,
        }
    }
}
