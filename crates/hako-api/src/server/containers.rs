//! `/containers/...`: create, start, stop, kill, wait, attach, logs, list, inspect, remove.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, Request, State as AxState};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use hako_runtime::monitor::AttachRequest;

use super::images::{first, parse_filters, query_pairs};
use super::{flag, State};
use crate::containers::parse_signal;
use crate::containers::record::ContainerRecord;
use crate::error::ApiError;
use crate::human::human_duration;

pub async fn create(AxState(d): AxState<State>, RawQuery(q): RawQuery, body: Bytes) -> Result<Response, ApiError> {
    let pairs = query_pairs(&q);
    let body: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid container config: {e}")))?;
    let name = first(&pairs, "name").cloned();
    validate_config(&body)?;
    let c = d.containers.clone();
    let (id, warnings) = super::blocking(move || c.create(&body, name.as_deref())).await?;
    Ok((StatusCode::CREATED, Json(json!({"Id": id, "Warnings": warnings}))).into_response())
}

/// What dockerd's verifyContainerSettings refuses in a container's own config, with its words.
fn validate_config(body: &Value) -> Result<(), ApiError> {
    let field = |k: &str| body.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    if let Some(wd) = field("WorkingDir").filter(|wd| !wd.starts_with('/')) {
        return Err(ApiError::bad_request(format!(
            "the working directory '{wd}' is invalid, it needs to be an absolute path"
        )));
    }
    if let Some(sig) = field("StopSignal").filter(|s| parse_signal(s).is_none()) {
        return Err(ApiError::bad_request(format!("Invalid signal: {sig}")));
    }
    Ok(())
}

pub async fn start(AxState(d): AxState<State>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    Ok(if d.containers.start(&id).await? {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_MODIFIED
    })
}

pub async fn stop(
    AxState(d): AxState<State>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<StatusCode, ApiError> {
    let pairs = query_pairs(&q);
    let t = first(&pairs, "t").and_then(|t| t.parse().ok());
    let sig = match first(&pairs, "signal") {
        Some(s) => Some(parse_signal(s).ok_or_else(|| ApiError::bad_request(format!("Invalid signal: {s}")))?),
        None => None,
    };
    Ok(if d.containers.stop(&id, t, sig).await? {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_MODIFIED
    })
}

pub async fn restart(
    AxState(d): AxState<State>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<StatusCode, ApiError> {
    let pairs = query_pairs(&q);
    let t = first(&pairs, "t").and_then(|t| t.parse().ok());
    d.containers.restart(&id, t).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn kill(
    AxState(d): AxState<State>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<StatusCode, ApiError> {
    let pairs = query_pairs(&q);
    let sig = match first(&pairs, "signal").filter(|s| !s.is_empty()) {
        Some(s) => parse_signal(s).ok_or_else(|| ApiError::bad_request(format!("Invalid signal: {s}")))?,
        None => libc::SIGKILL,
    };
    d.containers.kill(&id, sig)?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn remove(
    AxState(d): AxState<State>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<StatusCode, ApiError> {
    let pairs = query_pairs(&q);
    d.containers
        .remove(&id, flag(first(&pairs, "force")), flag(first(&pairs, "v")))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The chunked answer is sent at once; its body once the condition holds.
pub async fn wait(
    AxState(d): AxState<State>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(&q);
    let condition = first(&pairs, "condition")
        .cloned()
        .unwrap_or_else(|| "not-running".into());
    if !matches!(condition.as_str(), "not-running" | "next-exit" | "removed") {
        return Err(ApiError::bad_request(format!("invalid condition: {condition:?}")));
    }
    let e = d.containers.get(&id)?;
    let mut rx = e.events.subscribe();
    let start = *rx.borrow();
    let fut = async move {
        let res = match condition.as_str() {
            "next-exit" => rx.wait_for(|ev| ev.exits > start.exits || ev.removed).await.map(|v| *v),
            "removed" => rx.wait_for(|ev| ev.removed).await.map(|v| *v),
            _ => rx.wait_for(|ev| !ev.running).await.map(|v| *v),
        };
        let code = res.map(|ev| ev.exit_code).unwrap_or(start.exit_code);
        Ok::<_, std::io::Error>(Bytes::from(format!("{}\n", json!({"StatusCode": code, "Error": null}))))
    };
    let mut r = Response::new(Body::from_stream(futures_util::stream::once(fut)));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

fn upgrade_response(tty: bool) -> Response {
    let ct = if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    };
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    r
}

/// Connects to the monitor's attach socket.
async fn monitor_stream(d: &State, id: &str, req: &AttachRequest) -> std::io::Result<tokio::net::UnixStream> {
    let mut s = crate::containers::connect_monitor(&d.containers.container_dir(id)).await?;
    let mut line = serde_json::to_vec(req).map_err(std::io::Error::other)?;
    line.push(b'\n');
    s.write_all(&line).await?;
    Ok(s)
}

/// `POST /containers/{id}/attach`: hijacks the connection and splices it to the monitor.
/// Before start, the attach registers itself so the monitor waits for it.
pub async fn attach(
    AxState(d): AxState<State>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    mut req: Request,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(&q);
    let e = d.containers.get(&id)?;
    let rec = e.rec.lock().unwrap().clone(); // unwrap: poisoned only after a panic
    let tty = rec.config.get("Tty").and_then(Value::as_bool).unwrap_or(false);
    let want = AttachRequest {
        stdin: flag(first(&pairs, "stdin")),
        stdout: flag(first(&pairs, "stdout")),
        stderr: flag(first(&pairs, "stderr")),
        resize: None,
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    // Registered before the answer, so a start that follows cannot be missed.
    let mut started = Box::pin(e.started.clone().notified_owned());
    started.as_mut().enable();
    let running = rec.state.running;
    if !running {
        *e.pending_attach.lock().unwrap() += 1; // unwrap: see above
    }
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else { return };
        let mut client = hyper_util::rt::TokioIo::new(upgraded);
        if !running {
            tracing::debug!(container = %rec.id, "attach: waiting for start");
            started.await;
        }
        let mut mon = match monitor_stream(&d, &rec.id, &want).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(container = %rec.id, error = %e, "attach: cannot reach the container's monitor");
                return;
            }
        };
        tracing::debug!(container = %rec.id, "attach: connected to the monitor");
        let _ = tokio::io::copy_bidirectional(&mut client, &mut mon).await;
    });
    Ok(upgrade_response(tty))
}

pub async fn resize(
    AxState(d): AxState<State>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<StatusCode, ApiError> {
    let pairs = query_pairs(&q);
    let h: u16 = first(&pairs, "h").and_then(|v| v.parse().ok()).unwrap_or(0);
    let w: u16 = first(&pairs, "w").and_then(|v| v.parse().ok()).unwrap_or(0);
    let e = d.containers.get(&id)?;
    let rid = e.rec.lock().unwrap().id.clone(); // unwrap: see above
    if h > 0 && w > 0 {
        let req = AttachRequest {
            resize: Some((h, w)),
            ..Default::default()
        };
        if let Ok(mut s) = monitor_stream(&d, &rid, &req).await {
            let _ = s.shutdown().await;
            let mut sink = Vec::new();
            let _ = tokio::time::timeout(Duration::from_millis(200), s.read_to_end(&mut sink)).await;
        }
    }
    Ok(StatusCode::OK)
}

/// `POST /exec/{id}/resize?h=&w=`.
pub async fn exec_resize(
    AxState(d): AxState<State>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<StatusCode, ApiError> {
    let pairs = query_pairs(&q);
    let dim = |k: &str| -> Result<u16, ApiError> {
        let v = first(&pairs, k).map(String::as_str).unwrap_or("");
        v.parse()
            .map_err(|_| ApiError::bad_request(format!("strconv.Atoi: parsing {v:?}: invalid syntax")))
    };
    let size = (dim("h")?, dim("w")?);
    d.containers.exec_resize(&id, size)?;
    Ok(StatusCode::OK)
}

fn status_text(r: &ContainerRecord) -> String {
    let since = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| chrono::Utc::now().timestamp() - t.timestamp())
            .unwrap_or(0)
    };
    let health = match r.state.health.as_ref().map(|h| h.status.as_str()) {
        Some("starting") => " (health: starting)".to_string(),
        Some(s) if !s.is_empty() => format!(" ({s})"),
        _ => String::new(),
    };
    match r.state.status.as_str() {
        "running" => format!("Up {}{health}", human_duration(since(&r.state.started_at))),
        "paused" => format!("Up {} (Paused)", human_duration(since(&r.state.started_at))),
        "exited" => format!(
            "Exited ({}) {} ago",
            r.state.exit_code,
            human_duration(since(&r.state.finished_at))
        ),
        "created" => "Created".into(),
        other => other.to_string(),
    }
}

pub(crate) fn summary(r: &ContainerRecord) -> Value {
    // As dockerd lists it: arguments with a space in single quotes.
    let mut command = vec![r.path.clone()];
    command.extend(
        r.args
            .iter()
            .map(|a| if a.contains(' ') { format!("'{a}'") } else { a.clone() }),
    );
    json!({
        "Id": r.id,
        "Names": [r.name],
        "Image": r.config.get("Image").cloned().unwrap_or(json!("")),
        "ImageID": r.image,
        "Command": command.join(" "),
        "Created": chrono::DateTime::parse_from_rfc3339(&r.created).map(|t| t.timestamp()).unwrap_or(0),
        "Ports": r.port_summary(),
        "Labels": r.config.get("Labels").cloned().unwrap_or(json!({})),
        "State": r.state.status,
        "Status": status_text(r),
        "HostConfig": {"NetworkMode": r.host_config.get("NetworkMode").cloned().unwrap_or(json!("default"))},
        "NetworkSettings": {"Networks": r.network_settings()["Networks"]},
        "Mounts": r.mounts,
    })
}

pub async fn list(AxState(d): AxState<State>, RawQuery(q): RawQuery) -> Result<Json<Value>, ApiError> {
    let pairs = query_pairs(&q);
    let all = flag(first(&pairs, "all"));
    let limit: i64 = first(&pairs, "limit").and_then(|l| l.parse().ok()).unwrap_or(-1);
    let filters = parse_filters(first(&pairs, "filters"))?;
    let mut recs: Vec<ContainerRecord> = d
        .containers
        .all()
        .iter()
        .map(|e| e.rec.lock().unwrap().clone())
        .collect(); // unwrap: see above
    recs.sort_by(|a, b| b.created.cmp(&a.created));
    const KNOWN: [&str; 11] = [
        "status", "name", "id", "exited", "ancestor", "label", "volume", "network", "before", "since", "health",
    ];
    if let Some(k) = filters.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(ApiError::bad_request(format!("invalid filter '{k}'")));
    }
    // `before` and `since` name a container; records compare by creation time.
    let created_of = |key: &str| -> Result<Vec<String>, ApiError> {
        filters
            .get(key)
            .into_iter()
            .flatten()
            .map(|v| Ok(d.containers.get(v)?.rec.lock().unwrap().created.clone())) // unwrap: see above
            .collect()
    };
    let (before, since) = (created_of("before")?, created_of("since")?);
    let keep = |r: &ContainerRecord| -> bool {
        for (k, vals) in &filters {
            let ok = vals.iter().any(|v| match k.as_str() {
                "status" => r.state.status == *v,
                "name" => r.name.trim_start_matches('/').contains(v.as_str()),
                "id" => r.id.starts_with(v.as_str()),
                "exited" => r.state.status == "exited" && r.state.exit_code.to_string() == *v,
                "ancestor" => {
                    r.config.get("Image").and_then(Value::as_str) == Some(v.as_str()) || r.image.contains(v.as_str())
                }
                "label" => {
                    let labels = r.config.get("Labels");
                    match v.split_once('=') {
                        Some((lk, lv)) => labels.and_then(|l| l.get(lk)).and_then(Value::as_str) == Some(lv),
                        None => labels.and_then(|l| l.get(v)).is_some(),
                    }
                }
                "volume" => r
                    .mounts
                    .iter()
                    .any(|m| m["Name"] == v.as_str() || m["Source"] == v.as_str() || m["Destination"] == v.as_str()),
                "network" => r.network_settings()["Networks"].get(v.as_str()).is_some(),
                // `none`: no HEALTHCHECK; else the status, as Docker filters it.
                "health" => r.state.health.as_ref().map_or("none", |h| h.status.as_str()) == v.as_str(),
                "before" => before.iter().all(|t| r.created < *t),
                "since" => since.iter().all(|t| r.created > *t),
                _ => false,
            });
            if !ok {
                return false;
            }
        }
        true
    };
    let explicit_status = filters.contains_key("status") || filters.contains_key("exited");
    let mut shown: Vec<ContainerRecord> = recs
        .into_iter()
        .filter(|r| (all || explicit_status || limit > 0 || r.state.running) && keep(r))
        .collect();
    if limit > 0 {
        shown.truncate(limit as usize);
    }
    let mut out: Vec<Value> = shown.iter().map(summary).collect();
    if flag(first(&pairs, "size")) {
        let c = d.containers.clone();
        let sizes = super::blocking(move || Ok(shown.iter().map(|r| c.sizes(r)).collect::<Vec<_>>())).await?;
        for (v, (rw, rootfs)) in out.iter_mut().zip(sizes) {
            v["SizeRw"] = json!(rw);
            v["SizeRootFs"] = json!(rootfs);
        }
    }
    Ok(Json(Value::Array(out)))
}

pub async fn inspect(
    AxState(d): AxState<State>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let e = d.containers.get(&id)?;
    let r = e.rec.lock().unwrap().clone(); // unwrap: see above
    let mut v = serde_json::to_value(&r).map_err(|e| ApiError::internal(e.to_string()))?;
    let dir = d.containers.container_dir(&r.id);
    v["Driver"] = json!("overlay");
    v["Platform"] = json!("linux");
    v["MountLabel"] = json!("");
    v["ProcessLabel"] = json!("");
    v["AppArmorProfile"] = json!("");
    let execs = d.containers.exec_ids(&r.id);
    v["ExecIDs"] = if execs.is_empty() { Value::Null } else { json!(execs) };
    v["GraphDriver"] = json!({"Name": "overlay", "Data": {"UpperDir": dir.join("rootfs/upper"), "WorkDir": dir.join("rootfs/work"), "MergedDir": dir.join("rootfs/merged")}});
    v["Mounts"] = json!(r.mounts);
    v["NetworkSettings"] = r.network_settings();
    // The record's own fields for them are the engine's, not Docker's.
    if let Some(o) = v.as_object_mut() {
        o.remove("Networks");
        o.remove("Ports");
    }
    if flag(first(&query_pairs(&q), "size")) {
        let c = d.containers.clone();
        let (rw, rootfs) = super::blocking(move || Ok(c.sizes(&r))).await?;
        v["SizeRw"] = json!(rw);
        v["SizeRootFs"] = json!(rootfs);
    }
    Ok(Json(v))
}

/// One json-file log entry.
#[derive(serde::Deserialize)]
struct LogLine {
    log: String,
    stream: String,
    time: String,
}

fn frame(stream: &str, data: &[u8], tty: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 8);
    if !tty {
        out.extend_from_slice(&[if stream == "stderr" { 2 } else { 1 }, 0, 0, 0]);
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

/// A time as (seconds, nanoseconds) since the epoch, exactly: `SECONDS[.NANOS]` as the docker
/// CLI sends `since`/`until`, or RFC 3339 as the log's entries carry it. So `--since` with an
/// entry's own timestamp includes that entry, as with dockerd.
fn parse_when(s: &str) -> Option<(i64, u32)> {
    if s.is_empty() || s == "0" {
        return None;
    }
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if let Ok(secs) = secs.parse::<i64>() {
        if frac.len() <= 9 && frac.bytes().all(|b| b.is_ascii_digit()) {
            return Some((secs, format!("{frac:0<9}").parse().ok()?));
        }
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| (t.timestamp(), t.timestamp_subsec_nanos()))
}

pub async fn logs(
    AxState(d): AxState<State>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(&q);
    let e = d.containers.get(&id)?;
    let r = e.rec.lock().unwrap().clone(); // unwrap: see above
    let tty = r.config.get("Tty").and_then(Value::as_bool).unwrap_or(false);
    let follow = flag(first(&pairs, "follow"));
    let want_out = flag(first(&pairs, "stdout"));
    let want_err = flag(first(&pairs, "stderr"));
    if !want_out && !want_err {
        return Err(ApiError::bad_request(
            "Bad parameters: you must choose at least one stream",
        ));
    }
    let timestamps = flag(first(&pairs, "timestamps"));
    let since = first(&pairs, "since").and_then(|s| parse_when(s));
    let until = first(&pairs, "until").and_then(|s| parse_when(s));
    let tail: Option<usize> = first(&pairs, "tail").and_then(|t| t.parse().ok());
    let path = std::path::PathBuf::from(&r.log_path);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let events = e.events.subscribe();
    tokio::spawn(async move {
        let render = |l: &LogLine| -> Option<Vec<u8>> {
            if (l.stream == "stdout" && !want_out) || (l.stream == "stderr" && !want_err) {
                return None;
            }
            let t = parse_when(&l.time);
            if let (Some(s), Some(t)) = (since, t) {
                if t < s {
                    return None;
                }
            }
            if let (Some(u), Some(t)) = (until, t) {
                if t > u {
                    return None;
                }
            }
            let text = if timestamps {
                format!("{} {}", l.time, l.log)
            } else {
                l.log.clone()
            };
            Some(frame(&l.stream, text.as_bytes(), tty))
        };
        // Rotated files first, oldest first.
        let mut files: Vec<std::path::PathBuf> = (1..100)
            .map(|i| std::path::PathBuf::from(format!("{}.{i}", path.display())))
            .take_while(|p| p.exists())
            .collect();
        files.reverse();
        files.push(path.clone());
        let mut lines: Vec<LogLine> = Vec::new();
        let mut offset = 0u64;
        for f in &files {
            let data = tokio::fs::read(f).await.unwrap_or_default();
            if *f == path {
                offset = data.len() as u64;
            }
            lines.extend(
                data.split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .filter_map(|l| serde_json::from_slice(l).ok()),
            );
        }
        if let Some(n) = tail {
            let skip = lines.len().saturating_sub(n);
            lines.drain(..skip);
        }
        for l in &lines {
            if let Some(b) = render(l) {
                if tx.send(Ok(Bytes::from(b))).await.is_err() {
                    return;
                }
            }
        }
        if !follow {
            return;
        }
        let mut partial: Vec<u8> = Vec::new();
        loop {
            let running = events.borrow().running;
            let mut f = match tokio::fs::File::open(&path).await {
                Ok(f) => f,
                Err(_) => return,
            };
            let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
            if len < offset {
                offset = 0; // rotated
            }
            if len > offset {
                use tokio::io::AsyncSeekExt;
                let _ = f.seek(std::io::SeekFrom::Start(offset)).await;
                let mut buf = Vec::new();
                let _ = f.read_to_end(&mut buf).await;
                offset += buf.len() as u64;
                partial.extend_from_slice(&buf);
                while let Some(i) = partial.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = partial.drain(..=i).collect();
                    if let Ok(l) = serde_json::from_slice::<LogLine>(&line) {
                        if let Some(b) = render(&l) {
                            if tx.send(Ok(Bytes::from(b))).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            } else if !running {
                return;
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut resp = Response::new(Body::from_stream(crate::bridge::receiver_stream(rx)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(if tty {
            "application/vnd.docker.raw-stream"
        } else {
            "application/vnd.docker.multiplexed-stream"
        }),
    );
    Ok(resp)
}

pub async fn exec_create(
    AxState(d): AxState<State>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid exec config: {e}")))?;
    let c = d.containers.clone();
    let exec_id = super::blocking(move || c.exec_create(&id, body)).await?;
    Ok((StatusCode::CREATED, Json(json!({"Id": exec_id}))).into_response())
}

pub async fn exec_inspect(AxState(d): AxState<State>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(d.containers.exec_inspect(&id)?))
}

/// `POST /exec/{id}/start`: detached, or hijacked with the exec's stdio relayed.
pub async fn exec_start(
    AxState(d): AxState<State>,
    Path(id): Path<String>,
    mut req: Request,
) -> Result<Response, ApiError> {
    let on_upgrade = hyper::upgrade::on(&mut req);
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let opts: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad_request(format!("invalid exec start config: {e}")))?
    };
    let detach = opts.get("Detach").and_then(Value::as_bool).unwrap_or(false);
    let size = crate::containers::exec::console_size(opts.get("ConsoleSize"));
    let (inst, mut child) = d.containers.exec_spawn(&id, size)?;
    let tty = inst
        .lock()
        .unwrap()
        .body
        .get("Tty")
        .and_then(Value::as_bool)
        .unwrap_or(false); // unwrap: poisoned only after a panic
    let containers = d.containers.clone();
    if detach {
        tokio::spawn(async move {
            drop(child.stdin.take());
            let code = child.wait().await.ok().and_then(|s| s.code()).unwrap_or(255);
            containers.exec_finished(&inst, code);
        });
        return Ok(StatusCode::OK.into_response());
    }
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            let _ = child.kill().await;
            return;
        };
        let client = hyper_util::rt::TokioIo::new(upgraded);
        let (mut cr, mut cw) = tokio::io::split(client);
        if let Some(mut stdin) = child.stdin.take() {
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut cr, &mut stdin).await;
            });
        }
        let mut out = child.stdout.take();
        let mut err = child.stderr.take();
        let mut ob = vec![0u8; 32 * 1024];
        let mut eb = vec![0u8; 32 * 1024];
        while out.is_some() || err.is_some() {
            tokio::select! {
                r = async { out.as_mut().expect("checked").read(&mut ob).await }, if out.is_some() => match r {
                    Ok(n) if n > 0 => { let _ = cw.write_all(&frame("stdout", &ob[..n], tty)).await; }
                    _ => out = None,
                },
                r = async { err.as_mut().expect("checked").read(&mut eb).await }, if err.is_some() => match r {
                    Ok(n) if n > 0 => { let _ = cw.write_all(&frame("stderr", &eb[..n], tty)).await; }
                    _ => err = None,
                },
            }
        }
        let code = child.wait().await.ok().and_then(|s| s.code()).unwrap_or(255);
        containers.exec_finished(&inst, code);
        let _ = cw.shutdown().await;
    });
    Ok(upgrade_response(tty))
}

pub async fn pause(AxState(d): AxState<State>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    d.containers.set_paused(&id, true)?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn unpause(AxState(d): AxState<State>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    d.containers.set_paused(&id, false)?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn rename(
    AxState(d): AxState<State>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<StatusCode, ApiError> {
    let pairs = query_pairs(&q);
    let name = first(&pairs, "name")
        .cloned()
        .ok_or_else(|| ApiError::bad_request("name is required"))?;
    d.containers.rename(&id, &name)?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn prune(AxState(d): AxState<State>) -> Result<Json<Value>, ApiError> {
    Ok(Json(d.containers.prune().await?))
}

/// `GET /containers/{id}/top?ps_args=`.
pub async fn top(
    AxState(d): AxState<State>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let ps_args = first(&query_pairs(&q), "ps_args").cloned();
    let c = d.containers.clone();
    Ok(Json(super::blocking(move || c.top(&id, ps_args.as_deref())).await?))
}

pub async fn diff(AxState(d): AxState<State>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let c = d.containers.clone();
    Ok(Json(super::blocking(move || c.diff(&id)).await?))
}

/// `POST /commit?container=&repo=&tag=&comment=&author=&changes=&pause=`.
pub async fn commit(AxState(d): AxState<State>, RawQuery(q): RawQuery, body: Bytes) -> Result<Response, ApiError> {
    let pairs = query_pairs(&q);
    let container = first(&pairs, "container")
        .cloned()
        .ok_or_else(|| ApiError::bad_request("container is required"))?;
    let repo = first(&pairs, "repo").cloned().unwrap_or_default();
    let tag = first(&pairs, "tag").cloned().unwrap_or_default();
    let reference = if repo.is_empty() {
        None
    } else {
        let full = if tag.is_empty() { repo } else { format!("{repo}:{tag}") };
        Some(hako_image::Reference::parse(&full).map_err(|e| ApiError::bad_request(e.to_string()))?)
    };
    let config = if body.is_empty() {
        None
    } else {
        serde_json::from_slice(&body).ok()
    };
    let req = crate::containers::ops::CommitRequest {
        container,
        reference,
        comment: first(&pairs, "comment").cloned().unwrap_or_default(),
        author: first(&pairs, "author").cloned().unwrap_or_default(),
        changes: pairs
            .iter()
            .filter(|(k, _)| k == "changes")
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
            .collect(),
        pause: first(&pairs, "pause").map(|p| p != "0" && p != "false").unwrap_or(true),
        config,
    };
    let c = d.containers.clone();
    let id = super::blocking(move || c.commit(&req)).await?;
    Ok((StatusCode::CREATED, Json(json!({"Id": id}))).into_response())
}

/// `GET /containers/{id}/stats`: one sample (`stream=false`, taken over half a second so the
/// CPU share means something; `one-shot=true` skips the wait) or one per second.
pub async fn stats(
    AxState(d): AxState<State>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(&q);
    let stream = first(&pairs, "stream")
        .map(|s| s != "0" && s != "false")
        .unwrap_or(true);
    let one_shot = flag(first(&pairs, "one-shot"));
    let first_sample = d.containers.stats_sample(&id, None)?;
    if !stream {
        let v = if one_shot {
            first_sample
        } else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            d.containers.stats_sample(&id, Some(&first_sample))?
        };
        return Ok(Json(v).into_response());
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        let mut pre = first_sample;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let Ok(v) = d.containers.stats_sample(&id, Some(&pre)) else {
                return;
            };
            if tx.send(Ok(Bytes::from(format!("{v}\n")))).await.is_err() {
                return;
            }
            pre = v;
        }
    });
    let mut r = Response::new(Body::from_stream(crate::bridge::receiver_stream(rx)));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}
