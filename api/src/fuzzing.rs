//! Entry points for the fuzz targets in `fuzz/` (not a stable API). Each runs a request body
//! through the same parsing and validation functions its route uses, up to the point where the
//! route would touch a node's state, and returns what the route would go on to act on.

use loci_raft::catalogue::{ApiKeyEntry, Distance, Grant, MemoryPolicy};
use loci_storage::model::{MemoryFilter, MemoryPatch, NewMemory, RecallParams};
use serde_json::Value;

use crate::error::ApiResult;
use crate::routes::keys::{self, KeyRequest};
use crate::routes::memory::{self, Target, target};
use crate::routes::{namespaces, sessions};
use crate::wire::parse_body;

/// The default content limit (`CoreConfig::default().max_content_bytes`).
pub const MAX_CONTENT_BYTES: usize = 100_000;

/// `POST /v1/memory/store`.
pub fn store(body: &[u8]) -> ApiResult<(Target, NewMemory)> {
    let mut item: memory::StoreItem = parse_body(body)?;
    let t = target(item.namespace.as_deref(), item.agent_id.as_deref())?;
    let agent = memory::agent_of(&t, item.agent_id.as_deref());
    item.extra.clear();
    let new = memory::new_memory(MAX_CONTENT_BYTES, item, &agent, None)?;
    Ok((t, new))
}

/// `POST /v1/memories/store/batch`.
pub fn store_batch(body: &[u8]) -> ApiResult<(Target, Vec<NewMemory>)> {
    let body: memory::BatchStoreBody = parse_body(body)?;
    let t = target(body.namespace.as_deref(), body.agent_id.as_deref())?;
    let (items, _warnings) = memory::batch_items(MAX_CONTENT_BYTES, &t, body)?;
    Ok((t, items))
}

/// `POST /v1/memory/recall` (`record_access`) or `POST /v1/memory/search`.
pub fn recall(body: &[u8], record_access: bool) -> ApiResult<(Target, RecallParams)> {
    let body: memory::RecallBody = parse_body(body)?;
    let prep = memory::prepare(body, 10, record_access)?;
    Ok((prep.target, prep.params))
}

/// `PUT /v1/memory/update/{id}` (no query string).
pub fn update(id: &str, body: &[u8]) -> ApiResult<(Target, MemoryPatch)> {
    loci_service::validate::memory_id(id)?;
    let body: memory::UpdateBody = parse_body(body)?;
    let t = target(body.namespace.as_deref(), body.agent_id.as_deref())?;
    Ok((t, memory::update_patch(MAX_CONTENT_BYTES, body)?))
}

/// `POST /v1/memory/importance`.
pub fn importance(body: &[u8]) -> ApiResult<(Target, f64, Vec<String>)> {
    let body: memory::ImportanceBody = parse_body(body)?;
    let t = target(body.namespace.as_deref(), body.agent_id.as_deref())?;
    let (importance, ids) = memory::importance_ids(body)?;
    Ok((t, importance, ids))
}

/// `POST /v1/memory/forget`.
pub fn forget(body: &[u8]) -> ApiResult<(Target, MemoryFilter)> {
    let body: memory::ForgetBody = parse_body(body)?;
    let t = target(body.namespace.as_deref(), body.agent_id.as_deref())?;
    Ok((t, memory::forget_body_filter(body)?))
}

/// `DELETE /v1/memories/forget/batch`.
pub fn forget_batch(body: &[u8]) -> ApiResult<(Target, MemoryFilter)> {
    let body: memory::BatchForgetBody = parse_body(body)?;
    let t = target(body.namespace.as_deref(), body.agent_id.as_deref())?;
    Ok((t, body.filter.into_filter()?))
}

/// `POST /v1/memories/recall/batch` (the filter; the limit is checked by the route).
pub fn recall_batch(body: &[u8]) -> ApiResult<(Target, MemoryFilter)> {
    let body: memory::BatchRecallBody = parse_body(body)?;
    let t = target(body.namespace.as_deref(), body.agent_id.as_deref())?;
    Ok((t, body.filter.into_filter()?))
}

/// `POST /v1/namespaces`: the name and what the body asks for.
pub fn namespace_create(body: &[u8]) -> ApiResult<(String, Distance, Option<String>, Option<usize>)> {
    let body: namespaces::CreateBody = parse_body(body)?;
    let name = body.name.clone().ok_or_else(|| crate::ApiError::bad_request("name is required"))?;
    let name = loci_service::canonical_namespace(&name).to_string();
    loci_service::validate::namespace_name(&name)?;
    let spec = namespaces::create_spec(body, name.clone())?;
    Ok((name, spec.distance, spec.provider, spec.dimension))
}

/// `PUT /v1/namespaces/{ns}/memory_policy` over `current`.
pub fn namespace_policy(current: &MemoryPolicy, body: &[u8]) -> ApiResult<MemoryPolicy> {
    let body: Value = parse_body(body)?;
    namespaces::merge_policy(current, body)
}

/// `POST /v1/sessions/start`: the target, metadata and client-chosen id.
pub fn session_start(body: &[u8]) -> ApiResult<(Target, Option<Value>, Option<String>)> {
    let body: sessions::StartBody = parse_body(body)?;
    let t = target(body.namespace.as_deref(), body.agent_id.as_deref())?;
    let (metadata, id) = sessions::start_fields(body)?;
    Ok((t, metadata, id))
}

/// The three key-minting routes: `POST /admin/keys` (`route` 0), `POST /v1/api-keys` (1) and
/// `POST /v1/namespaces/{ns}/keys` (2, with `ns` checked as the route does).
pub fn key_create(route: u8, ns: &str, body: &[u8]) -> ApiResult<KeyRequest> {
    let body: Value = parse_body(body)?;
    match route % 3 {
        0 => keys::create_request(body),
        1 => keys::api_keys_request(body),
        _ => {
            let ns = loci_service::canonical_namespace(ns);
            loci_service::validate::namespace_ref(ns)?;
            keys::ns_key_request(ns, body)
        }
    }
}

/// `PATCH /admin/keys/{id}` against the key `old`: the grants it would store (`None` =
/// unchanged, `Some(None)` = every namespace).
pub fn key_update(old: &ApiKeyEntry, body: &[u8]) -> ApiResult<Option<Option<Vec<Grant>>>> {
    let body: Value = parse_body(body)?;
    let u = keys::update_body(body)?;
    Ok(loci_service::keys::updated_grants(old, &u)?)
}
