//! `GET /v1/audit` over the cluster: every member's records, read where they were written and
//! merged newest first. A member that cannot answer is named in the page, never silently left
//! out, so a page that claims to be complete is.

use std::sync::Arc;
use std::time::Duration;

use loci_raft::catalogue::Scope;
use serde_json::Value;

use super::query::{AuditFilter, Cursor, MAX_EXPORT_LIMIT, Part, Visibility, merge};
use crate::access::Principal;
use crate::core::Core;
use crate::error::{ServiceError, ServiceResult};

/// How long a member has to answer.
pub const MEMBER_TIMEOUT: Duration = Duration::from_secs(5);

/// One page of the cluster's audit records.
#[derive(Debug, Default)]
pub struct AuditPage {
    /// The records, newest first (as written).
    pub records: Vec<Value>,
    /// Where the next page starts, when there may be one.
    pub next_cursor: Option<Cursor>,
    /// Members whose records are in the page (those that write an audit file).
    pub answered: Vec<u64>,
    /// Members that write no readable audit file (disabled, or to stdout).
    pub without_file: Vec<u64>,
    /// Members that did not answer, and why: their records are missing from this page.
    pub unavailable: Vec<(u64, String)>,
}

/// The audit-reading calls of a node's service (borrowed from [`Core::audit_log`]).
#[derive(Clone, Copy)]
pub struct AuditReads<'a> {
    core: &'a Arc<Core>,
}

impl Core {
    /// Audit-reading calls (see [`AuditReads`]).
    pub fn audit_log(self: &Arc<Self>) -> AuditReads<'_> {
        AuditReads { core: self }
    }
}

enum Answer {
    Part(Part),
    NoFile,
    Failed(String),
}

impl AuditReads<'_> {
    /// The records matching `filter` that `p` may see, newest first, at most `limit`.
    /// A global admin sees every record; a key with `admin` on some patterns the request records
    /// wholly inside them ([`Visibility`]); others are refused.
    pub async fn list(&self, p: &Principal, filter: AuditFilter, limit: usize) -> ServiceResult<AuditPage> {
        let vis = Visibility::of(p)?;
        if let Some(ns) = &filter.namespace
            && vis != Visibility::All
        {
            p.require(ns, Scope::Admin)?;
        }
        filter.check()?;
        let limit = limit.clamp(1, MAX_EXPORT_LIMIT);
        let cluster = &self.core.cluster;
        let members = cluster.members();
        let nodes: Vec<u64> = match filter.node {
            Some(n) if members.contains(&n) => vec![n],
            Some(_) => return Err(ServiceError::not_found("node", "no member has this node id")),
            None => members.into_iter().collect(),
        };
        let req = crate::cluster::wire::pb::AuditQueryRequest::from((&filter, &vis, limit));
        let asks = nodes.iter().map(|&n| {
            let (filter, vis, req) = (filter.clone(), vis.clone(), req.clone());
            async move {
                let answer = if n == cluster.node_id {
                    let audit = self.core.audit.clone();
                    match tokio::task::spawn_blocking(move || audit.read(&filter, &vis, limit)).await {
                        Ok(Ok(Some(r))) => Answer::Part(Part {
                            records: r.records,
                            stopped_at: r.oldest_scanned.filter(|_| r.truncated),
                        }),
                        Ok(Ok(None)) => Answer::NoFile,
                        Ok(Err(e)) => Answer::Failed(format!("reading the audit log: {e}")),
                        Err(e) => Answer::Failed(e.to_string()),
                    }
                } else if !cluster.is_alive(n) {
                    Answer::Failed("not alive".into())
                } else {
                    match cluster.audit_on(n, req, MEMBER_TIMEOUT).await {
                        Ok(Some(part)) => Answer::Part(part),
                        Ok(None) => Answer::NoFile,
                        Err(e) => Answer::Failed(e.to_string()),
                    }
                };
                (n, answer)
            }
        });
        let answers = futures::future::join_all(asks).await;
        let mut page = AuditPage::default();
        let mut parts = Vec::new();
        let mut stopped: Option<Cursor> = None;
        for (n, a) in answers {
            match a {
                Answer::Part(part) => {
                    stopped = stopped.max(part.stopped_at);
                    page.answered.push(n);
                    parts.push(part);
                }
                Answer::NoFile => page.without_file.push(n),
                Answer::Failed(why) => page.unavailable.push((n, why)),
            }
        }
        if page.answered.is_empty() && page.unavailable.is_empty() {
            return Err(ServiceError::new(
                crate::error::StatusCode::CONFLICT,
                "AUDIT_LOG_UNAVAILABLE",
                "no node writes an audit file to read (LOCI_AUDIT_ENABLED with LOCI_AUDIT_FILE)",
            ));
        }
        page.records = merge(parts, limit);
        if let Visibility::Within(patterns) = &vis {
            let own = self.own_keys(p, patterns);
            for r in &mut page.records {
                redact_foreign_caller(r, &own);
            }
        }
        if page.records.len() == limit || stopped.is_some() {
            // A page cut short by a scan budget with nothing in it goes on below where the
            // scans stopped.
            page.next_cursor = page.records.last().and_then(Cursor::of).or(stopped);
        }
        Ok(page)
    }
}

impl AuditReads<'_> {
    /// The keys a tenant admin answers for: itself, and every key whose grants all fall inside
    /// its admin patterns (those it could have minted and may manage).
    pub fn own_keys(&self, p: &Principal, patterns: &[String]) -> std::collections::HashSet<String> {
        let cat = self.core.catalogue.view.read();
        let mut own: std::collections::HashSet<String> = cat
            .keys
            .values()
            .filter(|k| {
                k.grants.as_ref().is_some_and(|g| {
                    !g.is_empty()
                        && g.iter()
                            .all(|g| patterns.iter().any(|pat| loci_raft::catalogue::pattern_contains(pat, &g.pattern)))
                })
            })
            .map(|k| k.key_id.clone())
            .collect();
        own.insert(p.key_id.clone());
        own
    }
}

/// In a tenant admin's view, a request made with another tenant's or the operator's key (an
/// attempt on one of the tenant's namespaces) keeps what happened but not who: the key's id,
/// name and scope, the caller's address and user agent become null, and `foreign_key` is set.
pub fn redact_foreign_caller(rec: &mut Value, own: &std::collections::HashSet<String>) {
    let key = rec["key_id"].as_str().map(str::to_string);
    if key.as_ref().is_some_and(|k| own.contains(k)) {
        return;
    }
    for field in ["key_id", "key_name", "key_scope", "ip", "user_agent"] {
        if rec.get(field).is_some() {
            rec[field] = Value::Null;
        }
    }
    rec["foreign_key"] = Value::Bool(key.is_some());
}
