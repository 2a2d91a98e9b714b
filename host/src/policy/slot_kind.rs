//! The four policy slots and their failure policies.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A policy slot: one world of `gateway:policy@1.0.0`, one live component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SlotKind {
    /// `event-router`: where each upstream event goes.
    EventRouter,
    /// `rate-limiter`: whether a command may pass now.
    RateLimiter,
    /// `command-validator`: whether a command is well-formed.
    CommandValidator,
    /// `voice-filter`: which events the legacy voice clients get.
    VoiceFilter,
}

impl SlotKind {
    /// Every slot, in a stable order.
    pub const ALL: [SlotKind; 4] = [
        SlotKind::EventRouter,
        SlotKind::RateLimiter,
        SlotKind::CommandValidator,
        SlotKind::VoiceFilter,
    ];

    /// The slot's name, which is also its world's name.
    pub fn as_str(self) -> &'static str {
        match self {
            SlotKind::EventRouter => "event-router",
            SlotKind::RateLimiter => "rate-limiter",
            SlotKind::CommandValidator => "command-validator",
            SlotKind::VoiceFilter => "voice-filter",
        }
    }

    /// What the host does when the component fails, unless configured otherwise: the router
    /// delivers on its default topics; limiter, validator and voice filter refuse.
    pub fn default_failure_policy(self) -> FailurePolicy {
        match self {
            SlotKind::EventRouter => FailurePolicy::FailOpen,
            _ => FailurePolicy::FailClosed,
        }
    }
}

impl fmt::Display for SlotKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown slot name.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown slot {0:?}: expected one of event-router, rate-limiter, command-validator, voice-filter"
)]
pub struct UnknownSlot(pub String);

impl FromStr for SlotKind {
    type Err = UnknownSlot;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SlotKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownSlot(s.to_string()))
    }
}

/// What a slot answers when its component traps, times out or runs out of memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailurePolicy {
    /// Let the event or command through (router: deliver on the default topics).
    FailOpen,
    /// Refuse (router: drop the event; limiter: deny; validator: reject; voice: reject).
    FailClosed,
    /// Ask the slot's previous version; if there is none or it fails too, fail closed.
    /// Safe for a redacting router whose previous version also redacts.
    FailPrevious,
}

impl FailurePolicy {
    /// The name used in configuration, metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            FailurePolicy::FailOpen => "fail-open",
            FailurePolicy::FailClosed => "fail-closed",
            FailurePolicy::FailPrevious => "fail-previous",
        }
    }
}
