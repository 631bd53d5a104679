//! `/_ping`, `/version`, `/info`, `/system/df`, and hako's `/hako/v1/system/check`.

use axum::extract::State as AxState;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::{blocking, State};
use crate::error::ApiError;
use crate::version::{MAX_API_VERSION, MIN_API_VERSION};

pub async fn ping(method: Method) -> Response {
    let mut h = HeaderMap::new();
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    h.insert("Swarm", HeaderValue::from_static("inactive"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    let body = if method == Method::HEAD { "" } else { "OK" };
    (h, body).into_response()
}

fn kernel_version() -> String {
    rustix::system::uname().release().to_string_lossy().into_owned()
}

pub async fn version() -> Json<Value> {
    let v = env!("CARGO_PKG_VERSION");
    Json(json!({
        "Platform": {"Name": "hako"},
        "Components": [{"Name": "Engine", "Version": v, "Details": {
            "ApiVersion": MAX_API_VERSION, "MinAPIVersion": MIN_API_VERSION, "Os": "linux",
            "Arch": hako_image::import::host_arch(), "KernelVersion": kernel_version(), "Experimental": "false",
        }}],
        "Version": v,
        "ApiVersion": MAX_API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": option_env!("HAKO_GIT_COMMIT").unwrap_or("unknown"),
        "GoVersion": "n/a (Rust)",
        "Os": "linux",
        "Arch": hako_image::import::host_arch(),
        "KernelVersion": kernel_version(),
        "BuildTime": "",
        "Experimental": false,
    }))
}

fn cgroup_version() -> &'static str {
    match hako_runtime::cgroups::detect() {
        hako_runtime::cgroups::Layout::Unified => "2",
        _ => "1",
    }
}

pub async fn info(AxState(d): AxState<State>) -> Result<Json<Value>, ApiError> {
    let d2 = d.clone();
    let images = blocking(move || Ok(d2.images.list()?.len())).await?;
    let (mut running, mut paused, mut stopped) = (0, 0, 0);
    for e in d.containers.all() {
        let st = &e.rec.lock().unwrap().state; // unwrap: poisoned only after a panic
        match (st.running, st.paused) {
            (true, true) => paused += 1,
            (true, false) => running += 1,
            _ => stopped += 1,
        }
    }
    let host = rustix::system::uname().nodename().to_string_lossy().into_owned();
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string()))
        })
        .unwrap_or_else(|| "Linux".into());
    Ok(Json(json!({
        "ID": host, "Name": host,
        "Containers": running + paused + stopped, "ContainersRunning": running, "ContainersPaused": paused, "ContainersStopped": stopped,
        "Images": images,
        "Driver": "overlay", "DriverStatus": [["Backing Filesystem", "extfs"], ["Layers", "per chain ID"]],
        "DockerRootDir": d.root.display().to_string(),
        "Plugins": {"Volume": [], "Network": [], "Authorization": null, "Log": ["json-file"]},
        "MemoryLimit": true, "SwapLimit": true, "CpuCfsPeriod": true, "CpuCfsQuota": true, "CPUShares": true, "CPUSet": true, "PidsLimit": true,
        "IPv4Forwarding": true, "Debug": false, "NFd": 0, "NGoroutines": 0, "SystemTime": hako_image::service::now_rfc3339(),
        "LoggingDriver": "json-file", "CgroupDriver": "cgroupfs", "CgroupVersion": cgroup_version(),
        "KernelVersion": kernel_version(), "OperatingSystem": os, "OSVersion": "", "OSType": "linux",
        "Architecture": std::env::consts::ARCH, "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "MemTotal": crate::containers::ops::host_memory(), "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": ["127.0.0.0/8"], "Mirrors": []},
        "GenericResources": null, "HttpProxy": "", "HttpsProxy": "", "NoProxy": "", "Labels": [], "ExperimentalBuild": false,
        "ServerVersion": env!("CARGO_PKG_VERSION"), "Runtimes": {"hako": {"path": "hako"}}, "DefaultRuntime": "hako",
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": false, "Error": "", "RemoteManagers": null},
        "LiveRestoreEnabled": true, "Isolation": "", "InitBinary": "", "SecurityOptions": ["name=seccomp,profile=builtin", "name=no-new-privileges", "name=cgroupns"], "Warnings": [],
    })))
}

pub async fn df(AxState(d): AxState<State>) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let images = d.images.list()?;
        let layers = d.images.disk_usage()?;
        let rows: Vec<Value> = images.iter().map(|s| super::images::summary_json(s, true)).collect();
        let containers: Vec<Value> = d
            .containers
            .all()
            .iter()
            .map(|e| {
                let r = e.rec.lock().unwrap().clone(); // unwrap: poisoned only after a panic
                let (rw, rootfs) = d.containers.sizes(&r);
                let mut v = super::containers::summary(&r);
                v["SizeRw"] = json!(rw);
                v["SizeRootFs"] = json!(rootfs);
                v
            })
            .collect();
        let volumes: Vec<Value> = d
            .containers
            .volume_list()?
            .into_iter()
            .map(|mut v| {
                let name = v["Name"].as_str().unwrap_or("").to_string();
                v["UsageData"] = json!({"Size": d.containers.volume_size(&name), "RefCount": d.containers.volume_users(&name).len()});
                v
            })
            .collect();
        Ok(Json(
            json!({"LayersSize": layers, "Images": rows, "Containers": containers, "Volumes": volumes, "BuildCache": []}),
        ))
    })
    .await
}

/// Prune endpoints of object kinds this daemon does not create yet: nothing to remove.
pub async fn prune_nothing() -> Json<Value> {
    Json(
        json!({"ContainersDeleted": null, "NetworksDeleted": null, "VolumesDeleted": null, "CachesDeleted": null, "SpaceReclaimed": 0}),
    )
}

pub async fn check(AxState(d): AxState<State>) -> Result<Json<Value>, ApiError> {
    blocking(move || {
        let problems = d.images.check()?;
        Ok(Json(json!({"Problems": problems})))
    })
    .await
}
