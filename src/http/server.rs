//! Serving connections: HTTP/1.1 on each accepted socket, within bounds no client can
//! stretch.
//!
//! - A connection must send a whole request head within `header_read_timeout` of
//!   opening or of starting it; a kept-alive connection may idle `idle_timeout`
//!   between requests. Either way, past the limit it is closed.
//! - At most `max_connections` are open. At the cap, the connection that has waited
//!   longest without a request in progress (idle, or still sending its head) is closed
//!   to make room for the new one: a flood of idle or slow connections neither holds
//!   memory without bound nor locks real clients out. Connections in the middle of a
//!   request are never chosen; if every one is, accepting waits for one to finish.
//! - A request head is read within fixed limits (64 KiB, 100 header fields). The HTTP
//!   library enforces them and would answer with an empty body; its answers to heads it
//!   refuses (`400`, `414`, `431`) are replaced on the way out by Signal's error body.
//!
//! Stopping: no new connections; those without a request in progress close at once,
//! busy ones after their response (the caller bounds the wait).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
#[cfg(test)]
use axum::http::StatusCode;
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

use super::error::ApiError;

/// Longest request head (request line and header fields): the HTTP library's read
/// buffer, which also bounds what one connection's unread input can hold.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header fields in one request.
pub const MAX_HEADERS: usize = 100;
/// Connections that get a moment to read the rest of a refused head before closing
/// (so that the client reads the answer instead of a reset); past this many at once,
/// a refused connection closes at once.
const LINGERING: usize = 256;

/// The bounds a client cannot stretch (`[server]` settings).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    /// A request's body must arrive whole within this long of its head.
    pub body_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// A request body that did not arrive within [`Limits::body_read_timeout`].
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {allowed:?}")]
pub struct BodyTooSlow {
    pub allowed: Duration,
}

/// A request body with a deadline: past it, reading it fails with [`BodyTooSlow`], so a
/// client cannot hold a request (and its connection, which the cap never takes from a
/// request in progress) by sending its body slowly.
struct Deadline {
    body: Incoming,
    allowed: Duration,
    at: Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for Deadline {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.at.as_mut().poll(cx).is_ready() {
            let allowed = self.allowed;
            return Poll::Ready(Some(Err(Box::new(BodyTooSlow { allowed }))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting,
/// closes idle connections and waits for busy ones to answer.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let open = Arc::new(Open::new(limits));
    let (closing, closing_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, _peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of file descriptors, most likely: wait for some to close.
                tracing::error!(error = %e, "cannot accept a connection; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        tokio::select! {
            () = &mut shutdown => break,
            () = open.make_room() => {}
        }
        let _ = stream.set_nodelay(true);
        connections.spawn(connection(
            stream,
            router.clone(),
            open.register(),
            closing_rx.clone(),
        ));
    }
    drop(listener);
    let _ = closing.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Errors of one connection that never reached us, not of the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// The open connections.
struct Open {
    limits: Limits,
    epoch: Instant,
    next_id: AtomicU64,
    entries: Mutex<HashMap<u64, Arc<Entry>>>,
    /// A connection ended or its request did: there may be room.
    freed: Notify,
    lingering: Arc<Semaphore>,
}

impl Open {
    fn new(limits: Limits) -> Self {
        Self {
            limits,
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            entries: Mutex::new(HashMap::new()),
            freed: Notify::new(),
            lingering: Arc::new(Semaphore::new(LINGERING)),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Entry>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(self: &Arc<Self>) -> Registered {
        let entry = Arc::new(Entry {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            busy: AtomicU32::new(0),
            waiting_head: AtomicBool::new(true),
            since_ms: AtomicU64::new(self.now_ms()),
            close: Notify::new(),
            changed: Notify::new(),
        });
        self.entries().insert(entry.id, entry.clone());
        Registered {
            entry,
            open: self.clone(),
        }
    }

    /// Returns once a new connection fits under the cap, closing the connection that
    /// waited longest without a request in progress if it must.
    async fn make_room(&self) {
        loop {
            let freed = self.freed.notified();
            {
                let mut entries = self.entries();
                if entries.len() < self.limits.max_connections {
                    return;
                }
                let victim = entries
                    .values()
                    .filter(|e| e.busy.load(Ordering::Acquire) == 0)
                    .min_by_key(|e| e.since_ms.load(Ordering::Acquire))
                    .map(|e| e.id);
                if let Some(id) = victim
                    && let Some(entry) = entries.remove(&id)
                {
                    tracing::debug!(
                        connection = id,
                        "at the connection cap: closing the connection idle the longest"
                    );
                    entry.close.notify_one();
                    return;
                }
            }
            // Every connection is in the middle of a request: wait for one to end.
            freed.await;
        }
    }
}

/// A connection's place among the open ones, given up when its task ends (however).
struct Registered {
    entry: Arc<Entry>,
    open: Arc<Open>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.open.entries().remove(&self.entry.id);
        self.open.freed.notify_one();
    }
}

/// One open connection, as the cap and the timeouts see it.
struct Entry {
    id: u64,
    /// Requests in progress: from its head being read to its response's end.
    busy: AtomicU32,
    /// No request in progress, and the connection is new or bytes of a next request
    /// came: the head timeout applies, not the idle one.
    waiting_head: AtomicBool,
    /// When it last became idle or started a head, in ms from [`Open::epoch`].
    since_ms: AtomicU64,
    /// Closes it (the cap chose it).
    close: Notify,
    /// Its deadline moved (a request ended, or a head began).
    changed: Notify,
}

impl Entry {
    /// When it is closed if nothing changes; `None` while busy.
    fn deadline(&self, open: &Open) -> Option<Instant> {
        if self.busy.load(Ordering::Acquire) > 0 {
            return None;
        }
        let since = Duration::from_millis(self.since_ms.load(Ordering::Acquire));
        let allowed = if self.waiting_head.load(Ordering::Acquire) {
            open.limits.header_read_timeout
        } else {
            open.limits.idle_timeout
        };
        Some(
            open.epoch
                .checked_add(since + allowed)
                .unwrap_or_else(far_future),
        )
    }

    fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire) > 0
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(365 * 24 * 3600)
}

/// A request in progress on a connection: begun when its head is read, ended when its
/// response's body is dropped (sent, or abandoned).
struct InProgress {
    entry: Arc<Entry>,
    open: Arc<Open>,
}

impl InProgress {
    fn begin(entry: &Arc<Entry>, open: &Arc<Open>) -> Self {
        entry.busy.fetch_add(1, Ordering::AcqRel);
        entry.waiting_head.store(false, Ordering::Release);
        Self {
            entry: entry.clone(),
            open: open.clone(),
        }
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.entry
            .since_ms
            .store(self.open.now_ms(), Ordering::Release);
        self.entry.busy.fetch_sub(1, Ordering::AcqRel);
        self.entry.changed.notify_one();
        // It may now make room at the cap.
        self.open.freed.notify_one();
    }
}

async fn connection(
    stream: TcpStream,
    router: Router,
    registered: Registered,
    mut closing: watch::Receiver<bool>,
) {
    let (entry, open) = (registered.entry.clone(), registered.open.clone());
    let io = Watched {
        stream: Some(stream),
        entry: entry.clone(),
        open: open.clone(),
        answer: None,
    };
    let service = {
        let (entry, open) = (entry.clone(), open.clone());
        service_fn(move |request: Request<Incoming>| {
            let in_progress = InProgress::begin(&entry, &open);
            let router = router.clone();
            let allowed = open.limits.body_read_timeout;
            let request = request.map(|body| {
                if body.is_end_stream() {
                    Body::new(body)
                } else {
                    Body::new(Deadline {
                        body,
                        allowed,
                        at: Box::pin(tokio::time::sleep(allowed)),
                    })
                }
            });
            async move {
                let response = router
                    .oneshot(request)
                    .await
                    .unwrap_or_else(|never: Infallible| match never {});
                Ok::<_, Infallible>(response.map(|body| {
                    Body::new(body.map_frame(move |frame| {
                        let _ = &in_progress;
                        frame
                    }))
                }))
            }
        })
    };
    let conn = http1::Builder::new()
        .max_buf_size(MAX_HEAD_BYTES)
        .max_header_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        // While busy, nothing expires; a change of state wakes the loop.
        let wake = entry.deadline(&open).unwrap_or_else(far_future);
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            () = tokio::time::sleep_until(wake) => {
                if entry.deadline(&open).is_some_and(|at| at <= Instant::now()) {
                    break;
                }
            }
            () = entry.changed.notified() => {}
            () = entry.close.notified() => {
                // Chosen while idle; if a request began since, it is answered first.
                if !entry.is_busy() {
                    break;
                }
                conn.as_mut().graceful_shutdown();
            }
            _ = closing.wait_for(|closing| *closing), if !stopping => {
                stopping = true;
                if !entry.is_busy() {
                    break;
                }
                conn.as_mut().graceful_shutdown();
            }
        }
    }
    drop(registered);
}

/// The socket as the HTTP library reads and writes it, watched: a read while no request
/// is in progress marks the start of a head, and the library's own answer to a head it
/// refuses is replaced by Signal's error body.
struct Watched {
    /// Taken on drop, to close it gently after a refused head.
    stream: Option<TcpStream>,
    entry: Arc<Entry>,
    open: Arc<Open>,
    /// Signal's answer to a refused head, as far as it is written.
    answer: Option<io::Cursor<Vec<u8>>>,
}

impl Watched {
    fn stream(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(
            self.stream
                .as_mut()
                .expect("the stream is taken only on drop"),
        )
    }

    /// Writes what the library sends, unless it is its answer to a refused head: that
    /// is replaced (and anything after it swallowed, the library closes next).
    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        first: &[u8],
        total: usize,
        send: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if self.answer.is_none()
            && let Some(refusal) = library_refusal(first)
        {
            tracing::info!(
                status = refusal.status().as_u16(),
                "refused a request head the HTTP library could not take"
            );
            self.answer = Some(io::Cursor::new(refusal_bytes(refusal)));
        }
        let Some(answer) = self.answer.as_mut() else {
            return send(self.stream(), cx);
        };
        // Not `self.stream()`: `answer` borrows another field of `self`.
        let mut stream = Pin::new(
            self.stream
                .as_mut()
                .expect("the stream is taken only on drop"),
        );
        loop {
            let at = usize::try_from(answer.position()).unwrap_or(usize::MAX);
            let rest = answer.get_ref().get(at..).unwrap_or_default();
            if rest.is_empty() {
                return Poll::Ready(Ok(total));
            }
            let n = ready!(stream.as_mut().poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            answer.set_position(answer.position() + n as u64);
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(this.stream().poll_read(cx, buf))?;
        if buf.filled().len() > before
            && !this.entry.is_busy()
            && !this.entry.waiting_head.swap(true, Ordering::AcqRel)
        {
            // Bytes while no request is in progress: a head begins (or the rest of an
            // unread body is drained, which counts the same: the shorter timeout).
            this.entry
                .since_ms
                .store(this.open.now_ms(), Ordering::Release);
            this.entry.changed.notify_one();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut()
            .poll_send(cx, buf, buf.len(), |s, cx| s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| b);
        let total = bufs.iter().map(|b| b.len()).sum();
        self.get_mut()
            .poll_send(cx, first, total, |s, cx| s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().stream().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().stream().poll_shutdown(cx)
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        // Closing with the client's head still unread would reset the connection, and
        // the client could lose the answer: read what is left first (briefly, and only
        // so many connections at once).
        if self.answer.is_some()
            && let Some(stream) = self.stream.take()
            && let Ok(permit) = self.open.lingering.clone().try_acquire_owned()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                linger(stream).await;
                drop(permit);
            });
        }
    }
}

async fn linger(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 8192];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut left: usize = 1024 * 1024;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// The HTTP library's own answer to a head it refused, if `bytes` start one: a status
/// line of 400, 414 or 431 and a head without a content type. The service's own
/// answers always carry one (its errors are JSON), so they never match.
fn library_refusal(bytes: &[u8]) -> Option<ApiError> {
    let status = bytes.strip_prefix(b"HTTP/1.1 ")?.get(..3)?;
    let refusal = match status {
        b"400" => ApiError::BadRequest {
            code: "bad_request",
            message: "the request is not valid HTTP/1.1: its request line or a header field cannot be read".into(),
            details: Vec::new(),
        },
        b"414" => ApiError::UriTooLong { limit: 65_534 },
        b"431" => ApiError::HeadersTooLarge {
            max_bytes: MAX_HEAD_BYTES,
            max_fields: MAX_HEADERS,
        },
        _ => return None,
    };
    let head_end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(bytes.len());
    let head = String::from_utf8_lossy(&bytes[..head_end]).to_ascii_lowercase();
    (!head.contains("\r\ncontent-type:")).then_some(refusal)
}

/// A whole HTTP/1.1 answer carrying `error`, closing the connection.
fn refusal_bytes(error: ApiError) -> Vec<u8> {
    let (status, body) = error.render();
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let mut answer = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_librarys_bodiless_refusals_are_replaced() {
        let library = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Thu, 26 Nov 2026 04:00:00 GMT\r\n\r\n";
        let refusal = library_refusal(library).expect("replaced");
        assert_eq!(
            refusal.status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        let bad = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(
            library_refusal(bad).map(|r| r.status()),
            Some(StatusCode::BAD_REQUEST)
        );
        // The service's own 400 (JSON) goes out as it is; so does any other answer.
        let own = b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\ncontent-length: 80\r\n\r\n{";
        assert!(library_refusal(own).is_none());
        assert!(library_refusal(b"HTTP/1.1 200 OK\r\n\r\n").is_none());
        assert!(library_refusal(b"{\"a\":1}").is_none());
    }

    #[test]
    fn a_refusal_is_a_whole_answer_in_signals_shape() {
        let answer = refusal_bytes(ApiError::HeadersTooLarge {
            max_bytes: MAX_HEAD_BYTES,
            max_fields: MAX_HEADERS,
        });
        let text = String::from_utf8(answer).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{head}"
        );
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"]["code"], "headers_too_large");
    }
}
