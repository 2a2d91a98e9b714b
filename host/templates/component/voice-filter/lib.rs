//! A `voice-filter` component: which events the legacy voice WebSocket clients receive.
//!
//! Relays `VOICE_STATE_UPDATE` and `VOICE_SERVER_UPDATE` to the clients of the event's
//! guild; rejects everything else, and voice events without a guild id (there is no guild
//! to relay them to).
//!
//! Configuration (`init`), optional; unknown keys are refused:
//! * `guilds`: comma-separated guild ids; when set, only these guilds are relayed.

// The canonical-ABI glue wit-bindgen generates takes one argument per flattened field.
#![allow(clippy::too_many_arguments)]

use std::sync::Mutex;

wit_bindgen::generate!({ world: "voice-filter", path: "wit" });

const VOICE_EVENTS: [&str; 2] = ["VOICE_STATE_UPDATE", "VOICE_SERVER_UPDATE"];

/// `None`: every guild.
static GUILDS: Mutex<Option<Vec<String>>> = Mutex::new(None);

fn parse_config(config: &[(String, String)]) -> Result<Option<Vec<String>>, String> {
    let mut guilds = None;
    for (key, value) in config {
        match key.as_str() {
            "guilds" => {
                guilds = Some(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                        .map(String::from)
                        .collect(),
                );
            }
            other => return Err(format!("unknown configuration key {other:?}")),
        }
    }
    Ok(guilds)
}

struct VoiceFilter;

impl Guest for VoiceFilter {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        let parsed = parse_config(&config)?;
        *GUILDS.lock().unwrap_or_else(|e| e.into_inner()) = parsed;
        Ok(())
    }

    fn filter(event: Event) -> VoiceVerdict {
        let guilds = GUILDS.lock().unwrap_or_else(|e| e.into_inner());
        match &event.meta.guild_id {
            Some(guild)
                if VOICE_EVENTS.contains(&event.meta.name.as_str())
                    && guilds.as_ref().is_none_or(|g| g.contains(guild)) =>
            {
                VoiceVerdict::Relay(guild.clone())
            }
            _ => VoiceVerdict::Reject,
        }
    }
}

export!(VoiceFilter);
