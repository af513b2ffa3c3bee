//! The fronts' error: the service layer's [`ServiceError`], mapped once per front. REST renders
//! the JSON shape the Dakera clients parse (`{"error": message, "code": SCREAMING_SNAKE,
//! "details"?: string, "resource"?: string}`, `Retry-After` on 429/503); gRPC a status code.

use std::ops::{Deref, DerefMut};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
pub use loci_service::ServiceError;
use serde::Serialize;

/// A [`ServiceError`] on its way out of a front.
#[derive(Debug, Clone)]
pub struct ApiError(pub ServiceError);

pub type ApiResult<T> = Result<T, ApiError>;

impl Deref for ApiError {
    type Target = ServiceError;
    fn deref(&self) -> &ServiceError {
        &self.0
    }
}

impl DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut ServiceError {
        &mut self.0
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        ApiError(e)
    }
}

impl From<ApiError> for ServiceError {
    fn from(e: ApiError) -> Self {
        e.0
    }
}

impl From<loci_storage::StorageError> for ApiError {
    fn from(e: loci_storage::StorageError) -> Self {
        ApiError(e.into())
    }
}

impl From<loci_raft::CatalogueError> for ApiError {
    fn from(e: loci_raft::CatalogueError) -> Self {
        ApiError(e.into())
    }
}

/// The constructors of [`ServiceError`], for front code that refuses a request itself.
impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError(ServiceError::new(status, code, message))
    }
    pub fn with_details(self, d: impl Into<String>) -> Self {
        ApiError(self.0.with_details(d))
    }
    pub fn with_resource(self, r: impl Into<String>) -> Self {
        ApiError(self.0.with_resource(r))
    }
    pub fn with_retry_after(self, secs: u64) -> Self {
        ApiError(self.0.with_retry_after(secs))
    }
    pub fn rate_limited(secs: u64, budget: impl Into<String>) -> Self {
        ApiError(ServiceError::rate_limited(secs, budget))
    }
    pub fn bad_request(msg: impl Into<String>) -> Self {
        ApiError(ServiceError::bad_request(msg))
    }
    pub fn unauthenticated(msg: impl Into<String>) -> Self {
        ApiError(ServiceError::unauthenticated(msg))
    }
    pub fn invalid_key() -> Self {
        ApiError(ServiceError::invalid_key())
    }
    pub fn namespace_forbidden(ns: &str) -> Self {
        ApiError(ServiceError::namespace_forbidden(ns))
    }
    pub fn insufficient_scope(needed: &str) -> Self {
        ApiError(ServiceError::insufficient_scope(needed))
    }
    pub fn namespace_not_found(ns: &str) -> Self {
        ApiError(ServiceError::namespace_not_found(ns))
    }
    pub fn not_found(what: &str, msg: impl Into<String>) -> Self {
        ApiError(ServiceError::not_found(what, msg))
    }
    pub fn conflict(msg: impl Into<String>) -> Self {
        ApiError(ServiceError::conflict(msg))
    }
    pub fn payload_too_large(msg: impl Into<String>) -> Self {
        ApiError(ServiceError::payload_too_large(msg))
    }
    pub fn unprocessable(msg: impl Into<String>) -> Self {
        ApiError(ServiceError::unprocessable(msg))
    }
    pub fn unavailable(msg: impl Into<String>) -> Self {
        ApiError(ServiceError::unavailable(msg))
    }
    pub fn internal(msg: impl Into<String>) -> Self {
        ApiError(ServiceError::internal(msg))
    }
    pub fn not_implemented(msg: impl Into<String>) -> Self {
        ApiError(ServiceError::not_implemented(msg))
    }

    /// The gRPC status code of this error's class.
    pub fn grpc_code(&self) -> tonic::Code {
        match self.status.as_u16() {
            400 | 413 | 422 => tonic::Code::InvalidArgument,
            401 => tonic::Code::Unauthenticated,
            403 => tonic::Code::PermissionDenied,
            404 => tonic::Code::NotFound,
            409 => tonic::Code::AlreadyExists,
            429 => tonic::Code::ResourceExhausted,
            501 => tonic::Code::Unimplemented,
            503 => tonic::Code::Unavailable,
            504 => tonic::Code::DeadlineExceeded,
            _ => tonic::Code::Internal,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for ApiError {}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    code: &'a str,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<&'a str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = &self.0;
        let body = Body {
            error: if e.rate_limited { "rate_limited" } else { e.message.as_str() },
            message: e.rate_limited.then_some(e.message.as_str()),
            code: &e.code,
            status: e.status.as_u16(),
            details: e.details.as_deref(),
            resource: e.resource.as_deref(),
        };
        let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"error\":\"internal\"}".to_vec());
        let mut resp = (e.status, json).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(s) = e.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        tonic::Status::new(e.grpc_code(), e.0.message)
    }
}
