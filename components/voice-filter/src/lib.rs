//! Default `voice-filter` component: what the legacy voice hooks consume.
//!
//! Relays, to the clients of the event's guild, the events the legacy voice hooks handle:
//! `VOICE_STATE_UPDATE` (a member joins, leaves, moves between or mutes in voice channels:
//! voice-channel membership), `VOICE_SERVER_UPDATE` (voice server handover),
//! `VOICE_CHANNEL_STATUS_UPDATE` and `VOICE_CHANNEL_EFFECT_SEND`. Everything else, and any
//! voice event without a guild id (there is no guild to relay it to), is rejected.
//!
//! Configuration (`init`), optional: `events`, a comma-separated list replacing the default.

// The canonical-ABI glue wit-bindgen generates takes one argument per flattened field.
#![allow(clippy::too_many_arguments)]

use std::sync::Mutex;

wit_bindgen::generate!({ world: "voice-filter", path: "../../wit" });

const DEFAULT_EVENTS: [&str; 4] = [
    "VOICE_STATE_UPDATE",
    "VOICE_SERVER_UPDATE",
    "VOICE_CHANNEL_STATUS_UPDATE",
    "VOICE_CHANNEL_EFFECT_SEND",
];

static EVENTS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn parse_config(config: &[(String, String)]) -> Result<Vec<String>, String> {
    let mut events: Vec<String> = DEFAULT_EVENTS.iter().map(|s| s.to_string()).collect();
    for (key, value) in config {
        match key.as_str() {
            "events" => {
                events = value
                    .split(',')
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(String::from)
                    .collect();
            }
            other => return Err(format!("unknown configuration key {other:?}")),
        }
    }
    Ok(events)
}

struct VoiceFilter;

impl Guest for VoiceFilter {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        let parsed = parse_config(&config)?;
        *EVENTS.lock().unwrap_or_else(|e| e.into_inner()) = parsed;
        Ok(())
    }

    fn filter(event: Event) -> VoiceVerdict {
        let events = EVENTS.lock().unwrap_or_else(|e| e.into_inner());
        match &event.meta.guild_id {
            Some(guild) if events.contains(&event.meta.name) => VoiceVerdict::Relay(guild.clone()),
            _ => VoiceVerdict::Reject,
        }
    }
}

export!(VoiceFilter);
