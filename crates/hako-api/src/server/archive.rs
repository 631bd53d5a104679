//! `/containers/{id}/archive` (`docker cp`) and `/containers/{id}/export`.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::images::{drain_on_error, first, query_pairs};
use super::{blocking, flag, State};
use crate::bridge::body_reader;
use crate::containers::archive::{Archive, PathStat};
use crate::error::ApiError;

const STAT_HEADER: &str = "X-Docker-Container-Path-Stat";

fn path_param(q: &Option<String>) -> Result<String, ApiError> {
    first(&query_pairs(q), "path")
        .filter(|p| !p.is_empty())
        .cloned()
        .ok_or_else(|| ApiError::bad_request("path is required"))
}

fn with_stat(mut r: Response, stat: &PathStat) -> Result<Response, ApiError> {
    let v = HeaderValue::from_str(&stat.header()).map_err(|e| ApiError::internal(e.to_string()))?;
    r.headers_mut().insert(STAT_HEADER, v);
    Ok(r)
}

/// The tar streamed from a blocking thread.
fn tar_response(a: Archive) -> Response {
    crate::bridge::tar_response(move |w| a.write(w).map(drop))
}

/// `HEAD /containers/{id}/archive?path=`: the path's stat only.
pub async fn head(
    AxState(d): AxState<State>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let path = path_param(&q)?;
    let c = d.containers.clone();
    let stat = blocking(move || c.stat_path(&id, &path)).await?;
    with_stat(StatusCode::OK.into_response(), &stat)
}

/// `GET /containers/{id}/archive?path=`: a tar of the path, its stat in a header.
pub async fn get(
    AxState(d): AxState<State>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let path = path_param(&q)?;
    let c = d.containers.clone();
    let (stat, archive) = blocking(move || c.archive(&id, &path)).await?;
    with_stat(tar_response(archive), &stat)
}

/// `PUT /containers/{id}/archive?path=DIR[&noOverwriteDirNonDir=1][&copyUIDGID=1]`.
pub async fn put(
    AxState(d): AxState<State>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let pairs = query_pairs(&q);
    let path = path_param(&q)?;
    let no_overwrite = flag(first(&pairs, "noOverwriteDirNonDir"));
    let copy_uid_gid = flag(first(&pairs, "copyUIDGID"));
    let e = d.containers.get(&id)?;
    // A stopped container's overlay is mounted for the extraction: it must not start (and
    // mount it too) meanwhile.
    let _op = e.op.lock().await;
    let mut reader = body_reader(body);
    let c = d.containers.clone();
    blocking(move || {
        let r = c.extract(&id, &path, &mut reader, no_overwrite, copy_uid_gid);
        drain_on_error(&r, &mut reader);
        r
    })
    .await?;
    Ok(StatusCode::OK)
}

/// `GET /containers/{id}/export`: the container's filesystem as a tar.
pub async fn export(AxState(d): AxState<State>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let c = d.containers.clone();
    let archive = blocking(move || c.export(&id)).await?;
    Ok(tar_response(archive))
}
