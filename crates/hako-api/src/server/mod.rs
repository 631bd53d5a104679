//! The daemon's HTTP server: routing, version prefixes, common headers.

mod archive;
mod build;
mod containers;
mod images;
mod networks;
mod registry;
mod system;
mod volumes;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;

use hako_image::ImageService;

use crate::error::ApiError;
use crate::version;

/// What every handler can reach.
pub struct Daemon {
    pub images: Arc<ImageService>,
    pub containers: Arc<crate::containers::Containers>,
    pub root: PathBuf,
    pub host: String,
    pub started: Instant,
}

pub type State = Arc<Daemon>;

pub fn router(state: State) -> Router {
    let api = Router::new()
        .route("/_ping", get(system::ping).head(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/system/df", get(system::df))
        .route("/images/json", get(images::list))
        .route("/images/create", post(images::create))
        .route("/auth", post(registry::auth))
        .route("/images/load", post(images::load))
        .route("/images/get", get(images::save_many))
        .route("/images/prune", post(images::prune))
        .route(
            "/images/{*rest}",
            get(images::get_dispatch)
                .post(images::post_dispatch)
                .delete(images::remove),
        )
        .route("/containers/json", get(containers::list))
        .route("/containers/create", post(containers::create))
        .route("/containers/{id}/json", get(containers::inspect))
        .route("/containers/{id}/start", post(containers::start))
        .route("/containers/{id}/stop", post(containers::stop))
        .route("/containers/{id}/restart", post(containers::restart))
        .route("/containers/{id}/kill", post(containers::kill))
        .route("/containers/{id}/wait", post(containers::wait))
        .route("/containers/{id}/attach", post(containers::attach))
        .route("/containers/{id}/resize", post(containers::resize))
        .route("/containers/{id}/logs", get(containers::logs))
        .route("/containers/{id}/exec", post(containers::exec_create))
        .route("/exec/{id}/start", post(containers::exec_start))
        .route("/exec/{id}/json", get(containers::exec_inspect))
        .route("/exec/{id}/resize", post(containers::exec_resize))
        .route(
            "/containers/{id}/archive",
            get(archive::get).head(archive::head).put(archive::put),
        )
        .route("/containers/{id}/export", get(archive::export))
        .route("/containers/{id}", axum::routing::delete(containers::remove))
        .route("/containers/prune", post(containers::prune))
        .route("/commit", post(containers::commit))
        .route("/containers/{id}/pause", post(containers::pause))
        .route("/containers/{id}/unpause", post(containers::unpause))
        .route("/containers/{id}/rename", post(containers::rename))
        .route("/containers/{id}/top", get(containers::top))
        .route("/containers/{id}/stats", get(containers::stats))
        .route("/containers/{id}/changes", get(containers::diff))
        .route("/networks", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route("/networks/prune", post(networks::prune))
        .route("/networks/{id}", get(networks::inspect).delete(networks::remove))
        .route("/networks/{id}/connect", post(networks::connect))
        .route("/networks/{id}/disconnect", post(networks::disconnect))
        .route("/volumes/prune", post(volumes::prune))
        .route("/volumes", get(volumes::list))
        .route("/volumes/create", post(volumes::create))
        .route("/volumes/{name}", get(volumes::inspect).delete(volumes::remove))
        .route("/build", post(build::build))
        .route("/build/prune", post(system::prune_nothing))
        .route("/hako/v1/system/check", get(system::check))
        .fallback(not_found)
        .with_state(state);
    // The version prefix is stripped before routing, so one route serves both forms.
    Router::new()
        .fallback_service(api)
        .layer(middleware::from_fn(version_prefix))
        .layer(middleware::from_fn(common_headers))
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!("page not found: {} {}", req.method(), req.uri().path()))
}

async fn version_prefix(mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if let Some((v, rest)) = version::split_prefix(&path) {
        if let Err(m) = version::check(v) {
            return ApiError::bad_request(m).into_response();
        }
        let rest = rest.to_string();
        let pq = match req.uri().query() {
            Some(q) => format!("{rest}?{q}"),
            None => rest,
        };
        match pq.parse() {
            Ok(uri) => *req.uri_mut() = uri,
            Err(_) => return ApiError::bad_request("invalid request path").into_response(),
        }
    }
    tracing::debug!(method = %req.method(), path = %path, "request");
    next.run(req).await
}

async fn common_headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert("Api-Version", HeaderValue::from_static(version::MAX_API_VERSION));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert(
        "Server",
        HeaderValue::from_static(concat!("hako/", env!("CARGO_PKG_VERSION"), " (linux)")),
    );
    r
}

/// Runs blocking image work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("worker failed: {e}")))?
}

/// `1`, `true`, `True` are true, as Go's strconv.ParseBool reads the query flags.
pub(crate) fn flag(v: Option<&String>) -> bool {
    matches!(v.map(String::as_str), Some("1" | "true" | "True" | "TRUE" | "t"))
}
