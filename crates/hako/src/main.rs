//! `hako`: the CLI (a client of the daemon's Engine API) and `hako daemon`.

mod cli;
mod daemon;
mod duration;
mod output;

use std::process::ExitCode;

use clap::Parser;

use cli::Cli;

fn main() -> ExitCode {
    // The monitor, exec helper and OCI runtime must stay single-threaded (they fork and
    // join namespaces), so they run before any async runtime exists. The daemon runs them
    // from the small `hako-runtime` program when it is installed beside hako.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.len() >= 2 && ["monitor", "exec-init"].iter().any(|c| args[1] == *c) {
        return ExitCode::from(hako_runtime::cli::main(args));
    }
    if args.len() >= 2 && args[1] == "runtime" {
        return ExitCode::from(hako_runtime::cli::main(args[1..].to_vec()));
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
    let mut builder = if cli.serves() {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let rt = match builder.enable_all().build() {
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
