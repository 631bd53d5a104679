//! `hako build` end to end: real Dockerfiles built by a real daemon (RUN in real containers),
//! the layer cache, multi-stage builds, ONBUILD, .dockerignore, bad Dockerfiles, and the
//! docker CLI's classic builder against hakod.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{stderr, stdout, TestDaemon};

fn daemon() -> TestDaemon {
    let d = TestDaemon::start();
    d.import_busybox();
    d
}

fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn build(d: &TestDaemon, dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["build"];
    args.extend_from_slice(extra);
    let ctx = dir.display().to_string();
    args.push(&ctx);
    d.hako(&args)
}

fn build_ok(d: &TestDaemon, dir: &Path, extra: &[&str]) -> String {
    let o = build(d, dir, extra);
    assert!(o.status.success(), "build failed: {}\n{}", stderr(&o), stdout(&o));
    stdout(&o)
}

fn config(d: &TestDaemon, image: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&d.ok(&["image", "inspect", image])).unwrap();
    v[0]["Config"].clone()
}

fn run_in(d: &TestDaemon, image: &str, script: &str) -> String {
    d.ok(&["run", "--rm", "--entrypoint", "sh", image, "-c", script])
}

fn image_count(d: &TestDaemon) -> usize {
    d.ok(&["images", "-a", "-q"]).lines().count()
}

fn container_count(d: &TestDaemon) -> usize {
    d.ok(&["ps", "-a", "-q"]).lines().count()
}

#[test]
fn every_instruction_lands_in_the_image() {
    let d = daemon();
    let ctx = tempfile::tempdir().unwrap();
    write(ctx.path(), "app/hello.txt", "hello from the context\n");
    write(ctx.path(), "app/sub/deep.txt", "deep\n");
    // A local tar archive: ADD unpacks it.
    let tarball = ctx.path().join("bundle.tar");
    let st = Command::new("tar")
        .args([
            "-cf",
            tarball.to_str().unwrap(),
            "-C",
            ctx.path().to_str().unwrap(),
            "app/hello.txt",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    write(
        ctx.path(),
        "Dockerfile",
        r#"# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM ${BASE}
ARG GREETING=hi
ENV APP_HOME=/srv/app \
    MODE="production mode"
LABEL org.example.name="demo" version=1.0
EXPOSE 8080 53/udp
WORKDIR $APP_HOME
RUN echo "$GREETING from RUN" > made-by-run.txt && mkdir -p /data
COPY --chown=1000:1000 --chmod=640 app/hello.txt ./copied.txt
COPY app /srv/tree/
COPY app/*.txt app/sub/d?ep.txt /globbed/
ADD bundle.tar /unpacked/
COPY <<EOF /etc/heredoc.conf
mode=${MODE}
EOF
RUN <<EOF
echo first > /srv/heredoc-run.txt
echo second >> /srv/heredoc-run.txt
EOF
VOLUME /data
STOPSIGNAL SIGUSR1
HEALTHCHECK --interval=5s --retries=2 CMD true
USER 1000:1000
SHELL ["/bin/sh", "-c"]
ENTRYPOINT ["/bin/echo"]
CMD ["default", "args"]
"#,
    );
    let out = build_ok(&d, ctx.path(), &["-t", "demo:1", "--build-arg", "GREETING=hello"]);
    assert!(out.contains("Step 1/"), "{out}");
    assert!(
        out.contains("Successfully built") && out.contains("Successfully tagged demo:1"),
        "{out}"
    );
    let c = config(&d, "demo:1");
    assert!(
        c["Env"].as_array().unwrap().iter().any(|e| e == "MODE=production mode"),
        "{c}"
    );
    assert!(c["Env"].as_array().unwrap().iter().any(|e| e == "APP_HOME=/srv/app"));
    assert_eq!(c["Labels"]["org.example.name"], "demo");
    assert_eq!(c["Labels"]["version"], "1.0");
    assert!(
        c["ExposedPorts"]["8080/tcp"].is_object() && c["ExposedPorts"]["53/udp"].is_object(),
        "{c}"
    );
    assert_eq!(c["WorkingDir"], "/srv/app");
    assert!(c["Volumes"]["/data"].is_object());
    assert_eq!(c["StopSignal"], "SIGUSR1");
    assert_eq!(c["Healthcheck"]["Test"], serde_json::json!(["CMD-SHELL", "true"]));
    assert_eq!(c["Healthcheck"]["Interval"], 5_000_000_000u64);
    assert_eq!(c["User"], "1000:1000");
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/echo"]));
    assert_eq!(c["Cmd"], serde_json::json!(["default", "args"]));
    // The image runs with its ENTRYPOINT and CMD.
    assert_eq!(d.ok(&["run", "--rm", "demo:1"]).trim(), "default args");
    let files = run_in(
        &d,
        "demo:1",
        "cat made-by-run.txt copied.txt /srv/tree/hello.txt /srv/tree/sub/deep.txt /unpacked/app/hello.txt \
         /etc/heredoc.conf /srv/heredoc-run.txt; stat -c '%u:%g %a' copied.txt; ls /globbed",
    );
    for want in [
        "hello from RUN",
        "hello from the context",
        "deep",
        "mode=production mode",
        "first\nsecond",
        "1000:1000 640",
        "deep.txt\nhello.txt",
    ] {
        assert!(files.contains(want), "{want:?} missing from\n{files}");
    }
    // ARG does not leak into the image.
    assert!(!c["Env"].to_string().contains("GREETING"));
}

#[test]
fn multi_stage_builds_skip_unused_stages_and_stop_at_target() {
    let d = daemon();
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        "FROM busybox AS compile\nRUN mkdir /out && echo 'echo compiled program' > /out/prog && chmod +x /out/prog\n\
         FROM busybox AS unused\nRUN echo this stage must not run && exit 1\n\
         FROM busybox AS test\nCOPY --from=compile /out/prog /usr/local/bin/prog\nRUN prog > /tested\n\
         FROM scratch AS final\nCOPY --from=compile /out/prog /prog\nCOPY --from=busybox /bin/busybox /bin/busybox\n",
    );
    let out = build_ok(&d, ctx.path(), &["-t", "multi"]);
    assert!(!out.contains("this stage must not run"), "{out}");
    let v: serde_json::Value = serde_json::from_str(&d.ok(&["image", "inspect", "multi"])).unwrap();
    assert_eq!(
        v[0]["RootFS"]["Layers"].as_array().unwrap().len(),
        2,
        "{}",
        v[0]["RootFS"]
    );
    let o = d.hako(&["run", "--rm", "multi", "/bin/busybox", "sh", "/prog"]);
    assert_eq!(stdout(&o).trim(), "compiled program", "{}", stderr(&o));
    // --target stops at the named stage.
    build_ok(&d, ctx.path(), &["-t", "tested", "--target", "test"]);
    assert_eq!(run_in(&d, "tested", "cat /tested").trim(), "compiled program");
    let o = build(&d, ctx.path(), &["--target", "nosuch"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("nosuch"), "{}", stderr(&o));
}

#[test]
fn onbuild_triggers_fire_in_the_child_build() {
    let d = daemon();
    let parent = tempfile::tempdir().unwrap();
    write(
        parent.path(),
        "Dockerfile",
        "FROM busybox\nONBUILD COPY marker.txt /from-child-context.txt\nONBUILD RUN echo trigger-ran > /onbuild.txt\n",
    );
    build_ok(&d, parent.path(), &["-t", "onbuild-parent"]);
    assert_eq!(config(&d, "onbuild-parent")["OnBuild"].as_array().unwrap().len(), 2);
    let child = tempfile::tempdir().unwrap();
    write(child.path(), "marker.txt", "child context\n");
    write(
        child.path(),
        "Dockerfile",
        "FROM onbuild-parent\nRUN cat /onbuild.txt\n",
    );
    let out = build_ok(&d, child.path(), &["-t", "onbuild-child"]);
    assert!(out.contains("Executing 2 build triggers"), "{out}");
    let files = run_in(&d, "onbuild-child", "cat /onbuild.txt /from-child-context.txt");
    assert!(
        files.contains("trigger-ran") && files.contains("child context"),
        "{files}"
    );
    // Triggers fire once: the child's image does not carry them on.
    assert!(config(&d, "onbuild-child")["OnBuild"]
        .as_array()
        .is_none_or(|a| a.is_empty()));
}

#[test]
fn the_cache_hits_and_misses_exactly() {
    let d = daemon();
    let ctx = tempfile::tempdir().unwrap();
    write(ctx.path(), "a.txt", "one\n");
    write(ctx.path(), "src/b.txt", "two\n");
    write(
        ctx.path(),
        "Dockerfile",
        "FROM busybox\nENV X=1\nRUN echo run1 > /r1\nCOPY a.txt /a.txt\nRUN echo run2 > /r2\nCOPY src /src\nRUN cat /src/b.txt > /r3\nCMD [\"cat\", \"/r3\"]\n",
    );
    let first = build_ok(&d, ctx.path(), &["-t", "cached"]);
    assert_eq!(first.matches("Using cache").count(), 0, "{first}");
    let id1 = d.ok(&["images", "-q", "cached"]);
    // Nothing changed: every step from the cache, no container, well under a second.
    let t = Instant::now();
    let again = build_ok(&d, ctx.path(), &["-t", "cached"]);
    let took = t.elapsed();
    assert_eq!(again.matches("Using cache").count(), 5, "{again}");
    assert!(!again.contains("Running in"), "{again}");
    assert!(took < Duration::from_secs(1), "a fully cached build took {took:?}");
    assert_eq!(d.ok(&["images", "-q", "cached"]), id1);
    // mtimes are not content: touching every file changes nothing.
    let st = Command::new("touch")
        .arg(ctx.path().join("a.txt"))
        .arg(ctx.path().join("src/b.txt"))
        .status()
        .unwrap();
    assert!(st.success());
    let touched = build_ok(&d, ctx.path(), &["-t", "cached"]);
    assert_eq!(touched.matches("Using cache").count(), 5, "{touched}");
    // One source file changed: the steps before the first COPY that reads it stay cached.
    write(ctx.path(), "src/b.txt", "changed\n");
    let changed = build_ok(&d, ctx.path(), &["-t", "cached"]);
    assert_eq!(changed.matches("Using cache").count(), 3, "{changed}");
    assert_eq!(d.ok(&["run", "--rm", "cached"]).trim(), "changed");
    // --no-cache runs everything.
    let fresh = build_ok(&d, ctx.path(), &["--no-cache", "-t", "cached"]);
    assert_eq!(fresh.matches("Using cache").count(), 0, "{fresh}");
    // A build arg RUN sees is part of its key.
    write(ctx.path(), "Dockerfile", "FROM busybox\nARG V=a\nRUN echo $V > /v\n");
    build_ok(&d, ctx.path(), &["-t", "argd"]);
    let hit = build_ok(&d, ctx.path(), &["-t", "argd"]);
    assert!(hit.contains("Using cache"), "{hit}");
    let miss = build_ok(&d, ctx.path(), &["-t", "argd", "--build-arg", "V=b"]);
    assert!(!miss.contains("Using cache"), "{miss}");
    assert_eq!(run_in(&d, "argd", "cat /v").trim(), "b");
    assert_eq!(container_count(&d), 0, "build containers are removed");
}

#[test]
fn dockerignore_keeps_files_out_of_the_context() {
    let d = daemon();
    let ctx = tempfile::tempdir().unwrap();
    write(ctx.path(), "secret.key", "TOP SECRET\n");
    write(ctx.path(), "logs/app.log", "noise\n");
    write(ctx.path(), "docs/a.md", "a\n");
    write(ctx.path(), "docs/README.md", "readme\n");
    write(ctx.path(), "keep.txt", "kept\n");
    write(
        ctx.path(),
        ".dockerignore",
        "# secrets and noise\nsecret.key\nlogs\n**/*.md\n!docs/README.md\n",
    );
    write(ctx.path(), "Dockerfile", "FROM busybox\nCOPY . /ctx\n");
    build_ok(&d, ctx.path(), &["-t", "ignored"]);
    let listing = run_in(&d, "ignored", "cd /ctx && find . | sort");
    assert!(
        listing.contains("./keep.txt") && listing.contains("./docs/README.md"),
        "{listing}"
    );
    for gone in ["secret.key", "logs", "a.md"] {
        assert!(!listing.contains(gone), "{gone} reached the image:\n{listing}");
    }
    // Nothing of the secret reached the daemon's disk either.
    let o = Command::new("grep")
        .args(["-rl", "TOP SECRET"])
        .arg(d.root())
        .output()
        .unwrap();
    assert!(
        stdout(&o).trim().is_empty(),
        "the secret is under the daemon's root: {}",
        stdout(&o)
    );
    // Dockerfile.dockerignore next to the Dockerfile wins over .dockerignore.
    write(ctx.path(), "Dockerfile.dockerignore", "keep.txt\n");
    let o = build(&d, ctx.path(), &["-t", "ignored2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let listing = run_in(&d, "ignored2", "ls /ctx");
    assert!(
        !listing.contains("keep.txt") && listing.contains("secret.key"),
        "{listing}"
    );
}

#[test]
fn bad_dockerfiles_fail_with_the_line_and_leave_nothing() {
    let d = daemon();
    let before = image_count(&d);
    let cases: &[(&str, &str)] = &[
        ("FROM busybox\nFROBNICATE x\n", "Dockerfile:2"),
        ("FROM busybox\nRUN echo \"unterminated\nENV A=\"b\n", "unterminated"),
        ("RUN echo no from\n", "FROM"),
        ("FROM busybox\nCOPY ../outside.txt /x\n", "outside the build context"),
        ("FROM busybox\nCOPY --from=nostage /x /y\n", "nostage"),
        ("FROM busybox\nCOPY missing.txt /x\n", "missing.txt"),
        ("FROM nosuchimage:1\nRUN true\n", "nosuchimage"),
    ];
    for (text, want) in cases {
        let ctx = tempfile::tempdir().unwrap();
        write(ctx.path(), "Dockerfile", text);
        let o = build(&d, ctx.path(), &["-t", "bad"]);
        assert!(!o.status.success(), "{text:?} built");
        assert!(stderr(&o).contains(want), "{text:?}: {want:?} not in {}", stderr(&o));
    }
    assert!(d.hako(&["image", "inspect", "bad"]).status.code() != Some(0));
    assert_eq!(container_count(&d), 0);
    // A RUN that fails stops the build with its exit code and its output.
    let ctx = tempfile::tempdir().unwrap();
    write(
        ctx.path(),
        "Dockerfile",
        "FROM busybox\nRUN echo before-failing && exit 3\nRUN echo never\n",
    );
    let o = build(&d, ctx.path(), &["-t", "bad"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("before-failing") && !stdout(&o).contains("never"),
        "{}",
        stdout(&o)
    );
    assert!(stderr(&o).contains("returned a non-zero code: 3"), "{}", stderr(&o));
    let deadline = Instant::now() + Duration::from_secs(5);
    while container_count(&d) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(container_count(&d), 0);
    assert_eq!(image_count(&d), before, "a failed build left images behind");
}

#[test]
fn an_interrupted_build_leaves_no_container_or_mount() {
    let d = daemon();
    let ctx = tempfile::tempdir().unwrap();
    write(ctx.path(), "Dockerfile", "FROM busybox\nRUN echo started && sleep 30\n");
    let mut child = d
        .cmd(&["build", "-t", "never", ctx.path().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the RUN's container runs, then cut the client off (as Ctrl-C does).
    let deadline = Instant::now() + Duration::from_secs(20);
    while container_count(&d) == 0 {
        assert!(Instant::now() < deadline, "the RUN step never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while container_count(&d) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        container_count(&d),
        0,
        "the build's container outlived the client; daemon log:\n{}",
        d.log()
    );
    assert!(common::mounts_under(&d.root()).is_empty());
    let tmp: Vec<_> = std::fs::read_dir(d.root().join("tmp"))
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "scratch left: {tmp:?}");
    assert!(d.hako(&["image", "inspect", "never"]).status.code() != Some(0));
}

#[test]
fn docker_cli_classic_builder_builds_through_hakod() {
    common::require("docker");
    let d = daemon();
    let ctx = tempfile::tempdir().unwrap();
    write(ctx.path(), "msg.txt", "built by docker against hakod\n");
    write(
        ctx.path(),
        "Dockerfile",
        "FROM busybox\nCOPY msg.txt /msg.txt\nRUN cat /msg.txt\nCMD [\"cat\", \"/msg.txt\"]\n",
    );
    let o = Command::new("docker")
        .args(["build", "-t", "via-docker", ctx.path().to_str().unwrap()])
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_BUILDKIT", "0")
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}\n{}", stderr(&o), stdout(&o));
    assert!(
        stdout(&o).contains("Successfully tagged via-docker:latest"),
        "{}",
        stdout(&o)
    );
    let o = d.docker(&["run", "--rm", "via-docker"]);
    assert_eq!(stdout(&o).trim(), "built by docker against hakod", "{}", stderr(&o));
}

#[test]
fn cache_from_uses_an_image_built_elsewhere() {
    let a = daemon();
    let ctx = tempfile::tempdir().unwrap();
    write(ctx.path(), "f.txt", "from the context\n");
    write(
        ctx.path(),
        "Dockerfile",
        "FROM busybox\nENV A=1\nRUN echo ran > /ran\nCOPY f.txt /f.txt\nCMD [\"cat\", \"/f.txt\"]\n",
    );
    build_ok(&a, ctx.path(), &["-t", "origin"]);
    let tar = a.dir.path().join("origin.tar");
    a.ok(&["save", "-o", tar.to_str().unwrap(), "origin"]);
    // Another engine: the image arrives by load, with no build cache of its own.
    let b = daemon();
    b.ok(&["load", "-i", tar.to_str().unwrap()]);
    let out = build_ok(&b, ctx.path(), &["-t", "again", "--cache-from", "origin"]);
    assert_eq!(out.matches("Using cache").count(), 2, "{out}");
    assert!(!out.contains("Running in"), "{out}");
    assert_eq!(b.ok(&["run", "--rm", "again"]).trim(), "from the context");
    // A changed file is not taken from the source.
    write(ctx.path(), "f.txt", "changed\n");
    let out = build_ok(&b, ctx.path(), &["-t", "again2", "--cache-from", "origin"]);
    assert_eq!(out.matches("Using cache").count(), 1, "{out}");
    assert_eq!(b.ok(&["run", "--rm", "again2"]).trim(), "changed");
    // Without --cache-from the step runs.
    write(ctx.path(), "Dockerfile", "FROM busybox\nENV A=1\nRUN echo ran > /ran\n");
    let c = daemon();
    c.ok(&["load", "-i", tar.to_str().unwrap()]);
    let out = build_ok(&c, ctx.path(), &["-t", "nocache"]);
    assert!(out.contains("Running in"), "{out}");
}

/// A one-file HTTP server on loopback for ADD URL; answers `body` to every request.
fn serve_once_more(body: &'static [u8]) -> u16 {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming().take(4) {
            let Ok(mut c) = c else { continue };
            let mut buf = [0u8; 2048];
            let _ = c.read(&mut buf);
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = c.write_all(body);
        }
    });
    port
}

#[test]
fn add_fetches_urls_and_checks_their_digest() {
    let d = daemon();
    let port = serve_once_more(b"fetched over http\n");
    let ctx = tempfile::tempdir().unwrap();
    // sha256 of "fetched over http\n"
    let sum = {
        let o = Command::new("sh")
            .arg("-c")
            .arg("printf 'fetched over http\\n' | sha256sum")
            .output()
            .unwrap();
        stdout(&o).split_whitespace().next().unwrap().to_string()
    };
    write(
        ctx.path(),
        "Dockerfile",
        &format!("FROM busybox\nADD --checksum=sha256:{sum} http://127.0.0.1:{port}/files/data.txt /srv/\n"),
    );
    build_ok(&d, ctx.path(), &["-t", "added"]);
    let out = run_in(&d, "added", "cat /srv/data.txt; stat -c %a /srv/data.txt");
    assert!(out.contains("fetched over http") && out.contains("600"), "{out}");
    // A wrong digest fails the step and makes no image.
    let bad = "0".repeat(64);
    write(
        ctx.path(),
        "Dockerfile",
        &format!("FROM busybox\nADD --checksum=sha256:{bad} http://127.0.0.1:{port}/files/data.txt /srv/\n"),
    );
    let o = build(&d, ctx.path(), &["-t", "badsum"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("digest mismatch"), "{}", stderr(&o));
}

#[test]
fn an_images_healthcheck_runs_in_its_containers() {
    let d = daemon();
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "Dockerfile",
        "FROM busybox\nHEALTHCHECK --interval=100ms --retries=1 CMD test -f /ready\nCMD [\"sleep\", \"300\"]\n",
    );
    build_ok(&d, dir.path(), &["-t", "checked"]);
    // The image's check, with a run flag overriding one of its settings.
    let id = d
        .ok(&["run", "-d", "--health-retries", "3", "checked"])
        .trim()
        .to_string();
    let check: serde_json::Value =
        serde_json::from_str(&d.ok(&["inspect", "-f", "{{json .Config.Healthcheck}}", &id])).unwrap();
    assert_eq!(check["Test"], serde_json::json!(["CMD-SHELL", "test -f /ready"]));
    assert_eq!(
        (check["Interval"].as_u64(), check["Retries"].as_u64()),
        (Some(100_000_000), Some(3))
    );
    let status = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = String::new();
        while Instant::now() < deadline {
            got = d
                .ok(&["inspect", "-f", "{{.State.Health.Status}}", &id])
                .trim()
                .to_string();
            if got == want {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(got, want);
    };
    status("unhealthy");
    d.ok(&["exec", &id, "touch", "/ready"]);
    status("healthy");
    d.ok(&["rm", "-f", &id]);
}
