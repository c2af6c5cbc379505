//! JSON for the answers hyper writes by itself. A request hyper cannot parse (a bad request
//! line or header: 400; headers beyond its read buffer: 431; a target too long: 414) is
//! answered by hyper with an empty body, before any service sees a request, and the connection
//! is closed; hyper offers no hook for that answer. Every other error of the service is
//! `{"detail": …}` in JSON, and a client (or the proxy in front) should not need a second way
//! to read one. So the connection's socket is wrapped, and the wrapper replaces that answer.
//!
//! Why recognise the written bytes: hyper decides and encodes the answer inside its connection
//! state machine, and its connection future reports the parse error only once the answer is
//! flushed. Parsing requests ahead of hyper would be a second HTTP parser to keep in step with
//! the first. The bytes are unambiguous: hyper's answer is a 400, 414 or 431 whose only
//! headers are `connection`, `content-length: 0` and `date`, while every answer of ours
//! carries a content type and a request id; and it is the last thing written on the
//! connection, so it ends the buffer hyper hands over. Hyper is told to write flat buffers
//! (not vectored ones), so an answer is never split across slices of one write; only the last
//! [`LONGEST_AUTOMATIC_ANSWER`] bytes of a write that ends the way a head ends are looked at,
//! so every other write costs one comparison. Should a later hyper word its answer otherwise,
//! the answer goes out as hyper wrote it (and tests/operations.rs fails): never a broken one.
//!
//! Having answered, hyper drops the socket; request bytes still unread in the kernel (the
//! rest of a header too large) would make it send a reset, which can destroy the answer before
//! the client reads it. So after such an answer the wrapper closes as careful servers do (a
//! "lingering close"): it shuts its sending side, then reads and drops what the client still
//! sends until the client closes, for at most [`LINGER`].

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::ApiError;

/// `HTTP/1.1 431 Request Header Fields Too Large`, `connection: close`, `content-length: 0`,
/// `date: …` and the blank line take 123 bytes: this leaves room for a longer wording.
const LONGEST_AUTOMATIC_ANSWER: usize = 256;

/// How long the client may keep sending after its request was refused.
const LINGER: Duration = Duration::from_secs(1);

/// A connection's socket whose automatic error answers from hyper are JSON.
pub(super) struct JsonProtocolErrors<I> {
    io: I,
    state: State,
}

enum State {
    /// Writes go through as they are.
    Relaying,
    /// hyper's answer was replaced by `bytes` (with whatever preceded it in the same write),
    /// of which `written` are written.
    Replacing { bytes: Vec<u8>, written: usize },
    /// The replacement is written; on shutdown, the client's last bytes are drained until the
    /// deadline (set when the shutdown starts).
    Replaced { linger: Option<Pin<Box<Sleep>>> },
}

impl<I> JsonProtocolErrors<I> {
    pub(super) fn new(io: I) -> Self {
        JsonProtocolErrors {
            io,
            state: State::Relaying,
        }
    }
}

impl<I: AsyncWrite + Unpin> JsonProtocolErrors<I> {
    /// Writes what is left of the replacement, if any.
    fn poll_write_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let State::Replacing { bytes, written } = &mut self.state {
            if *written == bytes.len() {
                self.state = State::Replaced { linger: None };
                break;
            }
            let sent = ready!(Pin::new(&mut self.io).poll_write(cx, &bytes[*written..]))?;
            if sent == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += sent;
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for JsonProtocolErrors<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncWrite for JsonProtocolErrors<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_write_replacement(cx))?;
        if let State::Relaying = this.state
            && let Some((start, json)) = replace_automatic_answer(buf)
        {
            let mut bytes = buf[..start].to_vec();
            bytes.extend_from_slice(&json);
            this.state = State::Replacing { bytes, written: 0 };
            // Taken whole: it goes out on the flush hyper does next.
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_write_replacement(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_write_replacement(cx))?;
        let State::Replaced { linger } = &mut this.state else {
            return Pin::new(&mut this.io).poll_shutdown(cx);
        };
        let deadline = match linger {
            Some(deadline) => deadline,
            None => {
                ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
                linger.insert(Box::pin(tokio::time::sleep(LINGER)))
            }
        };
        let mut discarded = [0u8; 4096];
        loop {
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut discarded);
            match ready!(Pin::new(&mut this.io).poll_read(cx, &mut buf)) {
                Ok(()) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Ok(()) => {}
                // The client is gone: nothing is left to protect.
                Err(_) => return Poll::Ready(Ok(())),
            }
        }
    }
}

/// When `written` ends with an answer hyper made by itself, where that answer starts and the
/// JSON answer to write instead.
fn replace_automatic_answer(written: &[u8]) -> Option<(usize, Vec<u8>)> {
    if !written.ends_with(b"\r\n\r\n") {
        return None;
    }
    let tail = written.len().saturating_sub(LONGEST_AUTOMATIC_ANSWER);
    let start = tail
        + written[tail..]
            .windows(9)
            .rposition(|at| at == b"HTTP/1.1 ")?;
    let head = std::str::from_utf8(&written[start..written.len() - 4]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status = StatusCode::from_bytes(status_line.get(9..12)?.as_bytes()).ok()?;
    if status_line.get(12..)? != format!(" {}", status.canonical_reason()?) {
        return None;
    }
    let error = ApiError::of_unparsable_request(status)?;
    let mut date = None;
    let mut others = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(": ")?;
        match name {
            "date" => date = Some(value),
            "connection" | "content-length" => others.push(line),
            _ => return None,
        }
    }
    if others != ["connection: close", "content-length: 0"] {
        return None;
    }
    Some((start, encode(error, date?)))
}

/// `error` as an HTTP/1.1 answer that closes the connection, as hyper's did.
fn encode(error: ApiError, date: &str) -> Vec<u8> {
    let (status, mut headers, body) = error.into_parts();
    for (name, value) in super::API_ANSWER_HEADERS {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    let mut answer = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or_default()
    )
    .into_bytes();
    for (name, value) in &headers {
        answer.extend_from_slice(name.as_str().as_bytes());
        answer.extend_from_slice(b": ");
        answer.extend_from_slice(value.as_bytes());
        answer.extend_from_slice(b"\r\n");
    }
    answer.extend_from_slice(
        format!(
            "connection: close\r\ncontent-length: {}\r\ndate: {date}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    answer.extend_from_slice(&body);
    answer
}

#[cfg(test)]
mod tests {
    use super::replace_automatic_answer;

    const DATE: &str = "Wed, 02 Dec 2026 13:02:13 GMT";

    fn automatic(status_line: &str) -> String {
        format!("{status_line}\r\nconnection: close\r\ncontent-length: 0\r\ndate: {DATE}\r\n\r\n")
    }

    #[test]
    fn hypers_own_431_becomes_json_and_what_came_before_it_stays() {
        let answered = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        let written = format!(
            "{answered}{}",
            automatic("HTTP/1.1 431 Request Header Fields Too Large")
        );

        let (start, json) = replace_automatic_answer(written.as_bytes()).unwrap();

        let json = String::from_utf8(json).unwrap();
        assert_eq!(start, answered.len());
        assert!(json.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(json.contains("content-type: application/json; charset=utf-8\r\n"));
        assert!(json.contains("x-content-type-options: nosniff\r\n"));
        assert!(json.contains(&format!("date: {DATE}\r\n")));
        assert!(json.ends_with(
            "content-length: 45\r\ndate: Wed, 02 Dec 2026 13:02:13 GMT\r\n\r\n\
             {\"detail\":\"Request header fields too large.\"}"
        ));
    }

    #[test]
    fn answers_of_the_service_are_left_alone() {
        for written in [
            // An answer of ours, with a body.
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json; charset=utf-8\r\n\
             content-length: 2\r\n\r\n{}"
                .to_owned(),
            // Empty answers of ours: they carry other headers.
            "HTTP/1.1 204 No Content\r\nallow: POST,OPTIONS\r\ndate: x\r\n\r\n".to_owned(),
            "HTTP/1.1 400 Bad Request\r\nx-request-id: 1\r\nconnection: close\r\n\
             content-length: 0\r\ndate: x\r\n\r\n"
                .to_owned(),
            // Statuses hyper never makes up.
            automatic("HTTP/1.1 404 Not Found"),
            automatic("HTTP/1.1 500 Internal Server Error"),
            // A status line whose reason is not the standard one.
            automatic("HTTP/1.1 400 Nope"),
        ] {
            assert_eq!(
                replace_automatic_answer(written.as_bytes()),
                None,
                "{written}"
            );
        }
    }
}
