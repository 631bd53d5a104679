//! The layer cache: a step's key is the parent image, the instruction as it reads after
//! expansion, and what else decides its result (the content hash of the files COPY and ADD
//! read, the build args RUN sees); the value is the image the step made. An entry whose
//! image was removed since is a miss.

use sha2::{Digest as _, Sha256};

use hako_image::model::ImageRecord;
use hako_image::ImageService;
use hako_store::meta;

/// The key of a step on `parent` (an image ID, or `scratch`).
pub fn key(parent: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(parent.as_bytes());
    for p in parts {
        // Lengths first: ("ab", "c") and ("a", "bc") must differ.
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

pub fn lookup(images: &ImageService, key: &str) -> Option<ImageRecord> {
    let id: String = images.meta().get(meta::BUILD_CACHE, key).ok()??;
    images.resolve(&id).ok()
}

pub fn store(images: &ImageService, key: &str, image: &ImageRecord) {
    let id = image.id.to_string();
    if let Err(e) = images.meta().write_eventual(|t| t.put(meta::BUILD_CACHE, key, &id)) {
        tracing::warn!(error = %e, "cannot record a build cache entry");
    }
}

/// An image a build may take steps from (`--cache-from`), with what matching needs.
pub struct Source {
    image: ImageRecord,
    /// (created_by, made a layer) of each history entry.
    history: Vec<(String, bool)>,
    diff_ids: Vec<String>,
}

/// (created_by, made a layer) and diff IDs of an image's config.
fn lineage(config: &serde_json::Value) -> (Vec<(String, bool)>, Vec<String>) {
    let history = config
        .get("history")
        .and_then(|h| h.as_array())
        .into_iter()
        .flatten()
        .map(|e| {
            let by = e.get("created_by").and_then(|v| v.as_str()).unwrap_or("").to_string();
            let empty = e.get("empty_layer").and_then(|v| v.as_bool()).unwrap_or(false);
            (by, !empty)
        })
        .collect();
    let diffs = config
        .pointer("/rootfs/diff_ids")
        .and_then(|d| d.as_array())
        .into_iter()
        .flatten()
        .filter_map(|d| d.as_str().map(String::from))
        .collect();
    (history, diffs)
}

impl Source {
    pub fn new(images: &ImageService, image: ImageRecord) -> Result<Source, hako_image::ImageError> {
        let (history, diff_ids) = lineage(&images.config(&image)?);
        Ok(Source {
            image,
            history,
            diff_ids,
        })
    }
}

/// The step that follows `parent` with `created_by` in one of the `sources`, the classic
/// builder's way: a source whose history and layers begin as the parent's and whose next
/// history entry is the step's. Returns that step's layer (None: it made none).
pub fn from_sources<'a>(
    images: &ImageService,
    sources: &'a [Source],
    parent: Option<&ImageRecord>,
    created_by: &str,
) -> Option<Option<&'a hako_image::LayerRecord>> {
    let (p_hist, p_diffs) = match parent {
        Some(p) => lineage(&images.config(p).ok()?),
        None => (Vec::new(), Vec::new()),
    };
    sources.iter().find_map(|s| {
        let (by, layered) = s.history.get(p_hist.len())?;
        let fits = s.history.starts_with(&p_hist) && s.diff_ids.starts_with(&p_diffs) && by == created_by;
        if !fits {
            return None;
        }
        if *layered {
            s.image.layers.get(p_diffs.len()).map(Some)
        } else {
            Some(None)
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_separate_their_parts() {
        assert_ne!(super::key("p", &["ab", "c"]), super::key("p", &["a", "bc"]));
        assert_eq!(super::key("p", &["x"]), super::key("p", &["x"]));
        assert_ne!(super::key("p", &["x"]), super::key("q", &["x"]));
    }
}
