//! Applying a layer tar to a directory, safely.
//!
//! Every path is resolved with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` from a
//! descriptor of the target, so the kernel itself refuses any resolution that would leave
//! the target: `..` that climbs out, an absolute symlink, or a relative one that escapes.
//! Names are cleaned first as Docker does (a leading `/` counts from the target's root; a
//! name that still climbs out after cleaning is refused). The final component is never
//! followed: an existing entry there is removed and the new one created with `O_EXCL`.
//!
//! OCI whiteouts become overlayfs whiteouts: `.wh.NAME` a 0/0 character device `NAME`,
//! `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr on its directory. Each layer is
//! unpacked into its own directory, so whiteouts are recorded, not applied.
//!
//! [`apply_tar`] with [`ApplyOptions`] is the same code for `docker cp`'s extractions: into a
//! directory of a container's root (symlinks resolve as inside the container, with
//! `RESOLVE_IN_ROOT`), or into a directory on the host.

use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags, Timestamps};
use rustix::io::Errno;
use tar::EntryType;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("layer entry {entry:?}: {reason}")]
    Refused { entry: String, reason: String },
    #[error("layer entry {entry:?}: {source}")]
    Io { entry: String, source: io::Error },
    #[error("reading layer tar: {0}")]
    Read(io::Error),
}

/// What an apply wrote.
#[derive(Debug, Default, Clone, Copy)]
pub struct ApplyStats {
    pub entries: u64,
    /// Sum of regular file sizes (Docker's layer size).
    pub size: u64,
}

/// Who owns what an apply creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// The owners the tar names.
    FromTar,
    /// These IDs for every entry (`docker cp -a` into a container with a user).
    Fixed(u32, u32),
    /// Whoever runs the apply (`docker cp` out to the host).
    Process,
}

/// How an apply resolves names and what it does beyond writing entries.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// The directory, relative to the root, that entry names count from.
    pub base: PathBuf,
    /// Resolve symlinks as if the root were `/` (a container's filesystem) instead of
    /// refusing those that leave it.
    pub in_root: bool,
    /// Turn OCI whiteouts into overlay whiteouts (layers); otherwise `.wh.` names are files.
    pub whiteouts: bool,
    /// Refuse to replace a directory with a non-directory or the reverse.
    pub no_overwrite_dir_non_dir: bool,
    pub owner: Owner,
    /// Apply the metadata of an entry naming the base directory itself (layers do; `cp`
    /// leaves an existing destination directory as it is, as Docker does).
    pub base_metadata: bool,
    /// Renames entries whose name starts with the first string to start with the second
    /// (Docker's RebaseArchiveEntries, for `cp` to a new name).
    pub rebase: Option<(String, String)>,
}

impl ApplyOptions {
    /// A layer unpacked into its snapshot directory.
    pub fn layer() -> ApplyOptions {
        ApplyOptions {
            base: PathBuf::new(),
            in_root: false,
            whiteouts: true,
            no_overwrite_dir_non_dir: false,
            owner: Owner::FromTar,
            base_metadata: true,
            rebase: None,
        }
    }
}

/// Applies the uncompressed layer tar `src` to the directory `target`.
pub fn apply_layer<R: Read>(src: R, target: &Path) -> Result<ApplyStats, ApplyError> {
    let root = rfs::open(
        target,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ApplyError::Io {
        entry: target.display().to_string(),
        source: e.into(),
    })?;
    apply_tar(src, root, ApplyOptions::layer())
}

/// Applies the uncompressed tar `src` beneath the directory `root` as `opts` say.
pub fn apply_tar<R: Read>(src: R, root: OwnedFd, opts: ApplyOptions) -> Result<ApplyStats, ApplyError> {
    let mut ap = Applier {
        root,
        opts,
        parent_cache: None,
        dir_times: Vec::new(),
        stats: ApplyStats::default(),
        buf: vec![0u8; 1 << 20],
    };
    let mut archive = tar::Archive::new(src);
    for entry in archive.entries().map_err(ApplyError::Read)? {
        let mut entry = entry.map_err(ApplyError::Read)?;
        ap.entry(&mut entry)?;
    }
    ap.finish()?;
    Ok(ap.stats)
}

struct Applier {
    root: OwnedFd,
    opts: ApplyOptions,
    /// The last parent directory opened: tar entries come grouped by directory.
    parent_cache: Option<(PathBuf, OwnedFd)>,
    dir_times: Vec<(PathBuf, u64)>,
    stats: ApplyStats,
    buf: Vec<u8>,
}

/// Lexically cleans an entry name relative to the root. `None` if it climbs out.
pub fn clean_entry_path(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(n) => out.push(n),
        }
    }
    Some(out)
}

fn resolve_flags(in_root: bool) -> ResolveFlags {
    if in_root {
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
    } else {
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS
    }
}

/// `name` with its leading `old` replaced by `new`, as Docker's RebaseArchiveEntries does.
fn rebased(name: &Path, rebase: &Option<(String, String)>) -> PathBuf {
    match rebase {
        Some((old, new)) => match name.as_os_str().as_bytes().strip_prefix(old.as_bytes()) {
            Some(rest) => {
                let mut b = new.as_bytes().to_vec();
                b.extend_from_slice(rest);
                PathBuf::from(OsStr::from_bytes(&b))
            }
            None => name.to_path_buf(),
        },
        None => name.to_path_buf(),
    }
}

impl Applier {
    fn entry<R: Read>(&mut self, e: &mut tar::Entry<R>) -> Result<(), ApplyError> {
        let raw = rebased(&e.path().map_err(ApplyError::Read)?, &self.opts.rebase);
        let name_s = raw.display().to_string();
        let refuse = |reason: &str| ApplyError::Refused {
            entry: name_s.clone(),
            reason: reason.to_string(),
        };
        let cleaned =
            clean_entry_path(&raw).ok_or_else(|| refuse("the name climbs out of the layer root with '..'; refused"))?;
        let kind = e.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
            return Ok(());
        }
        self.stats.entries += 1;
        let hdr = e.header().clone();
        let mode = hdr.mode().map_err(ApplyError::Read)? & 0o7777;
        let uid = id_field(&hdr.as_old().uid, hdr.uid()).map_err(ApplyError::Read)?;
        let gid = id_field(&hdr.as_old().gid, hdr.gid()).map_err(ApplyError::Read)?;
        let ids = match self.opts.owner {
            Owner::FromTar => Some((uid_of(uid), gid_of(gid))),
            Owner::Fixed(u, g) => Some((uid_of(u), gid_of(g))),
            Owner::Process => None,
        };
        let mtime = hdr.mtime().unwrap_or(0);
        let io = |source: io::Error| ApplyError::Io {
            entry: name_s.clone(),
            source,
        };
        let flags = resolve_flags(self.opts.in_root);
        let whiteouts = self.opts.whiteouts;

        if cleaned.as_os_str().is_empty() {
            // The base itself ("./"): keep its metadata, as Docker does for layers.
            if kind == EntryType::Directory && self.opts.base_metadata {
                let base = self.opts.base.clone();
                let dir = open_beneath(self.root.as_fd(), &base, flags).map_err(|e| io(e.into()))?;
                if let Some((u, g)) = ids {
                    rfs::fchown(&dir, Some(u), Some(g)).map_err(|e| io(e.into()))?;
                }
                rfs::fchmod(&dir, Mode::from_raw_mode(mode)).map_err(|e| io(e.into()))?;
                self.dir_times.push((base, mtime));
            }
            return Ok(());
        }
        let rel = self.opts.base.join(&cleaned);
        let file_name = rel
            .file_name()
            .expect("cleaned non-empty path has a file name")
            .to_owned(); // invariant
        let parent_rel = rel.parent().map(Path::to_path_buf).unwrap_or_default();
        let parent = self.open_parent(&parent_rel).map_err(|e| match e {
            Errno::XDEV | Errno::LOOP => {
                refuse("its directory resolves outside the layer root through a symlink; refused")
            }
            Errno::NOTDIR => refuse("a parent of this path is not a directory"),
            other => io(other.into()),
        })?;
        let parent_fd = parent.as_fd();

        let fname = file_name.as_bytes();
        if whiteouts && fname == OPAQUE_MARKER.as_bytes() {
            rfs::fsetxattr(parent_fd, OVERLAY_OPAQUE_XATTR, b"y", rfs::XattrFlags::empty())
                .map_err(|e| io(e.into()))?;
            return Ok(());
        }
        if let Some(hidden) = fname.strip_prefix(WHITEOUT_PREFIX.as_bytes()).filter(|_| whiteouts) {
            let hidden = OsStr::from_bytes(hidden);
            if hidden.is_empty() || hidden == ".." || hidden == "." {
                return Err(refuse("malformed whiteout name"));
            }
            let parent = self.cached_parent(&parent_rel);
            remove_existing(parent, hidden).map_err(io)?;
            rfs::mknodat(
                parent,
                hidden,
                FileType::CharacterDevice,
                Mode::empty(),
                rfs::makedev(0, 0),
            )
            .map_err(|e| io(e.into()))?;
            if let Some((u, g)) = ids {
                rfs::chownat(parent, hidden, Some(u), Some(g), AtFlags::SYMLINK_NOFOLLOW).map_err(|e| io(e.into()))?;
            }
            return Ok(());
        }

        let xattrs = read_xattrs(e).map_err(ApplyError::Read)?;
        let link_name = e.link_name().map_err(ApplyError::Read)?.map(|l| l.into_owned());
        let parent = self.cached_parent(&parent_rel);
        let f = file_name.as_os_str();
        let existing = rfs::statat(parent, f, AtFlags::SYMLINK_NOFOLLOW);
        if self.opts.no_overwrite_dir_non_dir {
            if let Ok(st) = &existing {
                let was_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
                if was_dir && kind != EntryType::Directory {
                    return Err(refuse("cannot overwrite a directory with a non-directory"));
                }
                if !was_dir && kind == EntryType::Directory {
                    return Err(refuse("cannot overwrite a non-directory with a directory"));
                }
            }
        }
        match kind {
            EntryType::Directory => {
                match existing {
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
                    Ok(_) => {
                        remove_existing(parent, f).map_err(io)?;
                        rfs::mkdirat(parent, f, Mode::from_raw_mode(mode)).map_err(|e| io(e.into()))?;
                    }
                    Err(Errno::NOENT) => {
                        rfs::mkdirat(parent, f, Mode::from_raw_mode(mode)).map_err(|e| io(e.into()))?
                    }
                    Err(e) => return Err(io(e.into())),
                }
                let dir = rfs::openat(
                    parent,
                    f,
                    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| io(e.into()))?;
                if let Some((u, g)) = ids {
                    rfs::fchown(&dir, Some(u), Some(g)).map_err(|e| io(e.into()))?;
                }
                rfs::fchmod(&dir, Mode::from_raw_mode(mode)).map_err(|e| io(e.into()))?;
                for (k, v) in &xattrs {
                    rfs::fsetxattr(&dir, k.as_str(), v, rfs::XattrFlags::empty()).map_err(|e| io(e.into()))?;
                }
                self.dir_times.push((rel.clone(), mtime));
                return Ok(());
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                remove_existing(parent, f).map_err(io)?;
                let fd = rfs::openat(
                    parent,
                    f,
                    OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| io(e.into()))?;
                let size = write_sparse(e, &fd, &mut self.buf).map_err(io)?;
                self.stats.size += size;
                if let Some((u, g)) = ids {
                    rfs::fchown(&fd, Some(u), Some(g)).map_err(|e| io(e.into()))?;
                }
                // chmod after chown: chown clears setuid and setgid bits.
                rfs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| io(e.into()))?;
                for (k, v) in &xattrs {
                    rfs::fsetxattr(&fd, k.as_str(), v, rfs::XattrFlags::empty()).map_err(|e| io(e.into()))?;
                }
                let t = times(mtime);
                rfs::futimens(&fd, &t).map_err(|e| io(e.into()))?;
                return Ok(());
            }
            EntryType::Symlink => {
                let target = link_name.ok_or_else(|| refuse("symlink without a target"))?;
                remove_existing(parent, f).map_err(io)?;
                rfs::symlinkat(target.as_os_str(), parent, f).map_err(|e| io(e.into()))?;
            }
            EntryType::Link => {
                let target = link_name.ok_or_else(|| refuse("hardlink without a target"))?;
                let target = rebased(&target, &self.opts.rebase);
                let target_rel = clean_entry_path(&target)
                    .filter(|t| !t.as_os_str().is_empty())
                    .map(|t| self.opts.base.join(t))
                    .ok_or_else(|| refuse("hardlink target climbs out of the layer root; refused"))?;
                let tparent_rel = target_rel.parent().unwrap_or(Path::new(""));
                let tname = target_rel.file_name().expect("non-empty cleaned path"); // invariant
                let tparent = open_beneath(self.root.as_fd(), tparent_rel, flags).map_err(|e| match e {
                    Errno::XDEV | Errno::LOOP => refuse("hardlink target resolves outside the layer root; refused"),
                    other => io(other.into()),
                })?;
                remove_existing(parent, f).map_err(io)?;
                rfs::linkat(&tparent, tname, parent, f, AtFlags::empty()).map_err(|e| match e {
                    Errno::NOENT => refuse(&format!("hardlink target {:?} is not in this layer", target.display())),
                    other => io(other.into()),
                })?;
                // A hardlink shares its target's inode and metadata.
                return Ok(());
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let ft = match kind {
                    EntryType::Char => FileType::CharacterDevice,
                    EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let major = hdr.device_major().ok().flatten().unwrap_or(0);
                let minor = hdr.device_minor().ok().flatten().unwrap_or(0);
                remove_existing(parent, f).map_err(io)?;
                rfs::mknodat(parent, f, ft, Mode::from_raw_mode(mode), rfs::makedev(major, minor))
                    .map_err(|e| io(e.into()))?;
                rfs::chmodat(parent, f, Mode::from_raw_mode(mode), AtFlags::empty()).map_err(|e| io(e.into()))?;
            }
            other => {
                return Err(refuse(&format!("unsupported tar entry type {other:?}")));
            }
        }
        if let Some((u, g)) = ids {
            rfs::chownat(parent, f, Some(u), Some(g), AtFlags::SYMLINK_NOFOLLOW).map_err(|e| io(e.into()))?;
        }
        if kind != EntryType::Symlink {
            // chown cleared set-id bits on devices and fifos; restore the mode.
            rfs::chmodat(parent, f, Mode::from_raw_mode(mode), AtFlags::empty()).map_err(|e| io(e.into()))?;
        }
        rfs::utimensat(parent, f, &times(mtime), AtFlags::SYMLINK_NOFOLLOW).map_err(|e| io(e.into()))?;
        Ok(())
    }

    /// Opens (creating as needed, mode 0755 like Docker) the directory `rel` beneath root.
    fn open_parent(&mut self, rel: &Path) -> Result<BorrowedFd<'_>, Errno> {
        let hit = matches!(&self.parent_cache, Some((p, _)) if p == rel);
        if !hit {
            let fd = if rel.as_os_str().is_empty() {
                rfs::openat(
                    &self.root,
                    ".",
                    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
                    Mode::empty(),
                )?
            } else {
                match open_beneath(self.root.as_fd(), rel, resolve_flags(self.opts.in_root)) {
                    Ok(fd) => fd,
                    Err(Errno::NOENT) => self.mkdir_all(rel)?,
                    Err(e) => return Err(e),
                }
            };
            self.parent_cache = Some((rel.to_path_buf(), fd));
        }
        Ok(self.parent_cache.as_ref().expect("just filled").1.as_fd()) // invariant
    }

    fn cached_parent(&self, rel: &Path) -> BorrowedFd<'_> {
        let (p, fd) = self.parent_cache.as_ref().expect("open_parent ran first"); // invariant
        debug_assert_eq!(p, rel);
        fd.as_fd()
    }

    fn mkdir_all(&self, rel: &Path) -> Result<OwnedFd, Errno> {
        let mut cur = rfs::openat(
            &self.root,
            ".",
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut prefix = PathBuf::new();
        for c in rel.components() {
            let name = c.as_os_str();
            match rfs::mkdirat(&cur, name, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(e),
            }
            // Resolve the prefix from the root, not from `cur`: a symlink such as
            // `usr/lib64 -> ../lib64` climbs out of its own directory but stays in the layer,
            // and RESOLVE_BENEATH relative to `cur` would refuse it.
            prefix.push(name);
            cur = open_beneath(self.root.as_fd(), &prefix, resolve_flags(self.opts.in_root))?;
        }
        Ok(cur)
    }

    fn finish(&mut self) -> Result<(), ApplyError> {
        self.parent_cache = None;
        // Directory mtimes last: creating their children changed them.
        for (rel, mtime) in std::mem::take(&mut self.dir_times) {
            let fd = if rel.as_os_str().is_empty() {
                rfs::openat(
                    &self.root,
                    ".",
                    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
            } else {
                // O_NOFOLLOW: if a later entry replaced the directory with a symlink, its
                // mtime must not land on whatever the symlink points to.
                rfs::openat2(
                    &self.root,
                    &rel,
                    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                    resolve_flags(self.opts.in_root),
                )
            };
            if let Ok(fd) = fd {
                let _ = rfs::futimens(&fd, &times(mtime));
            }
        }
        Ok(())
    }
}

fn open_beneath(root: BorrowedFd<'_>, rel: &Path, flags: ResolveFlags) -> Result<OwnedFd, Errno> {
    if rel.as_os_str().is_empty() {
        return rfs::openat(
            root,
            ".",
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        );
    }
    rfs::openat2(
        root,
        rel,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        flags,
    )
}

/// Removes whatever is at `name` in `parent`, a directory with its contents.
fn remove_existing(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    match rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
            // std's remove_dir_all never follows symlinks; the /proc path names the trusted
            // parent descriptor plus one plain component.
            let p = proc_fd_path(parent, name);
            std::fs::remove_dir_all(p)
        }
        Ok(_) => rfs::unlinkat(parent, name, AtFlags::empty()).map_err(Into::into),
    }
}

fn proc_fd_path(fd: BorrowedFd<'_>, name: &OsStr) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())).join(name)
}

/// Copies file data, leaving 4 KiB runs of zeros as holes so sparse files stay sparse.
fn write_sparse<R: Read>(src: &mut R, fd: &OwnedFd, buf: &mut [u8]) -> io::Result<u64> {
    const BLOCK: usize = 4096;
    let mut off: u64 = 0;
    loop {
        let n = read_full(src, buf)?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        let mut i = 0;
        while i < n {
            let end = (i + BLOCK).min(n);
            if is_zero(&chunk[i..end]) {
                i = end;
                continue;
            }
            // Extend over the following non-zero blocks and write them in one call.
            let mut j = end;
            while j < n {
                let e = (j + BLOCK).min(n);
                if is_zero(&chunk[j..e]) {
                    break;
                }
                j = e;
            }
            let mut data = &chunk[i..j];
            let mut pos = off + i as u64;
            while !data.is_empty() {
                let w = rustix::io::pwrite(fd, data, pos)?;
                data = &data[w..];
                pos += w as u64;
            }
            i = j;
        }
        off += n as u64;
    }
    rfs::ftruncate(fd, off)?;
    Ok(off)
}

fn read_full<R: Read>(src: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn is_zero(b: &[u8]) -> bool {
    let (pre, mid, post) = unsafe { b.align_to::<u64>() }; // SAFETY: any bytes are valid u64s
    pre.iter().all(|&x| x == 0) && mid.iter().all(|&x| x == 0) && post.iter().all(|&x| x == 0)
}

fn read_xattrs<R: Read>(e: &mut tar::Entry<R>) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    if let Some(exts) = e.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            if let Ok(key) = ext.key() {
                if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    out.push((name.to_string(), ext.value_bytes().to_vec()));
                }
            }
        }
    }
    Ok(out)
}

/// An owner field; all-NUL or blank counts as 0, as Go's archive/tar (and so Docker) reads it.
fn id_field(raw: &[u8], parsed: io::Result<u64>) -> io::Result<u32> {
    if raw.iter().all(|&b| b == 0 || b == b' ') {
        return Ok(0);
    }
    let v = parsed?;
    u32::try_from(v).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("owner ID {v} is out of range")))
}

fn times(mtime: u64) -> Timestamps {
    let t = rfs::Timespec {
        tv_sec: mtime as i64,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn uid_of(u: u32) -> rfs::Uid {
    rfs::Uid::from_raw(u)
}

fn gid_of(g: u32) -> rfs::Gid {
    rfs::Gid::from_raw(g)
}
