//! Default `event-router` component: topics from the ids an event carries.
//!
//! For every event it returns, in this order:
//! * `guild:<guildId>` when the event has a guild id,
//! * `channel:<channelId>` when it has a channel id,
//! * `voice:<guildId>` for voice events (`VOICE_STATE_UPDATE`, `VOICE_SERVER_UPDATE`) in a guild.
//!
//! Events it does not know are routed the same way, by their ids: the router needs no list of
//! Discord event names to stay correct when Discord adds one. An event with neither a guild nor
//! a channel id (e.g. `PRESENCE_UPDATE` outside a guild) goes to the topic `global`, or is
//! dropped when `unrouted=drop`. The payload is passed through unchanged.
//!
//! Configuration (`init`), all optional:
//! * `drop-events`: comma-separated event names never delivered (e.g. `PRESENCE_UPDATE`).
//! * `unrouted`: `global` (default) or `drop`.

// The canonical-ABI glue wit-bindgen generates takes one argument per flattened field.
#![allow(clippy::too_many_arguments)]

use std::sync::Mutex;

use gateway::policy::types::Delivery;

wit_bindgen::generate!({ world: "event-router", path: "../../wit" });

struct Settings {
    drop_events: Vec<String>,
    drop_unrouted: bool,
}

static SETTINGS: Mutex<Settings> = Mutex::new(Settings {
    drop_events: Vec::new(),
    drop_unrouted: false,
});

const VOICE_EVENTS: [&str; 2] = ["VOICE_STATE_UPDATE", "VOICE_SERVER_UPDATE"];

fn parse_config(config: &[(String, String)]) -> Result<Settings, String> {
    let mut s = Settings {
        drop_events: Vec::new(),
        drop_unrouted: false,
    };
    for (key, value) in config {
        match key.as_str() {
            "drop-events" => {
                s.drop_events = value
                    .split(',')
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(String::from)
                    .collect();
            }
            "unrouted" => {
                s.drop_unrouted = match value.as_str() {
                    "global" => false,
                    "drop" => true,
                    other => {
                        return Err(format!("unrouted: expected global or drop, got {other:?}"));
                    }
                }
            }
            other => return Err(format!("unknown configuration key {other:?}")),
        }
    }
    Ok(s)
}

fn topics_for(event: &Event) -> Vec<String> {
    let meta = &event.meta;
    let mut topics = Vec::with_capacity(3);
    if let Some(guild) = &meta.guild_id {
        topics.push(format!("guild:{guild}"));
    }
    if let Some(channel) = &meta.channel_id {
        topics.push(format!("channel:{channel}"));
    }
    if let Some(guild) = &meta.guild_id
        && VOICE_EVENTS.contains(&meta.name.as_str())
    {
        topics.push(format!("voice:{guild}"));
    }
    topics
}

struct Router;

impl Guest for Router {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        let parsed = parse_config(&config)?;
        *SETTINGS.lock().unwrap_or_else(|e| e.into_inner()) = parsed;
        Ok(())
    }

    fn route(event: Event) -> Route {
        let settings = SETTINGS.lock().unwrap_or_else(|e| e.into_inner());
        if settings.drop_events.contains(&event.meta.name) {
            return Route::Drop;
        }
        let mut topics = topics_for(&event);
        if topics.is_empty() {
            if settings.drop_unrouted {
                return Route::Drop;
            }
            topics.push("global".to_string());
        }
        Route::Deliver(Delivery {
            topics,
            payload: None,
        })
    }
}

export!(Router);
