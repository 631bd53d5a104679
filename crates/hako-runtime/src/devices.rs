//! Device nodes a container gets beyond the standard ones (`--device`): the OCI config's
//! `linux.devices`, taken from the host's nodes by the engine and created by the init on the
//! container's `/dev` before `pivot_root`. Access to them is a separate matter: the device
//! cgroup must allow it too (see `spec::device_rules`).

use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use serde::{Deserialize, Serialize};

/// One node, in the shape of an OCI `linux.devices` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// Where it appears in the container, e.g. `/dev/fuse`.
    pub path: String,
    /// `c` (or `u`, unbuffered character), `b` or `p` (FIFO).
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub major: i64,
    #[serde(default)]
    pub minor: i64,
    /// Permission bits; 0666 when absent, as in runc.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_mode: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

impl Device {
    /// The host's node `host` (symlinks followed, as Docker does) as a device at `path` in the
    /// container: same type, numbers, permission bits and owner.
    pub fn from_host(host: &Path, path: &str) -> io::Result<Device> {
        let md = std::fs::metadata(host)?;
        let ft = md.file_type();
        let kind = if ft.is_char_device() {
            "c"
        } else if ft.is_block_device() {
            "b"
        } else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a device node"));
        };
        Ok(Device {
            path: path.to_string(),
            kind: kind.to_string(),
            major: i64::from(rustix::fs::major(md.rdev())),
            minor: i64::from(rustix::fs::minor(md.rdev())),
            file_mode: Some(md.mode() & 0o7777),
            uid: Some(md.uid()),
            gid: Some(md.gid()),
        })
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Opens directory `rel` of the rootfs, creating what is missing (0755). Every lookup is
/// resolved with `RESOLVE_IN_ROOT`, so symlinks and `..` in an image cannot lead outside.
fn open_dir_in_root(root: impl AsFd, rel: &Path) -> io::Result<rustix::fd::OwnedFd> {
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut cur = PathBuf::from(".");
    let mut dir = rustix::fs::openat2(&root, &cur, flags, Mode::empty(), resolve)?;
    for c in rel.components() {
        cur.push(c);
        dir = match rustix::fs::openat2(&root, &cur, flags, Mode::empty(), resolve) {
            Ok(d) => d,
            Err(rustix::io::Errno::NOENT) => {
                // Missing: make it in the directory reached so far, then resolve it again
                // (something else may be in the way, e.g. a dangling symlink).
                match rustix::fs::mkdirat(&dir, c.as_os_str(), Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                rustix::fs::openat2(&root, &cur, flags, Mode::empty(), resolve)?
            }
            Err(e) => return Err(e.into()),
        };
    }
    Ok(dir)
}

fn create_one(root: impl AsFd, d: &Device) -> io::Result<()> {
    let file_type = match d.kind.as_str() {
        "c" | "u" => FileType::CharacterDevice,
        "b" => FileType::BlockDevice,
        "p" => FileType::Fifo,
        other => return Err(invalid(format!("unknown device type {other:?}"))),
    };
    let rel = Path::new(&d.path)
        .strip_prefix("/")
        .map_err(|_| invalid("the path must be absolute".into()))?;
    let Some(Component::Normal(name)) = rel.components().next_back() else {
        return Err(invalid("the path must end in a name".into()));
    };
    let (major, minor) = match (u32::try_from(d.major), u32::try_from(d.minor)) {
        (Ok(major), Ok(minor)) => (major, minor),
        _ => return Err(invalid(format!("bad device number {}:{}", d.major, d.minor))),
    };
    let dir = open_dir_in_root(root, rel.parent().unwrap_or(Path::new("")))?;
    let mode = Mode::from_raw_mode(d.file_mode.unwrap_or(0o666) & 0o7777);
    match rustix::fs::mknodat(&dir, name, file_type, mode, rustix::fs::makedev(major, minor)) {
        Ok(()) => {}
        // A node already there stays (runc does the same).
        Err(rustix::io::Errno::EXIST) => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    // mknod applied the umask.
    rustix::fs::chmodat(&dir, name, mode, AtFlags::empty())?;
    rustix::fs::chownat(
        &dir,
        name,
        Some(rustix::fs::Uid::from_raw(d.uid.unwrap_or(0))),
        Some(rustix::fs::Gid::from_raw(d.gid.unwrap_or(0))),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
}

/// Creates `devices` in the rootfs open at `root` (a directory descriptor, before
/// `pivot_root`), with their parent directories. Errors name the device.
pub fn create(root: impl AsFd, devices: &[Device]) -> io::Result<()> {
    for d in devices {
        create_one(&root, d).map_err(|e| io::Error::new(e.kind(), format!("device {}: {e}", d.path)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(path: &str, kind: &str, major: i64, minor: i64) -> Device {
        Device {
            path: path.into(),
            kind: kind.into(),
            major,
            minor,
            file_mode: None,
            uid: None,
            gid: None,
        }
    }

    #[test]
    fn host_nodes_are_described() {
        let d = Device::from_host(Path::new("/dev/null"), "/dev/mynull").unwrap();
        assert_eq!(
            d,
            Device {
                file_mode: Some(0o666),
                uid: Some(0),
                gid: Some(0),
                ..node("/dev/mynull", "c", 1, 3)
            }
        );
        let e = Device::from_host(Path::new("/etc/hostname"), "/dev/x").unwrap_err();
        assert_eq!(e.to_string(), "not a device node");
        let e = Device::from_host(Path::new("/dev/no-such-device"), "/dev/x").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        // The OCI JSON shape.
        assert_eq!(
            serde_json::to_value(&d).unwrap(),
            serde_json::json!({"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666, "uid": 0, "gid": 0})
        );
    }

    #[test]
    fn nodes_are_created_inside_the_root() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        // /dev in the "image" is an absolute symlink to a directory that also exists on the
        // host: the node must land in the rootfs's copy.
        let elsewhere = tempfile::tempdir().unwrap();
        let inside = root.path().join(elsewhere.path().strip_prefix("/").unwrap());
        std::fs::create_dir_all(&inside).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), root.path().join("dev")).unwrap();
        let fd = rustix::fs::open(
            root.path(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        let devices = [
            Device {
                file_mode: Some(0o620),
                uid: Some(1),
                gid: Some(2),
                ..node("/dev/net/tun2", "c", 10, 200)
            },
            node("/dev/../../fifo", "p", 0, 0),
        ];
        create(&fd, &devices).unwrap();
        let md = std::fs::metadata(inside.join("net/tun2")).unwrap();
        assert!(md.file_type().is_char_device());
        assert_eq!((rustix::fs::major(md.rdev()), rustix::fs::minor(md.rdev())), (10, 200));
        assert_eq!(md.permissions().mode() & 0o7777, 0o620);
        assert_eq!((md.uid(), md.gid()), (1, 2));
        assert!(!elsewhere.path().join("net").exists(), "created outside the root");
        // `..` stops at the root.
        assert!(std::fs::metadata(root.path().join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo());
        // Again: existing nodes are left alone.
        create(&fd, &devices).unwrap();

        let e = create(&fd, &[node("dev/rel", "c", 1, 3)]).unwrap_err();
        assert_eq!(e.to_string(), "device dev/rel: the path must be absolute");
        let e = create(&fd, &[node("/dev/x", "q", 1, 3)]).unwrap_err();
        assert!(e.to_string().contains("unknown device type"), "{e}");
    }
}
