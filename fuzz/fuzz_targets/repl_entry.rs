//! Replication-log entries as a follower receives them: `ReplicateRequest` / `FetchLogReply`
//! (protobuf) and each entry's CBOR mutations. Decoding never panics, and a decoded entry
//! re-encodes to bytes that decode to the same entry (encode → decode → encode is stable; bytes
//! are compared so NaN vectors count as equal).
#![no_main]

use libfuzzer_sys::fuzz_target;
use loci_service::cluster::wire::{self, pb};
use loci_storage::model::{Mutation, ReplEntry};
use prost::Message;

fn round_trip(e: &ReplEntry) {
    let p = wire::entry_to_pb(e).expect("an entry encodes");
    let back = wire::entry_from_pb(p.clone()).expect("its own encoding decodes");
    assert_eq!(wire::entry_to_pb(&back).expect("re-encodes"), p);
    let bytes = p.encode_to_vec();
    let again = pb::ReplEntry::decode(bytes.as_slice()).expect("protobuf of an entry decodes");
    assert_eq!(again, p);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = pb::ReplicateRequest::decode(data) {
        if let Ok(entries) = wire::entries_from_pb(req.entries) {
            entries.iter().for_each(round_trip);
        }
    }
    if let Ok(reply) = pb::FetchLogReply::decode(data) {
        if let Some(pb::fetch_log_reply::Outcome::Entries(e)) = reply.outcome {
            if let Ok(entries) = wire::entries_from_pb(e.entries) {
                entries.iter().for_each(round_trip);
            }
        }
    }
    // The raw CBOR of a mutation list (an entry's payload).
    if let Ok(mutations) = wire::from_cbor::<Vec<Mutation>>(data) {
        round_trip(&ReplEntry { seq: 1, epoch: 1, generation: 0, mutations });
    }
});
