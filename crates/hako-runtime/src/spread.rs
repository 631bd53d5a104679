//! Puts a just-cloned container init on another CPU than its runtime's while both set up.
//!
//! After the clone the runtime makes the container's cgroups while the init makes its
//! namespaces and mounts: half a millisecond of work each, meant to overlap. A scheduler
//! that packs tasks onto busy CPUs (as hypervisor guests do, where waking an idle vCPU is
//! dear) queues the init behind its parent instead, and the two halves run one after the
//! other. Leaving the parent's CPU out of the init's affinity for that stretch makes the
//! overlap happen; the caller's own affinity is given back before the init joins its
//! cgroups, so whatever the cgroups then do to it (v1 cpuset resets it) is as without this.

use rustix::process::Pid;
use rustix::thread::{sched_getaffinity, sched_getcpu, sched_setaffinity, CpuSet};

/// The init's affinity to restore, when it was narrowed.
pub struct Spread {
    pid: Pid,
    mask: CpuSet,
}

impl Spread {
    /// Narrows `child`'s affinity to the caller's CPUs but the one it runs on; none when
    /// that leaves no CPU (a caller bound to one) or the call is refused.
    pub fn away_from_me(child: i32) -> Option<Spread> {
        let pid = Pid::from_raw(child)?;
        let mask = sched_getaffinity(None).ok()?;
        let mut others = mask;
        others.unset(sched_getcpu());
        if others.count() == 0 {
            return None;
        }
        sched_setaffinity(Some(pid), &others).ok()?;
        Some(Spread { pid, mask })
    }

    /// The init gets the affinity it was cloned with.
    pub fn restore(self) {
        let _ = sched_setaffinity(Some(self.pid), &self.mask);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_child_leaves_this_cpu_then_gets_its_affinity_back() {
        let mine = sched_getaffinity(None).unwrap();
        // SAFETY: the child only sleeps until it is killed below.
        let child = unsafe { libc::fork() };
        assert!(child >= 0, "fork: {}", std::io::Error::last_os_error());
        if child == 0 {
            loop {
                // SAFETY: waits for a signal; the parent kills this process.
                unsafe { libc::pause() };
            }
        }
        let pid = Pid::from_raw(child).unwrap();
        let spread = Spread::away_from_me(child);
        if mine.count() < 2 {
            assert!(spread.is_none(), "one CPU allowed: nowhere else to go");
        } else {
            let narrowed = sched_getaffinity(Some(pid)).unwrap();
            assert_eq!(narrowed.count(), mine.count() - 1);
            assert!((0..CpuSet::MAX_CPU).all(|c| !narrowed.is_set(c) || mine.is_set(c)));
            spread.expect("narrowed").restore();
        }
        assert_eq!(sched_getaffinity(Some(pid)).unwrap(), mine);
        // SAFETY: ending and reaping our own child.
        unsafe {
            libc::kill(child, libc::SIGKILL);
            libc::waitpid(child, std::ptr::null_mut(), 0);
        }
    }
}
