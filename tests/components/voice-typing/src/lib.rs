//! A `voice-filter` for the hot-swap test of the legacy bridge: relays what the default
//! filter relays (voice state and server updates) and also `TYPING_START`, to the event's
//! guild. Swapping it in must change what open legacy clients receive, without a reconnect.

// The canonical-ABI glue wit-bindgen generates takes one argument per flattened field.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({ world: "voice-filter", path: "../../../wit" });

const RELAYED: [&str; 3] = ["VOICE_STATE_UPDATE", "VOICE_SERVER_UPDATE", "TYPING_START"];

struct VoiceTyping;

impl Guest for VoiceTyping {
    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn filter(event: Event) -> VoiceVerdict {
        match &event.meta.guild_id {
            Some(guild) if RELAYED.contains(&event.meta.name.as_str()) => {
                VoiceVerdict::Relay(guild.clone())
            }
            _ => VoiceVerdict::Reject,
        }
    }
}

export!(VoiceTyping);
