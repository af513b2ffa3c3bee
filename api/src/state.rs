use std::sync::Arc;

use crate::audit::AuditLog;
use crate::core::Core;
use crate::ratelimit::RateLimiter;
use crate::security::HttpSecurity;
use crate::usage::Usage;

/// Shared by every handler (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    pub core: Arc<Core>,
    pub audit: Arc<AuditLog>,
    pub limiter: Arc<RateLimiter>,
    pub usage: Arc<Usage>,
    pub http: Arc<HttpSecurity>,
}
