//! The service layer's one error type. Every service call (and every node-to-node failure, via
//! `ClusterError`) ends here; each front maps it once: REST renders the JSON shape the Dakera
//! clients parse, gRPC a status code. `status` is the class of the failure (an HTTP status is
//! the vocabulary both fronts and the clients share); `code` is the machine-readable
//! `SCREAMING_SNAKE` code carried unchanged on every front.

pub use http::StatusCode;
use loci_storage::StorageError;
use std::borrow::Cow;

#[derive(Debug, Clone)]
pub struct ServiceError {
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

impl ServiceError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ServiceError {
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
        ServiceError {
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
            "webhook" => "WEBHOOK_NOT_FOUND",
            "delivery" => "DELIVERY_NOT_FOUND",
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
    /// An operator quota would be exceeded (`413 QUOTA_EXCEEDED`, which the published clients
    /// map to their quota error); nothing was changed.
    pub fn quota_exceeded(msg: impl Into<String>) -> Self {
        ServiceError::new(StatusCode::PAYLOAD_TOO_LARGE, "QUOTA_EXCEEDED", msg)
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
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl std::error::Error for ServiceError {}

impl From<StorageError> for ServiceError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Invalid(m) => ServiceError::bad_request(m),
            StorageError::DimensionMismatch { expected, got } => ServiceError::new(
                StatusCode::BAD_REQUEST,
                "DIMENSION_MISMATCH",
                format!("vector dimension {got} does not match the namespace dimension {expected}"),
            ),
            StorageError::NotFound(m) => {
                let what = if m.starts_with("session") { "session" } else { "memory" };
                ServiceError::not_found(what, format!("{m} not found"))
            }
            StorageError::Conflict(m) => ServiceError::conflict(m),
            StorageError::Embedding(m) => ServiceError::unavailable(format!("embedding failed: {m}")),
            StorageError::Dropped => ServiceError::namespace_not_found("(dropped)"),
            // The clients map 413 + QUOTA_EXCEEDED to their quota error.
            StorageError::QuotaExceeded(m) => ServiceError::new(StatusCode::PAYLOAD_TOO_LARGE, "QUOTA_EXCEEDED", m),
            StorageError::Overloaded(m) => ServiceError::unavailable(m).with_retry_after(1),
            // Internal to the cluster (the data plane re-routes it); should it reach a client,
            // it is a retryable 503 like any placement change.
            StorageError::Fenced(epoch) => ServiceError::unavailable(format!(
                "this node is no longer the namespace's primary (fenced by epoch {epoch}); retry"
            )),
            StorageError::EmbeddingUpstream(m) => {
                ServiceError::new(StatusCode::BAD_GATEWAY, "SERVICE_UNAVAILABLE", "the embedding service failed")
                    .with_details(m)
            }
            StorageError::ExtractorUpstream(m) => {
                ServiceError::new(StatusCode::BAD_GATEWAY, "SERVICE_UNAVAILABLE", "the entity extractor failed")
                    .with_details(m)
            }
            other => {
                tracing::error!(error = %other, "storage error");
                ServiceError::new(StatusCode::INTERNAL_SERVER_ERROR, "STORAGE_ERROR", "storage error")
            }
        }
    }
}

impl From<loci_raft::CatalogueError> for ServiceError {
    fn from(e: loci_raft::CatalogueError) -> Self {
        match e {
            loci_raft::CatalogueError::NoLeader => {
                ServiceError::unavailable("the catalogue has no leader (cluster forming or without quorum)")
            }
            e @ loci_raft::CatalogueError::TooLarge { .. } => ServiceError::payload_too_large(e.to_string()),
            other => {
                tracing::error!(error = %other, "catalogue error");
                ServiceError::unavailable(format!("catalogue write failed: {other}"))
            }
        }
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;
