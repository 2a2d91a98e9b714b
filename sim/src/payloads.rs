//! Realistic Discord API v10 dispatch payloads.
//!
//! The host and its policy components parse these payloads (guild and channel ids for
//! routing, voice states for the legacy bridge), so the simulator emits the real shapes
//! with real snowflakes rather than placeholders. A small fixed world (guilds, channels,
//! users) keeps topics meaningful across events.

use std::time::{SystemTime, UNIX_EPOCH};

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};

use crate::voice::{Presence, VoiceAction, VoiceRooms};

/// First second of 2015, Discord's snowflake epoch, in ms since the Unix epoch.
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A Discord snowflake for a creation time and a per-process increment.
fn snowflake(ms: u64, increment: u64) -> u64 {
    ((ms.saturating_sub(DISCORD_EPOCH_MS)) << 22) | (1 << 17) | (increment & 0xfff)
}

/// `YYYY-MM-DDTHH:MM:SS.mmm+00:00` for ms since the epoch (Discord's ISO8601 format).
pub fn iso8601(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}+00:00",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        ms % 1000
    )
}

/// Days since 1970-01-01 to a civil date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A guild of the simulated world.
#[derive(Debug, Clone)]
pub struct Guild {
    /// Guild snowflake.
    pub id: String,
    /// Text channel snowflakes.
    pub text_channels: Vec<String>,
    /// Voice channel snowflake.
    pub voice_channel: String,
}

/// A user of the simulated world.
#[derive(Debug, Clone)]
pub struct User {
    /// User snowflake.
    pub id: String,
    /// Login name.
    pub username: String,
}

/// The fixed world events happen in, plus the generator state.
pub struct World {
    /// Guilds, each with channels.
    pub guilds: Vec<Guild>,
    /// Users who talk in every guild.
    pub users: Vec<User>,
    rng: StdRng,
    increment: u64,
    recent_messages: Vec<(String, String, String)>,
    voice: VoiceRooms,
}

const NAMES: [&str; 5] = ["ada", "grace", "linus", "margaret", "ken"];
const LINES: [&str; 6] = [
    "hello there",
    "anyone up for a raid tonight?",
    "gg",
    "the build is green again",
    "brb, coffee",
    "who broke the voice channel",
];
const EMOJIS: [&str; 4] = ["👍", "🎉", "🔥", "😂"];

impl World {
    /// A world of 3 guilds × 3 text channels (+1 voice) and 5 users, seeded.
    pub fn new(seed: u64) -> Self {
        let base = DISCORD_EPOCH_MS + 250_000_000_000;
        let mut n = 0u64;
        let mut next = || {
            n += 1;
            snowflake(base + n * 86_400_000, n).to_string()
        };
        let guilds = (0..3)
            .map(|_| Guild {
                id: next(),
                text_channels: (0..3).map(|_| next()).collect(),
                voice_channel: next(),
            })
            .collect();
        let users = NAMES
            .iter()
            .map(|name| User {
                id: next(),
                username: (*name).to_owned(),
            })
            .collect();
        Self {
            guilds,
            users,
            rng: StdRng::seed_from_u64(seed),
            increment: 0,
            recent_messages: Vec::new(),
            voice: VoiceRooms::default(),
        }
    }

    /// A fresh snowflake for "now".
    pub fn next_id(&mut self) -> String {
        self.increment += 1;
        snowflake(now_ms(), self.increment).to_string()
    }

    /// A random hex id (trace ids, session ids).
    pub fn hex_id(&mut self) -> String {
        format!("{:016x}", self.rng.random::<u64>())
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.rng.random_range(0..items.len())].clone()
    }

    /// A VOICE_STATE_UPDATE for member `user` of guild `guild` (indexes into the world)
    /// doing `action`; a dropout comes back by itself 3 to 8 events later.
    pub fn voice_event(
        &mut self,
        guild: usize,
        user: usize,
        action: VoiceAction,
    ) -> (&'static str, Value) {
        let guild = guild % self.guilds.len();
        let user = user % self.users.len();
        let rejoin_after = self.rng.random_range(3..=8);
        let session = self.hex_id();
        // A leave still names the voice session it ends, as Discord's does.
        let ending = self.voice.presence(guild, user).cloned();
        let presence = self
            .voice
            .apply(guild, user, action, || session, rejoin_after);
        let g = &self.guilds[guild];
        let channel = presence.as_ref().map(|_| g.voice_channel.as_str());
        let state = presence.as_ref().or(ending.as_ref());
        (
            "VOICE_STATE_UPDATE",
            voice_state(&g.id, channel, &self.users[user], state),
        )
    }

    /// The guild owning a channel, if the channel is one of ours.
    pub fn guild_of(&self, channel_id: &str) -> Option<&Guild> {
        self.guilds.iter().find(|g| {
            g.text_channels.iter().any(|c| c == channel_id) || g.voice_channel == channel_id
        })
    }

    /// A random dispatch: `(t, d)`, weighted roughly like a busy community server.
    pub fn random_event(&mut self) -> (&'static str, Value) {
        if let Some((g, u)) = self.voice.due_rejoin() {
            return self.voice_event(g, u, VoiceAction::Join);
        }
        let roll = self.rng.random_range(0..100u32);
        let guild = self.pick(&self.guilds.clone());
        let channel = self.pick(&guild.text_channels);
        let user = self.pick(&self.users.clone());
        match roll {
            0..40 => {
                let content = self.pick(&LINES).to_owned();
                (
                    "MESSAGE_CREATE",
                    self.message(&guild.id, &channel, &user, &content, None),
                )
            }
            40..55 => ("TYPING_START", typing(&guild.id, &channel, &user)),
            55..65 => self.reaction("MESSAGE_REACTION_ADD", &guild.id, &user),
            65..68 => self.reaction("MESSAGE_REACTION_REMOVE", &guild.id, &user),
            68..75 => self.message_update(&guild.id, &channel, &user),
            75..80 => self.message_delete(&guild.id, &channel),
            80..88 => {
                let g = self.rng.random_range(0..self.guilds.len());
                let u = self.rng.random_range(0..self.users.len());
                let action = self.voice.choose(g, u, self.rng.random_range(0..100));
                self.voice_event(g, u, action)
            }
            88..90 => {
                let token = self.hex_id();
                (
                    "VOICE_SERVER_UPDATE",
                    json!({"token": token, "guild_id": guild.id, "endpoint": "sim-voice.discord.media:443"}),
                )
            }
            90..93 => ("GUILD_MEMBER_ADD", member_add(&guild.id, &user)),
            _ => {
                let status = self.pick(&["online", "idle", "dnd"]);
                (
                    "PRESENCE_UPDATE",
                    json!({"user": {"id": user.id}, "guild_id": guild.id, "status": status, "activities": [], "client_status": {"desktop": status}}),
                )
            }
        }
    }

    /// A MESSAGE_CREATE payload; remembered so reactions and edits target real messages.
    pub fn message(
        &mut self,
        guild_id: &str,
        channel: &str,
        user: &User,
        content: &str,
        nonce: Option<&str>,
    ) -> Value {
        let id = self.next_id();
        self.recent_messages
            .push((id.clone(), channel.to_owned(), user.id.clone()));
        if self.recent_messages.len() > 64 {
            self.recent_messages.remove(0);
        }
        let mut d = json!({
            "id": id, "channel_id": channel, "guild_id": guild_id,
            "author": author(user), "member": member(),
            "content": content, "timestamp": iso8601(now_ms()), "edited_timestamp": null,
            "tts": false, "mention_everyone": false, "mentions": [], "mention_roles": [],
            "attachments": [], "embeds": [], "pinned": false, "type": 0, "flags": 0,
        });
        if let (Some(nonce), Some(obj)) = (nonce, d.as_object_mut()) {
            obj.insert("nonce".into(), json!(nonce));
        }
        d
    }

    fn some_message(&mut self, guild_id: &str) -> (String, String, String) {
        if let Some(m) = self.recent_messages.last().cloned() {
            return m;
        }
        let guild = self.guilds.iter().find(|g| g.id == guild_id).cloned();
        let channel = guild
            .map(|g| g.text_channels[0].clone())
            .unwrap_or_default();
        (self.next_id(), channel, self.users[0].id.clone())
    }

    fn reaction(&mut self, t: &'static str, guild_id: &str, user: &User) -> (&'static str, Value) {
        let (message_id, channel, author_id) = self.some_message(guild_id);
        let emoji = self.pick(&EMOJIS);
        let mut d = json!({
            "user_id": user.id, "channel_id": channel, "message_id": message_id,
            "guild_id": guild_id, "emoji": {"id": null, "name": emoji}, "burst": false, "type": 0,
        });
        if let (true, Some(obj)) = (t == "MESSAGE_REACTION_ADD", d.as_object_mut()) {
            obj.insert("member".into(), member());
            obj.insert("message_author_id".into(), json!(author_id));
        }
        (t, d)
    }

    /// The MESSAGE_REACTION_ADD that follows an accepted add-reaction.
    pub fn reaction_add(
        &mut self,
        channel: &str,
        message_id: &str,
        emoji: &str,
        bot: &User,
    ) -> Value {
        let guild_id = self.guild_of(channel).map(|g| g.id.clone());
        let (name, id) = match emoji.split_once(':') {
            Some((name, id)) => (name.to_owned(), json!(id)),
            None => (emoji.to_owned(), Value::Null),
        };
        json!({
            "user_id": bot.id, "channel_id": channel, "message_id": message_id, "guild_id": guild_id,
            "member": member(), "emoji": {"id": id, "name": name}, "burst": false, "type": 0,
        })
    }

    fn message_update(
        &mut self,
        guild_id: &str,
        channel: &str,
        user: &User,
    ) -> (&'static str, Value) {
        let content = format!("{} (edited)", self.pick(&LINES));
        let mut d = self.message(guild_id, channel, user, &content, None);
        if let Some(obj) = d.as_object_mut() {
            obj.insert("edited_timestamp".into(), json!(iso8601(now_ms())));
        }
        ("MESSAGE_UPDATE", d)
    }

    fn message_delete(&mut self, guild_id: &str, channel: &str) -> (&'static str, Value) {
        let id = self.next_id();
        (
            "MESSAGE_DELETE",
            json!({"id": id, "channel_id": channel, "guild_id": guild_id}),
        )
    }
}

fn author(user: &User) -> Value {
    json!({"id": user.id, "username": user.username, "global_name": user.username,
           "discriminator": "0", "avatar": null, "bot": false})
}

fn member() -> Value {
    json!({"roles": [], "joined_at": iso8601(DISCORD_EPOCH_MS + 300_000_000_000),
           "nick": null, "deaf": false, "mute": false, "flags": 0})
}

/// A TYPING_START payload.
pub fn typing(guild_id: &str, channel: &str, user: &User) -> Value {
    let mut m = member();
    if let Some(obj) = m.as_object_mut() {
        obj.insert("user".into(), author(user));
    }
    json!({"channel_id": channel, "guild_id": guild_id, "user_id": user.id,
           "timestamp": now_ms() / 1000, "member": m})
}

fn voice_state(guild_id: &str, channel: Option<&str>, user: &User, p: Option<&Presence>) -> Value {
    let mut m = member();
    if let Some(obj) = m.as_object_mut() {
        obj.insert("user".into(), author(user));
    }
    let (session, self_mute, self_deaf) = match (p, channel) {
        (Some(p), Some(_)) => (p.session.as_str(), p.self_mute, p.self_deaf),
        (Some(p), None) => (p.session.as_str(), false, false),
        (None, _) => ("", false, false),
    };
    json!({"guild_id": guild_id, "channel_id": channel, "user_id": user.id, "member": m,
           "session_id": session, "deaf": false, "mute": false, "self_deaf": self_deaf,
           "self_mute": self_mute, "self_video": false, "self_stream": false, "suppress": false,
           "request_to_speak_timestamp": null})
}

fn member_add(guild_id: &str, user: &User) -> Value {
    json!({"guild_id": guild_id, "user": author(user), "nick": null, "roles": [],
           "joined_at": iso8601(now_ms()), "deaf": false, "mute": false, "flags": 0,
           "pending": false})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_formats_known_instant() {
        assert_eq!(iso8601(1_700_000_000_123), "2023-11-14T22:13:20.123+00:00");
    }

    #[test]
    fn snowflakes_encode_their_time() {
        let id = snowflake(DISCORD_EPOCH_MS + 1000, 5);
        assert_eq!(id >> 22, 1000);
    }

    #[test]
    fn random_events_carry_guild_ids() {
        let mut world = World::new(7);
        for _ in 0..200 {
            let (t, d) = world.random_event();
            let guild = d.get("guild_id").and_then(Value::as_str);
            assert!(guild.is_some(), "{t} has no guild_id");
        }
    }

    #[test]
    fn voice_states_tell_joins_leaves_mutes_and_dropouts() {
        let mut world = World::new(7);
        let mut inside: std::collections::HashMap<(String, String), usize> = Default::default();
        let (mut joins, mut leaves, mut mutes, mut quick_rejoins) = (0, 0, 0, 0);
        let mut left_at: std::collections::HashMap<(String, String), usize> = Default::default();
        for n in 0..5_000 {
            let (t, d) = world.random_event();
            if t != "VOICE_STATE_UPDATE" {
                continue;
            }
            let key = (d["guild_id"].to_string(), d["user_id"].to_string());
            assert!(d["session_id"].as_str().is_some_and(|s| !s.is_empty()));
            match (d["channel_id"].is_null(), inside.contains_key(&key)) {
                (false, false) => {
                    joins += 1;
                    if left_at.get(&key).is_some_and(|at| n - at <= 9) {
                        quick_rejoins += 1;
                    }
                    inside.insert(key, n);
                }
                (false, true) => mutes += 1,
                (true, true) => {
                    leaves += 1;
                    inside.remove(&key);
                    left_at.insert(key, n);
                }
                (true, false) => panic!("a leave of someone who was not in the channel: {d}"),
            }
        }
        assert!(
            joins > 20 && leaves > 10 && mutes > 10,
            "{joins} {leaves} {mutes}"
        );
        assert!(
            quick_rejoins > 3,
            "dropouts come back soon: {quick_rejoins}"
        );
    }
}
