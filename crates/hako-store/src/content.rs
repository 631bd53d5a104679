//! The content store: immutable blobs by sha256 digest.
//!
//! Layout under the store's directory:
//! - `blobs/sha256/<hex>`: committed blobs, never modified in place.
//! - `ingest/<unique>`: partial writes. Only [`ContentStore::commit`] moves a file out of here,
//!   and only after its size and digest were verified and it was fsynced. Anything left here
//!   is a crash leftover and is removed when the store opens.
//! - `ingest/sha256-<hex>`: the partial download of a blob whose digest is known in advance
//!   ([`ContentStore::resume_ingest`]). It outlives its writer, a crash included, so that the
//!   next pull of the blob continues where this one stopped; see [`RESUMABLE_TTL`] for when
//!   it goes.
//!
//! Two writers of the same blob each write their own ingest file; whichever renames last
//! replaces identical bytes, so concurrent writers are safe without locks. A resumable ingest
//! is the one exception: it is shared by name, so its writer holds an flock on it.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

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

/// How long a resumable ingest is kept after its last write. A pull that failed (network
/// down, registry gone, daemon killed or host rebooted) is usually retried within hours, and
/// resuming saves re-downloading what is already here; a partial download nobody asks for
/// again is only garbage. So one older than this is removed when the store opens and by the
/// next resumable download (one being written right now is never touched: its writer holds
/// its lock, and its last write is recent).
pub const RESUMABLE_TTL: Duration = Duration::from_secs(24 * 60 * 60);

const RESUMABLE_PREFIX: &str = "sha256-";

pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
    leases: Leases,
    seq: AtomicU64,
}

impl ContentStore {
    /// Opens (creating if needed) the store under `dir` and removes crash leftovers from
    /// `ingest/`: every private ingest, and resumable ones older than [`RESUMABLE_TTL`].
    /// Call once per process, before any writer starts.
    pub fn open(dir: &Path) -> Result<ContentStore, ContentError> {
        let blobs = dir.join("blobs/sha256");
        let ingest = dir.join("ingest");
        fs::create_dir_all(&blobs).map_err(io_at(&blobs))?;
        fs::create_dir_all(&ingest).map_err(io_at(&ingest))?;
        let cs = ContentStore {
            blobs,
            ingest,
            leases: Leases::default(),
            seq: AtomicU64::new(0),
        };
        for e in fs::read_dir(&cs.ingest).map_err(io_at(&cs.ingest))? {
            let e = e.map_err(io_at(&cs.ingest))?;
            let p = e.path();
            if Self::resumable_name(&e.file_name()) {
                cs.remove_if_stale(&p)?;
            } else if e.file_type().map_err(io_at(&p))?.is_dir() {
                fs::remove_dir_all(&p).map_err(io_at(&p))?;
            } else {
                fs::remove_file(&p).map_err(io_at(&p))?;
            }
        }
        Ok(cs)
    }

    fn resumable_name(name: &std::ffi::OsStr) -> bool {
        name.to_str()
            .and_then(|n| n.strip_prefix(RESUMABLE_PREFIX))
            .is_some_and(|hex| Digest::from_hex(hex).is_ok())
    }

    /// Removes a resumable ingest last written more than [`RESUMABLE_TTL`] ago, unless a
    /// writer holds it.
    fn remove_if_stale(&self, p: &Path) -> Result<(), ContentError> {
        let old = |m: &fs::Metadata| {
            m.modified()
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > RESUMABLE_TTL)
        };
        match fs::metadata(p) {
            Ok(m) if old(&m) => {}
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_at(p)(e)),
        }
        let Some(f) = Self::lock_path(p, false)? else {
            return Ok(()); // being written (or gone)
        };
        // Unlinking under the lock: a writer that opened the path meanwhile sees that its
        // file is no longer the one named there once it gets the lock, and opens anew.
        if old(&f.metadata().map_err(io_at(p))?) {
            fs::remove_file(p).map_err(io_at(p))?;
        }
        Ok(())
    }

    /// Opens `p` (creating it with `create`) and takes its exclusive flock without waiting.
    /// None when another writer holds it, or (without `create`) when it does not exist.
    /// Retries when the file was renamed or removed between the open and the lock, so the
    /// locked file is always the one `p` names.
    fn lock_path(p: &Path, create: bool) -> Result<Option<File>, ContentError> {
        loop {
            let f = match fs::OpenOptions::new().read(true).write(true).create(create).open(p) {
                Ok(f) => f,
                Err(e) if !create && e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io_at(p)(e)),
            };
            match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
                Err(e) => return Err(io_at(p)(e.into())),
            }
            let held = f.metadata().map_err(io_at(p))?;
            match fs::metadata(p) {
                Ok(m) if m.dev() == held.dev() && m.ino() == held.ino() => return Ok(Some(f)),
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_at(p)(e)),
            }
        }
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
            resumable: false,
        })
    }

    /// The ingest for a download of `digest`, continuing what an earlier download of it left
    /// in `ingest/` (in this process or a crashed one): the kept bytes are read back, hashed
    /// and passed to `prefix` (whoever consumes the stream gets them first), and the next
    /// write appends. [`Ingest::written`] says where the download resumes. A kept file longer
    /// than `size` cannot be a prefix of the blob and is started again.
    ///
    /// Dropped without commit, the ingest stays for a later call; a commit that fails
    /// verification removes it. While another writer has this digest's ingest open, this
    /// returns a private, empty one instead (as [`ContentStore::ingest`]).
    pub fn resume_ingest(
        &self,
        digest: &Digest,
        size: u64,
        mut prefix: impl FnMut(&[u8]),
    ) -> Result<Ingest, ContentError> {
        self.purge_stale();
        let path = self.ingest.join(format!("{RESUMABLE_PREFIX}{}", digest.hex()));
        let Some(mut file) = Self::lock_path(&path, true)? else {
            return self.ingest();
        };
        let kept = file.metadata().map_err(io_at(&path))?.len();
        if kept > size {
            file.set_len(0).map_err(io_at(&path))?;
        }
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).map_err(io_at(&path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            prefix(&buf[..n]);
            written += n as u64;
        }
        // Reading left the offset at the end, where the next write goes.
        Ok(Ingest {
            file: Some(io::BufWriter::with_capacity(1 << 20, file)),
            path,
            hasher,
            written,
            resumable: true,
        })
    }

    /// Removes resumable ingests past [`RESUMABLE_TTL`]; a daemon that runs for months
    /// would otherwise keep them until its next start. Best effort: a failure here must not
    /// fail the download that triggered it.
    fn purge_stale(&self) {
        let Ok(entries) = fs::read_dir(&self.ingest) else {
            return;
        };
        for e in entries.flatten() {
            if Self::resumable_name(&e.file_name()) {
                if let Err(err) = self.remove_if_stale(&e.path()) {
                    tracing::warn!(error = %err, "removing a stale partial download");
                }
            }
        }
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
        // Bytes that fail verification must not be resumed from: drop removes them.
        ing.resumable = false;
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
    /// Kept on drop (see [`ContentStore::resume_ingest`]).
    resumable: bool,
}

impl Ingest {
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Drops everything written so far and starts again at byte 0 (a server that ignored a
    /// Range request sends the whole blob).
    pub fn restart(&mut self) -> io::Result<()> {
        let w = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("ingest already committed"))?;
        // The buffered bytes are discarded with the rest, never written.
        let (mut f, _) = w.into_parts();
        f.set_len(0)?;
        f.seek(SeekFrom::Start(0))?;
        self.file = Some(io::BufWriter::with_capacity(1 << 20, f));
        self.hasher = Sha256::new();
        self.written = 0;
        Ok(())
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
        if self.resumable {
            // Flush what arrived: the next download of this blob starts after it.
            if let Some(w) = self.file.take() {
                let _ = w.into_inner();
            }
            return;
        }
        if self.file.is_some() || self.path.exists() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

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
    fn resumable_ingest_survives_its_writer_and_verifies_the_whole_blob() {
        let dir = tempfile::tempdir().unwrap();
        let whole = b"hello, resumed world".to_vec();
        let d = Digest::of(&whole);
        {
            let cs = ContentStore::open(dir.path()).unwrap();
            let mut ing = cs
                .resume_ingest(&d, whole.len() as u64, |_| panic!("nothing kept yet"))
                .unwrap();
            ing.write_all(&whole[..7]).unwrap();
            drop(ing); // a failed download
            let mut seen = Vec::new();
            let mut ing = cs
                .resume_ingest(&d, whole.len() as u64, |b| seen.extend_from_slice(b))
                .unwrap();
            assert_eq!((ing.written(), &seen[..]), (7, &whole[..7]));
            ing.write_all(&whole[7..12]).unwrap();
            // A crash: the kernel closes the file (and releases its lock); the buffered
            // bytes are lost.
            let (f, _) = ing.file.take().unwrap().into_parts();
            drop(f);
        }
        // A new process: the kept bytes are there (what the crash lost is simply refetched).
        let cs = ContentStore::open(dir.path()).unwrap();
        let lease = cs.leases().lease();
        let mut seen = Vec::new();
        let mut ing = cs
            .resume_ingest(&d, whole.len() as u64, |b| seen.extend_from_slice(b))
            .unwrap();
        assert_eq!(ing.written(), 7);
        assert_eq!(seen, whole[..7]);
        // While it is open, another download of the blob gets a private ingest.
        let other = cs.resume_ingest(&d, whole.len() as u64, |_| panic!("private")).unwrap();
        assert_eq!(other.written(), 0);
        drop(other);
        ing.write_all(&whole[7..]).unwrap();
        assert_eq!(cs.commit(ing, &lease, Some(&d), Some(whole.len() as u64)).unwrap(), d);
        assert_eq!(cs.read_blob(&d).unwrap(), whole);
        assert_eq!(fs::read_dir(dir.path().join("ingest")).unwrap().count(), 0);
    }

    #[test]
    fn corrupt_or_oversized_resumable_ingests_are_not_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let cs = ContentStore::open(dir.path()).unwrap();
        let lease = cs.leases().lease();
        let d = Digest::of(b"abcdef");
        let mut ing = cs.resume_ingest(&d, 6, |_| {}).unwrap();
        ing.write_all(b"abXdef").unwrap();
        let err = cs.commit(ing, &lease, Some(&d), Some(6)).unwrap_err();
        assert!(matches!(err, ContentError::DigestMismatch { .. }));
        // The bad bytes are gone, not resumed from.
        assert_eq!(fs::read_dir(dir.path().join("ingest")).unwrap().count(), 0);
        let mut ing = cs.resume_ingest(&d, 6, |_| {}).unwrap();
        ing.write_all(b"abcdefgh").unwrap();
        drop(ing);
        // Longer than the blob: not a prefix of it.
        let mut ing = cs.resume_ingest(&d, 6, |_| panic!("not a prefix")).unwrap();
        assert_eq!(ing.written(), 0);
        ing.write_all(b"zz").unwrap();
        // A server that ignores Range sends everything again.
        ing.restart().unwrap();
        ing.write_all(b"abcdef").unwrap();
        assert_eq!(cs.commit(ing, &lease, Some(&d), Some(6)).unwrap(), d);
    }

    #[test]
    fn stale_resumable_ingests_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (fresh, stale, later) = (Digest::of(b"fresh"), Digest::of(b"stale"), Digest::of(b"later"));
        let age = |d: &Digest| {
            let f = File::options()
                .write(true)
                .open(dir.path().join("ingest").join(format!("{RESUMABLE_PREFIX}{}", d.hex())))
                .unwrap();
            f.set_modified(SystemTime::now() - RESUMABLE_TTL - Duration::from_secs(60))
                .unwrap();
        };
        {
            let cs = ContentStore::open(dir.path()).unwrap();
            for d in [&fresh, &stale, &later] {
                let mut ing = cs.resume_ingest(d, 5, |_| {}).unwrap();
                ing.write_all(b"fr").unwrap();
            }
            age(&stale);
        }
        let cs = ContentStore::open(dir.path()).unwrap();
        let names = || -> BTreeSet<String> {
            fs::read_dir(dir.path().join("ingest"))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        };
        let name = |d: &Digest| format!("{RESUMABLE_PREFIX}{}", d.hex());
        assert_eq!(names(), BTreeSet::from([name(&fresh), name(&later)]));
        // A long-running process drops them too, at its next resumable download; one being
        // written is left alone however old its last write.
        let held = cs.resume_ingest(&later, 5, |_| {}).unwrap();
        age(&fresh);
        age(&later);
        let ing = cs.resume_ingest(&stale, 5, |_| {}).unwrap();
        assert_eq!(names(), BTreeSet::from([name(&later), name(&stale)]));
        drop((held, ing));
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
