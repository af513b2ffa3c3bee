//! Raft transport over tonic: an envelope service carrying JSON-encoded openraft messages,
//! authenticated by a cluster token in the `x-loci-cluster-token` metadata.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Response, Status};

use crate::pb::Envelope;
use crate::pb::raft_transport_client::RaftTransportClient;
use crate::pb::raft_transport_server::RaftTransport;
use crate::{CatalogueWrite, NodeAddr, NodeId, TypeConfig};

pub const CLUSTER_TOKEN_HEADER: &str = "x-loci-cluster-token";
/// The node id a Raft RPC is meant for. A node replaced on the same address (an empty disk, a
/// new id) refuses what was sent to its predecessor: answering it would look to the leader
/// like the old member's log going backwards, which openraft does not allow.
pub const TARGET_NODE_HEADER: &str = "x-loci-target-node";

/// Lazily connected channels, one per peer address, shared by Raft and other internal RPCs.
#[derive(Clone, Default)]
pub struct ChannelPool {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    /// Test hook: addresses this node cannot reach (a network partition).
    blocked: Arc<Mutex<std::collections::HashSet<String>>>,
    /// Current address of a node when it differs from the one Raft recorded (membership
    /// knows where a node was; gossip knows where it is).
    resolver: Arc<Mutex<Option<Resolver>>>,
    /// Mutual TLS to peers (cluster CA + this node's certificate). With it, peers are
    /// authenticated by certificate and the cluster token is never sent.
    tls: Option<Arc<ClientTlsConfig>>,
}

pub type Resolver = Arc<dyn Fn(u64) -> Option<String> + Send + Sync>;

#[derive(Debug)]
pub struct Blocked(pub String);

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is unreachable (partitioned)", self.0)
    }
}

impl std::error::Error for Blocked {}

impl ChannelPool {
    /// A pool whose channels use mutual TLS (`None`: plaintext, authenticated by the token).
    pub fn with_tls(tls: Option<ClientTlsConfig>) -> Self {
        ChannelPool { tls: tls.map(Arc::new), ..Default::default() }
    }

    /// Whether peers are reached over mutual TLS (then no cluster token travels).
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub fn set_blocked(&self, addr: &str, blocked: bool) {
        let mut b = self.blocked.lock();
        if blocked {
            b.insert(addr.to_string());
        } else {
            b.remove(addr);
        }
    }

    pub fn set_resolver(&self, r: Resolver) {
        *self.resolver.lock() = Some(r);
    }

    pub fn resolve(&self, node: u64) -> Option<String> {
        let r = self.resolver.lock().clone();
        r.and_then(|f| f(node))
    }

    pub fn is_blocked(&self, addr: &str) -> bool {
        self.blocked.lock().contains(addr)
    }

    pub fn get(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        if let Some(c) = self.channels.lock().get(addr) {
            return Ok(c.clone());
        }
        let host = addr.trim_start_matches("http://").trim_start_matches("https://");
        let uri = if self.tls.is_some() { format!("https://{host}") } else { format!("http://{host}") };
        let mut endpoint = Endpoint::from_shared(uri)?;
        if let Some(tls) = &self.tls {
            endpoint = endpoint.tls_config(ClientTlsConfig::clone(tls))?;
        }
        let ch = endpoint
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .connect_lazy();
        self.channels.lock().insert(addr.to_string(), ch.clone());
        Ok(ch)
    }
}

fn encode<T: Serialize>(v: &T) -> Result<Envelope, serde_json::Error> {
    Ok(Envelope { payload: serde_json::to_vec(v)? })
}

fn decode<T: DeserializeOwned>(e: &Envelope) -> Result<T, serde_json::Error> {
    serde_json::from_slice(&e.payload)
}

#[derive(Clone)]
pub struct Network {
    pool: ChannelPool,
    token: Arc<String>,
}

impl Network {
    pub fn new(pool: ChannelPool, token: String) -> Self {
        Network { pool, token: Arc::new(token) }
    }

    pub fn pool(&self) -> &ChannelPool {
        &self.pool
    }

    fn request(&self, env: Envelope) -> Request<Envelope> {
        let mut req = Request::new(env);
        if !self.pool.uses_tls() {
            if let Ok(v) = self.token.parse() {
                req.metadata_mut().insert(CLUSTER_TOKEN_HEADER, v);
            }
        }
        req
    }

    pub fn client(&self, addr: &str) -> Result<RaftTransportClient<Channel>, tonic::transport::Error> {
        Ok(RaftTransportClient::new(self.pool.get(addr)?).max_decoding_message_size(64 * 1024 * 1024))
    }

    /// Forward a catalogue write to the leader at `addr`.
    pub async fn forward_write(&self, addr: &str, write: &CatalogueWrite) -> Result<crate::WriteOutcome, String> {
        if self.pool.is_blocked(addr) {
            return Err(Blocked(addr.to_string()).to_string());
        }
        let mut client = self.client(addr).map_err(|e| e.to_string())?;
        let env = encode(write).map_err(|e| e.to_string())?;
        let resp = client.client_write(self.request(env)).await.map_err(|s| s.message().to_string())?;
        decode::<Result<crate::WriteOutcome, String>>(resp.get_ref()).map_err(|e| e.to_string())?
    }

    /// Ask the leader `leader` at `addr` for its read log index (a freshness confirmation).
    pub async fn read_index(&self, addr: &str, leader: NodeId, asker: NodeId) -> Result<u64, String> {
        if self.pool.is_blocked(addr) {
            return Err(Blocked(addr.to_string()).to_string());
        }
        let mut client = self.client(addr).map_err(|e| e.to_string())?;
        let mut req = self.request(encode(&asker).map_err(|e| e.to_string())?);
        if let Ok(v) = leader.to_string().parse() {
            req.metadata_mut().insert(TARGET_NODE_HEADER, v);
        }
        let resp = client.read_index(req).await.map_err(|s| s.message().to_string())?;
        decode::<Result<u64, String>>(resp.get_ref()).map_err(|e| e.to_string())?
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &NodeAddr) -> Self::Network {
        PeerConnection { net: self.clone(), target, addr: node.rpc_addr.clone() }
    }
}

impl PeerConnection {
    fn current_addr(&self) -> String {
        self.net.pool.resolve(self.target).unwrap_or_else(|| self.addr.clone())
    }
}

pub struct PeerConnection {
    net: Network,
    target: NodeId,
    addr: String,
}

type RpcErr<E> = RPCError<NodeId, NodeAddr, RaftError<NodeId, E>>;

impl PeerConnection {
    async fn call<Req, Resp, E>(&self, method: Method, req: &Req, timeout: Duration) -> Result<Resp, RpcErr<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let addr = self.current_addr();
        if self.net.pool.is_blocked(&addr) {
            return Err(RPCError::Unreachable(Unreachable::new(&Blocked(addr))));
        }
        let mut client = self.net.client(&addr).map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let env = encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut request = self.net.request(env);
        request.set_timeout(timeout);
        if let Ok(v) = self.target.to_string().parse() {
            request.metadata_mut().insert(TARGET_NODE_HEADER, v);
        }
        let resp = match method {
            Method::Append => client.append_entries(request).await,
            Method::Vote => client.vote(request).await,
            Method::Snapshot => client.install_snapshot(request).await,
        };
        let resp = resp.map_err(|s| match s.code() {
            // FailedPrecondition: another node answers on that address now (`check_target`).
            tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Cancelled
            | tonic::Code::FailedPrecondition => RPCError::Unreachable(Unreachable::new(&StatusError(s))),
            _ => RPCError::Network(NetworkError::new(&StatusError(s))),
        })?;
        let result: Result<Resp, RaftError<NodeId, E>> =
            decode(resp.get_ref()).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[derive(Debug)]
struct StatusError(Status);

#[cfg(test)]
mod tests {
    use super::split_by_bytes;

    #[test]
    fn batches_split_by_bytes_keep_order_and_never_drop_an_entry() {
        assert_eq!(split_by_bytes(&[], 10), Vec::<std::ops::Range<usize>>::new());
        assert_eq!(split_by_bytes(&[3, 3, 3], 10), vec![0..3]);
        assert_eq!(split_by_bytes(&[6, 6, 6], 10), vec![0..1, 1..2, 2..3]);
        assert_eq!(split_by_bytes(&[4, 4, 4, 4, 4], 10), vec![0..2, 2..4, 4..5]);
        // An entry over the bound alone is a run of one (the command bound keeps it decodable).
        assert_eq!(split_by_bytes(&[2, 30, 2, 2], 10), vec![0..1, 1..2, 2..4]);
        for sizes in [vec![1; 100], vec![9, 1, 9, 1, 9], vec![11, 11]] {
            let runs = split_by_bytes(&sizes, 10);
            let flat: Vec<usize> = runs.iter().flat_map(|r| r.clone()).collect();
            assert_eq!(flat, (0..sizes.len()).collect::<Vec<_>>());
            for r in &runs {
                assert!(r.len() == 1 || sizes[r.clone()].iter().sum::<usize>() <= 10);
            }
        }
    }
}

impl std::fmt::Display for StatusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.0.code(), self.0.message())
    }
}

impl std::error::Error for StatusError {}

enum Method {
    Append,
    Vote,
    Snapshot,
}

/// Target size of one AppendEntries message. A batch openraft hands over that encodes larger is
/// sent as several consecutive messages (each a valid AppendEntries for its prefix), so no
/// batch of entries, however large each is up to the command bound, ever exceeds the peer's
/// decode limit and is resent forever.
pub const MAX_APPEND_BYTES: usize = 8 * 1024 * 1024;

/// Consecutive runs of entries (by their encoded sizes) each within `max` bytes; an entry larger
/// than `max` on its own is a run of one.
pub fn split_by_bytes(sizes: &[usize], max: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut acc) = (0, 0usize);
    for (i, s) in sizes.iter().enumerate() {
        if i > start && acc + s > max {
            out.push(start..i);
            start = i;
            acc = 0;
        }
        acc += s;
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr<openraft::error::Infallible>> {
        let sizes: Vec<usize> =
            rpc.entries.iter().map(|e| serde_json::to_vec(e).map(|b| b.len()).unwrap_or(usize::MAX)).collect();
        if sizes.iter().sum::<usize>() <= MAX_APPEND_BYTES || rpc.entries.len() < 2 {
            return self.call(Method::Append, &rpc, option.hard_ttl()).await;
        }
        let runs = split_by_bytes(&sizes, MAX_APPEND_BYTES);
        metrics::counter!("loci_raft_append_splits_total").increment(1);
        let AppendEntriesRequest { vote, prev_log_id, leader_commit, entries } = rpc;
        let mut prev = prev_log_id;
        let mut entries = entries.into_iter();
        for run in runs {
            let part: Vec<_> = entries.by_ref().take(run.len()).collect();
            let last = part.last().map(|e| e.log_id);
            let req = AppendEntriesRequest::<TypeConfig> {
                vote,
                prev_log_id: prev,
                // The follower may commit only what it holds after this part.
                leader_commit: std::cmp::min(leader_commit, last),
                entries: part,
            };
            match self.call(Method::Append, &req, option.hard_ttl()).await? {
                AppendEntriesResponse::Success => prev = last,
                other => return Ok(other),
            }
        }
        Ok(AppendEntriesResponse::Success)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        self.call(Method::Snapshot, &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr<openraft::error::Infallible>> {
        self.call(Method::Vote, &rpc, option.hard_ttl()).await
    }
}

/// Server side: hands incoming envelopes to the local Raft.
pub struct RaftService {
    node: Arc<crate::CatalogueNode>,
}

impl RaftService {
    pub fn new(node: Arc<crate::CatalogueNode>) -> Self {
        RaftService { node }
    }

    pub fn into_server(self) -> crate::pb::raft_transport_server::RaftTransportServer<Self> {
        crate::pb::raft_transport_server::RaftTransportServer::new(self).max_decoding_message_size(64 * 1024 * 1024)
    }
}

fn check_token(node: &crate::CatalogueNode, req: &Request<Envelope>) -> Result<(), Status> {
    let given = req.metadata().get(CLUSTER_TOKEN_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    Ok(node.admit_peer(req.remote_addr(), given)?)
}

/// Refuse a Raft RPC meant for another node id (`TARGET_NODE_HEADER`); one without the header
/// is accepted.
fn check_target(node: &crate::CatalogueNode, req: &Request<Envelope>) -> Result<(), Status> {
    let Some(target) = req.metadata().get(TARGET_NODE_HEADER).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    match target.parse::<NodeId>() {
        Ok(t) if t == node.id => Ok(()),
        _ => {
            metrics::counter!("loci_raft_wrong_target_total").increment(1);
            tracing::warn!(
                meant_for = target,
                this_node = node.id,
                "refused a Raft call meant for another node (this address now serves a new node)"
            );
            Err(Status::failed_precondition(format!("this is node {}, not node {target}", node.id)))
        }
    }
}

fn reply<T: Serialize>(v: &T) -> Result<Response<Envelope>, Status> {
    encode(v).map(Response::new).map_err(|e| Status::internal(e.to_string()))
}

fn parse<T: DeserializeOwned>(req: &Request<Envelope>) -> Result<T, Status> {
    decode(req.get_ref()).map_err(|e| Status::invalid_argument(e.to_string()))
}

#[tonic::async_trait]
impl RaftTransport for RaftService {
    async fn append_entries(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        check_token(&self.node, &req)?;
        check_target(&self.node, &req)?;
        let rpc: AppendEntriesRequest<TypeConfig> = parse(&req)?;
        reply(&self.node.raft.append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        check_token(&self.node, &req)?;
        check_target(&self.node, &req)?;
        let rpc: VoteRequest<NodeId> = parse(&req)?;
        reply(&self.node.raft.vote(rpc).await)
    }

    async fn install_snapshot(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        check_token(&self.node, &req)?;
        check_target(&self.node, &req)?;
        let rpc: InstallSnapshotRequest<TypeConfig> = parse(&req)?;
        reply(&self.node.raft.install_snapshot(rpc).await)
    }

    async fn client_write(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        check_token(&self.node, &req)?;
        let write: CatalogueWrite = parse(&req)?;
        // Only the leader executes; a follower that receives this answers an error and the
        // caller retries with the leader it learns about.
        let res = self.node.write_local(write.command).await.map_err(|e| e.to_string());
        reply(&res)
    }

    async fn read_index(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        check_token(&self.node, &req)?;
        check_target(&self.node, &req)?;
        let asker: NodeId = parse(&req)?;
        let res = self.node.read_index(asker).await.map_err(|e| e.to_string());
        reply(&res)
    }
}
