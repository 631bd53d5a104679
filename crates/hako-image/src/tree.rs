//! A file tree written as a tar the way Docker's archive package writes one for `docker cp`
//! and `docker export`: symlinks kept as symlinks, hardlinks as links to the first name,
//! devices and fifos as such, sockets left out, `security.capability` carried along.
//!
//! The walk goes through descriptors only: each child is opened relative to its parent's
//! descriptor with `O_NOFOLLOW`, so a tree that changes while it is read (a running
//! container's) cannot redirect the walk through a symlink.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;
use tar::{EntryType, Header};

/// Writes what `entry` is (an `O_PATH | O_NOFOLLOW` descriptor) as a tar named `name`: a
/// directory as `name/` and everything beneath as `name/...`, anything else as one entry.
/// A `name` of `/` gives `/` and `/...`, as Docker's rebase to the root does.
pub fn write_tar<W: Write>(entry: &OwnedFd, name: &[u8], out: W) -> io::Result<W> {
    let mut w = Walker {
        b: tar::Builder::new(out),
        links: HashMap::new(),
    };
    let st = rfs::fstat(entry)?;
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        let root: &[u8] = if name == b"/" { b"" } else { name };
        let mut dir_name = root.to_vec();
        dir_name.push(b'/');
        w.header_only(&st, &dir_name, EntryType::Directory, None)?;
        let dir = rfs::openat(
            entry,
            ".",
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        w.walk(&dir, &dir_name)?;
    } else {
        w.one(entry.as_fd(), None, &st, name)?;
    }
    w.b.into_inner()
}

/// Writes everything beneath the directory `dir` (not the directory itself) with names
/// relative to it, as `docker export` does.
pub fn write_contents<W: Write>(dir: &OwnedFd, out: W) -> io::Result<W> {
    let mut w = Walker {
        b: tar::Builder::new(out),
        links: HashMap::new(),
    };
    let dir = rfs::openat(
        dir,
        ".",
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    w.walk(&dir, b"")?;
    w.b.into_inner()
}

struct Walker<W: Write> {
    b: tar::Builder<W>,
    /// (device, inode) of files with several links, and the name the first one got.
    links: HashMap<(u64, u64), Vec<u8>>,
}

impl<W: Write> Walker<W> {
    fn walk(&mut self, dir: &OwnedFd, prefix: &[u8]) -> io::Result<()> {
        let mut names: Vec<Vec<u8>> = Vec::new();
        for ent in rfs::Dir::read_from(dir)? {
            let n = ent?.file_name().to_bytes().to_vec();
            if n != b"." && n != b".." {
                names.push(n);
            }
        }
        names.sort();
        for n in names {
            let os = OsStr::from_bytes(&n);
            let st = match rfs::statat(dir, os, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                // Removed while we read: it is simply not in the archive.
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(e.into()),
            };
            let mut name = prefix.to_vec();
            name.extend_from_slice(&n);
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                let sub = match rfs::openat(
                    dir,
                    os,
                    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => fd,
                    Err(Errno::NOENT) => continue,
                    Err(e) => return Err(e.into()),
                };
                name.push(b'/');
                self.header_only(&st, &name, EntryType::Directory, None)?;
                self.walk(&sub, &name)?;
            } else {
                self.one(dir.as_fd(), Some(os), &st, &name)?;
            }
        }
        Ok(())
    }

    /// One non-directory entry: `name_in` within `at`, or `at` itself (an O_PATH descriptor).
    fn one(&mut self, at: BorrowedFd<'_>, name_in: Option<&OsStr>, st: &Stat, name: &[u8]) -> io::Result<()> {
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => self.file(at, name_in, st, name),
            FileType::Symlink => {
                let target = rfs::readlinkat(at, name_in.unwrap_or(OsStr::new("")), Vec::new())?;
                self.header_only(st, name, EntryType::Symlink, Some(target.as_bytes()))
            }
            FileType::CharacterDevice => self.header_only(st, name, EntryType::Char, None),
            FileType::BlockDevice => self.header_only(st, name, EntryType::Block, None),
            FileType::Fifo => self.header_only(st, name, EntryType::Fifo, None),
            // Sockets (and anything else) have no place in an archive.
            _ => Ok(()),
        }
    }

    fn file(&mut self, at: BorrowedFd<'_>, name_in: Option<&OsStr>, st: &Stat, name: &[u8]) -> io::Result<()> {
        if st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.links.get(&key).cloned() {
                return self.header_only(st, name, EntryType::Link, Some(&first));
            }
            self.links.insert(key, name.to_vec());
        }
        // O_NONBLOCK: if the file was swapped for a fifo since the stat, the open must not hang.
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match name_in {
            Some(n) => rfs::openat(at, n, flags | OFlags::NOFOLLOW, Mode::empty()),
            // An O_PATH descriptor is opened for reading again through its /proc link (which
            // names that very file, whatever happened to its path since).
            None => rfs::open(format!("/proc/self/fd/{}", at.as_raw_fd()), flags, Mode::empty()),
        };
        let fd = match fd {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let st = rfs::fstat(&fd)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Ok(());
        }
        let mut extra = Vec::new();
        let mut cap = vec![0u8; 256];
        if let Ok(n) = rfs::fgetxattr(&fd, "security.capability", &mut cap) {
            pax_record(&mut extra, "SCHILY.xattr.security.capability", &cap[..n]);
        }
        let mut h = header(&st, EntryType::Regular);
        h.set_size(st.st_size as u64);
        let file = std::fs::File::from(fd);
        self.put(
            h,
            name,
            None,
            extra,
            Exactly {
                r: file,
                left: st.st_size as u64,
            },
        )
    }

    fn header_only(&mut self, st: &Stat, name: &[u8], kind: EntryType, link: Option<&[u8]>) -> io::Result<()> {
        let mut h = header(st, kind);
        if matches!(kind, EntryType::Char | EntryType::Block) {
            h.set_device_major(rfs::major(st.st_rdev))?;
            h.set_device_minor(rfs::minor(st.st_rdev))?;
        }
        self.put(h, name, link, Vec::new(), io::empty())
    }

    /// Appends an entry; names and link targets longer than the header holds go in a PAX
    /// header before it.
    fn put(
        &mut self,
        mut h: Header,
        name: &[u8],
        link: Option<&[u8]>,
        mut pax: Vec<u8>,
        data: impl Read,
    ) -> io::Result<()> {
        if name.len() > 100 {
            pax_record(&mut pax, "path", name);
        }
        if let Some(l) = link.filter(|l| l.len() > 100) {
            pax_record(&mut pax, "linkpath", l);
        }
        if !pax.is_empty() {
            let mut ph = Header::new_ustar();
            ph.set_entry_type(EntryType::XHeader);
            ph.set_mode(0o644);
            ph.set_size(pax.len() as u64);
            copy_field(&mut ph.as_old_mut().name, b"PaxHeader");
            ph.set_cksum();
            self.b.append(&ph, &pax[..])?;
        }
        copy_field(&mut h.as_old_mut().name, name);
        if let Some(l) = link {
            copy_field(&mut h.as_old_mut().linkname, l);
        }
        h.set_cksum();
        self.b.append(&h, data)
    }
}

fn header(st: &Stat, kind: EntryType) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(st.st_uid as u64);
    h.set_gid(st.st_gid as u64);
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    h
}

/// As much of `v` as fits, NUL-padded (a longer value also goes in a PAX record).
fn copy_field(field: &mut [u8], v: &[u8]) {
    field.fill(0);
    let n = v.len().min(field.len());
    field[..n].copy_from_slice(&v[..n]);
}

/// `LEN key=value\n`, where LEN counts the whole record including itself.
fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(format!("{len} {key}=").as_bytes());
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Exactly `left` bytes: a file that shrank while it was read is padded with zeros, one
/// that grew is cut, so the entry always matches its header.
struct Exactly<R> {
    r: R,
    left: u64,
}

impl<R: Read> Read for Exactly<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (buf.len() as u64).min(self.left) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = match self.r.read(&mut buf[..want])? {
            0 => {
                buf[..want].fill(0);
                want
            }
            n => n,
        };
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_lengths_count_themselves() {
        for n in [1usize, 80, 95, 96, 200, 990, 1000] {
            let mut out = Vec::new();
            pax_record(&mut out, "path", &vec![b'a'; n]);
            let (len, _) = std::str::from_utf8(&out[..5]).unwrap().split_once(' ').unwrap();
            assert_eq!(len.parse::<usize>().unwrap(), out.len(), "value of {n} bytes");
        }
    }

    #[test]
    fn a_tree_round_trips_with_long_names_links_and_devices() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        let long = "d".repeat(120);
        std::fs::create_dir_all(src.join(&long)).unwrap();
        std::fs::write(src.join(&long).join("f"), b"data").unwrap();
        std::fs::hard_link(src.join(&long).join("f"), src.join("hl")).unwrap();
        std::os::unix::fs::symlink(format!("/{}", "x".repeat(150)), src.join("ln")).unwrap();
        rfs::mknodat(
            rfs::CWD,
            src.join("fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let fd = rfs::open(&src, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()).unwrap();
        let tar = write_tar(&fd, b"top", Vec::new()).unwrap();
        let mut names = Vec::new();
        for e in tar::Archive::new(&tar[..]).entries().unwrap() {
            let e = e.unwrap();
            let link = e.link_name().unwrap().map(|l| l.display().to_string());
            names.push((e.path().unwrap().display().to_string(), e.header().entry_type(), link));
        }
        assert_eq!(names[0], ("top/".into(), EntryType::Directory, None));
        assert!(names.contains(&(format!("top/{long}/f"), EntryType::Regular, None)));
        assert!(names.contains(&("top/fifo".into(), EntryType::Fifo, None)));
        assert!(names.contains(&("top/hl".into(), EntryType::Link, Some(format!("top/{long}/f")))));
        assert!(names.contains(&(
            "top/ln".into(),
            EntryType::Symlink,
            Some(format!("/{}", "x".repeat(150)))
        )));
        let file = rfs::open(
            src.join("hl"),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        let one = write_tar(&file, b"renamed", Vec::new()).unwrap();
        let mut a = tar::Archive::new(&one[..]);
        let mut e = a.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(e.path().unwrap().to_str(), Some("renamed"));
        let mut s = String::new();
        e.read_to_string(&mut s).unwrap();
        assert_eq!(s, "data");
    }
}
