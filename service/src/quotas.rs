//! The operator's quotas (`/admin/quotas`): ceilings per namespace pattern that a tenant's own
//! admins cannot exceed (`loci_raft::quota`). Only a global admin key (the operator's) lists,
//! sets or deletes them; a tenant admin learns of a ceiling from the refusal (413
//! `QUOTA_EXCEEDED`, which names it).

use std::sync::Arc;

use loci_raft::catalogue::{Command, CommandResult, Scope};
use loci_raft::quota::{Quota, check_quota};
use loci_storage::model::now_secs;
use serde::Deserialize;
use serde_json::json;

use crate::access::Principal;
use crate::cluster::Reach;
use crate::core::Core;
use crate::error::{ServiceError, ServiceResult};

/// A quota as a request gives it (`PUT /admin/quotas`); unknown fields are refused.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaRequest {
    pub pattern: String,
    pub max_namespaces: Option<u64>,
    pub max_keys: Option<u64>,
    pub max_memories: Option<u64>,
    #[serde(alias = "max_users")]
    pub max_agents: Option<u64>,
    #[serde(alias = "max_conversations_per_user")]
    pub max_sessions_per_agent: Option<u64>,
    pub max_stores_per_minute: Option<u64>,
    pub max_recalls_per_minute: Option<u64>,
}

/// The quota calls of a node's service (borrowed from [`Core::quotas`]).
#[derive(Clone, Copy)]
pub struct Quotas<'a> {
    core: &'a Arc<Core>,
}

impl Core {
    /// Quota calls (see [`Quotas`]).
    pub fn quotas(self: &Arc<Self>) -> Quotas<'_> {
        Quotas { core: self }
    }
}

impl Quotas<'_> {
    /// Every quota, by pattern (global admin).
    pub fn list(&self, p: &Principal) -> ServiceResult<Vec<Quota>> {
        p.require_global(Scope::Admin)?;
        Ok(self.core.catalogue.view.read().quotas.values().cloned().collect())
    }

    /// One quota (global admin).
    pub fn get(&self, p: &Principal, pattern: &str) -> ServiceResult<Quota> {
        p.require_global(Scope::Admin)?;
        self.core
            .catalogue
            .view
            .read()
            .quotas
            .get(pattern)
            .cloned()
            .ok_or_else(|| ServiceError::not_found("quota", "no quota for this pattern"))
    }

    /// Create or replace the quota of `r.pattern` (global admin; audit event `quota_set`). In
    /// force on every node when this returns, like a key revocation: a ceiling lowered is a
    /// permission narrowed.
    pub async fn set(&self, p: &Principal, r: QuotaRequest) -> ServiceResult<Quota> {
        p.require_global(Scope::Admin)?;
        let quota = Quota {
            pattern: r.pattern,
            max_namespaces: r.max_namespaces,
            max_keys: r.max_keys,
            max_memories: r.max_memories,
            max_agents: r.max_agents,
            max_sessions_per_agent: r.max_sessions_per_agent,
            max_stores_per_minute: r.max_stores_per_minute,
            max_recalls_per_minute: r.max_recalls_per_minute,
            updated_at: now_secs(),
        };
        check_quota(&quota).map_err(|why| ServiceError::bad_request(format!("invalid quota: {why}")))?;
        match self.core.write_everywhere(Command::SetQuota { quota }, Reach::Every).await? {
            CommandResult::Quota { quota } => {
                self.core.audit.event("quota_set", Some(p), json!({"quota": quota}));
                Ok(quota)
            }
            CommandResult::Rejected(why) => Err(ServiceError::bad_request(why)),
            other => Err(ServiceError::internal(format!("unexpected catalogue answer {other:?}"))),
        }
    }

    /// Delete the quota of `pattern` (global admin; audit event `quota_deleted`).
    pub async fn delete(&self, p: &Principal, pattern: &str) -> ServiceResult<()> {
        p.require_global(Scope::Admin)?;
        match self.core.write_everywhere(Command::DeleteQuota { pattern: pattern.to_string() }, Reach::Every).await? {
            CommandResult::Ok => {
                self.core.audit.event("quota_deleted", Some(p), json!({"pattern": pattern}));
                Ok(())
            }
            CommandResult::NotFound(_) => Err(ServiceError::not_found("quota", "no quota for this pattern")),
            other => Err(ServiceError::internal(format!("unexpected catalogue answer {other:?}"))),
        }
    }
}
