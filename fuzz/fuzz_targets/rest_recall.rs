//! `POST /v1/memory/recall` and `POST /v1/memory/search` bodies (query, filters, routing,
//! fusion, weights) through the routes' own `prepare`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loci_api::fuzzing;
use loci_service::validate;

fuzz_target!(|data: &[u8]| {
    for record_access in [true, false] {
        match fuzzing::recall(data, record_access) {
            Ok((t, p)) => {
                assert!(validate::namespace_ref(&t.namespace).is_ok());
                assert!((1..=validate::MAX_TOP_K).contains(&p.top_k));
                assert!(p.vector_weight.is_none_or(|w| (0.0..=1.0).contains(&w)));
                if let Some(tags) = &p.filter.tags_any {
                    assert!(validate::tags(tags).is_ok());
                }
                assert_eq!(p.filter.agent_id, t.agent_filter);
                assert_eq!(p.record_access, record_access);
            }
            Err(e) => assert!(e.status.is_client_error(), "{e:?}"),
        }
    }
});
