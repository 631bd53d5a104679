//! Blob endpoints: GET/HEAD (with Range), DELETE, and the upload session endpoints
//! (POST, PATCH, PUT, GET status, DELETE).

use std::io::{Read, Seek, SeekFrom};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;

use super::{blocking, body_reader, param, respond, State};
use crate::digest::Digest;
use crate::error::{Code, RegistryError};

const CHUNK: usize = 1 << 20;

fn blob_unknown(name: &str, d: &Digest) -> RegistryError {
    RegistryError::new(Code::BlobUnknown, format!("blob {d} is not in repository {name}"))
        .detail(serde_json::json!({"digest": d.to_string()}))
}

/// A body streamed from a blocking reader, `len` bytes.
pub(crate) fn stream_body(mut r: Box<dyn crate::storage::BlobRead>, len: u64) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let mut left = len;
        while left > 0 {
            let mut buf = vec![0u8; CHUNK.min(left as usize)];
            match r.read(&mut buf) {
                Ok(0) => {
                    let _ = tx.blocking_send(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "blob shorter than its size",
                    )));
                    return;
                }
                Ok(n) => {
                    buf.truncate(n);
                    left -= n as u64;
                    if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                        return; // the client went away
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` against `size`: Some(Ok((start, end))) inclusive,
/// Some(Err) when unsatisfiable, None when absent or not a single byte range (whole blob).
fn parse_range(h: &HeaderMap, size: u64) -> Option<Result<(u64, u64), ()>> {
    let v = h.get(header::RANGE)?.to_str().ok()?;
    let spec = v.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let r = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 || size == 0 {
            Err(())
        } else {
            Ok((size.saturating_sub(n), size - 1))
        }
    } else {
        let start: u64 = a.parse().ok()?;
        let end: u64 = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            b.parse().ok()?
        };
        if start >= size || end < start {
            Err(())
        } else {
            Ok((start, end.min(size - 1)))
        }
    };
    Some(r)
}

/// Blobs up to this size are read in the same blocking call that opens them and sent in
/// one piece; larger ones stream.
const SMALL_BLOB: u64 = 1 << 20;

enum Opened {
    Missing,
    Unsatisfiable(u64),
    Ready {
        size: u64,
        range: Option<(u64, u64)>,
        small: Option<Vec<u8>>,
        reader: Option<Box<dyn crate::storage::BlobRead>>,
    },
}

pub async fn get(
    state: State,
    name: String,
    d: Digest,
    head: bool,
    headers: &HeaderMap,
) -> Result<Response, RegistryError> {
    let st = state.clone();
    let (n2, d2) = (name.clone(), d.clone());
    let hdrs = headers.clone();
    // HEAD is how a pusher learns a blob exists: it counts as a use for GC. GET does not.
    let opened = blocking(move || {
        let (mut reader, size) = if head {
            match st.storage.stat_blob(&n2, &d2)? {
                Some(size) => (None, size),
                None => return Ok(Opened::Missing),
            }
        } else {
            match st.storage.open_blob(&n2, &d2)? {
                Some((r, size)) => (Some(r), size),
                None => return Ok(Opened::Missing),
            }
        };
        let range = match parse_range(&hdrs, size) {
            None => None,
            Some(Ok(r)) => Some(r),
            Some(Err(())) => return Ok(Opened::Unsatisfiable(size)),
        };
        let (start, end) = range.unwrap_or((0, size.saturating_sub(1)));
        let len = if size == 0 { 0 } else { end - start + 1 };
        let mut small = None;
        if let Some(r) = reader.as_mut() {
            if start > 0 {
                r.seek(SeekFrom::Start(start))?;
            }
            if len <= SMALL_BLOB {
                let mut buf = vec![0u8; len as usize];
                r.read_exact(&mut buf)?;
                small = Some(buf);
                reader = None;
            }
        }
        Ok(Opened::Ready {
            size,
            range,
            small,
            reader,
        })
    })
    .await?;
    let (size, range, small, reader) = match opened {
        Opened::Missing => return Err(blob_unknown(&name, &d)),
        Opened::Unsatisfiable(size) => {
            return Err(RegistryError::new(
                Code::RangeInvalid,
                format!("the requested range is outside blob {d} of {size} bytes"),
            )
            .header(header::CONTENT_RANGE, &format!("bytes */{size}")))
        }
        Opened::Ready {
            size,
            range,
            small,
            reader,
        } => (size, range, small, reader),
    };
    let (start, end) = range.unwrap_or((0, size.saturating_sub(1)));
    let len = if size == 0 { 0 } else { end - start + 1 };
    let status = if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let mut hs = vec![
        ("content-type", "application/octet-stream".to_string()),
        ("content-length", len.to_string()),
        ("docker-content-digest", d.to_string()),
        ("accept-ranges", "bytes".to_string()),
        ("etag", format!("\"{d}\"")),
        ("cache-control", "max-age=31536000".to_string()),
    ];
    if range.is_some() {
        hs.push(("content-range", format!("bytes {start}-{end}/{size}")));
    }
    let body = match (small, reader) {
        (Some(b), _) => Body::from(b),
        (None, Some(r)) => stream_body(r, len),
        (None, None) => Body::empty(),
    };
    Ok(respond(status, &hs, body))
}

pub async fn delete(state: State, name: String, d: Digest) -> Result<Response, RegistryError> {
    if !state.config.delete_enabled {
        return Err(RegistryError::new(
            Code::Unsupported,
            "deletion is disabled on this registry",
        ));
    }
    let st = state.clone();
    let (n2, d2) = (name.clone(), d.clone());
    if blocking(move || st.storage.delete_blob(&n2, &d2)).await? {
        Ok(respond(
            StatusCode::ACCEPTED,
            &[("docker-content-digest", d.to_string()), ("content-length", "0".into())],
            Body::empty(),
        ))
    } else {
        Err(blob_unknown(&name, &d))
    }
}

fn upload_headers(name: &str, id: &str, size: u64) -> Vec<(&'static str, String)> {
    let range = if size == 0 {
        "0-0".to_string()
    } else {
        format!("0-{}", size - 1)
    };
    vec![
        ("location", format!("/v2/{name}/blobs/uploads/{id}")),
        ("range", range),
        ("docker-upload-uuid", id.to_string()),
        ("content-length", "0".into()),
    ]
}

fn created(name: &str, d: &Digest) -> Response {
    respond(
        StatusCode::CREATED,
        &[
            ("location", format!("/v2/{name}/blobs/{d}")),
            ("docker-content-digest", d.to_string()),
            ("content-length", "0".into()),
        ],
        Body::empty(),
    )
}

fn content_length(h: &HeaderMap) -> Result<Option<u64>, RegistryError> {
    match h.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| RegistryError::new(Code::SizeInvalid, "invalid Content-Length")),
    }
}

/// Whether a request carries a body at all.
fn has_body(h: &HeaderMap) -> Result<bool, RegistryError> {
    Ok(match content_length(h)? {
        Some(n) => n > 0,
        None => h.contains_key(header::TRANSFER_ENCODING),
    })
}

fn parse_digest(s: &str) -> Result<Digest, RegistryError> {
    s.parse()
        .map_err(|e: crate::digest::DigestError| RegistryError::new(Code::DigestInvalid, e.to_string()))
}

/// `Content-Range: <start>-<end>` (distribution also accepts a `bytes=` prefix).
fn content_range(h: &HeaderMap) -> Result<Option<(u64, u64)>, RegistryError> {
    let Some(v) = h.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || {
        RegistryError::new(
            Code::RangeInvalid,
            "invalid Content-Range: expected <start>-<end> (inclusive byte offsets)",
        )
    };
    let s = v.to_str().map_err(|_| bad())?.trim();
    let s = s
        .strip_prefix("bytes=")
        .or_else(|| s.strip_prefix("bytes "))
        .unwrap_or(s);
    let s = s.split('/').next().unwrap_or(s);
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (a, b): (u64, u64) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
    if b < a {
        return Err(bad());
    }
    Ok(Some((a, b)))
}

/// The offset and length a chunk claims, from Content-Range and Content-Length.
fn chunk_bounds(h: &HeaderMap) -> Result<(Option<u64>, Option<u64>), RegistryError> {
    let cl = content_length(h)?;
    match content_range(h)? {
        Some((a, b)) => {
            let len = b - a + 1;
            if cl.is_some_and(|c| c != len) {
                return Err(RegistryError::new(
                    Code::RangeInvalid,
                    format!(
                        "Content-Range covers {len} bytes but Content-Length says {}",
                        cl.unwrap_or(0)
                    ),
                ));
            }
            Ok((Some(a), Some(len)))
        }
        None => Ok((None, cl)),
    }
}

async fn append(state: &State, name: &str, id: &str, req: Request) -> Result<u64, RegistryError> {
    let (offset, len) = chunk_bounds(req.headers())?;
    let reader = body_reader(req.into_body());
    let st = state.clone();
    let (n, i) = (name.to_string(), id.to_string());
    blocking(move || {
        let mut r = reader;
        st.storage.append_upload(&n, &i, offset, len, &mut r)
    })
    .await
}

/// `POST /v2/<name>/blobs/uploads/`: a new session, a monolithic upload with `digest=`, or
/// a cross-repository mount with `mount=&from=`.
pub async fn start(
    state: State,
    name: String,
    query: Vec<(String, String)>,
    req: Request,
) -> Result<Response, RegistryError> {
    if let (Some(m), Some(from)) = (param(&query, "mount"), param(&query, "from")) {
        let d = parse_digest(m)?;
        if crate::name::valid_name(from) {
            let st = state.clone();
            let (f, n2, d2) = (from.to_string(), name.clone(), d.clone());
            if blocking(move || st.storage.mount_blob(&f, &n2, &d2)).await? {
                return Ok(created(&name, &d));
            }
        }
        // Not mountable: the spec says to answer with an ordinary upload session.
    }
    let digest = param(&query, "digest").map(parse_digest).transpose()?;
    let st = state.clone();
    let n2 = name.clone();
    let id = blocking(move || st.storage.start_upload(&n2)).await?;
    let Some(d) = digest else {
        return Ok(respond(
            StatusCode::ACCEPTED,
            &upload_headers(&name, &id, 0),
            Body::empty(),
        ));
    };
    let r = async {
        append(&state, &name, &id, req).await?;
        let st = state.clone();
        let (n2, i2, d2) = (name.clone(), id.clone(), d.clone());
        blocking(move || st.storage.finish_upload(&n2, &i2, &d2)).await
    }
    .await;
    match r {
        Ok(_) => Ok(created(&name, &d)),
        Err(e) => {
            let st = state.clone();
            let _ = blocking(move || st.storage.cancel_upload(&name, &id)).await;
            Err(e)
        }
    }
}

pub async fn patch(state: State, name: String, id: String, req: Request) -> Result<Response, RegistryError> {
    let size = append(&state, &name, &id, req).await?;
    Ok(respond(
        StatusCode::ACCEPTED,
        &upload_headers(&name, &id, size),
        Body::empty(),
    ))
}

pub async fn finish(
    state: State,
    name: String,
    id: String,
    query: Vec<(String, String)>,
    req: Request,
) -> Result<Response, RegistryError> {
    let d = param(&query, "digest").map(parse_digest).transpose()?.ok_or_else(|| {
        RegistryError::new(
            Code::DigestInvalid,
            "the digest query parameter is required to finish an upload",
        )
    })?;
    if has_body(req.headers())? {
        append(&state, &name, &id, req).await?;
    }
    let st = state.clone();
    let (n2, i2, d2) = (name.clone(), id.clone(), d.clone());
    blocking(move || st.storage.finish_upload(&n2, &i2, &d2)).await?;
    Ok(created(&name, &d))
}

fn upload_unknown(id: &str) -> RegistryError {
    RegistryError::new(Code::BlobUploadUnknown, format!("upload {id} is unknown or expired"))
}

pub async fn status(state: State, name: String, id: String) -> Result<Response, RegistryError> {
    let st = state.clone();
    let (n2, i2) = (name.clone(), id.clone());
    let size = blocking(move || st.storage.upload_size(&n2, &i2))
        .await?
        .ok_or_else(|| upload_unknown(&id))?;
    Ok(respond(
        StatusCode::NO_CONTENT,
        &upload_headers(&name, &id, size),
        Body::empty(),
    ))
}

pub async fn cancel(state: State, name: String, id: String) -> Result<Response, RegistryError> {
    let st = state.clone();
    let (n2, i2) = (name.clone(), id.clone());
    if blocking(move || st.storage.cancel_upload(&n2, &i2)).await? {
        Ok(respond(
            StatusCode::NO_CONTENT,
            &[("content-length", "0".into())],
            Body::empty(),
        ))
    } else {
        Err(upload_unknown(&id))
    }
}
