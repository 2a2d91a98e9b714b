//! Session tracking: which upstream session we follow, the last seq taken, and the
//! sequence rules that decide what to do with every `hello` and every event.
//!
//! Pure logic, no I/O, so the rules are unit-tested on their own. The rules (documented
//! in `docs/link-protocol.md`) exist so that no sequence anomaly can ever make the host
//! drop events silently:
//!
//! * within a session seqs increase by exactly 1; an event at `last + 1` is taken;
//! * right after a clean resume the upstream may re-send events we already took (a
//!   replay overlap): those are skipped as duplicates;
//! * a forward jump, or a backwards seq outside the overlap, is a **resync**: the link
//!   drops the connection and resumes from the last contiguous seq. If the resumed stream
//!   still starts beyond the hole, the hole cannot be filled: the next event is taken and
//!   marked as following a loss;
//! * a `hello` that names another session, says `resumed: false`, or names our session
//!   with a seq *below* our last one (an upstream that restarted and reused its session
//!   id, or a resume point ahead of the upstream) means the upstream's numbering cannot be
//!   trusted against ours: the next event is adopted as the new baseline, whatever its
//!   seq, and marked as following a loss.
//!
//! Every event taken after a possible loss carries the reason (see
//! [`crate::bus::BusEvent::loss_before`]).

use std::sync::Arc;

use gateway_protocol::{Hello, Resume};

/// `loss_before` reasons (also used in logs).
pub mod reason {
    /// The upstream named a different session: the rest of ours is gone.
    pub const NEW_SESSION: &str = "new_session";
    /// Same session, but the upstream could not replay from our position.
    pub const REPLAY_UNAVAILABLE: &str = "replay_unavailable";
    /// Same session id, but its seq is below ours: the upstream restarted and reused the
    /// id, or lost its buffer.
    pub const RENUMBERED: &str = "upstream_renumbered";
    /// A hole in the seqs that a resume could not fill.
    pub const SEQ_GAP: &str = "seq_gap";
    /// An oversize frame was skipped where an event was expected.
    pub const OVERSIZE: &str = "oversize_frame";
}

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
    /// Same session id, but the upstream's last seq is below ours: it restarted with the
    /// same id (or lost its buffer). Its numbering is adopted.
    Renumbered {
        /// The last seq we took.
        last_seq: u64,
        /// The upstream's last seq, from `hello`.
        upstream_seq: u64,
    },
}

impl HelloOutcome {
    /// Whether this outcome is a gap to record.
    pub fn is_gap(&self) -> bool {
        self.loss_reason().is_some()
    }

    /// The `loss_before` reason this outcome puts on the next event.
    pub fn loss_reason(&self) -> Option<&'static str> {
        match self {
            Self::Fresh | Self::Resumed => None,
            Self::NewSession { .. } => Some(reason::NEW_SESSION),
            Self::ReplayUnavailable { .. } => Some(reason::REPLAY_UNAVAILABLE),
            Self::Renumbered { .. } => Some(reason::RENUMBERED),
        }
    }
}

/// A sequence anomaly on a live connection: the link must resynchronise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anomaly {
    /// A seq beyond `expected`: events are missing (or the seq is bogus).
    Jump {
        /// The seq we expected.
        expected: u64,
        /// The seq received.
        got: u64,
    },
    /// A seq at or below our last one, outside a replay overlap.
    Backwards {
        /// The seq we expected.
        expected: u64,
        /// The seq received.
        got: u64,
    },
}

impl Anomaly {
    /// Label of `gateway_link_seq_resyncs_total{reason}`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Jump { .. } => "seq_jump",
            Self::Backwards { .. } => "seq_backwards",
        }
    }
}

/// What to do with an event's seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqCheck {
    /// Take it; `loss_before` says whether events may be missing before it.
    Take {
        /// Why events may be missing before this one.
        loss_before: Option<&'static str>,
    },
    /// Seen already (replay overlap): skip it.
    Duplicate,
    /// Do not take it: drop the connection and resume from [`SessionTracker::last_seq`].
    Resync(Anomaly),
}

/// What to do after an oversize frame killed the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OversizeAction {
    /// Resume from the last seq: the frame may not come again (not an event).
    Retry,
    /// The same position failed twice: the next event is the oversize one; resume past it.
    SkipOne,
}

/// The session the link follows.
#[derive(Debug, Default)]
pub struct SessionTracker {
    session: Option<Arc<str>>,
    last_seq: u64,
    /// The next event becomes the baseline, whatever its seq.
    adopt_next: bool,
    /// No event taken on this connection yet: seqs ≤ `last_seq` are replay overlap.
    overlap_open: bool,
    /// A jump at this `last_seq` already caused a resync.
    resynced_at: Option<u64>,
    /// An oversize frame already killed a connection at this `last_seq`.
    oversize_at: Option<u64>,
    /// The reason to put on the next event taken.
    pending_loss: Option<&'static str>,
}

impl SessionTracker {
    /// A tracker that resumes `session` after `last_seq` (from the state file).
    pub fn restored(session: &str, last_seq: u64) -> Self {
        Self {
            session: Some(session.into()),
            last_seq,
            ..Self::default()
        }
    }

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

    /// The last seq taken (0 while a new baseline is awaited: "all you still have").
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Applies a `hello`.
    pub fn on_hello(&mut self, hello: &Hello) -> HelloOutcome {
        let outcome = match self.session.take() {
            // Fresh start: the upstream sends from its live edge (`resumed` means nothing).
            None => {
                self.last_seq = hello.seq;
                HelloOutcome::Fresh
            }
            Some(prev) if *prev == *hello.session_id => {
                if hello.seq < self.last_seq {
                    HelloOutcome::Renumbered {
                        last_seq: self.last_seq,
                        upstream_seq: hello.seq,
                    }
                } else if hello.resumed {
                    HelloOutcome::Resumed
                } else {
                    HelloOutcome::ReplayUnavailable {
                        last_seq: self.last_seq,
                    }
                }
            }
            Some(previous) => HelloOutcome::NewSession {
                previous,
                last_seq: self.last_seq,
            },
        };
        self.overlap_open = true;
        if let Some(why) = outcome.loss_reason() {
            // Our numbering means nothing to the upstream any more: take whatever comes
            // next, and ask for everything it still has should this connection drop first.
            self.adopt_next = true;
            self.last_seq = 0;
            self.resynced_at = None;
            self.oversize_at = None;
            self.pending_loss.get_or_insert(why);
        }
        self.session = Some(hello.session_id.as_str().into());
        outcome
    }

    /// Decides about an event's seq and advances past it when taken.
    pub fn check(&mut self, seq: u64) -> SeqCheck {
        let expected = self.last_seq.saturating_add(1);
        if self.adopt_next || seq == expected {
            return self.take(seq, None);
        }
        if seq < expected {
            if self.overlap_open {
                return SeqCheck::Duplicate;
            }
            return SeqCheck::Resync(Anomaly::Backwards { expected, got: seq });
        }
        if self.overlap_open && self.resynced_at == Some(self.last_seq) {
            // We already resumed from here and the stream still starts beyond the hole:
            // the upstream cannot fill it.
            return self.take(seq, Some(reason::SEQ_GAP));
        }
        self.resynced_at = Some(self.last_seq);
        SeqCheck::Resync(Anomaly::Jump { expected, got: seq })
    }

    fn take(&mut self, seq: u64, loss: Option<&'static str>) -> SeqCheck {
        self.last_seq = seq;
        self.adopt_next = false;
        self.overlap_open = false;
        self.resynced_at = None;
        self.oversize_at = None;
        SeqCheck::Take {
            loss_before: self.pending_loss.take().or(loss),
        }
    }

    /// An oversize frame ended the connection: decides whether to skip an event.
    pub fn on_oversize(&mut self) -> OversizeAction {
        if self.adopt_next || self.oversize_at != Some(self.last_seq) {
            self.oversize_at = Some(self.last_seq);
            return OversizeAction::Retry;
        }
        self.oversize_at = None;
        self.last_seq = self.last_seq.saturating_add(1);
        self.pending_loss.get_or_insert(reason::OVERSIZE);
        OversizeAction::SkipOne
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

    fn take(loss_before: Option<&'static str>) -> SeqCheck {
        SeqCheck::Take { loss_before }
    }

    const OK: SeqCheck = SeqCheck::Take { loss_before: None };

    fn following(id: &str, last: u64) -> SessionTracker {
        let mut t = SessionTracker::default();
        t.on_hello(&hello(id, false, 0));
        for seq in 1..=last {
            assert_eq!(t.check(seq), OK);
        }
        t
    }

    #[test]
    fn fresh_start_then_resume_deduplicates_overlap() {
        let mut t = SessionTracker::default();
        assert_eq!(t.resume_frame(), Resume::default());
        assert_eq!(t.on_hello(&hello("a", false, 10)), HelloOutcome::Fresh);
        assert_eq!(t.check(11), OK);
        assert_eq!(t.check(12), OK);
        assert_eq!(t.resume_frame().last_seq, 12);
        assert_eq!(t.on_hello(&hello("a", true, 15)), HelloOutcome::Resumed);
        assert_eq!(t.check(11), SeqCheck::Duplicate);
        assert_eq!(t.check(12), SeqCheck::Duplicate);
        assert_eq!(t.check(13), OK);
    }

    #[test]
    fn new_session_restarts_the_count_and_marks_the_loss() {
        let mut t = following("a", 50);
        let out = t.on_hello(&hello("b", false, 3));
        assert!(out.is_gap());
        assert_eq!(
            t.resume_frame().last_seq,
            0,
            "ask for all of the new session"
        );
        assert_eq!(t.check(1), take(Some(reason::NEW_SESSION)));
        assert_eq!(t.check(2), OK);
    }

    #[test]
    fn a_far_ahead_seq_resyncs_instead_of_poisoning_deduplication() {
        let mut t = following("a", 10);
        assert_eq!(
            t.check(1_000_010),
            SeqCheck::Resync(Anomaly::Jump {
                expected: 11,
                got: 1_000_010
            })
        );
        assert_eq!(t.last_seq(), 10, "the bogus seq is not taken");
        // Resume from 10: the stream goes on at 11, nothing lost.
        assert_eq!(t.on_hello(&hello("a", true, 12)), HelloOutcome::Resumed);
        assert_eq!(t.check(11), OK);
        assert_eq!(t.check(12), OK);
    }

    #[test]
    fn a_hole_the_resume_cannot_fill_is_taken_as_a_gap_once() {
        let mut t = following("a", 10);
        assert!(matches!(t.check(20), SeqCheck::Resync(_)));
        assert_eq!(t.on_hello(&hello("a", true, 25)), HelloOutcome::Resumed);
        assert_eq!(t.check(9), SeqCheck::Duplicate, "overlap is still fine");
        assert_eq!(t.check(20), take(Some(reason::SEQ_GAP)));
        assert_eq!(t.check(21), OK);
    }

    #[test]
    fn a_backwards_seq_outside_the_overlap_resyncs() {
        let mut t = following("a", 10);
        assert_eq!(
            t.check(3),
            SeqCheck::Resync(Anomaly::Backwards {
                expected: 11,
                got: 3
            })
        );
        assert_eq!(t.last_seq(), 10);
    }

    #[test]
    fn a_reused_session_id_with_a_lower_seq_adopts_the_new_numbering() {
        let mut t = following("a", 500);
        // The upstream restarted, kept its id, and (wrongly) claims to have resumed us.
        let out = t.on_hello(&hello("a", true, 7));
        assert_eq!(
            out,
            HelloOutcome::Renumbered {
                last_seq: 500,
                upstream_seq: 7
            }
        );
        assert_eq!(t.check(8), take(Some(reason::RENUMBERED)));
        assert_eq!(t.check(9), OK);
    }

    #[test]
    fn unavailable_replay_adopts_whatever_comes_next() {
        let mut t = following("a", 1);
        assert_eq!(
            t.on_hello(&hello("a", false, 900)),
            HelloOutcome::ReplayUnavailable { last_seq: 1 }
        );
        assert_eq!(t.check(800), take(Some(reason::REPLAY_UNAVAILABLE)));
        assert_eq!(t.check(801), OK);
    }

    #[test]
    fn loss_stays_pending_across_a_connection_that_took_nothing() {
        let mut t = following("a", 5);
        t.on_hello(&hello("b", false, 0));
        // Dropped before any event; the next hello is a clean resume of "b" from 0.
        assert_eq!(t.resume_frame().session_id.as_deref(), Some("b"));
        assert_eq!(t.on_hello(&hello("b", true, 2)), HelloOutcome::Resumed);
        assert_eq!(t.check(1), take(Some(reason::NEW_SESSION)));
    }

    #[test]
    fn a_restored_tracker_resumes_its_session() {
        let mut t = SessionTracker::restored("a", 40);
        assert_eq!(t.resume_frame().last_seq, 40);
        assert_eq!(t.on_hello(&hello("a", true, 45)), HelloOutcome::Resumed);
        assert_eq!(t.check(41), OK);
        let mut t = SessionTracker::restored("a", 40);
        assert!(t.on_hello(&hello("z", false, 45)).is_gap());
    }

    #[test]
    fn an_oversize_event_is_retried_once_then_skipped() {
        let mut t = following("a", 10);
        assert_eq!(t.on_oversize(), OversizeAction::Retry);
        assert_eq!(t.resume_frame().last_seq, 10);
        assert_eq!(t.on_oversize(), OversizeAction::SkipOne);
        assert_eq!(t.resume_frame().last_seq, 11);
        t.on_hello(&hello("a", true, 12));
        assert_eq!(t.check(12), take(Some(reason::OVERSIZE)));
        // Progress resets the count.
        assert_eq!(t.on_oversize(), OversizeAction::Retry);
        assert_eq!(t.check(13), OK);
        assert_eq!(t.on_oversize(), OversizeAction::Retry);
    }
}
