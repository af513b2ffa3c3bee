//! Namespace calls as both fronts make them (`core.ns()`): creating (by a writer or an
//! administrator), listing, reading, erasing, the memory policy and re-embedding. Each call takes
//! the authenticated [`Principal`] and a typed request and answers a typed result or a
//! [`ServiceError`]; the fronts parse their wire shapes into the requests and render the results.

use loci_raft::quota::Ceiling;
use std::sync::Arc;
use std::time::Duration;

use loci_raft::catalogue::{Distance, MemoryPolicy, NamespaceEntry, NamespaceKind, ReembedJob, Scope};
use loci_storage::model::{DataOp, DataResult, NamespaceStats};
use serde_json::{Map, Value};

use crate::access::Principal;
use crate::core::{Core, DeletionReceipt, NamespaceSpec, canonical_namespace};
use crate::error::{ServiceError, ServiceResult};
use crate::validate;

pub const MAX_DIMENSION: usize = 4096;
pub const MAX_DESCRIPTION_BYTES: usize = 1024;

/// An embedder asked for by name, with its dimension if given.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EmbeddingChoice {
    pub provider: String,
    pub dimension: Option<i64>,
}

/// `POST /v1/namespaces`, `PUT /v1/namespaces/{ns}`: what to create (or find as it is).
#[derive(Clone, Debug, Default)]
pub struct CreateRequest {
    /// The canonical name (the fronts strip the agent prefix).
    pub name: String,
    pub dimension: Option<i64>,
    pub distance: Option<String>,
    pub index_type: Option<String>,
    /// Free JSON, stored and returned.
    pub metadata: Option<Value>,
    pub embedding: Option<EmbeddingChoice>,
    pub description: Option<String>,
}

/// The `config` of an administrator's create (`POST /admin/namespaces`).
#[derive(Clone, Debug, Default)]
pub struct AdminConfig {
    pub vector_index: Option<String>,
    pub encryption: Option<bool>,
    pub distance: Option<String>,
    pub dimension: Option<i64>,
}

/// What a create request asks for, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct CreateSpec {
    pub distance: Distance,
    pub provider: Option<String>,
    pub dimension: Option<usize>,
}

/// A namespace created (`created`) or found as asked.
#[derive(Clone, Debug)]
pub struct Created {
    pub entry: NamespaceEntry,
    pub created: bool,
}

/// `GET /v1/admin/namespaces`: the statistics of each namespace the key can see, and those
/// whose primary did not answer (with the reason).
#[derive(Clone, Debug, Default)]
pub struct AdminListing {
    pub namespaces: Vec<(NamespaceEntry, NamespaceStats)>,
    pub unavailable: Vec<(String, String)>,
}

fn parse_distance(d: Option<&str>) -> ServiceResult<Distance> {
    match d {
        None => Ok(Distance::Cosine),
        Some(s) => Distance::parse(s).ok_or_else(|| {
            ServiceError::bad_request(format!(
                "unknown distance '{}': cosine, euclidean or dot_product",
                validate::printable(s)
            ))
        }),
    }
}

fn check_description(d: &Option<String>) -> ServiceResult<()> {
    if let Some(d) = d
        && (d.len() > MAX_DESCRIPTION_BYTES || d.chars().any(|c| c.is_control() && c != '\n' && c != '\t'))
    {
        return Err(ServiceError::bad_request(format!(
            "description must be at most {MAX_DESCRIPTION_BYTES} bytes without control characters"
        )));
    }
    Ok(())
}

/// A dimension as asked for: required, 1 to [`MAX_DIMENSION`].
pub fn check_dimension(d: Option<i64>) -> ServiceResult<usize> {
    match d {
        None => Err(ServiceError::unprocessable("dimension is required")),
        Some(d) if d >= 1 && d as usize <= MAX_DIMENSION => Ok(d as usize),
        Some(d) => Err(ServiceError::bad_request(format!("dimension must be between 1 and {MAX_DIMENSION}, got {d}"))),
    }
}

/// What a create request asks for, validated: distance, embedding provider, dimension.
pub fn create_spec(req: &CreateRequest) -> ServiceResult<CreateSpec> {
    if let Some(it) = req.index_type.as_deref()
        && !matches!(it, "hnsw" | "flat")
    {
        return Err(ServiceError::bad_request(format!(
            "unsupported index_type '{}': Loci offers hnsw",
            validate::printable(it)
        )));
    }
    let distance = parse_distance(req.distance.as_deref())?;
    let (provider, dimension) = match &req.embedding {
        Some(spec) => {
            let d = match (spec.dimension, req.dimension) {
                (Some(a), Some(b)) if a != b => {
                    return Err(ServiceError::bad_request("embedding.dimension and dimension disagree"));
                }
                (None, None) => None,
                (a, b) => Some(check_dimension(a.or(b))?),
            };
            (Some(spec.provider.clone()), d)
        }
        // Without a dimension: the node's default embedder at its dimension.
        None => (None, req.dimension.map(|d| check_dimension(Some(d))).transpose()?),
    };
    if let Some(m) = &req.metadata {
        validate::namespace_metadata(m)?;
    }
    check_description(&req.description)?;
    Ok(CreateSpec { distance, provider, dimension })
}

/// An administrator's `config` folded into the request. Every namespace is encrypted at rest
/// with its own key, so `encryption: false` cannot be honoured and is refused, not ignored.
pub fn apply_admin_config(req: &mut CreateRequest, c: AdminConfig) -> ServiceResult<()> {
    if let Some(vi) = c.vector_index {
        if !matches!(vi.as_str(), "hnsw" | "flat") {
            return Err(ServiceError::bad_request(format!(
                "unsupported vector_index '{}': hnsw or flat",
                validate::printable(&vi)
            )));
        }
        req.index_type.get_or_insert(vi);
    }
    if c.encryption == Some(false) {
        return Err(ServiceError::bad_request(
            "encryption cannot be turned off: every Loci namespace is encrypted at rest (AES-256-GCM, its own data key)",
        ));
    }
    if let Some(d) = c.distance {
        if req.distance.as_deref().is_some_and(|b| b != d) {
            return Err(ServiceError::bad_request("config.distance and distance disagree"));
        }
        req.distance = Some(d);
    }
    if let Some(d) = c.dimension {
        if req.dimension.is_some_and(|b| b != d) {
            return Err(ServiceError::bad_request("config.dimension and dimension disagree"));
        }
        req.dimension = Some(d);
    }
    Ok(())
}

/// A policy patch (the fields a body names, by their JSON names) merged over the stored policy,
/// validated. The multi-tenant settings' names (docs/multi-tenancy.md) name Loci's fields;
/// `consolidated_count` is read-only and ignored.
pub fn merge_policy(current: &MemoryPolicy, fields: Map<String, Value>) -> ServiceResult<MemoryPolicy> {
    // Start from the stored policy so a partial body changes only what it names.
    let mut merged = serde_json::to_value(current).map_err(|e| ServiceError::internal(e.to_string()))?;
    let known: Vec<String> = match &merged {
        Value::Object(m) => m.keys().cloned().collect(),
        _ => Vec::new(),
    };
    for (k, v) in fields {
        if k == "consolidated_count" {
            continue;
        }
        let k = match k.as_str() {
            "max_users" => "max_agents".to_string(),
            "max_conversations_per_user" => "max_sessions_per_agent".to_string(),
            _ => k,
        };
        if !known.contains(&k) {
            return Err(ServiceError::bad_request(format!(
                "unknown memory policy field '{}'",
                validate::printable(&k)
            )));
        }
        merged[k] = v;
    }
    let policy: MemoryPolicy =
        serde_json::from_value(merged).map_err(|e| ServiceError::bad_request(format!("invalid memory policy: {e}")))?;
    check_policy(&policy)?;
    Ok(policy)
}

/// The rules every stored policy keeps.
pub fn check_policy(policy: &MemoryPolicy) -> ServiceResult<()> {
    if !matches!(policy.content_screening.as_str(), "off" | "flag" | "block") {
        return Err(ServiceError::bad_request("content_screening must be off, flag or block"));
    }
    // Every string of a policy is a short name; the policy is a catalogue entry on every node.
    if let Value::Object(m) = serde_json::to_value(policy).map_err(|e| ServiceError::internal(e.to_string()))? {
        for (k, v) in m {
            if v.as_str().is_some_and(|s| s.len() > validate::MAX_POLICY_STRING_BYTES) {
                return Err(ServiceError::bad_request(format!(
                    "{k} must be at most {} bytes",
                    validate::MAX_POLICY_STRING_BYTES
                )));
            }
        }
    }
    if let Some(t) = policy.graph_link_threshold {
        if !(t.is_finite() && t > 0.0 && t <= 1.0) {
            return Err(ServiceError::bad_request(
                "graph_link_threshold must be above 0 and at most 1 (null: no similarity links)",
            ));
        }
    }
    if policy.graph_max_links > 20 {
        return Err(ServiceError::bad_request("graph_max_links must be at most 20"));
    }
    crate::graph::check_entity_types(&policy.entity_types)?;
    if let Some(why) = policy.decay.as_ref().and_then(|d| d.invalid()) {
        return Err(ServiceError::bad_request(format!("decay: {why}")));
    }
    if let Some(why) = policy.autopilot.as_ref().and_then(|a| a.invalid()) {
        return Err(ServiceError::bad_request(format!("autopilot: {why}")));
    }
    for (name, v) in [
        ("max_memories", policy.max_memories),
        ("max_agents", policy.max_agents),
        ("max_sessions_per_agent", policy.max_sessions_per_agent),
        ("retention_days", policy.retention_days),
        ("retention_seconds", policy.retention_seconds),
        ("write_quorum", policy.write_quorum.map(|q| q as u64)),
    ] {
        if v == Some(0) {
            return Err(ServiceError::bad_request(format!("{name} must be at least 1 (omit it for no limit)")));
        }
    }
    Ok(())
}

/// Refuse a policy change that raises a limit above the operator's ceiling (a value left as it
/// was is not refused, so a lowered ceiling does not block the tenant's other changes).
pub fn within_ceiling(old: &MemoryPolicy, new: &MemoryPolicy, ceiling: &Ceiling) -> ServiceResult<()> {
    let rate = |p: &MemoryPolicy, v: Option<u64>| v.filter(|_| p.rate_limit_enabled);
    for (name, before, after, max) in [
        ("max_memories", old.max_memories, new.max_memories, ceiling.max_memories),
        ("max_agents", old.max_agents, new.max_agents, ceiling.max_agents),
        (
            "max_sessions_per_agent",
            old.max_sessions_per_agent,
            new.max_sessions_per_agent,
            ceiling.max_sessions_per_agent,
        ),
        (
            "rate_limit_stores_per_minute",
            rate(old, old.rate_limit_stores_per_minute),
            rate(new, new.rate_limit_stores_per_minute),
            ceiling.max_stores_per_minute,
        ),
        (
            "rate_limit_recalls_per_minute",
            rate(old, old.rate_limit_recalls_per_minute),
            rate(new, new.rate_limit_recalls_per_minute),
            ceiling.max_recalls_per_minute,
        ),
    ] {
        if let (Some(v), Some(max)) = (after, max)
            && v > max
            && after != before
        {
            return Err(ServiceError::quota_exceeded(format!(
                "{name} of {v} is above the operator's ceiling of {max} for this namespace; nothing was changed"
            )));
        }
    }
    Ok(())
}

/// The namespace calls of a node's service (borrowed from [`Core::ns`]).
#[derive(Clone, Copy)]
pub struct Namespaces<'a> {
    core: &'a Arc<Core>,
}

impl Core {
    /// Namespace calls (see [`Namespaces`]).
    pub fn ns(self: &Arc<Self>) -> Namespaces<'_> {
        Namespaces { core: self }
    }
}

impl<'a> Namespaces<'a> {
    /// The namespaces the key can see.
    pub fn list(&self, p: &Principal) -> Vec<NamespaceEntry> {
        self.core.namespaces().into_iter().filter(|e| p.can_see(&e.name)).collect()
    }

    /// A namespace the key holds `need` on. Authorisation first: a key without access learns
    /// nothing about existence; a malformed name is not found.
    pub fn visible(&self, p: &Principal, ns: &str, need: Scope) -> ServiceResult<NamespaceEntry> {
        let name = canonical_namespace(ns);
        validate::namespace_ref(name).map_err(|_| ServiceError::namespace_not_found(&validate::printable(name)))?;
        p.require(name, need)?;
        self.core.namespace(name).ok_or_else(|| ServiceError::namespace_not_found(name))
    }

    /// A name the key may create at `need`: valid, and the key holds the scope on it.
    pub fn admit(&self, p: &Principal, name: &str, need: Scope) -> ServiceResult<()> {
        validate::namespace_name(name)?;
        p.require(name, need)
    }

    /// Create a data namespace, or find it as asked: an existing namespace of another distance,
    /// embedder or dimension than the request names is a conflict (changing them is a re-embed).
    pub async fn create(&self, p: &Principal, req: CreateRequest) -> ServiceResult<Created> {
        let name = req.name.clone();
        self.admit(p, &name, Scope::Write)?;
        let spec = create_spec(&req)?;
        let (entry, created) = self
            .core
            .create_namespace(NamespaceSpec {
                name: name.clone(),
                kind: NamespaceKind::Data,
                dimension: spec.dimension,
                distance: spec.distance,
                embedder: spec.provider.clone(),
                metadata: req.metadata,
                description: req.description,
            })
            .await?;
        if created {
            return Ok(Created { entry, created });
        }
        if req.distance.is_some() && entry.distance != spec.distance {
            return Err(ServiceError::conflict(format!(
                "namespace '{name}' exists with distance {}; the distance of a namespace cannot change",
                entry.distance.as_str()
            )));
        }
        if let Some(provider) = spec.provider.as_deref() {
            // A malformed spec is a 400 whether or not the namespace exists.
            let wanted = self.core.embedder_spec(Some(provider), spec.dimension)?;
            if wanted.provider != entry.embedder.provider {
                return Err(ServiceError::conflict(format!(
                    "namespace '{name}' embeds with {}; to switch, re-embed it: POST /v1/namespaces/{name}/reembed",
                    entry.embedder.provider
                )));
            }
        }
        if spec.dimension.is_some_and(|d| d != entry.dimension) {
            return Err(ServiceError::conflict(format!(
                "namespace '{name}' exists with dimension {}; to change it, re-embed: POST /v1/namespaces/{name}/reembed",
                entry.dimension
            )));
        }
        Ok(Created { entry, created })
    }

    /// An administrator's create: `admin` on the name (checked first, see [`Self::admit`], which
    /// the fronts call before parsing the config), the config folded in, then [`Self::create`].
    pub async fn admin_create(
        &self,
        p: &Principal,
        mut req: CreateRequest,
        config: Option<AdminConfig>,
    ) -> ServiceResult<Created> {
        self.admit(p, &req.name, Scope::Admin)?;
        if let Some(c) = config {
            apply_admin_config(&mut req, c)?;
        }
        self.create(p, req).await
    }

    /// A namespace (read scope) with its statistics as its primary reports them.
    pub async fn get(&self, p: &Principal, ns: &str) -> ServiceResult<(NamespaceEntry, NamespaceStats)> {
        let entry = self.visible(p, ns, Scope::Read)?;
        let stats = match self.core.exec(&entry, DataOp::Stats).await? {
            DataResult::Stats(s) => s,
            _ => NamespaceStats::default(),
        };
        Ok((entry, stats))
    }

    /// GDPR erasure (admin scope): the deletion receipt.
    pub async fn delete(&self, p: &Principal, ns: &str) -> ServiceResult<DeletionReceipt> {
        let entry = self.visible(p, ns, Scope::Admin)?;
        self.core.delete_namespace(&entry.name).await
    }

    /// The stored memory policy (read scope).
    pub fn policy(&self, p: &Principal, ns: &str) -> ServiceResult<MemoryPolicy> {
        Ok(self.visible(p, ns, Scope::Read)?.policy)
    }

    /// The node's entity extractor and the namespace's extractions still queued on this node
    /// (read scope).
    pub fn extraction(&self, p: &Principal, ns: &str) -> ServiceResult<(String, u64)> {
        let entry = self.visible(p, ns, Scope::Read)?;
        let store = &self.core.store;
        Ok((store.extractor().name().to_string(), store.pending_extractions(entry.id)))
    }

    /// Merge `fields` over the stored policy (admin scope) and store it; the policy now in force.
    /// `webhook_url` (seed 003) creates a webhook on the namespace, replacing the one an
    /// earlier `webhook_url` created (`null` or `""` removes it); its signing secret is answered
    /// once, as the second value.
    pub async fn set_policy(
        &self,
        p: &Principal,
        ns: &str,
        mut fields: Map<String, Value>,
    ) -> ServiceResult<(MemoryPolicy, Option<String>)> {
        let entry = self.visible(p, ns, Scope::Admin)?;
        if fields.remove("webhook_id").is_some() {
            return Err(ServiceError::bad_request("webhook_id is set by the node; set webhook_url"));
        }
        let hook = match fields.remove("webhook_url") {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::String(u)) if u.is_empty() => Some(None),
            Some(Value::String(u)) => Some(Some(u)),
            Some(_) => return Err(ServiceError::bad_request("webhook_url must be a URL string or null")),
        };
        let mut policy = merge_policy(&entry.policy, fields)?;
        // A tenant's admins set preferences within the operator's ceiling; the operator (a
        // global admin) may store any value, and the ceiling still applies to it.
        if p.require_global(Scope::Admin).is_err() {
            within_ceiling(&entry.policy, &policy, &entry.ceiling)?;
        }
        let mut secret = None;
        let old_hook = entry.policy.webhook_id.clone();
        match hook {
            Some(Some(url)) if entry.policy.webhook_url.as_deref() != Some(url.as_str()) => {
                let spec = crate::webhooks::WebhookSpec {
                    url,
                    pattern: entry.name.clone(),
                    events: Vec::new(),
                    description: Some("the namespace policy's webhook_url".into()),
                };
                let (view, s) = self.core.webhooks().create(p, spec).await?;
                policy.webhook_url = Some(view.url.clone());
                policy.webhook_id = Some(view.id);
                secret = Some(s);
            }
            Some(None) => {
                policy.webhook_url = None;
                policy.webhook_id = None;
            }
            _ => {}
        }
        let stored = self.core.set_policy(&entry.name, policy).await?.policy;
        // The webhook the previous webhook_url created goes once the policy no longer names it.
        if let Some(old) = old_hook.filter(|old| stored.webhook_id.as_ref() != Some(old)) {
            match self.core.webhooks().delete(p, &old).await {
                Ok(_) => {}
                Err(e) if e.status == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok((stored, secret))
    }

    /// Set a namespace's entity extraction (write scope, like the clients' `PUT
    /// /v1/namespaces/{ns}/config`): on or off, and which types (wire names, checked).
    pub async fn set_entity_settings(
        &self,
        p: &Principal,
        ns: &str,
        extract: Option<bool>,
        types: Option<Vec<String>>,
    ) -> ServiceResult<MemoryPolicy> {
        let entry = self.visible(p, ns, Scope::Write)?;
        let mut policy = entry.policy.clone();
        if let Some(e) = extract {
            policy.extract_entities = e;
        }
        if let Some(t) = types {
            policy.entity_types = crate::graph::check_entity_types(&t)?;
        }
        check_policy(&policy)?;
        Ok(self.core.set_policy(&entry.name, policy).await?.policy)
    }

    /// Start re-embedding a namespace (admin scope) with another embedder; the job as recorded.
    pub async fn start_reembed(
        &self,
        p: &Principal,
        ns: &str,
        provider: Option<String>,
        dimension: Option<i64>,
    ) -> ServiceResult<ReembedJob> {
        let entry = self.visible(p, ns, Scope::Admin)?;
        let provider = provider.ok_or_else(|| ServiceError::bad_request("embedding.provider is required"))?;
        let dimension = dimension.map(|d| check_dimension(Some(d))).transpose()?;
        let target = self.core.embedder_spec(Some(&provider), dimension)?;
        self.core.start_reembed(entry, target).await
    }

    /// Every namespace the key can see (global admin scope), with statistics asked of each
    /// namespace's primary; those that do not answer within 2 s are listed as unavailable.
    pub async fn admin_list(&self, p: &Principal) -> ServiceResult<AdminListing> {
        p.require_global(Scope::Admin)?;
        let mut out = AdminListing::default();
        for e in self.list(p) {
            match tokio::time::timeout(Duration::from_secs(2), self.core.exec(&e, DataOp::Stats)).await {
                Ok(Ok(DataResult::Stats(s))) => out.namespaces.push((e, s)),
                Ok(Err(err)) => out.unavailable.push((e.name, err.message)),
                _ => out.unavailable.push((e.name, "no answer within 2 s".to_string())),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> CreateRequest {
        CreateRequest { name: "docs".into(), ..Default::default() }
    }

    #[test]
    fn create_spec_checks_dimensions_and_their_agreement() {
        assert_eq!(
            create_spec(&req()).unwrap(),
            CreateSpec { distance: Distance::Cosine, provider: None, dimension: None }
        );
        let r = CreateRequest { dimension: Some(MAX_DIMENSION as i64 + 1), ..req() };
        assert_eq!(create_spec(&r).unwrap_err().status, 400);
        let r = CreateRequest { dimension: Some(0), ..req() };
        assert!(create_spec(&r).unwrap_err().message.contains("between 1 and 4096"));
        let emb = |d| Some(EmbeddingChoice { provider: "hash".into(), dimension: d });
        let r = CreateRequest { dimension: Some(8), embedding: emb(Some(16)), ..req() };
        assert_eq!(create_spec(&r).unwrap_err().message, "embedding.dimension and dimension disagree");
        let r = CreateRequest { dimension: Some(16), embedding: emb(None), ..req() };
        assert_eq!(create_spec(&r).unwrap().dimension, Some(16));
        let r = CreateRequest { index_type: Some("ivf".into()), ..req() };
        assert!(create_spec(&r).unwrap_err().message.contains("unsupported index_type"));
        let r = CreateRequest { distance: Some("manhattan".into()), ..req() };
        assert!(create_spec(&r).unwrap_err().message.contains("unknown distance"));
        let r = CreateRequest { description: Some("a\u{7}b".into()), ..req() };
        assert!(create_spec(&r).is_err(), "control characters in a description are refused");
        let r = CreateRequest { description: Some("line\nnext\ttab".into()), ..req() };
        assert!(create_spec(&r).is_ok(), "newlines and tabs are allowed");
    }

    #[test]
    fn admin_config_refuses_unencrypted_and_disagreeing_fields() {
        let mut r = req();
        let e = apply_admin_config(&mut r, AdminConfig { encryption: Some(false), ..Default::default() }).unwrap_err();
        assert!(e.message.starts_with("encryption cannot be turned off"));
        let mut r = CreateRequest { distance: Some("cosine".into()), ..req() };
        let c = AdminConfig { distance: Some("dot_product".into()), ..Default::default() };
        assert_eq!(apply_admin_config(&mut r, c).unwrap_err().message, "config.distance and distance disagree");
        let mut r = req();
        let c = AdminConfig { dimension: Some(8), vector_index: Some("flat".into()), ..Default::default() };
        apply_admin_config(&mut r, c).unwrap();
        assert_eq!((r.dimension, r.index_type.as_deref()), (Some(8), Some("flat")));
        let mut r = req();
        let c = AdminConfig { vector_index: Some("ivf".into()), ..Default::default() };
        assert!(apply_admin_config(&mut r, c).is_err());
    }

    fn fields(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn merge_policy_changes_only_what_it_names_and_keeps_the_rules() {
        let current = MemoryPolicy::default();
        let p = merge_policy(&current, fields(serde_json::json!({"max_users": 3}))).unwrap();
        assert_eq!(p.max_agents, Some(3), "the multi-tenant name maps to Loci's field");
        assert_eq!(p.content_screening, current.content_screening, "fields not named are kept");
        let e = merge_policy(&current, fields(serde_json::json!({"nonsense": 1}))).unwrap_err();
        assert_eq!(e.message, "unknown memory policy field 'nonsense'");
        let e = merge_policy(&current, fields(serde_json::json!({"max_memories": 0}))).unwrap_err();
        assert_eq!(e.message, "max_memories must be at least 1 (omit it for no limit)");
        let e = merge_policy(&current, fields(serde_json::json!({"content_screening": "loud"}))).unwrap_err();
        assert_eq!(e.message, "content_screening must be off, flag or block");
        assert!(merge_policy(&current, fields(serde_json::json!({"consolidated_count": 9}))).is_ok());
    }
}
