//! The legacy voice bridge: `GET /api/ws` (WebSocket, protocol v1, `docs/legacy-ws.md`).
//!
//! Why it exists: the web app's voice-dropout feature speaks WebSocket, and it must keep
//! working while apps move to the SSE stream's `voice:<guild>` topics. It is off by default;
//! off, the route is not mounted (404) and nothing subscribes to the bus for it.
//!
//! * [`protocol`]: the frames, both directions.
//! * [`registry`]: which client joined which guild; relays a frame to a guild's clients.
//! * [`relay`]: the one bus subscriber: each event through the voice-filter slot once,
//!   serialized once, offered to the guild's clients' bounded queues.
//! * [`connection`]: one client socket: hello, join/leave, keepalive, its queue.
//! * [`route`]: the upgrade: auth (header, cookie or subprotocol), caps.

pub mod connection;
pub mod protocol;
pub mod registry;
pub mod relay;
pub mod route;

use std::sync::Arc;

use serde::Deserialize;

use crate::bus::Bus;
use crate::policy::Policies;

pub use registry::Registry;
pub use route::router;

/// `[legacy-ws]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct LegacySettings {
    /// Mount `/api/ws` and relay voice events (`GATEWAY_LEGACY_WS`).
    pub enabled: bool,
    /// Frames queued per client before it counts as too slow and is closed.
    pub client_queue: usize,
    /// WebSocket ping period, in milliseconds; two missed periods close the client.
    pub heartbeat_ms: u64,
    /// Guilds one client may join.
    pub max_guilds: usize,
    /// Concurrent legacy clients; beyond this, `503`.
    pub max_clients: usize,
}

impl Default for LegacySettings {
    fn default() -> Self {
        LegacySettings {
            enabled: false,
            client_queue: 256,
            heartbeat_ms: 30_000,
            max_guilds: 32,
            max_clients: 10_000,
        }
    }
}

/// A running bridge: its registry of clients and the relay task.
#[derive(Clone)]
pub struct LegacyBridge {
    pub registry: Arc<Registry>,
    pub settings: LegacySettings,
}

impl LegacyBridge {
    /// Subscribe to `bus` and start relaying (needs a tokio runtime).
    pub fn start(bus: &Bus, policies: Arc<Policies>, settings: LegacySettings) -> LegacyBridge {
        let registry = Arc::new(Registry::new(settings.clone()));
        relay::spawn(bus.clone(), policies, registry.clone());
        LegacyBridge { registry, settings }
    }
}
