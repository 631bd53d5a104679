//! Compression detected from a stream's first bytes, as Docker does for layers and imports.

use std::io::{self, BufRead, Read};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Xz,
    Bzip2,
}

impl Compression {
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            Compression::Xz
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else {
            Compression::None
        }
    }

    /// Peeks at a buffered stream without consuming it.
    pub fn sniff<R: BufRead>(r: &mut R) -> io::Result<Compression> {
        // fill_buf returns at least what one read gives; 6 bytes arrive in any first read
        // of a real file or socket, and a shorter stream is not a compressed one.
        let head = r.fill_buf()?;
        Ok(Compression::detect(head))
    }

    /// The OCI layer media type for a blob stored with this compression. xz and bzip2 have
    /// none, so such input is stored decompressed.
    pub fn layer_media_type(self) -> Option<&'static str> {
        match self {
            Compression::None => Some("application/vnd.oci.image.layer.v1.tar"),
            Compression::Gzip => Some("application/vnd.oci.image.layer.v1.tar+gzip"),
            Compression::Zstd => Some("application/vnd.oci.image.layer.v1.tar+zstd"),
            Compression::Xz | Compression::Bzip2 => None,
        }
    }

    /// A reader of the decompressed bytes.
    pub fn decoder<'a, R: BufRead + Send + 'a>(self, r: R) -> io::Result<Box<dyn Read + Send + 'a>> {
        Ok(match self {
            Compression::None => Box::new(r),
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
            Compression::Xz => Box::new(xz2::bufread::XzDecoder::new_multi_decoder(r)),
            Compression::Bzip2 => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "bzip2-compressed input is not supported; decompress it first (bunzip2) or use gzip, zstd or xz",
                ))
            }
        })
    }
}

/// From a layer descriptor's media type.
pub fn from_media_type(mt: &str) -> Compression {
    if mt.ends_with("+gzip") || mt.ends_with(".gzip") || mt == "application/vnd.docker.image.rootfs.diff.tar.gzip" {
        Compression::Gzip
    } else if mt.ends_with("+zstd") || mt.ends_with(".zstd") {
        Compression::Zstd
    } else {
        Compression::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn detects_and_decodes_each() {
        let plain = b"hello world, plain text".to_vec();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&plain[..], 1).unwrap();
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(&plain).unwrap();
        let xz = xz.finish().unwrap();
        for (bytes, c) in [
            (&plain, Compression::None),
            (&gz, Compression::Gzip),
            (&zst, Compression::Zstd),
            (&xz, Compression::Xz),
        ] {
            let mut r = io::BufReader::new(&bytes[..]);
            assert_eq!(Compression::sniff(&mut r).unwrap(), c);
            let mut out = Vec::new();
            c.decoder(r).unwrap().read_to_end(&mut out).unwrap();
            assert_eq!(out, plain);
        }
        assert!(Compression::Bzip2.decoder(&b"BZh9"[..]).is_err());
    }
}
