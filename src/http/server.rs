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
//! - A request head is read within fixed limits (request line, head size, header
//!   count): past them the client gets Signal's error body with `414` or `431`, not
//!   the HTTP library's empty answer, and the connection is closed.
//!
//! Stopping: no new connections; idle ones close at once, busy ones after their
//! response (the caller bounds the wait).

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
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

use super::error::ApiError;

/// Longest request line (method, target, version).
pub const MAX_REQUEST_LINE_BYTES: usize = 8 * 1024;
/// Longest request head (request line and headers).
pub const MAX_HEAD_BYTES: usize = 32 * 1024;
/// Most header fields in one request.
pub const MAX_HEADERS: usize = 100;
/// The HTTP library's own buffer: above [`MAX_HEAD_BYTES`], so that the limits above,
/// with their error bodies, always apply first; it also bounds what one connection's
/// unread input can hold.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// The bounds a client cannot stretch (`[server]` settings).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

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
        let entry = open.register();
        connections.spawn(connection(
            stream,
            router.clone(),
            entry,
            open.clone(),
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
    /// A connection ended: there may be room.
    freed: Notify,
}

impl Open {
    fn new(limits: Limits) -> Self {
        Self {
            limits,
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            entries: Mutex::new(HashMap::new()),
            freed: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Entry>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(&self) -> Arc<Entry> {
        let entry = Arc::new(Entry {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            busy: AtomicU32::new(0),
            waiting_head: AtomicBool::new(true),
            since_ms: AtomicU64::new(self.now_ms()),
            close: Notify::new(),
        });
        self.entries().insert(entry.id, entry.clone());
        entry
    }

    fn unregister(&self, id: u64) {
        self.entries().remove(&id);
        self.freed.notify_one();
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

/// One open connection, as the cap and the timeouts see it.
struct Entry {
    id: u64,
    /// Requests in progress: from its head being read to its response's end.
    busy: AtomicU32,
    /// No request in progress and the head of the next one (if any bytes of it came)
    /// is not complete: the head timeout applies, not the idle one.
    waiting_head: AtomicBool,
    /// When it last became idle or started a head, in ms from [`Open::epoch`].
    since_ms: AtomicU64,
    /// Closes it (the cap chose it).
    close: Notify,
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
        Some(open.epoch + since + allowed)
    }
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
    }
}

async fn connection(
    stream: TcpStream,
    router: Router,
    entry: Arc<Entry>,
    open: Arc<Open>,
    mut closing: watch::Receiver<bool>,
) {
    let io = Watched {
        stream: Some(stream),
        entry: entry.clone(),
        open: open.clone(),
        head: HeadScan::default(),
        refused: false,
    };
    let service = {
        let (entry, open) = (entry.clone(), open.clone());
        service_fn(move |request: Request<Incoming>| {
            let in_progress = InProgress::begin(&entry, &open);
            let router = router.clone();
            async move {
                let response = router
                    .oneshot(request.map(Body::new))
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
        .max_buf_size(READ_BUFFER_BYTES)
        .max_headers(MAX_HEADERS + 28)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        // While busy, look again after a while: the deadline starts when it is idle.
        let wake = entry
            .deadline(&open)
            .unwrap_or_else(|| Instant::now() + open.limits.idle_timeout);
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            () = tokio::time::sleep_until(wake), if !stopping => {
                if entry.deadline(&open).is_some_and(|at| at <= Instant::now()) {
                    break;
                }
            }
            () = entry.close.notified() => break,
            _ = closing.wait_for(|closing| *closing), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
    open.unregister(entry.id);
}

/// The socket as the HTTP library reads and writes it, watched: reads mark when a
/// request head starts, and the head is checked against the limits as it arrives.
struct Watched {
    /// Taken on drop, to close it gently after a refused head.
    stream: Option<TcpStream>,
    entry: Arc<Entry>,
    open: Arc<Open>,
    head: HeadScan,
    /// A head over the limits was answered: the library sees the end of input.
    refused: bool,
}

impl Watched {
    fn stream(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(
            self.stream
                .as_mut()
                .expect("the stream is taken only on drop"),
        )
    }

    /// Sees bytes the library is about to get; answers a refusal if they break a limit.
    fn inspect(&mut self, bytes: &[u8]) -> Option<ApiError> {
        if self.entry.busy.load(Ordering::Acquire) > 0 {
            return None; // a body, or a pipelined request behind one
        }
        if !self.entry.waiting_head.swap(true, Ordering::AcqRel) {
            self.entry
                .since_ms
                .store(self.open.now_ms(), Ordering::Release);
            self.head = HeadScan::default();
        }
        self.head.scan(bytes)
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.refused {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(this.stream().poll_read(cx, buf))?;
        let Some(refusal) = this.inspect(&buf.filled()[before..]) else {
            return Poll::Ready(Ok(()));
        };
        // Answer here, in Signal's shape, and show the library the end of input: it
        // then closes the connection without an answer of its own.
        buf.set_filled(before);
        this.refused = true;
        let answer = refusal_bytes(refusal);
        if let Some(stream) = this.stream.as_ref() {
            let _ = stream.try_write(&answer);
        }
        tracing::warn!(
            status = refusal_status(this.head.refused_with),
            "refused a request head over the limits"
        );
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().stream().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().stream().poll_write_vectored(cx, bufs)
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
        // the client could lose the answer: read what is left first (briefly).
        if self.refused
            && let Some(stream) = self.stream.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(linger(stream));
        }
    }
}

async fn linger(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 8192];
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
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

/// A request head as it arrives, against the limits.
#[derive(Default)]
struct HeadScan {
    bytes: usize,
    /// Complete lines so far (the request line, then header fields).
    lines: usize,
    line_bytes: usize,
    done: bool,
    refused_with: Option<StatusCode>,
}

impl HeadScan {
    fn scan(&mut self, input: &[u8]) -> Option<ApiError> {
        for &b in input {
            if self.done {
                return None;
            }
            self.bytes += 1;
            match b {
                b'\n' if self.line_bytes == 0 => {
                    // An empty line ends the head (before the request line, it is
                    // one of the blank lines HTTP allows there).
                    self.done = self.lines > 0;
                }
                b'\n' => {
                    self.lines += 1;
                    self.line_bytes = 0;
                }
                b'\r' => {}
                _ => self.line_bytes += 1,
            }
            if self.lines == 0 && self.line_bytes > MAX_REQUEST_LINE_BYTES {
                self.refused_with = Some(StatusCode::URI_TOO_LONG);
                return Some(ApiError::UriTooLong {
                    limit: MAX_REQUEST_LINE_BYTES,
                });
            }
            if self.bytes > MAX_HEAD_BYTES || self.lines > MAX_HEADERS + 1 {
                self.refused_with = Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
                return Some(ApiError::HeadersTooLarge {
                    max_bytes: MAX_HEAD_BYTES,
                    max_fields: MAX_HEADERS,
                });
            }
        }
        None
    }
}

fn refusal_status(status: Option<StatusCode>) -> u16 {
    status.map_or(0, |s| s.as_u16())
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

    fn scan_all(head: &[u8], chunk: usize) -> Option<u16> {
        let mut scan = HeadScan::default();
        for part in head.chunks(chunk) {
            if scan.scan(part).is_some() {
                return scan.refused_with.map(|s| s.as_u16());
            }
        }
        None
    }

    #[test]
    fn heads_within_the_limits_pass_in_any_chunking() {
        let mut head = b"\r\nPOST /v1/events HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..MAX_HEADERS - 1 {
            head.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        // After the head, a body of any size is not the head's business.
        head.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES * 2));
        for chunk in [1, 7, 4096, usize::MAX] {
            assert_eq!(
                scan_all(&head, chunk.min(head.len())),
                None,
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn a_long_request_line_is_414_and_a_large_head_is_431() {
        let long_target = format!(
            "GET /{} HTTP/1.1\r\n\r\n",
            "a".repeat(MAX_REQUEST_LINE_BYTES)
        );
        assert_eq!(scan_all(long_target.as_bytes(), 1000), Some(414));

        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("x-h{i}: v\r\n").as_bytes());
        }
        assert_eq!(scan_all(&many, 100), Some(431));

        let big = format!(
            "GET / HTTP/1.1\r\nx-big: {}\r\n\r\n",
            "b".repeat(MAX_HEAD_BYTES)
        );
        assert_eq!(scan_all(big.as_bytes(), 1000), Some(431));
    }

    #[test]
    fn a_refusal_is_a_whole_answer_in_signals_shape() {
        let answer = refusal_bytes(ApiError::UriTooLong { limit: 8192 });
        let text = String::from_utf8(answer).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"]["code"], "uri_too_long");
    }
}
