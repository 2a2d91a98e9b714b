//! Helpers for the policy tests: the hostile components built by `build.rs`,
//! request/event builders, and a blocking wait on a condition with a deadline.

use std::time::{Duration, Instant};

use gateway_host::policy::types::{CommandKind, Event, EventMeta, RateRequest};

/// The hostile rate limiter (see `tests/components/hostile-limiter`).
pub const HOSTILE_LIMITER: &[u8] = include_bytes!(env!("GATEWAY_TEST_HOSTILE_LIMITER_WASM"));
/// The hostile event router (see `tests/components/hostile-router`).
pub const HOSTILE_ROUTER: &[u8] = include_bytes!(env!("GATEWAY_TEST_HOSTILE_ROUTER_WASM"));
/// A limiter with its own config keys (`burst`, `refill-ms`).
pub const KEYED_LIMITER: &[u8] = include_bytes!(env!("GATEWAY_TEST_KEYED_LIMITER_WASM"));
/// A router that redacts message content and traps every `trap-every`th call.
pub const REDACTING_ROUTER: &[u8] = include_bytes!(env!("GATEWAY_TEST_REDACTING_ROUTER_WASM"));
/// Path of the router built against `gateway:policy@2.0.0`.
pub const WIT_V2_ROUTER_PATH: &str = env!("GATEWAY_TEST_WIT_V2_ROUTER_WASM");
/// Path of the router built against `gateway:policy@1.1.0`.
pub const WIT_V1_1_ROUTER_PATH: &str = env!("GATEWAY_TEST_WIT_V1_1_ROUTER_WASM");
/// The Rust example of `docs/components.md`, compiled.
pub const EXAMPLE_VOICE_FILTER: &[u8] =
    include_bytes!(env!("GATEWAY_TEST_EXAMPLE_VOICE_FILTER_WASM"));
/// Path of the keyed limiter (for the CLI and the components directory).
pub const KEYED_LIMITER_PATH: &str = env!("GATEWAY_TEST_KEYED_LIMITER_WASM");

/// Poll `condition` until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A send-message rate request.
pub fn rate_request(user: &str, channel: &str) -> RateRequest {
    RateRequest {
        user_id: user.into(),
        channel_id: channel.into(),
        kind: CommandKind::SendMessage,
    }
}

/// An event with the given ids and an empty JSON payload.
pub fn event(name: &str, guild: Option<&str>, channel: Option<&str>) -> Event {
    Event {
        meta: EventMeta {
            name: name.into(),
            seq: 1,
            guild_id: guild.map(Into::into),
            channel_id: channel.map(Into::into),
            user_id: None,
            message_id: None,
        },
        payload: "{}".into(),
    }
}

/// Policy settings for tests that are not about deadlines: a generous call deadline, so a
/// test thread descheduled on a loaded 2-core machine is not mistaken for a runaway
/// component.
pub fn relaxed_settings() -> gateway_host::policy::PolicySettings {
    let mut settings = gateway_host::policy::PolicySettings::default();
    settings.limits.call_timeout_ms = 2_000;
    settings
}

/// Relaxed runtime limits (see [`relaxed_settings`]).
pub fn relaxed_limits() -> gateway_host::policy::RuntimeLimits {
    relaxed_settings().limits
}
