//! Link protocol v1 wire types (see `docs/link-protocol.md`).
//!
//! Why a crate of its own: the host and the simulator must agree byte for byte on the
//! frames, and a shared type is the cheapest way to keep them agreeing. Every frame is a
//! JSON text frame carrying `"v":1` and an `"op"`.
//!
//! Decoding is two-staged on purpose: a tiny [`Head`] (`v`, `op`) is read first, then the
//! body type picked by `op`. This keeps an event's `d` payload as raw JSON
//! ([`RawValue`]) all the way to the bus (serde's tagged enums cannot carry raw values),
//! and it lets a receiver tell "unknown op" (skip, count) from "broken frame" (skip,
//! count as malformed) without guessing.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
pub use serde_json::value::RawValue;

mod command;
mod frames;

pub use command::{AddReaction, Command, CommandBody, CommandKind, SendMessage, TypingStart};
pub use frames::{Ack, AckError, ErrorCode, Event, Hello, Ping, Pong, Resume};

/// The protocol version this crate speaks; every frame carries it as `"v"`.
pub const VERSION: u8 = 1;

/// Path of the WebSocket endpoint on the upstream.
pub const LINK_PATH: &str = "/link";

/// The fields every frame has, read before the body.
#[derive(Debug, Deserialize)]
pub struct Head<'a> {
    /// Protocol version.
    pub v: u8,
    /// Frame kind.
    #[serde(borrow)]
    pub op: Cow<'a, str>,
}

/// A frame sent by the upstream to the host.
#[derive(Debug)]
pub enum UpstreamFrame {
    /// Session announcement after the host's `resume`.
    Hello(Hello),
    /// One Discord dispatch.
    Event(Event),
    /// The outcome of one command.
    Ack(Ack),
    /// Answer to a `ping`.
    Pong(Pong),
}

/// A frame sent by the host to the upstream.
#[derive(Debug)]
pub enum HostFrame {
    /// A command for Discord.
    Command(Command),
    /// Liveness probe / RTT measurement.
    Ping(Ping),
    /// First frame of every connection: start or resume a session.
    Resume(Resume),
}

/// Why a text frame could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, not an object, or a body that does not match its `op`.
    #[error("malformed frame: {0}")]
    Malformed(#[from] serde_json::Error),
    /// A `v` other than [`VERSION`].
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// A well-formed frame whose `op` this version does not know (skip it).
    #[error("unknown op {0:?}")]
    UnknownOp(String),
}

impl DecodeError {
    /// True for [`DecodeError::UnknownOp`], which receivers skip without counting it
    /// as malformed.
    pub fn is_unknown_op(&self) -> bool {
        matches!(self, DecodeError::UnknownOp(_))
    }
}

/// Serialises `body` as a frame with the given `op`.
fn encode<T: Serialize>(op: &'static str, body: &T) -> String {
    #[derive(Serialize)]
    struct Out<'a, T> {
        v: u8,
        op: &'static str,
        #[serde(flatten)]
        body: &'a T,
    }
    // Serialising our own plain structs into a String cannot fail.
    serde_json::to_string(&Out {
        v: VERSION,
        op,
        body,
    })
    .unwrap_or_default()
}

/// Reads the head of a frame and checks its version.
fn head(text: &str) -> Result<Head<'_>, DecodeError> {
    let head: Head<'_> = serde_json::from_str(text)?;
    if head.v != VERSION {
        return Err(DecodeError::UnsupportedVersion(head.v));
    }
    Ok(head)
}

impl UpstreamFrame {
    /// Decodes a text frame received by the host.
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        let head = head(text)?;
        Ok(match head.op.as_ref() {
            "hello" => Self::Hello(serde_json::from_str(text)?),
            "event" => Self::Event(serde_json::from_str(text)?),
            "ack" => Self::Ack(serde_json::from_str(text)?),
            "pong" => Self::Pong(serde_json::from_str(text)?),
            other => return Err(DecodeError::UnknownOp(other.to_owned())),
        })
    }

    /// Encodes the frame as JSON text.
    pub fn encode(&self) -> String {
        match self {
            Self::Hello(b) => encode("hello", b),
            Self::Event(b) => encode("event", b),
            Self::Ack(b) => encode("ack", b),
            Self::Pong(b) => encode("pong", b),
        }
    }
}

impl HostFrame {
    /// Decodes a text frame received by the upstream.
    pub fn decode(text: &str) -> Result<Self, DecodeError> {
        let head = head(text)?;
        Ok(match head.op.as_ref() {
            "command" => Self::Command(serde_json::from_str(text)?),
            "ping" => Self::Ping(serde_json::from_str(text)?),
            "resume" => Self::Resume(serde_json::from_str(text)?),
            other => return Err(DecodeError::UnknownOp(other.to_owned())),
        })
    }

    /// Encodes the frame as JSON text.
    pub fn encode(&self) -> String {
        match self {
            Self::Command(b) => encode("command", b),
            Self::Ping(b) => encode("ping", b),
            Self::Resume(b) => encode("resume", b),
        }
    }
}

#[cfg(test)]
mod tests;
