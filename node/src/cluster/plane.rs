//! The data plane: every namespace operation runs on the namespace's primary. Other nodes
//! forward (one hop, epoch-checked); the primary applies a write locally under the next sequence
//! number, sends the entry to the other replicas in parallel and answers once a write quorum
//! (the primary included) has it. Followers apply strictly in order and catch up from the
//! primary's log, or by a full copy while `Syncing`.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use loci_api::plane::DataPlane;
use loci_api::{ApiError, ApiResult};
use loci_raft::catalogue::{NamespaceEntry, Placement, ReplicaState};
use loci_storage::model::{ApplyOutcome, DataOp, DataResult, NsProgress, ReplEntry};
use serde::{Deserialize, Serialize};

use super::{Cluster, Method, RpcError, planner};

const RPC_TIMEOUT: Duration = Duration::from_secs(5);
const COPY_CHUNK_BYTES: usize = 2 * 1024 * 1024;
/// Replication-log entries kept per namespace for follower catch-up.
pub const LOG_KEEP: u64 = 50_000;

/// A serialisable API error (crosses the forwarding hop unchanged).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WireError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub details: Option<String>,
    pub retry_after: Option<u64>,
}

impl From<&ApiError> for WireError {
    fn from(e: &ApiError) -> Self {
        WireError {
            status: e.status.as_u16(),
            code: e.code.to_string(),
            message: e.message.clone(),
            details: e.details.clone(),
            retry_after: e.retry_after,
        }
    }
}

impl WireError {
    pub fn into_api(self) -> ApiError {
        let code: &'static str = match self.code.as_str() {
            "INVALID_REQUEST" => "INVALID_REQUEST",
            "DIMENSION_MISMATCH" => "DIMENSION_MISMATCH",
            "VECTOR_NOT_FOUND" => "VECTOR_NOT_FOUND",
            "NAMESPACE_NOT_FOUND" => "NAMESPACE_NOT_FOUND",
            "NOT_FOUND" => "NOT_FOUND",
            "CONFLICT" => "CONFLICT",
            "QUOTA_EXCEEDED" => "QUOTA_EXCEEDED",
            "PAYLOAD_TOO_LARGE" => "PAYLOAD_TOO_LARGE",
            "UNPROCESSABLE_CONTENT" => "UNPROCESSABLE_CONTENT",
            "SERVICE_UNAVAILABLE" => "SERVICE_UNAVAILABLE",
            "STORAGE_ERROR" => "STORAGE_ERROR",
            "NOT_OWNER" => "NOT_OWNER",
            _ => "INTERNAL_ERROR",
        };
        let mut e = ApiError::new(
            axum::http::StatusCode::from_u16(self.status).unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR),
            code,
            self.message,
        );
        e.details = self.details;
        e.retry_after = self.retry_after;
        e
    }
}

#[derive(Serialize, Deserialize)]
pub struct ForwardRequest {
    /// The request id of the original request (one trace across the hop).
    #[serde(default)]
    pub request_id: Option<String>,
    pub namespace: String,
    pub epoch: u64,
    pub catalogue_index: u64,
    pub op: DataOp,
}

pub type ForwardReply = Result<DataResult, WireError>;

#[derive(Serialize, Deserialize)]
pub struct ReplicateRequest {
    pub namespace: String,
    pub catalogue_index: u64,
    pub entries: Vec<ReplEntry>,
}

pub type ReplicateReply = Result<ApplyOutcome, String>;

#[derive(Serialize, Deserialize)]
pub enum CopyRequest {
    Begin { namespace: String, catalogue_index: u64 },
    Rows { rows: Vec<(String, Vec<u8>, Vec<u8>)> },
    Finish { namespace: String, progress: NsProgress },
}

#[derive(Serialize, Deserialize)]
pub struct EraseRequest {
    pub ns_id: u64,
}

fn not_owner(epoch: u64, primary: Option<u64>) -> ApiError {
    ApiError::new(axum::http::StatusCode::CONFLICT, "NOT_OWNER", "this node is not the namespace's primary")
        .with_details(format!("epoch={epoch} primary={}", primary.map_or("none".into(), |p| p.to_string())))
}

fn unavailable(msg: String) -> ApiError {
    ApiError::unavailable(msg).with_retry_after(1)
}

pub struct Plane(pub Arc<Cluster>);

impl DataPlane for Plane {
    fn execute(&self, entry: NamespaceEntry, op: DataOp) -> BoxFuture<'static, ApiResult<DataResult>> {
        let c = self.0.clone();
        Box::pin(async move { c.execute(entry, op).await })
    }

    fn initial_placement(&self, ns_id: u64) -> Placement {
        let mut nodes: Vec<u64> = self.0.alive_members().into_iter().collect();
        let (draining, mut replicas, mut primaries) = {
            let c = self.0.catalogue.view.read();
            let mut replicas = std::collections::BTreeMap::new();
            let mut primaries = std::collections::BTreeMap::new();
            for ns in c.namespaces.values() {
                for (i, r) in ns.placement.replicas.iter().enumerate() {
                    *replicas.entry(*r).or_insert(0usize) += 1;
                    if i == 0 {
                        *primaries.entry(*r).or_insert(0usize) += 1;
                    }
                }
            }
            (c.draining.clone(), replicas, primaries)
        };
        nodes.retain(|n| !draining.contains(n));
        if nodes.is_empty() {
            nodes.push(self.0.node_id);
        }
        for n in &nodes {
            replicas.entry(*n).or_insert(0);
            primaries.entry(*n).or_insert(0);
        }
        planner::initial_balanced(ns_id, &nodes, self.0.settings.replication_factor, &replicas, &primaries)
    }

    fn await_applied_everywhere(&self, index: u64) -> BoxFuture<'static, ()> {
        let c = self.0.clone();
        Box::pin(async move { c.await_applied_everywhere(index).await })
    }

    fn erase(&self, entry: NamespaceEntry) -> BoxFuture<'static, ApiResult<u64>> {
        let c = self.0.clone();
        Box::pin(async move { c.erase(entry).await })
    }
}

impl Cluster {
    /// Wait (bounded) until every alive member has applied catalogue index `index`, so a key
    /// revocation is in force on every node when the call returns.
    pub async fn await_applied_everywhere(&self, index: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        for n in self.alive_members() {
            if n == self.node_id {
                continue;
            }
            while tokio::time::Instant::now() < deadline {
                match self.call::<_, super::NodeInfo>(n, Method::NodeInfo, &(), Duration::from_secs(1)).await {
                    Ok(info) if info.applied_index >= index => break,
                    Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    Err(_) => break,
                }
            }
        }
    }

    fn core_or_err(&self) -> ApiResult<Arc<loci_api::Core>> {
        self.core().ok_or_else(|| ApiError::unavailable("node shutting down"))
    }

    /// Route an operation to the namespace's primary.
    pub async fn execute(self: Arc<Self>, entry: NamespaceEntry, op: DataOp) -> ApiResult<DataResult> {
        let mut entry = self.entry(&entry.name).unwrap_or(entry);
        for attempt in 0..3 {
            let primary = entry.placement.primary().unwrap_or(self.node_id);
            if primary == self.node_id {
                return self.clone().run_as_primary(&entry, op).await;
            }
            metrics::counter!("loci_forwarded_requests_total").increment(1);
            let req = ForwardRequest {
                request_id: loci_api::request_id::current(),
                namespace: entry.name.clone(),
                epoch: entry.placement.epoch,
                catalogue_index: self.catalogue.view.applied_index(),
                op: op.clone(),
            };
            match self.call::<_, ForwardReply>(primary, Method::Forward, &req, Duration::from_secs(60)).await {
                Ok(Ok(r)) => return Ok(r),
                Ok(Err(w)) if w.code == "NOT_OWNER" && attempt < 2 => {
                    // Our catalogue is behind (or theirs is): wait until it moves past this
                    // epoch, then route again.
                    let epoch = entry.placement.epoch;
                    let name = entry.name.clone();
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
                    while tokio::time::Instant::now() < deadline {
                        if self.entry(&name).is_some_and(|e| e.placement.epoch > epoch) {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    entry = self.entry(&name).unwrap_or(entry);
                }
                Ok(Err(w)) => return Err(w.into_api()),
                Err(RpcError::Unreachable(n, m)) => {
                    return Err(unavailable(format!("the primary of '{}' (node {n}) is unreachable: {m}", entry.name)));
                }
                Err(RpcError::Remote(n, m)) => return Err(ApiError::internal(format!("node {n}: {m}"))),
            }
        }
        Err(unavailable(format!("the placement of '{}' is changing; retry", entry.name)))
    }

    /// Serve as the primary: check ownership against the local catalogue, execute, replicate.
    pub async fn run_as_primary(self: Arc<Self>, entry: &NamespaceEntry, op: DataOp) -> ApiResult<DataResult> {
        let core = self.core_or_err()?;
        let current = self.entry(&entry.name).ok_or_else(|| ApiError::namespace_not_found(&entry.name))?;
        if current.placement.primary() != Some(self.node_id) {
            return Err(not_owner(current.placement.epoch, current.placement.primary()));
        }
        let write = op.is_write();
        let executed = core.exec_local(&current, op).await?;
        if write {
            if let Some(repl) = executed.replicate {
                self.replicate(&current, repl).await?;
            }
        }
        Ok(executed.result)
    }

    /// Send an entry to every writable follower; Ok once the write quorum holds it.
    async fn replicate(self: &Arc<Self>, entry: &NamespaceEntry, repl: ReplEntry) -> ApiResult<()> {
        let p = &entry.placement;
        let rf = p.rf.max(1);
        let quorum = entry.policy_write_quorum().unwrap_or(rf / 2 + 1).clamp(1, rf);
        let followers: Vec<u64> = p.writable().filter(|n| *n != self.node_id).collect();
        let mut need = quorum.saturating_sub(1);
        if followers.is_empty() || need == 0 {
            // Still ship it (async) to whoever should have it.
            for f in followers {
                let c = self.clone();
                let e = entry.clone();
                let seq = repl.seq;
                tokio::spawn(async move { c.replicate_to(&e, f, seq).await });
            }
            return Ok(());
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel(followers.len());
        for f in &followers {
            let c = self.clone();
            let e = entry.clone();
            let tx = tx.clone();
            let counts = p.state(*f) == Some(ReplicaState::Active);
            let f = *f;
            let seq = repl.seq;
            tokio::spawn(async move {
                let ok = c.replicate_to(&e, f, seq).await;
                let _ = tx.send(ok && counts).await;
            });
        }
        drop(tx);
        let mut acks = 0;
        while let Some(ok) = rx.recv().await {
            if ok {
                acks += 1;
                if acks >= need {
                    need = 0;
                    break;
                }
            }
        }
        if need > 0 {
            return Err(unavailable(format!(
                "the write to '{}' reached {} of the {quorum} replicas its write quorum needs; it is not acknowledged",
                entry.name,
                acks + 1
            )));
        }
        Ok(())
    }

    /// Bring `follower` up to at least `seq` (ordered per follower; batches whatever is pending).
    pub async fn replicate_to(&self, entry: &NamespaceEntry, follower: u64, seq: u64) -> bool {
        if !self.is_alive(follower) {
            return false;
        }
        let Some(core) = self.core() else { return false };
        let Ok(ctx) = core.context(entry) else { return false };
        let link = self.link(entry.id, follower);
        let mut acked = link.lock().await;
        if *acked >= seq {
            return true;
        }
        if *acked == 0 {
            match self.call::<_, NsProgress>(follower, Method::Progress, &entry.name, RPC_TIMEOUT).await {
                Ok(p) => *acked = p.applied_seq,
                Err(_) => return false,
            }
            if *acked >= seq {
                return true;
            }
        }
        for _ in 0..64 {
            let from = *acked + 1;
            let store = core.store.clone();
            let c2 = ctx.clone();
            let entries = match tokio::task::spawn_blocking(move || store.repl_entries(&c2, from, 256)).await {
                Ok(Ok(e)) => e,
                _ => return false,
            };
            if entries.first().is_none_or(|e| e.seq != from) {
                tracing::warn!(namespace = %entry.name, follower, from, "replication log no longer holds what the follower needs; it needs a full copy");
                return false;
            }
            let req = ReplicateRequest {
                namespace: entry.name.clone(),
                catalogue_index: self.catalogue.view.applied_index(),
                entries,
            };
            match self.call::<_, ReplicateReply>(follower, Method::Replicate, &req, RPC_TIMEOUT).await {
                Ok(Ok(ApplyOutcome::Applied { seq: s })) => *acked = s,
                Ok(Ok(ApplyOutcome::Duplicate { applied })) | Ok(Ok(ApplyOutcome::Gap { applied })) => *acked = applied,
                Ok(Ok(ApplyOutcome::Fenced { epoch })) => {
                    tracing::warn!(namespace = %entry.name, follower, epoch, "follower fenced this primary (newer epoch)");
                    return false;
                }
                Ok(Err(e)) => {
                    tracing::debug!(namespace = %entry.name, follower, error = %e, "replication refused");
                    return false;
                }
                Err(e) => {
                    tracing::debug!(namespace = %entry.name, follower, error = %e, "replication failed");
                    return false;
                }
            }
            if *acked >= seq {
                return true;
            }
        }
        false
    }

    /// Follower side of replication.
    pub async fn apply_replicated(&self, req: ReplicateRequest) -> ReplicateReply {
        let core = self.core().ok_or("node shutting down")?;
        let _ = self.catalogue.view.wait_applied(req.catalogue_index, Duration::from_secs(3)).await;
        let entry = self.entry(&req.namespace).ok_or_else(|| format!("unknown namespace {}", req.namespace))?;
        if !entry.placement.replicas.contains(&self.node_id) {
            return Err(format!("this node holds no replica of {}", req.namespace));
        }
        let ctx = core.context(&entry).map_err(|e| e.message)?;
        let store = core.store.clone();
        tokio::task::spawn_blocking(move || {
            let mut last = ApplyOutcome::Duplicate { applied: 0 };
            for e in &req.entries {
                last = store.apply_replicated(&ctx, e).map_err(|e| e.to_string())?;
                if !matches!(last, ApplyOutcome::Applied { .. } | ApplyOutcome::Duplicate { .. }) {
                    break;
                }
            }
            if let ApplyOutcome::Duplicate { .. } = last {
                // Report the real progress so the primary resumes from it.
                let p = store.progress(&ctx).map_err(|e| e.to_string())?;
                last = ApplyOutcome::Duplicate { applied: p.applied_seq };
            }
            Ok(last)
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Forwarded operation, on the primary.
    pub async fn serve_forward(self: Arc<Self>, req: ForwardRequest) -> ForwardReply {
        use tracing::Instrument;
        let id = req.request_id.clone().unwrap_or_default();
        let span = tracing::info_span!("forwarded", request_id = %id, namespace = %req.namespace);
        loci_api::request_id::REQUEST_ID.scope(id, self.serve_forward_inner(req).instrument(span)).await
    }

    async fn serve_forward_inner(self: Arc<Self>, req: ForwardRequest) -> ForwardReply {
        let _ = self.catalogue.view.wait_applied(req.catalogue_index, Duration::from_secs(3)).await;
        let Some(entry) = self.entry(&req.namespace) else {
            return Err((&ApiError::namespace_not_found(&req.namespace)).into());
        };
        if entry.placement.epoch < req.epoch {
            // The caller saw a newer placement than we have applied: wait for it briefly.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
            while tokio::time::Instant::now() < deadline
                && self.entry(&req.namespace).is_some_and(|e| e.placement.epoch < req.epoch)
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let entry = self.entry(&req.namespace).unwrap_or(entry);
        self.run_as_primary(&entry, req.op).await.map_err(|e| (&e).into())
    }

    /// Drop a namespace on every replica (best effort for unreachable ones: their orphan sweep
    /// deletes the rows when they start, since the catalogue no longer knows the namespace).
    pub async fn erase(self: Arc<Self>, entry: NamespaceEntry) -> ApiResult<u64> {
        let core = self.core_or_err()?;
        let mut count = 0;
        let mut replicas = entry.placement.replicas.clone();
        if !replicas.contains(&self.node_id) {
            replicas.push(self.node_id);
        }
        for n in replicas {
            let c = if n == self.node_id {
                core.erase_local(entry.id).await.unwrap_or(0)
            } else {
                match self
                    .call::<_, Result<u64, String>>(
                        n,
                        Method::Erase,
                        &EraseRequest { ns_id: entry.id },
                        Duration::from_secs(30),
                    )
                    .await
                {
                    Ok(Ok(c)) => c,
                    _ => {
                        tracing::warn!(node = n, namespace = %entry.name, "replica unreachable during erasure; it erases at its next start");
                        0
                    }
                }
            };
            count = count.max(c);
        }
        self.links.lock().retain(|(ns, _), _| *ns != entry.id);
        Ok(count)
    }

    /// On the primary: copy Syncing replicas in full, catch them up, then mark them Active.
    pub async fn sync_loop(self: Arc<Self>, token: tokio_util::sync::CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(300));
        let mut truncate_tick = 0u64;
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tick.tick() => {}
            }
            let Some(core) = self.core() else { continue };
            if !core.is_ready() {
                continue;
            }
            let namespaces: Vec<NamespaceEntry> = self.catalogue.view.read().namespaces.values().cloned().collect();
            for ns in &namespaces {
                if ns.placement.primary() != Some(self.node_id) {
                    continue;
                }
                for (node, state) in &ns.placement.states {
                    if *state == ReplicaState::Syncing && *node != self.node_id && self.is_alive(*node) {
                        let key = (ns.id, *node);
                        if self.copies.lock().insert(key) {
                            let c = self.clone();
                            let ns = ns.clone();
                            let node = *node;
                            tokio::spawn(async move {
                                if let Err(e) = c.copy_to(&ns, node).await {
                                    tracing::warn!(namespace = %ns.name, node, error = %e, "full copy failed; will retry");
                                }
                                c.copies.lock().remove(&key);
                            });
                        }
                    }
                }
            }
            // Anti-entropy: followers that missed entries (down, partitioned, slow) catch up even
            // when no new write arrives for their namespace.
            for ns in &namespaces {
                if ns.placement.primary() != Some(self.node_id) {
                    continue;
                }
                let Ok(ctx) = core.context(ns) else { continue };
                let Ok(progress) = core.store.progress(&ctx) else { continue };
                for f in ns.placement.replicas.iter().copied().filter(|f| *f != self.node_id) {
                    if ns.placement.state(f) != Some(ReplicaState::Active) || !self.is_alive(f) {
                        continue;
                    }
                    let link = self.link(ns.id, f);
                    let behind = link.try_lock().map(|acked| *acked < progress.applied_seq).unwrap_or(false);
                    if behind {
                        let c = self.clone();
                        let ns = ns.clone();
                        let seq = progress.applied_seq;
                        tokio::spawn(async move { c.replicate_to(&ns, f, seq).await });
                    }
                }
            }
            truncate_tick += 1;
            if truncate_tick % 100 == 0 {
                for ns in namespaces.iter().filter(|n| n.placement.replicas.contains(&self.node_id)) {
                    if let Ok(ctx) = core.context(ns) {
                        let store = core.store.clone();
                        let _ = tokio::task::spawn_blocking(move || store.truncate_repl(&ctx, LOG_KEEP)).await;
                    }
                }
            }
        }
    }

    async fn copy_to(&self, ns: &NamespaceEntry, node: u64) -> Result<(), String> {
        let core = self.core().ok_or("shutting down")?;
        let link = self.link(ns.id, node);
        let mut acked = link.lock().await;
        let started = std::time::Instant::now();
        let store = core.store.clone();
        let id = ns.id;
        let (progress, rows) = tokio::task::spawn_blocking(move || store.export_namespace(id))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let idx = self.catalogue.view.applied_index();
        let to = Duration::from_secs(60);
        let begin = CopyRequest::Begin { namespace: ns.name.clone(), catalogue_index: idx };
        self.call::<_, Result<(), String>>(node, Method::Copy, &begin, to).await.map_err(|e| e.to_string())??;
        let total = rows.len();
        let mut chunk = Vec::new();
        let mut size = 0;
        let mut sent = 0usize;
        for row in rows {
            size += row.1.len() + row.2.len();
            chunk.push(row);
            if size >= COPY_CHUNK_BYTES {
                sent += chunk.len();
                let req = CopyRequest::Rows { rows: std::mem::take(&mut chunk) };
                self.call::<_, Result<(), String>>(node, Method::Copy, &req, to).await.map_err(|e| e.to_string())??;
                metrics::gauge!("loci_move_progress_ratio", "namespace" => ns.name.clone())
                    .set(sent as f64 / total.max(1) as f64);
                size = 0;
            }
        }
        if !chunk.is_empty() {
            let req = CopyRequest::Rows { rows: chunk };
            self.call::<_, Result<(), String>>(node, Method::Copy, &req, to).await.map_err(|e| e.to_string())??;
        }
        let fin = CopyRequest::Finish { namespace: ns.name.clone(), progress };
        self.call::<_, Result<(), String>>(node, Method::Copy, &fin, to).await.map_err(|e| e.to_string())??;
        *acked = progress.applied_seq;
        drop(acked);
        metrics::counter!("loci_move_rows_total").increment(total as u64);
        // Catch up with writes made during the copy, then become Active.
        let latest = {
            let store = core.store.clone();
            let ctx = core.context(ns).map_err(|e| e.message)?;
            tokio::task::spawn_blocking(move || store.progress(&ctx))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?
        };
        if latest.applied_seq > progress.applied_seq && !self.replicate_to(ns, node, latest.applied_seq).await {
            return Err("catch-up after the copy failed".into());
        }
        let Some(current) = self.entry(&ns.name) else { return Ok(()) };
        if current.placement.state(node) != Some(ReplicaState::Syncing) {
            return Ok(());
        }
        let mut np = current.placement.clone();
        np.epoch += 1;
        np.states.insert(node, ReplicaState::Active);
        let res = self
            .catalogue
            .write(loci_raft::Command::SetPlacement {
                name: ns.name.clone(),
                expected_epoch: current.placement.epoch,
                placement: np,
            })
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(namespace = %ns.name, node, rows = total, elapsed_ms = started.elapsed().as_millis() as u64, result = ?matches!(res, loci_raft::CommandResult::Namespace { .. }), "replica synced");
        Ok(())
    }

    /// Follower side of a full copy.
    pub async fn apply_copy(&self, req: CopyRequest) -> Result<(), String> {
        let core = self.core().ok_or("shutting down")?;
        let store = core.store.clone();
        match req {
            CopyRequest::Begin { namespace, catalogue_index } => {
                let _ = self.catalogue.view.wait_applied(catalogue_index, Duration::from_secs(3)).await;
                let entry = self.entry(&namespace).ok_or_else(|| format!("unknown namespace {namespace}"))?;
                tokio::task::spawn_blocking(move || store.import_begin(entry.id))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())
            }
            CopyRequest::Rows { rows } => tokio::task::spawn_blocking(move || store.import_rows(&rows))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string()),
            CopyRequest::Finish { namespace, progress } => {
                let entry = self.entry(&namespace).ok_or_else(|| format!("unknown namespace {namespace}"))?;
                tokio::task::spawn_blocking(move || store.import_finish(entry.id, progress))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())
            }
        }
    }
}

/// Write quorum from the namespace policy (`write_quorum`), if set.
trait WriteQuorum {
    fn policy_write_quorum(&self) -> Option<usize>;
}

impl WriteQuorum for NamespaceEntry {
    fn policy_write_quorum(&self) -> Option<usize> {
        self.policy.write_quorum
    }
}
