//! The engine's pull: manifest (and platform from an index), config, then every missing
//! layer downloaded in parallel into the content store (verified against its digest,
//! resumed with Range requests after a broken connection), each layer unpacked in order
//! as soon as it and those below it are in, and the image registered with its tag and its
//! repo digest (`repo@sha256:...`, the digest the registry named).
//!
//! A download writes into the content store's resumable ingest of its digest, which
//! outlives a failed pull and a killed daemon: the next pull of the blob re-hashes the kept
//! bytes and asks only for the rest (`Range: bytes=N-`). A registry that answers such a
//! request with the whole blob (200) gets it written from byte 0 again; kept bytes that make
//! the whole blob fail its digest are dropped and the blob is downloaded once more.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::sync::{mpsc, Semaphore};

use hako_image::compression::Compression;
use hako_image::model::LayerRecord;
use hako_image::unpack::Unpacked;
use hako_image::{ImageRecord, ImageService, Reference};
use hako_store::Lease;

use super::progress::{self, Sink, Throttle};
use super::{registry_host, ClientError, Credentials, RegistryClient};
use crate::digest::Digest;
use crate::manifest::{self, Descriptor, Manifest};

/// Layers fetched at once (dockerd's default is 3).
const PARALLEL: usize = 3;
const ATTEMPTS: u32 = 5;
const BATCH: usize = 1 << 20;

pub const ACCEPT: [&str; 4] = [
    manifest::OCI_MANIFEST,
    manifest::DOCKER_MANIFEST,
    manifest::OCI_INDEX,
    manifest::DOCKER_MANIFEST_LIST,
];

#[derive(Debug, Clone)]
pub struct PullOutcome {
    /// The image ID (config digest).
    pub id: hako_store::Digest,
    /// The digest the registry named (an index's when the tag points to one).
    pub digest: Digest,
    pub up_to_date: bool,
}

fn local(e: impl std::fmt::Display) -> ClientError {
    ClientError::Local(e.to_string())
}

fn store_digest(d: &Digest) -> Result<hako_store::Digest, ClientError> {
    d.to_store().ok_or_else(|| {
        ClientError::Invalid(format!(
            "{d}: hako's image store keeps sha256 content only; this image cannot be pulled"
        ))
    })
}

/// Picks the manifest for this host's platform from an index.
fn pick_platform(index: &[u8], what: &str) -> Result<Descriptor, ClientError> {
    let v: Value = serde_json::from_slice(index).map_err(|e| ClientError::Invalid(format!("{what}: {e}")))?;
    let arch = hako_image::import::host_arch();
    let list = v["manifests"].as_array().cloned().unwrap_or_default();
    let found = list.iter().find(|m| {
        m["platform"]["os"].as_str() == Some("linux") && m["platform"]["architecture"].as_str() == Some(arch)
    });
    let Some(m) = found else {
        return Err(ClientError::Invalid(format!(
            "no matching manifest for linux/{arch} in the manifest list entries of {what}"
        )));
    };
    let digest: Digest = m["digest"]
        .as_str()
        .unwrap_or("")
        .parse()
        .map_err(|e| ClientError::Invalid(format!("{what}: {e}")))?;
    Ok(Descriptor {
        media_type: m["mediaType"].as_str().unwrap_or(manifest::OCI_MANIFEST).to_string(),
        digest,
        size: m["size"].as_u64().unwrap_or(0),
        foreign: false,
    })
}

enum Chunk {
    Data(Bytes),
    /// The server ignored the Range request: start the blob again.
    Restart,
}

/// What the unpacker of a layer being downloaded receives.
enum Tee {
    Data(Bytes),
    /// The download restarted: this stream is void (the layer is unpacked from the store).
    Abort,
}

/// A blocking reader over the tee channel.
struct TeeReader {
    rx: std::sync::mpsc::Receiver<Tee>,
    cur: Bytes,
}

impl std::io::Read for TeeReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.recv() {
                Ok(Tee::Data(b)) => self.cur = b,
                Ok(Tee::Abort) => return Err(std::io::Error::other("download restarted")),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len());
        out[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

/// Why a download failed.
enum Failed {
    /// The blob arrived whole but did not verify, and it began with bytes kept from an
    /// earlier download: those may be what is wrong (a torn write at a power loss).
    ResumedCorrupt(ClientError),
    Other(ClientError),
}

impl From<ClientError> for Failed {
    fn from(e: ClientError) -> Failed {
        Failed::Other(e)
    }
}

impl Failed {
    fn into_error(self) -> ClientError {
        match self {
            Failed::ResumedCorrupt(e) | Failed::Other(e) => e,
        }
    }
}

/// Writes what arrives into the ingest (and to the unpacker, if any) and commits it against
/// the expected digest once the whole blob is in. An error's flag says the blob was whole
/// but corrupt (the commit refused it and removed the ingest).
fn writer(
    images: Arc<ImageService>,
    lease: Arc<Lease>,
    mut ing: hako_store::Ingest,
    mut rx: mpsc::Receiver<Chunk>,
    expected: hako_store::Digest,
    size: u64,
    mut tee: Option<std::sync::mpsc::SyncSender<Tee>>,
) -> Result<(), (ClientError, bool)> {
    let io = |e: std::io::Error| (local(format!("writing blob {expected}: {e}")), false);
    while let Some(c) = rx.blocking_recv() {
        match c {
            Chunk::Data(b) => {
                ing.write_all(&b).map_err(io)?;
                // An unpacker that gave up is simply no longer fed.
                if tee.as_ref().is_some_and(|t| t.send(Tee::Data(b)).is_err()) {
                    tee = None;
                }
            }
            Chunk::Restart => {
                if let Some(t) = tee.take() {
                    let _ = t.send(Tee::Abort);
                }
                ing.restart().map_err(io)?;
            }
        }
    }
    drop(tee);
    if ing.written() < size {
        // The download broke off: what arrived stays in the ingest for the next pull.
        return Err((local(format!("blob {expected} is incomplete")), false));
    }
    images
        .content()
        .commit(ing, &lease, Some(&expected), Some(size))
        .map_err(|e| (ClientError::Invalid(format!("downloaded blob is corrupt: {e}")), true))?;
    Ok(())
}

/// Unpacks a layer from the tee while it downloads.
fn stream_unpack(
    images: Arc<ImageService>,
    lease: Arc<Lease>,
    rx: std::sync::mpsc::Receiver<Tee>,
    job: UnpackJob,
) -> Result<Unpacked, hako_image::ImageError> {
    let mut r = std::io::BufReader::with_capacity(1 << 20, TeeReader { rx, cur: Bytes::new() });
    let comp = Compression::sniff(&mut r).map_err(hako_image::ImageError::io("reading the layer stream"))?;
    let dec = comp
        .decoder(r)
        .map_err(hako_image::ImageError::io("decompressing the layer stream"))?;
    images.unpack_layer_stream(&lease, dec, job.parent.as_ref(), Some(&job.diff_id))
}

/// A layer to unpack while it downloads: its parent's chain ID and its diff ID.
#[derive(Clone)]
struct UnpackJob {
    parent: Option<hako_store::Digest>,
    diff_id: hako_store::Digest,
}

/// Downloads one blob into the content store, resuming what an earlier pull left of it and
/// after broken connections.
async fn download(
    client: Arc<RegistryClient>,
    repo: String,
    desc: Descriptor,
    images: Arc<ImageService>,
    lease: Arc<Lease>,
    sink: Option<Sink>,
    unpack: Option<UnpackJob>,
) -> Result<Option<Unpacked>, ClientError> {
    let attempt = || fetch(&client, &repo, &desc, &images, &lease, sink.as_ref(), unpack.clone());
    match attempt().await {
        // The corrupt ingest is gone: the next attempt starts from byte 0.
        Err(Failed::ResumedCorrupt(e)) => {
            tracing::warn!(error = %e, blob = %desc.digest, "a resumed download did not verify; downloading it again");
            attempt().await.map_err(Failed::into_error)
        }
        r => r.map_err(Failed::into_error),
    }
}

/// One attempt at a blob: opens its (resumable) ingest and fetches the rest.
async fn fetch(
    client: &RegistryClient,
    repo: &str,
    desc: &Descriptor,
    images: &Arc<ImageService>,
    lease: &Arc<Lease>,
    sink: Option<&Sink>,
    unpack: Option<UnpackJob>,
) -> Result<Option<Unpacked>, Failed> {
    let expected = store_digest(&desc.digest)?;
    let id = progress::short(&desc.digest);
    let (tx, rx) = mpsc::channel::<Chunk>(32);
    // The unpacker runs beside the writer, on the second core, fed the same bytes.
    let (tee, unpacker) = match unpack {
        Some(job) => {
            let (ttx, trx) = std::sync::mpsc::sync_channel::<Tee>(16);
            let (im, ls) = (images.clone(), lease.clone());
            (
                Some(ttx),
                Some(tokio::task::spawn_blocking(move || stream_unpack(im, ls, trx, job))),
            )
        }
        None => (None, None),
    };
    // Bytes an earlier pull kept are re-hashed from disk (the digest covers the whole blob)
    // and go to the unpacker first, as if they had just arrived.
    let (i2, e2, t2, size) = (images.clone(), expected.clone(), tee.clone(), desc.size);
    let ing = tokio::task::spawn_blocking(move || {
        i2.content().resume_ingest(&e2, size, |b| {
            if let Some(t) = &t2 {
                let _ = t.send(Tee::Data(Bytes::copy_from_slice(b)));
            }
        })
    })
    .await
    .map_err(local)?
    .map_err(local)?;
    let mut got = ing.written();
    let resumed = got > 0;
    if resumed {
        tracing::info!(blob = %desc.digest, kept = got, size = desc.size, "resuming a partial download");
    }
    let (i2, l2, e2) = (images.clone(), lease.clone(), expected.clone());
    let w = tokio::task::spawn_blocking(move || writer(i2, l2, ing, rx, e2, size, tee));
    let mut throttle = Throttle::new();
    let mut attempt = 0;
    let fetched: Result<(), ClientError> = loop {
        // All of it is here (kept by an earlier pull, say): a Range from the end would get a
        // 416, and the digest decides.
        if got == desc.size {
            break Ok(());
        }
        attempt += 1;
        let (resp, honoured) = match client.get_blob(repo, &desc.digest, got).await {
            Ok(r) => r,
            Err(e @ ClientError::Transport(_)) if attempt < ATTEMPTS => {
                tracing::debug!(error = %e, "retrying blob download");
                tokio::time::sleep(Duration::from_millis(200 * attempt as u64)).await;
                continue;
            }
            Err(e) => break Err(e),
        };
        if !honoured && got > 0 {
            got = 0;
            if tx.send(Chunk::Restart).await.is_err() {
                break Err(local("the blob writer stopped"));
            }
        }
        let mut body = resp.into_body();
        let mut broken = None;
        let mut pending = bytes::BytesMut::with_capacity(BATCH);
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    if let Ok(data) = f.into_data() {
                        got += data.len() as u64;
                        if got > desc.size {
                            broken = Some(ClientError::Invalid(format!(
                                "blob {} is larger than its manifest says ({} bytes)",
                                desc.digest, desc.size
                            )));
                            break;
                        }
                        // Hand over ~1 MiB at a time: one wake-up of the writer per MiB.
                        pending.extend_from_slice(&data);
                        if pending.len() >= BATCH && tx.send(Chunk::Data(pending.split().freeze())).await.is_err() {
                            broken = Some(local("the blob writer stopped"));
                            break;
                        }
                        if let Some(s) = sink {
                            if throttle.ready() {
                                s(progress::bytes(&id, "Downloading", got, desc.size));
                            }
                        }
                    }
                }
                Err(e) => {
                    broken = Some(ClientError::Transport(format!("reading blob {}: {e}", desc.digest)));
                    break;
                }
            }
        }
        // What arrived before a break is good data: keep it for the resume.
        if !pending.is_empty() && tx.send(Chunk::Data(pending.split().freeze())).await.is_err() {
            broken = Some(local("the blob writer stopped"));
        }
        match broken {
            None if got == desc.size => break Ok(()),
            None => {
                if attempt >= ATTEMPTS {
                    break Err(ClientError::Transport(format!(
                        "blob {} ended after {got} of {} bytes",
                        desc.digest, desc.size
                    )));
                }
            }
            Some(e @ ClientError::Transport(_)) if attempt < ATTEMPTS => {
                tracing::debug!(error = %e, got, "blob download broke; resuming");
            }
            Some(e) => break Err(e),
        }
        tokio::time::sleep(Duration::from_millis(100 * attempt as u64)).await;
    };
    drop(tx);
    let written = w.await.map_err(local)?;
    let unpacked = match unpacker {
        Some(u) => Some(u.await.map_err(local)?),
        None => None,
    };
    fetched?;
    match written {
        Ok(()) => {}
        Err((e, true)) if resumed => return Err(Failed::ResumedCorrupt(e)),
        Err((e, _)) => return Err(e.into()),
    }
    if let Some(s) = sink {
        s(progress::layer(&id, "Verifying Checksum"));
        s(progress::layer(&id, "Download complete"));
    }
    // A diff ID mismatch is the content's fault; any other unpack failure (a restarted
    // download) leaves the layer to be unpacked from the store.
    match unpacked {
        Some(Ok(u)) => Ok(Some(u)),
        Some(Err(hako_image::ImageError::Unpack(e @ hako_image::unpack::UnpackError::DiffIdMismatch { .. }))) => {
            Err(ClientError::Invalid(format!("layer {}: {e}", desc.digest)).into())
        }
        Some(Err(e)) => {
            tracing::debug!(error = %e, layer = %desc.digest, "streamed unpack failed; unpacking from the store");
            Ok(None)
        }
        None => Ok(None),
    }
}

/// Pulls `r` into the image store.
pub async fn pull(
    images: Arc<ImageService>,
    r: &Reference,
    creds: Option<Credentials>,
    sink: Sink,
) -> Result<PullOutcome, ClientError> {
    let host = registry_host(&r.domain);
    let client = Arc::new(RegistryClient::new(&host, creds)?);
    let repo = r.path.clone();
    let reference = match (&r.digest, &r.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => "latest".to_string(),
    };
    let (top, top_mt, top_digest) = client.get_manifest(&repo, &reference, &ACCEPT).await?;
    sink(progress::status_id(
        &format!("Pulling from {}", r.familiar_repository()),
        r.tag.as_deref().unwrap_or(&reference),
    ));
    let (mbytes, mt, mdigest) = if manifest::is_index(&top_mt) {
        let child = pick_platform(&top, &format!("{}:{reference}", r.familiar_repository()))?;
        client.get_manifest(&repo, &child.digest.to_string(), &ACCEPT).await?
    } else {
        (top.clone(), top_mt.clone(), top_digest.clone())
    };
    let m = Manifest::parse(&mbytes, Some(&mt).filter(|s| !s.is_empty()).map(String::as_str))
        .map_err(|e| ClientError::Invalid(format!("manifest {mdigest}: {}", e.message)))?;
    if manifest::is_index(&m.media_type) || m.blobs.is_empty() {
        return Err(ClientError::Invalid(format!(
            "manifest {mdigest} is not an image manifest"
        )));
    }
    let config = m.blobs[0].clone();
    let layers: Vec<Descriptor> = m.blobs[1..].to_vec();
    if let Some(f) = layers.iter().find(|l| l.foreign) {
        return Err(ClientError::Invalid(format!(
            "layer {} is a foreign layer (fetched from outside the registry), which hako does not pull",
            f.digest
        )));
    }
    let config_id = store_digest(&config.digest)?;
    let lease = Arc::new(images.lease());

    // The config is small and needed for the diff IDs.
    if !images.content().has(&lease, &config_id) {
        download(
            client.clone(),
            repo.clone(),
            config.clone(),
            images.clone(),
            lease.clone(),
            None,
            None,
        )
        .await?;
    }
    let cfg_bytes = images.content().read_blob(&config_id).map_err(local)?;
    let cfg: Value = serde_json::from_slice(&cfg_bytes)
        .map_err(|e| ClientError::Invalid(format!("image config {config_id}: {e}")))?;
    let diff_ids: Vec<hako_store::Digest> = cfg["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| a.iter().filter_map(|d| d.as_str()?.parse().ok()).collect())
        .unwrap_or_default();
    if diff_ids.len() != layers.len() {
        return Err(ClientError::Invalid(format!(
            "manifest {mdigest} has {} layers but its config lists {} diff_ids",
            layers.len(),
            diff_ids.len()
        )));
    }

    // Start every missing layer's download at once (PARALLEL at a time).
    let sem = Arc::new(Semaphore::new(PARALLEL));
    let mut jobs = Vec::new();
    // Chain IDs follow from the config alone, so every layer can unpack as it downloads.
    let chains = hako_image::model::chain_ids(&diff_ids);
    for (i, l) in layers.iter().enumerate() {
        let id = progress::short(&l.digest);
        let blob = store_digest(&l.digest)?;
        if images.content().has(&lease, &blob) {
            sink(progress::layer(&id, "Already exists"));
            jobs.push(None);
            continue;
        }
        sink(progress::layer(&id, "Pulling fs layer"));
        let (c, rp, d, im, ls, sk, sem) = (
            client.clone(),
            repo.clone(),
            l.clone(),
            images.clone(),
            lease.clone(),
            sink.clone(),
            sem.clone(),
        );
        let job = UnpackJob {
            parent: if i == 0 { None } else { Some(chains[i - 1].clone()) },
            diff_id: diff_ids[i].clone(),
        };
        jobs.push(Some(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.map_err(local)?;
            download(c, rp, d, im, ls, Some(sk), Some(job)).await
        })));
    }

    // Unpack bottom-up as each layer arrives.
    let known: Arc<BTreeMap<hako_store::Digest, LayerRecord>> = Arc::new(images.known_layers().map_err(local)?);
    let mut records: Vec<LayerRecord> = Vec::new();
    let mut parent: Option<hako_store::Digest> = None;
    let mut first_err = None;
    for ((l, diff), job) in layers.iter().zip(&diff_ids).zip(jobs) {
        let fresh = job.is_some();
        let mut streamed = None;
        if let Some(j) = job {
            match j.await.map_err(local).and_then(|r| r) {
                Ok(u) => streamed = u,
                Err(e) => {
                    first_err.get_or_insert(e);
                    continue;
                }
            }
        }
        if first_err.is_some() {
            continue;
        }
        let id = progress::short(&l.digest);
        if fresh {
            sink(progress::layer(&id, "Extracting"));
        }
        let blob = store_digest(&l.digest)?;
        let rec = match streamed {
            Some(u) => LayerRecord {
                blob,
                media_type: l.media_type.clone(),
                blob_size: l.size,
                diff_id: u.diff_id,
                chain_id: u.chain_id,
                size: u.size,
                tar_size: u.tar_size,
            },
            None => {
                let (im, ls, kn) = (images.clone(), lease.clone(), known.clone());
                let (mt, p, dd) = (l.media_type.clone(), parent.clone(), diff.clone());
                tokio::task::spawn_blocking(move || im.ensure_layer(&ls, &blob, &mt, p.as_ref(), Some(&dd), &kn))
                    .await
                    .map_err(local)?
                    .map_err(|e| ClientError::Invalid(format!("layer {}: {e}", l.digest)))?
            }
        };
        if fresh {
            sink(progress::layer(&id, "Pull complete"));
        }
        parent = Some(rec.chain_id.clone());
        records.push(rec);
    }
    if let Some(e) = first_err {
        return Err(e);
    }

    // Keep the manifest as pulled: a push of this image sends the same bytes and digest.
    let (im, ls, mb) = (images.clone(), lease.clone(), mbytes.clone());
    let manifest_id = tokio::task::spawn_blocking(move || im.content().write_blob(&ls, &mb))
        .await
        .map_err(local)?
        .map_err(local)?;
    let rec = ImageRecord {
        id: config_id.clone(),
        manifest: manifest_id,
        layers: records,
        created: cfg["created"].as_str().map(String::from),
        last_tag_time: None,
    };
    let tags: Vec<Reference> = match &r.tag {
        Some(_) if r.digest.is_none() => vec![r.clone()],
        _ => vec![],
    };
    let digests = match top_digest.to_store() {
        Some(d) => vec![Reference {
            domain: r.domain.clone(),
            path: r.path.clone(),
            tag: None,
            digest: Some(d),
        }],
        None => vec![],
    };
    let up_to_date = images
        .resolve(&r.to_string())
        .map(|old| old.id == config_id)
        .unwrap_or(false);
    let im = images.clone();
    tokio::task::spawn_blocking(move || im.register(&rec, &tags, &digests))
        .await
        .map_err(local)?
        .map_err(local)?;
    drop(lease);
    sink(progress::status(format!("Digest: {top_digest}")));
    let name = hako_image::reference::familiar(&r.to_string());
    sink(progress::status(if up_to_date {
        format!("Status: Image is up to date for {name}")
    } else {
        format!("Status: Downloaded newer image for {name}")
    }));
    Ok(PullOutcome {
        id: config_id,
        digest: top_digest,
        up_to_date,
    })
}
