//! The reverse of apply: a container's overlay upper directory written as an OCI layer tar
//! (for `commit`). Overlay whiteouts (0/0 character devices) become `.wh.NAME` entries and
//! opaque directories (`trusted.overlay.opaque=y`) get a `.wh..wh..opq` entry.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// Files hako bind-mounts into every container; their empty mount points in the upper
/// directory are not the container's changes.
pub(crate) const MOUNT_POINTS: [&str; 3] = ["etc/hostname", "etc/hosts", "etc/resolv.conf"];

/// Writes the changes in `upper` as a layer tar to `out`.
pub fn write_layer<W: Write>(upper: &Path, out: W) -> io::Result<W> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let mut links: HashMap<(u64, u64), String> = HashMap::new();
    walk(upper, upper, &mut b, &mut links)?;
    b.into_inner()
}

fn walk<W: Write>(
    root: &Path,
    dir: &Path,
    b: &mut tar::Builder<W>,
    links: &mut HashMap<(u64, u64), String>,
) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for ent in entries {
        let path = ent.path();
        let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
        let m = fs::symlink_metadata(&path)?;
        let ft = m.file_type();
        if ft.is_file() && m.len() == 0 && MOUNT_POINTS.contains(&rel.as_str()) {
            continue;
        }
        let mut h = tar::Header::new_gnu();
        h.set_mode(m.mode() & 0o7777);
        h.set_uid(m.uid() as u64);
        h.set_gid(m.gid() as u64);
        h.set_mtime(m.mtime().max(0) as u64);
        if ft.is_char_device() && m.rdev() == 0 {
            // An overlay whiteout: the file was deleted.
            let name = Path::new(&rel);
            let wh = match name.parent().filter(|p| !p.as_os_str().is_empty()) {
                Some(p) => p.join(format!(
                    ".wh.{}",
                    name.file_name().unwrap_or_default().to_string_lossy()
                )),
                None => Path::new(&format!(".wh.{rel}")).to_path_buf(),
            };
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(0);
            h.set_mode(0o644);
            b.append_data(&mut h, wh, io::empty())?;
            continue;
        }
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            b.append_data(&mut h, format!("{rel}/"), io::empty())?;
            let opaque = xattr_get(&path, "trusted.overlay.opaque")
                .map(|v| v == b"y")
                .unwrap_or(false);
            if opaque {
                let mut oh = tar::Header::new_gnu();
                oh.set_entry_type(tar::EntryType::Regular);
                oh.set_size(0);
                oh.set_mode(0o644);
                b.append_data(&mut oh, format!("{rel}/.wh..wh..opq"), io::empty())?;
            }
            walk(root, &path, b, links)?;
        } else if ft.is_symlink() {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            let target = fs::read_link(&path)?;
            b.append_link(&mut h, &rel, target)?;
        } else if ft.is_file() {
            if m.nlink() > 1 {
                if let Some(first) = links.get(&(m.dev(), m.ino())) {
                    h.set_entry_type(tar::EntryType::Link);
                    h.set_size(0);
                    b.append_link(&mut h, &rel, first)?;
                    continue;
                }
                links.insert((m.dev(), m.ino()), rel.clone());
            }
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(m.len());
            b.append_data(&mut h, &rel, fs::File::open(&path)?)?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            h.set_entry_type(if ft.is_fifo() {
                tar::EntryType::Fifo
            } else if ft.is_char_device() {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            });
            h.set_size(0);
            let dev = m.rdev();
            h.set_device_major(rustix::fs::major(dev))?;
            h.set_device_minor(rustix::fs::minor(dev))?;
            b.append_data(&mut h, &rel, io::empty())?;
        }
    }
    Ok(())
}

fn xattr_get(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 64];
    let n = rustix::fs::lgetxattr(path, name, &mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}
