//! The ops console: the product page's integration screen, Test Event button and Live
//! Logs in a browser, served at `/console/` by this binary.
//!
//! It is static files compiled in (`assets/`: HTML, CSS and ES modules, no build
//! step), so `cargo run --release` is still the whole set-up and the console needs no
//! network beyond the service. It holds no data and adds no way in: the page asks for
//! an admin token, keeps it in memory only, and calls the admin API (`/v1/admin/...`)
//! with it like any client, through the same authentication, validation and rate
//! limit. So these routes need no token, and they are not in the OpenAPI document,
//! which describes the API.
//!
//! Every answer carries a strict Content-Security-Policy (scripts and styles from these
//! files only, no inline code, no framing, requests only to this origin): event
//! payloads are written by whoever can reach the ingest API, and the page shows them,
//! so nothing they hold may run even if a script wrote one as markup by mistake (the
//! scripts write them as text).

use std::sync::LazyLock;

use axum::Router;
use axum::extract::{Path, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use crate::http::error::ApiError;

/// Where the console is served; `/console` redirects here.
pub const PATH: &str = "/console/";

/// The policy of every console answer.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

struct Asset {
    /// Its path below `/console/` (`""` is the page itself).
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! assets {
    ($($path:literal => $file:literal as $content_type:literal),* $(,)?) => {
        &[$(Asset {
            path: $path,
            content_type: $content_type,
            body: include_bytes!(concat!("assets/", $file)),
        }),*]
    };
}

/// Every file of the console. A file added under `assets/` is served once it is
/// listed here.
const ASSETS: &[Asset] = assets! {
    "" => "index.html" as "text/html; charset=utf-8",
    "console.css" => "console.css" as "text/css; charset=utf-8",
    "app.js" => "app.js" as "text/javascript; charset=utf-8",
    "api.js" => "api.js" as "text/javascript; charset=utf-8",
    "dom.js" => "dom.js" as "text/javascript; charset=utf-8",
    "format.js" => "format.js" as "text/javascript; charset=utf-8",
    "chart.js" => "chart.js" as "text/javascript; charset=utf-8",
    "tail.js" => "tail.js" as "text/javascript; charset=utf-8",
    "json.js" => "json.js" as "text/javascript; charset=utf-8",
    "views/signin.js" => "views/signin.js" as "text/javascript; charset=utf-8",
    "views/integrations.js" => "views/integrations.js" as "text/javascript; charset=utf-8",
    "views/integration.js" => "views/integration.js" as "text/javascript; charset=utf-8",
    "views/blueprint.js" => "views/blueprint.js" as "text/javascript; charset=utf-8",
    "views/logs.js" => "views/logs.js" as "text/javascript; charset=utf-8",
    "views/sources.js" => "views/sources.js" as "text/javascript; charset=utf-8",
    "views/parts.js" => "views/parts.js" as "text/javascript; charset=utf-8",
    "icon.svg" => "icon.svg" as "image/svg+xml",
};

/// Each asset's entity tag: a hash of its bytes, so a rebuilt binary with a changed
/// file is fetched again and an unchanged one answers `304`.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let digest = Sha256::digest(a.body);
            HeaderValue::from_str(&format!("\"{}\"", hex::encode(&digest[..12])))
                .expect("hex is a valid header value")
        })
        .collect()
});

/// The console's routes (no token: they serve these files and nothing else).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/console", get(redirect))
        .route(PATH, get(index))
        .route("/console/{*path}", get(asset))
        .layer(middleware::from_fn(secure))
}

/// `/console` to `/console/`, by a relative reference, so that the page's relative
/// links and the API's place (its parent) hold behind a proxy that adds a prefix.
async fn redirect() -> Response {
    (
        StatusCode::PERMANENT_REDIRECT,
        [(header::LOCATION, HeaderValue::from_static("console/"))],
    )
        .into_response()
}

async fn index(headers: HeaderMap) -> Response {
    serve("", &headers)
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    if path.is_empty() {
        return ApiError::not_found("console file", path).into_response();
    }
    serve(&path, &headers)
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|a| a.path == path) else {
        return ApiError::not_found("console file", path).into_response();
    };
    let asset = &ASSETS[index];
    let etag = &ETAGS[index];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|t| t.trim().trim_start_matches("W/") == etag.to_str().unwrap_or_default())
        });
    if fresh {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag.clone())]).into_response();
    }
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            (header::ETAG, etag.clone()),
        ],
        asset.body,
    )
        .into_response()
}

/// The headers of every console answer: the policy, no sniffing, no referrer, and
/// revalidation (cheap: the entity tag answers `304` until the binary changes).
async fn secure(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        ),
    ] {
        headers.insert(name, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_listed_once_with_a_known_type() {
        let mut paths: Vec<&str> = ASSETS.iter().map(|a| a.path).collect();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), ASSETS.len(), "an asset is listed twice");
        for asset in ASSETS {
            assert!(!asset.body.is_empty(), "{} is empty", asset.path);
            let extension = asset.path.rsplit('.').next().unwrap_or_default();
            let expected = match extension {
                "" => "text/html; charset=utf-8",
                "css" => "text/css; charset=utf-8",
                "js" => "text/javascript; charset=utf-8",
                "svg" => "image/svg+xml",
                other => panic!("{}: no type for .{other}", asset.path),
            };
            assert_eq!(asset.content_type, expected, "{}", asset.path);
        }
    }

    /// Whether markup holds an attribute such as ` onclick=`.
    fn handler_attribute(markup: &str) -> bool {
        markup.match_indices(" on").any(|(at, _)| {
            let rest = &markup[at + 3..];
            let name_len = rest.bytes().take_while(u8::is_ascii_lowercase).count();
            name_len > 0 && rest[name_len..].starts_with('=')
        })
    }

    /// The policy forbids inline code; this keeps the files from needing it.
    #[test]
    fn no_asset_holds_inline_script_style_or_handlers() {
        for asset in ASSETS {
            let text = std::str::from_utf8(asset.body).expect("UTF-8");
            if asset.path.is_empty() {
                assert!(!text.contains("<script>"), "inline script in the page");
                assert!(!text.contains("<style"), "inline style in the page");
                assert!(!text.contains(" style="), "style attribute in the page");
                assert!(
                    !handler_attribute(text),
                    "an on... handler attribute in the page"
                );
            }
            if asset.path.ends_with(".js") {
                for banned in [
                    "innerHTML",
                    "outerHTML",
                    "insertAdjacentHTML",
                    "document.write",
                    "eval(",
                    "new Function",
                ] {
                    assert!(!text.contains(banned), "{} uses {banned}", asset.path);
                }
            }
        }
    }
}
