//! The executor: [`Store::execute`] runs one [`DataOp`] against a namespace — reads directly,
//! writes (store, update, forget, sessions, staged vectors) as the next replicated entry.

use std::collections::HashSet;

use super::rank::Meta;
use super::{Namespace, NsContext, Store, check_vector, new_memory_id, new_session_id};
use crate::error::{Result, StorageError};
use crate::model::*;

impl Store {
    pub(super) fn embed(&self, ctx: &NsContext, texts: &[&str]) -> Result<Vec<Option<Vec<f32>>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let out = ctx.embedder.embed(texts)?;
        if out.len() != texts.len() {
            return Err(StorageError::Embedding("embedder returned a wrong number of vectors".into()));
        }
        out.into_iter()
            .map(|v| {
                if v.iter().all(|x| *x == 0.0) {
                    return Ok(None);
                }
                check_vector(&v, ctx.dimension).map_err(|e| StorageError::Embedding(e.to_string()))?;
                Ok(Some(v))
            })
            .collect()
    }

    /// Run one operation on a namespace. Blocking: call from a blocking thread.
    ///
    /// A write is applied locally under the next sequence number of the namespace; the returned
    /// [`ReplEntry`] is what followers must apply to converge (`None` for reads and no-ops).
    pub fn execute(&self, ctx: &NsContext, op: DataOp) -> Result<Executed> {
        // A namespace replaced while this call held the old copy (an embedder switch, a full
        // copy) refuses writes with `Dropped`: run once more against the new one.
        match self.execute_on(ctx, op.clone()) {
            Err(StorageError::Dropped) if !self.dropped.read().contains(&ctx.id) => self.execute_on(ctx, op),
            other => other,
        }
    }

    pub(super) fn execute_on(&self, ctx: &NsContext, op: DataOp) -> Result<Executed> {
        let ns = self.namespace(ctx)?;
        let now = now_secs();
        let read = |result: DataResult| Ok(Executed { result, replicate: None });
        match op {
            DataOp::Store { items } => {
                let (recs, entry) = self.store(&ns, ctx, items, now)?;
                Ok(Executed { result: DataResult::Stored(recs), replicate: entry })
            }
            DataOp::Get { id, record_access } => {
                let rec = self.get_live(&ns, &id, now)?;
                if record_access {
                    self.touch(&ns, std::slice::from_ref(&id), now);
                }
                read(DataResult::Memory(rec))
            }
            DataOp::Update { id, patch } => {
                let (rec, entry) = self.update(&ns, ctx, &id, patch, now)?;
                Ok(Executed { result: DataResult::Memory(rec), replicate: Some(entry) })
            }
            DataOp::SetImportance { ids, importance, agent } => {
                let _w = ns.write_lock()?;
                let mut mutations = Vec::with_capacity(ids.len());
                let mut records = Vec::with_capacity(ids.len());
                for id in &ids {
                    let mut rec = self.get_live(&ns, id, now)?;
                    if agent.as_ref().is_some_and(|a| a != &rec.agent_id) {
                        return Err(StorageError::NotFound(format!("memory {id}")));
                    }
                    rec.importance = importance;
                    rec.updated_at = now;
                    rec.version += 1;
                    let vector = self.read_vector(ctx, id)?;
                    records.push(rec.clone());
                    mutations.push(Mutation::PutMemory { record: rec, vector });
                }
                if mutations.is_empty() {
                    return read(DataResult::Memories { memories: records, total: 0 });
                }
                let entry = self.commit_local(&ns, ctx, mutations)?;
                let total = records.len() as u64;
                Ok(Executed { result: DataResult::Memories { memories: records, total }, replicate: Some(entry) })
            }
            DataOp::Forget { filter } => {
                let _w = ns.write_lock()?;
                let ids = self.select(&ns, &filter, now);
                let n = ids.len() as u64;
                let trashed = self.trash_matching(ctx, &filter, now)?;
                let mut mutations = Vec::new();
                if !ids.is_empty() {
                    mutations.push(Mutation::DeleteMemories { ids });
                }
                if !trashed.is_empty() {
                    mutations.push(Mutation::DeleteTrash { ids: trashed });
                }
                let entry = if mutations.is_empty() { None } else { Some(self.commit_local(&ns, ctx, mutations)?) };
                Ok(Executed { result: DataResult::Deleted(n), replicate: entry })
            }
            DataOp::List { filter, sort, limit, offset } => {
                let (page, total) = self.list(&ns, &filter, sort, limit, offset, now)?;
                read(DataResult::Memories { memories: page, total })
            }
            DataOp::Recall(p) => read(DataResult::Recalled(self.recall(&ns, p, now)?)),
            DataOp::StartSession { id, agent_id, metadata, idle_timeout_secs } => {
                let _w = ns.write_lock()?;
                let id = id.unwrap_or_else(new_session_id);
                let existing = ns.state.read().sessions.get(&id).cloned();
                match existing {
                    Some(s) if s.agent_id != agent_id => {
                        Err(StorageError::Conflict(format!("session {id} belongs to another agent")))
                    }
                    Some(s) => read(DataResult::Session(self.session_info(&ns, s, now))),
                    None => {
                        self.check_session_limits(&ns, ctx, &agent_id, now)?;
                        let s = Session {
                            id,
                            agent_id,
                            started_at: now,
                            ended_at: None,
                            summary: None,
                            metadata,
                            last_activity_at: now,
                            ended_reason: None,
                            idle_timeout_secs,
                        };
                        let entry = self.commit_local(&ns, ctx, vec![Mutation::PutSession { session: s.clone() }])?;
                        Ok(Executed {
                            result: DataResult::Session(self.session_info(&ns, s, now)),
                            replicate: Some(entry),
                        })
                    }
                }
            }
            DataOp::EndSession { id, summary } => {
                let _w = ns.write_lock()?;
                let mut s = self.session(&ns, &id)?;
                if s.ended_at.is_some() {
                    return read(DataResult::Session(self.session_info(&ns, s, now)));
                }
                s.ended_at = Some(now);
                s.ended_reason = Some("client".into());
                if summary.is_some() {
                    s.summary = summary;
                }
                s.last_activity_at = now;
                let entry = self.commit_local(&ns, ctx, vec![Mutation::PutSession { session: s.clone() }])?;
                Ok(Executed { result: DataResult::Session(self.session_info(&ns, s, now)), replicate: Some(entry) })
            }
            DataOp::TouchSession { id } => {
                let _w = ns.write_lock()?;
                let mut s = self.session(&ns, &id)?;
                if s.ended_at.is_some() {
                    return read(DataResult::Session(self.session_info(&ns, s, now)));
                }
                s.last_activity_at = now;
                let entry = self.commit_local(&ns, ctx, vec![Mutation::PutSession { session: s.clone() }])?;
                Ok(Executed { result: DataResult::Session(self.session_info(&ns, s, now)), replicate: Some(entry) })
            }
            DataOp::GetSession { id } => {
                let s = self.session(&ns, &id)?;
                read(DataResult::Session(self.session_info(&ns, s, now)))
            }
            DataOp::ListSessions { agent_id, active_only, limit, offset } => {
                let mut all: Vec<Session> = ns
                    .state
                    .read()
                    .sessions
                    .values()
                    .filter(|s| agent_id.as_ref().is_none_or(|a| &s.agent_id == a))
                    .filter(|s| !active_only || s.ended_at.is_none())
                    .cloned()
                    .collect();
                all.sort_by(|a, b| b.started_at.cmp(&a.started_at).then_with(|| a.id.cmp(&b.id)));
                let total = all.len() as u64;
                let sessions =
                    all.into_iter().skip(offset).take(limit).map(|s| self.session_info(&ns, s, now)).collect();
                read(DataResult::Sessions { sessions, total })
            }
            DataOp::AgentStats { agent_id } => {
                read(DataResult::AgentStats(self.agent_stats(&ns, agent_id.as_deref(), now)))
            }
            DataOp::ListAgents => read(DataResult::Agents(self.agents(&ns, now))),
            DataOp::ContentPage { after, limit } => {
                let mut ids: Vec<(String, u64)> = {
                    let st = ns.state.read();
                    st.metas
                        .iter()
                        .filter(|(id, _)| after.as_deref().is_none_or(|a| id.as_str() > a))
                        .map(|(id, m)| (id.clone(), m.version))
                        .collect()
                };
                ids.sort();
                ids.truncate(limit.clamp(1, 1000));
                let mut page = Vec::with_capacity(ids.len());
                for (id, version) in ids {
                    if let Some(rec) = self.read_record(ctx, &id)? {
                        page.push((id, version, rec.content));
                    }
                }
                read(DataResult::ContentPage(page))
            }
            DataOp::StageVectors { generation, items } => {
                if generation <= ns.state.read().generation {
                    return Err(StorageError::Invalid(format!("embedder generation {generation} is not newer")));
                }
                let n = items.len() as u64;
                let _w = ns.write_lock()?;
                let entry = self.commit_local(&ns, ctx, vec![Mutation::StageVectors { generation, items }])?;
                Ok(Executed { result: DataResult::Staged(n), replicate: Some(entry) })
            }
            DataOp::Query(q) if !q.records && !q.include_vectors => {
                read(DataResult::Scores(self.vector_scores(&ns, &q, now)?))
            }
            DataOp::Query(q) => read(DataResult::Hits(self.vector_query(&ns, q, now)?)),
            DataOp::Export { after, limit, include_vectors, filter } => {
                let (items, total, more) =
                    self.export_page(&ns, after.as_deref(), limit.clamp(1, 10_000), include_vectors, &filter, now)?;
                read(DataResult::Exported { items, total, more })
            }
            DataOp::Count { filter } => read(DataResult::Count(self.count(&ns, &filter, now))),
            DataOp::DeleteMatching { filter, limit } => {
                let (n, entry) = self.delete_matching(&ns, ctx, &filter, super::vectors::check_limit(limit)?, now)?;
                Ok(Executed { result: DataResult::Deleted(n), replicate: entry })
            }
            DataOp::PatchMetadata { filter, set, limit, max_metadata_bytes } => {
                let limit = super::vectors::check_limit(limit)?;
                let (updated, errors, entry) =
                    self.patch_metadata(&ns, ctx, &filter, &set, limit, max_metadata_bytes, now)?;
                Ok(Executed { result: DataResult::Patched { updated, errors }, replicate: entry })
            }
            DataOp::TextStats { sample } => read(DataResult::TextStats(self.text_stats(&ns, sample, now)?)),
            DataOp::Link { links, agent } => {
                let (links, entry) = self.link(&ns, ctx, links, agent.as_deref(), now)?;
                Ok(Executed { result: DataResult::Links(links), replicate: Some(entry) })
            }
            DataOp::Unlink { from, to, edge_type, agent } => {
                let (n, entry) = self.unlink(&ns, ctx, (&from, &to), edge_type, agent.as_deref())?;
                Ok(Executed { result: DataResult::Deleted(n), replicate: entry })
            }
            DataOp::Graph(q) => read(DataResult::Graph(self.graph_view(&ns, q, now)?)),
            DataOp::Path { from, to, max_depth, entity_types, agent } => read(DataResult::Path(self.graph_path(
                &ns,
                &from,
                &to,
                max_depth,
                (entity_types.as_deref(), agent.as_deref()),
                now,
            )?)),
            DataOp::Links { agent, edge_type, min_weight, limit } => {
                read(DataResult::Links(self.list_links(&ns, agent.as_deref(), edge_type, min_weight, limit, now)))
            }
            DataOp::Deduplicate(p) => {
                let (report, entry) = self.deduplicate(&ns, ctx, p, now)?;
                Ok(Executed { result: DataResult::Deduplicated(report), replicate: entry })
            }
            DataOp::Consolidate(p) => {
                let (c, entry) = self.consolidate(&ns, ctx, p, now)?;
                Ok(Executed { result: DataResult::Consolidated(c), replicate: entry })
            }
            DataOp::ListTrash { agent, limit } => {
                read(DataResult::Trash(self.list_trash(ctx, agent.as_deref(), limit)?))
            }
            DataOp::RestoreTrash { id, agent } => {
                let (rec, entry) = self.restore_trash(&ns, ctx, &id, agent.as_deref(), now)?;
                Ok(Executed { result: DataResult::Memory(rec), replicate: Some(entry) })
            }
            DataOp::PurgeTrash { now: at, limit } => {
                let (n, entry) = self.purge_trash(&ns, ctx, at, limit)?;
                Ok(Executed { result: DataResult::Deleted(n), replicate: entry })
            }
            DataOp::Feedback { id, agent, signal, delta } => {
                let (memory, old_importance, entry) =
                    self.feedback(&ns, ctx, &id, agent.as_deref(), signal, delta, now)?;
                Ok(Executed { result: DataResult::Feedback { memory, old_importance }, replicate: Some(entry) })
            }
            DataOp::FeedbackSummary { agent } => {
                read(DataResult::FeedbackSummary(self.feedback_summary(&ns, &agent, now)?))
            }
            DataOp::FeedbackHistory { id, agent } => {
                read(DataResult::FeedbackHistory(self.feedback_history(&ns, &id, agent.as_deref(), now)?))
            }
            DataOp::Associated { roots, agent, depth, cap, min_weight, entity_types } => read(DataResult::Associated(
                self.associated(&ns, &roots, agent.as_deref(), depth, cap, min_weight, entity_types.as_deref(), now)?,
            )),
            DataOp::DecayStats { decay, agent } => {
                read(DataResult::DecayStats(self.decay_stats(&ns, &decay, agent.as_deref(), now)))
            }
            DataOp::Stats => {
                let st = ns.state.read();
                let live: Vec<&Meta> = st.metas.values().filter(|m| m.live(now)).collect();
                read(DataResult::Stats(NamespaceStats {
                    memory_count: live.len() as u64,
                    vector_count: st.vectors.len() as u64,
                    session_count: st.sessions.len() as u64,
                    dimension: Some(ns.ctx.dimension),
                    estimated_storage_bytes: live
                        .iter()
                        .map(|m| m.content_len as u64 + 4 * ns.ctx.dimension as u64)
                        .sum(),
                }))
            }
        }
    }

    pub(super) fn session(&self, ns: &Namespace, id: &str) -> Result<Session> {
        ns.state.read().sessions.get(id).cloned().ok_or_else(|| StorageError::NotFound(format!("session {id}")))
    }
    pub(super) fn session_info(&self, ns: &Namespace, session: Session, now: u64) -> SessionInfo {
        let memory_count = ns
            .state
            .read()
            .metas
            .values()
            .filter(|m| m.live(now) && m.session_id.as_deref() == Some(session.id.as_str()))
            .count() as u64;
        SessionInfo { session, memory_count }
    }

    pub(super) fn get_live(&self, ns: &Namespace, id: &str, now: u64) -> Result<MemoryRecord> {
        let live = ns.state.read().metas.get(id).is_some_and(|m| m.live(now));
        if !live {
            return Err(StorageError::NotFound(format!("memory {id}")));
        }
        self.full_record(ns, id)?.ok_or_else(|| StorageError::NotFound(format!("memory {id}")))
    }

    pub(super) fn touch(&self, ns: &Namespace, ids: &[String], now: u64) {
        let mut st = ns.state.write();
        for id in ids {
            if let Some(m) = st.metas.get_mut(id) {
                m.access_count += 1;
                m.last_accessed_at = now;
                st.access_dirty.insert(id.clone());
            }
        }
    }

    /// Store new memories (or replace ones with client-chosen ids) as one replicated entry.
    pub(super) fn store(
        &self,
        ns: &Namespace,
        ctx: &NsContext,
        items: Vec<NewMemory>,
        now: u64,
    ) -> Result<(Vec<MemoryRecord>, Option<ReplEntry>)> {
        // Embed outside the namespace's write lock: it is the expensive part.
        let missing: Vec<&str> = items.iter().filter(|i| i.embedding.is_none()).map(|i| i.content.as_str()).collect();
        let mut embedded = self.embed(ctx, &missing)?.into_iter();
        let mut vectors = Vec::with_capacity(items.len());
        for item in &items {
            match &item.embedding {
                Some(v) => {
                    check_vector(v, ctx.dimension)?;
                    vectors.push(Some(v.clone()));
                }
                None => vectors.push(embedded.next().flatten()),
            }
        }
        // Ids now, so that similarity links (a vector search per memory) are found before the
        // write lock, which other writers of the namespace wait for.
        let ids: Vec<String> = items.iter().map(|i| i.id.clone().unwrap_or_else(new_memory_id)).collect();
        let mut links = Vec::new();
        if let Some(threshold) = ctx.auto_link_threshold {
            let st = ns.state.read();
            let batch: HashSet<String> = ids.iter().cloned().collect();
            for ((item, id), v) in items.iter().zip(&ids).zip(&vectors) {
                if let Some(v) = v {
                    let from = (id.as_str(), item.agent_id.as_str());
                    links.extend(self.similarity_links(&st, from, v, threshold, ctx.max_auto_links, &batch, now));
                }
            }
        }
        let _w = ns.write_lock()?;
        // `max_memories` comes from the caller's context: the policy can change after load.
        if let Some(max) = ctx.max_memories {
            let st = ns.state.read();
            let live = st.metas.values().filter(|m| m.live(now)).count() as u64;
            let new = items.iter().filter(|i| i.id.as_ref().is_none_or(|id| !st.metas.contains_key(id))).count() as u64;
            if live + new > max {
                return Err(StorageError::QuotaExceeded(format!(
                    "namespace '{}' holds {live} memories; storing {new} more would exceed its max_memories of {max}",
                    ctx.name
                )));
            }
        }
        if let Some(max) = ctx.max_agents {
            let st = ns.state.read();
            let known = known_agents(&st, now);
            let incoming: HashSet<&str> =
                items.iter().map(|i| i.agent_id.as_str()).filter(|a| !known.contains(*a)).collect();
            if !incoming.is_empty() && known.len() as u64 + incoming.len() as u64 > max {
                return Err(StorageError::QuotaExceeded(format!(
                    "namespace '{}' holds {} agents; a new agent would exceed its max_agents of {max}",
                    ctx.name,
                    known.len()
                )));
            }
        }
        let mut records = Vec::with_capacity(items.len());
        let mut mutations = Vec::with_capacity(items.len() + 1);
        let mut seen = HashSet::new();
        let mut order = ns.state.read().last_order;
        for ((item, vector), id) in items.into_iter().zip(vectors).zip(ids) {
            if !seen.insert(id.clone()) {
                return Err(StorageError::Invalid(format!("duplicate memory id {id} in one batch")));
            }
            // A client-chosen id that exists is an upsert: keep its creation time and order.
            let previous = ns.state.read().metas.get(&id).cloned();
            let old_version = match &previous {
                Some(_) => self.read_record(&ns.ctx, &id)?.map_or(0, |r| r.version),
                None => 0,
            };
            let rec = MemoryRecord {
                id: id.clone(),
                namespace: ctx.name.clone(),
                agent_id: item.agent_id,
                content: item.content,
                memory_type: item.memory_type,
                importance: item.importance,
                tags: item.tags,
                metadata: item.metadata,
                session_id: item.session_id,
                created_at: previous.as_ref().map_or(item.created_at.map_or(now, |c| c.min(now)), |p| p.created_at),
                updated_at: now,
                last_accessed_at: previous
                    .as_ref()
                    .map_or(item.created_at.map_or(now, |c| c.min(now)), |p| p.last_accessed_at),
                access_count: previous.as_ref().map_or(0, |p| p.access_count),
                expires_at: item.expires_at,
                version: old_version + 1,
                order: match &previous {
                    Some(p) => p.order,
                    None => {
                        order = (order + 1).max(now_micros());
                        order
                    }
                },
            };
            mutations.push(Mutation::PutMemory { record: rec.clone(), vector });
            records.push(rec);
        }
        // Similarity links to the most alike memories already stored (knowledge graph), found
        // above: those whose other end is still live.
        {
            let st = ns.state.read();
            links.retain(|l| st.metas.get(&l.to_id).is_some_and(|m| m.live(now)));
        }
        if !links.is_empty() {
            mutations.push(Mutation::PutLinks { links });
        }
        // Sessions these memories belong to record the activity in the same entry.
        {
            let st = ns.state.read();
            let mut ids: Vec<&String> = records.iter().filter_map(|r| r.session_id.as_ref()).collect();
            ids.sort();
            ids.dedup();
            for sid in ids {
                if let Some(s) = st.sessions.get(sid) {
                    let mut s = s.clone();
                    s.last_activity_at = now;
                    mutations.push(Mutation::PutSession { session: s });
                }
            }
        }
        let entry = self.commit_local(ns, ctx, mutations)?;
        Ok((records, Some(entry)))
    }

    pub(super) fn update(
        &self,
        ns: &Namespace,
        ctx: &NsContext,
        id: &str,
        patch: MemoryPatch,
        now: u64,
    ) -> Result<(MemoryRecord, ReplEntry)> {
        // None = vector unchanged; Some(None) = the new content has nothing to embed.
        let new_vector: Option<Option<Vec<f32>>> = match (&patch.embedding, &patch.content) {
            (Some(v), _) => {
                check_vector(v, ctx.dimension)?;
                Some(Some(v.clone()))
            }
            (None, Some(content)) => Some(self.embed(ctx, &[content.as_str()])?.pop().flatten()),
            (None, None) => None,
        };
        let _w = ns.write_lock()?;
        let mut rec = self.get_live(ns, id, now)?;
        if let Some(c) = patch.content {
            rec.content = c;
        }
        if let Some(t) = patch.memory_type {
            rec.memory_type = t;
        }
        if let Some(i) = patch.importance {
            rec.importance = i;
        }
        if let Some(t) = patch.tags {
            rec.tags = t;
        }
        if let Some(m) = patch.metadata {
            rec.metadata = Some(m);
        }
        if let Some(lang) = patch.lang {
            // Recorded inside the metadata the memory already has (or gets now).
            let meta = rec.metadata.get_or_insert_with(|| serde_json::Value::Object(Default::default()));
            if let serde_json::Value::Object(m) = meta {
                m.insert("_dakera_lang".into(), serde_json::Value::from(lang));
            }
        }
        if let Some(e) = patch.expires_at {
            rec.expires_at = e;
        }
        rec.updated_at = now;
        rec.version += 1;
        let vector = match new_vector {
            Some(v) => v,
            None => self.read_vector(ctx, id)?,
        };
        let entry = self.commit_local(ns, ctx, vec![Mutation::PutMemory { record: rec.clone(), vector }])?;
        Ok((rec, entry))
    }
}

/// The agents a namespace knows: those with a live memory or any session.
fn known_agents(st: &super::NsState, now: u64) -> HashSet<&str> {
    st.metas
        .values()
        .filter(|m| m.live(now))
        .map(|m| m.agent_id.as_str())
        .chain(st.sessions.values().map(|s| s.agent_id.as_str()))
        .collect()
}

impl Store {
    /// `max_agents` and `max_sessions_per_agent` for a new session of `agent_id` (under the
    /// namespace's write lock, so concurrent starts cannot both pass).
    fn check_session_limits(&self, ns: &Namespace, ctx: &NsContext, agent_id: &str, now: u64) -> Result<()> {
        let st = ns.state.read();
        if let Some(max) = ctx.max_agents {
            let known = known_agents(&st, now);
            if !known.contains(agent_id) && known.len() as u64 >= max {
                return Err(StorageError::QuotaExceeded(format!(
                    "namespace '{}' holds {} agents; a new agent would exceed its max_agents of {max}",
                    ctx.name,
                    known.len()
                )));
            }
        }
        if let Some(max) = ctx.max_sessions_per_agent {
            let held = st.sessions.values().filter(|s| s.agent_id == agent_id).count() as u64;
            if held >= max {
                return Err(StorageError::QuotaExceeded(format!(
                    "agent '{agent_id}' holds {held} sessions in namespace '{}'; its max_sessions_per_agent is {max}",
                    ctx.name
                )));
            }
        }
        Ok(())
    }
}
