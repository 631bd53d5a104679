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
    pub seccomp: Option<serde_json::Value>,
}

/// Runs the exec; returns the exit code for this process.
pub fn run(spec_path: &Path) -> i32 {
    match run_inner(spec_path) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(io::stderr(), "hako exec: {e}");
            126
        }
    }
}

fn run_inner(spec_path: &Path) -> io::Result<i32> {
    let spec: ExecSpec = serde_json::from_slice(&fs::read(spec_path)?).map_err(io::Error::other)?;
    let filter = match &spec.seccomp {
        Some(p) => {
            let profile: crate::seccomp::Profile = serde_json::from_value(p.clone()).map_err(io::Error::other)?;
            let caps = spec
                .process
                .capabilities
                .as_ref()
                .map(|c| c.bounding.clone())
                .unwrap_or_default();
            Some(crate::seccomp::compile(&profile, &caps).map_err(io::Error::other)?)
        }
        None => None,
    };
    let pid = rustix::process::Pid::from_raw(spec.init_pid).ok_or_else(|| io::Error::other("no container init"))?;
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())?;
    if let Ok(cg) = crate::cgroups::Cgroup::open(&spec.cgroup_name) {
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
    let console = if spec.process.terminal {
        let (a, b) = rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::STREAM,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )?;
        Some((a, b))
    } else {
        None
    };
    // SAFETY: this process is single-threaded; the child only sets itself up and execs.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(io::Error::last_os_error());
    }
    if child == 0 {
        if let Some((_, theirs)) = &console {
            if let Err(e) = crate::console::setup_in_container(theirs, None) {
                let _ = writeln!(io::stderr(), "hako exec: terminal: {e}");
                // SAFETY: leaving the forked child.
                unsafe { libc::_exit(126) };
            }
        }
        let e = match init::become_process(&spec.process, filter.as_deref()) {
            Ok(never) => match never {},
            Err(e) => e,
        };
        let _ = writeln!(io::stderr(), "{}", e.message);
        // SAFETY: leaving the forked child.
        unsafe { libc::_exit(e.code) };
    }
    if let Some((ours, theirs)) = console {
        drop(theirs);
        if let Some(master) = crate::console::recv_fd(&ours)? {
            relay_terminal(&master, child);
        }
    }
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(child, &mut status, 0) };
    Ok(if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    })
}

/// Copies stdin to the terminal and the terminal to stdout until the command's side closes.
fn relay_terminal(master: &OwnedFd, _child: i32) {
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
        if poll(&mut fds, None).is_err() {
            continue;
        }
        let m = fds[0].revents();
        let i = fds.get(1).map(|f| f.revents()).unwrap_or(PollFlags::empty());
        drop(fds);
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
