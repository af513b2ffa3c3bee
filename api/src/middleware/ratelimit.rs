//! The rate-limit middleware: the per-key budget of every authenticated REST request and the
//! headers the Dakera clients read (the limiter itself is `loci_service::ratelimit`).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use loci_service::access::Principal;
pub use loci_service::ratelimit::{Decision, NsClass};

use crate::error::ApiError;
use crate::state::AppState;

/// `RateLimit-*` (IETF draft) and the `X-RateLimit-*` headers the Dakera clients read.
pub fn set_headers(h: &mut HeaderMap, d: &Decision) {
    let reset_secs = d.reset_after.as_secs_f64().ceil() as u64;
    let unix_reset = loci_storage::model::now_secs() + reset_secs;
    let pairs = [
        ("ratelimit-limit", d.limit.to_string()),
        ("ratelimit-remaining", d.remaining.to_string()),
        ("ratelimit-reset", reset_secs.to_string()),
        ("x-ratelimit-limit", d.limit.to_string()),
        ("x-ratelimit-remaining", d.remaining.to_string()),
        ("x-ratelimit-reset", unix_reset.to_string()),
        ("x-ratelimit-backend", d.backend.as_str().to_string()),
    ];
    for (k, v) in pairs {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
}

pub fn too_many(d: &Decision, what: &str) -> Response {
    let secs = d.retry_after.as_secs_f64().ceil().max(1.0) as u64;
    let mut resp = ApiError::rate_limited(secs, format!("rate limit exceeded for {what}")).into_response();
    set_headers(resp.headers_mut(), d);
    resp
}

/// Middleware: the per-key budget (after authentication).
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !state.limiter.enabled() {
        return next.run(req).await;
    }
    let Some(p) = req.extensions().get::<Arc<Principal>>().cloned() else {
        return next.run(req).await;
    };
    let d = state.limiter.check(&format!("key:{}", p.key_id), state.limiter.key_limit()).await;
    if !d.allowed {
        return too_many(&d, "this API key");
    }
    let mut resp = next.run(req).await;
    // A namespace budget's 429 carries that budget's headers: keep them.
    if resp.status() != StatusCode::TOO_MANY_REQUESTS {
        set_headers(resp.headers_mut(), &d);
    }
    resp
}
