//! What the standalone runtime remembers of a container between commands: one directory per
//! container under the runtime root (`/run/hako-runtime` by default, `--root` otherwise),
//! holding `state.json` and, until `start`, the `exec.fifo` the init waits on; and the
//! emptied directory of the last container deleted, kept for the next one ([`SPARE`]).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Error;

pub const DEFAULT_ROOT: &str = "/run/hako-runtime";
pub const FIFO: &str = "exec.fifo";
/// A deleted container's emptied directory, renamed here for the next create to rename into
/// place, under a name no id can take ('#' is not in an id's alphabet). On ext4 mounted with
/// `discard`, an rmdir frees the directory's block and discards it there and then (0.15 ms
/// of a 3 ms `run` here) and the next mkdir allocates one again; renames do neither.
pub const SPARE: &str = "#spare";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    pub id: String,
    pub pid: i32,
    /// The init's start time in clock ticks (/proc/PID/stat field 22): with the PID, it names
    /// the process even after PIDs wrap.
    pub start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    /// Where the container's cgroup is: the parent as given to [`crate::cgroups::Cgroup`]
    /// and the leaf name.
    pub cgroup_parent: Option<PathBuf>,
    pub cgroup_name: String,
    #[serde(default)]
    pub paused: bool,
}

/// The runtime spec's state: `creating`, `created`, `running`, `stopped` (plus runc's
/// `paused`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub oci_version: &'static str,
    pub id: String,
    pub status: &'static str,
    pub pid: i32,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    pub annotations: HashMap<String, String>,
}

pub const OCI_VERSION: &str = "1.2.0";

/// A container id names a directory: keep it to runc's alphabet.
pub fn check_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::msg(format!(
            "invalid container id {id:?}: use letters, digits, '_', '+', '-' and '.'"
        )))
    }
}

pub fn dir(root: &Path, id: &str) -> PathBuf {
    root.join(id)
}

/// Makes container `id`'s directory (mode 0700): the spare one if there is one, else a new
/// one. An existing directory for `id` is an `AlreadyExists` error either way.
pub fn make_dir(root: &Path, id: &str) -> io::Result<()> {
    let d = dir(root, id);
    match rename_noreplace(&root.join(SPARE), &d) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(e),
        // No spare (or another create took it a moment ago).
        Err(_) => {}
    }
    std::os::unix::fs::DirBuilderExt::mode(&mut fs::DirBuilder::new(), 0o700).create(&d)
}

fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE).map_err(io::Error::from)
}

/// Removes a container's state directory: its state file, then the directory (kept as the
/// spare when it is empty and there is none yet), with a walk of whatever else is there
/// only when needed (the fifo of a container never started).
pub fn remove(dir: &Path) -> io::Result<()> {
    match fs::remove_file(dir.join("state.json")) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let empty = fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none());
    if let Some(spare) = dir.parent().map(|root| root.join(SPARE)).filter(|_| empty) {
        if rename_noreplace(dir, &spare).is_ok() {
            return Ok(());
        }
    }
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => fs::remove_dir_all(dir),
    }
}

pub fn load(root: &Path, id: &str) -> Result<Saved, Error> {
    check_id(id)?;
    match fs::read(dir(root, id).join("state.json")) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| Error::msg(format!("container {id}: corrupt state: {e}"))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::msg(format!("container does not exist: {id}"))),
        Err(e) => Err(Error::io(format!("reading the state of {id}"), e)),
    }
}

pub fn save(root: &Path, s: &Saved) -> Result<(), Error> {
    let d = dir(root, &s.id);
    let tmp = d.join(".state.json.tmp");
    let body = serde_json::to_vec(s).map_err(|e| Error::msg(e.to_string()))?;
    fs::write(&tmp, body)
        .and_then(|()| fs::rename(&tmp, d.join("state.json")))
        .map_err(|e| Error::io(format!("saving the state of {}", s.id), e))
}

/// The start time of process `pid`, or `None` if there is no such process (or it is a
/// zombie: it has exited).
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    // Field 22 overall is the 20th after the state (field 3).
    fields.get(19)?.parse().ok()
}

impl Saved {
    pub fn alive(&self) -> bool {
        self.pid > 0 && start_time(self.pid) == Some(self.start_time)
    }

    pub fn status(&self, root: &Path) -> &'static str {
        if !self.alive() {
            "stopped"
        } else if dir(root, &self.id).join(FIFO).exists() {
            "created"
        } else if self.paused {
            "paused"
        } else {
            "running"
        }
    }

    pub fn report(&self, root: &Path) -> Report {
        let status = self.status(root);
        Report {
            oci_version: OCI_VERSION,
            id: self.id.clone(),
            status,
            pid: if status == "stopped" { 0 } else { self.pid },
            bundle: self.bundle.clone(),
            rootfs: self.rootfs.clone(),
            created: self.created.clone(),
            owner: "root".into(),
            annotations: self.annotations.clone(),
        }
    }

    /// The state hooks get on stdin.
    pub fn hook_state(&self, status: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "ociVersion": OCI_VERSION,
            "id": self.id,
            "status": status,
            "pid": self.pid,
            "bundle": self.bundle,
            "annotations": self.annotations,
        }))
        .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_containers_empty_directory_serves_the_next_one() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        make_dir(r, "one").unwrap();
        fs::write(dir(r, "one").join("state.json"), "{}").unwrap();
        remove(&dir(r, "one")).unwrap();
        assert!(!dir(r, "one").exists());
        assert!(r.join(SPARE).is_dir(), "kept as the spare");
        // An existing id is refused even with a spare there, which stays.
        make_dir(r, "two").unwrap();
        assert!(!r.join(SPARE).exists(), "the spare became two's directory");
        make_dir(r, "three").unwrap();
        remove(&dir(r, "three")).unwrap();
        let e = make_dir(r, "two").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert!(r.join(SPARE).is_dir());
        // A spare is there already: the next one goes.
        fs::write(dir(r, "two").join("state.json"), "{}").unwrap();
        remove(&dir(r, "two")).unwrap();
        assert!(!dir(r, "two").exists());
        // A directory left with something else in it is removed, not kept.
        fs::remove_dir(r.join(SPARE)).unwrap();
        make_dir(r, "four").unwrap();
        fs::write(dir(r, "four").join(FIFO), "").unwrap();
        remove(&dir(r, "four")).unwrap();
        assert!(!dir(r, "four").exists() && !r.join(SPARE).exists());
        // Only containers are listed.
        make_dir(r, "five").unwrap();
        remove(&dir(r, "five")).unwrap();
        assert!(r.join(SPARE).is_dir());
        assert!(super::super::list(r).unwrap().is_empty());
        let mode = std::os::unix::fs::PermissionsExt::mode(&fs::metadata(r.join(SPARE)).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn ids() {
        for ok in ["abc", "a.b-c_d+1", "0123456789abcdef"] {
            check_id(ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "../x", "a b", "a\0b"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn own_start_time() {
        let me = std::process::id() as i32;
        assert!(start_time(me).is_some());
        assert_eq!(start_time(me), start_time(me));
        assert_eq!(start_time(i32::MAX), None);
    }
}
