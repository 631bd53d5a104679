//! The Engine API's registry side: `POST /images/create?fromImage=` (pull),
//! `POST /images/{name}/push` and `POST /auth`, over hako-registry's client.
//!
//! Pull and push stream docker's progress JSON lines. As dockerd does, nothing is sent
//! before the first progress message, so a failure that comes first (no such image,
//! unauthorized) is a plain HTTP error the docker CLI prints as such; a later one goes
//! into the stream as `{"errorDetail":{"message"},"error"}`.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use hako_image::reference::Reference;
use hako_registry::client::{self, ClientError, Credentials, RegistryClient};

use super::State;
use crate::error::ApiError;

fn api_error(e: &ClientError) -> ApiError {
    let status = match e.status() {
        Some(StatusCode::NOT_FOUND) => StatusCode::NOT_FOUND,
        Some(StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => StatusCode::UNAUTHORIZED,
        _ => match e {
            ClientError::Invalid(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        },
    };
    ApiError::new(status, e.to_string())
}

/// Runs `work` with a progress sink and answers with its stream.
async fn progress_stream<F, Fut>(work: F) -> Result<Response, ApiError>
where
    F: FnOnce(client::progress::Sink) -> Fut,
    Fut: std::future::Future<Output = Result<(), ClientError>> + Send + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<Result<Value, ClientError>>();
    let t2 = tx.clone();
    let sink: client::progress::Sink = Arc::new(move |v| {
        let _ = t2.send(Ok(v));
    });
    let fut = work(sink);
    tokio::spawn(async move {
        if let Err(e) = fut.await {
            let _ = tx.send(Err(e));
        }
    });
    let first = match rx.recv().await {
        None => return Ok(json_lines_response(Body::empty())),
        Some(Err(e)) => return Err(api_error(&e)),
        Some(Ok(v)) => v,
    };
    let stream = futures_util::stream::unfold((Some(first), rx), |(first, mut rx)| async move {
        let item = match first {
            Some(v) => v,
            None => match rx.recv().await? {
                Ok(v) => v,
                Err(e) => json!({"errorDetail": {"message": e.to_string()}, "error": e.to_string()}),
            },
        };
        let mut line = item.to_string();
        line.push_str("\r\n");
        Some((Ok::<_, std::io::Error>(Bytes::from(line)), (None, rx)))
    });
    Ok(json_lines_response(Body::from_stream(stream)))
}

fn json_lines_response(body: Body) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// `POST /images/create?fromImage=NAME&tag=TAG` (TAG may be a digest).
pub async fn pull(d: State, from_image: &str, tag: &str, headers: &HeaderMap) -> Result<Response, ApiError> {
    let full = if tag.is_empty() {
        from_image.to_string()
    } else if tag.contains(':') {
        format!("{from_image}@{tag}")
    } else {
        format!("{from_image}:{tag}")
    };
    let r = Reference::parse(&full).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let creds = client::decode_registry_auth(headers.get("X-Registry-Auth"));
    let images = d.images.clone();
    progress_stream(move |sink| async move { client::pull::pull(images, &r, creds, sink).await.map(|_| ()) }).await
}

/// `POST /images/{name}/push?tag=TAG`: with no tag, every tag of the repository.
pub async fn push(d: State, name: &str, tag: &str, headers: &HeaderMap) -> Result<Response, ApiError> {
    let base = Reference::parse_name_only(name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let creds = client::decode_registry_auth(headers.get("X-Registry-Auth"));
    let refs: Vec<Reference> = if !tag.is_empty() {
        vec![Reference::parse(&format!("{}:{tag}", base.repository()))
            .map_err(|e| ApiError::bad_request(e.to_string()))?]
    } else if base.tag.is_some() {
        vec![base.clone()]
    } else {
        let repo = base.repository();
        let prefix = format!("{repo}:");
        let all: Vec<(String, String)> = d
            .images
            .meta()
            .list(hako_store::meta::TAGS)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let mut v: Vec<Reference> = all
            .into_iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(k, _)| Reference::parse(&k).ok())
            .collect();
        v.sort_by_key(|r| r.tag.clone());
        v
    };
    if refs.is_empty() {
        return Err(ApiError::not_found(format!(
            "An image does not exist locally with the tag: {name}"
        )));
    }
    for r in &refs {
        d.images.resolve(&r.to_string()).map_err(|_| {
            ApiError::not_found(format!(
                "An image does not exist locally with the tag: {}",
                hako_image::reference::familiar(&r.to_string())
            ))
        })?;
    }
    let images = d.images.clone();
    progress_stream(move |sink| async move {
        for r in refs {
            client::push::push(images.clone(), &r, creds.clone(), sink.clone()).await?;
        }
        Ok(())
    })
    .await
}

#[derive(serde::Deserialize)]
pub struct AuthBody {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default, rename = "serveraddress")]
    server_address: String,
    #[serde(default, rename = "identitytoken")]
    identity_token: String,
}

/// `POST /auth`: checks credentials against the registry, as `docker login` asks.
pub async fn auth(Json(b): Json<AuthBody>) -> Result<Json<Value>, ApiError> {
    let server = b
        .server_address
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or("")
        .to_string();
    let host = match server.as_str() {
        "" | "index.docker.io" | "docker.io" => "registry-1.docker.io".to_string(),
        s => client::registry_host(s),
    };
    let creds = Credentials {
        username: b.username,
        password: b.password,
        identity_token: b.identity_token,
    };
    let c = RegistryClient::new(&host, Some(creds)).map_err(|e| api_error(&e))?;
    c.login().await.map_err(|e| {
        let mut a = api_error(&e);
        if matches!(e.status(), Some(StatusCode::UNAUTHORIZED)) {
            a.message = format!("login attempt to {host} failed with status: 401 Unauthorized");
        }
        a
    })?;
    Ok(Json(json!({"Status": "Login Succeeded", "IdentityToken": ""})))
}
