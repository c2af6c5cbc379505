//! A real SMTP server for the tests, on a loopback port: it speaks enough SMTP (EHLO, MAIL,
//! RCPT, DATA, RSET, NOOP, QUIT) for `lettre` to deliver to it exactly as to a production
//! relay, and keeps what it receives, decoded (MIME parts, quoted-printable, base64), so a
//! test reads the link out of the mail a user would get.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// A mail as the sink received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub subject: String,
    /// The text/plain part, decoded.
    pub text: String,
    /// The text/html part, decoded.
    pub html: String,
    /// The message as sent, headers and encoded parts.
    pub raw: String,
}

impl Received {
    /// The token of the link to `page` (`/reset/` or `/verify/`) in the text part.
    pub fn token(&self, page: &str) -> String {
        let marker = format!("{page}#token=");
        let start = self
            .text
            .find(&marker)
            .unwrap_or_else(|| panic!("a {page} link in the mail: {}", self.text))
            + marker.len();
        self.text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect()
    }

    /// The whole link to `page`.
    pub fn link(&self, page: &str) -> String {
        let token = self.token(page);
        let end = self.text.find(&token).expect("the token") + token.len();
        let start = self.text[..end].rfind("http").expect("a URL");
        self.text[start..end].to_owned()
    }
}

/// How the sink answers a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mood {
    /// Greets and takes mail.
    Accepting,
    /// Answers `421` (service not available, try again later) and closes.
    Refusing,
    /// Waits this long before its greeting.
    Slow(Duration),
}

pub struct SmtpSink {
    pub address: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    arrived: Arc<Notify>,
    /// The moods of the next connections, in turn; once empty, `Accepting`.
    moods: Arc<Mutex<Vec<Mood>>>,
    connections: Arc<Mutex<u32>>,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a local port");
        let address = listener.local_addr().expect("the bound address");
        let sink = SmtpSink {
            address,
            received: Arc::default(),
            arrived: Arc::default(),
            moods: Arc::default(),
            connections: Arc::default(),
        };
        let (received, arrived, moods, connections) = (
            sink.received.clone(),
            sink.arrived.clone(),
            sink.moods.clone(),
            sink.connections.clone(),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                *connections.lock().unwrap() += 1;
                let mood = {
                    let mut moods = moods.lock().unwrap();
                    if moods.is_empty() {
                        Mood::Accepting
                    } else {
                        moods.remove(0)
                    }
                };
                let (received, arrived) = (received.clone(), arrived.clone());
                tokio::spawn(async move {
                    let _ = converse(stream, mood, &received, &arrived).await;
                });
            }
        });
        sink
    }

    /// `smtp://127.0.0.1:<port>`: no TLS, as a relay on the same host.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.address)
    }

    /// The next connections are answered with `moods`, in turn.
    pub fn then(&self, moods: &[Mood]) {
        self.moods.lock().unwrap().extend_from_slice(moods);
    }

    /// Connections made so far (each delivery attempt is one).
    pub fn connections(&self) -> u32 {
        *self.connections.lock().unwrap()
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits (10 s at most) until `count` mails have arrived, and returns them all.
    pub async fn wait_for(&self, count: usize) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let arrived = self.arrived.notified();
            let received = self.received();
            if received.len() >= count {
                return received;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!("{count} mails were expected; {} arrived", received.len());
            }
        }
    }

    /// The next mail, once it has arrived (the `n`th, counting from 1).
    pub async fn mail(&self, n: usize) -> Received {
        self.wait_for(n).await[n - 1].clone()
    }
}

async fn converse(
    stream: tokio::net::TcpStream,
    mood: Mood,
    received: &Mutex<Vec<Received>>,
    arrived: &Notify,
) -> std::io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut lines = BufReader::new(reader);
    match mood {
        Mood::Refusing => {
            writer
                .write_all(b"421 sink.test busy, try again later\r\n")
                .await?;
            return writer.shutdown().await;
        }
        Mood::Slow(delay) => tokio::time::sleep(delay).await,
        Mood::Accepting => {}
    }
    writer.write_all(b"220 sink.test ESMTP\r\n").await?;
    let (mut mail_from, mut rcpt_to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let verb = command
            .split([' ', ':'])
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let answer: &[u8] = match verb.as_str() {
            "EHLO" => b"250-sink.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
            "HELO" | "RSET" | "NOOP" => b"250 OK\r\n",
            "MAIL" => {
                mail_from = angle_bracketed(&command);
                rcpt_to.clear();
                b"250 OK\r\n"
            }
            "RCPT" => {
                rcpt_to.push(angle_bracketed(&command));
                b"250 OK\r\n"
            }
            "DATA" => {
                writer.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    // Dot-stuffing (RFC 5321 §4.5.2).
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                let mail = decode(&mail_from, &rcpt_to, data);
                received.lock().unwrap().push(mail);
                arrived.notify_waiters();
                b"250 OK queued\r\n"
            }
            "QUIT" => {
                writer.write_all(b"221 bye\r\n").await?;
                return writer.shutdown().await;
            }
            _ => b"502 command not implemented\r\n",
        };
        writer.write_all(answer).await?;
    }
}

fn angle_bracketed(command: &str) -> String {
    let start = command.find('<').map_or(0, |start| start + 1);
    let end = command.rfind('>').unwrap_or(command.len());
    command[start..end.max(start)].to_owned()
}

/// The message's subject and its text and HTML parts, decoded.
fn decode(mail_from: &str, rcpt_to: &[String], raw: String) -> Received {
    let (headers, body) = split_head(&raw);
    let subject = header(headers, "subject").unwrap_or_default();
    let content_type = header(headers, "content-type").unwrap_or_default();
    let (mut text, mut html) = (String::new(), String::new());
    let parts: Vec<(&str, &str)> = match boundary(&content_type) {
        Some(boundary) => body
            .split(&format!("--{boundary}"))
            .skip(1)
            .filter(|part| !part.starts_with("--"))
            .map(|part| split_head(part.trim_start_matches(['\r', '\n'])))
            .collect(),
        None => vec![(headers, body)],
    };
    for (part_headers, part_body) in parts {
        let kind = header(part_headers, "content-type").unwrap_or_default();
        let encoding = header(part_headers, "content-transfer-encoding").unwrap_or_default();
        let decoded = transfer_decode(&encoding, part_body);
        if kind.starts_with("text/plain") {
            text = decoded;
        } else if kind.starts_with("text/html") {
            html = decoded;
        }
    }
    Received {
        mail_from: mail_from.to_owned(),
        rcpt_to: rcpt_to.to_vec(),
        subject,
        text,
        html,
        raw,
    }
}

fn split_head(message: &str) -> (&str, &str) {
    message
        .split_once("\r\n\r\n")
        .or_else(|| message.split_once("\n\n"))
        .unwrap_or((message, ""))
}

/// A header's value, its folded lines joined.
fn header(headers: &str, name: &str) -> Option<String> {
    let mut value: Option<String> = None;
    for line in headers.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(value) = &mut value {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if value.is_some() {
            break;
        }
        if let Some((key, rest)) = line.split_once(':')
            && key.eq_ignore_ascii_case(name)
        {
            value = Some(rest.trim().to_owned());
        }
    }
    value
}

fn boundary(content_type: &str) -> Option<String> {
    let start = content_type.find("boundary=")? + "boundary=".len();
    let rest = &content_type[start..];
    Some(
        rest.trim_start_matches('"')
            .split(['"', ';'])
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned(),
    )
}

fn transfer_decode(encoding: &str, body: &str) -> String {
    match encoding.to_ascii_lowercase().as_str() {
        "base64" => {
            let joined: String = body.split_whitespace().collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(joined)
                .expect("a base64 part");
            String::from_utf8(bytes).expect("a UTF-8 part")
        }
        "quoted-printable" => {
            let unfolded = body.replace("=\r\n", "").replace("=\n", "");
            let bytes = unfolded.as_bytes();
            let mut out = Vec::with_capacity(bytes.len());
            let mut index = 0;
            while index < bytes.len() {
                if bytes[index] == b'='
                    && let Some(byte) = bytes
                        .get(index + 1..index + 3)
                        .and_then(|hex| std::str::from_utf8(hex).ok())
                        .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                {
                    out.push(byte);
                    index += 3;
                } else {
                    out.push(bytes[index]);
                    index += 1;
                }
            }
            String::from_utf8(out).expect("a UTF-8 part")
        }
        _ => body.to_owned(),
    }
}
