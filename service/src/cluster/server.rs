//! The node-to-node gRPC service `loci.internal.v1.Internal` (cluster token required; typed
//! messages and errors, `proto/internal.proto`): the peer-facing side of the data plane.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::error::{ClusterError, ClusterResult};
use super::plane::{CopyRequest, ForwardRequest, ReplicateRequest};
use super::wire::{self, pb};
use super::{CLUSTER_TOKEN_HEADER, Cluster};

pub struct InternalService {
    pub cluster: Arc<Cluster>,
}

fn check<T>(c: &Cluster, req: &Request<T>) -> Result<(), Status> {
    let given = req.metadata().get(CLUSTER_TOKEN_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    Ok(c.catalogue.admit_peer(req.remote_addr(), given)?)
}

fn error(e: &ClusterError) -> pb::ClusterError {
    e.into()
}

fn progress(r: ClusterResult<loci_storage::model::NsProgress>) -> Response<pb::ProgressReply> {
    use pb::progress_reply::Outcome;
    let outcome = match r {
        Ok(p) => Outcome::Progress(p.into()),
        Err(e) => Outcome::Error(error(&e)),
    };
    Response::new(pb::ProgressReply { outcome: Some(outcome) })
}

#[tonic::async_trait]
impl pb::internal_server::Internal for InternalService {
    async fn forward(&self, req: Request<pb::ForwardRequest>) -> Result<Response<pb::ForwardReply>, Status> {
        use pb::forward_reply::Outcome;
        check(&self.cluster, &req)?;
        let r = req.into_inner();
        let result = match wire::from_cbor(&r.op) {
            Ok(op) => {
                let fwd = ForwardRequest {
                    request_id: (!r.request_id.is_empty()).then_some(r.request_id),
                    namespace: r.namespace,
                    epoch: r.epoch,
                    catalogue_index: r.catalogue_index,
                    op,
                };
                self.cluster.clone().serve_forward(fwd).await.and_then(|res| wire::to_cbor(&res))
            }
            Err(e) => Err(e),
        };
        let outcome = match result {
            Ok(b) => Outcome::Result(b),
            Err(e) => Outcome::Error(error(&e)),
        };
        Ok(Response::new(pb::ForwardReply { outcome: Some(outcome) }))
    }

    async fn replicate(&self, req: Request<pb::ReplicateRequest>) -> Result<Response<pb::ReplicateReply>, Status> {
        use pb::replicate_reply::Outcome;
        check(&self.cluster, &req)?;
        let r = req.into_inner();
        let result = match wire::entries_from_pb(r.entries) {
            Ok(entries) => {
                let rep = ReplicateRequest {
                    namespace: r.namespace,
                    catalogue_index: r.catalogue_index,
                    sender_epoch: r.sender_epoch,
                    prev: r.prev.map(|p| (p.seq, p.epoch)),
                    floor: r.floor,
                    entries,
                };
                self.cluster.apply_replicated(rep).await
            }
            Err(e) => Err(e),
        };
        let outcome = match result {
            Ok(o) => Outcome::Applied(o.into()),
            Err(e) => Outcome::Error(error(&e)),
        };
        Ok(Response::new(pb::ReplicateReply { outcome: Some(outcome) }))
    }

    async fn progress(&self, req: Request<pb::ProgressRequest>) -> Result<Response<pb::ProgressReply>, Status> {
        check(&self.cluster, &req)?;
        let namespace = &req.get_ref().namespace;
        let mut reply = progress(self.cluster.serve_progress(namespace).await);
        if let Some(pb::progress_reply::Outcome::Progress(p)) = &mut reply.get_mut().outcome {
            p.serving = self.cluster.is_serving(namespace);
        }
        Ok(reply)
    }

    async fn copy(&self, req: Request<pb::CopyRequest>) -> Result<Response<pb::Done>, Status> {
        check(&self.cluster, &req)?;
        let result = match CopyRequest::from_pb(req.into_inner()) {
            Ok(step) => self.cluster.apply_copy(step).await,
            Err(e) => Err(e),
        };
        Ok(Response::new(wire::done(result)))
    }

    async fn erase(&self, req: Request<pb::EraseRequest>) -> Result<Response<pb::EraseReply>, Status> {
        use pb::erase_reply::Outcome;
        check(&self.cluster, &req)?;
        let ns_id = req.get_ref().ns_id;
        let result = self.cluster.local.erase(ns_id).await.map_err(ClusterError::from);
        let outcome = match result {
            Ok(n) => Outcome::Memories(n),
            Err(e) => Outcome::Error(error(&e)),
        };
        Ok(Response::new(pb::EraseReply { outcome: Some(outcome) }))
    }

    async fn node_info(&self, req: Request<pb::NodeInfoRequest>) -> Result<Response<pb::NodeInfo>, Status> {
        check(&self.cluster, &req)?;
        Ok(Response::new(self.cluster.local_info().into()))
    }

    async fn fence(&self, req: Request<pb::FenceRequest>) -> Result<Response<pb::ProgressReply>, Status> {
        check(&self.cluster, &req)?;
        Ok(progress(self.cluster.serve_fence(req.into_inner()).await))
    }

    async fn fetch_log(&self, req: Request<pb::FetchLogRequest>) -> Result<Response<pb::FetchLogReply>, Status> {
        use pb::fetch_log_reply::Outcome;
        check(&self.cluster, &req)?;
        let result = self.cluster.serve_fetch_log(req.into_inner()).await.and_then(|e| wire::entries_to_pb(&e));
        let outcome = match result {
            Ok(entries) => Outcome::Entries(pb::Entries { entries }),
            Err(e) => Outcome::Error(error(&e)),
        };
        Ok(Response::new(pb::FetchLogReply { outcome: Some(outcome) }))
    }

    async fn audit_query(&self, req: Request<pb::AuditQueryRequest>) -> Result<Response<pb::AuditQueryReply>, Status> {
        check(&self.cluster, &req)?;
        Ok(Response::new(self.cluster.serve_audit_query(req.into_inner()).await))
    }

    async fn event_poll(&self, req: Request<pb::EventPollRequest>) -> Result<Response<pb::EventPollReply>, Status> {
        check(&self.cluster, &req)?;
        Ok(Response::new(self.cluster.serve_event_poll(req.into_inner()).await))
    }

    async fn webhook_deliveries(
        &self,
        req: Request<pb::WebhookDeliveriesRequest>,
    ) -> Result<Response<pb::WebhookDeliveriesReply>, Status> {
        check(&self.cluster, &req)?;
        Ok(Response::new(self.cluster.serve_webhook_deliveries(req.into_inner())))
    }

    async fn webhook_replay(
        &self,
        req: Request<pb::WebhookReplayRequest>,
    ) -> Result<Response<pb::WebhookReplayReply>, Status> {
        check(&self.cluster, &req)?;
        Ok(Response::new(self.cluster.serve_webhook_replay(req.into_inner())))
    }

    async fn import_status(
        &self,
        req: Request<pb::ImportStatusRequest>,
    ) -> Result<Response<pb::ImportStatusReply>, Status> {
        check(&self.cluster, &req)?;
        let job = self.cluster.local.import_jobs.find(&req.into_inner().job_id);
        Ok(Response::new(pb::ImportStatusReply { job: job.and_then(|j| serde_json::to_string(&j).ok()) }))
    }

    type BackupReadStream = tokio_stream::wrappers::ReceiverStream<Result<pb::BackupReadItem, Status>>;

    async fn backup_read(
        &self,
        req: Request<pb::BackupReadRequest>,
    ) -> Result<Response<Self::BackupReadStream>, Status> {
        check(&self.cluster, &req)?;
        let rx = self.cluster.clone().serve_backup_read(req.into_inner()).await;
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    async fn push_copy(&self, req: Request<pb::PushCopyRequest>) -> Result<Response<pb::Done>, Status> {
        check(&self.cluster, &req)?;
        Ok(Response::new(wire::done(self.cluster.clone().serve_push_copy(req.into_inner()).await)))
    }

    async fn admin(&self, req: Request<pb::AdminRequest>) -> Result<Response<pb::AdminReply>, Status> {
        use pb::admin_reply::Outcome;
        check(&self.cluster, &req)?;
        let result = match super::ClusterAction::try_from(req.into_inner()) {
            Ok(action) => self.cluster.clone().run_admin(action).await.map_err(ClusterError::from),
            Err(e) => Err(e),
        };
        let outcome = match result {
            Ok(v) => Outcome::Json(v.to_string()),
            Err(e) => Outcome::Error(error(&e)),
        };
        Ok(Response::new(pb::AdminReply { outcome: Some(outcome) }))
    }
}
