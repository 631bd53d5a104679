//! `hako runtime`, the OCI runtime with runc's command line, on real bundles made from the
//! busybox image: create/start/state/exec/ps/pause/resume/kill/delete, run, hooks, errors.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{hako_bin, stderr, stdout};
use serde_json::{json, Value};

/// A bundle and a runtime root in a temporary directory; deletes its containers on drop.
struct Bundle {
    dir: tempfile::TempDir,
    ids: Vec<String>,
}

impl Bundle {
    fn new() -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("hako-rt-")
            .tempdir_in("/var/tmp")
            .unwrap();
        let rootfs = dir.path().join("bundle/rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        let st = Command::new("tar")
            .args(["--numeric-owner", "-xzf"])
            .arg(common::busybox_tarball())
            .arg("-C")
            .arg(&rootfs)
            .status()
            .unwrap();
        assert!(st.success());
        let b = Bundle { dir, ids: vec![] };
        let o = b.rt(&["spec", "--bundle", b.bundle().to_str().unwrap()]);
        assert!(o.status.success(), "spec: {}", stderr(&o));
        b
    }

    fn bundle(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn rt(&self, args: &[&str]) -> Output {
        Command::new(hako_bin())
            .arg("runtime")
            .arg("--root")
            .arg(self.root())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.rt(args);
        assert!(
            o.status.success(),
            "hako runtime {args:?}: {}{}",
            stdout(&o),
            stderr(&o)
        );
        stdout(&o)
    }

    /// Edits config.json: `f` gets it as JSON.
    fn config(&self, f: impl FnOnce(&mut Value)) {
        let p = self.bundle().join("config.json");
        let mut v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        v["process"]["terminal"] = json!(false);
        f(&mut v);
        std::fs::write(&p, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    }

    fn create(&mut self, id: &str) {
        self.ids.push(id.to_string());
        // stdio go to the container: keep them away from the test's pipes, or output() would
        // wait for the container to end.
        let st = Command::new(hako_bin())
            .arg("runtime")
            .arg("--root")
            .arg(self.root())
            .args(["create", "--bundle", self.bundle().to_str().unwrap(), id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "create {id}");
    }

    fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).unwrap()
    }

    fn wait_status(&self, id: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.state(id)["status"] != want {
            assert!(
                Instant::now() < deadline,
                "{id} never became {want}: {}",
                self.state(id)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = self.rt(&["delete", "--force", id]);
        }
    }
}

fn cgroup_dirs(name: &str) -> Vec<String> {
    let o = Command::new("find")
        .args(["/sys/fs/cgroup", "-name", name, "-type", "d"])
        .output()
        .unwrap();
    stdout(&o).lines().map(String::from).collect()
}

#[test]
fn create_start_exec_pause_kill_delete() {
    let mut b = Bundle::new();
    let id = format!("hako-rt-life-{}", std::process::id());
    b.config(|v| {
        v["process"]["args"] = json!(["sh", "-c", "echo started > /tmp/mark; exec sleep 300"]);
        v["linux"]["resources"] = json!({"pids": {"limit": 50}, "memory": {"limit": 67108864}});
    });
    b.create(&id);
    let st = b.state(&id);
    assert_eq!(st["status"], "created", "{st}");
    assert_eq!(st["id"], id.as_str());
    let pid = st["pid"].as_i64().unwrap();
    assert!(pid > 0);
    // Created: the process waits; the command has not run yet.
    assert!(!b.bundle().join("rootfs/tmp/mark").exists());
    let cg = cgroup_dirs(&id);
    assert!(!cg.is_empty(), "no cgroup named {id}");
    assert!(cg.iter().any(|d| std::fs::read_to_string(format!("{d}/cgroup.procs"))
        .map(|p| p.lines().any(|l| l == pid.to_string()))
        .unwrap_or(false)));
    let mem = cg.iter().find(|d| d.contains("/memory/")).expect("memory cgroup");
    assert_eq!(
        std::fs::read_to_string(format!("{mem}/memory.limit_in_bytes"))
            .unwrap()
            .trim(),
        "67108864"
    );

    b.ok(&["start", &id]);
    b.wait_status(&id, "running");
    let deadline = Instant::now() + Duration::from_secs(5);
    // The container has its own mount namespace: its /tmp is the bundle's rootfs/tmp.
    while !b.bundle().join("rootfs/tmp/mark").exists() {
        assert!(Instant::now() < deadline, "the process never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    let e = b.rt(&["start", &id]);
    assert!(!e.status.success());
    assert!(stderr(&e).contains("already running"), "{}", stderr(&e));

    // exec joins the namespaces: PID 1 is sleep, the hostname is the config's.
    assert_eq!(b.ok(&["exec", &id, "cat", "/tmp/mark"]), "started\n");
    assert_eq!(b.ok(&["exec", &id, "cat", "/proc/1/comm"]), "sleep\n");
    assert_eq!(b.ok(&["exec", &id, "hostname"]), "hako\n");
    // The cgroup namespace was made after the move into the container's cgroup: that
    // cgroup is its root.
    let cg = b.ok(&["exec", &id, "cat", "/proc/1/cgroup"]);
    assert!(cg.lines().all(|l| l.ends_with(":/")), "{cg}");
    let o = b.rt(&["exec", &id, "sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    // The default profile's seccomp and capabilities hold in exec too.
    let o = b.rt(&["exec", &id, "mount", "-t", "tmpfs", "t", "/mnt"]);
    assert!(!o.status.success());

    let pids: Vec<i64> = serde_json::from_str(&b.ok(&["ps", "--format", "json", &id])).unwrap();
    assert_eq!(pids, vec![pid]);
    let table = b.ok(&["ps", &id]);
    assert!(table.lines().next().unwrap().contains("PID"));
    assert!(table.contains("sleep 300"), "{table}");

    b.ok(&["pause", &id]);
    assert_eq!(b.state(&id)["status"], "paused");
    let freezer = cgroup_dirs(&id).into_iter().find(|d| d.contains("/freezer/")).unwrap();
    assert_eq!(
        std::fs::read_to_string(format!("{freezer}/freezer.state"))
            .unwrap()
            .trim(),
        "FROZEN"
    );
    b.ok(&["resume", &id]);
    assert_eq!(b.state(&id)["status"], "running");

    let list = b.ok(&["list"]);
    assert!(list.starts_with("ID"), "{list}");
    assert!(
        list.lines().any(|l| l.starts_with(&id) && l.contains("running")),
        "{list}"
    );
    let e = b.rt(&["delete", &id]);
    assert!(stderr(&e).contains("not stopped"), "{}", stderr(&e));

    b.ok(&["kill", &id, "KILL"]);
    b.wait_status(&id, "stopped");
    let e = b.rt(&["kill", &id]);
    assert!(stderr(&e).contains("not running"), "{}", stderr(&e));
    b.ok(&["delete", &id]);
    assert!(!b.root().join(&id).exists());
    assert!(cgroup_dirs(&id).is_empty(), "cgroup left: {:?}", cgroup_dirs(&id));
    let e = b.rt(&["state", &id]);
    assert!(stderr(&e).contains("does not exist"), "{}", stderr(&e));
}

#[test]
fn run_gives_the_exit_code_and_cleans_up() {
    let b = Bundle::new();
    let id = format!("hako-rt-run-{}", std::process::id());
    b.config(|v| {
        v["process"]["args"] = json!([
            "sh",
            "-c",
            "echo out; echo err >&2; cat /proc/self/status | grep NoNewPrivs; exit 3"
        ])
    });
    let o = b.rt(&["run", "--bundle", b.bundle().to_str().unwrap(), &id]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("out\n"), "{}", stdout(&o));
    assert!(stdout(&o).contains("NoNewPrivs:\t1"), "{}", stdout(&o));
    assert_eq!(stderr(&o), "err\n");
    assert!(!b.root().join(&id).exists());
    assert!(cgroup_dirs(&id).is_empty());

    b.config(|v| v["process"]["args"] = json!(["/nonexistent"]));
    let o = b.rt(&["run", "--bundle", b.bundle().to_str().unwrap(), &id]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    assert!(stderr(&o).contains("no such file or directory"), "{}", stderr(&o));
    assert!(!b.root().join(&id).exists());
    assert!(cgroup_dirs(&id).is_empty());
}

/// Without a cgroup namespace (runc's own `spec` has none) the container sees the host's
/// hierarchies from their roots, read-only, and its own cgroup under its path there.
#[test]
fn without_a_cgroup_namespace_the_host_hierarchies_are_read_only() {
    let b = Bundle::new();
    let id = format!("hako-rt-nocgns-{}", std::process::id());
    // Without a cgroupsPath, the container's cgroup is named after it in ours, as runc does.
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let own = own
        .lines()
        .find_map(|l| l.split_once(":pids:"))
        .map(|(_, p)| p.trim_end_matches('/').to_string())
        .unwrap();
    b.config(|v| {
        let ns = v["linux"]["namespaces"].as_array_mut().unwrap();
        ns.retain(|n| n["type"] != "cgroup");
        v["process"]["args"] = json!([
            "sh",
            "-c",
            format!(
                "grep ' /sys/fs/cgroup' /proc/self/mountinfo; cat /proc/self/cgroup; \
                 touch /sys/fs/cgroup/pids/x && echo WRITABLE; ls /sys/fs/cgroup/pids{own}"
            )
        ]);
    });
    let o = b.rt(&["run", "--bundle", b.bundle().to_str().unwrap(), &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let mounts: Vec<&str> = out.lines().filter(|l| l.contains(" /sys/fs/cgroup")).collect();
    let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let host_count = host.lines().filter(|l| l.contains(" /sys/fs/cgroup")).count();
    assert_eq!(mounts.len(), host_count, "{out}");
    for m in &mounts {
        let opts = m.split(' ').nth(5).unwrap();
        assert!(opts.split(',').any(|o| o == "ro"), "not read-only: {m}");
        assert!(
            opts.contains("nosuid") && opts.contains("nodev") && opts.contains("noexec"),
            "{m}"
        );
    }
    assert!(!out.contains("WRITABLE"), "{out}");
    assert!(stderr(&o).contains("Read-only file system"), "{}", stderr(&o));
    // Its own cgroup, seen from the hierarchy's root.
    let want = format!("{own}/{id}");
    assert!(out.contains(&format!(":pids:{want}\n")), "{want} not in {out}");
    assert!(out.lines().any(|l| l == id), "its cgroup is not listed: {out}");
    assert!(!b.root().join(&id).exists());
    assert!(cgroup_dirs(&id).is_empty());
}

/// With a cgroup namespace the cgroup filesystem waits for the cgroup and is mounted after
/// the other mounts; what goes over it stays over it, and the namespace is rooted at the
/// container's own cgroup.
#[test]
fn a_cgroup_mount_waits_for_the_cgroup_and_keeps_its_order() {
    let b = Bundle::new();
    let id = format!("hako-rt-cgns-{}", std::process::id());
    b.config(|v| {
        let mounts = v["mounts"].as_array_mut().unwrap();
        let at = mounts
            .iter()
            .position(|m| m["type"] == "cgroup")
            .expect("runc's spec mounts the cgroup filesystem");
        // Over it, right after it (it hides the cgroup filesystem as long as the order is
        // kept), and an unrelated mount after both.
        mounts.insert(
            at + 1,
            json!({"destination": "/sys/fs/cgroup", "type": "tmpfs", "source": "tmpfs", "options": ["size=64k"]}),
        );
        mounts.push(json!({"destination": "/mnt", "type": "tmpfs", "source": "tmpfs", "options": ["size=64k"]}));
        v["process"]["args"] = json!([
            "sh",
            "-c",
            "grep -E ' /(sys/fs/cgroup[^ ]*|mnt) ' /proc/self/mountinfo; echo ===; ls -A /sys/fs/cgroup; echo ===; cat /proc/self/cgroup"
        ]);
    });
    let o = b.rt(&["run", "--bundle", b.bundle().to_str().unwrap(), &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let parts: Vec<&str> = out.split("===\n").collect();
    assert_eq!(parts.len(), 3, "{out}");
    let mounts: Vec<&str> = parts[0].lines().collect();
    // Mount order is mountinfo's: /mnt's first (listed after the cgroup mount in config.json,
    // it did not wait for the cgroup), then the cgroup filesystems, then the tmpfs over them
    // (the 64k one).
    let first_cgroup = mounts
        .iter()
        .position(|l| l.contains(" /sys/fs/cgroup"))
        .expect("cgroup mounts");
    let cgroupfs = mounts
        .iter()
        .rposition(|l| l.contains(" - cgroup"))
        .expect("a cgroup mount");
    let over = mounts
        .iter()
        .position(|l| l.contains(" /sys/fs/cgroup ") && l.contains("size=64k"))
        .expect("the tmpfs over /sys/fs/cgroup");
    let mnt = mounts.iter().position(|l| l.contains(" /mnt ")).expect("/mnt");
    assert!(mnt < first_cgroup && cgroupfs < over, "{out}");
    assert_eq!(parts[1], "", "the tmpfs no longer covers the cgroup filesystem: {out}");
    // Each hierarchy seen from the container's own cgroup.
    assert!(parts[2].lines().all(|l| l.ends_with(":/")), "{out}");
    assert!(cgroup_dirs(&id).is_empty());
}

#[test]
fn hooks_run_at_their_stages_with_the_state() {
    let b = Bundle::new();
    let id = format!("hako-rt-hooks-{}", std::process::id());
    let log = b.dir.path().join("hooks.log");
    let host_hook = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("echo {name} $(cat) >> {}", log.display())]});
    b.config(|v| {
        v["process"]["args"] = json!(["true"]);
        v["hooks"] = json!({
            "prestart": [host_hook("prestart")],
            "createRuntime": [host_hook("createRuntime")],
            "createContainer": [host_hook("createContainer")],
            // Resolved in the container: busybox's sh, writing into the container's /tmp.
            "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "echo startContainer > /tmp/hook"]}],
            "poststart": [host_hook("poststart")],
            "poststop": [host_hook("poststop")],
        });
    });
    let o = b.rt(&["run", "--bundle", b.bundle().to_str().unwrap(), &id]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&log).unwrap();
    let stages: Vec<&str> = text.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        stages,
        ["prestart", "createRuntime", "createContainer", "poststart", "poststop"]
    );
    for l in text.lines() {
        let state: Value = serde_json::from_str(l.split_once(' ').unwrap().1).unwrap();
        assert_eq!(state["id"], id.as_str(), "{l}");
        assert!(state["pid"].as_i64().unwrap() > 0, "{l}");
    }
    assert_eq!(
        std::fs::read_to_string(b.bundle().join("rootfs/tmp/hook")).unwrap(),
        "startContainer\n"
    );

    // A failing prestart hook fails the create and leaves nothing behind.
    b.config(|v| v["hooks"] = json!({"prestart": [{"path": "/bin/false"}]}));
    let o = b.rt(&["run", "--bundle", b.bundle().to_str().unwrap(), &id]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("prestart hook /bin/false"), "{}", stderr(&o));
    assert!(!b.root().join(&id).exists());
    assert!(cgroup_dirs(&id).is_empty());
}

#[test]
fn bad_input_is_refused_clearly() {
    let mut b = Bundle::new();
    let id = format!("hako-rt-bad-{}", std::process::id());
    b.config(|v| v["process"]["args"] = json!(["sleep", "300"]));
    b.create(&id);
    // Same id twice.
    let o = b.rt(&["create", "--bundle", b.bundle().to_str().unwrap(), &id]);
    assert!(stderr(&o).contains("container with id exists"), "{}", stderr(&o));
    // A created container is deleted without --force (its process never ran).
    b.ok(&["delete", &id]);
    assert!(cgroup_dirs(&id).is_empty());
    for (args, want) in [
        (vec!["start", "nope"], "container does not exist: nope"),
        (vec!["state", "../etc"], "invalid container id"),
        (vec!["kill", "nope", "BOGUS"], "unknown signal"),
        (vec!["create", "--bundle", "/nonexistent", "x"], "/nonexistent"),
        (vec!["--systemd-cgroup", "list"], "not supported"),
    ] {
        let o = b.rt(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
    // A terminal with nobody to give it to.
    b.config(|v| v["process"]["terminal"] = json!(true));
    let o = b.rt(&["create", "--bundle", b.bundle().to_str().unwrap(), "t1"]);
    assert!(stderr(&o).contains("console socket"), "{}", stderr(&o));
    assert!(!b.root().join("t1").exists());
    // The features document names what the runtime does.
    let f: Value = serde_json::from_str(&b.ok(&["features"])).unwrap();
    assert_eq!(f["linux"]["seccomp"]["enabled"], true);
    assert!(f["hooks"].as_array().unwrap().iter().any(|h| h == "createContainer"));
}
