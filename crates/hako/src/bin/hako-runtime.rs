//! `hako-runtime`: hako's OCI runtime (runc's command line) and the per-container monitor,
//! as a small program that links only the runtime crate (see `hako_runtime::cli`).

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(hako_runtime::cli::main(std::env::args_os().collect()))
}
