//! The wasmtime engine shared by every slot: configuration, linker and epoch ticker.
//!
//! One [`Engine`] and one [`Linker`] serve all four worlds (their imports are the same: WASI
//! p2, sandboxed, with the virtual monotonic clock of [`super::clocks`] shadowing
//! wasmtime-wasi's, plus the host's `log`). Calls are bounded by epoch interruption, which is
//! far cheaper than fuel: a background thread advances the epoch every [`EPOCH_TICK`] and
//! each call sets its deadline in ticks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Instant;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine};

use super::bindings;
use super::clocks;
use super::limits::{EPOCH_TICK, RuntimeLimits};
use super::store_data::StoreData;

/// Engine, linker and limits; cheap to clone.
#[derive(Clone)]
pub struct PolicyRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<StoreData>,
    limits: RuntimeLimits,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl PolicyRuntime {
    /// Build the engine and linker and start the epoch ticker.
    pub fn new(limits: RuntimeLimits) -> anyhow::Result<PolicyRuntime> {
        let mut config = Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
        let engine = Engine::new(&config)?;

        let mut linker = Linker::<StoreData>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        clocks::add_to_linker(&mut linker, StoreData::clock_view)?;
        bindings::log::add_to_linker::<StoreData, HasSelf<StoreData>>(&mut linker, |s| s)?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_ticker(engine.clone(), ticker_stop.clone())?;
        Ok(PolicyRuntime {
            inner: Arc::new(Inner {
                engine,
                linker,
                limits,
                ticker_stop,
            }),
        })
    }

    /// The shared engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The shared linker (WASI p2 sandbox + `log`).
    pub fn linker(&self) -> &Linker<StoreData> {
        &self.inner.linker
    }

    /// The limits every instance and call runs under.
    pub fn limits(&self) -> &RuntimeLimits {
        &self.inner.limits
    }
}

/// Advance the epoch once per [`EPOCH_TICK`] of real time. A sleep on a loaded machine
/// overshoots, so each wake-up catches up on every tick that has passed: deadlines track
/// the clock, not the number of times the ticker thread got to run.
fn spawn_ticker(engine: Engine, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    thread::Builder::new()
        .name("policy-epoch".into())
        .spawn(move || {
            let started = Instant::now();
            let tick = EPOCH_TICK.as_micros().max(1);
            let mut done: u128 = 0;
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(EPOCH_TICK);
                let due = started.elapsed().as_micros() / tick;
                // Bounded catch-up: a ticker suspended for long does not spin.
                for _ in done..due.min(done + 1_000) {
                    engine.increment_epoch();
                }
                done = due;
            }
        })?;
    Ok(())
}
