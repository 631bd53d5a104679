//! hako-registry: an OCI distribution (v1.1) registry and the client the engine pulls and
//! pushes with.
//!
//! - [`storage`]: the [`storage::Storage`] trait (blobs, manifests, tags, upload sessions) and
//!   its filesystem implementation.
//! - [`server`]: the HTTP API (`/v2/...`), with [`auth`] in front of it.
//! - [`gc`]: mark and sweep of blobs no manifest references, safe while the server runs.
//! - [`client`]: the registry client (token flow, parallel layer pulls, pushes) and the
//!   engine's pull and push into hako-image's `ImageService`.

pub mod auth;
pub mod client;
pub mod config;
pub mod digest;
pub mod error;
pub mod gc;
pub mod manifest;
pub mod name;
pub mod server;
pub mod storage;

pub use config::Config;
pub use digest::{Algorithm, Digest};
pub use error::{Code, RegistryError};
