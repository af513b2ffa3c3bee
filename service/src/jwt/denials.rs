//! The deny list's calls (`/admin/tokens/denials`): revoke bearer tokens before they expire, by
//! `jti`, signing key id or subject. Global admin keys only (the operator's, like quotas): a
//! token's issuer is the operator's identity provider, not a tenant's.

use std::sync::Arc;

use loci_raft::catalogue::{Command, CommandResult, Scope};
use loci_raft::denials::{DenialKind, TokenDenial};
use loci_storage::model::now_secs;
use serde::Deserialize;
use serde_json::json;

use crate::access::Principal;
use crate::cluster::Reach;
use crate::core::Core;
use crate::error::{ServiceError, ServiceResult};

/// The longest value or reason of a denial.
pub const MAX_DENIAL_VALUE_BYTES: usize = 256;

/// `POST /admin/tokens/denials`: exactly one of `jti`, `kid`, `sub`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenyRequest {
    pub jti: Option<String>,
    pub kid: Option<String>,
    pub sub: Option<String>,
    /// Unix seconds when the denial lapses (in the future); absent = until removed.
    pub until: Option<u64>,
    pub reason: Option<String>,
}

fn check_text(what: &str, v: &str) -> ServiceResult<()> {
    if v.is_empty() || v.len() > MAX_DENIAL_VALUE_BYTES || v.chars().any(char::is_control) {
        return Err(ServiceError::bad_request(format!(
            "'{what}' must be 1-{MAX_DENIAL_VALUE_BYTES} bytes without control characters"
        )));
    }
    Ok(())
}

impl DenyRequest {
    /// The denial this asks for, written by `by` at `now`.
    pub fn into_denial(self, by: &str, now: u64) -> ServiceResult<TokenDenial> {
        let (kind, value) = match (self.jti, self.kid, self.sub) {
            (Some(v), None, None) => (DenialKind::Jti, v),
            (None, Some(v), None) => (DenialKind::Kid, v),
            (None, None, Some(v)) => (DenialKind::Sub, v),
            _ => return Err(ServiceError::bad_request("give exactly one of 'jti', 'kid' or 'sub'")),
        };
        check_text(kind.as_str(), &value)?;
        if let Some(r) = &self.reason {
            check_text("reason", r)?;
        }
        if self.until.is_some_and(|u| u <= now) {
            return Err(ServiceError::bad_request("'until' must be in the future (Unix seconds)"));
        }
        Ok(TokenDenial { kind, value, until: self.until, reason: self.reason, created_at: now, created_by: by.into() })
    }
}

/// The deny-list calls of a node's service (borrowed from [`Core::token_denials`]).
#[derive(Clone, Copy)]
pub struct Denials<'a> {
    core: &'a Arc<Core>,
}

impl Core {
    /// Token deny-list calls (see [`Denials`]).
    pub fn token_denials(self: &Arc<Self>) -> Denials<'_> {
        Denials { core: self }
    }
}

impl Denials<'_> {
    /// Every denial in force (global admin).
    pub fn list(&self, p: &Principal) -> ServiceResult<Vec<TokenDenial>> {
        p.require_global(Scope::Admin)?;
        let now = now_secs();
        Ok(self.core.catalogue.view.read().token_denials.values().filter(|d| d.in_force_at(now)).cloned().collect())
    }

    /// Add or replace a denial (global admin; audit event `token_denied`). In force on every
    /// node when this returns, like a key revocation.
    pub async fn deny(&self, p: &Principal, r: DenyRequest) -> ServiceResult<TokenDenial> {
        p.require_global(Scope::Admin)?;
        let denial = r.into_denial(&p.key_id, now_secs())?;
        match self.core.write_everywhere(Command::DenyToken { denial }, Reach::Every).await? {
            CommandResult::Denial { denial } => {
                self.core.audit.event("token_denied", Some(p), json!({"denial": denial}));
                Ok(denial)
            }
            CommandResult::Rejected(why) => {
                Err(ServiceError::new(crate::error::StatusCode::CONFLICT, "DENY_LIST_FULL", why))
            }
            other => Err(ServiceError::internal(format!("unexpected catalogue answer {other:?}"))),
        }
    }

    /// Lift a denial by id (`jti:…`, `kid:…`, `sub:…`; global admin; audit event `token_denial_removed`).
    pub async fn remove(&self, p: &Principal, id: &str) -> ServiceResult<TokenDenial> {
        p.require_global(Scope::Admin)?;
        match self.core.write_everywhere(Command::RemoveTokenDenial { id: id.to_string() }, Reach::Every).await? {
            CommandResult::Denial { denial } => {
                self.core.audit.event("token_denial_removed", Some(p), json!({"id": id}));
                Ok(denial)
            }
            CommandResult::NotFound(_) => Err(ServiceError::not_found("denial", "no denial of this id")),
            other => Err(ServiceError::internal(format!("unexpected catalogue answer {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_names_exactly_one_thing_and_a_future_end() {
        let ok = DenyRequest { jti: Some("t1".into()), until: Some(200), ..Default::default() };
        let d = ok.into_denial("root", 100).unwrap();
        assert_eq!((d.kind, d.value.as_str(), d.until, d.id()), (DenialKind::Jti, "t1", Some(200), "jti:t1".into()));
        for bad in [
            DenyRequest::default(),
            DenyRequest { jti: Some("a".into()), sub: Some("b".into()), ..Default::default() },
            DenyRequest { kid: Some(String::new()), ..Default::default() },
            DenyRequest { sub: Some("x".repeat(MAX_DENIAL_VALUE_BYTES + 1)), ..Default::default() },
            DenyRequest { sub: Some("a\nb".into()), ..Default::default() },
            DenyRequest { sub: Some("a".into()), until: Some(100), ..Default::default() },
        ] {
            assert_eq!(bad.into_denial("root", 100).unwrap_err().status.as_u16(), 400);
        }
    }
}
