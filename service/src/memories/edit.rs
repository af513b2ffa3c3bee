//! Get, update, importance and forget (by ids or by filter).

use loci_raft::catalogue::{NamespaceEntry, Scope};
use loci_storage::model::{DataOp, DataResult, MemoryFilter, MemoryPatch, MemoryRecord};

use super::{Memories, Target, memory_not_found, target, unexpected};
use crate::access::Principal;
use crate::error::{ServiceError, ServiceResult};
use crate::validate;

/// What forgetting needs at least one of: forgetting everything is never an accident.
pub const FORGET_NEEDS: &str =
    "at least one of memory_ids, tags, session_id, before_timestamp, memory_type, below_importance is required";

impl<'a> Memories<'a> {
    /// Find the namespace holding `id` among those the key can read (an agent-less get): not
    /// found when none does, refused when several do (the caller must say which).
    pub async fn locate(&self, p: &Principal, id: &str) -> ServiceResult<(NamespaceEntry, MemoryRecord)> {
        let mut hits = Vec::new();
        for entry in self.core.namespaces() {
            if !p.allows(&entry.name, Scope::Read) {
                continue;
            }
            if let Ok(DataResult::Memory(m)) =
                self.core.exec(&entry, DataOp::Get { id: id.to_string(), record_access: false }).await
            {
                hits.push((entry, m));
            }
            if hits.len() > 1 {
                break;
            }
        }
        match hits.len() {
            0 => Err(memory_not_found(id)),
            1 => Ok(hits.remove(0)),
            _ => Err(ServiceError::bad_request(format!(
                "memory id {id} exists in several namespaces ({}, {}); pass ?agent_id= or ?namespace=",
                hits[0].0.name, hits[1].0.name
            ))),
        }
    }

    /// `GET /v1/memory/get/{id}`: by id, in the namespace the query names (`namespace` or
    /// `agent_id`), or, when it names none, wherever the key reads it (see [`Self::locate`]).
    /// A malformed id is not found.
    pub async fn get(
        &self,
        p: &Principal,
        id: &str,
        namespace: Option<&str>,
        agent_id: Option<&str>,
    ) -> ServiceResult<MemoryRecord> {
        validate::memory_id(id).map_err(|_| memory_not_found(&validate::printable(id)))?;
        if agent_id.unwrap_or("").is_empty() && namespace.unwrap_or("").is_empty() {
            return Ok(self.locate(p, id).await?.1);
        }
        let t = target(namespace, agent_id)?;
        p.require(&t.namespace, Scope::Read)?;
        let entry = self.core.namespace(&t.namespace).ok_or_else(|| memory_not_found(id))?;
        let DataResult::Memory(m) =
            self.core.exec(&entry, DataOp::Get { id: id.to_string(), record_access: true }).await?
        else {
            return Err(unexpected());
        };
        if t.agent_filter.as_ref().is_some_and(|a| a != &m.agent_id) {
            return Err(memory_not_found(id));
        }
        Ok(m)
    }

    /// Apply a patch to one memory (write scope); within an agent filter only that agent's.
    pub async fn update(&self, p: &Principal, t: &Target, id: &str, patch: MemoryPatch) -> ServiceResult<MemoryRecord> {
        p.require(&t.namespace, Scope::Write)?;
        let entry = self.core.namespace(&t.namespace).ok_or_else(|| memory_not_found(id))?;
        if let Some(agent) = &t.agent_filter {
            let DataResult::Memory(m) =
                self.core.exec(&entry, DataOp::Get { id: id.to_string(), record_access: false }).await?
            else {
                return Err(unexpected());
            };
            if &m.agent_id != agent {
                return Err(memory_not_found(id));
            }
        }
        let DataResult::Memory(m) = self.core.exec(&entry, DataOp::Update { id: id.to_string(), patch }).await? else {
            return Err(unexpected());
        };
        Ok(m)
    }

    /// Set the importance of every id (write scope), in one write, all or nothing; the ids
    /// updated. `ids` is not empty (the fronts validate it).
    pub async fn set_importance(
        &self,
        p: &Principal,
        t: &Target,
        ids: Vec<String>,
        importance: f64,
    ) -> ServiceResult<Vec<String>> {
        p.require(&t.namespace, Scope::Write)?;
        let first = ids.first().cloned().unwrap_or_default();
        let entry = self.core.namespace(&t.namespace).ok_or_else(|| memory_not_found(&first))?;
        // One write for every id (one log entry, one fsync, replicated once).
        let op = DataOp::SetImportance { ids, importance, agent: t.agent_filter.clone() };
        let DataResult::Memories { memories, .. } = self.core.exec(&entry, op).await? else {
            return Err(unexpected());
        };
        Ok(memories.into_iter().map(|m| m.id).collect())
    }

    /// Delete by ids and/or filter (write scope): an empty filter is refused rather than
    /// deleting everything; within an agent filter only that agent's memories. The count deleted
    /// (0 when the namespace does not exist).
    pub async fn forget(&self, p: &Principal, t: &Target, mut filter: MemoryFilter) -> ServiceResult<u64> {
        p.require(&t.namespace, Scope::Write)?;
        if filter.is_empty() {
            return Err(ServiceError::bad_request(FORGET_NEEDS));
        }
        filter.agent_id = t.agent_filter.clone();
        let Some(entry) = self.core.namespace(&t.namespace) else {
            return Ok(0);
        };
        match self.core.exec(&entry, DataOp::Forget { filter }).await? {
            DataResult::Deleted(n) => Ok(n),
            _ => Err(unexpected()),
        }
    }
}
