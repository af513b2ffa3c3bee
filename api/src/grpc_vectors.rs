//! `dakera.v1.VectorService`, the gRPC surface of the published Rust client (feature `grpc`):
//! seven unary RPCs over raw vectors. Each RPC but `Health` is answered by the REST router, as the
//! REST call it stands for (`GetNamespace` = `GET /v1/namespaces/{ns}`, `Upsert` =
//! `POST /v1/namespaces/{ns}/vectors`, …), with the caller's `x-api-key` or
//! `authorization: Bearer` metadata as the request's headers: the same authentication, scopes,
//! validation, rate limits, audit records and service calls as REST, by construction. A REST
//! error becomes the gRPC status of its class (401 → `UNAUTHENTICATED`, 403 →
//! `PERMISSION_DENIED`, 400 → `INVALID_ARGUMENT`, 404 → `NOT_FOUND`, 429 →
//! `RESOURCE_EXHAUSTED`, 503 → `UNAVAILABLE`).

use serde_json::{Value, json};
use tonic::{Request, Response, Status};

use crate::grpc::rest::{Rest, segment};
use crate::pb_dakera::vector_service_server::VectorService;
use crate::pb_dakera::*;
use tonic_types::StatusExt;

/// Serves `dakera.v1.VectorService` through the REST router.
pub struct VectorGrpc {
    pub router: axum::Router,
    pub version: String,
}

fn ns_path(ns: &str, rest: &str) -> Result<String, Status> {
    if ns.is_empty() {
        return Err(Status::invalid_argument("namespace is required"));
    }
    Ok(format!("/v1/namespaces/{}{rest}", segment(ns)))
}

impl VectorGrpc {
    /// One REST call with the RPC's credentials (the typed front's [`Rest::call`]); a refusal is
    /// the status of its class, its message followed by the REST error's `details`, as this
    /// client has always shown them.
    async fn call(
        &self,
        md: &tonic::metadata::MetadataMap,
        rpc: &'static str,
        method: axum::http::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Status> {
        let body = body.map(|b| serde_json::to_vec(&b)).transpose().map_err(|e| Status::internal(e.to_string()))?;
        let rest = Rest::new(self.router.clone());
        match rest.call(md, None, rpc, method, path, body).await {
            Ok((bytes, _)) => Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null)),
            Err(st) => {
                let details = st.get_details_error_info().and_then(|i| i.metadata.get("details").cloned());
                Err(match details {
                    Some(d) => Status::with_details_and_metadata(
                        st.code(),
                        format!("{}: {d}", st.message()),
                        st.details().to_vec().into(),
                        st.metadata().clone(),
                    ),
                    None => st,
                })
            }
        }
    }
}

fn u64_of(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

#[tonic::async_trait]
impl VectorService for VectorGrpc {
    async fn health(&self, _req: Request<HealthRequest>) -> Result<Response<HealthResponse>, Status> {
        Ok(Response::new(HealthResponse { status: "healthy".into(), version: self.version.clone() }))
    }

    async fn get_namespace(&self, req: Request<GetNamespaceRequest>) -> Result<Response<NamespaceInfo>, Status> {
        let path = ns_path(&req.get_ref().namespace, "")?;
        let v = self
            .call(req.metadata(), "/dakera.v1.VectorService/GetNamespace", axum::http::Method::GET, &path, None)
            .await?;
        Ok(Response::new(NamespaceInfo {
            name: v.get("namespace").and_then(Value::as_str).unwrap_or_default().to_string(),
            vector_count: u64_of(&v, "vector_count"),
            dimension: v.get("dimension").and_then(Value::as_u64).and_then(|d| u32::try_from(d).ok()),
        }))
    }

    async fn delete_namespace(
        &self,
        req: Request<DeleteNamespaceRequest>,
    ) -> Result<Response<DeleteNamespaceResponse>, Status> {
        let path = ns_path(&req.get_ref().namespace, "")?;
        let v = self
            .call(req.metadata(), "/dakera.v1.VectorService/DeleteNamespace", axum::http::Method::DELETE, &path, None)
            .await?;
        Ok(Response::new(DeleteNamespaceResponse {
            success: v.get("deleted").and_then(Value::as_bool).unwrap_or(false),
        }))
    }

    async fn upsert(&self, req: Request<UpsertRequest>) -> Result<Response<UpsertResponse>, Status> {
        let path = ns_path(&req.get_ref().namespace, "/vectors")?;
        let mut vectors = Vec::with_capacity(req.get_ref().vectors.len());
        for (i, v) in req.get_ref().vectors.iter().enumerate() {
            let metadata = match &v.metadata_json {
                None => Value::Null,
                Some(s) if s.is_empty() => Value::Null,
                Some(s) => serde_json::from_str::<Value>(s)
                    .map_err(|e| Status::invalid_argument(format!("vectors[{i}]: metadata_json is not JSON: {e}")))?,
            };
            vectors.push(json!({"id": v.id, "values": v.values, "metadata": metadata}));
        }
        let v = self
            .call(
                req.metadata(),
                "/dakera.v1.VectorService/Upsert",
                axum::http::Method::POST,
                &path,
                Some(json!({"vectors": vectors})),
            )
            .await?;
        Ok(Response::new(UpsertResponse { upserted_count: u64_of(&v, "upserted_count") }))
    }

    async fn query(&self, req: Request<QueryRequest>) -> Result<Response<QueryResponse>, Status> {
        let q = req.get_ref();
        let path = ns_path(&q.namespace, "/query")?;
        let body = json!({
            "vector": q.vector,
            "top_k": q.top_k,
            "include_metadata": q.include_metadata,
            "include_vectors": q.include_vectors,
        });
        let v = self
            .call(req.metadata(), "/dakera.v1.VectorService/Query", axum::http::Method::POST, &path, Some(body))
            .await?;
        let results = v
            .get("results")
            .and_then(Value::as_array)
            .map(|rs| {
                rs.iter()
                    .map(|r| ProtoSearchResult {
                        id: r.get("id").and_then(Value::as_str).unwrap_or_default().to_string(),
                        score: r.get("score").and_then(Value::as_f64).unwrap_or(0.0) as f32,
                        metadata_json: r.get("metadata").filter(|m| !m.is_null()).map(Value::to_string),
                        values: r
                            .get("vector")
                            .and_then(Value::as_array)
                            .map(|a| a.iter().filter_map(Value::as_f64).map(|x| x as f32).collect())
                            .unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Response::new(QueryResponse { results }))
    }

    async fn delete_vectors(
        &self,
        req: Request<DeleteVectorsRequest>,
    ) -> Result<Response<DeleteVectorsResponse>, Status> {
        let path = ns_path(&req.get_ref().namespace, "/vectors/delete")?;
        let body = json!({"ids": req.get_ref().ids});
        let v = self
            .call(req.metadata(), "/dakera.v1.VectorService/DeleteVectors", axum::http::Method::POST, &path, Some(body))
            .await?;
        Ok(Response::new(DeleteVectorsResponse { deleted_count: u64_of(&v, "deleted_count") }))
    }

    async fn warm_cache(&self, req: Request<WarmCacheRequest>) -> Result<Response<WarmCacheResponse>, Status> {
        let path = ns_path(&req.get_ref().namespace, "/cache/warm")?;
        let ids = &req.get_ref().vector_ids;
        let body = if ids.is_empty() { json!({}) } else { json!({"vector_ids": ids}) };
        let v = self
            .call(req.metadata(), "/dakera.v1.VectorService/WarmCache", axum::http::Method::POST, &path, Some(body))
            .await?;
        Ok(Response::new(WarmCacheResponse { warmed_count: u64_of(&v, "entries_warmed") }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_one_path_segment() {
        assert_eq!(ns_path("docs-1", "/query").unwrap(), "/v1/namespaces/docs-1/query");
        assert_eq!(ns_path("a/b?c", "").unwrap(), "/v1/namespaces/a%2Fb%3Fc");
        assert!(ns_path("", "").is_err());
    }
}
