//! Helpers for the command pipeline tests: a whole host (policies, link, commands,
//! public router) on a loopback port in front of a simulator, and a minimal HTTP/1.1
//! client so the tests go through real sockets without another dependency.
//!
//! Every request has a deadline; every failure says what was being done.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use gateway_host::config::{Config, Secret};
use gateway_host::http1::{Limits, serve};
use gateway_host::policy::{SlotKind, SlotSettings};
use gateway_host::server::{Host, public_router};
use gateway_sim::SimHandle;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::{TOKEN, fast_link_config};

/// The JWT secret of test hosts.
pub const JWT_SECRET: &str = "commands-test-secret-of-at-least-32-bytes";
/// Bound on one HTTP exchange.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// A host serving its public router on a loopback port.
pub struct TestHost {
    pub host: Host,
    pub addr: SocketAddr,
    server: JoinHandle<()>,
}

impl Drop for TestHost {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A config for tests: the JWT secret set, no components directory, `tweak` applied.
pub fn test_config(tweak: impl FnOnce(&mut Config)) -> anyhow::Result<Config> {
    let mut config = Config::load(None)?;
    config.jwt_secret = Some(Secret::new(JWT_SECRET));
    config.components_dir = None;
    tweak(&mut config);
    Ok(config)
}

/// Mounts app publishing and the legacy voice bridge, whose voice filter also relays the
/// app's own `APP_VOICE_NOTICE` events to legacy clients.
pub fn app_events_with_voice(config: &mut Config) {
    config.internal_events.enabled = true;
    config.legacy_ws.enabled = true;
    let mut voice = SlotSettings::defaults(SlotKind::VoiceFilter);
    voice.config = vec![(
        "events".into(),
        "VOICE_STATE_UPDATE,APP_VOICE_NOTICE".into(),
    )];
    config.policy.slots.insert(SlotKind::VoiceFilter, voice);
}

/// Sets the default rate limiter's `init` configuration (e.g. a fast or large bucket).
pub fn limiter_config(config: &mut Config, pairs: &[(&str, &str)]) {
    let mut slot = SlotSettings::defaults(SlotKind::RateLimiter);
    slot.config = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    config.policy.slots.insert(SlotKind::RateLimiter, slot);
}

impl TestHost {
    /// Starts a host linked to `sim` and serves it on 127.0.0.1:0.
    pub async fn start(sim: &SimHandle, config: Config) -> anyhow::Result<TestHost> {
        Self::start_upstream(fast_link_config(&sim.url(), TOKEN), config).await
    }

    /// Starts a host on any upstream (link or direct Discord) and serves it on 127.0.0.1:0.
    pub async fn start_upstream(
        upstream: impl Into<gateway_host::server::Upstream>,
        config: Config,
    ) -> anyhow::Result<TestHost> {
        let host = Host::start(&config, upstream)?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = public_router(&host);
        // The production listener, with its limits (header timeout, caps, stall timeout).
        let limits = Limits::new(
            "public",
            &config.listener,
            host.max_connections,
            config.server.shutdown_timeout(),
        );
        let server = tokio::spawn(serve(listener, app, limits, std::future::pending::<()>()));
        Ok(TestHost { host, addr, server })
    }

    /// Take the upstream link down and keep it down (the simulator refuses the token)
    /// until `sim.control().set_refuse_auth(false)`.
    pub async fn take_link_down(&self, sim: &SimHandle) -> anyhow::Result<()> {
        sim.control().set_refuse_auth(true);
        sim.control().drop_links();
        crate::wait_state(
            &self.host.link,
            gateway_host::link::LinkState::Reconnecting,
            REQUEST_TIMEOUT,
        )
        .await
    }

    /// A token for `sub` allowing `cmds` (and every topic), valid for 10 minutes.
    pub fn token(&self, sub: &str, cmds: &[&str]) -> String {
        self.host
            .auth
            .mint(
                sub,
                vec!["*".into()],
                cmds.iter().map(|c| c.to_string()).collect(),
                Duration::from_secs(600),
            )
            .unwrap_or_default()
    }

    /// `POST /api/commands/{kind}` with a JSON body and a bearer token.
    pub async fn command(&self, kind: &str, token: &str, body: &Value) -> anyhow::Result<Reply> {
        let request = Request::post(&format!("/api/commands/{kind}"), body.to_string())
            .bearer(token)
            .json();
        request.send(self.addr).await
    }

    /// `GET /api/commands/{request_id}`.
    pub async fn status(&self, request_id: &str, token: &str) -> anyhow::Result<Reply> {
        Request::get(&format!("/api/commands/{request_id}"))
            .bearer(token)
            .send(self.addr)
            .await
    }
}

/// An HTTP/1.1 request (one per connection).
#[derive(Debug, Clone)]
pub struct Request {
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_str(&self.body)
            .with_context(|| format!("status {} body is not JSON: {:?}", self.status, self.body))
    }
}

impl Request {
    pub fn post(path: &str, body: impl Into<String>) -> Request {
        Request {
            method: "POST",
            path: path.into(),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn get(path: &str) -> Request {
        Request {
            method: "GET",
            path: path.into(),
            headers: Vec::new(),
            body: String::new(),
        }
    }

    /// The same request with another method (e.g. `OPTIONS` for a CORS preflight).
    pub fn with_method(mut self, method: &'static str) -> Request {
        self.method = method;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn bearer(self, token: &str) -> Request {
        self.header("Authorization", &format!("Bearer {token}"))
    }

    pub fn json(self) -> Request {
        self.header("Content-Type", "application/json")
    }

    /// Sends the request and reads the whole response, within [`REQUEST_TIMEOUT`].
    pub async fn send(&self, addr: SocketAddr) -> anyhow::Result<Reply> {
        let what = format!("{} {}", self.method, self.path);
        match tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(addr)).await {
            Ok(reply) => reply.with_context(|| what.clone()),
            Err(_) => bail!("timed out after {REQUEST_TIMEOUT:?}: {what}"),
        }
    }

    async fn exchange(&self, addr: SocketAddr) -> anyhow::Result<Reply> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.method,
            self.path,
            self.body.len()
        );
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(self.body.as_bytes()).await?;
        let mut raw = Vec::new();
        // The server may close early (e.g. an oversize body); read what it answered.
        let _ = stream.read_to_end(&mut raw).await;
        parse_reply(&raw)
    }
}

/// Parses one raw HTTP/1.1 response (head and body, chunked or not).
fn parse_reply(raw: &[u8]) -> anyhow::Result<Reply> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("no complete response head in {text:?}"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line in {head:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok(Reply {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// A `send-message` POST on its own task, so a test can go on while it waits for the answer.
pub fn post_in_background(
    addr: SocketAddr,
    token: &str,
    channel: &str,
) -> tokio::task::JoinHandle<anyhow::Result<Reply>> {
    let request = Request::post(
        "/api/commands/send-message",
        serde_json::json!({"channelId": channel, "content": "before shutdown"}).to_string(),
    )
    .bearer(token)
    .json();
    tokio::spawn(async move { request.send(addr).await })
}
