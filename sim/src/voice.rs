//! Who is in which voice channel of the simulated world, so voice events tell a story.
//!
//! Random `VOICE_STATE_UPDATE`s that ignore state (a leave of someone who never joined) are
//! useless to a voice client. Here a member joins, toggles mute/deaf, leaves cleanly, or
//! drops out: a leave followed, a few events later, by a rejoin with a new voice session,
//! which is what a connection drop looks like from the gateway.

use std::collections::{HashMap, VecDeque};

/// One member's voice state in one guild.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    pub session: String,
    pub self_mute: bool,
    pub self_deaf: bool,
}

/// What happens to a member next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoiceAction {
    /// Enter the guild's voice channel.
    Join,
    /// Leave it cleanly.
    Leave,
    /// Leave abruptly; come back after a few events.
    Dropout,
    /// Toggle self-mute.
    Mute,
    /// Toggle self-deafen.
    Deafen,
}

impl VoiceAction {
    /// Parse a control-API name.
    pub fn parse(s: &str) -> Option<VoiceAction> {
        Some(match s {
            "join" => VoiceAction::Join,
            "leave" => VoiceAction::Leave,
            "dropout" => VoiceAction::Dropout,
            "mute" => VoiceAction::Mute,
            "deafen" => VoiceAction::Deafen,
            _ => return None,
        })
    }
}

/// A rejoin owed after a dropout: `(guild index, user index, events to wait)`.
type Rejoin = (usize, usize, u32);

/// Voice presence per (guild, user), and the rejoins owed after dropouts.
#[derive(Debug, Default)]
pub struct VoiceRooms {
    present: HashMap<(usize, usize), Presence>,
    rejoins: VecDeque<Rejoin>,
}

impl VoiceRooms {
    /// The member's presence, if in the guild's voice channel.
    pub fn presence(&self, guild: usize, user: usize) -> Option<&Presence> {
        self.present.get(&(guild, user))
    }

    /// A sensible random next action for a member (`roll` in 0..100).
    pub fn choose(&self, guild: usize, user: usize, roll: u32) -> VoiceAction {
        if !self.present.contains_key(&(guild, user)) {
            return VoiceAction::Join;
        }
        match roll {
            0..30 => VoiceAction::Mute,
            30..45 => VoiceAction::Deafen,
            45..75 => VoiceAction::Leave,
            _ => VoiceAction::Dropout,
        }
    }

    /// Apply `action`; the resulting presence (`None` = not in the channel). A dropout owes
    /// a rejoin after `rejoin_after` events.
    pub fn apply(
        &mut self,
        guild: usize,
        user: usize,
        action: VoiceAction,
        new_session: impl FnOnce() -> String,
        rejoin_after: u32,
    ) -> Option<Presence> {
        let key = (guild, user);
        match action {
            VoiceAction::Join => {
                let p = self.present.entry(key).or_insert_with(|| Presence {
                    session: new_session(),
                    self_mute: false,
                    self_deaf: false,
                });
                Some(p.clone())
            }
            VoiceAction::Leave => {
                self.present.remove(&key);
                None
            }
            VoiceAction::Dropout => {
                if self.present.remove(&key).is_some() {
                    self.rejoins.push_back((guild, user, rejoin_after));
                }
                None
            }
            VoiceAction::Mute | VoiceAction::Deafen => {
                let p = self.present.entry(key).or_insert_with(|| Presence {
                    session: new_session(),
                    self_mute: false,
                    self_deaf: false,
                });
                if action == VoiceAction::Mute {
                    p.self_mute = !p.self_mute;
                } else {
                    p.self_deaf = !p.self_deaf;
                }
                Some(p.clone())
            }
        }
    }

    /// Count one event down; the first rejoin that is due, if any.
    pub fn due_rejoin(&mut self) -> Option<(usize, usize)> {
        for r in self.rejoins.iter_mut() {
            r.2 = r.2.saturating_sub(1);
        }
        let due = self.rejoins.iter().position(|r| r.2 == 0)?;
        self.rejoins.remove(due).map(|(g, u, _)| (g, u))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropout_owes_a_rejoin_and_a_leave_does_not() {
        let mut rooms = VoiceRooms::default();
        let session = || "s".to_string();
        assert!(rooms.apply(0, 1, VoiceAction::Join, session, 2).is_some());
        assert_eq!(
            rooms.choose(0, 2, 99),
            VoiceAction::Join,
            "not present: join"
        );
        assert!(
            rooms
                .apply(0, 1, VoiceAction::Dropout, session, 2)
                .is_none()
        );
        assert_eq!(rooms.due_rejoin(), None);
        assert_eq!(rooms.due_rejoin(), Some((0, 1)));
        rooms.apply(0, 1, VoiceAction::Join, session, 2);
        rooms.apply(0, 1, VoiceAction::Leave, session, 2);
        assert_eq!(rooms.due_rejoin(), None);
        assert_eq!(rooms.due_rejoin(), None);
    }

    #[test]
    fn mute_toggles() {
        let mut rooms = VoiceRooms::default();
        let session = || "s".to_string();
        rooms.apply(1, 1, VoiceAction::Join, session, 1);
        let p = rooms
            .apply(1, 1, VoiceAction::Mute, session, 1)
            .expect("present");
        assert!(p.self_mute && !p.self_deaf);
        let p = rooms
            .apply(1, 1, VoiceAction::Mute, session, 1)
            .expect("present");
        assert!(!p.self_mute);
    }
}
