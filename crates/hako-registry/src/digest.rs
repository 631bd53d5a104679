//! Registry digests: `sha256:<64 hex>` and `sha512:<128 hex>`, parsed strictly so a digest
//! can name a file. (The engine's content store keeps sha256 only; the registry stores both,
//! as the distribution spec asks.)

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256, Sha512};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }
    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
    pub fn hasher(self) -> Hasher {
        match self {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Box::new(Sha512::new())),
        }
    }
    pub fn all() -> [Algorithm; 2] {
        [Algorithm::Sha256, Algorithm::Sha512]
    }
    pub fn from_name(s: &str) -> Option<Algorithm> {
        match s {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    alg: Algorithm,
    hex: String,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid digest {0:?}: expected sha256:<64 hex> or sha512:<128 hex>, lower case")]
pub struct DigestError(pub String);

impl Digest {
    pub fn new(alg: Algorithm, hex: &str) -> Result<Digest, DigestError> {
        if hex.len() == alg.hex_len() && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(Digest {
                alg,
                hex: hex.to_string(),
            })
        } else {
            Err(DigestError(format!("{}:{hex}", alg.name())))
        }
    }

    pub fn of(alg: Algorithm, bytes: &[u8]) -> Digest {
        let mut h = alg.hasher();
        h.update(bytes);
        h.finish()
    }

    pub fn sha256(bytes: &[u8]) -> Digest {
        Digest::of(Algorithm::Sha256, bytes)
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The engine's digest type (sha256 only).
    pub fn to_store(&self) -> Option<hako_store::Digest> {
        match self.alg {
            Algorithm::Sha256 => hako_store::Digest::from_hex(&self.hex).ok(),
            Algorithm::Sha512 => None,
        }
    }

    pub fn from_store(d: &hako_store::Digest) -> Digest {
        Digest {
            alg: Algorithm::Sha256,
            hex: d.hex().to_string(),
        }
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (alg, hex) = s.split_once(':').ok_or_else(|| DigestError(s.to_string()))?;
        let alg = Algorithm::from_name(alg).ok_or_else(|| DigestError(s.to_string()))?;
        Digest::new(alg, hex).map_err(|_| DigestError(s.to_string()))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.alg.name(), self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A running hash of either algorithm.
#[derive(Clone)]
pub enum Hasher {
    Sha256(Sha256),
    Sha512(Box<Sha512>),
}

impl Hasher {
    pub fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(b),
            Hasher::Sha512(h) => h.update(b),
        }
    }
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        }
    }
    pub fn finish(self) -> Digest {
        match self {
            Hasher::Sha256(h) => Digest {
                alg: Algorithm::Sha256,
                hex: hex::encode(h.finalize()),
            },
            Hasher::Sha512(h) => Digest {
                alg: Algorithm::Sha512,
                hex: hex::encode(h.finalize()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_algorithms_strictly() {
        let d = Digest::sha256(b"");
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        let e = Digest::of(Algorithm::Sha512, b"");
        assert!(e.to_string().starts_with("sha512:cf83e135"));
        assert_eq!(e.to_string().parse::<Digest>().unwrap(), e);
        for bad in [
            "sha256:../../etc/passwd",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256",
            "",
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad} accepted");
        }
    }
}
