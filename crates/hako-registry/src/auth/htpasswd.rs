//! htpasswd files with bcrypt entries (`htpasswd -B`), as distribution reads them.
//!
//! bcrypt is slow on purpose (tens of ms), and clients using basic auth send the password
//! with every request, so a verified (user, password hash) pair is remembered for a minute.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

pub struct Htpasswd {
    users: HashMap<String, String>,
    verified: Mutex<HashMap<(String, [u8; 32]), Instant>>,
}

const REMEMBER: Duration = Duration::from_secs(60);

/// An htpasswd line (`user:$2y$...`) for `password`; `cost` 4..=31 (10 is the default).
pub fn entry(user: &str, password: &str, cost: u32) -> Result<String, String> {
    if user.is_empty() || user.contains(':') {
        return Err(format!("invalid user name {user:?}: non-empty, without ':'"));
    }
    let h = bcrypt::hash_with_result(password, cost).map_err(|e| format!("bcrypt: {e}"))?;
    Ok(format!("{user}:{}", h.format_for_version(bcrypt::Version::TwoY)))
}

impl Htpasswd {
    pub fn load(path: &Path) -> Result<Htpasswd, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("reading htpasswd file {}: {e}", path.display()))?;
        Htpasswd::parse(&text).map_err(|e| format!("htpasswd file {}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Htpasswd, String> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (u, h) = line
                .split_once(':')
                .ok_or_else(|| format!("line {}: expected user:hash", i + 1))?;
            if !(h.starts_with("$2y$") || h.starts_with("$2b$") || h.starts_with("$2a$")) {
                return Err(format!(
                    "line {}: user {u:?} has a non-bcrypt hash; create entries with `htpasswd -B`",
                    i + 1
                ));
            }
            users.insert(u.to_string(), h.to_string());
        }
        Ok(Htpasswd {
            users,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// Blocking (bcrypt): call off the async threads.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        let Some(hash) = self.users.get(user) else {
            // Spend the same time as a real check, so timing does not reveal user names.
            static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            let dummy = DUMMY.get_or_init(|| bcrypt::hash("-", bcrypt::DEFAULT_COST).unwrap_or_default());
            let _ = bcrypt::verify(password, dummy);
            return false;
        };
        let key = (user.to_string(), <[u8; 32]>::from(Sha256::digest(password.as_bytes())));
        {
            let v = self.verified.lock().expect("poisoned only by a panic"); // invariant
            if v.get(&key).is_some_and(|t| t.elapsed() < REMEMBER) {
                return true;
            }
        }
        let ok = bcrypt::verify(password, hash).unwrap_or(false);
        if ok {
            let mut v = self.verified.lock().expect("poisoned only by a panic"); // invariant
            v.retain(|_, t| t.elapsed() < REMEMBER);
            v.insert(key, Instant::now());
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_bcrypt() {
        let h = bcrypt::hash("s3cret", 4).unwrap();
        let f = Htpasswd::parse(&format!("# users\nalice:{h}\n{}\n", entry("bob", "pw2", 4).unwrap())).unwrap();
        assert!(f.verify("bob", "pw2"));
        assert!(f.verify("alice", "s3cret"));
        assert!(f.verify("alice", "s3cret"));
        assert!(!f.verify("alice", "wrong"));
        assert!(!f.verify("bob", "s3cret"));
        assert!(Htpasswd::parse("carol:{SHA}abc").is_err());
    }
}
