//! `POST /v1/memory/store` and `POST /v1/memories/store/batch` bodies through the routes' own
//! parsing and validation: any input is either refused with a 4xx or yields items that satisfy
//! every documented limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loci_api::fuzzing::{self, MAX_CONTENT_BYTES};
use loci_api::routes::memory::Target;
use loci_service::validate;
use loci_storage::model::NewMemory;

fn check_target(t: &Target) {
    assert!(validate::namespace_ref(&t.namespace).is_ok(), "{:?}", t.namespace);
    if let Some(a) = &t.agent_filter {
        assert!(validate::agent_id(a).is_ok() && a != &t.namespace, "{a:?}");
    }
}

fn check_item(m: &NewMemory) {
    assert!(!m.content.is_empty() && m.content.len() <= MAX_CONTENT_BYTES);
    assert!((0.0..=1.0).contains(&m.importance));
    assert!(validate::tags(&m.tags).is_ok(), "{:?}", m.tags);
    assert!(validate::agent_id(&m.agent_id).is_ok(), "{:?}", m.agent_id);
    if let Some(id) = &m.id {
        assert!(validate::memory_id(id).is_ok());
    }
    if let Some(s) = &m.session_id {
        assert!(validate::client_id(s, "session_id").is_ok());
    }
    if let Some(md) = &m.metadata {
        assert!(md.is_object());
    }
}

fuzz_target!(|data: &[u8]| {
    match fuzzing::store(data) {
        Ok((t, m)) => {
            check_target(&t);
            check_item(&m);
        }
        Err(e) => assert!(e.status.is_client_error() || e.status.as_u16() == 501, "{e:?}"),
    }
    match fuzzing::store_batch(data) {
        Ok((t, items)) => {
            check_target(&t);
            assert!((1..=validate::MAX_BATCH).contains(&items.len()));
            items.iter().for_each(check_item);
        }
        Err(e) => assert!(e.status.is_client_error() || e.status.as_u16() == 501, "{e:?}"),
    }
});
