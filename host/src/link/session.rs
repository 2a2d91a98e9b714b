//! Session tracking: which upstream session we follow, the last seq taken, and the
//! de-duplication / gap decisions that follow from it.
//!
//! Pure logic, no I/O, so the exactly-once rules are unit-tested on their own. Seqs
//! only mean something inside a session: when the upstream names a new session, the
//! counter starts over instead of treating seq 1 as an old duplicate.

use std::sync::Arc;

use gateway_protocol::{Hello, Resume};

/// What a `hello` meant for continuity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelloOutcome {
    /// First session of this process: nothing was missed.
    Fresh,
    /// Same session, replay follows: nothing will be missed.
    Resumed,
    /// The upstream has a new session (it restarted): the rest of the old one is lost.
    NewSession {
        /// The session we were following.
        previous: Arc<str>,
        /// The last seq we took from it.
        last_seq: u64,
    },
    /// Same session, but the upstream could not replay from our position.
    ReplayUnavailable {
        /// The last seq we took.
        last_seq: u64,
    },
}

impl HelloOutcome {
    /// Whether this outcome is a gap to record.
    pub fn is_gap(&self) -> bool {
        matches!(
            self,
            Self::NewSession { .. } | Self::ReplayUnavailable { .. }
        )
    }
}

/// What to do with an event's seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqCheck {
    /// The next expected event: take it.
    Next,
    /// Seen already (replay overlap): skip it.
    Duplicate,
    /// Take it, but `missing` events before it never arrived.
    AfterHole {
        /// How many seqs were skipped.
        missing: u64,
    },
}

/// The session the link follows.
#[derive(Debug, Default)]
pub struct SessionTracker {
    session: Option<Arc<str>>,
    last_seq: u64,
    /// A jump is expected (already recorded as a gap at hello time).
    jump_expected: bool,
}

impl SessionTracker {
    /// The first frame to send on a new connection.
    pub fn resume_frame(&self) -> Resume {
        Resume {
            session_id: self.session.as_deref().map(str::to_owned),
            last_seq: self.last_seq,
        }
    }

    /// The current session id, once known.
    pub fn session(&self) -> Option<&Arc<str>> {
        self.session.as_ref()
    }

    /// The last seq taken.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Applies a `hello`.
    pub fn on_hello(&mut self, hello: &Hello) -> HelloOutcome {
        let outcome = match self.session.take() {
            None => {
                // Fresh start: the upstream sends from its live edge.
                self.last_seq = hello.seq;
                HelloOutcome::Fresh
            }
            Some(prev) if *prev == *hello.session_id => {
                if hello.resumed {
                    HelloOutcome::Resumed
                } else {
                    HelloOutcome::ReplayUnavailable {
                        last_seq: self.last_seq,
                    }
                }
            }
            Some(previous) => {
                let last_seq = std::mem::take(&mut self.last_seq);
                HelloOutcome::NewSession { previous, last_seq }
            }
        };
        self.jump_expected = outcome.is_gap();
        self.session = Some(hello.session_id.as_str().into());
        outcome
    }

    /// Decides about an event's seq and advances past it when taken.
    pub fn check(&mut self, seq: u64) -> SeqCheck {
        if seq <= self.last_seq {
            return SeqCheck::Duplicate;
        }
        let missing = seq - self.last_seq - 1;
        self.last_seq = seq;
        let already_recorded = std::mem::take(&mut self.jump_expected);
        if missing == 0 || already_recorded {
            SeqCheck::Next
        } else {
            SeqCheck::AfterHole { missing }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(id: &str, resumed: bool, seq: u64) -> Hello {
        Hello {
            session_id: id.into(),
            resumed,
            seq,
        }
    }

    #[test]
    fn fresh_start_then_resume_deduplicates_overlap() {
        let mut t = SessionTracker::default();
        assert_eq!(t.resume_frame(), Resume::default());
        assert_eq!(t.on_hello(&hello("a", false, 10)), HelloOutcome::Fresh);
        assert_eq!(t.check(11), SeqCheck::Next);
        assert_eq!(t.check(12), SeqCheck::Next);
        assert_eq!(t.resume_frame().last_seq, 12);
        assert_eq!(t.on_hello(&hello("a", true, 15)), HelloOutcome::Resumed);
        assert_eq!(t.check(12), SeqCheck::Duplicate);
        assert_eq!(t.check(13), SeqCheck::Next);
    }

    #[test]
    fn new_session_restarts_the_count_and_is_a_gap() {
        let mut t = SessionTracker::default();
        t.on_hello(&hello("a", false, 0));
        for seq in 1..=50 {
            t.check(seq);
        }
        let out = t.on_hello(&hello("b", false, 3));
        assert!(out.is_gap());
        assert_eq!(t.check(1), SeqCheck::Next);
        assert_eq!(t.check(2), SeqCheck::Next);
    }

    #[test]
    fn hole_in_a_live_stream_is_reported_once() {
        let mut t = SessionTracker::default();
        t.on_hello(&hello("a", false, 0));
        t.check(1);
        assert_eq!(t.check(4), SeqCheck::AfterHole { missing: 2 });
        assert_eq!(t.check(5), SeqCheck::Next);
    }

    #[test]
    fn unavailable_replay_is_recorded_at_hello_not_again_at_the_jump() {
        let mut t = SessionTracker::default();
        t.on_hello(&hello("a", false, 0));
        t.check(1);
        assert_eq!(
            t.on_hello(&hello("a", false, 900)),
            HelloOutcome::ReplayUnavailable { last_seq: 1 }
        );
        assert_eq!(t.check(800), SeqCheck::Next);
    }
}
