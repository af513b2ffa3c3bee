//! Memory calls as both fronts make them (`core.memories(&limiter)`): store (one or a batch),
//! get, update, importance, forget, recall, search and batch recall. Each call takes the
//! authenticated [`Principal`], the request's [`Target`] and the typed, validated values the
//! fronts parsed (`NewMemory`, `MemoryPatch`, `MemoryFilter`, `RecallParams`), and answers a typed
//! result or a [`ServiceError`]. The decisions are here: the key's scope on the namespace (checked
//! again here even where a front checked it first, to answer in the order the clients expect),
//! content screening, the namespace's rate limits, where an agent-less get finds a memory, the
//! safety of forgetting by filter, and the state of the sessions written into.
//!
//! Split by concern: `store.rs`, `edit.rs` (get, update, importance, forget), `recall.rs`,
//! `transfer.rs` (export and import).

mod edit;
pub mod jobs;
mod recall;
mod store;
#[cfg(test)]
mod tests;
pub mod transfer;

pub use recall::{BatchRecalled, check_batch_limit};
pub use store::{BatchStored, Stored, check_batch_len};

use loci_raft::catalogue::{MemoryPolicy, NamespaceEntry};
use loci_storage::model::{DataOp, DataResult, NewMemory};

use crate::core::{Core, canonical_namespace};
use crate::error::{ServiceError, ServiceResult};
use crate::ratelimit::{NsClass, RateLimiter};
use crate::validate;

/// Which namespace a request addresses and whether `agent_id` additionally filters within it.
///
/// The namespace is the request's `namespace` if given, else its `agent_id`; the clients'
/// `_dakera_agent_{x}` form means `x`. Within an explicitly named namespace, an `agent_id` that
/// differs from it narrows reads to that agent's memories.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub namespace: String,
    pub agent_filter: Option<String>,
}

pub fn target(namespace: Option<&str>, agent_id: Option<&str>) -> ServiceResult<Target> {
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
            let a = agent.ok_or_else(|| ServiceError::bad_request("agent_id (or namespace) is required"))?;
            validate::agent_id(a)?;
            validate::namespace_name_for_agent(a)?;
            Ok(Target { namespace: a.to_string(), agent_filter: None })
        }
    }
}

/// The agent a stored memory belongs to: the request's `agent_id`, else the namespace's name.
pub fn agent_of(t: &Target, agent_id: Option<&str>) -> String {
    agent_id
        .map(canonical_namespace)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| t.namespace.clone())
}

/// Apply the namespace's content screening: `flag` tags suspicious content, `block` refuses it.
pub fn screen(policy: &MemoryPolicy, item: &mut NewMemory) -> ServiceResult<()> {
    let mode = policy.content_screening.as_str();
    if mode == "off" {
        return Ok(());
    }
    let found = crate::screening::screen(&item.content);
    if found.is_empty() {
        return Ok(());
    }
    if mode == "block" {
        return Err(ServiceError::unprocessable(format!(
            "content refused by the namespace's content screening: looks like {} injection",
            found.join(", ")
        )));
    }
    for f in found {
        let tag = format!("screened:{f}");
        if !item.tags.contains(&tag) && item.tags.len() < validate::MAX_TAGS {
            item.tags.push(tag);
        }
    }
    Ok(())
}

fn unexpected() -> ServiceError {
    ServiceError::internal("unexpected result")
}

fn memory_not_found(id: &str) -> ServiceError {
    ServiceError::not_found("memory", format!("memory {id} not found"))
}

/// The memory calls of a node's service (see the module documentation).
#[derive(Clone, Copy)]
pub struct Memories<'a> {
    core: &'a Core,
    limiter: &'a RateLimiter,
}

impl Core {
    /// Memory calls, with the node's rate limiter for the namespaces' budgets (see [`Memories`]).
    pub fn memories<'a>(&'a self, limiter: &'a RateLimiter) -> Memories<'a> {
        Memories { core: self, limiter }
    }
}

impl<'a> Memories<'a> {
    /// The namespace's budget for `class` (memory policy `rate_limit_*`): 429 when spent.
    pub async fn ns_limit(&self, entry: &NamespaceEntry, class: NsClass) -> ServiceResult<()> {
        match crate::ratelimit::check_namespace(self.limiter, &entry.policy, &entry.ceiling, &entry.name, class).await {
            None => Ok(()),
            Some((d, _)) => {
                let secs = d.retry_after.as_secs_f64().ceil().max(1.0) as u64;
                Err(ServiceError::rate_limited(secs, format!("rate limit exceeded for namespace '{}'", entry.name)))
            }
        }
    }

    /// Whether a session has ended (`None`: no such session).
    async fn session_ended(&self, entry: &NamespaceEntry, id: &str) -> Option<bool> {
        match self.core.exec(entry, DataOp::GetSession { id: id.to_string() }).await {
            Ok(DataResult::Session(info)) => Some(info.session.ended_at.is_some()),
            _ => None,
        }
    }
}
