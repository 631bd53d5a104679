//! Garbage collection: mark every blob that a manifest of any repository references (its
//! config and layers, an index's child manifests, the manifests themselves), then sweep
//! the rest.
//!
//! Safe while the server runs, against pushes in flight:
//! - a blob younger than the grace period (written, or used as an existing blob by HEAD,
//!   mount or a manifest push, within it) is never swept, which covers uploads whose
//!   manifest has not arrived yet;
//! - each removal re-checks the blob's age under the exclusive `gc.lock`, while every use
//!   that can lead to a new reference holds it shared, so a client that was just told
//!   "this blob exists" can rely on it for the grace period.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use crate::digest::Digest;
use crate::error::RegistryError;
use crate::manifest::Manifest;
use crate::storage::Storage;

#[derive(Debug, Default, Clone)]
pub struct GcReport {
    pub manifests: usize,
    pub marked: usize,
    /// Blobs removed (or that would be, with dry run).
    pub swept: Vec<(Digest, u64)>,
    /// Unreferenced blobs kept because they are younger than the grace period.
    pub young: usize,
    pub uploads_expired: usize,
}

impl GcReport {
    pub fn bytes(&self) -> u64 {
        self.swept.iter().map(|(_, s)| s).sum()
    }
}

pub struct GcOptions {
    pub dry_run: bool,
    pub grace: Duration,
    pub upload_expiry: Duration,
}

/// Runs one collection. Blocking.
pub fn collect(storage: &dyn Storage, opts: &GcOptions) -> Result<GcReport, RegistryError> {
    let started = SystemTime::now();
    let cutoff = started.checked_sub(opts.grace).unwrap_or(SystemTime::UNIX_EPOCH);
    let mut report = GcReport::default();
    let mut keep: HashSet<Digest> = HashSet::new();
    for repo in storage.repositories()? {
        for d in storage.manifest_digests(&repo)? {
            report.manifests += 1;
            mark(storage, &d, &mut keep)?;
        }
    }
    report.marked = keep.len();
    for b in storage.blobs()? {
        if keep.contains(&b.digest) {
            continue;
        }
        if b.touched > cutoff {
            report.young += 1;
            continue;
        }
        if opts.dry_run || storage.sweep_blob(&b.digest, cutoff)? {
            report.swept.push((b.digest, b.size));
        } else {
            report.young += 1;
        }
    }
    if !opts.dry_run {
        report.uploads_expired = storage.purge_uploads(opts.upload_expiry)?;
    }
    Ok(report)
}

fn mark(storage: &dyn Storage, d: &Digest, keep: &mut HashSet<Digest>) -> Result<(), RegistryError> {
    if !keep.insert(d.clone()) {
        return Ok(());
    }
    let Some(bytes) = storage.read_blob_data(d)? else {
        return Ok(());
    };
    // Stored manifests were validated on push; one that no longer parses keeps only itself.
    let Ok(m) = Manifest::parse(&bytes, None) else {
        return Ok(());
    };
    for b in &m.blobs {
        keep.insert(b.digest.clone());
    }
    for c in &m.manifests {
        mark(storage, &c.digest, keep)?;
    }
    Ok(())
}
