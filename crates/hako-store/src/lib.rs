//! hako-store: the bottom of hako's state.
//!
//! - [`content::ContentStore`] keeps immutable blobs addressed by their sha256 digest. Every
//!   write goes through an ingest (temp file, size and digest verified, fsync, rename), so a
//!   partial or wrong blob is never visible under `blobs/`.
//! - [`meta::MetaStore`] keeps names, tags and records in one embedded transactional database
//!   (redb): each multi-step change is a single write transaction.
//! - [`lease::Leases`] protects blobs that an operation in progress has written but not yet
//!   referenced, so garbage collection never removes them underneath it.

pub mod atomic;
pub mod content;
pub mod digest;
pub mod lease;
pub mod meta;

pub use content::{ContentStore, Ingest};
pub use digest::{Digest, DigestError};
pub use lease::{Lease, Leases};
pub use meta::{MetaError, MetaStore};
