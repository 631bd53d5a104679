//! `hako`: the CLI (a client of the daemon's Engine API) and `hako daemon`.

mod cli;
mod daemon;
mod output;
mod runtime_cli;

use std::process::ExitCode;

use clap::Parser;

use cli::Cli;

fn main() -> ExitCode {
    // The per-container monitor must stay single-threaded (it forks the container's init),
    // so it runs before any async runtime exists. The daemon starts it as `hako monitor DIR`.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.len() == 3 && args[1] == "monitor" {
        let code = hako_runtime::monitor::run(std::path::Path::new(&args[2]));
        return ExitCode::from(code as u8);
    }
    if args.len() == 3 && args[1] == "exec-init" {
        let code = hako_runtime::exec::run(std::path::Path::new(&args[2]));
        return ExitCode::from(code as u8);
    }
    // The OCI runtime forks and joins namespaces too; `hako-runtime` is the name runtime
    // callers like podman use (a link to hako).
    if std::path::Path::new(&args[0]).file_name() == Some(std::ffi::OsStr::new("hako-runtime")) {
        return ExitCode::from(runtime_cli::main(args));
    }
    if args.len() >= 2 && args[1] == "runtime" {
        return ExitCode::from(runtime_cli::main(args[1..].to_vec()));
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                // Docker exits 125 when its own flags are wrong.
                _ => 125,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hako: cannot start the async runtime: {e}");
            return ExitCode::from(125);
        }
    };
    let result = rt.block_on(cli::run(cli));
    // A read of stdin may still block a runtime thread (after `run -i` or `attach`): do not
    // wait for it.
    rt.shutdown_background();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let msg = cli::describe(&e);
            if !msg.is_empty() {
                eprintln!("{msg}");
            }
            ExitCode::from(cli::exit_code(&e))
        }
    }
}
