use loci_raft::catalogue::MemoryPolicy;
use loci_storage::model::{MemoryType, NewMemory};

use super::*;

fn item(content: &str) -> NewMemory {
    NewMemory {
        id: None,
        agent_id: "a".into(),
        content: content.into(),
        memory_type: MemoryType::Episodic,
        importance: 0.5,
        tags: Vec::new(),
        metadata: None,
        session_id: None,
        expires_at: None,
        embedding: None,
        created_at: None,
    }
}

fn policy(mode: &str) -> MemoryPolicy {
    MemoryPolicy { content_screening: mode.into(), ..Default::default() }
}

#[test]
fn screening_off_flag_and_block() {
    let bad = "x' OR '1'='1";
    let mut m = item(bad);
    screen(&policy("off"), &mut m).unwrap();
    assert!(m.tags.is_empty(), "off leaves the memory alone");
    screen(&policy("flag"), &mut m).unwrap();
    assert_eq!(m.tags, vec!["screened:sql".to_string()], "flag tags it");
    screen(&policy("flag"), &mut m).unwrap();
    assert_eq!(m.tags.len(), 1, "the tag is added once");
    let e = screen(&policy("block"), &mut item(bad)).unwrap_err();
    assert_eq!(e.status, 422);
    assert!(e.message.contains("looks like sql injection"), "{}", e.message);
    let mut ok = item("I prefer tea over coffee.");
    screen(&policy("block"), &mut ok).unwrap();
    assert!(ok.tags.is_empty());
    // A memory already at the tag limit is stored without the flag rather than refused.
    let mut full = item(bad);
    full.tags = (0..crate::validate::MAX_TAGS).map(|i| format!("t{i}")).collect();
    screen(&policy("flag"), &mut full).unwrap();
    assert_eq!(full.tags.len(), crate::validate::MAX_TAGS);
}

#[test]
fn target_names_the_namespace_and_the_agent_filter() {
    let t = target(Some("team"), Some("alice")).unwrap();
    assert_eq!(t, Target { namespace: "team".into(), agent_filter: Some("alice".into()) });
    let t = target(Some("team"), Some("team")).unwrap();
    assert_eq!(t.agent_filter, None, "the namespace's own agent does not filter");
    let t = target(None, Some("_dakera_agent_bob")).unwrap();
    assert_eq!(t, Target { namespace: "bob".into(), agent_filter: None });
    assert_eq!(target(None, None).unwrap_err().message, "agent_id (or namespace) is required");
    assert_eq!(target(Some(""), Some("")).unwrap_err().status, 400);
    assert_eq!(agent_of(&target(Some("team"), None).unwrap(), None), "team");
    assert_eq!(agent_of(&target(Some("team"), None).unwrap(), Some("_dakera_agent_c")), "c");
}

#[test]
fn batch_bounds() {
    assert!(check_batch_len(0).is_err());
    assert!(check_batch_len(1).is_ok());
    assert!(check_batch_len(crate::validate::MAX_BATCH).is_ok());
    assert!(check_batch_len(crate::validate::MAX_BATCH + 1).is_err());
    assert_eq!(check_batch_limit(None).unwrap(), 100);
    assert!(check_batch_limit(Some(0)).is_err());
    assert!(check_batch_limit(Some(crate::validate::MAX_TOP_K as i64 + 1)).is_err());
}
