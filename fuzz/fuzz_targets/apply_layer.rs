//! Arbitrary bytes as a layer tar. `apply_layer` may refuse them, but must not panic and
//! must not create anything outside its target.
//!
//! The target is `<tmp>/a/b/t`, with a sentinel file at every level: a `..` escape of up
//! to three levels lands in a directory checked here, and an absolute one shows up as a new
//! entry in `/`. Run as root (ownership, device nodes, `trusted.*` xattrs), e.g.
//! `cargo +nightly fuzz run apply_layer -- -timeout=10`. `HAKO_FUZZ_DIR` sets where the
//! scratch directories go (default `/var/tmp`).
//!
//! Header checksums are recomputed before the apply: random mutations almost never keep a
//! checksum valid, and a bad checksum only exercises the tar reader's first check.

#![no_main]

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

const SENTINEL: &[u8] = b"do not touch\n";

fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {dir:?}: {e}"))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        std::env::var_os("HAKO_FUZZ_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/var/tmp".into())
    })
}

/// `/` as it was before the first input.
fn host_root() -> &'static BTreeSet<String> {
    static ROOT: OnceLock<BTreeSet<String>> = OnceLock::new();
    ROOT.get_or_init(|| names(Path::new("/")))
}

fn expect_only(dir: &Path, want: &[&str]) {
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    assert_eq!(names(dir), want, "something appeared in {dir:?}, outside the target");
    let s = dir.join("sentinel");
    assert_eq!(fs::read(&s).unwrap(), SENTINEL, "{s:?} was changed");
    assert_eq!(fs::symlink_metadata(&s).unwrap().nlink(), 1, "{s:?} was hardlinked");
}

/// Walks the archive as the tar reader would (header, then its data rounded up to 512
/// bytes) and rewrites each header's checksum.
fn fix_checksums(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    let mut pos = 0usize;
    while pos + 512 <= out.len() {
        let block = &mut out[pos..pos + 512];
        if block.iter().all(|&b| b == 0) {
            pos += 512;
            continue;
        }
        block[148..156].fill(b' ');
        let sum: u32 = block.iter().map(|&b| b as u32).sum();
        block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let size = octal(&block[124..136]).unwrap_or(0);
        let data_blocks = size.div_ceil(512).saturating_mul(512);
        pos = pos
            .saturating_add(512)
            .saturating_add(usize::try_from(data_blocks).unwrap_or(usize::MAX));
    }
    out
}

fn octal(field: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(field).ok()?;
    let s = s.trim_matches(|c| c == ' ' || c == '\0');
    u64::from_str_radix(s, 8).ok()
}

fuzz_target!(|data: &[u8]| {
    let data = fix_checksums(data);
    let data = data.as_slice();
    let root_before = host_root();
    let base = tempfile::Builder::new()
        .prefix("hako-fuzz-")
        .tempdir_in(scratch())
        .unwrap();
    let a = base.path().join("a");
    let b = a.join("b");
    let t = b.join("t");
    fs::create_dir_all(&t).unwrap();
    for d in [base.path(), &a, &b] {
        fs::write(d.join("sentinel"), SENTINEL).unwrap();
    }

    let _ = hako_image::apply::apply_layer(data, &t);

    assert!(
        fs::symlink_metadata(&t).unwrap().is_dir(),
        "the target itself was replaced"
    );
    expect_only(&b, &["sentinel", "t"]);
    expect_only(&a, &["b", "sentinel"]);
    expect_only(base.path(), &["a", "sentinel"]);
    assert_eq!(&names(Path::new("/")), root_before, "a new entry appeared in /");
});
