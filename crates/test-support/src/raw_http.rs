//! HTTP/1.1 by hand, for requests no well-behaved client would send:
//! repeated headers, odd `Connection` lists, bodies that disagree with
//! their headers.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An answer read off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAnswer {
    /// The status code; 0 when no status line came back.
    pub status: u16,
    /// The header lines, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl RawAnswer {
    /// The first value of header `name` (lower-case).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` when it is not JSON).
    #[must_use]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Sends `POST path` with these header lines (`Name: value`, repeats
/// allowed) and `body`, with `Connection: close` added unless a
/// `Connection` line is given, and reads the answer (for at most 10 s).
///
/// # Panics
/// When the connection cannot be opened or written.
pub async fn post(addr: SocketAddr, path: &str, headers: &[String], body: &str) -> RawAnswer {
    let mut request = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for line in headers {
        request.push_str(line);
        request.push_str("\r\n");
    }
    if !headers
        .iter()
        .any(|line| line.to_ascii_lowercase().starts_with("connection:"))
    {
        request.push_str("Connection: close\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let mut stream = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|error| panic!("connecting to {addr}: {error}"));
    stream
        .write_all(request.as_bytes())
        .await
        .unwrap_or_else(|error| panic!("writing to {addr}: {error}"));
    read_answer(&mut stream).await
}

/// Reads one answer: the head, then `Content-Length` bytes of body (or
/// until the connection closes), for at most 10 s.
async fn read_answer(stream: &mut TcpStream) -> RawAnswer {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(answer) = complete_answer(&bytes) {
            return answer;
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => bytes.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    complete_answer(&bytes).unwrap_or_else(|| parse(&bytes, None))
}

fn complete_answer(bytes: &[u8]) -> Option<RawAnswer> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let answer = parse(bytes, Some(end));
    let length: usize = answer.header("content-length")?.trim().parse().ok()?;
    (bytes.len() >= end + length).then(|| parse(&bytes[..end + length], Some(end)))
}

fn parse(bytes: &[u8], head_end: Option<usize>) -> RawAnswer {
    let text = String::from_utf8_lossy(bytes);
    let end = head_end.unwrap_or(text.len()).min(text.len());
    let (head, body) = text.split_at(end);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    RawAnswer {
        status,
        headers,
        body: body.to_owned(),
    }
}
