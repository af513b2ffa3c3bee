//! One error type for the fronts, rendered as the JSON shape the Dakera clients parse:
//! `{"error": message, "code": SCREAMING_SNAKE, "details"?: string, "resource"?: string}`
//! and mapped to gRPC status codes.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use loci_storage::StorageError;
use serde::Serialize;
use std::borrow::Cow;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// The machine-readable code the clients parse (`SCREAMING_SNAKE`).
    pub code: Cow<'static, str>,
    pub message: String,
    pub details: Option<String>,
    pub resource: Option<String>,
    /// Seconds, sent as `Retry-After` on 429/503.
    pub retry_after: Option<u64>,
    /// The 429 shape of Dakera's security page: `error` is the label `rate_limited` and
    /// `message` the text (`{"error":"rate_limited","message":"Too many requests. …"}`).
    pub rate_limited: bool,
}

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

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: Cow::Borrowed(code),
            message: message.into(),
            details: None,
            resource: None,
            retry_after: None,
            rate_limited: false,
        }
    }

    /// An error received from another node, as that node would have answered it.
    pub fn from_wire(status: u16, code: String, message: String) -> Self {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code: Cow::Owned(code),
            message,
            details: None,
            resource: None,
            retry_after: None,
            rate_limited: false,
        }
    }
    pub fn with_details(mut self, d: impl Into<String>) -> Self {
        self.details = Some(d.into());
        self
    }
    pub fn with_resource(mut self, r: impl Into<String>) -> Self {
        self.resource = Some(r.into());
        self
    }
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// 429 `RATE_LIMIT_EXCEEDED` with `Retry-After: secs`; `details` names the budget.
    pub fn rate_limited(secs: u64, budget: impl Into<String>) -> Self {
        let unit = if secs == 1 { "second" } else { "seconds" };
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RATE_LIMIT_EXCEEDED",
            format!("Too many requests. Retry after {secs} {unit}."),
        )
        .with_details(budget)
        .with_retry_after(secs);
        e.rate_limited = true;
        e
    }

    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", msg)
    }
    pub fn unauthenticated(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "AUTHENTICATION_REQUIRED", msg)
    }
    pub fn invalid_key() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "INVALID_API_KEY", "invalid API key")
    }
    pub fn key_expired() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "API_KEY_EXPIRED", "API key has expired")
    }
    /// Never says whether the namespace exists.
    pub fn namespace_forbidden(ns: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "NAMESPACE_ACCESS_DENIED",
            format!("this API key has no access to namespace '{ns}'"),
        )
    }
    pub fn insufficient_scope(needed: &str) -> Self {
        Self::new(StatusCode::FORBIDDEN, "INSUFFICIENT_SCOPE", format!("this operation needs the '{needed}' scope"))
    }
    pub fn namespace_not_found(ns: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NAMESPACE_NOT_FOUND", format!("namespace '{ns}' not found"))
            .with_resource("namespace")
    }
    pub fn not_found(what: &str, msg: impl Into<String>) -> Self {
        let code = match what {
            "memory" | "vector" => "VECTOR_NOT_FOUND",
            "api_key" => "API_KEY_NOT_FOUND",
            "job" => "JOB_NOT_FOUND",
            "route" => "ROUTE_NOT_FOUND",
            _ => "NOT_FOUND",
        };
        Self::new(StatusCode::NOT_FOUND, code, msg).with_resource(what)
    }
    pub fn conflict(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "CONFLICT", msg)
    }
    pub fn payload_too_large(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", msg)
    }
    pub fn unprocessable(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "UNPROCESSABLE_CONTENT", msg)
    }
    pub fn unavailable(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE", "Service unavailable")
            .with_details(msg)
            .with_retry_after(1)
    }
    pub fn internal(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", msg)
    }
    pub fn not_implemented(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_IMPLEMENTED, "NOT_IMPLEMENTED", msg)
    }

    /// A transient refusal (503: a busy embedder, a failover, a placement change): the same
    /// request may succeed later.
    pub fn is_retryable(&self) -> bool {
        self.status == StatusCode::SERVICE_UNAVAILABLE
    }

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
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: if self.rate_limited { "rate_limited" } else { self.message.as_str() },
            message: self.rate_limited.then_some(self.message.as_str()),
            code: &self.code,
            status: self.status.as_u16(),
            details: self.details.as_deref(),
            resource: self.resource.as_deref(),
        };
        let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"error\":\"internal\"}".to_vec());
        let mut resp = (self.status, json).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        tonic::Status::new(e.grpc_code(), e.message)
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Invalid(m) => ApiError::bad_request(m),
            StorageError::DimensionMismatch { expected, got } => ApiError::new(
                StatusCode::BAD_REQUEST,
                "DIMENSION_MISMATCH",
                format!("vector dimension {got} does not match the namespace dimension {expected}"),
            ),
            StorageError::NotFound(m) => {
                let what = if m.starts_with("session") { "session" } else { "memory" };
                ApiError::not_found(what, format!("{m} not found"))
            }
            StorageError::Conflict(m) => ApiError::conflict(m),
            StorageError::Embedding(m) => ApiError::unavailable(format!("embedding failed: {m}")),
            StorageError::Dropped => ApiError::namespace_not_found("(dropped)"),
            // The clients map 413 + QUOTA_EXCEEDED to their quota error.
            StorageError::QuotaExceeded(m) => ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "QUOTA_EXCEEDED", m),
            StorageError::Overloaded(m) => ApiError::unavailable(m).with_retry_after(1),
            // Internal to the cluster (the data plane re-routes it); should it reach a client,
            // it is a retryable 503 like any placement change.
            StorageError::Fenced(epoch) => ApiError::unavailable(format!(
                "this node is no longer the namespace's primary (fenced by epoch {epoch}); retry"
            )),
            StorageError::EmbeddingUpstream(m) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "SERVICE_UNAVAILABLE", "the embedding service failed")
                    .with_details(m)
            }
            other => {
                tracing::error!(error = %other, "storage error");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "STORAGE_ERROR", "storage error")
            }
        }
    }
}

impl From<loci_raft::CatalogueError> for ApiError {
    fn from(e: loci_raft::CatalogueError) -> Self {
        match e {
            loci_raft::CatalogueError::NoLeader => {
                ApiError::unavailable("the catalogue has no leader (cluster forming or without quorum)")
            }
            other => {
                tracing::error!(error = %other, "catalogue error");
                ApiError::unavailable(format!("catalogue write failed: {other}"))
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
