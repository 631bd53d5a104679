//! The content store: immutable blobs by sha256 digest.
//!
//! Layout under the store's directory:
//! - `blobs/sha256/<hex>`: committed blobs, never modified in place.
//! - `ingest/<unique>`: partial writes. Only [`Ingest::commit`] moves a file out of here, and
//!   only after its size and digest were verified and it was fsynced. Anything left here is a
//!   crash leftover and is removed when the store opens.
//!
//! Two writers of the same blob each write their own ingest file; whichever renames last
//! replaces identical bytes, so concurrent writers are safe without locks.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

use crate::atomic::sync_dir;
use crate::digest::Digest;
use crate::lease::{Lease, Leases};

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("blob {0} not found in the content store")]
    NotFound(Digest),
    #[error("blob digest mismatch: expected {expected}, got {actual}; the data is corrupt or truncated")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch { digest: String, expected: u64, actual: u64 },
    #[error("content store I/O error at {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ContentError + '_ {
    move |source| ContentError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
    leases: Leases,
    seq: AtomicU64,
}

impl ContentStore {
    /// Opens (creating if needed) the store under `dir` and removes crash leftovers from
    /// `ingest/`. Call once per process, before any writer starts.
    pub fn open(dir: &Path) -> Result<ContentStore, ContentError> {
        let blobs = dir.join("blobs/sha256");
        let ingest = dir.join("ingest");
        fs::create_dir_all(&blobs).map_err(io_at(&blobs))?;
        if ingest.exists() {
            fs::remove_dir_all(&ingest).map_err(io_at(&ingest))?;
        }
        fs::create_dir_all(&ingest).map_err(io_at(&ingest))?;
        Ok(ContentStore {
            blobs,
            ingest,
            leases: Leases::default(),
            seq: AtomicU64::new(0),
        })
    }

    pub fn leases(&self) -> &Leases {
        &self.leases
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    /// Whether the blob is present. Protects it with `lease` first, so a garbage collection
    /// that runs after this answer cannot remove it before the caller references it.
    pub fn has(&self, lease: &Lease, digest: &Digest) -> bool {
        lease.add(digest.clone());
        self.path(digest).exists()
    }

    /// Size of a committed blob.
    pub fn size(&self, digest: &Digest) -> Result<u64, ContentError> {
        let p = self.path(digest);
        match fs::metadata(&p) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ContentError::NotFound(digest.clone())),
            Err(e) => Err(io_at(&p)(e)),
        }
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File, ContentError> {
        let p = self.path(digest);
        File::open(&p).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                ContentError::NotFound(digest.clone())
            } else {
                io_at(&p)(e)
            }
        })
    }

    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, ContentError> {
        let mut buf = Vec::new();
        self.open_blob(digest)?
            .read_to_end(&mut buf)
            .map_err(io_at(&self.path(digest)))?;
        Ok(buf)
    }

    /// Starts a new ingest. Dropping it without commit removes the partial file.
    pub fn ingest(&self) -> Result<Ingest, ContentError> {
        let name = format!("{}-{}", std::process::id(), self.seq.fetch_add(1, Ordering::Relaxed));
        let path = self.ingest.join(name);
        let file = File::create(&path).map_err(io_at(&path))?;
        Ok(Ingest {
            file: Some(io::BufWriter::with_capacity(1 << 20, file)),
            path,
            hasher: Sha256::new(),
            written: 0,
        })
    }

    /// Stores a small blob held in memory (configs, manifests).
    pub fn write_blob(&self, lease: &Lease, bytes: &[u8]) -> Result<Digest, ContentError> {
        let digest = Digest::of(bytes);
        if self.has(lease, &digest) {
            return Ok(digest);
        }
        let mut ing = self.ingest()?;
        ing.write_all(bytes).map_err(io_at(&self.ingest))?;
        self.commit(ing, lease, Some(&digest), Some(bytes.len() as u64))
    }

    /// Verifies and publishes an ingest. With `expected`, a different digest is refused and
    /// nothing becomes visible. The digest is added to `lease` before it becomes visible.
    pub fn commit(
        &self,
        mut ing: Ingest,
        lease: &Lease,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<Digest, ContentError> {
        let actual = Digest::from_hasher(std::mem::take(&mut ing.hasher));
        if let Some(exp) = expected {
            if *exp != actual {
                return Err(ContentError::DigestMismatch {
                    expected: exp.clone(),
                    actual,
                });
            }
        }
        if let Some(size) = expected_size {
            if size != ing.written {
                return Err(ContentError::SizeMismatch {
                    digest: actual.to_string(),
                    expected: size,
                    actual: ing.written,
                });
            }
        }
        let writer = ing.file.take().expect("ingest committed twice"); // invariant: commit consumes
        let file = writer.into_inner().map_err(|e| io_at(&ing.path)(e.into_error()))?;
        file.sync_all().map_err(io_at(&ing.path))?;
        drop(file);
        lease.add(actual.clone());
        let dest = self.path(&actual);
        fs::rename(&ing.path, &dest).map_err(io_at(&dest))?;
        sync_dir(&self.blobs).map_err(io_at(&self.blobs))?;
        Ok(actual)
    }

    /// All committed digests.
    pub fn list(&self) -> Result<Vec<Digest>, ContentError> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.blobs).map_err(io_at(&self.blobs))? {
            let e = e.map_err(io_at(&self.blobs))?;
            if let Some(d) = e.file_name().to_str().and_then(|n| Digest::from_hex(n).ok()) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Removes a blob. Callers decide what is unreferenced; see [`Leases::collect`].
    pub fn delete(&self, digest: &Digest) -> Result<(), ContentError> {
        let p = self.path(digest);
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_at(&p)(e)),
        }
    }

    /// Re-hashes a committed blob and says whether it still matches its name.
    pub fn verify(&self, digest: &Digest) -> Result<bool, ContentError> {
        let mut f = self.open_blob(digest)?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).map_err(io_at(&self.path(digest)))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(Digest::from_hasher(h) == *digest)
    }
}

/// A blob being written. Implements [`Write`]; hashes as it goes.
pub struct Ingest {
    file: Option<io::BufWriter<File>>,
    path: PathBuf,
    hasher: Sha256,
    written: u64,
}

impl Ingest {
    pub fn written(&self) -> u64 {
        self.written
    }
}

impl Write for Ingest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("ingest already committed"))?;
        let n = f.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if self.file.is_some() || self.path.exists() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_verifies_and_cleans() {
        let dir = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(dir.path()).unwrap();
        let lease = cs.leases().lease();
        let d = cs.write_blob(&lease, b"hello").unwrap();
        assert_eq!(cs.read_blob(&d).unwrap(), b"hello");
        assert!(cs.verify(&d).unwrap());

        let mut ing = cs.ingest().unwrap();
        ing.write_all(b"hellO").unwrap();
        let err = cs.commit(ing, &lease, Some(&Digest::of(b"other")), None).unwrap_err();
        assert!(matches!(err, ContentError::DigestMismatch { .. }));
        assert_eq!(cs.list().unwrap(), vec![d.clone()]);
        assert_eq!(fs::read_dir(dir.path().join("ingest")).unwrap().count(), 0);

        let mut ing = cs.ingest().unwrap();
        ing.write_all(b"hell").unwrap();
        let err = cs.commit(ing, &lease, Some(&d), Some(5)).unwrap_err();
        assert!(matches!(err, ContentError::DigestMismatch { .. }));
    }

    #[test]
    fn leftovers_cleaned_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let cs = ContentStore::open(dir.path()).unwrap();
            let mut ing = cs.ingest().unwrap();
            ing.write_all(b"partial").unwrap();
            std::mem::forget(ing); // simulate a crash: no drop, no commit
        }
        assert_eq!(fs::read_dir(dir.path().join("ingest")).unwrap().count(), 1);
        let cs = ContentStore::open(dir.path()).unwrap();
        assert_eq!(fs::read_dir(dir.path().join("ingest")).unwrap().count(), 0);
        assert!(cs.list().unwrap().is_empty());
    }

    #[test]
    fn concurrent_writers_same_blob() {
        let dir = tempfile::tempdir().unwrap();
        let cs = std::sync::Arc::new(ContentStore::open(dir.path()).unwrap());
        let data = vec![7u8; 3 << 20];
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let cs = cs.clone();
                let data = data.clone();
                std::thread::spawn(move || {
                    let lease = cs.leases().lease();
                    let mut ing = cs.ingest().unwrap();
                    ing.write_all(&data).unwrap();
                    cs.commit(ing, &lease, None, None).unwrap()
                })
            })
            .collect();
        let ds: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(ds.windows(2).all(|w| w[0] == w[1]));
        assert_eq!(cs.list().unwrap().len(), 1);
        assert!(cs.verify(&ds[0]).unwrap());
    }
}
