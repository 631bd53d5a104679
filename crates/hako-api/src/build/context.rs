//! The build context as the engine holds it: the files of the tar the client sent, kept in
//! memory by path, with each file's BLAKE3 hash taken as it arrives (the cache keys need a
//! content hash, not an OCI digest, and BLAKE3 is several times faster than SHA-256 here). Nothing is written to disk for a
//! step the cache answers; a COPY that runs takes its files' bytes from here. (Unpacking a
//! 50 MB context to disk for every build cost more than all of a cached build's steps.)

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::Component;

use sha2::{Digest as _, Sha256};

use crate::error::ApiError;

/// Contexts past this size are refused (they are held in memory while the build runs).
const MAX_CONTEXT: u64 = 4 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// Devices, fifos: listed, never copied (as Docker).
    Other,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub kind: Kind,
    pub mode: u32,
    pub mtime: u64,
    pub link: Option<String>,
    bytes: Vec<u8>,
    digest: [u8; 32],
}

pub struct Context {
    /// By path relative to the root (`a/b`); directories only named by their files' paths
    /// are here too.
    entries: BTreeMap<String, Entry>,
}

fn implied_dir() -> Entry {
    Entry {
        kind: Kind::Dir,
        mode: 0o755,
        mtime: 0,
        link: None,
        bytes: Vec::new(),
        digest: [0; 32],
    }
}

/// A tar entry's path inside the context; None for the root; an error for one that leaves it.
fn clean(p: &std::path::Path) -> Result<Option<String>, ApiError> {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_string_lossy().into_owned()),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                return Err(ApiError::bad_request(format!(
                    "the build context holds a path outside itself: {}",
                    p.display()
                )))
            }
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

impl Context {
    /// Reads the whole context (plain or compressed tar) and indexes it, hashing each file
    /// as its bytes arrive (so the hashing keeps pace with the upload instead of following it).
    pub fn receive<R: Read + Send>(src: R) -> Result<Context, ApiError> {
        let bad = |e: io::Error| ApiError::bad_request(format!("reading the build context: {e}"));
        let mut r = io::BufReader::with_capacity(1 << 20, src);
        let comp = hako_image::compression::Compression::sniff(&mut r).map_err(bad)?;
        let mut ar = tar::Archive::new(comp.decoder(r).map_err(bad)?);
        let mut entries = BTreeMap::new();
        let mut total = 0u64;
        for e in ar.entries().map_err(bad)? {
            let mut e = e.map_err(bad)?;
            let Some(path) = clean(&e.path().map_err(bad)?)? else {
                continue;
            };
            let kind = match e.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File,
                tar::EntryType::Directory => Kind::Dir,
                tar::EntryType::Symlink => Kind::Symlink,
                tar::EntryType::Link => {
                    // A hard link: the same bytes under another name.
                    let target = e.link_name().map_err(bad)?.and_then(|t| clean(&t).ok().flatten());
                    if let Some(t) = target.and_then(|t| entries.get(&t).cloned()) {
                        entries.insert(path, t);
                    }
                    continue;
                }
                _ => Kind::Other,
            };
            let (mode, mtime) = (
                e.header().mode().unwrap_or(0o644) & 0o7777,
                e.header().mtime().unwrap_or(0),
            );
            let link = e.link_name().ok().flatten().map(|l| l.to_string_lossy().into_owned());
            let mut bytes = Vec::new();
            let mut digest = [0; 32];
            if kind == Kind::File {
                total += e.size();
                if total > MAX_CONTEXT {
                    return Err(ApiError::bad_request(
                        "the build context is over 4 GiB: leave what the build does not need out with .dockerignore",
                    ));
                }
                bytes.reserve_exact(e.size() as usize);
                let mut h = blake3::Hasher::new();
                let mut chunk = [0u8; 64 << 10];
                loop {
                    let n = e.read(&mut chunk).map_err(bad)?;
                    if n == 0 {
                        break;
                    }
                    h.update(&chunk[..n]);
                    bytes.extend_from_slice(&chunk[..n]);
                }
                digest = h.finalize().into();
            }
            entries.insert(
                path,
                Entry {
                    kind,
                    mode,
                    mtime,
                    link,
                    bytes,
                    digest,
                },
            );
        }
        // Directories a tar names only through their files.
        let implied: Vec<String> = entries
            .keys()
            .flat_map(|k| {
                let parts: Vec<&str> = k.split('/').collect();
                (1..parts.len()).map(move |n| parts[..n].join("/")).collect::<Vec<_>>()
            })
            .collect();
        for d in implied {
            entries.entry(d).or_insert_with(implied_dir);
        }
        Ok(Context { entries })
    }

    /// A file's bytes.
    pub fn read(&self, path: &str) -> Option<&[u8]> {
        let e = self.entries.get(path).filter(|e| e.kind == Kind::File)?;
        Some(&e.bytes)
    }

    /// `path` and everything below it, in order (the whole context for `""` or `.`).
    fn subtree(&self, path: &str) -> Vec<(&String, &Entry)> {
        if path.is_empty() || path == "." {
            return self.entries.iter().collect();
        }
        let prefix = format!("{path}/");
        self.entries
            .get_key_value(path)
            .into_iter()
            .chain(
                self.entries
                    .range::<String, _>(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(&prefix)),
            )
            .collect()
    }

    /// The direct children of directory `dir` (`""` or `.` for the root).
    pub fn children(&self, dir: &str) -> Vec<(&String, &Entry)> {
        let prefix = if dir.is_empty() || dir == "." {
            String::new()
        } else {
            format!("{dir}/")
        };
        self.entries
            .range::<String, _>(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| !k[prefix.len()..].contains('/'))
            .collect()
    }

    /// The cache's view of `path` (and everything below it): names, types, modes, symlink
    /// targets and file contents; not mtimes, not owners (COPY sets its own).
    pub fn hash(&self, path: &str) -> String {
        let mut h = Sha256::new();
        let base = if path == "." { "" } else { path };
        for (k, e) in self.subtree(base) {
            let rel = k.strip_prefix(base).unwrap_or(k);
            h.update((rel.len() as u64).to_le_bytes());
            h.update(rel.as_bytes());
            h.update([e.kind as u8]);
            h.update(e.mode.to_le_bytes());
            let link = e.link.as_deref().unwrap_or("");
            h.update((link.len() as u64).to_le_bytes());
            h.update(link.as_bytes());
            h.update(e.digest);
        }
        hex::encode(h.finalize())
    }

    /// Appends `path` to `tb` as `name` (a directory with everything below it), owned by
    /// `owner`, with `chmod` instead of the modes when given.
    pub fn append<W: Write>(
        &self,
        tb: &mut tar::Builder<W>,
        path: &str,
        name: &str,
        owner: (u32, u32),
        chmod: Option<u32>,
        contents_only: bool,
    ) -> io::Result<()> {
        let base = if path == "." { "" } else { path };
        for (k, e) in self.subtree(base) {
            let rel = k.strip_prefix(base).unwrap_or(k).trim_start_matches('/');
            if contents_only && rel.is_empty() {
                continue;
            }
            let target = match (name.is_empty(), rel.is_empty()) {
                (_, true) => name.to_string(),
                (true, false) => rel.to_string(),
                (false, false) => format!("{name}/{rel}"),
            };
            if target.is_empty() {
                continue;
            }
            let mut h = tar::Header::new_gnu();
            h.set_uid(owner.0 as u64);
            h.set_gid(owner.1 as u64);
            h.set_mtime(e.mtime);
            h.set_mode(chmod.unwrap_or(e.mode));
            match e.kind {
                Kind::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    tb.append_data(&mut h, format!("{target}/"), io::empty())?;
                }
                Kind::Symlink => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    tb.append_link(&mut h, &target, e.link.as_deref().unwrap_or(""))?;
                }
                Kind::File => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(e.bytes.len() as u64);
                    tb.append_data(&mut h, &target, &e.bytes[..])?;
                }
                Kind::Other => {}
            }
        }
        Ok(())
    }
}

/// Source globs over the context, with Go's rules (hako-build); symlinks are not followed.
impl hako_build::ignore::Tree for Context {
    fn resolve(&self, rel: &str, _follow_last: bool) -> io::Result<String> {
        if rel.is_empty() || self.entries.contains_key(rel) {
            Ok(rel.to_string())
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{rel}: not in the context"),
            ))
        }
    }

    fn exists(&self, rel: &str) -> bool {
        rel.is_empty() || self.entries.contains_key(rel)
    }

    fn is_dir(&self, rel: &str) -> bool {
        rel.is_empty() || self.entries.get(rel).is_some_and(|e| e.kind == Kind::Dir)
    }

    fn list(&self, rel: &str) -> io::Result<Vec<(String, bool)>> {
        let prefix_len = if rel.is_empty() { 0 } else { rel.len() + 1 };
        Ok(self
            .children(rel)
            .into_iter()
            .map(|(k, e)| (k[prefix_len..].to_string(), e.kind == Kind::Dir))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(files: &[(&str, &str)]) -> Context {
        let mut tb = tar::Builder::new(Vec::new());
        for (name, body) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(1);
            tb.append_data(&mut h, name, body.as_bytes()).unwrap();
        }
        Context::receive(&tb.into_inner().unwrap()[..]).unwrap()
    }

    #[test]
    fn indexes_hashes_and_globs() {
        let c = context(&[("a.txt", "one"), ("src/b.txt", "two"), ("src/deep/c.txt", "three")]);
        assert_eq!(c.read("src/b.txt"), Some(&b"two"[..]));
        assert!(
            hako_build::ignore::Tree::is_dir(&c, "src/deep"),
            "implied directories exist"
        );
        let g = hako_build::ignore::glob_in(&c, "src/*.txt").unwrap();
        assert_eq!(g, ["src/b.txt"]);
        assert_eq!(hako_build::ignore::glob_in(&c, ".").unwrap(), ["."]);
        assert!(hako_build::ignore::glob_in(&c, "nope/*").is_err());
        let same = context(&[("a.txt", "one"), ("src/b.txt", "two"), ("src/deep/c.txt", "three")]);
        assert_eq!(c.hash("src"), same.hash("src"));
        let changed = context(&[("a.txt", "one"), ("src/b.txt", "TWO"), ("src/deep/c.txt", "three")]);
        assert_ne!(c.hash("src"), changed.hash("src"));
        assert_eq!(c.hash("a.txt"), changed.hash("a.txt"));
        let kids: Vec<&String> = c.children("src").into_iter().map(|(k, _)| k).collect();
        assert_eq!(kids, ["src/b.txt", "src/deep"]);
        // A sibling sorting between a directory and its contents is no part of it.
        let c = context(&[("src-x/a", "1"), ("src/b", "2")]);
        assert_eq!(c.hash("src"), context(&[("src/b", "2")]).hash("src"));
    }

    #[test]
    fn refuses_paths_out_of_the_context() {
        let mut data = Vec::new();
        {
            let mut h = tar::Header::new_gnu();
            h.set_size(1);
            h.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../escape");
            h.set_cksum();
            let mut tb = tar::Builder::new(&mut data);
            tb.append(&h, &b"x"[..]).unwrap();
            tb.finish().unwrap();
        }
        assert!(Context::receive(&data[..]).is_err());
    }
}
