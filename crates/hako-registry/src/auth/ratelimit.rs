//! Failed logins per client address: after `max` failures within `window`, the address is
//! refused (429) until the oldest failure leaves the window. A success clears the record.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct FailedLogins {
    max: u32,
    window: Duration,
    seen: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl FailedLogins {
    pub fn new(max: u32, window: Duration) -> Self {
        FailedLogins {
            max,
            window,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// None when the address may try; else how long it must wait.
    pub fn blocked(&self, ip: IpAddr) -> Option<Duration> {
        if self.max == 0 {
            return None;
        }
        let mut seen = self.seen.lock().expect("poisoned only by a panic"); // invariant
        let now = Instant::now();
        let q = seen.get_mut(&ip)?;
        while q.front().is_some_and(|t| now.duration_since(*t) > self.window) {
            q.pop_front();
        }
        if q.len() as u32 >= self.max {
            let oldest = *q.front().expect("non-empty"); // invariant: len >= max >= 1
            Some(
                self.window
                    .saturating_sub(now.duration_since(oldest))
                    .max(Duration::from_secs(1)),
            )
        } else {
            None
        }
    }

    pub fn failed(&self, ip: IpAddr) {
        let mut seen = self.seen.lock().expect("poisoned only by a panic"); // invariant
                                                                            // Bound the table: an address flood must not grow memory without end.
        if seen.len() > 100_000 {
            let now = Instant::now();
            seen.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) <= self.window));
        }
        seen.entry(ip).or_default().push_back(Instant::now());
    }

    pub fn succeeded(&self, ip: IpAddr) {
        self.seen.lock().expect("poisoned only by a panic").remove(&ip); // invariant
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_max_and_clears_on_success() {
        let l = FailedLogins::new(3, Duration::from_secs(60));
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        for _ in 0..3 {
            assert!(l.blocked(ip).is_none());
            l.failed(ip);
        }
        assert!(l.blocked(ip).is_some());
        assert!(l.blocked("127.0.0.8".parse().unwrap()).is_none());
        l.succeeded(ip);
        assert!(l.blocked(ip).is_none());
    }
}
