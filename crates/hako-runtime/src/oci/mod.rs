//! hako's runtime on its own, with runc's command line (`hako runtime create|start|state|
//! kill|delete|run|exec|list|ps|pause|resume|features|spec`), so that podman, containerd or
//! a person can drive it with an OCI bundle. The daemon does not go through this: its
//! monitor calls the same init code in-process, which saves a process per container.
//!
//! Every command runs in a fresh single-threaded process (`hako runtime ...` is dispatched
//! before any async runtime starts), which `create`, `run` and `exec` rely on to clone,
//! fork and setns.

pub mod create;
mod features;
mod hooks;
mod resources;
pub mod state;

use std::fs;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cgroups::Cgroup;
use crate::config::{Config, Process};
pub use create::{create, CreateOpts};
pub use features::{features, spec};
use state::{Saved, FIFO};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Msg(String),
    #[error("{what}: {err}")]
    Io { what: String, err: io::Error },
    /// The init failed; `code` is Docker's exit code for it (125 setup, 126 not
    /// executable, 127 not found).
    #[error("{message}")]
    Init { code: i32, message: String },
}

impl Error {
    pub fn msg(m: impl Into<String>) -> Error {
        Error::Msg(m.into())
    }
    pub fn io(what: String, err: io::Error) -> Error {
        Error::Io { what, err }
    }
}

fn open_cgroup(s: &Saved) -> Result<Cgroup, Error> {
    Cgroup::open_in(s.cgroup_parent.as_deref(), &s.cgroup_name)
        .map_err(|e| Error::msg(format!("container {}: its cgroup: {e}", s.id)))
}

fn read_config(bundle: &Path) -> Result<Config, Error> {
    let p = bundle.join("config.json");
    let raw = fs::read(&p).map_err(|e| Error::io(format!("reading {}", p.display()), e))?;
    serde_json::from_slice(&raw).map_err(|e| Error::msg(format!("{}: {e}", p.display())))
}

/// Lets the init of a created container go on to execve.
pub fn start(root: &Path, id: &str) -> Result<(), Error> {
    let s = state::load(root, id)?;
    match s.status(root) {
        "created" => {}
        "stopped" => return Err(Error::msg("cannot start a container that has stopped")),
        _ => return Err(Error::msg("cannot start an already running container")),
    }
    release(root, &s)?;
    if let Ok(cfg) = read_config(&s.bundle) {
        if let Err(e) = hooks::run("poststart", &cfg.hooks.poststart, &s.hook_state("running")) {
            // The spec: a failing poststart hook is only worth a warning.
            eprintln!("hako runtime: warning: {e}");
        }
    }
    Ok(())
}

/// Opens the exec fifo and reads the init's byte: the init is then on its way to execve.
fn release(root: &Path, s: &Saved) -> Result<(), Error> {
    use rustix::event::{poll, PollFd, PollFlags};
    let path = state::dir(root, &s.id).join(FIFO);
    let fifo = rustix::fs::open(
        &path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| Error::io("opening the exec fifo".into(), e.into()))?;
    loop {
        let mut fds = [PollFd::new(&fifo, PollFlags::IN)];
        let _ = poll(
            &mut fds,
            Some(&rustix::event::Timespec {
                tv_sec: 0,
                tv_nsec: 50_000_000,
            }),
        );
        let mut b = [0u8; 1];
        match rustix::io::read(&fifo, &mut b) {
            Ok(1) => break,
            Ok(_) | Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => {
                if !s.alive() {
                    return Err(Error::msg("the container's init exited before start"));
                }
            }
            Err(e) => return Err(Error::io("reading the exec fifo".into(), e.into())),
        }
    }
    fs::remove_file(&path).map_err(|e| Error::io("removing the exec fifo".into(), e))
}

pub fn state_json(root: &Path, id: &str) -> Result<String, Error> {
    let s = state::load(root, id)?;
    serde_json::to_string_pretty(&s.report(root)).map_err(|e| Error::msg(e.to_string()))
}

/// runc's signal names: `KILL`, `SIGKILL` or `9`.
pub fn parse_signal(sig: &str) -> Result<i32, Error> {
    crate::signals::parse(sig).ok_or_else(|| Error::msg(format!("unknown signal {sig:?}")))
}

/// A pidfd for the container's init, checked to still be that process (PIDs wrap).
fn init_pidfd(s: &Saved) -> Option<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(s.pid)?;
    let fd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()?;
    s.alive().then_some(fd)
}

pub fn kill(root: &Path, id: &str, signal: i32, all: bool) -> Result<(), Error> {
    let s = state::load(root, id)?;
    let Some(fd) = init_pidfd(&s) else {
        return Err(Error::msg("container not running"));
    };
    if all {
        return open_cgroup(&s)?
            .kill_all(signal)
            .map_err(|e| Error::msg(format!("signalling the container's processes: {e}")));
    }
    send_signal(&fd, signal)
}

fn send_signal(fd: &OwnedFd, signal: i32) -> Result<(), Error> {
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd_send_signal with a valid pidfd, no siginfo.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_send_signal, fd.as_raw_fd(), signal, 0usize, 0u32) };
    if r != 0 {
        return Err(Error::io("sending the signal".into(), io::Error::last_os_error()));
    }
    Ok(())
}

/// Waits (up to `limit`) for the init behind `fd` to exit.
fn wait_exit(fd: &OwnedFd, limit: Duration) -> bool {
    use rustix::event::{poll, PollFd, PollFlags};
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    let t = rustix::event::Timespec {
        tv_sec: limit.as_secs() as i64,
        tv_nsec: limit.subsec_nanos() as i64,
    };
    matches!(poll(&mut fds, Some(&t)), Ok(n) if n > 0)
}

pub fn delete(root: &Path, id: &str, force: bool) -> Result<(), Error> {
    delete_with(root, id, force, None)
}

/// What `run` knows of the container it made, which [`delete_with`] otherwise reads from
/// the state, the bundle and the cgroup tree.
struct Known<'a> {
    saved: Saved,
    hooks: &'a crate::config::Hooks,
    cgroup: Option<Cgroup>,
}

/// [`delete`], with what the caller already knows of the container.
fn delete_with(root: &Path, id: &str, force: bool, known: Option<Known>) -> Result<(), Error> {
    let dir = state::dir(root, id);
    let (loaded, hooks, cgroup) = match known {
        Some(k) => (Ok(k.saved), Some(k.hooks), k.cgroup),
        None => (state::load(root, id), None, None),
    };
    let s = match loaded {
        Ok(s) => s,
        // A create that died before saving leaves only the directory.
        Err(e) if dir.is_dir() => {
            fs::remove_dir_all(&dir).map_err(|e| Error::io(format!("removing {}", dir.display()), e))?;
            return if force { Ok(()) } else { Err(e) };
        }
        // As runc: forcing the removal of what is not there is not an error.
        Err(Error::Msg(_)) if force && !dir.exists() => return Ok(()),
        Err(e) => return Err(e),
    };
    let status = s.status(root);
    if matches!(status, "running" | "paused") && !force {
        return Err(Error::msg(format!(
            "cannot delete container {id} that is not stopped: {status}; stop it first or use --force"
        )));
    }
    let cgroup = cgroup.or_else(|| open_cgroup(&s).ok());
    if let Some(fd) = init_pidfd(&s) {
        if let Some(cg) = &cgroup {
            if status == "paused" {
                let _ = cg.thaw();
            }
            let _ = cg.kill_all(libc::SIGKILL);
        }
        let _ = send_signal(&fd, libc::SIGKILL);
        if !wait_exit(&fd, Duration::from_secs(10)) {
            return Err(Error::msg(format!(
                "container {id}: the init did not die within 10 s of SIGKILL"
            )));
        }
    }
    if let Some(cg) = cgroup {
        remove_cgroup(&cg)?;
    }
    let read;
    let hooks = match hooks {
        Some(h) => Some(h),
        None => {
            read = read_config(&s.bundle).ok();
            read.as_ref().map(|c| &c.hooks)
        }
    };
    if let Some(h) = hooks {
        if let Err(e) = hooks::run("poststop", &h.poststop, &s.hook_state("stopped")) {
            eprintln!("hako runtime: warning: {e}");
        }
    }
    state::remove(&dir).map_err(|e| Error::io(format!("removing {}", dir.display()), e))
}

/// Exited processes leave their cgroup a moment after their parent sees them go.
fn remove_cgroup(cg: &Cgroup) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match cg.remove() {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(Error::msg(format!("removing the container's cgroup: {e}")))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

pub fn pause(root: &Path, id: &str, pause: bool) -> Result<(), Error> {
    let mut s = state::load(root, id)?;
    match (s.status(root), pause) {
        ("running", true) | ("paused", false) => {}
        ("paused", true) => return Err(Error::msg(format!("container {id} is already paused"))),
        ("running", false) => return Err(Error::msg(format!("container {id} is not paused"))),
        (st, _) => return Err(Error::msg(format!("container {id} is {st}, not running"))),
    }
    let cg = open_cgroup(&s)?;
    if pause { cg.freeze() } else { cg.thaw() }.map_err(|e| Error::msg(format!("freezer: {e}")))?;
    s.paused = pause;
    state::save(root, &s)
}

pub fn pids(root: &Path, id: &str) -> Result<Vec<i32>, Error> {
    let s = state::load(root, id)?;
    let mut p = open_cgroup(&s)?.pids().map_err(|e| Error::msg(e.to_string()))?;
    p.sort_unstable();
    Ok(p)
}

/// Every container under `root`, by id.
pub fn list(root: &Path) -> Result<Vec<state::Report>, Error> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(format!("reading {}", root.display()), e)),
    };
    for e in entries.flatten() {
        if let Some(id) = e.file_name().to_str() {
            if let Ok(s) = state::load(root, id) {
                out.push(s.report(root));
            }
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// `run`: create, start, wait, delete; the container's exit code (128+N for a signal).
/// With `detach`, returns 0 once the container runs and leaves it to `delete`.
pub fn run(root: &Path, o: &CreateOpts, detach: bool) -> Result<i32, Error> {
    // A terminal with nobody to hand it to: relay it from here.
    let cfg = read_config(&o.bundle)?;
    let relay = if cfg.process.terminal && o.console_socket.is_none() && !detach {
        Some(crate::exec::socketpair().map_err(|e| Error::io("socketpair".into(), e))?)
    } else {
        None
    };
    let console = match (&relay, &o.console_socket) {
        (Some((_, theirs)), _) => Some(theirs.try_clone().map_err(|e| Error::io("dup".into(), e))?),
        (None, Some(p)) => Some(create::connect_console(p)?),
        (None, None) => None,
    };
    let mut c = create::create_with(root, o, cfg, console, true)?;
    let result = (|| {
        // The init has executed the process (or failed: the status says so).
        let mut msg = Vec::new();
        let _ = c.status.read_to_end(&mut msg);
        if let Some(rest) = msg.strip_prefix(b"E") {
            let rest = String::from_utf8_lossy(rest);
            let (code, text) = rest.split_once('\n').unwrap_or(("125", &rest));
            return Err(Error::Init {
                code: code.parse().unwrap_or(125),
                message: text.to_string(),
            });
        }
        if let Err(e) = hooks::run("poststart", &c.config.hooks.poststart, &c.saved.hook_state("running")) {
            eprintln!("hako runtime: warning: {e}");
        }
        if detach {
            return Ok(0);
        }
        if let Some((ours, theirs)) = relay {
            drop(theirs);
            if let Ok(Some(master)) = crate::console::recv_fd(&ours) {
                crate::exec::relay_terminal(&master);
            }
        }
        Ok(crate::exec::wait(c.saved.pid))
    })();
    if detach && result.is_ok() {
        return result;
    }
    // Reaped above (or killed and reaped by delete's SIGKILL when setup failed).
    let pid = c.saved.pid;
    let known = Known {
        saved: c.saved,
        hooks: &c.config.hooks,
        cgroup: c.cgroup,
    };
    let del = delete_with(root, &o.id, true, Some(known));
    if result.is_err() {
        // SAFETY: reaping our own child, which delete killed.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
    }
    let code = result?;
    del?;
    Ok(code)
}

/// What `exec` runs: a whole OCI process (`--process`), or the container's own process
/// with these changes.
#[derive(Debug, Default)]
pub struct ExecOpts {
    pub process_file: Option<PathBuf>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<String>,
    pub user: Option<(u32, u32)>,
    pub additional_gids: Vec<u32>,
    pub tty: bool,
    pub caps: Vec<String>,
    pub no_new_privs: bool,
    pub console_socket: Option<PathBuf>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: u32,
}

/// Runs a process in a running container; its exit code, or 0 with `detach`.
pub fn exec(root: &Path, id: &str, o: &ExecOpts) -> Result<i32, Error> {
    let s = state::load(root, id)?;
    if s.status(root) != "running" {
        return Err(Error::msg(format!(
            "cannot exec in a container that is {}",
            s.status(root)
        )));
    }
    let cfg = read_config(&s.bundle)?;
    let process: Process = match &o.process_file {
        Some(p) => {
            let raw = fs::read(p).map_err(|e| Error::io(format!("reading {}", p.display()), e))?;
            serde_json::from_slice(&raw).map_err(|e| Error::msg(format!("{}: {e}", p.display())))?
        }
        None => {
            if o.args.is_empty() {
                return Err(Error::msg("exec needs a command, or --process FILE"));
            }
            let mut p = cfg.process.clone();
            p.args = o.args.clone();
            p.env.extend(o.env.iter().cloned());
            p.terminal = o.tty;
            if let Some(c) = &o.cwd {
                p.cwd = c.clone();
            }
            if let Some((uid, gid)) = o.user {
                p.user.uid = uid;
                p.user.gid = gid;
            }
            p.user.additional_gids.extend(o.additional_gids.iter().copied());
            if let Some(caps) = &mut p.capabilities {
                for c in &o.caps {
                    for set in [&mut caps.bounding, &mut caps.effective, &mut caps.permitted] {
                        if !set.contains(c) {
                            set.push(c.clone());
                        }
                    }
                }
            }
            p.no_new_privileges |= o.no_new_privs;
            p
        }
    };
    let relay = process.terminal && o.console_socket.is_none() && !o.detach;
    let console = match (&o.console_socket, process.terminal) {
        (Some(p), true) => Some((None, create::connect_console(p)?)),
        (None, true) if relay => {
            let (ours, theirs) = crate::exec::socketpair().map_err(|e| Error::io("socketpair".into(), e))?;
            Some((Some(ours), theirs))
        }
        (None, true) => {
            return Err(Error::msg(
                "cannot allocate a terminal for a detached exec without --console-socket",
            ))
        }
        (Some(_), false) => return Err(Error::msg("--console-socket given without a terminal (-t)")),
        (None, false) => None,
    };
    let filter = crate::seccomp::compile_config(cfg.linux.seccomp.as_deref(), process.capabilities.as_ref())
        .map_err(|e| Error::msg(format!("seccomp profile: {e}")))?;
    let cgroup = open_cgroup(&s).ok();
    let pid_file = o.pid_file.as_deref().map(create::PidFile::open).transpose()?;
    let pid = crate::exec::spawn(
        s.pid,
        cgroup.as_ref(),
        &process,
        filter.as_deref(),
        console.as_ref().map(|(_, theirs)| theirs),
        o.preserve_fds,
    )
    .map_err(|e| Error::io("exec".into(), e))?;
    if let Some(p) = pid_file {
        p.write(pid)?;
    }
    if o.detach {
        return Ok(0);
    }
    if let Some((Some(ours), theirs)) = console {
        drop(theirs);
        if let Ok(Some(master)) = crate::console::recv_fd(&ours) {
            crate::exec::relay_terminal(&master);
        }
    }
    Ok(crate::exec::wait(pid))
}

/// `ps`'s table: the host's `ps` output, limited to the container's processes.
pub fn ps_table(pids: &[i32], ps_args: &[String]) -> Result<String, Error> {
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .map_err(|e| Error::io("running ps".into(), e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| Error::msg("ps printed no PID column"))?;
    let mut res = format!("{header}\n");
    for l in lines {
        if let Some(p) = l.split_whitespace().nth(col).and_then(|p| p.parse::<i32>().ok()) {
            if pids.contains(&p) {
                res.push_str(l);
                res.push('\n');
            }
        }
    }
    Ok(res)
}
