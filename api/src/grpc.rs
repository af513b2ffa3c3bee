//! The public gRPC service `loci.v1.Loci`: a REST call over gRPC, answered by the same router
//! (same auth, validation and errors).

use crate::pb::loci_server::Loci;
use crate::pb::{HealthRequest, HealthResponse, InvokeRequest, InvokeResponse};
use tonic::{Request, Response, Status};
use tower::ServiceExt;

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
