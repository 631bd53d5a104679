//! hako's image records and the OCI documents they point to.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use hako_store::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// One layer of an image as stored: the blob as it came (maybe compressed) and what it
/// unpacks to.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LayerRecord {
    /// Digest of the stored blob.
    pub blob: Digest,
    pub media_type: String,
    pub blob_size: u64,
    /// Digest of the uncompressed tar (the config's `rootfs.diff_ids` entry).
    pub diff_id: Digest,
    /// Chain ID: names the unpacked snapshot of this layer over its parents.
    pub chain_id: Digest,
    /// Sum of the layer's regular file sizes.
    pub size: u64,
    /// Bytes of the uncompressed tar (to stream it into an archive without buffering).
    pub tar_size: u64,
}

/// An image: its config (whose digest is the image ID), the manifest hako keeps for it, and
/// its layers bottom-up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    pub id: Digest,
    pub manifest: Digest,
    pub layers: Vec<LayerRecord>,
    /// RFC 3339, from the config's `created`.
    pub created: Option<String>,
    /// When a tag was last put on it (RFC 3339).
    pub last_tag_time: Option<String>,
}

impl ImageRecord {
    pub fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }
}

/// chainID(L0) = diffID(L0); chainID(Ln) = sha256(chainID(Ln-1) + " " + diffID(Ln)).
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(parent) => {
                let mut h = Sha256::new();
                h.update(format!("{parent} {d}").as_bytes());
                Digest::from_hasher(h)
            }
        };
        out.push(next);
    }
    out
}

/// Builds the OCI manifest hako stores for an image.
pub fn oci_manifest(config: &Digest, config_size: u64, layers: &[(Digest, String, u64)]) -> Vec<u8> {
    let v = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config.to_string(), "size": config_size},
        "layers": layers.iter().map(|(d, mt, size)| serde_json::json!({
            "mediaType": mt, "digest": d.to_string(), "size": size
        })).collect::<Vec<_>>(),
    });
    serde_json::to_vec(&v).expect("json of plain values") // invariant: no maps with non-string keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_id_matches_docker() {
        // Two layers of a known image: chainID(1) = sha256("sha256:a sha256:b").
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], Digest::of(format!("{a} {b}").as_bytes()));
    }
}

#[cfg(test)]
mod docker_schema2 {
    use oci_spec::image::{ImageIndex, ImageManifest};

    #[test]
    fn reads_docker_manifests_and_lists() {
        let m = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
            "config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":1469,
              "digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
            "layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":2,
              "digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}]}"#;
        let m = ImageManifest::from_reader(m.as_bytes()).unwrap();
        assert_eq!(m.layers().len(), 1);
        assert_eq!(
            crate::compression::from_media_type(m.layers()[0].media_type().as_ref()),
            crate::compression::Compression::Gzip
        );
        let l = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json",
            "manifests":[{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":527,
              "digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
              "platform":{"architecture":"amd64","os":"linux"}}]}"#;
        let l = ImageIndex::from_reader(l.as_bytes()).unwrap();
        assert_eq!(l.manifests()[0].platform().as_ref().unwrap().os().to_string(), "linux");
    }
}
