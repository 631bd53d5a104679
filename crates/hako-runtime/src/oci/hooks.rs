//! OCI hooks: programs run at fixed points of a container's life, given the container's
//! state as JSON on stdin (runtime spec, "POSIX-platform Hooks").

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::Hook;

/// Runs `hooks` in order; the first that fails, times out or cannot start ends the run.
pub fn run(stage: &str, hooks: &[Hook], state: &[u8]) -> Result<(), String> {
    for h in hooks {
        run_one(h, state).map_err(|e| format!("{stage} hook {}: {e}", h.path))?;
    }
    Ok(())
}

fn run_one(h: &Hook, state: &[u8]) -> Result<(), String> {
    let mut cmd = Command::new(&h.path);
    // args[0] is the program's own argv[0], as in execv.
    if let Some((argv0, rest)) = h.args.split_first() {
        cmd.arg0(argv0).args(rest);
    }
    cmd.env_clear();
    for kv in &h.env {
        if let Some((k, v)) = kv.split_once('=') {
            cmd.env(k, v);
        }
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that ignores its stdin may exit before reading it: not an error.
        let _ = stdin.write_all(state);
    }
    let deadline = h.timeout.map(|t| Instant::now() + Duration::from_secs(t));
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            return if status.success() {
                Ok(())
            } else {
                Err(format!("exited with {status}"))
            };
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("timed out after {} s", h.timeout.unwrap_or(0)));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(script: &str, timeout: Option<u64>) -> Hook {
        Hook {
            path: "/bin/sh".into(),
            args: vec!["sh".into(), "-c".into(), script.into()],
            env: vec!["X=1".into()],
            timeout,
        }
    }

    #[test]
    fn hooks_get_state_on_stdin_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let h = hook(&format!("cat > {}; echo $X >> {}", out.display(), out.display()), None);
        run("prestart", &[h], br#"{"id":"c"}"#).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "{\"id\":\"c\"}1\n");
    }

    #[test]
    fn failing_and_slow_hooks_are_errors() {
        let e = run("poststart", &[hook("exit 3", None)], b"{}").unwrap_err();
        assert!(e.contains("poststart hook /bin/sh") && e.contains("3"), "{e}");
        let t = Instant::now();
        let e = run("prestart", &[hook("sleep 5", Some(1))], b"{}").unwrap_err();
        assert!(e.contains("timed out"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(4));
        let e = run(
            "prestart",
            &[Hook {
                path: "/nonexistent".into(),
                ..Default::default()
            }],
            b"{}",
        )
        .unwrap_err();
        assert!(e.contains("/nonexistent"), "{e}");
    }
}
