//! HEALTHCHECK: a running container's test, run as an exec every interval, its results kept
//! in `State.Health` as Docker keeps them: `starting` until the first success or until
//! failures outside the start period reach the retries, then `healthy` or `unhealthy`; a
//! failing streak; the last five results.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

use super::{Containers, Entry};

/// The last results kept, and the bytes of output kept of each (Docker's figures).
const KEPT_RESULTS: usize = 5;
const KEPT_OUTPUT: usize = 4096;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    pub status: String,
    pub failing_streak: u32,
    pub log: Vec<ProbeResult>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct ProbeResult {
    pub start: String,
    pub end: String,
    pub exit_code: i64,
    pub output: String,
}

/// A container's check, with Docker's defaults for what its config leaves at zero.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub argv: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub start_period: Duration,
    pub retries: u32,
}

/// The check of a container's (merged) config: none without a test or with `NONE`.
pub fn check_of(config: &Value) -> Option<Check> {
    let hc = config.get("Healthcheck")?;
    let test: Vec<&str> = hc.get("Test")?.as_array()?.iter().filter_map(Value::as_str).collect();
    let argv: Vec<String> = match test.split_first() {
        Some((&"CMD", args)) if !args.is_empty() => args.iter().map(|s| s.to_string()).collect(),
        Some((&"CMD-SHELL", [cmd])) => vec!["/bin/sh".into(), "-c".into(), cmd.to_string()],
        _ => return None,
    };
    let nanos = |k: &str, default: Duration| match hc.get(k).and_then(Value::as_u64) {
        Some(n) if n > 0 => Duration::from_nanos(n),
        _ => default,
    };
    let retries = hc
        .get("Retries")
        .and_then(Value::as_u64)
        .filter(|r| *r > 0)
        .unwrap_or(3);
    Some(Check {
        argv,
        interval: nanos("Interval", Duration::from_secs(30)),
        timeout: nanos("Timeout", Duration::from_secs(30)),
        start_period: nanos("StartPeriod", Duration::ZERO),
        retries: retries as u32,
    })
}

impl Health {
    /// Takes one probe's result; `in_start_period`: a failure does not count yet.
    fn record(&mut self, result: ProbeResult, retries: u32, in_start_period: bool) {
        if result.exit_code == 0 {
            self.status = "healthy".into();
            self.failing_streak = 0;
        } else if !in_start_period || self.status != "starting" {
            self.failing_streak += 1;
            if self.failing_streak >= retries {
                self.status = "unhealthy".into();
            }
        }
        self.log.push(result);
        if self.log.len() > KEPT_RESULTS {
            self.log.remove(0);
        }
    }
}

impl Containers {
    /// Starts the checks of a container that just started (or was re-adopted): they end when
    /// that run of it does.
    pub fn start_health(self: &Arc<Self>, e: &Arc<Entry>) {
        let (check, id, started_at) = {
            let mut r = e.rec.lock().unwrap(); // unwrap: poisoned only after a panic
            let Some(check) = check_of(&r.config) else { return };
            if r.state.health.is_none() {
                r.state.health = Some(Health {
                    status: "starting".into(),
                    ..Default::default()
                });
            }
            (check, r.id.clone(), r.state.started_at.clone())
        };
        let this = self.clone();
        let e = e.clone();
        tokio::spawn(async move {
            let begun = Instant::now();
            loop {
                tokio::time::sleep(check.interval).await;
                let same_run = {
                    let r = e.rec.lock().unwrap(); // unwrap: see above
                    r.state.running && r.state.started_at == started_at
                };
                if !same_run || this.get(&id).is_err() {
                    return;
                }
                // A paused container cannot run its test; it is checked again once thawed.
                if e.rec.lock().unwrap().state.paused {
                    continue;
                }
                let result = this.probe(&id, &check).await;
                let mut r = e.rec.lock().unwrap(); // unwrap: see above
                if r.state.running && r.state.started_at == started_at {
                    let in_start = begun.elapsed() < check.start_period;
                    r.state
                        .health
                        .get_or_insert_with(Default::default)
                        .record(result, check.retries, in_start);
                }
            }
        });
    }

    /// Runs the test once as an exec; a test past its timeout is killed and fails.
    async fn probe(&self, id: &str, check: &Check) -> ProbeResult {
        let start = hako_image::service::now_rfc3339();
        let failed = |output: String| ProbeResult {
            start: start.clone(),
            end: hako_image::service::now_rfc3339(),
            exit_code: -1,
            output,
        };
        let body = json!({"Cmd": check.argv, "AttachStdout": true, "AttachStderr": true});
        let exec_id = match self.exec_create(id, body) {
            Ok(x) => x,
            Err(e) => return failed(e.message),
        };
        let (inst, mut child) = match self.exec_spawn(&exec_id, None) {
            Ok(x) => x,
            Err(e) => {
                self.exec_forget(&exec_id);
                return failed(e.message);
            }
        };
        drop(child.stdin.take());
        let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
        let collect = async {
            let (o, e) = tokio::join!(kept_output(out.as_mut()), kept_output(err.as_mut()));
            let status = child.wait().await;
            (status, [o, e].concat())
        };
        let pid = inst.lock().unwrap().pid; // unwrap: see above
        let result = match tokio::time::timeout(check.timeout, collect).await {
            Ok((status, output)) => {
                let code = status.ok().and_then(|s| s.code()).unwrap_or(-1);
                self.exec_finished(&inst, code);
                let keep = output.len().min(KEPT_OUTPUT);
                ProbeResult {
                    start,
                    end: hako_image::service::now_rfc3339(),
                    exit_code: code as i64,
                    output: String::from_utf8_lossy(&output[..keep]).into_owned(),
                }
            }
            Err(_) => {
                // The test runs as exec-init's child, in the container: end it there, and
                // exec-init follows.
                kill_children(pid);
                self.exec_finished(&inst, -1);
                failed(format!(
                    "Health check exceeded timeout ({}ms)",
                    check.timeout.as_millis()
                ))
            }
        };
        self.exec_forget(&exec_id);
        result
    }
}

/// The first [`KEPT_OUTPUT`] bytes of a stream, read to its end: a chatty test neither
/// blocks on a full pipe nor grows the daemon's memory.
async fn kept_output(stream: Option<&mut (impl tokio::io::AsyncRead + Unpin)>) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(stream) = stream else { return kept };
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let room = KEPT_OUTPUT.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    kept
}

/// SIGKILL to the children of `pid` (from /proc/PID/task/PID/children).
fn kill_children(pid: i32) {
    let Ok(list) = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) else {
        return;
    };
    for child in list.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
        // SAFETY: kill with a PID read just now from our own child's children.
        unsafe { libc::kill(child, libc::SIGKILL) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_from_docker_configs() {
        let c = check_of(&json!({"Healthcheck": {"Test": ["CMD-SHELL", "test -f /ok"], "Interval": 2_000_000_000u64}}))
            .unwrap();
        assert_eq!(c.argv, ["/bin/sh", "-c", "test -f /ok"]);
        assert_eq!(
            (c.interval, c.timeout, c.retries),
            (Duration::from_secs(2), Duration::from_secs(30), 3)
        );
        let c = check_of(&json!({"Healthcheck": {"Test": ["CMD", "true", "x"], "Retries": 1}})).unwrap();
        assert_eq!((c.argv.clone(), c.retries), (vec!["true".to_string(), "x".into()], 1));
        assert_eq!(check_of(&json!({"Healthcheck": {"Test": ["NONE"]}})), None);
        assert_eq!(check_of(&json!({"Healthcheck": {"Test": []}})), None);
        assert_eq!(check_of(&json!({})), None);
    }

    #[test]
    fn status_follows_docker() {
        let ok = || ProbeResult {
            exit_code: 0,
            ..Default::default()
        };
        let bad = || ProbeResult {
            exit_code: 1,
            ..Default::default()
        };
        let mut h = Health {
            status: "starting".into(),
            ..Default::default()
        };
        // Failures in the start period do not count while it is still starting.
        h.record(bad(), 2, true);
        assert_eq!((h.status.as_str(), h.failing_streak), ("starting", 0));
        h.record(bad(), 2, false);
        assert_eq!((h.status.as_str(), h.failing_streak), ("starting", 1));
        h.record(bad(), 2, false);
        assert_eq!((h.status.as_str(), h.failing_streak), ("unhealthy", 2));
        h.record(ok(), 2, false);
        assert_eq!((h.status.as_str(), h.failing_streak), ("healthy", 0));
        for _ in 0..10 {
            h.record(bad(), 2, false);
        }
        assert_eq!(h.log.len(), KEPT_RESULTS);
        assert_eq!(h.status, "unhealthy");
    }
}
