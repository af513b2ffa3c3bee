use std::sync::Arc;

use crate::core::Core;

/// Shared by every handler (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    pub core: Arc<Core>,
}
