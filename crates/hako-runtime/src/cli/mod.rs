//! The `hako-runtime` program (also `hako runtime`): the OCI runtime command line (runc's),
//! for podman (`--runtime`), containerd or a person with a bundle; and, for the daemon, the
//! per-container monitor (`monitor DIR`) and the exec helper (`exec-init SPEC`). It is a
//! small program of its own so that what runs for every container (a monitor per container,
//! a runtime call per step) loads little and holds little memory. Errors go to stderr and,
//! with `--log`, as JSON lines to that file, which is where conmon looks for them.

mod args;

use std::io::Write;

use crate::oci::{self, Error, ExecOpts};
use args::{Cmd, Parsed, RuntimeCli};

/// Runs `hako-runtime ARGS` (`args` starts with the program name); the process exit code.
/// Every path here stays single-threaded: create, run and exec clone, fork and setns.
pub fn main(args: Vec<std::ffi::OsString>) -> u8 {
    if args.len() == 3 && args[1] == "monitor" {
        return crate::monitor::run(std::path::Path::new(&args[2])) as u8;
    }
    if args.len() == 3 && args[1] == "exec-init" {
        return crate::exec::run(std::path::Path::new(&args[2])) as u8;
    }
    let cli = match args::parse(args.into_iter().skip(1).collect()) {
        Ok(Parsed::Run(c)) => c,
        Ok(Parsed::Print(text)) => {
            print!("{text}");
            return 0;
        }
        Err(e) => {
            eprintln!("hako runtime: {e} (hako-runtime --help lists the commands)");
            return 1;
        }
    };
    match dispatch(&cli) {
        Ok(code) => code.clamp(0, 255) as u8,
        Err(e) => {
            report(&cli, &e);
            match e {
                Error::Init { code, .. } => code.clamp(1, 255) as u8,
                _ => 1,
            }
        }
    }
}

fn report(cli: &RuntimeCli, e: &Error) {
    eprintln!("hako runtime: {e}");
    let Some(path) = &cli.globals.log else { return };
    let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) else {
        return;
    };
    let line = if cli.globals.log_format == "json" {
        serde_json::json!({"level": "error", "msg": e.to_string(), "time": crate::monitor::now()}).to_string()
    } else {
        format!("{} error: {e}", crate::monitor::now())
    };
    let _ = writeln!(f, "{line}");
}

fn parse_user(u: &str) -> Result<(u32, u32), Error> {
    let bad = || Error::msg(format!("--user {u:?}: expected uid[:gid] as numbers"));
    let (uid, gid) = u.split_once(':').unwrap_or((u, "0"));
    Ok((uid.parse().map_err(|_| bad())?, gid.parse().map_err(|_| bad())?))
}

fn print_json(v: &impl serde::Serialize) -> Result<(), Error> {
    let s = serde_json::to_string_pretty(v).map_err(|e| Error::msg(e.to_string()))?;
    println!("{s}");
    Ok(())
}

fn dispatch(cli: &RuntimeCli) -> Result<i32, Error> {
    if cli.globals.systemd_cgroup {
        return Err(Error::msg(
            "--systemd-cgroup is not supported: hako places cgroups itself; give cgroupsPath as a path",
        ));
    }
    let root = &cli.globals.root;
    match &cli.cmd {
        Cmd::Create(c) => {
            let console = c
                .console_socket
                .as_deref()
                .map(oci::create::connect_console)
                .transpose()?;
            oci::create(root, &c.opts(), console)?;
        }
        Cmd::Start { id } => oci::start(root, id)?,
        Cmd::State { id } => println!("{}", oci::state_json(root, id)?),
        Cmd::Kill { all, id, signal } => oci::kill(root, id, oci::parse_signal(signal)?, *all)?,
        Cmd::Delete { force, id } => oci::delete(root, id, *force)?,
        Cmd::Run { detach, create } => return oci::run(root, &create.opts(), *detach),
        Cmd::Exec(e) => {
            let o = ExecOpts {
                process_file: e.process.clone(),
                args: e.args.clone(),
                env: e.env.clone(),
                cwd: e.cwd.clone(),
                user: e.user.as_deref().map(parse_user).transpose()?,
                additional_gids: e.additional_gids.clone(),
                tty: e.tty,
                caps: e.cap.clone(),
                no_new_privs: e.no_new_privs,
                console_socket: e.console_socket.clone(),
                detach: e.detach,
                pid_file: e.pid_file.clone(),
                preserve_fds: e.preserve_fds,
            };
            return oci::exec(root, &e.id, &o);
        }
        Cmd::List { format, quiet } => {
            let all = oci::list(root)?;
            if *quiet {
                for c in &all {
                    println!("{}", c.id);
                }
            } else if format == "json" {
                print_json(&all)?;
            } else {
                let mut rows = vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from)];
                for c in &all {
                    rows.push([
                        c.id.clone(),
                        c.pid.to_string(),
                        c.status.to_string(),
                        c.bundle.display().to_string(),
                        c.created.clone(),
                        c.owner.clone(),
                    ]);
                }
                print!("{}", columns(&rows));
            }
        }
        Cmd::Ps { format, id, ps_args } => {
            let pids = oci::pids(root, id)?;
            if format == "json" {
                print_json(&pids)?;
            } else {
                print!("{}", oci::ps_table(&pids, ps_args)?);
            }
        }
        Cmd::Pause { id } => oci::pause(root, id, true)?,
        Cmd::Resume { id } => oci::pause(root, id, false)?,
        Cmd::Features => print_json(&oci::features())?,
        Cmd::Spec { bundle } => {
            let path = bundle.join("config.json");
            if path.exists() {
                return Err(Error::msg(format!(
                    "{} already exists; remove it first",
                    path.display()
                )));
            }
            let body = serde_json::to_vec_pretty(&oci::spec()?).map_err(|e| Error::msg(e.to_string()))?;
            std::fs::write(&path, body).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        }
    }
    Ok(0)
}

/// Left-aligned columns two spaces apart, as runc's `list` prints them.
fn columns<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0; N];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}
