//! The memory-filter grammar: `POST /v1/memory/forget` bodies and the `filter` object of
//! `DELETE /v1/memories/forget/batch` and `POST /v1/memories/recall/batch` (tags, importance
//! bounds, time bounds as Unix seconds / RFC 3339 / dates, type, session, ids).
#![no_main]

use libfuzzer_sys::fuzz_target;
use loci_api::fuzzing;
use loci_service::validate;
use loci_storage::model::MemoryFilter;

fn check(f: &MemoryFilter) {
    for tags in [&f.tags_any, &f.tags_all].into_iter().flatten() {
        assert!(!tags.is_empty() && validate::tags(tags).is_ok(), "{tags:?}");
    }
    assert!(f.session_id.as_ref().is_none_or(|s| validate::client_id(s, "session_id").is_ok()));
    assert!(f.ids.as_ref().is_none_or(|ids| !ids.is_empty()));
    // The filter survives the trip to the primary (forwarded operations carry it as CBOR).
    let bytes = loci_service::cluster::wire::to_cbor(f).expect("a filter encodes");
    let back: MemoryFilter = loci_service::cluster::wire::from_cbor(&bytes).expect("a filter decodes");
    assert_eq!(loci_service::cluster::wire::to_cbor(&back).expect("re-encodes"), bytes);
}

fuzz_target!(|data: &[u8]| {
    for r in [fuzzing::forget(data), fuzzing::forget_batch(data), fuzzing::recall_batch(data)] {
        match r {
            Ok((t, f)) => {
                assert!(validate::namespace_ref(&t.namespace).is_ok());
                check(&f);
            }
            Err(e) => assert!(e.status.is_client_error(), "{e:?}"),
        }
    }
    // The time grammar on its own.
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = loci_api::wire::parse_time_str(s);
    }
});
