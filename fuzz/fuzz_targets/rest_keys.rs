//! Key bodies: `POST /admin/keys`, `POST /v1/api-keys`, `POST /v1/namespaces/{ns}/keys` and
//! `PATCH /admin/keys/{id}` through the routes' own validation. A key update must never widen
//! the key: every resulting grant is inside an old grant of at least its scope.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loci_api::fuzzing;
use loci_service::validate;
use loci_raft::catalogue::{ApiKeyEntry, Grant, Scope, pattern_contains};

fn valid_pattern(p: &str) -> bool {
    p.len() <= validate::MAX_NAMESPACE_BYTES
        && match p.strip_suffix('*') {
            Some(prefix) => prefix.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')),
            None => validate::namespace_ref(p).is_ok(),
        }
}

fn old_key() -> ApiKeyEntry {
    ApiKeyEntry {
        key_id: "dk_key_0011223344556677".into(),
        name: "tenant".into(),
        secret_sha256: "00".repeat(32),
        scope: Scope::Admin,
        grants: Some(vec![
            Grant { pattern: "acme-*".into(), scope: Scope::Admin },
            Grant { pattern: "shared".into(), scope: Scope::Read },
        ]),
        created_by: "root".into(),
        created_at: 1,
        expires_at: None,
        active: true,
        deactivated_at: None,
        rotated_to: None,
    }
}

fuzz_target!(|data: &[u8]| {
    let (route, body) = data.split_first().map_or((0, data), |(r, b)| (*r, b));
    match fuzzing::key_create(route, "acme-team", body) {
        Ok(r) => {
            assert!(!r.name.trim().is_empty() && r.name.len() <= 128);
            if let Some(g) = &r.grants {
                assert!(g.len() <= 64);
                assert!(g.iter().all(|g| valid_pattern(&g.pattern)), "{g:?}");
                assert!(g.iter().all(|g| g.scope <= r.scope), "{r:?}");
            }
        }
        Err(e) => assert!(e.status.is_client_error(), "{e:?}"),
    }
    let old = old_key();
    match fuzzing::key_update(&old, body) {
        Ok(Some(Some(new))) => {
            let old_grants = old.grants.as_deref().unwrap_or_default();
            for g in &new {
                assert!(valid_pattern(&g.pattern));
                assert!(
                    old_grants.iter().any(|o| o.scope >= g.scope && pattern_contains(&o.pattern, &g.pattern)),
                    "widened: {g:?}"
                );
            }
        }
        Ok(Some(None)) => panic!("a restricted key became global"),
        Ok(None) => {}
        Err(e) => assert!(e.status.is_client_error(), "{e:?}"),
    }
});
