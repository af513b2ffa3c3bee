//! API-key management: minting ([`mint`]), who manages which key and what an update may change
//! ([`manage`]), rotation with a grace period and the master-key rotation request ([`rotate`]).
//!
//! Internally a key is one list of grants (`None` = every namespace at the key's scope). Secrets
//! are 256-bit random, shown once, stored as SHA-256. Every path that mints or manages a key goes
//! through [`Principal::can_delegate`]: keys are only ever created or managed inside the caller's
//! own admin permissions and never with more scope. A role change is a new key: an update may
//! rename or narrow a key, never widen it.
//!
//! The calls are on [`Keys`] (`core.keys()`): each takes the authenticated [`Principal`] and a
//! typed request and answers a typed result or a [`ServiceError`](crate::ServiceError); the
//! fronts parse their wire shapes into the request types and render the results. Every change
//! goes through the catalogue with [`Core::write_everywhere`]: a revocation, narrowing or
//! rotation is in force on every member when it returns (or after the freshness bound), a new
//! key on every alive one; each change writes its business event to the audit log.

pub mod manage;
pub mod mint;
pub mod rotate;
#[cfg(test)]
mod tests;

pub use manage::{Access, KeyUpdate, Revocation, Revoked, manages_back, may_manage, narrows, updated_grants};
pub use mint::{
    AdminKeySpec, KeyRequest, MAX_GRANTS, MintedKey, NamespaceKeySpec, Permission, PermissionsKeySpec, check_pattern,
    grants_from_namespaces, parse_scope,
};
pub use rotate::{EncryptionRotated, EncryptionRotation, MAX_GRACE_SECS, Rotated, RotationPlan, plan_rotation};

use crate::access::Principal;
use crate::core::Core;

/// The key-management calls of a node's service (borrowed from [`Core::keys`]).
#[derive(Clone, Copy)]
pub struct Keys<'a> {
    core: &'a Core,
}

impl Core {
    /// API-key management (see [`Keys`]).
    pub fn keys(&self) -> Keys<'_> {
        Keys { core: self }
    }
}

impl<'a> Keys<'a> {
    fn audit(&self, event: &str, p: &Principal, details: serde_json::Value) {
        self.core.audit.event(event, Some(p), details);
    }
}
