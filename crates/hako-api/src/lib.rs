#![recursion_limit = "256"]
//! hako-api: the Docker Engine API (and hako's own `/hako/v1` API) on a unix socket:
//! the axum server the daemon runs and the client the CLI uses.

pub mod bridge;
pub mod build;
pub mod client;
pub mod containers;
pub mod error;
pub mod human;
pub mod networks;
pub mod server;
pub mod version;

pub use client::{Client, ClientError};
pub use error::ApiError;
