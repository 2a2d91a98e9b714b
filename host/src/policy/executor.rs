//! Threads that run component calls on behalf of async code.
//!
//! wasmtime-wasi's synchronous bindings drive their host futures with `block_on`, which
//! must not run on a tokio worker thread. Calls from async code therefore hop to these
//! plain threads (a channel send and a wake-up: microseconds). The threads also keep a slow
//! component (bounded by its deadline) from stalling the async runtime.
//!
//! A caller never waits on a call thread past its own deadline ([`PolicyExecutor::run_within`]):
//! a job still queued at the deadline is cancelled; a job still running is *abandoned*: its
//! thread leaves the pool when the job ends and a fresh thread takes its place at once, so
//! a stuck call never shrinks the pool. At most `max_abandoned` abandoned threads may be
//! outstanding; past that a stuck job is given up on by its caller but its thread is not
//! replaced (it rejoins the pool when the job ends).
//!
//! A job that panics is caught: its caller gets no result (and falls back), the thread
//! stays in the pool.
//!
//! Metrics: `gateway_policy_threads_abandoned_total` (threads replaced because a caller gave
//! up on their job), `gateway_policy_threads_abandoned` (abandoned threads still running).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

/// Job states.
const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const DONE: u8 = 2;
/// The caller gave up before the job started: skip it.
const CANCELLED: u8 = 3;
/// The caller gave up while the job ran and a replacement thread was started: the thread
/// running it leaves the pool when it ends.
const REPLACED: u8 = 4;

struct Job {
    run: Box<dyn FnOnce() + Send + 'static>,
    state: Arc<AtomicU8>,
}

struct Shared {
    jobs: Mutex<mpsc::Receiver<Job>>,
    /// Abandoned threads still running their job.
    abandoned: AtomicUsize,
    max_abandoned: usize,
    /// Names new threads.
    spawned: AtomicUsize,
}

/// A small pool of call threads.
#[derive(Clone)]
pub struct PolicyExecutor {
    jobs: mpsc::Sender<Job>,
    shared: Arc<Shared>,
}

/// The executor's threads are gone (only during process shutdown).
#[derive(Debug, thiserror::Error)]
#[error("policy executor stopped")]
pub struct ExecutorStopped;

/// Why [`PolicyExecutor::run_within`] has no result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    #[error("policy executor stopped")]
    Stopped,
    #[error("the call did not finish within the caller's deadline")]
    TimedOut,
}

impl PolicyExecutor {
    /// Start `threads` call threads (at least one); up to `max_abandoned` stuck threads
    /// may be replaced while they are still running.
    pub fn new(threads: usize, max_abandoned: usize) -> std::io::Result<PolicyExecutor> {
        let (tx, rx) = mpsc::channel::<Job>();
        let shared = Arc::new(Shared {
            jobs: Mutex::new(rx),
            abandoned: AtomicUsize::new(0),
            max_abandoned,
            spawned: AtomicUsize::new(0),
        });
        for _ in 0..threads.max(1) {
            spawn_worker(shared.clone())?;
        }
        Ok(PolicyExecutor { jobs: tx, shared })
    }

    /// Run `f` on a call thread and await its result, however long it takes.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, ExecutorStopped> {
        let (rx, _state) = self.submit(f).map_err(|_| ExecutorStopped)?;
        rx.await.map_err(|_| ExecutorStopped)
    }

    /// Run `f` on a call thread; give up after `deadline` (see the module docs).
    pub async fn run_within<R: Send + 'static>(
        &self,
        deadline: Duration,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, RunError> {
        let until = Instant::now() + deadline;
        self.run_until(f, || until).await
    }

    /// Run `f` on a call thread; give up once the instant `deadline()` returns has passed.
    /// `deadline` is asked again each time the last answer passes, so a job that reports
    /// progress can move it forward (it is never called on the call thread).
    pub async fn run_until<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
        mut deadline: impl FnMut() -> Instant,
    ) -> Result<R, RunError> {
        let (mut rx, state) = self.submit(f)?;
        loop {
            let until = deadline();
            if Instant::now() >= until {
                self.abandon(&state);
                return Err(RunError::TimedOut);
            }
            if let Ok(result) = tokio::time::timeout_at(until.into(), &mut rx).await {
                return result.map_err(|_| RunError::Stopped);
            }
        }
    }

    /// Abandoned threads still running.
    pub fn abandoned(&self) -> usize {
        self.shared.abandoned.load(Ordering::Acquire)
    }

    fn submit<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<(tokio::sync::oneshot::Receiver<R>, Arc<AtomicU8>), RunError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let state = Arc::new(AtomicU8::new(QUEUED));
        let job = Job {
            run: Box::new(move || {
                let _ = tx.send(f());
            }),
            state: state.clone(),
        };
        self.jobs.send(job).map_err(|_| RunError::Stopped)?;
        Ok((rx, state))
    }

    /// The caller gave up on the job whose state is `state`.
    fn abandon(&self, state: &AtomicU8) {
        if transition(state, QUEUED, CANCELLED) {
            return;
        }
        let shared = &self.shared;
        let reserved = shared
            .abandoned
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < shared.max_abandoned).then_some(n + 1)
            })
            .is_ok();
        if !reserved {
            tracing::error!(
                max = shared.max_abandoned,
                "a component call is stuck and too many call threads are already abandoned; not replacing it"
            );
            return;
        }
        if !transition(state, RUNNING, REPLACED) {
            // It finished meanwhile: nothing to replace.
            shared.abandoned.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        metrics::counter!("gateway_policy_threads_abandoned_total").increment(1);
        metrics::gauge!("gateway_policy_threads_abandoned").increment(1.0);
        tracing::warn!(
            "a component call outlived its caller's deadline; its call thread is abandoned and replaced"
        );
        if let Err(e) = spawn_worker(shared.clone()) {
            tracing::error!(error = %e, "could not start a replacement call thread");
        }
    }
}

fn transition(state: &AtomicU8, from: u8, to: u8) -> bool {
    state
        .compare_exchange(from, to, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
}

fn spawn_worker(shared: Arc<Shared>) -> std::io::Result<()> {
    let n = shared.spawned.fetch_add(1, Ordering::Relaxed);
    thread::Builder::new()
        .name(format!("policy-call-{n}"))
        .spawn(move || worker(&shared))?;
    Ok(())
}

fn worker(shared: &Shared) {
    loop {
        let job = match shared.jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        if !transition(&job.state, QUEUED, RUNNING) {
            continue;
        }
        // A panic ends the job (its caller sees the executor's answer dropped and falls
        // back), never the thread.
        if catch_unwind(AssertUnwindSafe(job.run)).is_err() {
            tracing::error!("a policy call job panicked; the call thread carries on");
        }
        if !transition(&job.state, RUNNING, DONE) {
            // Abandoned and replaced while it ran: this thread is surplus now.
            shared.abandoned.fetch_sub(1, Ordering::AcqRel);
            metrics::gauge!("gateway_policy_threads_abandoned").decrement(1.0);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    }

    #[test]
    fn a_stuck_job_is_abandoned_and_its_thread_replaced() {
        runtime().block_on(async {
            let executor = PolicyExecutor::new(1, 4).expect("threads");
            let (release, stuck) = std::sync::mpsc::channel::<()>();
            let started = Instant::now();
            let r = executor
                .run_within(Duration::from_millis(100), move || {
                    let _ = stuck.recv();
                })
                .await;
            assert_eq!(r, Err(RunError::TimedOut));
            assert!(started.elapsed() < Duration::from_secs(5));
            assert_eq!(executor.abandoned(), 1);
            // The only original thread is stuck, yet the pool still runs jobs.
            let v = executor
                .run_within(Duration::from_secs(10), || 42)
                .await
                .expect("the replacement thread answers");
            assert_eq!(v, 42);
            // Once the stuck job ends, its thread leaves and the count drops.
            let _ = release.send(());
            let deadline = Instant::now() + Duration::from_secs(10);
            while executor.abandoned() != 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!(executor.abandoned(), 0);
            assert_eq!(executor.run(|| 7).await.expect("still serving"), 7);
        });
    }

    #[test]
    fn a_panicking_job_does_not_take_its_thread() {
        runtime().block_on(async {
            let executor = PolicyExecutor::new(1, 1).expect("threads");
            let r: Result<(), _> = executor
                .run_within(Duration::from_secs(10), || panic!("deliberate"))
                .await;
            assert_eq!(r, Err(RunError::Stopped));
            let v = executor
                .run_within(Duration::from_secs(10), || 3)
                .await
                .expect("the same thread still serves");
            assert_eq!(v, 3);
            assert_eq!(executor.abandoned(), 0);
        });
    }

    #[test]
    fn abandoned_threads_are_capped() {
        runtime().block_on(async {
            let executor = PolicyExecutor::new(1, 1).expect("threads");
            let (release, stuck) = std::sync::mpsc::channel::<()>();
            let stuck = Arc::new(Mutex::new(stuck));
            for _ in 0..3 {
                let stuck = stuck.clone();
                let r = executor
                    .run_within(Duration::from_millis(50), move || {
                        if let Ok(rx) = stuck.lock() {
                            let _ = rx.recv();
                        }
                    })
                    .await;
                assert_eq!(r, Err(RunError::TimedOut));
            }
            assert_eq!(executor.abandoned(), 1, "never more than the cap");
            for _ in 0..3 {
                let _ = release.send(());
            }
            let v = executor
                .run_within(Duration::from_secs(10), || 1)
                .await
                .expect("serving again");
            assert_eq!(v, 1);
        });
    }
}
