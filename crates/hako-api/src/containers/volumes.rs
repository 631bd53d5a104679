//! Named and anonymous volumes: directories under `<root>/volumes/<name>/_data`, recorded in
//! the metadata store, mounted into containers by bind. A fresh volume is seeded from the
//! image's content at its mount point on first use, as Docker does.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use hako_store::meta;

use super::record::ContainerRecord;
use super::Containers;
use crate::error::ApiError;

fn valid_name(n: &str) -> bool {
    n.len() >= 2
        && n.chars().next().map(|c| c.is_ascii_alphanumeric()).unwrap_or(false)
        && n.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

impl Containers {
    pub fn volumes_dir(&self) -> PathBuf {
        self.dir.parent().expect("containers dir has a parent").join("volumes")
    }

    pub fn volume_data(&self, name: &str) -> PathBuf {
        self.volumes_dir().join(name).join("_data")
    }

    /// `volume create`; returns the existing volume when the name is taken, as Docker does.
    pub fn volume_create(&self, name: Option<&str>, labels: Value, anonymous: bool) -> Result<Value, ApiError> {
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) if !valid_name(n) => {
                return Err(ApiError::bad_request(format!(
                    "create {n}: \"{n}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed"
                )))
            }
            Some(n) => n.to_string(),
            None => super::random_id(),
        };
        if let Some(v) = self
            .images
            .meta()
            .get::<Value>(meta::VOLUMES, &name)
            .map_err(|e| ApiError::internal(e.to_string()))?
        {
            return Ok(v);
        }
        let data = self.volume_data(&name);
        std::fs::create_dir_all(&data).map_err(|e| ApiError::internal(format!("creating volume {name}: {e}")))?;
        let v = json!({
            "Name": name, "Driver": "local", "Mountpoint": data.display().to_string(),
            "CreatedAt": hako_image::service::now_rfc3339(), "Labels": if labels.is_null() { json!({}) } else { labels },
            "Scope": "local", "Options": {}, "Anonymous": anonymous, "Seeded": false,
        });
        self.images
            .meta()
            .write(|t| {
                t.put(meta::VOLUMES, &name, &v)?;
                Ok::<_, hako_store::MetaError>(())
            })
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(v)
    }

    pub fn volume_get(&self, name: &str) -> Result<Value, ApiError> {
        self.images
            .meta()
            .get::<Value>(meta::VOLUMES, name)
            .map_err(|e| ApiError::internal(e.to_string()))?
            .ok_or_else(|| ApiError::not_found(format!("get {name}: no such volume")))
    }

    pub fn volume_list(&self) -> Result<Vec<Value>, ApiError> {
        Ok(self
            .images
            .meta()
            .list::<Value>(meta::VOLUMES)
            .map_err(|e| ApiError::internal(e.to_string()))?
            .into_iter()
            .map(|(_, v)| v)
            .collect())
    }

    /// Containers whose mounts use the volume.
    pub fn volume_users(&self, name: &str) -> Vec<String> {
        self.all()
            .iter()
            .filter_map(|e| {
                let r = e.rec.lock().unwrap(); // unwrap: poisoned only after a panic
                r.mounts
                    .iter()
                    .any(|m| m["Type"] == "volume" && m["Name"] == name)
                    .then(|| r.id.clone())
            })
            .collect()
    }

    pub fn volume_remove(&self, name: &str, force: bool) -> Result<(), ApiError> {
        if let Err(e) = self.volume_get(name) {
            return if force { Ok(()) } else { Err(e) };
        }
        let users = self.volume_users(name);
        if !users.is_empty() {
            return Err(ApiError::new(
                http::StatusCode::CONFLICT,
                format!("remove {name}: volume is in use - [{}]", users.join(", ")),
            ));
        }
        self.images
            .meta()
            .write(|t| {
                t.delete(meta::VOLUMES, name)?;
                Ok::<_, hako_store::MetaError>(())
            })
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let _ = std::fs::remove_dir_all(self.volumes_dir().join(name));
        Ok(())
    }

    /// The bytes in a volume's data directory (hard links counted once).
    pub fn volume_size(&self, name: &str) -> u64 {
        super::ops::tree_size(&self.volume_data(name), &mut Default::default())
    }

    /// `volume prune`: unused anonymous volumes (all unused ones with `all`) whose labels pass
    /// `labels` (`key`, `key=value`; `!` before the `=` or at the end excludes). Returns the
    /// names removed and the bytes they held.
    pub fn volume_prune(&self, all: bool, labels: &[String]) -> Result<(Vec<String>, u64), ApiError> {
        let mut gone = Vec::new();
        let mut reclaimed = 0;
        for v in self.volume_list()? {
            let name = v["Name"].as_str().unwrap_or("").to_string();
            let anon = v["Anonymous"].as_bool().unwrap_or(false);
            if (all || anon)
                && labels.iter().all(|f| label_matches(&v["Labels"], f))
                && self.volume_users(&name).is_empty()
            {
                let size = self.volume_size(&name);
                self.volume_remove(&name, false)?;
                gone.push(name);
                reclaimed += size;
            }
        }
        Ok((gone, reclaimed))
    }

    /// The container's mounts from `-v`, `--mount type=volume`, `--volumes-from` and the
    /// image's VOLUMEs.
    pub fn resolve_mounts(&self, host_config: &Value, image_volumes: &[String]) -> Result<Vec<Value>, ApiError> {
        let mounts: &[Value] = host_config
            .get("Mounts")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice);
        let str_of = |m: &Value, k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let targets = mounts.iter().map(|m| (str_of(m, "Type"), str_of(m, "Target")));
        for (kind, target) in targets.chain(image_volumes.iter().map(|p| ("volume".into(), p.clone()))) {
            absolute_target(&kind, &target)?;
        }
        // `--volumes-from NAME[:ro|rw]`: that container's mounts, after the container's own
        // (which win at the same destination); read first, so a bad name makes no volume.
        let mut from: Vec<Value> = Vec::new();
        for spec in host_config
            .get("VolumesFrom")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let spec = spec.as_str().unwrap_or("");
            let (name, mode) = spec.split_once(':').unwrap_or((spec, ""));
            if !matches!(mode, "" | "ro" | "rw") {
                return Err(ApiError::bad_request(format!("invalid mode for volumes-from: {mode}")));
            }
            // A 400, not the 404 of a missing container: on a 404 the docker CLI goes to pull
            // the image.
            let donor = self
                .get(name)
                .map_err(|_| ApiError::bad_request(format!("--volumes-from: no such container: {name}")))?
                .rec
                .lock()
                .unwrap() // unwrap: poisoned only after a panic
                .mounts
                .clone();
            for mut m in donor {
                if !mode.is_empty() {
                    m["RW"] = json!(mode == "rw");
                }
                from.push(m);
            }
        }
        let mut out: Vec<Value> = Vec::new();
        for b in host_config.get("Binds").and_then(Value::as_array).into_iter().flatten() {
            let (src, dst, ro) = super::setup::parse_bind(b.as_str().unwrap_or(""))?;
            if src.starts_with('/') {
                out.push(json!({"Type": "bind", "Source": src, "Destination": dst, "RW": !ro, "Mode": if ro { "ro" } else { "" }}));
            } else {
                let v = self.volume_create(Some(&src), Value::Null, false)?;
                out.push(json!({"Type": "volume", "Name": src, "Source": v["Mountpoint"], "Destination": dst, "Driver": "local", "RW": !ro}));
            }
        }
        for m in mounts {
            if m.get("Type").and_then(Value::as_str) == Some("volume") {
                let dst = m.get("Target").and_then(Value::as_str).unwrap_or("");
                let src = m.get("Source").and_then(Value::as_str).filter(|s| !s.is_empty());
                let v = self.volume_create(src, Value::Null, src.is_none())?;
                let ro = m.get("ReadOnly").and_then(Value::as_bool).unwrap_or(false);
                out.push(json!({"Type": "volume", "Name": v["Name"], "Source": v["Mountpoint"], "Destination": dst, "Driver": "local", "RW": !ro}));
            }
        }
        for m in from {
            if !out.iter().any(|o| o["Destination"] == m["Destination"]) {
                out.push(m);
            }
        }
        for path in image_volumes {
            if out.iter().any(|m| m["Destination"] == path.as_str()) {
                continue;
            }
            let v = self.volume_create(None, Value::Null, true)?;
            out.push(json!({"Type": "volume", "Name": v["Name"], "Source": v["Mountpoint"], "Destination": path, "Driver": "local", "RW": true}));
        }
        Ok(out)
    }

    /// Copies the image's content at each volume's mount point into the volume on its first
    /// use, when the volume is empty.
    pub fn seed_volumes(&self, rec: &ContainerRecord) -> Result<(), ApiError> {
        let img = self.images.resolve(&rec.image)?;
        let layers: Vec<PathBuf> = img
            .layers
            .iter()
            .map(|l| self.images.snapshot_path(&l.chain_id))
            .collect();
        for m in rec.mounts.iter().filter(|m| m["Type"] == "volume") {
            let name = m["Name"].as_str().unwrap_or("");
            let mut v = self.volume_get(name)?;
            if v["Seeded"].as_bool().unwrap_or(false) {
                continue;
            }
            let data = self.volume_data(name);
            let empty = std::fs::read_dir(&data)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
            if empty {
                let rel = m["Destination"].as_str().unwrap_or("/").trim_start_matches('/');
                for layer in &layers {
                    overlay_copy(&layer.join(rel), &data)
                        .map_err(|e| ApiError::internal(format!("seeding volume {name}: {e}")))?;
                }
            }
            v["Seeded"] = json!(true);
            self.images
                .meta()
                .write(|t| {
                    t.put(meta::VOLUMES, name, &v)?;
                    Ok::<_, hako_store::MetaError>(())
                })
                .map_err(|e| ApiError::internal(e.to_string()))?;
        }
        Ok(())
    }
}

/// Applies one layer's directory onto `dst`: files and dirs copied over, overlay whiteouts
/// (0/0 character devices) delete what lower layers put there.
fn overlay_copy(src: &Path, dst: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    let Ok(rd) = std::fs::read_dir(src) else { return Ok(()) };
    for ent in rd {
        let ent = ent?;
        let m = std::fs::symlink_metadata(ent.path())?;
        let target = dst.join(ent.file_name());
        if m.file_type().is_char_device() && m.rdev() == 0 {
            let _ = std::fs::remove_dir_all(&target).or_else(|_| std::fs::remove_file(&target));
        } else if m.is_dir() {
            std::fs::create_dir_all(&target)?;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
            let _ = rustix::fs::chown(
                &target,
                Some(rustix::fs::Uid::from_raw(m.uid())),
                Some(rustix::fs::Gid::from_raw(m.gid())),
            );
            overlay_copy(&ent.path(), &target)?;
        } else if m.file_type().is_symlink() {
            let _ = std::fs::remove_file(&target);
            std::os::unix::fs::symlink(std::fs::read_link(ent.path())?, &target)?;
        } else if m.is_file() {
            let _ = std::fs::remove_file(&target);
            std::fs::copy(ent.path(), &target)?;
            let _ = rustix::fs::chown(
                &target,
                Some(rustix::fs::Uid::from_raw(m.uid())),
                Some(rustix::fs::Gid::from_raw(m.gid())),
            );
        }
    }
    Ok(())
}

/// A volume's mount point must be absolute (checked before any volume is made, so a refused
/// spec leaves none behind).
fn absolute_target(kind: &str, path: &str) -> Result<(), ApiError> {
    if path.starts_with('/') {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "invalid mount config for type \"{kind}\": invalid mount path: '{path}' mount path must be absolute"
    )))
}

/// Docker's label filter on one volume: `key`, `key=value`, or with `!` (`key!`, `key!=value`)
/// the volumes that do not match.
pub(crate) fn label_matches(labels: &Value, filter: &str) -> bool {
    let (key, value, negate) = match filter.split_once('=') {
        Some((k, v)) => match k.strip_suffix('!') {
            Some(k) => (k, Some(v), true),
            None => (k, Some(v), false),
        },
        None => match filter.strip_suffix('!') {
            Some(k) => (k, None, true),
            None => (filter, None, false),
        },
    };
    let found = match (labels.get(key), value) {
        (Some(have), Some(want)) => have.as_str() == Some(want),
        (Some(_), None) => true,
        (None, _) => false,
    };
    found != negate
}

#[cfg(test)]
mod tests {
    use super::label_matches;
    use serde_json::json;

    #[test]
    fn label_filters_match_as_dockers_do() {
        let l = json!({"tier": "db", "keep": ""});
        assert!(label_matches(&l, "tier"));
        assert!(label_matches(&l, "tier=db"));
        assert!(!label_matches(&l, "tier=web"));
        assert!(!label_matches(&l, "tier!=db"));
        assert!(label_matches(&l, "tier!=web"));
        assert!(!label_matches(&l, "keep!"));
        assert!(label_matches(&l, "other!"));
        assert!(!label_matches(&json!({}), "tier"));
    }
}
