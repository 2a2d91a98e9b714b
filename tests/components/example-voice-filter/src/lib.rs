//! The Rust example of `docs/components.md` ("Building one in Rust"), verbatim between the
//! markers: the test suite builds it, loads it into the `voice-filter` slot, and checks the
//! page still shows exactly this code.

// The canonical-ABI glue wit-bindgen generates takes one argument per flattened field.
#![allow(clippy::too_many_arguments)]

// --- example start ---
// `generate!` brings the world's types (`Event`, `VoiceVerdict`, …) into scope itself:
// importing them again from `gateway::policy::types` is the E0255 "defined multiple times".
wit_bindgen::generate!({ world: "voice-filter", path: "../../../wit" });

struct Mine;

impl Guest for Mine {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        match config.first() {
            None => Ok(()),
            Some((key, _)) => Err(format!("unknown config key {key:?}")),
        }
    }

    fn filter(event: Event) -> VoiceVerdict {
        match (event.meta.name.as_str(), event.meta.guild_id) {
            ("VOICE_STATE_UPDATE", Some(guild)) => VoiceVerdict::Relay(guild),
            _ => VoiceVerdict::Reject,
        }
    }
}

export!(Mine);
// --- example end ---
