//! An `event-router` that redacts: every `MESSAGE_CREATE` payload's `content` becomes
//! `"[redacted]"` (and the payload gets `"redactedBy": <tag>`). It also traps on every Nth
//! call of an instance, so the test suite can show what each failure policy does with the
//! original payload when a redacting router fails.
//!
//! Configuration (`init`), all optional:
//! * `trap-every`: trap on every Nth call (0: never), default 5.
//! * `tag`: the `redactedBy` value, default `"redacting-router"`.
//!
//! Other keys are refused. Topics are the default ones: `guild:<id>`, `channel:<id>`, or
//! `global` when the event has neither.

// The canonical-ABI glue wit-bindgen generates takes one argument per flattened field.
#![allow(clippy::too_many_arguments)]

use std::sync::Mutex;

use gateway::policy::types::Delivery;

wit_bindgen::generate!({ world: "event-router", path: "../../../wit" });

struct State {
    trap_every: u64,
    tag: String,
    calls: u64,
}

static STATE: Mutex<State> = Mutex::new(State {
    trap_every: 5,
    tag: String::new(),
    calls: 0,
});

struct Redacting;

impl Guest for Redacting {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
        state.tag = "redacting-router".into();
        for (key, value) in config {
            match key.as_str() {
                "trap-every" => {
                    state.trap_every = value
                        .trim()
                        .parse()
                        .map_err(|_| format!("trap-every: expected an integer, got {value:?}"))?
                }
                "tag" => state.tag = value,
                other => return Err(format!("unknown config key {other:?}")),
            }
        }
        Ok(())
    }

    fn route(event: Event) -> Route {
        let tag = {
            let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
            state.calls += 1;
            if state.trap_every > 0 && state.calls.is_multiple_of(state.trap_every) {
                drop(state);
                panic!("redacting-router: planned trap");
            }
            state.tag.clone()
        };
        let mut topics = Vec::new();
        if let Some(g) = &event.meta.guild_id {
            topics.push(format!("guild:{g}"));
        }
        if let Some(c) = &event.meta.channel_id {
            topics.push(format!("channel:{c}"));
        }
        if topics.is_empty() {
            topics.push("global".into());
        }
        let payload = if event.meta.name == "MESSAGE_CREATE" {
            let mut value: serde_json::Value =
                serde_json::from_str(&event.payload).unwrap_or(serde_json::Value::Null);
            match value.as_object_mut() {
                Some(object) => {
                    object.insert("content".into(), "[redacted]".into());
                    object.insert("redactedBy".into(), tag.into());
                    Some(value.to_string())
                }
                // Not an object: say nothing of it rather than pass it on.
                None => Some(serde_json::json!({ "redactedBy": tag }).to_string()),
            }
        } else {
            None
        };
        Route::Deliver(Delivery { topics, payload })
    }
}

export!(Redacting);
