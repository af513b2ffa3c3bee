//! The data plane: every namespace operation runs on the namespace's primary. Other nodes
//! forward (one hop, epoch-checked); the primary applies a write locally under the next sequence
//! number, sends the entry to the other replicas in parallel and answers once a write quorum
//! (the primary included) has it. Followers apply strictly in order and catch up from the
//! primary's log, or by a full copy while `Syncing`.
//!
//! This module holds the data plane's messages and bounds; the protocol is in `routing.rs`,
//! `replicate.rs`, `takeover.rs`, `copy.rs` and the background worker `sync.rs`.

use std::time::Duration;

use loci_storage::model::{DataOp, NsProgress, ReplEntry};

use super::error::{ClusterError, ClusterResult};
use super::wire::pb;

pub(crate) const RPC_TIMEOUT: Duration = Duration::from_secs(5);
pub(crate) const COPY_CHUNK_BYTES: usize = 2 * 1024 * 1024;
/// Replication-log entries kept per namespace for follower catch-up.
pub const LOG_KEEP: u64 = 50_000;
/// How long a request waits for the catalogue to catch up with a placement it was told of.
pub(crate) const CATALOGUE_WAIT: Duration = Duration::from_secs(3);

/// A data operation forwarded to the namespace's primary.
pub struct ForwardRequest {
    /// The request id of the original request (one trace across the hop).
    pub request_id: Option<String>,
    pub namespace: String,
    pub epoch: u64,
    pub catalogue_index: u64,
    pub op: DataOp,
}

/// Replication-log entries for a follower.
pub struct ReplicateRequest {
    pub namespace: String,
    pub catalogue_index: u64,
    /// The placement epoch the sender is primary in (followers fence older senders).
    pub sender_epoch: u64,
    /// The sender's `(seq, epoch)` just before the first entry (divergence check).
    pub prev: Option<(u64, u64)>,
    /// Every replica has applied entries below this sequence: followers drop them from their
    /// logs (0: nothing to drop).
    pub floor: u64,
    pub entries: Vec<ReplEntry>,
}

/// One step of a full namespace copy; `copy_id`, chosen by the sender, ties the steps of one
/// copy together (a receiver refuses the rows and the finish of a copy it no longer holds).
pub enum CopyRequest {
    /// `sender_epoch`: the placement epoch the sender copies under (a replica fenced past it
    /// refuses the copy).
    Begin {
        namespace: String,
        catalogue_index: u64,
        sender_epoch: u64,
        copy_id: u64,
        /// A restore from a backup (accepted only by a replica holding no write of it).
        restore: bool,
    },
    Rows {
        copy_id: u64,
        rows: Vec<(String, Vec<u8>, Vec<u8>)>,
    },
    Finish {
        namespace: String,
        copy_id: u64,
        progress: NsProgress,
    },
}

impl CopyRequest {
    pub fn into_pb(self) -> pb::CopyRequest {
        use pb::copy_request::Step;
        let step = match self {
            CopyRequest::Begin { namespace, catalogue_index, sender_epoch, copy_id, restore } => {
                Step::Begin(pb::CopyBegin { namespace, catalogue_index, sender_epoch, copy_id, restore })
            }
            CopyRequest::Rows { copy_id, rows } => Step::Rows(pb::CopyRows {
                rows: rows.into_iter().map(|(cf, key, value)| pb::CopyRow { cf, key, value }).collect(),
                copy_id,
            }),
            CopyRequest::Finish { namespace, copy_id, progress } => {
                Step::Finish(pb::CopyFinish { namespace, progress: Some(progress.into()), copy_id })
            }
        };
        pb::CopyRequest { step: Some(step) }
    }

    pub fn from_pb(r: pb::CopyRequest) -> ClusterResult<Self> {
        use pb::copy_request::Step;
        Ok(match r.step.ok_or_else(|| ClusterError::Internal("a copy step without a kind".into()))? {
            Step::Begin(b) => CopyRequest::Begin {
                namespace: b.namespace,
                catalogue_index: b.catalogue_index,
                sender_epoch: b.sender_epoch,
                copy_id: b.copy_id,
                restore: b.restore,
            },
            Step::Rows(r) => CopyRequest::Rows {
                copy_id: r.copy_id,
                rows: r.rows.into_iter().map(|r| (r.cf, r.key, r.value)).collect(),
            },
            Step::Finish(f) => CopyRequest::Finish {
                namespace: f.namespace,
                copy_id: f.copy_id,
                progress: f.progress.map(Into::into).unwrap_or_default(),
            },
        })
    }
}
