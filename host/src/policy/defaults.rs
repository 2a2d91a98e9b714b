//! The default components, built from `components/` by `host/build.rs` and embedded in the
//! binary, so the host needs no files to start.

use super::slot_kind::SlotKind;

/// The embedded default component for `kind`.
pub fn default_component(kind: SlotKind) -> &'static [u8] {
    match kind {
        SlotKind::EventRouter => include_bytes!(env!("GATEWAY_DEFAULT_EVENT_ROUTER_WASM")),
        SlotKind::RateLimiter => include_bytes!(env!("GATEWAY_DEFAULT_RATE_LIMITER_WASM")),
        SlotKind::CommandValidator => {
            include_bytes!(env!("GATEWAY_DEFAULT_COMMAND_VALIDATOR_WASM"))
        }
        SlotKind::VoiceFilter => include_bytes!(env!("GATEWAY_DEFAULT_VOICE_FILTER_WASM")),
    }
}
