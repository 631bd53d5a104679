//! `/volumes/...`: create, list, inspect, remove, prune.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::images::{first, parse_filters, query_pairs};
use super::{blocking, flag, State};
use crate::containers::volumes::label_matches;
use crate::error::ApiError;

pub async fn create(AxState(d): AxState<State>, body: Bytes) -> Result<Response, ApiError> {
    let body: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid volume config: {e}")))?
    };
    let name = body.get("Name").and_then(Value::as_str).map(String::from);
    let labels = body.get("Labels").cloned().unwrap_or(Value::Null);
    let c = d.containers.clone();
    let v = blocking(move || c.volume_create(name.as_deref(), labels, false)).await?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

pub async fn list(AxState(d): AxState<State>, RawQuery(q): RawQuery) -> Result<Json<Value>, ApiError> {
    let pairs = query_pairs(&q);
    let filters = parse_filters(first(&pairs, "filters"))?;
    let mut vols = d.containers.volume_list()?;
    if let Some(v) = filters.get("dangling").and_then(|v| v.first()) {
        let want_unused = v == "true" || v == "1";
        vols.retain(|vol| d.containers.volume_users(vol["Name"].as_str().unwrap_or("")).is_empty() == want_unused);
    }
    if let Some(names) = filters.get("name") {
        vols.retain(|vol| {
            names
                .iter()
                .any(|n| vol["Name"].as_str().unwrap_or("").contains(n.as_str()))
        });
    }
    if let Some(labels) = filters.get("label") {
        vols.retain(|vol| labels.iter().all(|f| label_matches(&vol["Labels"], f)));
    }
    if let Some(drivers) = filters.get("driver") {
        vols.retain(|vol| drivers.iter().any(|dr| vol["Driver"] == dr.as_str()));
    }
    Ok(Json(json!({"Volumes": vols, "Warnings": []})))
}

pub async fn inspect(AxState(d): AxState<State>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(d.containers.volume_get(&name)?))
}

pub async fn remove(
    AxState(d): AxState<State>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<StatusCode, ApiError> {
    let pairs = query_pairs(&q);
    let force = flag(first(&pairs, "force"));
    let c = d.containers.clone();
    blocking(move || c.volume_remove(&name, force)).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn prune(AxState(d): AxState<State>, RawQuery(q): RawQuery) -> Result<Json<Value>, ApiError> {
    let pairs = query_pairs(&q);
    let filters = parse_filters(first(&pairs, "filters"))?;
    if let Some(k) = filters
        .keys()
        .find(|k| !["all", "label", "label!"].contains(&k.as_str()))
    {
        return Err(ApiError::bad_request(format!("invalid filter '{k}'")));
    }
    let all = filters
        .get("all")
        .and_then(|v| v.first())
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false);
    // `label!=k=v` arrives as the key `label!`: fold it into the label filters' `k!=v` form.
    let mut labels: Vec<String> = filters.get("label").cloned().unwrap_or_default();
    labels.extend(
        filters
            .get("label!")
            .into_iter()
            .flatten()
            .map(|f| match f.split_once('=') {
                Some((k, v)) => format!("{k}!={v}"),
                None => format!("{f}!"),
            }),
    );
    let c = d.containers.clone();
    let (gone, reclaimed) = blocking(move || c.volume_prune(all, &labels)).await?;
    Ok(Json(
        json!({"VolumesDeleted": if gone.is_empty() { Value::Null } else { json!(gone) }, "SpaceReclaimed": reclaimed}),
    ))
}
