//! The upstream session: its id, its seq counter and the bounded replay buffer.
//!
//! Every connection reads events *from this buffer* through its own cursor, live or
//! replayed alike. One code path for both means a resumed link can never see an event
//! twice or skip one, and the buffer bound is the only memory the replay costs.
//!
//! Seqs are stored with the frames (not derived from positions) so that the seq-jump
//! fault can make the numbering skip ahead the way a faulty upstream would.

use std::collections::VecDeque;

use axum::extract::ws::Utf8Bytes;

/// Where a connection starts reading after its `resume`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePoint {
    /// Session the connection is bound to.
    pub session_id: String,
    /// Whether everything after the requested seq will be delivered.
    pub resumed: bool,
    /// First seq the connection will send.
    pub next_seq: u64,
    /// Last seq emitted so far (for `hello.seq`).
    pub last_seq: u64,
}

/// A cursor fell out of the buffer: the connection cannot continue without a gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooOld;

/// One upstream session and its replay buffer.
pub struct Session {
    id: String,
    last_seq: u64,
    buffer: VecDeque<(u64, Utf8Bytes)>,
    capacity: usize,
}

impl Session {
    /// An empty session.
    pub fn new(id: String, capacity: usize) -> Self {
        Self {
            id,
            last_seq: 0,
            buffer: VecDeque::with_capacity(capacity.min(4096)),
            capacity: capacity.max(1),
        }
    }

    /// The session id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The last seq emitted.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The oldest seq still buffered (last_seq + 1 when empty).
    fn first_buffered(&self) -> u64 {
        self.buffer
            .front()
            .map_or(self.last_seq + 1, |(seq, _)| *seq)
    }

    /// Makes the numbering skip `by` seqs: the next event gets `last_seq + by + 1`.
    pub fn jump(&mut self, by: u64) {
        self.last_seq = self.last_seq.saturating_add(by);
    }

    /// Appends the next event, built by `frame(seq)`; evicts the oldest beyond capacity.
    pub fn push(&mut self, frame: impl FnOnce(u64) -> String) -> u64 {
        self.last_seq += 1;
        self.buffer
            .push_back((self.last_seq, frame(self.last_seq).into()));
        if self.buffer.len() > self.capacity {
            self.buffer.pop_front();
        }
        self.last_seq
    }

    /// Decides where a connection that sent `resume {session_id, last_seq}` starts.
    /// `overlap` re-sends that many already-delivered events first, as an at-least-once
    /// upstream may (the host must de-duplicate them).
    pub fn resume_point(
        &self,
        session_id: Option<&str>,
        last_seq: u64,
        overlap: u64,
    ) -> ResumePoint {
        let (resumed, next_seq) = match session_id {
            // Fresh start: live edge, nothing to replay.
            None => (false, self.last_seq + 1),
            // Same session, but a position we never reached (the host followed an
            // earlier incarnation of this id): not resumable.
            Some(id) if id == self.id && last_seq > self.last_seq => (false, self.first_buffered()),
            // Same session: replay if the buffer still reaches back.
            Some(id) if id == self.id => {
                if last_seq + 1 >= self.first_buffered() {
                    let from = (last_seq + 1).min(self.last_seq + 1);
                    (
                        true,
                        from.saturating_sub(overlap)
                            .max(self.first_buffered())
                            .max(1),
                    )
                } else {
                    (false, self.first_buffered())
                }
            }
            // A session we no longer have (we restarted): deliver the new session
            // from as far back as we still hold it.
            Some(_) => (false, self.first_buffered()),
        };
        ResumePoint {
            session_id: self.id.clone(),
            resumed,
            next_seq,
            last_seq: self.last_seq,
        }
    }

    /// Up to `max` `(seq, frame)` pairs with seq ≥ `from`; empty at the edge.
    pub fn read_from(&self, from: u64, max: usize) -> Result<Vec<(u64, Utf8Bytes)>, TooOld> {
        if from < self.first_buffered() {
            return Err(TooOld);
        }
        let skip = self.buffer.partition_point(|(seq, _)| *seq < from);
        Ok(self.buffer.iter().skip(skip).take(max).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session_with(n: u64, cap: usize) -> Session {
        let mut s = Session::new("s1".into(), cap);
        for _ in 0..n {
            s.push(|seq| seq.to_string());
        }
        s
    }

    #[test]
    fn resume_within_buffer_replays_exactly_after_last_seq() {
        let s = session_with(10, 100);
        let p = s.resume_point(Some("s1"), 4, 0);
        assert!(p.resumed);
        assert_eq!(p.next_seq, 5);
        let frames = s.read_from(p.next_seq, 100).expect("in buffer");
        assert_eq!(frames.first().map(|(_, f)| f.as_str()), Some("5"));
        assert_eq!(frames.len(), 6);
    }

    #[test]
    fn overlap_resends_already_delivered_events() {
        let s = session_with(10, 100);
        let p = s.resume_point(Some("s1"), 4, 3);
        assert!(p.resumed);
        assert_eq!(p.next_seq, 2);
    }

    #[test]
    fn resume_beyond_buffer_is_a_gap() {
        let s = session_with(10, 3);
        let p = s.resume_point(Some("s1"), 2, 0);
        assert!(!p.resumed);
        assert_eq!(p.next_seq, 8);
        assert_eq!(s.read_from(2, 10), Err(TooOld));
    }

    #[test]
    fn unknown_session_gets_new_session_from_its_start() {
        let s = session_with(4, 100);
        let p = s.resume_point(Some("old"), 900, 0);
        assert!(!p.resumed);
        assert_eq!(p.next_seq, 1);
    }

    #[test]
    fn a_resume_point_ahead_of_the_session_is_not_resumed() {
        let s = session_with(4, 100);
        let p = s.resume_point(Some("s1"), 900, 0);
        assert!(!p.resumed);
        assert_eq!(p.next_seq, 1);
    }

    #[test]
    fn a_jump_skips_seqs_and_replay_follows_it() {
        let mut s = session_with(3, 100);
        s.jump(1000);
        s.push(|seq| seq.to_string());
        let seqs: Vec<u64> = s
            .read_from(3, 10)
            .expect("in buffer")
            .iter()
            .map(|(seq, _)| *seq)
            .collect();
        assert_eq!(seqs, vec![3, 1004]);
        assert_eq!(s.read_from(4, 10).expect("in buffer").len(), 1);
    }

    #[test]
    fn fresh_start_is_live_edge() {
        let s = session_with(4, 100);
        let p = s.resume_point(None, 0, 0);
        assert_eq!(p.next_seq, 5);
        assert!(s.read_from(5, 10).expect("edge").is_empty());
    }
}
