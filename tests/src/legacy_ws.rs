//! A client of the legacy voice bridge (`/api/ws`, protocol v1) for the tests: connect with
//! a token, send frames, read JSON frames with a deadline.

use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// An open legacy client.
pub struct LegacyClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// How the token travels.
pub enum Auth<'a> {
    Header(&'a str),
    Subprotocol(&'a str),
}

/// Connect to `ws://addr/api/ws`; the first frame (`hello`) is read and returned.
pub async fn connect(addr: &str, auth: Auth<'_>) -> anyhow::Result<(LegacyClient, Value)> {
    let mut request = format!("ws://{addr}/api/ws").into_client_request()?;
    let (name, value) = match auth {
        Auth::Header(token) => ("authorization", format!("Bearer {token}")),
        Auth::Subprotocol(token) => (
            "sec-websocket-protocol",
            format!("gateway.v1, bearer.{token}"),
        ),
    };
    request.headers_mut().insert(name, value.parse()?);
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(request),
    )
    .await
    .context("connect timed out")??;
    let mut client = LegacyClient { ws };
    let hello = client.next(Duration::from_secs(10)).await?;
    Ok((client, hello))
}

impl LegacyClient {
    /// Send one JSON frame.
    pub async fn send(&mut self, frame: Value) -> anyhow::Result<()> {
        self.ws.send(Message::text(frame.to_string())).await?;
        Ok(())
    }

    /// `join` a guild and wait for `joined`.
    pub async fn join(&mut self, guild: &str) -> anyhow::Result<()> {
        self.send(json!({"v": 1, "op": "join", "guildId": guild}))
            .await?;
        let reply = self.next(Duration::from_secs(10)).await?;
        if reply["op"] != "joined" {
            bail!("join {guild}: {reply}");
        }
        Ok(())
    }

    /// The next JSON text frame (WebSocket pings are answered by the library).
    pub async fn next(&mut self, within: Duration) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .with_context(|| format!("no frame within {within:?}"))?;
            match msg {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(text.as_str()).context("frame is not JSON");
                }
                Some(Ok(Message::Close(frame))) => bail!("closed by the host: {frame:?}"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => bail!("socket error: {e}"),
                None => bail!("socket ended"),
            }
        }
    }
}
