//! Interoperability with real peers: the docker CLI (28) talking to hakod, podman and skopeo
//! reading hako's archives and writing archives hako reads.
//!
//! Every test asserts on concrete values (image IDs, diff IDs, Cmd, tags) and compares the
//! peer's view with hako's own CLI. Needs `docker`, `podman` and `skopeo` on PATH, and root
//! (podman's overlay storage).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use common::{busybox_tarball, require, run_ok, stderr, stdout, Podman, TestDaemon};

// ---------------------------------------------------------------------------------------
// helpers

fn docker_ok(d: &TestDaemon, args: &[&str]) -> String {
    require("docker");
    let o = d.docker(args);
    assert!(
        o.status.success(),
        "docker {args:?} failed ({}): {}\n{}\ndaemon log:\n{}",
        o.status,
        stderr(&o),
        stdout(&o),
        d.log()
    );
    stdout(&o)
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// `hako inspect NAME` (an array of one).
fn hako_inspect(d: &TestDaemon, name: &str) -> Value {
    let v = json(&d.ok(&["inspect", name]));
    assert_eq!(v.as_array().map(Vec::len), Some(1), "hako inspect {name}: {v}");
    v[0].clone()
}

fn hako_id(d: &TestDaemon, name: &str) -> String {
    d.ok(&["inspect", "-f", "{{.Id}}", name]).trim().to_string()
}

/// The full IDs `hako images -q --no-trunc` lists, sorted.
fn hako_ids(d: &TestDaemon) -> Vec<String> {
    let mut v: Vec<String> = d
        .ok(&["images", "-q", "--no-trunc"])
        .lines()
        .map(String::from)
        .collect();
    v.sort();
    v
}

fn sha256_file(p: &Path) -> String {
    let out = run_ok(Command::new("sha256sum").arg(p));
    format!("sha256:{}", out.split_whitespace().next().expect("sha256sum output"))
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_str().expect("string").to_string())
        .collect()
}

/// A small rootfs tarball made with tar(1): a file, a directory, a symlink.
fn small_tar(dir: &Path, name: &str, content: &str) -> PathBuf {
    let src = dir.join(format!("{name}-src"));
    std::fs::create_dir_all(src.join("etc")).unwrap();
    std::fs::create_dir_all(src.join("srv/data")).unwrap();
    std::fs::write(src.join("etc/hello"), content).unwrap();
    std::os::unix::fs::symlink("../etc/hello", src.join("srv/hello")).unwrap();
    let out = dir.join(format!("{name}.tar"));
    run_ok(
        Command::new("tar")
            .arg("--numeric-owner")
            .arg("-C")
            .arg(&src)
            .arg("-cf")
            .arg(&out)
            .arg("."),
    );
    out
}

/// "4.124MB" (docker's units.HumanSize, decimal) in bytes.
fn parse_size(s: &str) -> f64 {
    let s = s.trim();
    let split = s
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or_else(|| panic!("size without unit: {s:?}"));
    let n: f64 = s[..split].parse().unwrap_or_else(|_| panic!("bad size {s:?}"));
    let mult = match &s[split..] {
        "B" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        u => panic!("unit {u:?} in {s:?}"),
    };
    n * mult
}

// ---------------------------------------------------------------------------------------
// a private podman (and skopeo) environment

/// What only these tests ask of the shared podman fixture.
impl Podman {
    fn inspect(&self, name: &str) -> Value {
        let v = json(&self.ok(&["image", "inspect", name]));
        assert_eq!(v.as_array().map(Vec::len), Some(1), "podman image inspect {name}: {v}");
        v[0].clone()
    }

    /// Image IDs (full, no prefix) podman lists, sorted.
    fn ids(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .ok(&["images", "-q", "--no-trunc"])
            .lines()
            .map(|l| l.trim_start_matches("sha256:").to_string())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// skopeo with the same temp dir and an insecure policy (local archives only, nothing
    /// pulled).
    fn skopeo(&self, args: &[&str]) -> String {
        require("skopeo");
        let mut c = Command::new("skopeo");
        c.arg("--insecure-policy").args(args);
        self.env(&mut c);
        run_ok(&mut c)
    }

    /// Imports the cached busybox rootfs as `localhost/busybox:latest`, CMD ["sh"].
    fn import_busybox(&self) {
        self.ok(&[
            "import",
            "--change",
            r#"CMD ["sh"]"#,
            busybox_tarball().to_str().unwrap(),
            "localhost/busybox:latest",
        ]);
    }
}

// ---------------------------------------------------------------------------------------
// 1. the docker CLI against hakod

#[test]
fn docker_version_shows_the_hako_server() {
    let d = TestDaemon::start();
    let out = docker_ok(&d, &["version"]);
    assert!(out.contains("\nServer: hako"), "no Server section:\n{out}");
    assert!(out.contains(" Engine:\n"), "{out}");
    let server = json(&docker_ok(&d, &["version", "--format", "{{json .Server}}"]));
    let ours = d.ok(&["version"]);
    let version = server["Version"].as_str().expect("Server.Version");
    assert!(
        !version.is_empty() && ours.contains(version),
        "docker sees server version {version:?}; hako version says:\n{ours}"
    );
    assert_eq!(server["Os"], "linux");
    let api = server["ApiVersion"].as_str().expect("Server.ApiVersion");
    assert!(
        api.starts_with("1.") && ours.contains(api),
        "docker sees API {api:?}; hako version says:\n{ours}"
    );
    // The client negotiated the server's API version (docker 28 speaks up to 1.50).
    let client_api = docker_ok(&d, &["version", "--format", "{{.Client.APIVersion}}"]);
    assert_eq!(client_api.trim(), api);
}

#[test]
fn docker_images_matches_hako_images() {
    let d = TestDaemon::start();
    assert_eq!(docker_ok(&d, &["images", "-q"]), "", "a fresh daemon has no images");
    d.import_busybox();
    let id = d.ok(&["images", "-q"]).trim().to_string();
    assert_eq!(id.len(), 12, "short id: {id:?}");
    let rows = docker_ok(&d, &["images", "--format", "{{.Repository}} {{.Tag}} {{.ID}}"]);
    assert_eq!(rows, format!("busybox latest {id}\n"));
    assert_eq!(
        docker_ok(&d, &["images", "-q", "--no-trunc"]),
        d.ok(&["images", "-q", "--no-trunc"])
    );
    let table = docker_ok(&d, &["images"]);
    let mut lines = table.lines();
    assert!(
        lines.next().unwrap().starts_with("REPOSITORY   TAG       IMAGE ID"),
        "{table}"
    );
    let row: Vec<&str> = lines.next().expect("one row").split_whitespace().collect();
    assert_eq!(&row[..3], &["busybox", "latest", id.as_str()], "{table}");
    let size = d.ok(&["images", "--format", "{{.Size}}"]);
    assert_eq!(row.last().copied(), Some(size.trim()), "{table}");
    assert!(size.trim().ends_with("MB"), "busybox is a few MB: {size}");
}

#[test]
fn docker_import_with_change_and_tag() {
    let d = TestDaemon::start();
    let tar = small_tar(d.dir.path(), "imp", "hello from interop\n");
    let out = docker_ok(
        &d,
        &[
            "import",
            "--change",
            "ENV A=1",
            "--change",
            "WORKDIR /srv",
            tar.to_str().unwrap(),
            "test/imp:v1",
        ],
    );
    let id = out.trim().to_string();
    assert!(
        id.starts_with("sha256:") && id.len() == 71,
        "docker import prints the image ID: {out:?}"
    );
    assert_eq!(
        docker_ok(&d, &["inspect", "-f", "{{.Config.Env}}", "test/imp:v1"]).trim(),
        "[A=1]"
    );
    assert_eq!(
        docker_ok(&d, &["inspect", "-f", "{{.Config.WorkingDir}}", "test/imp:v1"]).trim(),
        "/srv"
    );
    assert_eq!(docker_ok(&d, &["inspect", "-f", "{{.Id}}", "test/imp:v1"]).trim(), id);
    // hako sees the same image.
    let h = hako_inspect(&d, "test/imp:v1");
    assert_eq!(h["Id"], id.as_str());
    assert_eq!(h["Config"]["Env"], serde_json::json!(["A=1"]));
    assert_eq!(h["RepoTags"], serde_json::json!(["test/imp:v1"]));
    // As with dockerd, the diff ID of an uncompressed import is the digest of the tar as sent.
    assert_eq!(strs(&h["RootFS"]["Layers"]), vec![sha256_file(&tar)]);
    assert_eq!(hako_ids(&d), vec![id.clone()]);

    // From stdin, with a message: the message becomes the history comment.
    let mut child = Command::new("docker")
        .args(["import", "--message", "piped in", "-", "test/imp:stdin"])
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("docker import -");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(&tar).unwrap())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "docker import -: {}", stderr(&o));
    let id2 = stdout(&o).trim().to_string();
    assert_eq!(hako_id(&d, "test/imp:stdin"), id2);
    assert_eq!(
        docker_ok(&d, &["history", "--format", "{{.Comment}}", "test/imp:stdin"]).trim(),
        "piped in"
    );
    assert_eq!(
        docker_ok(&d, &["inspect", "-f", "{{json .RootFS.Layers}}", "test/imp:stdin"]).trim(),
        serde_json::to_string(&h["RootFS"]["Layers"]).unwrap()
    );
}

#[test]
fn hako_save_then_docker_load() {
    let d = TestDaemon::start();
    d.import_busybox();
    let before = hako_inspect(&d, "busybox");
    let id = before["Id"].as_str().unwrap().to_string();
    let archive = d.dir.path().join("h.tar");
    d.ok(&["save", "-o", archive.to_str().unwrap(), "busybox"]);
    let out = docker_ok(&d, &["rmi", "busybox"]);
    assert_eq!(out, format!("Untagged: busybox:latest\nDeleted: {id}\n"));
    assert_eq!(docker_ok(&d, &["images", "-q"]), "");
    assert!(hako_ids(&d).is_empty());
    let out = docker_ok(&d, &["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(out.trim(), "Loaded image: busybox:latest");
    assert_eq!(
        docker_ok(&d, &["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"]),
        format!("busybox:latest {}\n", &id[7..19])
    );
    let after = hako_inspect(&d, "busybox");
    assert_eq!(after["Id"], before["Id"]);
    assert_eq!(after["RootFS"], before["RootFS"]);
    assert_eq!(after["Config"]["Cmd"], serde_json::json!(["sh"]));
}

#[test]
fn docker_save_then_hako_load_round_trip() {
    let d = TestDaemon::start();
    d.import_busybox();
    docker_ok(&d, &["tag", "busybox", "other/bb:1"]);
    let id = hako_id(&d, "busybox");
    let layers = hako_inspect(&d, "busybox")["RootFS"].clone();
    let archive = d.dir.path().join("d.tar");
    docker_ok(
        &d,
        &["save", "-o", archive.to_str().unwrap(), "busybox:latest", "other/bb:1"],
    );
    // docker 28 reads what it saves: manifest.json with both tags on one image.
    let listing = run_ok(Command::new("tar").arg("-tf").arg(&archive));
    assert!(
        listing.lines().any(|l| l == "manifest.json") && listing.lines().any(|l| l == "index.json"),
        "{listing}"
    );
    let out = d.ok(&["rmi", "-f", &id]);
    assert!(
        out.contains("Untagged: busybox:latest")
            && out.contains("Untagged: other/bb:1")
            && out.contains(&format!("Deleted: {id}")),
        "{out}"
    );
    assert!(hako_ids(&d).is_empty());

    let out = d.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert!(
        out.contains("Loaded image: busybox:latest") && out.contains("Loaded image: other/bb:1"),
        "{out}"
    );
    assert_eq!(hako_ids(&d), vec![id.clone()]);
    assert_eq!(hako_id(&d, "other/bb:1"), id);
    assert_eq!(hako_inspect(&d, "busybox")["RootFS"], layers);
    assert_eq!(docker_ok(&d, &["inspect", "-f", "{{.Id}}", "other/bb:1"]).trim(), id);

    // And piped into a second daemon: docker save (from the first) | hako load.
    let d2 = TestDaemon::start();
    let mut save = Command::new("docker")
        .args(["save", "other/bb:1"])
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("docker save");
    let pipe = save.stdout.take().unwrap();
    let loaded = d2.cmd(&["load"]).stdin(Stdio::from(pipe)).output().expect("hako load");
    assert!(save.wait().unwrap().success(), "docker save to a pipe failed");
    assert!(loaded.status.success(), "hako load from a pipe: {}", stderr(&loaded));
    assert_eq!(stdout(&loaded).trim(), "Loaded image: other/bb:1");
    assert_eq!(hako_ids(&d2), vec![id.clone()]);
    assert_eq!(hako_inspect(&d2, "other/bb:1")["RootFS"], layers);
}

#[test]
fn docker_tag_and_rmi() {
    let d = TestDaemon::start();
    d.import_busybox();
    let id = hako_id(&d, "busybox");
    assert_eq!(docker_ok(&d, &["tag", "busybox", "my/bb:1"]), "");
    assert_eq!(hako_id(&d, "my/bb:1"), id);
    let listed = d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(
        listed.lines().any(|l| l == "my/bb:1") && listed.lines().any(|l| l == "busybox:latest"),
        "{listed}"
    );

    // Removing one of two tags only untags.
    assert_eq!(docker_ok(&d, &["rmi", "my/bb:1"]), "Untagged: my/bb:1\n");
    let o = d.docker(&["image", "inspect", "my/bb:1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("No such image"), "{}", stderr(&o));
    assert_eq!(
        d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]),
        "busybox:latest\n"
    );
    assert_eq!(hako_ids(&d), vec![id.clone()]);

    // A missing image: exit code 1 and dockerd's message.
    let o = d.docker(&["rmi", "nope:none"]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("No such image: nope:none"), "{}", stderr(&o));
    let o = d.hako(&["rmi", "nope:none"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("No such image"), "{}", stderr(&o));

    // An ID referenced by two tags needs -f, like dockerd.
    docker_ok(&d, &["tag", "busybox", "my/bb:2"]);
    let o = d.docker(&["rmi", &id[7..19]]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("must be forced") && stderr(&o).contains("referenced in multiple repositories"),
        "{}",
        stderr(&o)
    );

    // The last tag goes with the image.
    assert_eq!(docker_ok(&d, &["rmi", "my/bb:2"]), "Untagged: my/bb:2\n");
    assert_eq!(
        docker_ok(&d, &["rmi", "busybox"]),
        format!("Untagged: busybox:latest\nDeleted: {id}\n")
    );
    assert!(hako_ids(&d).is_empty());
    assert_eq!(docker_ok(&d, &["images", "-a", "-q"]), "");
}

#[test]
fn docker_inspect_agrees_with_hako_inspect() {
    let d = TestDaemon::start();
    d.import_busybox();
    let v = json(&docker_ok(&d, &["inspect", "busybox"]));
    let arr = v.as_array().expect("array");
    assert_eq!(arr.len(), 1);
    let i = &arr[0];
    let h = hako_inspect(&d, "busybox:latest");
    assert_eq!(i, &h, "docker inspect and hako inspect disagree");
    let id = i["Id"].as_str().unwrap();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    assert_eq!(
        format!(
            "sha256:{}",
            d.ok(&["images", "-q", "--no-trunc"])
                .trim()
                .trim_start_matches("sha256:")
        ),
        id
    );
    assert_eq!(i["RepoTags"], serde_json::json!(["busybox:latest"]));
    assert_eq!(i["RootFS"]["Type"], "layers");
    let layers = strs(&i["RootFS"]["Layers"]);
    assert_eq!(layers.len(), 1);
    assert!(layers[0].starts_with("sha256:") && layers[0].len() == 71);
    assert_eq!(i["Config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(i["Os"], "linux");
    // Templates over nested fields go through the CLI's own Go templates.
    assert_eq!(
        docker_ok(
            &d,
            &[
                "image",
                "inspect",
                "-f",
                "{{index .RootFS.Layers 0}} {{.Os}}/{{.Architecture}}",
                "busybox"
            ]
        )
        .trim(),
        format!("{} linux/{}", layers[0], i["Architecture"].as_str().unwrap())
    );
    // Missing: docker inspect prints [] and fails.
    let o = d.docker(&["inspect", "nope:none"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("No such object: nope:none"), "{}", stderr(&o));
}

#[test]
fn docker_history_shows_the_import_comment() {
    let d = TestDaemon::start();
    d.import_busybox();
    let id = hako_id(&d, "busybox");
    let size = d.ok(&["images", "--format", "{{.Size}}", "busybox"]);
    let out = docker_ok(
        &d,
        &[
            "history",
            "--no-trunc",
            "--format",
            "{{.ID}}|{{.CreatedBy}}|{{.Comment}}|{{.Size}}",
            "busybox",
        ],
    );
    assert_eq!(out, format!("{id}||Imported from -|{}\n", size.trim()));
    let ours = d.ok(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.ID}}|{{.CreatedBy}}|{{.Comment}}|{{.Size}}",
        "busybox",
    ]);
    assert_eq!(ours, out);
    let table = docker_ok(&d, &["history", "busybox"]);
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("IMAGE"), "{table}");
    let row = lines.next().expect("a row");
    assert!(
        row.starts_with(&id[7..19]) && row.ends_with("Imported from -"),
        "{table}"
    );
    assert_eq!(lines.next(), None);
}

#[test]
fn docker_system_df_and_image_prune() {
    let d = TestDaemon::start();
    d.import_busybox();
    let busybox = hako_id(&d, "busybox");
    let tar = small_tar(d.dir.path(), "dangling", "dangling\n");
    let dangling = docker_ok(&d, &["import", tar.to_str().unwrap()]).trim().to_string();
    assert_eq!(
        docker_ok(&d, &["images", "-q", "--no-trunc", "-f", "dangling=true"]).trim(),
        dangling
    );
    let mut all = vec![busybox.clone(), dangling.clone()];
    all.sort();
    assert_eq!(hako_ids(&d), all);

    let df = docker_ok(
        &d,
        &[
            "system",
            "df",
            "--format",
            "{{.Type}}|{{.TotalCount}}|{{.Active}}|{{.Size}}|{{.Reclaimable}}",
        ],
    );
    let images_row: Vec<&str> = df
        .lines()
        .find(|l| l.starts_with("Images|"))
        .unwrap_or_else(|| panic!("{df}"))
        .split('|')
        .collect();
    assert_eq!(&images_row[1..3], &["2", "0"], "{df}");
    assert!(
        images_row[4].ends_with("(100%)"),
        "nothing is in use, so everything is reclaimable: {df}"
    );
    for t in [
        "Containers|0|0|0B|0B",
        "Local Volumes|0|0|0B|0B",
        "Build Cache|0|0|0B|0B",
    ] {
        assert!(df.lines().any(|l| l == t), "{t} missing in:\n{df}");
    }
    let raw = json(&d.ok(&["system", "df", "--format", "json"]));
    let layers_size = raw["LayersSize"].as_f64().expect("LayersSize");
    let close = |s: &str| (parse_size(s) - layers_size).abs() <= layers_size * 0.005;
    assert!(
        close(images_row[3]),
        "docker's size {} vs LayersSize {layers_size}",
        images_row[3]
    );
    // hako's own table says the same.
    let ours = d.ok(&["system", "df"]);
    let row: Vec<&str> = ours
        .lines()
        .find(|l| l.starts_with("Images "))
        .unwrap_or_else(|| panic!("{ours}"))
        .split_whitespace()
        .collect();
    assert_eq!(&row[1..3], &["2", "0"], "{ours}");
    assert!(close(row[3]), "hako's size {} vs LayersSize {layers_size}", row[3]);
    assert!(
        close(row[4]) && row[5] == "(100%)",
        "hako's reclaimable differs from docker's: {ours}\ndocker: {df}"
    );

    let out = docker_ok(&d, &["image", "prune", "-f"]);
    assert!(out.contains(&format!("deleted: {dangling}")), "{out}");
    assert!(out.contains("Total reclaimed space:"), "{out}");
    assert!(!out.contains(&busybox), "a tagged image is not dangling: {out}");
    assert_eq!(hako_ids(&d), vec![busybox.clone()]);
    assert_eq!(docker_ok(&d, &["images", "-a", "-q", "--no-trunc"]).trim(), busybox);
    // Nothing left to prune.
    let out = docker_ok(&d, &["image", "prune", "-f"]);
    assert_eq!(out.trim(), "Total reclaimed space: 0B");
}

#[test]
fn docker_images_reference_filter_lists_only_matching_tags() {
    let d = TestDaemon::start();
    d.import_busybox();
    let id = hako_id(&d, "busybox");
    docker_ok(&d, &["tag", "busybox", "other/bb:1"]);
    docker_ok(&d, &["tag", "busybox", "other/bb:2"]);
    // dockerd narrows RepoTags to the matching names, so the other tags of the same image
    // are not listed.
    let out = docker_ok(
        &d,
        &[
            "images",
            "-f",
            "reference=other/*",
            "--format",
            "{{.Repository}}:{{.Tag}} {{.ID}}",
        ],
    );
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        vec![
            format!("other/bb:1 {}", &id[7..19]),
            format!("other/bb:2 {}", &id[7..19])
        ]
    );
    let out = docker_ok(&d, &["images", "--format", "{{.Repository}}:{{.Tag}}", "other/bb:2"]);
    assert_eq!(out, "other/bb:2\n");
    assert_eq!(
        d.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}", "busybox"]),
        "busybox:latest\n"
    );
    let out = docker_ok(&d, &["images", "--format", "{{.Repository}}:{{.Tag}}", "nothing/here"]);
    assert_eq!(out, "");
}

// ---------------------------------------------------------------------------------------
// 2. podman and skopeo

#[test]
fn podman_archives_load_into_hako() {
    let d = TestDaemon::start();
    let p = Podman::new();
    p.import_busybox();
    let pi = p.inspect("localhost/busybox:latest");
    let pid = format!("sha256:{}", pi["Id"].as_str().unwrap());
    let cmd = pi["Config"]["Cmd"].clone();
    assert_eq!(cmd, serde_json::json!(["sh"]));
    let diffs = pi["RootFS"]["Layers"].clone();
    assert_eq!(strs(&diffs).len(), 1);
    p.ok(&["tag", "localhost/busybox:latest", "localhost/bb2:x"]);

    let w = p.work();
    let (da, oa, multi) = (w.join("pd.tar"), w.join("po.tar"), w.join("pm.tar"));
    p.ok(&[
        "save",
        "--format",
        "docker-archive",
        "-o",
        da.to_str().unwrap(),
        "localhost/busybox:latest",
    ]);
    p.ok(&[
        "save",
        "--format",
        "oci-archive",
        "-o",
        oa.to_str().unwrap(),
        "localhost/busybox:latest",
    ]);
    p.ok(&[
        "save",
        "-m",
        "--format",
        "docker-archive",
        "-o",
        multi.to_str().unwrap(),
        "localhost/busybox:latest",
        "localhost/bb2:x",
    ]);

    let check = |what: &str, names: &[&str]| {
        assert_eq!(hako_ids(&d), vec![pid.clone()], "{what}: hako images");
        for n in names {
            let h = hako_inspect(&d, n);
            assert_eq!(h["Id"], pid.as_str(), "{what}: {n}");
            assert_eq!(h["Config"]["Cmd"], cmd, "{what}: {n}");
            assert_eq!(h["RootFS"]["Layers"], diffs, "{what}: {n}");
            assert_eq!(h["Created"], pi["Created"], "{what}: {n}");
            // podman's inspect shows history[0].comment as Comment; Docker's (and hako's)
            // is the config's top-level "comment", which podman's config has not. The
            // history entry itself must come through unchanged.
            assert_eq!(h["Comment"], "", "{what}: {n}");
            let ph = &pi["History"][0];
            let hist = d.ok(&["history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Comment}}", n]);
            assert_eq!(
                hist,
                format!(
                    "{}|{}\n",
                    ph["created_by"].as_str().unwrap(),
                    ph["comment"].as_str().unwrap()
                ),
                "{what}: {n}"
            );
        }
    };

    // docker-archive (legacy layout: <diffid>.tar, a symlinked layer dir, manifest.json)
    let out = d.ok(&["load", "-i", da.to_str().unwrap()]);
    assert_eq!(out.trim(), "Loaded image: localhost/busybox:latest");
    check("podman docker-archive", &["localhost/busybox:latest"]);
    d.ok(&["rmi", "localhost/busybox:latest"]);
    assert!(hako_ids(&d).is_empty());

    // oci-archive: gzip layers, ref.name = the full name
    let out = d.ok(&["load", "-i", oa.to_str().unwrap()]);
    assert_eq!(out.trim(), "Loaded image: localhost/busybox:latest");
    check("podman oci-archive", &["localhost/busybox:latest"]);
    d.ok(&["rmi", "localhost/busybox:latest"]);

    // multi-image docker-archive, through the docker CLI this time
    let out = docker_ok(&d, &["load", "-i", multi.to_str().unwrap()]);
    assert!(
        out.contains("Loaded image: localhost/busybox:latest") && out.contains("Loaded image: localhost/bb2:x"),
        "{out}"
    );
    check("podman save -m", &["localhost/busybox:latest", "localhost/bb2:x"]);
}

#[test]
fn hako_archives_load_into_podman_and_skopeo() {
    let d = TestDaemon::start();
    let p = Podman::new();
    d.import_busybox();
    let tar = small_tar(d.dir.path(), "second", "second image\n");
    d.ok(&[
        "import",
        "--change",
        "ENV B=2",
        "--change",
        r#"ENTRYPOINT ["/bin/true"]"#,
        tar.to_str().unwrap(),
        "test/second:v2",
    ]);
    let h = hako_inspect(&d, "busybox");
    let id = h["Id"].as_str().unwrap().to_string();
    let diffs = h["RootFS"]["Layers"].clone();
    let manifest = h["Descriptor"]["digest"]
        .as_str()
        .expect("Descriptor.digest")
        .to_string();

    let w = p.work();
    let (ha, ho) = (w.join("h.tar"), w.join("ho.tar"));
    d.ok(&["save", "-o", ha.to_str().unwrap(), "busybox"]);
    d.ok(&["save", "--format", "oci-archive", "-o", ho.to_str().unwrap(), "busybox"]);

    let check = |what: &str, name: &str| {
        let pi = p.inspect(name);
        assert_eq!(
            format!("sha256:{}", pi["Id"].as_str().unwrap()),
            id,
            "{what}: podman's image ID is hako's"
        );
        assert_eq!(pi["Config"]["Cmd"], serde_json::json!(["sh"]), "{what}");
        assert_eq!(pi["RootFS"]["Layers"], diffs, "{what}");
        assert_eq!(
            pi["RepoTags"],
            serde_json::json!(["docker.io/library/busybox:latest"]),
            "{what}"
        );
    };

    // hako's default archive: docker load format (manifest.json) + OCI layout
    let out = p.ok(&["load", "-i", ha.to_str().unwrap()]);
    assert!(out.contains("Loaded image: docker.io/library/busybox:latest"), "{out}");
    check("hako save", "docker.io/library/busybox:latest");
    assert_eq!(p.ids(), vec![id[7..].to_string()]);
    p.ok(&["rmi", "-a", "-f"]);
    assert!(p.ids().is_empty());

    // --format oci-archive: layers as stored (the gzip busybox tarball as imported)
    let out = p.ok(&["load", "-i", ho.to_str().unwrap()]);
    assert!(out.contains("Loaded image: docker.io/library/busybox:latest"), "{out}");
    check("hako save --format oci-archive", "docker.io/library/busybox:latest");
    p.ok(&["rmi", "-a", "-f"]);

    // Two images in one archive.
    let hm = w.join("hm.tar");
    d.ok(&["save", "-o", hm.to_str().unwrap(), "busybox", "test/second:v2"]);
    // With two manifests in index.json podman 4.3 cannot take the oci-archive path (it needs
    // one image) and falls back to docker-archive, whose manifest.json RepoTags are Docker's
    // familiar names, and podman's libimage (NormalizeName) turns short names into
    // localhost/ ones rather than reading them as Docker Hub names.
    let out = p.ok(&["load", "-i", hm.to_str().unwrap()]);
    let mut loaded: Vec<&str> = out.lines().collect();
    loaded.sort();
    assert_eq!(
        loaded,
        vec![
            "Loaded image: localhost/busybox:latest",
            "Loaded image: localhost/test/second:v2"
        ],
        "{out}"
    );
    assert_eq!(
        format!(
            "sha256:{}",
            p.inspect("localhost/busybox:latest")["Id"].as_str().unwrap()
        ),
        id
    );
    let second = p.inspect("localhost/test/second:v2");
    assert_eq!(
        format!("sha256:{}", second["Id"].as_str().unwrap()),
        hako_id(&d, "test/second:v2")
    );
    assert_eq!(second["Config"]["Env"], serde_json::json!(["B=2"]));
    assert_eq!(second["Config"]["Entrypoint"], serde_json::json!(["/bin/true"]));
    assert_eq!(strs(&second["RootFS"]["Layers"]), vec![sha256_file(&tar)]);

    // skopeo: a docker-archive reports the uncompressed layer digests, i.e. the diff IDs.
    let si = json(&p.skopeo(&["inspect", &format!("docker-archive:{}", ha.display())]));
    assert_eq!(si["Layers"], diffs, "skopeo inspect docker-archive: {si}");
    assert_eq!(si["Os"], "linux");
    let cfg = json(&p.skopeo(&["inspect", "--config", &format!("docker-archive:{}", ha.display())]));
    assert_eq!(cfg["rootfs"]["diff_ids"], diffs);
    assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["sh"]));

    // skopeo on the oci-archive: the manifest is hako's, the layer the imported gzip blob.
    let so = json(&p.skopeo(&["inspect", &format!("oci-archive:{}", ho.display())]));
    assert_eq!(so["Digest"], manifest.as_str(), "skopeo sees hako's manifest: {so}");
    assert_eq!(strs(&so["Layers"]), vec![sha256_file(&busybox_tarball())], "{so}");
    let raw = json(&p.skopeo(&["inspect", "--raw", &format!("oci-archive:{}", ho.display())]));
    assert_eq!(raw["config"]["digest"], id.as_str());
    assert_eq!(
        raw["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let cfg = json(&p.skopeo(&["inspect", "--config", &format!("oci-archive:{}", ho.display())]));
    assert_eq!(cfg["rootfs"]["diff_ids"], diffs);
}

// ---------------------------------------------------------------------------------------
// 3. skopeo copy between archive formats and an OCI directory

#[test]
fn skopeo_copies_of_hako_archives_load_back() {
    let d = TestDaemon::start();
    let p = Podman::new();
    d.import_busybox();
    let id = hako_id(&d, "busybox");
    let diffs = hako_inspect(&d, "busybox")["RootFS"]["Layers"].clone();
    let w = p.work();
    let (ha, ho) = (w.join("h.tar"), w.join("ho.tar"));
    d.ok(&["save", "-o", ha.to_str().unwrap(), "busybox"]);
    d.ok(&["save", "--format", "oci-archive", "-o", ho.to_str().unwrap(), "busybox"]);

    // docker-archive -> OCI directory (skopeo compresses the layer and converts the config),
    // tarred up and loaded: a new image ID, the same diff IDs and Cmd.
    let oci = w.join("oci");
    p.skopeo(&[
        "copy",
        &format!("docker-archive:{}", ha.display()),
        &format!("oci:{}:copied", oci.display()),
    ]);
    let index = json(&std::fs::read_to_string(oci.join("index.json")).unwrap());
    let mdigest = index["manifests"][0]["digest"].as_str().unwrap().to_string();
    let m = json(&std::fs::read_to_string(oci.join("blobs/sha256").join(&mdigest[7..])).unwrap());
    let copied_id = m["config"]["digest"].as_str().unwrap().to_string();
    let oci_tar = w.join("oci.tar");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&oci)
            .arg("-cf")
            .arg(&oci_tar)
            .arg("."),
    );
    let out = d.ok(&["load", "-i", oci_tar.to_str().unwrap()]);
    // ref.name "copied" is only a tag, not an image name: loaded by ID, untagged.
    assert_eq!(out.trim(), format!("Loaded image ID: {copied_id}"));
    let c = hako_inspect(&d, &copied_id);
    assert_eq!(c["RootFS"]["Layers"], diffs);
    assert_eq!(c["Config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(c["RepoTags"], serde_json::json!([]));
    let mut both = vec![id.clone(), copied_id.clone()];
    both.sort();
    assert_eq!(hako_ids(&d), both);

    // oci-archive -> docker-archive with a new name: the config is kept, so the same ID.
    let sd = w.join("sd.tar");
    p.skopeo(&[
        "copy",
        &format!("oci-archive:{}", ho.display()),
        &format!("docker-archive:{}:skopeo/bb:1", sd.display()),
    ]);
    let out = d.ok(&["load", "-i", sd.to_str().unwrap()]);
    assert_eq!(out.trim(), "Loaded image: skopeo/bb:1");
    assert_eq!(hako_id(&d, "skopeo/bb:1"), id);
    assert_eq!(
        docker_ok(&d, &["inspect", "-f", "{{json .RootFS.Layers}}", "skopeo/bb:1"]).trim(),
        diffs.to_string()
    );
}

// ---------------------------------------------------------------------------------------
// 3. podman driving hako's OCI runtime

/// The `libpod_parent` cgroups podman (cgroupfs manager) makes and leaves in every hierarchy;
/// dropping this removes the ones that were not there when it was made.
struct LibpodCgroups(Vec<PathBuf>);

impl LibpodCgroups {
    fn list() -> Vec<PathBuf> {
        std::fs::read_dir("/sys/fs/cgroup")
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path().join("libpod_parent"))
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for LibpodCgroups {
    fn drop(&mut self) {
        for d in Self::list().into_iter().filter(|d| !self.0.contains(d)) {
            // Deepest first; rmdir only removes empty cgroups, so nobody's processes are hit.
            let _ = Command::new("find")
                .arg(&d)
                .args(["-depth", "-type", "d", "-exec", "rmdir", "{}", ";"])
                .status();
        }
    }
}

#[test]
fn podman_runs_containers_on_hako_runtime() {
    let _cgroups = LibpodCgroups(LibpodCgroups::list());
    let p = Podman::new();
    p.import_busybox();
    // Built by its own package (hako-runtime), beside hako: `cargo test --workspace`.
    let rt = Path::new(common::hako_bin()).with_file_name("hako-runtime");
    assert!(rt.is_file(), "{} is missing: run cargo test --workspace", rt.display());
    // podman passes neither its --runtime-flag options to every call nor its environment to
    // conmon: the runtime keeps its state in its default root.
    let state = PathBuf::from("/run/hako-runtime");
    let state_existed = state.exists();
    let pm = |args: &[&str]| {
        let mut a = vec!["--runtime", rt.to_str().unwrap()];
        a.extend_from_slice(args);
        p.cmd(&a).stdin(Stdio::null()).output().unwrap()
    };
    // podman's own cleanup (system reset) goes through its default runtime: remove what ran
    // on hako's first, even when an assertion fails.
    struct OnDrop<F: Fn()>(F);
    impl<F: Fn()> Drop for OnDrop<F> {
        fn drop(&mut self) {
            (self.0)()
        }
    }
    let _rm_all = OnDrop(|| {
        let _ = pm(&["rm", "-af", "-t", "0"]);
        if !state_existed {
            // The runtime keeps a deleted container's emptied directory for the next create.
            let _ = std::fs::remove_dir(state.join(hako_runtime::oci::state::SPARE));
            let _ = std::fs::remove_dir(&state);
        }
    });
    let ok = |args: &[&str]| {
        let o = pm(args);
        assert!(o.status.success(), "podman {args:?}: {}", stderr(&o));
        stdout(&o)
    };

    // Output and exit code come back through conmon.
    let o = pm(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo hi; echo err >&2; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(stdout(&o), "hi\n");
    assert!(stderr(&o).contains("err"), "{}", stderr(&o));

    let id = ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--memory",
        "64m",
        "busybox",
        "sh",
        "-c",
        "echo up; exec sleep 300",
    ]);
    let id = id.trim();
    // The state podman reads is hako's.
    let st: Value = serde_json::from_slice(
        &Command::new(&rt)
            .arg("--root")
            .arg(&state)
            .args(["state", id])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(st["status"], "running", "{st}");
    assert_eq!(ok(&["exec", id, "cat", "/proc/1/comm"]), "sleep\n");
    assert_eq!(pm(&["exec", id, "sh", "-c", "exit 5"]).status.code(), Some(5));
    // hako placed the container in the cgroup podman named (cgroupfs: /libpod_parent/libpod-ID).
    let limit = ["/sys/fs/cgroup/memory", "/sys/fs/cgroup"]
        .iter()
        .map(|h| Path::new(h).join(format!("libpod_parent/libpod-{id}")))
        .find(|d| d.is_dir())
        .map(|d| {
            let f = if d.join("memory.max").exists() {
                "memory.max"
            } else {
                "memory.limit_in_bytes"
            };
            std::fs::read_to_string(d.join(f)).unwrap()
        });
    assert_eq!(limit.as_deref().map(str::trim), Some("67108864"));
    ok(&["pause", id]);
    assert_eq!(ok(&["inspect", "-f", "{{.State.Status}}", id]).trim(), "paused");
    ok(&["unpause", id]);
    assert!(ok(&["logs", id]).contains("up"));
    assert!(ok(&["top", id]).contains("sleep 300"));
    ok(&["stop", "-t", "1", id]);
    assert_eq!(ok(&["inspect", "-f", "{{.State.ExitCode}}", id]).trim(), "137");
    ok(&["rm", id]);
    assert!(!state.join(id).exists(), "state left in {}", state.display());
    let cgroups = LibpodCgroups::list()
        .iter()
        .filter(|d| d.join(format!("libpod-{id}")).exists())
        .count();
    assert_eq!(cgroups, 0, "the container's cgroups outlived it");
}
