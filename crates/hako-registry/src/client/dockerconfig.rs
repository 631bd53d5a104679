//! Credentials in docker's `config.json` (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`): `{"auths": {"<server>": {"auth": base64("user:password")}}}`,
//! so `hako login` and `docker login` share them. Other keys of the file are kept.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Map, Value};

use super::Credentials;

/// Docker Hub's key in `auths`.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

pub fn config_path() -> PathBuf {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(d) => PathBuf::from(d).join("config.json"),
        None => {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/root"));
            home.join(".docker/config.json")
        }
    }
}

/// The `auths` key for a registry host (docker.io's is the legacy index URL).
pub fn server_key(host: &str) -> String {
    match host {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB_KEY.to_string(),
        h => h.to_string(),
    }
}

fn read() -> Result<Map<String, Value>, String> {
    let p = config_path();
    match std::fs::read(&p) {
        Ok(b) if b.iter().all(u8::is_ascii_whitespace) => Ok(Map::new()),
        Ok(b) => match serde_json::from_slice::<Value>(&b) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(format!("{} is not a JSON object: fix or remove it", p.display())),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Map::new()),
        Err(e) => Err(format!("reading {}: {e}", p.display())),
    }
}

fn write(m: &Map<String, Value>) -> Result<(), String> {
    let p = config_path();
    let dir = p.parent().expect("config path has a directory").to_path_buf(); // invariant
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let tmp = dir.join(format!(".config.json.tmp-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    let body = serde_json::to_vec_pretty(&Value::Object(m.clone())).expect("plain json"); // invariant
    f.write_all(&body)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &p).map_err(|e| format!("replacing {}: {e}", p.display()))
}

/// Credentials stored for `host`, if any.
pub fn load(host: &str) -> Option<Credentials> {
    let m = read().ok()?;
    let auths = m.get("auths")?.as_object()?;
    let key = server_key(host);
    let entry = auths
        .get(&key)
        .or_else(|| auths.get(&format!("https://{key}")))
        .or_else(|| auths.get(&format!("http://{key}")))?;
    if let Some(a) = entry.get("auth").and_then(Value::as_str) {
        let raw = String::from_utf8(STANDARD.decode(a).ok()?).ok()?;
        let (u, p) = raw.split_once(':')?;
        return Some(Credentials {
            username: u.to_string(),
            password: p.to_string(),
            identity_token: entry
                .get("identitytoken")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        });
    }
    None
}

pub fn store(host: &str, c: &Credentials) -> Result<PathBuf, String> {
    let mut m = read()?;
    let auths = m.entry("auths").or_insert_with(|| json!({}));
    if !auths.is_object() {
        *auths = json!({});
    }
    let entry = json!({"auth": STANDARD.encode(format!("{}:{}", c.username, c.password))});
    auths
        .as_object_mut()
        .expect("made an object above") // invariant
        .insert(server_key(host), entry);
    write(&m)?;
    Ok(config_path())
}

/// Removes the credentials for `host`; false when there were none.
pub fn erase(host: &str) -> Result<bool, String> {
    let mut m = read()?;
    let key = server_key(host);
    let removed = m
        .get_mut("auths")
        .and_then(Value::as_object_mut)
        .map(|a| a.remove(&key).is_some())
        .unwrap_or(false);
    if removed {
        write(&m)?;
    }
    Ok(removed)
}
