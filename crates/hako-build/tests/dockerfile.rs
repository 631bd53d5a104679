//! The Dockerfile parser and word expansion: every instruction and form, the lexing rules
//! (directives, comments, continuations, heredocs), every error with its place, expansion, and
//! a fuzz run for panics.

use std::collections::HashMap;
use std::time::Duration;

use hako_build::dockerfile::{
    expand, expand_heredoc, expand_words, parse, ArgDecl, Command, CopySpec, Dockerfile, Health, Heredoc, Instruction,
    Kind, ParseError, RunMount,
};

fn ok(text: &str) -> Dockerfile {
    match parse(text) {
        Ok(df) => df,
        Err(e) => panic!("parse failed: {e}\n--- input ---\n{text}"),
    }
}

/// The instructions of the only stage of `FROM scratch` + `body`.
fn instrs(body: &str) -> Vec<Instruction> {
    let df = ok(&format!("FROM scratch\n{body}"));
    assert_eq!(df.stages.len(), 1, "{df:#?}");
    df.stages.into_iter().next().unwrap().instructions
}

/// The kind of the one instruction in `body`.
fn kind(body: &str) -> Kind {
    let mut v = instrs(body);
    assert_eq!(v.len(), 1, "{v:#?}");
    v.remove(0).kind
}

fn err(text: &str) -> ParseError {
    match parse(text) {
        Ok(df) => panic!("expected an error, parsed {df:#?}"),
        Err(e) => e,
    }
}

/// Asserts the error's place and that its message holds `needle`.
fn assert_err(text: &str, line: usize, column: usize, needle: &str) {
    let e = err(text);
    assert_eq!((e.line, e.column), (line, column), "wrong place for {e}");
    assert!(e.message.contains(needle), "message {:?} lacks {needle:?}", e.message);
    assert!(
        e.to_string().starts_with(&format!("Dockerfile:{line}:{column}: ")),
        "{e}"
    );
}

fn shell(s: &str) -> Command {
    Command::Shell(s.into())
}

fn exec(v: &[&str]) -> Command {
    Command::Exec(v.iter().map(|s| s.to_string()).collect())
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn copy_spec(sources: &[&str], dest: &str) -> CopySpec {
    CopySpec {
        sources: strings(sources),
        dest: dest.into(),
        from: None,
        chown: None,
        chmod: None,
        link: false,
        checksum: None,
        keep_git_dir: false,
        heredocs: vec![],
    }
}

// ---- FROM, stages, ARG before FROM ----

#[test]
fn from_single_stage() {
    let df = ok("FROM alpine:3.20\nRUN true\n");
    assert_eq!(df.escape, '\\');
    assert_eq!(df.syntax, None);
    assert!(df.global_args.is_empty());
    assert_eq!(df.stages.len(), 1);
    let s = &df.stages[0];
    assert_eq!(
        (s.name.as_deref(), s.base.as_str(), s.platform.as_deref(), s.line),
        (None, "alpine:3.20", None, 1)
    );
    assert_eq!(s.instructions.len(), 1);
    assert_eq!(s.instructions[0].line, 2);
}

#[test]
fn multi_stage_with_as_and_platform() {
    let df = ok("FROM --platform=$BUILDPLATFORM golang:1.22 AS Build\n\
         RUN go build\n\
         \n\
         from alpine as final\n\
         COPY --from=build /out /usr/bin/app\n");
    assert_eq!(df.stages.len(), 2);
    let (a, b) = (&df.stages[0], &df.stages[1]);
    assert_eq!(a.name.as_deref(), Some("build"), "stage names are lowercased");
    assert_eq!(a.base, "golang:1.22");
    assert_eq!(a.platform.as_deref(), Some("$BUILDPLATFORM"));
    assert_eq!(a.line, 1);
    assert_eq!(b.name.as_deref(), Some("final"));
    assert_eq!(b.base, "alpine");
    assert_eq!(b.line, 4);
    match &b.instructions[0].kind {
        Kind::Copy(c) => assert_eq!(c.from.as_deref(), Some("build")),
        k => panic!("{k:?}"),
    }
}

#[test]
fn args_before_from_are_global() {
    let df = ok("ARG BASE=alpine\nARG TAG\nFROM ${BASE}:${TAG:-latest}\nARG TAG\n");
    assert_eq!(
        df.global_args,
        vec![
            ArgDecl {
                name: "BASE".into(),
                default: Some("alpine".into())
            },
            ArgDecl {
                name: "TAG".into(),
                default: None
            }
        ]
    );
    assert_eq!(df.stages[0].base, "${BASE}:${TAG:-latest}");
    assert_eq!(
        df.stages[0].instructions[0].kind,
        Kind::Arg(vec![ArgDecl {
            name: "TAG".into(),
            default: None
        }])
    );
}

// ---- RUN ----

#[test]
fn run_shell_form() {
    let v = instrs("RUN apt-get update && apt-get install -y curl\n");
    assert_eq!(
        v[0].kind,
        Kind::Run {
            cmd: shell("apt-get update && apt-get install -y curl"),
            mounts: vec![],
            network: None
        }
    );
    assert_eq!(v[0].text, "RUN apt-get update && apt-get install -y curl");
}

#[test]
fn run_json_form() {
    assert_eq!(
        kind(r#"RUN ["/bin/sh", "-c", "echo \"hi\""]"#),
        Kind::Run {
            cmd: exec(&["/bin/sh", "-c", "echo \"hi\""]),
            mounts: vec![],
            network: None
        }
    );
    assert_eq!(
        kind("RUN []"),
        Kind::Run {
            cmd: exec(&[]),
            mounts: vec![],
            network: None
        }
    );
}

#[test]
fn run_invalid_json_is_shell_form() {
    assert_eq!(
        kind("RUN [ -f /etc/passwd ]"),
        Kind::Run {
            cmd: shell("[ -f /etc/passwd ]"),
            mounts: vec![],
            network: None
        }
    );
    assert_eq!(
        kind("RUN [\"a\", ]"),
        Kind::Run {
            cmd: shell("[\"a\", ]"),
            mounts: vec![],
            network: None
        }
    );
}

#[test]
fn run_json_with_trailing_text_is_json_as_docker() {
    assert_eq!(
        kind(r#"RUN ["echo", "a"] && echo b"#),
        Kind::Run {
            cmd: exec(&["echo", "a"]),
            mounts: vec![],
            network: None
        }
    );
}

#[test]
fn run_mounts_and_network() {
    let k = kind(
        "RUN --mount=type=cache,target=/root/.cache,id=go,sharing=locked \\\n\
         \t--mount=type=bind,source=.,target=/src,ro \\\n\
         \t--mount=type=secret,id=npmrc,required \\\n\
         \t--mount=type=tmpfs,dst=/tmp,size=64m \\\n\
         \t--mount=target=/x,rw=false \\\n\
         \t--network=none go build ./...\n",
    );
    let m = |kind: &str, target: &str, o: &[(&str, &str)]| RunMount {
        kind: kind.into(),
        target: target.into(),
        options: pairs(o),
    };
    assert_eq!(
        k,
        Kind::Run {
            cmd: shell("go build ./..."),
            mounts: vec![
                m("cache", "/root/.cache", &[("id", "go"), ("sharing", "locked")]),
                m("bind", "/src", &[("source", "."), ("readonly", "true")]),
                m("secret", "", &[("id", "npmrc"), ("required", "true")]),
                m("tmpfs", "/tmp", &[("size", "64m")]),
                m("bind", "/x", &[("readonly", "true")]),
            ],
            network: Some("none".into()),
        }
    );
}

#[test]
fn run_mount_errors() {
    assert_err(
        "FROM a\nRUN --mount=type=nfs,target=/x true\n",
        2,
        5,
        "unsupported mount type \"nfs\"",
    );
    assert_err("FROM a\nRUN --mount=type=cache true\n", 2, 5, "need a target");
    assert_err(
        "FROM a\nRUN --mount=type=cache,target=/x,colour=blue true\n",
        2,
        5,
        "unexpected key \"colour\"",
    );
    assert_err(
        "FROM a\nRUN --mount=type=bind,target=/x,sharing=locked true\n",
        2,
        5,
        "sharing is not allowed",
    );
    assert_err("FROM a\nRUN --network=bridge true\n", 2, 5, "unsupported network mode");
    assert_err("FROM a\nRUN --mount type=cache true\n", 2, 5, "needs a value");
}

#[test]
fn run_without_command_is_refused() {
    assert_err("FROM a\nRUN\n", 2, 1, "RUN requires a command");
    assert_err("FROM a\nRUN --network=none\n", 2, 1, "RUN requires a command");
}

// ---- CMD, ENTRYPOINT, SHELL ----

#[test]
fn cmd_and_entrypoint_both_forms() {
    assert_eq!(
        kind("CMD [\"nginx\", \"-g\", \"daemon off;\"]"),
        Kind::Cmd(exec(&["nginx", "-g", "daemon off;"]))
    );
    assert_eq!(kind("CMD echo $HOME"), Kind::Cmd(shell("echo $HOME")));
    assert_eq!(
        kind("ENTRYPOINT [\"/entry.sh\"]"),
        Kind::Entrypoint(exec(&["/entry.sh"]))
    );
    assert_eq!(kind("ENTRYPOINT exec top -b"), Kind::Entrypoint(shell("exec top -b")));
    assert_eq!(kind("ENTRYPOINT []"), Kind::Entrypoint(exec(&[])));
}

#[test]
fn json_arrays_must_hold_strings() {
    assert_err(
        "FROM a\nCMD [\"a\", 1]\n",
        2,
        5,
        "arrays must be comprised of strings only",
    );
}

#[test]
fn shell_json_only() {
    assert_eq!(
        kind("SHELL [\"/bin/bash\", \"-eo\", \"pipefail\", \"-c\"]"),
        Kind::Shell(strings(&["/bin/bash", "-eo", "pipefail", "-c"]))
    );
    assert_err(
        "FROM a\nSHELL /bin/bash -c\n",
        2,
        7,
        "SHELL requires the arguments to be in JSON form",
    );
    assert_err("FROM a\nSHELL [\"/bin/bash\", \"-c\"\n", 2, 7, "JSON form");
    assert_err("FROM a\nSHELL []\n", 2, 7, "at least one argument");
}

// ---- ENV, ARG, LABEL ----

#[test]
fn env_name_value_pairs_stay_raw() {
    assert_eq!(
        kind(r#"ENV A=1 B="two words" C=${A:-x}\ y D='$lit' E="""#),
        Kind::Env(pairs(&[
            ("A", "1"),
            ("B", "\"two words\""),
            ("C", "${A:-x}\\ y"),
            ("D", "'$lit'"),
            ("E", "\"\"")
        ]))
    );
}

#[test]
fn env_legacy_form() {
    assert_eq!(
        kind("ENV PATH /usr/local/bin:$PATH"),
        Kind::Env(pairs(&[("PATH", "/usr/local/bin:$PATH")]))
    );
    assert_eq!(kind("ENV a b c"), Kind::Env(pairs(&[("a", "b c")])));
    assert_err("FROM a\nENV lonely\n", 2, 5, "ENV must have two arguments");
}

#[test]
fn env_errors() {
    assert_err("FROM a\nENV A=1 B\n", 2, 9, "can't find = in \"B\"");
    assert_err("FROM a\nENV =1\n", 2, 5, "names can not be blank");
    assert_err("FROM a\nENV\n", 2, 1, "ENV requires at least one name=value pair");
}

#[test]
fn arg_forms() {
    assert_eq!(
        kind("ARG A B=2 C= D=\"x y\""),
        Kind::Arg(vec![
            ArgDecl {
                name: "A".into(),
                default: None
            },
            ArgDecl {
                name: "B".into(),
                default: Some("2".into())
            },
            ArgDecl {
                name: "C".into(),
                default: Some("".into())
            },
            ArgDecl {
                name: "D".into(),
                default: Some("\"x y\"".into())
            },
        ])
    );
    assert_err("FROM a\nARG\n", 2, 1, "ARG requires at least one argument");
}

#[test]
fn label_pairs_and_legacy() {
    assert_eq!(
        kind("LABEL org.opencontainers.image.title=\"My app\" version=1.0"),
        Kind::Label(pairs(&[
            ("org.opencontainers.image.title", "\"My app\""),
            ("version", "1.0")
        ]))
    );
    assert_eq!(
        kind("LABEL maintainer Jane Doe"),
        Kind::Label(pairs(&[("maintainer", "Jane Doe")]))
    );
}

// ---- EXPOSE, WORKDIR, USER, VOLUME, STOPSIGNAL, MAINTAINER ----

#[test]
fn expose_words() {
    assert_eq!(
        kind("EXPOSE 80 443/tcp\t53/udp $PORT"),
        Kind::Expose(strings(&["80", "443/tcp", "53/udp", "$PORT"]))
    );
    assert_err("FROM a\nEXPOSE\n", 2, 1, "EXPOSE requires at least one port");
}

#[test]
fn workdir_user_stopsignal_maintainer() {
    assert_eq!(kind("WORKDIR /app/$NAME"), Kind::Workdir("/app/$NAME".into()));
    assert_eq!(kind("WORKDIR /my dir"), Kind::Workdir("/my dir".into()));
    assert_eq!(kind("USER 1000:1000"), Kind::User("1000:1000".into()));
    assert_eq!(kind("STOPSIGNAL SIGQUIT"), Kind::StopSignal("SIGQUIT".into()));
    assert_eq!(
        kind("MAINTAINER Jane <jane@example.com>"),
        Kind::Maintainer("Jane <jane@example.com>".into())
    );
    assert_err("FROM a\nWORKDIR\n", 2, 1, "WORKDIR requires exactly one argument");
    assert_err("FROM a\nUSER\n", 2, 1, "USER requires exactly one argument");
}

#[test]
fn volume_json_and_words() {
    assert_eq!(
        kind("VOLUME [\"/data\", \"/var/lib/my db\"]"),
        Kind::Volume(strings(&["/data", "/var/lib/my db"]))
    );
    assert_eq!(kind("VOLUME /data /logs"), Kind::Volume(strings(&["/data", "/logs"])));
    assert_err("FROM a\nVOLUME [\"\"]\n", 2, 8, "can not be an empty string");
    assert_err("FROM a\nVOLUME []\n", 2, 8, "at least one path");
}

// ---- COPY, ADD ----

#[test]
fn copy_shell_form_with_flags() {
    let mut want = copy_spec(&["src/", "Cargo.toml"], "/app/");
    want.from = Some("builder".into());
    want.chown = Some("1000:1000".into());
    want.chmod = Some("0755".into());
    want.link = true;
    assert_eq!(
        kind("COPY --from=builder --chown=1000:1000 --chmod=0755 --link src/ Cargo.toml /app/"),
        Kind::Copy(want)
    );
    let mut want = copy_spec(&["a"], "b");
    want.link = false;
    assert_eq!(kind("COPY --link=false a b"), Kind::Copy(want));
}

#[test]
fn copy_json_form() {
    assert_eq!(
        kind("COPY [\"my file.txt\", \"other\", \"/dest dir/\"]"),
        Kind::Copy(copy_spec(&["my file.txt", "other"], "/dest dir/"))
    );
}

#[test]
fn add_json_form() {
    assert_eq!(
        kind("ADD [\"a b.tar\", \"/opt/x y/\"]"),
        Kind::Add(copy_spec(&["a b.tar"], "/opt/x y/"))
    );
}

#[test]
fn only_continuations_is_no_instruction() {
    assert_err("FROM a\n\\\n  \\\n", 2, 1, "expected an instruction");
}

#[test]
fn copy_double_dash_ends_flags() {
    assert_eq!(
        kind("COPY -- --weird-name /dst"),
        Kind::Copy(copy_spec(&["--weird-name"], "/dst"))
    );
}

#[test]
fn add_flags() {
    let mut want = copy_spec(&["https://example.com/x.tar.gz"], "/x.tgz");
    want.checksum = Some("sha256:abc".into());
    want.chown = Some("app".into());
    assert_eq!(
        kind("ADD --checksum=sha256:abc --chown=app https://example.com/x.tar.gz /x.tgz"),
        Kind::Add(want)
    );
    let mut want = copy_spec(&["https://github.com/moby/buildkit.git#v0.10.1"], "/src");
    want.keep_git_dir = true;
    want.link = true;
    assert_eq!(
        kind("ADD --keep-git-dir=true --link https://github.com/moby/buildkit.git#v0.10.1 /src"),
        Kind::Add(want)
    );
    assert_err("FROM a\nADD --from=x a b\n", 2, 5, "unknown flag --from for ADD");
}

#[test]
fn empty_copy_is_refused() {
    assert_err("FROM a\nCOPY\n", 2, 1, "COPY requires at least two arguments");
    assert_err("FROM a\n  copy onlyone\n", 2, 3, "only one was given");
    assert_err("FROM a\nADD [\"x\"]\n", 2, 1, "ADD requires at least two arguments");
}

#[test]
fn flag_errors() {
    assert_err(
        "FROM a\nCOPY --frm=x a b\n",
        2,
        6,
        "unknown flag --frm for COPY (expected --from, --chown, --chmod, --link)",
    );
    assert_err("FROM a\nCOPY --parents a b\n", 2, 6, "unknown flag --parents for COPY");
    assert_err("FROM a\nCOPY --from=a --from=b a b\n", 2, 15, "duplicate flag --from");
    assert_err("FROM a\nCOPY --link=maybe a b\n", 2, 6, "--link expects true or false");
    assert_err("FROM a\nCOPY --chown a b\n", 2, 6, "flag --chown needs a value");
    assert_err(
        "FROM a\nENV --x=1 A=b\n",
        2,
        5,
        "unknown flag --x for ENV (ENV takes no flags)",
    );
    assert_err(
        "FROM --plat=x a\n",
        1,
        6,
        "unknown flag --plat for FROM (expected --platform)",
    );
    assert_err("FROM a\nCOPY --chown=\"a b a\n", 2, 14, "unterminated quote");
}

// ---- HEALTHCHECK ----

#[test]
fn healthcheck_none() {
    assert_eq!(kind("HEALTHCHECK NONE"), Kind::Healthcheck(None));
    assert_eq!(kind("healthcheck none"), Kind::Healthcheck(None));
    assert_err(
        "FROM a\nHEALTHCHECK NONE now\n",
        2,
        18,
        "HEALTHCHECK NONE takes no arguments",
    );
}

#[test]
fn healthcheck_with_flags() {
    assert_eq!(
        kind("HEALTHCHECK --interval=30s --timeout=1m30s --start-period=500ms --start-interval=1.5s --retries=3 \\\n  CMD curl -f http://localhost/ || exit 1"),
        Kind::Healthcheck(Some(Health {
            cmd: shell("curl -f http://localhost/ || exit 1"),
            interval: Some(Duration::from_secs(30)),
            timeout: Some(Duration::from_secs(90)),
            start_period: Some(Duration::from_millis(500)),
            start_interval: Some(Duration::from_millis(1500)),
            retries: Some(3),
        }))
    );
    assert_eq!(
        kind("HEALTHCHECK CMD [\"/bin/check\", \"--quick\"]"),
        Kind::Healthcheck(Some(Health {
            cmd: exec(&["/bin/check", "--quick"]),
            interval: None,
            timeout: None,
            start_period: None,
            start_interval: None,
            retries: None
        }))
    );
    match kind("HEALTHCHECK --interval=1h2m3s4ms5us6ns CMD true") {
        Kind::Healthcheck(Some(h)) => assert_eq!(h.interval, Some(Duration::new(3723, 4_005_006))),
        k => panic!("{k:?}"),
    }
}

#[test]
fn healthcheck_errors() {
    assert_err(
        "FROM a\nHEALTHCHECK --interval=soon CMD true\n",
        2,
        13,
        "invalid duration \"soon\"",
    );
    assert_err("FROM a\nHEALTHCHECK --interval=10 CMD true\n", 2, 13, "missing unit");
    assert_err("FROM a\nHEALTHCHECK --timeout=0s CMD true\n", 2, 13, "at least 1ms");
    assert_err(
        "FROM a\nHEALTHCHECK --retries=0 CMD true\n",
        2,
        13,
        "--retries must be at least 1",
    );
    assert_err("FROM a\nHEALTHCHECK --retries=x CMD true\n", 2, 13, "whole number");
    assert_err(
        "FROM a\nHEALTHCHECK --every=1s CMD true\n",
        2,
        13,
        "unknown flag --every for HEALTHCHECK",
    );
    assert_err(
        "FROM a\nHEALTHCHECK CMD\n",
        2,
        13,
        "missing command after HEALTHCHECK CMD",
    );
    assert_err(
        "FROM a\nHEALTHCHECK RUN true\n",
        2,
        13,
        "unknown HEALTHCHECK type \"RUN\"",
    );
    assert_err(
        "FROM a\nHEALTHCHECK\n",
        2,
        1,
        "HEALTHCHECK requires CMD <command> or NONE",
    );
}

// ---- ONBUILD ----

#[test]
fn onbuild_triggers() {
    let v = instrs("ONBUILD COPY . /app\nONBUILD RUN --mount=type=cache,target=/c make\n");
    match &v[0].kind {
        Kind::Onbuild(inner) => {
            assert_eq!(inner.text, "COPY . /app");
            assert_eq!(inner.kind, Kind::Copy(copy_spec(&["."], "/app")));
            assert_eq!(inner.line, 2);
        }
        k => panic!("{k:?}"),
    }
    assert_eq!(v[0].text, "ONBUILD COPY . /app");
    match &v[1].kind {
        Kind::Onbuild(inner) => {
            assert_eq!(inner.text, "RUN --mount=type=cache,target=/c make");
            assert!(matches!(&inner.kind, Kind::Run { mounts, .. } if mounts.len() == 1));
        }
        k => panic!("{k:?}"),
    }
}

#[test]
fn onbuild_refusals() {
    assert_err(
        "FROM a\nONBUILD FROM b\n",
        2,
        9,
        "FROM isn't allowed as an ONBUILD trigger",
    );
    assert_err("FROM a\nONBUILD onbuild RUN x\n", 2, 9, "chaining ONBUILD");
    assert_err(
        "FROM a\nONBUILD MAINTAINER me\n",
        2,
        9,
        "MAINTAINER isn't allowed as an ONBUILD trigger",
    );
    assert_err("FROM a\nONBUILD\n", 2, 1, "ONBUILD requires an instruction");
    assert_err("FROM a\nONBUILD BOGUS x\n", 2, 9, "unknown instruction: BOGUS");
    assert_err(
        "FROM a\nONBUILD COPY --frm=x a b\n",
        2,
        14,
        "unknown flag --frm for COPY",
    );
}

#[test]
fn onbuild_heredoc_text_parses_back() {
    let v = instrs("ONBUILD RUN <<EOF\necho hi\nEOF\nRUN after\n");
    assert_eq!(v.len(), 2);
    let Kind::Onbuild(inner) = &v[0].kind else {
        panic!("{:?}", v[0].kind)
    };
    assert_eq!(inner.text, "RUN <<EOF\necho hi\nEOF");
    assert_eq!(
        inner.kind,
        Kind::Run {
            cmd: shell("echo hi\n"),
            mounts: vec![],
            network: None
        }
    );
    assert_eq!(v[0].text, "ONBUILD RUN <<EOF\necho hi\nEOF");
    // The executor stores inner.text in the image and parses it in the child build.
    assert_eq!(kind(&format!("{}\n", inner.text)), inner.kind);
}

// ---- Directives ----

#[test]
fn escape_directive_backtick_windows_style() {
    let df = ok("# escape=`\n\
         # syntax=docker/dockerfile:1\n\
         \n\
         FROM mcr.microsoft.com/windows/servercore:ltsc2022\n\
         WORKDIR C:\\app\n\
         RUN dir C:\\ `\n    && echo done\n\
         COPY testfile.txt c:\\\n\
         ENV A=`$x\n");
    assert_eq!(df.escape, '`');
    assert_eq!(df.syntax.as_deref(), Some("docker/dockerfile:1"));
    let i = &df.stages[0].instructions;
    assert_eq!(i[0].kind, Kind::Workdir("C:\\app".into()));
    assert_eq!(
        i[1].kind,
        Kind::Run {
            cmd: shell("dir C:\\     && echo done"),
            mounts: vec![],
            network: None
        }
    );
    assert_eq!(i[1].text, "RUN dir C:\\ && echo done");
    assert_eq!(
        i[2].kind,
        Kind::Copy(copy_spec(&["testfile.txt"], "c:\\")),
        "a backslash does not continue the line"
    );
    assert_eq!(i[3].kind, Kind::Env(pairs(&[("A", "`$x")])));
    assert_eq!(expand("`$x", df.escape, &|_| Some("no".into())).unwrap(), "$x");
}

#[test]
fn directives_only_in_the_leading_comments() {
    let df = ok("# a comment\n# escape=`\nFROM a\nRUN echo \\\n  b\n");
    assert_eq!(df.escape, '\\', "after another comment it is a plain comment");
    assert_eq!(
        df.stages[0].instructions[0].kind,
        Kind::Run {
            cmd: shell("echo   b"),
            mounts: vec![],
            network: None
        }
    );
    let df = ok("\n# escape=`\nFROM a\n");
    assert_eq!(df.escape, '\\', "after a blank line too");
    let df = ok("  #  ESCAPE  =  `  \n#check=skip=all\n#syntax=x\nFROM a\n");
    assert_eq!((df.escape, df.syntax.as_deref()), ('`', Some("x")));
    let df = ok("FROM a\n# escape=`\nRUN a \\\n b\n");
    assert_eq!(df.escape, '\\');
}

#[test]
fn directive_errors() {
    assert_err(
        "# escape=`\n# escape=\\\nFROM a\n",
        2,
        1,
        "only one escape parser directive",
    );
    assert_err("# escape=x\nFROM a\n", 1, 1, "invalid escape directive value \"x\"");
    assert_err(
        "# syntax=a\n# syntax=b\nFROM a\n",
        2,
        1,
        "only one syntax parser directive",
    );
}

// ---- Lexing ----

#[test]
fn continuations_with_comments_and_blank_lines() {
    let v = instrs(
        "RUN apt-get update && \\\n\
         # a comment inside the continuation\n\
         \n\
         \x20   apt-get install -y \\\n\
         \x20     # an indented comment\n\
         \x20     curl \\   \n\
         \t\n\
         \x20     git\n\
         RUN next\n",
    );
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].line, 2);
    assert_eq!(
        v[0].kind,
        Kind::Run {
            cmd: shell("apt-get update &&     apt-get install -y       curl       git"),
            mounts: vec![],
            network: None
        }
    );
    assert_eq!(v[0].text, "RUN apt-get update && apt-get install -y curl git");
    assert_eq!(v[1].line, 10);
}

#[test]
fn continuation_joins_without_a_separator() {
    let v = instrs("RUN echo foo\\\nbar\nENV PATH=/a:\\\n/b\n");
    assert_eq!(
        v[0].kind,
        Kind::Run {
            cmd: shell("echo foobar"),
            mounts: vec![],
            network: None
        }
    );
    assert_eq!(v[0].text, "RUN echo foobar");
    assert_eq!(v[1].kind, Kind::Env(pairs(&[("PATH", "/a:/b")])));
}

#[test]
fn escaped_escape_at_end_is_not_a_continuation() {
    let v = instrs("RUN echo a\\\\\nRUN b\n");
    assert_eq!(v.len(), 2);
    assert_eq!(
        v[0].kind,
        Kind::Run {
            cmd: shell("echo a\\\\"),
            mounts: vec![],
            network: None
        }
    );
}

#[test]
fn crlf_leading_whitespace_case_and_final_continuation() {
    let df = ok("\u{feff}FROM a\r\n   run echo hi \\\r\n  there\r\n\tCmD [\"x\"]\r\nEXPOSE 80 \\");
    let i = &df.stages[0].instructions;
    assert_eq!(
        i[0].kind,
        Kind::Run {
            cmd: shell("echo hi   there"),
            mounts: vec![],
            network: None
        }
    );
    assert_eq!(i[0].text, "run echo hi there");
    assert_eq!(i[1].kind, Kind::Cmd(exec(&["x"])));
    assert_eq!(i[2].kind, Kind::Expose(strings(&["80"])));
    assert_eq!(i[2].line, 5);
}

#[test]
fn comments_only_at_line_start() {
    let v = instrs("# comment\n   # indented comment\nRUN echo # not a comment\n");
    assert_eq!(
        v[0].kind,
        Kind::Run {
            cmd: shell("echo # not a comment"),
            mounts: vec![],
            network: None
        }
    );
}

// ---- Heredocs ----

#[test]
fn run_heredoc_is_the_script() {
    let v = instrs("RUN <<EOF\napt-get update\napt-get install -y vim\nEOF\nRUN after\n");
    assert_eq!(v.len(), 2);
    assert_eq!(
        v[0].kind,
        Kind::Run {
            cmd: shell("apt-get update\napt-get install -y vim\n"),
            mounts: vec![],
            network: None
        }
    );
    assert_eq!(v[0].text, "RUN <<EOF\napt-get update\napt-get install -y vim\nEOF");
    assert_eq!(v[1].line, 6);
}

#[test]
fn run_heredoc_with_flags_and_strip_tabs() {
    let k = kind("RUN --network=none <<-EOT\n\tif true; then\n\t\techo yes\n\tfi\n\tEOT\n");
    assert_eq!(
        k,
        Kind::Run {
            cmd: shell("if true; then\necho yes\nfi\n"),
            mounts: vec![],
            network: Some("none".into())
        }
    );
}

#[test]
fn run_heredoc_with_a_command_keeps_the_shell_form() {
    let v = instrs("RUN python3 <<EOF\nprint('hi')\nEOF\n");
    assert_eq!(
        v[0].kind,
        Kind::Run {
            cmd: shell("python3 <<EOF\nprint('hi')\nEOF"),
            mounts: vec![],
            network: None
        }
    );
    let v = instrs("RUN <<A cat > /a && cat <<'B' > /b\na $x\nA\nb $y\nB\n");
    assert_eq!(
        v[0].kind,
        Kind::Run {
            cmd: shell("<<A cat > /a && cat <<'B' > /b\na $x\nA\nb $y\nB"),
            mounts: vec![],
            network: None
        }
    );
}

#[test]
fn copy_heredocs() {
    let k = kind("COPY <<EOF <<'RAW' <<-\"TABS\" /etc/\nhello $NAME\nEOF\nraw $NAME\nRAW\n\tindented\n\tTABS\n");
    let mut want = copy_spec(&[], "/etc/");
    want.heredocs = vec![
        Heredoc {
            name: "EOF".into(),
            content: "hello $NAME\n".into(),
            expand: true,
            strip_tabs: false,
        },
        Heredoc {
            name: "RAW".into(),
            content: "raw $NAME\n".into(),
            expand: false,
            strip_tabs: false,
        },
        Heredoc {
            name: "TABS".into(),
            content: "indented\n".into(),
            expand: false,
            strip_tabs: true,
        },
    ];
    assert_eq!(k, Kind::Copy(want));
}

#[test]
fn copy_heredoc_mixed_with_files() {
    let v = instrs("ADD --chmod=0644 a.txt <<motd b.txt /dst/\nWelcome\n\nmotd\nENV X=1\n");
    let Kind::Add(spec) = &v[0].kind else { panic!() };
    assert_eq!(spec.sources, strings(&["a.txt", "b.txt"]));
    assert_eq!(
        spec.heredocs,
        vec![Heredoc {
            name: "motd".into(),
            content: "Welcome\n\n".into(),
            expand: true,
            strip_tabs: false
        }]
    );
    assert_eq!(v[1].kind, Kind::Env(pairs(&[("X", "1")])));
    assert_eq!(v[1].line, 6);
}

#[test]
fn heredoc_delimiters_as_buildkit() {
    // (delimiter as written, name, expand)
    for (written, name, expand) in [
        ("eo'f'", "eof", false),
        ("eo\\'f", "eo'f", true),
        ("'e'o\\'f", "eo'f", false),
        ("$EOF", "$EOF", true),
        ("  EOF", "EOF", true),
        (" -EOF", "-EOF", true),
        ("file.txt", "file.txt", true),
    ] {
        let k = kind(&format!("COPY <<{written} /dest\nbody\n{name}\n"));
        let Kind::Copy(spec) = k else { panic!("{k:?}") };
        assert_eq!(spec.sources, Vec::<String>::new(), "{written}");
        assert_eq!(spec.heredocs.len(), 1, "{written}");
        assert_eq!(
            (spec.heredocs[0].name.as_str(), spec.heredocs[0].expand),
            (name, expand),
            "{written}"
        );
        assert_eq!(spec.heredocs[0].content, "body\n");
    }
    // A quoted delimiter may hold blanks (RUN only: COPY splits its sources on blanks first).
    let v = instrs("RUN <<'one two'\necho $x\none two\n");
    assert_eq!(
        v[0].kind,
        Kind::Run {
            cmd: shell("echo $x\n"),
            mounts: vec![],
            network: None
        }
    );
    // Blanks after `<<` belong to it; the terminator is still matched exactly.
    let v = instrs("RUN <<  EOF  > foo\nx\nEOF\nRUN 3<<E\nE\n");
    assert_eq!(
        v[0].kind,
        Kind::Run {
            cmd: shell("<<  EOF  > foo\nx\nEOF"),
            mounts: vec![],
            network: None
        }
    );
    assert_eq!(
        v[1].kind,
        Kind::Run {
            cmd: shell(""),
            mounts: vec![],
            network: None
        }
    );
    // Bodies are read in order; a line is a terminator only for the heredoc being read.
    let k = kind("COPY <<X <<Y /dest\nY\nX\nX\nY\n");
    let Kind::Copy(spec) = k else { panic!("{k:?}") };
    let got: Vec<(&str, &str)> = spec
        .heredocs
        .iter()
        .map(|h| (h.name.as_str(), h.content.as_str()))
        .collect();
    assert_eq!(got, vec![("X", "Y\n"), ("Y", "X\n")]);
    // Bodies are raw: no comments, no continuations.
    let k = kind("RUN <<EOF\n# not a comment \\\n\nEOF\n");
    assert_eq!(
        k,
        Kind::Run {
            cmd: shell("# not a comment \\\n\n"),
            mounts: vec![],
            network: None
        }
    );
}

#[test]
fn heredoc_errors() {
    assert_err("FROM a\nRUN <<EOF\necho\n", 2, 5, "unterminated heredoc");
    assert_err(
        "FROM a\nCOPY x <<EOF\nhi\nEOF\n",
        2,
        8,
        "cannot take a heredoc as its destination",
    );
}

#[test]
fn heredoc_markers_in_json_or_quotes_are_not_heredocs() {
    assert_eq!(
        kind("RUN [\"cat\", \"<<EOF\"]"),
        Kind::Run {
            cmd: exec(&["cat", "<<EOF"]),
            mounts: vec![],
            network: None
        }
    );
    assert_eq!(
        kind("RUN echo '<<EOF'"),
        Kind::Run {
            cmd: shell("echo '<<EOF'"),
            mounts: vec![],
            network: None
        }
    );
    assert_eq!(
        kind("CMD cat <<EOF"),
        Kind::Cmd(shell("cat <<EOF")),
        "CMD has no heredocs"
    );
}

// ---- Errors ----

#[test]
fn unknown_instruction() {
    assert_err(
        "FROM a\nFOO bar\n",
        2,
        1,
        "unknown instruction: FOO (expected one of ADD, ARG, CMD, COPY, ENTRYPOINT",
    );
    assert_err(
        "FROM a\n   CPY a b\n",
        2,
        4,
        "unknown instruction: CPY (did you mean COPY?",
    );
    let e = err("FROM a\nFOO bar\n");
    assert!(!e.message.contains("did you mean"), "{e}");
}

#[test]
fn unterminated_quotes() {
    assert_err("FROM a\nENV a=\"b\n", 2, 7, "unterminated quote");
    assert_err("FROM a\nLABEL x='y z\n", 2, 9, "unterminated quote");
    assert_err("FROM a\nARG a=\"b\n", 2, 7, "unterminated quote");
    assert_err("FROM a\nWORKDIR /a/\"b\n", 2, 12, "unterminated quote");
    assert_err("FROM a\nCOPY a 'b\n", 2, 8, "unterminated quote");
    // On the second physical line of a continuation.
    assert_err("FROM a\nENV A=1 \\\n    B=\"2\n", 3, 7, "unterminated quote");
    assert_err(
        "FROM a\nENV A=1 \\\n# comment\n\n  B=x C=\"3\n",
        5,
        9,
        "unterminated quote",
    );
}

#[test]
fn bad_substitutions() {
    assert_err("FROM a\nCOPY ${SRC /d\n", 2, 6, "missing '}'");
    assert_err("FROM a\nWORKDIR ${}\n", 2, 9, "bad substitution");
    assert_err("FROM ${A:x}\n", 1, 6, "unsupported modifier");
    // `${X:?}` is a matter of values: only the executor knows.
    ok("FROM a\nWORKDIR ${X:?must be set}\n");
}

#[test]
fn missing_from() {
    assert_err(
        "",
        1,
        1,
        "no FROM instruction: a Dockerfile must begin with FROM (after ARGs and parser directives)",
    );
    assert_err("# just a comment\n\n", 1, 1, "no FROM instruction");
    assert_err("ARG A=1\nARG B\n", 1, 1, "no FROM instruction");
}

#[test]
fn instruction_before_from() {
    assert_err(
        "ARG A\n\nRUN echo\nFROM a\n",
        3,
        1,
        "RUN before FROM: a Dockerfile must begin with FROM",
    );
    assert_err("# escape=`\n  ENV A=1\nFROM a\n", 2, 3, "ENV before FROM");
    assert_err("ONBUILD RUN x\nFROM a\n", 1, 1, "ONBUILD before FROM");
}

#[test]
fn from_errors() {
    assert_err("FROM\n", 1, 1, "FROM expects an image name");
    assert_err("FROM a b\n", 1, 8, "FROM takes one or three arguments");
    assert_err("FROM a AS b c\n", 1, 8, "FROM takes one or three arguments");
    assert_err("FROM a AS 1st\n", 1, 11, "invalid stage name \"1st\"");
    assert_err("FROM a AS x\nFROM b AS X\n", 2, 11, "duplicate stage name \"x\"");
}

#[test]
fn error_display() {
    let e = err("FROM a\nCOPY --frm=x a b\n");
    assert_eq!(
        e.to_string(),
        "Dockerfile:2:6: unknown flag --frm for COPY (expected --from, --chown, --chmod, --link)"
    );
}

#[test]
fn columns_count_characters() {
    assert_err("FROM a\nENV é=\"b\n", 2, 7, "unterminated quote");
}

// ---- A realistic Dockerfile ----

#[test]
fn realistic_dockerfile() {
    let df = ok(r#"# syntax=docker/dockerfile:1.7
ARG RUST_VERSION=1.85

FROM rust:${RUST_VERSION}-slim AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release && \
    cp target/release/app /app

FROM debian:bookworm-slim
LABEL org.opencontainers.image.source="https://example.com/app"
RUN useradd -r app
COPY --from=build --chown=app:app /app /usr/local/bin/app
USER app
EXPOSE 8080
HEALTHCHECK --interval=10s CMD ["/usr/local/bin/app", "--health"]
ENTRYPOINT ["/usr/local/bin/app"]
CMD ["--serve"]
"#);
    assert_eq!(df.syntax.as_deref(), Some("docker/dockerfile:1.7"));
    assert_eq!(
        df.global_args,
        vec![ArgDecl {
            name: "RUST_VERSION".into(),
            default: Some("1.85".into())
        }]
    );
    assert_eq!(df.stages.len(), 2);
    assert_eq!(df.stages[0].instructions.len(), 3);
    assert_eq!(df.stages[0].instructions[2].text, "RUN --mount=type=cache,target=/usr/local/cargo/registry --mount=type=cache,target=/src/target cargo build --release && cp target/release/app /app");
    assert_eq!(df.stages[1].instructions.len(), 8);
    assert_eq!(df.stages[1].line, 12);
}

// ---- Expansion ----

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let m: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |k| m.get(k).cloned()
}

fn x(word: &str, vars: &[(&str, &str)]) -> String {
    let e = env(vars);
    expand(word, '\\', &e).unwrap_or_else(|err| panic!("expand {word:?}: {err}"))
}

#[test]
fn expand_variables() {
    let v = [("A", "1"), ("B", "two words"), ("EMPTY", "")];
    assert_eq!(x("$A", &v), "1");
    assert_eq!(x("${A}x", &v), "1x");
    assert_eq!(x("$Ax", &v), "", "the name runs on");
    assert_eq!(x("$UNSET-$A", &v), "-1");
    assert_eq!(x("a$", &v), "a$");
    assert_eq!(x("$/x", &v), "$/x");
    assert_eq!(
        x("${A:-d}|${UNSET:-d}|${EMPTY:-d}|${EMPTY-d}|${UNSET-d}", &v),
        "1|d|d||d"
    );
    assert_eq!(x("${A:+alt}|${UNSET:+alt}|${EMPTY:+alt}|${EMPTY+alt}", &v), "alt|||alt");
    assert_eq!(x("${A:?no}", &v), "1");
}

#[test]
fn expand_nested_defaults() {
    assert_eq!(x("${a:-${b}}", &[("b", "B")]), "B");
    assert_eq!(x("${a:-${b:-${c:-deep}}}", &[]), "deep");
    assert_eq!(x("${a:-x${b}y}", &[("a", ""), ("b", "-")]), "x-y");
    assert_eq!(x("${a:+[${a}]}", &[("a", "v")]), "[v]");
}

#[test]
fn expand_quotes_and_escapes() {
    let v = [("A", "1")];
    assert_eq!(x(r#""$A two"'$A'"#, &v), "1 two$A");
    assert_eq!(x(r"\$A", &v), "$A");
    assert_eq!(x(r#""\$A""#, &v), "$A");
    assert_eq!(
        x(r"a\ b\n", &v),
        "a bn",
        "outside quotes an escape makes the next character literal"
    );
    assert_eq!(
        x(r#""a\nb\"c\\""#, &v),
        "a\\nb\"c\\",
        "inside double quotes it only escapes \" $ and itself"
    );
    assert_eq!(x(r"'a\b'", &v), "a\\b");
    assert_eq!(x("${A:-\"x y\"}", &v), "1");
    assert_eq!(x("${U:-\"x y\"}", &v), "x y");
    assert_eq!(x(r"${U:-a\}b}", &v), "a}b");
    assert_eq!(x("end\\", &v), "end", "an escape at the end is dropped");
}

#[test]
fn expand_with_backtick_escape() {
    let e = env(&[("A", "1")]);
    assert_eq!(expand(r"C:\dir\$A", '`', &e).unwrap(), "C:\\dir\\1");
    assert_eq!(expand("`$A", '`', &e).unwrap(), "$A");
}

#[test]
fn expand_errors() {
    let e = env(&[("EMPTY", "")]);
    let fail = |w: &str| expand(w, '\\', &e).unwrap_err();
    assert_eq!(fail("${X:?must be set}").message, "X: must be set");
    assert_eq!(fail("${X?}").message, "X: is not allowed to be unset");
    assert_eq!(fail("${EMPTY:?}").message, "EMPTY: is not allowed to be empty");
    assert!(expand("${EMPTY?}", '\\', &e).is_ok());
    let u = fail("a \"b");
    assert!(u.message.contains("unterminated quote"), "{u}");
    assert_eq!(u.offset, 2);
    assert!(fail("'x").message.contains("unterminated quote"));
    assert!(fail("${X").message.contains("missing '}'"));
    assert!(fail("${X:-abc").message.contains("missing '}'"));
    assert!(fail("${}").message.contains("bad substitution"));
    assert!(fail("${:-x}").message.contains("bad substitution"));
    assert!(fail("${X!}").message.contains("unsupported modifier"));
    assert!(fail("${X:=y}").message.contains("unsupported modifier"));
    let deep = format!("{}x{}", "${a:-".repeat(1000), "}".repeat(1000));
    assert!(fail(&deep).message.contains("nested"));
}

#[test]
fn expand_patterns() {
    let v = [("P", "/usr/local/bin/app.tar.gz"), ("S", "aXbXc")];
    assert_eq!(x("${P#*/}", &v), "usr/local/bin/app.tar.gz");
    assert_eq!(x("${P##*/}", &v), "app.tar.gz");
    assert_eq!(x("${P%.*}", &v), "/usr/local/bin/app.tar");
    assert_eq!(x("${P%%.*}", &v), "/usr/local/bin/app");
    assert_eq!(x("${P#nomatch}", &v), "/usr/local/bin/app.tar.gz");
    assert_eq!(x("${S/X/-}", &v), "a-bXc");
    assert_eq!(x("${S//X/-}", &v), "a-b-c");
    assert_eq!(x("${S/?X/}", &v), "bXc");
    assert_eq!(x("${S//\\//x}", &[("S", "a/b/c")]), "axbxc");
    assert_eq!(x("${S/#/x}", &v), "aXbXc", "no anchors: # is a literal here");
    assert_eq!(x("${U##*/}", &v), "");
}

#[test]
fn expand_words_splits_like_docker() {
    let e = env(&[("PORTS", "80  443"), ("ONE", "x")]);
    let w = |t: &str| expand_words(t, '\\', &e).unwrap();
    assert_eq!(w("a  b\tc"), strings(&["a", "b", "c"]));
    assert_eq!(w("$PORTS 8080/udp"), strings(&["80", "443", "8080/udp"]));
    assert_eq!(w("\"$PORTS\" '$ONE'"), strings(&["80  443", "$ONE"]));
    assert_eq!(w("a\\ b c"), strings(&["a b", "c"]));
    assert_eq!(w("pre$ONE\"post fix\""), strings(&["prexpost fix"]));
    assert_eq!(
        w("\"\" a"),
        strings(&["a"]),
        "an empty quoted word is no word, as in Docker"
    );
    assert_eq!(w(""), Vec::<String>::new());
}

#[test]
fn expand_heredoc_bodies() {
    let e = env(&[("NAME", "world")]);
    assert_eq!(
        expand_heredoc("echo \"hello $NAME\" '${NAME}'\ncost \\$5\n", &e).unwrap(),
        "echo \"hello world\" 'world'\ncost $5\n"
    );
    assert_eq!(expand_heredoc("${UNSET:-dflt} it's\n", &e).unwrap(), "dflt it's\n");
}

// ---- Fuzz ----

/// xorshift64*: small, fast, and deterministic (the seed is printed on failure).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[self.below(v.len())]
    }
}

const TOKENS: &[&str] = &[
    "FROM",
    "RUN",
    "CMD",
    "COPY",
    "ADD",
    "ENV",
    "ARG",
    "LABEL",
    "EXPOSE",
    "WORKDIR",
    "USER",
    "VOLUME",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "SHELL",
    "ONBUILD",
    "MAINTAINER",
    "from",
    "run",
    "AS",
    "NONE",
    "CMD",
    " ",
    " ",
    " ",
    "\t",
    "\n",
    "\n",
    "\r\n",
    "\\",
    "\\\n",
    "`",
    "`\n",
    "#",
    "# escape=`\n",
    "# escape=\\\n",
    "# syntax=x\n",
    "\"",
    "'",
    "=",
    "$",
    "${",
    "}",
    "${a:-",
    "${a:+",
    "${a:?",
    "${a#",
    "${a%%",
    "${a/",
    "//",
    ":",
    "-",
    "[",
    "]",
    "[\"a\", \"b\"]",
    "[1]",
    ",",
    "<<",
    "<<EOF",
    "<<-EOF",
    "<<'EOF'",
    "EOF",
    "\tEOF",
    "--",
    "--from=",
    "--mount=type=cache,target=/c",
    "--mount=",
    "--network=none",
    "--interval=",
    "30s",
    "1m30s",
    "0",
    "--retries=",
    "--link",
    "--chown=",
    "--platform=",
    "a",
    "b",
    "/x",
    "é",
    "\u{feff}",
    "漢",
    "\u{a0}",
    "💥",
    "{",
    "*",
    "?",
    "\"\"",
    "''",
];

const SEEDS: &[&str] = &[
    "FROM alpine AS build\nARG X=1\nRUN --mount=type=cache,target=/c echo ${X:-y} && \\\n  echo done\nCOPY --from=build a b /c/\n",
    "# escape=`\nFROM a\nRUN dir `\n  && echo\nENV A=\"b c\" D='e'\nLABEL a=b\n",
    "ARG B=alpine\nFROM $B\nRUN <<EOF\necho hi\nEOF\nCOPY <<-\"X\" /f\n\tx\n\tX\nHEALTHCHECK --interval=5s CMD [\"true\"]\n",
    "FROM a\nONBUILD RUN python3 <<EOF\nprint(1)\nEOF\nSHELL [\"/bin/bash\", \"-c\"]\nVOLUME [\"/v\"]\nEXPOSE 80/tcp\n",
];

#[test]
fn fuzz_parse_and_expand_never_panic() {
    let seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rng = Rng(seed);
    let lookup = |k: &str| match k.len() % 3 {
        0 => None,
        1 => Some(String::new()),
        _ => Some(format!("v {k} *")),
    };
    let mut parsed = 0usize;
    for i in 0..200_000 {
        let input: String = match rng.below(3) {
            // Tokens strung together.
            0 => (0..rng.below(40)).map(|_| rng.pick(TOKENS)).collect(),
            // A valid Dockerfile, mutated.
            1 => {
                let mut b = rng.pick(SEEDS).as_bytes().to_vec();
                for _ in 0..1 + rng.below(6) {
                    let at = rng.below(b.len() + 1);
                    match rng.below(4) {
                        0 if at < b.len() => {
                            b.remove(at);
                        }
                        1 => b.insert(at, rng.next() as u8),
                        2 => {
                            for (j, c) in rng.pick(TOKENS).bytes().enumerate() {
                                b.insert(at + j, c);
                            }
                        }
                        _ if at < b.len() => b[at] = rng.next() as u8,
                        _ => {}
                    }
                }
                String::from_utf8_lossy(&b).into_owned()
            }
            // Random bytes.
            _ => {
                let b: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
                String::from_utf8_lossy(&b).into_owned()
            }
        };
        let outcome = std::panic::catch_unwind(|| {
            let ok = parse(&input).is_ok();
            for esc in ['\\', '`'] {
                let _ = expand(&input, esc, &lookup);
                let _ = expand_words(&input, esc, &lookup);
            }
            let _ = expand_heredoc(&input, &lookup);
            ok
        });
        match outcome {
            Ok(true) => parsed += 1,
            Ok(false) => {}
            Err(_) => panic!("iteration {i} (seed {seed:#x}) panicked on {input:?}"),
        }
    }
    // The generator should reach the parser's depths, not only its first error.
    assert!(parsed > 1_000, "only {parsed} inputs parsed");
}
