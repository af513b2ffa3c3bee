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

/// The gRPC status of the error's class, its message, the REST `code` as a `google.rpc.ErrorInfo`
/// (reason = the code, domain `loci`, metadata `http_status` and, when set, `details` and
/// `resource`) and as `x-loci-code` metadata, and a `google.rpc.RetryInfo` when the REST answer
/// would carry `Retry-After`.
impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        use tonic_types::{ErrorDetails, StatusExt};
        let code = e.grpc_code();
        let e = e.0;
        let mut info = std::collections::HashMap::from([("http_status".to_string(), e.status.as_u16().to_string())]);
        if let Some(d) = &e.details {
            info.insert("details".into(), d.clone());
        }
        if let Some(r) = &e.resource {
            info.insert("resource".into(), r.clone());
        }
        let mut details = ErrorDetails::with_error_info(e.code.to_string(), "loci", info);
        if let Some(secs) = e.retry_after {
            details.set_retry_info(Some(std::time::Duration::from_secs(secs)));
        }
        let mut st = tonic::Status::with_error_details(code, e.message, details);
        if let Ok(v) = e.code.parse() {
            st.metadata_mut().insert("x-loci-code", v);
        }
        st
    }
}

/// A gRPC refusal as one line for people: `HTTP-STATUS CODE: message` when it carries Loci's
/// `ErrorInfo`, else the gRPC code and message.
pub fn describe_status(st: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    match st.get_details_error_info() {
        Some(info) => {
            let http = info.metadata.get("http_status").map(String::as_str).unwrap_or("");
            format!("{http} {}: {}", info.reason, st.message())
        }
        None => format!("{:?}: {}", st.code(), st.message()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;
    use tonic_types::StatusExt;

    #[test]
    fn every_http_class_becomes_its_grpc_code_with_the_rest_code_in_an_error_info() {
        let cases = [
            (400, Code::InvalidArgument),
            (401, Code::Unauthenticated),
            (403, Code::PermissionDenied),
            (404, Code::NotFound),
            (409, Code::AlreadyExists),
            (413, Code::InvalidArgument),
            (422, Code::InvalidArgument),
            (429, Code::ResourceExhausted),
            (500, Code::Internal),
            (501, Code::Unimplemented),
            (503, Code::Unavailable),
            (504, Code::DeadlineExceeded),
        ];
        for (http, code) in cases {
            let e = ServiceError::from_wire(http, format!("CODE_{http}"), format!("refused with {http}"))
                .with_details("why")
                .with_retry_after(3);
            let st = tonic::Status::from(ApiError(e));
            assert_eq!(st.code(), code, "{http}");
            assert_eq!(st.message(), format!("refused with {http}"));
            let info = st.get_details_error_info().expect("an ErrorInfo");
            assert_eq!((info.reason.as_str(), info.domain.as_str()), (format!("CODE_{http}").as_str(), "loci"));
            assert_eq!(info.metadata.get("http_status"), Some(&http.to_string()));
            assert_eq!(info.metadata.get("details").map(String::as_str), Some("why"));
            assert_eq!(
                st.get_details_retry_info().and_then(|r| r.retry_delay),
                Some(std::time::Duration::from_secs(3))
            );
            assert_eq!(st.metadata().get("x-loci-code").unwrap(), format!("CODE_{http}").as_str());
            assert_eq!(describe_status(&st), format!("{http} CODE_{http}: refused with {http}"));
        }
    }
}
