//! The engine's pull and push (hako-registry's client into hako-image's ImageService)
//! against a real registry server on loopback: round trip with the same digests, pulls by
//! digest and through an index, corrupt blobs refused, a broken download resumed with a
//! Range request (in the same pull, and by the next process after a failed one), kept bytes
//! that cannot be used fetched again, and the token flow.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::{json, Value};

use common::Reg;
use hako_image::{ImageService, ImportOptions, Reference};
use hako_registry::client::progress::Sink;
use hako_registry::client::{pull, push, Credentials};

/// Deterministic incompressible bytes.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A gzipped tar with one file of `size` bytes.
fn layer_tgz(name: &str, size: usize, seed: u64) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let data = noise(size, seed);
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, name, &data[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

struct Engine {
    _dir: tempfile::TempDir,
    images: Arc<ImageService>,
}

impl Engine {
    fn new() -> Engine {
        let dir = tempfile::Builder::new()
            .prefix("hako-engine-test-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let images = Arc::new(ImageService::open(&dir.path().join("root")).unwrap());
        Engine { _dir: dir, images }
    }

    /// Closes the store and opens the same root again, as the next daemon would.
    fn reopen(self) -> Engine {
        let Engine { _dir, images } = self;
        let root = images.root().to_path_buf();
        // Tasks of the failed pull may still hold it for a moment.
        let start = std::time::Instant::now();
        while Arc::strong_count(&images) > 1 && start.elapsed().as_secs() < 10 {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        drop(images);
        let images = Arc::new(ImageService::open(&root).unwrap());
        Engine { _dir, images }
    }

    fn import(&self, name: &str, size: usize, seed: u64) -> hako_image::ImageRecord {
        let r = Reference::parse(name).unwrap();
        let tgz = layer_tgz("data.bin", size, seed);
        let opts = ImportOptions {
            changes: &[],
            message: "",
            tag: Some(&r),
            source: "test",
        };
        self.images.import(&tgz[..], &opts).unwrap()
    }
}

fn sink() -> (Sink, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    (Arc::new(move |v| s2.lock().unwrap().push(v)), seen)
}

fn statuses(seen: &Arc<Mutex<Vec<Value>>>) -> Vec<String> {
    seen.lock()
        .unwrap()
        .iter()
        .filter_map(|v| v["status"].as_str().map(String::from))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_then_pull_keeps_the_digest() {
    let reg = Reg::start().await;
    let host = reg.addr().to_string();
    let src = Engine::new();
    let name = format!("{host}/app/one:v1");
    let rec = src.import(&name, 300_000, 1);
    let (s, seen) = sink();
    let out = push::push(src.images.clone(), &Reference::parse(&name).unwrap(), None, s)
        .await
        .unwrap();
    assert_eq!(out.tag, "v1");
    assert!(statuses(&seen).iter().any(|m| m == "Pushed"));
    assert!(seen
        .lock()
        .unwrap()
        .iter()
        .any(|v| v["aux"]["Digest"] == out.digest.to_string()));
    // Pushing again: every layer is already there.
    let (s, seen) = sink();
    let again = push::push(src.images.clone(), &Reference::parse(&name).unwrap(), None, s)
        .await
        .unwrap();
    assert_eq!(again.digest, out.digest);
    assert!(statuses(&seen).iter().any(|m| m == "Layer already exists"));
    // The registry holds exactly the manifest the engine stored.
    let m = reg.get(&format!("/v2/app/one/manifests/{}", out.digest)).await;
    assert_eq!(&m.body[..], &src.images.content().read_blob(&rec.manifest).unwrap()[..]);

    let dst = Engine::new();
    let (s, seen) = sink();
    let p = pull::pull(dst.images.clone(), &Reference::parse(&name).unwrap(), None, s)
        .await
        .unwrap();
    assert_eq!(p.id, rec.id);
    assert_eq!(p.digest, out.digest);
    assert!(
        statuses(&seen).iter().any(|m| m == "Pull complete"),
        "{:?}",
        statuses(&seen)
    );
    let got = dst.images.resolve(&name).unwrap();
    assert_eq!(got.id, rec.id);
    assert_eq!(got.manifest, rec.manifest);
    assert_eq!(got.layers[0].diff_id, rec.layers[0].diff_id);
    assert!(dst
        .images
        .snapshot_path(&got.layers[0].chain_id)
        .join("data.bin")
        .is_file());
    assert_eq!(
        dst.images.digests_of(&got.id).unwrap(),
        vec![format!("{host}/app/one@{}", out.digest)]
    );
    assert!(dst.images.check().unwrap().is_empty());
    // By digest, with the layer already present.
    let (s, seen) = sink();
    let by_digest = Reference::parse(&format!("{host}/app/one@{}", out.digest)).unwrap();
    let p = pull::pull(dst.images.clone(), &by_digest, None, s).await.unwrap();
    assert_eq!(p.id, rec.id);
    assert!(statuses(&seen).iter().any(|m| m == "Already exists"));
    assert!(
        statuses(&seen)
            .iter()
            .any(|m| m.starts_with("Status: Image is up to date")),
        "{:?}",
        statuses(&seen)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_through_an_index_picks_this_platform() {
    let reg = Reg::start().await;
    let host = reg.addr().to_string();
    let src = Engine::new();
    let name = format!("{host}/multi:amd");
    let rec = src.import(&name, 10_000, 2);
    let (s, _) = sink();
    let out = push::push(src.images.clone(), &Reference::parse(&name).unwrap(), None, s)
        .await
        .unwrap();
    let arch = hako_image::import::host_arch();
    let index = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": out.digest.to_string(), "size": out.size,
             "platform": {"architecture": "s390x-not-this", "os": "linux"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": out.digest.to_string(), "size": out.size,
             "platform": {"architecture": arch, "os": "linux"}},
        ],
    })
    .to_string();
    let p = reg
        .put_manifest(
            "multi",
            "all",
            "application/vnd.oci.image.index.v1+json",
            index.as_bytes(),
        )
        .await;
    assert_eq!(p.status, StatusCode::CREATED);
    let index_digest = p.header("docker-content-digest").to_string();
    let dst = Engine::new();
    let (s, _) = sink();
    let all = format!("{host}/multi:all");
    let got = pull::pull(dst.images.clone(), &Reference::parse(&all).unwrap(), None, s)
        .await
        .unwrap();
    assert_eq!(got.id, rec.id);
    // The repo digest is the index's, as docker records it.
    assert_eq!(got.digest.to_string(), index_digest);
    assert_eq!(
        dst.images.digests_of(&rec.id).unwrap(),
        vec![format!("{host}/multi@{index_digest}")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_blob_is_refused_and_nothing_registered() {
    let reg = Reg::start().await;
    let host = reg.addr().to_string();
    let src = Engine::new();
    let name = format!("{host}/bad:v1");
    let rec = src.import(&name, 50_000, 3);
    let (s, _) = sink();
    push::push(src.images.clone(), &Reference::parse(&name).unwrap(), None, s)
        .await
        .unwrap();
    // Flip a byte of the layer in the registry's storage (same size, wrong content).
    let blob = reg.root().join("blobs/sha256").join(rec.layers[0].blob.hex());
    let mut data = std::fs::read(&blob).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&blob, &data).unwrap();
    let dst = Engine::new();
    let (s, _) = sink();
    let e = pull::pull(dst.images.clone(), &Reference::parse(&name).unwrap(), None, s)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("corrupt"), "{e}");
    assert!(dst.images.resolve(&name).is_err());
    assert!(!dst.images.content().path(&rec.layers[0].blob).exists());
    // Nor kept for a resume: bytes that failed verification are not a prefix to build on.
    assert_eq!(ingest_files(&dst), 0);
    // A missing tag is a 404 with docker's words.
    let (s, _) = sink();
    let e = pull::pull(
        dst.images.clone(),
        &Reference::parse(&format!("{host}/bad:nope")).unwrap(),
        None,
        s,
    )
    .await
    .unwrap_err();
    assert_eq!(e.status(), Some(StatusCode::NOT_FOUND));
    assert!(e.to_string().contains("not found: manifest unknown"), "{e}");
}

/// What a [`Proxy`] does to the traffic it forwards.
#[derive(Clone, Copy, Default)]
struct Mode {
    /// Cut the first connection that carries more than this many response bytes.
    cut_after: Option<usize>,
    /// After that cut, close every new connection at once (the registry is gone).
    then_refuse: bool,
    /// Hide `Range` from the registry, as a server that ignores it would.
    strip_range: bool,
}

/// A loopback TCP proxy in front of the registry that records the `Range` header of every
/// blob GET ("" when none) and misbehaves as its [`Mode`] says.
struct Proxy {
    port: u16,
    blob_gets: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: std::net::SocketAddr, mode: Mode) -> Proxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let blob_gets = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(AtomicBool::new(false));
        let (bg, st) = (blob_gets.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let (client, _) = match l.accept() {
                    Ok(c) => c,
                    Err(_) => {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                        continue;
                    }
                };
                if mode.then_refuse && cut.load(Ordering::Relaxed) {
                    continue; // dropped: closed at once
                }
                client.set_nonblocking(false).unwrap();
                let server = TcpStream::connect(upstream).unwrap();
                let (mut c1, mut s1) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (bg, cut1) = (bg.clone(), cut.clone());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    while let Ok(n) = c1.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        if mode.then_refuse && cut1.load(Ordering::Relaxed) {
                            // Pooled connections die with the registry too.
                            let _ = c1.shutdown(std::net::Shutdown::Both);
                            let _ = s1.shutdown(std::net::Shutdown::Both);
                            break;
                        }
                        let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
                        if head.starts_with("get /v2/") && head.contains("/blobs/sha256:") {
                            let range = head
                                .split("\r\n")
                                .find_map(|l| l.strip_prefix("range:"))
                                .map(|v| v.trim().to_string())
                                .unwrap_or_default();
                            bg.lock().unwrap().push(range);
                        }
                        if mode.strip_range {
                            // Renamed in place (same length): the registry sees no Range.
                            if let Some(at) = head.find("\r\nrange:") {
                                buf[at + 2..at + 8].copy_from_slice(b"x-rng:");
                            }
                        }
                        if s1.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = s1.shutdown(std::net::Shutdown::Write);
                });
                let (mut s2, mut c2) = (server, client);
                let cut = cut.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    let mut sent = 0usize;
                    while let Ok(n) = s2.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        if c2.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        sent += n;
                        if mode.cut_after.is_some_and(|c| sent > c) && !cut.swap(true, Ordering::Relaxed) {
                            // Drop the connection mid-body, once.
                            let _ = c2.shutdown(std::net::Shutdown::Both);
                            let _ = s2.shutdown(std::net::Shutdown::Both);
                            break;
                        }
                    }
                    let _ = c2.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        Proxy { port, blob_gets, stop }
    }

    fn blob_gets(&self) -> Vec<String> {
        self.blob_gets.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The partial download of `blob` an engine keeps in its content store's ingest.
fn kept(e: &Engine, blob: &hako_store::Digest) -> std::path::PathBuf {
    e.images
        .root()
        .join("content/ingest")
        .join(format!("sha256-{}", blob.hex()))
}

fn ingest_files(e: &Engine) -> usize {
    std::fs::read_dir(e.images.root().join("content/ingest"))
        .unwrap()
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_download_resumes_with_range() {
    let reg = Reg::start().await;
    let src = Engine::new();
    let direct = format!("{}/big:v1", reg.addr());
    let rec = src.import(&direct, 4_000_000, 4);
    let (s, _) = sink();
    push::push(src.images.clone(), &Reference::parse(&direct).unwrap(), None, s)
        .await
        .unwrap();
    let proxy = Proxy::start(
        reg.addr(),
        Mode {
            cut_after: Some(1_000_000),
            ..Mode::default()
        },
    );
    let via = format!("127.0.0.1:{}/big:v1", proxy.port);
    let dst = Engine::new();
    let (s, _) = sink();
    let p = pull::pull(dst.images.clone(), &Reference::parse(&via).unwrap(), None, s)
        .await
        .unwrap();
    assert_eq!(p.id, rec.id);
    assert!(
        proxy.blob_gets().iter().any(|r| r.starts_with("bytes=")),
        "the pull did not resume with a Range request: {:?}",
        proxy.blob_gets()
    );
    assert!(dst.images.content().verify(&rec.layers[0].blob).unwrap());
    assert!(dst.images.check().unwrap().is_empty());
    assert_eq!(ingest_files(&dst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_pull_is_resumed_by_the_next_process() {
    let reg = Reg::start().await;
    let src = Engine::new();
    let direct = format!("{}/resume:v1", reg.addr());
    let rec = src.import(&direct, 6_000_000, 6);
    let (s, _) = sink();
    push::push(src.images.clone(), &Reference::parse(&direct).unwrap(), None, s)
        .await
        .unwrap();
    let layer = rec.layers[0].blob.clone();
    // The registry goes away in the middle of the layer: the pull fails after its retries.
    let proxy = Proxy::start(
        reg.addr(),
        Mode {
            cut_after: Some(2_000_000),
            then_refuse: true,
            ..Mode::default()
        },
    );
    let via = format!("127.0.0.1:{}/resume:v1", proxy.port);
    let dst = Engine::new();
    let (s, _) = sink();
    pull::pull(dst.images.clone(), &Reference::parse(&via).unwrap(), None, s)
        .await
        .unwrap_err();
    assert!(dst.images.resolve(&via).is_err());
    let size = std::fs::metadata(kept(&dst, &layer)).unwrap().len();
    assert!(size > 0 && size < rec.layers[0].blob_size, "kept {size} bytes");
    drop(proxy);
    // A new process on the same root (the store opens again) asks only for the rest.
    let dst = dst.reopen();
    let proxy = Proxy::start(reg.addr(), Mode::default());
    let via = format!("127.0.0.1:{}/resume:v1", proxy.port);
    let (s, _) = sink();
    let p = pull::pull(dst.images.clone(), &Reference::parse(&via).unwrap(), None, s)
        .await
        .unwrap();
    assert_eq!(p.id, rec.id);
    // The config came whole the first time; the layer continues at the kept size.
    assert_eq!(proxy.blob_gets(), vec![format!("bytes={size}-")]);
    assert!(dst.images.content().verify(&layer).unwrap());
    assert!(dst.images.check().unwrap().is_empty());
    assert_eq!(ingest_files(&dst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_bytes_that_cannot_be_used_are_fetched_again() {
    let reg = Reg::start().await;
    let src = Engine::new();
    let direct = format!("{}/again:v1", reg.addr());
    let rec = src.import(&direct, 3_000_000, 8);
    let (s, _) = sink();
    push::push(src.images.clone(), &Reference::parse(&direct).unwrap(), None, s)
        .await
        .unwrap();
    let layer = rec.layers[0].blob.clone();
    let blob = src.images.content().read_blob(&layer).unwrap();
    // A server that ignores Range answers 200 with the whole blob: the kept prefix is
    // dropped and the download starts over.
    let proxy = Proxy::start(
        reg.addr(),
        Mode {
            strip_range: true,
            ..Mode::default()
        },
    );
    let via = format!("127.0.0.1:{}/again:v1", proxy.port);
    let dst = Engine::new();
    std::fs::write(kept(&dst, &layer), &blob[..1_000_000]).unwrap();
    let (s, _) = sink();
    let p = pull::pull(dst.images.clone(), &Reference::parse(&via).unwrap(), None, s)
        .await
        .unwrap();
    assert_eq!(p.id, rec.id);
    assert_eq!(proxy.blob_gets(), vec![String::new(), "bytes=1000000-".to_string()]);
    assert!(dst.images.check().unwrap().is_empty());
    assert_eq!(ingest_files(&dst), 0);
    // Kept bytes that are not the blob's (a torn write) fail the digest over the whole blob;
    // the pull then downloads it once more from byte 0 and succeeds.
    let proxy = Proxy::start(reg.addr(), Mode::default());
    let via = format!("127.0.0.1:{}/again:v1", proxy.port);
    let dst = Engine::new();
    let mut torn = blob[..1_000_000].to_vec();
    torn[500_000..].fill(0);
    std::fs::write(kept(&dst, &layer), &torn).unwrap();
    let (s, _) = sink();
    let p = pull::pull(dst.images.clone(), &Reference::parse(&via).unwrap(), None, s)
        .await
        .unwrap();
    assert_eq!(p.id, rec.id);
    assert_eq!(
        proxy.blob_gets(),
        vec![String::new(), "bytes=1000000-".to_string(), String::new()]
    );
    assert!(dst.images.content().verify(&layer).unwrap());
    assert!(dst.images.check().unwrap().is_empty());
    assert_eq!(ingest_files(&dst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_flow_with_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let h = dir.path().join("htpasswd");
    std::fs::write(&h, format!("alice:{}\n", bcrypt::hash("pw", 4).unwrap())).unwrap();
    let reg = Reg::start_with(|c| {
        c.auth.mode = hako_registry::config::AuthMode::Token;
        c.auth.htpasswd = Some(h.clone());
    })
    .await;
    let host = reg.addr().to_string();
    let src = Engine::new();
    let name = format!("{host}/private/app:v1");
    src.import(&name, 1000, 5);
    let r = Reference::parse(&name).unwrap();
    let (s, _) = sink();
    let e = push::push(src.images.clone(), &r, None, s).await.unwrap_err();
    assert_eq!(e.status(), Some(StatusCode::UNAUTHORIZED), "{e}");
    let bad = Credentials {
        username: "alice".into(),
        password: "wrong".into(),
        ..Default::default()
    };
    let (s, _) = sink();
    assert!(push::push(src.images.clone(), &r, Some(bad.clone()), s).await.is_err());
    let c = hako_registry::client::RegistryClient::new(&host, Some(bad)).unwrap();
    assert!(c.login().await.is_err());
    let good = Credentials {
        username: "alice".into(),
        password: "pw".into(),
        ..Default::default()
    };
    let c = hako_registry::client::RegistryClient::new(&host, Some(good.clone())).unwrap();
    c.login().await.unwrap();
    let (s, _) = sink();
    push::push(src.images.clone(), &r, Some(good.clone()), s).await.unwrap();
    let dst = Engine::new();
    let (s, _) = sink();
    pull::pull(dst.images.clone(), &r, Some(good), s).await.unwrap();
    // And nothing was stored by the refused attempts: one repository, one tag.
    let anon = reg
        .req(Method::GET, "/v2/private/app/tags/list", &[], Bytes::new())
        .await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
}
