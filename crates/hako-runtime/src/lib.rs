//! hako-runtime: hako's own OCI runtime: the container's `config.json` ([`spec`]), the
//! container init ([`init`]: namespaces, rootfs, pivot_root, capabilities, seccomp), cgroups
//! v1 and v2 ([`cgroups`]), and the per-container [`monitor`].

pub mod caps;
pub mod cgroups;
pub mod cli;
pub mod config;
pub mod console;
pub mod devices;
pub mod exe;
pub mod exec;
pub mod footprint;
pub mod init;
pub mod monitor;
pub mod oci;
pub mod reaper;
pub mod seccomp;
pub mod signals;
pub mod spec;
pub mod spread;
pub mod user;
