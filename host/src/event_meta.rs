//! The ids of an upstream event, read once from its Discord payload, for the policy slots.
//!
//! Discord puts ids in a few places depending on the event: `guild_id`, `channel_id`,
//! `user_id`, `message_id` at the top level; the message id as `id` on MESSAGE_*; the user
//! as `author.id` (messages), `user.id` (presence, members) or `member.user.id`.

use serde::Deserialize;

use crate::bus::BusEvent;
use crate::policy::types::{Event, EventMeta};

#[derive(Deserialize, Default)]
struct Ids {
    guild_id: Option<String>,
    channel_id: Option<String>,
    user_id: Option<String>,
    message_id: Option<String>,
    id: Option<String>,
    author: Option<Id>,
    user: Option<Id>,
}

#[derive(Deserialize)]
struct Id {
    id: Option<String>,
}

/// The policy-facing view of `event` (the payload is copied as JSON text once).
pub fn policy_event(event: &BusEvent) -> Event {
    let ids: Ids = serde_json::from_str(event.d.get()).unwrap_or_default();
    let is_message = event.t.starts_with("MESSAGE_") && !event.t.starts_with("MESSAGE_REACTION");
    let message_id = ids.message_id.or(if is_message { ids.id } else { None });
    let user_id = ids
        .user_id
        .or(ids.author.and_then(|a| a.id))
        .or(ids.user.and_then(|u| u.id));
    Event {
        meta: EventMeta {
            name: event.t.clone(),
            seq: event.seq,
            guild_id: ids.guild_id,
            channel_id: ids.channel_id,
            user_id,
            message_id,
        },
        payload: event.d.get().to_string(),
    }
}
