//! `POST /v1/namespaces` and `PUT /v1/namespaces/{ns}/memory_policy` bodies through the routes'
//! own validation (the policy merged over the default one, as over a new namespace's).
#![no_main]

use libfuzzer_sys::fuzz_target;
use loci_api::fuzzing;
use loci_service::validate;
use loci_raft::catalogue::MemoryPolicy;

fuzz_target!(|data: &[u8]| {
    match fuzzing::namespace_create(data) {
        Ok((name, _distance, _provider, dimension)) => {
            assert!(validate::namespace_name(&name).is_ok());
            assert!(dimension.is_none_or(|d| (1..=4096).contains(&d)));
        }
        Err(e) => assert!(e.status.is_client_error(), "{e:?}"),
    }
    let current = MemoryPolicy::default();
    match fuzzing::namespace_policy(&current, data) {
        Ok(p) => {
            assert!(matches!(p.content_screening.as_str(), "off" | "flag" | "block"));
            for v in [p.max_memories, p.retention_days, p.retention_seconds] {
                assert_ne!(v, Some(0));
            }
            // The policy as a catalogue command stores it (JSON) comes back unchanged.
            let v = serde_json::to_value(&p).expect("encodes");
            let back: MemoryPolicy = serde_json::from_value(v).expect("decodes");
            assert_eq!(back, p);
        }
        Err(e) => assert!(e.status.is_client_error(), "{e:?}"),
    }
});
