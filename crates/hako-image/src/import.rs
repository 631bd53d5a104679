//! `import`: a rootfs tarball becomes a one-layer image, in one pass.
//!
//! The caller's thread reads the input, writes it to a content-store ingest (hashing the
//! blob) and hands each chunk to a second thread that decompresses, hashes the diff ID and
//! unpacks the layer, so the two halves run on both cores at once.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::mpsc::{sync_channel, Receiver};

use serde_json::{json, Map, Value};

use hako_store::{Digest, Lease};

use crate::changes::apply_change;
use crate::compression::Compression;
use crate::model::{oci_manifest, ImageRecord, LayerRecord};
use crate::reference::Reference;
use crate::service::{now_rfc3339, ImageError, ImageService};
use crate::unpack::Unpacked;

const CHUNK: usize = 1 << 20;

pub struct ImportOptions<'a> {
    pub changes: &'a [String],
    pub message: &'a str,
    pub tag: Option<&'a Reference>,
    /// Where the tarball came from, for the history comment (`-` for stdin).
    pub source: &'a str,
}

impl ImageService {
    pub fn import<R: Read + Send>(&self, src: R, opts: &ImportOptions) -> Result<ImageRecord, ImageError> {
        // Validate the changes before reading a byte, so a typo costs nothing.
        let mut cfg = Map::new();
        for c in opts.changes {
            apply_change(&mut cfg, c)?;
        }
        let lease = self.lease();
        let mut src = BufReader::with_capacity(CHUNK, src);
        let comp = Compression::sniff(&mut src).map_err(ImageError::io("reading the import stream"))?;
        let (blob, blob_size, unpacked, stored_as) = match comp.layer_media_type() {
            Some(mt) => {
                let (b, s, u) = self.ingest_and_unpack(&lease, src, comp)?;
                (b, s, u, mt)
            }
            // No OCI media type for xz or bzip2: store the decompressed tar.
            None => {
                let dec = comp.decoder(src).map_err(|e| ImageError::InvalidInput(e.to_string()))?;
                let (b, s, u) =
                    self.ingest_and_unpack(&lease, BufReader::with_capacity(CHUNK, dec), Compression::None)?;
                (
                    b,
                    s,
                    u,
                    Compression::None
                        .layer_media_type()
                        .expect("plain tar has a media type"),
                )
            }
        };
        let now = now_rfc3339();
        let comment = if opts.message.is_empty() {
            format!("Imported from {}", opts.source)
        } else {
            opts.message.to_string()
        };
        let config = json!({
            "architecture": host_arch(),
            "os": "linux",
            "created": now,
            "comment": comment,
            "config": Value::Object(cfg),
            "rootfs": {"type": "layers", "diff_ids": [unpacked.diff_id.to_string()]},
            "history": [{"created": now, "comment": comment}],
        });
        let config_bytes = serde_json::to_vec(&config).expect("json of plain values"); // invariant
        let layer = LayerRecord {
            blob,
            media_type: stored_as.to_string(),
            blob_size,
            diff_id: unpacked.diff_id,
            chain_id: unpacked.chain_id,
            size: unpacked.size,
            tar_size: unpacked.tar_size,
        };
        let rec = self.finish_image(&lease, &config_bytes, vec![layer], Some(now))?;
        let tags: Vec<Reference> = opts.tag.cloned().into_iter().collect();
        self.register(&rec, &tags, &[])?;
        Ok(rec)
    }

    /// Stores the config and a generated OCI manifest; returns the record to register.
    pub fn finish_image(
        &self,
        lease: &Lease,
        config_bytes: &[u8],
        layers: Vec<LayerRecord>,
        created: Option<String>,
    ) -> Result<ImageRecord, ImageError> {
        let id = self.content.write_blob(lease, config_bytes)?;
        let descs: Vec<(Digest, String, u64)> = layers
            .iter()
            .map(|l| (l.blob.clone(), l.media_type.clone(), l.blob_size))
            .collect();
        let manifest = self
            .content
            .write_blob(lease, &oci_manifest(&id, config_bytes.len() as u64, &descs))?;
        Ok(ImageRecord {
            id,
            manifest,
            layers,
            created,
            last_tag_time: None,
        })
    }

    /// Writes the raw stream to the content store while a second thread unpacks it.
    fn ingest_and_unpack<R: BufRead + Send>(
        &self,
        lease: &Lease,
        mut src: R,
        comp: Compression,
    ) -> Result<(Digest, u64, Unpacked), ImageError> {
        let (tx, rx) = sync_channel::<Result<Vec<u8>, String>>(8);
        std::thread::scope(|s| {
            let unpacker = s.spawn(move || -> Result<Unpacked, ImageError> {
                let reader = BufReader::with_capacity(CHUNK, ChannelReader::new(rx));
                let dec = comp.decoder(reader).map_err(ImageError::io("starting decompression"))?;
                Ok(self.snapshots.unpack(lease, dec, None, None)?)
            });
            let mut ing = self.content.ingest()?;
            let mut read_err = None;
            loop {
                let mut buf = vec![0u8; CHUNK];
                let n = match read_full(&mut src, &mut buf) {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        read_err = Some(e);
                        break;
                    }
                };
                if n == 0 {
                    break;
                }
                buf.truncate(n);
                if let Err(e) = ing.write_all(&buf) {
                    let _ = tx.send(Err(e.to_string()));
                    read_err = Some(e);
                    break;
                }
                if tx.send(Ok(buf)).is_err() {
                    break; // the unpacker stopped; its error says why
                }
            }
            drop(tx);
            let unpacked = unpacker
                .join()
                .map_err(|_| ImageError::InvalidInput("layer unpack thread panicked".into()))?;
            if let Some(e) = read_err {
                return Err(ImageError::Io {
                    context: "reading the import stream".into(),
                    source: e,
                });
            }
            let unpacked = unpacked?;
            let size = ing.written();
            let blob = self.content.commit(ing, lease, None, None)?;
            Ok((blob, size, unpacked))
        })
    }
}

struct ChannelReader {
    rx: Receiver<Result<Vec<u8>, String>>,
    cur: Vec<u8>,
    pos: usize,
}

impl ChannelReader {
    fn new(rx: Receiver<Result<Vec<u8>, String>>) -> Self {
        ChannelReader {
            rx,
            cur: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(v)) => {
                    self.cur = v;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(io::Error::other(e)),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

pub(crate) fn read_full<R: Read>(src: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}
