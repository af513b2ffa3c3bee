//! `PUT /v1/memory/update/{id}`, `POST /v1/memory/importance` and `POST /v1/sessions/start`
//! bodies through the routes' own validation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loci_api::fuzzing::{self, MAX_CONTENT_BYTES};
use loci_service::validate;

fuzz_target!(|data: &[u8]| {
    match fuzzing::update("mem-1", data) {
        Ok((t, patch)) => {
            assert!(validate::namespace_ref(&t.namespace).is_ok());
            assert!(patch.content.as_ref().is_none_or(|c| !c.is_empty() && c.len() <= MAX_CONTENT_BYTES));
            assert!(patch.importance.is_none_or(|i| (0.0..=1.0).contains(&i)));
            assert!(patch.tags.as_ref().is_none_or(|t| validate::tags(t).is_ok()));
            assert!(patch.metadata.as_ref().is_none_or(|m| validate::metadata(m).is_ok()));
            assert!(patch.lang.as_ref().is_none_or(|l| validate::lang(l).is_ok()));
        }
        Err(e) => assert!(e.status.is_client_error(), "{e:?}"),
    }
    match fuzzing::importance(data) {
        Ok((_, importance, ids)) => {
            assert!((0.0..=1.0).contains(&importance));
            assert!(!ids.is_empty() && ids.iter().all(|i| validate::memory_id(i).is_ok()));
        }
        Err(e) => assert!(e.status.is_client_error(), "{e:?}"),
    }
    match fuzzing::session_start(data) {
        Ok((t, metadata, id)) => {
            assert!(validate::namespace_ref(&t.namespace).is_ok());
            assert!(metadata.as_ref().is_none_or(|m| validate::metadata(m).is_ok()));
            assert!(id.as_ref().is_none_or(|i| validate::client_id(i, "session id").is_ok()));
        }
        Err(e) => assert!(e.status.is_client_error(), "{e:?}"),
    }
});
