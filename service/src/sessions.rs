//! Session and agent calls as both fronts make them (`core.sessions()`): start, end, touch, get
//! and list sessions, a session's memories; list agents, an agent's statistics, memories and
//! sessions, and creating an agent's namespace. Each call takes the authenticated [`Principal`]
//! and typed arguments and answers a typed result or a [`ServiceError`].
//!
//! Session ids are per namespace (the catalogue maps an id to the namespaces holding it): a
//! session is found among the namespaces the key can see, and one in a namespace it cannot see
//! is indistinguishable from none.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::StreamExt;
use loci_raft::catalogue::{Command, CommandResult, NamespaceEntry, Scope};
use loci_storage::model::{
    AgentStats, AgentSummary, DataOp, DataResult, MemoryFilter, MemoryRecord, SessionInfo, SortBy,
};
use serde_json::Value;

use crate::access::Principal;
use crate::core::{Core, canonical_namespace};
use crate::error::{ServiceError, ServiceResult};
use crate::memories::{Target, target};
use crate::validate;

/// Namespaces one listing without a namespace (`GET /v1/agents`, `GET /v1/sessions`) visits at
/// most: the work of one request stays bounded however many namespaces a key reads.
pub const MAX_FANOUT_NAMESPACES: usize = 1000;

fn unexpected() -> ServiceError {
    ServiceError::internal("unexpected result")
}

/// A page of sessions.
#[derive(Clone, Debug, Default)]
pub struct SessionPage {
    pub sessions: Vec<SessionInfo>,
    pub total: u64,
    /// More namespaces held sessions than one listing visits ([`MAX_FANOUT_NAMESPACES`]).
    pub namespaces_truncated: bool,
}

/// A session with a page of its memories (oldest first).
#[derive(Clone, Debug)]
pub struct SessionMemories {
    pub session: SessionInfo,
    pub memories: Vec<MemoryRecord>,
    pub total: u64,
}

/// The session and agent calls of a node's service (borrowed from [`Core::sessions`]).
#[derive(Clone, Copy)]
pub struct Sessions<'a> {
    core: &'a Arc<Core>,
}

impl Core {
    /// Session and agent calls (see [`Sessions`]).
    pub fn sessions(self: &Arc<Self>) -> Sessions<'_> {
        Sessions { core: self }
    }
}

/// The namespace of an agent the key reads.
pub fn agent_namespace(p: &Principal, agent: &str) -> ServiceResult<String> {
    let t = target(None, Some(agent))?;
    p.require(&t.namespace, Scope::Read)?;
    Ok(t.namespace)
}

impl<'a> Sessions<'a> {
    /// Start a session in the target's namespace (write scope; created for an agent on its first
    /// write), with the client's id or a new one. The id must not already name a session in
    /// another namespace this key can see (so that it keeps naming one session for this key);
    /// another tenant's session of the same id neither blocks it nor is revealed.
    pub async fn start(
        &self,
        p: &Principal,
        t: &Target,
        agent_id: String,
        id: Option<String>,
        metadata: Option<Value>,
        idle_timeout_secs: Option<u64>,
    ) -> ServiceResult<SessionInfo> {
        p.require(&t.namespace, Scope::Write)?;
        let id = id.unwrap_or_else(loci_storage::store::new_session_id);
        let entry = self.core.namespace_for_write(&t.namespace).await?;
        let elsewhere =
            self.core.catalogue.view.read().session_namespaces(&id).any(|ns| ns != entry.name && p.can_see(ns));
        if elsewhere {
            return Err(ServiceError::conflict(format!(
                "session {} already exists in another namespace this key can reach",
                validate::printable(&id)
            )));
        }
        match self
            .core
            .catalogue
            .write(Command::RegisterSession { session_id: id.clone(), namespace: entry.name.clone() })
            .await?
        {
            CommandResult::Ok => {}
            CommandResult::Rejected(m) => return Err(ServiceError::conflict(m)),
            other => return Err(ServiceError::internal(format!("unexpected catalogue answer {other:?}"))),
        }
        let op = DataOp::StartSession { id: Some(id), agent_id, metadata, idle_timeout_secs };
        match self.core.exec(&entry, op).await? {
            DataResult::Session(info) => Ok(info),
            _ => Err(unexpected()),
        }
    }

    /// The namespace holding a session, after checking the key may touch it at `need` (`None`:
    /// no such session the key can see; a malformed id is not found).
    pub fn namespace_of(&self, p: &Principal, id: &str, need: Scope) -> ServiceResult<Option<NamespaceEntry>> {
        validate::client_id(id, "session id").map_err(|_| ServiceError::not_found("session", "session not found"))?;
        let visible: Vec<String> = self
            .core
            .catalogue
            .view
            .read()
            .session_namespaces(id)
            .filter(|ns| p.can_see(ns))
            .map(str::to_string)
            .collect();
        let ns = match visible.as_slice() {
            [] => return Ok(None),
            [one] => one.clone(),
            // Only when two keys with overlapping reach chose the same id in two namespaces.
            _ => {
                return Err(ServiceError::conflict(format!(
                    "session {} exists in more than one namespace this key can reach",
                    validate::printable(id)
                )));
            }
        };
        p.require(&ns, need)?;
        Ok(self.core.namespace(&ns))
    }

    fn found(&self, p: &Principal, id: &str, need: Scope) -> ServiceResult<NamespaceEntry> {
        self.namespace_of(p, id, need)?.ok_or_else(|| ServiceError::not_found("session", "session not found"))
    }

    async fn session_op(&self, entry: &NamespaceEntry, op: DataOp) -> ServiceResult<SessionInfo> {
        match self.core.exec(entry, op).await? {
            DataResult::Session(info) => Ok(info),
            _ => Err(unexpected()),
        }
    }

    /// End a session (write scope), with an optional summary.
    pub async fn end(&self, p: &Principal, id: &str, summary: Option<String>) -> ServiceResult<SessionInfo> {
        let Some(entry) = self.namespace_of(p, id, Scope::Write)? else {
            return Err(ServiceError::not_found("session", format!("session {} not found", validate::printable(id))));
        };
        self.session_op(&entry, DataOp::EndSession { id: id.to_string(), summary }).await
    }

    /// Keep a session alive (write scope).
    pub async fn touch(&self, p: &Principal, id: &str) -> ServiceResult<SessionInfo> {
        let entry = self.found(p, id, Scope::Write)?;
        self.session_op(&entry, DataOp::TouchSession { id: id.to_string() }).await
    }

    /// A session (read scope).
    pub async fn get(&self, p: &Principal, id: &str) -> ServiceResult<SessionInfo> {
        let entry = self.found(p, id, Scope::Read)?;
        self.session_op(&entry, DataOp::GetSession { id: id.to_string() }).await
    }

    async fn list_in(
        &self,
        entry: &NamespaceEntry,
        agent_id: Option<String>,
        active_only: bool,
        limit: usize,
        offset: usize,
    ) -> ServiceResult<(Vec<SessionInfo>, u64)> {
        match self.core.exec(entry, DataOp::ListSessions { agent_id, active_only, limit, offset }).await? {
            DataResult::Sessions { sessions, total } => Ok((sessions, total)),
            _ => Err(unexpected()),
        }
    }

    /// Sessions, newest first (`limit` 1-1000, default 100): in the namespace the request names
    /// (`namespace` or `agent_id`, read scope), or every session the key can see, from each
    /// namespace only its newest `offset + limit`, from at most [`MAX_FANOUT_NAMESPACES`].
    pub async fn list(
        &self,
        p: &Principal,
        namespace: Option<&str>,
        agent_id: Option<&str>,
        active_only: bool,
        limit: Option<usize>,
        offset: Option<usize>,
    ) -> ServiceResult<SessionPage> {
        let limit = limit.unwrap_or(100).clamp(1, 1000);
        let offset = offset.unwrap_or(0);
        if agent_id.is_some() || namespace.is_some() {
            let t = target(namespace, agent_id)?;
            p.require(&t.namespace, Scope::Read)?;
            let (sessions, total) = match self.core.namespace(&t.namespace) {
                None => (Vec::new(), 0),
                Some(e) => self.list_in(&e, t.agent_filter, active_only, limit, offset).await?,
            };
            return Ok(SessionPage { sessions, total, namespaces_truncated: false });
        }
        let names: BTreeSet<String> =
            self.core.catalogue.view.read().sessions.values().flatten().filter(|ns| p.can_see(ns)).cloned().collect();
        let namespaces_truncated = names.len() > MAX_FANOUT_NAMESPACES;
        let want = offset.saturating_add(limit);
        let mut all = Vec::new();
        let mut total = 0;
        for ns in names.into_iter().take(MAX_FANOUT_NAMESPACES) {
            if let Some(e) = self.core.namespace(&ns) {
                let (page, n) = self.list_in(&e, None, active_only, want, 0).await?;
                total += n;
                all.extend(page);
            }
        }
        all.sort_by_key(|s| std::cmp::Reverse(s.session.started_at));
        Ok(SessionPage { sessions: all.into_iter().skip(offset).take(limit).collect(), total, namespaces_truncated })
    }

    /// A session and a page of its memories, oldest first (read scope; `limit` 1-500, default 50).
    pub async fn memories(
        &self,
        p: &Principal,
        id: &str,
        limit: Option<usize>,
        offset: Option<usize>,
    ) -> ServiceResult<SessionMemories> {
        let entry = self.found(p, id, Scope::Read)?;
        let session = self.session_op(&entry, DataOp::GetSession { id: id.to_string() }).await?;
        let op = DataOp::List {
            filter: MemoryFilter { session_id: Some(id.to_string()), ..Default::default() },
            sort: SortBy::CreatedAtAsc,
            limit: limit.unwrap_or(50).clamp(1, 500),
            offset: offset.unwrap_or(0),
        };
        let DataResult::Memories { memories, total } = self.core.exec(&entry, op).await? else {
            return Err(unexpected());
        };
        Ok(SessionMemories { session, memories, total })
    }

    /// The agents of the namespaces the key reads, from at most [`MAX_FANOUT_NAMESPACES`] of
    /// them by name (`true`: there are more), eight at a time.
    pub async fn list_agents(&self, p: &Principal) -> ServiceResult<(Vec<AgentSummary>, bool)> {
        let mut readable: Vec<NamespaceEntry> =
            self.core.namespaces().into_iter().filter(|e| p.allows(&e.name, Scope::Read)).collect();
        readable.sort_by(|a, b| a.name.cmp(&b.name));
        let truncated = readable.len() > MAX_FANOUT_NAMESPACES;
        readable.truncate(MAX_FANOUT_NAMESPACES);
        let answers: Vec<ServiceResult<DataResult>> = futures::stream::iter(readable)
            .map(|entry| {
                let core = self.core.clone();
                async move { core.exec(&entry, DataOp::ListAgents).await }
            })
            .buffered(8)
            .collect()
            .await;
        let mut out = Vec::new();
        for a in answers {
            if let DataResult::Agents(list) = a? {
                out.extend(list);
            }
        }
        Ok((out, truncated))
    }

    /// An agent's statistics: its namespace as a whole (memories stored there under other agent
    /// ids count too, as [`Self::agent_memories`] lists them); empty when it has none yet.
    pub async fn agent_stats(&self, p: &Principal, agent: &str) -> ServiceResult<AgentStats> {
        let ns = agent_namespace(p, agent)?;
        match self.core.namespace(&ns) {
            None => Ok(AgentStats { agent_id: canonical_namespace(agent).to_string(), ..Default::default() }),
            Some(e) => match self.core.exec(&e, DataOp::AgentStats { agent_id: None }).await? {
                DataResult::AgentStats(s) => Ok(s),
                _ => Err(unexpected()),
            },
        }
    }

    /// An agent's memories, newest first (`limit` 1-1000, default 50), of one type if asked.
    pub async fn agent_memories(
        &self,
        p: &Principal,
        agent: &str,
        memory_type: Option<&str>,
        limit: Option<usize>,
        offset: Option<usize>,
    ) -> ServiceResult<Vec<MemoryRecord>> {
        let ns = agent_namespace(p, agent)?;
        let Some(entry) = self.core.namespace(&ns) else {
            return Ok(Vec::new());
        };
        let filter =
            MemoryFilter { memory_type: memory_type.map(validate::memory_type).transpose()?, ..Default::default() };
        let op = DataOp::List {
            filter,
            sort: SortBy::CreatedAtDesc,
            limit: limit.unwrap_or(50).clamp(1, 1000),
            offset: offset.unwrap_or(0),
        };
        let DataResult::Memories { memories, .. } = self.core.exec(&entry, op).await? else {
            return Err(unexpected());
        };
        Ok(memories)
    }

    /// An agent's sessions (`limit` 1-1000, default 100).
    pub async fn agent_sessions(
        &self,
        p: &Principal,
        agent: &str,
        active_only: bool,
        limit: Option<usize>,
        offset: Option<usize>,
    ) -> ServiceResult<Vec<SessionInfo>> {
        let ns = agent_namespace(p, agent)?;
        let Some(entry) = self.core.namespace(&ns) else {
            return Ok(Vec::new());
        };
        let limit = limit.unwrap_or(100).clamp(1, 1000);
        Ok(self.list_in(&entry, None, active_only, limit, offset.unwrap_or(0)).await?.0)
    }

    /// Create an agent's namespace ahead of its first memory (write scope): the namespace and
    /// whether it was created now.
    pub async fn create_agent(&self, p: &Principal, agent_id: &str) -> ServiceResult<(NamespaceEntry, bool)> {
        let t = target(None, Some(agent_id))?;
        p.require(&t.namespace, Scope::Write)?;
        let existed = self.core.namespace(&t.namespace).is_some();
        let entry = self.core.namespace_for_write(&t.namespace).await?;
        Ok((entry, !existed))
    }
}

#[cfg(test)]
mod tests {
    use loci_raft::catalogue::{ApiKeyEntry, Grant};

    use super::*;

    fn principal(grants: &[(&str, Scope)]) -> Principal {
        Principal::from_entry(&ApiKeyEntry {
            key_id: "dk_key_t".into(),
            name: "t".into(),
            secret_sha256: "00".repeat(32),
            scope: Scope::Write,
            grants: Some(grants.iter().map(|(p, s)| Grant { pattern: (*p).into(), scope: *s }).collect()),
            created_by: "root".into(),
            created_at: 1,
            expires_at: None,
            active: true,
            deactivated_at: None,
            rotated_to: None,
        })
    }

    #[test]
    fn an_agent_is_its_namespace_and_needs_read_on_it() {
        let p = principal(&[("alice", Scope::Read)]);
        assert_eq!(agent_namespace(&p, "_dakera_agent_alice").unwrap(), "alice");
        assert_eq!(agent_namespace(&p, "alice").unwrap(), "alice");
        let e = agent_namespace(&p, "bob").unwrap_err();
        assert_eq!((e.status.as_u16(), e.code.as_ref()), (403, "NAMESPACE_ACCESS_DENIED"));
        assert_eq!(agent_namespace(&p, "").unwrap_err().status.as_u16(), 400);
    }
}
