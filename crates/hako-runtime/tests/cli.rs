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

#[test]
fn help_version_and_usage_errors() {
    let bin = env!("CARGO_BIN_EXE_hako-runtime");
    let out = |args: &[&str]| Command::new(bin).args(args).output().unwrap();
    let help = out(&["--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for cmd in [
        "create", "start", "state", "kill", "delete", "run", "exec", "list", "ps", "pause", "features", "spec",
    ] {
        assert!(
            text.contains(&format!("\n  {cmd}")),
            "{cmd} missing from the help:\n{text}"
        );
    }
    assert!(out(&["state", "--help"]).status.success());
    let v = out(&["--version"]);
    assert_eq!(
        String::from_utf8_lossy(&v.stdout),
        format!("hako-runtime {}\n", env!("CARGO_PKG_VERSION"))
    );
    for (args, says) in [
        (&[][..], "no command given"),
        (&["frobnicate"], "unknown command \"frobnicate\""),
        (&["state"], "state: ID is missing"),
        (&["kill", "a", "KILL", "extra"], "unexpected argument \"extra\""),
        (&["create", "--bogus", "x"], "unknown option --bogus"),
        (
            &["create", "--preserve-fds", "many", "x"],
            "--preserve-fds \"many\" is not a number",
        ),
        (&["--root"], "--root needs a value"),
    ] {
        let o = out(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn options_take_every_form_runc_callers_use() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state");
    let bin = env!("CARGO_BIN_EXE_hako-runtime");
    // `--opt=value`, and a global option after the command: both reach the same root.
    let bundle = dir.path().join("b");
    std::fs::create_dir(&bundle).unwrap();
    let o = Command::new(bin)
        .arg(format!("--root={}", root.display()))
        .args(["spec", &format!("--bundle={}", bundle.display())])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(bundle.join("config.json").is_file());
    let o = Command::new(bin)
        .args(["list", "--format", "json", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "[]");
}
