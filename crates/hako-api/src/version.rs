//! API versions: what this daemon speaks and how a request's `/vX.Y` prefix is checked.

/// The newest Engine API version served (the docker CLI 28.2 speaks 1.50).
pub const MAX_API_VERSION: &str = "1.50";
/// The oldest, as upstream.
pub const MIN_API_VERSION: &str = "1.24";

/// `1.41` -> (1, 41)
pub fn parse(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Splits `/v1.41/images/json` into its version and the rest. Paths without a prefix
/// return `None` and are served as the newest version.
pub fn split_prefix(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/v")?;
    let slash = rest.find('/')?;
    let v = &rest[..slash];
    parse(v)?;
    Some((v, &rest[slash..]))
}

/// Checks a requested version; the error is Docker's message.
pub fn check(v: &str) -> Result<(), String> {
    let want = parse(v).ok_or_else(|| format!("invalid API version {v:?}"))?;
    let max = parse(MAX_API_VERSION).expect("constant");
    let min = parse(MIN_API_VERSION).expect("constant");
    if want > max {
        return Err(format!(
            "client version {v} is too new. Maximum supported API version is {MAX_API_VERSION}"
        ));
    }
    if want < min {
        return Err(format!("client version {v} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_checks() {
        assert_eq!(split_prefix("/v1.41/images/json"), Some(("1.41", "/images/json")));
        assert_eq!(split_prefix("/images/json"), None);
        assert_eq!(split_prefix("/volumes"), None);
        assert!(check("1.41").is_ok());
        assert!(check("1.99").unwrap_err().contains("too new"));
        assert!(check("1.12").unwrap_err().contains("too old"));
    }
}
