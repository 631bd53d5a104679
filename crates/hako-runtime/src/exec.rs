//! `exec`: a process that joins a running container (its namespaces and cgroup) and runs a
//! command there with the container's security settings.
//!
//! It runs as `hako exec-init SPEC.json`, started by the daemon from the sealed in-memory
//! copy of hako, with its stdio connected to the daemon. Being single-threaded, it can
//! setns and fork: the child enters the container's PID namespace and becomes the command;
//! this process waits for it and exits with its code (relaying a terminal, with -t).

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::Process;
use crate::init;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecSpec {
    /// The container's init, whose namespaces are joined.
    pub init_pid: i32,
    /// The container's cgroup (`hako-<id>`), joined before the namespaces.
    pub cgroup_name: String,
    pub process: Process,
    pub seccomp: Option<Box<serde_json::value::RawValue>>,
    /// With a terminal: the descriptor of a pipe the daemon writes the terminal's size to
    /// (`POST /exec/{id}/resize`), 4 bytes each time: rows then columns, big-endian.
    #[serde(default)]
    pub resize_fd: Option<i32>,
}

/// Runs the exec; returns the exit code for this process.
pub fn run(spec_path: &Path) -> i32 {
    // Out of the daemon's process group, as the monitor is: a ^C to a daemon run in a
    // terminal's foreground stops the daemon, not the execs it started.
    init::own_session();
    match run_inner(spec_path) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(io::stderr(), "hako exec: {e}");
            126
        }
    }
}

fn run_inner(spec_path: &Path) -> io::Result<i32> {
    let mut spec: ExecSpec = serde_json::from_slice(&fs::read(spec_path)?).map_err(io::Error::other)?;
    // SAFETY: the daemon opened this descriptor for this process alone.
    let resize = spec
        .resize_fd
        .map(|fd| unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
    // The size the daemon had at the start is already in the pipe: the terminal gets it
    // before the command runs, so the command never sees a 0x0 terminal.
    if let Some(ws) = resize.as_ref().and_then(|r| latest_size(r).ok().flatten()) {
        spec.process.console_size = Some(crate::config::ConsoleSize {
            height: ws.ws_row.into(),
            width: ws.ws_col.into(),
        });
    }
    let filter = crate::seccomp::compile_config(spec.seccomp.as_deref(), spec.process.capabilities.as_ref())?;
    let cgroup = crate::cgroups::Cgroup::open(&spec.cgroup_name).ok();
    let console = if spec.process.terminal {
        Some(socketpair()?)
    } else {
        None
    };
    let child = spawn(
        spec.init_pid,
        cgroup.as_ref(),
        &spec.process,
        filter.as_deref(),
        console.as_ref().map(|(_, theirs)| theirs),
        0,
    )?;
    if let Some((ours, theirs)) = console {
        drop(theirs);
        if let Some(master) = crate::console::recv_fd(&ours)? {
            relay_terminal_resized(&master, resize.as_ref());
        }
    }
    Ok(wait(child))
}

pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )?)
}

/// Joins the container whose init is `init_pid` (its cgroup, then all its namespaces) and
/// forks `process` there; returns the process' PID. The caller stays in the container's
/// namespaces afterwards, so it must be a process of its own (`exec-init`, `hako runtime
/// exec`), single-threaded so that it may setns and fork. With `console`, the process gets
/// a terminal whose master goes to that socket.
pub fn spawn(
    init_pid: i32,
    cgroup: Option<&crate::cgroups::Cgroup>,
    process: &Process,
    filter: Option<&[libc::sock_filter]>,
    console: Option<&OwnedFd>,
    keep_fds: u32,
) -> io::Result<i32> {
    let pid = rustix::process::Pid::from_raw(init_pid).ok_or_else(|| io::Error::other("no container init"))?;
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())?;
    if let Some(cg) = cgroup {
        cg.add_task(std::process::id() as i32).map_err(io::Error::other)?;
    }
    let flags = libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWCGROUP;
    // SAFETY: setns with a pidfd joins all the listed namespaces of that process at once.
    if unsafe { libc::setns(pidfd.as_raw_fd(), flags) } != 0 {
        return Err(io::Error::other(format!(
            "joining the container's namespaces: {}",
            io::Error::last_os_error()
        )));
    }
    drop(pidfd);
    std::env::set_current_dir("/")?;
    // SAFETY: the caller is single-threaded; the child only sets itself up and execs.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(io::Error::last_os_error());
    }
    if child == 0 {
        init::own_session();
        if let Some(sock) = console {
            let size = process.console_size.map(|c| (c.height as u16, c.width as u16));
            if let Err(e) = crate::console::setup_in_container(sock, size) {
                let _ = writeln!(io::stderr(), "hako exec: terminal: {e}");
                // SAFETY: leaving the forked child.
                unsafe { libc::_exit(126) };
            }
        }
        let e = match init::become_process(process, filter, keep_fds) {
            Ok(never) => match never {},
            Err(e) => e,
        };
        let _ = writeln!(io::stderr(), "{}", e.message);
        // SAFETY: leaving the forked child.
        unsafe { libc::_exit(e.code) };
    }
    Ok(child)
}

/// Waits for child `pid`; its exit code, or 128+N for a death by signal N.
pub fn wait(pid: i32) -> i32 {
    let mut status = 0;
    // SAFETY: reaping our own child.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 {
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return 255;
        }
    }
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    }
}

/// The latest size waiting on the (non-blocking) resize pipe; an error once it is closed.
fn latest_size(fd: &OwnedFd) -> io::Result<Option<rustix::termios::Winsize>> {
    let mut sizes = [0u8; 64];
    match rustix::io::read(fd, &mut sizes) {
        // The daemon writes whole 4-byte records (atomic on a pipe); only the last counts.
        Ok(n) if n >= 4 => {
            let s = &sizes[(n / 4 - 1) * 4..n / 4 * 4];
            Ok(Some(rustix::termios::Winsize {
                ws_row: u16::from_be_bytes([s[0], s[1]]),
                ws_col: u16::from_be_bytes([s[2], s[3]]),
                ws_xpixel: 0,
                ws_ypixel: 0,
            }))
        }
        Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
        Ok(_) | Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Copies stdin to the terminal and the terminal to stdout until the command's side closes.
pub fn relay_terminal(master: &OwnedFd) {
    relay_terminal_resized(master, None)
}

/// [`relay_terminal`], also applying the sizes that come on `resize` (see
/// [`ExecSpec::resize_fd`]) to the terminal.
fn relay_terminal_resized(master: &OwnedFd, mut resize: Option<&OwnedFd>) {
    use rustix::event::{poll, PollFd, PollFlags};
    let stdin = io::stdin();
    let mut stdin_open = true;
    let mut buf = vec![0u8; 32 * 1024];
    let mut out = io::stdout();
    loop {
        let mut fds = vec![PollFd::new(master, PollFlags::IN)];
        if stdin_open {
            fds.push(PollFd::new(&stdin, PollFlags::IN));
        }
        if let Some(r) = resize {
            fds.push(PollFd::new(r, PollFlags::IN));
        }
        if poll(&mut fds, None).is_err() {
            continue;
        }
        let m = fds[0].revents();
        let i = if stdin_open {
            fds[1].revents()
        } else {
            PollFlags::empty()
        };
        let r = if resize.is_some() {
            fds[fds.len() - 1].revents()
        } else {
            PollFlags::empty()
        };
        drop(fds);
        if let (false, Some(fd)) = (r.is_empty(), resize) {
            match latest_size(fd) {
                Ok(Some(ws)) => {
                    let _ = rustix::termios::tcsetwinsize(master, ws);
                }
                Ok(None) => {}
                // The daemon closed its end: the exec ended there.
                Err(_) => resize = None,
            }
        }
        if !m.is_empty() {
            match rustix::io::read(master, &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let _ = out.write_all(&buf[..n]);
                    let _ = out.flush();
                }
            }
        }
        if !i.is_empty() {
            match io::stdin().lock().read(&mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    let _ = rustix::io::write(master, &buf[..n]);
                }
            }
        }
    }
}
