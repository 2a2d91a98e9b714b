//! The only clocks a component sees: virtual ones that never block and never tell real time.
//!
//! A policy must be a function of its inputs, and a call must never wait on a timer:
//! wasmtime-wasi's own `subscribe-duration`/`subscribe-instant` pollables are real tokio
//! timers whatever clock the context has, so `std::thread::sleep(30 s)` in a guest stalls
//! the call thread for 30 s (epoch interruption only fires in wasm code, not in a host
//! `poll`). This module replaces them:
//!
//! * Each instance has a virtual monotonic clock that starts at 0 and advances only when the
//!   instance "sleeps": subscribing to a duration (or an instant) moves the clock forward by
//!   that much and returns a pollable that is ready at once. So a sleep returns immediately,
//!   and code that measures time around it sees a consistent value.
//! * The wall clock is the Unix epoch (1970-01-01T00:00:00Z) plus that virtual time.
//! * A guest that busy-waits on the clock without sleeping sees it stand still and runs
//!   into its epoch deadline like any other loop.
//!
//! [`VirtualClock`] is installed both as the WASI context's clocks and, through
//! [`add_to_linker`], as the implementation of `wasi:clocks/monotonic-clock` (shadowing
//! wasmtime-wasi's).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::clocks::{HostMonotonicClock, HostWallClock};
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

/// An instance's virtual time in nanoseconds; clones share it.
#[derive(Clone, Default)]
pub struct VirtualClock(Arc<AtomicU64>);

impl VirtualClock {
    /// Virtual nanoseconds elapsed since the instance was created.
    pub fn now_ns(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Move the clock forward by `ns` (saturating).
    fn advance(&self, ns: u64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_add(ns))
            });
    }

    /// Move the clock forward to `ns` if it is behind.
    fn advance_to(&self, ns: u64) {
        self.0.fetch_max(ns, Ordering::Relaxed);
    }
}

impl HostMonotonicClock for VirtualClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        self.now_ns()
    }
}

impl HostWallClock for VirtualClock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        Duration::from_nanos(self.now_ns())
    }
}

/// A pollable that is always ready: what a sleep returns.
struct Ready;

#[wasmtime_wasi::async_trait]
impl Pollable for Ready {
    async fn ready(&mut self) {}
}

/// What the shadowing `monotonic-clock` implementation borrows from the store.
pub struct ClockView<'a> {
    pub clock: &'a VirtualClock,
    pub table: &'a mut ResourceTable,
}

impl ClockView<'_> {
    fn ready(&mut self) -> wasmtime::Result<Resource<DynPollable>> {
        let ready = self.table.push(Ready)?;
        subscribe(self.table, ready)
    }
}

impl monotonic_clock::Host for ClockView<'_> {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        Ok(self.clock.now_ns())
    }

    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        Ok(1)
    }

    fn subscribe_instant(
        &mut self,
        when: monotonic_clock::Instant,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        self.clock.advance_to(when);
        self.ready()
    }

    fn subscribe_duration(
        &mut self,
        duration: monotonic_clock::Duration,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        self.clock.advance(duration);
        self.ready()
    }
}

/// [`HasData`] marker for [`ClockView`].
pub struct SandboxClocks;

impl HasData for SandboxClocks {
    type Data<'a> = ClockView<'a>;
}

/// Replace wasmtime-wasi's `wasi:clocks/monotonic-clock` in `linker` (which already has
/// the WASI p2 interfaces) with the virtual one.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> ClockView<'_>,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let result = monotonic_clock::add_to_linker::<T, SandboxClocks>(linker, view);
    linker.allow_shadowing(false);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeping_advances_virtual_time_only() {
        let clock = VirtualClock::default();
        let mut table = ResourceTable::new();
        let mut view = ClockView {
            clock: &clock,
            table: &mut table,
        };
        let started = std::time::Instant::now();
        monotonic_clock::Host::subscribe_duration(&mut view, 30_000_000_000).expect("pollable");
        assert_eq!(clock.now_ns(), 30_000_000_000);
        monotonic_clock::Host::subscribe_instant(&mut view, 10).expect("pollable");
        assert_eq!(clock.now_ns(), 30_000_000_000, "an instant in the past");
        monotonic_clock::Host::subscribe_instant(&mut view, 40_000_000_000).expect("pollable");
        assert_eq!(clock.now_ns(), 40_000_000_000);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(HostWallClock::now(&clock), Duration::from_secs(40));
    }
}
