//! Authentication on REST: the key arrives as `X-API-Key` (takes precedence) or
//! `Authorization: Bearer`; the service resolves it ([`loci_service::access::authenticate`])
//! into a [`Principal`] stored in the request, which handlers take with the [`Auth`] extractor.

use std::sync::Arc;

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
pub use loci_raft::catalogue::{ApiKeyEntry, Grant, Scope};
pub use loci_service::access::{
    Grants, Principal, ROOT_KEY_ID, authenticate, pattern_contains, pattern_matches, sha256, sha256_hex,
};

/// The secret presented by the request, if any.
pub fn presented_key(parts: &axum::http::HeaderMap) -> Option<String> {
    if let Some(v) = parts.get("x-api-key").and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if !v.is_empty() {
            return Some(v.to_string());
        }
    }
    let auth = parts.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = auth.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        let k = rest.trim();
        if !k.is_empty() {
            return Some(k.to_string());
        }
    }
    None
}

/// `api_key` of a query string.
fn query_key(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "api_key")
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Routes anyone may call (`/metrics` unless `--metrics-auth`).
pub fn is_public(path: &str, metrics_auth: bool) -> bool {
    path == "/health" || path.starts_with("/health/") || (path == "/metrics" && !metrics_auth)
}

/// Middleware: authenticate every non-public request before it reaches a handler.
pub async fn layer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if is_public(req.uri().path(), state.metrics_auth) {
        return next.run(req).await;
    }
    let key = presented_key(req.headers()).or_else(|| {
        // EventSource cannot set headers: the stream routes also take `?api_key=`.
        (req.method() == axum::http::Method::GET && crate::routes::events::is_stream_path(req.uri().path()))
            .then(|| query_key(req.uri().query()))
            .flatten()
    });
    let principal = match key {
        None => Err(ApiError::unauthenticated("an API key is required (Authorization: Bearer <key> or X-API-Key)")),
        Some(secret) => authenticate(&state.core, &secret).map_err(ApiError::from),
    };
    match principal {
        Ok(p) => {
            let p = Arc::new(p);
            req.extensions_mut().insert(p.clone());
            let mut resp = next.run(req).await;
            // Outer layers (audit, usage) read the principal from the response.
            resp.extensions_mut().insert(p);
            resp
        }
        Err(e) => {
            state.audit.auth_failure(req.method().as_str(), req.uri().path(), &e);
            e.into_response()
        }
    }
}

/// Extractor for handlers: the principal the middleware authenticated.
pub struct Auth(pub Arc<Principal>);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &AppState) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Arc<Principal>>()
            .cloned()
            .map(Auth)
            .ok_or_else(|| ApiError::unauthenticated("an API key is required"))
    }
}
