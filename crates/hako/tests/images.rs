//! The engine foundation end to end: a real daemon on a temporary root, driven by the CLI
//! and by raw API requests.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};

use common::{hako_bin, stderr, stdout, TestDaemon};
use serde_json::Value;

/// A rootfs tar with a few files, plus `extra` bytes of incompressible data.
fn rootfs_tar(extra: usize, marker: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8], mode: u32| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, data).unwrap();
    };
    add("etc/marker", marker.as_bytes(), 0o644);
    add("bin/tool", b"#!/bin/sh\necho tool\n", 0o755);
    if extra > 0 {
        let mut data = vec![0u8; extra];
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for chunk in data.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        add("data/blob", &data, 0o600);
    }
    b.into_inner().unwrap()
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_string()
}

/// A raw HTTP/1.0 request on the daemon's socket: (status, headers+body text).
fn raw(d: &TestDaemon, method: &str, path: &str) -> (u16, String) {
    let mut s = UnixStream::connect(d.socket()).unwrap();
    write!(s, "{method} {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, out)
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|r| r.count()).unwrap_or(0)
}

fn blobs(d: &TestDaemon) -> usize {
    count_files(&d.root().join("content/blobs/sha256"))
}

fn snapshots(d: &TestDaemon) -> usize {
    count_files(&d.root().join("snapshots"))
}

#[test]
fn daemon_api_basics() {
    let mut d = TestDaemon::start();
    let mode = std::fs::metadata(d.socket()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "socket must be root-only");

    let (st, resp) = raw(&d, "HEAD", "/_ping");
    assert_eq!(st, 200);
    assert!(
        resp.contains("Api-Version: 1.50") || resp.to_lowercase().contains("api-version: 1.50"),
        "{resp}"
    );
    assert!(resp.to_lowercase().contains("ostype: linux"));
    let (st, resp) = raw(&d, "GET", "/_ping");
    assert_eq!(st, 200);
    assert!(resp.ends_with("OK"));
    let (st, resp) = raw(&d, "GET", "/v1.41/version");
    assert_eq!(st, 200);
    assert!(resp.contains("\"ApiVersion\":\"1.50\""));
    let (st, _) = raw(&d, "GET", "/version");
    assert_eq!(st, 200);
    let (st, resp) = raw(&d, "GET", "/v1.99/version");
    assert_eq!(st, 400);
    assert!(resp.contains("too new"), "{resp}");
    assert!(resp.to_lowercase().contains("content-type: application/json\r\n"));
    let (st, _) = raw(&d, "GET", "/v1.41/images/nosuch/json");
    assert_eq!(st, 404);

    // One daemon per root: the second names the first's PID.
    let o = Command::new(hako_bin())
        .args(["daemon", "--root"])
        .arg(d.root())
        .args(["-H", &format!("unix://{}/other.sock", d.dir.path().display())])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let pid = d.child.as_ref().unwrap().id().to_string();
    assert!(stderr(&o).contains(&pid), "{}", stderr(&o));

    // Clean shutdown on SIGTERM removes the socket; the CLI then says so and exits 125.
    assert!(d.stop().success());
    assert!(!d.socket().exists());
    let o = d.hako(&["images"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("Cannot connect to the hako daemon"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("hako daemon"));
}

#[test]
fn import_formats_changes_and_listing() {
    let d = TestDaemon::start();
    let tmp = d.dir.path();
    let tar = rootfs_tar(4096, "plain");
    let plain = write(tmp, "p.tar", &tar);
    let gz = write(tmp, "p.tar.gz", &gzip(&rootfs_tar(4096, "gz")));
    let zst = write(
        tmp,
        "p.tar.zst",
        &zstd::encode_all(&rootfs_tar(4096, "zstd")[..], 3).unwrap(),
    );
    let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
    xz.write_all(&rootfs_tar(4096, "xz")).unwrap();
    let xz = write(tmp, "p.tar.xz", &xz.finish().unwrap());

    for (f, name, media) in [
        (&plain, "t:plain", "application/vnd.oci.image.layer.v1.tar"),
        (&gz, "t:gz", "application/vnd.oci.image.layer.v1.tar+gzip"),
        (&zst, "t:zst", "application/vnd.oci.image.layer.v1.tar+zstd"),
        (&xz, "t:xz", "application/vnd.oci.image.layer.v1.tar"),
    ] {
        let id = d.ok(&[
            "import",
            "-c",
            "ENV A=1 B=2",
            "-c",
            r#"CMD ["/bin/tool"]"#,
            "-c",
            "WORKDIR /srv",
            "-c",
            "EXPOSE 8080",
            "-c",
            "USER 1000",
            "-c",
            "LABEL k=v",
            "-c",
            "ENTRYPOINT [\"/bin/sh\",\"-c\"]",
            f,
            name,
        ]);
        assert!(id.trim().starts_with("sha256:"), "{id}");
        let v: Value = serde_json::from_str(&d.ok(&["inspect", name])).unwrap();
        let c = &v[0]["Config"];
        assert_eq!(c["Env"], serde_json::json!(["A=1", "B=2"]));
        assert_eq!(c["Cmd"], serde_json::json!(["/bin/tool"]));
        assert_eq!(c["WorkingDir"], "/srv");
        assert_eq!(c["ExposedPorts"], serde_json::json!({"8080/tcp": {}}));
        assert_eq!(c["User"], "1000");
        assert_eq!(c["Labels"], serde_json::json!({"k": "v"}));
        assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
        assert_eq!(v[0]["Id"], id.trim());
        // The stored manifest records the layer as it was stored.
        let manifest_digest = v[0]["Descriptor"]["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")
            .to_string();
        let m: Value = serde_json::from_slice(
            &std::fs::read(d.root().join("content/blobs/sha256").join(manifest_digest)).unwrap(),
        )
        .unwrap();
        assert_eq!(m["layers"][0]["mediaType"], media, "{name}");
        // The layer is unpacked and readable.
        let layers = v[0]["GraphDriver"]["Data"]["LowerDir"].as_str().unwrap().to_string();
        let marker = std::fs::read_to_string(Path::new(&layers).join("etc/marker")).unwrap();
        assert_eq!(marker, name.trim_start_matches("t:").replace("zst", "zstd"));
    }
    // The plain import's diff ID is the tar's own digest.
    let v: Value = serde_json::from_str(&d.ok(&["inspect", "t:plain"])).unwrap();
    use sha2::Digest;
    let want = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&tar)));
    assert_eq!(v[0]["RootFS"]["Layers"][0], want);

    // Listing.
    let out = d.ok(&["images"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("REPOSITORY   TAG       IMAGE ID       CREATED"),
        "{out}"
    );
    assert_eq!(lines.len(), 5, "{out}");
    assert!(out.contains("t            plain"), "{out}");
    let q = d.ok(&["images", "-q"]);
    assert_eq!(q.lines().count(), 4);
    assert!(q.lines().all(|l| l.len() == 12));
    let json = d.ok(&["images", "--format", "json"]);
    for l in json.lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["Repository"], "t");
    }
    let tpl = d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}", "t:gz"]);
    assert_eq!(tpl.trim(), "t:gz");
    let digests = d.ok(&["images", "--digests"]);
    assert!(digests.lines().next().unwrap().contains("DIGEST"));

    // History shows the import comment.
    let h = d.ok(&["history", "t:gz"]);
    assert!(h.contains("Imported from -"), "{h}");

    // Bad --change: refused before anything is stored.
    let before = blobs(&d);
    let o = d.hako(&["import", "-c", "RUN rm -rf /", &plain, "bad:1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("RUN is not one of"), "{}", stderr(&o));
    assert_eq!(blobs(&d), before);
    // bzip2 is named in the error.
    let o = d
        .cmd(&["import", "-", "bz:1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map(|mut c| {
            c.stdin.take().unwrap().write_all(b"BZh91AY&SY garbage").unwrap();
            c.wait_with_output().unwrap()
        })
        .unwrap();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("bzip2"), "{}", stderr(&o));
    assert_eq!(d.ok(&["system", "check"]).lines().count(), 1);
}

#[test]
fn import_from_stdin_and_url() {
    let d = TestDaemon::start();
    let tar = gzip(&rootfs_tar(0, "stdin"));
    let mut c = d
        .cmd(&["import", "-", "from:stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(&tar).unwrap();
    assert!(c.wait_with_output().unwrap().status.success());
    let v: Value = serde_json::from_str(&d.ok(&["inspect", "from:stdin"])).unwrap();
    assert_eq!(v[0]["RepoTags"][0], "from:stdin");

    // A one-shot HTTP server on loopback serves the tarball.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = tar.clone();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).unwrap();
        write!(
            s,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .unwrap();
        s.write_all(&body).unwrap();
    });
    let url = format!("http://127.0.0.1:{port}/rootfs.tar.gz");
    d.ok(&["import", &url, "from:url"]);
    server.join().unwrap();
    let a: Value = serde_json::from_str(&d.ok(&["inspect", "from:url"])).unwrap();
    assert_eq!(a[0]["RootFS"], v[0]["RootFS"]);
    assert!(a[0]["Comment"].as_str().unwrap().contains(&url));
}

#[test]
fn tag_rmi_prune_and_gc() {
    let d = TestDaemon::start();
    let f = write(d.dir.path(), "a.tar", &rootfs_tar(1000, "a"));
    let id = d.ok(&["import", &f, "a:1"]).trim().to_string();
    d.ok(&["tag", "a:1", "a:2"]);
    d.ok(&["tag", &id[7..19], "localhost:5000/x/y:z"]);
    let out = d.ok(&["images"]);
    assert_eq!(out.lines().count(), 4, "{out}");
    assert!(out.contains("localhost:5000/x/y"));

    // By ID with several names: refused unless forced (Docker's conflict).
    let o = d.hako(&["rmi", &id[7..19]]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("must be forced"), "{}", stderr(&o));
    // By name: only untags while other names remain.
    assert_eq!(d.ok(&["rmi", "a:2"]).trim(), "Untagged: a:2");
    assert_eq!(
        d.ok(&["rmi", "localhost:5000/x/y:z"]).trim(),
        "Untagged: localhost:5000/x/y:z"
    );
    let out = d.ok(&["rmi", "a:1"]);
    assert_eq!(out, format!("Untagged: a:1\nDeleted: {id}\n"));
    assert_eq!(blobs(&d), 0, "rmi frees blobs nothing references");
    assert_eq!(snapshots(&d), 0);
    let o = d.hako(&["rmi", "a:1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("No such image: a:1"), "{}", stderr(&o));

    // Shared layers survive the removal of one of two images.
    let id1 = d.ok(&["import", "-c", "ENV X=1", &f, "s:1"]).trim().to_string();
    d.ok(&["import", "-c", "ENV X=2", &f, "s:2"]);
    d.ok(&["rmi", "s:2"]);
    let v: Value = serde_json::from_str(&d.ok(&["inspect", "s:1"])).unwrap();
    assert!(Path::new(v[0]["GraphDriver"]["Data"]["LowerDir"].as_str().unwrap())
        .join("etc/marker")
        .exists());
    assert_eq!(v[0]["Id"], id1);

    // A re-import under the same tag leaves the old image dangling; prune removes it.
    d.ok(&["import", "-c", "ENV X=3", &f, "s:1"]);
    let dangling = d.ok(&["images", "--filter", "dangling=true", "-q"]);
    assert_eq!(dangling.trim(), &id1[7..19]);
    let out = d.ok(&["image", "prune", "-f"]);
    assert!(out.contains(&format!("deleted: {id1}")), "{out}");
    assert_eq!(d.ok(&["images", "-q"]).lines().count(), 1);
    let df = d.ok(&["system", "df"]);
    assert!(df.starts_with("TYPE"), "{df}");
    assert!(df.lines().nth(1).unwrap().starts_with("Images          1"), "{df}");
    d.ok(&["system", "prune", "-a", "-f"]);
    assert_eq!(d.ok(&["images", "-q"]), "");
    assert_eq!(blobs(&d), 0);
    assert_eq!(snapshots(&d), 0);
}

#[test]
fn save_load_round_trip_and_bad_archives() {
    let d = TestDaemon::start();
    let f = write(d.dir.path(), "a.tar.gz", &gzip(&rootfs_tar(10_000, "saved")));
    let id = d
        .ok(&["import", "-c", r#"CMD ["/bin/tool"]"#, &f, "keep:me"])
        .trim()
        .to_string();
    let docker = d.dir.path().join("docker.tar");
    let oci = d.dir.path().join("oci.tar");
    d.ok(&["save", "-o", docker.to_str().unwrap(), "keep:me"]);
    d.ok(&[
        "save",
        "--format",
        "oci-archive",
        "-o",
        oci.to_str().unwrap(),
        "keep:me",
    ]);

    // docker-archive: manifest.json plus an OCI layout with uncompressed layers.
    let names = tar_names(&docker);
    for n in ["manifest.json", "index.json", "oci-layout", "repositories"] {
        assert!(names.contains(&n.to_string()), "{n} missing: {names:?}");
    }
    for archive in [&docker, &oci] {
        d.ok(&["rmi", "keep:me"]);
        assert_eq!(blobs(&d), 0);
        let out = d.ok(&["load", "-i", archive.to_str().unwrap()]);
        assert_eq!(out.trim(), "Loaded image: keep:me", "{archive:?}");
        let v: Value = serde_json::from_str(&d.ok(&["inspect", "keep:me"])).unwrap();
        assert_eq!(v[0]["Id"], id.as_str());
        assert_eq!(v[0]["Config"]["Cmd"][0], "/bin/tool");
        let lower = v[0]["GraphDriver"]["Data"]["LowerDir"].as_str().unwrap().to_string();
        assert_eq!(
            std::fs::read_to_string(Path::new(&lower).join("etc/marker")).unwrap(),
            "saved"
        );
    }
    // Load from stdin.
    d.ok(&["rmi", "keep:me"]);
    let mut c = d
        .cmd(&["load"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(&docker).unwrap())
        .unwrap();
    let o = c.wait_with_output().unwrap();
    assert_eq!(stdout(&o).trim(), "Loaded image: keep:me");

    // A layer whose content does not match the config's diff_id: refused, nothing kept.
    let tampered = rewrite_tar(&docker, |name, data| {
        if name.starts_with("blobs/sha256/") && data.len() > 10_000 {
            // Same length, one byte changed inside the data file, digest name kept.
            let i = data.len() / 2;
            data[i] ^= 0xff;
        }
    });
    d.ok(&["rmi", "keep:me"]);
    let o = d.hako(&["load", "-i", tampered.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("corrupt"), "{}", stderr(&o));
    assert_eq!(d.ok(&["images", "-q"]), "");
    assert_eq!(blobs(&d), 0, "a failed load leaves no blob");
    assert_eq!(snapshots(&d), 0);

    // A docker-archive (legacy layout, layer named by path) whose layer differs from the diff_id.
    let legacy = build_legacy_archive(d.dir.path(), true);
    let o = d.hako(&["load", "-i", legacy.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("does not match the image config's diff_id"),
        "{}",
        stderr(&o)
    );
    assert_eq!(d.ok(&["images", "-q"]), "");
    assert_eq!(blobs(&d), 0);
    let good = build_legacy_archive(d.dir.path(), false);
    assert_eq!(
        d.ok(&["load", "-i", good.to_str().unwrap()]).trim(),
        "Loaded image: legacy:1"
    );

    // Not an archive at all; a truncated one.
    let junk = write(d.dir.path(), "junk.tar", &rootfs_tar(0, "x"));
    let o = d.hako(&["load", "-i", &junk]);
    assert!(stderr(&o).contains("neither manifest.json"), "{}", stderr(&o));
    let bytes = std::fs::read(&docker).unwrap();
    let cut = write(d.dir.path(), "cut.tar", &bytes[..bytes.len() / 2]);
    d.ok(&["rmi", "legacy:1"]);
    let o = d.hako(&["load", "-i", &cut]);
    assert!(!o.status.success());
    assert_eq!(blobs(&d), 0);
    // Unknown image to save: clean error, no file.
    let o = d.hako(&["save", "-o", d.dir.path().join("none.tar").to_str().unwrap(), "nope:1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("No such image: nope:1"));
    assert!(!d.dir.path().join("none.tar").exists());
    assert_eq!(d.ok(&["system", "check"]).lines().count(), 1);
}

fn tar_names(p: &Path) -> Vec<String> {
    let mut ar = tar::Archive::new(std::fs::File::open(p).unwrap());
    ar.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect()
}

fn rewrite_tar(p: &Path, mut f: impl FnMut(&str, &mut Vec<u8>)) -> std::path::PathBuf {
    let mut ar = tar::Archive::new(std::fs::File::open(p).unwrap());
    let mut b = tar::Builder::new(Vec::new());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().display().to_string();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        f(&name, &mut data);
        let mut h = e.header().clone();
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append_data(&mut h, &name, &data[..]).unwrap();
    }
    let out = p.with_extension("tampered.tar");
    std::fs::write(&out, b.into_inner().unwrap()).unwrap();
    out
}

/// The pre-OCI `docker save` layout: `<id>/layer.tar` and `<config>.json`.
fn build_legacy_archive(dir: &Path, wrong_diff: bool) -> std::path::PathBuf {
    use sha2::Digest;
    let layer = rootfs_tar(100, "legacy");
    let diff = if wrong_diff {
        sha2::Sha256::digest(b"something else")
    } else {
        sha2::Sha256::digest(&layer)
    };
    let config = serde_json::json!({"architecture":"amd64","os":"linux","config":{"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":[format!("sha256:{}", hex::encode(diff))]}});
    let config = serde_json::to_vec(&config).unwrap();
    let cfg_name = format!("{}.json", hex::encode(sha2::Sha256::digest(&config)));
    let manifest = serde_json::json!([{"Config": cfg_name, "RepoTags": ["legacy:1"], "Layers": ["abc/layer.tar"]}]);
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    };
    add("abc/layer.tar", &layer);
    add("abc/VERSION", b"1.0");
    add(&cfg_name, &config);
    add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    let out = dir.join(if wrong_diff { "legacy-bad.tar" } else { "legacy.tar" });
    std::fs::write(&out, b.into_inner().unwrap()).unwrap();
    out
}

#[test]
fn concurrent_imports_store_each_blob_once() {
    let d = TestDaemon::start();
    let f = write(d.dir.path(), "c.tar.gz", &gzip(&rootfs_tar(8 << 20, "conc")));
    let children: Vec<_> = (0..2)
        .map(|i| {
            d.cmd(&["import", &f, &format!("c:{i}")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    // Two configs (their created times differ), two manifests, one layer blob.
    let v0: Value = serde_json::from_str(&d.ok(&["inspect", "c:0"])).unwrap();
    let v1: Value = serde_json::from_str(&d.ok(&["inspect", "c:1"])).unwrap();
    assert_eq!(v0[0]["RootFS"], v1[0]["RootFS"]);
    let layer_blobs = std::fs::read_dir(d.root().join("content/blobs/sha256"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().metadata().unwrap().len() > 1 << 20)
        .count();
    assert_eq!(layer_blobs, 1);
    assert_eq!(snapshots(&d), 1);
    assert_eq!(count_files(&d.root().join("content/ingest")), 0);
    assert_eq!(d.ok(&["system", "check"]).lines().count(), 1);
}

#[test]
fn kill_9_during_import_leaves_a_consistent_store() {
    let mut d = TestDaemon::start();
    let f = write(d.dir.path(), "big.tar", &rootfs_tar(200 << 20, "big"));
    let mut c = d
        .cmd(&["import", &f, "big:1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the daemon is writing the blob, then crash it.
    let ingest = d.root().join("content/ingest");
    let start = std::time::Instant::now();
    loop {
        let partial: u64 = std::fs::read_dir(&ingest)
            .map(|r| r.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum())
            .unwrap_or(0);
        if partial > 20 << 20 || start.elapsed().as_secs() > 30 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    d.kill9();
    let _ = c.wait();
    d.spawn();
    // Leftovers of the crash are gone; the image is absent or whole.
    assert_eq!(count_files(&d.root().join("content/ingest")), 0);
    assert!(std::fs::read_dir(d.root().join("snapshots")).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with(".tmp-")));
    let check = d.ok(&["system", "check"]);
    assert!(check.starts_with("store is consistent"), "{check}");
    let listed = d.ok(&["images", "-q"]);
    assert!(listed.is_empty() || listed.lines().count() == 1);
    // And a second import works.
    d.ok(&["import", &f, "big:1"]);
    let v: Value = serde_json::from_str(&d.ok(&["inspect", "big:1"])).unwrap();
    let lower = v[0]["GraphDriver"]["Data"]["LowerDir"].as_str().unwrap().to_string();
    assert_eq!(
        std::fs::metadata(Path::new(&lower).join("data/blob")).unwrap().len(),
        200 << 20
    );
    assert!(d.ok(&["system", "check"]).starts_with("store is consistent"));
}

#[test]
fn system_check_finds_a_corrupt_blob() {
    let d = TestDaemon::start();
    let f = write(d.dir.path(), "a.tar", &rootfs_tar(100, "x"));
    let id = d.ok(&["import", &f, "x:1"]).trim().to_string();
    let v: Value = serde_json::from_str(&d.ok(&["inspect", "x:1"])).unwrap();
    let layer_digest = {
        let m = v[0]["Descriptor"]["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")
            .to_string();
        let m: Value =
            serde_json::from_slice(&std::fs::read(d.root().join("content/blobs/sha256").join(m)).unwrap()).unwrap();
        m["layers"][0]["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")
            .to_string()
    };
    let p = d.root().join("content/blobs/sha256").join(&layer_digest);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[600] ^= 1;
    std::fs::write(&p, bytes).unwrap();
    let o = d.hako(&["system", "check"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains(&format!(
            "blob sha256:{layer_digest}: content does not match its digest"
        )),
        "{}",
        stdout(&o)
    );
    std::fs::remove_file(
        d.root()
            .join("content/blobs/sha256")
            .join(id.trim_start_matches("sha256:")),
    )
    .unwrap();
    let o = d.hako(&["system", "check"]);
    assert!(stdout(&o).contains("is missing"), "{}", stdout(&o));
}

#[test]
fn info_version_and_bad_usage() {
    let d = TestDaemon::start();
    let info = d.ok(&["info"]);
    assert!(info.contains("Server Version: "), "{info}");
    assert!(info.contains(&format!("Hako Root Dir: {}", d.root().display())));
    let v = d.ok(&["version", "--format", "{{.Server.ApiVersion}}"]);
    assert_eq!(v.trim(), "1.50");
    let o = d.hako(&["images", "--bogus"]);
    assert_eq!(o.status.code(), Some(125));
    let o = d.hako(&["inspect", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("No such object: nope"));
    let o = d.hako(&["tag", "nope", "x:1"]);
    assert!(stderr(&o).contains("No such image: nope"), "{}", stderr(&o));
    let o = d.hako(&["import", "/does/not/exist", "x:1"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn rmi_refuses_an_image_a_container_uses() {
    let d = TestDaemon::start();
    let f = write(d.dir.path(), "a.tar", &rootfs_tar(100, "used"));
    let id = d.ok(&["import", &f, "used:1"]).trim().to_string();
    d.ok(&["create", "--name", "user", "used:1", "/bin/tool"]);
    let o = d.hako(&["rmi", "used:1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("container is using its referenced image"),
        "{}",
        stderr(&o)
    );
    let o = d.hako(&["rmi", &id]);
    assert!(stderr(&o).contains("being used by a container"), "{}", stderr(&o));
    // Prune keeps it even with -a; -f removes it.
    d.ok(&["image", "prune", "-a", "-f"]);
    assert_eq!(d.ok(&["images", "-q"]).lines().count(), 1);
    let out = d.ok(&["rmi", "-f", "used:1"]);
    assert!(out.contains(&format!("Deleted: {id}")), "{out}");
}

/// Kills a helper process by PID when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn import_from_https_url() {
    let certs = tempfile::tempdir_in("/var/tmp").unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    let o = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .args([
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::write(certs.path().join("rootfs.tar.gz"), gzip(&rootfs_tar(0, "tls"))).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // openssl's -WWW mode serves files of its working directory over TLS on loopback.
    let _server = KillOnDrop(
        Command::new("openssl")
            .args([
                "s_server",
                "-quiet",
                "-WWW",
                "-accept",
                &format!("127.0.0.1:{port}"),
                "-cert",
            ])
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .current_dir(certs.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed().as_secs() < 10, "openssl s_server did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let url = format!("https://127.0.0.1:{port}/rootfs.tar.gz");

    // A daemon that does not trust the certificate refuses, saying why.
    let d = TestDaemon::start();
    let o = d.hako(&["import", &url, "tls:1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot import from https://"), "{}", stderr(&o));
    assert!(stderr(&o).contains("certificate"), "{}", stderr(&o));
    assert_eq!(d.ok(&["images", "-q"]), "");

    // One that trusts it (SSL_CERT_FILE, as OpenSSL reads it) imports.
    let d = TestDaemon::start_with_env(&[("SSL_CERT_FILE", cert.to_str().unwrap())]);
    d.ok(&["import", &url, "tls:1"]);
    let v: Value = serde_json::from_str(&d.ok(&["inspect", "tls:1"])).unwrap();
    let lower = v[0]["GraphDriver"]["Data"]["LowerDir"].as_str().unwrap().to_string();
    assert_eq!(
        std::fs::read_to_string(Path::new(&lower).join("etc/marker")).unwrap(),
        "tls"
    );
}
