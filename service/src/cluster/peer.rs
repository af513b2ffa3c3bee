//! Calls to other nodes: one path that reaches a node's internal service (address, partition
//! hook, channel, cluster token, deadline, transport errors), the typed call of each RPC over
//! it, and `quorum_call` for the calls that need answers from several replicas.

use std::future::Future;
use std::time::Duration;

use crate::cluster::ClusterAction;
use loci_storage::model::{ApplyOutcome, DataResult, NsProgress, ReplEntry};
use tonic::transport::Channel;

use super::error::{ClusterError, ClusterResult};
use super::plane::{CopyRequest, ForwardRequest, ReplicateRequest};
use super::wire::{self, pb};
use super::{CLUSTER_TOKEN_HEADER, Cluster, NodeInfo};

type Client = pb::internal_client::InternalClient<Channel>;

/// Largest message a node accepts from a peer (full-copy chunks are far smaller).
const MAX_MESSAGE: usize = 256 * 1024 * 1024;

impl Cluster {
    /// Run one RPC on `node`: the only way this node reaches another's internal service.
    pub(super) async fn rpc<Req, Resp, F, Fut>(
        &self,
        node: u64,
        timeout: Duration,
        req: Req,
        call: F,
    ) -> ClusterResult<Resp>
    where
        F: FnOnce(Client, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let unreachable = |reason: String| ClusterError::Unreachable { node, reason };
        let addr = self.node_addr(node).ok_or_else(|| unreachable("address unknown".into()))?;
        if self.pool.is_blocked(&addr.rpc_addr) {
            return Err(unreachable("partitioned".into()));
        }
        let channel = self.pool.get(&addr.rpc_addr).map_err(|e| unreachable(e.to_string()))?;
        let client = Client::new(channel).max_decoding_message_size(MAX_MESSAGE).max_encoding_message_size(MAX_MESSAGE);
        let mut request = tonic::Request::new(req);
        request.set_timeout(timeout);
        // Over mutual TLS the certificate authenticates this node: the secret never travels.
        if !self.pool.uses_tls() {
            if let Ok(v) = self.token.parse() {
                request.metadata_mut().insert(CLUSTER_TOKEN_HEADER, v);
            }
        }
        match call(client, request).await {
            Ok(r) => Ok(r.into_inner()),
            // The services answer every failure of their own inside the reply; a status is either
            // the peer refusing the call itself (token, decoding, no such service) or the call
            // not completing (connection reset, `h2 protocol error`, deadline): retryable.
            Err(s) => Err(match s.code() {
                tonic::Code::Unauthenticated
                | tonic::Code::PermissionDenied
                | tonic::Code::InvalidArgument
                | tonic::Code::Unimplemented => ClusterError::Refused { node, reason: s.message().to_string() },
                _ => unreachable(s.message().to_string()),
            }),
        }
    }

    /// Run a data operation on `node` as the namespace's primary.
    pub async fn forward_to(&self, node: u64, req: ForwardRequest) -> ClusterResult<DataResult> {
        let msg = pb::ForwardRequest {
            request_id: req.request_id.unwrap_or_default(),
            namespace: req.namespace,
            epoch: req.epoch,
            catalogue_index: req.catalogue_index,
            op: wire::to_cbor(&req.op)?,
        };
        let reply = self.rpc(node, Duration::from_secs(60), msg, |mut c, r| async move { c.forward(r).await }).await?;
        match reply.outcome {
            Some(pb::forward_reply::Outcome::Result(b)) => wire::from_cbor(&b),
            Some(pb::forward_reply::Outcome::Error(e)) => Err(e.into()),
            None => Err(wire::empty_reply()),
        }
    }

    /// Send replication-log entries (or only the log floor) to a follower.
    pub async fn replicate_on(
        &self,
        node: u64,
        req: ReplicateRequest,
        timeout: Duration,
    ) -> ClusterResult<ApplyOutcome> {
        let msg = pb::ReplicateRequest {
            namespace: req.namespace,
            catalogue_index: req.catalogue_index,
            sender_epoch: req.sender_epoch,
            prev: req.prev.map(|(seq, epoch)| pb::SeqEpoch { seq, epoch }),
            floor: req.floor,
            entries: wire::entries_to_pb(&req.entries)?,
        };
        let reply = self.rpc(node, timeout, msg, |mut c, r| async move { c.replicate(r).await }).await?;
        match reply.outcome {
            Some(pb::replicate_reply::Outcome::Applied(o)) => o.try_into(),
            Some(pb::replicate_reply::Outcome::Error(e)) => Err(e.into()),
            None => Err(wire::empty_reply()),
        }
    }

    /// A namespace's replication progress on `node`.
    pub async fn progress_on(&self, node: u64, namespace: &str, timeout: Duration) -> ClusterResult<NsProgress> {
        let msg = pb::ProgressRequest { namespace: namespace.to_string() };
        let reply = self.rpc(node, timeout, msg, |mut c, r| async move { c.progress(r).await }).await?;
        progress_reply(reply)
    }

    /// A namespace's progress on `node`, and whether `node` serves as its primary (took over
    /// in the current placement).
    pub async fn serving_progress_on(
        &self,
        node: u64,
        namespace: &str,
        timeout: Duration,
    ) -> ClusterResult<(NsProgress, bool)> {
        let msg = pb::ProgressRequest { namespace: namespace.to_string() };
        let reply = self.rpc(node, timeout, msg, |mut c, r| async move { c.progress(r).await }).await?;
        match reply.outcome {
            Some(pb::progress_reply::Outcome::Progress(p)) => {
                let serving = p.serving;
                Ok((p.into(), serving))
            }
            Some(pb::progress_reply::Outcome::Error(e)) => Err(e.into()),
            None => Err(wire::empty_reply()),
        }
    }

    /// Fence `node`'s replica at `epoch`; answers its progress.
    pub async fn fence_on(&self, node: u64, req: pb::FenceRequest, timeout: Duration) -> ClusterResult<NsProgress> {
        let reply = self.rpc(node, timeout, req, |mut c, r| async move { c.fence(r).await }).await?;
        progress_reply(reply)
    }

    /// Replication-log entries of `namespace` on `node`, from sequence `from`.
    pub async fn fetch_log_from(
        &self,
        node: u64,
        namespace: &str,
        from: u64,
        limit: u32,
        timeout: Duration,
    ) -> ClusterResult<Vec<ReplEntry>> {
        let msg = pb::FetchLogRequest { namespace: namespace.to_string(), from, limit };
        let reply = self.rpc(node, timeout, msg, |mut c, r| async move { c.fetch_log(r).await }).await?;
        match reply.outcome {
            Some(pb::fetch_log_reply::Outcome::Entries(e)) => wire::entries_from_pb(e.entries),
            Some(pb::fetch_log_reply::Outcome::Error(e)) => Err(e.into()),
            None => Err(wire::empty_reply()),
        }
    }

    /// One step of a full copy to `node`.
    pub async fn copy_step(&self, node: u64, step: CopyRequest, timeout: Duration) -> ClusterResult<()> {
        let msg = step.into_pb();
        let reply = self.rpc(node, timeout, msg, |mut c, r| async move { c.copy(r).await }).await?;
        wire::from_done(reply)
    }

    /// Ask `source` to push its full copy of `namespace` to `target`.
    pub async fn push_copy_from(
        &self,
        source: u64,
        namespace: &str,
        target: u64,
        timeout: Duration,
    ) -> ClusterResult<()> {
        let msg = pb::PushCopyRequest { namespace: namespace.to_string(), target };
        let reply = self.rpc(source, timeout, msg, |mut c, r| async move { c.push_copy(r).await }).await?;
        wire::from_done(reply)
    }

    /// Erase a namespace's rows on `node`; answers how many memories it held.
    pub async fn erase_on(&self, node: u64, ns_id: u64, timeout: Duration) -> ClusterResult<u64> {
        let reply =
            self.rpc(node, timeout, pb::EraseRequest { ns_id }, |mut c, r| async move { c.erase(r).await }).await?;
        match reply.outcome {
            Some(pb::erase_reply::Outcome::Memories(n)) => Ok(n),
            Some(pb::erase_reply::Outcome::Error(e)) => Err(e.into()),
            None => Err(wire::empty_reply()),
        }
    }

    /// What `node` reports about itself.
    pub async fn node_info_of(&self, node: u64, timeout: Duration) -> ClusterResult<NodeInfo> {
        let reply =
            self.rpc(node, timeout, pb::NodeInfoRequest {}, |mut c, r| async move { c.node_info(r).await }).await?;
        Ok(reply.into())
    }

    /// `node`'s audit records for a query (None: it writes no readable audit file).
    pub async fn audit_on(
        &self,
        node: u64,
        req: pb::AuditQueryRequest,
        timeout: Duration,
    ) -> ClusterResult<Option<crate::audit::query::Part>> {
        let reply = self.rpc(node, timeout, req, |mut c, r| async move { c.audit_query(r).await }).await?;
        if let Some(e) = reply.error {
            return Err(ClusterError::from(e));
        }
        if !reply.readable {
            return Ok(None);
        }
        let records = reply
            .records
            .iter()
            .map(|r| {
                serde_json::from_str(r).map_err(|e| ClusterError::Internal(format!("decoding an audit record: {e}")))
            })
            .collect::<ClusterResult<Vec<_>>>()?;
        let stopped_at = match (reply.truncated, reply.stopped_ts_ms, reply.stopped_node, reply.stopped_seq) {
            (true, Some(ts_ms), Some(node), Some(seq)) => Some(crate::audit::query::Cursor { ts_ms, node, seq }),
            _ => None,
        };
        Ok(Some(crate::audit::query::Part { records, stopped_at }))
    }

    /// Run a cluster action on `node` (the Raft leader).
    pub async fn admin_on(
        &self,
        node: u64,
        action: &ClusterAction,
        timeout: Duration,
    ) -> ClusterResult<serde_json::Value> {
        let msg = pb::AdminRequest::from(action);
        let reply = self.rpc(node, timeout, msg, |mut c, r| async move { c.admin(r).await }).await?;
        match reply.outcome {
            Some(pb::admin_reply::Outcome::Json(s)) => {
                serde_json::from_str(&s).map_err(|e| ClusterError::Internal(format!("decoding a read-out: {e}")))
            }
            Some(pb::admin_reply::Outcome::Error(e)) => Err(e.into()),
            None => Err(wire::empty_reply()),
        }
    }
}

fn progress_reply(reply: pb::ProgressReply) -> ClusterResult<NsProgress> {
    match reply.outcome {
        Some(pb::progress_reply::Outcome::Progress(p)) => Ok(p.into()),
        Some(pb::progress_reply::Outcome::Error(e)) => Err(e.into()),
        None => Err(wire::empty_reply()),
    }
}

/// How long [`quorum_call`] waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gather {
    /// Return as soon as `need` nodes answered (the other calls go on in the background).
    Quorum,
    /// Wait for every node (within the bound) and return all answers.
    All,
}

/// Call `f` on every node in `nodes` at once (each in its own task, so a call outlives an
/// early return) and gather the answers (`Some`) until `need` arrived (`Gather::Quorum`), every
/// call finished, or `bound` passed. The caller compares the answers it got with `need`.
pub async fn quorum_call<T, F, Fut>(nodes: &[u64], need: usize, bound: Duration, gather: Gather, f: F) -> Vec<(u64, T)>
where
    T: Send + 'static,
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Option<T>> + Send + 'static,
{
    if need == 0 && gather == Gather::Quorum {
        // Still make every call (the caller ships to everyone), answer at once.
        for n in nodes {
            tokio::spawn(f(*n));
        }
        return Vec::new();
    }
    gather_until(nodes, bound, f, |answers: &[(u64, T)]| gather == Gather::Quorum && answers.len() >= need).await
}

/// Call `f` on every node in `nodes` at once (each in its own task) and gather the answers
/// (`Some`) until `done` holds for them, every call finished, or `bound` passed.
pub async fn gather_until<T, F, Fut, D>(nodes: &[u64], bound: Duration, f: F, done: D) -> Vec<(u64, T)>
where
    T: Send + 'static,
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Option<T>> + Send + 'static,
    D: Fn(&[(u64, T)]) -> bool,
{
    let mut answers = Vec::new();
    if nodes.is_empty() {
        return answers;
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel(nodes.len());
    for n in nodes {
        let tx = tx.clone();
        let call = f(*n);
        let n = *n;
        tokio::spawn(async move {
            let answer = call.await;
            let _ = tx.send((n, answer)).await;
        });
    }
    drop(tx);
    if done(&answers) {
        return answers;
    }
    let _ = tokio::time::timeout(bound, async {
        while let Some((n, answer)) = rx.recv().await {
            if let Some(a) = answer {
                answers.push((n, a));
                if done(&answers) {
                    break;
                }
            }
        }
    })
    .await;
    answers
}

/// Whether a write is acknowledged: `need` followers that count (`Active`) hold it, and so
/// does every replica being promoted to `Active` (from the proposal on it must hold every
/// acknowledged write, or it would count without them; the engine's fix of
/// `Faults::legacy_promotion`). `answers` are (follower, whether it counts).
pub fn write_acknowledged(answers: &[(u64, bool)], need: usize, promoting: &[u64]) -> bool {
    answers.iter().filter(|(_, counts)| *counts).count() >= need
        && promoting.iter().all(|p| answers.iter().any(|(n, _)| n == p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn a_write_needs_the_replica_being_promoted_besides_its_quorum() {
        // Quorum 2 of 3: one counting follower besides the primary.
        assert!(write_acknowledged(&[(2, true)], 1, &[]));
        assert!(!write_acknowledged(&[], 1, &[]));
        // Node 4 (Syncing) is being promoted: node 2's acknowledgement is not enough.
        assert!(!write_acknowledged(&[(2, true)], 1, &[4]));
        assert!(!write_acknowledged(&[(4, false)], 1, &[4]), "and node 4 alone is not a quorum");
        assert!(write_acknowledged(&[(4, false), (2, true)], 1, &[4]));
        // With no follower needed, nothing is waited for unless a promotion is under way.
        assert!(write_acknowledged(&[], 0, &[]));
        assert!(!write_acknowledged(&[], 0, &[4]));
    }

    #[tokio::test]
    async fn gathering_stops_as_soon_as_its_condition_holds() {
        let answers = gather_until(
            &[1, 2, 3],
            Duration::from_secs(5),
            |n| async move {
                if n == 3 {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                Some(n == 2)
            },
            |a: &[(u64, bool)]| write_acknowledged(a, 1, &[1]),
        )
        .await;
        let mut nodes: Vec<u64> = answers.iter().map(|(n, _)| *n).collect();
        nodes.sort_unstable();
        assert_eq!(nodes, vec![1, 2], "node 3 (slow) was not waited for");
    }

    #[tokio::test]
    async fn a_quorum_returns_early_and_the_other_calls_still_finish() {
        let finished = Arc::new(AtomicUsize::new(0));
        let nodes = [1, 2, 3];
        let f = finished.clone();
        let answers = quorum_call(&nodes, 2, Duration::from_secs(5), Gather::Quorum, move |n| {
            let f = f.clone();
            async move {
                // Node 3 is slow: the quorum of 2 does not wait for it.
                if n == 3 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                f.fetch_add(1, Ordering::SeqCst);
                Some(n)
            }
        })
        .await;
        let mut got: Vec<u64> = answers.iter().map(|(n, _)| *n).collect();
        got.sort_unstable();
        assert_eq!(got, vec![1, 2]);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while finished.load(Ordering::SeqCst) < 3 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(finished.load(Ordering::SeqCst), 3, "the slow call was not dropped");
    }

    #[tokio::test]
    async fn failures_do_not_count_and_all_waits_for_every_answer() {
        let answers = quorum_call(&[1, 2, 3, 4], 2, Duration::from_secs(5), Gather::All, |n| async move {
            (n % 2 == 0).then_some(n * 10)
        })
        .await;
        let mut got: Vec<(u64, u64)> = answers;
        got.sort_unstable();
        assert_eq!(got, vec![(2, 20), (4, 40)]);
    }

    #[tokio::test]
    async fn the_bound_cuts_a_call_that_never_answers() {
        let answers = quorum_call(&[1, 2], 2, Duration::from_millis(100), Gather::Quorum, |n| async move {
            if n == 2 {
                std::future::pending::<()>().await;
            }
            Some(())
        })
        .await;
        assert_eq!(answers.len(), 1);
    }
}
