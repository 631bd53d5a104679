//! The container's first process, between clone(2) and execve(2): mounts the rootfs,
//! pivots into it, drops privileges and executes the user's program.
//!
//! It runs in a child forked from the single-threaded monitor, inside the new namespaces.
//! Every step that fails reports through the error pipe (a short message the monitor turns
//! into the container's error and Docker's exit code) and exits.

use std::ffi::{CString, OsStr};
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::process::Resource;

use crate::caps;
use crate::config::{Config, Mount};

/// Overlay layers for the rootfs, passed in the `dev.hako.rootfs` annotation.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Overlay {
    /// Topmost first.
    pub lower: Vec<String>,
    pub upper: String,
    pub work: String,
    /// Mount with overlayfs's `volatile`: the upper layer is never synced, not even when
    /// the last mount goes. For containers removed on exit (`--rm`), whose upper layer is
    /// thrown away: otherwise the container's end waits for a sync and a disk flush of the
    /// filesystem under it.
    #[serde(default)]
    pub volatile: bool,
}

pub const OVERLAY_ANNOTATION: &str = "dev.hako.rootfs";
/// `"true"`: run the process under a minimal init that reaps and forwards signals (`--init`).
pub const INIT_ANNOTATION: &str = "dev.hako.init";

/// Why the init failed, and the exit code Docker gives for it.
pub struct InitError {
    pub code: i32,
    pub message: String,
}

fn fail(what: impl std::fmt::Display, e: impl std::fmt::Display) -> InitError {
    InitError {
        code: 125,
        message: format!("{what}: {e}"),
    }
}

fn last_err() -> std::io::Error {
    std::io::Error::last_os_error()
}

fn cstr(s: impl AsRef<OsStr>) -> CString {
    CString::new(s.as_ref().as_bytes()).unwrap_or_else(|_| CString::new("?").expect("static"))
}

fn mount_raw(
    src: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> std::io::Result<()> {
    let src = src.map(cstr);
    let fstype = fstype.map(cstr);
    let data = data.map(cstr);
    let target = cstr(target);
    // SAFETY: every pointer is a valid NUL-terminated string or null.
    let r = unsafe {
        libc::mount(
            src.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            target.as_ptr(),
            fstype.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            data.as_ref().map_or(std::ptr::null(), |s| s.as_ptr().cast()),
        )
    };
    if r != 0 {
        return Err(last_err());
    }
    Ok(())
}

/// The console socket and the initial terminal size, for a container with a terminal.
pub type Console<'a> = Option<(&'a OwnedFd, Option<(u16, u16)>)>;

/// Where a standalone OCI runtime steps into the init (runc's create/start split and the
/// hooks); the daemon's monitor only needs the [`CgroupGate`].
pub trait Stages {
    /// `m` is mounted next.
    fn before_mount(&mut self, _m: &Mount) -> Result<(), InitError> {
        Ok(())
    }
    /// Whether [`Stages::before_mount`] would wait for the cgroup before `m`.
    fn waits_before(&self, _m: &Mount) -> bool {
        false
    }
    /// The rootfs and its mounts are ready, pivot_root comes next.
    fn before_pivot(&mut self) -> Result<(), InitError> {
        Ok(())
    }
    /// Everything but the process' own settings is done; execve comes next.
    fn before_exec(&mut self) -> Result<(), InitError> {
        Ok(())
    }
    /// Descriptors above stdio the process keeps open (runc's `--preserve-fds`).
    fn preserved_fds(&self) -> u32 {
        0
    }
}

/// The init's wait for its cgroup. Whoever starts the init (the monitor, `hako-runtime
/// create`) makes the cgroup while the init mounts the container's filesystems, and writes
/// one byte on `sync` once the init is in it. The init waits before pivot_root (`hako-runtime
/// create` without hooks: before execve), or with a new cgroup namespace before its first
/// cgroup mount if that comes first, then enters the namespace: a cgroup namespace takes the
/// cgroup it is made in as its root, and a cgroup filesystem shows the mounting process's
/// namespace.
pub struct CgroupGate<'a> {
    sync: &'a OwnedFd,
    new_ns: bool,
    passed: bool,
}

impl<'a> CgroupGate<'a> {
    pub fn new(sync: &'a OwnedFd, new_ns: bool) -> CgroupGate<'a> {
        CgroupGate {
            sync,
            new_ns,
            passed: false,
        }
    }

    pub fn wait(&mut self) -> Result<(), InitError> {
        if self.passed {
            return Ok(());
        }
        let mut b = [0u8; 1];
        if rustix::io::read(self.sync, &mut b).unwrap_or(0) != 1 {
            return Err(fail("waiting for the runtime", "it exited"));
        }
        self.passed = true;
        if self.new_ns {
            // SAFETY: a new cgroup namespace changes no memory of this process.
            unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWCGROUP) }
                .map_err(|e| fail("unshare cgroup namespace", e))?;
        }
        Ok(())
    }

    /// Whether passing the gate enters a new cgroup namespace.
    pub fn new_ns(&self) -> bool {
        self.new_ns
    }

    /// For [`Stages::before_mount`]. Only a cgroup namespace makes a cgroup mount depend on
    /// where the init is: without one, the mount shows the hierarchy from its root either
    /// way, and it is made while the runtime still works on the cgroup.
    pub fn before_mount(&mut self, m: &Mount) -> Result<(), InitError> {
        if self.waits_before(m) {
            self.wait()?;
        }
        Ok(())
    }

    /// For [`Stages::waits_before`].
    pub fn waits_before(&self, m: &Mount) -> bool {
        self.new_ns && !self.passed && matches!(m.kind.as_deref(), Some("cgroup" | "cgroup2"))
    }
}

/// The monitor's stages: only the cgroup gate.
impl Stages for CgroupGate<'_> {
    fn before_mount(&mut self, m: &Mount) -> Result<(), InitError> {
        CgroupGate::before_mount(self, m)
    }
    fn waits_before(&self, m: &Mount) -> bool {
        CgroupGate::waits_before(self, m)
    }
    fn before_pivot(&mut self) -> Result<(), InitError> {
        self.wait()
    }
}

/// Runs the container setup and execs; returns only on failure.
pub fn run(
    cfg: &Config,
    seccomp: Option<&[libc::sock_filter]>,
    console: Console,
    stages: &mut dyn Stages,
) -> InitError {
    match setup(cfg, seccomp, console, stages) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

pub enum Never {}

fn setup(
    cfg: &Config,
    seccomp: Option<&[libc::sock_filter]>,
    console: Console,
    stages: &mut dyn Stages,
) -> Result<Never, InitError> {
    let rootfs = PathBuf::from(&cfg.root.path);
    own_session();
    // First what needs no filesystem: while the runtime still makes the cgroup, the init's
    // time before the cgroup gate is free.
    if cfg.has_namespace("network") {
        loopback_up().map_err(|e| fail("bringing up lo", e))?;
    }
    if let Some(h) = &cfg.hostname {
        if cfg.has_namespace("uts") {
            rustix::system::sethostname(h.as_bytes()).map_err(|e| fail("setting the hostname", e))?;
        }
    }
    // Nothing mounted here propagates back to the host.
    mount_raw(None, Path::new("/"), None, libc::MS_REC | libc::MS_PRIVATE, None)
        .map_err(|e| fail("making / private", e))?;
    match cfg.annotations.get(OVERLAY_ANNOTATION) {
        Some(o) => {
            let o: Overlay = serde_json::from_str(o).map_err(|e| fail("rootfs annotation", e))?;
            mount_overlay(&o, &rootfs).map_err(|e| fail("mounting the overlay rootfs", e))?;
        }
        None => mount_raw(Some(&cfg.root.path), &rootfs, None, libc::MS_BIND | libc::MS_REC, None)
            .map_err(|e| fail(format!("bind-mounting rootfs {}", rootfs.display()), e))?,
    }
    let root_fd = rustix::fs::open(
        &rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fail("opening rootfs", e))?;
    // A mount that waits for the cgroup (a cgroup filesystem seen from a new cgroup
    // namespace) goes after the others, and with it every mount over, under or onto it, so
    // those keep their order: the init makes the rest while its cgroup is still being made.
    let mut later: Vec<&Mount> = Vec::new();
    for m in &cfg.mounts {
        if stages.waits_before(m) || later.iter().any(|l| nested(&l.destination, &m.destination)) {
            later.push(m);
            continue;
        }
        stages.before_mount(m)?;
        do_mount(&root_fd, m, cfg.has_namespace("cgroup"))
            .map_err(|e| fail(format!("mounting {}", m.destination), e))?;
    }
    for m in later {
        stages.before_mount(m)?;
        do_mount(&root_fd, m, cfg.has_namespace("cgroup"))
            .map_err(|e| fail(format!("mounting {}", m.destination), e))?;
    }
    if cfg
        .mounts
        .iter()
        .any(|m| m.destination == "/dev" && m.kind.as_deref() == Some("tmpfs"))
    {
        populate_dev(&root_fd).map_err(|e| fail("creating /dev", e))?;
    }
    crate::devices::create(&root_fd, &cfg.linux.devices).map_err(|e| fail("creating devices", e))?;
    drop(root_fd);
    if let Some(adj) = cfg.process.oom_score_adj {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string()).map_err(|e| fail("oom_score_adj", e))?;
    }
    stages.before_pivot()?;
    pivot(&rootfs).map_err(|e| fail("pivot_root", e))?;
    // Before /proc/sys turns read-only below.
    for (key, value) in &cfg.linux.sysctl {
        if key.contains("..") {
            return Err(fail(format!("sysctl {key}"), "invalid name"));
        }
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        std::fs::write(&path, value).map_err(|e| fail(format!("sysctl {key}"), e))?;
    }
    for p in &cfg.linux.masked_paths {
        mask(p).map_err(|e| fail(format!("masking {p}"), e))?;
    }
    for p in &cfg.linux.readonly_paths {
        readonly(p).map_err(|e| fail(format!("making {p} read-only"), e))?;
    }
    if let Some((sock, size)) = console {
        crate::console::setup_in_container(sock, size).map_err(|e| fail("setting up the terminal", e))?;
    }
    if cfg.root.readonly {
        mount_raw(
            None,
            Path::new("/"),
            None,
            libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY,
            None,
        )
        .map_err(|e| fail("making the rootfs read-only", e))?;
    }
    let p = &cfg.process;
    if !p.cwd.is_empty() {
        let _ = std::fs::create_dir_all(&p.cwd);
    }
    set_rlimits(cfg)?;
    stages.before_exec()?;
    if cfg.annotations.get(INIT_ANNOTATION).map(String::as_str) == Some("true") {
        crate::reaper::split()?;
    }
    become_process(p, seccomp, stages.preserved_fds())
}

/// Whether one mount destination lies within the other (or is it).
fn nested(a: &str, b: &str) -> bool {
    let (a, b) = (Path::new(a), Path::new(b));
    a.starts_with(b) || b.starts_with(a)
}

/// The last steps of any process entering a container (the init, or an exec): seccomp,
/// capabilities, user and groups, no_new_privs, working directory, execve. Returns only on
/// failure.
pub fn become_process(
    p: &crate::config::Process,
    seccomp: Option<&[libc::sock_filter]>,
    keep_fds: u32,
) -> Result<Never, InitError> {
    // Without no_new_privs the kernel takes a filter only from a process holding
    // CAP_SYS_ADMIN: install it now, before the capabilities go (runc does the same).
    // Every call left before execve is one the default profile allows.
    if !p.no_new_privileges {
        if let Some(filter) = seccomp {
            crate::seccomp::install(filter).map_err(|e| fail("loading the seccomp profile", e))?;
        }
    }
    let capset = p.capabilities.clone().unwrap_or_default();
    caps::drop_bounding(caps::mask(&capset.bounding)).map_err(|e| fail("dropping capabilities", e))?;
    let gids: Vec<libc::gid_t> = p.user.additional_gids.clone();
    // SAFETY: setgroups with a valid slice; setgid/setuid with plain integers.
    unsafe {
        if libc::setgroups(gids.len(), gids.as_ptr()) != 0 {
            return Err(fail("setgroups", last_err()));
        }
        if libc::setgid(p.user.gid) != 0 {
            return Err(fail(format!("setgid {}", p.user.gid), last_err()));
        }
        if p.user.uid != 0 && !capset.ambient.is_empty() {
            libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0);
        }
        if libc::setuid(p.user.uid) != 0 {
            return Err(fail(format!("setuid {}", p.user.uid), last_err()));
        }
    }
    // A non-root user loses its permitted set in setuid, as in Docker; root keeps the listed ones.
    if p.user.uid == 0 || !capset.ambient.is_empty() {
        caps::set(
            caps::mask(&capset.effective),
            caps::mask(&capset.permitted),
            caps::mask(&capset.inheritable),
        )
        .map_err(|e| fail("setting capabilities", e))?;
        // The kernel takes into the ambient set only what is permitted and inheritable too;
        // configs such as `runc spec`'s list ambient ones without inheritable ones, and runc
        // skips those as well.
        let ambient = caps::mask(&capset.ambient) & caps::mask(&capset.permitted) & caps::mask(&capset.inheritable);
        caps::set_ambient(ambient).map_err(|e| fail("ambient capabilities", e))?;
    }
    if p.no_new_privileges {
        // SAFETY: plain prctl.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(fail("no_new_privs", last_err()));
        }
    }
    let cwd = if p.cwd.is_empty() { "/" } else { p.cwd.as_str() };
    std::env::set_current_dir(cwd).map_err(|e| fail(format!("chdir to {cwd}"), e))?;
    let (path, argv, envp) = prepare_exec(p)?;
    close_inherited_fds(keep_fds);
    default_signals();
    if p.no_new_privileges {
        if let Some(filter) = seccomp {
            crate::seccomp::install(filter).map_err(|e| fail("loading the seccomp profile", e))?;
        }
    }
    // SAFETY: NUL-terminated argv and envp arrays of valid C strings.
    unsafe {
        libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr());
    }
    let e = last_err();
    Err(exec_error(&p.args[0], e))
}

/// A session and process group of its own, as runc gives every container process: in its
/// caller's group, `kill(0, sig)` from inside the container (`kill -TERM 0`) would reach the
/// monitor, and whatever else shares the group outside.
pub fn own_session() {
    // SAFETY: setsid has no memory effects; it fails only for a group leader, which a
    // freshly cloned or forked process is not (nor the monitor or exec-init, spawned as
    // the daemon's children).
    unsafe {
        libc::setsid();
    }
}

/// Every signal back to its default action, none blocked. execve keeps an ignored signal
/// ignored and keeps the mask, so without this the command would inherit whatever the
/// runtime's own callers set: SIGPIPE ignored (Rust's runtime does it), SIGHUP under nohup,
/// SIGINT and SIGQUIT for a shell's background job. A shell cannot trap a signal ignored on
/// entry, and a pipeline's writer would not die of SIGPIPE.
fn default_signals() {
    // The kernel's sigaction with every field zero: SIG_DFL, no flags, an empty mask (32
    // bytes covers the kernel's struct on every architecture).
    let dfl = [0u64; 4];
    let empty = 0u64;
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: raw rt_sigaction (libc's wrapper refuses its own reserved signals) with a
        // valid zeroed struct and no old action asked for; 8 is the kernel's sigset size.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                dfl.as_ptr(),
                std::ptr::null_mut::<u64>(),
                8usize,
            );
        }
    }
    // SAFETY: raw rt_sigprocmask with a valid empty set.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &empty as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        );
    }
}

/// Docker's words and exit codes for a failed execve (the CLI looks for these strings).
fn exec_error(cmd: &str, e: std::io::Error) -> InitError {
    let (code, text) = match e.raw_os_error() {
        Some(libc::ENOENT) => (127, "no such file or directory".to_string()),
        Some(libc::EACCES) => (126, "permission denied".to_string()),
        Some(libc::ENOEXEC) => (126, "exec format error".to_string()),
        _ => (126, e.to_string()),
    };
    InitError {
        code,
        message: format!("exec: {cmd:?}: {text}"),
    }
}

type ExecArgs = (CString, Vec<*const libc::c_char>, Vec<*const libc::c_char>);

/// Resolves the program through the container's PATH, as Docker does, and builds argv/envp.
fn prepare_exec(p: &crate::config::Process) -> Result<ExecArgs, InitError> {
    let cmd = p.args.first().ok_or_else(|| InitError {
        code: 125,
        message: "no command specified".into(),
    })?;
    let path = if cmd.contains('/') {
        PathBuf::from(cmd)
    } else {
        let path_env = p
            .env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        path_env
            .split(':')
            .map(|d| Path::new(d).join(cmd))
            .find(|c| c.metadata().map(|m| m.is_file()).unwrap_or(false))
            .ok_or_else(|| InitError {
                code: 127,
                message: format!("exec: {cmd:?}: executable file not found in $PATH"),
            })?
    };
    // Leaked on purpose: the process image is replaced by execve.
    let argv: Vec<*const libc::c_char> = p
        .args
        .iter()
        .map(|a| cstr(a).into_raw() as *const libc::c_char)
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp: Vec<*const libc::c_char> = p
        .env
        .iter()
        .map(|a| cstr(a).into_raw() as *const libc::c_char)
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    Ok((cstr(path.as_os_str()), argv, envp))
}

/// Marks every descriptor above stdio (and the `keep` the caller passes on on purpose)
/// close-on-exec, so no host descriptor reaches the container.
fn close_inherited_fds(keep: u32) {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only flags descriptors.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3 + keep, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
    }
}

fn mount_overlay(o: &Overlay, target: &Path) -> std::io::Result<()> {
    use rustix::mount::*;
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    // `lowerdir+` (Linux 6.8) adds one layer per call: no limit on the number of layers or on
    // the length of their paths, unlike the single `lowerdir=a:b:c` option.
    for l in &o.lower {
        fsconfig_set_string(&fs, "lowerdir+", l.as_str())?;
    }
    fsconfig_set_string(&fs, "upperdir", o.upper.as_str())?;
    fsconfig_set_string(&fs, "workdir", o.work.as_str())?;
    fsconfig_set_string(&fs, "index", "off")?;
    if o.volatile {
        // A volatile mount leaves this mark (a `dirty` file in a `volatile` directory), and
        // the kernel refuses the next mount while it is there. This container's last mount
        // ended cleanly (after a host crash, a `--rm` container is removed, never started
        // again): the mark can go.
        let mark = Path::new(&o.work).join("work/incompat/volatile");
        let _ = std::fs::remove_file(mark.join("dirty"));
        let _ = std::fs::remove_dir(&mark);
        fsconfig_set_flag(&fs, "volatile")?;
    }
    fsconfig_create(&fs)?;
    let m = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())?;
    Ok(move_mount(
        &m,
        "",
        rustix::fs::CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )?)
}

/// Creates `dest` (a dir, or a file when the source is a file) inside the rootfs without
/// leaving it, and returns an O_PATH descriptor of it to mount onto.
fn mountpoint(root: &OwnedFd, dest: &str, is_file: bool) -> std::io::Result<OwnedFd> {
    let rel = dest.trim_start_matches('/');
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    if !rel.is_empty() {
        let mut cur = PathBuf::new();
        let comps: Vec<_> = Path::new(rel).components().collect();
        for (i, c) in comps.iter().enumerate() {
            cur.push(c);
            let last = i + 1 == comps.len();
            if rustix::fs::openat2(root, &cur, OFlags::PATH | OFlags::CLOEXEC, Mode::empty(), resolve).is_ok() {
                continue;
            }
            let parent = rustix::fs::openat2(
                root,
                cur.parent()
                    .unwrap_or(Path::new(""))
                    .as_os_str()
                    .to_str()
                    .filter(|s| !s.is_empty())
                    .unwrap_or("."),
                OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                resolve,
            )?;
            let name = cur.file_name().expect("component");
            if last && is_file {
                rustix::fs::openat(
                    &parent,
                    name,
                    OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o644),
                )?;
            } else {
                match rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    let path = if rel.is_empty() { "." } else { rel };
    Ok(rustix::fs::openat2(
        root,
        path,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        resolve,
    )?)
}

fn fd_path(fd: RawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{fd}"))
}

fn mount_flags(options: &[String]) -> (libc::c_ulong, Vec<String>) {
    let mut flags = 0;
    let mut data = Vec::new();
    for o in options {
        match o.as_str() {
            "ro" => flags |= libc::MS_RDONLY,
            "rw" => {}
            "nosuid" => flags |= libc::MS_NOSUID,
            "nodev" => flags |= libc::MS_NODEV,
            "noexec" => flags |= libc::MS_NOEXEC,
            "bind" => flags |= libc::MS_BIND,
            "rbind" => flags |= libc::MS_BIND | libc::MS_REC,
            "relatime" => flags |= libc::MS_RELATIME,
            "strictatime" => flags |= libc::MS_STRICTATIME,
            "noatime" => flags |= libc::MS_NOATIME,
            "nodiratime" => flags |= libc::MS_NODIRATIME,
            "private" | "rprivate" | "slave" | "rslave" | "shared" | "rshared" => {}
            // crun's copy of the image's files into a new tmpfs, which podman asks for;
            // hako does not copy, and the kernel must not see the word.
            "tmpcopyup" | "notmpcopyup" => {}
            other => data.push(other.to_string()),
        }
    }
    (flags, data)
}

fn do_mount(root: &OwnedFd, m: &Mount, cgroupns: bool) -> std::io::Result<()> {
    let (flags, data) = mount_flags(&m.options);
    let kind = m.kind.as_deref().unwrap_or("none");
    let is_bind = flags & libc::MS_BIND != 0 || kind == "bind";
    let src_is_file = is_bind && m.source.as_deref().map(|s| Path::new(s).is_file()).unwrap_or(false);
    let target = mountpoint(root, &m.destination, src_is_file)?;
    let tpath = fd_path(target.as_raw_fd());
    let data = data.join(",");
    if is_bind {
        let src = m.source.as_deref().unwrap_or("");
        mount_raw(Some(src), &tpath, None, libc::MS_BIND | (flags & libc::MS_REC), None)?;
        let extra = flags & (libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC);
        if extra != 0 {
            // Re-open: the descriptor names the directory below the new mount.
            let t2 = mountpoint(root, &m.destination, src_is_file)?;
            mount_raw(
                None,
                &fd_path(t2.as_raw_fd()),
                None,
                libc::MS_BIND | libc::MS_REMOUNT | extra,
                None,
            )?;
        }
        return Ok(());
    }
    if kind == "cgroup" || kind == "cgroup2" {
        if !cgroupns && bind_host_cgroups(root, m, &tpath, flags)? {
            return Ok(());
        }
        return mount_cgroups(root, m, &tpath, flags);
    }
    let src = m.source.as_deref().unwrap_or(kind);
    mount_raw(
        Some(src),
        &tpath,
        Some(kind),
        flags,
        if data.is_empty() { None } else { Some(&data) },
    )
}

/// Without a cgroup namespace a container sees the host's hierarchies from their roots, which
/// is what the host's /sys/fs/cgroup holds: one recursive bind of it (instead of a mount per
/// hierarchy), its options set on every mount below in one `mount_setattr`. False where the
/// kernel lacks mount_setattr (before 5.12): the caller mounts each hierarchy instead.
fn bind_host_cgroups(root: &OwnedFd, m: &Mount, target: &Path, flags: libc::c_ulong) -> std::io::Result<bool> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    const MOUNT_ATTR_NOSUID: u64 = 0x2;
    const MOUNT_ATTR_NODEV: u64 = 0x4;
    const MOUNT_ATTR_NOEXEC: u64 = 0x8;
    mount_raw(Some("/sys/fs/cgroup"), target, None, libc::MS_BIND | libc::MS_REC, None)?;
    // Re-open: `target` names the directory below the new mount.
    let bound = mountpoint(root, &m.destination, false)?;
    let target = &fd_path(bound.as_raw_fd());
    let mut attr = MountAttr {
        attr_set: MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    if flags & libc::MS_RDONLY != 0 {
        attr.attr_set |= MOUNT_ATTR_RDONLY;
    }
    let path = cstr(target.as_os_str());
    // SAFETY: mount_setattr with a valid path and a mount_attr of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r == 0 {
        return Ok(true);
    }
    let e = last_err();
    // Nothing of the host's may stay writable: take the bind away again.
    rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH)?;
    match e.raw_os_error() {
        Some(libc::ENOSYS) => Ok(false),
        _ => Err(e),
    }
}

/// The container's view of cgroups, as Docker gives it. The cgroup namespace makes the
/// container's own cgroup the root of every hierarchy mounted here. A cgroup2 host gets one
/// cgroup2 mount; a v1 (or hybrid) host a tmpfs with one directory per hierarchy, as
/// `/sys/fs/cgroup/memory` and the others are on the host, so programs reading their limits
/// there (JVMs, `free`-like tools) find them.
fn mount_cgroups(root: &OwnedFd, m: &Mount, target: &Path, flags: libc::c_ulong) -> std::io::Result<()> {
    use crate::cgroups::Layout;
    let layout = crate::cgroups::detect();
    if layout == Layout::Unified {
        return mount_raw(Some("cgroup2"), target, Some("cgroup2"), flags, None);
    }
    let base = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    mount_raw(Some("tmpfs"), target, Some("tmpfs"), base, Some("mode=755"))?;
    let dir = mountpoint(root, &m.destination, false)?;
    let dir = rustix::fs::openat(
        rustix::fs::CWD,
        fd_path(dir.as_raw_fd()),
        OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    // Our hierarchies, from /proc/self/cgroup: "4:memory:/", "1:name=systemd:/", "0::/".
    let own = std::fs::read_to_string("/proc/self/cgroup")?;
    let mut hierarchies: Vec<(String, String)> = own
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let (id, controllers) = (f.next()?, f.next()?);
            (id != "0" && !controllers.is_empty()).then(|| {
                let name = controllers.strip_prefix("name=").unwrap_or(controllers);
                let data = if controllers.starts_with("name=") {
                    format!("none,{controllers}")
                } else {
                    controllers.to_string()
                };
                (name.to_string(), data)
            })
        })
        .collect();
    if layout == Layout::Hybrid {
        hierarchies.push(("unified".into(), String::new()));
    }
    for (name, data) in &hierarchies {
        match rustix::fs::mkdirat(&dir, name.as_str(), Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        let sub = rustix::fs::openat(&dir, name.as_str(), OFlags::PATH | OFlags::CLOEXEC, Mode::empty())?;
        let path = fd_path(sub.as_raw_fd());
        if data.is_empty() {
            mount_raw(Some("cgroup2"), &path, Some("cgroup2"), flags, None)?;
        } else {
            mount_raw(Some("cgroup"), &path, Some("cgroup"), flags, Some(data))?;
        }
    }
    if flags & libc::MS_RDONLY != 0 {
        let again = mountpoint(root, &m.destination, false)?;
        mount_raw(
            None,
            &fd_path(again.as_raw_fd()),
            None,
            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | base,
            None,
        )?;
    }
    Ok(())
}

/// The device nodes Docker gives every container, on the /dev tmpfs.
fn populate_dev(root: &OwnedFd) -> std::io::Result<()> {
    let dev = rustix::fs::openat2(
        root,
        "dev",
        OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT,
    )?;
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        rustix::fs::mknodat(
            &dev,
            name,
            rustix::fs::FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            rustix::fs::makedev(major, minor),
        )?;
        rustix::fs::chmodat(&dev, name, Mode::from_raw_mode(0o666), rustix::fs::AtFlags::empty())?;
    }
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("core", "/proc/kcore"),
    ] {
        match rustix::fs::symlinkat(target, &dev, link) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A new network namespace has `lo` down; Docker's containers have it up.
fn loopback_up() -> std::io::Result<()> {
    // SAFETY: a throwaway socket and two ioctls on a zeroed ifreq naming "lo".
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return Err(last_err());
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        let mut r = libc::ioctl(s, libc::SIOCGIFFLAGS as _, &mut ifr);
        if r == 0 {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            r = libc::ioctl(s, libc::SIOCSIFFLAGS as _, &ifr);
        }
        let e = last_err();
        libc::close(s);
        if r != 0 {
            return Err(e);
        }
    }
    Ok(())
}

fn pivot(rootfs: &Path) -> std::io::Result<()> {
    std::env::set_current_dir(rootfs)?;
    // pivot_root(".", ".") stacks the old root under the new one; unmounting "." then
    // detaches it without needing a directory for it inside the container.
    rustix::process::pivot_root(".", ".")?;
    rustix::mount::unmount(".", rustix::mount::UnmountFlags::DETACH)?;
    std::env::set_current_dir("/")
}

fn mask(p: &str) -> std::io::Result<()> {
    let path = Path::new(p);
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => mount_raw(Some("tmpfs"), path, Some("tmpfs"), libc::MS_RDONLY, None),
        Ok(_) => mount_raw(Some("/dev/null"), path, None, libc::MS_BIND, None),
    }
}

fn readonly(p: &str) -> std::io::Result<()> {
    let path = Path::new(p);
    if !path.exists() {
        return Ok(());
    }
    mount_raw(Some(p), path, None, libc::MS_BIND | libc::MS_REC, None)?;
    mount_raw(
        None,
        path,
        None,
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_REC,
        None,
    )
}

fn rlimit_resource(name: &str) -> Option<Resource> {
    Some(match name {
        "RLIMIT_NOFILE" => Resource::Nofile,
        "RLIMIT_NPROC" => Resource::Nproc,
        "RLIMIT_CORE" => Resource::Core,
        "RLIMIT_STACK" => Resource::Stack,
        "RLIMIT_MEMLOCK" => Resource::Memlock,
        "RLIMIT_AS" => Resource::As,
        "RLIMIT_CPU" => Resource::Cpu,
        "RLIMIT_DATA" => Resource::Data,
        "RLIMIT_FSIZE" => Resource::Fsize,
        "RLIMIT_NICE" => Resource::Nice,
        "RLIMIT_RTPRIO" => Resource::Rtprio,
        "RLIMIT_SIGPENDING" => Resource::Sigpending,
        "RLIMIT_MSGQUEUE" => Resource::Msgqueue,
        _ => return None,
    })
}

/// Applies rlimits, clamped to the hard limit this process has: without CAP_SYS_RESOURCE a
/// limit cannot be raised, and failing the start for it helps nobody (the monitor warns).
fn set_rlimits(cfg: &Config) -> Result<(), InitError> {
    for r in &cfg.process.rlimits {
        let Some(res) = rlimit_resource(&r.kind) else { continue };
        // None is RLIM_INFINITY.
        let hard = match rustix::process::getrlimit(res).maximum {
            Some(max) => r.hard.min(max),
            None => r.hard,
        };
        let lim = rustix::process::Rlimit {
            current: Some(r.soft.min(hard)).filter(|&v| v != u64::MAX),
            maximum: Some(hard).filter(|&v| v != u64::MAX),
        };
        rustix::process::setrlimit(res, lim).map_err(|e| fail(format!("setrlimit {}", r.kind), e))?;
    }
    Ok(())
}

/// Writes an init failure to the error pipe: `code\nmessage`.
pub fn report(fd: &OwnedFd, e: &InitError) {
    let mut f = std::fs::File::from(fd.try_clone().expect("dup error pipe"));
    let _ = write!(f, "{}\n{}", e.code, e.message);
}
