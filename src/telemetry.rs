//! Structured logs: JSON lines on stdout by default (what `docker logs` shows), a human
//! format for terminals, and one span per HTTP request carrying its request id.

use std::time::Duration;

use axum::http::{HeaderName, Request, Response};
use tower_http::request_id::{MakeRequestId, RequestId};
use tracing::Span;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{LogFormat, LogSettings};

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

pub mod writer;

pub use writer::Flush;

/// Installs the global subscriber writing to stdout. `RUST_LOG`, when set, overrides
/// `log.level`. Calling it twice is harmless (the first wins).
///
/// Lines are gathered in memory and written by a thread of their own, about
/// [`writer::GATHER`] after the first of them was logged: a quiet service wakes it a
/// few times a second, a busy one writes in 64 KiB pieces (see [`writer`]). Nothing is
/// dropped: a full buffer makes the logging call wait. Keep the returned guard alive:
/// dropping it writes what is left.
pub fn init(settings: &LogSettings) -> Flush {
    let (writer, flush) = writer::gathered(
        std::io::stdout(),
        Box::new(std::io::stdout()),
        writer::Limits::default(),
    );
    init_with_writer(settings, writer);
    flush
}

pub fn init_with_writer<W>(settings: &LogSettings, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(true);
    let _ = match settings.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}

/// Request ids are prefixed ULIDs (`req_...`) from the service's id generator: unique,
/// sortable, and short enough to paste.
#[derive(Clone, Copy, Default)]
pub struct MakeRequestIds;

impl MakeRequestId for MakeRequestIds {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        crate::domain::RequestId::new()
            .as_str()
            .parse()
            .ok()
            .map(RequestId::new)
    }
}

/// The span every request runs in. The request id was set (or accepted from the
/// caller) by the request-id layer before this runs.
pub fn request_span<B>(request: &Request<B>) -> Span {
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %request.method(),
        path = %request.uri().path(),
    )
}

/// One line per finished request, inside its span.
pub fn on_response<B>(response: &Response<B>, latency: Duration, _span: &Span) {
    let status = response.status().as_u16();
    let latency_ms = latency.as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::error!(status, latency_ms, "request finished");
    } else {
        tracing::info!(status, latency_ms, "request finished");
    }
}
