//! The catalogue's quota rules as it applies commands: counting ceilings refused at apply,
//! rotation and narrowing kept within them, ceilings following quota changes.

use crate::catalogue::*;
use crate::quota::Quota;

fn scoped_key(id: &str, pattern: &str, at: u64) -> ApiKeyEntry {
    ApiKeyEntry {
        key_id: id.into(),
        name: id.into(),
        secret_sha256: format!("digest-{id}"),
        scope: Scope::Read,
        grants: Some(vec![Grant { pattern: pattern.into(), scope: Scope::Read }]),
        created_by: "root".into(),
        created_at: at,
        expires_at: None,
        active: true,
        deactivated_at: None,
        rotated_to: None,
    }
}

#[test]
fn key_quotas_hold_through_rotation_and_narrowing() {
    let mut c = Catalogue::default();
    let quota = Quota { pattern: "acme-*".into(), max_keys: Some(2), ..Default::default() };
    assert!(matches!(c.apply(Command::SetQuota { quota }), CommandResult::Quota { .. }));
    for id in ["k1", "k2"] {
        assert!(matches!(
            c.apply(Command::CreateKey { entry: scoped_key(id, "acme-a", 10) }),
            CommandResult::Key { .. }
        ));
    }
    let r = c.apply(Command::CreateKey { entry: scoped_key("k3", "acme-b", 10) });
    assert!(matches!(r, CommandResult::QuotaExceeded(_)), "{r:?}");
    // A rotation with a grace period would leave three working secrets: refused.
    let rotate = |new: &str, grace_until: u64| Command::RotateKey {
        old_key_id: "k1".into(),
        new_entry: scoped_key(new, "acme-a", 20),
        old_expires_at: grace_until,
    };
    assert!(matches!(c.apply(rotate("k1b", 100)), CommandResult::QuotaExceeded(_)));
    // Without one it replaces the key; the same key cannot be rotated twice.
    assert!(matches!(c.apply(rotate("k1b", 20)), CommandResult::Key { .. }));
    assert!(matches!(c.apply(rotate("k1c", 20)), CommandResult::Rejected(_)));
    assert!(!c.keys.contains_key("k1c"));
    // A global admin's key narrowed into the pattern would be a third key of the tenant.
    let mut global = scoped_key("g", "acme-a", 10);
    global.grants = None;
    assert!(matches!(c.apply(Command::CreateKey { entry: global }), CommandResult::Key { .. }));
    let narrow = Command::UpdateKey {
        key_id: "g".into(),
        name: None,
        grants: Some(Some(vec![Grant { pattern: "acme-c".into(), scope: Scope::Read }])),
        at: 30,
    };
    assert!(matches!(c.apply(narrow), CommandResult::QuotaExceeded(_)));
    assert_eq!(c.keys["g"].grants, None, "nothing changed");
    // Renaming a counted key is not a new key.
    let rename = Command::UpdateKey { key_id: "k2".into(), name: Some("renamed".into()), grants: None, at: 30 };
    assert!(matches!(c.apply(rename), CommandResult::Key { .. }));
}

#[test]
fn namespace_quotas_are_counted_as_creations_apply_and_ceilings_follow_quota_changes() {
    let mut c = Catalogue::default();
    let ns = |name: &str, id: u64| -> NamespaceEntry {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": name, "kind": "agent", "dimension": 16,
            "distance": "cosine", "embedder": {"provider": "hash", "dimension": 16, "generation": 0},
            "policy": {}, "data_key": {"kek_version": 1, "dek_version": 1, "sealed": []},
            "metadata": null, "created_at": 0,
        }))
        .expect("entry")
    };
    let quota =
        Quota { pattern: "acme-*".into(), max_namespaces: Some(1), max_memories: Some(5), ..Default::default() };
    c.apply(Command::SetQuota { quota });
    assert!(matches!(
        c.apply(Command::CreateNamespace { entry: ns("acme-a", 1) }),
        CommandResult::Namespace { created: true, .. }
    ));
    assert!(matches!(c.apply(Command::CreateNamespace { entry: ns("acme-b", 2) }), CommandResult::QuotaExceeded(_)));
    assert!(!c.namespaces.contains_key("acme-b"));
    assert!(matches!(
        c.apply(Command::CreateNamespace { entry: ns("beta", 3) }),
        CommandResult::Namespace { created: true, .. }
    ));
    assert_eq!(c.namespaces["acme-a"].ceiling.max_memories, Some(5));
    assert!(c.namespaces["beta"].ceiling.is_empty());
    let tighter = Quota { pattern: "acme-a".into(), max_memories: Some(2), ..Default::default() };
    c.apply(Command::SetQuota { quota: tighter });
    assert_eq!(c.namespaces["acme-a"].ceiling.max_memories, Some(2));
    assert_eq!(c.apply(Command::DeleteQuota { pattern: "acme-a".into() }), CommandResult::Ok);
    assert_eq!(c.namespaces["acme-a"].ceiling.max_memories, Some(5));
    // The ceiling survives a snapshot round trip; a snapshot without quotas still loads.
    let back: Catalogue = serde_json::from_slice(&serde_json::to_vec(&c).unwrap()).unwrap();
    assert_eq!(back.namespaces["acme-a"].ceiling, c.namespaces["acme-a"].ceiling);
    assert_eq!(back.quotas, c.quotas);
    let mut v = serde_json::to_value(&c).unwrap();
    v.as_object_mut().unwrap().remove("quotas");
    assert!(serde_json::from_value::<Catalogue>(v).unwrap().quotas.is_empty());
}
