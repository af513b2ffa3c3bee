//! Managing keys: who may look at or change which key ([`may_manage`], [`manages_back`]), what an
//! update may change ([`updated_grants`], [`narrows`]), and the calls that list, read, update,
//! revoke and report on keys, globally and inside one namespace.

use crate::cluster::Reach;
use loci_raft::catalogue::{ApiKeyEntry, Command, CommandResult, Grant, Scope};
use loci_storage::model::now_secs;
use serde_json::json;

use super::Keys;
use super::mint::grants_from_namespaces;
use crate::access::{Grants, Principal, ROOT_KEY_ID, pattern_contains, pattern_matches};
use crate::core::canonical_namespace;
use crate::error::{ServiceError, ServiceResult, StatusCode};
use crate::usage::{Usage, UsageReport};
use crate::validate;

/// What a caller asks to do with a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read it (get, usage): a key may always look at itself.
    Look,
    /// Rotate, deactivate, delete, rename or re-scope it.
    Change,
}

fn key_not_found(key_id: &str) -> ServiceError {
    ServiceError::not_found("api_key", format!("API key {} not found", validate::printable(key_id)))
}

/// Who manages whom. A key may look at itself ([`Access::Look`]). It changes (rotates,
/// deactivates, deletes, renames, re-scopes) only keys strictly below it: never itself, and never
/// a key that could in turn manage it (the same or a wider reach, e.g. a sibling tenant admin of
/// the same prefix). So a leaked tenant-admin key cannot rotate itself away with zero grace nor
/// revoke its siblings: the owner, holding a wider key (or the root key), stays in control. A
/// global `super_admin` key is the operator's ("key management", seed 002) and manages every
/// other key but itself; the root key, which no key can change, is above it.
///
/// A key `p` could not have minted is reported as not found (404: existence is not revealed); a
/// peer or wider key `p` may see but not change is 403 `INSUFFICIENT_SCOPE`.
pub fn may_manage(p: &Principal, k: &ApiKeyEntry, access: Access) -> ServiceResult<()> {
    if access == Access::Look && p.key_id == k.key_id {
        return Ok(());
    }
    p.can_delegate(k.scope, &k.grants).map_err(|_| key_not_found(&k.key_id))?;
    if access == Access::Change && !p.is_root && manages_back(k, p) {
        return Err(ServiceError::new(
            StatusCode::FORBIDDEN,
            "INSUFFICIENT_SCOPE",
            "a key cannot change itself or a key with the same or a wider reach; a wider key (or the root key) can",
        ));
    }
    Ok(())
}

/// Could key `k` manage a key with `p`'s scope and grants (is `k` at least `p`'s peer)?
pub fn manages_back(k: &ApiKeyEntry, p: &Principal) -> bool {
    let mine = match &p.grants {
        Grants::All(_) => None,
        Grants::List(list) => Some(list.clone()),
    };
    if k.key_id == p.key_id {
        return true;
    }
    let operator = matches!(p.grants, Grants::All(Scope::SuperAdmin));
    !operator && Principal::from_entry(k).can_delegate(p.scope, &mine).is_ok()
}

/// Every permission of `new` is already held by `old` (so an update never widens a key).
pub fn narrows(old: &Option<Vec<Grant>>, new: &Option<Vec<Grant>>) -> bool {
    match (old, new) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(o), Some(n)) => {
            n.iter().all(|g| o.iter().any(|og| og.scope >= g.scope && pattern_contains(&og.pattern, &g.pattern)))
        }
    }
}

/// A change to a key: a new name, new namespaces, or both.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeyUpdate {
    pub name: Option<String>,
    /// `None` = unchanged; `Some(None)` = every namespace; `Some(Some(list))` = exactly those.
    pub namespaces: Option<Option<Vec<String>>>,
}

/// An update checked against the key it changes: the new name is valid, and the new grants
/// (`None` = unchanged) keep each kept namespace's scope and never widen the key.
pub fn updated_grants(k: &ApiKeyEntry, u: &KeyUpdate) -> ServiceResult<Option<Option<Vec<Grant>>>> {
    if u.name.is_none() && u.namespaces.is_none() {
        return Err(ServiceError::bad_request("nothing to update: give name and/or namespaces"));
    }
    if let Some(n) = &u.name {
        validate::key_name(n)?;
    }
    Ok(match u.namespaces.clone() {
        None => None,
        Some(ns) => {
            let mut g = grants_from_namespaces(k.scope, ns)?;
            // Each kept namespace keeps the scope it had (keys from /v1/api-keys mix scopes).
            if let (Some(new), Some(old)) = (g.as_mut(), k.grants.as_ref()) {
                for grant in new.iter_mut() {
                    if let Some(s) =
                        old.iter().filter(|o| pattern_contains(&o.pattern, &grant.pattern)).map(|o| o.scope).max()
                    {
                        grant.scope = s;
                    }
                }
            }
            if !narrows(&k.grants, &g) {
                return Err(ServiceError::new(
                    StatusCode::FORBIDDEN,
                    "INSUFFICIENT_SCOPE",
                    "a key's permissions can only be narrowed in place; a wider role needs a new key",
                ));
            }
            Some(g)
        }
    })
}

/// Does the key hold a permission whose pattern covers namespace `ns`?
fn reaches(k: &ApiKeyEntry, ns: &str) -> bool {
    k.grants.as_ref().is_some_and(|g| g.iter().any(|g| pattern_matches(&g.pattern, ns)))
}

/// How a key is revoked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revocation {
    /// Soft: the key stays listed, inactive.
    Deactivate,
    /// The key and its digest are removed.
    Delete,
}

/// A revoked key.
#[derive(Clone, Debug, PartialEq)]
pub struct Revoked {
    pub key_id: String,
    pub how: Revocation,
}

impl Keys<'_> {
    /// The key `key_id`, if `p` may do `access` with it.
    pub(super) fn managed(&self, p: &Principal, key_id: &str, access: Access) -> ServiceResult<ApiKeyEntry> {
        let k = self.core.catalogue.view.read().keys.get(key_id).cloned().ok_or_else(|| key_not_found(key_id))?;
        may_manage(p, &k, access)?;
        Ok(k)
    }

    /// The keys `p` could have minted (catalogue order).
    fn manageable(&self, p: &Principal) -> Vec<ApiKeyEntry> {
        self.core
            .catalogue
            .view
            .read()
            .keys
            .values()
            .filter(|k| p.can_delegate(k.scope, &k.grants).is_ok())
            .cloned()
            .collect()
    }

    /// Every key `p` manages, oldest first. Needs `admin` somewhere.
    pub fn list(&self, p: &Principal) -> ServiceResult<Vec<ApiKeyEntry>> {
        if p.require_global(Scope::Admin).is_err()
            && !matches!(&p.grants, Grants::List(g) if g.iter().any(|g| g.scope >= Scope::Admin))
        {
            return Err(ServiceError::insufficient_scope("admin"));
        }
        let mut keys = self.manageable(p);
        keys.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.key_id.cmp(&b.key_id)));
        Ok(keys)
    }

    /// One key, if `p` is that key or manages it (else 404).
    pub fn get(&self, p: &Principal, key_id: &str) -> ServiceResult<ApiKeyEntry> {
        self.managed(p, key_id, Access::Look)
    }

    /// A key's usage counters on this node (`counters`, kept by the front that records
    /// requests), if `p` may look at the key.
    pub fn usage(&self, p: &Principal, key_id: &str, counters: &Usage) -> ServiceResult<UsageReport> {
        let k = self.managed(p, key_id, Access::Look)?;
        Ok(counters.report(&k.key_id))
    }

    /// Rename and/or narrow a key (audit event `key_updated`).
    pub async fn update(&self, p: &Principal, key_id: &str, u: KeyUpdate) -> ServiceResult<ApiKeyEntry> {
        if key_id == ROOT_KEY_ID {
            return Err(ServiceError::bad_request("the root key is configured, not managed"));
        }
        let k = self.managed(p, key_id, Access::Change)?;
        if !k.usable_at(now_secs()) {
            return Err(ServiceError::conflict("the key is not active"));
        }
        let grants = updated_grants(&k, &u)?;
        if let Some(g) = &grants {
            p.can_delegate(k.scope, g)?;
        }
        // Narrowing is a permission taken away: in force everywhere; a rename need not wait.
        let reach = if grants.is_some() { Reach::Every } else { Reach::Alive };
        let cmd = Command::UpdateKey { key_id: k.key_id.clone(), name: u.name, grants, at: now_secs() };
        match self.core.write_everywhere(cmd, reach).await? {
            CommandResult::Key { entry } => {
                self.audit("key_updated", p, json!({"updated_key_id": entry.key_id}));
                Ok(entry)
            }
            CommandResult::NotFound(_) => Err(ServiceError::not_found("api_key", "API key not found")),
            CommandResult::QuotaExceeded(why) => Err(ServiceError::quota_exceeded(why)),
            other => Err(ServiceError::internal(format!("unexpected catalogue answer {other:?}"))),
        }
    }

    /// Deactivate or delete a key (audit event `key_revoked` or `key_deleted`). When this
    /// returns the key is refused on every alive node.
    pub async fn revoke(&self, p: &Principal, key_id: &str, how: Revocation) -> ServiceResult<Revoked> {
        let k = self.managed(p, key_id, Access::Change)?;
        let cmd = match how {
            Revocation::Delete => Command::DeleteKey { key_id: k.key_id.clone() },
            Revocation::Deactivate => Command::DeactivateKey { key_id: k.key_id.clone(), at: now_secs() },
        };
        self.core.write_everywhere(cmd, Reach::Every).await?;
        let event = match how {
            Revocation::Delete => "key_deleted",
            Revocation::Deactivate => "key_revoked",
        };
        self.audit(event, p, json!({"revoked_key_id": k.key_id}));
        Ok(Revoked { key_id: k.key_id, how })
    }

    // -------------------------------------------------------------- namespace-scoped keys

    /// The namespace `ns` (canonical), if `p` administers it: checked before a namespace key
    /// route reads its body.
    pub fn namespace_admin(&self, p: &Principal, ns: &str) -> ServiceResult<String> {
        let ns = canonical_namespace(ns).to_string();
        validate::namespace_ref(&ns)?;
        p.require(&ns, Scope::Admin)?;
        Ok(ns)
    }

    /// The keys `p` manages that reach namespace `ns` (which `p` must administer), with the
    /// canonical name.
    pub fn list_in_namespace(&self, p: &Principal, ns: &str) -> ServiceResult<(String, Vec<ApiKeyEntry>)> {
        let ns = self.namespace_admin(p, ns)?;
        let keys = self.manageable(p).into_iter().filter(|k| reaches(k, &ns)).collect();
        Ok((ns, keys))
    }

    /// One key of namespace `ns`, with the canonical name: `p` administers `ns` and may look at
    /// the key, and the key reaches `ns` (else 404).
    pub fn get_in_namespace(&self, p: &Principal, ns: &str, key_id: &str) -> ServiceResult<(String, ApiKeyEntry)> {
        let ns = self.namespace_admin(p, ns)?;
        let k = self.managed(p, key_id, Access::Look)?;
        if !reaches(&k, &ns) {
            return Err(ServiceError::not_found("api_key", "API key not found in this namespace"));
        }
        Ok((ns, k))
    }

    /// Delete a key of namespace `ns` (as [`Keys::get_in_namespace`] finds it).
    pub async fn delete_in_namespace(&self, p: &Principal, ns: &str, key_id: &str) -> ServiceResult<Revoked> {
        self.get_in_namespace(p, ns, key_id)?;
        self.revoke(p, key_id, Revocation::Delete).await
    }

    /// The usage of a key of namespace `ns` (as [`Keys::get_in_namespace`] finds it), with the
    /// canonical name.
    pub fn usage_in_namespace(
        &self,
        p: &Principal,
        ns: &str,
        key_id: &str,
        counters: &Usage,
    ) -> ServiceResult<(String, UsageReport)> {
        let (ns, k) = self.get_in_namespace(p, ns, key_id)?;
        Ok((ns, counters.report(&k.key_id)))
    }
}
