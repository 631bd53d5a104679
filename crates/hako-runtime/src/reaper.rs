//! `--init`: a minimal PID 1 for the container (Docker ships tini as docker-init for this).
//! It forwards the signals it gets to the command, reaps every orphan the command leaves, and
//! exits with the command's status.
//!
//! It is the container's init itself, forked in two just before execve: no init binary is
//! copied into or mounted in the container. The part that stays as PID 1 keeps no
//! capability but CAP_KILL, sets no_new_privs, closes every descriptor but stdio, and makes itself
//! undumpable, so the container's processes cannot open its memory or its executable (the
//! sealed in-memory copy of hako) through /proc/1.

use std::io::Write;

/// Forks: returns in the child, which goes on to become the command; the parent never
/// returns (it is the reaper and exits with the command's status).
pub fn split() -> Result<(), crate::init::InitError> {
    let fail = |what: &str| crate::init::InitError {
        code: 125,
        message: format!("--init: {what}: {}", std::io::Error::last_os_error()),
    };
    // SAFETY: plain sigset manipulation on a local set.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigfillset(&mut all);
        // Blocked before the fork: no signal slips between it and the wait loop.
        libc::sigprocmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
    }
    // SAFETY: the init is single-threaded; the child only sets itself up and execs.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(fail("fork"));
    }
    if child == 0 {
        // SAFETY: the command starts in its own process group, which owns the terminal if
        // there is one (so ^C reaches it, not the reaper); become_process unblocks its signals.
        unsafe {
            libc::setpgid(0, 0);
            libc::signal(libc::SIGTTOU, libc::SIG_IGN);
            libc::tcsetpgrp(0, libc::getpid());
            libc::signal(libc::SIGTTOU, libc::SIG_DFL);
        }
        return Ok(());
    }
    let code = reap(child, &all);
    let _ = std::io::stderr().flush();
    // SAFETY: ending PID 1 ends the container, as it should once the command is gone.
    unsafe { libc::_exit(code) }
}

fn reap(child: libc::pid_t, all: &libc::sigset_t) -> i32 {
    // SAFETY: closing our own descriptors (stdio stays, for messages) and dropping every
    // privilege; none of these calls can hurt the child, which already has its copies.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    }
    // CAP_KILL only: the command may run as another user, and signals must still reach it.
    let kill = crate::caps::mask(&["CAP_KILL".to_string()]);
    let _ = crate::caps::drop_bounding(kill);
    let _ = crate::caps::set(kill, kill, 0);
    set_cmdline("init");
    loop {
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waiting for any of the blocked signals.
        let sig = unsafe { libc::sigwaitinfo(all, &mut info) };
        if sig < 0 {
            continue;
        }
        if sig != libc::SIGCHLD {
            // SAFETY: forwarding to our own child.
            unsafe { libc::kill(child, sig) };
            continue;
        }
        loop {
            let mut status = 0;
            // SAFETY: reaping any of our children, without blocking.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            if pid == child {
                return if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    128 + libc::WTERMSIG(status)
                };
            }
        }
    }
}

/// Overwrites this process's command line in place, so `ps` in the container shows `init`
/// rather than the monitor's arguments (which name a directory on the host).
fn set_cmdline(name: &str) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return;
    };
    // arg_start and arg_end are fields 48 and 49, i.e. 46 and 47 after the state (field 3).
    let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    let (Some(&start), Some(&end)) = (f.get(45), f.get(46)) else {
        return;
    };
    if end <= start {
        return;
    }
    let mut buf = vec![0u8; (end - start) as usize];
    let n = name.len().min(buf.len().saturating_sub(1));
    buf[..n].copy_from_slice(&name.as_bytes()[..n]);
    if let Ok(mem) = std::fs::OpenOptions::new().write(true).open("/proc/self/mem") {
        use std::os::unix::fs::FileExt;
        let _ = mem.write_at(&buf, start);
    }
    let _ = rustix::thread::set_name(c"init");
}
