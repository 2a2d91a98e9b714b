//! An `event-router` component: which topics each upstream event goes to.
//!
//! Topics, for every event:
//! * `guild:<guildId>` and `channel:<channelId>` when the event carries those ids;
//! * `user:<userId>` when it carries a user id (author, reactor, typer, member), unless
//!   `user-topics = "off"`;
//! * `global` when it carries none of them.
//!
//! Events named in `drop-events` are dropped (nobody receives them). The payload is passed
//! through unchanged (`payload: None`); return `Some(json)` to deliver a rewritten one.
//!
//! Configuration (`init`), all optional; unknown keys are refused:
//! * `drop-events`: comma-separated event names, e.g. `PRESENCE_UPDATE,TYPING_START`.
//! * `user-topics`: `on` (default) or `off`.

// The canonical-ABI glue wit-bindgen generates takes one argument per flattened field.
#![allow(clippy::too_many_arguments)]

use std::sync::Mutex;

use gateway::policy::types::Delivery;

wit_bindgen::generate!({ world: "event-router", path: "wit" });

struct Settings {
    drop_events: Vec<String>,
    user_topics: bool,
}

// One instance serves one call at a time; `init` runs once per instance, before any call.
static SETTINGS: Mutex<Settings> = Mutex::new(Settings {
    drop_events: Vec::new(),
    user_topics: true,
});

fn parse_config(config: &[(String, String)]) -> Result<Settings, String> {
    let mut s = Settings {
        drop_events: Vec::new(),
        user_topics: true,
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
            "user-topics" => {
                s.user_topics = match value.as_str() {
                    "on" => true,
                    "off" => false,
                    other => return Err(format!("user-topics: expected on or off, got {other:?}")),
                }
            }
            other => return Err(format!("unknown configuration key {other:?}")),
        }
    }
    Ok(s)
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
        let meta = &event.meta;
        if settings.drop_events.contains(&meta.name) {
            return Route::Drop;
        }
        let mut topics = Vec::with_capacity(3);
        if let Some(guild) = &meta.guild_id {
            topics.push(format!("guild:{guild}"));
        }
        if let Some(channel) = &meta.channel_id {
            topics.push(format!("channel:{channel}"));
        }
        if settings.user_topics
            && let Some(user) = &meta.user_id
        {
            topics.push(format!("user:{user}"));
        }
        if topics.is_empty() {
            topics.push("global".to_string());
        }
        Route::Deliver(Delivery {
            topics,
            payload: None,
        })
    }
}

export!(Router);
