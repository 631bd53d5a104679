//! Exec instances: created on a running container, started once, with their exit code
//! kept for `GET /exec/{id}/json`.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use hako_runtime::config::Config;
use hako_runtime::exec::ExecSpec;

use super::{Containers, ZERO};
use crate::error::ApiError;

#[derive(Debug, Clone)]
pub struct ExecInstance {
    pub id: String,
    pub container: String,
    pub body: Value,
    pub running: bool,
    pub exit_code: Option<i32>,
    pub pid: i32,
    pub spec_path: PathBuf,
    /// With a terminal: the write end of the pipe its `exec-init` reads sizes from.
    pub resize: Option<Arc<OwnedFd>>,
    /// A size asked for before the exec started, sent when it does.
    pub pending_size: Option<(u16, u16)>,
}

/// The descriptor number the resize pipe gets in `exec-init`.
const RESIZE_FD: i32 = 3;

/// One size record for `exec-init` (see `ExecSpec::resize_fd`). The pipe is non-blocking:
/// sizes an exec does not read (it ended) are dropped, never waited on.
fn send_size(pipe: &OwnedFd, (h, w): (u16, u16)) {
    let mut rec = [0u8; 4];
    rec[..2].copy_from_slice(&h.to_be_bytes());
    rec[2..].copy_from_slice(&w.to_be_bytes());
    let _ = rustix::io::write(pipe, &rec);
}

/// `[h, w]` from a `ConsoleSize` field; none for a zero size.
pub fn console_size(v: Option<&Value>) -> Option<(u16, u16)> {
    let a = v?.as_array()?;
    let (h, w) = (a.first()?.as_u64()? as u16, a.get(1)?.as_u64()? as u16);
    (h > 0 && w > 0).then_some((h, w))
}

/// How long an ended exec stays inspectable (dockerd's exec GC runs every five minutes).
const KEEP_ENDED: std::time::Duration = std::time::Duration::from_secs(300);

#[derive(Default)]
pub struct Execs {
    /// Shared with the timers that drop ended instances.
    map: Arc<Mutex<HashMap<String, Arc<Mutex<ExecInstance>>>>>,
}

impl Execs {
    pub fn get(&self, id: &str) -> Result<Arc<Mutex<ExecInstance>>, ApiError> {
        self.map
            .lock()
            .unwrap() // unwrap: poisoned only after a panic
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))
    }
}

impl Containers {
    /// `POST /containers/{id}/exec`.
    pub fn exec_create(&self, name: &str, body: Value) -> Result<String, ApiError> {
        let e = self.get(name)?;
        let rec = e.rec.lock().unwrap().clone(); // unwrap: see above
        if !rec.state.running {
            return Err(ApiError::new(
                http::StatusCode::CONFLICT,
                format!("container {} is not running", rec.id),
            ));
        }
        // A frozen container would hold the exec (and its client) until it is unpaused.
        if rec.state.paused {
            return Err(ApiError::new(
                http::StatusCode::CONFLICT,
                format!("Container {name} is paused, unpause the container before exec"),
            ));
        }
        let cmd: Vec<String> = body
            .get("Cmd")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
            .unwrap_or_default();
        if cmd.is_empty() {
            return Err(ApiError::bad_request("No exec command specified"));
        }
        let dir = self.container_dir(&rec.id);
        let cfg: Config = serde_json::from_slice(
            &std::fs::read(dir.join("config.json"))
                .map_err(|e| ApiError::internal(format!("reading the container's config: {e}")))?,
        )
        .map_err(|e| ApiError::internal(e.to_string()))?;
        let mut process = cfg.process.clone();
        process.args = cmd;
        process.terminal = body.get("Tty").and_then(Value::as_bool).unwrap_or(false);
        for env in body
            .get("Env")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
        {
            let key = env.split('=').next().unwrap_or(env);
            process.env.retain(|e| e.split('=').next() != Some(key));
            process.env.push(env.to_string());
        }
        if let Some(wd) = body.get("WorkingDir").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            process.cwd = wd.to_string();
        }
        if let Some(u) = body.get("User").and_then(Value::as_str).filter(|s| !s.is_empty()) {
            let user = super::setup::resolve_user(self, &rec, u)?;
            process.user.uid = user.uid;
            process.user.gid = user.gid;
            process.user.additional_gids = user.additional_gids;
        }
        let privileged = body.get("Privileged").and_then(Value::as_bool).unwrap_or(false);
        let mut seccomp = cfg.linux.seccomp.clone();
        if privileged {
            let all = hako_runtime::caps::host_bounding();
            process.capabilities = Some(hako_runtime::config::Capabilities {
                bounding: all.clone(),
                effective: all.clone(),
                inheritable: all.clone(),
                permitted: all,
                ambient: vec![],
            });
            seccomp = None;
        }
        let pid = hako_runtime::monitor::read_state(&dir).map(|s| s.pid).unwrap_or(0);
        let id = super::random_id();
        let spec = ExecSpec {
            init_pid: pid,
            cgroup_name: format!("hako-{}", rec.id),
            resize_fd: process.terminal.then_some(RESIZE_FD),
            process,
            seccomp,
        };
        let spec_path = dir.join(format!("exec-{id}.json"));
        std::fs::write(&spec_path, serde_json::to_vec(&spec).expect("json"))
            .map_err(|e| ApiError::internal(format!("writing the exec spec: {e}")))?;
        let inst = ExecInstance {
            id: id.clone(),
            container: rec.id.clone(),
            body,
            running: false,
            exit_code: None,
            pid: 0,
            spec_path,
            resize: None,
            pending_size: None,
        };
        self.execs
            .map
            .lock()
            .unwrap()
            .insert(id.clone(), Arc::new(Mutex::new(inst))); // unwrap: see above
        Ok(id)
    }

    /// The process of an exec, with its stdio piped to the daemon; `size` is the start
    /// request's terminal size (else the create request's is used).
    pub fn exec_spawn(
        &self,
        id: &str,
        size: Option<(u16, u16)>,
    ) -> Result<(Arc<Mutex<ExecInstance>>, tokio::process::Child), ApiError> {
        let inst = self.execs.get(id)?;
        let mut i = inst.lock().unwrap(); // unwrap: see above
        if i.running || i.exit_code.is_some() {
            return Err(ApiError::new(
                http::StatusCode::CONFLICT,
                format!("exec {id} has already run"),
            ));
        }
        let fail = |e: std::io::Error| ApiError::internal(format!("starting exec: {e}"));
        let mut cmd = tokio::process::Command::new(&self.monitor_exe);
        cmd.arg("exec-init")
            .arg(&i.spec_path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(false);
        let tty = i.body.get("Tty").and_then(Value::as_bool).unwrap_or(false);
        let pipe = if tty {
            let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC | rustix::pipe::PipeFlags::NONBLOCK)
                .map_err(|e| fail(e.into()))?;
            let raw = r.as_raw_fd();
            // SAFETY: between fork and exec this runs only dup2 and fcntl, which are
            // async-signal-safe, on a descriptor that stays open until the spawn returns.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::dup2(raw, RESIZE_FD) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // A dup2 onto itself keeps close-on-exec: clear it in any case.
                    libc::fcntl(RESIZE_FD, libc::F_SETFD, 0);
                    Ok(())
                });
            }
            Some((r, w))
        } else {
            None
        };
        // The sizes known now go into the pipe before the spawn: exec-init reads them
        // once, at its start, to size the terminal before the command runs.
        if let Some((_, w)) = &pipe {
            let first = size.or_else(|| console_size(i.body.get("ConsoleSize")));
            for s in [first, i.pending_size.take()].into_iter().flatten() {
                send_size(w, s);
            }
        }
        let child = cmd.spawn().map_err(fail)?;
        if let Some((r, w)) = pipe {
            drop(r);
            i.resize = Some(Arc::new(w));
        }
        i.running = true;
        i.pid = child.id().map(|p| p as i32).unwrap_or(0);
        drop(i);
        Ok((inst, child))
    }

    /// `POST /exec/{id}/resize`: the exec's terminal gets this size (kept until it starts;
    /// nothing to do without a terminal or once it ended).
    pub fn exec_resize(&self, id: &str, size: (u16, u16)) -> Result<(), ApiError> {
        let inst = self.execs.get(id)?;
        let mut i = inst.lock().unwrap(); // unwrap: see above
        match &i.resize {
            Some(pipe) => send_size(pipe, size),
            None if !i.running && i.exit_code.is_none() => i.pending_size = Some(size),
            None => {}
        }
        Ok(())
    }

    /// Records an exec's end; the instance goes from the map after [`KEEP_ENDED`], so a
    /// long-running daemon does not keep every exec it ever ran.
    pub fn exec_finished(&self, inst: &Arc<Mutex<ExecInstance>>, code: i32) {
        let mut i = inst.lock().unwrap(); // unwrap: see above
        i.running = false;
        i.exit_code = Some(code);
        i.resize = None;
        let _ = std::fs::remove_file(&i.spec_path);
        let (map, id) = (self.execs.map.clone(), i.id.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                tokio::time::sleep(KEEP_ENDED).await;
                map.lock().unwrap().remove(&id); // unwrap: see above
            });
        }
    }

    /// Drops every exec instance of a container being removed.
    pub fn exec_forget_container(&self, container_id: &str) {
        let mut map = self.execs.map.lock().unwrap(); // unwrap: see above
        map.retain(|_, e| {
            let i = e.lock().unwrap(); // unwrap: see above
            if i.container != container_id {
                return true;
            }
            let _ = std::fs::remove_file(&i.spec_path);
            false
        });
    }

    /// Drops a finished exec instance the engine ran for itself (a health check's).
    pub fn exec_forget(&self, id: &str) {
        let gone = self.execs.map.lock().unwrap().remove(id); // unwrap: see above
        if let Some(inst) = gone {
            let _ = std::fs::remove_file(&inst.lock().unwrap().spec_path); // unwrap: see above
        }
    }

    /// The running execs of a container (its `ExecIDs`).
    pub fn exec_ids(&self, container_id: &str) -> Vec<String> {
        let map = self.execs.map.lock().unwrap(); // unwrap: see above
        let mut ids: Vec<String> = map
            .values()
            .filter_map(|e| {
                let i = e.lock().unwrap(); // unwrap: see above
                (i.container == container_id && i.running).then(|| i.id.clone())
            })
            .collect();
        ids.sort();
        ids
    }

    pub fn exec_inspect(&self, id: &str) -> Result<Value, ApiError> {
        let inst = self.execs.get(id)?;
        let i = inst.lock().unwrap().clone(); // unwrap: see above
        let cmd: Vec<Value> = i.body.get("Cmd").and_then(Value::as_array).cloned().unwrap_or_default();
        Ok(json!({
            "ID": i.id, "Running": i.running, "ExitCode": i.exit_code, "Pid": i.pid,
            "ContainerID": i.container, "CanRemove": false, "DetachKeys": "",
            "OpenStdin": i.body.get("AttachStdin").cloned().unwrap_or(json!(false)),
            "OpenStdout": true, "OpenStderr": true,
            "ProcessConfig": {
                "tty": i.body.get("Tty").cloned().unwrap_or(json!(false)),
                "entrypoint": cmd.first().cloned().unwrap_or(json!("")),
                "arguments": cmd.iter().skip(1).cloned().collect::<Vec<_>>(),
                "privileged": i.body.get("Privileged").cloned().unwrap_or(json!(false)),
                "user": i.body.get("User").cloned().unwrap_or(json!("")),
            },
            "StartedAt": ZERO,
        }))
    }
}
