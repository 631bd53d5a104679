//! The `hako-runtime` program (also `hako runtime`): the OCI runtime command line (runc's),
//! for podman (`--runtime`), containerd or a person with a bundle; and, for the daemon, the
//! per-container monitor (`monitor DIR`) and the exec helper (`exec-init SPEC`). It is a
//! small program of its own so that what runs for every container (a monitor per container,
//! a runtime call per step) loads little and holds little memory. Errors go to stderr and,
//! with `--log`, as JSON lines to that file, which is where conmon looks for them.

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::oci::{self, CreateOpts, Error, ExecOpts};

#[derive(Parser)]
#[command(name = "hako-runtime", version, about = "hako's OCI runtime (runc's command line)")]
struct RuntimeCli {
    /// Where container state lives. The variable reaches every call of a caller's: podman
    /// does not pass its --runtime-flag options to `delete`.
    #[arg(long, global = true, env = "HAKO_RUNTIME_ROOT", default_value = oci::state::DEFAULT_ROOT)]
    root: PathBuf,
    /// Also write errors to this file.
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// `json` or `text`, for --log.
    #[arg(long, global = true, default_value = "text")]
    log_format: String,
    #[arg(long, global = true)]
    debug: bool,
    /// Not supported: hako places cgroups itself (cgroupfs paths).
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    #[arg(long, global = true, hide = true)]
    rootless: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args)]
struct Create {
    /// The bundle: a directory with config.json and the root filesystem.
    #[arg(long, short = 'b', default_value = ".")]
    bundle: PathBuf,
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Unix socket that receives the terminal's master side.
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Descriptors after stdio the process keeps.
    #[arg(long, default_value_t = 0)]
    preserve_fds: u32,
    /// Accepted for runc compatibility; hako always uses pivot_root.
    #[arg(long)]
    no_pivot: bool,
    /// Accepted for runc compatibility (hako makes no session keyring).
    #[arg(long)]
    no_new_keyring: bool,
    id: String,
}

impl Create {
    fn opts(&self) -> CreateOpts {
        CreateOpts {
            id: self.id.clone(),
            bundle: self.bundle.clone(),
            pid_file: self.pid_file.clone(),
            console_socket: self.console_socket.clone(),
            preserve_fds: self.preserve_fds,
            start: false,
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Set a container up; its process waits for `start`.
    Create(Create),
    /// Run the process of a created container.
    Start { id: String },
    /// The container's state, as JSON.
    State { id: String },
    /// Send a signal (default TERM) to the container's init, or with --all to every process.
    Kill {
        #[arg(long, short = 'a')]
        all: bool,
        id: String,
        #[arg(default_value = "TERM")]
        signal: String,
    },
    /// Remove a stopped container (with --force, kill it first).
    Delete {
        #[arg(long, short = 'f')]
        force: bool,
        id: String,
    },
    /// Create, start, wait and delete.
    Run {
        #[arg(long, short = 'd')]
        detach: bool,
        #[command(flatten)]
        create: Create,
    },
    /// Run a process in a running container.
    Exec {
        #[arg(long, short = 'p')]
        process: Option<PathBuf>,
        #[arg(long)]
        console_socket: Option<PathBuf>,
        #[arg(long)]
        cwd: Option<String>,
        #[arg(long, short = 'e')]
        env: Vec<String>,
        #[arg(long, short = 't')]
        tty: bool,
        /// uid[:gid]
        #[arg(long, short = 'u')]
        user: Option<String>,
        #[arg(long, short = 'g')]
        additional_gids: Vec<u32>,
        #[arg(long, short = 'c')]
        cap: Vec<String>,
        #[arg(long)]
        no_new_privs: bool,
        #[arg(long, short = 'd')]
        detach: bool,
        #[arg(long)]
        pid_file: Option<PathBuf>,
        #[arg(long, default_value_t = 0)]
        preserve_fds: u32,
        /// Accepted for runc compatibility (no SELinux or AppArmor here).
        #[arg(long, hide = true)]
        process_label: Option<String>,
        #[arg(long, hide = true)]
        apparmor: Option<String>,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The containers under --root.
    List {
        #[arg(long, short = 'f', default_value = "table")]
        format: String,
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// The container's processes.
    Ps {
        #[arg(long, short = 'f', default_value = "table")]
        format: String,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Freeze every process of the container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// What this runtime supports, as JSON.
    Features,
    /// Write a starting config.json into the bundle.
    Spec {
        #[arg(long, short = 'b', default_value = ".")]
        bundle: PathBuf,
    },
}

/// Runs `hako-runtime ARGS` (`args` starts with the program name); the process exit code.
/// Every path here stays single-threaded: create, run and exec clone, fork and setns.
pub fn main(args: Vec<std::ffi::OsString>) -> u8 {
    if args.len() == 3 && args[1] == "monitor" {
        return crate::monitor::run(std::path::Path::new(&args[2])) as u8;
    }
    if args.len() == 3 && args[1] == "exec-init" {
        return crate::exec::run(std::path::Path::new(&args[2])) as u8;
    }
    let cli = match RuntimeCli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 1 } else { 0 };
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
    let Some(path) = &cli.log else { return };
    let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) else {
        return;
    };
    let line = if cli.log_format == "json" {
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
    if cli.systemd_cgroup {
        return Err(Error::msg(
            "--systemd-cgroup is not supported: hako places cgroups itself; give cgroupsPath as a path",
        ));
    }
    let root = &cli.root;
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
        Cmd::Exec {
            process,
            console_socket,
            cwd,
            env,
            tty,
            user,
            additional_gids,
            cap,
            no_new_privs,
            detach,
            pid_file,
            preserve_fds,
            id,
            args,
            ..
        } => {
            let o = ExecOpts {
                process_file: process.clone(),
                args: args.clone(),
                env: env.clone(),
                cwd: cwd.clone(),
                user: user.as_deref().map(parse_user).transpose()?,
                additional_gids: additional_gids.clone(),
                tty: *tty,
                caps: cap.clone(),
                no_new_privs: *no_new_privs,
                console_socket: console_socket.clone(),
                detach: *detach,
                pid_file: pid_file.clone(),
                preserve_fds: *preserve_fds,
            };
            return oci::exec(root, id, &o);
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
