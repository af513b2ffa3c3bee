//! gRPC services of a node: the public `loci.v1.Loci` (REST calls over gRPC, answered by the
//! same router) and the node-to-node `loci.v1.Internal` (cluster token required).

use std::sync::Arc;

use loci_api::pb::internal_server::Internal;
use loci_api::pb::loci_server::Loci;
use loci_api::pb::{Envelope, HealthRequest, HealthResponse, InvokeRequest, InvokeResponse};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::{Request, Response, Status};
use tower::ServiceExt;

use super::plane::{
    CopyRequest, EraseRequest, FenceRequest, FetchLogRequest, ForwardRequest, PushCopyRequest, ReplicateRequest,
};
use super::{CLUSTER_TOKEN_HEADER, Cluster};

pub struct InternalService {
    pub cluster: Arc<Cluster>,
}

fn check(c: &Cluster, req: &Request<Envelope>) -> Result<(), Status> {
    let given = req.metadata().get(CLUSTER_TOKEN_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    if c.token_ok(given) { Ok(()) } else { Err(Status::unauthenticated("bad cluster token")) }
}

fn parse<T: DeserializeOwned>(req: &Request<Envelope>) -> Result<T, Status> {
    serde_json::from_slice(&req.get_ref().payload).map_err(|e| Status::invalid_argument(e.to_string()))
}

fn reply<T: Serialize>(v: &T) -> Result<Response<Envelope>, Status> {
    serde_json::to_vec(v)
        .map(|payload| Response::new(Envelope { payload }))
        .map_err(|e| Status::internal(e.to_string()))
}

#[tonic::async_trait]
impl Internal for InternalService {
    async fn forward(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        check(&self.cluster, &req)?;
        let r: ForwardRequest = parse(&req)?;
        reply(&self.cluster.clone().serve_forward(r).await)
    }

    async fn replicate(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        check(&self.cluster, &req)?;
        let r: ReplicateRequest = parse(&req)?;
        reply(&self.cluster.apply_replicated(r).await)
    }

    async fn progress(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        check(&self.cluster, &req)?;
        let ns: String = parse(&req)?;
        let core = self.cluster.core().ok_or_else(|| Status::unavailable("shutting down"))?;
        let entry = self.cluster.entry(&ns).ok_or_else(|| Status::not_found("unknown namespace"))?;
        let ctx = core.context(&entry).map_err(|e| Status::internal(e.message))?;
        let store = core.store.clone();
        let p = tokio::task::spawn_blocking(move || store.progress(&ctx))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(e.to_string()))?;
        reply(&p)
    }

    async fn copy(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        check(&self.cluster, &req)?;
        let r: CopyRequest = parse(&req)?;
        reply(&self.cluster.apply_copy(r).await)
    }

    async fn erase(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        check(&self.cluster, &req)?;
        let r: EraseRequest = parse(&req)?;
        let core = self.cluster.core().ok_or_else(|| Status::unavailable("shutting down"))?;
        let res = core.erase_local(r.ns_id).await.map_err(|e| e.message);
        reply(&res)
    }

    async fn node_info(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        check(&self.cluster, &req)?;
        reply(&self.cluster.local_info())
    }

    async fn fence(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        check(&self.cluster, &req)?;
        let r: FenceRequest = parse(&req)?;
        reply(&self.cluster.serve_fence(r).await)
    }

    async fn fetch_log(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        check(&self.cluster, &req)?;
        let r: FetchLogRequest = parse(&req)?;
        reply(&self.cluster.serve_fetch_log(r).await)
    }

    async fn push_copy(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        check(&self.cluster, &req)?;
        let r: PushCopyRequest = parse(&req)?;
        reply(&self.cluster.clone().serve_push_copy(r).await)
    }

    async fn admin(&self, req: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        check(&self.cluster, &req)?;
        let action: loci_api::plane::ClusterAction = parse(&req)?;
        let res = self.cluster.clone().run_admin(action).await.map_err(|e| super::plane::WireError::from(&e));
        reply(&res)
    }
}

/// Public gRPC: a REST call over gRPC, dispatched to the REST router (same auth, validation,
/// errors).
pub struct LociService {
    pub router: axum::Router,
    pub node_id: u64,
    pub version: String,
}

#[tonic::async_trait]
impl Loci for LociService {
    async fn invoke(&self, req: Request<InvokeRequest>) -> Result<Response<InvokeResponse>, Status> {
        let r = req.into_inner();
        let method = axum::http::Method::from_bytes(r.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| Status::invalid_argument("bad method"))?;
        if !r.path.starts_with('/') {
            return Err(Status::invalid_argument("path must start with /"));
        }
        let mut builder =
            axum::http::Request::builder().method(method).uri(&r.path).header("content-type", "application/json");
        if !r.api_key.is_empty() {
            builder = builder.header("authorization", format!("Bearer {}", r.api_key));
        }
        let http_req =
            builder.body(axum::body::Body::from(r.body)).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let resp = self.router.clone().oneshot(http_req).await.map_err(|e| Status::internal(e.to_string()))?;
        let status = resp.status().as_u16() as u32;
        let body = axum::body::to_bytes(resp.into_body(), 256 * 1024 * 1024)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(InvokeResponse { status, body: body.to_vec(), node: self.node_id.to_string() }))
    }

    async fn health(&self, _req: Request<HealthRequest>) -> Result<Response<HealthResponse>, Status> {
        Ok(Response::new(HealthResponse {
            status: "healthy".into(),
            version: self.version.clone(),
            node_id: self.node_id,
        }))
    }
}
