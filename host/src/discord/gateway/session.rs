//! The session's sequence rules, turning dispatches into bus events.
//!
//! A dispatch's `s` belongs to a Discord session (`session_id` from Ready). Within a
//! session, a seq at or below the last one is a replay overlap (skipped, counted); a hole
//! means lost events. A new session after an earlier one (Discord refused the resume:
//! op 9 false, or 4007/4009) means the events in between are lost for good: the first
//! event of the new session carries `loss_before`, so SSE clients get `reset`.

use std::sync::Arc;
use std::time::Instant;

use gateway_protocol::RawValue;

use crate::bus::BusEvent;

/// Why the bus event's `loss_before` is set.
pub const LOSS_NEW_SESSION: &str =
    "the Discord session was invalidated; events between the sessions are lost";
pub const LOSS_SEQ_HOLE: &str = "Discord skipped sequence numbers";

/// The resumable part of a session, kept across connections.
#[derive(Debug, Clone)]
pub struct Resumable {
    pub session_id: String,
    pub resume_url: String,
}

/// What to do with a dispatch.
#[derive(Debug)]
pub enum Verdict {
    Publish(Arc<BusEvent>),
    /// Already published (seq at or below the last one).
    Duplicate,
}

/// Sequence tracking across connections.
#[derive(Debug, Default)]
pub struct Sequence {
    session: Option<Arc<str>>,
    last: u64,
    /// Set when a session ended without a resume; consumed by the next session's first event.
    pending_loss: Option<&'static str>,
}

impl Sequence {
    /// The last seq seen (for heartbeats and Resume), if any.
    pub fn last(&self) -> Option<u64> {
        (self.session.is_some() && self.last > 0).then_some(self.last)
    }

    /// The session being followed, if any.
    pub fn session_id(&self) -> Option<&str> {
        self.session.as_deref()
    }

    /// Continues a session saved by an earlier run of the host (state file).
    pub fn restore(&mut self, session_id: &str, last: u64) {
        self.session = Some(session_id.into());
        self.last = last;
    }

    /// A session ended and will not be resumed.
    pub fn session_lost(&mut self) {
        if self.session.is_some() {
            self.pending_loss = Some(LOSS_NEW_SESSION);
        }
    }

    /// A Ready named a new session.
    pub fn new_session(&mut self, session_id: &str) {
        if self.session.as_deref().is_some_and(|s| s != session_id) {
            self.pending_loss = Some(LOSS_NEW_SESSION);
        }
        self.session = Some(session_id.into());
        self.last = 0;
    }

    /// Decides about dispatch `seq`.
    pub fn dispatch(&mut self, seq: u64, t: String, d: Box<RawValue>) -> Verdict {
        let Some(session) = self.session.clone() else {
            // A dispatch before Ready: not part of any session we know; publish it under
            // an empty session id rather than dropping it.
            return Verdict::Publish(event("".into(), seq, t, d, None));
        };
        if seq <= self.last {
            return Verdict::Duplicate;
        }
        let mut loss = self.pending_loss.take();
        if loss.is_none() && self.last > 0 && seq > self.last + 1 {
            loss = Some(LOSS_SEQ_HOLE);
        }
        self.last = seq;
        Verdict::Publish(event(session, seq, t, d, loss))
    }
}

fn event(
    session_id: Arc<str>,
    seq: u64,
    t: String,
    d: Box<RawValue>,
    loss_before: Option<&'static str>,
) -> Arc<BusEvent> {
    Arc::new(BusEvent {
        session_id,
        seq,
        trace_id: format!("{:016x}", rand::random::<u64>()),
        t,
        ts: crate::policy::version::unix_ms(),
        d,
        received_at: Instant::now(),
        loss_before,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d() -> Box<RawValue> {
        RawValue::from_string("{}".into()).expect("json")
    }

    fn publish(s: &mut Sequence, seq: u64) -> Option<Option<&'static str>> {
        match s.dispatch(seq, "X".into(), d()) {
            Verdict::Publish(e) => Some(e.loss_before),
            Verdict::Duplicate => None,
        }
    }

    #[test]
    fn overlap_is_skipped_holes_and_new_sessions_are_losses() {
        let mut s = Sequence::default();
        s.new_session("a");
        assert_eq!(publish(&mut s, 1), Some(None));
        assert_eq!(publish(&mut s, 2), Some(None));
        assert_eq!(publish(&mut s, 2), None, "replayed overlap");
        assert_eq!(publish(&mut s, 5), Some(Some(LOSS_SEQ_HOLE)));
        assert_eq!(s.last(), Some(5));
        s.session_lost();
        s.new_session("b");
        assert_eq!(publish(&mut s, 1), Some(Some(LOSS_NEW_SESSION)));
        assert_eq!(publish(&mut s, 2), Some(None));
    }
}
