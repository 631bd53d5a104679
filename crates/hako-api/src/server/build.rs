//! `POST /build`: the classic builder's endpoint (`docker build` with `DOCKER_BUILDKIT=0`,
//! `hako build`). The body is the context as a tar; the answer streams JSON lines.

use std::collections::{BTreeMap, HashMap};

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State as AxState};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::mpsc;

use super::images::{first, query_pairs};
use super::{flag, State};
use crate::build::{self, BuildOptions, Progress};
use crate::error::ApiError;

/// A query parameter holding JSON (`buildargs`, `labels`, `cachefrom`).
fn json_param<T: serde::de::DeserializeOwned + Default>(v: Option<&str>, name: &str) -> Result<T, ApiError> {
    match v.filter(|s| !s.is_empty()) {
        None => Ok(T::default()),
        Some(s) => serde_json::from_str(s).map_err(|e| ApiError::bad_request(format!("invalid {name}: {e}"))),
    }
}

pub async fn build(AxState(d): AxState<State>, RawQuery(q): RawQuery, body: Body) -> Result<Response, ApiError> {
    let pairs = query_pairs(&q);
    // A build arg given without a value (`--build-arg NAME` with NAME unset) is null: skipped.
    let args: HashMap<String, Option<String>> =
        json_param(first(&pairs, "buildargs").map(String::as_str), "buildargs")?;
    let opts = BuildOptions {
        dockerfile: first(&pairs, "dockerfile")
            .filter(|s| !s.is_empty())
            .cloned()
            .unwrap_or_else(|| "Dockerfile".into()),
        tags: pairs
            .iter()
            .filter(|(k, _)| k == "t")
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
            .collect(),
        build_args: args.into_iter().filter_map(|(k, v)| Some((k, v?))).collect(),
        labels: json_param::<BTreeMap<String, String>>(first(&pairs, "labels").map(String::as_str), "labels")?,
        no_cache: flag(first(&pairs, "nocache")),
        target: first(&pairs, "target").filter(|s| !s.is_empty()).map(String::from),
        cache_from: json_param(first(&pairs, "cachefrom").map(String::as_str), "cachefrom")?,
    };
    for t in &opts.tags {
        hako_image::Reference::parse(t).map_err(|e| ApiError::bad_request(format!("invalid tag {t:?}: {e}")))?;
    }
    let quiet = flag(first(&pairs, "q"));
    let mut reader = crate::bridge::body_reader(body);
    let ctx = tokio::task::spawn_blocking(move || {
        let ctx = build::context::Context::receive(&mut reader)?;
        // What follows the archive's end (a tar writer pads to 10 KiB): read it, up to a
        // bound, so the request is complete and the server sees the client go away while
        // the build runs (an interrupted `build` must stop its RUN step).
        let _ = std::io::copy(&mut std::io::Read::take(&mut reader, 1 << 20), &mut std::io::sink());
        Ok::<_, ApiError>(ctx)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    let ctx = std::sync::Arc::new(ctx);
    let (tx, mut rx) = mpsc::channel::<Progress>(256);
    let containers = d.containers.clone();
    tokio::spawn(async move {
        let res = build::run(containers, ctx, opts, tx.clone()).await;
        if let Err(e) = res {
            tracing::debug!(error = %e.message, "build failed");
            let _ = tx.send(Progress::Error(e.message)).await;
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let lines = futures_util::StreamExt::filter_map(stream, move |p| async move {
        let v = match p {
            Progress::Stream(_) if quiet => return None,
            Progress::Stream(s) => json!({"stream": s}),
            Progress::Aux(id) => json!({"aux": {"ID": id}}),
            Progress::Error(m) => json!({"errorDetail": {"message": m}, "error": m}),
        };
        let mut text = v.to_string();
        text.push_str("\r\n");
        Some(Ok::<_, std::io::Error>(Bytes::from(text)))
    });
    let mut r = (StatusCode::OK, Body::from_stream(lines)).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}
