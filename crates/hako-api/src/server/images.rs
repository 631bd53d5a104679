//! `/images/...`: list, inspect, history, tag, remove, prune, import, load, save.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use hako_image::reference::Reference;
use hako_image::{Deleted, ImageSummary, ImportOptions, SaveFormat};

use super::{blocking, flag, State};
use crate::bridge::body_reader;
use crate::error::ApiError;

/// Query pairs in order, keeping repeated keys (`changes`, `names`, `t`).
pub(crate) fn query_pairs(q: &Option<String>) -> Vec<(String, String)> {
    let Some(q) = q else { return vec![] };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| {
                urlencoding::decode(&s.replace('+', " "))
                    .map(|c| c.into_owned())
                    .unwrap_or_else(|_| s.to_string())
            };
            (dec(k), dec(v))
        })
        .collect()
}

pub(crate) fn first<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a String> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn all<'a>(pairs: &'a [(String, String)], key: &str) -> Vec<&'a String> {
    pairs.iter().filter(|(k, _)| k == key).map(|(_, v)| v).collect()
}

/// `filters={"dangling":["true"]}` (also the old `{"dangling":{"true":true}}` form).
pub(crate) fn parse_filters(raw: Option<&String>) -> Result<HashMap<String, Vec<String>>, ApiError> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        return Ok(HashMap::new());
    };
    let v: Value =
        serde_json::from_str(raw).map_err(|e| ApiError::bad_request(format!("invalid filters {raw:?}: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::bad_request("filters must be a JSON object"))?;
    let mut out = HashMap::new();
    for (k, vals) in obj {
        let list = match vals {
            Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(String::from)).collect(),
            Value::Object(m) => m.keys().cloned().collect(),
            _ => return Err(ApiError::bad_request(format!("invalid filter value for {k:?}"))),
        };
        out.insert(k.clone(), list);
    }
    Ok(out)
}

pub(crate) fn summary_json(s: &ImageSummary, with_containers: bool) -> Value {
    let labels = s
        .config
        .pointer("/config/Labels")
        .cloned()
        .filter(|l| !l.is_null())
        .unwrap_or(json!({}));
    json!({
        "Id": s.record.id.to_string(),
        "ParentId": "",
        "RepoTags": s.tags,
        "RepoDigests": s.digests,
        "Created": s.record.created.as_deref().and_then(hako_image::service::parse_time).unwrap_or(0),
        "Size": s.record.size(),
        "SharedSize": -1,
        "Containers": if with_containers { s.containers as i64 } else { -1 },
        "Labels": labels,
    })
}

/// Docker's reference filter: `repo` or `repo:tag`, with `*` globs, matched against each
/// name of the image (`repo:tag`, `repo@digest`).
fn matches_reference(name: &str, pattern: &str) -> bool {
    let repo = match name.split_once('@') {
        Some((r, _)) => r,
        None => name
            .rsplit_once(':')
            .filter(|(_, t)| !t.contains('/'))
            .map(|(r, _)| r)
            .unwrap_or(name),
    };
    glob(pattern, name) || glob(pattern, repo)
}

/// Like dockerd, a reference filter also narrows an image's RepoTags and RepoDigests to the
/// names that match: `images -f reference=a` must not list the image's other tags. `None`
/// when no name matches.
fn narrow_to_reference(s: &ImageSummary, patterns: &[String]) -> Option<ImageSummary> {
    let keep = |names: &[String]| -> Vec<String> {
        names
            .iter()
            .filter(|n| patterns.iter().any(|p| matches_reference(n, p)))
            .cloned()
            .collect()
    };
    let (tags, digests) = (keep(&s.tags), keep(&s.digests));
    if tags.is_empty() && digests.is_empty() {
        return None;
    }
    Some(ImageSummary {
        tags,
        digests,
        ..s.clone()
    })
}

fn glob(p: &str, s: &str) -> bool {
    match p.split_once('*') {
        None => p == s,
        Some((pre, rest)) => {
            s.starts_with(pre)
                && (0..=s.len() - pre.len())
                    .any(|i| s.is_char_boundary(pre.len() + i) && glob(rest, &s[pre.len() + i..]))
        }
    }
}

pub async fn list(AxState(d): AxState<State>, RawQuery(q): RawQuery) -> Result<Json<Value>, ApiError> {
    let pairs = query_pairs(&q);
    let filters = parse_filters(first(&pairs, "filters"))?;
    for k in filters.keys() {
        if !matches!(k.as_str(), "dangling" | "reference" | "label" | "before" | "since") {
            return Err(ApiError::bad_request(format!("invalid filter '{k}'")));
        }
    }
    blocking(move || {
        let all = d.images.list()?;
        let resolve = |n: &String| d.images.resolve(n).map(|r| r.created).map_err(ApiError::from);
        let before = filters.get("before").and_then(|v| v.first()).map(resolve).transpose()?;
        let since = filters.get("since").and_then(|v| v.first()).map(resolve).transpose()?;
        let rows: Vec<Value> = all
            .iter()
            .filter(
                |s| match filters.get("dangling").and_then(|v| v.first()).map(String::as_str) {
                    Some("true" | "1") => s.tags.is_empty(),
                    Some("false" | "0") => !s.tags.is_empty(),
                    _ => true,
                },
            )
            .filter_map(|s| match filters.get("reference") {
                Some(ps) => narrow_to_reference(s, ps),
                None => Some(s.clone()),
            })
            .filter(|s| {
                filters
                    .get("label")
                    .map(|ls| {
                        ls.iter().all(|l| {
                            let labels = s.config.pointer("/config/Labels");
                            match l.split_once('=') {
                                Some((k, v)) => labels.and_then(|m| m.get(k)).and_then(Value::as_str) == Some(v),
                                None => labels.and_then(|m| m.get(l)).is_some(),
                            }
                        })
                    })
                    .unwrap_or(true)
            })
            .filter(|s| before.as_ref().map(|b| s.record.created < *b).unwrap_or(true))
            .filter(|s| since.as_ref().map(|b| s.record.created > *b).unwrap_or(true))
            .map(|s| summary_json(&s, false))
            .collect();
        Ok(Json(Value::Array(rows)))
    })
    .await
}

fn json_lines(lines: &[Value]) -> Response {
    let mut body = String::new();
    for l in lines {
        body.push_str(&l.to_string());
        body.push_str("\r\n");
    }
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// `POST /images/create`: `fromSrc` imports; `fromImage` pulls (the registry client is not
/// built yet, so it says so).
pub async fn create(
    AxState(d): AxState<State>,
    RawQuery(q): RawQuery,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(&q);
    if let Some(img) = first(&pairs, "fromImage") {
        let tag = first(&pairs, "tag").cloned().unwrap_or_default();
        return super::registry::pull(d, img, &tag, &headers).await;
    }
    let src = first(&pairs, "fromSrc")
        .cloned()
        .ok_or_else(|| ApiError::bad_request("fromSrc or fromImage is required"))?;
    let repo = first(&pairs, "repo").cloned().unwrap_or_default();
    let tag = first(&pairs, "tag").cloned().unwrap_or_default();
    let message = first(&pairs, "message").cloned().unwrap_or_default();
    let changes: Vec<String> = all(&pairs, "changes").into_iter().cloned().collect();
    let reference = if repo.is_empty() {
        None
    } else {
        let full = if tag.is_empty() {
            repo.clone()
        } else {
            format!("{repo}:{tag}")
        };
        Some(Reference::parse(&full).map_err(|e| ApiError::bad_request(e.to_string()))?)
    };
    let reader: Box<dyn std::io::Read + Send> = if src == "-" {
        Box::new(body_reader(body))
    } else {
        Box::new(body_reader(crate::client::fetch_url(&src, "import from").await?))
    };
    let rec = blocking(move || {
        let opts = ImportOptions {
            changes: &changes,
            message: &message,
            tag: reference.as_ref(),
            source: &src,
        };
        let mut reader = reader;
        let r = d.images.import(&mut reader, &opts);
        drain_on_error(&r, &mut reader);
        Ok(r?)
    })
    .await?;
    Ok(json_lines(&[json!({"status": rec.id.to_string()})]))
}

/// After a refused upload, reads the rest of the client's body: a client still sending
/// would otherwise see a broken connection instead of the error that says what was wrong.
pub(crate) fn drain_on_error<T, E>(r: &Result<T, E>, reader: &mut impl std::io::Read) {
    if r.is_err() {
        let _ = std::io::copy(reader, &mut std::io::sink());
    }
}

pub async fn load(AxState(d): AxState<State>, body: Body) -> Result<Response, ApiError> {
    let mut reader = body_reader(body);
    let lines = blocking(move || {
        let r = d.images.load(&mut reader);
        drain_on_error(&r, &mut reader);
        Ok(r?)
    })
    .await?;
    let msgs: Vec<Value> = lines.iter().map(|l| json!({"stream": format!("{l}\n")})).collect();
    Ok(json_lines(&msgs))
}

fn save_response(d: State, names: Vec<String>, format: SaveFormat) -> Response {
    crate::bridge::tar_response(move |w| d.images.save(&names, format, w))
}

fn save_format(pairs: &[(String, String)]) -> Result<SaveFormat, ApiError> {
    match first(pairs, "format").map(String::as_str) {
        None | Some("" | "docker-archive") => Ok(SaveFormat::DockerArchive),
        Some("oci-archive") => Ok(SaveFormat::OciArchive),
        Some(f) => Err(ApiError::bad_request(format!(
            "unknown save format {f:?}: use docker-archive or oci-archive"
        ))),
    }
}

pub async fn save_many(AxState(d): AxState<State>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let pairs = query_pairs(&q);
    let names: Vec<String> = all(&pairs, "names").into_iter().cloned().collect();
    if names.is_empty() {
        return Err(ApiError::bad_request(
            "no images named: give at least one image to save",
        ));
    }
    let format = save_format(&pairs)?;
    // Resolve first so an unknown name is a clean 404, not a broken stream.
    let d2 = d.clone();
    let n2 = names.clone();
    blocking(move || {
        for n in &n2 {
            d2.images.resolve(n)?;
        }
        Ok(())
    })
    .await?;
    Ok(save_response(d, names, format))
}

/// Splits `localhost:5000/a/b/json` into the image name and the action.
fn split_action(rest: &str) -> (&str, &str) {
    match rest.rsplit_once('/') {
        Some((name, action)) if matches!(action, "json" | "history" | "get" | "tag" | "push") => (name, action),
        _ => (rest, ""),
    }
}

pub async fn get_dispatch(
    AxState(d): AxState<State>,
    Path(rest): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let (name, action) = split_action(&rest);
    let name = name.to_string();
    match action {
        "json" => blocking(move || inspect(&d, &name))
            .await
            .map(|v| Json(v).into_response()),
        "history" => blocking(move || Ok(Json(Value::Array(d.images.history(&name)?)).into_response())).await,
        "get" => {
            let pairs = query_pairs(&q);
            let format = save_format(&pairs)?;
            let d2 = d.clone();
            let n2 = name.clone();
            blocking(move || Ok(d2.images.resolve(&n2).map(|_| ())?)).await?;
            Ok(save_response(d, vec![name], format))
        }
        _ => Err(ApiError::not_found(format!("page not found: GET /images/{rest}"))),
    }
}

fn inspect(d: &State, name: &str) -> Result<Value, ApiError> {
    let rec = d.images.resolve(name)?;
    let config = d.images.config(&rec)?;
    let tags = d.images.tags_of(&rec.id)?;
    let digests = d.images.digests_of(&rec.id)?;
    let lower: Vec<String> = rec
        .layers
        .iter()
        .rev()
        .map(|l| d.images.snapshot_path(&l.chain_id).display().to_string())
        .collect();
    let mut cfg = config.get("config").cloned().unwrap_or(json!({}));
    if let Some(o) = cfg.as_object_mut() {
        for k in [
            "Env",
            "Cmd",
            "Entrypoint",
            "Volumes",
            "OnBuild",
            "Labels",
            "ExposedPorts",
        ] {
            o.entry(k).or_insert(Value::Null);
        }
        for k in ["Hostname", "Domainname", "User", "WorkingDir"] {
            o.entry(k).or_insert(json!(""));
        }
        for k in [
            "AttachStdin",
            "AttachStdout",
            "AttachStderr",
            "Tty",
            "OpenStdin",
            "StdinOnce",
        ] {
            o.entry(k).or_insert(json!(false));
        }
    }
    Ok(json!({
        "Id": rec.id.to_string(),
        "RepoTags": tags,
        "RepoDigests": digests,
        "Parent": "",
        "Comment": config.get("comment").cloned().unwrap_or(json!("")),
        "Created": rec.created.clone().unwrap_or_default(),
        "DockerVersion": config.get("docker_version").cloned().unwrap_or(json!("")),
        "Author": config.get("author").cloned().unwrap_or(json!("")),
        "Config": cfg,
        "Architecture": config.get("architecture").cloned().unwrap_or(json!("")),
        "Variant": config.get("variant").cloned(),
        "Os": config.get("os").cloned().unwrap_or(json!("")),
        "Size": rec.size(),
        "GraphDriver": {"Name": "overlay", "Data": {"LowerDir": lower.join(":")}},
        "RootFS": {"Type": "layers", "Layers": rec.layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>()},
        "Metadata": {"LastTagTime": rec.last_tag_time.clone().unwrap_or_else(|| "0001-01-01T00:00:00Z".into())},
        "Descriptor": {"mediaType": hako_image::model::OCI_MANIFEST, "digest": rec.manifest.to_string()},
    }))
}

pub async fn post_dispatch(
    AxState(d): AxState<State>,
    Path(rest): Path<String>,
    RawQuery(q): RawQuery,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let (name, action) = split_action(&rest);
    let name = name.to_string();
    let pairs = query_pairs(&q);
    match action {
        "tag" => {
            let repo = first(&pairs, "repo")
                .cloned()
                .ok_or_else(|| ApiError::bad_request("repo is required"))?;
            let tag = first(&pairs, "tag").cloned().unwrap_or_default();
            let target = if tag.is_empty() { repo } else { format!("{repo}:{tag}") };
            blocking(move || Ok(d.images.tag(&name, &target)?)).await?;
            Ok(StatusCode::CREATED.into_response())
        }
        "push" => {
            let tag = first(&pairs, "tag").cloned().unwrap_or_default();
            super::registry::push(d, &name, &tag, &headers).await
        }
        _ => Err(ApiError::not_found(format!("page not found: POST /images/{rest}"))),
    }
}

pub async fn remove(
    AxState(d): AxState<State>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let pairs = query_pairs(&q);
    let force = flag(first(&pairs, "force"));
    blocking(move || {
        let out = d.images.remove(&name, force)?;
        Ok(Json(Value::Array(out.iter().map(deleted_json).collect())))
    })
    .await
}

fn deleted_json(d: &Deleted) -> Value {
    match d {
        Deleted::Untagged(n) => json!({"Untagged": n}),
        Deleted::Deleted(id) => json!({"Deleted": id}),
    }
}

pub async fn prune(AxState(d): AxState<State>, RawQuery(q): RawQuery) -> Result<Json<Value>, ApiError> {
    let pairs = query_pairs(&q);
    let filters = parse_filters(first(&pairs, "filters"))?;
    let all = matches!(
        filters.get("dangling").and_then(|v| v.first()).map(String::as_str),
        Some("false" | "0")
    );
    blocking(move || {
        let (deleted, reclaimed) = d.images.prune(all)?;
        let list: Vec<Value> = deleted.iter().map(deleted_json).collect();
        Ok(Json(json!({"ImagesDeleted": if list.is_empty() { Value::Null } else { Value::Array(list) }, "SpaceReclaimed": reclaimed})))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_glob() {
        let p = query_pairs(&Some("changes=CMD+%5B%22sh%22%5D&changes=ENV+A%3D1&repo=x".into()));
        assert_eq!(all(&p, "changes"), vec!["CMD [\"sh\"]", "ENV A=1"]);
        assert!(glob("bus*", "busybox"));
        assert!(glob("*box:latest", "busybox:latest"));
        assert!(!glob("bus*x", "busybox:latest"));
        assert_eq!(split_action("localhost:5000/a/b/json"), ("localhost:5000/a/b", "json"));
        assert_eq!(split_action("busybox:latest"), ("busybox:latest", ""));
        assert!(matches_reference("test/imp:v1", "test/*"));
        assert!(matches_reference("localhost:5000/a:v1", "localhost:5000/a"));
        assert!(matches_reference("a@sha256:00", "a"));
        assert!(!matches_reference("x:y", "test/*"));
    }
}
