//! Test harness: a real `hako daemon` on a temporary root and socket, and the CLI.
//!
//! Every daemon is stopped by PID when its `TestDaemon` drops, and its root removed.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn hako_bin() -> &'static str {
    env!("CARGO_BIN_EXE_hako")
}

pub struct TestDaemon {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    /// Extra environment for the daemon process.
    pub env: Vec<(String, String)>,
}

impl TestDaemon {
    pub fn start() -> TestDaemon {
        Self::start_with_env(&[])
    }

    pub fn start_with_env(env: &[(&str, &str)]) -> TestDaemon {
        let dir = tempfile::Builder::new()
            .prefix("hako-test-")
            .tempdir_in("/var/tmp")
            .expect("tempdir");
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut d = TestDaemon { dir, child: None, env };
        d.spawn();
        d
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("hako.sock")
    }

    /// The default network's bridge: one per test daemon, so daemons side by side keep apart.
    pub fn bridge(&self) -> String {
        let n = self
            .dir
            .path()
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        format!("hk{}", &n[n.len().saturating_sub(6)..])
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// Starts the daemon process and waits until it answers.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.log"))
            .expect("log");
        let child = Command::new(hako_bin())
            .args(["daemon", "--root"])
            .arg(self.root())
            .args(["-H", &self.host()])
            .args(["--bridge", &self.bridge()])
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn daemon");
        self.child = Some(child);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if self.hako(&["version"]).status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("daemon did not answer; log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: a clean shutdown.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("daemon running");
        rustix::process::kill_process(rustix::process::Pid::from_child(&c), rustix::process::Signal::TERM)
            .expect("kill");
        c.wait().expect("wait")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(hako_bin());
        c.args(args).env("HAKO_HOST", self.host());
        c
    }

    pub fn hako(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run hako")
    }

    /// Runs hako and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.hako(args);
        assert!(
            o.status.success(),
            "hako {args:?} failed ({}): {}\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr),
            String::from_utf8_lossy(&o.stdout)
        );
        String::from_utf8(o.stdout).expect("utf-8 output")
    }

    /// The real docker CLI pointed at this daemon.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .output()
            .expect("run docker")
    }

    /// Imports the busybox base image (built and cached by scripts/images.sh).
    pub fn import_busybox(&self) {
        let tar = busybox_tarball();
        self.ok(&[
            "import",
            "--change",
            r#"CMD ["sh"]"#,
            tar.to_str().unwrap(),
            "busybox:latest",
        ]);
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            // Containers outlive their daemon by design, and keep its bridges: what a failed
            // test left running goes first, then its networks.
            let ids = stdout(&self.hako(&["ps", "-aq"]));
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids);
                let _ = self.hako(&args);
            }
            let _ = self.hako(&["network", "prune", "-f"]);
            let _ = self.stop();
        }
    }
}

/// The busybox rootfs tarball from scripts/images.sh (cached outside the repo).
pub fn busybox_tarball() -> PathBuf {
    static ONCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/images.sh");
        let o = Command::new("bash")
            .arg(script)
            .args(["--only", "busybox", "--no-import"])
            .output()
            .expect("run images.sh");
        assert!(
            o.status.success(),
            "images.sh failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        PathBuf::from(String::from_utf8(o.stdout).unwrap().trim())
    })
    .clone()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Fails the test, saying how to install it, when `tool` is not on PATH.
pub fn require(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is not installed: run scripts/install-deps.sh (docker CLI, podman, skopeo, docker-registry)"
    );
}

pub fn run_ok(c: &mut Command) -> String {
    let o = c.output().unwrap_or_else(|e| panic!("run {c:?}: {e}"));
    assert!(
        o.status.success(),
        "{c:?} failed ({}): {}\n{}",
        o.status,
        stderr(&o),
        stdout(&o)
    );
    stdout(&o)
}

/// Mount points at or under `dir` (mountinfo field 5), deepest first.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = format!("{}/", dir.display());
    let mut v: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(String::from))
        .filter(|m| m.starts_with(&prefix) || *m == dir.display().to_string())
        .collect();
    v.sort_by(|a, b| b.cmp(a));
    v
}

/// podman with its own graphroot, runroot, tmp dir, network config dir and file locks under
/// one temp dir, configured as this machine needs (MACHINE.md): `default_ulimits` within the
/// hard limits, cgroupfs, file events log. Dropping it runs `podman system reset -f`,
/// unmounts whatever is left below the dir and removes the dir.
pub struct Podman {
    dir: Option<tempfile::TempDir>,
}

impl Podman {
    pub fn new() -> Podman {
        require("podman");
        let dir = tempfile::Builder::new()
            .prefix("hako-interop-podman-")
            .tempdir_in("/var/tmp")
            .expect("tempdir");
        let p = dir.path();
        for d in ["tmp", "net", "work"] {
            std::fs::create_dir_all(p.join(d)).unwrap();
        }
        std::fs::write(
            p.join("containers.conf"),
            format!(
                "[containers]\n\
                 default_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
                 [engine]\n\
                 cgroup_manager = \"cgroupfs\"\n\
                 events_logger = \"file\"\n\
                 events_logfile_path = \"{p}/events.log\"\n\
                 tmp_dir = \"{p}/tmp\"\n\
                 lock_type = \"file\"\n\
                 [network]\n\
                 network_config_dir = \"{p}/net\"\n",
                p = p.display()
            ),
        )
        .unwrap();
        std::fs::write(
            p.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"overlay\"\ngraphroot = \"{p}/root\"\nrunroot = \"{p}/run\"\n",
                p = p.display()
            ),
        )
        .unwrap();
        Podman { dir: Some(dir) }
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("podman dir").path()
    }

    /// A scratch dir for archives, inside the podman dir (removed with it).
    pub fn work(&self) -> PathBuf {
        self.path().join("work")
    }

    pub fn env(&self, c: &mut Command) {
        let p = self.path();
        c.env("CONTAINERS_CONF", p.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", p.join("storage.conf"))
            .env("TMPDIR", p.join("tmp"));
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let p = self.path();
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(p.join("root"))
            .arg("--runroot")
            .arg(p.join("run"))
            .args(["--storage-driver", "overlay"])
            .args(args);
        self.env(&mut c);
        c
    }

    pub fn ok(&self, args: &[&str]) -> String {
        run_ok(&mut self.cmd(args))
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        // Unmounts the overlay driver's private bind mount of its home and removes the
        // storage; networks are only looked for in our own network_config_dir.
        let _ = self.reset_with(dir.path());
        for m in mounts_under(dir.path()) {
            let ok = Command::new("umount")
                .arg(&m)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                let _ = Command::new("umount").arg("-l").arg(&m).status();
            }
        }
        let left = mounts_under(dir.path());
        if left.is_empty() {
            let _ = dir.close();
        } else {
            // Never recurse into a mount: keep the dir and say so.
            let kept = dir.keep();
            eprintln!(
                "warning: mounts left under {}: {left:?}; not removing it",
                kept.display()
            );
        }
    }
}

impl Podman {
    fn reset_with(&self, p: &Path) -> std::io::Result<Output> {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(p.join("root"))
            .arg("--runroot")
            .arg(p.join("run"))
            .args(["--storage-driver", "overlay", "system", "reset", "-f"]);
        c.env("CONTAINERS_CONF", p.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", p.join("storage.conf"))
            .env("TMPDIR", p.join("tmp"));
        c.stdout(Stdio::null()).stderr(Stdio::null()).output()
    }
}
