//! Unpacking layer streams into per-layer snapshot directories, in one pass with hashing.
//!
//! `snapshots/<chain id hex>/` holds one layer's own files (with overlayfs whiteouts), the
//! lower directory overlayfs stacks for it. A layer unpacks into `snapshots/.tmp-*` first
//! and is renamed into place only when complete, so a crash never leaves a half layer under
//! its name. Two unpacks of the same layer race harmlessly: the loser drops its copy.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

use hako_store::{Digest, Lease};

use crate::apply::{apply_layer, ApplyError};
use crate::model::chain_ids;

pub struct Snapshots {
    dir: PathBuf,
}

/// Process-wide, so two `Snapshots` on one directory never pick the same staging name.
static STAGING_SEQ: AtomicU64 = AtomicU64::new(0);

/// The result of unpacking one layer.
#[derive(Debug, Clone)]
pub struct Unpacked {
    pub diff_id: Digest,
    pub chain_id: Digest,
    /// Sum of regular file sizes.
    pub size: u64,
    /// Bytes of the uncompressed tar.
    pub tar_size: u64,
}

/// Snapshot keys in leases are prefixed so they never collide with blob digests.
pub fn lease_key(chain: &Digest) -> String {
    format!("snapshot:{chain}")
}

impl Snapshots {
    /// Opens the snapshot directory and removes unfinished unpacks left by a crash.
    pub fn open(dir: &Path) -> io::Result<Snapshots> {
        fs::create_dir_all(dir)?;
        for e in fs::read_dir(dir)? {
            let e = e?;
            if e.file_name().to_string_lossy().starts_with(".tmp-") {
                fs::remove_dir_all(e.path())?;
            }
        }
        Ok(Snapshots { dir: dir.to_path_buf() })
    }

    pub fn path(&self, chain: &Digest) -> PathBuf {
        self.dir.join(chain.hex())
    }

    pub fn exists(&self, lease: &Lease, chain: &Digest) -> bool {
        lease.add(lease_key(chain));
        self.path(chain).is_dir()
    }

    /// Unpacks an uncompressed layer tar on top of `parent` (a chain ID), hashing it on the
    /// way. With `expected_diff_id`, a layer whose content differs is refused and dropped.
    pub fn unpack<R: Read>(
        &self,
        lease: &Lease,
        tar: R,
        parent: Option<&Digest>,
        expected_diff_id: Option<&Digest>,
    ) -> Result<Unpacked, UnpackError> {
        let staging = self.dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            STAGING_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir(&staging).map_err(UnpackError::Io)?;
        let guard = RemoveOnDrop(Some(staging.clone()));
        let mut hr = HashingReader::new(tar);
        let stats = apply_layer(&mut hr, &staging)?;
        // The tar's end-of-archive padding belongs to the diff ID too.
        io::copy(&mut hr, &mut io::sink()).map_err(UnpackError::Io)?;
        let (diff_id, tar_size) = hr.finish();
        if let Some(exp) = expected_diff_id {
            if *exp != diff_id {
                return Err(UnpackError::DiffIdMismatch {
                    expected: exp.clone(),
                    actual: diff_id,
                });
            }
        }
        let chain_id = match parent {
            None => diff_id.clone(),
            Some(p) => chain_ids(&[p.clone(), diff_id.clone()])[1].clone(),
        };
        lease.add(lease_key(&chain_id));
        let dest = self.path(&chain_id);
        match fs::rename(&staging, &dest) {
            Ok(()) => {
                let mut g = guard;
                g.0 = None;
            }
            // Someone unpacked the same layer first; ours is dropped by the guard.
            Err(e) if dest.is_dir() && is_exists_error(&e) => {}
            Err(e) => return Err(UnpackError::Io(e)),
        }
        Ok(Unpacked {
            diff_id,
            chain_id,
            size: stats.size,
            tar_size,
        })
    }

    /// Makes `dir`, an overlay upper directory whose layer tar hashes to `diff_id`, the
    /// snapshot of that layer on `parent` by renaming it into place instead of unpacking the
    /// tar again (a build step's container has just written those very files). Whatever overlay
    /// kept there for itself goes first: the empty mount points of the per-container files
    /// (the layer leaves them out) and its private xattrs other than the opaque mark. Nothing
    /// may write to `dir` any more. Returns the chain ID; None when `dir` is on another
    /// filesystem (the caller unpacks the tar instead).
    pub fn adopt(
        &self,
        lease: &Lease,
        dir: &Path,
        diff_id: &Digest,
        parent: Option<&Digest>,
    ) -> io::Result<Option<(Digest, u64)>> {
        let chain_id = match parent {
            None => diff_id.clone(),
            Some(p) => chain_ids(&[p.clone(), diff_id.clone()])[1].clone(),
        };
        lease.add(lease_key(&chain_id));
        let dest = self.path(&chain_id);
        for f in crate::diff::MOUNT_POINTS {
            let p = dir.join(f);
            if fs::symlink_metadata(&p).is_ok_and(|m| m.is_file() && m.len() == 0) {
                fs::remove_file(&p)?;
            }
        }
        let size = scrub(dir)?;
        if dest.is_dir() {
            return Ok(Some((chain_id, size)));
        }
        match fs::rename(dir, &dest) {
            Ok(()) => Ok(Some((chain_id, size))),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) => Ok(None),
            // Someone made the same layer first: theirs stays.
            Err(e) if dest.is_dir() && is_exists_error(&e) => Ok(Some((chain_id, size))),
            Err(e) => Err(e),
        }
    }

    /// All snapshot keys present on disk.
    pub fn list(&self) -> io::Result<Vec<Digest>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir)? {
            if let Some(d) = e?.file_name().to_str().and_then(|n| Digest::from_hex(n).ok()) {
                out.push(d);
            }
        }
        Ok(out)
    }

    pub fn remove(&self, chain: &Digest) -> io::Result<()> {
        // Rename first so a crash mid-removal leaves a `.tmp-` leftover, not a partial layer.
        let p = self.path(chain);
        let doomed = self.dir.join(format!(".tmp-rm-{}", chain.hex()));
        match fs::rename(&p, &doomed) {
            Ok(()) => fs::remove_dir_all(&doomed),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("layer content {actual} does not match the image config's diff_id {expected}; the archive is corrupt or was altered")]
    DiffIdMismatch { expected: Digest, actual: Digest },
    #[error("unpacking layer: {0}")]
    Io(io::Error),
}

/// rename(2) onto a non-empty directory fails with EEXIST or ENOTEMPTY.
fn is_exists_error(e: &io::Error) -> bool {
    let code = e.raw_os_error();
    code == Some(rustix::io::Errno::EXIST.raw_os_error()) || code == Some(rustix::io::Errno::NOTEMPTY.raw_os_error())
}

struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_dir_all(p);
        }
    }
}

/// Hashes and counts what passes through.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
    pub fn finish(self) -> (Digest, u64) {
        (Digest::from_hasher(self.hasher), self.count)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Removes overlay's private xattrs (origin, impure...) below `dir`, keeping the opaque mark
/// layers carry; returns the sum of regular file sizes.
fn scrub(dir: &Path) -> io::Result<u64> {
    let mut size = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        strip_overlay_xattrs(&d)?;
        for e in fs::read_dir(&d)? {
            let e = e?;
            let ft = e.file_type()?;
            let p = e.path();
            if ft.is_dir() {
                todo.push(p);
                continue;
            }
            if ft.is_file() {
                size += e.metadata()?.len();
            }
            if !ft.is_symlink() {
                strip_overlay_xattrs(&p)?;
            }
        }
    }
    Ok(size)
}

fn strip_overlay_xattrs(p: &Path) -> io::Result<()> {
    let mut buf = vec![0u8; 4096];
    let n = match rustix::fs::llistxattr(p, &mut buf) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for name in buf[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if name.starts_with(b"trusted.overlay.") && name != b"trusted.overlay.opaque" {
            use std::os::unix::ffi::OsStrExt;
            rustix::fs::lremovexattr(p, std::ffi::OsStr::from_bytes(name))?;
        }
    }
    Ok(())
}
