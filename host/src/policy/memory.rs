//! The memory cap of one instance, summed over all its memories.
//!
//! wasmtime's `StoreLimits` caps each linear memory on its own, so a component with
//! several memories (a component may embed several core modules) could use the limit once
//! per memory. [`InstanceLimiter`] keeps a running total of every memory's size in the
//! store and refuses a growth (or a new memory) that would take the total past the cap.
//! A refused growth traps with [`MemoryCapExceeded`], so the call fails as
//! `out_of_memory` instead of the guest seeing `memory.grow` return -1 and limping on.

use wasmtime::ResourceLimiter;

/// Memories, tables and instances one store may create (a component is several core
/// instances; these are far above what a real policy needs).
const MAX_INSTANCES: usize = 64;
const MAX_TABLES: usize = 64;
const MAX_MEMORIES: usize = 16;
/// Elements one table may grow to.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// A growth refused because the instance's memories together would exceed the cap.
#[derive(Debug, thiserror::Error)]
#[error(
    "memory limit exceeded: growing memory to {requested} bytes across all memories (limit {limit})"
)]
pub struct MemoryCapExceeded {
    pub requested: usize,
    pub limit: usize,
}

/// Caps the sum of all linear memories of one store.
#[derive(Debug)]
pub struct InstanceLimiter {
    limit: usize,
    total: usize,
}

impl InstanceLimiter {
    /// A limiter allowing `limit` bytes of linear memory in total.
    pub fn new(limit: usize) -> InstanceLimiter {
        InstanceLimiter { limit, total: 0 }
    }

    /// Bytes of linear memory the store's memories hold now.
    pub fn total(&self) -> usize {
        self.total
    }
}

impl ResourceLimiter for InstanceLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        let requested = self.total.saturating_add(desired.saturating_sub(current));
        if requested > self.limit {
            return Err(MemoryCapExceeded {
                requested,
                limit: self.limit,
            }
            .into());
        }
        self.total = requested;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS && maximum.is_none_or(|max| desired <= max))
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1024 * 1024;

    #[test]
    fn the_cap_is_shared_by_all_memories() {
        let mut l = InstanceLimiter::new(10 * MIB);
        // Two memories of 4 MiB each fit…
        assert!(l.memory_growing(0, 4 * MIB, None).expect("fits"));
        assert!(l.memory_growing(0, 4 * MIB, None).expect("fits"));
        assert_eq!(l.total(), 8 * MIB);
        // …but growing either by 4 MiB more would take the sum to 12 MiB, although each
        // memory alone (8 MiB) would be under the cap.
        let err = l
            .memory_growing(4 * MIB, 8 * MIB, None)
            .expect_err("over the summed cap");
        assert!(err.downcast_ref::<MemoryCapExceeded>().is_some());
        assert_eq!(l.total(), 8 * MIB, "a refused growth takes nothing");
        // Exactly up to the cap is allowed.
        assert!(l.memory_growing(4 * MIB, 6 * MIB, None).expect("fits"));
        assert_eq!(l.total(), 10 * MIB);
        // A third memory finds no room.
        assert!(l.memory_growing(0, MIB, None).is_err());
    }

    #[test]
    fn a_memory_maximum_is_respected() {
        let mut l = InstanceLimiter::new(10 * MIB);
        assert!(!l.memory_growing(0, 2 * MIB, Some(MIB)).expect("no error"));
        assert_eq!(l.total(), 0);
    }
}
