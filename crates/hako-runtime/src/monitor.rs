//! The per-container monitor (as conmon or containerd-shim): a small single-threaded process
//! that starts the container, holds its stdio, writes its log in Docker's json-file format,
//! serves attach clients on a unix socket and records the exit. It runs in its own session,
//! so it keeps going when the daemon stops or crashes.
//!
//! Files in the container's directory:
//! - `config.json`: the OCI runtime config (read).
//! - `monitor.json`: [`MonitorSpec`] (read).
//! - `state.json`: [`MonitorState`] (written atomically: starting, running, exited).
//! - `attach.sock`: attach clients send one JSON line ([`AttachRequest`]) then stdin bytes,
//!   and receive output: Docker's multiplexed frames, or raw bytes with a TTY.
//! - `<id>-json.log`: the log.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::init;
use crate::spread::Spread;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MonitorSpec {
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    /// Attach clients to wait for before the container runs, so they miss no output.
    pub wait_attach: usize,
    /// Rotate the log past this many bytes (0: never).
    pub log_max_size: u64,
    pub log_max_files: u32,
    pub log_path: PathBuf,
    /// cgroup to create for the container (name and limits).
    pub cgroup: Option<crate::cgroups::Resources>,
    pub cgroup_name: String,
    /// Initial terminal size (rows, cols).
    pub console_size: Option<(u16, u16)>,
    /// Hold the init until whoever started the monitor has set up the container's network
    /// namespace: the monitor writes [`NOTE_NETWORK`] and the init's PID, then reads one byte
    /// on its stdin: `1` to go on, anything else (then a reason) or EOF to give up.
    #[serde(default)]
    pub network_gate: bool,
    /// The container's seccomp filter as the daemon compiled it (see `seccomp::encode`):
    /// it compiles each profile once, not every monitor. Absent: the monitor compiles
    /// config.json's.
    #[serde(default)]
    pub seccomp_filter: Option<String>,
    /// `--ipc shareable`: the container's /dev/shm is a tmpfs of this size (bytes) mounted
    /// on the host at this path, so containers joining its IPC namespace bind the same one.
    /// The monitor mounts it before the init starts and unmounts it when it ends.
    #[serde(default)]
    pub shared_shm: Option<(PathBuf, u64)>,
}

/// The mount of [`MonitorSpec::shared_shm`], undone on drop: whichever way the monitor ends.
struct SharedShm(PathBuf);

impl SharedShm {
    fn mount(path: &Path, size: u64) -> io::Result<SharedShm> {
        fs::create_dir_all(path)?;
        use rustix::mount::MountFlags;
        rustix::mount::mount(
            "shm",
            path,
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            Some(
                std::ffi::CString::new(format!("mode=1777,size={size}"))
                    .expect("no NUL")
                    .as_c_str(),
            ),
        )
        .map_err(|e| io::Error::other(format!("mounting the shareable /dev/shm at {}: {e}", path.display())))?;
        Ok(SharedShm(path.to_path_buf()))
    }
}

impl Drop for SharedShm {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MonitorState {
    /// `starting`, `running` or `exited`.
    pub status: String,
    pub pid: i32,
    /// The monitor's own PID, to signal or watch it.
    pub monitor_pid: i32,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub exit_code: Option<i32>,
    pub oom_killed: bool,
    /// Why the container could not start.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AttachRequest {
    #[serde(default)]
    pub stdin: bool,
    #[serde(default)]
    pub stdout: bool,
    #[serde(default)]
    pub stderr: bool,
    /// Instead of attaching: resize the TTY to (rows, cols).
    #[serde(default)]
    pub resize: Option<(u16, u16)>,
}

pub fn now() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = t.as_secs() as i64;
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:09}Z", t.subsec_nanos())
}

/// Unix seconds to UTC calendar time (Howard Hinnant's days-from-civil, inverted).
fn civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        ((rem % 3600) / 60) as u32,
        (rem % 60) as u32,
    )
}

/// Replaces `state.json` atomically: readers see the old state or the new one.
pub fn write_state(dir: &Path, st: &MonitorState) -> io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    let (tmp, path) = (dir.join(".state.json.tmp"), dir.join("state.json"));
    fs::write(&tmp, serde_json::to_vec(st).map_err(io::Error::other)?)?;
    // Swapped in, then the old one unlinked, rather than renamed over it: ext4 (unless
    // mounted noauto_da_alloc) starts writing a file renamed over another out to the disk
    // at once, and this happens three times in every container's life.
    match renameat_with(CWD, &tmp, CWD, &path, RenameFlags::EXCHANGE) {
        Ok(()) => fs::remove_file(&tmp),
        Err(rustix::io::Errno::NOENT) => fs::rename(&tmp, &path),
        Err(e) => Err(e.into()),
    }
}

pub fn read_state(dir: &Path) -> Option<MonitorState> {
    serde_json::from_slice(&fs::read(dir.join("state.json")).ok()?).ok()
}

/// Runs the monitor for the container in `dir`; returns its process exit code.
pub fn run(dir: &Path) -> i32 {
    match run_inner(dir) {
        Ok(()) => 0,
        Err(e) => {
            let st = MonitorState {
                status: "exited".into(),
                monitor_pid: std::process::id() as i32,
                finished_at: Some(now()),
                exit_code: Some(125),
                error: Some(e.to_string()),
                ..Default::default()
            };
            let _ = write_state(dir, &st);
            notify(NOTE_STARTED);
            1
        }
    }
}

/// Notes to whoever started the monitor, on its stdout (a pipe the daemon reads, so it
/// waits for events instead of polling files): the attach socket listens; `state.json` says
/// how the start went.
pub const NOTE_LISTENING: u8 = b'L';
pub const NOTE_STARTED: u8 = b'S';
/// Followed by the init's PID in decimal and a newline (see [`MonitorSpec::network_gate`]).
pub const NOTE_NETWORK: u8 = b'N';

/// Tells of the init's PID, so the engine sets the network up in its namespace (see
/// [`await_network`]).
fn announce_network(pid: i32) {
    let _ = rustix::io::write(rustix::stdio::stdout(), format!("N{pid}\n").as_bytes());
}

/// Waits for the engine's answer to [`announce_network`].
fn await_network() -> io::Result<()> {
    let mut answer = Vec::new();
    let mut b = [0u8; 256];
    loop {
        match rustix::io::read(rustix::stdio::stdin(), &mut b) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&b[..n]);
                if answer.first() == Some(&b'1') {
                    return Ok(());
                }
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let why = String::from_utf8_lossy(answer.get(1..).unwrap_or_default())
        .trim()
        .to_string();
    Err(io::Error::other(if why.is_empty() {
        "the engine went away while setting up the container's network".to_string()
    } else {
        why
    }))
}

fn notify(note: u8) {
    // The daemon may be gone (SIGPIPE is ignored here): the notes are only a shortcut.
    let _ = rustix::io::write(rustix::stdio::stdout(), &[note]);
    if note == NOTE_STARTED {
        // Nothing more to say: let go of the daemon's pipe, so it sees the end of it.
        if let Ok(null) = File::options().write(true).open("/dev/null") {
            // SAFETY: replacing our own stdout.
            unsafe { libc::dup2(null.as_raw_fd(), 1) };
        }
    }
}

/// The container's cgroup, with the init in it (and its own affinity back first).
fn place(spec: &MonitorSpec, pid: i32, spread: Option<Spread>) -> io::Result<Option<crate::cgroups::Cgroup>> {
    let Some(res) = &spec.cgroup else {
        if let Some(s) = spread {
            s.restore();
        }
        return Ok(None);
    };
    // Once more on failure: a stopping daemon may have just removed the shared parent.
    let cg = crate::cgroups::Cgroup::create(None, &spec.cgroup_name, res)
        .or_else(|_| crate::cgroups::Cgroup::create(None, &spec.cgroup_name, res))
        .map_err(io::Error::other)?;
    if let Some(s) = spread {
        s.restore();
    }
    if let Err(e) = cg.add_task(pid) {
        remove_cgroup(&cg);
        return Err(io::Error::other(e));
    }
    Ok(Some(cg))
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

struct Client {
    stream: UnixStream,
    req: AttachRequest,
    /// False once the client half-closed: it gets output until it goes away.
    input_open: bool,
}

fn run_inner(dir: &Path) -> io::Result<()> {
    // The monitor leaves the daemon's session: it outlives the daemon.
    crate::init::own_session();
    // SAFETY: setting a signal's disposition has no memory effects.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let cfg: Config = serde_json::from_slice(&fs::read(dir.join("config.json"))?).map_err(io::Error::other)?;
    let spec: MonitorSpec = serde_json::from_slice(&fs::read(dir.join("monitor.json"))?).map_err(io::Error::other)?;
    let my_pid = std::process::id() as i32;
    write_state(
        dir,
        &MonitorState {
            status: "starting".into(),
            monitor_pid: my_pid,
            ..Default::default()
        },
    )?;

    let filter = match &spec.seccomp_filter {
        Some(f) => Some(crate::seccomp::decode(f).map_err(io::Error::other)?),
        None => crate::seccomp::compile_config(cfg.linux.seccomp.as_deref(), cfg.process.capabilities.as_ref())?,
    };

    // stdio: pipes, or a terminal the container creates in its own devpts and hands back
    // over the console socket.
    let (child_in, child_out, child_err, our_in, our_out, our_err, console_ours, console_theirs);
    if spec.tty {
        let (a, b) = rustix::net::socketpair(
            rustix::net::AddressFamily::UNIX,
            rustix::net::SocketType::STREAM,
            rustix::net::SocketFlags::CLOEXEC,
            None,
        )?;
        child_in = None;
        child_out = None;
        child_err = None;
        our_in = None;
        our_out = None;
        our_err = None;
        console_ours = Some(a);
        console_theirs = Some(b);
    } else {
        let (in_r, in_w) = if spec.open_stdin {
            let (r, w) = pipe()?;
            (Some(r), Some(w))
        } else {
            (None, None)
        };
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        child_in = in_r;
        child_out = Some(out_w);
        child_err = Some(err_w);
        our_in = in_w;
        our_out = Some(out_r);
        our_err = Some(err_r);
        console_ours = None;
        console_theirs = None;
    }
    let mut pty_master: Option<OwnedFd> = None;

    // Bound by a relative name from inside the directory: a socket address holds at most
    // 108 bytes, and roots can be deep.
    std::env::set_current_dir(dir)?;
    let sock_path = dir.join("attach.sock");
    let _ = fs::remove_file(&sock_path);
    let listener = UnixListener::bind("attach.sock")?;
    listener.set_nonblocking(true)?;
    notify(NOTE_LISTENING);
    let mut clients: Vec<Client> = Vec::new();

    let (sync_r, sync_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let mut flags: libc::c_long = libc::SIGCHLD as libc::c_long;
    for (kind, f) in [
        ("mount", libc::CLONE_NEWNS),
        ("pid", libc::CLONE_NEWPID),
        ("uts", libc::CLONE_NEWUTS),
        ("ipc", libc::CLONE_NEWIPC),
        ("network", libc::CLONE_NEWNET),
    ] {
        if cfg.has_namespace(kind) {
            flags |= f as libc::c_long;
        }
    }
    let _shared_shm = match &spec.shared_shm {
        Some((path, size)) => Some(SharedShm::mount(path, *size)?),
        None => None,
    };
    // Namespaces given by path (`--network container:NAME`, `--pid container:NAME`) are
    // joined by the monitor itself before the clone, so the init is born in them (a PID
    // namespace applies to the monitor's children only); the monitor uses none of them.
    for ns in cfg
        .linux
        .namespaces
        .iter()
        .filter(|n| matches!(n.kind.as_str(), "network" | "ipc" | "uts" | "pid"))
    {
        if let Some(p) = &ns.path {
            let f = File::open(p).map_err(|e| io::Error::other(format!("opening {} namespace {p}: {e}", ns.kind)))?;
            // SAFETY: setns on a namespace descriptor we opened (0: any type).
            if unsafe { libc::setns(f.as_raw_fd(), 0) } != 0 {
                let e = io::Error::last_os_error();
                return Err(io::Error::other(format!("joining {} namespace {p}: {e}", ns.kind)));
            }
        }
    }
    // The clone makes only what must exist when it returns: the PID namespace (it applies to
    // children only), and the network one the engine plumbs at the network gate. The init
    // makes the others with unshare while this process makes the cgroup (a clone that copies
    // the mount table and builds a network namespace takes about a millisecond).
    let mut keep = libc::CLONE_NEWPID as libc::c_long | libc::SIGCHLD as libc::c_long;
    if spec.network_gate {
        keep |= libc::CLONE_NEWNET as libc::c_long;
    }
    let unshare = (flags & !keep) as libc::c_int;
    flags &= keep;
    // SAFETY: the monitor is single-threaded, so a fork-like clone is safe; the child only
    // runs init code and exits or execs.
    let pid = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) } as i32;
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // Child.
        drop(sync_w);
        drop(err_r);
        let console = console_theirs.as_ref().map(|s| (s, spec.console_size));
        let code = child_start(
            &cfg,
            unshare,
            filter.as_deref(),
            console,
            child_in.as_ref(),
            child_out.as_ref(),
            child_err.as_ref(),
            &sync_r,
            &err_w,
        );
        // SAFETY: leaving the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    let spread = Spread::away_from_me(pid);
    drop(sync_r);
    drop(err_w);
    drop(child_in);
    drop(child_out);
    drop(child_err);
    // While the init mounts the container's filesystems (it waits for its cgroup only just
    // before it needs it): the cgroup, then the attach clients that came before start,
    // waited for (bounded) so they see everything.
    let kill_init = || {
        // SAFETY: killing and reaping our own child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    };
    // The engine plumbs the network while the cgroup is made here.
    if spec.network_gate {
        announce_network(pid);
    }
    let cgroup = place(&spec, pid, spread).inspect_err(|_| kill_init())?;
    if spec.network_gate {
        if let Err(e) = await_network() {
            kill_init();
            if let Some(cg) = &cgroup {
                remove_cgroup(cg);
            }
            return Err(e);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while clients.len() < spec.wait_attach {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let t = rustix::event::Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: left.subsec_nanos() as i64,
        };
        poll(&mut [PollFd::new(&listener, PollFlags::IN)], Some(&t))?;
        match listener.accept() {
            Ok((s, _)) => {
                if let Some(c) = accept_client(s, pty_master.as_ref()) {
                    clients.push(c);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    drop(console_theirs);
    // Release the child, then learn whether execve happened (EOF) or setup failed.
    File::from(sync_w).write_all(b"1")?;
    let (mut our_in, mut our_out) = (our_in, our_out);
    if let Some(sock) = &console_ours {
        if let Some(master) = crate::console::recv_fd(sock)? {
            our_in = Some(master.try_clone()?);
            our_out = Some(master.try_clone()?);
            pty_master = Some(master);
        }
    }
    let mut msg = String::new();
    File::from(err_r).read_to_string(&mut msg)?;
    if !msg.is_empty() {
        let mut status = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let (code, text) = msg.split_once('\n').unwrap_or(("125", msg.as_str()));
        if let Some(cg) = &cgroup {
            remove_cgroup(cg);
        }
        let st = MonitorState {
            status: "exited".into(),
            pid: 0,
            monitor_pid: my_pid,
            finished_at: Some(now()),
            exit_code: Some(code.parse().unwrap_or(125)),
            error: Some(text.to_string()),
            ..Default::default()
        };
        write_state(dir, &st)?;
        notify(NOTE_STARTED);
        return Ok(());
    }
    let started = now();
    write_state(
        dir,
        &MonitorState {
            status: "running".into(),
            pid,
            monitor_pid: my_pid,
            started_at: Some(started.clone()),
            ..Default::default()
        },
    )?;
    notify(NOTE_STARTED);

    let pidfd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid).expect("positive pid"),
        rustix::process::PidfdFlags::empty(),
    )?;
    let mut log = LogWriter::open(&spec)?;
    let mut stdin = our_in;
    let mut outs: Vec<(OwnedFd, u8)> = our_out.into_iter().map(|o| (o, 1)).collect();
    if let Some(e) = our_err {
        outs.push((e, 2));
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut exited = false;
    // The setup's data is done with; what the loop needs is small.
    drop(filter);
    drop(cfg);
    crate::footprint::shed();
    loop {
        let mut fds: Vec<PollFd> = Vec::new();
        fds.push(PollFd::new(&pidfd, PollFlags::IN));
        fds.push(PollFd::new(&listener, PollFlags::IN));
        for (fd, _) in &outs {
            fds.push(PollFd::new(fd, PollFlags::IN));
        }
        let polled: Vec<usize> = (0..clients.len()).filter(|i| clients[*i].input_open).collect();
        for i in &polled {
            fds.push(PollFd::new(&clients[*i].stream, PollFlags::IN));
        }
        let timeout = rustix::event::Timespec { tv_sec: 1, tv_nsec: 0 };
        match poll(
            &mut fds,
            if exited {
                Some(&rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 })
            } else {
                Some(&timeout)
            },
        ) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let revents: Vec<PollFlags> = fds.iter().map(|f| f.revents()).collect();
        drop(fds);
        if revents[0].contains(PollFlags::IN) {
            exited = true;
        }
        if revents[1].contains(PollFlags::IN) {
            while let Ok((s, _)) = listener.accept() {
                if let Some(c) = accept_client(s, pty_master.as_ref()) {
                    if c.req.resize.is_none() {
                        clients.push(c);
                    }
                }
            }
        }
        // Output.
        let outs_before = outs.len();
        let mut closed_outs = Vec::new();
        let mut any_output = false;
        for (i, (fd, stream)) in outs.iter().enumerate() {
            let ev = revents[2 + i];
            if ev.is_empty() && !exited {
                continue;
            }
            loop {
                match rustix::io::read(fd, &mut buf) {
                    Ok(0) => {
                        closed_outs.push(i);
                        break;
                    }
                    Ok(n) => {
                        any_output = true;
                        log.write(*stream, &buf[..n]);
                        broadcast(&mut clients, *stream, &buf[..n], spec.tty);
                        if !exited {
                            break;
                        }
                    }
                    // EIO: the PTY's other side is gone.
                    Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::IO) => {
                        if exited {
                            closed_outs.push(i);
                        }
                        break;
                    }
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(_) => {
                        closed_outs.push(i);
                        break;
                    }
                }
                if exited {
                    set_nonblocking(fd);
                }
            }
        }
        for i in closed_outs.into_iter().rev() {
            outs.remove(i);
        }
        // Client input. A client's EOF ends its stdin, not its output (the docker CLI
        // half-closes at once when it has no stdin to send).
        let base = 2 + outs_before;
        for (k, i) in polled.iter().enumerate() {
            let ev = revents.get(base + k).copied().unwrap_or(PollFlags::empty());
            if ev.is_empty() {
                continue;
            }
            let c = &mut clients[*i];
            match c.stream.read(&mut buf) {
                Ok(0) | Err(_) => {
                    c.input_open = false;
                    if c.req.stdin && spec.stdin_once {
                        stdin = None; // closing our end gives the container EOF
                    }
                }
                Ok(n) => {
                    if c.req.stdin {
                        if let Some(fd) = &stdin {
                            let _ = rustix::io::write(fd, &buf[..n]);
                        }
                    }
                }
            }
        }
        if exited && (outs.is_empty() || !any_output) {
            break;
        }
    }
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    };
    log.flush_partial();
    let oom = cgroup
        .as_ref()
        .map(|c| c.oom_killed().unwrap_or(false))
        .unwrap_or(false);
    if let Some(cg) = &cgroup {
        // The kernel ends a PID namespace's processes with its init; only processes that
        // escaped it (or a shared namespace) can remain. Freezing an empty cgroup costs time.
        if !cg.pids().unwrap_or_default().is_empty() {
            let _ = cg.kill_all(libc::SIGKILL);
        }
        remove_cgroup(cg);
    }
    for c in &mut clients {
        let _ = c.stream.shutdown(std::net::Shutdown::Both);
    }
    let _ = fs::remove_file(&sock_path);
    write_state(
        dir,
        &MonitorState {
            status: "exited".into(),
            pid,
            monitor_pid: my_pid,
            started_at: Some(started),
            finished_at: Some(now()),
            exit_code: Some(code),
            oom_killed: oom,
            error: None,
        },
    )?;
    Ok(())
}

/// Removes the container's cgroup, and the shared `hako` parent when it was the last one
/// (rmdir of a parent in use fails harmlessly), so nothing of hako stays in the hierarchy.
/// The container's own cgroup, then the shared parent if this was the last one out (while
/// the daemon runs, it holds the parent: see `cgroups::hold_default_parent`).
fn remove_cgroup(cg: &crate::cgroups::Cgroup) {
    let _ = cg.remove();
    crate::cgroups::remove_default_parent();
}

fn set_nonblocking(fd: &OwnedFd) {
    let _ = rustix::io::ioctl_fionbio(fd, true);
}

/// Reads the client's request line. A resize request is handled at once.
fn accept_client(mut s: UnixStream, pty: Option<&OwnedFd>) -> Option<Client> {
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while s.read(&mut b).ok()? == 1 && b[0] != b'\n' {
        line.push(b[0]);
        if line.len() > 4096 {
            return None;
        }
    }
    let req: AttachRequest = serde_json::from_slice(&line).ok()?;
    if let (Some((rows, cols)), Some(m)) = (req.resize, pty) {
        let _ = rustix::termios::tcsetwinsize(
            m,
            rustix::termios::Winsize {
                ws_row: rows,
                ws_col: cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            },
        );
        return Some(Client {
            stream: s,
            req,
            input_open: false,
        });
    }
    s.set_read_timeout(None).ok()?;
    s.set_nonblocking(true).ok()?;
    Some(Client {
        stream: s,
        req,
        input_open: true,
    })
}

fn broadcast(clients: &mut Vec<Client>, stream: u8, data: &[u8], tty: bool) {
    let mut frame = Vec::with_capacity(data.len() + 8);
    if !tty {
        frame.extend_from_slice(&[stream, 0, 0, 0]);
        frame.extend_from_slice(&(data.len() as u32).to_be_bytes());
    }
    frame.extend_from_slice(data);
    clients.retain_mut(|c| {
        let wanted = if stream == 1 || tty { c.req.stdout } else { c.req.stderr };
        if !wanted {
            return true;
        }
        // Blocking write with a bound: a client that stops reading is dropped, not waited on.
        let _ = c.stream.set_nonblocking(false);
        let _ = c.stream.set_write_timeout(Some(Duration::from_secs(5)));
        let ok = c.stream.write_all(&frame).is_ok();
        let _ = c.stream.set_nonblocking(true);
        ok
    });
}

/// Docker's json-file log: one JSON object per line of output, with rotation.
struct LogWriter {
    file: File,
    path: PathBuf,
    size: u64,
    max_size: u64,
    max_files: u32,
    partial: HashMap<u8, Vec<u8>>,
}

impl LogWriter {
    fn open(spec: &MonitorSpec) -> io::Result<LogWriter> {
        let file = OpenOptions::new().create(true).append(true).open(&spec.log_path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            file,
            path: spec.log_path.clone(),
            size,
            max_size: spec.log_max_size,
            max_files: spec.log_max_files.max(1),
            partial: HashMap::new(),
        })
    }

    fn write(&mut self, stream: u8, data: &[u8]) {
        let mut pending = self.partial.remove(&stream).unwrap_or_default();
        pending.extend_from_slice(data);
        let mut start = 0;
        while let Some(i) = pending[start..].iter().position(|&b| b == b'\n') {
            let line = pending[start..start + i + 1].to_vec();
            self.entry(stream, &line);
            start += i + 1;
        }
        let rest = pending[start..].to_vec();
        // Docker splits lines longer than 16 KiB.
        if rest.len() >= 16 * 1024 {
            self.entry(stream, &rest);
        } else if !rest.is_empty() {
            self.partial.insert(stream, rest);
        }
    }

    fn flush_partial(&mut self) {
        let parts: Vec<(u8, Vec<u8>)> = self.partial.drain().collect();
        for (s, p) in parts {
            self.entry(s, &p);
        }
    }

    fn entry(&mut self, stream: u8, line: &[u8]) {
        let rec = serde_json::json!({
            "log": String::from_utf8_lossy(line),
            "stream": if stream == 2 { "stderr" } else { "stdout" },
            "time": now(),
        });
        let mut bytes = serde_json::to_vec(&rec).unwrap_or_default();
        bytes.push(b'\n');
        if self.max_size > 0 && self.size + bytes.len() as u64 > self.max_size {
            self.rotate();
        }
        if self.file.write_all(&bytes).is_ok() {
            self.size += bytes.len() as u64;
        }
    }

    fn rotate(&mut self) {
        let name = |i: u32| PathBuf::from(format!("{}.{i}", self.path.display()));
        if self.max_files <= 1 {
            let _ = self.file.set_len(0);
            self.size = 0;
            return;
        }
        let _ = fs::remove_file(name(self.max_files - 1));
        for i in (1..self.max_files - 1).rev() {
            let _ = fs::rename(name(i), name(i + 1));
        }
        let _ = fs::rename(&self.path, name(1));
        if let Ok(f) = OpenOptions::new().create(true).append(true).open(&self.path) {
            self.file = f;
            self.size = 0;
        }
    }
}

/// In the cloned child: stdio, then the init proper (which waits for its cgroup at the gate).
#[allow(clippy::too_many_arguments)]
fn child_start(
    cfg: &Config,
    unshare: libc::c_int,
    filter: Option<&[libc::sock_filter]>,
    console: init::Console,
    stdin: Option<&OwnedFd>,
    stdout: Option<&OwnedFd>,
    stderr: Option<&OwnedFd>,
    sync: &OwnedFd,
    err: &OwnedFd,
) -> i32 {
    // Until the terminal exists (with one) or for stdin without -i: /dev/null.
    let devnull = File::open("/dev/null");
    let null_fd = devnull.as_ref().map(|f| f.as_raw_fd()).unwrap_or(-1);
    let pick = |f: Option<&OwnedFd>| f.map(|f| f.as_raw_fd()).unwrap_or(null_fd);
    // SAFETY: dup2 onto the standard descriptors.
    unsafe {
        libc::dup2(pick(stdin), 0);
        libc::dup2(pick(stdout), 1);
        libc::dup2(pick(stderr), 2);
    }
    drop(devnull);
    let mut gate = init::CgroupGate::new(sync, cfg.has_namespace("cgroup"));
    // SAFETY: unshare changes no memory of this (single-threaded) process.
    let e = match unsafe { libc::unshare(unshare) } {
        0 => init::run(cfg, filter, console, &mut gate),
        _ => init::InitError {
            code: 125,
            message: format!("creating the container's namespaces: {}", io::Error::last_os_error()),
        },
    };
    init::report(err, &e);
    e.code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_file_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_state(dir.path()).is_none());
        for (i, status) in ["starting", "running", "exited"].iter().enumerate() {
            let st = MonitorState {
                status: status.to_string(),
                monitor_pid: i as i32 + 1,
                ..Default::default()
            };
            write_state(dir.path(), &st).unwrap();
            let back = read_state(dir.path()).unwrap();
            assert_eq!((back.status.as_str(), back.monitor_pid), (*status, i as i32 + 1));
        }
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["state.json"]);
    }
}
