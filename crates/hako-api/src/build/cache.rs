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

#[cfg(test)]
mod tests {
    #[test]
    fn keys_separate_their_parts() {
        assert_ne!(super::key("p", &["ab", "c"]), super::key("p", &["a", "bc"]));
        assert_eq!(super::key("p", &["x"]), super::key("p", &["x"]));
        assert_ne!(super::key("p", &["x"]), super::key("q", &["x"]));
    }
}
