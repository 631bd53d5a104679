//! `/networks/...`: create, list, inspect, remove, connect, disconnect, prune.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::images::{first, parse_filters, query_pairs};
use super::{blocking, State};
use crate::error::ApiError;
use crate::networks::NetworkRecord;

fn body_json(body: &Bytes, what: &str) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid {what}: {e}")))
}

pub async fn create(AxState(d): AxState<State>, body: Bytes) -> Result<Response, ApiError> {
    let body = body_json(&body, "network config")?;
    let n = d.containers.networks.clone();
    let rec = blocking(move || n.create(&body)).await?;
    Ok((StatusCode::CREATED, Json(json!({"Id": rec.id, "Warning": ""}))).into_response())
}

fn inspect_one(d: &State, rec: &NetworkRecord) -> Value {
    rec.inspect(&d.containers.on_network(&rec.id))
}

pub async fn list(AxState(d): AxState<State>, RawQuery(q): RawQuery) -> Result<Json<Value>, ApiError> {
    let pairs = query_pairs(&q);
    let filters = parse_filters(first(&pairs, "filters"))?;
    let mut nets = d.containers.networks.list();
    let any = |key: &str, f: &dyn Fn(&str) -> bool| filters.get(key).is_none_or(|vals| vals.iter().any(|v| f(v)));
    nets.retain(|r| {
        any("name", &|v| r.name.contains(v))
            && any("id", &|v| r.id.starts_with(v))
            && any("driver", &|v| r.driver == v)
            && any("type", &|v| (v == "builtin") == r.builtin)
            && any("label", &|v| {
                let (k, val) = v.split_once('=').unwrap_or((v, ""));
                r.labels
                    .get(k)
                    .is_some_and(|x| val.is_empty() || x.as_str() == Some(val))
            })
            && any("dangling", &|v| {
                let unused = !r.builtin && d.containers.on_network(&r.id).is_empty();
                (v == "true" || v == "1") == unused
            })
    });
    // Docker lists by name.
    nets.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(Value::Array(nets.iter().map(|r| inspect_one(&d, r)).collect())))
}

pub async fn inspect(AxState(d): AxState<State>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let rec = d.containers.networks.get(&id)?;
    Ok(Json(inspect_one(&d, &rec)))
}

pub async fn remove(AxState(d): AxState<State>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let n = d.containers.networks.clone();
    blocking(move || n.remove(&id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn connect(AxState(d): AxState<State>, Path(id): Path<String>, body: Bytes) -> Result<StatusCode, ApiError> {
    let body = body_json(&body, "connect request")?;
    let ctr = body.get("Container").and_then(Value::as_str).unwrap_or("");
    if ctr.is_empty() {
        return Err(ApiError::bad_request("no container given to connect"));
    }
    let cfg = body.get("EndpointConfig").cloned().unwrap_or(json!({}));
    d.containers.connect(&id, ctr, &cfg).await?;
    Ok(StatusCode::OK)
}

pub async fn disconnect(
    AxState(d): AxState<State>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let body = body_json(&body, "disconnect request")?;
    let ctr = body.get("Container").and_then(Value::as_str).unwrap_or("");
    if ctr.is_empty() {
        return Err(ApiError::bad_request("no container given to disconnect"));
    }
    d.containers.disconnect(&id, ctr).await?;
    Ok(StatusCode::OK)
}

/// Removes every user network no container is on.
pub async fn prune(AxState(d): AxState<State>) -> Result<Json<Value>, ApiError> {
    let unused: Vec<NetworkRecord> = d
        .containers
        .networks
        .list()
        .into_iter()
        .filter(|r| !r.builtin && d.containers.on_network(&r.id).is_empty())
        .collect();
    let n = d.containers.networks.clone();
    let gone = blocking(move || {
        Ok(unused
            .into_iter()
            .filter(|r| n.remove(&r.id).is_ok())
            .map(|r| r.name)
            .collect::<Vec<_>>())
    })
    .await?;
    Ok(Json(
        json!({"NetworksDeleted": if gone.is_empty() { Value::Null } else { json!(gone) }}),
    ))
}
