//! The replay ring: the last N frames, for clients resuming with `Last-Event-ID`.
//!
//! Bounded by count; frames are shared `Arc`s, so the ring costs one pointer per entry
//! beyond the frames themselves.

use std::collections::VecDeque;
use std::sync::Arc;

use super::frame::{EventId, Frame};

/// Where a resume id falls.
#[derive(Debug, PartialEq, Eq)]
pub enum ResumePoint {
    /// Replay the frames after this position (may be none).
    After(u64),
    /// The id cannot be placed (other epoch, older than the ring, or ahead of it).
    Unplaceable(&'static str),
}

/// A bounded ring of recent frames.
pub struct ReplayRing {
    frames: VecDeque<Arc<Frame>>,
    capacity: usize,
}

impl ReplayRing {
    /// An empty ring holding at most `capacity` frames.
    pub fn new(capacity: usize) -> ReplayRing {
        ReplayRing {
            frames: VecDeque::with_capacity(capacity.min(65_536)),
            capacity: capacity.max(1),
        }
    }

    /// Append, dropping the oldest frame when full.
    pub fn push(&mut self, frame: Arc<Frame>) {
        if self.frames.len() == self.capacity {
            self.frames.pop_front();
        }
        self.frames.push_back(frame);
    }

    /// The oldest frame still held.
    pub fn oldest(&self) -> Option<EventId> {
        self.frames.front().map(|f| f.id)
    }

    /// Locate `id` for a resume; `next_seq` is the seq the next published frame will get.
    pub fn locate(&self, id: EventId, epoch: u64, next_seq: u64) -> ResumePoint {
        if id.epoch != epoch {
            return ResumePoint::Unplaceable(
                "the id is from another host epoch (the host restarted)",
            );
        }
        if id.seq >= next_seq {
            return ResumePoint::Unplaceable("the id is ahead of the newest event");
        }
        let oldest = self.frames.front().map(|f| f.id.seq).unwrap_or(next_seq);
        // The client has everything up to id.seq; it needs id.seq + 1 onwards.
        if id.seq + 1 < oldest {
            return ResumePoint::Unplaceable("the id is older than the replay ring");
        }
        ResumePoint::After(id.seq)
    }

    /// Frames after `seq` whose topics match `filter`.
    pub fn after(&self, seq: u64, filter: impl Fn(&Frame) -> bool) -> Vec<Arc<Frame>> {
        let start = self.frames.partition_point(|f| f.id.seq <= seq);
        self.frames
            .range(start..)
            .filter(|f| filter(f))
            .cloned()
            .collect()
    }
}
