//! `/v1/memory/*` and `/v1/memories/*`: store, get, update, forget, recall, search, batches.
//! Split by concern: `store.rs` (store and batch store), `edit.rs` (get, update, importance,
//! forget), `recall.rs` (recall, search, batch recall); the request's target here.

mod edit;
mod recall;
mod store;

pub use edit::*;
pub use recall::*;
pub use store::*;

use std::collections::BTreeMap;

use loci_storage::model::*;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use loci_service::canonical_namespace;
use loci_service::validate;

/// Which namespace a request addresses and whether `agent_id` additionally filters within it.
///
/// The namespace is the request's `namespace` if given, else its `agent_id`; the clients'
/// `_dakera_agent_{x}` form means `x`. Within an explicitly named namespace, an `agent_id` that
/// differs from it narrows reads to that agent's memories.
pub struct Target {
    pub namespace: String,
    pub agent_filter: Option<String>,
}

pub fn target(namespace: Option<&str>, agent_id: Option<&str>) -> ApiResult<Target> {
    let agent = agent_id.map(canonical_namespace).filter(|a| !a.is_empty());
    match namespace.map(canonical_namespace).filter(|n| !n.is_empty()) {
        Some(ns) => {
            validate::namespace_ref(ns)?;
            if let Some(a) = agent {
                validate::agent_id(a)?;
            }
            Ok(Target { namespace: ns.to_string(), agent_filter: agent.filter(|a| *a != ns).map(str::to_string) })
        }
        None => {
            let a = agent.ok_or_else(|| ApiError::bad_request("agent_id (or namespace) is required"))?;
            validate::agent_id(a)?;
            validate::namespace_name_for_agent(a)?;
            Ok(Target { namespace: a.to_string(), agent_filter: None })
        }
    }
}

/// Fields the request named that Loci does not know (reported as `warnings`, never an error).
fn unknown_warnings(extra: &BTreeMap<String, Value>) -> Option<Vec<String>> {
    if extra.is_empty() { None } else { Some(extra.keys().map(|k| format!("unknown field '{k}' ignored")).collect()) }
}

pub(crate) async fn ns_limit(
    state: &AppState,
    entry: &loci_raft::catalogue::NamespaceEntry,
    class: crate::ratelimit::NsClass,
) -> ApiResult<()> {
    crate::ratelimit::check_namespace(state, &entry.policy, &entry.name, class).await.map_err(|resp| {
        let retry = resp
            .headers()
            .get(axum::http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        ApiError::rate_limited(retry, format!("rate limit exceeded for namespace '{}'", entry.name))
    })
}

pub(crate) fn agent_of(t: &Target, agent_id: Option<&str>) -> String {
    agent_id
        .map(canonical_namespace)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| t.namespace.clone())
}

/// Whether a session has ended (`None`: no such session).
async fn session_ended(state: &AppState, entry: &loci_raft::catalogue::NamespaceEntry, id: &str) -> Option<bool> {
    match state.core.exec(entry, DataOp::GetSession { id: id.to_string() }).await {
        Ok(DataResult::Session(info)) => Some(info.session.ended_at.is_some()),
        _ => None,
    }
}
