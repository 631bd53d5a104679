//! Exec instances: created on a running container, started once, with their exit code
//! kept for `GET /exec/{id}/json`.

use std::collections::HashMap;
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
}

#[derive(Default)]
pub struct Execs {
    map: Mutex<HashMap<String, Arc<Mutex<ExecInstance>>>>,
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
        };
        self.execs
            .map
            .lock()
            .unwrap()
            .insert(id.clone(), Arc::new(Mutex::new(inst))); // unwrap: see above
        Ok(id)
    }

    /// The process of an exec, with its stdio piped to the daemon.
    pub fn exec_spawn(&self, id: &str) -> Result<(Arc<Mutex<ExecInstance>>, tokio::process::Child), ApiError> {
        let inst = self.execs.get(id)?;
        let mut i = inst.lock().unwrap(); // unwrap: see above
        if i.running || i.exit_code.is_some() {
            return Err(ApiError::new(
                http::StatusCode::CONFLICT,
                format!("exec {id} has already run"),
            ));
        }
        let child = tokio::process::Command::new(&self.monitor_exe)
            .arg("exec-init")
            .arg(&i.spec_path)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| ApiError::internal(format!("starting exec: {e}")))?;
        i.running = true;
        i.pid = child.id().map(|p| p as i32).unwrap_or(0);
        drop(i);
        Ok((inst, child))
    }

    pub fn exec_finished(&self, inst: &Arc<Mutex<ExecInstance>>, code: i32) {
        let mut i = inst.lock().unwrap(); // unwrap: see above
        i.running = false;
        i.exit_code = Some(code);
        let _ = std::fs::remove_file(&i.spec_path);
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
