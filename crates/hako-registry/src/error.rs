//! Errors in the distribution spec's form: an HTTP status and
//! `{"errors":[{"code","message","detail"}]}` with the spec's codes.

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    TagInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    RangeInvalid,
    Internal,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BlobUnknown => "BLOB_UNKNOWN",
            Code::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Code::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Code::DigestInvalid => "DIGEST_INVALID",
            Code::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Code::ManifestInvalid => "MANIFEST_INVALID",
            Code::ManifestUnknown => "MANIFEST_UNKNOWN",
            Code::NameInvalid => "NAME_INVALID",
            Code::NameUnknown => "NAME_UNKNOWN",
            Code::SizeInvalid => "SIZE_INVALID",
            // Docker's code, which the spec lists among the legacy ones clients may meet; it
            // has none of its own for a tag outside `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
            Code::TagInvalid => "TAG_INVALID",
            Code::Unauthorized => "UNAUTHORIZED",
            Code::Denied => "DENIED",
            Code::Unsupported => "UNSUPPORTED",
            Code::TooManyRequests => "TOOMANYREQUESTS",
            // The spec has no code of its own for a bad range; 416 carries this one.
            Code::RangeInvalid => "BLOB_UPLOAD_INVALID",
            Code::Internal => "UNKNOWN",
        }
    }

    /// The status the spec (and distribution) pair with each code.
    pub fn status(self) -> StatusCode {
        match self {
            Code::BlobUnknown | Code::BlobUploadUnknown | Code::ManifestUnknown | Code::NameUnknown => {
                StatusCode::NOT_FOUND
            }
            Code::BlobUploadInvalid
            | Code::DigestInvalid
            | Code::ManifestBlobUnknown
            | Code::ManifestInvalid
            | Code::NameInvalid
            | Code::SizeInvalid
            | Code::TagInvalid => StatusCode::BAD_REQUEST,
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::Denied => StatusCode::FORBIDDEN,
            Code::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            Code::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Code::RangeInvalid => StatusCode::RANGE_NOT_SATISFIABLE,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn parse(s: &str) -> Option<Code> {
        use Code::*;
        [
            BlobUnknown,
            BlobUploadInvalid,
            BlobUploadUnknown,
            DigestInvalid,
            ManifestBlobUnknown,
            ManifestInvalid,
            ManifestUnknown,
            NameInvalid,
            NameUnknown,
            SizeInvalid,
            TagInvalid,
            Unauthorized,
            Denied,
            Unsupported,
            TooManyRequests,
            Internal,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// One registry error, ready to be an HTTP response.
#[derive(Debug)]
pub struct RegistryError {
    pub code: Code,
    pub status: StatusCode,
    pub message: String,
    pub detail: Value,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl RegistryError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        RegistryError {
            code,
            status: code.status(),
            message: message.into(),
            detail: Value::Null,
            headers: Vec::new(),
        }
    }
    pub fn detail(mut self, d: Value) -> Self {
        self.detail = d;
        self
    }
    pub fn status(mut self, s: StatusCode) -> Self {
        self.status = s;
        self
    }
    pub fn header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }
    pub fn internal(e: impl std::fmt::Display) -> Self {
        RegistryError::new(Code::Internal, e.to_string())
    }
}

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for RegistryError {}

impl From<std::io::Error> for RegistryError {
    fn from(e: std::io::Error) -> Self {
        RegistryError::internal(format!("storage: {e}"))
    }
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code.as_str(), message = %self.message, "request failed");
        }
        let body = json!({"errors": [{"code": self.code.as_str(), "message": self.message, "detail": self.detail}]});
        let mut r = (self.status, body.to_string()).into_response();
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (k, v) in self.headers {
            h.insert(k, v);
        }
        r
    }
}
