//! The key-management rules without a node: who manages whom, narrowing, rotation with grace,
//! and the request forms.

use loci_raft::catalogue::{ApiKeyEntry, Grant, Scope};

use super::*;
use crate::access::{Principal, sha256_hex};

fn grants(list: &[(&str, Scope)]) -> Option<Vec<Grant>> {
    Some(list.iter().map(|(p, s)| Grant { pattern: (*p).into(), scope: *s }).collect())
}

fn entry(id: &str, scope: Scope, grants: Option<Vec<Grant>>) -> ApiKeyEntry {
    ApiKeyEntry {
        key_id: id.into(),
        name: format!("{id}-name"),
        secret_sha256: "00".repeat(32),
        scope,
        grants,
        created_by: "root".into(),
        created_at: 1,
        expires_at: None,
        active: true,
        deactivated_at: None,
        rotated_to: None,
    }
}

fn code(r: crate::ServiceResult<()>) -> String {
    r.err().map(|e| format!("{} {}", e.status.as_u16(), e.code)).unwrap_or_else(|| "ok".into())
}

#[test]
fn a_tenant_admin_changes_only_keys_strictly_below_it() {
    let tenant = entry("dk_key_tenant", Scope::Admin, grants(&[("acme-*", Scope::Admin)]));
    let sibling = entry("dk_key_sibling", Scope::Admin, grants(&[("acme-*", Scope::Admin)]));
    let child = entry("dk_key_child", Scope::Write, grants(&[("acme-x", Scope::Write)]));
    let sub_admin = entry("dk_key_sub", Scope::Admin, grants(&[("acme-team-*", Scope::Admin)]));
    let outside = entry("dk_key_out", Scope::Read, grants(&[("other", Scope::Read)]));
    let global_read = entry("dk_key_global", Scope::Read, None);
    let p = Principal::from_entry(&tenant);

    // Itself: may look, never change (no rotating itself away, no self-revocation).
    assert_eq!(code(may_manage(&p, &tenant, Access::Look)), "ok");
    assert_eq!(code(may_manage(&p, &tenant, Access::Change)), "403 INSUFFICIENT_SCOPE");
    // A sibling of the same reach: visible, but it could manage the caller back.
    assert_eq!(code(may_manage(&p, &sibling, Access::Look)), "ok");
    assert_eq!(code(may_manage(&p, &sibling, Access::Change)), "403 INSUFFICIENT_SCOPE");
    // Below it: managed.
    assert_eq!(code(may_manage(&p, &child, Access::Change)), "ok");
    assert_eq!(code(may_manage(&p, &sub_admin, Access::Change)), "ok");
    // Outside its prefix, or global: not revealed.
    assert_eq!(code(may_manage(&p, &outside, Access::Look)), "404 API_KEY_NOT_FOUND");
    assert_eq!(code(may_manage(&p, &global_read, Access::Change)), "404 API_KEY_NOT_FOUND");
    let e = may_manage(&p, &outside, Access::Look).unwrap_err();
    assert_eq!(e.message, "API key dk_key_out not found");

    // The sub-admin cannot touch its parent (wider reach), and sees it as absent.
    let sub = Principal::from_entry(&sub_admin);
    assert_eq!(code(may_manage(&sub, &tenant, Access::Look)), "404 API_KEY_NOT_FOUND");
    assert!(manages_back(&tenant, &sub));
    assert!(!manages_back(&sub_admin, &p));
    assert!(manages_back(&sibling, &p));
}

#[test]
fn a_key_without_admin_manages_nothing_but_may_look_at_itself() {
    let writer = entry("dk_key_w", Scope::Write, grants(&[("acme-*", Scope::Write)]));
    let reader = entry("dk_key_r", Scope::Read, grants(&[("acme-x", Scope::Read)]));
    let p = Principal::from_entry(&writer);
    assert_eq!(code(may_manage(&p, &writer, Access::Look)), "ok");
    assert_eq!(code(may_manage(&p, &writer, Access::Change)), "404 API_KEY_NOT_FOUND");
    assert_eq!(code(may_manage(&p, &reader, Access::Look)), "404 API_KEY_NOT_FOUND");
}

#[test]
fn the_operator_key_manages_every_other_key_and_the_root_key_every_key() {
    let operator = entry("dk_key_op", Scope::SuperAdmin, None);
    let other_operator = entry("dk_key_op2", Scope::SuperAdmin, None);
    let global_admin = entry("dk_key_ga", Scope::Admin, None);
    let other_admin = entry("dk_key_ga2", Scope::Admin, None);
    let op = Principal::from_entry(&operator);
    assert_eq!(code(may_manage(&op, &other_operator, Access::Change)), "ok");
    assert_eq!(code(may_manage(&op, &global_admin, Access::Change)), "ok");
    assert_eq!(code(may_manage(&op, &operator, Access::Change)), "403 INSUFFICIENT_SCOPE");
    // A global admin is a peer of another global admin, and below any super_admin key.
    let ga = Principal::from_entry(&global_admin);
    assert_eq!(code(may_manage(&ga, &other_admin, Access::Look)), "ok");
    assert_eq!(code(may_manage(&ga, &other_admin, Access::Change)), "403 INSUFFICIENT_SCOPE");
    assert_eq!(code(may_manage(&ga, &operator, Access::Look)), "404 API_KEY_NOT_FOUND");
    // The root key is above everything: no key manages it back.
    let root = Principal::root();
    assert!(!manages_back(&operator, &root));
    assert_eq!(code(may_manage(&root, &operator, Access::Change)), "ok");
    assert_eq!(code(may_manage(&root, &other_admin, Access::Change)), "ok");
}

#[test]
fn narrowing_never_widens_a_key() {
    let old = grants(&[("acme-*", Scope::Admin), ("shared", Scope::Read)]);
    assert!(narrows(&None, &None));
    assert!(narrows(&None, &grants(&[("x", Scope::SuperAdmin)])));
    assert!(!narrows(&old, &None));
    assert!(narrows(&old, &grants(&[("acme-x", Scope::Write), ("shared", Scope::Read)])));
    assert!(narrows(&old, &grants(&[("acme-team-*", Scope::Admin)])));
    assert!(narrows(&old, &Some(vec![])));
    assert!(!narrows(&old, &grants(&[("shared", Scope::Write)])));
    assert!(!narrows(&old, &grants(&[("acme*", Scope::Read)])));
    assert!(!narrows(&old, &grants(&[("other", Scope::Read)])));
}

#[test]
fn an_update_keeps_each_kept_namespaces_scope_and_refuses_widening() {
    let k = entry("dk_key_t", Scope::Admin, grants(&[("acme-*", Scope::Admin), ("shared", Scope::Read)]));
    let ns =
        |list: &[&str]| KeyUpdate { name: None, namespaces: Some(Some(list.iter().map(|s| s.to_string()).collect())) };
    // `shared` stays read although the key's scope is admin.
    assert_eq!(
        updated_grants(&k, &ns(&["acme-x", "shared", "acme-x"])).unwrap(),
        Some(grants(&[("acme-x", Scope::Admin), ("shared", Scope::Read)]))
    );
    assert_eq!(updated_grants(&k, &KeyUpdate::default()).unwrap_err().code, "INVALID_REQUEST");
    let widen = updated_grants(&k, &ns(&["other"])).unwrap_err();
    assert_eq!((widen.status.as_u16(), widen.code.as_ref()), (403, "INSUFFICIENT_SCOPE"));
    let global = updated_grants(&k, &KeyUpdate { name: None, namespaces: Some(None) }).unwrap_err();
    assert_eq!(global.code, "INSUFFICIENT_SCOPE");
    assert_eq!(updated_grants(&k, &ns(&["*"])).unwrap_err().code, "INSUFFICIENT_SCOPE");
    assert_eq!(updated_grants(&k, &ns(&["a*b*"])).unwrap_err().code, "INVALID_REQUEST");
    // A rename alone leaves the grants unchanged; a bad name is refused.
    let rename = KeyUpdate { name: Some("renamed".into()), namespaces: None };
    assert_eq!(updated_grants(&k, &rename).unwrap(), None);
    let bad = KeyUpdate { name: Some(String::new()), namespaces: None };
    assert_eq!(updated_grants(&k, &bad).unwrap_err().status.as_u16(), 400);
    // A global key may be narrowed to a list, or stay global.
    let g = entry("dk_key_g", Scope::Write, None);
    assert_eq!(updated_grants(&g, &ns(&["a"])).unwrap(), Some(grants(&[("a", Scope::Write)])));
    assert_eq!(updated_grants(&g, &KeyUpdate { name: None, namespaces: Some(None) }).unwrap(), Some(None));
}

#[test]
fn a_rotation_reissues_the_same_key_and_bounds_the_old_one_by_the_grace() {
    let now = 1_000_000;
    let mut old = entry("dk_key_old", Scope::Write, grants(&[("acme-x", Scope::Write)]));
    old.expires_at = Some(now + 50);
    let p = Principal::root();
    let plan = plan_rotation(&p, &old, 3600, now).unwrap();
    let n = &plan.new_entry;
    assert_ne!(n.key_id, old.key_id);
    assert!(n.key_id.starts_with("dk_key_") && n.key_id.len() == 23, "{}", n.key_id);
    assert!(plan.secret.starts_with("dk_") && plan.secret.len() == 67);
    assert_eq!(n.secret_sha256, sha256_hex(&plan.secret));
    assert_ne!(n.secret_sha256, old.secret_sha256);
    assert_eq!((&n.name, n.scope, &n.grants, n.expires_at), (&old.name, old.scope, &old.grants, old.expires_at));
    assert_eq!((n.created_by.as_str(), n.created_at, n.active, &n.rotated_to), ("root", now, true, &None));
    // The catalogue is told now + grace; the old key really ends at its own, earlier expiry.
    assert_eq!(plan.old_expires_at, now + 3600);
    assert_eq!(plan.old_key_expires_at, now + 50);
    old.expires_at = None;
    let plan = plan_rotation(&p, &old, 0, now).unwrap();
    assert_eq!((plan.old_expires_at, plan.old_key_expires_at), (now, now));
    assert_ne!(plan_rotation(&p, &old, 0, now).unwrap().secret, plan.secret);
}

#[test]
fn only_an_active_key_not_yet_rotated_can_be_rotated() {
    let now = 1_000_000;
    let p = Principal::root();
    let mut k = entry("dk_key_k", Scope::Read, None);
    k.rotated_to = Some("dk_key_next".into());
    let e = plan_rotation(&p, &k, 0, now).err().unwrap();
    assert_eq!(e.code, "CONFLICT");
    assert!(e.message.contains("dk_key_next"), "{}", e.message);
    k.rotated_to = None;
    k.active = false;
    assert_eq!(plan_rotation(&p, &k, 0, now).err().unwrap().message, "the key is not active");
    k.active = true;
    k.expires_at = Some(now);
    assert_eq!(plan_rotation(&p, &k, 0, now).err().unwrap().code, "CONFLICT");
    k.expires_at = Some(now + 1);
    assert!(plan_rotation(&p, &k, 0, now).is_ok());
}

#[test]
fn the_key_router_form_defaults_to_read_and_merges_namespace_into_namespaces() {
    let r = KeyRequest::from_admin(AdminKeySpec { name: "a".into(), ..Default::default() }).unwrap();
    assert_eq!((r.scope, r.grants, r.expires_at), (Scope::Read, None, None));
    let r = KeyRequest::from_admin(AdminKeySpec {
        name: "a".into(),
        scope: Some("tenant:admin".into()),
        namespaces: Some(vec!["b".into(), "_dakera_agent_c".into()]),
        namespace: Some("a".into()),
        expires_in_days: Some(1),
    })
    .unwrap();
    assert_eq!(r.scope, Scope::Admin);
    assert_eq!(r.grants, grants(&[("a", Scope::Admin), ("b", Scope::Admin), ("c", Scope::Admin)]));
    assert!(r.expires_at.is_some_and(|e| e > loci_storage::model::now_secs() + 86_000));
    let star = |namespaces: Option<Vec<String>>, namespace: Option<&str>| {
        KeyRequest::from_admin(AdminKeySpec {
            name: "a".into(),
            namespaces,
            namespace: namespace.map(String::from),
            ..Default::default()
        })
    };
    assert_eq!(star(Some(vec!["*".into()]), None).unwrap().grants, None);
    assert!(star(None, Some("*")).unwrap_err().message.starts_with("namespace names one namespace"));
    assert!(star(None, Some("")).is_err());
    assert!(star(Some(vec!["*".into()]), Some("a")).unwrap_err().message.contains("contradict"));
    let many = (0..65).map(|i| format!("n{i}")).collect();
    assert_eq!(star(Some(many), None).unwrap_err().message, "at most 64 namespaces per key");
    for bad in ["memory:admin", "owner", ""] {
        let e =
            KeyRequest::from_admin(AdminKeySpec { name: "a".into(), scope: Some(bad.into()), ..Default::default() });
        assert_eq!(e.unwrap_err().code, "INVALID_REQUEST", "{bad}");
    }
    let e = KeyRequest::from_admin(AdminKeySpec { name: "a".into(), expires_in_days: Some(0), ..Default::default() });
    assert_eq!(e.unwrap_err().message, "expires_in_days must be between 1 and 3650");
}

#[test]
fn the_permissions_form_takes_the_strongest_scope_per_namespace() {
    let perm = |ns: &str, scopes: &[&str]| Permission {
        namespace: ns.into(),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
    };
    let r = KeyRequest::from_permissions(PermissionsKeySpec {
        label: "l".into(),
        permissions: vec![perm("a", &["read"]), perm("b-*", &["memory:read", "write"]), perm("a", &["admin"])],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(r.grants, grants(&[("a", Scope::Admin), ("b-*", Scope::Write)]));
    assert_eq!((r.name.as_str(), r.scope), ("l", Scope::Admin));
    let refuse = |permissions: Vec<Permission>, expires_at: Option<u64>| {
        KeyRequest::from_permissions(PermissionsKeySpec {
            label: "l".into(),
            permissions,
            expires_at,
            ..Default::default()
        })
        .unwrap_err()
        .message
    };
    assert_eq!(refuse(vec![], None), "permissions must hold 1-64 entries");
    assert_eq!(refuse(vec![perm("a", &[])], None), "each permission needs at least one scope");
    assert!(refuse(vec![perm("*", &["read"])], None).starts_with("use POST /admin/keys"));
    assert_eq!(refuse(vec![perm("a", &["read"])], Some(1)), "expires_at must be in the future");
}

#[test]
fn a_namespace_key_starts_with_its_namespace_and_is_at_most_admin() {
    let spec = |scope: &str, extra: &[&str]| NamespaceKeySpec {
        name: "n".into(),
        scope: Some(scope.into()),
        extra_namespaces: Some(extra.iter().map(|s| s.to_string()).collect()),
        expires_in_days: None,
    };
    let r = KeyRequest::for_namespace("acme-team", spec("write", &["shared", "acme-team"])).unwrap();
    assert_eq!(r.grants, grants(&[("acme-team", Scope::Write), ("shared", Scope::Write)]));
    let e = KeyRequest::for_namespace("acme-team", spec("super_admin", &[])).unwrap_err();
    assert_eq!(e.message, "namespace keys are read, write or admin");
    let e = KeyRequest::for_namespace("acme-team", spec("read", &["_dakera_agent_*"])).unwrap_err();
    assert_eq!(e.message, "a namespace key cannot be granted every namespace");
}

#[test]
fn patterns_are_names_or_prefixes_with_one_trailing_star() {
    assert_eq!(check_pattern("acme-*").unwrap(), "acme-*");
    assert_eq!(check_pattern("_dakera_agent_bob").unwrap(), "bob");
    assert_eq!(check_pattern("*").unwrap(), "*");
    assert!(check_pattern("a*b*").is_err());
    assert!(check_pattern("a/b*").is_err());
    assert!(check_pattern(&"a".repeat(129)).is_err());
    assert_eq!(parse_scope("conversations:write").unwrap(), Scope::Write);
    assert_eq!(parse_scope("super_admin").unwrap(), Scope::SuperAdmin);
}
