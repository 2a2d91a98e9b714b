//! Background emitters: the steady rate, bursts, and the periodic faults of the CLI.

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::{Control, SimConfig};

/// Starts every background task the config asks for.
pub(crate) fn spawn_all(
    config: &SimConfig,
    control: &Control,
    stop: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    if config.rate > 0.0 {
        tasks.push(tokio::spawn(steady(
            control.clone(),
            config.rate,
            stop.clone(),
        )));
    }
    if let (Some(every), n) = (config.burst_every, config.burst_size)
        && n > 0
    {
        tasks.push(periodic(every, stop.clone(), control.clone(), move |c| {
            c.emit(n);
        }));
    }
    let faults = &config.faults;
    if let Some(every) = faults.drop_every {
        tasks.push(periodic(
            every,
            stop.clone(),
            control.clone(),
            Control::drop_links,
        ));
    }
    if let Some(every) = faults.restart_every {
        tasks.push(periodic(every, stop.clone(), control.clone(), |c| {
            c.restart_session();
        }));
    }
    if let Some(after) = faults.stall_after {
        let (c, mut stop) = (control.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(after) => c.stall_links(),
                _ = stop.wait_for(|s| *s) => {}
            }
        }));
    }
    tasks
}

/// Emits `rate` events per second, in 10 ms (or slower) ticks, catching up at most 1 s.
async fn steady(control: Control, rate: f64, mut stop: watch::Receiver<bool>) {
    let tick = Duration::from_secs_f64((1.0 / rate).max(0.010));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let start = Instant::now();
    let mut emitted: u64 = 0;
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let due = (start.elapsed().as_secs_f64() * rate) as u64;
        let owed = due.saturating_sub(emitted).min(rate.ceil() as u64);
        if owed > 0 {
            control.emit(owed as usize);
        }
        emitted = due;
    }
}

fn periodic(
    every: Duration,
    mut stop: watch::Receiver<bool>,
    control: Control,
    act: impl Fn(&Control) + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                _ = interval.tick() => act(&control),
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    })
}
