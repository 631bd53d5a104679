//! hako-image: the OCI image model and everything that moves images in and out of the
//! store: references, layer apply (whiteouts, safe paths), unpack into layer snapshots,
//! import, load and save.

pub mod apply;
pub mod archive;
pub mod changes;
pub mod compression;
pub mod diff;
pub mod import;
pub mod model;
pub mod reference;
pub mod service;
pub mod tree;
pub mod unpack;

pub use archive::SaveFormat;
pub use import::ImportOptions;
pub use model::{ImageRecord, LayerRecord};
pub use reference::Reference;
pub use service::{Deleted, ImageError, ImageService, ImageSummary};
