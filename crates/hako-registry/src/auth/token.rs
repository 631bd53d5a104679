//! Bearer tokens of the Docker token flow: compact JWTs (`header.claims.signature`,
//! base64url) signed with Ed25519 (`EdDSA`) or HMAC-SHA256 (`HS256`), carrying the granted
//! `access` list as distribution's token server does. Clients treat them as opaque.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::Signing;

/// One granted (or requested) access: `repository:name:pull,push`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

impl Access {
    /// Parses a `scope` parameter item: `type:name:action,action`. Names never hold `:`
    /// in valid repositories, but a type may carry a class (`repository(plugin)`), so the
    /// name is what lies between the first and the last colon.
    pub fn parse(scope: &str) -> Option<Access> {
        let (kind, rest) = scope.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        let kind = kind.split('(').next().unwrap_or(kind);
        Some(Access {
            kind: kind.to_string(),
            name: name.to_string(),
            actions: actions.split(',').filter(|a| !a.is_empty()).map(String::from).collect(),
        })
    }

    pub fn to_scope(&self) -> String {
        format!("{}:{}:{}", self.kind, self.name, self.actions.join(","))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    pub access: Vec<Access>,
}

enum Key {
    Ed25519(Ed25519KeyPair),
    Hmac(ring::hmac::Key),
}

pub struct Signer {
    key: Key,
    pub issuer: String,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Signer {
    /// Loads the signing key from `path`, creating it (mode 0600) on first use.
    pub fn load_or_create(path: &Path, signing: Signing, issuer: &str) -> Result<Signer, String> {
        let rng = ring::rand::SystemRandom::new();
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let b = match signing {
                    Signing::Ed25519 => Ed25519KeyPair::generate_pkcs8(&rng)
                        .map_err(|_| "generating an Ed25519 key failed".to_string())?
                        .as_ref()
                        .to_vec(),
                    Signing::Hmac => {
                        let mut k = vec![0u8; 32];
                        ring::rand::SecureRandom::fill(&rng, &mut k).map_err(|_| "the random source failed")?;
                        k
                    }
                };
                use std::os::unix::fs::OpenOptionsExt;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| format!("creating token key {}: {e}", path.display()))?;
                std::io::Write::write_all(&mut f, &b).map_err(|e| format!("writing {}: {e}", path.display()))?;
                f.sync_all().map_err(|e| format!("writing {}: {e}", path.display()))?;
                b
            }
            Err(e) => return Err(format!("reading token key {}: {e}", path.display())),
        };
        let key = match signing {
            Signing::Ed25519 => Key::Ed25519(Ed25519KeyPair::from_pkcs8(&bytes).map_err(|_| {
                format!(
                    "token key {} is not an Ed25519 PKCS#8 key (signing = \"ed25519\"); remove it to have one made",
                    path.display()
                )
            })?),
            Signing::Hmac => {
                if bytes.len() < 32 {
                    return Err(format!("token key {} is shorter than 32 bytes", path.display()));
                }
                Key::Hmac(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &bytes))
            }
        };
        Ok(Signer {
            key,
            issuer: issuer.to_string(),
        })
    }

    fn alg(&self) -> &'static str {
        match self.key {
            Key::Ed25519(_) => "EdDSA",
            Key::Hmac(_) => "HS256",
        }
    }

    pub fn issue(&self, subject: &str, audience: &str, access: Vec<Access>, ttl: Duration) -> String {
        let t = now();
        let mut jti = [0u8; 12];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut jti);
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: subject.to_string(),
            aud: audience.to_string(),
            exp: t + ttl.as_secs(),
            nbf: t.saturating_sub(10),
            iat: t,
            jti: hex::encode(jti),
            access,
        };
        let header = json!({"typ": "JWT", "alg": self.alg()});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("plain claims")) // invariant
        );
        let sig = match &self.key {
            Key::Ed25519(k) => k.sign(signing_input.as_bytes()).as_ref().to_vec(),
            Key::Hmac(k) => ring::hmac::sign(k, signing_input.as_bytes()).as_ref().to_vec(),
        };
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// Checks signature, algorithm, issuer, audience and lifetime; returns the claims.
    pub fn verify(&self, token: &str, audience: &str) -> Result<Claims, &'static str> {
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err("malformed token");
        };
        let header: serde_json::Value = URL_SAFE_NO_PAD
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("malformed token header")?;
        // The algorithm is ours to choose, never the token's: refuse any other.
        if header.get("alg").and_then(|a| a.as_str()) != Some(self.alg()) {
            return Err("token signed with another algorithm");
        }
        let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| "malformed token signature")?;
        let input = &token[..h.len() + 1 + c.len()];
        let ok = match &self.key {
            Key::Ed25519(k) => UnparsedPublicKey::new(&ED25519, k.public_key().as_ref())
                .verify(input.as_bytes(), &sig)
                .is_ok(),
            Key::Hmac(k) => ring::hmac::verify(k, input.as_bytes(), &sig).is_ok(),
        };
        if !ok {
            return Err("token signature is invalid");
        }
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(c)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("malformed token claims")?;
        let t = now();
        if claims.iss != self.issuer || claims.aud != audience {
            return Err("token was issued for another service");
        }
        if t >= claims.exp || t < claims.nbf {
            return Err("token has expired");
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_verify_and_tamper() {
        let dir = tempfile::tempdir().unwrap();
        for signing in [Signing::Ed25519, Signing::Hmac] {
            let path = dir.path().join(format!("{signing:?}.key"));
            let s = Signer::load_or_create(&path, signing, "hako").unwrap();
            let acc = vec![Access::parse("repository:a/b:pull,push").unwrap()];
            let t = s.issue("alice", "svc", acc.clone(), Duration::from_secs(60));
            let c = s.verify(&t, "svc").unwrap();
            assert_eq!(c.access, acc);
            assert_eq!(c.sub, "alice");
            assert!(s.verify(&t, "other").is_err());
            // Same key reloaded still verifies; a flipped claim does not.
            let s2 = Signer::load_or_create(&path, signing, "hako").unwrap();
            assert!(s2.verify(&t, "svc").is_ok());
            let mut parts: Vec<String> = t.split('.').map(String::from).collect();
            let forged = serde_json::to_vec(&Claims {
                sub: "mallory".into(),
                ..c
            })
            .unwrap();
            parts[1] = URL_SAFE_NO_PAD.encode(forged);
            assert!(s.verify(&parts.join("."), "svc").is_err());
        }
        assert_eq!(
            Access::parse("repository:localhost/x:pull").unwrap().name,
            "localhost/x"
        );
        assert_eq!(Access::parse("registry:catalog:*").unwrap().actions, vec!["*"]);
    }
}
