//! The registry with real peers: skopeo and podman against `hako registry serve`; hako's
//! push and pull against the reference registry (Debian's docker-registry, CNCF
//! distribution 2.8) and against hako's own; the docker CLI pushing and pulling through
//! hakod; `hako login`/`logout` with the token flow; `kill -9` of the registry during
//! 20 concurrent pushes; and `kill -9` of hakod in the middle of a pull, which the next pull
//! resumes. Every server a test starts listens on 127.0.0.1 only and is stopped by PID;
//! every temp dir is removed.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use common::{busybox_tarball, hako_bin, require, run_ok, stderr, stdout, Podman, TestDaemon};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Waits until `GET /v2/` on the port answers (any status).
fn wait_http(port: u16, child: &mut Child, log: &Path) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.write_all(b"GET /v2/ HTTP/1.0\r\nHost: x\r\n\r\n");
            let mut buf = [0u8; 12];
            if std::io::Read::read(&mut s, &mut buf).map(|n| n > 0).unwrap_or(false) {
                return;
            }
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "server exited ({st}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "server on {port} did not answer: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// `hako registry serve` as its own process.
struct HakoRegistry {
    dir: tempfile::TempDir,
    port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

impl HakoRegistry {
    fn start(args: &[&str]) -> HakoRegistry {
        let dir = tempfile::Builder::new()
            .prefix("hako-registry-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let mut r = HakoRegistry {
            dir,
            port: free_port(),
            args: args.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        r.spawn();
        r
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let log_path = self.dir.path().join("registry.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let mut child = Command::new(hako_bin())
            .args(["registry", "serve", "--addr", &self.host(), "--root"])
            .arg(self.root())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        wait_http(self.port, &mut child, &log_path);
        self.child = Some(child);
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn gc(&self, extra: &[&str]) -> String {
        run_ok(
            Command::new(hako_bin())
                .args(["registry", "gc", "--root"])
                .arg(self.root())
                .args(extra),
        )
    }
}

impl Drop for HakoRegistry {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = rustix::process::kill_process(rustix::process::Pid::from_child(&c), rustix::process::Signal::TERM);
            let _ = c.wait();
        }
    }
}

/// The reference registry: `docker-registry serve CONFIG.yml`, filesystem storage, on
/// 127.0.0.1 only, no auth.
struct Distribution {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl Distribution {
    fn start() -> Distribution {
        require("docker-registry");
        let dir = tempfile::Builder::new()
            .prefix("hako-distribution-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let port = free_port();
        let cfg = dir.path().join("config.yml");
        std::fs::write(
            &cfg,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let log_path = dir.path().join("registry.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        wait_http(port, &mut child, &log_path);
        Distribution {
            dir,
            port,
            child: Some(child),
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = &self.dir;
    }
}

/// skopeo with no signature policy (local test registries only).
fn skopeo(args: &[&str]) -> String {
    require("skopeo");
    run_ok(Command::new("skopeo").arg("--insecure-policy").args(args))
}

fn skopeo_digest(image: &str) -> String {
    let v: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{image}"),
    ]))
    .unwrap();
    v["Digest"].as_str().unwrap().to_string()
}

/// Writes an OCI image layout with the given gzipped layers; returns the manifest digest.
fn oci_layout(dir: &Path, layers: &[Vec<u8>]) -> String {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    let put = |b: &[u8]| {
        let h = sha256_hex(b);
        std::fs::write(dir.join("blobs/sha256").join(&h), b).unwrap();
        format!("sha256:{h}")
    };
    let mut descs = Vec::new();
    let mut diffs = Vec::new();
    for l in layers {
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&l[..]), &mut raw).unwrap();
        diffs.push(format!("sha256:{}", sha256_hex(&raw)));
        descs.push(
            json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(l), "size": l.len()}),
        );
    }
    let cfg = json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]}, "rootfs": {"type": "layers", "diff_ids": diffs}}).to_string();
    let cd = put(cfg.as_bytes());
    let m = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cfg.len()},
        "layers": descs,
    })
    .to_string();
    let md = put(m.as_bytes());
    let index = json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": m.len(), "annotations": {"org.opencontainers.image.ref.name": "latest"}}]});
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    md
}

/// A gzipped tar with one file of `size` pseudo-random bytes.
fn layer(name: &str, size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let data: Vec<u8> = (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(size as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, name, &data[..]).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&b.into_inner().unwrap()).unwrap();
    gz.finish().unwrap()
}

fn hako_ok(d: &TestDaemon, args: &[&str]) -> String {
    d.ok(args)
}

fn hako_digests(d: &TestDaemon, name: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(&d.ok(&["inspect", name])).unwrap();
    v[0]["RepoDigests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------

#[test]
fn skopeo_and_podman_push_and_pull_with_hakos_registry() {
    let reg = HakoRegistry::start(&[]);
    let work = tempfile::Builder::new()
        .prefix("hako-reg-work-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let tgz = std::fs::read(busybox_tarball()).unwrap();
    let md = oci_layout(&work.path().join("src"), &[tgz, layer("extra.bin", 200_000, 7)]);
    let host = reg.host();
    let dest = format!("{host}/lib/busybox:1");
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:latest", work.path().join("src").display()),
        &format!("docker://{dest}"),
    ]);
    assert_eq!(skopeo_digest(&dest), md);
    // skopeo copies it back byte for byte (it verifies every blob's digest).
    let back = work.path().join("back");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{dest}"),
        &format!("oci:{}:x", back.display()),
    ]);
    let idx: Value = serde_json::from_str(&std::fs::read_to_string(back.join("index.json")).unwrap()).unwrap();
    assert_eq!(idx["manifests"][0]["digest"], md);
    // podman pulls it, pushes it under another name; the same digest everywhere.
    let pm = Podman::new();
    pm.ok(&["pull", "--tls-verify=false", &dest]);
    let again = format!("{host}/podman/copy:2");
    pm.ok(&["tag", &dest, &again]);
    pm.ok(&["push", "--tls-verify=false", &again]);
    let pushed = skopeo_digest(&again);
    let tags: Value = serde_json::from_str(&run_ok(
        Command::new("curl").args(["-sf", &format!("http://{host}/v2/podman/copy/tags/list")]),
    ))
    .unwrap();
    assert_eq!(tags["tags"], json!(["2"]));
    // podman may recompress on push; whatever it pushed must pull back intact.
    pm.ok(&["rmi", "-a", "-f"]);
    pm.ok(&["pull", "--tls-verify=false", &again]);
    let v: Value = serde_json::from_str(&pm.ok(&["image", "inspect", &again])).unwrap();
    assert_eq!(v[0]["Digest"].as_str().unwrap(), pushed);
}

#[test]
fn hako_push_pull_with_the_reference_registry_and_hakos() {
    let dist = Distribution::start();
    let reg = HakoRegistry::start(&[]);
    let d = TestDaemon::start();
    d.import_busybox();
    let mut digests = Vec::new();
    for host in [dist.host(), reg.host()] {
        let name = format!("{host}/hako/busybox:v1");
        hako_ok(&d, &["tag", "busybox:latest", &name]);
        let out = hako_ok(&d, &["push", &name]);
        assert!(out.contains("v1: digest: sha256:"), "{out}");
        let digest = out
            .lines()
            .find_map(|l| l.split("digest: ").nth(1))
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_string();
        assert_eq!(skopeo_digest(&name), digest, "{host}");
        digests.push(digest.clone());
        // Pull it back into an empty daemon: same image ID, same repo digest.
        let d2 = TestDaemon::start();
        let out = d2.ok(&["pull", &name]);
        assert!(out.contains(&format!("Digest: {digest}")), "{out}");
        assert_eq!(
            d2.ok(&["inspect", "-f", "{{.Id}}", &name]).trim(),
            d.ok(&["inspect", "-f", "{{.Id}}", "busybox:latest"]).trim()
        );
        assert_eq!(hako_digests(&d2, &name), vec![format!("{host}/hako/busybox@{digest}")]);
        // By digest too.
        d2.ok(&["rmi", &name]);
        d2.ok(&["pull", &format!("{host}/hako/busybox@{digest}")]);
        assert!(
            d2.ok(&["system", "check"]).to_lowercase().contains("no problems")
                || d2.hako(&["system", "check"]).status.success()
        );
    }
    assert_eq!(
        digests[0], digests[1],
        "the same image has one digest on both registries"
    );
    // skopeo copies between the two registries; hako pulls the copy.
    let from = format!("docker://{}/hako/busybox:v1", dist.host());
    let to = format!("docker://{}/copied/busybox:v1", reg.host());
    skopeo(&["copy", "--src-tls-verify=false", "--dest-tls-verify=false", &from, &to]);
    assert_eq!(skopeo_digest(&format!("{}/copied/busybox:v1", reg.host())), digests[0]);
}

#[test]
fn docker_cli_pushes_and_pulls_through_hakod() {
    require("docker");
    let reg = HakoRegistry::start(&[]);
    let d = TestDaemon::start();
    d.import_busybox();
    let name = format!("{}/docker/busybox:latest", reg.host());
    let o = d.docker(&["tag", "busybox:latest", &name]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = d.docker(&["push", &name]);
    assert!(o.status.success(), "docker push: {}\n{}", stderr(&o), d.log());
    let out = stdout(&o);
    assert!(out.contains("latest: digest: sha256:"), "{out}");
    let digest = skopeo_digest(&name);
    assert!(out.contains(&digest));
    let d2 = TestDaemon::start();
    let o = d2.docker(&["pull", &name]);
    assert!(o.status.success(), "docker pull: {}\n{}", stderr(&o), d2.log());
    assert!(stdout(&o).contains(&format!("Digest: {digest}")), "{}", stdout(&o));
    let o = d2.docker(&[
        "images",
        "--digests",
        "--format",
        "{{.Repository}} {{.Tag}} {{.Digest}}",
    ]);
    assert_eq!(
        stdout(&o).trim(),
        format!("{}/docker/busybox latest {digest}", reg.host())
    );
    let o = d2.docker(&["pull", &format!("{}/docker/nothing:here", reg.host())]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("manifest unknown"), "{}", stderr(&o));
}

#[test]
fn login_logout_and_the_token_flow_through_hakod() {
    let work = tempfile::Builder::new()
        .prefix("hako-reg-auth-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let ht = work.path().join("htpasswd");
    // `hako registry htpasswd` writes the bcrypt entry, as `htpasswd -nB` would.
    let mut c = Command::new(hako_bin());
    c.args(["registry", "htpasswd", "--cost", "5", "alice"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut ch = c.spawn().unwrap();
    ch.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let entry = ch.wait_with_output().unwrap();
    assert!(entry.status.success());
    std::fs::write(&ht, &entry.stdout).unwrap();
    let reg = HakoRegistry::start(&["--auth", "token", "--htpasswd", ht.to_str().unwrap()]);
    let d = TestDaemon::start_with_env(&[]);
    d.import_busybox();
    let docker_config = work.path().join("docker-config");
    let env = |c: &mut Command| {
        c.env("DOCKER_CONFIG", &docker_config);
    };
    let name = format!("{}/alice/app:v1", reg.host());
    d.ok(&["tag", "busybox:latest", &name]);
    let run = |args: &[&str], stdin: Option<&str>| -> Output {
        let mut c = d.cmd(args);
        env(&mut c);
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut ch = c.spawn().unwrap();
        if let Some(s) = stdin {
            ch.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        drop(ch.stdin.take());
        ch.wait_with_output().unwrap()
    };
    // Not logged in: the push is refused, and nothing is stored.
    let o = run(&["push", &name], None);
    assert!(!o.status.success());
    assert!(stderr(&o).to_lowercase().contains("unauthorized"), "{}", stderr(&o));
    // Wrong password: login fails, config.json untouched.
    let o = run(
        &["login", "-u", "alice", "--password-stdin", &reg.host()],
        Some("nope\n"),
    );
    assert!(!o.status.success());
    assert!(!docker_config.join("config.json").exists());
    let o = run(
        &["login", "-u", "alice", "--password-stdin", &reg.host()],
        Some("s3cret\n"),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Login Succeeded"));
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(docker_config.join("config.json")).unwrap()).unwrap();
    let auth = cfg["auths"][reg.host()]["auth"].as_str().unwrap();
    assert_eq!(auth, base64_std("alice:s3cret"));
    let o = run(&["push", &name], None);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["logout", &reg.host()], None);
    assert!(stdout(&o).contains("Removing login credentials"));
    let o = run(&["pull", &name], None);
    assert!(!o.status.success(), "pull without credentials succeeded");
}

fn base64_std(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn kill9_during_20_concurrent_pushes_then_gc() {
    let mut reg = HakoRegistry::start(&[]);
    let work = tempfile::Builder::new()
        .prefix("hako-reg-kill-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let mut layouts = Vec::new();
    for i in 0..20 {
        let dir = work.path().join(format!("img{i}"));
        let md = oci_layout(
            &dir,
            &[
                layer("a.bin", 3_000_000, i as u64 + 100),
                layer("common.bin", 500_000, 1),
            ],
        );
        layouts.push((dir, md));
    }
    let mut pushes: Vec<(Child, String, String)> = layouts
        .iter()
        .enumerate()
        .map(|(i, (dir, md))| {
            let dest = format!("{}/crash/img{i}:v1", reg.host());
            let child = Command::new("skopeo")
                .args(["--insecure-policy", "copy", "--dest-tls-verify=false"])
                .arg(format!("oci:{}:latest", dir.display()))
                .arg(format!("docker://{dest}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            (child, dest, md.clone())
        })
        .collect();
    // Kill the registry once a few pushes were acknowledged, while others are in flight.
    let start = Instant::now();
    let mut done = 0;
    while start.elapsed() < Duration::from_secs(60) {
        done = pushes
            .iter_mut()
            .filter_map(|(c, _, _)| c.try_wait().ok().flatten())
            .filter(|s| s.success())
            .count();
        if done >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    reg.kill9();
    let mut acknowledged = Vec::new();
    for (mut c, dest, md) in pushes {
        if c.wait().unwrap().success() {
            acknowledged.push((dest, md));
        }
    }
    assert!(acknowledged.len() >= done && !acknowledged.is_empty());
    assert!(
        acknowledged.len() < 20,
        "every push finished before the kill; the test proves nothing"
    );
    reg.spawn();
    let out = reg.gc(&["--grace", "0"]);
    assert!(out.contains("removed"), "{out}");
    // Everything acknowledged pulls intact (skopeo verifies every digest).
    for (i, (dest, md)) in acknowledged.iter().enumerate() {
        assert_eq!(&skopeo_digest(dest), md);
        let back = work.path().join(format!("back{i}"));
        skopeo(&[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{dest}"),
            &format!("oci:{}:x", back.display()),
        ]);
    }
    // Nothing half-visible: every tag any repository lists pulls intact.
    for i in 0..20 {
        let url = format!("http://{}/v2/crash/img{i}/tags/list", reg.host());
        let o = Command::new("curl").args(["-s", &url]).output().unwrap();
        let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
        for t in v["tags"].as_array().cloned().unwrap_or_default() {
            let dest = format!("{}/crash/img{i}:{}", reg.host(), t.as_str().unwrap());
            let back = work.path().join(format!("check{i}"));
            skopeo(&[
                "copy",
                "--src-tls-verify=false",
                &format!("docker://{dest}"),
                &format!("oci:{}:x", back.display()),
            ]);
        }
    }
    // The interrupted pushes can simply be run again.
    for (i, (dir, md)) in layouts.iter().enumerate() {
        let dest = format!("{}/crash/img{i}:v1", reg.host());
        skopeo(&[
            "copy",
            "--dest-tls-verify=false",
            &format!("oci:{}:latest", dir.display()),
            &format!("docker://{dest}"),
        ]);
        assert_eq!(&skopeo_digest(&dest), md);
    }
    let out = reg.gc(&["--dry-run", "--grace", "0"]);
    assert!(out.contains("would remove 0 blobs"), "{out}");
}

/// A loopback TCP proxy between hakod and a registry. It records the path and `Range`
/// header of every blob GET and, while `stall_after` is non-zero, stops forwarding a
/// response past that many bytes, holding the connection open: a network that hangs.
struct StallingProxy {
    port: u16,
    blob_gets: Arc<Mutex<Vec<(String, String)>>>,
    stall_after: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl StallingProxy {
    fn start(upstream: u16, stall_after: usize) -> StallingProxy {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let p = StallingProxy {
            port,
            blob_gets: Arc::default(),
            stall_after: Arc::new(AtomicUsize::new(stall_after)),
            stop: Arc::default(),
        };
        let (gets, stall, stop) = (p.blob_gets.clone(), p.stall_after.clone(), p.stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Ok((client, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let server = std::net::TcpStream::connect(("127.0.0.1", upstream)).unwrap();
                let (mut c1, mut s1) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let gets = gets.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    while let Ok(n @ 1..) = std::io::Read::read(&mut c1, &mut buf) {
                        let head = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
                        if let Some(path) = head
                            .strip_prefix("get ")
                            .and_then(|h| h.split(' ').next())
                            .filter(|p| p.contains("/blobs/sha256:"))
                        {
                            let range = head
                                .split("\r\n")
                                .find_map(|l| l.strip_prefix("range:"))
                                .map(|v| v.trim().to_string())
                                .unwrap_or_default();
                            gets.lock().unwrap().push((path.to_string(), range));
                        }
                        if s1.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = s1.shutdown(std::net::Shutdown::Write);
                });
                let (mut s2, mut c2) = (server, client);
                let (stall, stop) = (stall.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    let mut sent = 0usize;
                    while let Ok(n @ 1..) = std::io::Read::read(&mut s2, &mut buf) {
                        let limit = stall.load(Ordering::Relaxed);
                        let now = if limit > 0 {
                            n.min(limit.saturating_sub(sent))
                        } else {
                            n
                        };
                        if c2.write_all(&buf[..now]).is_err() {
                            break;
                        }
                        sent += now;
                        if now < n {
                            // Hold the rest until released (or the test ends).
                            while stall.load(Ordering::Relaxed) > 0 && !stop.load(Ordering::Relaxed) {
                                std::thread::sleep(Duration::from_millis(20));
                            }
                            if c2.write_all(&buf[now..n]).is_err() {
                                break;
                            }
                            sent += n - now;
                        }
                    }
                    let _ = c2.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        p
    }
}

impl Drop for StallingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn a_pull_killed_mid_layer_resumes_where_it_stopped() {
    let reg = HakoRegistry::start(&[]);
    let mut d = TestDaemon::start();
    // One 64 MiB layer of random bytes, stored and pushed as a plain tar.
    let data = {
        let mut v = vec![0u8; 64 << 20];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut v).unwrap();
        v
    };
    let tar_path = d.dir.path().join("big.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&tar_path).unwrap());
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "big.bin", &data[..]).unwrap();
    b.into_inner().unwrap().sync_all().unwrap();
    let direct = format!("{}/big/layer:v1", reg.host());
    d.ok(&["import", tar_path.to_str().unwrap(), &direct]);
    std::fs::remove_file(&tar_path).unwrap();
    d.ok(&["push", &direct]);
    let id = d.ok(&["inspect", "-f", "{{.Id}}", &direct]);
    let rootfs = d.ok(&["inspect", "-f", "{{json .RootFS}}", &direct]);
    let m: Value = serde_json::from_str(&run_ok(Command::new("curl").args([
        "-sf",
        "-H",
        "Accept: application/vnd.oci.image.manifest.v1+json",
        &format!("http://{}/v2/big/layer/manifests/v1", reg.host()),
    ])))
    .unwrap();
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_string();
    let size = m["layers"][0]["size"].as_u64().unwrap();
    let hex = layer.strip_prefix("sha256:").unwrap();
    d.ok(&["rmi", "-f", id.trim()]);
    assert!(!d.root().join("content/blobs/sha256").join(hex).exists());

    // The pull goes through a proxy that hangs after 24 MiB of the layer; once the daemon
    // has written most of that, it is killed.
    let proxy = StallingProxy::start(reg.port, 24 << 20);
    let via = format!("127.0.0.1:{}/big/layer:v1", proxy.port);
    let partial = d.root().join("content/ingest").join(format!("sha256-{hex}"));
    let len = || std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
    let mut pull = d
        .cmd(&["pull", &via])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while len() < 16 << 20 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the layer's download did not start; daemon log:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    d.kill9();
    assert!(!pull.wait().unwrap().success());
    let kept = len();
    assert!((16 << 20..size).contains(&kept), "kept {kept} of {size} bytes");

    // The restarted daemon keeps the partial download; the next pull asks for the rest.
    proxy.stall_after.store(0, Ordering::Relaxed);
    d.spawn();
    assert_eq!(len(), kept, "the daemon's start removed the partial download");
    let out = d.ok(&["pull", &via]);
    assert!(out.contains("Downloaded newer image"), "{out}");
    let gets: Vec<(String, String)> = proxy
        .blob_gets
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| p.ends_with(&layer))
        .cloned()
        .collect();
    assert_eq!(
        gets.iter().map(|(_, r)| r.as_str()).collect::<Vec<_>>(),
        ["", &format!("bytes={kept}-")],
        "the first pull's GET, then the resume"
    );
    // Verified whole: the same image, digest and diff ID, and the unpacked file is the data.
    assert_eq!(d.ok(&["inspect", "-f", "{{.Id}}", &via]), id);
    assert_eq!(d.ok(&["inspect", "-f", "{{json .RootFS}}", &via]), rootfs);
    assert!(d.root().join("content/blobs/sha256").join(hex).exists());
    let diff: Value = serde_json::from_str(&rootfs).unwrap();
    let chain = diff["Layers"][0].as_str().unwrap().strip_prefix("sha256:").unwrap();
    let unpacked = std::fs::read(d.root().join("snapshots").join(chain).join("big.bin")).unwrap();
    assert!(unpacked == data, "the unpacked layer differs from what was pushed");
    d.ok(&["system", "check"]);
    assert_eq!(std::fs::read_dir(d.root().join("content/ingest")).unwrap().count(), 0);
}

#[test]
fn tls_from_a_config_file_with_skopeo_and_hako() {
    let work = tempfile::Builder::new()
        .prefix("hako-reg-tls-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let certs = work.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let (cert, key) = (certs.join("ca.crt"), work.path().join("registry.key"));
    run_ok(
        Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
            ])
            .args([
                "-days",
                "1",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    );
    let cfg = work.path().join("registry.toml");
    std::fs::write(
        &cfg,
        format!(
            "upload_expiry_secs = 600\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let reg = HakoRegistry::start(&["--config", cfg.to_str().unwrap()]);
    // skopeo verifies the certificate against the CA we give it (docker's certs.d layout).
    let src = work.path().join("src");
    let md = oci_layout(&src, &[layer("t.bin", 100_000, 9)]);
    let dest = format!("{}/tls/img:v1", reg.host());
    skopeo(&[
        "copy",
        "--dest-cert-dir",
        certs.to_str().unwrap(),
        &format!("oci:{}:latest", src.display()),
        &format!("docker://{dest}"),
    ]);
    let v: Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--cert-dir",
        certs.to_str().unwrap(),
        &format!("docker://{dest}"),
    ]))
    .unwrap();
    assert_eq!(v["Digest"], md);
    // Without the CA, a verifying client refuses the self-signed certificate.
    let o = Command::new("skopeo")
        .args(["inspect", &format!("docker://{dest}")])
        .output()
        .unwrap();
    assert!(!o.status.success());
    // hakod reaches a loopback registry over TLS without checks, as dockerd does.
    let d = TestDaemon::start();
    let out = d.ok(&["pull", &dest]);
    assert!(out.contains(&format!("Digest: {md}")), "{out}");
}
