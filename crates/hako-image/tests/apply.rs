//! Layer apply and snapshot unpack, against real archives built in memory.
//!
//! These run as root on a real file system (ownership, device nodes, `trusted.*` xattrs).
//! Malicious names are written as raw tar headers: `tar::Builder` refuses `..` itself.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Barrier;

use sha2::{Digest as _, Sha256};
use tar::{EntryType, Header};
use tempfile::TempDir;

use hako_image::apply::{apply_layer, apply_tar, ApplyError, ApplyOptions, ApplyStats, Owner};
use hako_image::model::chain_ids;
use hako_image::unpack::{lease_key, Snapshots, UnpackError};
use hako_store::{Digest, Leases};

const MTIME: u64 = 1_600_000_000;

// ---------------------------------------------------------------------------------------
// Building archives
// ---------------------------------------------------------------------------------------

/// One tar entry, written as a raw GNU header so any name (`../x`, `/abs`) goes in as is.
#[derive(Clone)]
struct Ent {
    kind: EntryType,
    name: Vec<u8>,
    link: Vec<u8>,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    dev: (u32, u32),
    data: Vec<u8>,
    pax: Vec<(String, Vec<u8>)>,
}

fn ent(kind: EntryType, name: &str, mode: u32) -> Ent {
    Ent {
        kind,
        name: name.as_bytes().to_vec(),
        link: Vec::new(),
        mode,
        uid: 0,
        gid: 0,
        mtime: MTIME,
        dev: (0, 0),
        data: Vec::new(),
        pax: Vec::new(),
    }
}

fn file(name: &str, data: &[u8]) -> Ent {
    Ent {
        data: data.to_vec(),
        ..ent(EntryType::Regular, name, 0o644)
    }
}

fn dir(name: &str) -> Ent {
    ent(EntryType::Directory, name, 0o755)
}

fn symlink(name: &str, target: &str) -> Ent {
    Ent {
        link: target.as_bytes().to_vec(),
        ..ent(EntryType::Symlink, name, 0o777)
    }
}

fn hardlink(name: &str, target: &str) -> Ent {
    Ent {
        link: target.as_bytes().to_vec(),
        ..ent(EntryType::Link, name, 0o644)
    }
}

fn node(kind: EntryType, name: &str, mode: u32, major: u32, minor: u32) -> Ent {
    Ent {
        dev: (major, minor),
        ..ent(kind, name, mode)
    }
}

impl Ent {
    fn mode(mut self, mode: u32) -> Ent {
        self.mode = mode;
        self
    }
    fn owner(mut self, uid: u64, gid: u64) -> Ent {
        self.uid = uid;
        self.gid = gid;
        self
    }
    fn mtime(mut self, mtime: u64) -> Ent {
        self.mtime = mtime;
        self
    }
    /// A PAX `SCHILY.xattr.<name>` record in front of the entry.
    fn xattr(mut self, name: &str, value: &[u8]) -> Ent {
        self.pax.push((format!("SCHILY.xattr.{name}"), value.to_vec()));
        self
    }
    /// Any PAX record in front of the entry (e.g. `path`, which overrides the header name).
    fn pax(mut self, key: &str, value: &[u8]) -> Ent {
        self.pax.push((key.to_string(), value.to_vec()));
        self
    }
}

/// A GNU header with the name and link name bytes filled in directly, bypassing the
/// `tar` crate's path checks. The checksum is computed last.
fn raw_header(e: &Ent) -> Header {
    let mut h = Header::new_gnu();
    {
        let old = h.as_old_mut();
        assert!(e.name.len() <= old.name.len(), "test names must fit the 100-byte field");
        assert!(e.link.len() <= old.linkname.len());
        old.name[..e.name.len()].copy_from_slice(&e.name);
        old.linkname[..e.link.len()].copy_from_slice(&e.link);
    }
    h.set_entry_type(e.kind);
    h.set_mode(e.mode);
    h.set_uid(e.uid);
    h.set_gid(e.gid);
    h.set_mtime(e.mtime);
    h.set_size(e.data.len() as u64);
    if matches!(e.kind, EntryType::Char | EntryType::Block) {
        h.set_device_major(e.dev.0).unwrap();
        h.set_device_minor(e.dev.1).unwrap();
    }
    h.set_cksum();
    h
}

fn append(b: &mut tar::Builder<Vec<u8>>, e: &Ent) {
    if !e.pax.is_empty() {
        b.append_pax_extensions(e.pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .unwrap();
    }
    b.append(&raw_header(e), e.data.as_slice()).unwrap();
}

/// A complete layer tar (with the end-of-archive blocks).
fn layer(entries: &[Ent]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        append(&mut b, e);
    }
    b.into_inner().unwrap()
}

/// Deterministic pseudo-random bytes (xorshift), so content checks are not all-zero.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn sha256_file(p: &Path) -> String {
    let mut f = fs::File::open(p).unwrap();
    let mut h = Sha256::new();
    io::copy(&mut f, &mut h).unwrap();
    hex::encode(h.finalize())
}

fn getxattr(p: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = [0u8; 256];
    match rustix::fs::lgetxattr(p, name, &mut buf) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(rustix::io::Errno::NODATA) => None,
        Err(e) => panic!("lgetxattr {p:?} {name}: {e}"),
    }
}

/// A name unique to this process and call site, for probes in shared places like `/`.
fn unique(tag: &str) -> String {
    format!("hako-apply-test-{}-{tag}", std::process::id())
}

// ---------------------------------------------------------------------------------------
// The sandbox: the target `t` inside a temp dir that holds only `t` and a sentinel
// ---------------------------------------------------------------------------------------

const SENTINEL: &[u8] = b"do not touch\n";

struct Sandbox {
    base: TempDir,
    t: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let base = tempfile::tempdir_in("/var/tmp").unwrap();
        let t = base.path().join("t");
        fs::create_dir(&t).unwrap();
        fs::write(base.path().join("sentinel"), SENTINEL).unwrap();
        Sandbox { base, t }
    }

    fn apply(&self, tar: &[u8]) -> Result<ApplyStats, ApplyError> {
        apply_layer(tar, &self.t)
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.t.join(rel)
    }

    /// The temp dir holds exactly `t` and an untouched, unlinked-to sentinel.
    fn assert_nothing_outside(&self) {
        let names: BTreeSet<String> = fs::read_dir(self.base.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            BTreeSet::from(["sentinel".to_string(), "t".to_string()]),
            "something was created next to the target"
        );
        let sentinel = self.base.path().join("sentinel");
        assert_eq!(fs::read(&sentinel).unwrap(), SENTINEL);
        assert_eq!(
            fs::symlink_metadata(&sentinel).unwrap().nlink(),
            1,
            "the sentinel was hardlinked"
        );
        assert!(fs::symlink_metadata(&self.t).unwrap().is_dir());
    }

    /// Applies a layer that must be refused because of `entry`; returns the message.
    fn expect_refused(&self, tar: &[u8], entry: &str) -> String {
        let err = self.apply(tar).expect_err("a malicious layer was applied");
        let msg = err.to_string();
        assert!(msg.contains(entry), "error {msg:?} does not name the entry {entry:?}");
        self.assert_nothing_outside();
        msg
    }
}

fn assert_absent(p: &Path) {
    assert!(
        fs::symlink_metadata(p).is_err(),
        "{p:?} exists: something escaped the target"
    );
}

// ---------------------------------------------------------------------------------------
// 1. Metadata
// ---------------------------------------------------------------------------------------

#[test]
fn regular_files_keep_owner_mode_mtime_and_content() {
    let sb = Sandbox::new();
    let tar = layer(&[
        file("plain", b"hello\n")
            .owner(1000, 1001)
            .mode(0o640)
            .mtime(1_111_111_111),
        file("suid", b"#!/bin/true\n").owner(1000, 1001).mode(0o4755),
        file("sgid", b"x").owner(1000, 1001).mode(0o2751),
        file("empty", b"").mode(0o600).mtime(1_234_567_890),
    ]);
    let stats = sb.apply(&tar).unwrap();
    assert_eq!(stats.entries, 4);
    assert_eq!(stats.size, 6 + 12 + 1);

    let m = fs::symlink_metadata(sb.p("plain")).unwrap();
    assert!(m.file_type().is_file());
    assert_eq!((m.uid(), m.gid()), (1000, 1001));
    assert_eq!(m.mode() & 0o7777, 0o640);
    assert_eq!(m.mtime(), 1_111_111_111);
    assert_eq!(fs::read(sb.p("plain")).unwrap(), b"hello\n");

    // Set-id bits survive the chown (which clears them).
    let m = fs::symlink_metadata(sb.p("suid")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1000, 1001));
    assert_eq!(m.mode() & 0o7777, 0o4755);
    let m = fs::symlink_metadata(sb.p("sgid")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o2751);

    let m = fs::symlink_metadata(sb.p("empty")).unwrap();
    assert!(m.file_type().is_file());
    assert_eq!(m.len(), 0);
    assert_eq!(m.mode() & 0o7777, 0o600);
    assert_eq!(m.mtime(), 1_234_567_890);
    sb.assert_nothing_outside();
}

#[test]
fn directories_keep_owner_mode_sticky_and_mtime_after_children() {
    let sb = Sandbox::new();
    let tar = layer(&[
        dir("d/").owner(1000, 1001).mode(0o750).mtime(1_000_000_000),
        dir("d/sub/").mtime(1_100_000_000),
        file("d/sub/f", b"f").mtime(1_500_000_000),
        file("d/g", b"g"),
        dir("tmp/").mode(0o1777).mtime(1_200_000_000),
        file("tmp/.keep", b""),
        node(EntryType::Fifo, "tmp/fifo", 0o600, 0, 0),
        // A whiteout and an opaque marker change their directory too.
        dir("w/").mtime(1_300_000_000),
        file("w/.wh.gone", b""),
        file("w/.wh..wh..opq", b""),
    ]);
    sb.apply(&tar).unwrap();

    let m = fs::symlink_metadata(sb.p("d")).unwrap();
    assert!(m.is_dir());
    assert_eq!((m.uid(), m.gid()), (1000, 1001));
    assert_eq!(m.mode() & 0o7777, 0o750);
    assert_eq!(
        m.mtime(),
        1_000_000_000,
        "d's mtime was changed by creating its children"
    );
    assert_eq!(fs::symlink_metadata(sb.p("d/sub")).unwrap().mtime(), 1_100_000_000);
    assert_eq!(fs::symlink_metadata(sb.p("d/sub/f")).unwrap().mtime(), 1_500_000_000);

    let m = fs::symlink_metadata(sb.p("tmp")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o1777);
    assert_eq!(m.mtime(), 1_200_000_000);
    assert_eq!(fs::symlink_metadata(sb.p("w")).unwrap().mtime(), 1_300_000_000);
    sb.assert_nothing_outside();
}

#[test]
fn root_entry_sets_target_metadata() {
    let sb = Sandbox::new();
    let tar = layer(&[
        dir("./").owner(1000, 1001).mode(0o711).mtime(1_000_000_001),
        file("a", b"a"),
    ]);
    sb.apply(&tar).unwrap();
    let m = fs::symlink_metadata(&sb.t).unwrap();
    assert_eq!((m.uid(), m.gid()), (1000, 1001));
    assert_eq!(m.mode() & 0o7777, 0o711);
    assert_eq!(m.mtime(), 1_000_000_001);
    sb.assert_nothing_outside();
}

#[test]
fn xattrs_from_pax_records() {
    let sb = Sandbox::new();
    let tar = layer(&[
        dir("d/").xattr("user.dirattr", b"on a dir"),
        file("d/f", b"data")
            .xattr("user.test", b"bin\0ary\xff")
            .xattr("user.other", b"2"),
        file("plain", b"no xattrs"),
    ]);
    sb.apply(&tar).unwrap();
    assert_eq!(
        getxattr(&sb.p("d/f"), "user.test").as_deref(),
        Some(&b"bin\0ary\xff"[..])
    );
    assert_eq!(getxattr(&sb.p("d/f"), "user.other").as_deref(), Some(&b"2"[..]));
    assert_eq!(getxattr(&sb.p("d"), "user.dirattr").as_deref(), Some(&b"on a dir"[..]));
    // The PAX record belongs to the next entry only.
    assert_eq!(getxattr(&sb.p("plain"), "user.test"), None);
    assert_eq!(fs::read(sb.p("d/f")).unwrap(), b"data");
    sb.assert_nothing_outside();
}

#[test]
fn symlinks_keep_target_verbatim_owner_and_mtime() {
    let sb = Sandbox::new();
    let tar = layer(&[
        symlink("abs", "/etc/passwd").owner(1000, 1001).mtime(1_000_000_002),
        symlink("rel", "../x/./y//z"),
        symlink("dangling", "does/not/exist"),
        symlink("dot", "."),
    ]);
    sb.apply(&tar).unwrap();
    for (name, target) in [
        ("abs", "/etc/passwd"),
        ("rel", "../x/./y//z"),
        ("dangling", "does/not/exist"),
        ("dot", "."),
    ] {
        let m = fs::symlink_metadata(sb.p(name)).unwrap();
        assert!(m.file_type().is_symlink(), "{name} is not a symlink");
        // Compared as bytes: `Path` equality would ignore `.` and `//`.
        assert_eq!(
            fs::read_link(sb.p(name)).unwrap().as_os_str(),
            std::ffi::OsStr::new(target),
            "{name}'s target changed"
        );
    }
    let m = fs::symlink_metadata(sb.p("abs")).unwrap();
    assert_eq!((m.uid(), m.gid()), (1000, 1001));
    assert_eq!(m.mtime(), 1_000_000_002);
    sb.assert_nothing_outside();
}

#[test]
fn hardlinks_share_the_inode() {
    let sb = Sandbox::new();
    let tar = layer(&[
        file("d/orig", b"shared").owner(1000, 1001).mode(0o4750),
        hardlink("hl", "d/orig"),
        hardlink("d/hl2", "./d/orig"),
        // Absolute link names count from the layer root, like entry names.
        hardlink("hl3", "/d/orig"),
    ]);
    let stats = sb.apply(&tar).unwrap();
    assert_eq!(stats.size, 6, "hardlinks are not counted twice");
    let orig = fs::symlink_metadata(sb.p("d/orig")).unwrap();
    assert_eq!(orig.nlink(), 4);
    for name in ["hl", "d/hl2", "hl3"] {
        let m = fs::symlink_metadata(sb.p(name)).unwrap();
        assert_eq!(
            (m.dev(), m.ino()),
            (orig.dev(), orig.ino()),
            "{name} is not a hardlink of d/orig"
        );
    }
    assert_eq!(orig.mode() & 0o7777, 0o4750);
    assert_eq!(fs::read(sb.p("hl")).unwrap(), b"shared");
    sb.assert_nothing_outside();
}

#[test]
fn device_nodes_and_fifos() {
    let sb = Sandbox::new();
    let tar = layer(&[
        node(EntryType::Char, "dev/null", 0o666, 1, 3).mtime(1_000_000_003),
        node(EntryType::Block, "dev/loop9", 0o660, 7, 9).owner(0, 6),
        node(EntryType::Fifo, "run/pipe", 0o620, 0, 0).owner(1000, 1001),
    ]);
    sb.apply(&tar).unwrap();

    let m = fs::symlink_metadata(sb.p("dev/null")).unwrap();
    assert!(m.file_type().is_char_device());
    assert_eq!(m.rdev(), rustix::fs::makedev(1, 3));
    assert_eq!(m.mode() & 0o7777, 0o666, "the umask must not apply");
    assert_eq!(m.mtime(), 1_000_000_003);

    let m = fs::symlink_metadata(sb.p("dev/loop9")).unwrap();
    assert!(m.file_type().is_block_device());
    assert_eq!(m.rdev(), rustix::fs::makedev(7, 9));
    assert_eq!(m.gid(), 6);
    assert_eq!(m.mode() & 0o7777, 0o660);

    let m = fs::symlink_metadata(sb.p("run/pipe")).unwrap();
    assert!(m.file_type().is_fifo());
    assert_eq!((m.uid(), m.gid()), (1000, 1001));
    assert_eq!(m.mode() & 0o7777, 0o620);

    // Parents that the layer did not list are created 0755 root:root.
    let m = fs::symlink_metadata(sb.p("dev")).unwrap();
    assert!(m.is_dir());
    assert_eq!(m.mode() & 0o7777, 0o755);
    sb.assert_nothing_outside();
}

#[test]
fn sparse_file_stays_sparse() {
    const SIZE: u64 = 64 << 20;
    let head = noise(4096, 1);
    let tail = noise(4096, 2);
    let middle = SIZE - 2 * 4096;

    let mut h = raw_header(&file("sparse", b"").mode(0o644));
    h.set_size(SIZE);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::with_capacity(SIZE as usize + 8192));
    b.append(
        &h,
        head.as_slice().chain(io::repeat(0).take(middle)).chain(tail.as_slice()),
    )
    .unwrap();
    let tar = b.into_inner().unwrap();

    let mut expect = Sha256::new();
    expect.update(&head);
    io::copy(&mut io::repeat(0).take(middle), &mut expect).unwrap();
    expect.update(&tail);

    let sb = Sandbox::new();
    let stats = sb.apply(&tar).unwrap();
    drop(tar);
    assert_eq!(stats.size, SIZE);
    let p = sb.p("sparse");
    let m = fs::symlink_metadata(&p).unwrap();
    assert_eq!(m.len(), SIZE);
    let allocated = m.blocks() * 512;
    assert!(
        allocated < 1 << 20,
        "64 MiB of mostly zeros allocated {allocated} bytes: holes were written out"
    );
    assert_eq!(sha256_file(&p), hex::encode(expect.finalize()));
    sb.assert_nothing_outside();
}

#[test]
fn zero_runs_at_odd_offsets_and_trailing_zeros_keep_exact_content() {
    // Data, zero runs and data again at offsets that do not line up with 4 KiB blocks or
    // the 1 MiB copy buffer; and files that end in zeros (the size comes from truncate).
    let mut mixed = noise(3 << 20, 3);
    for (start, len) in [(100usize, 10_000usize), (1_048_000, 9_000), (2_000_001, 70_000)] {
        mixed[start..start + len].fill(0);
    }
    let mut trailing = noise(5000, 4);
    trailing.resize(1 << 20 | 123, 0);
    let tar = layer(&[
        file("mixed", &mixed),
        file("trailing", &trailing),
        file("zeros", &vec![0u8; 10_000]),
        file("one-zero", &[0u8]),
    ]);
    let sb = Sandbox::new();
    sb.apply(&tar).unwrap();
    assert_eq!(fs::read(sb.p("mixed")).unwrap(), mixed);
    assert_eq!(fs::read(sb.p("trailing")).unwrap(), trailing);
    assert_eq!(fs::read(sb.p("zeros")).unwrap(), vec![0u8; 10_000]);
    assert_eq!(fs::read(sb.p("one-zero")).unwrap(), vec![0u8]);
    sb.assert_nothing_outside();
}

#[test]
fn large_file_content_matches_sha256() {
    let data = noise((9 << 20) + 4321, 5);
    let expect = hex::encode(Sha256::digest(&data));
    let tar = layer(&[file("big.bin", &data).mode(0o755)]);
    let sb = Sandbox::new();
    let stats = sb.apply(&tar).unwrap();
    assert_eq!(stats.size, data.len() as u64);
    assert_eq!(sha256_file(&sb.p("big.bin")), expect);
    sb.assert_nothing_outside();
}

#[test]
fn gnu_sparse_entry_is_expanded() {
    // A GNU 'S' entry: 4 KiB of data at 0 and at 512 KiB of a 1 MiB file.
    let a = vec![b'A'; 4096];
    let bb = vec![b'B'; 4096];
    let mut h = raw_header(&ent(EntryType::GNUSparse, "gnusparse", 0o644));
    {
        let g = h.as_gnu_mut().unwrap();
        g.sparse[0].set_offset(0);
        g.sparse[0].set_length(4096);
        g.sparse[1].set_offset(512 << 10);
        g.sparse[1].set_length(4096);
        // GNU tar ends the map with an empty chunk at the real size.
        g.sparse[2].set_offset(1 << 20);
        g.sparse[2].set_length(0);
        g.set_real_size(1 << 20);
    }
    h.set_size(8192);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, a.as_slice().chain(bb.as_slice())).unwrap();
    let tar = b.into_inner().unwrap();

    let sb = Sandbox::new();
    sb.apply(&tar).unwrap();
    let mut expect = vec![0u8; 1 << 20];
    expect[..4096].copy_from_slice(&a);
    expect[512 << 10..(512 << 10) + 4096].copy_from_slice(&bb);
    let got = fs::read(sb.p("gnusparse")).unwrap();
    assert_eq!(got.len(), expect.len());
    assert!(got == expect, "GNU sparse content differs");
    assert!(fs::symlink_metadata(sb.p("gnusparse")).unwrap().blocks() * 512 < 512 << 10);
    sb.assert_nothing_outside();
}

#[test]
fn later_entries_replace_earlier_ones() {
    let sb = Sandbox::new();
    let tar = layer(&[
        file("x", b"first"),
        file("x", b"second"),
        dir("d/"),
        file("d/inner", b"gone"),
        // A file over a non-empty directory removes the directory.
        file("d", b"now a file"),
        // A directory over a file replaces it.
        file("e", b"file"),
        dir("e/"),
        // A directory over a directory merges.
        dir("m/"),
        file("m/keep", b"keep"),
        dir("m/").mode(0o700),
    ]);
    sb.apply(&tar).unwrap();
    assert_eq!(fs::read(sb.p("x")).unwrap(), b"second");
    assert_eq!(fs::read(sb.p("d")).unwrap(), b"now a file");
    assert!(fs::symlink_metadata(sb.p("e")).unwrap().is_dir());
    assert_eq!(fs::read(sb.p("m/keep")).unwrap(), b"keep");
    assert_eq!(fs::symlink_metadata(sb.p("m")).unwrap().mode() & 0o7777, 0o700);
    sb.assert_nothing_outside();
}

#[test]
fn dir_mtime_is_not_applied_through_a_symlink_that_replaced_the_dir() {
    // `d/` is listed (its mtime is applied at the end), then replaced by a symlink to `e`.
    // The deferred mtime must not land on `e` through the symlink.
    let sb = Sandbox::new();
    let tar = layer(&[
        dir("e/").mtime(1_500_000_000),
        dir("d/").mtime(1_000_000_000),
        symlink("d", "e").mtime(1_700_000_000),
    ]);
    sb.apply(&tar).unwrap();
    assert_eq!(
        fs::symlink_metadata(sb.p("e")).unwrap().mtime(),
        1_500_000_000,
        "e got d's mtime"
    );
    let d = fs::symlink_metadata(sb.p("d")).unwrap();
    assert!(d.file_type().is_symlink());
    assert_eq!(d.mtime(), 1_700_000_000);
    sb.assert_nothing_outside();
}

// ---------------------------------------------------------------------------------------
// 2. Whiteouts
// ---------------------------------------------------------------------------------------

fn assert_whiteout(p: &Path) {
    let m = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("no whiteout at {p:?}: {e}"));
    assert!(m.file_type().is_char_device(), "{p:?} is not a character device");
    assert_eq!(m.rdev(), 0, "{p:?} is not device 0/0");
}

#[test]
fn whiteouts_become_overlay_char_devices() {
    let sb = Sandbox::new();
    let tar = layer(&[
        file(".wh.foo", b""),
        dir("etc/"),
        file("etc/.wh.hosts", b""),
        // A whiteout replaces whatever an earlier entry of the layer put there.
        file("etc/old", b"data"),
        file("etc/.wh.old", b""),
        // Its parent is created if the layer did not list it.
        file("deep/er/.wh.x", b""),
    ]);
    sb.apply(&tar).unwrap();
    assert_whiteout(&sb.p("foo"));
    assert_whiteout(&sb.p("etc/hosts"));
    assert_whiteout(&sb.p("etc/old"));
    assert_whiteout(&sb.p("deep/er/x"));
    for marker in [".wh.foo", "etc/.wh.hosts", "etc/.wh.old", "deep/er/.wh.x"] {
        assert_absent(&sb.p(marker));
    }
    sb.assert_nothing_outside();
}

#[test]
fn opaque_marker_sets_overlay_xattr() {
    let sb = Sandbox::new();
    let tar = layer(&[
        dir("dir/"),
        file("dir/.wh..wh..opq", b""),
        file("dir/new", b"n"),
        file("other/.wh..wh..opq", b""),
        dir("plain/"),
    ]);
    sb.apply(&tar).unwrap();
    assert_eq!(
        getxattr(&sb.p("dir"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(
        getxattr(&sb.p("other"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(getxattr(&sb.p("plain"), "trusted.overlay.opaque"), None);
    assert_absent(&sb.p("dir/.wh..wh..opq"));
    assert_absent(&sb.p("other/.wh..wh..opq"));
    assert_eq!(fs::read(sb.p("dir/new")).unwrap(), b"n");
    sb.assert_nothing_outside();
}

#[test]
fn malformed_whiteouts_are_refused() {
    for name in [".wh.", ".wh...", ".wh..", "d/.wh..."] {
        let sb = Sandbox::new();
        let tar = layer(&[file(name, b"")]);
        let msg = sb.expect_refused(&tar, name);
        assert!(msg.contains("whiteout"), "{msg}");
    }
}

// ---------------------------------------------------------------------------------------
// 3. Malicious layers
// ---------------------------------------------------------------------------------------

#[test]
fn dotdot_names_are_refused() {
    for name in [
        "../evil",
        "a/../../evil",
        "/abs/../../evil",
        "./../evil",
        "a/b/../../../evil",
    ] {
        let sb = Sandbox::new();
        let tar = layer(&[file(name, b"pwned")]);
        sb.expect_refused(&tar, name);
    }
    // The same name as a directory, a symlink, a device, a whiteout.
    for e in [
        dir("../evil/"),
        symlink("../evil", "/"),
        node(EntryType::Fifo, "../evil", 0o644, 0, 0),
        file("../.wh.sentinel", b""),
    ] {
        let sb = Sandbox::new();
        let name = String::from_utf8(e.name.clone()).unwrap();
        sb.expect_refused(&layer(&[e]), &name);
    }
}

#[test]
fn refused_entry_stops_the_apply() {
    let sb = Sandbox::new();
    let tar = layer(&[file("before", b"1"), file("../evil", b"x"), file("after", b"2")]);
    sb.expect_refused(&tar, "../evil");
    assert!(sb.p("before").exists());
    assert_absent(&sb.p("after"));
}

#[test]
fn dotdot_in_pax_path_and_gnu_longname_is_refused() {
    // PAX `path` overrides the innocent header name.
    let sb = Sandbox::new();
    let tar = layer(&[file("innocent", b"x").pax("path", b"../evil-pax")]);
    sb.expect_refused(&tar, "../evil-pax");
    assert_absent(&sb.p("innocent"));

    // A GNU long name record ('L') ahead of the entry.
    let sb = Sandbox::new();
    let long = format!("{}/../../../evil-longname", "x".repeat(120));
    let mut l = ent(EntryType::GNULongName, "././@LongLink", 0o644);
    l.data = format!("{long}\0").into_bytes();
    let tar = layer(&[l, file("innocent", b"x")]);
    sb.expect_refused(&tar, "evil-longname");
}

#[test]
fn absolute_names_count_from_the_target_root() {
    let sb = Sandbox::new();
    let before = fs::read("/etc/passwd").unwrap();
    let tar = layer(&[
        file("/etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
        dir("/abs/../ok/"),
        file("//double//slash", b"d"),
    ]);
    sb.apply(&tar).unwrap();
    assert_eq!(fs::read(sb.p("etc/passwd")).unwrap(), b"root:x:0:0::/root:/bin/sh\n");
    assert!(sb.p("ok").is_dir());
    assert_absent(&sb.p("abs"));
    assert_eq!(fs::read(sb.p("double/slash")).unwrap(), b"d");
    assert_eq!(
        fs::read("/etc/passwd").unwrap(),
        before,
        "the host's /etc/passwd changed"
    );
    sb.assert_nothing_outside();
}

#[test]
fn write_through_absolute_symlink_is_refused() {
    let evil = unique("abs-symlink");
    let sb = Sandbox::new();
    let entry = format!("link/{evil}");
    let tar = layer(&[symlink("link", "/"), file(&entry, b"pwned")]);
    sb.expect_refused(&tar, &entry);
    assert_absent(&Path::new("/").join(&evil));

    // Same through a directory inside the symlinked one.
    let sb = Sandbox::new();
    let entry = format!("link/tmp/{evil}");
    let tar = layer(&[symlink("link", "/"), file(&entry, b"pwned")]);
    sb.expect_refused(&tar, &entry);
    assert_absent(&Path::new("/tmp").join(&evil));
}

#[test]
fn write_through_relative_symlink_climbing_out_is_refused() {
    let evil = unique("up");
    let sb = Sandbox::new();
    let entry = format!("up/{evil}");
    let tar = layer(&[symlink("up", "../.."), file(&entry, b"pwned")]);
    sb.expect_refused(&tar, &entry);
    // `../..` from the target is the temp dir's parent.
    assert_absent(&sb.base.path().parent().unwrap().join(&evil));

    // `..` alone lands in the temp dir (checked by assert_nothing_outside).
    let sb = Sandbox::new();
    let tar = layer(&[symlink("up", ".."), file("up/evil", b"pwned")]);
    sb.expect_refused(&tar, "up/evil");

    // A symlink deeper down that climbs out through the root.
    let sb = Sandbox::new();
    let tar = layer(&[dir("a/b/"), symlink("a/b/c", "../../.."), file("a/b/c/evil", b"pwned")]);
    sb.expect_refused(&tar, "a/b/c/evil");

    // A directory entry through such a symlink.
    let sb = Sandbox::new();
    let tar = layer(&[symlink("up", ".."), dir("up/evil/")]);
    sb.expect_refused(&tar, "up/evil");
}

#[test]
fn write_through_symlink_chain_is_refused() {
    let evil = unique("chain");
    let sb = Sandbox::new();
    let entry = format!("a/{evil}");
    let tar = layer(&[symlink("a", "b"), symlink("b", "../../"), file(&entry, b"pwned")]);
    sb.expect_refused(&tar, &entry);
    assert_absent(&sb.base.path().parent().unwrap().join(&evil));

    // A chain whose last hop is absolute.
    let sb = Sandbox::new();
    let entry = format!("a/{evil}");
    let tar = layer(&[
        symlink("a", "b"),
        symlink("b", "c"),
        symlink("c", "/tmp"),
        file(&entry, b"pwned"),
    ]);
    sb.expect_refused(&tar, &entry);
    assert_absent(&Path::new("/tmp").join(&evil));
}

#[test]
fn symlink_loop_is_refused_not_hung() {
    let sb = Sandbox::new();
    let tar = layer(&[symlink("a", "b"), symlink("b", "a"), file("a/x", b"x")]);
    sb.expect_refused(&tar, "a/x");
}

#[test]
fn hardlink_climbing_out_is_refused() {
    // `../sentinel` names the file next to the target: linking it would bump its nlink.
    for target in ["../sentinel", "a/../../sentinel", "/../sentinel", "./../sentinel"] {
        let sb = Sandbox::new();
        let tar = layer(&[hardlink("hl", target)]);
        sb.expect_refused(&tar, "hl");
        assert_absent(&sb.p("hl"));
    }
}

#[test]
fn hardlink_to_host_file_is_refused() {
    let nlink = || fs::metadata("/etc/passwd").unwrap().nlink();
    let before = nlink();

    // No `etc` in the layer at all.
    let sb = Sandbox::new();
    sb.expect_refused(&layer(&[hardlink("pw", "/etc/passwd")]), "pw");
    assert_absent(&sb.p("pw"));

    // `etc/` in the layer, but no `passwd` in it: the name counts from the layer root.
    let sb = Sandbox::new();
    let msg = sb.expect_refused(&layer(&[dir("etc/"), hardlink("pw", "/etc/passwd")]), "pw");
    assert!(msg.contains("not in this layer"), "{msg}");
    assert_absent(&sb.p("pw"));

    // Through a symlink to the host's /etc.
    let sb = Sandbox::new();
    sb.expect_refused(&layer(&[symlink("l", "/etc"), hardlink("pw", "l/passwd")]), "pw");
    assert_absent(&sb.p("pw"));

    // Through a relative symlink that climbs out.
    let sb = Sandbox::new();
    sb.expect_refused(&layer(&[symlink("up", ".."), hardlink("pw", "up/sentinel")]), "pw");

    assert_eq!(nlink(), before, "the host's /etc/passwd was hardlinked");
}

#[test]
fn hardlink_to_a_symlink_links_the_symlink_itself() {
    // linkat without AT_SYMLINK_FOLLOW: the new name shares the symlink's inode and never
    // the inode of what it points to.
    let nlink = || fs::metadata("/etc/passwd").unwrap().nlink();
    let before = nlink();
    let sb = Sandbox::new();
    sb.apply(&layer(&[symlink("pw", "/etc/passwd"), hardlink("hl", "pw")]))
        .unwrap();
    let m = fs::symlink_metadata(sb.p("hl")).unwrap();
    assert!(m.file_type().is_symlink());
    assert_eq!(m.ino(), fs::symlink_metadata(sb.p("pw")).unwrap().ino());
    assert_eq!(nlink(), before);
    sb.assert_nothing_outside();
}

#[test]
fn entries_replace_symlinks_instead_of_following_them() {
    let outside = PathBuf::from(format!("/tmp/{}", unique("outside")));
    let _ = fs::remove_file(&outside);
    let o = outside.to_str().unwrap();
    let sb = Sandbox::new();
    let tar = layer(&[
        symlink("s", o),
        file("s", b"inside"),
        symlink("f", o),
        node(EntryType::Fifo, "f", 0o600, 0, 0),
        symlink("c", o),
        node(EntryType::Char, "c", 0o600, 1, 3),
        symlink("w", o),
        file(".wh.w", b""),
        file("target", b"t"),
        symlink("h", o),
        hardlink("h", "target"),
        // A symlink over a symlink: the new one, not a write through the old one.
        symlink("ss", o),
        symlink("ss", "elsewhere"),
    ]);
    sb.apply(&tar).unwrap();
    let m = fs::symlink_metadata(sb.p("s")).unwrap();
    assert!(m.file_type().is_file());
    assert_eq!(fs::read(sb.p("s")).unwrap(), b"inside");
    assert!(fs::symlink_metadata(sb.p("f")).unwrap().file_type().is_fifo());
    assert!(fs::symlink_metadata(sb.p("c")).unwrap().file_type().is_char_device());
    assert_whiteout(&sb.p("w"));
    assert_eq!(
        fs::symlink_metadata(sb.p("h")).unwrap().ino(),
        fs::symlink_metadata(sb.p("target")).unwrap().ino()
    );
    assert_eq!(fs::read_link(sb.p("ss")).unwrap(), Path::new("elsewhere"));
    assert_absent(&outside);
    sb.assert_nothing_outside();
}

#[test]
fn directory_entry_replaces_symlink_to_outside() {
    let x = unique("dir-over-symlink");
    let sb = Sandbox::new();
    let inner = format!("d/{x}");
    let tar = layer(&[symlink("d", "/"), dir("d/").mode(0o700), file(&inner, b"inside")]);
    sb.apply(&tar).unwrap();
    let m = fs::symlink_metadata(sb.p("d")).unwrap();
    assert!(m.is_dir(), "the symlink was not replaced by a directory");
    assert_eq!(m.mode() & 0o7777, 0o700);
    assert_eq!(fs::read(sb.p(&inner)).unwrap(), b"inside");
    assert_absent(&Path::new("/").join(&x));

    // A symlink to a directory inside the layer is replaced too, not merged into.
    let sb = Sandbox::new();
    let tar = layer(&[
        dir("real/"),
        file("real/a", b"a"),
        symlink("d", "real"),
        dir("d/"),
        file("d/b", b"b"),
    ]);
    sb.apply(&tar).unwrap();
    assert!(fs::symlink_metadata(sb.p("d")).unwrap().is_dir());
    assert_absent(&sb.p("real/b"));
    assert_eq!(fs::read(sb.p("d/b")).unwrap(), b"b");
    sb.assert_nothing_outside();
}

// ---------------------------------------------------------------------------------------
// 4. Symlinks that stay inside are followed
// ---------------------------------------------------------------------------------------

#[test]
fn relative_symlinks_inside_the_layer_are_followed() {
    let sb = Sandbox::new();
    let tar = layer(&[
        symlink("lib", "usr/lib"),
        dir("usr/"),
        dir("usr/lib/"),
        file("lib/libx.so", b"libx"),
        // The hardlink target goes through the symlink too.
        hardlink("usr/libx-again.so", "lib/libx.so"),
        // A parent under the symlink that does not exist yet is created where it points.
        file("lib/newdir/liby.so", b"liby"),
    ]);
    sb.apply(&tar).unwrap();
    assert_eq!(fs::read_link(sb.p("lib")).unwrap(), Path::new("usr/lib"));
    assert!(fs::symlink_metadata(sb.p("usr/lib/libx.so")).unwrap().is_file());
    assert_eq!(fs::read(sb.p("usr/lib/libx.so")).unwrap(), b"libx");
    assert_eq!(
        fs::symlink_metadata(sb.p("usr/libx-again.so")).unwrap().ino(),
        fs::symlink_metadata(sb.p("usr/lib/libx.so")).unwrap().ino()
    );
    assert_eq!(fs::read(sb.p("usr/lib/newdir/liby.so")).unwrap(), b"liby");
    sb.assert_nothing_outside();
}

#[test]
fn relative_symlinks_with_dotdot_that_stay_inside_are_followed() {
    // `usr/lib64 -> ../lib64` climbs out of `usr` but not out of the layer.
    let sb = Sandbox::new();
    let tar = layer(&[
        dir("lib64/"),
        dir("usr/"),
        symlink("usr/lib64", "../lib64"),
        file("usr/lib64/libz.so", b"z"),
        // ...and when a directory under it still has to be created.
        file("usr/lib64/sub/dir/liby.so", b"y"),
        dir("run/"),
        dir("var/"),
        symlink("var/run", "../run"),
        file("var/run/lock/pidfile", b"1"),
    ]);
    sb.apply(&tar).unwrap();
    assert_eq!(fs::read(sb.p("lib64/libz.so")).unwrap(), b"z");
    assert_eq!(fs::read(sb.p("lib64/sub/dir/liby.so")).unwrap(), b"y");
    assert_eq!(fs::read(sb.p("run/lock/pidfile")).unwrap(), b"1");
    assert!(fs::symlink_metadata(sb.p("var/run")).unwrap().file_type().is_symlink());
    sb.assert_nothing_outside();

    // A dangling symlink in the parent path is an error (as with Docker, whose MkdirAll
    // stops at the symlink), and nothing is created at the symlink's target.
    let sb = Sandbox::new();
    let tar = layer(&[
        dir("var/"),
        symlink("var/run", "../run"),
        file("var/run/lock/pidfile", b"1"),
    ]);
    let err = sb.apply(&tar).unwrap_err();
    assert!(err.to_string().contains("var/run/lock/pidfile"), "{err}");
    assert_absent(&sb.p("run"));
    sb.assert_nothing_outside();
}

// ---------------------------------------------------------------------------------------
// 5. Broken archives
// ---------------------------------------------------------------------------------------

#[test]
fn truncated_tar_is_an_error_not_a_panic() {
    let tar = layer(&[file("first", &noise(10_000, 6)), file("second", &noise(3000, 7))]);
    // Header 512 + data 10000 (padded to 10240), header 512 + data 3000 (padded to 3072).
    let second_data = 512 + 10_240 + 512;
    for cut in [
        100,                    // inside the first header
        512 + 5000,             // inside the first file's data
        512 + 10_000 + 10,      // inside the first file's padding
        512 + 10_240 + 100,     // inside the second header
        second_data + 1500,     // inside the last file's data
        second_data + 3000 + 5, // inside the last file's padding
    ] {
        let sb = Sandbox::new();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sb.apply(&tar[..cut])));
        let r = r.unwrap_or_else(|_| panic!("apply panicked on a tar cut at {cut}"));
        assert!(r.is_err(), "a tar cut at {cut} of {} was accepted", tar.len());
        sb.assert_nothing_outside();
    }
}

#[test]
fn garbage_and_bad_checksum_are_errors() {
    let sb = Sandbox::new();
    assert!(sb.apply(&noise(4096, 8)[..]).is_err());
    let mut tar = layer(&[file("a", b"a")]);
    tar[0] ^= 0x20; // name byte changed, checksum not
    assert!(sb.apply(&tar[..]).is_err());
    // An empty stream is an empty layer.
    assert_eq!(sb.apply(&[][..]).unwrap().entries, 0);
    sb.assert_nothing_outside();
}

#[test]
fn missing_target_is_an_error() {
    let sb = Sandbox::new();
    let err = apply_layer(&layer(&[file("a", b"a")])[..], &sb.base.path().join("nope")).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

// ---------------------------------------------------------------------------------------
// 6. Snapshots
// ---------------------------------------------------------------------------------------

fn snapshot_dir_names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn concurrent_unpacks_of_the_same_layer_both_succeed() {
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let snapdir = tmp.path().join("snapshots");
    let snaps = Snapshots::open(&snapdir).unwrap();
    let leases = Leases::default();
    for round in 0..8u64 {
        let tar = layer(&[
            dir("etc/"),
            file("etc/os-release", format!("round {round}\n").as_bytes()),
            file("big", &noise(300_000, round + 10)),
        ]);
        let diff_id = Digest::of(&tar);
        let barrier = Barrier::new(2);
        let results: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        let lease = leases.lease();
                        barrier.wait();
                        snaps.unpack(&lease, &tar[..], None, Some(&diff_id))
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for r in &results {
            let u = r.as_ref().unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(u.diff_id, diff_id);
            assert_eq!(u.chain_id, diff_id, "a base layer's chain ID is its diff ID");
            assert_eq!(u.tar_size, tar.len() as u64);
            assert_eq!(u.size, 8 + 300_000);
        }
        let p = snaps.path(&diff_id);
        assert_eq!(p, snapdir.join(diff_id.hex()));
        assert_eq!(
            fs::read(p.join("etc/os-release")).unwrap(),
            format!("round {round}\n").as_bytes()
        );
        assert_eq!(fs::read(p.join("big")).unwrap(), noise(300_000, round + 10));
    }
    let names = snapshot_dir_names(&snapdir);
    assert_eq!(names.len(), 8, "{names:?}");
    assert!(
        names.iter().all(|n| Digest::from_hex(n).is_ok()),
        "leftovers: {names:?}"
    );
    assert_eq!(snaps.list().unwrap().len(), 8);
}

#[test]
fn unpack_hashes_the_whole_stream_and_chains_to_the_parent() {
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let snapdir = tmp.path().join("snapshots");
    let snaps = Snapshots::open(&snapdir).unwrap();
    let leases = Leases::default();
    let lease = leases.lease();

    // Padding after the end-of-archive blocks (a 10 KiB tar record) is part of the diff ID.
    let mut tar = layer(&[file("a", b"a")]);
    tar.resize(10_240, 0);
    let base = snaps.unpack(&lease, &tar[..], None, None).unwrap();
    assert_eq!(base.diff_id, Digest::of(&tar));
    assert_eq!(base.tar_size, 10_240);

    let top_tar = layer(&[file(".wh.a", b""), file("b", b"bb")]);
    let top = snaps
        .unpack(&lease, &top_tar[..], Some(&base.chain_id), Some(&Digest::of(&top_tar)))
        .unwrap();
    assert_eq!(top.diff_id, Digest::of(&top_tar));
    assert_eq!(top.chain_id, chain_ids(&[base.diff_id.clone(), top.diff_id.clone()])[1]);
    assert_ne!(top.chain_id, top.diff_id);
    assert_eq!(top.size, 2);
    assert_whiteout(&snaps.path(&top.chain_id).join("a"));
    assert!(snaps.exists(&lease, &top.chain_id));

    // The lease protects both snapshots.
    leases.collect(|held| {
        assert!(held.contains(&lease_key(&base.chain_id)));
        assert!(held.contains(&lease_key(&top.chain_id)));
    });
    drop(lease);
    leases.collect(|held| assert!(held.is_empty()));

    snaps.remove(&top.chain_id).unwrap();
    assert_eq!(
        snapshot_dir_names(&snapdir),
        BTreeSet::from([base.chain_id.hex().to_string()])
    );
    snaps.remove(&top.chain_id).unwrap(); // removing twice is fine
}

#[test]
fn diff_id_mismatch_leaves_nothing() {
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let snapdir = tmp.path().join("snapshots");
    let snaps = Snapshots::open(&snapdir).unwrap();
    let leases = Leases::default();
    let lease = leases.lease();
    let tar = layer(&[file("a", b"a")]);
    let wrong = Digest::of(b"something else");
    match snaps.unpack(&lease, &tar[..], None, Some(&wrong)) {
        Err(UnpackError::DiffIdMismatch { expected, actual }) => {
            assert_eq!(expected, wrong);
            assert_eq!(actual, Digest::of(&tar));
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(u) => panic!("a layer with the wrong diff ID was accepted: {u:?}"),
    }
    assert!(
        snapshot_dir_names(&snapdir).is_empty(),
        "left behind: {:?}",
        snapshot_dir_names(&snapdir)
    );
    assert!(!snaps.path(&Digest::of(&tar)).exists());
    assert!(!snaps.path(&wrong).exists());
}

#[test]
fn failed_apply_in_unpack_leaves_nothing() {
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let snapdir = tmp.path().join("snapshots");
    let snaps = Snapshots::open(&snapdir).unwrap();
    let lease = Leases::default().lease();
    let tar = layer(&[file("ok", b"1"), file("../evil", b"x")]);
    match snaps.unpack(&lease, &tar[..], None, None) {
        Err(UnpackError::Apply(e)) => assert!(e.to_string().contains("../evil"), "{e}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(u) => panic!("accepted: {u:?}"),
    }
    let truncated = &layer(&[file("big", &noise(100_000, 9))])[..50_000];
    assert!(snaps.unpack(&lease, truncated, None, None).is_err());
    assert!(
        snapshot_dir_names(&snapdir).is_empty(),
        "left behind: {:?}",
        snapshot_dir_names(&snapdir)
    );
    assert_absent(&snapdir.join("evil"));
    assert_absent(&tmp.path().join("evil"));
}

#[test]
fn open_removes_unfinished_unpacks() {
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let snapdir = tmp.path().join("snapshots");
    let keep = Digest::of(b"kept");
    fs::create_dir_all(snapdir.join(".tmp-x/deep/er")).unwrap();
    fs::write(snapdir.join(".tmp-x/deep/er/file"), b"half a layer").unwrap();
    fs::create_dir_all(snapdir.join(".tmp-rm-abc")).unwrap();
    fs::create_dir_all(snapdir.join(keep.hex())).unwrap();
    fs::write(snapdir.join(keep.hex()).join("f"), b"f").unwrap();

    let snaps = Snapshots::open(&snapdir).unwrap();
    assert_eq!(snapshot_dir_names(&snapdir), BTreeSet::from([keep.hex().to_string()]));
    assert_eq!(snaps.list().unwrap(), vec![keep.clone()]);
    assert_eq!(fs::read(snapdir.join(keep.hex()).join("f")).unwrap(), b"f");
}

// ---------------------------------------------------------------------------------------
// `docker cp` extractions: into a directory of a container's root
// ---------------------------------------------------------------------------------------

fn cp_options(base: &str) -> ApplyOptions {
    ApplyOptions {
        base: PathBuf::from(base),
        in_root: true,
        whiteouts: false,
        no_overwrite_dir_non_dir: true,
        owner: Owner::FromTar,
        base_metadata: false,
        rebase: None,
    }
}

fn root_fd(p: &Path) -> std::os::fd::OwnedFd {
    use rustix::fs::{Mode, OFlags};
    rustix::fs::open(p, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).unwrap()
}

#[test]
fn cp_extraction_resolves_symlinks_inside_the_root() {
    let sb = Sandbox::new();
    fs::create_dir_all(sb.p("etc")).unwrap();
    fs::create_dir_all(sb.p("dst")).unwrap();
    fs::set_permissions(sb.p("dst"), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink("/", sb.p("dst/up")).unwrap();
    std::os::unix::fs::symlink("../../../..", sb.p("dst/climb")).unwrap();
    let tar = layer(&[
        dir("./").mode(0o777),
        file("up/etc/a", b"a"),
        file("climb/etc/b", b"b"),
        file(".wh.kept", b"plain"),
        file("sub/c", b"c").owner(1234, 5678),
    ]);
    apply_tar(&tar[..], root_fd(&sb.t), cp_options("dst")).unwrap();
    // `/` and `..` stop at the root: the container's /etc, never the host's.
    assert_eq!(fs::read(sb.p("etc/a")).unwrap(), b"a");
    assert_eq!(fs::read(sb.p("etc/b")).unwrap(), b"b");
    // No whiteouts in a copy, and the destination directory keeps its own mode.
    assert_eq!(fs::read(sb.p("dst/.wh.kept")).unwrap(), b"plain");
    assert_eq!(fs::metadata(sb.p("dst")).unwrap().mode() & 0o7777, 0o700);
    assert_eq!(fs::metadata(sb.p("dst/sub/c")).unwrap().uid(), 1234);
    // Names cannot climb above the destination.
    let err = apply_tar(
        &layer(&[file("../escape", b"x")])[..],
        root_fd(&sb.t),
        cp_options("dst"),
    )
    .unwrap_err();
    assert!(matches!(err, ApplyError::Refused { .. }), "{err}");
    assert_absent(&sb.p("escape"));
    sb.assert_nothing_outside();
}

#[test]
fn cp_extraction_options() {
    let sb = Sandbox::new();
    fs::create_dir_all(sb.p("dir")).unwrap();
    fs::write(sb.p("file"), b"old").unwrap();
    for tar in [layer(&[file("dir", b"x")]), layer(&[dir("file")])] {
        let err = apply_tar(&tar[..], root_fd(&sb.t), cp_options("")).unwrap_err();
        assert!(err.to_string().contains("cannot overwrite"), "{err}");
    }
    assert!(sb.p("dir").is_dir());
    assert_eq!(fs::read(sb.p("file")).unwrap(), b"old");
    // A rename of the archive's root (a copy to a new name), and fixed owners (`cp -a`).
    let opts = ApplyOptions {
        rebase: Some(("src".into(), "renamed".into())),
        owner: Owner::Fixed(7, 8),
        ..cp_options("")
    };
    let tar = layer(&[dir("src/"), file("src/f", b"f").owner(1, 1), hardlink("src/g", "src/f")]);
    apply_tar(&tar[..], root_fd(&sb.t), opts).unwrap();
    let m = fs::metadata(sb.p("renamed/f")).unwrap();
    assert_eq!((m.uid(), m.gid()), (7, 8));
    assert_eq!(fs::metadata(sb.p("renamed/g")).unwrap().ino(), m.ino());
    assert_absent(&sb.p("src"));
    // The process' own owner (a copy out to the host).
    let opts = ApplyOptions {
        owner: Owner::Process,
        ..cp_options("")
    };
    apply_tar(
        &layer(&[file("mine", b"m").owner(4321, 4321)])[..],
        root_fd(&sb.t),
        opts,
    )
    .unwrap();
    assert_eq!(
        fs::metadata(sb.p("mine")).unwrap().uid(),
        rustix::process::geteuid().as_raw()
    );
    sb.assert_nothing_outside();
}
