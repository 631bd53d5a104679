//! The engine's push: the image's manifest as stored (for a pulled image, the bytes it
//! was pulled as, so its digest stays the same everywhere), every blob the registry lacks
//! uploaded in parallel from the content store, then the manifest under the tag.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::TryStreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use hako_image::{ImageService, Reference};

use super::progress::{self, Sink, Throttle};
use super::{registry_host, Body, ClientError, Credentials, RegistryClient};
use crate::digest::Digest;
use crate::manifest::{self, Descriptor, Manifest};

const PARALLEL: usize = 3;

#[derive(Debug, Clone)]
pub struct PushOutcome {
    pub tag: String,
    pub digest: Digest,
    pub size: usize,
}

fn local(e: impl std::fmt::Display) -> ClientError {
    ClientError::Local(e.to_string())
}

/// A request body streamed from a committed blob, counting what was sent.
fn blob_body(images: &ImageService, d: &hako_store::Digest, sent: Arc<AtomicU64>) -> Body {
    match images.content().open_blob(d) {
        Ok(f) => {
            sent.store(0, Ordering::Relaxed);
            let file = tokio::fs::File::from_std(f);
            let s = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20).map_ok(move |b| {
                sent.fetch_add(b.len() as u64, Ordering::Relaxed);
                Frame::data(b)
            });
            BodyExt::boxed(StreamBody::new(s))
        }
        Err(e) => {
            let err = std::io::Error::other(e.to_string());
            BodyExt::boxed(StreamBody::new(futures_util::stream::once(async move { Err(err) })))
        }
    }
}

async fn push_blob(
    client: Arc<RegistryClient>,
    images: Arc<ImageService>,
    repo: String,
    desc: Descriptor,
    sink: Option<Sink>,
) -> Result<(), ClientError> {
    let id = progress::short(&desc.digest);
    let scope = RegistryClient::push_scope(&repo);
    if client.head_blob(&repo, &desc.digest, &scope).await?.is_some() {
        if let Some(s) = &sink {
            s(progress::layer(&id, "Layer already exists"));
        }
        return Ok(());
    }
    let local_digest = desc
        .digest
        .to_store()
        .ok_or_else(|| local(format!("blob {} is not sha256", desc.digest)))?;
    let sent = Arc::new(AtomicU64::new(0));
    // Progress from a ticker, since the body is pulled by the HTTP client.
    let ticker = sink.clone().map(|s| {
        let (sent, id, total) = (sent.clone(), id.clone(), desc.size);
        tokio::spawn(async move {
            let mut t = Throttle::new();
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                if t.ready() {
                    s(progress::bytes(&id, "Pushing", sent.load(Ordering::Relaxed), total));
                }
            }
        })
    });
    let im = images.clone();
    let s2 = sent.clone();
    let r = client
        .upload_blob(&repo, &desc.digest, desc.size, move || {
            blob_body(&im, &local_digest, s2.clone())
        })
        .await;
    if let Some(t) = ticker {
        t.abort();
    }
    r?;
    if let Some(s) = &sink {
        s(progress::layer(&id, "Pushed"));
    }
    Ok(())
}

/// Pushes the local image `name` (a `repo:tag` reference) to its registry.
pub async fn push(
    images: Arc<ImageService>,
    r: &Reference,
    creds: Option<Credentials>,
    sink: Sink,
) -> Result<PushOutcome, ClientError> {
    let tag = r
        .tag
        .clone()
        .ok_or_else(|| ClientError::Invalid("push needs a tag, not a digest".into()))?;
    let rec = images
        .resolve(&r.to_string())
        .map_err(|e| ClientError::Invalid(e.to_string()))?;
    let mbytes = images.content().read_blob(&rec.manifest).map_err(local)?;
    let mv: Value =
        serde_json::from_slice(&mbytes).map_err(|e| local(format!("stored manifest {}: {e}", rec.manifest)))?;
    let media_type = mv["mediaType"].as_str().unwrap_or(manifest::OCI_MANIFEST).to_string();
    let m =
        Manifest::parse(&mbytes, Some(&media_type)).map_err(|e| local(format!("stored manifest: {}", e.message)))?;
    let host = registry_host(&r.domain);
    let client = Arc::new(RegistryClient::new(&host, creds)?);
    let repo = r.path.clone();
    sink(progress::status(format!(
        "The push refers to repository [{}]",
        r.familiar_repository()
    )));
    let (config, layers) = m
        .blobs
        .split_first()
        .ok_or_else(|| local("stored manifest has no config"))?;
    for l in layers.iter().rev() {
        sink(progress::layer(&progress::short(&l.digest), "Preparing"));
    }
    let sem = Arc::new(Semaphore::new(PARALLEL));
    let mut jobs = Vec::new();
    let errors = Arc::new(Mutex::new(Vec::new()));
    for (d, show) in layers
        .iter()
        .rev()
        .map(|l| (l, true))
        .chain(std::iter::once((config, false)))
    {
        let (c, im, rp, d, sk, sem, errs) = (
            client.clone(),
            images.clone(),
            repo.clone(),
            d.clone(),
            sink.clone(),
            sem.clone(),
            errors.clone(),
        );
        jobs.push(tokio::spawn(async move {
            let Ok(_permit) = sem.acquire_owned().await else { return };
            if let Err(e) = push_blob(c, im, rp, d, if show { Some(sk) } else { None }).await {
                errs.lock().expect("poisoned only by a panic").push(e); // invariant
            }
        }));
    }
    for j in jobs {
        j.await.map_err(local)?;
    }
    if let Some(e) = errors.lock().expect("poisoned only by a panic").drain(..).next() {
        return Err(e); // invariant above
    }
    let digest = client.put_manifest(&repo, &tag, &media_type, &mbytes).await?;
    let size = mbytes.len();
    sink(progress::status(format!("{tag}: digest: {digest} size: {size}")));
    sink(json!({"progressDetail": {}, "aux": {"Tag": tag, "Digest": digest.to_string(), "Size": size}}));
    // Like dockerd: the pushed image now has this repo digest.
    if let Some(d) = digest.to_store() {
        let rd = Reference {
            domain: r.domain.clone(),
            path: r.path.clone(),
            tag: None,
            digest: Some(d),
        };
        let im = images.clone();
        let rec2 = rec.clone();
        let _ = tokio::task::spawn_blocking(move || im.register(&rec2, &[], &[rd])).await;
    }
    Ok(PushOutcome { tag, digest, size })
}
