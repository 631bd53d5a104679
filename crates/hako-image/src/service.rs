//! The image service: every image operation of the daemon, over the content store, the
//! metadata store and the layer snapshots.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use hako_store::content::ContentError;
use hako_store::meta::{self, MetaError};
use hako_store::{ContentStore, Digest, Lease, MetaStore};

use crate::model::{ImageRecord, LayerRecord};
use crate::reference::{familiar, Reference, ReferenceError};
use crate::unpack::{lease_key, Snapshots, UnpackError};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("No such image: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    #[error(transparent)]
    Change(#[from] crate::changes::ChangeError),
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

impl ImageError {
    pub fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> ImageError {
        let context = context.into();
        move |source| ImageError::Io { context, source }
    }
}

/// One row of `images`.
#[derive(Debug, Clone)]
pub struct ImageSummary {
    pub record: ImageRecord,
    /// Familiar `repo:tag` names.
    pub tags: Vec<String>,
    /// Familiar `repo@sha256:` names.
    pub digests: Vec<String>,
    pub config: Value,
    pub containers: usize,
}

/// An entry of `rmi`'s answer, as the Engine API reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Deleted {
    Untagged(String),
    Deleted(String),
}

pub struct ImageService {
    pub(crate) content: ContentStore,
    pub(crate) meta: MetaStore,
    pub(crate) snapshots: Snapshots,
    root: PathBuf,
}

impl ImageService {
    /// Opens the image state under `root`; cleans crash leftovers of unfinished writes.
    pub fn open(root: &Path) -> Result<ImageService, ImageError> {
        fs::create_dir_all(root).map_err(ImageError::io(format!("creating {}", root.display())))?;
        let content = ContentStore::open(&root.join("content"))?;
        let meta = MetaStore::open(&root.join("meta.redb"))?;
        let snapshots = Snapshots::open(&root.join("snapshots")).map_err(ImageError::io("opening snapshots"))?;
        Ok(ImageService {
            content,
            meta,
            snapshots,
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    pub fn meta(&self) -> &MetaStore {
        &self.meta
    }

    pub fn snapshot_path(&self, chain: &Digest) -> PathBuf {
        self.snapshots.path(chain)
    }

    pub fn lease(&self) -> Lease {
        self.content.leases().lease()
    }

    /// Resolves a name as Docker does: full ID, `name[:tag]`, `name@digest`, or a unique ID
    /// prefix.
    pub fn resolve(&self, name: &str) -> Result<ImageRecord, ImageError> {
        let not_found = || ImageError::NotFound(name.to_string());
        let as_id = name.strip_prefix("sha256:").unwrap_or(name);
        if as_id.len() == 64 {
            if let Ok(d) = Digest::from_hex(as_id) {
                if let Some(r) = self.meta.get::<ImageRecord>(meta::IMAGES, &d.to_string())? {
                    return Ok(r);
                }
            }
        }
        if let Ok(r) = Reference::parse(name) {
            let id = match (r.digest_key(), r.tag_key()) {
                (Some(dk), _) => self.meta.get::<String>(meta::REPO_DIGESTS, &dk)?,
                (None, Some(tk)) => self.meta.get::<String>(meta::TAGS, &tk)?,
                _ => None,
            };
            if let Some(id) = id {
                return self.meta.get::<ImageRecord>(meta::IMAGES, &id)?.ok_or_else(not_found);
            }
        }
        let is_hex_prefix = !as_id.is_empty() && as_id.len() < 64 && as_id.bytes().all(|b| b.is_ascii_hexdigit());
        if is_hex_prefix {
            let matches: Vec<ImageRecord> = self
                .meta
                .list::<ImageRecord>(meta::IMAGES)?
                .into_iter()
                .filter(|(_, r)| r.id.hex().starts_with(as_id))
                .map(|(_, r)| r)
                .collect();
            match matches.len() {
                1 => return Ok(matches.into_iter().next().expect("len 1")),
                0 => {}
                _ => {
                    return Err(ImageError::InvalidInput(format!(
                        "image ID prefix {name:?} is ambiguous: give more characters"
                    )))
                }
            }
        }
        Err(not_found())
    }

    /// The image config as stored (its digest is the image ID).
    pub fn config(&self, rec: &ImageRecord) -> Result<Value, ImageError> {
        let bytes = self.content.read_blob(&rec.id)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::InvalidInput(format!("image {} has a corrupt config: {e}", rec.id)))
    }

    pub fn list(&self) -> Result<Vec<ImageSummary>, ImageError> {
        let tags: Vec<(String, String)> = self.meta.list(meta::TAGS)?;
        let digests: Vec<(String, String)> = self.meta.list(meta::REPO_DIGESTS)?;
        let users = self.container_users()?;
        let mut out = Vec::new();
        for (_, record) in self.meta.list::<ImageRecord>(meta::IMAGES)? {
            let id = record.id.to_string();
            let config = self.config(&record).unwrap_or(Value::Null);
            out.push(ImageSummary {
                tags: tags
                    .iter()
                    .filter(|(_, v)| *v == id)
                    .map(|(k, _)| familiar(k))
                    .collect(),
                digests: digests
                    .iter()
                    .filter(|(_, v)| *v == id)
                    .map(|(k, _)| familiar(k))
                    .collect(),
                containers: users.iter().filter(|u| **u == id).count(),
                config,
                record,
            });
        }
        out.sort_by(|a, b| b.record.created.cmp(&a.record.created));
        Ok(out)
    }

    pub fn tags_of(&self, id: &Digest) -> Result<Vec<String>, ImageError> {
        let id = id.to_string();
        Ok(self
            .meta
            .list::<String>(meta::TAGS)?
            .into_iter()
            .filter(|(_, v)| *v == id)
            .map(|(k, _)| familiar(&k))
            .collect())
    }

    pub fn digests_of(&self, id: &Digest) -> Result<Vec<String>, ImageError> {
        let id = id.to_string();
        Ok(self
            .meta
            .list::<String>(meta::REPO_DIGESTS)?
            .into_iter()
            .filter(|(_, v)| *v == id)
            .map(|(k, _)| familiar(&k))
            .collect())
    }

    /// Image IDs that containers use, one entry per container.
    fn container_users(&self) -> Result<Vec<String>, ImageError> {
        Ok(self
            .meta
            .list::<Value>(meta::CONTAINERS)?
            .into_iter()
            .filter_map(|(_, c)| c.get("Image").and_then(Value::as_str).map(String::from))
            .collect())
    }

    /// Points `target` (`repo[:tag]`) at the image `source`.
    pub fn tag(&self, source: &str, target: &str) -> Result<(), ImageError> {
        let rec = self.resolve(source)?;
        let r = Reference::parse(target)?;
        let key = r.tag_key().ok_or_else(|| {
            ImageError::InvalidInput(format!("refusing to create a tag with a digest reference: {target}"))
        })?;
        self.meta.write(|t| {
            t.put(meta::TAGS, &key, &rec.id.to_string())?;
            let mut rec = rec.clone();
            rec.last_tag_time = Some(now_rfc3339());
            t.put(meta::IMAGES, &rec.id.to_string(), &rec)?;
            Ok::<_, ImageError>(())
        })
    }

    /// Registers an image and its names in one transaction. Tags that pointed at another
    /// image move; an image left with no name and no container stays, dangling, as in Docker.
    pub fn register(&self, rec: &ImageRecord, tags: &[Reference], digests: &[Reference]) -> Result<(), ImageError> {
        self.meta.write(|t| {
            let mut rec = rec.clone();
            if !tags.is_empty() {
                rec.last_tag_time = Some(now_rfc3339());
            }
            if let Some(old) = t.get::<ImageRecord>(meta::IMAGES, &rec.id.to_string())? {
                rec.last_tag_time = rec.last_tag_time.or(old.last_tag_time);
            }
            t.put(meta::IMAGES, &rec.id.to_string(), &rec)?;
            for r in tags {
                if let Some(k) = r.tag_key() {
                    t.put(meta::TAGS, &k, &rec.id.to_string())?;
                }
            }
            for r in digests {
                if let Some(k) = r.digest_key() {
                    t.put(meta::REPO_DIGESTS, &k, &rec.id.to_string())?;
                }
            }
            Ok::<_, ImageError>(())
        })
    }

    /// `rmi`: untags, and deletes the image once nothing names it.
    pub fn remove(&self, name: &str, force: bool) -> Result<Vec<Deleted>, ImageError> {
        let rec = self.resolve(name)?;
        let id = rec.id.to_string();
        let users = self.container_users()?.into_iter().filter(|u| *u == id).count();
        let by_ref = Reference::parse(name).ok().filter(|r| {
            let key = r.tag_key().or_else(|| r.digest_key());
            key.and_then(|k| {
                let table = if r.digest.is_some() {
                    meta::REPO_DIGESTS
                } else {
                    meta::TAGS
                };
                self.meta.get::<String>(table, &k).ok().flatten()
            })
            .as_deref()
                == Some(id.as_str())
        });
        let out = self.meta.write(|t| {
            let tag_keys: Vec<String> = t.list::<String>(meta::TAGS)?.into_iter().filter(|(_, v)| *v == id).map(|(k, _)| k).collect();
            let dig_keys: Vec<String> =
                t.list::<String>(meta::REPO_DIGESTS)?.into_iter().filter(|(_, v)| *v == id).map(|(k, _)| k).collect();
            let mut out = Vec::new();
            if let Some(r) = &by_ref {
                // By name: drop that name; the image goes only with its last name.
                let key = r.tag_key().or_else(|| r.digest_key()).expect("parsed reference has a tag or digest");
                let others = tag_keys.iter().chain(dig_keys.iter()).filter(|k| **k != key).count();
                if others > 0 || (users > 0 && !force) {
                    if others == 0 && users > 0 {
                        return Err(ImageError::Conflict(format!(
                            "unable to remove repository reference {name:?} (must force) - container is using its referenced image {}",
                            rec.id.short()
                        )));
                    }
                    t.delete(if r.digest.is_some() { meta::REPO_DIGESTS } else { meta::TAGS }, &key)?;
                    out.push(Deleted::Untagged(familiar(&key)));
                    return Ok(out);
                }
            } else if !force && tag_keys.len() > 1 {
                return Err(ImageError::Conflict(format!(
                    "unable to delete {} (must be forced) - image is referenced in multiple repositories",
                    rec.id.short()
                )));
            }
            if users > 0 && !force {
                return Err(ImageError::Conflict(format!(
                    "unable to delete {} (must be forced) - image is being used by a container",
                    rec.id.short()
                )));
            }
            for k in tag_keys.iter().chain(dig_keys.iter()) {
                t.delete(if k.contains('@') { meta::REPO_DIGESTS } else { meta::TAGS }, k)?;
                out.push(Deleted::Untagged(familiar(k)));
            }
            t.delete(meta::IMAGES, &id)?;
            out.push(Deleted::Deleted(id.clone()));
            Ok(out)
        })?;
        if out.iter().any(|d| matches!(d, Deleted::Deleted(_))) {
            self.gc()?;
        }
        Ok(out)
    }

    /// `image prune`: dangling images (with `all`, every image no container uses).
    pub fn prune(&self, all: bool) -> Result<(Vec<Deleted>, u64), ImageError> {
        let mut deleted = Vec::new();
        let before = self.disk_usage()?;
        for s in self.list()? {
            let dangling = s.tags.is_empty();
            if s.containers == 0 && (all || dangling) {
                deleted.extend(self.remove(&s.record.id.to_string(), true)?);
            }
        }
        let after = self.disk_usage()?;
        Ok((deleted, before.saturating_sub(after)))
    }

    /// Removes every blob and snapshot that no image references and no operation in
    /// progress holds. Returns what it removed.
    pub fn gc(&self) -> Result<(usize, usize), ImageError> {
        self.content.leases().collect(|leased| {
            let mut keep: HashSet<String> = leased.clone();
            for (_, rec) in self.meta.list::<ImageRecord>(meta::IMAGES)? {
                keep.insert(rec.id.to_string());
                keep.insert(rec.manifest.to_string());
                for l in &rec.layers {
                    keep.insert(l.blob.to_string());
                    keep.insert(lease_key(&l.chain_id));
                }
            }
            let mut blobs = 0;
            for d in self.content.list()? {
                if !keep.contains(&d.to_string()) {
                    self.content.delete(&d)?;
                    blobs += 1;
                }
            }
            let mut snaps = 0;
            for c in self.snapshots.list().map_err(ImageError::io("listing snapshots"))? {
                if !keep.contains(&lease_key(&c)) {
                    self.snapshots
                        .remove(&c)
                        .map_err(ImageError::io(format!("removing snapshot {c}")))?;
                    snaps += 1;
                }
            }
            Ok((blobs, snaps))
        })
    }

    /// Bytes used by blobs and unpacked layers.
    pub fn disk_usage(&self) -> Result<u64, ImageError> {
        let mut total = 0;
        for d in self.content.list()? {
            total += self.content.size(&d).unwrap_or(0);
        }
        let mut seen = HashSet::new();
        for (_, rec) in self.meta.list::<ImageRecord>(meta::IMAGES)? {
            for l in rec.layers {
                if seen.insert(l.chain_id.clone()) {
                    total += l.size;
                }
            }
        }
        Ok(total)
    }

    /// `system check`: re-hashes every blob, follows every reference. Returns the problems.
    pub fn check(&self) -> Result<Vec<String>, ImageError> {
        let mut problems = Vec::new();
        for d in self.content.list()? {
            if !self.content.verify(&d)? {
                problems.push(format!("blob {d}: content does not match its digest"));
            }
        }
        let images = self.meta.list::<ImageRecord>(meta::IMAGES)?;
        let ids: HashSet<String> = images.iter().map(|(k, _)| k.clone()).collect();
        for (key, rec) in &images {
            if *key != rec.id.to_string() {
                problems.push(format!("image record {key}: stored under the wrong key ({})", rec.id));
            }
            for d in [&rec.id, &rec.manifest]
                .into_iter()
                .chain(rec.layers.iter().map(|l| &l.blob))
            {
                if self.content.size(d).is_err() {
                    problems.push(format!("image {}: blob {d} is missing", rec.id));
                }
            }
            for l in &rec.layers {
                if !self.snapshots.path(&l.chain_id).is_dir() {
                    problems.push(format!(
                        "image {}: layer {} is not unpacked (snapshot {} missing)",
                        rec.id, l.diff_id, l.chain_id
                    ));
                }
            }
        }
        for table in [meta::TAGS, meta::REPO_DIGESTS] {
            for (k, v) in self.meta.list::<String>(table)? {
                if !ids.contains(&v) {
                    problems.push(format!("name {}: points to missing image {v}", familiar(&k)));
                }
            }
        }
        Ok(problems)
    }

    /// Docker's `history`: newest first, with layer sizes matched to non-empty steps.
    pub fn history(&self, name: &str) -> Result<Vec<Value>, ImageError> {
        let rec = self.resolve(name)?;
        let config = self.config(&rec)?;
        let tags = self.tags_of(&rec.id)?;
        let steps = config
            .get("history")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut layers = rec.layers.iter();
        let mut rows = Vec::new();
        if steps.is_empty() {
            for l in rec.layers.iter() {
                rows.push(json!({"Created": 0, "CreatedBy": "", "Size": l.size, "Comment": "", "Tags": Value::Null, "Id": "<missing>"}));
            }
        }
        for h in steps {
            let empty = h.get("empty_layer").and_then(Value::as_bool).unwrap_or(false);
            let size = if empty {
                0
            } else {
                layers.next().map(|l| l.size).unwrap_or(0)
            };
            rows.push(json!({
                "Id": "<missing>",
                "Created": h.get("created").and_then(Value::as_str).and_then(parse_time).unwrap_or(0),
                "CreatedBy": h.get("created_by").and_then(Value::as_str).unwrap_or(""),
                "Tags": Value::Null,
                "Size": size,
                "Comment": h.get("comment").and_then(Value::as_str).unwrap_or(""),
            }));
        }
        rows.reverse();
        if let Some(top) = rows.first_mut() {
            top["Id"] = json!(rec.id.to_string());
            top["Tags"] = json!(tags);
        }
        Ok(rows)
    }

    /// Unpacks an uncompressed layer tar from a stream (a pull unpacks while it downloads)
    /// into the snapshot for `parent`'s chain, refusing content whose diff ID differs from
    /// `expected_diff_id`. The caller still commits the blob itself.
    pub fn unpack_layer_stream<R: Read>(
        &self,
        lease: &Lease,
        tar: R,
        parent: Option<&Digest>,
        expected_diff_id: Option<&Digest>,
    ) -> Result<crate::unpack::Unpacked, ImageError> {
        Ok(self.snapshots.unpack(lease, tar, parent, expected_diff_id)?)
    }

    /// Records of layers the store already knows, by blob digest (to skip re-hashing).
    pub fn known_layers(&self) -> Result<BTreeMap<Digest, LayerRecord>, ImageError> {
        let mut out = BTreeMap::new();
        for (_, rec) in self.meta.list::<ImageRecord>(meta::IMAGES)? {
            for l in rec.layers {
                out.insert(l.blob.clone(), l);
            }
        }
        Ok(out)
    }

    /// Reads a layer blob and makes sure its snapshot exists on `parent`, returning its
    /// record. `expected_diff_id` guards against a blob that is not what the config says.
    pub fn ensure_layer(
        &self,
        lease: &Lease,
        blob: &Digest,
        media_type: &str,
        parent: Option<&Digest>,
        expected_diff_id: Option<&Digest>,
        known: &BTreeMap<Digest, LayerRecord>,
    ) -> Result<LayerRecord, ImageError> {
        let blob_size = self.content.size(blob)?;
        if let Some(k) = known.get(blob) {
            let chain = match parent {
                None => k.diff_id.clone(),
                Some(p) => crate::model::chain_ids(&[p.clone(), k.diff_id.clone()])[1].clone(),
            };
            let diff_ok = expected_diff_id.map(|e| *e == k.diff_id).unwrap_or(true);
            if diff_ok && self.snapshots.exists(lease, &chain) {
                return Ok(LayerRecord {
                    chain_id: chain,
                    media_type: media_type.to_string(),
                    blob_size,
                    ..k.clone()
                });
            }
        }
        let f = self.content.open_blob(blob)?;
        let mut r = io::BufReader::with_capacity(1 << 20, f);
        let comp =
            crate::compression::Compression::sniff(&mut r).map_err(ImageError::io(format!("reading blob {blob}")))?;
        let dec = comp
            .decoder(r)
            .map_err(ImageError::io(format!("decompressing layer {blob}")))?;
        let u = self.snapshots.unpack(lease, dec, parent, expected_diff_id)?;
        Ok(LayerRecord {
            blob: blob.clone(),
            media_type: media_type.to_string(),
            blob_size,
            diff_id: u.diff_id,
            chain_id: u.chain_id,
            size: u.size,
            tar_size: u.tar_size,
        })
    }

    /// A reader of a layer's uncompressed tar.
    pub fn open_layer_tar(&self, l: &LayerRecord) -> Result<Box<dyn Read + Send>, ImageError> {
        let f = self.content.open_blob(&l.blob)?;
        let mut r = io::BufReader::with_capacity(1 << 20, f);
        let comp = crate::compression::Compression::sniff(&mut r)
            .map_err(ImageError::io(format!("reading blob {}", l.blob)))?;
        comp.decoder(r)
            .map_err(ImageError::io(format!("decompressing layer {}", l.blob)))
    }
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

pub fn parse_time(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp())
}

/// What `commit` records besides the changes themselves.
pub struct CommitOptions<'a> {
    /// The container's Config (Docker commits it as the new image's config).
    pub config: Value,
    pub changes: &'a [String],
    pub comment: &'a str,
    pub author: &'a str,
    /// The container's command, for the history entry.
    pub created_by: &'a str,
    pub tag: Option<&'a Reference>,
}

/// One new image on top of another, as `commit` and each step of a build make it.
pub struct Derive<'a> {
    /// The Docker config (`Env`, `Cmd`...) of the new image, in full.
    pub config: Value,
    /// A directory in overlay upper-dir form (a container's upper dir, or files staged the
    /// same way) that becomes one more layer; None for a step that changes only the config.
    pub upper: Option<&'a Path>,
    /// The caller gives `upper` up (nothing writes to it any more): it becomes the layer's
    /// snapshot by a rename instead of the layer being unpacked again.
    pub adopt: bool,
    /// Instead of `upper`: a layer the store already has (a build step found in the image a
    /// build was told to take its cache from).
    pub layer: Option<LayerRecord>,
    pub created_by: &'a str,
    pub comment: &'a str,
    pub author: &'a str,
}

impl ImageService {
    /// `commit`: the container's upper directory becomes a layer on top of its image.
    pub fn commit(&self, parent: &ImageRecord, upper: &Path, opts: &CommitOptions) -> Result<ImageRecord, ImageError> {
        let mut cfg_obj = match &opts.config {
            Value::Object(m) => m.clone(),
            _ => serde_json::Map::new(),
        };
        for c in opts.changes {
            crate::changes::apply_change(&mut cfg_obj, c)?;
        }
        let rec = self.derive(
            Some(parent),
            &Derive {
                config: Value::Object(cfg_obj),
                upper: Some(upper),
                adopt: false,
                layer: None,
                created_by: opts.created_by,
                comment: opts.comment,
                author: opts.author,
            },
        )?;
        if let Some(t) = opts.tag {
            self.register(&rec, std::slice::from_ref(t), &[])?;
        }
        Ok(rec)
    }

    /// A new image on `parent` (None: from scratch), registered without a name (its blobs'
    /// lease lasts until it is).
    pub fn derive(&self, parent: Option<&ImageRecord>, d: &Derive) -> Result<ImageRecord, ImageError> {
        let lease = self.lease();
        let mut layers = parent.map(|p| p.layers.clone()).unwrap_or_default();
        let mut cfg = match parent {
            Some(p) => self.config(p)?,
            None => json!({
                "architecture": crate::import::host_arch(),
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": []},
                "history": [],
            }),
        };
        if let Some(upper) = d.upper {
            let ing = self.content.ingest()?;
            let ing = crate::diff::write_layer(upper, ing).map_err(ImageError::io("writing changes as a layer"))?;
            let blob = self.content.commit(ing, &lease, None, None)?;
            let parent_chain = layers.last().map(|l| l.chain_id.clone());
            let media_type = "application/vnd.oci.image.layer.v1.tar";
            // The blob is the uncompressed tar: its digest is the diff ID.
            let adopted = if d.adopt {
                self.snapshots
                    .adopt(&lease, upper, &blob, parent_chain.as_ref())
                    .map_err(ImageError::io("keeping the step's files as a layer"))?
            } else {
                None
            };
            let layer = match adopted {
                Some((chain_id, size)) => LayerRecord {
                    blob: blob.clone(),
                    media_type: media_type.into(),
                    blob_size: self.content.size(&blob)?,
                    diff_id: blob.clone(),
                    chain_id,
                    size,
                    tar_size: self.content.size(&blob)?,
                },
                None => self.ensure_layer(&lease, &blob, media_type, parent_chain.as_ref(), None, &BTreeMap::new())?,
            };
            let diff = json!(layer.diff_id.to_string());
            match cfg.pointer_mut("/rootfs/diff_ids").and_then(Value::as_array_mut) {
                Some(ids) => ids.push(diff),
                None => cfg["rootfs"] = json!({"type": "layers", "diff_ids": [diff]}),
            }
            layers.push(layer);
        }
        if let Some(layer) = &d.layer {
            let diff = json!(layer.diff_id.to_string());
            match cfg.pointer_mut("/rootfs/diff_ids").and_then(Value::as_array_mut) {
                Some(ids) => ids.push(diff),
                None => cfg["rootfs"] = json!({"type": "layers", "diff_ids": [diff]}),
            }
            lease.add(crate::unpack::lease_key(&layer.chain_id));
            layers.push(layer.clone());
        }
        let now = now_rfc3339();
        cfg["config"] = d.config.clone();
        cfg["created"] = json!(now);
        cfg["author"] = json!(d.author);
        cfg["comment"] = json!(d.comment);
        let mut entry = json!({"created": now, "created_by": d.created_by});
        for (k, v) in [("comment", d.comment), ("author", d.author)] {
            if !v.is_empty() {
                entry[k] = json!(v);
            }
        }
        if d.upper.is_none() && d.layer.is_none() {
            entry["empty_layer"] = json!(true);
        }
        match cfg.get_mut("history").and_then(Value::as_array_mut) {
            Some(h) => h.push(entry),
            None => cfg["history"] = json!([entry]),
        }
        let bytes = serde_json::to_vec(&cfg).expect("json of plain values"); // invariant
        let rec = self.finish_image(&lease, &bytes, layers, Some(now))?;
        self.register(&rec, &[], &[])?;
        Ok(rec)
    }
}
