//! Rotation: a key revoked and reissued in one catalogue command, the old secret working on for a
//! grace period ([`plan_rotation`], [`Keys::rotate`]); and the master-key rotation request
//! ([`Keys::rotate_encryption`], over [`Core::rotate_encryption`]).

use crate::cluster::Reach;
use loci_raft::catalogue::{ApiKeyEntry, Command, CommandResult, Scope};
use loci_storage::crypto::MasterSecret;
use loci_storage::model::now_secs;
use serde_json::json;

use super::Keys;
use super::manage::Access;
use super::mint::{new_key_id, new_secret};
use crate::access::{Principal, sha256_hex};
use crate::core::{Core, RotationReport};
use crate::error::{ServiceError, ServiceResult, StatusCode};

/// The longest grace period of a rotated key's old secret (7 days).
pub const MAX_GRACE_SECS: u64 = 604_800;

/// What a rotation writes: the successor key, its secret, and until when the old key works.
#[derive(Clone)]
pub struct RotationPlan {
    /// Same name, scope, permissions and expiry as the old key; a new id and secret digest.
    pub new_entry: ApiKeyEntry,
    pub secret: String,
    /// The catalogue lowers the old key's expiry to this (now + grace) unless it ends sooner.
    pub old_expires_at: u64,
    /// When the old key actually stops working: the earlier of that and its own expiry.
    pub old_key_expires_at: u64,
}

/// The rotation of `old` by `p` at `now` with `grace_secs` of grace; refused (409) when the key
/// is no longer usable or was already rotated (its successor is the one to rotate).
pub fn plan_rotation(p: &Principal, old: &ApiKeyEntry, grace_secs: u64, now: u64) -> ServiceResult<RotationPlan> {
    if !old.usable_at(now) {
        return Err(ServiceError::conflict("the key is not active"));
    }
    if let Some(next) = &old.rotated_to {
        return Err(ServiceError::conflict(format!(
            "the key was already rotated (to {next}); rotate that key instead"
        )));
    }
    let secret = new_secret();
    let new_entry = ApiKeyEntry {
        key_id: new_key_id(),
        secret_sha256: sha256_hex(&secret),
        created_by: p.key_id.clone(),
        created_at: now,
        active: true,
        deactivated_at: None,
        rotated_to: None,
        ..old.clone()
    };
    let old_expires_at = now + grace_secs;
    Ok(RotationPlan {
        new_entry,
        secret,
        old_expires_at,
        old_key_expires_at: old_expires_at.min(old.expires_at.unwrap_or(u64::MAX)),
    })
}

/// A rotated key.
#[derive(Clone)]
pub struct Rotated {
    /// The successor.
    pub entry: ApiKeyEntry,
    /// The successor's secret (shown once).
    pub secret: String,
    pub old_key_id: String,
    /// When the old secret stops working.
    pub old_key_expires_at: u64,
}

impl std::fmt::Debug for Rotated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rotated")
            .field("entry", &self.entry)
            .field("secret", &"[redacted]")
            .field("old_key_id", &self.old_key_id)
            .field("old_key_expires_at", &self.old_key_expires_at)
            .finish()
    }
}

/// A master-key rotation as asked for (`POST /admin/encryption/rotate`).
#[derive(Clone, Default)]
pub struct EncryptionRotation {
    /// The new master key; absent or empty = generate one (returned once).
    pub new_key: Option<String>,
    /// When given, must be the current master key (else 403 and nothing changes).
    pub old_key: Option<String>,
    /// Per-namespace rotation: not offered (501).
    pub namespace: Option<String>,
}

/// What a master-key rotation did.
#[derive(Clone)]
pub struct EncryptionRotated {
    pub report: RotationReport,
    /// The master key generated for the caller, when it gave none.
    pub generated_key: Option<String>,
}

impl Keys<'_> {
    /// Revoke and reissue in one call: same name, scope, permissions and expiry; the old secret
    /// stops at once, or after `grace_secs` (audit event `key_rotated`).
    pub async fn rotate(&self, p: &Principal, key_id: &str, grace_secs: Option<u64>) -> ServiceResult<Rotated> {
        let grace = grace_secs.unwrap_or(0);
        if grace > MAX_GRACE_SECS {
            return Err(ServiceError::bad_request(format!("grace_secs must be at most {MAX_GRACE_SECS}")));
        }
        let old = self.managed(p, key_id, Access::Change)?;
        let plan = plan_rotation(p, &old, grace, now_secs())?;
        let cmd = Command::RotateKey {
            old_key_id: old.key_id.clone(),
            new_entry: plan.new_entry,
            old_expires_at: plan.old_expires_at,
        };
        match self.core.write_everywhere(cmd, Reach::Every).await? {
            CommandResult::Key { entry } => {
                self.audit(
                    "key_rotated",
                    p,
                    json!({"old_key_id": old.key_id, "new_key_id": entry.key_id, "grace_secs": grace}),
                );
                Ok(Rotated {
                    entry,
                    secret: plan.secret,
                    old_key_id: old.key_id,
                    old_key_expires_at: plan.old_key_expires_at,
                })
            }
            CommandResult::Rejected(m) => Err(ServiceError::conflict(m)),
            CommandResult::QuotaExceeded(why) => Err(ServiceError::quota_exceeded(why)),
            CommandResult::NotFound(_) => Err(ServiceError::not_found("api_key", "API key not found")),
            other => Err(ServiceError::internal(format!("unexpected catalogue answer {other:?}"))),
        }
    }

    /// May `p` rotate the master key (a global `super_admin`)? Checked before the front reads the
    /// request body, and again by [`Keys::rotate_encryption`].
    pub fn may_rotate_encryption(&self, p: &Principal) -> ServiceResult<()> {
        p.require_global(Scope::SuperAdmin)
    }

    /// Re-wrap every data key under a new master key ([`Core::rotate_encryption`]).
    pub async fn rotate_encryption(&self, p: &Principal, r: EncryptionRotation) -> ServiceResult<EncryptionRotated> {
        self.may_rotate_encryption(p)?;
        if r.namespace.is_some() {
            return Err(ServiceError::not_implemented(
                "per-namespace key rotation is not offered: rotate the master key (no namespace) to re-wrap every data key",
            ));
        }
        let (secret_text, generated) = match r.new_key.filter(|k| !k.is_empty()) {
            Some(k) => (k, false),
            None => (MasterSecret::generate_hex(), true),
        };
        let secret = MasterSecret::parse(&secret_text).map_err(|e| ServiceError::bad_request(e.to_string()))?;
        let old = match r.old_key {
            Some(k) => Some(MasterSecret::parse(&k).map_err(|_| {
                ServiceError::new(
                    StatusCode::FORBIDDEN,
                    "ENCRYPTION_KEY_MISMATCH",
                    "old_key is not the current master key; nothing was changed",
                )
            })?),
            None => None,
        };
        let report = Core::rotate_encryption(self.core, &secret, old).await?;
        Ok(EncryptionRotated { report, generated_key: generated.then_some(secret_text) })
    }
}
