//! Threads that run component calls on behalf of async code.
//!
//! wasmtime-wasi's synchronous bindings drive their host futures with `block_on`, which
//! must not run on a tokio worker thread. Calls from async code therefore hop to these
//! plain threads (a channel send and a wake-up: microseconds). The threads also keep a slow
//! component (bounded by its deadline) from stalling the async runtime.

use std::sync::{Arc, Mutex, mpsc};
use std::thread;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A small fixed pool of call threads.
#[derive(Clone)]
pub struct PolicyExecutor {
    jobs: mpsc::Sender<Job>,
}

/// The executor's threads are gone (only during process shutdown).
#[derive(Debug, thiserror::Error)]
#[error("policy executor stopped")]
pub struct ExecutorStopped;

impl PolicyExecutor {
    /// Start `threads` call threads (at least one).
    pub fn new(threads: usize) -> std::io::Result<PolicyExecutor> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            thread::Builder::new()
                .name(format!("policy-call-{i}"))
                .spawn(move || {
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })?;
        }
        Ok(PolicyExecutor { jobs: tx })
    }

    /// Run `f` on a call thread and await its result.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, ExecutorStopped> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .map_err(|_| ExecutorStopped)?;
        rx.await.map_err(|_| ExecutorStopped)
    }
}
