//! The engine's pull and push (hako-registry's client into hako-image's ImageService)
//! against a real registry server on loopback: round trip with the same digests, pulls by
//! digest and through an index, corrupt blobs refused, a broken download resumed with a
//! Range request, and the token flow.

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

/// A loopback TCP proxy that cuts the first connection carrying more than `cut_after`
/// response bytes, and records whether any request asked for a Range.
struct CuttingProxy {
    port: u16,
    saw_range: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl CuttingProxy {
    fn start(upstream: std::net::SocketAddr, cut_after: usize) -> CuttingProxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let saw_range = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let cut = Arc::new(AtomicBool::new(false));
        let (sr, st) = (saw_range.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let (client, _) = match l.accept() {
                    Ok(c) => c,
                    Err(_) => {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                        continue;
                    }
                };
                client.set_nonblocking(false).unwrap();
                let server = TcpStream::connect(upstream).unwrap();
                let (mut c1, mut s1) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let sr = sr.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    while let Ok(n) = c1.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        if String::from_utf8_lossy(&buf[..n])
                            .to_ascii_lowercase()
                            .contains("range: bytes=")
                        {
                            sr.store(true, Ordering::Relaxed);
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
                        if sent > cut_after && !cut.swap(true, Ordering::Relaxed) {
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
        CuttingProxy { port, saw_range, stop }
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
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
    let proxy = CuttingProxy::start(reg.addr(), 1_000_000);
    let via = format!("127.0.0.1:{}/big:v1", proxy.port);
    let dst = Engine::new();
    let (s, _) = sink();
    let p = pull::pull(dst.images.clone(), &Reference::parse(&via).unwrap(), None, s)
        .await
        .unwrap();
    assert_eq!(p.id, rec.id);
    assert!(
        proxy.saw_range.load(Ordering::Relaxed),
        "the pull did not resume with a Range request"
    );
    assert!(dst.images.content().verify(&rec.layers[0].blob).unwrap());
    assert!(dst.images.check().unwrap().is_empty());
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
