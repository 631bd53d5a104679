//! Container directories made ahead of time.
//!
//! A new container's directory holds the rootfs's upper, work and merged directories.
//! Allocating their inodes and blocks is a good part of a millisecond of every create when
//! files come and go fast: ext4 without a journal, for one, skips the inodes of files
//! deleted in the last minutes, and looks at each of them first. A daemon thread keeps a
//! few skeletons ready under `<root>/spares`, and a create renames one into place. Files
//! are not made ahead: ext4 starts writing back a file truncated and written again at its
//! close, which costs more than making it.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

/// Skeletons kept ready: a burst of creates beyond this makes its directories itself.
const READY: usize = 4;
/// What a skeleton holds, made in this order.
const LAYOUT: [&str; 4] = ["rootfs", "rootfs/upper", "rootfs/work", "rootfs/merged"];

pub struct Spares {
    shared: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    /// Ready skeletons, and the number given to the next one.
    state: Mutex<(Vec<PathBuf>, u64)>,
    taken: Condvar,
}

impl Spares {
    /// Starts keeping skeletons in `dir`, which must be on the same filesystem as the
    /// containers' directories. Skeletons left by an earlier daemon are removed first.
    pub fn start(dir: PathBuf) -> Spares {
        let _ = fs::remove_dir_all(&dir);
        let shared = Arc::new(Shared {
            dir,
            state: Mutex::new((Vec::new(), 0)),
            taken: Condvar::new(),
        });
        if fs::create_dir_all(&shared.dir).is_ok() {
            let s = shared.clone();
            let spawned = std::thread::Builder::new()
                .name("spare-dirs".into())
                .spawn(move || refill(&s));
            if let Err(e) = spawned {
                tracing::warn!("no thread making container directories ahead ({e}): creates make their own");
            }
        }
        Spares { shared }
    }

    /// Moves a ready skeleton to `dest` (which must not exist); false if none was ready,
    /// and the caller makes the directories itself.
    pub fn take(&self, dest: &Path) -> bool {
        let mut st = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(s) = st.0.pop() else { return false };
        if fs::rename(&s, dest).is_ok() {
            self.shared.taken.notify_one();
            return true;
        }
        st.0.push(s);
        false
    }

    /// Takes back the directory of a removed container as a skeleton when the pool has
    /// room, emptied of everything the container had (its layers' directories are made
    /// anew: a container can change their own attributes); else deletes it. Blocking.
    pub fn recycle(&self, dir: &Path) {
        let room = self.shared.state.lock().unwrap_or_else(|p| p.into_inner()).0.len() < READY;
        if room && empty(dir).is_ok() {
            let mut st = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
            st.1 += 1;
            let ready = self.shared.dir.join(format!("{}", st.1));
            if st.0.len() < READY && fs::rename(dir, &ready).is_ok() {
                st.0.push(ready);
                return;
            }
        }
        let _ = fs::remove_dir_all(dir);
    }
}

/// Brings a container's directory back to a fresh skeleton's state: everything in it
/// goes but the rootfs directory, whose layer directories are made anew.
fn empty(dir: &Path) -> std::io::Result<()> {
    for parent in [dir.to_path_buf(), dir.join("rootfs")] {
        for e in fs::read_dir(&parent)? {
            let e = e?;
            if parent == dir && e.file_name() == "rootfs" {
                continue;
            }
            match e.file_type()?.is_dir() {
                true => fs::remove_dir_all(e.path())?,
                false => fs::remove_file(e.path())?,
            }
        }
    }
    for d in &LAYOUT[1..] {
        fs::create_dir(dir.join(d))?;
    }
    Ok(())
}

fn refill(s: &Shared) {
    loop {
        let n = {
            let mut st = s.state.lock().unwrap_or_else(|p| p.into_inner());
            while st.0.len() >= READY {
                st = s.taken.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            st.1 += 1;
            st.1
        };
        // Made under a name no create takes, then published by a rename.
        let making = s.dir.join(format!("making-{n}"));
        let ready = s.dir.join(format!("{n}"));
        match make(&making).and_then(|()| fs::rename(&making, &ready)) {
            Ok(()) => s.state.lock().unwrap_or_else(|p| p.into_inner()).0.push(ready),
            Err(e) => {
                // The disk is full or the root went away: creates make their own.
                tracing::warn!("making a container directory ahead: {e}");
                let _ = fs::remove_dir_all(&making);
                return;
            }
        }
    }
}

fn make(at: &Path) -> std::io::Result<()> {
    fs::create_dir(at)?;
    for d in LAYOUT {
        fs::create_dir(at.join(d))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_skeleton_has_the_layout_and_another_takes_its_place() {
        let root = tempfile::tempdir().unwrap();
        let spares = Spares::start(root.path().join("spares"));
        let ready = || spares.shared.state.lock().unwrap().0.len();
        let wait_full = || {
            for _ in 0..500 {
                if ready() == READY {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            panic!("the pool did not fill: {} ready", ready());
        };
        wait_full();
        let dest = root.path().join("c1");
        assert!(spares.take(&dest));
        for d in LAYOUT {
            assert!(dest.join(d).is_dir(), "{d}");
        }
        wait_full();
        // A destination that exists is left alone, and the skeleton stays ready.
        fs::create_dir(root.path().join("c2")).unwrap();
        fs::write(root.path().join("c2/x"), "x").unwrap();
        assert!(!spares.take(&root.path().join("c2")));
        assert_eq!(fs::read_to_string(root.path().join("c2/x")).unwrap(), "x");
        assert_eq!(ready(), READY);
    }

    #[test]
    fn a_removed_containers_directory_comes_back_empty() {
        let root = tempfile::tempdir().unwrap();
        let used = root.path().join("c1");
        make(&used).unwrap();
        fs::write(used.join("hosts"), "10.0.0.2 old").unwrap();
        fs::write(used.join("rootfs/upper/secret"), "data").unwrap();
        fs::create_dir_all(used.join("rootfs/work/work/incompat")).unwrap();
        fs::write(used.join("c1-json.log"), "log").unwrap();
        empty(&used).unwrap();
        assert!(!used.join("c1-json.log").exists());
        assert!(!used.join("hosts").exists());
        assert_eq!(fs::read_dir(used.join("rootfs/upper")).unwrap().count(), 0);
        assert_eq!(fs::read_dir(used.join("rootfs/work")).unwrap().count(), 0);
        for d in LAYOUT {
            assert!(used.join(d).is_dir(), "{d}");
        }
        // With the pool full, a removed container's directory is deleted.
        let spares = Spares::start(root.path().join("spares"));
        for _ in 0..500 {
            if spares.shared.state.lock().unwrap().0.len() == READY {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        spares.recycle(&used);
        assert!(!used.exists());
        assert_eq!(spares.shared.state.lock().unwrap().0.len(), READY);
    }

    #[test]
    fn a_new_daemon_drops_the_skeletons_of_the_last_one() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("spares");
        fs::create_dir_all(dir.join("making-7/rootfs")).unwrap();
        let spares = Spares::start(dir.clone());
        assert!(!dir.join("making-7").exists());
        drop(spares);
    }
}
