//! Content discovery: tags list (with `n` and `last`), the catalog, and the referrers API.

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::{blocking, param, respond, State};
use crate::digest::Digest;
use crate::error::{Code, RegistryError};
use crate::manifest::OCI_INDEX;

/// Applies `last` and `n` to a sorted list; returns the page and whether more follow.
fn page(all: Vec<String>, query: &[(String, String)]) -> Result<(Vec<String>, Option<usize>, bool), RegistryError> {
    let n = match param(query, "n") {
        None | Some("") => None,
        Some(s) => Some(s.parse::<usize>().map_err(|_| {
            RegistryError::new(Code::Unsupported, format!("invalid n={s:?}: a non-negative integer"))
                .status(StatusCode::BAD_REQUEST)
        })?),
    };
    let last = param(query, "last").unwrap_or("");
    let mut items: Vec<String> = all
        .into_iter()
        .filter(|t| last.is_empty() || t.as_str() > last)
        .collect();
    let more = n.is_some_and(|n| items.len() > n);
    if let Some(n) = n {
        items.truncate(n);
    }
    Ok((items, n, more))
}

fn json_response(v: Value, link: Option<String>, content_type: &str) -> Response {
    let mut hs = vec![("content-type", content_type.to_string())];
    if let Some(l) = link {
        hs.push(("link", l));
    }
    respond(StatusCode::OK, &hs, Body::from(v.to_string()))
}

pub async fn tags(state: State, name: String, query: Vec<(String, String)>) -> Result<Response, RegistryError> {
    let st = state.clone();
    let n2 = name.clone();
    let all = blocking(move || st.storage.tags(&n2)).await?.ok_or_else(|| {
        RegistryError::new(
            Code::NameUnknown,
            format!("repository {name} is not known to this registry"),
        )
    })?;
    let (tags, n, more) = page(all, &query)?;
    let link = match (more, n, tags.last()) {
        (true, Some(n), Some(last)) => Some(format!(
            "</v2/{name}/tags/list?n={n}&last={}>; rel=\"next\"",
            urlencoding::encode(last)
        )),
        _ => None,
    };
    Ok(json_response(
        json!({"name": name, "tags": tags}),
        link,
        "application/json",
    ))
}

pub async fn catalog(state: State, query: Vec<(String, String)>) -> Result<Response, RegistryError> {
    let st = state.clone();
    let all = blocking(move || st.storage.repositories()).await?;
    let (repos, n, more) = page(all, &query)?;
    let link = match (more, n, repos.last()) {
        (true, Some(n), Some(last)) => Some(format!(
            "</v2/_catalog?n={n}&last={}>; rel=\"next\"",
            urlencoding::encode(last)
        )),
        _ => None,
    };
    Ok(json_response(json!({"repositories": repos}), link, "application/json"))
}

pub async fn referrers(
    state: State,
    name: String,
    subject: Digest,
    query: Vec<(String, String)>,
) -> Result<Response, RegistryError> {
    let st = state.clone();
    let n2 = name.clone();
    let mut list = blocking(move || st.storage.referrers(&n2, &subject)).await?;
    let filter = param(&query, "artifactType")
        .filter(|s| !s.is_empty())
        .map(String::from);
    if let Some(f) = &filter {
        list.retain(|d| d.get("artifactType").and_then(Value::as_str) == Some(f.as_str()));
    }
    let body = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": list});
    let mut r = json_response(body, None, OCI_INDEX);
    if filter.is_some() {
        r.headers_mut().insert(
            "OCI-Filters-Applied",
            axum::http::HeaderValue::from_static("artifactType"),
        );
    }
    Ok(r)
}
