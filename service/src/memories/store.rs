//! Storing memories, one or a batch: the writer's scope, the namespace (created for an agent on
//! its first write), content screening, the namespace's store budget, and the state of the
//! sessions the memories went into.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use loci_raft::catalogue::NamespaceEntry;
use loci_raft::catalogue::Scope;
use loci_storage::embed::{Truncation, truncation};
use loci_storage::model::{DataOp, DataResult, MemoryRecord, NewMemory};

use super::{Memories, Target, screen, unexpected};
use crate::access::Principal;
use crate::error::{ServiceError, ServiceResult};
use crate::ratelimit::NsClass;
use crate::validate;

/// One memory stored.
#[derive(Clone, Debug)]
pub struct Stored {
    pub record: MemoryRecord,
    /// The time the store itself took (embedding included).
    pub took: Duration,
    /// The memory's session: `Some(true)` ended, `Some(false)` active, `None` none or unknown.
    pub session_ended: Option<bool>,
    /// The content is longer than the embedder's window: what the vector covers.
    pub truncated: Option<Truncation>,
}

/// A batch stored.
#[derive(Clone, Debug)]
pub struct BatchStored {
    pub records: Vec<MemoryRecord>,
    pub took: Duration,
    /// Sessions the memories were stored into that had already ended (the clients report them).
    pub ended_sessions: Vec<String>,
    /// The memories whose content is longer than the embedder's window (by id).
    pub truncated: Vec<(String, Truncation)>,
}

/// A batch holds 1 to [`validate::MAX_BATCH`] memories.
pub fn check_batch_len(n: usize) -> ServiceResult<()> {
    if n == 0 || n > validate::MAX_BATCH {
        return Err(ServiceError::bad_request(format!("memories must hold 1-{} items", validate::MAX_BATCH)));
    }
    Ok(())
}

impl<'a> Memories<'a> {
    /// What the namespace's embedder leaves out of `item`'s vector (none when the client gave
    /// the vector, or the embedder has no window or is not on this node).
    fn truncation_of(&self, entry: &NamespaceEntry, item: &NewMemory) -> Option<Truncation> {
        if item.embedding.is_some() {
            return None;
        }
        let e = self.core.embedder(&entry.embedder).ok()?;
        truncation(e.as_ref(), &item.content)
    }

    /// Store one memory (write scope on the target).
    pub async fn store(&self, p: &Principal, t: &Target, mut item: NewMemory) -> ServiceResult<Stored> {
        p.require(&t.namespace, Scope::Write)?;
        let entry = self.core.namespace_for_write(&t.namespace).await?;
        screen(&entry.policy, &mut item)?;
        self.ns_limit(&entry, NsClass::Store).await?;
        let truncated = self.truncation_of(&entry, &item);
        let started = Instant::now();
        let DataResult::Stored(recs) = self.core.exec(&entry, DataOp::Store { items: vec![item] }).await? else {
            return Err(unexpected());
        };
        let took = started.elapsed();
        let record = recs.into_iter().next().ok_or_else(|| ServiceError::internal("nothing stored"))?;
        let session_ended = match &record.session_id {
            Some(sid) => self.session_ended(&entry, sid).await,
            None => None,
        };
        Ok(Stored { record, took, session_ended, truncated })
    }

    /// Store a batch, all or nothing (write scope on the target; every item screened first).
    pub async fn store_batch(
        &self,
        p: &Principal,
        t: &Target,
        mut items: Vec<NewMemory>,
    ) -> ServiceResult<BatchStored> {
        p.require(&t.namespace, Scope::Write)?;
        check_batch_len(items.len())?;
        let entry = self.core.namespace_for_write(&t.namespace).await?;
        for item in items.iter_mut() {
            screen(&entry.policy, item)?;
        }
        self.ns_limit(&entry, NsClass::Store).await?;
        let cuts: Vec<Option<Truncation>> = items.iter().map(|i| self.truncation_of(&entry, i)).collect();
        let started = Instant::now();
        let DataResult::Stored(records) = self.core.exec(&entry, DataOp::Store { items }).await? else {
            return Err(unexpected());
        };
        let truncated = records.iter().zip(cuts).filter_map(|(r, c)| c.map(|c| (r.id.clone(), c))).collect();
        let took = started.elapsed();
        let mut ended_sessions = Vec::new();
        let sessions: BTreeSet<&str> = records.iter().filter_map(|r| r.session_id.as_deref()).collect();
        for sid in sessions {
            if self.session_ended(&entry, sid).await == Some(true) {
                ended_sessions.push(sid.to_string());
            }
        }
        Ok(BatchStored { records, took, ended_sessions, truncated })
    }
}
