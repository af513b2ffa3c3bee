#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<loci_raft::catalogue::Command>(data);
    let _ = loci_node::cluster::wire::from_cbor::<loci_storage::model::ReplEntry>(data);
    let _ = loci_api::validate::namespace_name(&String::from_utf8_lossy(data));
});
