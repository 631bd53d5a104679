//! `cp` and `export`: files in and out of containers through the daemon's archive API, with
//! the docker CLI's rules for paths (moby's `archive/copy.go`): a trailing `/.` copies a
//! directory's contents, a missing destination takes the source's place under its own name.

use std::io::{self, IsTerminal, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail};
use base64::Engine;
use clap::Args;
use futures_util::TryStreamExt;
use http::Method;
use http_body_util::BodyExt;
use rustix::fs::{Mode, OFlags};
use serde_json::Value;

use hako_api::client::{empty, reader_body, ReqBody};
use hako_api::{Client, ClientError};
use hako_image::apply::{apply_tar, ApplyError, ApplyOptions, Owner};

use super::system::urlencode;
use crate::output::human_size;

#[derive(Args)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short, long)]
    archive: bool,
    /// Always follow symbol link in SRC_PATH
    #[arg(short = 'L', long)]
    follow_link: bool,
    /// Suppress progress output during copy. Progress output is automatically suppressed if
    /// no terminal is attached
    #[arg(short, long)]
    quiet: bool,
    /// CONTAINER:SRC_PATH, a local path, or - (a tar on stdin)
    source: String,
    /// CONTAINER:DEST_PATH, a local path, or - (a tar on stdout)
    destination: String,
}

#[derive(Args)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    output: Option<String>,
    container: String,
}

pub async fn export(c: &Client, a: ExportArgs) -> anyhow::Result<()> {
    if a.output.is_none() && io::stdout().is_terminal() {
        bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    let resp = c
        .request(
            Method::GET,
            &format!("/containers/{}/export", a.container),
            empty(),
            None,
        )
        .await?;
    super::images::write_output(resp, a.output.as_deref()).await
}

pub async fn cp(c: &Client, a: CpArgs) -> anyhow::Result<()> {
    if a.source.is_empty() {
        bail!("source can not be empty");
    }
    if a.destination.is_empty() {
        bail!("destination can not be empty");
    }
    match (split_cp_arg(&a.source), split_cp_arg(&a.destination)) {
        ((Some(ctr), src), (None, dst)) => copy_from(c, ctr, src, dst, &a).await,
        ((None, src), (Some(ctr), dst)) => copy_to(c, ctr, src, dst, &a).await,
        ((Some(_), _), (Some(_), _)) => bail!("copying between containers is not supported"),
        ((None, _), (None, _)) => bail!("must specify at least one container source"),
    }
}

/// `CONTAINER:PATH`, unless it is an absolute path or starts with `.` (`./a:b` is local).
fn split_cp_arg(arg: &str) -> (Option<&str>, &str) {
    if arg.starts_with('/') {
        return (None, arg);
    }
    match arg.split_once(':') {
        Some((ctr, path)) if !ctr.is_empty() && !ctr.starts_with('.') => (Some(ctr), path),
        _ => (None, arg),
    }
}

/// Progress goes to a terminal only, as the docker CLI's does.
fn report(a: &CpArgs, bytes: u64, to: &str) {
    if !a.quiet && io::stderr().is_terminal() {
        eprintln!("Successfully copied {} to {to}", human_size(bytes as f64));
    }
}

async fn copy_from(c: &Client, ctr: &str, src: &str, dst: &str, a: &CpArgs) -> anyhow::Result<()> {
    let dst = if dst == "-" {
        dst.to_string()
    } else {
        resolve_local_path(dst)?
    };
    if dst != "-" {
        validate_output_path(&dst)?;
    }
    let mut src = src.to_string();
    let mut rebase_name = None;
    if a.follow_link {
        if let Ok(st) = stat(c, ctr, &src).await {
            if st.is_symlink() {
                let mut target = st.link_target.clone();
                if !target.starts_with('/') {
                    target = join(&split_dir_entry(&src).0, &target);
                }
                let (p, r) = rebase_name_for(&src, &target);
                src = p;
                rebase_name = r;
            }
        }
    }
    let resp = c.request(Method::GET, &archive_path(ctr, &src), empty(), None).await?;
    if dst == "-" {
        return super::images::write_output(resp, None).await;
    }
    let st = Stat::from_headers(resp.headers())?;
    let src_info = CopyInfo {
        path: src,
        exists: true,
        is_dir: st.is_dir(),
        rebase_name,
    };
    let dst_info = destination_info(&dst)?;
    let (dst_dir, rename) = prepare(&src_info, &dst_info)?;
    let root = rustix::fs::open(
        dst_dir.as_str(),
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| go_error("open", &dst_dir, &e.into()))?;
    let opts = ApplyOptions {
        base: Default::default(),
        in_root: false,
        whiteouts: false,
        no_overwrite_dir_non_dir: true,
        // Files copied out belong to whoever copies them, as with the docker CLI.
        owner: Owner::Process,
        base_metadata: false,
        rebase: rename.map(|(old, new)| (if old == "/" { String::new() } else { old }, new)),
    };
    let frames = http_body_util::BodyStream::new(resp.into_body());
    let body = TryStreamExt::map_err(frames, |e| {
        io::Error::other(format!("the daemon broke off the archive: {e}"))
    })
    .try_filter_map(|f| async move { Ok(f.into_data().ok()) });
    let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(Box::pin(body)));
    let count = Arc::new(AtomicU64::new(0));
    let counted = Counted {
        inner: reader,
        n: count.clone(),
    };
    tokio::task::spawn_blocking(move || apply_tar(counted, root, opts))
        .await?
        .map_err(|e| match e {
            ApplyError::Refused { entry, reason } => anyhow!("{reason}: {entry}"),
            other => anyhow!(other),
        })?;
    report(a, count.load(Ordering::Relaxed), &dst);
    Ok(())
}

async fn copy_to(c: &Client, ctr: &str, src: &str, dst: &str, a: &CpArgs) -> anyhow::Result<()> {
    let src = if src == "-" {
        src.to_string()
    } else {
        resolve_local_path(src)?
    };
    let mut dst_info = CopyInfo {
        path: dst.to_string(),
        ..Default::default()
    };
    let mut st = stat(c, ctr, dst).await;
    if let Ok(s) = &st {
        if s.is_symlink() {
            let mut target = s.link_target.clone();
            if !target.starts_with('/') {
                target = join(&split_dir_entry(dst).0, &target);
            }
            st = stat(c, ctr, &target).await;
            dst_info.path = target;
        }
    }
    // Any other failure (the path or its container missing): the extraction says what
    // is wrong, or succeeds when only the last component is missing.
    if let Ok(s) = &st {
        if let Some(why) = s.unfit() {
            bail!("destination \"{ctr}:{dst}\" must be a directory or a regular file: {why}");
        }
        dst_info.exists = true;
        dst_info.is_dir = s.is_dir();
    }
    let count = Arc::new(AtomicU64::new(0));
    let (dir, body): (String, ReqBody) = if src == "-" {
        if !dst_info.is_dir {
            bail!("destination \"{ctr}:{dst}\" must be a directory");
        }
        (dst_info.path.clone(), reader_body(tokio::io::stdin()))
    } else {
        let src_info = source_info(&src, a.follow_link)?;
        let (dir, rename) = prepare(&src_info, &dst_info)?;
        let name = match rename {
            Some((_, new)) => new,
            None => root_name(&src_info),
        };
        let entry = rustix::fs::open(
            src_info.path.as_str(),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| go_error("lstat", &src_info.path, &e.into()))?;
        let (w, rx) = hako_api::bridge::writer_channel();
        let body =
            http_body_util::StreamBody::new(hako_api::bridge::receiver_stream(rx).map_ok(hyper::body::Frame::data));
        let mut w = Counted {
            inner: w,
            n: count.clone(),
        };
        tokio::task::spawn_blocking(move || {
            let r = hako_image::tree::write_tar(&entry, name.as_bytes(), &mut w).map(drop);
            match r {
                Ok(()) => {
                    let _ = w.flush();
                }
                Err(e) => w.inner.fail(e),
            }
        });
        (dir, BodyExt::boxed(body))
    };
    let path = format!(
        "{}&noOverwriteDirNonDir=true&copyUIDGID={}",
        archive_path(ctr, &dir),
        a.archive
    );
    c.request(Method::PUT, &path, body, Some("application/x-tar")).await?;
    report(a, count.load(Ordering::Relaxed), &format!("{ctr}:{}", dst_info.path));
    Ok(())
}

fn archive_path(ctr: &str, path: &str) -> String {
    format!("/containers/{ctr}/archive?path={}", urlencode(path))
}

/// The stat the daemon sends in `X-Docker-Container-Path-Stat`; `mode` is a Go FileMode.
#[derive(Debug, Default)]
struct Stat {
    mode: u32,
    link_target: String,
}

const GO_DIR: u32 = 1 << 31;
const GO_SYMLINK: u32 = 1 << 27;
const GO_DEVICE: u32 = 1 << 26;
const GO_IRREGULAR: u32 = 1 << 19;

impl Stat {
    fn from_headers(h: &http::HeaderMap) -> anyhow::Result<Stat> {
        let raw = h
            .get("X-Docker-Container-Path-Stat")
            .ok_or_else(|| anyhow!("the daemon sent no X-Docker-Container-Path-Stat header"))?;
        let json = base64::engine::general_purpose::STANDARD.decode(raw.as_bytes())?;
        let v: Value = serde_json::from_slice(&json)?;
        Ok(Stat {
            mode: v["mode"].as_u64().unwrap_or(0) as u32,
            link_target: v["linkTarget"].as_str().unwrap_or("").to_string(),
        })
    }
    fn is_dir(&self) -> bool {
        self.mode & GO_DIR != 0
    }
    fn is_symlink(&self) -> bool {
        self.mode & GO_SYMLINK != 0
    }
    /// Why this cannot be a copy's destination (ValidateOutputPathFileMode).
    fn unfit(&self) -> Option<&'static str> {
        if self.mode & GO_DEVICE != 0 {
            Some("got a device")
        } else if self.mode & GO_IRREGULAR != 0 {
            Some("got an irregular file")
        } else {
            None
        }
    }
}

async fn stat(c: &Client, ctr: &str, path: &str) -> Result<Stat, anyhow::Error> {
    let resp: Result<_, ClientError> = c.request(Method::HEAD, &archive_path(ctr, path), empty(), None).await;
    Stat::from_headers(resp?.headers())
}

/// Docker's CopyInfo: a copy's source or destination.
#[derive(Debug, Default)]
struct CopyInfo {
    path: String,
    exists: bool,
    is_dir: bool,
    rebase_name: Option<String>,
}

/// The name the source has in the archive before any rename.
fn root_name(src: &CopyInfo) -> String {
    src.rebase_name.clone().unwrap_or_else(|| split_dir_entry(&src.path).1)
}

/// PrepareArchiveCopy: the directory to extract into, and the rename of the archive's root
/// (old name, new name) the destination asks for.
fn prepare(src: &CopyInfo, dst: &CopyInfo) -> anyhow::Result<(String, Option<(String, String)>)> {
    let (dst_dir, dst_base) = split_dir_entry(&dst.path);
    let rename = Some((root_name(src), dst_base));
    if dst.exists && dst.is_dir {
        // Extracted into the directory as it is.
        Ok((dst.path.clone(), None))
    } else if dst.exists && src.is_dir {
        bail!("cannot copy directory")
    } else if dst.exists || src.is_dir {
        Ok((dst_dir, rename))
    } else if asserts_directory(&dst.path) {
        // A file cannot become a directory that does not exist.
        bail!("no such directory")
    } else {
        Ok((dst_dir, rename))
    }
}

/// CopyInfoSourcePath: symlinks before the last component followed (all with `follow`).
fn source_info(path: &str, follow: bool) -> anyhow::Result<CopyInfo> {
    let (resolved, rebase_name) = if follow {
        let r = std::fs::canonicalize(path).map_err(|e| go_error("lstat", path, &e))?;
        rebase_name_for(path, &r.display().to_string())
    } else {
        let cut = path.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (dir, base) = path.split_at(cut);
        let dir = if dir.is_empty() { "." } else { dir };
        let rdir = std::fs::canonicalize(dir).map_err(|e| go_error("lstat", dir, &e))?;
        let rdir = rdir.display().to_string();
        let resolved = format!("{}/{base}", rdir.trim_end_matches('/'));
        let rebase = (path.ends_with('/') && go_base(path) != go_base(&resolved)).then(|| go_base(path));
        (resolved, rebase)
    };
    let m = std::fs::symlink_metadata(&resolved).map_err(|e| go_error("lstat", &resolved, &e))?;
    Ok(CopyInfo {
        path: resolved,
        exists: true,
        is_dir: m.is_dir(),
        rebase_name,
    })
}

/// CopyInfoDestinationPath: a local destination with its symlinks followed (it may be
/// missing; its parent must be a directory).
fn destination_info(path: &str) -> anyhow::Result<CopyInfo> {
    let mut path = path.to_string();
    let mut st = std::fs::symlink_metadata(&path);
    let mut n = 0;
    while let Ok(m) = &st {
        if !m.file_type().is_symlink() {
            return Ok(CopyInfo {
                path,
                exists: true,
                is_dir: m.is_dir(),
                rebase_name: None,
            });
        }
        n += 1;
        if n > 10 {
            bail!("too many symlinks in {path}");
        }
        let target = std::fs::read_link(&path).map_err(|e| go_error("readlink", &path, &e))?;
        let target = target.display().to_string();
        path = if target.starts_with('/') {
            target
        } else {
            join(&split_dir_entry(&path).0, &target)
        };
        st = std::fs::symlink_metadata(&path);
    }
    match st {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = split_dir_entry(&path).0;
            let m = std::fs::metadata(&parent).map_err(|e| go_error("stat", &parent, &e))?;
            if !m.is_dir() {
                bail!("not a directory");
            }
            Ok(CopyInfo {
                path,
                ..Default::default()
            })
        }
        Err(e) => Err(go_error("lstat", &path, &e)),
        Ok(_) => unreachable!("the loop returns for every existing path"),
    }
}

/// ValidateOutputPath: the parent must exist; an existing path must be a directory or a
/// regular file.
fn validate_output_path(path: &str) -> anyhow::Result<()> {
    let dir = go_dir(&clean(path));
    if dir != "." && !Path::new(&dir).exists() {
        bail!("invalid output path: directory {dir:?} does not exist");
    }
    if let Ok(m) = std::fs::metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        let t = m.file_type();
        if t.is_block_device() || t.is_char_device() {
            bail!("invalid output path: {path:?} must be a directory or a regular file: got a device");
        }
        if !t.is_dir() && !t.is_file() {
            bail!("invalid output path: {path:?} must be a directory or a regular file: got an irregular file");
        }
    }
    Ok(())
}

/// GetRebaseName: `resolved` keeps `path`'s trailing `/` or `/.`; the archive's root is
/// renamed back to `path`'s name when the symlink evaluation changed it.
fn rebase_name_for(path: &str, resolved: &str) -> (String, Option<String>) {
    let mut resolved = resolved.to_string();
    if go_base(path) == "." && go_base(&resolved) != "." {
        resolved.push_str("/.");
    }
    if path.ends_with('/') && !resolved.ends_with('/') {
        resolved.push('/');
    }
    let rebase = (go_base(path) != go_base(&resolved)).then(|| go_base(path));
    (resolved, rebase)
}

/// An absolute local path that keeps the trailing `/` or `/.` of `p`.
fn resolve_local_path(p: &str) -> anyhow::Result<String> {
    let abs = if p.starts_with('/') {
        clean(p)
    } else {
        clean(&format!("{}/{p}", std::env::current_dir()?.display()))
    };
    Ok(preserve_trailing(abs, p))
}

/// PreserveTrailingDotOrSeparator.
fn preserve_trailing(mut cleaned: String, original: &str) -> String {
    if go_base(&cleaned) != "." && go_base(original) == "." {
        if !cleaned.ends_with('/') {
            cleaned.push('/');
        }
        cleaned.push('.');
    }
    if !cleaned.ends_with('/') && original.ends_with('/') {
        cleaned.push('/');
    }
    cleaned
}

fn asserts_directory(p: &str) -> bool {
    p.ends_with('/') || go_base(p) == "."
}

/// SplitPathDirEntry: the parent and the name, a trailing `/.` kept as the name `.`.
fn split_dir_entry(p: &str) -> (String, String) {
    let mut c = clean(p);
    if go_base(p) == "." {
        c.push_str("/.");
    }
    (go_dir(&c), go_base(&c))
}

/// Go's `filepath.Clean`.
fn clean(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            x => out.push(x),
        }
    }
    let j = out.join("/");
    if rooted {
        format!("/{j}")
    } else if j.is_empty() {
        ".".into()
    } else {
        j
    }
}

/// Go's `filepath.Base`.
fn go_base(p: &str) -> String {
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return if p.is_empty() { ".".into() } else { "/".into() };
    }
    t.rsplit('/').next().unwrap_or(t).to_string()
}

/// Go's `filepath.Dir`.
fn go_dir(p: &str) -> String {
    match p.rfind('/') {
        Some(i) => clean(&p[..=i]),
        None => ".".into(),
    }
}

fn join(a: &str, b: &str) -> String {
    clean(&format!("{a}/{b}"))
}

/// An error as Go words it: `lstat /x: no such file or directory`.
fn go_error(op: &str, path: &str, e: &io::Error) -> anyhow::Error {
    let m = e.to_string();
    let m = m.split(" (os error").next().unwrap_or(&m);
    let mut c = m.chars();
    let m = match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect::<String>(),
        None => String::new(),
    };
    anyhow!("{op} {path}: {m}")
}

/// Counts the bytes of the archive that go through (for the progress line).
struct Counted<T> {
    inner: T,
    n: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n.fetch_add(k as u64, Ordering::Relaxed);
        Ok(k)
    }
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let k = self.inner.write(buf)?;
        self.n.fetch_add(k as u64, Ordering::Relaxed);
        Ok(k)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_split_as_the_docker_cli_splits_them() {
        assert_eq!(split_cp_arg("c1:/etc"), (Some("c1"), "/etc"));
        assert_eq!(split_cp_arg("/abs:x"), (None, "/abs:x"));
        assert_eq!(split_cp_arg("./a:b"), (None, "./a:b"));
        assert_eq!(split_cp_arg("plain"), (None, "plain"));
        assert_eq!(split_cp_arg("-"), (None, "-"));
    }

    #[test]
    fn go_path_rules() {
        assert_eq!(clean("/a/./b/../c/"), "/a/c");
        assert_eq!(clean("../x/.."), "..");
        assert_eq!(split_dir_entry("/tmp/d/."), ("/tmp/d".into(), ".".into()));
        assert_eq!(split_dir_entry("/tmp/d/"), ("/tmp".into(), "d".into()));
        assert_eq!(split_dir_entry("/"), ("/".into(), "/".into()));
        assert_eq!(preserve_trailing("/tmp/d".into(), "d/."), "/tmp/d/.");
        assert_eq!(preserve_trailing("/tmp/d".into(), "d/"), "/tmp/d/");
        assert_eq!(
            rebase_name_for("/link/", "/real/dir"),
            ("/real/dir/".into(), Some("link".into()))
        );
    }

    #[test]
    fn copies_are_prepared_as_docker_prepares_them() {
        let info = |path: &str, exists, is_dir| CopyInfo {
            path: path.into(),
            exists,
            is_dir,
            rebase_name: None,
        };
        // Into an existing directory: as it is.
        assert_eq!(
            prepare(&info("/s/d", true, true), &info("/t", true, true)).unwrap(),
            ("/t".into(), None)
        );
        // A directory to a new name: extracted into the parent, renamed.
        assert_eq!(
            prepare(&info("/s/d", true, true), &info("/t/new", false, false)).unwrap(),
            ("/t".into(), Some(("d".into(), "new".into())))
        );
        // Contents of a directory (`/.`) to a new name.
        assert_eq!(
            prepare(&info("/s/d/.", true, true), &info("/t/new", false, false)).unwrap(),
            ("/t".into(), Some((".".into(), "new".into())))
        );
        assert!(prepare(&info("/s/d", true, true), &info("/t/f", true, false)).is_err());
        assert!(prepare(&info("/s/f", true, false), &info("/t/nodir/", false, false)).is_err());
    }
}
