//! Raw vectors and documents (Dakera's `/v1/namespaces/{ns}/vectors`, `query`, `upsert-text`,
//! `fulltext/*`, `hybrid`, … and gRPC `dakera.v1.VectorService`).
//!
//! A vector or a document is a record in the namespace's store like a memory, written through the
//! same data path (`Core::exec` → the namespace's primary → replication): sealed with the
//! namespace's data key, held in its vector index (and, with text, its blind-indexed BM25 index),
//! erased with it. A raw vector is a record with empty content and the client's vector; a
//! document is its text, embedded on the primary by the namespace's embedder. Every call checks
//! the key first (a namespace outside the key answers 403 whether or not it exists), validates
//! everything before anything is written, and bounds its work.

use std::time::Instant;

use loci_raft::catalogue::{Distance, NamespaceEntry, NamespaceKind, Scope};
use loci_storage::filter::MetaFilter;
use loci_storage::model::*;
use serde_json::Value;

use crate::access::Principal;
use crate::core::{Core, NamespaceSpec, canonical_namespace};
use crate::error::{ServiceError, ServiceResult};
use crate::validate;

/// Queries one batch-query request may carry (each with its own `top_k`).
pub const MAX_BATCH_QUERIES: usize = 100;
/// Records one bulk delete or bulk update changes at most; the answer says when more match.
pub const MAX_BULK: usize = 10_000;
/// Records an export page holds at most.
pub const MAX_EXPORT_PAGE: usize = 10_000;
/// Documents the full-text statistics read at most (`unique_terms` and `avg_doc_length` are
/// computed over them; `document_count` is always exact).
pub const TEXT_STATS_SAMPLE: usize = 10_000;
/// Ids one delete or warm request may name.
pub const MAX_IDS: usize = validate::MAX_BATCH_IDS;

/// A vector to upsert.
#[derive(Clone, Debug, PartialEq)]
pub struct VectorIn {
    pub id: String,
    pub values: Vec<f32>,
    pub metadata: Option<Value>,
}

/// A document to upsert (embedded by the namespace's embedder).
#[derive(Clone, Debug, PartialEq)]
pub struct DocumentIn {
    pub id: String,
    pub text: String,
    pub metadata: Option<Value>,
    pub ttl_seconds: Option<i64>,
    /// Tags the record carries (the fronts' content screening adds `screened:*` ones).
    pub tags: Vec<String>,
}

/// A nearest-neighbour query by vector or by text.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryIn {
    pub vector: Option<Vec<f32>>,
    pub text: Option<String>,
    pub top_k: i64,
    pub filter: Option<Value>,
    pub include_vectors: bool,
    /// Whether the answer needs the records (metadata, text); `false`: ids and scores only, and
    /// no record is read.
    pub records: bool,
}

/// One result of a query, a full-text search or a hybrid search.
#[derive(Clone, Debug, PartialEq)]
pub struct Match {
    pub id: String,
    pub score: f32,
    pub metadata: Option<Value>,
    /// The record's text (empty for a raw vector: `None`).
    pub text: Option<String>,
    pub vector: Option<Vec<f32>>,
    pub vector_score: Option<f32>,
    pub text_score: Option<f32>,
}

impl Match {
    /// An id and its score, nothing else.
    fn scored(id: String, score: f32) -> Self {
        Match { id, score, metadata: None, text: None, vector: None, vector_score: None, text_score: None }
    }

    fn of(record: MemoryRecord, score: f32, vector: Option<Vec<f32>>) -> Self {
        Match {
            id: record.id,
            score,
            metadata: record.metadata,
            text: (!record.content.is_empty()).then_some(record.content),
            vector,
            vector_score: None,
            text_score: None,
        }
    }
}

/// An export page.
#[derive(Clone, Debug, PartialEq)]
pub struct ExportPage {
    pub items: Vec<Match>,
    pub total: u64,
    pub next_cursor: Option<String>,
}

/// What a document upsert did.
#[derive(Clone, Debug, PartialEq)]
pub struct DocumentsUpserted {
    pub count: u64,
    /// Whitespace-separated words of the texts (an approximation of the model's tokens).
    pub tokens: u64,
    pub model: String,
    pub took_ms: u64,
}

/// The name the clients know for the namespace's embedder (`minilm` for the built-in model).
pub fn model_name(entry: &NamespaceEntry) -> String {
    match entry.embedder.provider.as_str() {
        loci_storage::minilm::PROVIDER => "minilm".to_string(),
        other => other.to_string(),
    }
}

fn unexpected(r: DataResult) -> ServiceError {
    ServiceError::internal(format!("unexpected result {:?}", std::mem::discriminant(&r)))
}

/// Parse a filter of the DSL (`None` and JSON `null`: no condition).
pub fn parse_filter(v: Option<&Value>) -> ServiceResult<MemoryFilter> {
    match v {
        None | Some(Value::Null) => Ok(MemoryFilter::default()),
        Some(v) => {
            let f = MetaFilter::parse(v).map_err(|e| ServiceError::bad_request(format!("invalid filter: {e}")))?;
            Ok(MemoryFilter { metadata: Some(f), ..MemoryFilter::default() })
        }
    }
}

fn check_metadata(m: Option<Value>, at: &str) -> ServiceResult<Option<Value>> {
    match m {
        None | Some(Value::Null) => Ok(None),
        Some(m) => {
            validate::metadata(&m).map_err(|mut e| {
                e.message = format!("{at}: {}", e.message);
                e
            })?;
            Ok(Some(m))
        }
    }
}

fn check_id(id: &str, at: &str) -> ServiceResult<()> {
    if id.is_empty() {
        return Err(ServiceError::bad_request(format!("{at}: id is required")));
    }
    validate::memory_id(id).map_err(|mut e| {
        e.message = format!("{at}: {}", e.message);
        e
    })
}

fn check_ids(ids: &[String]) -> ServiceResult<()> {
    if ids.is_empty() || ids.len() > MAX_IDS {
        return Err(ServiceError::bad_request(format!("ids must hold 1-{MAX_IDS} ids, not {}", ids.len())));
    }
    for (i, id) in ids.iter().enumerate() {
        check_id(id, &format!("ids[{i}]"))?;
    }
    Ok(())
}

fn check_values(v: &[f32], dimension: usize, at: &str) -> ServiceResult<()> {
    if v.is_empty() {
        return Err(ServiceError::new(
            crate::error::StatusCode::BAD_REQUEST,
            "EMPTY_VECTOR",
            format!("{at}: the vector is empty"),
        ));
    }
    if v.len() != dimension {
        return Err(ServiceError::new(
            crate::error::StatusCode::BAD_REQUEST,
            "DIMENSION_MISMATCH",
            format!("{at}: vector dimension {} does not match the namespace dimension {dimension}", v.len()),
        ));
    }
    loci_storage::store::check_vector(v, dimension).map_err(|e| {
        let mut e = ServiceError::from(e);
        e.message = format!("{at}: {}", e.message);
        e
    })
}

fn new_record(id: String, ns: &str, content: String, metadata: Option<Value>, vector: Option<Vec<f32>>) -> NewMemory {
    NewMemory {
        id: Some(id),
        agent_id: ns.to_string(),
        content,
        memory_type: MemoryType::default(),
        importance: 0.5,
        tags: Vec::new(),
        metadata,
        session_id: None,
        expires_at: None,
        embedding: vector,
        created_at: None,
    }
}

impl Core {
    /// The namespace a vector route reads or changes: the key's scope is checked before anything
    /// is looked up (a namespace outside the key answers 403 whether or not it exists); a name
    /// that cannot exist, or a namespace that does not, is 404.
    pub fn vector_namespace(&self, p: &Principal, ns: &str, need: Scope) -> ServiceResult<NamespaceEntry> {
        let name = canonical_namespace(ns);
        validate::namespace_ref(name).map_err(|_| ServiceError::namespace_not_found(&validate::printable(name)))?;
        p.require(name, need)?;
        self.namespace(name).ok_or_else(|| ServiceError::namespace_not_found(name))
    }

    /// The namespace a write goes to, created as a data namespace when missing (of `dimension`
    /// when the write carries vectors, else with the node's default embedder).
    async fn vector_namespace_for_write(
        &self,
        p: &Principal,
        ns: &str,
        dimension: Option<usize>,
    ) -> ServiceResult<NamespaceEntry> {
        let name = canonical_namespace(ns);
        validate::namespace_ref(name)?;
        p.require(name, Scope::Write)?;
        if let Some(e) = self.namespace(name) {
            return Ok(e);
        }
        validate::namespace_name_for_agent(name)?;
        let (entry, _) = self
            .create_namespace(NamespaceSpec {
                name: name.to_string(),
                kind: NamespaceKind::Data,
                dimension,
                distance: Distance::Cosine,
                embedder: None,
                metadata: None,
                description: None,
            })
            .await?;
        Ok(entry)
    }

    /// Upsert raw vectors (all or nothing). Returns how many were written.
    pub async fn upsert_vectors(&self, p: &Principal, ns: &str, vectors: Vec<VectorIn>) -> ServiceResult<u64> {
        if vectors.is_empty() || vectors.len() > validate::MAX_BATCH {
            return Err(ServiceError::bad_request(format!(
                "vectors must hold 1-{} vectors, not {}",
                validate::MAX_BATCH,
                vectors.len()
            )));
        }
        let name = canonical_namespace(ns).to_string();
        validate::namespace_ref(&name)?;
        p.require(&name, Scope::Write)?;
        // Everything that does not depend on the namespace is checked before it is created.
        let mut items = Vec::with_capacity(vectors.len());
        for (i, v) in vectors.into_iter().enumerate() {
            let at = format!("vectors[{i}]");
            check_id(&v.id, &at)?;
            let metadata = check_metadata(v.metadata, &at)?;
            items.push((v.id, v.values, metadata));
        }
        let existing = self.namespace(&name).map(|e| e.dimension);
        let dimension = existing.unwrap_or(items[0].1.len());
        for (i, (_, values, _)) in items.iter().enumerate() {
            check_values(values, dimension, &format!("vectors[{i}]"))?;
        }
        let entry = self.vector_namespace_for_write(p, &name, Some(dimension)).await?;
        if entry.dimension != dimension {
            // Created meanwhile by another caller with another dimension.
            check_values(&items[0].1, entry.dimension, "vectors[0]")?;
        }
        let n = items.len() as u64;
        let items =
            items.into_iter().map(|(id, v, m)| new_record(id, &entry.name, String::new(), m, Some(v))).collect();
        match self.exec(&entry, DataOp::Store { items }).await? {
            DataResult::Stored(recs) => Ok((recs.len() as u64).min(n)),
            other => Err(unexpected(other)),
        }
    }

    /// Upsert documents: their text is stored and embedded by the namespace's embedder.
    pub async fn upsert_documents(
        &self,
        p: &Principal,
        ns: &str,
        documents: Vec<DocumentIn>,
    ) -> ServiceResult<DocumentsUpserted> {
        if documents.is_empty() || documents.len() > validate::MAX_BATCH {
            return Err(ServiceError::bad_request(format!(
                "documents must hold 1-{} documents, not {}",
                validate::MAX_BATCH,
                documents.len()
            )));
        }
        let name = canonical_namespace(ns).to_string();
        validate::namespace_ref(&name)?;
        p.require(&name, Scope::Write)?;
        let now = now_secs();
        let mut items = Vec::with_capacity(documents.len());
        let mut tokens = 0u64;
        for (i, d) in documents.into_iter().enumerate() {
            let at = format!("documents[{i}]");
            check_id(&d.id, &at)?;
            validate::content(&d.text, self.config.max_content_bytes).map_err(|mut e| {
                e.message = format!("{at}: text: {}", e.message);
                e
            })?;
            let metadata = check_metadata(d.metadata, &at)?;
            validate::tags(&d.tags)?;
            let expires_at = match d.ttl_seconds {
                None => None,
                Some(t) if t > 0 && (t as u64) <= validate::MAX_TTL_SECONDS => Some(now + t as u64),
                Some(_) => {
                    return Err(ServiceError::bad_request(format!(
                        "{at}: ttl_seconds must be between 1 and 100 years"
                    )));
                }
            };
            tokens += d.text.split_whitespace().count() as u64;
            items.push((d.id, d.text, metadata, expires_at, d.tags));
        }
        let entry = self.vector_namespace_for_write(p, &name, None).await?;
        let items = items
            .into_iter()
            .map(|(id, text, m, exp, tags)| NewMemory {
                expires_at: exp,
                tags,
                ..new_record(id, &entry.name, text, m, None)
            })
            .collect();
        let started = Instant::now();
        let count = match self.exec(&entry, DataOp::Store { items }).await? {
            DataResult::Stored(recs) => recs.len() as u64,
            other => return Err(unexpected(other)),
        };
        Ok(DocumentsUpserted {
            count,
            tokens,
            model: model_name(&entry),
            took_ms: started.elapsed().as_millis() as u64,
        })
    }

    fn query_op(&self, entry: &NamespaceEntry, q: QueryIn, at: &str) -> ServiceResult<DataOp> {
        let top_k = validate::top_k(q.top_k).map_err(|mut e| {
            e.message = format!("{at}{}", e.message);
            e
        })?;
        match (&q.vector, &q.text) {
            (Some(v), _) => check_values(v, entry.dimension, at.trim_end_matches(": "))?,
            (None, Some(t)) => {
                if t.trim().is_empty() {
                    return Err(ServiceError::bad_request(format!("{at}text must not be empty")));
                }
                validate::content(t, self.config.max_content_bytes)?;
            }
            (None, None) => return Err(ServiceError::bad_request(format!("{at}vector is required"))),
        }
        let filter = parse_filter(q.filter.as_ref())?;
        Ok(DataOp::Query(VectorQuery {
            vector: q.vector,
            text: q.text,
            top_k,
            filter,
            include_vectors: q.include_vectors,
            records: q.records,
        }))
    }

    async fn run_query(&self, entry: &NamespaceEntry, op: DataOp) -> ServiceResult<Vec<Match>> {
        match self.exec(entry, op).await? {
            DataResult::Hits(hits) => Ok(hits.into_iter().map(|h| Match::of(h.record, h.score, h.vector)).collect()),
            DataResult::Scores(scores) => Ok(scores.into_iter().map(|(id, score)| Match::scored(id, score)).collect()),
            other => Err(unexpected(other)),
        }
    }

    /// Nearest neighbours of one vector (or text), raw similarity scores, best first.
    pub async fn query_vectors(&self, p: &Principal, ns: &str, q: QueryIn) -> ServiceResult<Vec<Match>> {
        let entry = self.vector_namespace(p, ns, Scope::Read)?;
        let op = self.query_op(&entry, q, "")?;
        self.run_query(&entry, op).await
    }

    /// Several queries, every one validated before any runs; each answer with its time.
    pub async fn batch_query_vectors(
        &self,
        p: &Principal,
        ns: &str,
        queries: Vec<QueryIn>,
    ) -> ServiceResult<Vec<(Vec<Match>, f64)>> {
        if queries.is_empty() || queries.len() > MAX_BATCH_QUERIES {
            return Err(ServiceError::bad_request(format!(
                "queries must hold 1-{MAX_BATCH_QUERIES} queries, not {}",
                queries.len()
            )));
        }
        let entry = self.vector_namespace(p, ns, Scope::Read)?;
        let ops = queries
            .into_iter()
            .enumerate()
            .map(|(i, q)| self.query_op(&entry, q, &format!("queries[{i}]: ")))
            .collect::<ServiceResult<Vec<_>>>()?;
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            let started = Instant::now();
            let matches = self.run_query(&entry, op).await?;
            out.push((matches, started.elapsed().as_secs_f64() * 1000.0));
        }
        Ok(out)
    }

    /// Delete records by id (vectors or documents). Returns how many existed.
    pub async fn delete_vectors(&self, p: &Principal, ns: &str, ids: Vec<String>) -> ServiceResult<u64> {
        let entry = self.vector_namespace(p, ns, Scope::Write)?;
        check_ids(&ids)?;
        let filter = MemoryFilter { ids: Some(ids), ..MemoryFilter::default() };
        match self.exec(&entry, DataOp::Forget { filter }).await? {
            DataResult::Deleted(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    /// Delete at most [`MAX_BULK`] records whose metadata passes `filter` (which must name a
    /// condition). Returns how many were deleted and how many still match.
    pub async fn bulk_delete_vectors(&self, p: &Principal, ns: &str, filter: &Value) -> ServiceResult<(u64, u64)> {
        let entry = self.vector_namespace(p, ns, Scope::Write)?;
        let filter = non_empty_filter(filter)?;
        let deleted =
            match self.exec(&entry, DataOp::DeleteMatching { filter: filter.clone(), limit: MAX_BULK }).await? {
                DataResult::Deleted(n) => n,
                other => return Err(unexpected(other)),
            };
        let remaining = if deleted as usize == MAX_BULK { self.count_in(&entry, filter).await? } else { 0 };
        Ok((deleted, remaining))
    }

    /// Set (or, with `null`, remove) metadata fields on at most [`MAX_BULK`] records whose
    /// metadata passes `filter`. Returns how many were updated, the records refused (metadata
    /// too large) and how many matching records were beyond the bound.
    pub async fn bulk_update_vectors(
        &self,
        p: &Principal,
        ns: &str,
        filter: &Value,
        update: Value,
    ) -> ServiceResult<(u64, Vec<String>, u64)> {
        let entry = self.vector_namespace(p, ns, Scope::Write)?;
        let filter = non_empty_filter(filter)?;
        let Value::Object(set) = update else {
            return Err(ServiceError::bad_request("update must be an object of metadata fields to set"));
        };
        if set.is_empty() {
            return Err(ServiceError::bad_request("update names no metadata field"));
        }
        // The fields set must be valid metadata themselves (nulls remove a field).
        let probe: serde_json::Map<String, Value> =
            set.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), v.clone())).collect();
        validate::metadata(&Value::Object(probe)).map_err(|mut e| {
            e.message = format!("update: {}", e.message);
            e
        })?;
        let op = DataOp::PatchMetadata {
            filter: filter.clone(),
            set,
            limit: MAX_BULK,
            max_metadata_bytes: validate::MAX_METADATA_BYTES,
        };
        let (updated, errors) = match self.exec(&entry, op).await? {
            DataResult::Patched { updated, errors } => (updated, errors),
            other => return Err(unexpected(other)),
        };
        let beyond = if updated as usize + errors.len() == MAX_BULK {
            self.count_in(&entry, filter).await?.saturating_sub(MAX_BULK as u64)
        } else {
            0
        };
        Ok((updated, errors, beyond))
    }

    async fn count_in(&self, entry: &NamespaceEntry, filter: MemoryFilter) -> ServiceResult<u64> {
        match self.exec(entry, DataOp::Count { filter }).await? {
            DataResult::Count(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    /// Records whose metadata passes `filter` (every record without one).
    pub async fn count_vectors(&self, p: &Principal, ns: &str, filter: Option<&Value>) -> ServiceResult<(String, u64)> {
        let entry = self.vector_namespace(p, ns, Scope::Read)?;
        let filter = parse_filter(filter)?;
        let n = self.count_in(&entry, filter).await?;
        Ok((entry.name, n))
    }

    /// A page of the records whose metadata passes `filter`, in id order after `cursor`.
    pub async fn export_vectors(
        &self,
        p: &Principal,
        ns: &str,
        cursor: Option<String>,
        top_k: i64,
        include_vectors: bool,
        filter: Option<&Value>,
    ) -> ServiceResult<ExportPage> {
        let entry = self.vector_namespace(p, ns, Scope::Read)?;
        if top_k < 1 || top_k as usize > MAX_EXPORT_PAGE {
            return Err(ServiceError::bad_request(format!(
                "top_k must be between 1 and {MAX_EXPORT_PAGE}, got {top_k}"
            )));
        }
        if let Some(c) = &cursor {
            check_id(c, "cursor")?;
        }
        let filter = parse_filter(filter)?;
        let op = DataOp::Export { after: cursor, limit: top_k as usize, include_vectors, filter };
        match self.exec(&entry, op).await? {
            DataResult::Exported { items, total, more } => {
                let next_cursor = if more { items.last().map(|h| h.record.id.clone()) } else { None };
                let items = items.into_iter().map(|h| Match::of(h.record, 1.0, h.vector)).collect();
                Ok(ExportPage { items, total, next_cursor })
            }
            other => Err(unexpected(other)),
        }
    }

    /// BM25 search over the namespace's text; scores are raw BM25.
    pub async fn fulltext_search(
        &self,
        p: &Principal,
        ns: &str,
        query: &str,
        top_k: i64,
        filter: Option<&Value>,
    ) -> ServiceResult<Vec<Match>> {
        let entry = self.vector_namespace(p, ns, Scope::Read)?;
        let top_k = validate::top_k(top_k)?;
        if query.trim().is_empty() {
            return Err(ServiceError::bad_request("query must not be empty"));
        }
        validate::content(query, self.config.max_content_bytes)?;
        let filter = parse_filter(filter)?;
        let hits = self.recall_in(&entry, query, None, top_k, filter, Routing::Bm25, None).await?;
        Ok(hits
            .into_iter()
            .map(|s| {
                let raw = s.text_score.unwrap_or(s.score);
                let mut m = Match::of(s.memory, raw, None);
                m.text_score = Some(raw);
                m
            })
            .collect())
    }

    /// Vector and BM25 candidates fused (`vector_weight` of the vector side, min-max normalised);
    /// without a vector, BM25 alone.
    #[allow(clippy::too_many_arguments)]
    pub async fn hybrid_search(
        &self,
        p: &Principal,
        ns: &str,
        text: &str,
        vector: Option<Vec<f32>>,
        top_k: i64,
        vector_weight: f32,
        filter: Option<&Value>,
    ) -> ServiceResult<Vec<Match>> {
        let entry = self.vector_namespace(p, ns, Scope::Read)?;
        let top_k = validate::top_k(top_k)?;
        if text.trim().is_empty() {
            return Err(ServiceError::bad_request("text must not be empty"));
        }
        validate::content(text, self.config.max_content_bytes)?;
        if !vector_weight.is_finite() || !(0.0..=1.0).contains(&vector_weight) {
            return Err(ServiceError::bad_request(format!(
                "vector_weight must be between 0 and 1, got {vector_weight}"
            )));
        }
        if let Some(v) = &vector {
            check_values(v, entry.dimension, "vector")?;
        }
        let filter = parse_filter(filter)?;
        let routing = if vector.is_some() { Routing::Hybrid } else { Routing::Bm25 };
        let hits = self.recall_in(&entry, text, vector, top_k, filter, routing, Some(vector_weight)).await?;
        Ok(hits
            .into_iter()
            .map(|s| {
                let mut m = Match::of(s.memory, s.score, None);
                m.vector_score = s.vector_score;
                m.text_score = s.text_score;
                m
            })
            .collect())
    }

    #[allow(clippy::too_many_arguments)]
    async fn recall_in(
        &self,
        entry: &NamespaceEntry,
        query: &str,
        vector: Option<Vec<f32>>,
        top_k: usize,
        filter: MemoryFilter,
        routing: Routing,
        vector_weight: Option<f32>,
    ) -> ServiceResult<Vec<ScoredMemory>> {
        let params = RecallParams {
            query: query.to_string(),
            query_embedding: vector,
            top_k,
            filter,
            routing,
            fusion: Fusion::Minmax,
            vector_weight,
            min_score: None,
            importance_weighted: false,
            record_access: false,
            decay: None,
        };
        match self.exec(entry, DataOp::Recall(params)).await? {
            DataResult::Recalled(hits) => Ok(hits),
            other => Err(unexpected(other)),
        }
    }

    /// The namespace's full-text statistics.
    pub async fn fulltext_stats(&self, p: &Principal, ns: &str) -> ServiceResult<TextStats> {
        let entry = self.vector_namespace(p, ns, Scope::Read)?;
        match self.exec(&entry, DataOp::TextStats { sample: TEXT_STATS_SAMPLE }).await? {
            DataResult::TextStats(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    /// Load the namespace on its primary (its vectors are held in memory from then on). Returns
    /// how many of `ids` exist (every record without ids) and how many do not.
    pub async fn warm_vectors(&self, p: &Principal, ns: &str, ids: Option<Vec<String>>) -> ServiceResult<(u64, u64)> {
        let entry = self.vector_namespace(p, ns, Scope::Read)?;
        let asked = match &ids {
            Some(ids) if ids.is_empty() => None,
            Some(ids) => {
                check_ids(ids)?;
                let mut distinct = ids.clone();
                distinct.sort();
                distinct.dedup();
                Some(distinct)
            }
            None => None,
        };
        let n_asked = asked.as_ref().map(|a| a.len() as u64);
        let filter = MemoryFilter { ids: asked, ..MemoryFilter::default() };
        let found = self.count_in(&entry, filter).await?;
        Ok((found, n_asked.map_or(0, |n| n.saturating_sub(found))))
    }
}

/// A filter for a destructive bulk call: it must name at least one condition.
fn non_empty_filter(v: &Value) -> ServiceResult<MemoryFilter> {
    let empty = match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        _ => false,
    };
    if empty {
        return Err(ServiceError::bad_request(
            "filter must name at least one condition (use DELETE /v1/namespaces/{ns} to erase a namespace)",
        ));
    }
    parse_filter(Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_parse_into_the_memory_filter_or_refuse() {
        assert_eq!(parse_filter(None).unwrap(), MemoryFilter::default());
        assert_eq!(parse_filter(Some(&Value::Null)).unwrap(), MemoryFilter::default());
        let f = parse_filter(Some(&json!({"a": {"$gt": 1}}))).unwrap();
        assert!(f.metadata.is_some() && f.ids.is_none());
        let e = parse_filter(Some(&json!({"a": {"$bogus": 1}}))).unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
        assert!(e.message.starts_with("invalid filter: unknown filter operator"), "{}", e.message);
        assert!(non_empty_filter(&json!({})).is_err());
        assert!(non_empty_filter(&Value::Null).is_err());
        assert!(non_empty_filter(&json!({"a": 1})).is_ok());
    }

    #[test]
    fn vectors_are_checked_with_the_clients_codes() {
        assert_eq!(check_values(&[], 3, "v").unwrap_err().code, "EMPTY_VECTOR");
        assert_eq!(check_values(&[1.0, 2.0], 3, "v").unwrap_err().code, "DIMENSION_MISMATCH");
        assert_eq!(check_values(&[1.0, f32::NAN, 0.0], 3, "v").unwrap_err().status.as_u16(), 400);
        assert!(check_values(&[1.0, 0.0, 0.0], 3, "v").is_ok());
        assert!(check_id("doc-1", "x").is_ok());
        assert!(check_id("", "x").is_err());
        assert!(check_id(&"a".repeat(129), "x").is_err());
        assert!(check_id("a/b", "x").is_err());
        assert!(check_ids(&[]).is_err());
        assert!(check_ids(&vec!["a".to_string(); MAX_IDS + 1]).is_err());
    }
}
