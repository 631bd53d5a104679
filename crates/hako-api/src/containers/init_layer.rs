//! The mountpoints every container needs, as a read-only layer under its upper layer.
//!
//! A container's start mounts /proc, /sys, /dev, /etc/hostname, /etc/hosts and
//! /etc/resolv.conf. Where the image lacks one, the init would make it in the overlay,
//! copying its parent directory up first: three copy-ups for an image without the /etc
//! files, each a few new inodes on the disk, at every start. Docker adds a per-container
//! "init" layer for this; hako has one layer, made when the daemon starts and shared by
//! every container whose image lets it lie on top.

use std::fs;
use std::path::{Path, PathBuf};

/// Directories and files of the layer (directories end with `/`).
const ENTRIES: [&str; 7] = [
    "dev/",
    "proc/",
    "sys/",
    "etc/",
    "etc/hostname",
    "etc/hosts",
    "etc/resolv.conf",
];

/// Makes the layer in `dir`, or what it lacks: containers of an earlier daemon may still
/// run on it, and a layer of a mounted overlay must not change under it.
pub fn make(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    for e in ENTRIES {
        let p = dir.join(e.trim_end_matches('/'));
        if p.exists() {
            continue;
        }
        match e.ends_with('/') {
            true => fs::create_dir(&p)?,
            false => drop(fs::File::create(&p)?),
        }
    }
    Ok(())
}

/// Whether the layer may lie on top of `layers` (topmost first): its directories would
/// hide a symlink or a file of the image at the same path, so only when each is a
/// directory, or missing, in the image.
pub fn fits(layers: &[PathBuf]) -> bool {
    ENTRIES.iter().filter_map(|e| e.strip_suffix('/')).all(|d| {
        for l in layers {
            match fs::symlink_metadata(l.join(d)) {
                Ok(m) => return m.is_dir(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(_) => return false,
            }
        }
        true
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_fits_over_directories_and_gaps_only() {
        let t = tempfile::tempdir().unwrap();
        let (top, base) = (t.path().join("top"), t.path().join("base"));
        for d in ["etc", "proc", "sys"] {
            fs::create_dir_all(base.join(d)).unwrap();
        }
        fs::create_dir_all(&top).unwrap();
        assert!(fits(&[top.clone(), base.clone()]));
        // An image whose /etc is a link elsewhere (the top layer decides).
        std::os::unix::fs::symlink("/usr/etc", top.join("etc")).unwrap();
        assert!(!fits(&[top.clone(), base.clone()]));
        fs::remove_file(top.join("etc")).unwrap();
        fs::write(top.join("dev"), "").unwrap();
        assert!(!fits(&[top, base]));
    }

    #[test]
    fn the_layer_has_its_entries() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("init-layer");
        fs::create_dir_all(dir.join("etc")).unwrap();
        fs::write(dir.join("etc/hosts"), "kept").unwrap();
        make(&dir).unwrap();
        // What was there stays: a running container may have the layer mounted.
        assert_eq!(fs::read_to_string(dir.join("etc/hosts")).unwrap(), "kept");
        for e in ENTRIES {
            let p = dir.join(e.trim_end_matches('/'));
            assert_eq!(p.is_dir(), e.ends_with('/'), "{}", p.display());
            assert!(p.exists());
        }
    }
}
