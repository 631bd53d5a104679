//! Manifest endpoints: GET/HEAD/PUT/DELETE by tag or digest, and a push by digest that
//! creates several tags at once (`PUT /v2/<name>/manifests/<digest>?tag=a&tag=b`).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use http_body_util::{BodyExt, Limited};

use super::{blocking, respond, State};
use crate::digest::Digest;
use crate::error::{Code, RegistryError};
use crate::manifest::Manifest;
use crate::storage::Reference;

fn unknown(name: &str, r: &Reference) -> RegistryError {
    let what = match r {
        Reference::Tag(t) => format!("tag {t}"),
        Reference::Digest(d) => d.to_string(),
    };
    RegistryError::new(
        Code::ManifestUnknown,
        format!("manifest {what} is not in repository {name}"),
    )
}

pub async fn get(state: State, name: String, r: Reference, head: bool) -> Result<Response, RegistryError> {
    let st = state.clone();
    let (n2, r2) = (name.clone(), r.clone());
    let m = blocking(move || st.storage.get_manifest(&n2, &r2))
        .await?
        .ok_or_else(|| unknown(&name, &r))?;
    let hs = [
        ("content-type", m.media_type.clone()),
        ("content-length", m.bytes.len().to_string()),
        ("docker-content-digest", m.digest.to_string()),
        ("etag", format!("\"{}\"", m.digest)),
    ];
    let body = if head { Body::empty() } else { Body::from(m.bytes) };
    Ok(respond(StatusCode::OK, &hs, body))
}

/// Tags one push may create with `tag` parameters. The spec asks for at least 10 and lets a
/// registry answer 414 beyond; each tag is a file written and fsynced, so this bounds the
/// work one request can cause.
const MAX_PUSH_TAGS: usize = 100;

/// The tags a push creates: the one in the URL, or the `tag` parameters of a push by digest
/// (in order, each once). All are checked before anything is read or written.
fn push_tags(r: &Reference, query: &[(String, String)]) -> Result<Vec<String>, RegistryError> {
    let params: Vec<&str> = query
        .iter()
        .filter(|(k, _)| k == "tag")
        .map(|(_, v)| v.as_str())
        .collect();
    let mut tags: Vec<String> = match r {
        Reference::Tag(t) if params.is_empty() => return Ok(vec![t.clone()]),
        Reference::Tag(t) => {
            return Err(RegistryError::new(
                Code::TagInvalid,
                format!("tag parameters apply to a push by digest; this push names tag {t} in its URL"),
            ))
        }
        Reference::Digest(_) => Vec::new(),
    };
    if params.len() > MAX_PUSH_TAGS {
        return Err(RegistryError::new(
            Code::TagInvalid,
            format!("a push may create at most {MAX_PUSH_TAGS} tags"),
        )
        .status(StatusCode::URI_TOO_LONG));
    }
    for t in params {
        if !crate::name::valid_tag(t) {
            return Err(crate::name::tag_invalid(t));
        }
        if !tags.iter().any(|x| x == t) {
            tags.push(t.to_string());
        }
    }
    Ok(tags)
}

pub async fn put(
    state: State,
    name: String,
    r: Reference,
    query: Vec<(String, String)>,
    req: Request,
) -> Result<Response, RegistryError> {
    let tags = push_tags(&r, &query)?;
    let max = state.config.max_manifest_bytes;
    let too_big = || {
        RegistryError::new(
            Code::SizeInvalid,
            format!("manifest is larger than this registry's limit of {max} bytes"),
        )
        .status(StatusCode::PAYLOAD_TOO_LARGE)
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_big());
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let bytes = match Limited::new(req.into_body(), max).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => return Err(too_big()),
        Err(e) => {
            return Err(RegistryError::new(
                Code::ManifestInvalid,
                format!("the manifest was not received completely: {e}"),
            ))
        }
    };
    if declared.is_some_and(|n| n != bytes.len() as u64) {
        return Err(RegistryError::new(
            Code::SizeInvalid,
            "the manifest is shorter than its Content-Length",
        ));
    }
    let digest = match &r {
        Reference::Digest(d) => {
            let actual = Digest::of(d.algorithm(), &bytes);
            if actual != *d {
                return Err(RegistryError::new(
                    Code::DigestInvalid,
                    format!("the manifest's digest is {actual}, not {d} as its URL says"),
                ));
            }
            actual
        }
        Reference::Tag(_) => Digest::sha256(&bytes),
    };
    let m = Manifest::parse(&bytes, content_type.as_deref())?;
    let subject = m.subject.as_ref().map(|s| s.digest.to_string());
    let st = state.clone();
    let (n2, d2, t2) = (name.clone(), digest.clone(), tags.clone());
    blocking(move || st.storage.put_manifest(&n2, &m, &bytes, &d2, &t2)).await?;
    let mut hs = vec![
        ("location", format!("/v2/{name}/manifests/{digest}")),
        ("docker-content-digest", digest.to_string()),
        ("content-length", "0".to_string()),
    ];
    if let Some(s) = subject {
        hs.push(("oci-subject", s));
    }
    let mut resp = respond(StatusCode::CREATED, &hs, Body::empty());
    // One `OCI-Tag` field per tag created: how a client learns that this registry took the
    // `tag` parameters (one that ignores them sends none, and the client tags one by one).
    for t in &tags {
        if let Ok(v) = HeaderValue::from_str(t) {
            resp.headers_mut().append("oci-tag", v);
        }
    }
    Ok(resp)
}

pub async fn delete(state: State, name: String, r: Reference) -> Result<Response, RegistryError> {
    if !state.config.delete_enabled {
        return Err(RegistryError::new(
            Code::Unsupported,
            "deletion is disabled on this registry",
        ));
    }
    let st = state.clone();
    let (n2, r2) = (name.clone(), r.clone());
    let found = blocking(move || match &r2 {
        Reference::Digest(d) => st.storage.delete_manifest(&n2, d),
        Reference::Tag(t) => st.storage.delete_tag(&n2, t),
    })
    .await?;
    if found {
        Ok(respond(
            StatusCode::ACCEPTED,
            &[("content-length", "0".into())],
            Body::empty(),
        ))
    } else {
        Err(unknown(&name, &r))
    }
}
