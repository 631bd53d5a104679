//! `load` and `save`: docker-archive (as `docker save` and `podman save` write it) and OCI
//! image layouts.
//!
//! `save` writes what Docker 25+ writes: an OCI layout (`oci-layout`, `index.json`,
//! `blobs/sha256/`) that also carries Docker's `manifest.json` and `repositories`, with
//! uncompressed layers, so both `docker load` / `podman load` and OCI tools read it. With
//! `oci-archive` it writes a plain OCI layout with the blobs as stored.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use serde_json::{json, Value};

use hako_store::{Digest, Lease};

use crate::apply::clean_entry_path;
use crate::compression::{self, Compression};
use crate::import::host_arch;
use crate::model::{chain_ids, LayerRecord, OCI_INDEX, OCI_MANIFEST};
use crate::reference::Reference;
use crate::service::{ImageError, ImageService};

/// Small metadata files are kept in memory; everything else goes to the content store.
const SMALL_FILE: u64 = 8 << 20;
const SMALL_TOTAL: u64 = 64 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFormat {
    DockerArchive,
    OciArchive,
}

/// The files of an archive being loaded.
#[derive(Default)]
struct Spool {
    small: HashMap<PathBuf, Vec<u8>>,
    blobs: HashMap<PathBuf, Digest>,
    links: HashMap<PathBuf, PathBuf>,
}

impl Spool {
    fn resolve(&self, p: &Path) -> PathBuf {
        let mut p = p.to_path_buf();
        for _ in 0..16 {
            match self.links.get(&p) {
                Some(t) => p = t.clone(),
                None => break,
            }
        }
        p
    }

    fn bytes(&self, svc: &ImageService, name: &str) -> Result<Option<Vec<u8>>, ImageError> {
        let p = self.resolve(&clean_entry_path(Path::new(name)).unwrap_or_default());
        if let Some(b) = self.small.get(&p) {
            return Ok(Some(b.clone()));
        }
        match self.blobs.get(&p) {
            Some(d) => Ok(Some(svc.content.read_blob(d)?)),
            None => Ok(None),
        }
    }

    /// The blob for an archive path, storing it if it was kept in memory.
    fn blob(&self, svc: &ImageService, lease: &Lease, name: &str) -> Result<Option<Digest>, ImageError> {
        let p = self.resolve(&clean_entry_path(Path::new(name)).unwrap_or_default());
        if let Some(d) = self.blobs.get(&p) {
            return Ok(Some(d.clone()));
        }
        match self.small.get(&p) {
            Some(b) => Ok(Some(svc.content.write_blob(lease, b)?)),
            None => Ok(None),
        }
    }
}

fn bad(msg: impl Into<String>) -> ImageError {
    ImageError::InvalidInput(msg.into())
}

impl ImageService {
    /// Loads every image of an archive; returns Docker's "Loaded image" lines. On any error
    /// nothing is registered and what the load stored is collected.
    pub fn load<R: Read + Send>(&self, src: R) -> Result<Vec<String>, ImageError> {
        let lease = self.lease();
        let result = self.load_inner(&lease, src);
        drop(lease);
        if result.is_err() {
            self.gc()?;
        }
        result
    }

    fn load_inner<R: Read + Send>(&self, lease: &Lease, src: R) -> Result<Vec<String>, ImageError> {
        let mut r = BufReader::with_capacity(1 << 20, src);
        let comp = Compression::sniff(&mut r).map_err(ImageError::io("reading the archive"))?;
        let dec = comp.decoder(r).map_err(|e| bad(e.to_string()))?;
        let spool = self.spool(lease, dec)?;
        let loaded = if spool.small.contains_key(Path::new("manifest.json")) {
            self.load_docker(lease, &spool)?
        } else if spool.small.contains_key(Path::new("index.json")) {
            self.load_oci(lease, &spool)?
        } else {
            return Err(bad(
                "not an image archive: it has neither manifest.json (docker-archive) nor index.json (OCI layout)",
            ));
        };
        let mut lines = Vec::new();
        for (rec, names) in loaded {
            self.register(&rec, &names, &[])?;
            if names.is_empty() {
                lines.push(format!("Loaded image ID: {}", rec.id));
            }
            for n in names {
                lines.push(format!("Loaded image: {}", crate::reference::familiar(&n.to_string())));
            }
        }
        Ok(lines)
    }

    fn spool<R: Read>(&self, lease: &Lease, src: R) -> Result<Spool, ImageError> {
        let mut spool = Spool::default();
        let mut small_total = 0u64;
        let mut ar = tar::Archive::new(src);
        for e in ar.entries().map_err(ImageError::io("reading the archive"))? {
            let mut e = e.map_err(ImageError::io("reading the archive"))?;
            let raw = e.path().map_err(ImageError::io("reading the archive"))?.into_owned();
            let path = clean_entry_path(&raw).ok_or_else(|| {
                bad(format!(
                    "archive entry {:?} climbs out of the archive root",
                    raw.display()
                ))
            })?;
            match e.header().entry_type() {
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = e
                        .link_name()
                        .map_err(ImageError::io("reading the archive"))?
                        .unwrap_or_default()
                        .into_owned();
                    // Symlinks are relative to their directory, hardlinks to the archive root.
                    let joined = if e.header().entry_type() == tar::EntryType::Symlink {
                        path.parent().unwrap_or(Path::new("")).join(&target)
                    } else {
                        target.clone()
                    };
                    let t = clean_entry_path(&joined)
                        .ok_or_else(|| bad(format!("archive link {:?} points outside the archive", raw.display())))?;
                    spool.links.insert(path, t);
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let size = e.header().size().unwrap_or(u64::MAX);
                    let in_blobs = path.parent() == Some(Path::new("blobs/sha256"));
                    if in_blobs {
                        let hex = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                        let want = Digest::from_hex(hex)
                            .map_err(|_| bad(format!("archive entry {}: not a sha256 blob name", path.display())))?;
                        let d = self.store_entry(lease, &mut e, Some(&want), &path)?;
                        if size <= SMALL_FILE && small_total + size <= SMALL_TOTAL {
                            small_total += size;
                            spool.small.insert(path.clone(), self.content.read_blob(&d)?);
                        }
                        spool.blobs.insert(path, d);
                    } else if size <= SMALL_FILE && small_total + size <= SMALL_TOTAL && !path.ends_with("layer.tar") {
                        small_total += size;
                        let mut buf = Vec::with_capacity(size as usize);
                        e.read_to_end(&mut buf)
                            .map_err(ImageError::io(format!("reading archive entry {}", path.display())))?;
                        spool.small.insert(path, buf);
                    } else {
                        let d = self.store_entry(lease, &mut e, None, &path)?;
                        spool.blobs.insert(path, d);
                    }
                }
                _ => {}
            }
        }
        Ok(spool)
    }

    fn store_entry<R: Read>(
        &self,
        lease: &Lease,
        e: &mut R,
        want: Option<&Digest>,
        path: &Path,
    ) -> Result<Digest, ImageError> {
        if let Some(w) = want {
            if self.content.has(lease, w) {
                io::copy(e, &mut io::sink())
                    .map_err(ImageError::io(format!("reading archive entry {}", path.display())))?;
                return Ok(w.clone());
            }
        }
        let mut ing = self.content.ingest()?;
        io::copy(e, &mut ing).map_err(ImageError::io(format!("reading archive entry {}", path.display())))?;
        self.content.commit(ing, lease, want, None).map_err(|err| match err {
            hako_store::content::ContentError::DigestMismatch { expected, actual } => bad(format!(
                "archive blob {} is corrupt: its content hashes to {actual}, not {expected}",
                path.display()
            )),
            other => other.into(),
        })
    }

    fn load_docker(
        &self,
        lease: &Lease,
        spool: &Spool,
    ) -> Result<Vec<(crate::model::ImageRecord, Vec<Reference>)>, ImageError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Entry {
            config: String,
            #[serde(default)]
            repo_tags: Option<Vec<String>>,
            layers: Vec<String>,
        }
        let bytes = spool.small.get(Path::new("manifest.json")).expect("checked by caller");
        let entries: Vec<Entry> =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("manifest.json is invalid: {e}")))?;
        let known = self.known_layers()?;
        let mut out = Vec::new();
        for en in entries {
            let config_bytes = spool.bytes(self, &en.config)?.ok_or_else(|| {
                bad(format!(
                    "manifest.json names config {:?}, which the archive lacks",
                    en.config
                ))
            })?;
            let diff_ids = config_diff_ids(&config_bytes)?;
            if diff_ids.len() != en.layers.len() {
                return Err(bad(format!(
                    "manifest.json lists {} layers but the image config has {} diff_ids",
                    en.layers.len(),
                    diff_ids.len()
                )));
            }
            let mut layers = Vec::new();
            let mut parent: Option<Digest> = None;
            for (path, diff) in en.layers.iter().zip(&diff_ids) {
                let blob = spool
                    .blob(self, lease, path)?
                    .ok_or_else(|| bad(format!("manifest.json names layer {path:?}, which the archive lacks")))?;
                let mt = self.sniff_media_type(&blob)?;
                let l = self
                    .ensure_layer(lease, &blob, &mt, parent.as_ref(), Some(diff), &known)
                    .map_err(|e| layer_err(path, e))?;
                parent = Some(l.chain_id.clone());
                layers.push(l);
            }
            let created = created_of(&config_bytes);
            let rec = self.finish_image(lease, &config_bytes, layers, created)?;
            let mut names = Vec::new();
            for t in en.repo_tags.unwrap_or_default() {
                names.push(Reference::parse(&t).map_err(|e| bad(format!("manifest.json tag {t:?}: {e}")))?);
            }
            out.push((rec, names));
        }
        Ok(out)
    }

    fn load_oci(
        &self,
        lease: &Lease,
        spool: &Spool,
    ) -> Result<Vec<(crate::model::ImageRecord, Vec<Reference>)>, ImageError> {
        let bytes = spool.small.get(Path::new("index.json")).expect("checked by caller");
        let index = ImageIndex::from_reader(&bytes[..]).map_err(|e| bad(format!("index.json is invalid: {e}")))?;
        let known = self.known_layers()?;
        let mut out = Vec::new();
        for desc in index.manifests() {
            let annotations = desc.annotations().clone().unwrap_or_default();
            let name = annotations.get("io.containerd.image.name").or_else(|| {
                annotations
                    .get("org.opencontainers.image.ref.name")
                    .filter(|n| n.contains('/') || n.contains(':'))
            });
            let mut digest = parse_digest(desc.digest().as_ref())?;
            let mut mbytes = self.archive_blob(spool, &digest)?;
            if desc.media_type().to_string() == OCI_INDEX
                || desc.media_type().to_string() == crate::model::DOCKER_MANIFEST_LIST
            {
                let inner = ImageIndex::from_reader(&mbytes[..])
                    .map_err(|e| bad(format!("image index {digest} is invalid: {e}")))?;
                let pick = inner
                    .manifests()
                    .iter()
                    .find(|m| {
                        m.platform()
                            .as_ref()
                            .map(|p| p.architecture().to_string() == host_arch() && p.os().to_string() == "linux")
                            .unwrap_or(false)
                    })
                    .or_else(|| inner.manifests().first())
                    .ok_or_else(|| bad(format!("image index {digest} lists no manifests")))?;
                digest = parse_digest(pick.digest().as_ref())?;
                mbytes = self.archive_blob(spool, &digest)?;
            }
            let manifest = ImageManifest::from_reader(&mbytes[..])
                .map_err(|e| bad(format!("manifest {digest} is invalid: {e}")))?;
            let cfg_digest = parse_digest(manifest.config().digest().as_ref())?;
            let config_bytes = self.archive_blob(spool, &cfg_digest)?;
            let diff_ids = config_diff_ids(&config_bytes)?;
            if diff_ids.len() != manifest.layers().len() {
                return Err(bad(format!(
                    "manifest {digest} has {} layers but its config has {} diff_ids",
                    manifest.layers().len(),
                    diff_ids.len()
                )));
            }
            let mut layers = Vec::new();
            let mut parent: Option<Digest> = None;
            for (ld, diff) in manifest.layers().iter().zip(&diff_ids) {
                let blob = parse_digest(ld.digest().as_ref())?;
                if !self.content.has(lease, &blob) {
                    return Err(bad(format!(
                        "manifest {digest} names layer {blob}, which the archive lacks"
                    )));
                }
                let l = self
                    .ensure_layer(
                        lease,
                        &blob,
                        ld.media_type().as_ref(),
                        parent.as_ref(),
                        Some(diff),
                        &known,
                    )
                    .map_err(|e| layer_err(&blob.to_string(), e))?;
                parent = Some(l.chain_id.clone());
                layers.push(l);
            }
            let rec = crate::model::ImageRecord {
                id: cfg_digest,
                manifest: digest,
                layers,
                created: created_of(&config_bytes),
                last_tag_time: None,
            };
            let names = match name {
                Some(n) => vec![Reference::parse(n).map_err(|e| bad(format!("index.json image name {n:?}: {e}")))?],
                None => vec![],
            };
            out.push((rec, names));
        }
        Ok(out)
    }

    fn archive_blob(&self, spool: &Spool, d: &Digest) -> Result<Vec<u8>, ImageError> {
        let p = PathBuf::from(format!("blobs/sha256/{}", d.hex()));
        spool
            .bytes(self, p.to_str().expect("ascii path"))?
            .ok_or_else(|| bad(format!("the archive lacks blob {d}")))
    }

    fn sniff_media_type(&self, blob: &Digest) -> Result<String, ImageError> {
        let mut head = [0u8; 8];
        let mut f = self.content.open_blob(blob)?;
        let n = f
            .read(&mut head)
            .map_err(ImageError::io(format!("reading blob {blob}")))?;
        let c = Compression::detect(&head[..n]);
        c.layer_media_type().map(String::from).ok_or_else(|| {
            bad(format!(
                "layer {blob} is {c:?}-compressed, which image layers may not be"
            ))
        })
    }

    /// Writes the named images as one archive.
    pub fn save<W: Write>(&self, names: &[String], format: SaveFormat, out: W) -> Result<(), ImageError> {
        let mut images = Vec::new();
        for n in names {
            let rec = self.resolve(n)?;
            let tag = Reference::parse(n).ok().filter(|r| r.digest.is_none()).filter(|r| {
                r.tag_key()
                    .and_then(|k| self.meta.get::<String>(hako_store::meta::TAGS, &k).ok().flatten())
                    == Some(rec.id.to_string())
            });
            images.push((rec, tag));
        }
        let mut b = tar::Builder::new(out);
        let mut written: HashSet<String> = HashSet::new();
        let mut index = Vec::new();
        let mut docker_manifest = Vec::new();
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (rec, tag) in &images {
            let config = self.content.read_blob(&rec.id)?;
            put_blob(&mut b, &mut written, &rec.id, &config)?;
            let annotations = tag.as_ref().map(|t| {
                json!({
                    "io.containerd.image.name": t.to_string(),
                    "org.opencontainers.image.ref.name": t.tag.clone().unwrap_or_default(),
                })
            });
            match format {
                SaveFormat::OciArchive => {
                    let manifest = self.content.read_blob(&rec.manifest)?;
                    let mt = serde_json::from_slice::<Value>(&manifest)
                        .ok()
                        .and_then(|v| v.get("mediaType").and_then(Value::as_str).map(String::from))
                        .unwrap_or_else(|| OCI_MANIFEST.to_string());
                    put_blob(&mut b, &mut written, &rec.manifest, &manifest)?;
                    for l in &rec.layers {
                        if written.insert(l.blob.to_string()) {
                            let f = self.content.open_blob(&l.blob)?;
                            append(&mut b, &blob_path(&l.blob), l.blob_size, f)?;
                        }
                    }
                    index.push(descriptor(&mt, &rec.manifest, manifest.len(), annotations));
                }
                SaveFormat::DockerArchive => {
                    let descs: Vec<(Digest, String, u64)> = rec
                        .layers
                        .iter()
                        .map(|l| {
                            (
                                l.diff_id.clone(),
                                "application/vnd.oci.image.layer.v1.tar".to_string(),
                                l.tar_size,
                            )
                        })
                        .collect();
                    let manifest = crate::model::oci_manifest(&rec.id, config.len() as u64, &descs);
                    let md = Digest::of(&manifest);
                    put_blob(&mut b, &mut written, &md, &manifest)?;
                    for l in &rec.layers {
                        if written.insert(l.diff_id.to_string()) {
                            let tar = self.open_layer_tar(l)?;
                            append(&mut b, &blob_path(&l.diff_id), l.tar_size, tar)?;
                        }
                    }
                    index.push(descriptor(OCI_MANIFEST, &md, manifest.len(), annotations));
                    docker_manifest.push(json!({
                        "Config": blob_path(&rec.id),
                        "RepoTags": tag.as_ref().map(|t| vec![crate::reference::familiar(&t.to_string())]),
                        "Layers": rec.layers.iter().map(|l| blob_path(&l.diff_id)).collect::<Vec<_>>(),
                    }));
                    if let (Some(t), Some(top)) = (tag, rec.layers.last()) {
                        repositories
                            .entry(t.familiar_repository())
                            .or_default()
                            .insert(t.tag.clone().unwrap_or_default(), top.diff_id.hex().to_string());
                    }
                }
            }
        }
        let index_json = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index});
        append_bytes(
            &mut b,
            "index.json",
            &serde_json::to_vec(&index_json).expect("plain json"),
        )?;
        append_bytes(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        if format == SaveFormat::DockerArchive {
            append_bytes(
                &mut b,
                "manifest.json",
                &serde_json::to_vec(&docker_manifest).expect("plain json"),
            )?;
            if !repositories.is_empty() {
                append_bytes(
                    &mut b,
                    "repositories",
                    &serde_json::to_vec(&repositories).expect("plain json"),
                )?;
            }
        }
        b.into_inner()
            .map_err(ImageError::io("writing the archive"))?
            .flush()
            .map_err(ImageError::io("writing the archive"))
    }
}

fn layer_err(path: &str, e: ImageError) -> ImageError {
    match e {
        ImageError::Unpack(u) => bad(format!("layer {path}: {u}")),
        other => other,
    }
}

fn parse_digest(s: &str) -> Result<Digest, ImageError> {
    s.parse().map_err(|_| {
        bad(format!(
            "unsupported or invalid digest {s:?} (hako stores sha256 digests)"
        ))
    })
}

fn config_diff_ids(bytes: &[u8]) -> Result<Vec<Digest>, ImageError> {
    let cfg = ImageConfiguration::from_reader(bytes).map_err(|e| bad(format!("image config is invalid: {e}")))?;
    cfg.rootfs().diff_ids().iter().map(|d| parse_digest(d)).collect()
}

fn created_of(config: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(config)
        .ok()?
        .get("created")?
        .as_str()
        .map(String::from)
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

fn descriptor(mt: &str, d: &Digest, size: usize, annotations: Option<Value>) -> Value {
    let mut v = json!({"mediaType": mt, "digest": d.to_string(), "size": size});
    if let Some(a) = annotations {
        v["annotations"] = a;
    }
    v
}

fn put_blob<W: Write>(
    b: &mut tar::Builder<W>,
    written: &mut HashSet<String>,
    d: &Digest,
    bytes: &[u8],
) -> Result<(), ImageError> {
    if written.insert(d.to_string()) {
        append_bytes(b, &blob_path(d), bytes)?;
    }
    Ok(())
}

fn append_bytes<W: Write>(b: &mut tar::Builder<W>, path: &str, bytes: &[u8]) -> Result<(), ImageError> {
    append(b, path, bytes.len() as u64, bytes)
}

fn append<W: Write, R: Read>(b: &mut tar::Builder<W>, path: &str, size: u64, data: R) -> Result<(), ImageError> {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mtime(0);
    b.append_data(&mut h, path, data.take(size))
        .map_err(ImageError::io(format!("writing archive entry {path}")))
}

/// Layer records of images, used by tests to look at what was stored.
pub fn layer_compression(l: &LayerRecord) -> Compression {
    compression::from_media_type(&l.media_type)
}

/// Chain IDs of a config's layers (for checks).
pub fn config_chain_ids(config: &[u8]) -> Result<Vec<Digest>, ImageError> {
    Ok(chain_ids(&config_diff_ids(config)?))
}
