//! Which events a served operation produces (pure: the operation and its result in, events out).
//!
//! Memory events follow the published clients' `MemoryEvent` (`event_type`, `timestamp` in
//! Unix seconds, `agent_id`, `memory_id`, `importance`, `session_id`, ...); namespace events
//! their `DakeraEvent` (`type`, `namespace`, `op`, `count`, ...). Neither carries content or
//! metadata; stored and updated memories carry their tags (the clients filter on them).

use loci_raft::catalogue::NamespaceEntry;
use loci_storage::model::{DataOp, DataResult, MemoryRecord, now_secs};
use serde_json::{Value, json};

use super::{EventKind, NewEvent};

fn memory_event(entry: &NamespaceEntry, event_type: &str, agent: Option<&str>, mut data: Value) -> NewEvent {
    data["event_type"] = json!(event_type);
    data["timestamp"] = json!(now_secs());
    data["namespace"] = json!(entry.name);
    data["agent_id"] = json!(agent);
    NewEvent {
        kind: EventKind::Memory,
        event_type: event_type.to_string(),
        namespace: Some(entry.name.clone()),
        ns_id: entry.id,
        agent_id: agent.map(str::to_string),
        data,
    }
}

fn stored(entry: &NamespaceEntry, event_type: &str, m: &MemoryRecord) -> NewEvent {
    memory_event(
        entry,
        event_type,
        Some(&m.agent_id),
        json!({
            "memory_id": m.id,
            "importance": m.importance,
            "memory_type": m.memory_type.as_str(),
            "tags": m.tags,
            "session_id": m.session_id,
        }),
    )
}

/// A namespace event (`DakeraEvent`).
pub fn namespace_event(entry: &NamespaceEntry, event_type: &str, mut data: Value) -> NewEvent {
    data["type"] = json!(event_type);
    data["namespace"] = json!(entry.name);
    data["updated_at"] = json!(now_secs());
    NewEvent {
        kind: EventKind::Namespace,
        event_type: event_type.to_string(),
        namespace: Some(entry.name.clone()),
        ns_id: entry.id,
        agent_id: None,
        data,
    }
}

fn mutated(entry: &NamespaceEntry, op: &str, count: u64) -> Option<NewEvent> {
    (count > 0).then(|| namespace_event(entry, "vectors_mutated", json!({"op": op, "count": count})))
}

/// What the events of an operation need from it, taken before it runs (the operation itself
/// moves into the data plane; a store's items are not copied).
#[derive(Clone, Debug, PartialEq)]
pub enum Probe {
    Store,
    Update,
    SetImportance { ids: Vec<String>, importance: f64, agent: Option<String> },
    Forget { single: Option<String>, agent: Option<String> },
    Recall { agent: Option<String>, session: Option<String> },
    StartSession,
    EndSession,
}

/// The probe of an operation that produces events (None: it produces none).
pub fn probe(op: &DataOp) -> Option<Probe> {
    Some(match op {
        DataOp::Store { .. } => Probe::Store,
        DataOp::Update { .. } => Probe::Update,
        DataOp::SetImportance { ids, importance, agent } => {
            Probe::SetImportance { ids: ids.clone(), importance: *importance, agent: agent.clone() }
        }
        DataOp::Forget { filter } | DataOp::DeleteMatching { filter, .. } => Probe::Forget {
            single: filter.ids.as_ref().filter(|ids| ids.len() == 1).map(|ids| ids[0].clone()),
            agent: filter.agent_id.clone(),
        },
        DataOp::Recall(p) => Probe::Recall { agent: p.filter.agent_id.clone(), session: p.filter.session_id.clone() },
        DataOp::StartSession { .. } => Probe::StartSession,
        DataOp::EndSession { .. } => Probe::EndSession,
        _ => return None,
    })
}

/// The events of one data operation that succeeded.
pub fn of_data(entry: &NamespaceEntry, probe: &Probe, result: &DataResult) -> Vec<NewEvent> {
    let mut out = Vec::new();
    match (probe, result) {
        (Probe::Store, DataResult::Stored(records)) => {
            out.extend(records.iter().map(|m| stored(entry, "stored", m)));
            out.extend(mutated(entry, "upserted", records.len() as u64));
        }
        (Probe::Update, DataResult::Memory(m)) => {
            out.push(stored(entry, "updated", m));
            out.extend(mutated(entry, "upserted", 1));
        }
        (Probe::SetImportance { ids, importance, agent }, DataResult::Patched { updated, .. }) if *updated > 0 => {
            out.extend(ids.iter().map(|id| {
                memory_event(
                    entry,
                    "importance_updated",
                    agent.as_deref(),
                    json!({"memory_id": id, "importance": importance}),
                )
            }));
        }
        (Probe::Forget { single, agent }, DataResult::Deleted(n)) if *n > 0 => {
            let single = single.as_ref().filter(|_| *n == 1);
            out.push(memory_event(entry, "forgotten", agent.as_deref(), json!({"memory_id": single, "count": n})));
            out.extend(mutated(entry, "deleted", *n));
        }
        (Probe::Recall { agent, session }, DataResult::Recalled(hits)) => {
            let ids: Vec<&str> = hits.iter().map(|h| h.memory.id.as_str()).collect();
            out.push(memory_event(
                entry,
                "recalled",
                agent.as_deref(),
                json!({"memory_ids": ids, "count": ids.len(), "session_id": session}),
            ));
        }
        (Probe::StartSession, DataResult::Session(s)) => {
            out.push(memory_event(
                entry,
                "session_started",
                Some(&s.session.agent_id),
                json!({"session_id": s.session.id}),
            ));
        }
        (Probe::EndSession, DataResult::Session(s)) => {
            out.push(memory_event(
                entry,
                "session_ended",
                Some(&s.session.agent_id),
                json!({"session_id": s.session.id, "reason": s.session.ended_reason, "memory_count": s.memory_count}),
            ));
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use loci_storage::model::{MemoryFilter, MemoryType};

    fn entry() -> NamespaceEntry {
        use loci_raft::catalogue::{Distance, EmbedderSpec, MemoryPolicy, NamespaceKind};
        NamespaceEntry {
            id: 7,
            name: "acme".into(),
            kind: NamespaceKind::Agent,
            dimension: 4,
            distance: Distance::Cosine,
            embedder: EmbedderSpec { provider: "hash".into(), dimension: 4, generation: 0 },
            policy: MemoryPolicy::default(),
            data_key: loci_storage::crypto::WrappedKey { kek_version: 1, dek_version: 1, sealed: vec![] },
            metadata: None,
            description: None,
            created_at: 0,
            placement: Default::default(),
            reembed: None,
            ceiling: Default::default(),
        }
    }

    fn record(id: &str) -> MemoryRecord {
        MemoryRecord {
            id: id.into(),
            namespace: "acme".into(),
            agent_id: "alice".into(),
            content: "secret content".into(),
            memory_type: MemoryType::Episodic,
            importance: 0.5,
            tags: vec!["private".into()],
            metadata: None,
            session_id: Some("s1".into()),
            created_at: 1,
            updated_at: 1,
            last_accessed_at: 1,
            access_count: 0,
            expires_at: None,
            version: 1,
            order: 0,
        }
    }

    #[test]
    fn a_store_is_one_event_per_memory_and_one_mutation_without_content() {
        let ev = of_data(&entry(), &Probe::Store, &DataResult::Stored(vec![record("a"), record("b")]));
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[0].event_type, "stored");
        assert_eq!(ev[0].data["memory_id"], "a");
        assert_eq!(ev[0].agent_id.as_deref(), Some("alice"));
        assert_eq!(ev[0].ns_id, 7);
        assert_eq!(ev[2].kind, EventKind::Namespace);
        assert_eq!(ev[2].data["type"], "vectors_mutated");
        assert_eq!(ev[2].data["count"], 2);
        for e in &ev {
            let text = e.data.to_string();
            assert!(!text.contains("secret content"), "{text}");
        }
    }

    #[test]
    fn a_forget_that_deleted_nothing_is_silent() {
        let op = DataOp::Forget { filter: MemoryFilter { ids: Some(vec!["a".into()]), ..Default::default() } };
        let op = probe(&op).unwrap_or_else(|| panic!("a forget produces events"));
        assert!(of_data(&entry(), &op, &DataResult::Deleted(0)).is_empty());
        let ev = of_data(&entry(), &op, &DataResult::Deleted(1));
        assert_eq!(ev[0].event_type, "forgotten");
        assert_eq!(ev[0].data["memory_id"], "a");
        assert_eq!(ev[1].data["op"], "deleted");
    }

    #[test]
    fn reads_other_than_recall_produce_nothing() {
        assert!(probe(&DataOp::Get { id: "a".into(), record_access: true }).is_none());
        assert!(probe(&DataOp::ListAgents).is_none());
    }
}
