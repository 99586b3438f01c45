//! The load generator's HTTP/1.1 client: one keep-alive connection per sender, the
//! request written in one piece from a reused buffer, the answer's head parsed with
//! `httparse` and its body (always sized by `content-length` from the services measured
//! here) read into a reused buffer. No pool, no lock, no per-request task: what a client
//! must do and nothing else, so that the load generator is not what a benchmark
//! measures (`loadgen lean` checks that against the leanest client, below).

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where requests go: `host:port` and the path, from an `http://host:port/path` URL.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub addr: String,
    pub path: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url}: only http:// URLs are measured"))?;
        let (addr, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        Ok(Endpoint {
            addr: addr.to_owned(),
            path: path.to_owned(),
        })
    }

    /// The request head up to (not including) the `content-length` value.
    pub fn head(&self, token: &str) -> Vec<u8> {
        format!(
            "POST {} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {token}\r\ncontent-type: application/json\r\ncontent-length: ",
            self.path, self.addr
        )
        .into_bytes()
    }
}

/// One keep-alive connection.
pub struct Conn {
    stream: TcpStream,
    out: Vec<u8>,
    buf: Vec<u8>,
    /// Bytes of `buf` that belong to the previous answer.
    used: usize,
    /// The server said `connection: close`: the next request needs a new connection.
    pub closed: bool,
}

/// An answer: its status and where its body lies in the connection's buffer.
pub struct Answer {
    pub status: u16,
    body: (usize, usize),
}

impl Conn {
    pub async fn connect(addr: &str) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            out: Vec::with_capacity(4096),
            buf: Vec::with_capacity(4096),
            used: 0,
            closed: false,
        })
    }

    /// Sends `head` (ending in `content-length: `), the body's length and `body`, and
    /// reads the answer.
    pub async fn post(&mut self, head: &[u8], body: &[u8]) -> io::Result<Answer> {
        self.out.clear();
        self.out.extend_from_slice(head);
        let mut digits = itoa::Buffer::new();
        self.out
            .extend_from_slice(digits.format(body.len()).as_bytes());
        self.out.extend_from_slice(b"\r\n\r\n");
        self.out.extend_from_slice(body);
        self.stream.write_all(&self.out).await?;
        self.read_answer().await
    }

    /// The body of `answer`, valid until the next request.
    pub fn body(&self, answer: &Answer) -> &[u8] {
        &self.buf[answer.body.0..answer.body.1]
    }

    async fn read_answer(&mut self) -> io::Result<Answer> {
        self.buf.drain(..self.used);
        self.used = 0;
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(head_len) = response
                .parse(&self.buf)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
            {
                let status = response.code.unwrap_or(0);
                let mut length = 0usize;
                for h in response.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        length = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.trim().parse().ok())
                            .ok_or_else(|| bad("content-length"))?;
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        return Err(bad("chunked answers are not read"));
                    } else if h.name.eq_ignore_ascii_case("connection")
                        && h.value.eq_ignore_ascii_case(b"close")
                    {
                        self.closed = true;
                    }
                }
                while self.buf.len() < head_len + length {
                    self.fill().await?;
                }
                self.used = head_len + length;
                return Ok(Answer {
                    status,
                    body: (head_len, head_len + length),
                });
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> io::Result<()> {
        let len = self.buf.len();
        self.buf.resize(len.max(4096) + 4096, 0);
        let n = self.stream.read(&mut self.buf[len..]).await;
        let n = match n {
            Ok(n) => n,
            Err(e) => {
                self.buf.truncate(len);
                return Err(e);
            }
        };
        self.buf.truncate(len + n);
        if n == 0 {
            self.closed = true;
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        Ok(())
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}
