//! The registry's storage: what the HTTP API needs, behind one trait so that another backend
//! (an S3-compatible store) can follow the filesystem one.
//!
//! The life of a push, as the trait sees it:
//! 1. [`Storage::start_upload`] opens an upload session in a repository; it survives a
//!    server restart until it expires ([`Storage::purge_uploads`]).
//! 2. [`Storage::append_upload`] adds chunks, strictly in order: a chunk that does not start
//!    where the session ends is refused ([`Code::RangeInvalid`]) and changes nothing; a
//!    chunk that fails midway is cut off again, so the session only ever holds whole chunks.
//! 3. [`Storage::finish_upload`] verifies the digest and only then publishes the blob and
//!    links it into the repository; a mismatch discards the session and stores nothing.
//! 4. [`Storage::put_manifest`] stores a manifest whose referenced blobs (and child
//!    manifests) are all in the repository, or refuses it ([`Code::ManifestBlobUnknown`]).
//!
//! Blobs are shared between repositories and reachable in one only through its link, so
//! [`Storage::delete_blob`] unlinks; the data goes when garbage collection finds nothing
//! referencing it (see [`crate::gc`]). All methods block: call them off the async threads.

pub mod fs;

use std::io::{Read, Seek};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::digest::Digest;
use crate::error::RegistryError;
use crate::manifest::Manifest;

pub use fs::FsStorage;

pub type Result<T> = std::result::Result<T, RegistryError>;

/// A blob being read: seekable, for Range requests.
pub trait BlobRead: Read + Seek + Send {}
impl<T: Read + Seek + Send> BlobRead for T {}

/// A manifest reference: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

/// A stored manifest.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

/// A committed blob, for garbage collection.
#[derive(Debug, Clone)]
pub struct BlobEntry {
    pub digest: Digest,
    pub size: u64,
    /// Last write or last use as an existing blob (HEAD, mount, manifest push).
    pub touched: SystemTime,
}

pub trait Storage: Send + Sync + 'static {
    /// Size of a blob linked into `repo`, or None. Counts as a use: GC's grace period starts
    /// again, so a client that learns the blob exists can reference it safely.
    fn stat_blob(&self, repo: &str, digest: &Digest) -> Result<Option<u64>>;
    /// Opens a blob linked into `repo` for reading, with its size. None when not linked or
    /// missing. Reading is not a use for GC (see [`Storage::stat_blob`]).
    fn open_blob(&self, repo: &str, digest: &Digest) -> Result<Option<(Box<dyn BlobRead>, u64)>>;
    /// Unlinks a blob from `repo`; false when it was not linked.
    fn delete_blob(&self, repo: &str, digest: &Digest) -> Result<bool>;
    /// Links a blob of repository `from` into `to`; false when `from` lacks it.
    fn mount_blob(&self, from: &str, to: &str, digest: &Digest) -> Result<bool>;

    /// Opens an upload session; returns its ID.
    fn start_upload(&self, repo: &str) -> Result<String>;
    /// Bytes received so far (after a restart too); None when unknown or expired.
    fn upload_size(&self, repo: &str, id: &str) -> Result<Option<u64>>;
    /// Appends `data` at `offset` (None: at the end). With `len`, exactly that many bytes
    /// must arrive. Returns the new size.
    fn append_upload(
        &self,
        repo: &str,
        id: &str,
        offset: Option<u64>,
        len: Option<u64>,
        data: &mut dyn Read,
    ) -> Result<u64>;
    /// Verifies the session's content against `digest`, publishes it, links it into `repo`
    /// and ends the session. Returns the blob's size.
    fn finish_upload(&self, repo: &str, id: &str, digest: &Digest) -> Result<u64>;
    /// Ends a session and drops its data; false when unknown.
    fn cancel_upload(&self, repo: &str, id: &str) -> Result<bool>;
    /// Drops sessions idle for longer than `max_age`; returns how many.
    fn purge_uploads(&self, max_age: Duration) -> Result<usize>;

    /// Stores a parsed manifest under its digest and points each of `tags` to it, after
    /// checking everything it references is in the repository. An invalid tag fails the
    /// call before anything is written.
    fn put_manifest(&self, repo: &str, m: &Manifest, bytes: &[u8], digest: &Digest, tags: &[String]) -> Result<()>;
    fn get_manifest(&self, repo: &str, r: &Reference) -> Result<Option<StoredManifest>>;
    /// Removes a manifest revision, the tags that point to it and its referrers entry.
    fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<bool>;
    fn delete_tag(&self, repo: &str, tag: &str) -> Result<bool>;
    /// Tags, sorted; None when the repository does not exist.
    fn tags(&self, repo: &str) -> Result<Option<Vec<String>>>;
    /// Every repository, sorted.
    fn repositories(&self) -> Result<Vec<String>>;
    /// Descriptors of the manifests whose subject is `subject`.
    fn referrers(&self, repo: &str, subject: &Digest) -> Result<Vec<Value>>;

    /// Digests of every manifest revision of `repo` (for GC's mark phase).
    fn manifest_digests(&self, repo: &str) -> Result<Vec<Digest>>;
    /// Raw bytes of any committed blob (GC reads manifests with it).
    fn read_blob_data(&self, digest: &Digest) -> Result<Option<Vec<u8>>>;
    /// Every committed blob.
    fn blobs(&self) -> Result<Vec<BlobEntry>>;
    /// Removes a blob's data and every repository link to it, unless it was touched after
    /// `unless_touched_after`. Holds off concurrent uses while it decides. True if removed.
    fn sweep_blob(&self, digest: &Digest, unless_touched_after: SystemTime) -> Result<bool>;
}
