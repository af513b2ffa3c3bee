//! Every node-to-node message a peer can send (`proto/internal.proto`), decoded with prost and
//! converted to the domain types as the service and the client do: errors (`ClusterError`,
//! `ApiError`), outcomes, admin actions, node info, copy steps, and the CBOR data operations
//! and results inside forwarded requests. Never a panic; an error converted to its message and
//! back is the same error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loci_service::cluster::ClusterError;
use loci_service::cluster::plane::CopyRequest;
use loci_service::cluster::wire::{self, pb};
use loci_storage::model::{ApplyOutcome, DataOp, DataResult};
use prost::Message;

fn error_round_trip(e: pb::ClusterError) {
    let domain = ClusterError::from(e);
    let again = ClusterError::from(pb::ClusterError::from(&domain));
    assert_eq!(format!("{again:?}"), format!("{domain:?}"));
    let _ = domain.is_retryable();
    let _ = loci_service::ServiceError::from(domain);
}

fn cbor_round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(b: &[u8]) {
    if let Ok(v) = wire::from_cbor::<T>(b) {
        let bytes = wire::to_cbor(&v).expect("encodes");
        let back: T = wire::from_cbor(&bytes).expect("its own encoding decodes");
        assert_eq!(wire::to_cbor(&back).expect("re-encodes"), bytes);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else { return };
    match which % 12 {
        0 => {
            if let Ok(e) = pb::ClusterError::decode(body) {
                error_round_trip(e);
            }
        }
        1 => {
            if let Ok(r) = pb::ForwardRequest::decode(body) {
                cbor_round_trip::<DataOp>(&r.op);
            }
        }
        2 => {
            if let Ok(r) = pb::ForwardReply::decode(body) {
                match r.outcome {
                    Some(pb::forward_reply::Outcome::Result(b)) => cbor_round_trip::<DataResult>(&b),
                    Some(pb::forward_reply::Outcome::Error(e)) => error_round_trip(e),
                    None => {}
                }
            }
        }
        3 => {
            if let Ok(r) = pb::ReplicateReply::decode(body) {
                match r.outcome {
                    Some(pb::replicate_reply::Outcome::Applied(o)) => {
                        if let Ok(o) = ApplyOutcome::try_from(o) {
                            assert_eq!(ApplyOutcome::try_from(pb::ApplyOutcome::from(o)).ok(), Some(o));
                        }
                    }
                    Some(pb::replicate_reply::Outcome::Error(e)) => error_round_trip(e),
                    None => {}
                }
            }
        }
        4 => {
            if let Ok(r) = pb::ProgressReply::decode(body) {
                if let Some(pb::progress_reply::Outcome::Error(e)) = r.outcome {
                    error_round_trip(e);
                }
            }
        }
        5 => {
            if let Ok(r) = pb::AdminRequest::decode(body) {
                if let Ok(a) = loci_service::cluster::ClusterAction::try_from(r) {
                    let back =
                        loci_service::cluster::ClusterAction::try_from(pb::AdminRequest::from(&a)).expect("round trip");
                    assert_eq!(format!("{back:?}"), format!("{a:?}"));
                }
            }
        }
        6 => {
            if let Ok(i) = pb::NodeInfo::decode(body) {
                let _ = pb::NodeInfo::from(loci_service::cluster::NodeInfo::from(i));
            }
        }
        7 => {
            if let Ok(r) = pb::CopyRequest::decode(body) {
                if let Ok(c) = CopyRequest::from_pb(r) {
                    let _ = c.into_pb();
                }
            }
        }
        8 => {
            if let Ok(d) = pb::Done::decode(body) {
                let _ = wire::from_done(d);
            }
        }
        9 => {
            if let Ok(r) = pb::EraseReply::decode(body) {
                if let Some(pb::erase_reply::Outcome::Error(e)) = r.outcome {
                    error_round_trip(e);
                }
            }
        }
        10 => cbor_round_trip::<DataOp>(body),
        _ => cbor_round_trip::<DataResult>(body),
    }
});
