//! The `hako-runtime` program's command line, as podman or a person calls it: commands that
//! need no container (`spec`, `features`) and runc's answers for one that does not exist.
//! Containers themselves are run through it by hako's interop tests (podman --runtime).

use std::path::Path;
use std::process::{Command, Output};

fn runtime(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hako-runtime"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .expect("running hako-runtime")
}

#[test]
fn spec_writes_a_config_runc_would() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().to_str().unwrap();
    let out = runtime(&dir.path().join("state"), &["spec", "--bundle", bundle]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["root"]["path"], "rootfs");
    assert_eq!(cfg["process"]["args"][0], "sh");
    let kinds: Vec<&str> = cfg["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    for ns in ["pid", "mount", "network", "ipc", "uts"] {
        assert!(kinds.contains(&ns), "{ns} missing from {kinds:?}");
    }
    // A second spec would overwrite someone's config: runc refuses, and so does hako.
    let again = runtime(&dir.path().join("state"), &["spec", "--bundle", bundle]);
    assert!(!again.status.success());
}

#[test]
fn features_are_json_with_the_namespaces_it_makes() {
    let dir = tempfile::tempdir().unwrap();
    let out = runtime(dir.path(), &["features"]);
    assert!(out.status.success());
    let f: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(f["ociVersionMin"].is_string(), "{f}");
    let ns = f["linux"]["namespaces"].as_array().unwrap();
    assert!(ns.iter().any(|n| n == "cgroup"), "{ns:?}");
}

#[test]
fn a_missing_container_is_runcs_error() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["state", "nope"][..], &["start", "nope"], &["kill", "nope", "KILL"]] {
        let out = runtime(dir.path(), args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("container does not exist: nope"), "{args:?}: {err}");
    }
    // Forcing the removal of what is not there is not an error.
    assert!(runtime(dir.path(), &["delete", "--force", "nope"]).status.success());
    let bad = runtime(dir.path(), &["state", "../x"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid container id"));
}
