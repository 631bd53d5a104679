//! The filesystem storage, under the registry's `--root`:
//!
//! - `blobs/<alg>/<hex>`: committed blobs (layers, configs, manifests), shared by all
//!   repositories, written only by rename after verification and fsync.
//! - `repositories/<name>/_layers/<alg>/<hex>`: the blob is part of the repository.
//! - `repositories/<name>/_manifests/revisions/<alg>/<hex>`: a manifest of the repository;
//!   the file holds its media type.
//! - `repositories/<name>/_manifests/tags/<tag>`: the digest the tag points to.
//! - `repositories/<name>/_referrers/<alg>/<subject hex>/<alg>-<hex>`: the descriptor of a
//!   manifest whose `subject` is that digest.
//! - `uploads/<id>/{info,data}`: upload sessions; they survive restarts and expire.
//! - `gc.lock`: flock shared by every use that may lead to a new reference to an existing
//!   blob, exclusive while GC removes one, so GC never removes a blob a push just relied on.
//!
//! Every file that becomes visible is written as temp -> fsync -> rename -> fsync dir, so a
//! crash leaves the old state or the new one.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use super::{BlobEntry, BlobRead, Reference, Result, Storage, StoredManifest};
use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::{Code, RegistryError};
use crate::manifest::{self, Manifest};
use crate::name::valid_name;

const COPY_BUF: usize = 1 << 20;

pub struct FsStorage {
    root: PathBuf,
    /// In-memory running hashes of sessions, so finishing one does not re-read it. Lost on
    /// restart; then the data file is hashed again.
    sessions: Mutex<HashMap<String, Arc<Mutex<Session>>>>,
    seq: AtomicU64,
}

#[derive(Default)]
struct Session {
    /// A sha256 of the first `hashed` bytes of the data file.
    hasher: Option<(Hasher, u64)>,
}

fn not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

impl FsStorage {
    /// Opens (creating) the storage under `root`. Upload sessions are kept.
    pub fn open(root: &Path) -> Result<FsStorage> {
        for d in ["blobs/sha256", "blobs/sha512", "repositories", "uploads", "tmp"] {
            fs::create_dir_all(root.join(d))?;
        }
        // tmp/ holds only files being written; anything there is a crash leftover.
        for e in fs::read_dir(root.join("tmp"))? {
            let _ = fs::remove_file(e?.path());
        }
        Ok(FsStorage {
            root: root.to_path_buf(),
            sessions: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs").join(d.algorithm().name()).join(d.hex())
    }

    fn repo_dir(&self, repo: &str) -> Result<PathBuf> {
        // Names were validated by the router; checked again because a bad one would escape.
        if !valid_name(repo) {
            return Err(RegistryError::new(
                Code::NameInvalid,
                format!("invalid repository name {repo:?}"),
            ));
        }
        Ok(self.root.join("repositories").join(repo))
    }

    fn layer_link(&self, repo: &str, d: &Digest) -> Result<PathBuf> {
        Ok(self
            .repo_dir(repo)?
            .join("_layers")
            .join(d.algorithm().name())
            .join(d.hex()))
    }

    fn revision_link(&self, repo: &str, d: &Digest) -> Result<PathBuf> {
        Ok(self
            .repo_dir(repo)?
            .join("_manifests/revisions")
            .join(d.algorithm().name())
            .join(d.hex()))
    }

    fn tag_path(&self, repo: &str, tag: &str) -> Result<PathBuf> {
        if !crate::name::valid_tag(tag) {
            return Err(crate::name::tag_invalid(tag));
        }
        Ok(self.repo_dir(repo)?.join("_manifests/tags").join(tag))
    }

    fn referrers_dir(&self, repo: &str, subject: &Digest) -> Result<PathBuf> {
        Ok(self
            .repo_dir(repo)?
            .join("_referrers")
            .join(subject.algorithm().name())
            .join(subject.hex()))
    }

    fn upload_dir(&self, repo: &str, id: &str) -> Result<Option<PathBuf>> {
        // IDs are 32 lower-case hex characters; anything else is not ours (and not a path).
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Ok(None);
        }
        let dir = self.root.join("uploads").join(id);
        match fs::read(dir.join("info")) {
            Ok(b) => {
                let info: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
                if info.get("repo").and_then(Value::as_str) == Some(repo) {
                    Ok(Some(dir))
                } else {
                    Ok(None)
                }
            }
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes `bytes` to `path` durably: temp -> fsync -> rename -> fsync dir.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let dir = path.parent().expect("storage paths have parents"); // invariant: built under root
        fs::create_dir_all(dir)?;
        let tmp = self.tmp_path();
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        if let Err(e) = fs::rename(&tmp, path) {
            let _ = fs::remove_file(&tmp);
            return Err(e.into());
        }
        File::open(dir)?.sync_all()?;
        Ok(())
    }

    fn tmp_path(&self) -> PathBuf {
        self.root.join("tmp").join(format!(
            "{}-{}",
            std::process::id(),
            self.seq.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// Runs `f` holding the GC lock shared (or exclusive for GC itself). Each call opens its
    /// own descriptor: flock locks belong to the open file, and threads must not share one.
    fn with_gc_lock<T>(&self, exclusive: bool, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join("gc.lock"))?;
        let op = if exclusive {
            rustix::fs::FlockOperation::LockExclusive
        } else {
            rustix::fs::FlockOperation::LockShared
        };
        rustix::fs::flock(&lock, op).map_err(io::Error::from)?;
        let r = f();
        drop(lock); // closing releases the lock
        r
    }

    /// The blob's size if its data exists, refreshing its GC timestamp.
    fn touch_blob(&self, d: &Digest) -> Result<Option<u64>> {
        let p = self.blob_path(d);
        match fs::metadata(&p) {
            Ok(m) => {
                let now = rustix::fs::Timestamps {
                    last_access: rustix::fs::Timespec {
                        tv_sec: 0,
                        tv_nsec: rustix::fs::UTIME_OMIT,
                    },
                    last_modification: rustix::fs::Timespec {
                        tv_sec: 0,
                        tv_nsec: rustix::fs::UTIME_NOW,
                    },
                };
                // The blob may vanish between stat and utimensat only through GC, which the
                // caller's shared lock excludes.
                rustix::fs::utimensat(rustix::fs::CWD, &p, &now, rustix::fs::AtFlags::empty())
                    .map_err(io::Error::from)?;
                Ok(Some(m.len()))
            }
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn linked(&self, link: &Path) -> bool {
        link.is_file()
    }

    /// Links a blob into a repository: an empty file whose name is the digest. Its creation
    /// is made durable by fsyncing the directory; it has no content to lose.
    fn link(&self, link: &Path, _d: &Digest) -> Result<()> {
        if self.linked(link) {
            return Ok(());
        }
        let dir = link.parent().expect("links have parents"); // invariant: built under root
        fs::create_dir_all(dir)?;
        match OpenOptions::new().write(true).create_new(true).open(link) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        File::open(dir)?.sync_all()?;
        Ok(())
    }

    fn session(&self, id: &str) -> Arc<Mutex<Session>> {
        let mut s = self.sessions.lock().expect("session table poisoned only by a panic"); // invariant
        s.entry(id.to_string()).or_default().clone()
    }

    fn forget_session(&self, id: &str) {
        self.sessions
            .lock()
            .expect("session table poisoned only by a panic")
            .remove(id); // invariant
    }

    /// Publishes a verified file as a blob; an existing blob with the same digest wins.
    fn publish(&self, file: &Path, d: &Digest) -> Result<()> {
        let dest = self.blob_path(d);
        if dest.exists() {
            fs::remove_file(file)?;
            return Ok(());
        }
        fs::rename(file, &dest)?;
        File::open(dest.parent().expect("blob dir"))?.sync_all()?; // invariant: under blobs/
        Ok(())
    }

    fn hash_file(path: &Path, alg: Algorithm) -> Result<(Digest, u64)> {
        let mut f = File::open(path)?;
        let mut h = alg.hasher();
        let mut buf = vec![0u8; COPY_BUF];
        let mut n = 0u64;
        loop {
            let k = f.read(&mut buf)?;
            if k == 0 {
                break;
            }
            h.update(&buf[..k]);
            n += k as u64;
        }
        Ok((h.finish(), n))
    }

    fn walk_repos(&self, dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<()> {
        let rd = match fs::read_dir(dir) {
            Ok(r) => r,
            Err(e) if not_found(&e) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let mut is_repo = false;
        for e in rd {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('_') {
                is_repo = true;
            } else if e.file_type()?.is_dir() {
                let child = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}/{name}")
                };
                self.walk_repos(&e.path(), &child, out)?;
            }
        }
        if is_repo && !prefix.is_empty() {
            out.push(prefix.to_string());
        }
        Ok(())
    }

    fn list_dir(dir: &Path) -> Result<Vec<String>> {
        match fs::read_dir(dir) {
            Ok(rd) => {
                let mut v = Vec::new();
                for e in rd {
                    v.push(e?.file_name().to_string_lossy().into_owned());
                }
                Ok(v)
            }
            Err(e) if not_found(&e) => Ok(vec![]),
            Err(e) => Err(e.into()),
        }
    }

    /// Sessions directory entries with their last activity.
    fn sessions_on_disk(&self) -> Result<Vec<(String, SystemTime)>> {
        let mut out = Vec::new();
        for name in Self::list_dir(&self.root.join("uploads"))? {
            let dir = self.root.join("uploads").join(&name);
            let t = fs::metadata(dir.join("data"))
                .or_else(|_| fs::metadata(&dir))
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            out.push((name, t));
        }
        Ok(out)
    }
}

/// Copies `src` to `dst` while hashing; fails on a read error. Returns the bytes copied.
fn copy_hashing(
    src: &mut dyn Read,
    dst: &mut File,
    mut hasher: Option<&mut Hasher>,
    limit: Option<u64>,
) -> io::Result<u64> {
    let mut buf = vec![0u8; COPY_BUF];
    let mut n = 0u64;
    loop {
        let want = match limit {
            Some(l) if l - n < buf.len() as u64 => (l - n) as usize,
            _ => buf.len(),
        };
        if want == 0 {
            // With a declared length, more data than declared is an error.
            let mut one = [0u8; 1];
            if src.read(&mut one)? != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "more data than Content-Length/Content-Range",
                ));
            }
            break;
        }
        let k = src.read(&mut buf[..want])?;
        if k == 0 {
            break;
        }
        dst.write_all(&buf[..k])?;
        if let Some(h) = hasher.as_deref_mut() {
            h.update(&buf[..k]);
        }
        n += k as u64;
    }
    Ok(n)
}

impl Storage for FsStorage {
    fn stat_blob(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        let link = self.layer_link(repo, digest)?;
        if !self.linked(&link) {
            return Ok(None);
        }
        self.with_gc_lock(false, || self.touch_blob(digest))
    }

    fn open_blob(&self, repo: &str, digest: &Digest) -> Result<Option<(Box<dyn BlobRead>, u64)>> {
        if !self.linked(&self.layer_link(repo, digest)?) {
            return Ok(None);
        }
        match File::open(self.blob_path(digest)) {
            Ok(f) => {
                let size = f.metadata()?.len();
                Ok(Some((Box::new(f), size)))
            }
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn delete_blob(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let link = self.layer_link(repo, digest)?;
        match fs::remove_file(&link) {
            Ok(()) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn mount_blob(&self, from: &str, to: &str, digest: &Digest) -> Result<bool> {
        if !self.linked(&self.layer_link(from, digest)?) {
            return Ok(false);
        }
        let to_link = self.layer_link(to, digest)?;
        self.with_gc_lock(false, || match self.touch_blob(digest)? {
            Some(_) => self.link(&to_link, digest).map(|()| true),
            None => Ok(false),
        })
    }

    fn start_upload(&self, repo: &str) -> Result<String> {
        self.repo_dir(repo)?;
        let mut id = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id)
            .map_err(|_| RegistryError::internal("the system's random source failed"))?;
        let id = hex::encode(id);
        let dir = self.root.join("uploads").join(&id);
        fs::create_dir_all(&dir)?;
        File::create(dir.join("data"))?;
        let started = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        // `info` last: a session without it is incomplete and invisible, and purged. It is
        // not fsynced: a session lost in a crash is one the client starts again (404 on
        // its next request), which the spec allows; a restart keeps it.
        let tmp = self.tmp_path();
        fs::write(&tmp, json!({"repo": repo, "started": started}).to_string())?;
        fs::rename(&tmp, dir.join("info"))?;
        self.session(&id).lock().expect("poisoned only by a panic").hasher = Some((Algorithm::Sha256.hasher(), 0)); // invariant
        Ok(id)
    }

    fn upload_size(&self, repo: &str, id: &str) -> Result<Option<u64>> {
        match self.upload_dir(repo, id)? {
            Some(dir) => Ok(Some(fs::metadata(dir.join("data"))?.len())),
            None => Ok(None),
        }
    }

    fn append_upload(
        &self,
        repo: &str,
        id: &str,
        offset: Option<u64>,
        len: Option<u64>,
        data: &mut dyn Read,
    ) -> Result<u64> {
        let unknown = || RegistryError::new(Code::BlobUploadUnknown, format!("upload {id} is unknown or expired"));
        let dir = self.upload_dir(repo, id)?.ok_or_else(unknown)?;
        let session = self.session(id);
        let mut s = session.lock().expect("poisoned only by a panic"); // invariant
                                                                       // The session may have ended while we waited for its lock.
        let mut f = OpenOptions::new().write(true).open(dir.join("data")).map_err(|e| {
            if not_found(&e) {
                unknown()
            } else {
                e.into()
            }
        })?;
        let size = f.seek(SeekFrom::End(0))?;
        if let Some(o) = offset {
            if o != size {
                let range = if size == 0 {
                    "0-0".to_string()
                } else {
                    format!("0-{}", size - 1)
                };
                return Err(RegistryError::new(
                    Code::RangeInvalid,
                    format!("chunk starts at byte {o} but the upload has {size} bytes: send the chunk that starts at {size}"),
                )
                .header(http::header::RANGE, &range)
                .header(http::HeaderName::from_static("docker-upload-uuid"), id)
                .header(http::header::LOCATION, &format!("/v2/{repo}/blobs/uploads/{id}")));
            }
        }
        let hashing = matches!(&s.hasher, Some((_, n)) if *n == size);
        let mut hasher = if hashing { s.hasher.take().map(|(h, _)| h) } else { None };
        let copied = copy_hashing(data, &mut f, hasher.as_mut(), len);
        let fail = |f: &File, e: RegistryError| -> RegistryError {
            // Cut the partial chunk off, so the session holds whole chunks only.
            let _ = f.set_len(size);
            e
        };
        let n = match copied {
            Ok(n) => n,
            Err(e) => {
                return Err(fail(
                    &f,
                    RegistryError::new(
                        Code::BlobUploadInvalid,
                        format!("the chunk was not received completely: {e}"),
                    ),
                ))
            }
        };
        if let Some(l) = len {
            if n != l {
                return Err(fail(
                    &f,
                    RegistryError::new(
                        Code::SizeInvalid,
                        format!("the chunk has {n} bytes but its Content-Length/Content-Range says {l}"),
                    ),
                ));
            }
        }
        s.hasher = hasher.map(|h| (h, size + n));
        Ok(size + n)
    }

    fn finish_upload(&self, repo: &str, id: &str, digest: &Digest) -> Result<u64> {
        let dir = self
            .upload_dir(repo, id)?
            .ok_or_else(|| RegistryError::new(Code::BlobUploadUnknown, format!("upload {id} is unknown or expired")))?;
        let session = self.session(id);
        let mut s = session.lock().expect("poisoned only by a panic"); // invariant
        let data = dir.join("data");
        let size = fs::metadata(&data)?.len();
        let actual = match s.hasher.take() {
            Some((h, n)) if n == size && h.algorithm() == digest.algorithm() => h.finish(),
            _ => Self::hash_file(&data, digest.algorithm())?.0,
        };
        if actual != *digest {
            drop(s);
            self.cancel_upload(repo, id)?;
            return Err(RegistryError::new(
                Code::DigestInvalid,
                format!("the uploaded content has digest {actual}, not {digest}; nothing was stored"),
            )
            .detail(json!({"expected": digest.to_string(), "actual": actual.to_string()})));
        }
        File::open(&data)?.sync_all()?;
        let link = self.layer_link(repo, digest)?;
        self.with_gc_lock(false, || {
            if self.touch_blob(digest)?.is_some() {
                fs::remove_file(&data)?;
            } else {
                self.publish(&data, digest)?;
            }
            self.link(&link, digest)
        })?;
        let _ = fs::remove_dir_all(&dir);
        drop(s);
        self.forget_session(id);
        Ok(size)
    }

    fn cancel_upload(&self, repo: &str, id: &str) -> Result<bool> {
        match self.upload_dir(repo, id)? {
            Some(dir) => {
                // Rename first: a crash mid-removal must not leave a session that looks alive.
                let doomed = self.tmp_path();
                fs::rename(&dir, &doomed)?;
                let _ = fs::remove_dir_all(&doomed);
                self.forget_session(id);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn purge_uploads(&self, max_age: Duration) -> Result<usize> {
        let now = SystemTime::now();
        let mut n = 0;
        for (id, t) in self.sessions_on_disk()? {
            let idle = now.duration_since(t).unwrap_or_default();
            if idle > max_age {
                let doomed = self.tmp_path();
                if fs::rename(self.root.join("uploads").join(&id), &doomed).is_ok() {
                    let _ = fs::remove_dir_all(&doomed);
                    self.forget_session(&id);
                    n += 1;
                }
            }
        }
        Ok(n)
    }

    fn put_manifest(&self, repo: &str, m: &Manifest, bytes: &[u8], digest: &Digest, tags: &[String]) -> Result<()> {
        let tag_paths = tags
            .iter()
            .map(|t| self.tag_path(repo, t))
            .collect::<Result<Vec<_>>>()?;
        self.with_gc_lock(false, || {
            let mut missing = Vec::new();
            for b in &m.blobs {
                if b.foreign {
                    continue;
                }
                let ok = self.linked(&self.layer_link(repo, &b.digest)?) && self.touch_blob(&b.digest)?.is_some();
                if !ok {
                    missing.push(b.digest.to_string());
                }
            }
            for c in &m.manifests {
                let ok = self.linked(&self.revision_link(repo, &c.digest)?) && self.touch_blob(&c.digest)?.is_some();
                if !ok {
                    missing.push(c.digest.to_string());
                }
            }
            if !missing.is_empty() {
                return Err(RegistryError::new(
                    Code::ManifestBlobUnknown,
                    format!(
                        "the manifest references {} not in repository {repo}: push them first",
                        missing.join(", ")
                    ),
                )
                .detail(json!({"missing": missing})));
            }
            if self.touch_blob(digest)?.is_none() {
                let tmp = self.tmp_path();
                let mut f = File::create(&tmp)?;
                f.write_all(bytes)?;
                f.sync_all()?;
                drop(f);
                self.publish(&tmp, digest)?;
            }
            self.write_atomic(&self.revision_link(repo, digest)?, m.media_type.as_bytes())?;
            if let Some(s) = &m.subject {
                let entry = self.referrers_dir(repo, &s.digest)?.join(format!(
                    "{}-{}",
                    digest.algorithm().name(),
                    digest.hex()
                ));
                let desc = manifest::referrer_descriptor(m, digest, bytes.len() as u64);
                self.write_atomic(&entry, desc.to_string().as_bytes())?;
            }
            // Each tag is replaced atomically, one after the other: a crash in between leaves
            // some of them moved, every one naming a whole manifest, as separate pushes would.
            for p in &tag_paths {
                self.write_atomic(p, digest.to_string().as_bytes())?;
            }
            Ok(())
        })
    }

    fn get_manifest(&self, repo: &str, r: &Reference) -> Result<Option<StoredManifest>> {
        let digest = match r {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(t) => match fs::read_to_string(self.tag_path(repo, t)?) {
                Ok(s) => match s.trim().parse() {
                    Ok(d) => d,
                    Err(_) => return Err(RegistryError::internal(format!("tag {repo}:{t} is corrupt"))),
                },
                Err(e) if not_found(&e) => return Ok(None),
                Err(e) => return Err(e.into()),
            },
        };
        let media_type = match fs::read_to_string(self.revision_link(repo, &digest)?) {
            Ok(s) => s,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match fs::read(self.blob_path(&digest)) {
            Ok(bytes) => Ok(Some(StoredManifest {
                digest,
                media_type,
                bytes,
            })),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<bool> {
        let link = self.revision_link(repo, digest)?;
        let media_type = match fs::read_to_string(&link) {
            Ok(s) => s,
            Err(e) if not_found(&e) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        // Tags first: a crash halfway leaves a manifest without tags, never a tag to nothing.
        let tags_dir = self.repo_dir(repo)?.join("_manifests/tags");
        let want = digest.to_string();
        for t in Self::list_dir(&tags_dir)? {
            let p = tags_dir.join(&t);
            if fs::read_to_string(&p).map(|s| s.trim() == want).unwrap_or(false) {
                let _ = fs::remove_file(&p);
            }
        }
        if let Ok(bytes) = fs::read(self.blob_path(digest)) {
            if let Ok(m) = Manifest::parse(&bytes, Some(&media_type)) {
                if let Some(s) = m.subject {
                    let entry = self.referrers_dir(repo, &s.digest)?.join(format!(
                        "{}-{}",
                        digest.algorithm().name(),
                        digest.hex()
                    ));
                    let _ = fs::remove_file(entry);
                }
            }
        }
        fs::remove_file(&link)?;
        Ok(true)
    }

    fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool> {
        match fs::remove_file(self.tag_path(repo, tag)?) {
            Ok(()) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn tags(&self, repo: &str) -> Result<Option<Vec<String>>> {
        let dir = self.repo_dir(repo)?;
        if !dir.join("_manifests").is_dir() && !dir.join("_layers").is_dir() {
            return Ok(None);
        }
        let mut tags = Self::list_dir(&dir.join("_manifests/tags"))?;
        tags.retain(|t| crate::name::valid_tag(t));
        tags.sort();
        Ok(Some(tags))
    }

    fn repositories(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        self.walk_repos(&self.root.join("repositories"), "", &mut out)?;
        out.sort();
        Ok(out)
    }

    fn referrers(&self, repo: &str, subject: &Digest) -> Result<Vec<Value>> {
        let dir = self.referrers_dir(repo, subject)?;
        let mut out = Vec::new();
        let mut names = Self::list_dir(&dir)?;
        names.sort();
        for n in names {
            if let Ok(b) = fs::read(dir.join(&n)) {
                if let Ok(v) = serde_json::from_slice::<Value>(&b) {
                    out.push(v);
                }
            }
        }
        Ok(out)
    }

    fn manifest_digests(&self, repo: &str) -> Result<Vec<Digest>> {
        let base = self.repo_dir(repo)?.join("_manifests/revisions");
        let mut out = Vec::new();
        for alg in Algorithm::all() {
            for hex in Self::list_dir(&base.join(alg.name()))? {
                if let Ok(d) = Digest::new(alg, &hex) {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }

    fn read_blob_data(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        match fs::read(self.blob_path(digest)) {
            Ok(b) => Ok(Some(b)),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn blobs(&self) -> Result<Vec<BlobEntry>> {
        let mut out = Vec::new();
        for alg in Algorithm::all() {
            let dir = self.root.join("blobs").join(alg.name());
            for hex in Self::list_dir(&dir)? {
                let Ok(digest) = Digest::new(alg, &hex) else { continue };
                if let Ok(m) = fs::metadata(dir.join(&hex)) {
                    out.push(BlobEntry {
                        digest,
                        size: m.len(),
                        touched: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    });
                }
            }
        }
        Ok(out)
    }

    fn sweep_blob(&self, digest: &Digest, unless_touched_after: SystemTime) -> Result<bool> {
        let p = self.blob_path(digest);
        self.with_gc_lock(true, || {
            let touched = match fs::metadata(&p) {
                Ok(m) => m.modified()?,
                Err(e) if not_found(&e) => return Ok(false),
                Err(e) => return Err(e.into()),
            };
            if touched > unless_touched_after {
                return Ok(false);
            }
            // Links first, under the same lock as the data: a push that re-links the blob
            // waits for us and then finds it missing, so it uploads it again.
            for repo in self.repositories()? {
                let _ = fs::remove_file(self.layer_link(&repo, digest)?);
            }
            fs::remove_file(&p)?;
            Ok(true)
        })
    }
}
