use std::sync::Arc;

use loci_service::Core;
use loci_service::audit::AuditLog;
use loci_service::ratelimit::RateLimiter;
use loci_service::usage::Usage;

use crate::security::HttpSecurity;

/// Shared by every handler (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    pub core: Arc<Core>,
    pub audit: Arc<AuditLog>,
    pub limiter: Arc<RateLimiter>,
    pub usage: Arc<Usage>,
    pub http: Arc<HttpSecurity>,
    /// `/metrics` needs a key with `read` on every namespace (`--metrics-auth`).
    pub metrics_auth: bool,
}
