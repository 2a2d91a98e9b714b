//! One legacy client: hello, then join/leave/ping from the client, relayed frames from its
//! queue, and a WebSocket ping every heartbeat.
//!
//! Every wait is bounded: a write that stalls longer than [`WRITE_TIMEOUT`] ends the
//! connection, and a client that answers no ping for two heartbeats is closed, so a vanished
//! client costs a bounded time and its queue, never more.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, close_code};
use tokio::time::{Instant, MissedTickBehavior, interval_at, timeout};

use super::LegacyBridge;
use super::protocol::{BadFrame, ClientFrame, HostFrame, VERSION};
use super::registry::{ClientQueue, JoinError};
use crate::auth::Claims;

/// Longest a single write may take before the client counts as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the connection ended (for the log).
#[derive(Debug)]
enum End {
    ClientClosed,
    TooSlow,
    NoPong,
    WriteStalled,
    Protocol(&'static str),
}

/// Serve one upgraded socket until it ends.
pub async fn serve(mut socket: WebSocket, claims: Claims, bridge: LegacyBridge) {
    // Registered only once upgraded, so an upgrade that never completes leaves nothing behind.
    let Some(queue) = bridge.registry.register() else {
        let frame = Message::Close(Some(CloseFrame {
            code: close_code::AGAIN,
            reason: "the legacy voice bridge is at its client cap".into(),
        }));
        let _ = timeout(WRITE_TIMEOUT, socket.send(frame)).await;
        return;
    };
    let id = queue.id;
    let end = run(&mut socket, &claims, &bridge, queue).await;
    bridge.registry.remove(id);
    let close = match &end {
        End::TooSlow => Some((close_code::POLICY, "too slow")),
        End::NoPong => Some((close_code::AWAY, "no pong")),
        End::Protocol(why) => Some((close_code::UNSUPPORTED, *why)),
        End::ClientClosed | End::WriteStalled => None,
    };
    if let Some((code, reason)) = close {
        let frame = Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }));
        let _ = timeout(WRITE_TIMEOUT, socket.send(frame)).await;
    }
    tracing::debug!(user = %claims.sub, ?end, "legacy voice client closed");
}

async fn run(
    socket: &mut WebSocket,
    claims: &Claims,
    bridge: &LegacyBridge,
    mut queue: ClientQueue,
) -> End {
    let period = Duration::from_millis(bridge.settings.heartbeat_ms.max(10));
    let hello = HostFrame::Hello {
        v: VERSION,
        user: &claims.sub,
        heartbeat_ms: period.as_millis() as u64,
        protocol: VERSION,
    };
    if send(socket, hello.encode().into()).await.is_err() {
        return End::WriteStalled;
    }
    let mut heartbeat = interval_at(Instant::now() + period, period);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_pong = Instant::now();
    loop {
        let step = tokio::select! {
            msg = socket.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return End::ClientClosed,
                Some(Ok(Message::Pong(_))) => { last_pong = Instant::now(); Ok(()) }
                Some(Ok(Message::Ping(_))) => Ok(()),
                Some(Ok(Message::Binary(_))) => return End::Protocol("binary frames are not part of protocol v1"),
                Some(Ok(Message::Text(text))) => on_text(socket, claims, bridge, queue.id, &text).await,
            },
            frame = queue.rx.recv() => match frame {
                Some(frame) => send(socket, frame).await,
                None if queue.too_slow.load(Ordering::Relaxed) => return End::TooSlow,
                None => return End::ClientClosed,
            },
            _ = heartbeat.tick() => {
                if last_pong.elapsed() > period * 2 + period / 2 {
                    return End::NoPong;
                }
                match timeout(WRITE_TIMEOUT, socket.send(Message::Ping(Default::default()))).await {
                    Ok(Ok(())) => Ok(()),
                    _ => Err(()),
                }
            }
        };
        if step.is_err() {
            return End::WriteStalled;
        }
    }
}

async fn on_text(
    socket: &mut WebSocket,
    claims: &Claims,
    bridge: &LegacyBridge,
    id: u64,
    text: &str,
) -> Result<(), ()> {
    let reply = match ClientFrame::parse(text) {
        Err(BadFrame { code, message }) => error(code, &message, None),
        Ok(ClientFrame::Ping { nonce, .. }) => HostFrame::Pong {
            v: VERSION,
            nonce: nonce.as_deref(),
        }
        .encode(),
        Ok(ClientFrame::Leave { guild_id, .. }) => {
            bridge.registry.leave(id, &guild_id);
            HostFrame::Left {
                v: VERSION,
                guild_id: &guild_id,
            }
            .encode()
        }
        Ok(ClientFrame::Join { guild_id, .. }) => join(claims, bridge, id, &guild_id),
    };
    send(socket, reply.into()).await
}

fn join(claims: &Claims, bridge: &LegacyBridge, id: u64, guild: &str) -> String {
    let granted = claims.allows_topic(&format!("voice:{guild}"))
        || claims.allows_topic(&format!("guild:{guild}"));
    if !granted {
        return error(
            "forbidden_guild",
            "the token grants neither voice:<guild> nor guild:<guild>",
            Some(guild),
        );
    }
    match bridge.registry.join(id, guild) {
        Ok(()) => HostFrame::Joined {
            v: VERSION,
            guild_id: guild,
        }
        .encode(),
        Err(JoinError::TooManyGuilds) => error(
            "too_many_guilds",
            &format!(
                "a client may join at most {} guilds",
                bridge.settings.max_guilds
            ),
            Some(guild),
        ),
        Err(JoinError::Gone) => error("gone", "the connection is closing", Some(guild)),
    }
}

fn error(code: &str, message: &str, guild: Option<&str>) -> String {
    HostFrame::Error {
        v: VERSION,
        code,
        message,
        guild_id: guild,
    }
    .encode()
}

async fn send(socket: &mut WebSocket, text: Utf8Bytes) -> Result<(), ()> {
    match timeout(WRITE_TIMEOUT, socket.send(Message::Text(text))).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}
