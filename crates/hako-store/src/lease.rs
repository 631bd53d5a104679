//! Leases: in-memory protection of blobs (and snapshots) an operation has written or
//! found but not yet referenced from the metadata store.
//!
//! Garbage collection runs inside [`Leases::collect`], which holds the same lock that
//! [`Lease::add`] takes. An operation adds a digest to its lease *before* it checks for or
//! publishes the blob, so GC either ran completely before (and the operation then writes the
//! blob anew) or sees the digest as leased.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default, Clone)]
pub struct Leases {
    inner: Arc<LeaseTable>,
}

#[derive(Default)]
struct LeaseTable {
    next: AtomicU64,
    held: Mutex<HashMap<u64, HashSet<String>>>,
}

impl Leases {
    pub fn lease(&self) -> Lease {
        let id = self.inner.next.fetch_add(1, Ordering::Relaxed);
        self.inner.held.lock().unwrap().insert(id, HashSet::new()); // unwrap: poisoned only after a panic elsewhere
        Lease {
            id,
            table: self.inner.clone(),
        }
    }

    /// Runs `gc` with every leased key passed in, while no lease can grow.
    pub fn collect<R>(&self, gc: impl FnOnce(&HashSet<String>) -> R) -> R {
        let held = self.inner.held.lock().unwrap(); // unwrap: see above
        let all: HashSet<String> = held.values().flatten().cloned().collect();
        gc(&all)
    }
}

/// Released on drop.
pub struct Lease {
    id: u64,
    table: Arc<LeaseTable>,
}

impl Lease {
    /// Protects a key (a digest's string form, or a snapshot key) until the lease drops.
    pub fn add(&self, key: impl ToString) {
        let mut held = self.table.held.lock().unwrap(); // unwrap: see above
        held.entry(self.id).or_default().insert(key.to_string());
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Ok(mut held) = self.table.held.lock() {
            held.remove(&self.id);
        }
    }
}
