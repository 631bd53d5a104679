//! `cp` and `export`: a container's files read and written by the daemon (`HEAD`, `GET` and
//! `PUT /containers/{id}/archive`, `GET /containers/{id}/export`).
//!
//! Every path is resolved inside the container, never on the host: `openat2` with
//! `RESOLVE_IN_ROOT` from a descriptor of the container's root, so `/`, `..` and symlinks
//! (absolute or relative) stop at that root, as they do for the container's own processes.
//!
//! The files are reached through a *view*: a mount tree in a private mount namespace that a
//! short-lived thread of the daemon makes and leaves behind, held only by two descriptors
//! (its root and the namespace). A running container's view is a copy of its own mount
//! namespace, joined through its init, with everything but the root filesystem and the
//! volumes and binds detached (`/proc`, `/sys`, `/dev` and tmpfs mounts are not what `cp`
//! reads or writes, as with Docker). A stopped container's view is its overlay mounted
//! afresh, volumes and binds on top. Dropping a view drops the namespace and the kernel
//! unmounts all of it: no mount is left behind, not even by a daemon that crashes mid-copy,
//! and none is ever visible on the host.

use std::ffi::OsString;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

use base64::Engine;
use rustix::fs::{self as rfs, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use rustix::mount::{
    fsconfig_create, fsconfig_set_string, fsmount, fsopen, mount_change, mount_remount, move_mount, open_tree, unmount,
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MountPropagationFlags, MoveMountFlags, OpenTreeFlags,
    UnmountFlags,
};
use rustix::thread::{self as rthread, ThreadNameSpaceType, UnshareFlags};
use serde_json::{json, Value};

use hako_image::apply::{apply_tar, ApplyError, ApplyOptions, Owner};
use hako_image::compression::Compression;

use super::record::ContainerRecord;
use super::Containers;
use crate::error::ApiError;

const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// A container's filesystem as `cp` and `export` see it (see the module's documentation).
pub struct View {
    root: OwnedFd,
    _ns: OwnedFd,
}

impl View {
    fn open(&self, rel: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
        let p = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        rfs::openat2(&self.root, p, flags | OFlags::CLOEXEC, Mode::empty(), IN_ROOT)
    }

    /// `path` (absolute in the container) as a path relative to the root with every symlink
    /// followed the way the container sees it. The last component is followed only with
    /// `follow_last`; components that do not exist are kept as they are.
    fn resolve(&self, path: &Path, follow_last: bool) -> Result<PathBuf, Errno> {
        let mut out = PathBuf::new();
        let mut todo = components(path);
        todo.reverse();
        let mut links = 0;
        while let Some(c) = todo.pop() {
            if c == ".." {
                out.pop();
                continue;
            }
            let cand = out.join(&c);
            if todo.is_empty() && !follow_last {
                return Ok(cand);
            }
            let target = self
                .open(&out, OFlags::PATH | OFlags::DIRECTORY)
                .and_then(|dir| rfs::readlinkat(&dir, c.as_os_str(), Vec::new()));
            match target {
                Ok(t) => {
                    links += 1;
                    if links > 255 {
                        return Err(Errno::LOOP);
                    }
                    let t = PathBuf::from(OsString::from_vec(t.into_bytes()));
                    if t.is_absolute() {
                        out = PathBuf::new();
                    }
                    let mut more = components(&t);
                    more.reverse();
                    todo.extend(more);
                }
                // Not a symlink, or not there (yet): the name stands as it is.
                Err(Errno::INVAL | Errno::NOENT | Errno::NOTDIR) => out = cand,
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

fn components(p: &Path) -> Vec<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// Go's `filepath.Base`.
fn go_base(p: &str) -> &str {
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return if p.is_empty() { "." } else { "/" };
    }
    t.rsplit('/').next().unwrap_or(t)
}

/// Docker's `PreserveTrailingDotOrSeparator(filepath.Join("/", p), p)`: the path made absolute
/// and clean, keeping a trailing `/` or `/.` (which say "a directory", and "its contents").
pub fn abs_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            x => parts.push(x),
        }
    }
    let mut c = format!("/{}", parts.join("/"));
    if go_base(&c) != "." && go_base(p) == "." {
        if !c.ends_with('/') {
            c.push('/');
        }
        c.push('.');
    }
    if !c.ends_with('/') && p.ends_with('/') {
        c.push('/');
    }
    c
}

/// Docker's `ContainerPathStat`, sent base64-encoded in `X-Docker-Container-Path-Stat`.
#[derive(Debug, Clone)]
pub struct PathStat {
    pub name: String,
    pub size: i64,
    /// A Go `os.FileMode`: the permission bits and Go's own type bits.
    pub mode: u32,
    pub mtime: String,
    pub link_target: String,
}

impl PathStat {
    pub fn header(&self) -> String {
        let v = json!({
            "name": self.name, "size": self.size, "mode": self.mode,
            "mtime": self.mtime, "linkTarget": self.link_target,
        });
        base64::engine::general_purpose::STANDARD.encode(v.to_string())
    }
}

/// A Unix mode as Go's `os.FileMode` (what the docker CLI decodes).
fn go_mode(m: u32) -> u32 {
    let mut g = m & 0o777;
    g |= match FileType::from_raw_mode(m) {
        FileType::Directory => 1 << 31,
        FileType::Symlink => 1 << 27,
        FileType::BlockDevice => 1 << 26,
        FileType::CharacterDevice => (1 << 26) | (1 << 21),
        FileType::Fifo => 1 << 25,
        FileType::Socket => 1 << 24,
        _ => 0,
    };
    for (bit, go) in [(0o4000, 1 << 23), (0o2000, 1 << 22), (0o1000, 1 << 20)] {
        if m & bit != 0 {
            g |= go;
        }
    }
    g
}

/// What a path names in a view: a descriptor of it (not followed) and its stat.
struct Target {
    entry: OwnedFd,
    stat: rfs::Stat,
}

/// Docker's `ResolvePath` + `lstat`: the directory part followed, the last name not (a
/// trailing `/` or `/.` names the directory itself).
fn locate(view: &View, abs: &str) -> Result<Target, Errno> {
    let cut = abs.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (dir, base) = abs.split_at(cut);
    let rdir = view.resolve(Path::new(dir), true)?;
    let must_be_dir = base.is_empty() || base == ".";
    let rel = if must_be_dir { rdir } else { rdir.join(base) };
    let entry = view.open(&rel, OFlags::PATH | OFlags::NOFOLLOW)?;
    let stat = rfs::fstat(&entry)?;
    if must_be_dir && FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
        return Err(Errno::NOTDIR);
    }
    Ok(Target { entry, stat })
}

fn path_stat(view: &View, abs: &str, t: &Target) -> Result<PathStat, Errno> {
    let link_target = if FileType::from_raw_mode(t.stat.st_mode) == FileType::Symlink {
        format!("/{}", view.resolve(Path::new(abs), true)?.display())
    } else {
        String::new()
    };
    let mtime = chrono::DateTime::from_timestamp(t.stat.st_mtime, t.stat.st_mtime_nsec as u32)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    Ok(PathStat {
        name: go_base(abs).to_string(),
        size: t.stat.st_size,
        mode: go_mode(t.stat.st_mode),
        mtime,
        link_target,
    })
}

/// A tar to stream out of a view: one path (`cp`) or the whole filesystem (`export`).
pub struct Archive {
    /// Holds the mounts the walk goes through until the stream ends.
    _view: View,
    entry: OwnedFd,
    /// The name of the archived path in the tar; `None` for everything under the root.
    name: Option<Vec<u8>>,
}

impl Archive {
    pub fn write<W: Write>(self, out: W) -> io::Result<W> {
        match &self.name {
            Some(n) => hako_image::tree::write_tar(&self.entry, n, out),
            None => hako_image::tree::write_contents(&self.entry, out),
        }
    }
}

/// A volume or bind a view mounts: a host path at a place in the container.
struct Bind {
    source: PathBuf,
    dest: String,
    readonly: bool,
}

/// The container's volumes and binds, and the /etc files hako mounts into every container.
fn binds(rec: &ContainerRecord, dir: &Path) -> Vec<Bind> {
    let mut out: Vec<Bind> = ["resolv.conf", "hostname", "hosts"]
        .iter()
        .map(|f| Bind {
            source: dir.join(f),
            dest: format!("/etc/{f}"),
            readonly: false,
        })
        .collect();
    for m in &rec.mounts {
        out.push(Bind {
            source: PathBuf::from(m["Source"].as_str().unwrap_or("")),
            dest: m["Destination"].as_str().unwrap_or("").to_string(),
            readonly: m["RW"] == false,
        });
    }
    for m in rec
        .host_config
        .get("Mounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if m.get("Type").and_then(Value::as_str) == Some("bind") {
            out.push(Bind {
                source: PathBuf::from(m.get("Source").and_then(Value::as_str).unwrap_or("")),
                dest: m.get("Target").and_then(Value::as_str).unwrap_or("").to_string(),
                readonly: m.get("ReadOnly").and_then(Value::as_bool).unwrap_or(false),
            });
        }
    }
    out.retain(|b| b.dest.starts_with('/') && !b.source.as_os_str().is_empty());
    // Outer mounts first, so a bind inside a volume lands on the volume.
    out.sort_by_key(|b| Path::new(&b.dest).components().count());
    out
}

/// A pidfd of the container's init while it runs. The init is its monitor's child (a zombie
/// until the monitor reaps it), so with the pidfd held, a parent that is the live monitor
/// proves the PID was not reused.
fn running_init(dir: &Path) -> Option<OwnedFd> {
    let st = hako_runtime::monitor::read_state(dir)?;
    if st.status != "running" || !super::monitor_alive(st.monitor_pid, dir) {
        return None;
    }
    let fd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(st.pid)?,
        rustix::process::PidfdFlags::empty(),
    )
    .ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", st.pid)).ok()?;
    let ppid: i32 = stat.rsplit(')').next()?.split_whitespace().nth(1)?.parse().ok()?;
    (ppid == st.monitor_pid && super::monitor_alive(st.monitor_pid, dir)).then_some(fd)
}

/// Runs `f` on a thread of its own: the namespace changes of a view's making must touch no
/// other thread of the daemon, and that thread ends with `f`.
fn in_thread<T: Send + 'static>(f: impl FnOnce() -> io::Result<T> + Send + 'static) -> io::Result<T> {
    std::thread::Builder::new()
        .name("hako-view".into())
        .spawn(f)?
        .join()
        .map_err(|_| io::Error::other("the thread making the container's view panicked"))?
}

/// A running container's view: a private copy of its mount namespace, where every mount but
/// the root and those at `keep` is detached.
fn running_view(init: OwnedFd, keep: Vec<PathBuf>) -> io::Result<View> {
    // SAFETY: this thread is in_thread's own and ends with this function; unsharing its
    // filesystem attributes and mount namespace changes no other thread.
    unsafe { rthread::unshare_unsafe(UnshareFlags::FS) }?;
    let me = rfs::open(
        "/proc/thread-self",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rthread::move_into_thread_name_spaces(init.as_fd(), ThreadNameSpaceType::MOUNT)?;
    // SAFETY: as above.
    unsafe { rthread::unshare_unsafe(UnshareFlags::NEWNS) }?;
    let mut info = String::new();
    std::fs::File::from(rfs::openat(
        &me,
        "mountinfo",
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
    .read_to_string(&mut info)?;
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(OsString::from_vec(unescape_mountinfo(p))))
        .filter(|p| p != Path::new("/") && !keep.contains(p))
        .collect();
    points.sort_by_key(|p| p.components().count());
    for p in points {
        // Detaching an outer mount takes those below it along; their own turn then fails.
        let _ = unmount(&p, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW);
    }
    let root = rfs::open("/", OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    let ns = rfs::openat(&me, "ns/mnt", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    Ok(View { root, _ns: ns })
}

/// `\040` and the other octal escapes of /proc/*/mountinfo.
fn unescape_mountinfo(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let code = std::str::from_utf8(&b[i + 1..i + 4]).ok();
            if let Some(v) = code.and_then(|c| u8::from_str_radix(c, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// The overlay of a stopped container, as its init would mount it.
struct Layers {
    /// Top first.
    lower: Vec<String>,
    upper: String,
    work: String,
    /// Where the overlay is attached in the private namespace (the container's own, unused
    /// while it is stopped).
    merged: PathBuf,
}

/// A stopped container's view. Read-only, the upper directory is only the top lower layer,
/// so the overlay never claims it and a start meanwhile mounts it as usual; `writable`
/// mounts it as the upper layer (the caller holds the container's start lock).
fn stopped_view(l: Layers, writable: bool, readonly_rootfs: bool, binds: Vec<Bind>) -> io::Result<View> {
    // SAFETY: this thread is in_thread's own and ends with this function.
    unsafe { rthread::unshare_unsafe(UnshareFlags::FS | UnshareFlags::NEWNS) }?;
    // Nothing mounted in this namespace may propagate to the host's.
    mount_change("/", MountPropagationFlags::REC | MountPropagationFlags::PRIVATE)?;
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    if writable {
        for d in &l.lower {
            fsconfig_set_string(&fs, "lowerdir+", d.as_str())?;
        }
        fsconfig_set_string(&fs, "upperdir", l.upper.as_str())?;
        fsconfig_set_string(&fs, "workdir", l.work.as_str())?;
        fsconfig_set_string(&fs, "index", "off")?;
    } else {
        for d in std::iter::once(&l.upper).chain(&l.lower) {
            fsconfig_set_string(&fs, "lowerdir+", d.as_str())?;
        }
    }
    fsconfig_create(&fs)?;
    let attrs = if readonly_rootfs {
        MountAttrFlags::MOUNT_ATTR_RDONLY
    } else {
        MountAttrFlags::empty()
    };
    let m = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs)?;
    move_mount(&m, "", rfs::CWD, &l.merged, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)?;
    let root = rfs::open(
        &l.merged,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for b in &binds {
        attach(&root, b, writable)?;
    }
    let ns = rfs::open(
        "/proc/thread-self/ns/mnt",
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    Ok(View { root, _ns: ns })
}

/// Mounts a bind of `b.source` at `b.dest` inside `root` (resolved inside it). A missing
/// mount point is created only when the view is for writing; a read needs none.
fn attach(root: &OwnedFd, b: &Bind, create: bool) -> io::Result<()> {
    let Ok(meta) = std::fs::metadata(&b.source) else {
        return Ok(());
    };
    let Some(target) = mountpoint(root, &b.dest, !meta.is_dir(), create)? else {
        return Ok(());
    };
    let tree = open_tree(
        rfs::CWD,
        &b.source,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC | OpenTreeFlags::AT_RECURSIVE,
    )?;
    move_mount(
        &tree,
        "",
        &target,
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )?;
    if b.readonly {
        // The descriptor from before names what is below the new mount: look it up again.
        if let Some(top) = mountpoint(root, &b.dest, false, false)? {
            mount_remount(
                format!("/proc/self/fd/{}", top.as_raw_fd()),
                MountFlags::BIND | MountFlags::RDONLY,
                "",
            )?;
        }
    }
    Ok(())
}

/// An O_PATH descriptor of `dest` inside `root`; with `create`, made (a file when `is_file`,
/// else a directory, with its parents) if missing.
fn mountpoint(root: &OwnedFd, dest: &str, is_file: bool, create: bool) -> io::Result<Option<OwnedFd>> {
    let rel = Path::new(dest.trim_start_matches('/'));
    let open = |p: &Path| {
        let p = if p.as_os_str().is_empty() { Path::new(".") } else { p };
        rfs::openat2(root, p, OFlags::PATH | OFlags::CLOEXEC, Mode::empty(), IN_ROOT)
    };
    match open(rel) {
        Ok(fd) => return Ok(Some(fd)),
        Err(Errno::NOENT) if create => {}
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let comps: Vec<_> = rel.components().collect();
    let mut cur = PathBuf::new();
    for (i, c) in comps.iter().enumerate() {
        let parent = open(&cur)?;
        cur.push(c);
        if open(&cur).is_ok() {
            continue;
        }
        let name = c.as_os_str();
        let made = if i + 1 == comps.len() && is_file {
            rfs::openat(
                &parent,
                name,
                OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )
            .map(drop)
        } else {
            rfs::mkdirat(&parent, name, Mode::from_raw_mode(0o755))
        };
        match made {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Some(open(rel)?))
}

fn file_not_found(name: &str, path: &str) -> ApiError {
    ApiError::not_found(format!("Could not find the file {path} in container {name}"))
}

/// An error resolving `path` in container `name`, as Docker reports it.
fn path_error(name: &str, path: &str, e: Errno) -> ApiError {
    match e {
        Errno::NOENT => file_not_found(name, path),
        Errno::NOTDIR => ApiError::bad_request(format!("{path}: not a directory")),
        other => ApiError::internal(format!("{path}: {}", io::Error::from(other))),
    }
}

impl Containers {
    /// The container's view; `with_mounts` adds its volumes and binds (`export` leaves them
    /// out), `writable` is for `PUT` (the caller holds the container's start lock).
    fn view(&self, rec: &ContainerRecord, with_mounts: bool, writable: bool) -> Result<View, ApiError> {
        let dir = self.container_dir(&rec.id);
        let binds = if with_mounts { binds(rec, &dir) } else { Vec::new() };
        let fail = |e: io::Error| ApiError::internal(format!("reaching the files of container {}: {e}", rec.id));
        if rec.state.running {
            if let Some(init) = running_init(&dir) {
                let keep = binds.iter().map(|b| PathBuf::from(&b.dest)).collect();
                match in_thread(move || running_view(init, keep)) {
                    Ok(v) => return Ok(v),
                    // It exited meanwhile: its files are reached as a stopped container's.
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                    Err(e) => return Err(fail(e)),
                }
            }
        }
        let img = self.images.resolve(&rec.image)?;
        let layers = Layers {
            lower: img
                .layers
                .iter()
                .rev()
                .map(|l| self.images.snapshot_path(&l.chain_id).display().to_string())
                .collect(),
            upper: dir.join("rootfs/upper").display().to_string(),
            work: dir.join("rootfs/work").display().to_string(),
            merged: dir.join("rootfs/merged"),
        };
        let ro = rec
            .host_config
            .get("ReadonlyRootfs")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        in_thread(move || stopped_view(layers, writable, ro, binds)).map_err(fail)
    }

    fn record_of(&self, name: &str) -> Result<ContainerRecord, ApiError> {
        let e = self.get(name)?;
        let r = e.rec.lock().unwrap().clone(); // unwrap: poisoned only after a panic
        Ok(r)
    }

    /// `HEAD /containers/{id}/archive?path=`.
    pub fn stat_path(&self, name: &str, path: &str) -> Result<PathStat, ApiError> {
        let rec = self.record_of(name)?;
        let view = self.view(&rec, true, false)?;
        let abs = abs_path(path);
        let t = locate(&view, &abs).map_err(|e| path_error(name, path, e))?;
        path_stat(&view, &abs, &t).map_err(|e| path_error(name, path, e))
    }

    /// `GET /containers/{id}/archive?path=`: the path's stat and its tar, named as Docker
    /// names it (the requested base name, the contents only for a path ending in `/.`).
    pub fn archive(&self, name: &str, path: &str) -> Result<(PathStat, Archive), ApiError> {
        let rec = self.record_of(name)?;
        let view = self.view(&rec, true, false)?;
        let abs = abs_path(path);
        let t = locate(&view, &abs).map_err(|e| path_error(name, path, e))?;
        let stat = path_stat(&view, &abs, &t).map_err(|e| path_error(name, path, e))?;
        let tar_name = go_base(&abs).as_bytes().to_vec();
        Ok((
            stat,
            Archive {
                _view: view,
                entry: t.entry,
                name: Some(tar_name),
            },
        ))
    }

    /// `GET /containers/{id}/export`: the container's filesystem without its volumes and
    /// binds (their mount points stay, empty).
    pub fn export(&self, name: &str) -> Result<Archive, ApiError> {
        let rec = self.record_of(name)?;
        let view = self.view(&rec, false, false)?;
        let entry = view
            .open(Path::new(""), OFlags::PATH | OFlags::DIRECTORY)
            .map_err(|e| ApiError::internal(format!("opening the root of container {}: {e}", rec.id)))?;
        Ok(Archive {
            _view: view,
            entry,
            name: None,
        })
    }

    /// `PUT /containers/{id}/archive?path=DIR`: extracts the (possibly compressed) tar `src`
    /// into the directory `path` of the container, symlinks resolved inside it. The caller
    /// holds the container's start lock.
    pub fn extract<R: Read + Send>(
        &self,
        name: &str,
        path: &str,
        src: R,
        no_overwrite_dir_non_dir: bool,
        copy_uid_gid: bool,
    ) -> Result<(), ApiError> {
        let rec = self.record_of(name)?;
        let view = self.view(&rec, true, true)?;
        let abs = abs_path(path);
        // Unlike a stat, the destination's last component is followed: extracting to a
        // symlink to a directory extracts into that directory.
        let rel = view
            .resolve(Path::new(&abs), true)
            .map_err(|e| path_error(name, path, e))?;
        let dir = view.open(&rel, OFlags::PATH).map_err(|e| path_error(name, path, e))?;
        let st = rfs::fstat(&dir).map_err(|e| path_error(name, path, e))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            return Err(ApiError::bad_request("extraction point is not a directory"));
        }
        // `cp -a`: the files get the container's user, as Docker's copyUIDGID does; else
        // the owners the archive names.
        let user = rec.config.get("User").and_then(Value::as_str).unwrap_or("");
        let owner = if copy_uid_gid && !user.is_empty() {
            let u = super::setup::resolve_user(self, &rec, user)?;
            Owner::Fixed(u.uid, u.gid)
        } else {
            Owner::FromTar
        };
        let mut r = BufReader::new(src);
        let bad = |e: io::Error| ApiError::bad_request(format!("reading the archive: {e}"));
        let compression = Compression::sniff(&mut r).map_err(bad)?;
        let tar = compression.decoder(r).map_err(bad)?;
        let root = view
            .open(Path::new(""), OFlags::DIRECTORY | OFlags::RDONLY)
            .map_err(|e| path_error(name, path, e))?;
        let opts = ApplyOptions {
            base: rel,
            in_root: true,
            whiteouts: false,
            no_overwrite_dir_non_dir,
            owner,
            base_metadata: false,
            rebase: None,
        };
        apply_tar(tar, root, opts).map(drop).map_err(|e| match e {
            ApplyError::Io { source, .. } if source.raw_os_error() == Some(libc::EROFS) => {
                let ro_rootfs = rec
                    .host_config
                    .get("ReadonlyRootfs")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                ApiError::new(
                    http::StatusCode::FORBIDDEN,
                    if ro_rootfs {
                        "container rootfs is marked read-only"
                    } else {
                        "mounted volume is marked read-only"
                    },
                )
            }
            ApplyError::Refused { entry, reason } => ApiError::bad_request(format!("{reason}: {entry}")),
            ApplyError::Read(e) => bad(e),
            ApplyError::Io { entry, source } => ApiError::internal(format!("extracting {entry}: {source}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_made_absolute_as_docker_does() {
        for (given, want) in [
            ("", "/."),
            ("/", "/"),
            ("etc/passwd", "/etc/passwd"),
            ("/tmp/dir/", "/tmp/dir/"),
            ("/tmp/dir/.", "/tmp/dir/."),
            ("/tmp/./dir/..//x", "/tmp/x"),
            ("../../..", "/"),
            ("/..", "/"),
            (".", "/."),
        ] {
            assert_eq!(abs_path(given), want, "{given:?}");
        }
        assert_eq!(go_base("/tmp/dir/"), "dir");
        assert_eq!(go_base("/"), "/");
        assert_eq!(go_base("/a/."), ".");
    }

    #[test]
    fn modes_are_go_file_modes() {
        assert_eq!(go_mode(0o040755), (1 << 31) | 0o755);
        assert_eq!(go_mode(0o100644), 0o644);
        assert_eq!(go_mode(0o120777), (1 << 27) | 0o777);
        assert_eq!(go_mode(0o104755), (1 << 23) | 0o755);
        assert_eq!(go_mode(0o020666), (1 << 26) | (1 << 21) | 0o666);
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(r"/a\040b\134c"), b"/a b\\c");
        assert_eq!(unescape_mountinfo("/plain"), b"/plain");
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let t = tempfile_dir();
        let root = t.join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("data/sub")).unwrap();
        std::os::unix::fs::symlink("/", root.join("data/up")).unwrap();
        std::os::unix::fs::symlink("../../../..", root.join("data/sub/climb")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("etclink")).unwrap();
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        let fd = rfs::open(
            &root,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        let ns = rfs::open("/proc/self/ns/mnt", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).unwrap();
        let v = View { root: fd, _ns: ns };
        let r = |p: &str, follow| v.resolve(Path::new(p), follow).map(|p| p.display().to_string());
        assert_eq!(r("/data/up/etc", true).unwrap(), "etc");
        assert_eq!(r("/data/sub/climb/etc/x", true).unwrap(), "etc/x");
        assert_eq!(r("/etclink", false).unwrap(), "etclink");
        assert_eq!(r("/etclink", true).unwrap(), "etc");
        assert_eq!(r("/../../etclink/../..", true).unwrap(), "");
        assert_eq!(r("/loop", true), Err(Errno::LOOP));
        std::fs::remove_dir_all(&t).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let p = std::env::temp_dir().join(format!("hako-archive-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        p
    }
}
