//! A container as the engine stores it (the shape `docker inspect` shows), and how a create
//! request combines with its image's config.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct State {
    pub status: String,
    pub running: bool,
    pub paused: bool,
    pub restarting: bool,
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    pub dead: bool,
    pub pid: i32,
    pub exit_code: i32,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
    /// With a HEALTHCHECK only, as in Docker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<super::health::Health>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerRecord {
    pub id: String,
    /// With Docker's leading slash.
    pub name: String,
    pub created: String,
    /// The image ID (`sha256:...`); image removal checks it.
    pub image: String,
    pub path: String,
    pub args: Vec<String>,
    pub state: State,
    pub config: Value,
    pub host_config: Value,
    pub restart_count: u32,
    /// Volumes and binds, as `docker inspect` shows them (`Type`, `Name`, `Source`,
    /// `Destination`, `RW`), resolved at create.
    #[serde(default)]
    pub mounts: Vec<Value>,
    /// Set by `stop`, cleared by `start`: restart policies leave such a container alone.
    #[serde(default)]
    pub has_been_manually_stopped: bool,
    /// Its networks by name: address, aliases, interfaces (the leases go at `rm`).
    #[serde(default)]
    pub networks: std::collections::BTreeMap<String, crate::networks::Endpoint>,
    /// The host ports it publishes while it runs (chosen ones filled in).
    #[serde(default)]
    pub ports: Vec<hako_net::ports::Binding>,
    pub log_path: String,
    pub resolv_conf_path: String,
    pub hostname_path: String,
    pub hosts_path: String,
}

pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

impl ContainerRecord {
    /// `NetworkSettings` of `docker inspect`: its networks, and while it runs its ports
    /// (every exposed port, null where not published).
    pub fn network_settings(&self) -> Value {
        let mut ports = Map::new();
        if self.state.running {
            for k in self
                .config
                .get("ExposedPorts")
                .and_then(Value::as_object)
                .into_iter()
                .flat_map(|m| m.keys())
            {
                ports.insert(k.clone(), Value::Null);
            }
            for b in &self.ports {
                let list = ports.entry(b.port_key()).or_insert(Value::Null);
                if list.is_null() {
                    *list = json!([]);
                }
                if let Some(a) = list.as_array_mut() {
                    a.push(json!({"HostIp": b.host_ip_string(), "HostPort": b.host_port.to_string()}));
                }
            }
        }
        let mut networks = Map::new();
        for (net, ep) in &self.networks {
            // The default bridge has no names, as in Docker.
            let dns = if net == crate::networks::DEFAULT {
                Vec::new()
            } else {
                crate::networks::attach::dns_names(&self.id, &self.name, &ep.aliases)
            };
            networks.insert(net.clone(), ep.settings(&dns));
        }
        let default = self.networks.get(crate::networks::DEFAULT);
        let field = |f: fn(&crate::networks::Endpoint) -> String| default.map(f).unwrap_or_default();
        json!({
            "Bridge": "",
            "SandboxID": if self.state.running { self.id.clone() } else { String::new() },
            "SandboxKey": if self.state.running { format!("/proc/{}/ns/net", self.state.pid) } else { String::new() },
            "HairpinMode": false,
            "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0,
            "Ports": ports,
            "SecondaryIPAddresses": null,
            "SecondaryIPv6Addresses": null,
            "EndpointID": field(|e| e.endpoint_id.clone()),
            "Gateway": field(|e| e.gateway.to_string()),
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "IPAddress": field(|e| e.ip.to_string()),
            "IPPrefixLen": default.map(|e| e.prefix).unwrap_or(0),
            "IPv6Gateway": "",
            "MacAddress": field(|e| e.mac.clone()),
            "Networks": networks,
        })
    }

    /// `Ports` of `GET /containers/json`: published ports with their host side, exposed
    /// ones without.
    pub fn port_summary(&self) -> Value {
        let mut out: Vec<Value> = Vec::new();
        if !self.state.running {
            return json!(out);
        }
        for b in &self.ports {
            out.push(json!({"IP": b.host_ip_string(), "PrivatePort": b.container_port, "PublicPort": b.host_port, "Type": b.proto.as_str()}));
        }
        for k in self
            .config
            .get("ExposedPorts")
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|m| m.keys())
        {
            if let Ok((port, proto)) = hako_net::ports::parse_port_key(k) {
                if !self.ports.iter().any(|b| b.container_port == port && b.proto == proto) {
                    out.push(json!({"PrivatePort": port, "Type": proto.as_str()}));
                }
            }
        }
        json!(out)
    }
}

/// Whether a restart policy brings a container back after it exited with `code`.
/// `restarts` is how many times it was restarted already (for `on-failure:N`).
pub fn should_restart(host_config: &Value, code: i32, restarts: u32, manually_stopped: bool) -> bool {
    let policy = host_config
        .pointer("/RestartPolicy/Name")
        .and_then(Value::as_str)
        .unwrap_or("no");
    let max = host_config
        .pointer("/RestartPolicy/MaximumRetryCount")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if manually_stopped {
        return false;
    }
    match policy {
        "always" | "unless-stopped" => true,
        "on-failure" => code != 0 && (max <= 0 || (restarts as i64) < max),
        _ => false,
    }
}

/// Docker's `Env` merge: the container's entries override the image's by name.
pub fn merge_env(image: &[String], container: &[String]) -> Vec<String> {
    let key = |e: &String| {
        e.split_once('=')
            .map(|(k, _)| k.to_string())
            .unwrap_or_else(|| e.clone())
    };
    let mut out: Vec<String> = image.to_vec();
    for e in container {
        let k = key(e);
        if let Some(pos) = out.iter().position(|x| key(x) == k) {
            out[pos] = e.clone();
        } else {
            out.push(e.clone());
        }
    }
    out
}

fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    let a = v?.as_array()?;
    Some(a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
}

/// The container's Config: the create body's Config with the image's defaults filled in,
/// and the command to run (entrypoint + cmd as Docker combines them).
pub fn merge_config(body: &Value, image_cfg: &Value, image_name: &str) -> (Value, Vec<String>) {
    let img = image_cfg.get("config").cloned().unwrap_or(json!({}));
    let mut c: Map<String, Value> = body.as_object().cloned().unwrap_or_default();
    for k in ["HostConfig", "NetworkingConfig"] {
        c.remove(k);
    }
    let body_entry = strings(c.get("Entrypoint")).filter(|v| !v.is_empty());
    let body_cmd = strings(c.get("Cmd")).filter(|v| !v.is_empty());
    // An entrypoint given on the command line drops the image's CMD, as Docker does.
    let (entrypoint, cmd) = match body_entry {
        Some(e) => (Some(e), body_cmd),
        None => (
            strings(img.get("Entrypoint")).filter(|v| !v.is_empty()),
            body_cmd.or_else(|| strings(img.get("Cmd"))),
        ),
    };
    let env = merge_env(
        &strings(img.get("Env")).unwrap_or_default(),
        &strings(c.get("Env")).unwrap_or_default(),
    );
    let mut labels = img
        .get("Labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(l) = c.get("Labels").and_then(Value::as_object) {
        labels.extend(l.clone());
    }
    let pick = |k: &str, c: &Map<String, Value>| -> Value {
        match c.get(k) {
            Some(Value::String(s)) if !s.is_empty() => json!(s),
            _ => img.get(k).cloned().unwrap_or(json!("")),
        }
    };
    let working_dir = pick("WorkingDir", &c);
    let user = pick("User", &c);
    let stop_signal = pick("StopSignal", &c);
    let healthcheck = healthcheck(img.get("Healthcheck"), c.get("Healthcheck"));
    let mut exposed = img
        .get("ExposedPorts")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(e) = c.get("ExposedPorts").and_then(Value::as_object) {
        exposed.extend(e.clone());
    }
    let mut volumes = img
        .get("Volumes")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(v) = c.get("Volumes").and_then(Value::as_object) {
        volumes.extend(v.clone());
    }
    c.insert("Image".into(), json!(image_name));
    c.insert("Env".into(), json!(env));
    c.insert("Cmd".into(), json!(cmd));
    c.insert("Entrypoint".into(), json!(entrypoint));
    c.insert("Labels".into(), json!(labels));
    c.insert("WorkingDir".into(), working_dir);
    c.insert("User".into(), user);
    if !stop_signal.as_str().unwrap_or("").is_empty() {
        c.insert("StopSignal".into(), stop_signal);
    }
    if !healthcheck.is_null() {
        c.insert("Healthcheck".into(), healthcheck);
    }
    c.insert(
        "ExposedPorts".into(),
        if exposed.is_empty() {
            Value::Null
        } else {
            json!(exposed)
        },
    );
    c.insert(
        "Volumes".into(),
        if volumes.is_empty() {
            Value::Null
        } else {
            json!(volumes)
        },
    );
    for k in [
        "Tty",
        "OpenStdin",
        "StdinOnce",
        "AttachStdin",
        "AttachStdout",
        "AttachStderr",
    ] {
        c.entry(k).or_insert(json!(false));
    }
    let mut command = entrypoint.unwrap_or_default();
    command.extend(cmd.unwrap_or_default());
    (Value::Object(c), command)
}

/// The container's HEALTHCHECK as Docker merges it: its own test, else the image's; each
/// duration or retry count it leaves at zero from the image.
fn healthcheck(image: Option<&Value>, own: Option<&Value>) -> Value {
    let (image, own) = (image.filter(|v| v.is_object()), own.filter(|v| v.is_object()));
    let has_test = |v: &Value| v.get("Test").and_then(Value::as_array).is_some_and(|t| !t.is_empty());
    match (image, own) {
        (None, None) => Value::Null,
        (Some(i), None) => i.clone(),
        (None, Some(o)) => o.clone(),
        (Some(i), Some(o)) => {
            let mut out = o.clone();
            if !has_test(o) {
                out["Test"] = i.get("Test").cloned().unwrap_or(Value::Null);
            }
            for k in ["Interval", "Timeout", "StartPeriod", "Retries"] {
                if out.get(k).and_then(Value::as_i64).unwrap_or(0) == 0 {
                    if let Some(v) = i.get(k) {
                        out[k] = v.clone();
                    }
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthchecks_merge_as_docker() {
        let img = json!({"Test": ["CMD-SHELL", "true"], "Interval": 5, "Retries": 2});
        assert_eq!(healthcheck(Some(&img), None), img);
        let own = json!({"Test": [], "Interval": 0, "Retries": 7});
        assert_eq!(
            healthcheck(Some(&img), Some(&own)),
            json!({"Test": ["CMD-SHELL", "true"], "Interval": 5, "Retries": 7})
        );
        let none = json!({"Test": ["NONE"]});
        assert_eq!(healthcheck(Some(&img), Some(&none))["Test"], json!(["NONE"]));
        assert_eq!(healthcheck(None, None), Value::Null);
    }

    #[test]
    fn entrypoint_and_cmd_combine_as_docker() {
        let img = json!({"config": {"Entrypoint": ["/ep"], "Cmd": ["a"], "Env": ["PATH=/bin", "A=1"]}});
        let (_, cmd) = merge_config(&json!({}), &img, "x");
        assert_eq!(cmd, vec!["/ep", "a"]);
        let (_, cmd) = merge_config(&json!({"Cmd": ["b"]}), &img, "x");
        assert_eq!(cmd, vec!["/ep", "b"]);
        let (_, cmd) = merge_config(&json!({"Entrypoint": ["/other"]}), &img, "x");
        assert_eq!(cmd, vec!["/other"]);
        let (c, _) = merge_config(&json!({"Env": ["A=2", "B=3"]}), &img, "x");
        assert_eq!(c["Env"], json!(["PATH=/bin", "A=2", "B=3"]));
    }
}
