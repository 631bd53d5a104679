//! Repository names as the distribution spec defines them:
//! `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`, at most 255
//! characters. A valid name never contains `..`, an empty component or a leading `/`, so it
//! is safe to join under the storage root.

use crate::error::{Code, RegistryError};

pub const NAME_MAX: usize = 255;

pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= NAME_MAX && name.split('/').all(valid_component)
}

fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && matches!(b[i], b'.' | b'_' | b'-') {
            i += 1;
        }
        if i == start {
            return false;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

fn is_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// The error for a tag that is not [`valid_tag`].
pub fn tag_invalid(t: &str) -> RegistryError {
    RegistryError::new(
        Code::TagInvalid,
        format!("invalid tag {t:?}: [A-Za-z0-9_][A-Za-z0-9._-], at most 128 characters"),
    )
}

/// Tags: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "library/busybox", "a.b/c__d/e--f", "x0/y1"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "A",
            "a/../b",
            "..",
            "a//b",
            "/a",
            "a/",
            "a..b",
            "a___b",
            "-a",
            "a/.hidden",
            &"a".repeat(256),
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(valid_tag("v1.0_rc-2"));
        assert!(!valid_tag(".x"));
        assert!(!valid_tag(&"t".repeat(129)));
    }
}
