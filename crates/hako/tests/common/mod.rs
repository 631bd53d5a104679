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
            "hako {args:?} failed: {}\n{}",
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
