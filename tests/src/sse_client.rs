//! A minimal SSE client over a raw loopback TCP socket (HTTP/1.1, chunked decoding), so
//! the tests see exactly the bytes the host writes: frames, comments, `retry:`.
//!
//! It parses like a browser's `EventSource` (the WHATWG algorithm): CR, LF and CRLF all
//! end a line, a blank line dispatches the event, lines that are not a known field are
//! ignored. So a frame whose `data:` is broken by a raw line break shows up exactly as a
//! browser would see it: a truncated event (that fails to parse as JSON here).

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One parsed SSE item.
#[derive(Debug, Clone, PartialEq)]
pub enum SseItem {
    /// An event: `id`, `event` name and `data` (parsed as JSON).
    Event {
        id: Option<String>,
        event: String,
        data: Value,
    },
    /// A comment line (`: heartbeat`).
    Comment(String),
    /// A `retry:` hint.
    Retry(u64),
}

/// A response: status, headers (lower-cased names) and, for streams, the body reader.
pub struct SseResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    stream: TcpStream,
    raw: Vec<u8>,
    body: Vec<u8>,
    chunked: bool,
    /// The final (empty) chunk arrived: the server ended the body.
    ended: bool,
    pending: Vec<SseItem>,
    /// The event being assembled: id, event name, data lines, whether any field was seen.
    building: (Option<String>, Option<String>, Option<String>),
}

/// `GET path` on `addr` with extra headers.
pub async fn get(addr: &str, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<SseResponse> {
    let mut stream = TcpStream::connect(addr).await.context("connect")?;
    stream.set_nodelay(true)?;
    let mut request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    let head_end = loop {
        if let Some(pos) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            bail!("connection closed before the response head");
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let rest = raw[head_end + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .context("status")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    Ok(SseResponse {
        status,
        headers,
        stream,
        raw: rest,
        body: Vec::new(),
        chunked,
        ended: false,
        pending: Vec::new(),
        building: (None, None, None),
    })
}

impl SseResponse {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The whole (non-stream) body as JSON, e.g. for error answers.
    pub async fn json(mut self) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            self.decode()?;
            if let Ok(v) = serde_json::from_slice(&self.body) {
                return Ok(v);
            }
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await??;
            if n == 0 {
                self.decode()?;
                return Ok(serde_json::from_slice(&self.body)?);
            }
            self.raw.extend_from_slice(&buf[..n]);
        }
    }

    /// The next SSE item, waiting at most `timeout`; `Ok(None)` when the server closed.
    pub async fn next(&mut self, timeout: Duration) -> anyhow::Result<Option<SseItem>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if !self.pending.is_empty() {
                return Ok(Some(self.pending.remove(0)));
            }
            self.decode()?;
            self.parse_items()?;
            if !self.pending.is_empty() {
                continue;
            }
            if self.ended {
                return Ok(None);
            }
            let mut buf = vec![0u8; 65536];
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut buf))
                .await
                .context("timed out waiting for an SSE item")??;
            if n == 0 {
                return Ok(None);
            }
            self.raw.extend_from_slice(&buf[..n]);
        }
    }

    /// The next event (skipping comments and retry hints).
    pub async fn next_event(
        &mut self,
        timeout: Duration,
    ) -> anyhow::Result<Option<(Option<String>, String, Value)>> {
        loop {
            match self.next(timeout).await? {
                Some(SseItem::Event { id, event, data }) => return Ok(Some((id, event, data))),
                Some(_) => continue,
                None => return Ok(None),
            }
        }
    }

    /// Move decoded body bytes from `raw` to `body` (de-chunking if needed).
    fn decode(&mut self) -> anyhow::Result<()> {
        if !self.chunked {
            self.body.append(&mut self.raw);
            return Ok(());
        }
        loop {
            let Some(line_end) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return Ok(());
            };
            let size_text = String::from_utf8_lossy(&self.raw[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .with_context(|| format!("bad chunk size {size_text:?}"))?;
            if self.raw.len() < line_end + 2 + size + 2 {
                return Ok(());
            }
            if size == 0 {
                self.ended = true;
            }
            self.body
                .extend_from_slice(&self.raw[line_end + 2..line_end + 2 + size]);
            self.raw.drain(..line_end + 2 + size + 2);
        }
    }

    fn parse_items(&mut self) -> anyhow::Result<()> {
        while let Some(end) = self.body.iter().position(|b| *b == b'\n' || *b == b'\r') {
            // A CR at the very end may be the first half of a CRLF: wait for more.
            if self.body[end] == b'\r' && end + 1 == self.body.len() && !self.ended {
                break;
            }
            let crlf = self.body[end] == b'\r' && self.body.get(end + 1) == Some(&b'\n');
            let line: Vec<u8> = self.body.drain(..end).collect();
            self.body.drain(..if crlf { 2 } else { 1 });
            self.line(&String::from_utf8(line)?)?;
        }
        Ok(())
    }

    /// One line of the stream (without its terminator).
    fn line(&mut self, line: &str) -> anyhow::Result<()> {
        if line.is_empty() {
            let (id, event, data) = std::mem::take(&mut self.building);
            if event.is_some() || data.is_some() {
                let mut data = data.unwrap_or_default();
                if data.ends_with('\n') {
                    data.pop();
                }
                self.pending.push(SseItem::Event {
                    id,
                    event: event.unwrap_or_else(|| "message".into()),
                    data: serde_json::from_str(&data)
                        .with_context(|| format!("event data is not JSON: {data:?}"))?,
                });
            }
            return Ok(());
        }
        if let Some(c) = line.strip_prefix(':') {
            self.pending.push(SseItem::Comment(c.trim().to_string()));
            return Ok(());
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "retry" => self.pending.push(SseItem::Retry(value.parse()?)),
            "id" => self.building.0 = Some(value.to_string()),
            "event" => self.building.1 = Some(value.to_string()),
            "data" => {
                let data = self.building.2.get_or_insert_with(String::new);
                data.push_str(value);
                data.push('\n');
            }
            _ => {}
        }
        Ok(())
    }
}
