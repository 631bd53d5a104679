//! Manifests the registry accepts (OCI image manifest and index, Docker schema2 manifest and
//! manifest list) and what they reference: what a push must already have stored, what GC
//! must keep, and the subject the referrers API indexes.

use serde_json::{json, Map, Value};

use crate::digest::Digest;
use crate::error::{Code, RegistryError};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

pub const ALL_MANIFEST_TYPES: [&str; 4] = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST];

/// The default manifest size limit (distribution's and the spec's suggestion: 4 MiB).
pub const MAX_MANIFEST_SIZE: usize = 4 << 20;

pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// A referenced descriptor.
#[derive(Debug, Clone, PartialEq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    /// Layers with `urls` (foreign, non-distributable) need not be in the registry.
    pub foreign: bool,
}

#[derive(Debug, Clone)]
pub struct Manifest {
    pub media_type: String,
    /// Config and layers (image manifests).
    pub blobs: Vec<Descriptor>,
    /// Child manifests (indexes).
    pub manifests: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    pub artifact_type: Option<String>,
    pub annotations: Option<Map<String, Value>>,
}

fn invalid(msg: impl Into<String>) -> RegistryError {
    RegistryError::new(Code::ManifestInvalid, msg)
}

fn descriptor(v: &Value, what: &str) -> Result<Descriptor, RegistryError> {
    let media_type = v
        .get("mediaType")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{what}: descriptor without mediaType")))?
        .to_string();
    let digest: Digest = v
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{what}: descriptor without digest")))?
        .parse()
        .map_err(|e: crate::digest::DigestError| invalid(format!("{what}: {e}")))?;
    let size = v
        .get("size")
        .and_then(Value::as_u64)
        .ok_or_else(|| invalid(format!("{what}: descriptor without a valid size")))?;
    let foreign = v
        .get("urls")
        .and_then(Value::as_array)
        .map(|u| !u.is_empty())
        .unwrap_or(false);
    Ok(Descriptor {
        media_type,
        digest,
        size,
        foreign,
    })
}

impl Manifest {
    /// Parses a manifest as pushed with `content_type` (the request's `Content-Type`, which
    /// may be empty: then the body's `mediaType` decides).
    pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, RegistryError> {
        let v: Value =
            serde_json::from_slice(bytes).map_err(|e| invalid(format!("manifest is not valid JSON: {e}")))?;
        let obj = v.as_object().ok_or_else(|| invalid("manifest is not a JSON object"))?;
        if obj.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
            return Err(invalid(
                "unsupported schemaVersion: only schema 2 manifests are accepted",
            ));
        }
        let body_type = obj.get("mediaType").and_then(Value::as_str);
        let ct = content_type
            .map(|c| c.split(';').next().unwrap_or("").trim())
            .filter(|c| !c.is_empty());
        let media_type = match (ct, body_type) {
            (Some(c), Some(b)) if c != b => {
                return Err(invalid(format!(
                    "Content-Type {c} does not match the manifest's mediaType {b}"
                )))
            }
            (Some(c), _) => c.to_string(),
            (None, Some(b)) => b.to_string(),
            (None, None) => {
                // An OCI manifest may omit mediaType; its shape tells which it is.
                if obj.contains_key("manifests") {
                    OCI_INDEX.to_string()
                } else {
                    OCI_MANIFEST.to_string()
                }
            }
        };
        if !ALL_MANIFEST_TYPES.contains(&media_type.as_str()) {
            return Err(invalid(format!(
                "unsupported manifest media type {media_type}: use an OCI image manifest or index, or a Docker schema2 manifest or manifest list"
            ))
            .detail(json!({"mediaType": media_type})));
        }
        let mut m = Manifest {
            media_type: media_type.clone(),
            blobs: vec![],
            manifests: vec![],
            subject: None,
            artifact_type: obj.get("artifactType").and_then(Value::as_str).map(String::from),
            annotations: obj.get("annotations").and_then(Value::as_object).cloned(),
        };
        if is_index(&media_type) {
            let list = obj
                .get("manifests")
                .and_then(Value::as_array)
                .ok_or_else(|| invalid("index without a manifests list"))?;
            for (i, d) in list.iter().enumerate() {
                m.manifests.push(descriptor(d, &format!("manifests[{i}]"))?);
            }
        } else {
            let config = obj.get("config").ok_or_else(|| invalid("manifest without config"))?;
            m.blobs.push(descriptor(config, "config")?);
            if m.artifact_type.is_none() && media_type == OCI_MANIFEST {
                // The spec: an image manifest's artifact type defaults to its config's type.
                m.artifact_type = Some(m.blobs[0].media_type.clone());
            }
            let layers = match obj.get("layers") {
                Some(Value::Array(l)) => l.clone(),
                None if media_type == OCI_MANIFEST => vec![],
                _ => return Err(invalid("manifest without a layers list")),
            };
            for (i, d) in layers.iter().enumerate() {
                m.blobs.push(descriptor(d, &format!("layers[{i}]"))?);
            }
        }
        if let Some(s) = obj.get("subject") {
            m.subject = Some(descriptor(s, "subject")?);
        }
        Ok(m)
    }

    /// Every digest this manifest keeps alive (for GC): blobs, child manifests, and not the
    /// subject (a referrer does not keep its subject).
    pub fn references(&self) -> impl Iterator<Item = &Digest> {
        self.blobs.iter().chain(self.manifests.iter()).map(|d| &d.digest)
    }
}

/// The descriptor of a referrer, as the referrers API lists it.
pub fn referrer_descriptor(m: &Manifest, digest: &Digest, size: u64) -> Value {
    let mut d = json!({"mediaType": m.media_type, "digest": digest.to_string(), "size": size});
    if let Some(a) = &m.artifact_type {
        d["artifactType"] = json!(a);
    }
    if let Some(a) = &m.annotations {
        d["annotations"] = Value::Object(a.clone());
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let d = Digest::sha256(b"x").to_string();
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"c","digest":"{d}","size":1}},
            "layers":[{{"mediaType":"l","digest":"{d}","size":1}}]}}"#
        );
        let p = Manifest::parse(m.as_bytes(), Some(DOCKER_MANIFEST)).unwrap();
        assert_eq!(p.blobs.len(), 2);
        assert!(Manifest::parse(m.as_bytes(), Some(OCI_MANIFEST)).is_err());
        let e = Manifest::parse(br#"{"schemaVersion":2,"config":{}}"#, Some("application/x-unknown")).unwrap_err();
        assert_eq!(e.code, Code::ManifestInvalid);
        let sub = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.example","digest":"{d}","size":1}},"layers":[],
            "subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{d}","size":1}}}}"#
        );
        let p = Manifest::parse(sub.as_bytes(), None).unwrap();
        assert_eq!(p.media_type, OCI_MANIFEST);
        assert_eq!(p.artifact_type.as_deref(), Some("application/vnd.example"));
        assert!(p.subject.is_some());
    }
}
