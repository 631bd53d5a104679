//! COPY and ADD. The sources (context files, heredocs, a stage's or image's files, ADD's
//! URLs and local archives) are gathered under local roots, hashed for the cache key, and
//! written as one tar whose names are the final paths; the tar goes into a container made
//! from the image so far through the same extraction `docker cp` uses (every path resolved
//! inside the container's root, so no symlink in the image or the context can lead out of
//! it), and the container's changes become the layer.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use serde_json::{json, Value};

use hako_build::dockerfile::{CopySpec, Dockerfile, Instruction};
use hako_image::service::Derive;

use super::stage::{materialize, Done, State};
use super::{cache, stage_index, Build};
use crate::error::ApiError;

/// One source of a COPY/ADD.
struct Source {
    origin: Origin,
    /// ADD of a local archive: its contents go to the destination.
    archive: bool,
}

enum Origin {
    /// A path in the build context (`.` its root).
    Context(String),
    /// A path under a local directory (heredocs, downloads, another stage's files).
    Dir { root: PathBuf, rel: PathBuf },
}

impl Source {
    fn dir(root: PathBuf, rel: PathBuf) -> Source {
        Source {
            origin: Origin::Dir { root, rel },
            archive: false,
        }
    }

    fn shown(&self) -> String {
        match &self.origin {
            Origin::Context(p) => p.clone(),
            Origin::Dir { rel, .. } => rel.display().to_string(),
        }
    }

    fn is_dir(&self, b: &Build) -> bool {
        match &self.origin {
            Origin::Context(p) => hako_build::ignore::Tree::is_dir(&*b.context, if p == "." { "" } else { p }),
            Origin::Dir { root, rel } => std::fs::symlink_metadata(root.join(rel)).is_ok_and(|m| m.is_dir()),
        }
    }

    fn file_name(&self) -> String {
        match &self.origin {
            Origin::Context(p) => p.rsplit('/').next().filter(|n| *n != ".").unwrap_or("").to_string(),
            Origin::Dir { rel, .. } => rel
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }
}

fn io_err(what: &str) -> impl FnOnce(io::Error) -> ApiError + '_ {
    move |e| ApiError::internal(format!("{what}: {e}"))
}

/// A context-relative source path, refused if it leaves the context.
fn inside_context(p: &str) -> Result<PathBuf, ApiError> {
    let mut out = PathBuf::new();
    for c in Path::new(p.trim_start_matches('/')).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return Err(ApiError::bad_request(format!(
                        "forbidden path outside the build context: {p}: COPY and ADD read only files in the context"
                    )));
                }
            }
            Component::Prefix(_) => {}
        }
    }
    Ok(out)
}

pub async fn step(
    b: &mut Build,
    st: &mut State,
    ins: &Instruction,
    spec: &CopySpec,
    add: bool,
    df: &Dockerfile,
    built: &[Option<Done>],
) -> Result<(), ApiError> {
    let what = if add { "ADD" } else { "COPY" };
    let dest = st.expand(&spec.dest)?;
    let chown = spec.chown.as_ref().map(|c| st.expand(c)).transpose()?;
    let chmod = match &spec.chmod {
        Some(m) => Some(
            u32::from_str_radix(&st.expand(m)?, 8)
                .map_err(|_| ApiError::bad_request(format!("{what} --chmod={m}: give an octal mode such as 755")))?,
        ),
        None => None,
    };
    let n = b.step;
    let work = b.scratch.join(format!("step-{n}"));
    std::fs::create_dir_all(&work).map_err(io_err("creating the step's scratch directory"))?;
    let mut sources: Vec<Source> = Vec::new();
    // Heredocs: files named by their delimiters.
    if !spec.heredocs.is_empty() {
        let root = work.join("heredocs");
        std::fs::create_dir_all(&root).map_err(io_err("writing a heredoc"))?;
        for h in &spec.heredocs {
            let body = if h.expand {
                st.expand_heredoc(&h.content)?
            } else {
                h.content.clone()
            };
            let rel = inside_context(&h.name)?;
            std::fs::write(root.join(&rel), body).map_err(io_err("writing a heredoc"))?;
            sources.push(Source::dir(root.clone(), rel));
        }
    }
    if spec.checksum.is_some()
        && !spec
            .sources
            .iter()
            .all(|s| s.starts_with("http://") || s.starts_with("https://"))
    {
        return Err(ApiError::bad_request(format!(
            "{what} --checksum: only the sources given by URL can be checked"
        )));
    }
    let from = spec.from.as_ref().map(|f| st.expand(f)).transpose()?;
    let mut from_container = None;
    for (k, raw) in spec.sources.iter().enumerate() {
        let src = st.expand(raw)?;
        if add && (src.starts_with("http://") || src.starts_with("https://")) {
            let root = work.join(format!("url-{k}"));
            let name = src
                .split(['?', '#'])
                .next()
                .and_then(|u| u.trim_end_matches('/').rsplit('/').next())
                .filter(|n| !n.is_empty() && !n.contains(':'))
                .unwrap_or("download")
                .to_string();
            std::fs::create_dir_all(&root).map_err(io_err("creating the download directory"))?;
            let checksum = spec.checksum.as_ref().map(|c| st.expand(c)).transpose()?;
            download(&src, &root.join(&name), checksum.as_deref()).await?;
            // Docker gives downloads mode 600.
            std::fs::set_permissions(root.join(&name), std::fs::Permissions::from_mode(0o600))
                .map_err(io_err("setting the download's mode"))?;
            sources.push(Source::dir(root, PathBuf::from(name)));
            continue;
        }
        match &from {
            Some(f) => {
                // Another stage's or image's files, copied out through a container view.
                let cid = match &from_container {
                    Some(c) => c,
                    None => from_container.insert(FromContainer::new(b, df, built, f)?),
                };
                let root = work.join(format!("from-{k}"));
                let rel = cid.fetch(b, &src, &root)?;
                sources.push(Source::dir(root, rel));
            }
            None => {
                let rel = inside_context(&src)?;
                let matched = hako_build::ignore::glob_in(&*b.context, &rel.to_string_lossy())
                    .map_err(|e| ApiError::bad_request(format!("{what} failed: {e}")))?;
                for m in matched {
                    let archive = add && b.context.read(&m).is_some_and(is_archive);
                    sources.push(Source {
                        origin: Origin::Context(m),
                        archive,
                    });
                }
            }
        }
    }
    drop(from_container);
    if sources.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{what} failed: no source files were specified"
        )));
    }
    // The key: the step as written after expansion, and the content of what it reads.
    let mut hashes = Vec::new();
    for s in &sources {
        let h = match &s.origin {
            Origin::Context(p) => b.context.hash(p),
            Origin::Dir { root, rel } => hako_build::ignore::content_hash(root, std::slice::from_ref(rel))
                .map_err(|e| ApiError::bad_request(format!("{what} failed: {}: {e}", rel.display())))?,
        };
        hashes.push(h);
    }
    let flags = format!("{dest} {chown:?} {chmod:?} {}", spec.link);
    let mut parts: Vec<&str> = st.pending.iter().map(String::as_str).collect();
    parts.push(&ins.text);
    parts.push(&flags);
    parts.extend(hashes.iter().map(String::as_str));
    let key = cache::key(&st.parent_id(), &parts);
    if !b.opts.no_cache {
        if let Some(hit) = cache::lookup(&b.containers.images, &key) {
            b.say(" ---> Using cache\n").await;
            return st.adopt(hit, b);
        }
    }
    // What it copied is part of what it did: the history names its content.
    let mut content: Vec<&str> = vec![&flags];
    content.extend(hashes.iter().map(String::as_str));
    let created_by = format!(
        "/bin/sh -c #(nop) {} content:{}",
        ins.text.lines().next().unwrap_or_default(),
        cache::key("content", &content)
    );
    if st.image.is_some() && !st.pending.is_empty() {
        materialize(b, st)?;
    }
    if super::stage::restore(b, st, &key, &created_by).await? {
        return Ok(());
    }
    let abs_dest = if dest.starts_with('/') {
        dest.clone()
    } else {
        let wd = st.config.get("WorkingDir").and_then(Value::as_str).unwrap_or("/");
        format!("{}/{dest}", wd.trim_end_matches('/'))
    };
    let img = match st.image.clone() {
        Some(parent) => {
            into_container(
                b,
                st,
                &parent,
                &sources,
                &abs_dest,
                chown.as_deref(),
                chmod,
                &work,
                &created_by,
            )
            .await?
        }
        None => into_scratch(b, st, &sources, &abs_dest, chown.as_deref(), chmod, &work, &created_by)?,
    };
    cache::store(&b.containers.images, &key, &img);
    st.image = Some(img);
    st.pending.clear();
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// Where each source goes: Docker's rules. A destination ending in `/`, several sources, or
/// an existing directory take sources by their base names; a directory source gives its
/// contents; a single file to another path is renamed.
fn target_names(b: &Build, sources: &[Source], dest: &str, dest_is_dir: bool) -> Vec<(usize, String)> {
    let to_dir = dest.ends_with('/') || sources.len() > 1 || dest_is_dir;
    let base = dest.trim_end_matches('/').trim_start_matches('/').to_string();
    sources
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let name = if s.is_dir(b) || s.archive {
                base.clone()
            } else if to_dir {
                let file = s.file_name();
                if base.is_empty() {
                    file
                } else {
                    format!("{base}/{file}")
                }
            } else {
                base.clone()
            };
            (i, name)
        })
        .collect()
}

/// The tar of every source at its final path, owned by `owner`, with `chmod` if given.
fn write_tar(
    b: &Build,
    sources: &[Source],
    names: &[(usize, String)],
    owner: (u32, u32),
    chmod: Option<u32>,
    out: &Path,
) -> Result<(), ApiError> {
    let f = File::create(out).map_err(io_err("writing the step's archive"))?;
    let mut tb = tar::Builder::new(io::BufWriter::new(f));
    for (i, name) in names {
        let s = &sources[*i];
        if s.archive {
            continue;
        }
        let is_dir = s.is_dir(b);
        match &s.origin {
            // A directory gives its contents, not itself.
            Origin::Context(p) => b.context.append(&mut tb, p, name, owner, chmod, is_dir),
            Origin::Dir { root, rel } if is_dir => add_children(&mut tb, &root.join(rel), name, owner, chmod),
            Origin::Dir { root, rel } => add_entry(&mut tb, &root.join(rel), name, owner, chmod),
        }
        .map_err(|e| ApiError::bad_request(format!("copying {}: {e}", s.shown())))?;
    }
    let w = tb.into_inner().map_err(io_err("writing the step's archive"))?;
    w.into_inner()
        .map_err(|e| ApiError::internal(format!("writing the step's archive: {e}")))?
        .flush()
        .map_err(io_err("writing the step's archive"))
}

fn add_children<W: Write>(
    tb: &mut tar::Builder<W>,
    dir: &Path,
    name: &str,
    owner: (u32, u32),
    chmod: Option<u32>,
) -> io::Result<()> {
    let mut kids: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    kids.sort_by_key(|e| e.file_name());
    for k in kids {
        let child = k.file_name().to_string_lossy().into_owned();
        let n = if name.is_empty() {
            child
        } else {
            format!("{name}/{child}")
        };
        add_entry(tb, &k.path(), &n, owner, chmod)?;
    }
    Ok(())
}

fn add_entry<W: Write>(
    tb: &mut tar::Builder<W>,
    path: &Path,
    name: &str,
    owner: (u32, u32),
    chmod: Option<u32>,
) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    let mut h = tar::Header::new_gnu();
    h.set_uid(owner.0 as u64);
    h.set_gid(owner.1 as u64);
    h.set_mtime(meta.mtime().max(0) as u64);
    h.set_mode(chmod.unwrap_or(meta.mode() & 0o7777));
    let ft = meta.file_type();
    if ft.is_dir() {
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(0);
        tb.append_data(&mut h, format!("{name}/"), io::empty())?;
        add_children(tb, path, name, owner, chmod)
    } else if ft.is_symlink() {
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        tb.append_link(&mut h, name, std::fs::read_link(path)?)
    } else if ft.is_file() {
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(meta.len());
        tb.append_data(&mut h, name, File::open(path)?)
    } else {
        // Devices, fifos and sockets in a context are not copied (as Docker).
        Ok(())
    }
}

/// Whether ADD unpacks these bytes: a tar, plain or compressed.
fn is_archive(bytes: &[u8]) -> bool {
    let mut r = io::BufReader::new(bytes);
    let Ok(comp) = hako_image::compression::Compression::sniff(&mut r) else {
        return false;
    };
    let Ok(mut dec) = comp.decoder(r) else { return false };
    let mut head = [0u8; 512];
    let mut got = 0;
    while got < head.len() {
        match dec.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(_) => return false,
        }
    }
    got == 512 && &head[257..262] == b"ustar"
}

/// The bytes of an archive source (only context files are unpacked by ADD).
fn archive_bytes<'a>(b: &'a Build, s: &Source) -> Result<&'a [u8], ApiError> {
    match &s.origin {
        Origin::Context(p) => b
            .context
            .read(p)
            .ok_or_else(|| ApiError::internal(format!("{p} left the context"))),
        Origin::Dir { .. } => Err(ApiError::internal("only context files are unpacked by ADD")),
    }
}

/// `--chown` as numbers: numeric parts directly, names from the image's passwd and group.
fn owner_of(b: &Build, container: Option<&str>, chown: Option<&str>) -> Result<(u32, u32), ApiError> {
    let Some(spec) = chown.filter(|s| !s.is_empty()) else {
        return Ok((0, 0));
    };
    let (u, g) = spec.split_once(':').unwrap_or((spec, ""));
    if let (Ok(uid), Ok(gid)) = (
        u.parse::<u32>(),
        if g.is_empty() {
            u.parse::<u32>()
        } else {
            g.parse::<u32>()
        },
    ) {
        return Ok((uid, gid));
    }
    let Some(c) = container else {
        return Err(ApiError::bad_request(format!(
            "--chown={spec}: a stage FROM scratch has no /etc/passwd to look names up in: use numeric IDs"
        )));
    };
    let user = b.containers.user_of(c, spec)?;
    Ok((user.uid, user.gid))
}

#[allow(clippy::too_many_arguments)]
async fn into_container(
    b: &Build,
    st: &State,
    parent: &hako_image::ImageRecord,
    sources: &[Source],
    dest: &str,
    chown: Option<&str>,
    chmod: Option<u32>,
    work: &Path,
    created_by: &str,
) -> Result<hako_image::ImageRecord, ApiError> {
    let c = TempContainer::create(b, &parent.id.to_string())?;
    let dest_is_dir = b
        .containers
        .stat_path(&c.id, dest)
        .map(|s| s.mode & (1 << 31) != 0)
        .unwrap_or(false);
    let names = target_names(b, sources, dest, dest_is_dir);
    let owner = owner_of(b, Some(&c.id), chown)?;
    let tar_path = work.join("layer.tar");
    write_tar(b, sources, &names, owner, chmod, &tar_path)?;
    let tarf = File::open(&tar_path).map_err(io_err("reading the step's archive"))?;
    b.containers.extract(&c.id, "/", tarf, false, false)?;
    for (i, name) in &names {
        let s = &sources[*i];
        if s.archive {
            // An empty dir entry first: the extraction point must exist.
            let dir = work.join(format!("mkdir-{i}.tar"));
            let mut tb = tar::Builder::new(File::create(&dir).map_err(io_err("writing the step's archive"))?);
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
            if !name.is_empty() {
                tb.append_data(&mut h, format!("{name}/"), io::empty())
                    .map_err(io_err("writing the step's archive"))?;
            }
            tb.finish().map_err(io_err("writing the step's archive"))?;
            drop(tb);
            b.containers
                .extract(&c.id, "/", File::open(&dir).map_err(io_err("reading"))?, false, false)?;
            b.containers
                .extract(&c.id, &format!("/{name}"), archive_bytes(b, s)?, false, false)?;
        }
    }
    let upper = b.containers.container_dir(&c.id).join("rootfs/upper");
    let img = b.containers.images.derive(
        Some(parent),
        &Derive {
            config: Value::Object(st.config.clone()),
            upper: Some(&upper),
            adopt: true,
            layer: None,
            created_by,
            comment: "",
            author: "",
        },
    )?;
    c.remove().await;
    Ok(img)
}

/// FROM scratch: nothing to resolve against, the files become the first layer directly.
#[allow(clippy::too_many_arguments)]
fn into_scratch(
    b: &Build,
    st: &State,
    sources: &[Source],
    dest: &str,
    chown: Option<&str>,
    chmod: Option<u32>,
    work: &Path,
    created_by: &str,
) -> Result<hako_image::ImageRecord, ApiError> {
    let names = target_names(b, sources, dest, false);
    let owner = owner_of(b, None, chown)?;
    let tar_path = work.join("layer.tar");
    write_tar(b, sources, &names, owner, chmod, &tar_path)?;
    let staging = work.join("staging");
    super::unpack_into(
        File::open(&tar_path).map_err(io_err("reading the step's archive"))?,
        &staging,
    )?;
    for (i, name) in &names {
        let s = &sources[*i];
        if s.archive {
            super::unpack_into(archive_bytes(b, s)?, &staging.join(name))?;
        }
    }
    Ok(b.containers.images.derive(
        None,
        &Derive {
            config: Value::Object(st.config.clone()),
            upper: Some(&staging),
            adopt: true,
            layer: None,
            created_by,
            comment: "",
            author: "",
        },
    )?)
}

/// A container that is never started: a view of an image's files to write into or read from.
struct TempContainer {
    containers: std::sync::Arc<crate::containers::Containers>,
    id: String,
    /// Still to be removed (by `remove`, or on drop).
    armed: bool,
}

impl TempContainer {
    fn create(b: &Build, image: &str) -> Result<TempContainer, ApiError> {
        let body = json!({"Image": image, "Entrypoint": ["/nonexistent"], "Cmd": [], "Labels": {}, "HostConfig": {"NetworkMode": "none"}});
        let (id, _) = b.containers.create(&body, None)?;
        Ok(TempContainer {
            containers: b.containers.clone(),
            id,
            armed: true,
        })
    }

    async fn remove(mut self) {
        self.armed = false;
        let _ = self.containers.remove(&self.id, true, true).await;
    }
}

impl Drop for TempContainer {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (c, id) = (self.containers.clone(), self.id.clone());
        tokio::spawn(async move {
            let _ = c.remove(&id, true, true).await;
        });
    }
}

/// The files of another stage or an image, for `COPY --from`.
struct FromContainer(TempContainer);

impl FromContainer {
    fn new(b: &Build, df: &Dockerfile, built: &[Option<Done>], from: &str) -> Result<FromContainer, ApiError> {
        let image = match stage_index(df, from) {
            Some(j) => built
                .get(j)
                .and_then(|d| d.as_ref())
                .map(|d| d.image.clone())
                .ok_or_else(|| {
                    ApiError::bad_request(format!("COPY --from={from}: that stage is not built before this one"))
                })?,
            None => b
                .containers
                .images
                .resolve(from)
                .map_err(|_| {
                    ApiError::bad_request(format!(
                        "COPY --from={from}: no stage or image of that name (stages are named with FROM ... AS name)"
                    ))
                })?
                .id
                .to_string(),
        };
        Ok(FromContainer(TempContainer::create(b, &image)?))
    }

    /// Copies `path` of the container out under `root`; returns its name there.
    fn fetch(&self, b: &Build, path: &str, root: &Path) -> Result<PathBuf, ApiError> {
        let abs = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        let (_, archive) = b
            .containers
            .archive(&self.0.id, &abs)
            .map_err(|e| ApiError::bad_request(format!("COPY --from: {abs}: {}", e.message)))?;
        let tar_path = root.with_extension("tar");
        std::fs::create_dir_all(root).map_err(io_err("creating the copy's directory"))?;
        let f = File::create(&tar_path).map_err(io_err("writing the copy"))?;
        archive.write(f).map_err(io_err("reading the other stage's files"))?;
        super::unpack_into(File::open(&tar_path).map_err(io_err("reading the copy"))?, root)?;
        let base = Path::new(&abs).file_name().map(PathBuf::from).unwrap_or_default();
        Ok(base)
    }
}

/// ADD of a URL: the body, to `dest` (the engine's fetch: redirects followed, the system's
/// CA store for HTTPS).
/// With `checksum` (`ADD --checksum=sha256:HEX`), a body with another digest fails the step.
async fn download(url: &str, dest: &Path, checksum: Option<&str>) -> Result<(), ApiError> {
    use http_body_util::BodyExt;
    use sha2::{Digest as _, Sha256};
    let want = match checksum {
        None => None,
        Some(c) => Some(
            c.strip_prefix("sha256:")
                .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| ApiError::bad_request(format!("ADD --checksum={c}: give sha256:<64 hex digits>")))?
                .to_ascii_lowercase(),
        ),
    };
    let mut body = crate::client::fetch_url(url, "ADD").await?;
    let mut f = File::create(dest).map_err(io_err("writing the download"))?;
    let mut h = Sha256::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_request(format!("ADD {url}: {e}")))?;
        if let Some(d) = frame.data_ref() {
            h.update(d);
            f.write_all(d).map_err(io_err("writing the download"))?;
        }
    }
    let got = hex::encode(h.finalize());
    if let Some(want) = want {
        if got != want {
            return Err(ApiError::bad_request(format!(
                "ADD {url}: digest mismatch: got sha256:{got}, --checksum wants sha256:{want}"
            )));
        }
    }
    Ok(())
}
