//! Namespace, agent, id, tag, language, key-pattern and metadata validation on arbitrary text:
//! never a panic, and the grammars nest as documented (every explicit namespace name is a valid
//! namespace reference; every accepted agent id of at most 128 bytes names its namespace).
#![no_main]

use libfuzzer_sys::fuzz_target;
use loci_service::validate;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let s = s.as_ref();
    let explicit = validate::namespace_name(s).is_ok();
    let reference = validate::namespace_ref(s).is_ok();
    if explicit {
        assert!(reference, "{s:?}");
    }
    let agent = validate::agent_id(s).is_ok();
    let agent_ns = validate::namespace_name_for_agent(s).is_ok();
    if agent && s.len() <= validate::MAX_NAMESPACE_BYTES {
        assert!(agent_ns, "{s:?}");
    }
    if agent_ns {
        assert!(reference && agent, "{s:?}");
    }
    if validate::memory_id(s).is_ok() {
        assert!(validate::client_id(s, "session id").is_ok());
    }
    let _ = validate::tags(&[s.to_string()]);
    let _ = validate::lang(s);
    let _ = validate::memory_type(s);
    let p = validate::printable(s);
    assert!(p.chars().count() <= 64 && !p.chars().any(char::is_control));
    let canonical = loci_service::canonical_namespace(s);
    assert!(s.ends_with(canonical));
    // Metadata: any JSON value is accepted or refused, never a panic.
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = validate::metadata(&v);
    }
});
