//! Recall, search and batch recall (a filtered listing without embedding).

use loci_raft::catalogue::Scope;
use loci_storage::model::{DataOp, DataResult, MemoryFilter, MemoryRecord, RecallParams, ScoredMemory, SortBy};

use super::{Memories, Target, unexpected};
use crate::access::Principal;
use crate::error::{ServiceError, ServiceResult};
use crate::ratelimit::NsClass;
use crate::validate;

/// A batch recall's page.
#[derive(Clone, Debug, Default)]
pub struct BatchRecalled {
    /// Memories in the namespace.
    pub total: u64,
    /// Memories matching the filter.
    pub filtered: u64,
    pub memories: Vec<MemoryRecord>,
}

/// A batch recall's `limit` (default 100): 1 to [`validate::MAX_TOP_K`].
pub fn check_batch_limit(limit: Option<i64>) -> ServiceResult<usize> {
    let limit = limit.unwrap_or(100);
    if !(1..=validate::MAX_TOP_K as i64).contains(&limit) {
        return Err(ServiceError::bad_request(format!("limit must be between 1 and {}", validate::MAX_TOP_K)));
    }
    Ok(limit as usize)
}

fn has_query(params: &RecallParams) -> bool {
    !params.query.trim().is_empty() || params.query_embedding.is_some()
}

/// Hits in the order `sort` asks for.
pub fn sort_hits(hits: &mut [ScoredMemory], sort: SortBy) {
    hits.sort_by(|a, b| match sort {
        SortBy::Importance => b.memory.importance.total_cmp(&a.memory.importance),
        SortBy::LastAccessedAt => b.memory.last_accessed_at.cmp(&a.memory.last_accessed_at),
        SortBy::AccessCount => b.memory.access_count.cmp(&a.memory.access_count),
        SortBy::CreatedAtAsc => a.memory.created_at.cmp(&b.memory.created_at),
        SortBy::CreatedAtDesc => b.memory.created_at.cmp(&a.memory.created_at),
    });
}

impl<'a> Memories<'a> {
    /// Recall by a query or an embedding (read scope; the namespace's recall budget). A
    /// namespace that does not exist recalls nothing.
    pub async fn recall(
        &self,
        p: &Principal,
        t: &Target,
        mut params: RecallParams,
    ) -> ServiceResult<Vec<ScoredMemory>> {
        if !has_query(&params) {
            return Err(ServiceError::bad_request("query is required"));
        }
        p.require(&t.namespace, Scope::Read)?;
        let Some(entry) = self.core.namespace(&t.namespace) else {
            return Ok(Vec::new());
        };
        self.ns_limit(&entry, NsClass::Recall).await?;
        params.decay = self.core.maintenance().decay_for(&entry);
        match self.core.exec(&entry, DataOp::Recall(params)).await? {
            DataResult::Recalled(h) => Ok(h),
            _ => Err(unexpected()),
        }
    }

    /// Search (read scope): a recall without a query is a listing (by `sort`, newest first by
    /// default, each at score 1), with one a recall re-sorted by `sort` if given. `None`: the
    /// namespace does not exist.
    pub async fn search(
        &self,
        p: &Principal,
        t: &Target,
        mut params: RecallParams,
        sort: Option<SortBy>,
    ) -> ServiceResult<Option<Vec<ScoredMemory>>> {
        p.require(&t.namespace, Scope::Read)?;
        let Some(entry) = self.core.namespace(&t.namespace) else {
            return Ok(None);
        };
        if !has_query(&params) {
            let op = DataOp::List {
                filter: params.filter.clone(),
                sort: sort.unwrap_or_default(),
                limit: params.top_k,
                offset: 0,
            };
            return match self.core.exec(&entry, op).await? {
                DataResult::Memories { memories, .. } => Ok(Some(
                    memories
                        .into_iter()
                        .map(|m| ScoredMemory {
                            memory: m,
                            score: 1.0,
                            relevance: 1.0,
                            vector_score: None,
                            text_score: None,
                        })
                        .collect(),
                )),
                _ => Err(unexpected()),
            };
        }
        self.ns_limit(&entry, NsClass::Recall).await?;
        params.decay = self.core.maintenance().decay_for(&entry);
        let mut hits = match self.core.exec(&entry, DataOp::Recall(params)).await? {
            DataResult::Recalled(h) => h,
            _ => return Err(unexpected()),
        };
        if let Some(sort) = sort {
            sort_hits(&mut hits, sort);
        }
        Ok(Some(hits))
    }

    /// A filtered listing, newest first (read scope; `filter` gets the target's agent filter).
    /// `None`: the namespace does not exist.
    pub async fn recall_batch(
        &self,
        p: &Principal,
        t: &Target,
        mut filter: MemoryFilter,
        limit: usize,
    ) -> ServiceResult<Option<BatchRecalled>> {
        p.require(&t.namespace, Scope::Read)?;
        filter.agent_id = t.agent_filter.clone();
        let Some(entry) = self.core.namespace(&t.namespace) else {
            return Ok(None);
        };
        let total = match self.core.exec(&entry, DataOp::Stats).await? {
            DataResult::Stats(s) => s.memory_count,
            _ => 0,
        };
        let op = DataOp::List { filter, sort: SortBy::CreatedAtDesc, limit, offset: 0 };
        let DataResult::Memories { memories, total: filtered } = self.core.exec(&entry, op).await? else {
            return Err(unexpected());
        };
        Ok(Some(BatchRecalled { total, filtered, memories }))
    }
}
