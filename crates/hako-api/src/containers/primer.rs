//! Keeps cgroup migrations cheap while containers are being started.
//!
//! Every container start moves its init into the container's cgroups, and a move takes the
//! kernel's cgroup threadgroup lock, whose write side first waits for a full RCU grace period
//! unless one has just passed (7-16 ms measured on this kind of VM: the largest single cost
//! of `run`). Once a move has happened, the next ones within about a grace period are quick.
//! So from a container's create, through its start and a little after, a thread of the
//! daemon makes a no-op move (its own thread into the cgroup it is in) every few
//! milliseconds: the monitor's real move then finds the lock ready, and a burst of starts
//! (compose, CI) pays the grace period once, not per container. Idle, the thread sleeps.
//! While it runs, forks and exits on the host take the lock's slower read path; it stops
//! 100 ms after the last start.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long after the last create or start the moves go on.
const LINGER: Duration = Duration::from_millis(100);
/// Well inside a grace period.
const EVERY: Duration = Duration::from_millis(2);

pub struct Primer {
    last: Arc<(Mutex<Option<Instant>>, Condvar)>,
}

impl Primer {
    pub fn start() -> Primer {
        let last: Arc<(Mutex<Option<Instant>>, Condvar)> = Arc::new((Mutex::new(None), Condvar::new()));
        let shared = last.clone();
        let spawned = std::thread::Builder::new()
            .name("cgroup-primer".into())
            .spawn(move || run(&shared));
        if let Err(e) = spawned {
            tracing::warn!("no cgroup primer thread ({e}): container starts wait longer");
        }
        Primer { last }
    }

    /// A container is being created or started.
    pub fn touch(&self) {
        let (m, cv) = &*self.last;
        *m.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        cv.notify_one();
    }
}

fn run(last: &(Mutex<Option<Instant>>, Condvar)) {
    let (m, cv) = last;
    loop {
        let mut g = m.lock().unwrap_or_else(|p| p.into_inner());
        while g.is_none_or(|t| t.elapsed() >= LINGER) {
            g = cv.wait(g).unwrap_or_else(|p| p.into_inner());
        }
        drop(g);
        hako_runtime::cgroups::prime_migration();
        std::thread::sleep(EVERY);
    }
}
