//! `hako-runtime`: hako's OCI runtime (runc's command line) and the per-container monitor,
//! as a small program that links only this crate (see `hako_runtime::cli`).
//!
//! `scripts/build.sh` builds it for musl and statically: it starts for every container and
//! every runtime call, and glibc's start-up alone costs 0.6 ms here (it probes the CPU with
//! CPUID, a hypervisor trap each time) against 0.1 ms for musl's. musl's allocator is
//! replaced: it maps and unmaps memory for every few allocations.

#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(hako_runtime::cli::main(std::env::args_os().collect()))
}
