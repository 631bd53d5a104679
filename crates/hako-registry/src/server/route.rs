//! Parsing `/v2/...` paths. Repository names hold slashes, so the route is read from the
//! right: the last segments say what is asked, everything before is the name.

use crate::digest::Digest;
use crate::error::{Code, RegistryError};
use crate::name::valid_name;
use crate::storage::Reference;

#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    Base,
    Catalog,
    Tags(String),
    Manifest(String, Reference),
    Blob(String, Digest),
    Uploads(String),
    Upload(String, String),
    Referrers(String, Digest),
}

impl Route {
    pub fn repository(&self) -> Option<&str> {
        match self {
            Route::Base | Route::Catalog => None,
            Route::Tags(n)
            | Route::Manifest(n, _)
            | Route::Blob(n, _)
            | Route::Uploads(n)
            | Route::Upload(n, _)
            | Route::Referrers(n, _) => Some(n),
        }
    }
}

fn name(segs: &[&str]) -> Result<String, RegistryError> {
    let n = segs.join("/");
    if valid_name(&n) {
        Ok(n)
    } else {
        Err(RegistryError::new(
            Code::NameInvalid,
            format!("invalid repository name {n:?}: lower-case components [a-z0-9] joined by . _ __ - and /, at most 255 characters"),
        ))
    }
}

fn digest(s: &str) -> Result<Digest, RegistryError> {
    s.parse()
        .map_err(|e: crate::digest::DigestError| RegistryError::new(Code::DigestInvalid, e.to_string()))
}

/// None: not a registry path at all (404 without a registry error code).
pub fn parse(path: &str) -> Option<Result<Route, RegistryError>> {
    let rest = path.strip_prefix("/v2")?;
    if rest.is_empty() || rest == "/" {
        return Some(Ok(Route::Base));
    }
    let rest = rest.strip_prefix('/')?;
    if rest == "_catalog" {
        return Some(Ok(Route::Catalog));
    }
    let segs: Vec<&str> = rest.split('/').collect();
    let n = segs.len();
    (|| -> Option<Result<Route, RegistryError>> {
        if n >= 3 && segs[n - 2] == "tags" && segs[n - 1] == "list" {
            return Some(name(&segs[..n - 2]).map(Route::Tags));
        }
        if n >= 4 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
            let id = segs[n - 1];
            return Some(name(&segs[..n - 3]).map(|nm| {
                if id.is_empty() {
                    Route::Uploads(nm)
                } else {
                    Route::Upload(nm, id.to_string())
                }
            }));
        }
        if n >= 3 && segs[n - 2] == "blobs" && segs[n - 1] == "uploads" {
            return Some(name(&segs[..n - 2]).map(Route::Uploads));
        }
        if n >= 3 {
            let last = segs[n - 1];
            let nm = || name(&segs[..n - 2]);
            match segs[n - 2] {
                "manifests" => {
                    let reference = if last.contains(':') {
                        match digest(last) {
                            Ok(d) => Reference::Digest(d),
                            Err(e) => return Some(Err(e)),
                        }
                    } else if crate::name::valid_tag(last) {
                        Reference::Tag(last.to_string())
                    } else {
                        return Some(Err(crate::name::tag_invalid(last)));
                    };
                    return Some(nm().map(|nm| Route::Manifest(nm, reference)));
                }
                "blobs" => return Some(nm().and_then(|nm| Ok(Route::Blob(nm, digest(last)?)))),
                "referrers" => return Some(nm().and_then(|nm| Ok(Route::Referrers(nm, digest(last)?)))),
                _ => {}
            }
        }
        None
    })()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let d = Digest::sha256(b"x");
        assert_eq!(parse("/v2/").unwrap().unwrap(), Route::Base);
        assert_eq!(parse("/v2").unwrap().unwrap(), Route::Base);
        assert_eq!(parse("/v2/a/b/tags/list").unwrap().unwrap(), Route::Tags("a/b".into()));
        assert_eq!(
            parse("/v2/a/blobs/manifests/v1").unwrap().unwrap(),
            Route::Manifest("a/blobs".into(), Reference::Tag("v1".into()))
        );
        assert_eq!(
            parse(&format!("/v2/a/blobs/{d}")).unwrap().unwrap(),
            Route::Blob("a".into(), d.clone())
        );
        assert_eq!(
            parse("/v2/a/blobs/uploads/").unwrap().unwrap(),
            Route::Uploads("a".into())
        );
        assert_eq!(
            parse("/v2/a/blobs/uploads").unwrap().unwrap(),
            Route::Uploads("a".into())
        );
        assert_eq!(
            parse("/v2/a/blobs/uploads/abc").unwrap().unwrap(),
            Route::Upload("a".into(), "abc".into())
        );
        assert_eq!(
            parse(&format!("/v2/x/referrers/{d}")).unwrap().unwrap(),
            Route::Referrers("x".into(), d)
        );
        for bad in [
            "/v2/../etc/tags/list",
            "/v2/a/../../b/manifests/x",
            "/v2/A/tags/list",
            "/v2//x/tags/list",
        ] {
            assert_eq!(parse(bad).unwrap().unwrap_err().code, Code::NameInvalid, "{bad}");
        }
        assert_eq!(
            parse("/v2/a/blobs/sha256:zz").unwrap().unwrap_err().code,
            Code::DigestInvalid
        );
        assert!(parse("/v2/a/unknown/x").is_none());
        assert!(parse("/v3/").is_none());
    }
}
