//! Containers end to end: real namespaces, overlay mounts, cgroups, seccomp, monitors, on a
//! real daemon with the busybox image made by scripts/images.sh.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{stderr, stdout, TestDaemon};

fn daemon() -> TestDaemon {
    let d = TestDaemon::start();
    d.import_busybox();
    d
}

fn run(d: &TestDaemon, args: &[&str]) -> std::process::Output {
    let mut a = vec!["run", "--rm"];
    a.extend_from_slice(args);
    d.hako(&a)
}

/// `run --rm ARGS` must fail as a bad request does (125), saying `why`.
fn refused(d: &TestDaemon, args: &[&str], why: &str) {
    let o = run(d, args);
    assert_eq!(o.status.code(), Some(125), "{args:?}: {}", stdout(&o));
    assert!(stderr(&o).contains(why), "{args:?}: {}", stderr(&o));
}

/// hako's cgroups anywhere in the hierarchies (each container's is `hako-<id>`).
fn hako_cgroups() -> Vec<String> {
    let out = Command::new("find")
        .args(["/sys/fs/cgroup", "-name", "hako-*", "-type", "d"])
        .output()
        .unwrap();
    stdout(&out).lines().map(String::from).collect()
}

fn monitors_of(d: &TestDaemon) -> usize {
    let root = d.root().display().to_string();
    let out = Command::new("pgrep")
        .args(["-f", &format!("monitor {root}")])
        .output()
        .unwrap();
    stdout(&out).lines().count()
}

#[test]
fn exit_codes_and_streams() {
    let d = daemon();
    let o = run(&d, &["busybox", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(stdout(&o), "out\n");
    assert_eq!(stderr(&o), "err\n");
    assert_eq!(run(&d, &["busybox", "true"]).status.code(), Some(0));
    assert_eq!(run(&d, &["busybox", "false"]).status.code(), Some(1));
    let o = run(&d, &["busybox", "nosuchcommand"]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    assert!(stderr(&o).contains("executable file not found"), "{}", stderr(&o));
    let o = run(&d, &["busybox", "/etc/passwd"]);
    assert_eq!(o.status.code(), Some(126), "{}", stderr(&o));
    let o = run(&d, &["nosuchimage:1", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("No such image: nosuchimage:1"), "{}", stderr(&o));
    let o = d.hako(&["run", "--bogus-flag", "busybox"]);
    assert_eq!(o.status.code(), Some(125));
    // stdin reaches the container; EOF ends it.
    let mut c = d
        .cmd(&["run", "--rm", "-i", "busybox", "tr", "a-z", "A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(b"hello stdin\n").unwrap();
    let o = c.wait_with_output().unwrap();
    assert_eq!(stdout(&o), "HELLO STDIN\n");
    // A container killed by a signal exits 128+N.
    let id = d.ok(&["run", "-d", "busybox", "sleep", "100"]).trim().to_string();
    d.ok(&["kill", &id]);
    assert_eq!(d.ok(&["wait", &id]).trim(), "137");
    d.ok(&["rm", &id]);
    // --rm containers are gone.
    assert_eq!(d.ok(&["ps", "-aq"]), "");
}

#[test]
fn isolation_and_security_defaults() {
    let d = daemon();
    let script = "echo pid1=$(cat /proc/1/cmdline | tr '\\0' ' '); hostname; ls /proc | grep -c '^[0-9]'; \
                  grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; \
                  mount -t tmpfs x /tmp 2>/dev/null && echo mount-ok || echo mount-denied; \
                  unshare -n true 2>/dev/null && echo unshare-ok || echo unshare-denied; \
                  cat /proc/kcore 2>/dev/null | wc -c; ls /proc/acpi 2>/dev/null | wc -l; \
                  echo x > /proc/sys/kernel/hostname 2>/dev/null && echo procsys-writable || echo procsys-ro; \
                  ip link 2>/dev/null | grep -c 'state' ; cat /etc/hostname";
    let o = run(&d, &["--name", "iso", "busybox", "sh", "-c", script]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("pid1=sh -c"), "{out}");
    let hostname = lines[1];
    assert_eq!(hostname.len(), 12, "hostname is the short ID: {out}");
    let procs: usize = lines[2].parse().unwrap();
    assert!(procs <= 4, "host processes are visible: {out}");
    assert!(
        out.contains("CapEff:\t00000000a80425fb"),
        "Docker's default capabilities: {out}"
    );
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(out.contains("mount-denied"), "{out}");
    assert!(out.contains("unshare-denied"), "{out}");
    assert!(out.contains("procsys-ro"), "{out}");
    assert_eq!(lines.last().unwrap(), &hostname);

    // --privileged lifts the capability and seccomp limits.
    let o = run(
        &d,
        &[
            "--privileged",
            "busybox",
            "sh",
            "-c",
            "mkdir -p /mnt && mount -t tmpfs x /mnt && echo mount-ok; grep Seccomp: /proc/self/status",
        ],
    );
    assert!(stdout(&o).contains("mount-ok"), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("Seccomp:\t0"), "{}", stdout(&o));
    // --cap-add / --cap-drop, seccomp=unconfined, --read-only, --tmpfs, -u, -w, -e, -h.
    let o = run(
        &d,
        &[
            "--cap-drop",
            "ALL",
            "--cap-add",
            "CHOWN",
            "busybox",
            "grep",
            "CapEff",
            "/proc/self/status",
        ],
    );
    assert!(stdout(&o).contains("0000000000000001"), "{}", stdout(&o));
    let o = run(
        &d,
        &[
            "--security-opt",
            "seccomp=unconfined",
            "busybox",
            "grep",
            "Seccomp:",
            "/proc/self/status",
        ],
    );
    assert!(stdout(&o).contains("Seccomp:\t0"), "{}", stdout(&o));
    let o = run(
        &d,
        &[
            "--read-only",
            "--tmpfs",
            "/scratch",
            "busybox",
            "sh",
            "-c",
            "touch /x 2>/dev/null || echo ro; touch /scratch/y && echo tmpfs-ok",
        ],
    );
    assert_eq!(stdout(&o), "ro\ntmpfs-ok\n");
    let o = run(
        &d,
        &[
            "-u",
            "nobody",
            "-w",
            "/tmp/wd",
            "-e",
            "A=1",
            "-h",
            "myhost",
            "busybox",
            "sh",
            "-c",
            "id -u; pwd; echo $A; hostname; grep CapEff /proc/self/status",
        ],
    );
    assert_eq!(
        stdout(&o),
        "65534\n/tmp/wd\n1\nmyhost\nCapEff:\t0000000000000000\n",
        "{}",
        stderr(&o)
    );
    let o = run(&d, &["-u", "ghost", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("unable to find user ghost"), "{}", stderr(&o));
    // --network none: only lo, and it is up.
    let o = run(
        &d,
        &[
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "ls /sys/class/net; ping -c1 -W1 127.0.0.1 >/dev/null && echo lo-up",
        ],
    );
    assert_eq!(stdout(&o), "lo\nlo-up\n", "{}", stderr(&o));
}

#[test]
fn resource_limits() {
    let d = daemon();
    let o = d.hako(&[
        "run",
        "--name",
        "hog",
        "-m",
        "32m",
        "--memory-swap",
        "32m",
        "busybox",
        "sh",
        "-c",
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
    ]);
    assert_eq!(o.status.code(), Some(137), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.OOMKilled}}", "hog"]).trim(), "true");
    d.ok(&["rm", "hog"]);
    let o = run(
        &d,
        &[
            "--pids-limit",
            "20",
            "busybox",
            "sh",
            "-c",
            "for i in $(seq 40); do sleep 5 & done",
        ],
    );
    assert!(
        stderr(&o).contains("can't fork"),
        "the pids limit did not stop the fork loop: {}",
        stderr(&o)
    );
    // The container sees its own limits under /sys/fs/cgroup, read-only: one directory per
    // hierarchy on a v1 or hybrid host (as Docker mounts them), cgroup2 files on a v2 host.
    let o = run(
        &d,
        &[
            "-m",
            "64m",
            "--pids-limit",
            "33",
            "busybox",
            "sh",
            "-c",
            "if [ -d /sys/fs/cgroup/memory ]; then cat /sys/fs/cgroup/memory/memory.limit_in_bytes \
             /sys/fs/cgroup/pids/pids.max; else cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max; fi; \
             touch /sys/fs/cgroup/x",
        ],
    );
    assert_eq!(stdout(&o), "67108864\n33\n", "{}", stderr(&o));
    assert!(stderr(&o).contains("Read-only file system"), "{}", stderr(&o));
    // --cpus shows in the container's cgroup.
    let id = d
        .ok(&[
            "run",
            "-d",
            "--cpus",
            "0.5",
            "--cpu-shares",
            "512",
            "-m",
            "64m",
            "busybox",
            "sleep",
            "30",
        ])
        .trim()
        .to_string();
    let cg = hako_cgroups()
        .into_iter()
        .find(|p| p.contains(&id) && p.starts_with("/sys/fs/cgroup/cpu/"))
        .expect("cpu cgroup of the container");
    assert_eq!(
        std::fs::read_to_string(format!("{cg}/cpu.cfs_quota_us"))
            .unwrap()
            .trim(),
        "50000"
    );
    assert_eq!(
        std::fs::read_to_string(format!("{cg}/cpu.shares")).unwrap().trim(),
        "512"
    );
    d.ok(&["rm", "-f", &id]);
    assert!(hako_cgroups().iter().all(|p| !p.contains(&id)), "cgroup left behind");
}

#[test]
fn bind_mounts_logs_and_lifecycle() {
    let d = daemon();
    let host = d.dir.path().join("data");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("in.txt"), "from host").unwrap();
    let bind = format!("{}:/data", host.display());
    let o = run(
        &d,
        &[
            "-v",
            &bind,
            "busybox",
            "sh",
            "-c",
            "cat /data/in.txt; echo written > /data/out.txt",
        ],
    );
    assert_eq!(stdout(&o), "from host");
    assert_eq!(std::fs::read_to_string(host.join("out.txt")).unwrap(), "written\n");
    let ro = format!("{}:/data:ro", host.display());
    let o = run(
        &d,
        &[
            "-v",
            &ro,
            "busybox",
            "sh",
            "-c",
            "echo x > /data/y 2>/dev/null || echo read-only",
        ],
    );
    assert_eq!(stdout(&o), "read-only\n");

    // Detached: ps, logs, stop, start again, rm.
    let id = d
        .ok(&[
            "run",
            "-d",
            "--name",
            "ticker",
            "busybox",
            "sh",
            "-c",
            "trap 'echo bye; exit 0' TERM; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64);
    let ps = d.ok(&["ps"]);
    assert!(ps.lines().nth(1).unwrap().contains("ticker"), "{ps}");
    assert!(ps.contains("Up "), "{ps}");
    std::thread::sleep(Duration::from_millis(500));
    let logs = d.ok(&["logs", "ticker"]);
    assert!(logs.starts_with("tick 0\ntick 1\n"), "{logs}");
    let tail = d.ok(&["logs", "--tail", "1", "ticker"]);
    assert_eq!(tail.lines().count(), 1);
    let ts = d.ok(&["logs", "-t", "--tail", "1", "ticker"]);
    assert!(ts.starts_with("20"), "{ts}");
    // logs -f ends when the container stops.
    let follow = d.cmd(&["logs", "-f", "ticker"]).stdout(Stdio::piped()).spawn().unwrap();
    let t0 = Instant::now();
    assert_eq!(d.ok(&["stop", "ticker"]).trim(), "ticker");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "the TERM trap should stop it at once"
    );
    let out = follow.wait_with_output().unwrap();
    assert!(stdout(&out).ends_with("bye\n"), "{}", stdout(&out));
    let ps = d.ok(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.contains("ticker Exited (0)"), "{ps}");
    let o = d.hako(&["stop", "ticker"]);
    assert!(o.status.success(), "stopping a stopped container is not an error");
    d.ok(&["start", "ticker"]);
    assert!(d.ok(&["ps"]).contains("ticker"));
    let o = d.hako(&["rm", "ticker"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("container is running"), "{}", stderr(&o));
    d.ok(&["rm", "-f", "ticker"]);
    assert!(!d.root().join("containers").join(&id).exists());
    let o = d.hako(&["rm", "ticker"]);
    assert!(stderr(&o).contains("No such container: ticker"), "{}", stderr(&o));
    // Names are unique.
    d.ok(&["create", "--name", "dup", "busybox", "true"]);
    let o = d.hako(&["create", "--name", "dup", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("is already in use"), "{}", stderr(&o));
    // The image is in use: rmi refuses.
    let o = d.hako(&["rmi", "busybox"]);
    assert!(stderr(&o).contains("container is using"), "{}", stderr(&o));
    d.ok(&["rm", "dup"]);
}

#[test]
fn containers_survive_a_daemon_crash() {
    let mut d = daemon();
    let id = d
        .ok(&[
            "run",
            "-d",
            "--name",
            "survivor",
            "busybox",
            "sh",
            "-c",
            "trap 'exit 0' TERM; i=0; while true; do echo line $i; i=$((i+1)); sleep 0.1; done",
        ])
        .trim()
        .to_string();
    std::thread::sleep(Duration::from_millis(300));
    d.kill9();
    let state = std::fs::read_to_string(d.root().join("containers").join(&id).join("state.json")).unwrap();
    assert!(state.contains("\"running\""), "{state}");
    let log = d.root().join("containers").join(&id).join(format!("{id}-json.log"));
    let before = std::fs::metadata(&log).unwrap().len();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        std::fs::metadata(&log).unwrap().len() > before,
        "logs stopped flowing without the daemon"
    );
    d.spawn();
    assert!(d.ok(&["ps"]).contains("survivor"));
    d.ok(&["stop", "survivor"]);
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "survivor"])
            .trim(),
        "exited 0"
    );
    d.ok(&["rm", "survivor"]);
    assert_eq!(monitors_of(&d), 0);
}

#[test]
fn a_killed_monitor_leaves_nothing_running() {
    let d = daemon();
    let id = d.ok(&["run", "-d", "busybox", "sleep", "300"]).trim().to_string();
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(d.root().join("containers").join(&id).join("state.json")).unwrap(),
    )
    .unwrap();
    let monitor = state["monitor_pid"].as_i64().unwrap() as i32;
    assert!(hako_cgroups().iter().any(|c| c.ends_with(&id)));
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(monitor).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let status = || d.ok(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", &id]);
    eventually("the exit to be recorded", || status().starts_with("exited"));
    // Its init had no owner left: the daemon ends it with its cgroup, and says why.
    assert_eq!(status().trim(), "exited 255");
    assert!(d.ok(&["inspect", "-f", "{{.State.Error}}", &id]).contains("monitor"));
    assert!(!hako_cgroups().iter().any(|c| c.ends_with(&id)), "its cgroup was left");
    d.ok(&["rm", &id]);
}

#[test]
fn restart_keeps_a_container_started_with_rm() {
    let d = daemon();
    let script = "trap 'exit 0' TERM; echo up; sleep 60 & wait";
    let id = d
        .ok(&["run", "-d", "--rm", "busybox", "sh", "-c", script])
        .trim()
        .to_string();
    let started = || d.ok(&["inspect", "-f", "{{.State.StartedAt}}", &id]);
    let first = started();
    // Its rootfs, thrown away with it, is an overlay mounted volatile.
    let pid = d.ok(&["inspect", "-f", "{{.State.Pid}}", &id]).trim().to_string();
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let root = mounts.lines().find(|l| l.split(' ').nth(4) == Some("/")).unwrap();
    assert!(root.contains(" overlay ") && root.contains("volatile"), "{root}");
    d.ok(&["restart", "-t", "2", &id]);
    // Still there, running again: its rootfs (an overlay mounted volatile, for --rm) mounted
    // a second time.
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.Running}}", &id]).trim(), "true");
    assert_ne!(started(), first);
    // --rm still holds for an exit that is not a restart's.
    d.ok(&["stop", "-t", "2", &id]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !d.ok(&["ps", "-aq"]).trim().is_empty() {
        assert!(std::time::Instant::now() < deadline, "not removed after its stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn mountpoints_come_from_the_shared_init_layer_not_the_containers_own() {
    // busybox has no /etc/hostname, hosts or resolv.conf: without the init layer the init
    // would make them in the container's upper layer, copying /etc up first.
    let d = daemon();
    let id = d
        .ok(&[
            "run",
            "-d",
            "-h",
            "box",
            "busybox",
            "sh",
            "-c",
            "cat /etc/hostname; sleep 30",
        ])
        .trim()
        .to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while d.ok(&["logs", &id]).is_empty() {
        assert!(std::time::Instant::now() < deadline, "no output");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(d.ok(&["logs", &id]), "box\n");
    let upper = d.root().join("containers").join(&id).join("rootfs/upper");
    let copied: Vec<_> = std::fs::read_dir(&upper)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(copied.is_empty(), "copied up into the container's layer: {copied:?}");
    d.ok(&["rm", "-f", &id]);
}

#[test]
fn a_record_whose_directory_is_gone_is_dropped_at_start() {
    // `rm` answers once the container's directory is set aside and deletes its record
    // behind the answer: a daemon stopped in between finds the record without a directory.
    let mut d = daemon();
    let kept = d
        .ok(&["create", "--name", "kept", "busybox", "true"])
        .trim()
        .to_string();
    let ghost = d
        .ok(&["create", "--name", "ghost", "busybox", "true"])
        .trim()
        .to_string();
    d.stop();
    std::fs::remove_dir_all(d.root().join("containers").join(&ghost)).unwrap();
    d.spawn();
    let all = d.ok(&["ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}}"]);
    assert_eq!(all.trim(), format!("{kept} kept"));
    // Its name is free again.
    d.ok(&["create", "--name", "ghost", "busybox", "true"]);
    d.ok(&["rm", "kept", "ghost"]);
}

#[test]
fn a_directory_no_record_names_is_removed_at_start() {
    // A create answers before its record is on disk: a crash in that moment leaves the
    // directory alone, which the next start removes (and a monitor in it, with its container).
    let mut d = daemon();
    let kept = d
        .ok(&["create", "--name", "kept", "busybox", "true"])
        .trim()
        .to_string();
    d.stop();
    let containers = d.root().join("containers");
    let orphan = containers.join("0123456789abcdef".repeat(4));
    let copied = Command::new("cp")
        .arg("-a")
        .arg(containers.join(&kept))
        .arg(&orphan)
        .status()
        .unwrap();
    assert!(copied.success());
    d.spawn();
    assert!(!orphan.exists(), "{} is still there", orphan.display());
    assert!(containers.join(&kept).is_dir());
    assert_eq!(d.ok(&["ps", "-aq", "--no-trunc"]).trim(), kept);
    d.ok(&["rm", "kept"]);
}

#[test]
fn many_containers_leave_nothing_behind() {
    let d = daemon();
    let children: Vec<_> = (0..20)
        .map(|_| {
            d.cmd(&["run", "-d", "busybox", "sleep", "60"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let ids: Vec<String> = children
        .into_iter()
        .map(|c| {
            let o = c.wait_with_output().unwrap();
            assert!(o.status.success(), "{}", stderr(&o));
            stdout(&o).trim().to_string()
        })
        .collect();
    assert_eq!(d.ok(&["ps", "-q"]).lines().count(), 20);
    assert_eq!(monitors_of(&d), 20);
    let mut args = vec!["rm", "-f"];
    args.extend(ids.iter().map(String::as_str));
    d.ok(&args);
    assert_eq!(d.ok(&["ps", "-aq"]), "");
    assert_eq!(monitors_of(&d), 0);
    let left: Vec<String> = hako_cgroups()
        .into_iter()
        .filter(|p| ids.iter().any(|id| p.contains(id.as_str())))
        .collect();
    assert!(left.is_empty(), "cgroups left behind: {left:?}");
    assert_eq!(std::fs::read_dir(d.root().join("containers")).unwrap().count(), 0);
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&d.root().display().to_string()),
        "a mount of this daemon is still there"
    );
}

#[test]
fn the_docker_cli_runs_containers() {
    let d = daemon();
    let o = d.docker(&["run", "--rm", "busybox", "sh", "-c", "echo hi; echo oops >&2; exit 2"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stdout(&o), "hi\n");
    assert_eq!(stderr(&o), "oops\n");
    let o = d.docker(&["run", "-d", "--name", "dk", "busybox", "sleep", "30"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ps = stdout(&d.docker(&["ps"]));
    assert!(ps.contains("dk") && ps.contains("Up "), "{ps}");
    assert_eq!(
        stdout(&d.docker(&["inspect", "-f", "{{.State.Running}}", "dk"])).trim(),
        "true"
    );
    assert!(d.docker(&["kill", "dk"]).status.success());
    assert_eq!(stdout(&d.docker(&["wait", "dk"])).trim(), "137");
    assert!(d.docker(&["rm", "dk"]).status.success());
    // A TTY session (hijacked attach with a raw stream) under script(1)'s terminal.
    let o = Command::new("script")
        .args(["-qec", "docker run --rm -t busybox sh -c 'tty; exit 4'", "/dev/null"])
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
        .output()
        .unwrap();
    assert!(stdout(&o).contains("/dev/pts/0"), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(4));
    let o = d.docker(&["run", "--rm", "busybox", "nosuch"]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    // json-file is the log driver, named as dockerd names it; others are refused.
    let o = d.docker(&["create", "--name", "lg", "busybox", "true"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&d.docker(&["inspect", "-f", "{{.HostConfig.LogConfig.Type}}", "lg"])).trim(),
        "json-file"
    );
    let o = d.docker(&["run", "--rm", "--log-driver", "syslog", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(stderr(&o).contains("syslog"), "{}", stderr(&o));
    assert!(d.docker(&["rm", "lg"]).status.success());
}

#[test]
fn exec_joins_a_running_container() {
    let d = daemon();
    d.ok(&["run", "-d", "--name", "box", "busybox", "sleep", "60"]);
    let o = d.hako(&["exec", "box", "sh", "-c", "echo out; echo err >&2; cat /proc/1/cmdline | tr '\\0' ' '; grep -E 'CapEff|Seccomp:' /proc/self/status; exit 6"]);
    assert_eq!(o.status.code(), Some(6));
    assert_eq!(stdout(&o), "out\nsleep 60 CapEff:\t00000000a80425fb\nSeccomp:\t2\n");
    assert_eq!(stderr(&o), "err\n");
    let mut c = d
        .cmd(&["exec", "-i", "box", "wc", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(b"12345").unwrap();
    assert_eq!(stdout(&c.wait_with_output().unwrap()).trim(), "5");
    assert_eq!(
        d.ok(&[
            "exec",
            "-u",
            "nobody",
            "-w",
            "/tmp",
            "-e",
            "X=1",
            "box",
            "sh",
            "-c",
            "id -u; pwd; echo $X"
        ]),
        "65534\n/tmp\n1\n"
    );
    d.ok(&["exec", "-d", "box", "sh", "-c", "echo detached > /tmp/d"]);
    let start = Instant::now();
    while d.hako(&["exec", "box", "cat", "/tmp/d"]).stdout != b"detached\n" {
        assert!(start.elapsed() < Duration::from_secs(5), "detached exec did not run");
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = d.hako(&["exec", "box", "nosuch"]);
    assert_eq!(o.status.code(), Some(127));
    d.ok(&["rm", "-f", "box"]);
    let o = d.hako(&["exec", "box", "true"]);
    assert!(stderr(&o).contains("No such container"), "{}", stderr(&o));
}

#[test]
fn pause_rename_top_diff_prune() {
    let d = daemon();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "p1",
        "busybox",
        "sh",
        "-c",
        "touch /newfile; rm /etc/group; mkdir /tmp/d; sleep 60",
    ]);
    let start = Instant::now();
    while !d.ok(&["diff", "p1"]).contains("A /tmp/d") {
        assert!(start.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(20));
    }
    let diff = d.ok(&["diff", "p1"]);
    for line in ["A /newfile", "D /etc/group", "C /etc", "A /tmp/d"] {
        assert!(diff.lines().any(|l| l == line), "{line} missing in:\n{diff}");
    }
    assert!(!diff.contains("/etc/hostname"), "{diff}");
    let top = d.ok(&["top", "p1"]);
    assert!(top.lines().nth(1).unwrap().ends_with("sleep 60"), "{top}");
    d.ok(&["pause", "p1"]);
    assert!(d.ok(&["ps", "--format", "{{.Status}}"]).contains("(Paused)"));
    let o = d.hako(&["pause", "p1"]);
    assert!(stderr(&o).contains("already paused"), "{}", stderr(&o));
    d.ok(&["unpause", "p1"]);
    // A paused container can still be killed: the signal is not left pending.
    let fid = d
        .ok(&["run", "-d", "--name", "frozen", "busybox", "sleep", "60"])
        .trim()
        .to_string();
    d.ok(&["pause", "frozen"]);
    d.ok(&["rm", "-f", "frozen"]);
    let start = Instant::now();
    while hako_cgroups().iter().any(|p| p.contains(&fid)) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the paused container's cgroup stayed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(monitors_of(&d), 1, "the paused container's monitor did not exit");
    d.ok(&["rename", "p1", "p2"]);
    assert_eq!(d.ok(&["ps", "--format", "{{.Names}}"]).trim(), "p2");
    d.ok(&["create", "--name", "stopped", "busybox", "true"]);
    let out = d.ok(&["container", "prune", "-f"]);
    assert_eq!(out.lines().filter(|l| l.len() == 64).count(), 1, "{out}");
    assert_eq!(d.ok(&["ps", "-aq"]).lines().count(), 1, "the running one stays");
    // system prune takes stopped containers too, as its prompt says.
    let sid = d.ok(&["create", "busybox", "true"]).trim().to_string();
    let out = d.ok(&["system", "prune", "-f"]);
    assert!(out.contains("Deleted Containers:") && out.contains(&sid), "{out}");
    assert_eq!(d.ok(&["ps", "-aq"]).lines().count(), 1, "the running one stays");
    d.ok(&["rm", "-f", "p2"]);
}

#[test]
fn restart_policies() {
    let mut d = daemon();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "exit 3",
    ]);
    let start = Instant::now();
    loop {
        let s = d.ok(&["inspect", "-f", "{{.RestartCount}} {{.State.Status}}", "flaky"]);
        if s.trim() == "2 exited" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "on-failure:2 did not settle: {s}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        d.ok(&["inspect", "-f", "{{.RestartCount}} {{.State.ExitCode}}", "flaky"])
            .trim(),
        "2 3"
    );
    d.ok(&["rm", "flaky"]);

    d.ok(&[
        "run",
        "-d",
        "--name",
        "always",
        "--restart",
        "always",
        "busybox",
        "sleep",
        "60",
    ]);
    d.ok(&["run", "-d", "--name", "never", "busybox", "sleep", "60"]);
    // A daemon crash and a host-like loss of the monitors: `always` comes back, the other does not.
    d.kill9();
    let out = Command::new("pkill")
        .args(["-9", "-f", &format!("monitor {}", d.root().display())])
        .output()
        .unwrap();
    assert!(out.status.success());
    std::thread::sleep(Duration::from_millis(300));
    d.spawn();
    let start = Instant::now();
    while !d.ok(&["ps", "--format", "{{.Names}}"]).contains("always") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the always container did not come back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!d.ok(&["ps", "--format", "{{.Names}}"]).contains("never"));
    // A manual stop is respected.
    d.ok(&["stop", "-t", "1", "always"]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(!d.ok(&["ps", "--format", "{{.Names}}"]).contains("always"));
    d.ok(&["rm", "always", "never"]);
}

#[test]
fn commit_makes_an_image_of_the_changes() {
    let d = daemon();
    d.ok(&[
        "run",
        "--name",
        "work",
        "busybox",
        "sh",
        "-c",
        "echo new > /added.txt; rm /etc/group; mkdir -p /var/x && echo y > /var/x/y",
    ]);
    let id = d
        .ok(&[
            "commit",
            "-m",
            "my change",
            "-a",
            "me",
            "-c",
            "ENV COMMITTED=1",
            "-c",
            "CMD [\"cat\", \"/added.txt\"]",
            "work",
            "committed:1",
        ])
        .trim()
        .to_string();
    assert!(id.starts_with("sha256:"), "{id}");
    d.ok(&["rm", "work"]);
    // The new image has the new file, not the deleted one, and the changes' config.
    let o = run(&d, &["committed:1"]);
    assert_eq!(stdout(&o), "new\n", "{}", stderr(&o));
    let o = run(&d, &["committed:1", "sh", "-c", "test -e /etc/group && echo present || echo gone; cat /var/x/y; echo $COMMITTED; test -s /etc/hostname && echo hostname-mounted"]);
    assert_eq!(stdout(&o), "gone\ny\n1\nhostname-mounted\n", "{}", stderr(&o));
    let h = d.ok(&["history", "committed:1"]);
    assert!(h.lines().nth(1).unwrap().contains("my change"), "{h}");
    assert_eq!(d.ok(&["inspect", "-f", "{{.Author}}", "committed:1"]).trim(), "me");
    // It saves and loads like any image.
    let tar = d.dir.path().join("c.tar");
    d.ok(&["save", "-o", tar.to_str().unwrap(), "committed:1"]);
    d.ok(&["rmi", "committed:1"]);
    d.ok(&["load", "-i", tar.to_str().unwrap()]);
    assert_eq!(stdout(&run(&d, &["committed:1"])), "new\n");
}

#[test]
fn logs_rotate_by_size() {
    let d = daemon();
    let id = d
        .ok(&[
            "run",
            "-d",
            "--log-opt",
            "max-size=2k",
            "--log-opt",
            "max-file=3",
            "busybox",
            "sh",
            "-c",
            "for i in $(seq 400); do echo line $i; done",
        ])
        .trim()
        .to_string();
    assert_eq!(d.ok(&["wait", &id]).trim(), "0");
    let dir = d.root().join("containers").join(&id);
    let log = dir.join(format!("{id}-json.log"));
    for f in [
        log.clone(),
        dir.join(format!("{id}-json.log.1")),
        dir.join(format!("{id}-json.log.2")),
    ] {
        let len = std::fs::metadata(&f)
            .unwrap_or_else(|_| panic!("{} missing", f.display()))
            .len();
        assert!(len <= 2048, "{} is {len} bytes", f.display());
    }
    assert!(
        !dir.join(format!("{id}-json.log.3")).exists(),
        "max-file=3 keeps three files"
    );
    // `logs` reads the rotated files in order: the newest lines, contiguous, ending with 400.
    let out = d.ok(&["logs", &id]);
    let nums: Vec<u32> = out
        .lines()
        .map(|l| l.trim_start_matches("line ").parse().unwrap())
        .collect();
    assert_eq!(*nums.last().unwrap(), 400);
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "gaps in the rotated logs");
    assert!(nums.len() < 400, "nothing was rotated away");
    d.ok(&["rm", &id]);
}

#[test]
fn stats_come_from_the_cgroup() {
    let d = daemon();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "busy",
        "-m",
        "64m",
        "busybox",
        "sh",
        "-c",
        "while true; do :; done",
    ]);
    let out = d.ok(&["stats", "--no-stream", "busy"]);
    let row: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[1], "busy", "{out}");
    let cpu: f64 = row[2].trim_end_matches('%').parse().unwrap();
    assert!(cpu > 20.0, "a busy loop should show CPU use: {out}");
    assert_eq!(row[5], "64MiB", "the memory limit: {out}");
    assert_eq!(*row.last().unwrap(), "1", "one process: {out}");
    // The docker CLI reads the same endpoint.
    let o = d.docker(&["stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", "busy"]);
    assert!(
        stdout(&o).starts_with("busy ") && stdout(&o).contains("/ 64MiB"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    d.ok(&["rm", "-f", "busy"]);
}

#[test]
fn attach_and_detach() {
    let d = daemon();
    d.ok(&["run", "-d", "-i", "--name", "shell", "busybox", "sh"]);
    // Commands go in, output comes out; ctrl-p ctrl-q detaches and leaves it running.
    let mut c = d
        .cmd(&["attach", "shell"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    stdin.write_all(b"echo hello from attach\n").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    stdin.write_all(&[0x10, 0x11]).unwrap();
    let o = c.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "hello from attach\n");
    assert!(stderr(&o).contains("read escape sequence"), "{}", stderr(&o));
    assert!(
        d.ok(&["ps", "--format", "{{.Names}}"]).contains("shell"),
        "detaching stopped the container"
    );
    // Attach again; the container's own exit ends the attach with its code.
    let mut c = d
        .cmd(&["attach", "shell"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(b"exit 5\n").unwrap();
    let o = c.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(5));
    let o = d.hako(&["attach", "shell"]);
    assert!(stderr(&o).contains("start it first"), "{}", stderr(&o));
    d.ok(&["rm", "shell"]);
}

#[test]
fn named_and_anonymous_volumes() {
    let d = daemon();
    // A named volume keeps its data across containers.
    d.ok(&["volume", "create", "keep"]);
    assert_eq!(
        run(
            &d,
            &["-v", "keep:/data", "busybox", "sh", "-c", "echo persisted > /data/f"]
        )
        .status
        .code(),
        Some(0)
    );
    assert_eq!(
        stdout(&run(&d, &["-v", "keep:/data", "busybox", "cat", "/data/f"])),
        "persisted\n"
    );
    assert!(d.ok(&["volume", "ls", "-q"]).lines().any(|l| l == "keep"));
    // An image with content at a VOLUME path: a fresh volume is seeded from it; the image's
    // VOLUME gives an anonymous volume; `rm -v` removes the anonymous one only.
    d.ok(&[
        "run",
        "--name",
        "mk",
        "busybox",
        "sh",
        "-c",
        "mkdir -p /seed && echo from-image > /seed/file",
    ]);
    d.ok(&["commit", "-c", "VOLUME /seed", "mk", "seeded:1"]);
    d.ok(&["rm", "mk"]);
    assert_eq!(
        stdout(&run(&d, &["-v", "fresh:/seed", "seeded:1", "cat", "/seed/file"])),
        "from-image\n"
    );
    let before: Vec<String> = d.ok(&["volume", "ls", "-q"]).lines().map(String::from).collect();
    d.ok(&[
        "run",
        "--name",
        "anon",
        "seeded:1",
        "sh",
        "-c",
        "cat /seed/file > /seed/copy",
    ]);
    let mounts = d.ok(&["inspect", "-f", "{{json .Mounts}}", "anon"]);
    let mounts: serde_json::Value = serde_json::from_str(&mounts).unwrap();
    let anon = mounts[0]["Name"].as_str().unwrap().to_string();
    assert_eq!(mounts[0]["Destination"], "/seed");
    assert!(!before.contains(&anon));
    let o = d.hako(&["volume", "rm", &anon]);
    assert!(stderr(&o).contains("volume is in use"), "{}", stderr(&o));
    d.ok(&["rm", "-v", "anon"]);
    let after = d.ok(&["volume", "ls", "-q"]);
    assert!(!after.lines().any(|l| l == anon), "rm -v left the anonymous volume");
    assert!(
        after.lines().any(|l| l == "keep") && after.lines().any(|l| l == "fresh"),
        "named volumes must stay"
    );
    d.ok(&["volume", "rm", "keep", "fresh"]);
    assert!(!d.root().join("volumes/keep").exists());
    let o = d.hako(&["run", "--rm", "-v", "bad name:/x", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
}

#[test]
fn disk_usage_info_filters_and_prunes_count_what_is_there() {
    let d = daemon();
    d.ok(&["volume", "create", "--label", "tier=db", "db"]);
    d.ok(&["volume", "create", "--label", "tier=web", "web"]);
    d.ok(&[
        "run",
        "--rm",
        "-v",
        "db:/d",
        "busybox",
        "sh",
        "-c",
        "head -c 100000 /dev/zero > /d/f",
    ]);
    d.ok(&["run", "-d", "--name", "up", "-v", "web:/d", "busybox", "sleep", "100"]);
    d.ok(&[
        "run",
        "--name",
        "down",
        "busybox",
        "sh",
        "-c",
        "head -c 3000 /dev/zero > /x",
    ]);
    // `-v /path` is an anonymous volume; a relative mount point is refused and makes none.
    d.ok(&["run", "--name", "anon", "-v", "/anon", "busybox", "true"]);
    let mounts: serde_json::Value =
        serde_json::from_str(&d.ok(&["inspect", "-f", "{{json .Mounts}}", "anon"])).unwrap();
    assert_eq!(mounts[0]["Type"], "volume");
    assert_eq!(mounts[0]["Destination"], "/anon");
    let volumes_before = d.ok(&["volume", "ls", "-q"]);
    let o = d.hako(&["run", "--rm", "-v", "relative", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("mount path must be absolute"), "{}", stderr(&o));
    assert_eq!(d.ok(&["volume", "ls", "-q"]), volumes_before);

    let info = d.ok(&[
        "info",
        "-f",
        "{{.Containers}} {{.ContainersRunning}} {{.ContainersStopped}}",
    ]);
    assert_eq!(info.trim(), "3 1 2");
    let df: serde_json::Value = serde_json::from_str(&d.ok(&["system", "df", "--format", "json"])).unwrap();
    let down = df["Containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["Names"][0] == "/down")
        .unwrap();
    assert_eq!(down["SizeRw"], 3000);
    let db = df["Volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["Name"] == "db")
        .unwrap();
    assert_eq!(db["UsageData"], serde_json::json!({"Size": 100000, "RefCount": 0}));
    let web = df["Volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["Name"] == "web")
        .unwrap();
    assert_eq!(web["UsageData"]["RefCount"], 1);
    let table = d.ok(&["system", "df"]);
    let row = |kind: &str| {
        table
            .lines()
            .find(|l| l.starts_with(kind))
            .unwrap()
            .split_whitespace()
            .skip(kind.split(' ').count())
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(row("Containers"), "3 1", "{table}");
    // A stopped container still holds its volume (the anonymous one), as in Docker.
    assert_eq!(row("Local Volumes"), "3 2", "{table}");

    // ps templates docker's fields: mounts, local volumes, creation time.
    let fields = d.ok(&[
        "ps",
        "--filter",
        "name=up",
        "--format",
        "{{.Mounts}}|{{.LocalVolumes}}|{{.CreatedAt}}",
    ]);
    let fields: Vec<&str> = fields.trim().split('|').collect();
    assert_eq!(fields[..2], ["web", "1"], "{fields:?}");
    assert!(fields[2].ends_with(" +0000 UTC") && fields[2].len() == 29, "{fields:?}");

    // ps filters: by volume, by creation order, and an unknown one refused.
    assert_eq!(
        d.ok(&["ps", "-a", "--filter", "volume=web", "--format", "{{.Names}}"])
            .trim(),
        "up"
    );
    assert_eq!(
        d.ok(&["ps", "-a", "--filter", "before=down", "--format", "{{.Names}}"])
            .trim(),
        "up"
    );
    assert_eq!(
        d.ok(&["ps", "-a", "--filter", "since=down", "--format", "{{.Names}}"])
            .trim(),
        "anon"
    );
    let o = d.hako(&["ps", "--filter", "bogus=1"]);
    assert!(
        !o.status.success() && stderr(&o).contains("invalid filter 'bogus'"),
        "{}",
        stderr(&o)
    );

    // volume prune: the label filters choose, and the bytes freed are counted.
    assert_eq!(d.ok(&["volume", "ls", "-q", "--filter", "label=tier=db"]).trim(), "db");
    let out = d.ok(&["volume", "prune", "-a", "-f", "--filter", "label!=tier=web"]);
    assert!(
        out.contains("db\n") && out.contains("Total reclaimed space: 100kB"),
        "{out}"
    );
    assert!(d.ok(&["volume", "ls", "-q"]).lines().any(|l| l == "web"));
    // system prune --volumes: stopped containers, unused networks, then anonymous volumes.
    d.ok(&["network", "create", "unused"]);
    let out = d.ok(&["system", "prune", "-f", "--volumes"]);
    assert!(out.contains("Deleted Networks:\nunused"), "{out}");
    assert!(out.contains("Deleted Volumes:\n"), "{out}");
    assert!(out.contains("Total reclaimed space: 3kB"), "{out}");
    assert_eq!(d.ok(&["ps", "-a", "-q"]).lines().count(), 1);
    assert_eq!(d.ok(&["volume", "ls", "-q"]).trim(), "web");
    d.ok(&["rm", "-f", "up"]);
}

#[test]
fn namespace_modes_limits_and_groups_from_the_run_flags() {
    let d = daemon();
    let out = |args: &[&str]| {
        let o = run(&d, args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        stdout(&o)
    };
    // --group-add: a name from the image's /etc/group, or a number.
    let groups = out(&["--group-add", "audio", "--group-add", "4242", "busybox", "id", "-G"]);
    assert_eq!(groups.split_whitespace().collect::<Vec<_>>(), ["0", "10", "29", "4242"]);
    refused(
        &d,
        &["--group-add", "ghosts", "busybox", "true"],
        "unable to find group ghosts",
    );
    // --ulimit, --shm-size, --oom-score-adj.
    let limits = out(&[
        "--ulimit",
        "nofile=1024:2048",
        "busybox",
        "sh",
        "-c",
        "ulimit -n; ulimit -Hn",
    ]);
    assert_eq!(limits, "1024\n2048\n");
    refused(
        &d,
        &["--ulimit", "bogus=1", "busybox", "true"],
        "invalid ulimit type: bogus",
    );
    let shm = out(&["--shm-size", "128m", "busybox", "df", "-k", "/dev/shm"]);
    assert!(shm.contains(" 131072 "), "{shm}");
    assert_eq!(
        out(&["--oom-score-adj", "500", "busybox", "cat", "/proc/self/oom_score_adj"]),
        "500\n"
    );
    refused(
        &d,
        &["--oom-score-adj", "2000", "busybox", "true"],
        "range for oom score adj",
    );
    // --sysctl: only what the container's own namespaces hold.
    let set = out(&[
        "--sysctl",
        "net.ipv4.ip_forward=1",
        "--sysctl",
        "kernel.shmmax=1048576",
        "busybox",
        "cat",
        "/proc/sys/net/ipv4/ip_forward",
        "/proc/sys/kernel/shmmax",
    ]);
    assert_eq!(set, "1\n1048576\n");
    refused(
        &d,
        &[
            "--network",
            "host",
            "--sysctl",
            "net.ipv4.ip_forward=1",
            "busybox",
            "true",
        ],
        "host's network namespace",
    );
    refused(
        &d,
        &["--ipc", "host", "--sysctl", "kernel.shmmax=1", "busybox", "true"],
        "not allowed",
    );
    refused(
        &d,
        &["--sysctl", "vm.swappiness=1", "busybox", "true"],
        "not in a namespace of the container's own",
    );
    // --pid, --ipc, --uts host: the host's namespaces, the host's name.
    let host_ns = |kind: &str| {
        std::fs::read_link(format!("/proc/self/ns/{kind}"))
            .unwrap()
            .display()
            .to_string()
    };
    let links = out(&[
        "--pid",
        "host",
        "--ipc",
        "host",
        "--uts",
        "host",
        "busybox",
        "sh",
        "-c",
        "for k in pid ipc uts; do readlink /proc/self/ns/$k; done; hostname",
    ]);
    let nodename = rustix::system::uname().nodename().to_string_lossy().into_owned();
    assert_eq!(
        links,
        format!(
            "{}\n{}\n{}\n{nodename}\n",
            host_ns("pid"),
            host_ns("ipc"),
            host_ns("uts")
        )
    );
    refused(
        &d,
        &["--uts", "host", "-h", "x", "busybox", "true"],
        "Conflicting options",
    );
    refused(&d, &["--pid", "bogus", "busybox", "true"], "invalid pid mode");
    // --pid and --ipc container:NAME: another container's; its IPC only if it is shareable,
    // and then its /dev/shm too (a tmpfs on the host its monitor mounts and unmounts).
    d.ok(&["run", "-d", "--name", "private", "busybox", "sleep", "300"]);
    refused(
        &d,
        &["--ipc", "container:private", "busybox", "true"],
        "non-shareable IPC",
    );
    d.ok(&["rm", "-f", "private"]);
    let donor_id = d.ok(&[
        "run",
        "-d",
        "--name",
        "donor",
        "--ipc",
        "shareable",
        "busybox",
        "sh",
        "-c",
        "echo shared > /dev/shm/note; exec sleep 300",
    ]);
    eventually("the donor's note", || {
        d.hako(&["exec", "donor", "test", "-f", "/dev/shm/note"])
            .status
            .success()
    });
    let shm_mount = format!(" {}/containers/{}/shm ", d.root().display(), donor_id.trim());
    let host_mounts = || std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(host_mounts().contains(&shm_mount), "no shareable /dev/shm on the host");
    let links = "for k in pid ipc; do readlink /proc/self/ns/$k; done";
    let donor = d.ok(&["exec", "donor", "sh", "-c", links]);
    let joined = out(&[
        "--pid",
        "container:donor",
        "--ipc",
        "container:donor",
        "busybox",
        "sh",
        "-c",
        &format!("{links}; cat /proc/1/comm /dev/shm/note"),
    ]);
    assert_eq!(joined, format!("{donor}sleep\nshared\n"));
    d.ok(&["rm", "-f", "donor"]);
    assert!(
        !host_mounts().contains(&shm_mount),
        "the shareable /dev/shm outlived its container"
    );
}

#[test]
fn dns_volumes_from_cgroupns_and_refused_settings() {
    let d = daemon();
    let resolv = stdout(&run(
        &d,
        &[
            "--dns",
            "192.0.2.53",
            "--dns-search",
            "example.org",
            "--dns-option",
            "ndots:2",
            "busybox",
            "cat",
            "/etc/resolv.conf",
        ],
    ));
    let lines: Vec<&str> = resolv.lines().collect();
    assert!(
        lines.contains(&"nameserver 192.0.2.53") && lines.contains(&"search example.org"),
        "{resolv}"
    );
    assert!(lines.contains(&"options ndots:2"), "{resolv}");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("search") || l.starts_with("domain"))
            .count(),
        1,
        "{resolv}"
    );
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("nameserver")).count(),
        1,
        "{resolv}"
    );

    // --volumes-from: another container's volumes and binds, read-only with :ro.
    d.ok(&[
        "run",
        "--name",
        "vdonor",
        "-v",
        "vfrom:/data",
        "busybox",
        "sh",
        "-c",
        "echo kept > /data/f",
    ]);
    assert_eq!(
        stdout(&run(&d, &["--volumes-from", "vdonor", "busybox", "cat", "/data/f"])),
        "kept\n"
    );
    let o = run(
        &d,
        &["--volumes-from", "vdonor:ro", "busybox", "sh", "-c", "echo x > /data/g"],
    );
    assert!(!o.status.success(), "a :ro volume was writable");
    let o = run(&d, &["--volumes-from", "ghost", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    d.ok(&["rm", "vdonor"]);
    d.ok(&["volume", "rm", "vfrom"]);

    // --cgroupns host: the host's hierarchy paths; its own namespace shows its cgroup as /.
    let own = stdout(&run(&d, &["busybox", "cat", "/proc/self/cgroup"]));
    assert!(own.lines().all(|l| l.ends_with(":/")), "{own}");
    let host = stdout(&run(&d, &["--cgroupns", "host", "busybox", "cat", "/proc/self/cgroup"]));
    assert!(host.lines().any(|l| l.contains("/hako-")), "{host}");

    // What hako does not apply yet is refused by name, never ignored.
    let body = r#"{"Image": "busybox", "HostConfig": {"CgroupParent": "/elsewhere"}}"#;
    let (code, out) = api_post(&d, "/containers/create", body);
    assert!(
        code == 400 && out.contains("--cgroup-parent is not supported"),
        "{code} {out}"
    );
}

#[test]
fn health_checks_report_and_filter() {
    let d = daemon();
    let every = ["--health-interval", "100ms", "--health-retries", "2"];
    let start = |name: &str, cmd: &str, extra: &[&str]| {
        let mut args = vec!["run", "-d", "--name", name, "--health-cmd", cmd];
        args.extend_from_slice(&every);
        args.extend_from_slice(extra);
        args.extend_from_slice(&["busybox", "sleep", "300"]);
        d.ok(&args);
    };
    start("fine", "true", &[]);
    start("sick", "echo nope; exit 1", &[]);
    start("slow", "sleep 5", &["--health-timeout", "200ms"]);
    let health = |name: &str| {
        d.ok(&["inspect", "-f", "{{.State.Health.Status}}", name])
            .trim()
            .to_string()
    };
    // Until its first check, a container is starting (one whose interval is long stays so).
    d.ok(&[
        "run",
        "-d",
        "--name",
        "patient",
        "--health-cmd",
        "true",
        "--health-interval",
        "1h",
        "busybox",
        "sleep",
        "300",
    ]);
    assert_eq!(health("patient"), "starting");
    assert!(d
        .ok(&["ps", "--filter", "name=patient", "--format", "{{.Status}}"])
        .contains("(health: starting)"));
    eventually("the checks' verdicts", || {
        health("fine") == "healthy" && health("sick") == "unhealthy" && health("slow") == "unhealthy"
    });
    assert!(d
        .ok(&["ps", "--filter", "name=fine", "--format", "{{.Status}}"])
        .contains("(healthy)"));
    let names = |filter: &str| {
        let mut v: Vec<String> = d
            .ok(&["ps", "--filter", filter, "--format", "{{.Names}}"])
            .lines()
            .map(String::from)
            .collect();
        v.sort();
        v
    };
    assert_eq!(names("health=healthy"), ["fine"]);
    assert_eq!(names("health=unhealthy"), ["sick", "slow"]);
    let sick: serde_json::Value =
        serde_json::from_str(&d.ok(&["inspect", "-f", "{{json .State.Health}}", "sick"])).unwrap();
    let last = sick["Log"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["ExitCode"].as_i64(), last["Output"].as_str()),
        (Some(1), Some("nope\n"))
    );
    assert!(sick["FailingStreak"].as_u64().unwrap() >= 2);
    assert!(sick["Log"].as_array().unwrap().len() <= 5);
    let slow = d.ok(&["inspect", "-f", "{{json .State.Health.Log}}", "slow"]);
    assert!(slow.contains("exceeded timeout"), "{slow}");
    // --no-healthcheck: no health at all.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "none",
        "--no-healthcheck",
        "busybox",
        "sleep",
        "300",
    ]);
    assert_eq!(
        d.ok(&["inspect", "-f", "{{json .State.Health}}", "none"]).trim(),
        "null"
    );
    assert_eq!(names("health=none"), ["none"]);
    d.ok(&["rm", "-f", "fine", "sick", "slow", "none", "patient"]);
}

#[test]
fn exec_instances_go_with_their_container() {
    let d = daemon();
    let id = d.ok(&["run", "-d", "busybox", "sleep", "300"]).trim().to_string();
    let (code, body) = api_post(&d, &format!("/containers/{id}/exec"), r#"{"Cmd": ["true"]}"#);
    assert_eq!(code, 201, "{body}");
    let exec: serde_json::Value = serde_json::from_str(&body).unwrap();
    let exec = exec["Id"].as_str().unwrap().to_string();
    assert_eq!(
        api_post(&d, &format!("/exec/{exec}/start"), r#"{"Detach": true}"#).0,
        200
    );
    eventually("the exec to end", || {
        api(&d, "GET", &format!("/exec/{exec}/json"))
            .1
            .contains("\"ExitCode\":0")
    });
    d.ok(&["rm", "-f", &id]);
    assert_eq!(api(&d, "GET", &format!("/exec/{exec}/json")).0, 404);
}

#[test]
fn memory_reservation_swappiness_and_the_oom_killer() {
    let d = daemon();
    let v1_memory = std::path::Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists();
    refused(
        &d,
        &["--memory-swappiness", "200", "busybox", "true"],
        "valid range is 0-100",
    );
    refused(
        &d,
        &["-m", "32m", "--memory-reservation", "64m", "busybox", "true"],
        "must not exceed",
    );
    if v1_memory {
        let o = run(
            &d,
            &[
                "-m", "64m", "--memory-reservation", "32m", "--memory-swappiness", "10", "--oom-kill-disable", "busybox", "sh", "-c",
                "cd /sys/fs/cgroup/memory && cat memory.soft_limit_in_bytes memory.swappiness && grep oom_kill_disable memory.oom_control",
            ],
        );
        assert_eq!(stdout(&o), "33554432\n10\noom_kill_disable 1\n", "{}", stderr(&o));
    } else {
        let o = run(
            &d,
            &[
                "--memory-reservation",
                "32m",
                "busybox",
                "cat",
                "/sys/fs/cgroup/memory.low",
            ],
        );
        assert_eq!(stdout(&o), "33554432\n", "{}", stderr(&o));
        refused(&d, &["--memory-swappiness", "10", "busybox", "true"], "needs cgroup v1");
    }
}

#[test]
fn device_cgroup_rules_allow_more_devices() {
    let d = daemon();
    // A node of major 42 can be made (mknod is allowed) but not opened, unless a rule allows
    // it: then the open reaches the kernel, which has no such driver.
    let open = "mknod /tmp/dev c 42 0 && cat /tmp/dev";
    let denied = run(&d, &["busybox", "sh", "-c", open]);
    assert!(
        stderr(&denied).contains("Operation not permitted"),
        "{}",
        stderr(&denied)
    );
    let allowed = run(&d, &["--device-cgroup-rule", "c 42:* rmw", "busybox", "sh", "-c", open]);
    assert!(
        stderr(&allowed).contains("No such device or address"),
        "{}",
        stderr(&allowed)
    );
    let o = run(&d, &["--device-cgroup-rule", "x 1:2 rwm", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("invalid device cgroup rule format"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn block_io_limits_reach_the_cgroup() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let d = daemon();
    // The host's first whole disk (this VM's root disk).
    let disk = std::fs::read_dir("/sys/block")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| format!("/dev/{}", e.file_name().to_string_lossy()))
        .filter(|p| !p.contains("loop") && !p.contains("ram"))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.file_type().is_block_device()))
        .expect("a block device");
    let rdev = std::fs::metadata(&disk).unwrap().rdev();
    let (major, minor) = (rustix::fs::major(rdev), rustix::fs::minor(rdev));
    let bps = format!("{disk}:1mb");
    let iops = format!("{disk}:100");
    let v1 = std::path::Path::new("/sys/fs/cgroup/blkio/blkio.throttle.read_bps_device").exists();
    let show = if v1 {
        "cat /sys/fs/cgroup/blkio/blkio.throttle.read_bps_device /sys/fs/cgroup/blkio/blkio.throttle.write_iops_device"
    } else {
        "cat /sys/fs/cgroup/io.max"
    };
    let o = run(
        &d,
        &[
            "--device-read-bps",
            &bps,
            "--device-write-iops",
            &iops,
            "busybox",
            "sh",
            "-c",
            show,
        ],
    );
    let want = if v1 {
        format!("{major}:{minor} 1048576\n{major}:{minor} 100\n")
    } else {
        format!("{major}:{minor} rbps=1048576 wbps=max riops=max wiops=100\n")
    };
    assert_eq!(stdout(&o), want, "{}", stderr(&o));
    let o = run(&d, &["--device-read-bps", "/dev/null:1mb", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("is not a block device"), "{}", stderr(&o));
    let o = run(&d, &["--blkio-weight", "5", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("10-1000"), "{}", stderr(&o));
}

#[test]
fn a_tty_gets_the_terminal_size() {
    let d = daemon();
    let o = Command::new("script")
        .args([
            "-qec",
            &format!(
                "stty rows 30 cols 100; {} run --rm -it busybox stty size",
                common::hako_bin()
            ),
            "/dev/null",
        ])
        .env("HAKO_HOST", d.host())
        .output()
        .unwrap();
    assert!(stdout(&o).contains("30 100"), "{}{}", stdout(&o), stderr(&o));
}

/// A block device this host lets root open, for opening through a node made in a container:
/// (path, major, minor). (Some sandboxes deny the root disk even to root.)
fn host_block_device() -> Option<(String, u32, u32)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    ["/dev/vda", "/dev/sda", "/dev/nvme0n1", "/dev/xvda", "/dev/loop0"]
        .iter()
        .find_map(|p| {
            let md = std::fs::metadata(p).ok()?;
            (md.file_type().is_block_device() && std::fs::File::open(p).is_ok()).then(|| {
                (
                    p.to_string(),
                    rustix::fs::major(md.rdev()),
                    rustix::fs::minor(md.rdev()),
                )
            })
        })
}

#[test]
fn device_cgroup_allow_list() {
    let d = daemon();
    // Docker's defaults: mknod of anything (CAP_MKNOD is a default capability, the cgroup
    // allows `m`), but a node outside the allow-list cannot be opened.
    let o = run(
        &d,
        &[
            "busybox",
            "sh",
            "-c",
            "mknod /tmp/sda b 8 0 && echo mknod-ok; head -c1 /tmp/sda || echo read-denied; \
             echo x >/dev/null && head -c1 /dev/zero | wc -c; head -c1 /dev/urandom | wc -c",
        ],
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o), "mknod-ok\nread-denied\n1\n1\n", "{}", stderr(&o));
    assert!(stderr(&o).contains("Operation not permitted"), "{}", stderr(&o));

    // --privileged allows every device: a node of a real block device opens.
    match host_block_device() {
        Some((path, major, minor)) => {
            let script = format!("mknod /tmp/blk b {major} {minor} && true </tmp/blk && echo open-ok");
            let o = run(&d, &["busybox", "sh", "-c", &script]);
            assert_eq!(stdout(&o), "", "{path}: {}", stderr(&o));
            assert!(stderr(&o).contains("Operation not permitted"), "{}", stderr(&o));
            let o = run(&d, &["--privileged", "busybox", "sh", "-c", &script]);
            assert_eq!(stdout(&o), "open-ok\n", "{path}: {}", stderr(&o));
        }
        None => eprintln!(
            "skipped the --privileged part: no block device root can open among /dev/vda, sda, nvme0n1, xvda, loop0"
        ),
    }

    // --device adds the device's rule, with its permissions: 10:229 is /dev/fuse, 10:237
    // /dev/loop-control, neither in the default list.
    let script = "mknod /tmp/fuse c 10 229; mknod /tmp/lc c 10 237; \
                  true </tmp/fuse && echo fuse-ok; true </tmp/lc && echo lc-read-ok; \
                  true >/tmp/lc && echo lc-write-ok; true";
    let o = run(&d, &["busybox", "sh", "-c", script]);
    assert_eq!(stdout(&o), "", "{}", stderr(&o));
    let mut args = vec!["--device", "/dev/loop-control:/dev/lc:r"];
    if std::path::Path::new("/dev/fuse").exists() {
        args.extend(["--device", "/dev/fuse"]);
    }
    args.extend(["busybox", "sh", "-c", script]);
    let o = run(&d, &args);
    let want = if args.contains(&"/dev/fuse") {
        "fuse-ok\nlc-read-ok\n"
    } else {
        "lc-read-ok\n"
    };
    assert_eq!(stdout(&o), want, "{}", stderr(&o));
    assert!(stderr(&o).contains("Operation not permitted"), "{}", stderr(&o));

    // Mistakes are reported as Docker does.
    let o = d.hako(&["run", "--rm", "--device", "/dev/null:/dev/n:rx", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("bad mode specified: rx"), "{}", stderr(&o));
    let o = d.hako(&["run", "--rm", "--device", "/dev/null:dev/n", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("dev/n is not an absolute path"), "{}", stderr(&o));
    let o = d.hako(&[
        "run",
        "--name",
        "nodev",
        "--device",
        "/dev/no-such-device",
        "busybox",
        "true",
    ]);
    // 127, as docker's: its CLI maps a start error saying "no such file or directory" to it.
    assert_eq!(o.status.code(), Some(127));
    assert!(
        stderr(&o).contains(
            "error gathering device information while adding custom device \"/dev/no-such-device\": no such file or directory"
        ),
        "{}",
        stderr(&o)
    );
    d.ok(&["rm", "-f", "nodev"]);
}

/// `--device` creates the node in the container's /dev, with the host node's mode.
#[test]
fn device_flag_creates_the_node() {
    let d = daemon();
    let o = run(
        &d,
        &[
            "--device",
            "/dev/loop-control:/dev/sub/lc:r",
            "busybox",
            "sh",
            "-c",
            "ls -ln /dev/sub/lc; true </dev/sub/lc && echo read-ok; true >/dev/sub/lc || echo write-denied",
        ],
    );
    let out = stdout(&o);
    // The host node's type, numbers, mode and owner.
    let ls: Vec<&str> = out.lines().next().unwrap_or("").split_whitespace().collect();
    let want = ["crw-------", "1", "0", "0", "10,", "237"];
    assert_eq!(ls.get(..6), Some(&want[..]), "{out}{}", stderr(&o));
    assert!(out.ends_with("read-ok\nwrite-denied\n"), "{out}{}", stderr(&o));
}

/// `--init`: PID 1 is a minimal init that forwards signals to the command and reaps orphans,
/// and holds nothing the container could use against the host.
#[test]
fn commands_start_in_their_own_session_with_default_signal_actions() {
    // The daemon (a Rust program) ignores SIGPIPE, and execve keeps what is ignored and
    // blocked: a container's command, its exec'd processes and --init's command must not
    // inherit that, or a shell cannot trap the signal and `yes | head` never ends `yes`.
    let d = daemon();
    // grep itself, not through a shell: ash ignores SIGQUIT and keeps that for a command it
    // execs in its own place.
    let show = ["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"];
    let want = "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n";
    assert_eq!(stdout(&run(&d, &[&["busybox"], &show[..]].concat())), want);
    assert_eq!(stdout(&run(&d, &[&["--init", "busybox"], &show[..]].concat())), want);
    let id = d.ok(&[
        "run",
        "-d",
        "busybox",
        "sh",
        "-c",
        "trap 'echo got HUP' HUP; echo ready; while :; do sleep 0.1; done",
    ]);
    let id = id.trim();
    assert_eq!(d.ok(&[&["exec", id], &show[..]].concat()), want);
    eventually("the trap to be set", || d.ok(&["logs", id]).contains("ready"));
    d.ok(&["kill", "-s", "HUP", id]);
    eventually("the trap to run", || d.ok(&["logs", id]).contains("got HUP"));
    // `kill 0` signals the caller's process group: the container's own (its init leads a
    // session, as runc's does), never the monitor's, which would die and lose the status.
    let o = run(
        &d,
        &[
            "busybox",
            "sh",
            "-c",
            "cut -d' ' -f5,6 /proc/self/stat; kill -TERM 0; echo survived",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "1 1\nsurvived\n");
    let out = d.ok(&["exec", id, "sh", "-c", "echo $$; cut -d' ' -f5,6 /proc/self/stat"]);
    let (pid, ids) = out.trim().split_once('\n').unwrap();
    assert_eq!(
        ids,
        format!("{pid} {pid}"),
        "an exec'd process leads a session of its own too"
    );
    assert_eq!(monitors_of(&d), 1, "the monitor must be untouched");
    d.ok(&["rm", "-f", id]);
}

#[test]
fn init_forwards_signals_and_reaps() {
    let d = daemon();
    let o = run(
        &d,
        &[
            "--init",
            "busybox",
            "sh",
            "-c",
            // An orphan (the subshell's sleep) is reparented to PID 1 and must be reaped.
            "echo pid=$$; cat /proc/1/cmdline; echo; grep -E '^(CapEff|NoNewPrivs)' /proc/1/status; \
             ls -l /proc/1/exe 2>&1 | grep -c denied; (sleep 0.1 &); sleep 0.5; \
             grep -l '^State:.Z' /proc/[0-9]*/status | wc -l",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "pid=2", "{out}");
    assert_eq!(lines[1].trim_end_matches('\0'), "init", "{out}");
    // CAP_KILL (bit 5) only, so it can signal a command running as another user.
    assert_eq!(lines[2], "CapEff:\t0000000000000020", "{out}");
    assert_eq!(lines[3], "NoNewPrivs:\t1", "{out}");
    assert_eq!(lines[4], "1", "/proc/1/exe must not be reachable: {out}");
    assert_eq!(lines[5], "0", "a zombie was left: {out}");

    // The exit code is the command's.
    assert_eq!(
        run(&d, &["--init", "busybox", "sh", "-c", "exit 9"]).status.code(),
        Some(9)
    );

    // SIGTERM reaches the command: without an init, a PID 1 `sleep` ignores it and `stop`
    // waits out its whole timeout.
    let id = d.ok(&["run", "-d", "--init", "busybox", "sleep", "300"]);
    let id = id.trim();
    let t = Instant::now();
    d.ok(&["stop", "-t", "30", id]);
    assert!(t.elapsed() < Duration::from_secs(10), "stop took {:?}", t.elapsed());
    assert_eq!(d.ok(&["inspect", "-f", "{{.State.ExitCode}}", id]).trim(), "143");
    assert_eq!(d.ok(&["inspect", "-f", "{{.HostConfig.Init}}", id]).trim(), "true");
    d.ok(&["rm", id]);
}
/// The daemon's API over its socket with curl: (HTTP status, body).
fn api(d: &TestDaemon, method: &str, path: &str) -> (u16, String) {
    // `-I` for HEAD: with `-X HEAD` curl would wait for the body the length announces.
    let m = if method == "HEAD" {
        vec!["-I"]
    } else {
        vec!["-X", method]
    };
    let o = Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}"])
        .args(m)
        .arg("--unix-socket")
        .arg(d.socket())
        .arg(format!("http://hako{path}"))
        .output()
        .unwrap();
    let out = stdout(&o);
    let (body, code) = out.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_string())
}

/// The names in a tar archive.
fn tar_names(tar: &[u8]) -> Vec<String> {
    tar::Archive::new(tar)
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect()
}

/// A file of the host that containers' symlinks point at: cp must neither read nor write it.
fn host_bait(d: &TestDaemon) -> std::path::PathBuf {
    let bait = d.dir.path().join("hostside");
    std::fs::create_dir_all(&bait).unwrap();
    std::fs::write(bait.join("secret"), "host secret\n").unwrap();
    bait
}

#[test]
fn cp_in_and_out_of_a_running_container() {
    let d = daemon();
    let bait = host_bait(&d);
    let host = d.dir.path().join("host");
    std::fs::create_dir_all(host.join("dir/sub")).unwrap();
    std::fs::write(host.join("dir/a"), "a\n").unwrap();
    std::fs::write(host.join("dir/sub/b"), "b\n").unwrap();
    std::fs::write(host.join("file"), "file\n").unwrap();
    let setup = format!(
        "mkdir -p /data/sub && echo hello > /data/f && ln -s / /data/up && ln -s ../../../../.. /data/sub/climb && \
         ln -s {b} /data/hostlink && ln -s ../../../../../../../..{b} /data/hostclimb && sleep 300",
        b = bait.display()
    );
    d.ok(&["run", "-d", "--name", "box", "busybox", "sh", "-c", &setup]);
    let start = Instant::now();
    while d.hako(&["exec", "box", "test", "-L", "/data/hostclimb"]).status.code() != Some(0) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the container did not set up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let h = |p: &str| host.join(p).display().to_string();

    // Out: a file, a directory, a directory's contents, and a tar on stdout.
    d.ok(&["cp", "box:/data/f", &h("f")]);
    assert_eq!(std::fs::read_to_string(host.join("f")).unwrap(), "hello\n");
    d.ok(&["cp", "box:/data", &h("data")]);
    assert_eq!(std::fs::read_to_string(host.join("data/f")).unwrap(), "hello\n");
    assert!(host.join("data/sub").is_dir());
    assert_eq!(std::fs::read_link(host.join("data/up")).unwrap().to_str(), Some("/"));
    std::fs::create_dir(host.join("contents")).unwrap();
    d.ok(&["cp", "box:/data/.", &h("contents")]);
    assert!(host.join("contents/f").is_file() && !host.join("contents/data").exists());
    let o = d.cmd(&["cp", "box:/data/f", "-"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(tar_names(&o.stdout), ["f"]);

    // In: a file into a directory, a directory to a new name, contents with `/.`, a tar on stdin.
    d.ok(&["cp", &h("file"), "box:/tmp/"]);
    d.ok(&["cp", &h("dir"), "box:/newdir"]);
    d.ok(&["cp", &h("dir/."), "box:/tmp/merged"]);
    let tar = Command::new("tar")
        .args(["-C", &h("dir"), "-c", "a"])
        .output()
        .unwrap()
        .stdout;
    let mut c = d.cmd(&["cp", "-", "box:/root"]).stdin(Stdio::piped()).spawn().unwrap();
    c.stdin.take().unwrap().write_all(&tar).unwrap();
    assert!(c.wait().unwrap().success());
    assert_eq!(
        d.ok(&[
            "exec",
            "box",
            "cat",
            "/tmp/file",
            "/newdir/a",
            "/newdir/sub/b",
            "/tmp/merged/sub/b",
            "/root/a"
        ]),
        "file\na\nb\nb\na\n"
    );

    // A path that is not there: Docker's message, exit 1.
    let o = d.hako(&["cp", "box:/nope", &h("nope")]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "Error response from daemon: Could not find the file /nope in container box\n"
    );
    let (code, _) = api(&d, "HEAD", "/containers/box/archive?path=/nope");
    assert_eq!(code, 404);
    let o = d.hako(&["cp", "nobox:/x", &h("x")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("No such container: nobox"), "{}", stderr(&o));

    // Symlinks resolve inside the container: `/` and `../..` stop at its root.
    let o = d
        .cmd(&["cp", "box:/data/sub/climb/etc/hostname", "-"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let hostname = d.ok(&["exec", "box", "cat", "/etc/hostname"]);
    let mut a = tar::Archive::new(&o.stdout[..]);
    let mut e = a.entries().unwrap().next().unwrap().unwrap();
    let mut got = String::new();
    std::io::Read::read_to_string(&mut e, &mut got).unwrap();
    assert_eq!(got, hostname, "the container's /etc/hostname, not the host's");
    d.ok(&["cp", &h("file"), "box:/data/up/tmp/written-through-up"]);
    d.ok(&["cp", &h("file"), "box:/data/sub/climb/written-through-climb"]);
    assert_eq!(
        d.ok(&[
            "exec",
            "box",
            "cat",
            "/tmp/written-through-up",
            "/written-through-climb"
        ]),
        "file\nfile\n"
    );
    assert!(!std::path::Path::new("/tmp/written-through-up").exists());
    assert!(!std::path::Path::new("/written-through-climb").exists());
    // Links to the host's bait directory: it is not there in the container.
    for link in ["/data/hostlink", "/data/hostclimb"] {
        let o = d.hako(&["cp", &format!("box:{link}/secret"), &h("stolen")]);
        assert_eq!(o.status.code(), Some(1), "{link}: {}", stderr(&o));
        assert!(!host.join("stolen").exists());
        let o = d.hako(&["cp", &h("file"), &format!("box:{link}/planted")]);
        assert_eq!(o.status.code(), Some(1), "{link}: {}", stderr(&o));
        let o = d.cmd(&["cp", &format!("box:{link}/"), "-"]).output().unwrap();
        assert!(!String::from_utf8_lossy(&o.stdout).contains("host secret"), "{link}");
    }
    // A hostile tar: a symlink to the bait, then a file through it, and a name with `..`.
    let mut b = tar::Builder::new(Vec::new());
    let mut hd = tar::Header::new_gnu();
    hd.set_entry_type(tar::EntryType::Symlink);
    hd.set_size(0);
    hd.set_mode(0o777);
    b.append_link(&mut hd, "esc", &bait).unwrap();
    let mut hd = tar::Header::new_gnu();
    hd.set_size(6);
    hd.set_mode(0o644);
    b.append_data(&mut hd, "esc/pwned", &b"pwned\n"[..]).unwrap();
    let evil = b.into_inner().unwrap();
    let mut c = d
        .cmd(&["cp", "-", "box:/tmp"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(&evil).unwrap();
    let o = c.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "a file was written through a symlink to the host"
    );
    assert!(stderr(&o).contains("esc/pwned"), "{}", stderr(&o));
    let o = api_put(
        &d,
        "/containers/box/archive?path=/tmp",
        &raw_tar_file(b"../../escaped", b"x"),
    );
    assert_eq!(o.0, 400, "{}", o.1);
    assert!(!d.dir.path().join("escaped").exists() && !std::path::Path::new("/escaped").exists());
    assert_eq!(
        std::fs::read_dir(&bait).unwrap().count(),
        1,
        "something was written next to the bait"
    );
    assert_eq!(std::fs::read_to_string(bait.join("secret")).unwrap(), "host secret\n");
    d.ok(&["rm", "-f", "box"]);
}

/// A tar with one regular file whose name is written as is (the tar crate refuses `..`).
fn raw_tar_file(name: &[u8], data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512 + 1024, 0);
    out
}

/// A JSON POST to the daemon's API: (status, body).
fn api_post(d: &TestDaemon, path: &str, body: &str) -> (u16, String) {
    let o = Command::new("curl")
        .args([
            "-s",
            "-w",
            "\n%{http_code}",
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
        ])
        .arg("--unix-socket")
        .arg(d.socket())
        .arg(format!("http://hako{path}"))
        .output()
        .unwrap();
    let out = stdout(&o);
    let (body, code) = out.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_string())
}

fn api_put(d: &TestDaemon, path: &str, body: &[u8]) -> (u16, String) {
    let f = d.dir.path().join("put-body");
    std::fs::write(&f, body).unwrap();
    let o = Command::new("curl")
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", "PUT", "--data-binary"])
        .arg(format!("@{}", f.display()))
        .arg("--unix-socket")
        .arg(d.socket())
        .arg(format!("http://hako{path}"))
        .output()
        .unwrap();
    let out = stdout(&o);
    let (body, code) = out.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_string())
}

/// hako's mounts in this (the host's) mount namespace.
fn mounts_under(root: &std::path::Path) -> usize {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let r = root.display().to_string();
    info.lines().filter(|l| l.contains(&r)).count()
}

#[test]
fn cp_with_stopped_containers() {
    let d = daemon();
    let bait = host_bait(&d);
    let host = d.dir.path().join("host");
    std::fs::create_dir_all(host.join("dir")).unwrap();
    std::fs::write(host.join("dir/a"), "a\n").unwrap();
    std::fs::write(host.join("file"), "file\n").unwrap();
    let h = |p: &str| host.join(p).display().to_string();
    // Never started: into its rootfs, into its volume, through a symlink of its image.
    d.ok(&[
        "create",
        "--name",
        "fresh",
        "-v",
        "vol:/vol",
        "busybox",
        "sh",
        "-c",
        "cat /file /vol/a /etc/dir/a; ls /bin/ | grep -c busybox",
    ]);
    d.ok(&["cp", &h("file"), "fresh:/"]);
    d.ok(&["cp", &h("dir/a"), "fresh:/vol/"]);
    d.ok(&["cp", &h("dir"), "fresh:/etc/"]);
    assert_eq!(mounts_under(&d.root()), 0, "a copy left a mount behind");
    let o = d.hako(&["start", "-a", "fresh"]);
    assert_eq!(stdout(&o), "file\na\na\n1\n", "{}", stderr(&o));
    // Exited: out of it, its volume included; a new file in.
    d.ok(&["cp", "fresh:/vol/a", &h("from-vol")]);
    assert_eq!(std::fs::read_to_string(host.join("from-vol")).unwrap(), "a\n");
    d.ok(&["cp", "fresh:/etc/dir", &h("etcdir")]);
    assert_eq!(std::fs::read_to_string(host.join("etcdir/a")).unwrap(), "a\n");
    let o = d.cmd(&["cp", "fresh:/bin/busybox", "-"]).output().unwrap();
    assert_eq!(tar_names(&o.stdout), ["busybox"]);
    let o = d.hako(&["cp", "fresh:/nope", &h("x")]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "Error response from daemon: Could not find the file /nope in container fresh\n"
    );
    // Symlinks of a stopped container stay inside it too.
    d.ok(&[
        "run",
        "--name",
        "links",
        "busybox",
        "sh",
        "-c",
        &format!(
            "ln -sfn / /up; ln -sfn ../../.. /tmp/climb; ln -sfn {} /bait",
            bait.display()
        ),
    ]);
    d.ok(&["cp", &h("file"), "links:/up/tmp/"]);
    d.ok(&["cp", &h("file"), "links:/tmp/climb/planted"]);
    assert_eq!(
        d.hako(&["cp", &h("file"), "links:/bait/planted"]).status.code(),
        Some(1)
    );
    assert_eq!(
        d.hako(&["cp", "links:/bait/secret", &h("stolen")]).status.code(),
        Some(1)
    );
    assert!(!host.join("stolen").exists());
    assert_eq!(std::fs::read_dir(&bait).unwrap().count(), 1);
    let o = d.cmd(&["cp", "links:/tmp/climb/planted", "-"]).output().unwrap();
    assert_eq!(tar_names(&o.stdout), ["planted"]);
    // It starts again over what the copies wrote.
    d.ok(&["start", "-a", "links"]);
    assert_eq!(d.ok(&["cp", "links:/planted", "-"]).len() % 512, 0);
    // Owners: the archive's, or with -a the container's user (Docker's copyUIDGID).
    d.ok(&[
        "create",
        "--name",
        "owned",
        "-u",
        "nobody",
        "busybox",
        "stat",
        "-c",
        "%u",
        "/plain",
        "/archived",
    ]);
    d.ok(&["cp", &h("file"), "owned:/plain"]);
    d.ok(&["cp", "-a", &h("file"), "owned:/archived"]);
    assert_eq!(d.ok(&["start", "-a", "owned"]), "0\n65534\n");
    let o = d.hako(&[
        "run",
        "--rm",
        "--read-only",
        "--name",
        "ro",
        "-d",
        "busybox",
        "sleep",
        "30",
    ]);
    assert!(o.status.success());
    let o = d.hako(&["cp", &h("file"), "ro:/"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "Error response from daemon: container rootfs is marked read-only\n"
    );
    d.ok(&["rm", "-f", "ro", "fresh", "links", "owned"]);
    assert_eq!(mounts_under(&d.root()), 0, "a copy left a mount behind");
}

#[test]
fn export_writes_the_container_filesystem() {
    let d = daemon();
    d.ok(&[
        "run",
        "--name",
        "ex",
        "-v",
        "exvol:/vol",
        "busybox",
        "sh",
        "-c",
        "echo made > /made-here; echo v > /vol/in-volume",
    ]);
    let out = d.dir.path().join("ex.tar");
    d.ok(&["export", "-o", out.to_str().unwrap(), "ex"]);
    let names = tar_names(&std::fs::read(&out).unwrap());
    for want in ["bin/busybox", "made-here", "etc/passwd", "vol/"] {
        assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
    }
    assert!(
        !names.iter().any(|n| n.contains("in-volume")),
        "volumes are not exported"
    );
    let o = d.cmd(&["export", "ex"]).output().unwrap();
    assert!(o.status.success());
    assert_eq!(tar_names(&o.stdout), names);
    // A running container too.
    d.ok(&[
        "run",
        "-d",
        "--name",
        "live",
        "busybox",
        "sh",
        "-c",
        "echo x > /live; sleep 60",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let o = d.cmd(&["export", "live"]).output().unwrap();
    let live = tar_names(&o.stdout);
    assert!(
        live.iter().any(|n| n == "live") && live.iter().any(|n| n == "proc/"),
        "{live:?}"
    );
    assert!(
        !live.iter().any(|n| n.starts_with("proc/1")),
        "the container's /proc is not exported"
    );
    // Not to a terminal.
    let o = Command::new("script")
        .args(["-qec", &format!("{} export ex", common::hako_bin()), "/dev/null"])
        .env("HAKO_HOST", d.host())
        .output()
        .unwrap();
    assert!(
        stdout(&o).contains("cowardly refusing to save to a terminal"),
        "{}",
        stdout(&o)
    );
    assert_eq!(d.hako(&["export", "nosuch"]).status.code(), Some(1));
    d.ok(&["rm", "-f", "ex", "live"]);
}

#[test]
fn ps_and_inspect_show_sizes() {
    let d = daemon();
    d.ok(&["run", "-d", "--name", "sized", "busybox", "sleep", "60"]);
    d.ok(&["exec", "sized", "sh", "-c", "head -c 1234 /dev/zero > /blob"]);
    let ps = d.ok(&["ps", "-s"]);
    let mut lines = ps.lines();
    assert!(lines.next().unwrap().trim_end().ends_with("SIZE"), "{ps}");
    assert!(lines.next().unwrap().contains("1.23kB (virtual "), "{ps}");
    let rw: u64 = d
        .ok(&["inspect", "--size", "-f", "{{.SizeRw}}", "sized"])
        .trim()
        .parse()
        .unwrap();
    let rootfs: u64 = d
        .ok(&["inspect", "-s", "-f", "{{.SizeRootFs}}", "sized"])
        .trim()
        .parse()
        .unwrap();
    assert_eq!(rw, 1234);
    assert!(rootfs > 1_000_000 + rw, "{rootfs}");
    let v: serde_json::Value = serde_json::from_str(&api(&d, "GET", "/containers/json?size=1").1).unwrap();
    assert_eq!(v[0]["SizeRw"], 1234);
    assert_eq!(v[0]["SizeRootFs"], rootfs);
    assert_eq!(
        d.ok(&["ps", "--format", "{{.Size}}"]).trim(),
        format!("1.23kB (virtual {})", human(rootfs))
    );
    d.ok(&["rm", "-f", "sized"]);
}

/// go-units' HumanSize for the sizes the tests meet.
fn human(b: u64) -> String {
    let mb = b as f64 / 1e6;
    format!("{}MB", format!("{mb:.2}").trim_end_matches('0').trim_end_matches('.'))
}

#[test]
fn exec_terminals_are_resized() {
    let d = daemon();
    d.ok(&["run", "-d", "--name", "tty", "busybox", "sleep", "60"]);
    // The size at the start, from the CLI's terminal.
    let o = Command::new("script")
        .args([
            "-qec",
            &format!("stty rows 27 cols 91; {} exec -t tty stty size", common::hako_bin()),
            "/dev/null",
        ])
        .env("HAKO_HOST", d.host())
        .output()
        .unwrap();
    assert!(stdout(&o).contains("27 91"), "{}{}", stdout(&o), stderr(&o));
    // A resize while it runs.
    let c = d
        .cmd(&["exec", "-t", "tty", "sh", "-c", "sleep 2; stty size"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let id = loop {
        let ids = d.ok(&["inspect", "-f", "{{json .ExecIDs}}", "tty"]);
        if let Ok(serde_json::Value::Array(a)) = serde_json::from_str::<serde_json::Value>(&ids) {
            if let Some(id) = a.first().and_then(|v| v.as_str()) {
                break id.to_string();
            }
        }
        assert!(start.elapsed() < Duration::from_secs(5), "the exec did not show up");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(api(&d, "POST", &format!("/exec/{id}/resize?h=33&w=111")).0, 200);
    let o = c.wait_with_output().unwrap();
    assert_eq!(stdout(&o).trim(), "33 111");
    assert_eq!(api(&d, "POST", "/exec/nope/resize?h=1&w=1").0, 404);
    assert_eq!(api(&d, "POST", &format!("/exec/{id}/resize?h=x&w=1")).0, 400);
    d.ok(&["rm", "-f", "tty"]);
}

#[test]
fn the_docker_cli_copies_and_exports() {
    let d = daemon();
    let host = d.dir.path().join("host");
    std::fs::create_dir_all(host.join("dir")).unwrap();
    std::fs::write(host.join("dir/a"), "a\n").unwrap();
    let h = |p: &str| host.join(p).display().to_string();
    d.ok(&[
        "run",
        "-d",
        "--name",
        "dk",
        "busybox",
        "sh",
        "-c",
        "mkdir /data; echo hello > /data/f; sleep 60",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let o = d.docker(&["cp", "dk:/data", &h("data")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(host.join("data/f")).unwrap(), "hello\n");
    let o = d.docker(&["cp", &h("dir"), "dk:/copied"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = d.docker(&["cp", &h("dir/."), "dk:/data"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(d.ok(&["exec", "dk", "cat", "/copied/a", "/data/a"]), "a\na\n");
    let o = d.docker(&["cp", "dk:/nope", &h("x")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("Could not find the file /nope in container dk"),
        "{}",
        stderr(&o)
    );
    let o = d.docker(&["export", "dk"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let names = tar_names(&o.stdout);
    assert!(
        names.iter().any(|n| n == "bin/busybox") && names.iter().any(|n| n == "copied/a"),
        "{names:?}"
    );
    let o = Command::new("script")
        .args(["-qec", "stty rows 29 cols 95; docker exec -t dk stty size", "/dev/null"])
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
        .output()
        .unwrap();
    assert!(stdout(&o).contains("29 95"), "{}{}", stdout(&o), stderr(&o));
    d.ok(&["rm", "-f", "dk"]);
}

/// The docker CLI pointed at the daemon, as a Command to adjust (stdin, spawn).
fn docker_cmd(d: &TestDaemon, args: &[&str]) -> Command {
    let mut c = Command::new("docker");
    c.args(args)
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"));
    c
}

/// The docker CLI with `input` on its stdin.
fn docker_stdin(d: &TestDaemon, args: &[&str], input: &[u8]) -> std::process::Output {
    let mut c = docker_cmd(d, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(input).unwrap();
    c.wait_with_output().unwrap()
}

/// Runs the docker CLI and asserts success; returns stdout.
fn docker_ok(d: &TestDaemon, args: &[&str]) -> String {
    let o = d.docker(args);
    assert!(
        o.status.success(),
        "docker {args:?} failed ({}): {}{}",
        o.status,
        stderr(&o),
        stdout(&o)
    );
    stdout(&o)
}

/// Polls `f` until it holds, for up to 20 seconds.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Removes every container of the daemon when dropped, also when a test fails midway, so no
/// monitor, mount or cgroup outlives the test. Declare it after the daemon (drops first).
struct RemoveAll<'a>(&'a TestDaemon);

impl Drop for RemoveAll<'_> {
    fn drop(&mut self) {
        for id in stdout(&self.0.hako(&["ps", "-aq"])).split_whitespace() {
            let _ = self.0.hako(&["rm", "-f", "-v", id]);
        }
    }
}

/// A process (the docker CLI, or script(1) running it in a terminal) whose output is
/// collected as it comes, so a test can wait for text, then type.
struct Live {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    out: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Live {
    fn spawn(mut cmd: Command) -> Live {
        use std::io::Read;
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let pipes: Vec<Box<dyn Read + Send>> = vec![
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ];
        let readers = pipes
            .into_iter()
            .map(|mut p| {
                let out = out.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = p.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        out.lock().unwrap().extend_from_slice(&buf[..n]);
                    }
                })
            })
            .collect();
        Live {
            stdin: child.stdin.take(),
            child,
            out,
            readers,
        }
    }

    /// The docker command line in script(1)'s terminal; typing goes to its stdin.
    fn terminal(d: &TestDaemon, cmdline: &str) -> Live {
        let mut c = Command::new("script");
        c.args(["-qec", cmdline, "/dev/null"])
            .env("DOCKER_HOST", d.host())
            .env("DOCKER_CONFIG", d.dir.path().join("docker-config"));
        Live::spawn(c)
    }

    fn output(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    fn wait_for(&self, text: &str) {
        let start = Instant::now();
        while !self.output().contains(text) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{text:?} did not appear in:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        let s = self.stdin.as_mut().unwrap();
        s.write_all(bytes).unwrap();
        s.flush().unwrap();
    }

    /// Waits for the process to end by itself (stdin still open: an EOF could reach the
    /// container first); returns its exit code and all its output.
    fn finish(mut self) -> (Option<i32>, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the process did not end; output:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        drop(self.stdin.take());
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        (status.code(), self.output())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_docker_cli_drives_the_container_life() {
    let d = daemon();
    let _cleanup = RemoveAll(&d);

    // create, then start -a: the output attached, the exit code the container's.
    docker_ok(
        &d,
        &[
            "create",
            "--name",
            "c1",
            "busybox",
            "sh",
            "-c",
            "echo created-out; echo created-err >&2; exit 3",
        ],
    );
    assert_eq!(
        docker_ok(&d, &["inspect", "-f", "{{.State.Status}}", "c1"]),
        "created\n"
    );
    let o = d.docker(&["start", "-a", "c1"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(stdout(&o), "created-out\n");
    assert_eq!(stderr(&o), "created-err\n");
    // start -ai: piped stdin reaches the container.
    docker_ok(
        &d,
        &[
            "create",
            "-i",
            "--name",
            "c2",
            "busybox",
            "sh",
            "-c",
            "read x; echo got:$x; exit 4",
        ],
    );
    let o = docker_stdin(&d, &["start", "-ai", "c2"], b"hello\n");
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert_eq!(stdout(&o), "got:hello\n");
    // run -i with stdin piped.
    let o = docker_stdin(&d, &["run", "-i", "--rm", "busybox", "cat"], b"hello\nworld\n");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "hello\nworld\n");

    // The process settings.
    let env_file = d.dir.path().join("env.list");
    std::fs::write(&env_file, "# a comment\nA=from-file\nB=2\n").unwrap();
    assert_eq!(
        docker_ok(
            &d,
            &[
                "run",
                "--rm",
                "-e",
                "X=1",
                "--env-file",
                env_file.to_str().unwrap(),
                "-w",
                "/tmp",
                "-u",
                "1000:1001",
                "-h",
                "myhost",
                "busybox",
                "sh",
                "-c",
                "echo $X $A $B; pwd; id -u; id -g; hostname",
            ],
        ),
        "1 from-file 2\n/tmp\n1000\n1001\nmyhost\n"
    );
    assert_eq!(
        docker_ok(&d, &["run", "--rm", "--entrypoint", "echo", "busybox", "hi", "there"]),
        "hi there\n"
    );
    docker_ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "lab",
            "-l",
            "app=web",
            "-l",
            "tier=1",
            "--stop-signal",
            "SIGUSR1",
            "--stop-timeout",
            "3",
            "busybox",
            "sleep",
            "60",
        ],
    );
    assert_eq!(
        docker_ok(
            &d,
            &[
                "inspect",
                "-f",
                "{{.Name}} {{json .Config.Labels}} {{.Config.StopSignal}} {{.Config.StopTimeout}}",
                "lab"
            ]
        ),
        "/lab {\"app\":\"web\",\"tier\":\"1\"} SIGUSR1 3\n"
    );
    assert_eq!(
        docker_ok(&d, &["ps", "--filter", "label=app=web", "--format", "{{.Names}}"]),
        "lab\n"
    );
    assert_eq!(docker_ok(&d, &["ps", "-q", "--filter", "label=app=db"]), "");
    // --init: the init is PID 1, the command PID 2.
    let ps = docker_ok(&d, &["run", "--rm", "--init", "busybox", "ps", "-o", "pid,args"]);
    let rows: Vec<Vec<&str>> = ps.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows, vec![vec!["1", "init"], vec!["2", "ps", "-o", "pid,args"]], "{ps}");
    // --read-only, with a --tmpfs to write to.
    let o = d.docker(&["run", "--rm", "--read-only", "busybox", "touch", "/x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("Read-only file system"), "{}", stderr(&o));
    let mounts = docker_ok(
        &d,
        &[
            "run",
            "--rm",
            "--read-only",
            "--tmpfs",
            "/scratch",
            "busybox",
            "sh",
            "-c",
            "touch /scratch/x && grep ' /scratch ' /proc/mounts",
        ],
    );
    assert!(mounts.starts_with("tmpfs /scratch tmpfs rw"), "{mounts}");
    // Capabilities: Docker's default set (a80425fb) without NET_RAW (bit 13), with SYS_ADMIN
    // (bit 21); --privileged has every capability the host has, and no seccomp.
    assert_eq!(
        docker_ok(
            &d,
            &[
                "run",
                "--rm",
                "--cap-drop",
                "NET_RAW",
                "--cap-add",
                "SYS_ADMIN",
                "busybox",
                "grep",
                "CapEff",
                "/proc/self/status"
            ]
        ),
        "CapEff:\t00000000a82405fb\n"
    );
    let host_caps = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:").map(|v| v.trim().to_string()))
        .unwrap();
    assert_eq!(
        docker_ok(
            &d,
            &[
                "run",
                "--rm",
                "--privileged",
                "busybox",
                "grep",
                "-E",
                "CapEff|Seccomp:",
                "/proc/self/status"
            ]
        ),
        format!("CapEff:\t{host_caps}\nSeccomp:\t0\n")
    );
    // -m 32m: a container using more is OOM-killed (137, OOMKilled).
    let o = d.docker(&[
        "run",
        "--name",
        "oom",
        "-m",
        "32m",
        "busybox",
        "sh",
        "-c",
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
    ]);
    assert_eq!(o.status.code(), Some(137), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(
        docker_ok(
            &d,
            &[
                "inspect",
                "-f",
                "{{.State.OOMKilled}} {{.State.ExitCode}} {{.HostConfig.Memory}}",
                "oom"
            ]
        ),
        "true 137 33554432\n"
    );
    docker_ok(&d, &["rm", "oom"]);

    // logs: -f follows until the container exits; --tail, -t, --since/--until (inclusive,
    // to the nanosecond).
    docker_ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "lg",
            "busybox",
            "sh",
            "-c",
            "for i in 1 2 3; do echo line$i; done; echo bye >&2; while [ ! -f /stop ]; do sleep 0.05; done; sleep 0.5; echo last",
        ],
    );
    let follow = Live::spawn(docker_cmd(&d, &["logs", "-f", "lg"]));
    follow.wait_for("bye");
    // (The container waits a moment after /stop appears: an init that exits takes every
    // process of its PID namespace with it, the exec's `touch` too if it has not exited yet.)
    docker_ok(&d, &["exec", "lg", "touch", "/stop"]);
    let (code, out) = follow.finish();
    assert_eq!(code, Some(0), "{out}");
    for l in ["line1", "line2", "line3", "bye", "last"] {
        assert!(out.lines().any(|x| x == l), "{l} missing in:\n{out}");
    }
    assert_eq!(docker_ok(&d, &["wait", "lg"]), "0\n");
    let o = d.docker(&["logs", "--tail", "2", "lg"]);
    assert_eq!((stdout(&o).as_str(), stderr(&o).as_str()), ("last\n", "bye\n"));
    let stamped = docker_ok(&d, &["logs", "-t", "lg"]);
    let stamps: Vec<(&str, &str)> = stamped.lines().map(|l| l.split_once(' ').unwrap()).collect();
    assert_eq!(
        stamps.iter().map(|s| s.1).collect::<Vec<_>>(),
        ["line1", "line2", "line3", "last"],
        "{stamped}"
    );
    for (t, _) in &stamps {
        assert!(t.len() >= 20 && t.contains('T') && t.ends_with('Z'), "{stamped}");
    }
    assert_eq!(
        docker_ok(&d, &["logs", "--since", stamps[1].0, "--until", stamps[2].0, "lg"]),
        "line2\nline3\n"
    );
    assert_eq!(docker_ok(&d, &["logs", "--since", stamps[3].0, "lg"]), "last\n");

    // stop: the stop signal (a trap honours SIGTERM); after -t, SIGKILL (137).
    docker_ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "trap",
            "busybox",
            "sh",
            "-c",
            "trap 'echo got-term; exit 7' TERM; trap 'echo got-usr1' USR1; trap 'echo got-rt' 37; echo ready; while :; do sleep 0.05; done",
        ],
    );
    eventually("the trap", || stdout(&d.docker(&["logs", "trap"])).contains("ready"));
    docker_ok(&d, &["kill", "-s", "USR1", "trap"]);
    eventually("the USR1 trap", || {
        stdout(&d.docker(&["logs", "trap"])).contains("got-usr1")
    });
    // Docker's real-time signal names (SIGRTMIN+3 is 37).
    docker_ok(&d, &["kill", "-s", "SIGRTMIN+3", "trap"]);
    eventually("the RTMIN+3 trap", || {
        stdout(&d.docker(&["logs", "trap"])).contains("got-rt")
    });
    assert_eq!(
        docker_ok(&d, &["inspect", "-f", "{{.State.Running}}", "trap"]),
        "true\n"
    );
    assert_eq!(docker_ok(&d, &["stop", "trap"]), "trap\n");
    assert_eq!(
        docker_ok(&d, &["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "trap"]),
        "exited 7\n"
    );
    assert!(stdout(&d.docker(&["logs", "trap"])).ends_with("got-term\n"));
    // restart: running again, a new start time.
    let started = docker_ok(&d, &["inspect", "-f", "{{.State.StartedAt}}", "trap"]);
    assert_eq!(docker_ok(&d, &["restart", "trap"]), "trap\n");
    assert_eq!(
        docker_ok(&d, &["inspect", "-f", "{{.State.Running}}", "trap"]),
        "true\n"
    );
    assert_ne!(
        docker_ok(&d, &["inspect", "-f", "{{.State.StartedAt}}", "trap"]),
        started
    );
    eventually("the second run", || {
        stdout(&d.docker(&["logs", "trap"])).matches("ready").count() == 2
    });
    docker_ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "stubborn",
            "busybox",
            "sh",
            "-c",
            "trap '' TERM; echo ready; while :; do sleep 0.05; done",
        ],
    );
    eventually("the trap", || {
        stdout(&d.docker(&["logs", "stubborn"])).contains("ready")
    });
    let t = Instant::now();
    docker_ok(&d, &["stop", "-t", "1", "stubborn"]);
    assert!(t.elapsed() >= Duration::from_secs(1), "stop -t 1 did not wait");
    assert_eq!(
        docker_ok(&d, &["inspect", "-f", "{{.State.ExitCode}}", "stubborn"]),
        "137\n"
    );
    // The container's own --stop-signal and --stop-timeout.
    docker_ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "usr1",
            "--stop-signal",
            "USR1",
            "--stop-timeout",
            "1",
            "busybox",
            "sh",
            "-c",
            "trap 'exit 5' USR1; echo ready; while :; do sleep 0.05; done",
        ],
    );
    eventually("the trap", || stdout(&d.docker(&["logs", "usr1"])).contains("ready"));
    docker_ok(&d, &["stop", "usr1"]);
    assert_eq!(docker_ok(&d, &["inspect", "-f", "{{.State.ExitCode}}", "usr1"]), "5\n");
    let o = d.docker(&["run", "--rm", "--stop-signal", "NOSUCH", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("Invalid signal: NOSUCH"), "{}", stderr(&o));

    // pause / unpause, top, stats, rename.
    docker_ok(
        &d,
        &["run", "-d", "--name", "box", "-m", "64m", "busybox", "sleep", "60"],
    );
    assert_eq!(docker_ok(&d, &["pause", "box"]), "box\n");
    assert_eq!(
        docker_ok(&d, &["inspect", "-f", "{{.State.Status}} {{.State.Paused}}", "box"]),
        "paused true\n"
    );
    assert!(docker_ok(&d, &["ps", "--filter", "name=box", "--format", "{{.Status}}"]).contains("(Paused)"));
    let o = d.docker(&["exec", "box", "true"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("Container box is paused, unpause the container before exec"),
        "{}",
        stderr(&o)
    );
    assert_eq!(docker_ok(&d, &["unpause", "box"]), "box\n");
    assert_eq!(
        docker_ok(&d, &["inspect", "-f", "{{.State.Status}} {{.State.Paused}}", "box"]),
        "running false\n"
    );
    let top = docker_ok(&d, &["top", "box"]);
    let mut lines = top.lines();
    assert!(
        lines
            .next()
            .unwrap()
            .split_whitespace()
            .eq(["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]),
        "{top}"
    );
    assert!(lines.next().unwrap().ends_with("sleep 60"), "{top}");
    let top = docker_ok(&d, &["top", "box", "-o", "pid,comm"]);
    let rows: Vec<Vec<&str>> = top.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 2, "{top}");
    assert_eq!(rows[0], ["PID", "COMMAND"]);
    assert_eq!(rows[1][1], "sleep");
    let stats = docker_ok(&d, &["stats", "--no-stream", "box"]);
    assert!(stats.lines().next().unwrap().contains("MEM USAGE / LIMIT"), "{stats}");
    let row = stats.lines().nth(1).unwrap();
    assert!(row.contains(" box ") && row.contains(" / 64MiB "), "{stats}");
    let usage = docker_ok(&d, &["stats", "--no-stream", "--format", "{{.MemUsage}}", "box"]);
    let (used, limit) = usage.trim().split_once(" / ").unwrap();
    assert_eq!(limit, "64MiB");
    assert!(
        ["B", "KiB", "MiB"].iter().any(|u| used
            .strip_suffix(u)
            .is_some_and(|n| n.parse::<f64>().is_ok_and(|n| n > 0.0))),
        "{usage}"
    );
    docker_ok(&d, &["rename", "box", "box2"]);
    assert_eq!(docker_ok(&d, &["inspect", "-f", "{{.Name}}", "box2"]), "/box2\n");
    let o = d.docker(&["inspect", "box"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("No such object: box"), "{}", stderr(&o));

    // exec: -i with stdin, -u, -e, -w, -d; the exit code is the command's.
    let o = docker_stdin(&d, &["exec", "-i", "box2", "wc", "-c"], b"12345");
    assert_eq!(stdout(&o).trim(), "5", "{}", stderr(&o));
    let o = d.docker(&[
        "exec",
        "-u",
        "nobody",
        "-e",
        "Y=2",
        "-w",
        "/etc",
        "box2",
        "sh",
        "-c",
        "id -un; echo $Y; pwd; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert_eq!(stdout(&o), "nobody\n2\n/etc\n");
    assert_eq!(
        docker_ok(&d, &["exec", "-d", "box2", "sh", "-c", "echo detached > /tmp/d"]),
        ""
    );
    eventually("the detached exec", || {
        d.docker(&["exec", "box2", "cat", "/tmp/d"]).stdout == b"detached\n"
    });

    // commit and diff.
    docker_ok(
        &d,
        &[
            "run",
            "--name",
            "cm",
            "busybox",
            "sh",
            "-c",
            "echo committed > /f; mkdir /newdir; rm /etc/group",
        ],
    );
    let diff = docker_ok(&d, &["diff", "cm"]);
    for line in ["A /f", "A /newdir", "C /etc", "D /etc/group"] {
        assert!(diff.lines().any(|l| l == line), "{line} missing in:\n{diff}");
    }
    let id = docker_ok(
        &d,
        &["commit", "-c", r#"CMD ["cat","/f"]"#, "-m", "msg", "cm", "img:tag"],
    );
    assert!(id.starts_with("sha256:"), "{id}");
    assert_eq!(docker_ok(&d, &["run", "--rm", "img:tag"]), "committed\n");
    assert_eq!(
        docker_ok(
            &d,
            &["image", "inspect", "-f", "{{.Comment}} {{json .Config.Cmd}}", "img:tag"]
        ),
        "msg [\"cat\",\"/f\"]\n"
    );

    // container prune: every stopped container goes (with what it wrote), running ones stay.
    let stopped: Vec<String> = docker_ok(&d, &["ps", "-aq", "--no-trunc", "--filter", "status=exited"])
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(stopped.len(), 6, "c1, c2, lg, stubborn, usr1, cm");
    let pruned = docker_ok(&d, &["container", "prune", "-f"]);
    assert!(pruned.starts_with("Deleted Containers:\n"), "{pruned}");
    for id in &stopped {
        assert!(pruned.lines().any(|l| l == id), "{id} not pruned:\n{pruned}");
    }
    let reclaimed = pruned.lines().last().unwrap();
    assert!(
        reclaimed.starts_with("Total reclaimed space: ") && reclaimed != "Total reclaimed space: 0B",
        "{pruned}"
    );
    let mut left: Vec<String> = docker_ok(&d, &["ps", "-a", "--format", "{{.Names}}"])
        .lines()
        .map(String::from)
        .collect();
    left.sort();
    assert_eq!(left, ["box2", "lab", "trap"]);

    // exec in a stopped container, rm of a running one.
    docker_ok(&d, &["stop", "-t", "0", "lab"]);
    let o = d.docker(&["exec", "lab", "true"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("is not running"), "{}", stderr(&o));
    let o = d.docker(&["rm", "box2"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("container is running: stop the container before removing or force remove"),
        "{}",
        stderr(&o)
    );
    assert_eq!(docker_ok(&d, &["rm", "-f", "box2", "lab", "trap"]), "box2\nlab\ntrap\n");
    assert_eq!(docker_ok(&d, &["ps", "-aq"]), "");
}

#[test]
fn the_docker_cli_volumes_ps_attach_and_terminals() {
    let d = daemon();
    let _cleanup = RemoveAll(&d);

    // Volumes: create, ls, inspect; data outlives the container that wrote it.
    assert_eq!(docker_ok(&d, &["volume", "create", "vol"]), "vol\n");
    assert_eq!(
        docker_ok(&d, &["volume", "ls", "--format", "{{.Driver}} {{.Name}}"]),
        "local vol\n"
    );
    let v: serde_json::Value = serde_json::from_str(&docker_ok(&d, &["volume", "inspect", "vol"])).unwrap();
    assert_eq!(v[0]["Name"], "vol");
    assert_eq!(v[0]["Driver"], "local");
    let mountpoint = v[0]["Mountpoint"].as_str().unwrap().to_string();
    docker_ok(
        &d,
        &[
            "run",
            "--name",
            "writer",
            "-v",
            "vol:/data",
            "busybox",
            "sh",
            "-c",
            "echo kept > /data/f",
        ],
    );
    let mounts: serde_json::Value =
        serde_json::from_str(&docker_ok(&d, &["inspect", "-f", "{{json .Mounts}}", "writer"])).unwrap();
    assert_eq!(mounts[0]["Type"], "volume");
    assert_eq!(mounts[0]["Name"], "vol");
    assert_eq!(mounts[0]["Destination"], "/data");
    docker_ok(&d, &["rm", "writer"]);
    assert_eq!(std::fs::read_to_string(format!("{mountpoint}/f")).unwrap(), "kept\n");
    assert_eq!(
        docker_ok(
            &d,
            &[
                "run",
                "--rm",
                "--mount",
                "type=volume,source=vol,target=/d",
                "busybox",
                "cat",
                "/d/f"
            ]
        ),
        "kept\n"
    );
    let o = d.docker(&[
        "run",
        "--rm",
        "--mount",
        "type=volume,source=vol,target=/d,readonly",
        "busybox",
        "sh",
        "-c",
        "cat /d/f; touch /d/x",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "kept\n");
    assert!(stderr(&o).contains("Read-only file system"), "{}", stderr(&o));
    // A host directory, read-only.
    let host = d.dir.path().join("hostdir");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("h"), "from-host\n").unwrap();
    let bind = format!("{}:/x:ro", host.display());
    let o = d.docker(&[
        "run",
        "--rm",
        "-v",
        &bind,
        "busybox",
        "sh",
        "-c",
        "cat /x/h; touch /x/y",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "from-host\n");
    assert!(stderr(&o).contains("Read-only file system"), "{}", stderr(&o));
    assert!(!host.join("y").exists());
    // A volume in use cannot go; once unused it can.
    docker_ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "user",
            "-v",
            "vol:/data",
            "busybox",
            "sleep",
            "60",
        ],
    );
    let o = d.docker(&["volume", "rm", "vol"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("volume is in use"), "{}", stderr(&o));
    docker_ok(&d, &["rm", "-f", "user"]);
    assert_eq!(docker_ok(&d, &["volume", "rm", "vol"]), "vol\n");
    assert_eq!(docker_ok(&d, &["volume", "ls", "-q"]), "");
    let o = d.docker(&["volume", "inspect", "vol"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no such volume"), "{}", stderr(&o));

    // ps: -a -q -n -l -s, filters, templates; newest first.
    let o = d.docker(&[
        "run",
        "--name",
        "e1",
        "busybox",
        "sh",
        "-c",
        "echo 12345 > /written; exit 2",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    docker_ok(&d, &["run", "--name", "e2", "busybox", "true"]);
    docker_ok(&d, &["run", "-d", "--name", "up", "busybox", "sh", "-c", "sleep 60"]);
    let ids = docker_ok(&d, &["ps", "-a", "-q"]);
    assert_eq!(ids.lines().count(), 3, "{ids}");
    assert!(
        ids.lines()
            .all(|l| l.len() == 12 && l.bytes().all(|b| b.is_ascii_hexdigit())),
        "{ids}"
    );
    assert_eq!(docker_ok(&d, &["ps", "-q"]).lines().count(), 1);
    assert_eq!(docker_ok(&d, &["ps", "-a", "--format", "{{.Names}}"]), "up\ne2\ne1\n");
    assert_eq!(docker_ok(&d, &["ps", "-n", "2", "--format", "{{.Names}}"]), "up\ne2\n");
    assert_eq!(docker_ok(&d, &["ps", "-l", "--format", "{{.Names}}"]), "up\n");
    assert_eq!(
        docker_ok(&d, &["ps", "-a", "--filter", "status=exited", "--format", "{{.Names}}"]),
        "e2\ne1\n"
    );
    assert_eq!(
        docker_ok(&d, &["ps", "-a", "--filter", "exited=2", "--format", "{{.Names}}"]),
        "e1\n"
    );
    let e1 = docker_ok(
        &d,
        &[
            "ps",
            "-a",
            "--no-trunc",
            "--filter",
            "name=e1",
            "--format",
            "{{.Status}}|{{.Command}}",
        ],
    );
    let (status, command) = e1.trim().split_once('|').unwrap();
    assert!(status.starts_with("Exited (2) "), "{e1}");
    // dockerd quotes the arguments that have a space.
    assert_eq!(command, r#""sh -c 'echo 12345 > /written; exit 2'""#);
    let sized = docker_ok(&d, &["ps", "-a", "-s", "--filter", "name=e1"]);
    assert!(sized.lines().next().unwrap().ends_with("SIZE"), "{sized}");
    assert!(sized.lines().nth(1).unwrap().contains(" 6B (virtual "), "{sized}");

    // attach to a running container: its output appears; its exit ends the attach with its
    // code.
    docker_ok(
        &d,
        &[
            "run",
            "-d",
            "--name",
            "ticker",
            "busybox",
            "sh",
            "-c",
            "while [ ! -f /stop ]; do echo tick; sleep 0.05; done; sleep 0.5; echo attached-err >&2; exit 3",
        ],
    );
    let attach = Live::spawn(docker_cmd(&d, &["attach", "ticker"]));
    attach.wait_for("tick\ntick\n");
    docker_ok(&d, &["exec", "ticker", "touch", "/stop"]);
    let (code, out) = attach.finish();
    assert_eq!(code, Some(3), "{out}");
    assert!(out.contains("attached-err"), "{out}");
    // A terminal: attach, type, see the answer, detach with ctrl-p ctrl-q (the CLI's
    // `read escape sequence`, exit 1, as docker's); the container keeps running.
    docker_ok(&d, &["run", "-dit", "--name", "shell", "busybox", "sh"]);
    let mut t = Live::terminal(&d, "docker attach shell");
    t.send(b"echo attached-$((6*7))\r");
    t.wait_for("attached-42");
    t.send(&[0x10, 0x11]);
    let (code, out) = t.finish();
    assert!(out.contains("read escape sequence"), "{out}");
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(
        docker_ok(&d, &["inspect", "-f", "{{.State.Running}}", "shell"]),
        "true\n"
    );
    // run -it: commands typed into the container's shell, the exit code its.
    let mut t = Live::terminal(&d, "docker run --rm -it busybox sh");
    t.wait_for("# ");
    t.send(b"echo typed-$((6*7)); tty\r");
    t.wait_for("typed-42");
    t.send(b"exit 9\r");
    let (code, out) = t.finish();
    assert_eq!(code, Some(9), "{out}");
    assert!(out.contains("/dev/pts/0"), "{out}");
    // exec -it in the detached terminal container.
    let mut t = Live::terminal(&d, "docker exec -it shell sh");
    t.send(b"echo in-exec-$((2+3)); exit 4\r");
    t.wait_for("in-exec-5");
    let (code, out) = t.finish();
    assert_eq!(code, Some(4), "{out}");

    // Error paths, with docker's words and codes.
    let o = d.docker(&["run", "--rm", "localhost:1/nosuch:1", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("Unable to find image 'localhost:1/nosuch:1' locally"),
        "{}",
        stderr(&o)
    );
    let o = d.docker(&["run", "--bogus-flag", "busybox"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("unknown flag: --bogus-flag"), "{}", stderr(&o));
    let o = d.docker(&["run", "--rm", "-w", "relative", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("the working directory 'relative' is invalid"),
        "{}",
        stderr(&o)
    );
    let o = d.docker(&["exec", "e1", "true"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("is not running"), "{}", stderr(&o));
    let o = d.docker(&["rm", "up"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot remove container \"/up\": container is running"),
        "{}",
        stderr(&o)
    );
    let o = d.docker(&["start", "nosuch"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("No such container: nosuch"), "{}", stderr(&o));
    let o = d.docker(&["create", "--name", "e1", "busybox"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("Conflict. The container name \"/e1\" is already in use"),
        "{}",
        stderr(&o)
    );

    assert_eq!(
        docker_ok(&d, &["rm", "-f", "e1", "e2", "up", "ticker", "shell"]),
        "e1\ne2\nup\nticker\nshell\n"
    );
    assert_eq!(docker_ok(&d, &["ps", "-aq"]), "");
}
