//! `create`: sets a container up from an OCI bundle and leaves its init waiting, just
//! before execve, on the exec fifo that `start` opens (runc's create/start split). For `run`
//! there is no fifo: the init goes on to execve.
//!
//! The init is cloned from this process into the new namespaces and talks back over two
//! pipes: `status` (init to runtime: `H` "run the prestart and createRuntime hooks", `R`
//! "ready, waiting on the fifo", `E` + code + message "failed", and end of file once it has
//! executed the process) and `sync` (runtime to init: one byte to go on after the cgroup
//! placement, and `C` after the hooks).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

use super::state::{self, Saved, FIFO};
use super::{hooks, resources, Error};
use crate::cgroups::Cgroup;
use crate::config::{Config, Hooks};
use crate::init::{self, InitError, Stages};

pub struct CreateOpts {
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
}

/// A container whose init waits on its exec fifo.
pub struct Created {
    pub saved: Saved,
    pub config: Config,
    /// EOF once the init has executed the process; `E` and its error if that failed.
    pub status: File,
    /// For `run`'s delete, which then need not find it again.
    pub cgroup: Option<Cgroup>,
}

/// Where cgroupsPath puts the container: absolute paths from each hierarchy's root,
/// relative ones from this process's own cgroup. Without one, the container's cgroup is
/// named after it directly in this process's own cgroup, as runc places it: no parent to
/// make before and remove after every standalone run.
pub fn cgroup_place(cfg: &Config, id: &str) -> Result<(Option<PathBuf>, String), Error> {
    let Some(p) = cfg.linux.cgroups_path.as_deref().filter(|p| !p.is_empty()) else {
        return Ok((Some(PathBuf::new()), id.to_string()));
    };
    if p.contains(':') {
        return Err(Error::msg(format!(
            "cgroupsPath {p:?} is in systemd's slice:prefix:name form; hako uses cgroupfs paths (e.g. /mygroup/{id})"
        )));
    }
    let path = Path::new(p);
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::msg(format!("cgroupsPath {p:?} has no last component")))?;
    // "/a/b/c" hangs from /a/b in every hierarchy; "b/c" and "c" from this process's own
    // cgroup.
    let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok((Some(parent), name.to_string()))
}

/// Undoes a half-made container when create fails.
struct Cleanup<'a> {
    dir: &'a Path,
    cgroup: Option<Cgroup>,
    child: Option<i32>,
    armed: bool,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(pid) = self.child {
            // SAFETY: killing and reaping our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
        if let Some(cg) = &self.cgroup {
            let _ = cg.remove();
        }
        let _ = fs::remove_dir_all(self.dir);
    }
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

pub fn create(root: &Path, o: &CreateOpts, console: Option<OwnedFd>) -> Result<Created, Error> {
    create_with(root, o, super::read_config(&o.bundle)?, console, false)
}

/// [`create`] with the bundle's config already read (`run` reads it first). With `start`
/// (`run`), the init executes the process once set up, without waiting for `start`, and
/// this returns once it has.
pub(super) fn create_with(
    root: &Path,
    o: &CreateOpts,
    mut cfg: Config,
    console: Option<OwnedFd>,
    start: bool,
) -> Result<Created, Error> {
    state::check_id(&o.id)?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .map_err(|e| Error::io(format!("creating {}", root.display()), e))?;
    let dir = state::dir(root, &o.id);
    match state::make_dir(root, &o.id) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(Error::msg(format!("container with id exists: {}", o.id)))
        }
        Err(e) => return Err(Error::io(format!("creating {}", dir.display()), e)),
    }
    let mut cleanup = Cleanup {
        dir: &dir,
        cgroup: None,
        child: None,
        armed: true,
    };
    let bundle = fs::canonicalize(&o.bundle).map_err(|e| Error::io(format!("bundle {}", o.bundle.display()), e))?;
    let rootfs = bundle.join(&cfg.root.path);
    if !rootfs.is_dir() {
        return Err(Error::msg(format!("rootfs {} is not a directory", rootfs.display())));
    }
    cfg.root.path = rootfs.to_string_lossy().into_owned();
    if cfg.linux.namespaces.iter().any(|n| n.kind == "user") {
        return Err(Error::msg(
            "user namespaces are not supported by hako runtime yet: remove the \"user\" namespace and the id mappings from config.json",
        ));
    }
    if !cfg.linux.namespaces.iter().any(|n| n.kind == "mount") {
        return Err(Error::msg("config.json must ask for a mount namespace"));
    }
    match (cfg.process.terminal, &console) {
        (true, None) => {
            return Err(Error::msg(
                "cannot allocate a terminal without a console socket: pass --console-socket, or set process.terminal to false",
            ))
        }
        (false, Some(_)) => {
            return Err(Error::msg(
                "--console-socket given but process.terminal is false in config.json",
            ))
        }
        _ => {}
    }
    let filter = crate::seccomp::compile_config(cfg.linux.seccomp.as_deref(), cfg.process.capabilities.as_ref())
        .map_err(|e| Error::msg(format!("seccomp profile: {e}")))?;

    let (cg_parent, cg_name) = cgroup_place(&cfg, &o.id)?;
    let res = resources::from_oci(cfg.linux.resources.as_ref())?;
    res.validate()
        .map_err(|e| Error::msg(format!("config.json linux.resources: {e}")))?;

    let fifo = if start {
        None
    } else {
        let fifo_path = dir.join(FIFO);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo_path,
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .map_err(|e| Error::io("creating the exec fifo".into(), e.into()))?;
        Some(
            rustix::fs::open(&fifo_path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| Error::io("opening the exec fifo".into(), e.into()))?,
        )
    };

    // Namespaces given by path are joined: the PID one here (it applies to children), the
    // others by the init.
    let mut join = Vec::new();
    let mut flags: libc::c_long = libc::SIGCHLD as libc::c_long;
    for ns in &cfg.linux.namespaces {
        let f = match ns.kind.as_str() {
            "mount" => libc::CLONE_NEWNS,
            "pid" => libc::CLONE_NEWPID,
            "uts" => libc::CLONE_NEWUTS,
            "ipc" => libc::CLONE_NEWIPC,
            "network" => libc::CLONE_NEWNET,
            "cgroup" => libc::CLONE_NEWCGROUP,
            other => return Err(Error::msg(format!("unknown namespace type {other:?} in config.json"))),
        };
        match &ns.path {
            None if f == libc::CLONE_NEWCGROUP => {}
            None => flags |= f as libc::c_long,
            Some(p) => {
                let fd = rustix::fs::open(p, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
                    .map_err(|e| Error::io(format!("opening {} namespace {p}", ns.kind), e.into()))?;
                if f == libc::CLONE_NEWPID {
                    // SAFETY: setns on a namespace descriptor we opened.
                    if unsafe { libc::setns(fd.as_raw_fd(), f) } != 0 {
                        return Err(Error::io(
                            format!("joining pid namespace {p}"),
                            io::Error::last_os_error(),
                        ));
                    }
                } else {
                    join.push((fd, f));
                }
            }
        }
    }
    let new_cgroup_ns = cfg.has_namespace("cgroup");
    // Only the PID namespace must be made by clone (it takes effect for children). The init
    // makes the others itself with unshare: a clone that copies the mount table and builds a
    // network namespace keeps this process waiting for a millisecond, which it spends making
    // the cgroup instead while the init does that work.
    let unshare = flags & !(libc::CLONE_NEWPID as libc::c_long | libc::SIGCHLD as libc::c_long);
    flags &= !unshare;

    let (sync_r, sync_w) = pipe().map_err(|e| Error::io("pipe".into(), e))?;
    let (status_r, status_w) = pipe().map_err(|e| Error::io("pipe".into(), e))?;
    let mut saved = Saved {
        id: o.id.clone(),
        pid: 0,
        start_time: 0,
        bundle: bundle.clone(),
        rootfs: rootfs.clone(),
        created: crate::monitor::now(),
        annotations: cfg.annotations.clone(),
        cgroup_parent: cg_parent,
        cgroup_name: cg_name,
        paused: false,
    };

    // SAFETY: `hako runtime` is single-threaded, so a fork-like clone is safe; the child
    // only runs init code and execs or exits.
    let pid = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) } as i32;
    if pid < 0 {
        return Err(Error::io("clone".into(), io::Error::last_os_error()));
    }
    if pid == 0 {
        drop(sync_w);
        drop(status_r);
        let mut stages = OciStages {
            status: &status_w,
            sync: &sync_r,
            fifo: fifo.as_ref(),
            hooks: &cfg.hooks,
            state: saved.clone(),
            preserve_fds: o.preserve_fds,
            gate: init::CgroupGate::new(&sync_r, new_cgroup_ns),
        };
        let e = child(
            &cfg,
            filter.as_deref(),
            console.as_ref(),
            unshare as libc::c_int,
            &join,
            &mut stages,
        );
        tell_failure(&status_w, &e);
        // SAFETY: leaving the child without running the parent's destructors.
        unsafe { libc::_exit(e.code) };
    }
    cleanup.child = Some(pid);
    let spread = crate::spread::Spread::away_from_me(pid);
    drop(sync_r);
    drop(status_w);
    drop(console);
    // The cgroup is made while the init mounts the container's filesystems (two CPUs
    // work at once); the init waits for it only where it matters (see `OciStages`).
    let cgroup = Cgroup::create(saved.cgroup_parent.as_deref(), &saved.cgroup_name, &res)
        .map_err(|e| Error::msg(format!("creating the container's cgroup: {e}")))?;
    if let Some(s) = spread {
        s.restore();
    }
    let placed = cgroup.add_task(pid);
    cleanup.cgroup = Some(cgroup);
    let mut status = File::from(status_r);
    if let Err(e) = placed {
        // The init may have failed first (and so left no process to move): its reason is
        // the one to give. Closing the sync pipe ends its wait otherwise.
        drop(sync_w);
        let mut msg = String::new();
        let _ = status.read_to_string(&mut msg);
        return Err(match msg.strip_prefix('E').and_then(|m| m.split_once('\n')) {
            Some((code, text)) if !text.starts_with("waiting for the runtime") => Error::Init {
                code: code.parse().unwrap_or(125),
                message: text.to_string(),
            },
            _ => Error::msg(format!("moving the init into its cgroup: {e}")),
        });
    }
    let mut sync = File::from(sync_w);
    // If the init already failed, its status below says why.
    let _ = sync.write_all(b"g");
    saved.pid = pid;
    saved.start_time = state::start_time(pid).unwrap_or(0);
    // Saved while the init still sets up (on failure, Cleanup removes the directory again).
    state::save(root, &saved)?;
    loop {
        let mut tag = [0u8; 1];
        let n = status
            .read(&mut tag)
            .map_err(|e| Error::io("reading the init's status".into(), e))?;
        match (n, tag[0]) {
            (1, b'H') => {
                let st = saved.hook_state("creating");
                hooks::run("prestart", &cfg.hooks.prestart, &st)
                    .and_then(|()| hooks::run("createRuntime", &cfg.hooks.create_runtime, &st))
                    .map_err(Error::msg)?;
                sync.write_all(b"C")
                    .map_err(|e| Error::io("resuming the init".into(), e))?;
            }
            (1, b'R') => break,
            // Executed: the status pipe closes on execve.
            (0, _) if start => break,
            (1, b'E') => {
                let mut msg = String::new();
                let _ = status.read_to_string(&mut msg);
                let (code, text) = msg.split_once('\n').unwrap_or(("125", msg.as_str()));
                return Err(Error::Init {
                    code: code.parse().unwrap_or(125),
                    message: text.to_string(),
                });
            }
            _ => return Err(Error::msg("the container's init died during setup")),
        }
    }
    if let Some(p) = &o.pid_file {
        write_pid_file(p, pid)?;
    }
    cleanup.armed = false;
    Ok(Created {
        saved,
        config: cfg,
        status,
        cgroup: cleanup.cgroup.take(),
    })
}

/// Written then renamed, as runc does: whoever watches the file never reads half a PID.
pub fn write_pid_file(path: &Path, pid: i32) -> Result<(), Error> {
    PidFile::open(path)?.write(pid)
}

/// A pid file's directory, opened ahead: `exec` writes the file after it has joined the
/// container's mount namespace, where the path means something else.
pub struct PidFile {
    dir: OwnedFd,
    name: std::ffi::OsString,
    shown: PathBuf,
}

impl PidFile {
    pub fn open(path: &Path) -> Result<PidFile, Error> {
        let err = |e: io::Error| Error::io(format!("the pid file {}", path.display()), e);
        let name = path
            .file_name()
            .ok_or_else(|| err(io::ErrorKind::InvalidInput.into()))?
            .to_os_string();
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = rustix::fs::open(
            parent,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| err(e.into()))?;
        Ok(PidFile {
            dir,
            name,
            shown: path.to_path_buf(),
        })
    }

    pub fn write(&self, pid: i32) -> Result<(), Error> {
        let err = |e: rustix::io::Errno| Error::io(format!("writing the pid file {}", self.shown.display()), e.into());
        let mut tmp = std::ffi::OsString::from(".");
        tmp.push(&self.name);
        tmp.push(".tmp");
        // O_PATH descriptors cannot be written through: reopen the directory.
        let dir =
            rustix::fs::openat(&self.dir, ".", OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).map_err(err)?;
        let f = rustix::fs::openat(
            &dir,
            &tmp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(err)?;
        rustix::io::write(&f, pid.to_string().as_bytes()).map_err(err)?;
        rustix::fs::renameat(&dir, &tmp, &dir, &self.name).map_err(err)
    }
}

/// The init's failure, to the runtime if it still listens, else on the container's stderr
/// (after `create` returned, nobody reads the status pipe).
fn tell_failure(status: &OwnedFd, e: &InitError) {
    let msg = format!("E{}\n{}", e.code, e.message);
    if rustix::io::write(status, msg.as_bytes()).is_err() {
        let _ = writeln!(io::stderr(), "hako runtime: {}", e.message);
    }
}

fn child(
    cfg: &Config,
    filter: Option<&[libc::sock_filter]>,
    console: Option<&OwnedFd>,
    unshare: libc::c_int,
    join: &[(OwnedFd, libc::c_int)],
    stages: &mut OciStages,
) -> InitError {
    let fail = |what: &str, e: io::Error| InitError {
        code: 125,
        message: format!("{what}: {e}"),
    };
    // SAFETY: unshare changes no memory of this (single-threaded) process.
    if unsafe { libc::unshare(unshare) } != 0 {
        return fail("creating the container's namespaces", io::Error::last_os_error());
    }
    for (fd, kind) in join {
        // SAFETY: setns on a namespace descriptor opened by the runtime.
        if unsafe { libc::setns(fd.as_raw_fd(), *kind) } != 0 {
            return fail("joining a namespace", io::Error::last_os_error());
        }
    }
    init::run(cfg, filter, console.map(|s| (s, None)), stages)
}

/// The init's side of the create/start split and of the hooks that run inside.
struct OciStages<'a> {
    status: &'a OwnedFd,
    sync: &'a OwnedFd,
    /// None for `run`: no wait for `start`.
    fifo: Option<&'a OwnedFd>,
    hooks: &'a Hooks,
    state: Saved,
    preserve_fds: u32,
    gate: init::CgroupGate<'a>,
}

impl OciStages<'_> {
    fn tell(&self, tag: &[u8]) -> Result<(), InitError> {
        rustix::io::write(self.status, tag).map(|_| ()).map_err(|e| InitError {
            code: 125,
            message: format!("talking to the runtime: {e}"),
        })
    }
}

fn hook_failure(message: String) -> InitError {
    InitError { code: 125, message }
}

impl Stages for OciStages<'_> {
    fn before_mount(&mut self, m: &crate::config::Mount) -> Result<(), InitError> {
        self.gate.before_mount(m)
    }

    fn waits_before(&self, m: &crate::config::Mount) -> bool {
        self.gate.waits_before(m)
    }

    fn before_pivot(&mut self) -> Result<(), InitError> {
        // Hooks find the container in its cgroup; without hooks (or a cgroup namespace, which
        // the gate enters) the init goes on to pivot and mask while the runtime still makes
        // the cgroup, and waits for it only before execve.
        let hooks = &self.hooks;
        if self.gate.new_ns()
            || !(hooks.prestart.is_empty() && hooks.create_runtime.is_empty() && hooks.create_container.is_empty())
        {
            self.gate.wait()?;
        }
        // The host /proc is still visible here: it names our PID as the host sees it, which
        // is what hooks get.
        if let Some(pid) = fs::read_link("/proc/self")
            .ok()
            .and_then(|p| p.to_str().and_then(|s| s.parse().ok()))
        {
            self.state.pid = pid;
        }
        if !self.hooks.prestart.is_empty() || !self.hooks.create_runtime.is_empty() {
            self.tell(b"H")?;
            let mut b = [0u8; 1];
            if rustix::io::read(self.sync, &mut b).unwrap_or(0) != 1 || b[0] != b'C' {
                return Err(hook_failure("the prestart or createRuntime hooks failed".into()));
            }
        }
        hooks::run(
            "createContainer",
            &self.hooks.create_container,
            &self.state.hook_state("creating"),
        )
        .map_err(hook_failure)
    }

    fn before_exec(&mut self) -> Result<(), InitError> {
        self.gate.wait()?;
        if let Some(fifo) = self.fifo {
            self.tell(b"R")?;
            // Blocks until `start` opens the other end. The fifo is reached through our own
            // descriptor: its path is outside the container's root.
            let path = format!("/proc/self/fd/{}", fifo.as_raw_fd());
            let mut f = fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(&path)
                .map_err(|e| hook_failure(format!("waiting for start: {e}")))?;
            f.write_all(b"0")
                .map_err(|e| hook_failure(format!("waiting for start: {e}")))?;
        }
        hooks::run(
            "startContainer",
            &self.hooks.start_container,
            &self.state.hook_state("created"),
        )
        .map_err(hook_failure)
    }

    fn preserved_fds(&self) -> u32 {
        self.preserve_fds
    }
}

/// Connects to the console socket a caller (conmon, containerd-shim) listens on.
pub fn connect_console(path: &Path) -> Result<OwnedFd, Error> {
    UnixStream::connect(path)
        .map(OwnedFd::from)
        .map_err(|e| Error::io(format!("connecting to the console socket {}", path.display()), e))
}
