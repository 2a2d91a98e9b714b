//! What each component instance's `Store` holds, and how guest output reaches the logs.
//!
//! The WASI context is the sandbox: no preopened directories, no environment, no
//! arguments, no network (TCP, UDP and name lookup all refused), virtual clocks that never
//! block (see [`super::clocks`]), and a memory cap summed over all the instance's memories
//! (see [`super::memory`]). Guest stdout and stderr
//! are forwarded line by line to `tracing`, and the `log` import lands there too, tagged
//! with the slot and the component's short hash. Both are bounded per instance.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::log::{Host as LogHost, Level};
use super::clocks::{ClockView, VirtualClock};
use super::limits::RuntimeLimits;
use super::memory::InstanceLimiter;

/// Bytes of guest output (stdout, stderr and `log` together) logged per instance; the rest
/// is dropped and a single warning says so.
const OUTPUT_BUDGET: usize = 64 * 1024;
/// Longest single log line kept; longer lines are cut.
const MAX_LINE: usize = 2048;

/// Identifies a component in log records.
#[derive(Clone)]
pub struct Origin {
    pub slot: &'static str,
    pub short_hash: Arc<str>,
}

/// Per-instance output budget shared by the streams and the `log` import.
#[derive(Clone)]
struct Budget(Arc<AtomicUsize>);

impl Budget {
    /// Take `n` bytes from the budget; false once it is spent (warns the first time).
    fn take(&self, n: usize, origin: &Origin) -> bool {
        let before = self.0.fetch_add(n, Ordering::Relaxed);
        if before + n <= OUTPUT_BUDGET {
            return true;
        }
        if before <= OUTPUT_BUDGET {
            tracing::warn!(slot = origin.slot, component = %origin.short_hash, "component output budget spent; further output is dropped");
        }
        false
    }
}

/// The data of one instance's store.
pub struct StoreData {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limits: InstanceLimiter,
    clock: VirtualClock,
    origin: Origin,
    budget: Budget,
}

impl StoreData {
    /// A sandboxed store for one instance of the component `origin`.
    pub fn new(origin: Origin, limits: &RuntimeLimits) -> StoreData {
        let budget = Budget(Arc::new(AtomicUsize::new(0)));
        let clock = VirtualClock::default();
        let mut wasi = WasiCtxBuilder::new();
        wasi.wall_clock(clock.clone())
            .monotonic_clock(clock.clone())
            .stdout(GuestOutput::new("stdout", origin.clone(), budget.clone()))
            .stderr(GuestOutput::new("stderr", origin.clone(), budget.clone()))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        StoreData {
            wasi: wasi.build(),
            table: ResourceTable::new(),
            limits: InstanceLimiter::new(limits.memory_limit_bytes()),
            clock,
            origin,
            budget,
        }
    }
}

impl StoreData {
    /// The view the virtual `monotonic-clock` works on.
    pub(super) fn clock_view(&mut self) -> ClockView<'_> {
        ClockView {
            clock: &self.clock,
            table: &mut self.table,
        }
    }
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl LogHost for StoreData {
    fn log(&mut self, level: Level, message: String) {
        if !self.budget.take(message.len(), &self.origin) {
            return;
        }
        emit(&self.origin, "log", level, truncate(&message));
    }
}

impl super::bindings::types::Host for StoreData {}

fn truncate(s: &str) -> &str {
    if s.len() <= MAX_LINE {
        return s;
    }
    let mut end = MAX_LINE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn emit(origin: &Origin, stream: &'static str, level: Level, message: &str) {
    let (slot, component) = (origin.slot, &*origin.short_hash);
    match level {
        Level::Trace => tracing::trace!(slot, component, stream, "{message}"),
        Level::Debug => tracing::debug!(slot, component, stream, "{message}"),
        Level::Info => tracing::info!(slot, component, stream, "{message}"),
        Level::Warn => tracing::warn!(slot, component, stream, "{message}"),
        Level::Error => tracing::error!(slot, component, stream, "{message}"),
    }
}

/// A guest stdout or stderr: complete lines go to `tracing` (stderr as warnings).
#[derive(Clone)]
struct GuestOutput {
    stream: &'static str,
    origin: Origin,
    budget: Budget,
}

impl GuestOutput {
    fn new(stream: &'static str, origin: Origin, budget: Budget) -> GuestOutput {
        GuestOutput {
            stream,
            origin,
            budget,
        }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(tokio::io::sink())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LineWriter {
            out: self.clone(),
            pending: Vec::new(),
        })
    }
}

/// Buffers a partial line until its newline arrives (bounded by [`MAX_LINE`]).
struct LineWriter {
    out: GuestOutput,
    pending: Vec<u8>,
}

impl LineWriter {
    fn flush_line(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let line = String::from_utf8_lossy(&self.pending);
        let level = if self.out.stream == "stderr" {
            Level::Warn
        } else {
            Level::Info
        };
        emit(
            &self.out.origin,
            self.out.stream,
            level,
            truncate(line.trim_end()),
        );
        self.pending.clear();
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.flush_line();
    }
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), StreamError> {
        if !self.out.budget.take(bytes.len(), &self.out.origin) {
            return Ok(());
        }
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            let room = MAX_LINE.saturating_sub(self.pending.len());
            self.pending
                .extend_from_slice(&chunk[..chunk.len().min(room)]);
            if chunk.ends_with(b"\n") {
                self.flush_line();
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}
