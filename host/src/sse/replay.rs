//! The replay ring: the last N frames, for clients resuming with `Last-Event-ID`.
//!
//! Bounded by count and by bytes (whichever bound is hit first evicts the oldest frame);
//! frames are shared `Arc`s, so the ring costs one pointer per entry beyond the frames
//! themselves. A resume takes only a snapshot of `Arc`s under the hub lock ([`ReplayRing::range_after`]);
//! the topic filter runs outside it.

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
    max_bytes: usize,
    bytes: usize,
}

impl ReplayRing {
    /// An empty ring holding at most `capacity` frames and `max_bytes` of them (the newest
    /// frame is always kept).
    pub fn new(capacity: usize, max_bytes: usize) -> ReplayRing {
        ReplayRing {
            frames: VecDeque::with_capacity(capacity.min(65_536)),
            capacity: capacity.max(1),
            max_bytes,
            bytes: 0,
        }
    }

    /// Append, dropping the oldest frames beyond either bound.
    pub fn push(&mut self, frame: Arc<Frame>) {
        self.bytes += frame.cost();
        self.frames.push_back(frame);
        while self.frames.len() > 1
            && (self.frames.len() > self.capacity || self.bytes > self.max_bytes)
        {
            if let Some(old) = self.frames.pop_front() {
                self.bytes -= old.cost();
            }
        }
    }

    /// Forget every frame (cluster mode: the stream's sequences started again).
    pub fn clear(&mut self) {
        self.frames.clear();
        self.bytes = 0;
    }

    /// Bytes held (as counted by [`Frame::cost`]).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Frames held.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether the ring is empty.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
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

    /// Every frame after `seq` (pointer copies only; filter outside the hub lock).
    pub fn range_after(&self, seq: u64) -> Vec<Arc<Frame>> {
        let start = self.frames.partition_point(|f| f.id.seq <= seq);
        self.frames.range(start..).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn frame(seq: u64, size: usize) -> Arc<Frame> {
        Arc::new(Frame {
            id: EventId { epoch: 1, seq },
            topics: Vec::new(),
            to_all: false,
            bytes: Bytes::from(vec![b'x'; size]),
            received_at: std::time::Instant::now(),
        })
    }

    #[test]
    fn the_ring_is_bounded_by_bytes_as_well_as_count() {
        let one = frame(0, 1000).cost();
        let mut ring = ReplayRing::new(100, one * 10);
        for seq in 1..=50 {
            ring.push(frame(seq, 1000));
        }
        assert_eq!(ring.len(), 10, "the byte bound holds 10 of 1000 bytes");
        assert!(ring.bytes() <= one * 10);
        assert_eq!(ring.oldest(), Some(EventId { epoch: 1, seq: 41 }));
        // A frame larger than the whole bound is still kept (alone).
        ring.push(frame(51, one * 20));
        assert_eq!(ring.len(), 1);
        let mut ring = ReplayRing::new(5, usize::MAX);
        for seq in 1..=50 {
            ring.push(frame(seq, 10));
        }
        assert_eq!(ring.len(), 5, "the count bound still holds");
        let ids: Vec<u64> = ring.range_after(47).iter().map(|f| f.id.seq).collect();
        assert_eq!(ids, vec![48, 49, 50]);
    }
}
